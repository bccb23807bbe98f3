/*
 * tenki-subreaper: run a daemon under a parent that reaps at once.
 *
 *	tenki-subreaper [--pidfile F] [--log F] -- CMD ARGS...
 *
 * PID 1 on the machines tenki runs on may reap orphans only about once a
 * second, and libvirtd waits for qemu's zombie to be reaped before it
 * reports a domain as stopped: `virsh destroy` takes 2 s instead of 0.24 s.
 * With PR_SET_CHILD_SUBREAPER set here, every orphan of CMD's tree is
 * reparented to this process, which reaps it as soon as SIGCHLD arrives.
 *
 * The program daemonizes (fork, setsid, stdio to the log file), starts
 * CMD, forwards SIGTERM, SIGINT and SIGHUP to it, and exits with CMD's
 * status when CMD exits.  The invoking process returns only once CMD has
 * been exec'd, so a caller sees a bad command as a failed start.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *pidfile;
static const char *logfile = "/dev/null";

static void usage(void)
{
	fprintf(stderr, "usage: tenki-subreaper [--pidfile F] [--log F] "
			"-- CMD ARGS...\n");
	exit(2);
}

/* A line in the log, with a time, so it reads well among libvirt's. */
static void logmsg(const char *fmt, ...)
{
	char when[32];
	struct tm tm;
	time_t now;
	va_list ap;

	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s tenki-subreaper[%d]: ", when, (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * Report a start-up failure through the ready pipe: the invoking process
 * prints it on its own stderr, where the user looks, and exits 1.
 */
static void fail(int rfd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	if (write(rfd, buf, n) < 0) {
		/* Nobody to tell; the exit status still says it. */
	}
	_exit(1);
}

/*
 * The invoking process: wait until the daemon closes every copy of the
 * ready pipe (CMD was exec'd) or writes an error into it.
 */
static int wait_ready(int rfd)
{
	char buf[512];
	size_t len = 0;
	ssize_t n;

	while (len < sizeof(buf) - 1) {
		n = read(rfd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += n;
	}
	if (len == 0)
		return 0;
	buf[len] = '\0';
	fprintf(stderr, "tenki-subreaper: %s\n", buf);
	return 1;
}

/* Detach from the caller's session and send stdio to the log. */
static void detach(int rfd)
{
	int nullfd, logfd;

	if (setsid() < 0)
		fail(rfd, "setsid: %s", strerror(errno));
	nullfd = open("/dev/null", O_RDONLY);
	if (nullfd < 0)
		fail(rfd, "/dev/null: %s", strerror(errno));
	logfd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0640);
	if (logfd < 0)
		fail(rfd, "%s: %s", logfile, strerror(errno));
	if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
		fail(rfd, "dup2: %s", strerror(errno));
	if (nullfd > 2)
		close(nullfd);
	if (logfd > 2)
		close(logfd);
	/* Nor any other descriptor of the caller's (a test harness waits
	 * until every copy of its output pipe is closed); rfd stays until
	 * the readiness report. */
	if (rfd > 3)
		close_range(3, (unsigned)rfd - 1, 0);
	close_range(rfd >= 3 ? (unsigned)rfd + 1 : 3, ~0U, 0);
	setvbuf(stderr, NULL, _IOLBF, 0);
	if (chdir("/") < 0)
		fail(rfd, "chdir /: %s", strerror(errno));
}

static void write_pidfile(int rfd)
{
	FILE *fp;

	if (pidfile == NULL)
		return;
	fp = fopen(pidfile, "w");
	if (fp == NULL)
		fail(rfd, "%s: %s", pidfile, strerror(errno));
	fprintf(fp, "%d\n", (int)getpid());
	if (fclose(fp) != 0)
		fail(rfd, "%s: %s", pidfile, strerror(errno));
}

/*
 * Start CMD with the signal mask and dispositions it would have had
 * without us.  The ready pipe is close-on-exec: a successful exec closes
 * CMD's copy, a failed one reports through it.
 */
static pid_t spawn(int rfd, char **argv, const sigset_t *oldmask)
{
	pid_t pid;

	pid = fork();
	if (pid < 0)
		fail(rfd, "fork: %s", strerror(errno));
	if (pid > 0)
		return pid;
	signal(SIGPIPE, SIG_DFL);
	sigprocmask(SIG_SETMASK, oldmask, NULL);
	execvp(argv[0], argv);
	fail(rfd, "%s: %s", argv[0], strerror(errno));
	return -1;
}

/* Reap every child that has exited; note CMD's status when it is one. */
static void reap(pid_t cmd, int *cmdstatus, int *cmddone)
{
	pid_t pid;
	int status;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		if (pid == cmd) {
			*cmdstatus = status;
			*cmddone = 1;
		}
	}
}

static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

/* Wait for signals; never returns before CMD has exited. */
static int supervise(pid_t cmd, const sigset_t *set)
{
	siginfo_t si;
	int sig, status = 0, done = 0;

	while (!done) {
		sig = sigwaitinfo(set, &si);
		if (sig < 0)
			continue;
		if (sig == SIGCHLD)
			reap(cmd, &status, &done);
		else if (kill(cmd, sig) < 0 && errno != ESRCH)
			logmsg("kill %d: %s", (int)cmd, strerror(errno));
	}
	/* Orphans CMD left behind go on to PID 1; reap what is dead now. */
	reap(cmd, &status, &done);
	if (WIFSIGNALED(status))
		logmsg("%d killed by signal %d", (int)cmd, WTERMSIG(status));
	else
		logmsg("%d exited %d", (int)cmd, exit_code(status));
	return exit_code(status);
}

static int parse_args(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			if (i + 1 >= argc)
				usage();
			return i + 1;
		}
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--pidfile") == 0)
			pidfile = argv[++i];
		else if (strcmp(argv[i], "--log") == 0)
			logfile = argv[++i];
		else
			usage();
	}
	usage();
	return -1;
}

int main(int argc, char **argv)
{
	sigset_t set, oldmask;
	int first, pfd[2], code;
	pid_t pid, cmd;

	first = parse_args(argc, argv);
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		perror("tenki-subreaper: pipe");
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		perror("tenki-subreaper: fork");
		return 1;
	}
	if (pid > 0) {
		close(pfd[1]);
		return wait_ready(pfd[0]);
	}
	close(pfd[0]);

	/*
	 * Block the signals before CMD exists, so none is lost between the
	 * fork and the first sigwaitinfo.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, &oldmask);
	/* The log may be a pipe someone closes; never die of it. */
	signal(SIGPIPE, SIG_IGN);

	detach(pfd[1]);
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		fail(pfd[1], "PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
	write_pidfile(pfd[1]);
	cmd = spawn(pfd[1], argv + first, &oldmask);
	logmsg("started %s as %d", argv[first], (int)cmd);
	close(pfd[1]);

	code = supervise(cmd, &set);
	if (pidfile != NULL)
		unlink(pidfile);
	return code;
}
