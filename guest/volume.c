/*
 * Volumes in the guest (docs/protocol.md, vol_mount and vol_umount).
 *
 * tenkid hot-plugs a volume as a virtio disk whose serial names it; the
 * agent finds the disk by that serial (/sys/block/vdX/serial), makes an
 * ext4 filesystem on a blank one, mounts it, and grows the filesystem when
 * the disk grew.  Before an unplug it syncs and unmounts; a mount still in
 * use is reported with the processes that hold it, never forced.
 *
 * The work (waiting for the disk, mkfs, resize2fs) takes seconds under
 * TCG, so each request runs in a child; its one report comes back through
 * a pipe, read when the child is reaped.
 */
#include "agent.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_VOLOPS	  16
#define DEVICE_WAIT_MS	  15000
#define VOL_SERIAL_MAX	  20
#define VOL_PATH_MAX	  255
#define EXT4_MAGIC	  0xEF53
#define EXT4_INCOMPAT_64B 0x80

/* What the child reports; < PIPE_BUF, so one atomic write. */
struct vol_report {
	int32_t err;
	char msg[480];
};

static struct {
	pid_t pid;
	json_int_t id;
	int fd;
} volops[MAX_VOLOPS];
static size_t nvolops;

static int fail(struct vol_report *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct vol_report *r, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	return r->err = err;
}

/* ---- checks of the request ---- */

static bool valid_serial(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > VOL_SERIAL_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s))
			return false;
	return true;
}

