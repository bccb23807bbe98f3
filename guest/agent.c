/*
 * tenki-agent: main, options, signals and the event loop.
 *
 * Each turn of the loop: free what the last turn discarded, fire timers,
 * drain exited jobs' pipes, flush the port, rebuild the poll set from
 * scratch (so interest always matches state: a full window simply stops
 * polling its pipe), poll, dispatch.  Port input is dispatched last: it is
 * the only thing that creates or discards jobs, so every earlier entry of
 * the same turn still refers to a live job and fd.
 */
#include "agent.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define POLL_MAX	 (3 * AGENT_MAX_JOBS + 2 * AGENT_MAX_CONNS + 8)
#define POLL_MAX_WAIT_MS 60000

static struct pollfd pfds[POLL_MAX];
static struct {
	enum pe_kind kind;
	void *ptr;
} pents[POLL_MAX];
static size_t npfds;
static int sigfd = -1;

void poll_add(int fd, short events, enum pe_kind kind, void *ptr)
{
	if (fd < 0 || npfds >= POLL_MAX)
		return;
	pfds[npfds].fd = fd;
	pfds[npfds].events = events;
	pfds[npfds].revents = 0;
	pents[npfds].kind = kind;
	pents[npfds].ptr = ptr;
	npfds++;
}

static void usage(void)
{
	fprintf(stderr, "usage: tenki-agent [--no-init] [--debug] [--home DIR] "
			"[--port PATH | --listen PATH]\n");
}

/*
 * SIGCHLD always arrives through the signalfd.  As PID 1 the terminal
 * signals are ignored (the kernel would not deliver them by default
 * anyway, but a handler-less init must not die of one); with --no-init they
 * end the agent and its jobs, and the agent becomes a subreaper so job
 * orphans are reaped here as they would be by PID 1.
 */
static void signals_setup(void)
{
	sigset_t mask;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	if (agent_is_init) {
		signal(SIGTERM, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
	} else {
		sigaddset(&mask, SIGTERM);
		sigaddset(&mask, SIGINT);
		if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
			alog(L_WARN, "PR_SET_CHILD_SUBREAPER: %s",
			     strerror(errno));
	}
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0)
		alog(L_ERR, "signalfd: %s; reaping by polling",
		     strerror(errno));
}

/* A job holds four fds at most; the default 1024 would cap us early. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void shutdown_now(int sig)
{
	alog(L_INFO, "signal %d: killing %zu job(s) and exiting", sig, njobs);
	jobs_kill_all();
	port_cleanup();
	exit(0);
}

static void on_signalfd(void)
{
	struct signalfd_siginfo si;
	ssize_t n;

	for (;;) {
		n = read(sigfd, &si, sizeof(si));
		if (n != (ssize_t)sizeof(si))
			break;
		if (si.ssi_signo != SIGCHLD && !agent_is_init)
			shutdown_now((int)si.ssi_signo);
	}
	jobs_reap();
}

static void dispatch(size_t i)
{
	int fd = pfds[i].fd;
	struct ostream *os;
	struct istream *is;
	struct job *j;

	switch (pents[i].kind) {
	case PE_SIGNAL:
		on_signalfd();
		break;
	case PE_OUT:
		os = pents[i].ptr;
		if (os->fd == fd)
			ostream_read(os);
		break;
	case PE_IN:
		is = pents[i].ptr;
		if (is->fd == fd)
			istream_write(is);
		break;
	case PE_START:
		j = pents[i].ptr;
		if (j->state == JOB_STARTING && j->errfd == fd)
			job_on_errpipe(j);
		break;
	case PE_CONNECT:
		conn_on_connect(pents[i].ptr, fd);
		break;
	case PE_FSNOTIFY:
		fs_notify_flush();
		break;
	case PE_PORT:
	case PE_LISTEN:
		port_on_poll(pents[i].kind, fd, pfds[i].revents);
		break;
	}
}

static int poll_timeout(void)
{
	int64_t next = deadline_min(jobs_next_deadline(), port_next_deadline());
	next = deadline_min(next, conns_next_deadline());
	int64_t wait;

	if (next == 0)
		wait = POLL_MAX_WAIT_MS;
	else
		wait = next - now_ms();
	if (wait < 0)
		wait = 0;
	if (wait > POLL_MAX_WAIT_MS)
		wait = POLL_MAX_WAIT_MS;
	if (sigfd < 0 && wait > 100)
		wait = 100; /* no signalfd: reap on a short tick */
	return (int)wait;
}

static void loop_once(void)
{
	int64_t now = now_ms();
	int n;

	jobs_free_dead();
	conns_free_dead();
	jobs_timers(now);
	conns_timers(now);
	port_timer(now);
	chan_service();
	port_flush();

	npfds = 0;
	poll_add(sigfd, POLLIN, PE_SIGNAL, NULL);
	jobs_add_polls();
	conns_add_polls();
	fs_add_polls();
	port_add_polls(); /* last: see the comment at the top */

	n = poll(pfds, npfds, poll_timeout());
	if (n < 0) {
		if (errno != EINTR) {
			alog(L_ERR, "poll: %s", strerror(errno));
			usleep(100 * 1000); /* PID 1 keeps trying */
		}
		return;
	}
	if (sigfd < 0)
		jobs_reap();
	for (size_t i = 0; i < npfds && n > 0; i++) {
		if (pfds[i].revents == 0)
			continue;
		n--;
		dispatch(i);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"no-init", no_argument, NULL, 'n'},
	    {"port", required_argument, NULL, 'p'},
	    {"listen", required_argument, NULL, 'l'},
	    {"debug", no_argument, NULL, 'd'},
	    {"home", required_argument, NULL, 'H'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	enum port_mode mode = PORT_VIRTIO;
	const char *path = NULL;
	bool no_init = false;
	int c;

	/* As PID 1, stray kernel command-line words must not stop us. */
	opterr = getpid() != 1;
	while ((c = getopt_long(argc, argv, "np:l:dH:Vh", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'n':
			no_init = true;
			break;
		case 'p':
			mode = PORT_CONNECT;
			path = optarg;
			break;
		case 'l':
			mode = PORT_LISTEN;
			path = optarg;
			break;
		case 'd':
			log_verbose = 1;
			break;
		case 'H':
			fs_set_home(optarg); /* files/ serves DIR (tests) */
			break;
		case 'V':
		case 'h':
			if (getpid() == 1)
				break; /* init must not exit */
			if (c == 'V')
				printf("%s\n", AGENT_VERSION);
			else
				usage();
			return 0;
		default:
			if (getpid() == 1)
				break;
			usage();
			return 2;
		}
	}
	if (!no_init && getpid() != 1) {
		fprintf(stderr, "tenki-agent: not PID 1; use --no-init to run "
				"outside a guest's init\n");
		return 2;
	}
	agent_is_init = !no_init;

	if (agent_is_init)
		init_system();
	else
		init_std_fds();
	raise_nofile();
	signals_setup();
	if (port_init(mode, path) < 0 && !agent_is_init)
		return 1;
	alog(L_INFO, "%s started%s", AGENT_VERSION,
	     agent_is_init ? " as init" : "");
	for (;;)
		loop_once();
}
