/* exec: a job made by reading exec/clone, started by closing cmd or argv,
 * its stdout and stderr streamed live to ours, then its status, exit code
 * and duration on stderr.  We exit with the job's code. */
#include "tenki.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int ctl_fd = -1;
static volatile sig_atomic_t interrupts;

struct pump {
	char *path;
	int out;
	int err; /* errno of a failed read, 0 at a clean end */
};

/* Copy a live stream to fd out until it ends. */
static void *pump_main(void *arg)
{
	struct pump *p = arg;
	char buf[65536];
	ssize_t n;
	int fd;

	fd = open(p->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		p->err = errno;
		return NULL;
	}
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			p->err = errno;
			break;
		}
		if (n == 0)
			break;
		if (write_all_fd(p->out, buf, (size_t)n) < 0) {
			/* our reader went away (`| head`): end the job as a
			 * pipeline would, instead of waiting for it forever */
			if (errno == EPIPE && ctl_fd >= 0 &&
			    write(ctl_fd, "kill 13\n", 8) < 0 &&
			    write(ctl_fd, "kill\n", 5) < 0)
				p->err = 0; /* it ended already */
			break;
		}
	}
	close(fd);
	return NULL;
}

/* ^C ends the job (TERM, then the tree's KILL 2 s later); a second one
 * sends KILL at once.  write(2) is safe in a handler. */
static void on_signal(int sig)
{
	static const char term[] = "kill\n", kill9[] = "kill KILL\n";
	ssize_t r;

	(void)sig;
	if (ctl_fd < 0)
		return;
	if (interrupts++ == 0)
		r = write(ctl_fd, term, sizeof(term) - 1);
	else
		r = write(ctl_fd, kill9, sizeof(kill9) - 1);
	(void)r;
}

static void put_job_file(const char *job, const char *file, const char *data,
			 struct errmark *m, const char *what)
{
	char *p = xasprintf("%s/%s", job, file);

	if (write_file(p, data, strlen(data), O_TRUNC) < 0) {
		int e = errno;
		rmdir(job); /* never started: leave no job behind */
		fail_op(m, e, "%s: %s", what, file);
	}
	free(p);
}

