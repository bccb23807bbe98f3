/*
 * tenkid: runs tenki's sandboxes and serves them as a file tree.
 * See tenkid(8).
 */
#include "evloop.h"
#include "fs.h"
#include "log.h"
#include "privs.h"
#include "model.h"
#include "ports.h"
#include "sshgw.h"
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: tenkid [--mount DIR] [--state DIR] [--libvirt URI]\n"
	    "              [--accel auto|kvm|tcg] [--images DIR]\n"
	    "              [--output-cap SIZE] [--boot-timeout DUR]\n"
	    "              [--agent-timeout DUR] [--overcommit RATIO]\n"
	    "              [--golden on|off] [--pool N] [--port-bind ADDR]\n"
	    "              [--preview ADDR:PORT|off]\n"
	    "              [--ssh ADDR:PORT|off] [--ssh-max-conns N]\n"
	    "              [--ssh-max-per-session N] [--ssh-max-startups N]\n"
	    "              [--ssh-max-auth-tries N] [--ssh-login-grace DUR]\n"
	    "              [--ssh-idle-timeout DUR]\n"
	    "              [--allow-other] [--foreground] [--debug]\n");
	exit(2);
}

static int parse_accel(const char *s)
{
	if (strcmp(s, "auto") == 0)
		return VMM_ACCEL_AUTO;
	if (strcmp(s, "kvm") == 0)
		return VMM_ACCEL_KVM;
	if (strcmp(s, "tcg") == 0)
		return VMM_ACCEL_TCG;
	fprintf(stderr, "tenkid: --accel must be auto, kvm or tcg\n");
	exit(2);
}

static bool allow_other;

/* Long-only options. */
enum {
	OPT_SSH = 256,
	OPT_SSH_CONNS,
	OPT_SSH_PER,
	OPT_SSH_STARTUPS,
	OPT_SSH_TRIES,
	OPT_SSH_GRACE,
	OPT_SSH_IDLE,
	OPT_GOLDEN,
	OPT_POOL,
};

static int ssh_count(const char *s)
{
	uint64_t v;

	if (parse_uint(s, 1, 4096, &v) < 0)
		usage();
	return (int)v;
}

static int64_t ssh_ms(const char *s, bool allow_zero)
{
	int64_t secs;

	if (parse_duration(s, allow_zero, &secs) < 0)
		usage();
	return secs * 1000;
}

