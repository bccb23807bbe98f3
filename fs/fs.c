/* Mounting the tree and running the FUSE session loop. */
#include "fs.h"
#include "gfs.h"
#include "log.h"
#include "ops.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct fuse_session *se;
static pthread_t loop_thread;
static char *mounted_at;

static void *fs_loop(void *arg)
{
	struct fuse_loop_config lc = {.clone_fd = 0, .max_idle_threads = 16};

	if (fuse_session_loop_mt(se, &lc) != 0)
		log_warnx("FUSE loop ended with an error");
	/* Unmounted under us (fusermount -u) or failed: shut down as on
	 * SIGTERM, leaving VMs running. */
	if (!fuse_session_exited(se))
		kill(getpid(), SIGTERM);
	return NULL;
}

int fs_start(const char *mountpoint, bool allow_other)
{
	char *argv[] = {"tenkid",
			"-o",
			"fsname=tenki,subtype=tenki",
			"-o",
			allow_other ? "allow_other,default_permissions"
				    : "default_permissions",
			NULL};
	struct fuse_args args = FUSE_ARGS_INIT(5, argv);

	ops_set_owner(getuid(), getgid());
	se = fuse_session_new(&args, &tenki_ops, sizeof(tenki_ops), NULL);
	fuse_opt_free_args(&args);
	if (!se) {
		log_warnx("fuse_session_new failed");
		return -1;
	}
	if (fuse_session_mount(se, mountpoint) != 0) {
		log_warnx("cannot mount at %s (is something mounted there? "
			  "fusermount3 -u %s)",
			  mountpoint, mountpoint);
		fuse_session_destroy(se);
		se = NULL;
		return -1;
	}
	mounted_at = strdup(mountpoint);
	if (pthread_create(&loop_thread, NULL, fs_loop, NULL) != 0) {
		fuse_session_unmount(se);
		fuse_session_destroy(se);
		se = NULL;
		return -1;
	}
	gfs_start(se);
	log_info("tree mounted at %s", mountpoint);
	return 0;
}

void fs_exit(void)
{
	if (se)
		fuse_session_exit(se);
}

void fs_wait_and_unmount(void)
{
	if (!se)
		return;
	fuse_session_unmount(se);
	/*
	 * libfuse's workers sit in read(/dev/fuse) with every signal blocked
	 * (tenkid takes signals with sigwait), and a lazy unmount need not
	 * wake them: give the loop a moment, then leave it to process exit.
	 */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	bool notifier_done = gfs_stop();
	if (pthread_timedjoin_np(loop_thread, NULL, &until) == 0 &&
	    notifier_done) {
		fuse_session_destroy(se);
		se = NULL;
	}
	log_info("tree unmounted from %s", mounted_at);
	free(mounted_at);
}