int cmd_exec(int argc, char **argv)
{
	enum { O_ENV = OPT_FIRST_CMD, O_CWD, O_STDIN };
	static const struct option opts[] = {
	    COMMON_OPTS,
	    {"session", required_argument, NULL, 's'},
	    {"timeout", required_argument, NULL, 't'},
	    {"shell", required_argument, NULL, 'c'},
	    {"env", required_argument, NULL, O_ENV},
	    {"cwd", required_argument, NULL, O_CWD},
	    {"stdin", no_argument, NULL, O_STDIN},
	    {NULL, 0, NULL, 0},
	};
	const struct cmd *me = find_cmd(sandbox_cmds, "exec");
	const char *sess = NULL, *timeout = NULL, *line = NULL, *cwd = NULL;
	bool fwd_stdin = false;
	char *env = xstrdup(""), *name, *sdir, *job, *what, *p, *jobname;
	char *status, *code, *argvtext;
	struct pump out = {0}, err = {0};
	pthread_t tout, terr;
	struct errmark m;
	struct sigaction sa;
	double dur = -1;
	json_t *info;
	int c, rc;

	/* "+": stop at the program's name, so `exec -s S ls -la` works */
	while ((c = getopt_long(argc, argv, "+hs:t:c:", opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		switch (c) {
		case 's':
			sess = optarg;
			break;
		case 't':
			timeout = optarg;
			break;
		case 'c':
			line = optarg;
			break;
		case O_ENV: {
			char *e;
			if (!strchr(optarg, '=') || strchr(optarg, '\n'))
				die_usage(me, "--env: expected KEY=VALUE");
			e = xasprintf("%s%s\n", env, optarg);
			free(env);
			env = e;
			break;
		}
		case O_CWD:
			cwd = optarg;
			break;
		case O_STDIN:
			fwd_stdin = true;
			break;
		}
	}
	if (!sess)
		die_usage(me, "--session is required");
	if (line && optind < argc)
		die_usage(me, "-c LINE and a program exclude each other");
	if (!line && optind >= argc)
		die_usage(me, "nothing to run: -c LINE or -- PROG ARGS...");
	argvtext = xstrdup("");
	for (int i = optind; i < argc; i++) {
		char *a;
		if (strchr(argv[i], '\n'))
			die("exec: an argument holds a newline, which argv "
			    "cannot carry; use -c");
		a = xasprintf("%s%s\n", argvtext, argv[i]);
		free(argvtext);
		argvtext = a;
	}

	name = session_arg(sess);
	sdir = tpath("sessions/%s", name);
	what = xasprintf("exec in session %s", name);
	p = xasprintf("%s/err", sdir);
	err_mark(&m, p);
	free(p);
	p = xasprintf("%s/exec/clone", sdir);
	jobname = read_line(p);
	if (!jobname)
		fail_op(&m, errno, "%s", what);
	free(p);
	job = xasprintf("%s/exec/%s", sdir, jobname);
	if (*env)
		put_job_file(job, "env", env, &m, what);
	if (cwd)
		put_job_file(job, "cwd", cwd, &m, what);
	if (timeout)
		put_job_file(job, "timeout", timeout, &m, what);
	if (line) {
		p = xasprintf("%s\n", line);
		put_job_file(job, "cmd", p, &m, what);
		free(p);
	} else {
		put_job_file(job, "argv", argvtext, &m, what);
	}

	p = xasprintf("%s/ctl", job);
	ctl_fd = open(p, O_WRONLY | O_CLOEXEC);
	free(p);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	out.path = xasprintf("%s/stdout", job);
	out.out = 1;
	err.path = xasprintf("%s/stderr", job);
	err.out = 2;
	pthread_create(&tout, NULL, pump_main, &out);
	pthread_create(&terr, NULL, pump_main, &err);

	if (fwd_stdin) {
		char buf[65536];
		ssize_t n;
		int fd;
		p = xasprintf("%s/stdin", job);
		fd = open(p, O_WRONLY | O_CLOEXEC);
		free(p);
		while (fd >= 0 && (n = read(0, buf, sizeof(buf))) != 0) {
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 || write_all_fd(fd, buf, (size_t)n) < 0)
				break; /* the job ended or stopped reading */
		}
		if (fd >= 0)
			close(fd);
	} else if (ctl_fd >= 0) {
		/* a job that reads stdin gets EOF, not a hang; a job that
		 * ended already refuses, which is fine */
		ssize_t r = write(ctl_fd, "eof\n", 4);
		(void)r;
	}
	pthread_join(tout, NULL);
	pthread_join(terr, NULL);

	p = xasprintf("%s/exit", job);
	code = read_line(p);
	while (!code && errno == EINTR)
		code = read_line(p);
	free(p);
	if (!code)
		fail_op(&m, errno, "%s: job %s", what, jobname);
	p = xasprintf("%s/status", job);
	status = read_line(p);
	free(p);
	p = xasprintf("%s/info.json", job);
	info = read_json(p);
	free(p);
	if (info && json_is_integer(json_object_get(info, "duration_ms")))
		dur = (double)json_integer_value(
			  json_object_get(info, "duration_ms")) /
		      1000.0;
	rc = atoi(code);
	if (status && strcmp(status, "timeout") == 0) {
		free(status);
		status = xasprintf("timed out after %s",
				   timeout ? timeout : "its timeout");
	}
	fprintf(stderr, "%s: job %s: status: %s, exit code: %d", progname,
		jobname, status ? status : "?", rc);
	if (dur >= 0)
		fprintf(stderr, ", duration: %.3fs", dur);
	fputc('\n', stderr);
	if (out.err || err.err)
		fprintf(stderr, "%s: job %s: output stream: %s\n", progname,
			jobname, strerror(out.err ? out.err : err.err));

	json_decref(info);
	free(status);
	free(code);
	free(out.path);
	free(err.path);
	free(job);
	free(jobname);
	free(what);
	free(sdir);
	free(name);
	free(env);
	free(argvtext);
	err_free(&m);
	return rc > 255 ? 255 : rc;
}