/* The SSH gateway's options (sshgw.h); true when c was one. */
static bool ssh_option(int c, const char *arg)
{
	switch (c) {
	case OPT_SSH:
		if (sshgw_parse_listen(arg) < 0)
			usage();
		return true;
	case OPT_SSH_CONNS:
		sshgw_cfg.max_conns = ssh_count(arg);
		return true;
	case OPT_SSH_PER:
		sshgw_cfg.max_per_session = ssh_count(arg);
		return true;
	case OPT_SSH_STARTUPS:
		sshgw_cfg.max_startups = ssh_count(arg);
		return true;
	case OPT_SSH_TRIES:
		sshgw_cfg.max_auth_tries = ssh_count(arg);
		return true;
	case OPT_SSH_GRACE:
		sshgw_cfg.login_grace_ms = ssh_ms(arg, false);
		return true;
	case OPT_SSH_IDLE:
		sshgw_cfg.idle_timeout_ms = ssh_ms(arg, true);
		return true;
	}
	return false;
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"mount", required_argument, NULL, 'm'},
	    {"state", required_argument, NULL, 's'},
	    {"libvirt", required_argument, NULL, 'l'},
	    {"accel", required_argument, NULL, 'a'},
	    {"images", required_argument, NULL, 'i'},
	    {"output-cap", required_argument, NULL, 'o'},
	    {"boot-timeout", required_argument, NULL, 'b'},
	    {"agent-timeout", required_argument, NULL, 'T'},
	    {"overcommit", required_argument, NULL, 'O'},
	    {"golden", required_argument, NULL, OPT_GOLDEN},
	    {"pool", required_argument, NULL, OPT_POOL},
	    {"ssh", required_argument, NULL, OPT_SSH},
	    {"ssh-max-conns", required_argument, NULL, OPT_SSH_CONNS},
	    {"ssh-max-per-session", required_argument, NULL, OPT_SSH_PER},
	    {"ssh-max-startups", required_argument, NULL, OPT_SSH_STARTUPS},
	    {"ssh-max-auth-tries", required_argument, NULL, OPT_SSH_TRIES},
	    {"ssh-login-grace", required_argument, NULL, OPT_SSH_GRACE},
	    {"ssh-idle-timeout", required_argument, NULL, OPT_SSH_IDLE},
	    {"allow-other", no_argument, NULL, 'A'},
	    {"port-bind", required_argument, NULL, 'P'},
	    {"preview", required_argument, NULL, 'W'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"debug", no_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	int64_t secs;

	cfg.mount = "/tenki";
	cfg.state_dir = "/var/lib/tenki";
	cfg.uri = "qemu:///system";
	cfg.image_dir = "/var/cache/tenki/images";
	cfg.accel = VMM_ACCEL_AUTO;
	cfg.output_cap = 256ULL << 20;
	cfg.boot_timeout_ms = 180 * 1000;
	cfg.agent_timeout_ms = 120 * 1000;
	cfg.overcommit = 1.5;
	cfg.golden = true;
	cfg.pool = 2;
	sshgw_defaults();
	while ((c = getopt_long(argc, argv, "fd", opts, NULL)) != -1) {
		if (ssh_option(c, optarg))
			continue;
		switch (c) {
		case 'm':
			cfg.mount = optarg;
			break;
		case 's':
			cfg.state_dir = optarg;
			break;
		case 'l':
			cfg.uri = optarg;
			break;
		case 'a':
			cfg.accel = parse_accel(optarg);
			break;
		case 'i':
			cfg.image_dir = optarg;
			break;
		case 'o':
			if (parse_size(optarg, &cfg.output_cap) < 0)
				usage();
			break;
		case 'b':
			if (parse_duration(optarg, false, &secs) < 0)
				usage();
			cfg.boot_timeout_ms = secs * 1000;
			break;
		case 'T':
			if (parse_duration(optarg, false, &secs) < 0)
				usage();
			cfg.agent_timeout_ms = secs * 1000;
			break;
		case 'O': {
			char *end;
			cfg.overcommit = strtod(optarg, &end);
			if (*end || cfg.overcommit <= 0 || cfg.overcommit > 100)
				usage();
			break;
		}
		case OPT_GOLDEN:
			if (parse_bool(optarg, &cfg.golden) < 0)
				usage();
			break;
		case OPT_POOL: {
			uint64_t n;
			if (parse_uint(optarg, 0, 64, &n) < 0)
				usage();
			cfg.pool = (unsigned)n;
			break;
		}
		case 'A':
			allow_other = true;
			break;
		case 'P':
			cfg.port_bind = optarg;
			break;
		case 'W':
			cfg.preview = optarg;
			break;
		case 'f':
			cfg.foreground = true;
			break;
		case 'd':
			cfg.debug = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (strlen(cfg.state_dir) > 200 || cfg.state_dir[0] != '/')
		fatalx("--state must be an absolute path of at most 200 bytes");
}

/* The parent returns only once the tree is mounted (or failed), so that
 * "tenkid && ls /tenki" works. */
static int daemonize(void)
{
	int p[2];
	char status = 1;

	if (pipe2(p, O_CLOEXEC) < 0)
		fatal("pipe");
	switch (fork()) {
	case -1:
		fatal("fork");
	case 0:
		close(p[0]);
		setsid();
		return p[1];
	default:
		close(p[1]);
		if (read(p[0], &status, 1) != 1)
			status = 1;
		_exit(status);
	}
}

static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	if (!cfg.foreground)
		dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

static void lock_state_dir(void)
{
	char path[PATH_MAX], pid[32];
	int fd;

	if (mkdir_p(cfg.state_dir, 0711) < 0)
		fatal("%s", cfg.state_dir);
	/* qemu runs as its own user and must reach the session disks. */
	chmod(cfg.state_dir, 0711);
	snprintf(path, sizeof(path), "%s/tenkid.pid", cfg.state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		fatal("%s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		fatalx("another tenkid uses %s (see %s)", cfg.state_dir, path);
	(void)fchmod(fd, 0600); /* older state directories had 0644 */
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || write(fd, pid, strlen(pid)) < 0)
		fatal("%s", path);
	/* fd stays open: the lock lives as long as we do. */
}

/* Every session holds a few descriptors (its channel, open files,
 * running jobs' spools, later its ports and SSH channels): take the whole
 * hard limit rather than the shell's usual 1024. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warnx("%s: setrlimit: %s", __func__,
				  strerror(errno));
	}
}

int main(int argc, char **argv)
{
	char err[VMM_ERRLEN];
	struct vmm_host *host;
	sigset_t sigs;
	int ready_fd = -1, sig;

	parse_args(argc, argv);
	log_init(1, cfg.debug);
	if (!cfg.foreground) {
		ready_fd = daemonize();
		log_init(0, cfg.debug);
	}
	raise_fd_limit();
	/* Capabilities are per thread: drop them before any thread starts,
	 * so every thread (and libvirt's, libfuse's) runs with the rest. */
	privs_drop();
	/* Threads inherit this mask: signals are taken by sigwait below. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	lock_state_dir();
	if (mkdir_p(cfg.mount, 0755) < 0)
		fatal("%s", cfg.mount);
	host = vmm_open(cfg.uri, (enum vmm_accel)cfg.accel, err);
	if (!host)
		fatalx("cannot reach libvirt at %s: %s (is libvirtd running? "
		       "scripts/start-libvirt.sh)",
		       cfg.uri, err);
	if (evloop_init() < 0)
		fatal("event loop");
	if (model_init(host) < 0)
		fatal("state directory %s", cfg.state_dir);
	if (evloop_start() != 0)
		fatalx("cannot start the event loop");
	model_restore();
	ports_start();
	sshgw_start();
	if (fs_start(cfg.mount, allow_other) < 0)
		fatalx("cannot mount the tree at %s", cfg.mount);
	log_info("tenkid %s ready: tree %s, state %s, libvirt %s (%s)",
		 TENKI_VERSION, cfg.mount, cfg.state_dir, cfg.uri,
		 vmm_accel_name(host));
	if (ready_fd >= 0) {
		char ok = 0;
		if (write(ready_fd, &ok, 1) != 1)
			log_warnx("cannot tell the parent we are ready");
		close(ready_fd);
		detach_stdio();
	}
	while (sigwait(&sigs, &sig) == 0) {
		if (sig == SIGHUP)
			continue;
		log_info("signal %d: unmounting; VMs keep running", sig);
		break;
	}
	fs_exit();
	fs_wait_and_unmount();
	sshgw_stop();
	model_shutdown();
	/* Remote sessions' channel pumps end in libvirt's event loop once
	 * their agent connections are closed (model_shutdown). */
	vmm_channels_wait(2000);
	evloop_stop();
	/* A worker (a boot, a capture, a golden or template build) still
	 * uses the libvirt connection and the model: freeing them under it
	 * would crash.  Its work is recorded as in progress on disk, and the
	 * next tenkid finishes or undoes it, as after a crash. */
	int left = model_workers_wait(5000);
	if (left > 0) {
		log_info("%d worker(s) still running: left to the next start",
			 left);
		_exit(0);
	}
	vmm_close(host);
	return 0;
}
