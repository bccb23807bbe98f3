/*
 * PID 1 duties: the filesystems and network a job expects, and what the
 * host's HELLO carries (clock, hostname, entropy).
 *
 * The initramfs normally did most of this already; every step here checks
 * first and only fills in what is missing, and none of them is fatal: an
 * init that gives up panics the kernel, so a failure is logged and the
 * agent carries on with what it has.
 */
#include "agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GUEST_IF    "eth0"
#define GUEST_ADDR  "10.0.2.15"
#define GUEST_MASK  "255.255.255.0"
#define GUEST_GW    "10.0.2.2"
#define ENTROPY_MIN 32
#define ENTROPY_MAX 512

bool agent_is_init;

static const struct mountpoint {
	const char *target, *type;
	unsigned long flags;
	const char *data;
	mode_t mode;
} mounts[] = {
    {"/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555},
    {"/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555},
    {"/dev", "devtmpfs", MS_NOSUID, "mode=0755", 0755},
    {"/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
     "gid=5,mode=620,ptmxmode=0666", 0755},
    {"/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
    {"/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", 0755},
};

/* devtmpfs has no /dev/fd and friends; shells use them. */
static const char *const dev_links[][2] = {
    {"/dev/fd", "/proc/self/fd"},
    {"/dev/stdin", "/proc/self/fd/0"},
    {"/dev/stdout", "/proc/self/fd/1"},
    {"/dev/stderr", "/proc/self/fd/2"},
};

/* A mount point sits on another device than its parent directory. */
static bool is_mounted(const char *path)
{
	char parent[256];
	struct stat a, b;

	snprintf(parent, sizeof(parent), "%s/..", path);
	if (stat(path, &a) < 0 || stat(parent, &b) < 0)
		return false;
	return a.st_dev != b.st_dev;
}

static void mount_missing(void)
{
	const struct mountpoint *m;

	for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
		m = &mounts[i];
		if (is_mounted(m->target))
			continue;
		if (mkdir(m->target, m->mode) < 0 && errno != EEXIST)
			alog(L_WARN, "mkdir %s: %s", m->target,
			     strerror(errno));
		if (mount(m->type, m->target, m->type, m->flags, m->data) < 0)
			alog(L_ERR, "mount %s on %s: %s", m->type, m->target,
			     strerror(errno));
	}
	for (size_t i = 0; i < sizeof(dev_links) / sizeof(dev_links[0]); i++)
		if (symlink(dev_links[i][1], dev_links[i][0]) < 0 &&
		    errno != EEXIST)
			alog(L_WARN, "symlink %s: %s", dev_links[i][0],
			     strerror(errno));
}

static void fill_sin(struct sockaddr *sa, const char *addr)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)sa;

	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, addr, &sin->sin_addr);
}

static int if_up(int s, const char *name)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	if (ifr.ifr_flags & IFF_UP)
		return 0;
	ifr.ifr_flags |= IFF_UP;
	return ioctl(s, SIOCSIFFLAGS, &ifr);
}

static bool if_has_addr(int s, const char *name, const char *addr)
{
	struct sockaddr_in want;
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFADDR, &ifr) < 0)
		return false;
	fill_sin((struct sockaddr *)&want, addr);
	return ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr ==
	       want.sin_addr.s_addr;
}

static int if_set_addr(int s, const char *name, const char *addr,
		       const char *mask)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	fill_sin(&ifr.ifr_addr, addr);
	if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
		return -1;
	fill_sin(&ifr.ifr_netmask, mask);
	return ioctl(s, SIOCSIFNETMASK, &ifr);
}