/* Absolute, not /, no . or .. components, no // and no control bytes. */
static bool valid_path(const char *p)
{
	size_t n = strlen(p);

	if (p[0] != '/' || n < 2 || n > VOL_PATH_MAX || strstr(p, "//") ||
	    p[n - 1] == '/')
		return false;
	for (const char *c = p; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return false;
	for (const char *c = p; c; c = strchr(c + 1, '/')) {
		if (strncmp(c, "/./", 3) == 0 || strcmp(c, "/.") == 0 ||
		    strncmp(c, "/../", 4) == 0 || strcmp(c, "/..") == 0)
			return false;
	}
	return true;
}

/* ---- the disk ---- */

static void read_line(const char *path, char *out, size_t n)
{
	ssize_t k;
	int fd;

	out[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	k = read(fd, out, n - 1);
	close(fd);
	out[k > 0 ? k : 0] = '\0';
	while (k > 0 && isspace((unsigned char)out[k - 1]))
		out[--k] = '\0';
}

/* /dev/vdX of the disk with serial, into dev[32]; waits up to wait_ms. */
static int find_disk(const char *serial, int64_t wait_ms, char *dev)
{
	int64_t deadline = now_ms() + wait_ms;
	char path[300], s[64];
	struct dirent *de;
	struct stat st;
	DIR *d;

	for (;;) {
		if ((d = opendir("/sys/block")) != NULL) {
			while ((de = readdir(d)) != NULL) {
				if (strncmp(de->d_name, "vd", 2) != 0 ||
				    strlen(de->d_name) > 8)
					continue;
				snprintf(path, sizeof(path),
					 "/sys/block/%s/serial", de->d_name);
				read_line(path, s, sizeof(s));
				if (strcmp(s, serial) != 0)
					continue;
				snprintf(dev, 32, "/dev/%s", de->d_name);
				/* devtmpfs makes the node a moment later. */
				if (stat(dev, &st) == 0 &&
				    S_ISBLK(st.st_mode)) {
					closedir(d);
					return 0;
				}
			}
			closedir(d);
		}
		if (now_ms() >= deadline)
			return -1;
		usleep(20 * 1000);
	}
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/*
 * What is on the disk: 1 ext4 (with its size in *fs_bytes), 0 blank (the
 * first 64 KiB are zeros: a new volume), -1 something else.
 */
static int probe(int fd, uint64_t *fs_bytes)
{
	static uint8_t b[65536];
	ssize_t n = pread(fd, b, sizeof(b), 0);
	const uint8_t *sb = b + 1024;

	if (n < 2048)
		return -1;
	if ((sb[56] | sb[57] << 8) == EXT4_MAGIC) {
		uint64_t blocks = le32(sb + 4);
		uint32_t log = le32(sb + 24);
		if (le32(sb + 0x60) & EXT4_INCOMPAT_64B)
			blocks |= (uint64_t)le32(sb + 0x150) << 32;
		*fs_bytes = log < 8 ? blocks << (10 + log) : 0;
		return 1;
	}
	for (ssize_t i = 0; i < n; i++)
		if (b[i] != 0)
			return -1;
	return 0;
}

/* Run argv (an e2fsprogs tool) and wait; its output goes to the console
 * only on failure, as a line in msg. */
static int run(struct vol_report *r, char *const argv[])
{
	int p[2], st;
	pid_t pid;
	char out[256];
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) < 0)
		return fail(r, EIO, "pipe: %s", strerror(errno));
	if ((pid = fork()) < 0) {
		close(p[0]);
		close(p[1]);
		return fail(r, EIO, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	n = read(p[0], out, sizeof(out) - 1);
	out[n > 0 ? n : 0] = '\0';
	close(p[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	for (char *c = out; *c; c++)
		if (*c == '\n')
			*c = ' ';
	return fail(r, EIO, "%s failed (status %d): %s", argv[0],
		    WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
}

static int mkdir_p(const char *path)
{
	char tmp[VOL_PATH_MAX + 1];

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *c = tmp + 1; *c; c++) {
		if (*c != '/')
			continue;
		*c = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -1;
		*c = '/';
	}
	return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

/* The source of the mount at path in /proc/self/mounts, or "" if none. */
static void mount_source(const char *path, char *src, size_t n)
{
	char dev[256], mnt[1024];
	FILE *f = fopen("/proc/self/mounts", "re");

	src[0] = '\0';
	if (f == NULL)
		return;
	while (fscanf(f, "%255s %1023s %*[^\n]", dev, mnt) == 2)
		if (strcmp(mnt, path) == 0)
			snprintf(src, n, "%s", dev);
	fclose(f);
}

static int do_mount(const char *serial, const char *path, bool ro,
		    struct vol_report *r)
{
	char dev[32], src[256];
	uint64_t fs = 0, disk = 0;
	int fd, kind;

	if (find_disk(serial, DEVICE_WAIT_MS, dev) < 0)
		return fail(r, ETIMEDOUT, "no disk with serial %s after %d s",
			    serial, DEVICE_WAIT_MS / 1000);
	mount_source(path, src, sizeof(src));
	if (strcmp(src, dev) == 0)
		return 0; /* already there: a repeated request */
	if (src[0])
		return fail(r, EBUSY, "%s is already a mount point (of %s)",
			    path, src);
	if ((fd = open(dev, O_RDONLY | O_CLOEXEC)) < 0)
		return fail(r, EIO, "%s: %s", dev, strerror(errno));
	kind = probe(fd, &fs);
	if (ioctl(fd, BLKGETSIZE64, &disk) < 0)
		disk = 0;
	close(fd);
	if (kind < 0)
		return fail(r, EINVAL,
			    "the volume holds data that is not ext4: not "
			    "formatting it");
	if (kind == 0 && ro)
		return fail(r, EINVAL,
			    "the volume is blank: attach it read-write once "
			    "to make its filesystem");
	if (kind == 0) {
		char *const mkfs[] = {"/sbin/mkfs.ext4",
				      "-q",
				      "-F",
				      "-m",
				      "0",
				      "-E",
				      "lazy_itable_init=1,lazy_journal_init=1",
				      dev,
				      NULL};
		alog(L_INFO, "volume %s: making ext4 on %s", serial, dev);
		if (run(r, mkfs) != 0)
			return r->err;
	}
	if (mkdir_p(path) < 0)
		return fail(r, errno == EROFS ? EACCES : EIO, "mkdir %s: %s",
			    path, strerror(errno));
	/* noload: a read-only mount replays no journal, so it writes
	 * nothing, which is what makes sharing read-only safe. */
	if (mount(dev, path, "ext4", ro ? MS_RDONLY : 0, ro ? "noload" : "") <
	    0)
		return fail(r, errno == EBUSY ? EBUSY : EIO,
			    "mount %s on %s: %s", dev, path, strerror(errno));
	/* The volume grew while detached: grow the filesystem, online. */
	if (!ro && kind == 1 && fs && disk > fs + (1u << 20)) {
		char *const rs[] = {"/sbin/resize2fs", dev, NULL};
		alog(L_INFO, "volume %s: growing ext4 from %llu to %llu bytes",
		     serial, (unsigned long long)fs, (unsigned long long)disk);
		if (run(r, rs) != 0) {
			alog(L_WARN, "volume %s: %s", serial, r->msg);
			r->err = 0;
			r->msg[0] = '\0';
		}
	}
	return 0;
}

/* "pid 12 (sleep), pid 14 (sh)": who has files, a cwd or a root there. */
static void holders(const char *path, char *out, size_t n)
{
	size_t plen = strlen(path), used = 0;
	char link[600], target[1024], comm[64];
	struct dirent *de, *fe;
	DIR *d, *fd;

	out[0] = '\0';
	if ((d = opendir("/proc")) == NULL)
		return;
	while ((de = readdir(d)) != NULL && used + 40 < n) {
		bool holds = false;
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		const char *names[] = {"cwd", "root"};
		for (int i = 0; i < 2 && !holds; i++) {
			snprintf(link, sizeof(link), "/proc/%s/%s", de->d_name,
				 names[i]);
			ssize_t k = readlink(link, target, sizeof(target) - 1);
			target[k > 0 ? k : 0] = '\0';
			holds = k > 0 && strncmp(target, path, plen) == 0 &&
				(target[plen] == '\0' || target[plen] == '/');
		}
		snprintf(link, sizeof(link), "/proc/%s/fd", de->d_name);
		if (!holds && (fd = opendir(link)) != NULL) {
			while (!holds && (fe = readdir(fd)) != NULL) {
				char l2[700];
				snprintf(l2, sizeof(l2), "%s/%s", link,
					 fe->d_name);
				ssize_t k =
				    readlink(l2, target, sizeof(target) - 1);
				target[k > 0 ? k : 0] = '\0';
				holds = k > 0 &&
					strncmp(target, path, plen) == 0 &&
					(target[plen] == '\0' ||
					 target[plen] == '/');
			}
			closedir(fd);
		}
		if (!holds)
			continue;
		snprintf(link, sizeof(link), "/proc/%s/comm", de->d_name);
		read_line(link, comm, sizeof(comm));
		used += (size_t)snprintf(out + used, n - used, "%spid %s (%s)",
					 used ? ", " : "", de->d_name, comm);
	}
	closedir(d);
}

static int do_umount(const char *serial, const char *path, bool lazy,
		     struct vol_report *r)
{
	char src[256], who[400];

	sync();
	mount_source(path, src, sizeof(src));
	if (!src[0])
		return 0; /* not mounted: nothing to do */
	if (strncmp(src, "/dev/vd", 7) != 0)
		return fail(r, EINVAL, "%s is not a volume's mount (%s)", path,
			    src);
	/* lazy: the disk goes away whatever holds the mount (a restored
	 * copy's stand-in); holders keep what they have open. */
	if (umount2(path, lazy ? MNT_DETACH : 0) == 0)
		return 0;
	if (errno != EBUSY)
		return fail(r, EIO, "umount %s: %s", path, strerror(errno));
	holders(path, who, sizeof(who));
	return fail(r, EBUSY, "%s is busy: %s", path,
		    who[0] ? who : "a process has files open there");
}

/* ---- requests ---- */

static void child_run(bool mount_it, const char *serial, const char *path,
		      bool ro, int repfd) __attribute__((noreturn));

static void child_run(bool mount_it, const char *serial, const char *path,
		      bool ro, int repfd)
{
	struct vol_report r;
	sigset_t none;

	memset(&r, 0, sizeof(r));
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	if (mount_it)
		do_mount(serial, path, ro, &r);
	else
		do_umount(serial, path, ro, &r);
	if (write(repfd, &r, sizeof(r)) != sizeof(r))
		_exit(1);
	_exit(0);
}

void volop_start(json_int_t id, bool mount_it, const char *serial,
		 const char *path, bool ro)
{
	int p[2];
	pid_t pid;

	if (!valid_serial(serial)) {
		resp_error(id, EINVAL, "serial: 1..%d letters or digits",
			   VOL_SERIAL_MAX);
		return;
	}
	if (!valid_path(path)) {
		resp_error(id, EINVAL,
			   "path: an absolute path without . or .. "
			   "components, at most %d bytes",
			   VOL_PATH_MAX);
		return;
	}
	if (nvolops == MAX_VOLOPS) {
		resp_error(id, EBUSY, "%d volume operations under way",
			   MAX_VOLOPS);
		return;
	}
	if (pipe2(p, O_CLOEXEC) < 0) {
		resp_error(id, EIO, "pipe: %s", strerror(errno));
		return;
	}
	if ((pid = fork()) < 0) {
		resp_error(id, EIO, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return;
	}
	if (pid == 0) {
		close(p[0]);
		child_run(mount_it, serial, path, ro, p[1]);
	}
	close(p[1]);
	volops[nvolops].pid = pid;
	volops[nvolops].id = id;
	volops[nvolops].fd = p[0];
	nvolops++;
}

bool volop_reaped(pid_t pid, int status)
{
	struct vol_report r;

	for (size_t i = 0; i < nvolops; i++) {
		if (volops[i].pid != pid)
			continue;
		/* The child wrote before it exited: no wait here. */
		set_nonblock(volops[i].fd);
		if (read(volops[i].fd, &r, sizeof(r)) != sizeof(r)) {
			r.err = EIO;
			snprintf(r.msg, sizeof(r.msg),
				 "the volume helper died (status %d)", status);
		}
		r.msg[sizeof(r.msg) - 1] = '\0';
		if (r.err == 0)
			resp_ok(volops[i].id, NULL);
		else
			resp_error(volops[i].id, r.err, "%s", r.msg);
		close(volops[i].fd);
		volops[i] = volops[--nvolops];
		return true;
	}
	return false;
}