static int add_default_route(int s, const char *dev, const char *gw)
{
	char devname[IFNAMSIZ];
	struct rtentry rt;

	memset(&rt, 0, sizeof(rt));
	snprintf(devname, sizeof(devname), "%s", dev);
	fill_sin(&rt.rt_dst, "0.0.0.0");
	fill_sin(&rt.rt_genmask, "0.0.0.0");
	fill_sin(&rt.rt_gateway, gw);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	rt.rt_dev = devname;
	if (ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* lo up; eth0, when there is a NIC, on libvirt's user-mode network. */
static void net_setup(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0) {
		alog(L_ERR, "socket: %s", strerror(errno));
		return;
	}
	if (if_up(s, "lo") < 0)
		alog(L_WARN, "lo up: %s", strerror(errno));
	if (if_nametoindex(GUEST_IF) == 0)
		goto out; /* no NIC: no network, by design */
	if (!if_has_addr(s, GUEST_IF, GUEST_ADDR) &&
	    if_set_addr(s, GUEST_IF, GUEST_ADDR, GUEST_MASK) < 0)
		alog(L_WARN, "%s address: %s", GUEST_IF, strerror(errno));
	if (if_up(s, GUEST_IF) < 0)
		alog(L_WARN, "%s up: %s", GUEST_IF, strerror(errno));
	if (add_default_route(s, GUEST_IF, GUEST_GW) < 0)
		alog(L_WARN, "default route: %s", strerror(errno));
out:
	close(s);
}

/*
 * Jobs get fresh pipes on 0..2, and pipe2 returns the lowest free fds, so
 * 0..2 must be taken before the first job or a job's pipe could land on
 * the agent's own stderr.
 */
void init_std_fds(void)
{
	int fd;

	for (int want = 0; want < 3; want++) {
		if (fcntl(want, F_GETFD) >= 0 || errno != EBADF)
			continue;
		fd = open("/dev/console", O_RDWR | O_NOCTTY);
		if (fd < 0)
			fd = open("/dev/null", O_RDWR);
		if (fd >= 0 && fd != want) {
			dup2(fd, want);
			close(fd);
		}
	}
}

/* "tenki.debug" on the kernel command line turns on debug logging. */
static void read_cmdline(void)
{
	char line[4096], *w, *save = NULL;
	ssize_t n;
	int fd;

	fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n <= 0)
		return;
	line[n] = '\0';
	for (w = strtok_r(line, " \n", &save); w != NULL;
	     w = strtok_r(NULL, " \n", &save))
		if (strcmp(w, "tenki.debug") == 0)
			log_verbose = 1;
}

void init_system(void)
{
	umask(022);
	mount_missing();
	read_cmdline();
	init_std_fds();
	net_setup();
	if (mkdir(EXEC_DEFAULT_CWD, 0755) < 0 && errno != EEXIST)
		alog(L_WARN, "mkdir %s: %s", EXEC_DEFAULT_CWD, strerror(errno));
}

static void set_clock(json_int_t ns)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	if (clock_settime(CLOCK_REALTIME, &ts) < 0)
		alog(L_WARN, "clock_settime: %s", strerror(errno));
}

static void set_hostname(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 64 ||
	    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			 "0123456789-._") != n) {
		alog(L_WARN, "HELLO hostname not valid; ignored");
		return;
	}
	if (sethostname(name, n) < 0)
		alog(L_WARN, "sethostname: %s", strerror(errno));
}

static void add_entropy(const char *b64, size_t len)
{
	struct rand_pool_info *info;
	ssize_t n;
	int fd;

	info = calloc(1, sizeof(*info) + ENTROPY_MAX);
	if (info == NULL)
		return;
	n = base64_decode(b64, len, (uint8_t *)info->buf, ENTROPY_MAX);
	if (n < ENTROPY_MIN) {
		alog(L_WARN,
		     "HELLO entropy not %d..%d bytes of base64; ignored",
		     ENTROPY_MIN, ENTROPY_MAX);
		goto out;
	}
	info->entropy_count = (int)n * 8;
	info->buf_size = (int)n;
	fd = open("/dev/random", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, RNDADDENTROPY, info) < 0)
		alog(L_WARN, "RNDADDENTROPY: %s", strerror(errno));
	/* Copies restored from one saved guest share its generator state:
	 * reseed now from the pool that just took the host's bytes, so each
	 * copy's output differs from its first read on. */
	else if (ioctl(fd, RNDRESEEDCRNG) < 0)
		alog(L_WARN, "RNDRESEEDCRNG: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
out:
	free(info);
}

/*
 * Only PID 1 touches the clock, the name and the pool: with --no-init the
 * agent runs on someone's host, which a test HELLO must not reconfigure.
 */
void init_apply_hello(json_t *hello)
{
	json_t *t = json_object_get(hello, "time_ns");
	json_t *h = json_object_get(hello, "hostname");
	json_t *e = json_object_get(hello, "entropy");

	if (!agent_is_init) {
		alog(L_DEBUG, "--no-init: HELLO clock, hostname and entropy "
			      "not applied");
		return;
	}
	if (json_is_integer(t) && json_integer_value(t) > 0)
		set_clock(json_integer_value(t));
	if (json_is_string(h))
		set_hostname(json_string_value(h));
	if (json_is_string(e))
		add_entropy(json_string_value(e), json_string_length(e));
}
