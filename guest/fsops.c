/*
 * File operations on the guest's home (docs/protocol.md, "File
 * operations"): FSREQ frames in, one FSRESP out for each (FORGET excepted).
 *
 * Both the host and the guest are untrusted here.  The host names files
 * only by nid and by single path components; the guest may swap any name
 * for a symlink at any moment.  So every node is an O_PATH|O_NOFOLLOW
 * descriptor reached from its parent one component at a time, names are
 * checked before use (1..255 bytes, no '/', not "." or ".."), and nothing
 * is ever resolved through a symlink: a symlink is a node of its own.  An
 * operation that needs a real descriptor reopens the node through
 * /proc/self/fd only once its type (which cannot change for an inode) says
 * it is not a symlink, or uses openat(node, ".") for directories.
 *
 * Nids and handles are slot numbers with a sequence number on top, so a
 * stale number never reaches a reused slot: after a FORGET to zero, or a
 * new HELLO, an old nid answers ESTALE and an old handle EBADF.  Both
 * tables are bounded; past them the answer is EMFILE.
 *
 * FIFOs, sockets and devices are never opened (ENXIO): an open could
 * block PID 1, or reach past the home through a device node.
 *
 * The operations are synchronous syscalls, one request at a time, answered
 * through the port's queue; the port decides when the next request may go
 * (port.c, may_take), so answers neither pile up nor starve job output.
 */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/inotify.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define NODE_BITS      16
#define MAX_NODES      (1u << NODE_BITS) /* slots; 0 is never used, 1 is home */
#define HANDLE_BITS    12
#define MAX_HANDLES    (1u << HANDLE_BITS) /* slots; 0 is never used */
#define NODE_BUCKETS   16384
#define NAME_MAX_LEN   255
#define TARGET_MAX_LEN 4095
#define COPY_MAX                                                               \
	(64u * 1024u * 1024u) /* per COPY_RANGE: keep the loop live            \
			       */
#define DIRENT_BUF (64u * 1024u)
#define RESP_HDR   12 /* u64 id, i32 err */
#define NO_ANSWER  (-1)

/* Descriptors the agent may need: every node, every handle, the jobs. */
#define FS_NOFILE (MAX_NODES + MAX_HANDLES + 4 * AGENT_MAX_JOBS + 1024)

struct node {
	uint64_t nid; /* 0: slot free */
	uint64_t refs;
	dev_t dev;
	ino_t ino;
	int fd;		/* O_PATH|O_NOFOLLOW */
	uint32_t next;	/* hash chain, or free list */
	int wd;		/* directories: inotify watch, 0: none */
	uint32_t wnext; /* chain of wd_buckets */
};

struct handle {
	uint64_t fh; /* 0: slot free */
	int fd;
	bool dir;
	off_t dpos; /* dir: where fd stands, as a cookie; -1: unknown */
	uint32_t next_free;
};

static const char *home = EXEC_DEFAULT_CWD;

static struct node nodes[MAX_NODES];
static uint32_t buckets[NODE_BUCKETS];
static uint32_t node_free, node_high = 2;
static uint64_t node_seq;

static struct handle handles[MAX_HANDLES];
static uint32_t handle_free, handle_high = 1;
static uint64_t handle_seq;

/* Change notifications (FSNOTIFY), when the host asked for them. */
#define NOTE_MASK                                                              \
	(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY |     \
	 IN_ATTRIB | IN_CLOSE_WRITE | IN_ONLYDIR)
static bool notify_on;
static int ifd = -1;
static uint32_t wd_buckets[NODE_BUCKETS];
static uint8_t notes[PROTO_MAX_NOTIFY];
static size_t notes_len, last_note; /* last_note: offset of the last record */
/* Nids of the INODE records in the frame being built (writes give one
 * event per write(2): the host needs one record). */
#define NOTED_SLOTS 64
static uint64_t noted[NOTED_SLOTS];
static bool watch_full_logged;

static uint8_t resp[PROTO_MAX_FS]; /* an FSRESP payload */
static uint8_t dirents[DIRENT_BUF];

void fs_set_home(const char *path)
{
	home = path;
}

/* ---- nodes ---- */

static uint32_t bucket_of(dev_t dev, ino_t ino)
{
	uint64_t h =
	    ((uint64_t)ino ^ ((uint64_t)dev << 29)) * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(h >> 40) % NODE_BUCKETS;
}

static struct node *node_get(uint64_t nid)
{
	uint32_t slot = (uint32_t)(nid & (MAX_NODES - 1));

	if (slot == 0 || slot >= node_high || nodes[slot].nid != nid)
		return NULL;
	return &nodes[slot];
}

static uint32_t node_slot(void)
{
	uint32_t slot = node_free;

	if (slot != 0) {
		node_free = nodes[slot].next;
		return slot;
	}
	if (node_high < MAX_NODES)
		return node_high++;
	return 0;
}

static void node_hash_insert(struct node *n)
{
	uint32_t b = bucket_of(n->dev, n->ino);

	n->next = buckets[b];
	buckets[b] = (uint32_t)(n - nodes);
}

static void node_hash_remove(struct node *n)
{
	uint32_t *pp = &buckets[bucket_of(n->dev, n->ino)];
	uint32_t slot = (uint32_t)(n - nodes);

	while (*pp != 0 && *pp != slot)
		pp = &nodes[*pp].next;
	if (*pp == slot)
		*pp = n->next;
}

/* ---- watches: the host caches what it looked up, so the agent tells it
 * when a known directory's entries or a known file change ---- */

static struct node *node_by_wd(int wd)
{
	for (uint32_t slot = wd_buckets[(uint32_t)wd % NODE_BUCKETS]; slot != 0;
	     slot = nodes[slot].wnext)
		if (nodes[slot].wd == wd && nodes[slot].nid != 0)
			return &nodes[slot];
	return NULL;
}

static void wd_forget(struct node *n)
{
	uint32_t *pp = &wd_buckets[(uint32_t)n->wd % NODE_BUCKETS];
	uint32_t slot = (uint32_t)(n - nodes);

	while (*pp != 0 && *pp != slot)
		pp = &nodes[*pp].wnext;
	if (*pp == slot)
		*pp = n->wnext;
	n->wd = 0;
}

/*
 * Watch directory node n.  Without a watch (the guest's watch limit) its
 * changes reach the host only when its cache times out.
 */
static void node_watch(struct node *n)
{
	char path[64];
	int wd;

	if (ifd < 0 || n->wd != 0)
		return;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", n->fd);
	wd = inotify_add_watch(ifd, path, NOTE_MASK);
	if (wd <= 0) {
		if (!watch_full_logged)
			alog(L_WARN, "files: inotify_add_watch: %s",
			     strerror(errno));
		watch_full_logged = true;
		return;
	}
	n->wd = wd;
	n->wnext = wd_buckets[(uint32_t)wd % NODE_BUCKETS];
	wd_buckets[(uint32_t)wd % NODE_BUCKETS] = (uint32_t)(n - nodes);
}

static void node_unwatch(struct node *n)
{
	if (n->wd == 0)
		return;
	inotify_rm_watch(ifd, n->wd);
	wd_forget(n);
}

static void node_drop(struct node *n);

/*
 * One more reference to the file behind fd (O_PATH, stat in st): the node
 * that already holds it, or a new one.  Takes fd over in every case.
 */
static struct node *node_add(int fd, const struct stat *st)
{
	struct node *n;
	uint32_t slot;

	for (slot = buckets[bucket_of(st->st_dev, st->st_ino)]; slot != 0;
	     slot = nodes[slot].next) {
		n = &nodes[slot];
		if (n->dev == st->st_dev && n->ino == st->st_ino) {
			close(fd);
			n->refs++;
			return n;
		}
	}
	slot = node_slot();
	if (slot == 0) {
		close(fd);
		errno = EMFILE;
		return NULL;
	}
	n = &nodes[slot];
	n->nid = (++node_seq << NODE_BITS) | slot;
	n->refs = 1;
	n->dev = st->st_dev;
	n->ino = st->st_ino;
	n->fd = fd;
	n->wd = 0;
	node_hash_insert(n);
	if (S_ISDIR(st->st_mode))
		node_watch(n);
	return n;
}

static void node_drop(struct node *n)
{
	uint32_t slot = (uint32_t)(n - nodes);

	node_unwatch(n);
	node_hash_remove(n);
	close(n->fd);
	n->nid = 0;
	n->fd = -1;
	n->next = node_free;
	node_free = slot;
}

/* Home is never dropped: the host never counts its references. */
static void node_unref(struct node *n, uint64_t count)
{
	if (n->nid == PROTO_FS_ROOT)
		return;
	if (count >= n->refs)
		node_drop(n);
	else
		n->refs -= count;
}

static int node_stat(const struct node *n, struct stat *st)
{
	return fstatat(n->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
}

/* ---- handles ---- */

static struct handle *handle_get(uint64_t fh)
{
	uint32_t slot = (uint32_t)(fh & (MAX_HANDLES - 1));

	if (slot == 0 || slot >= handle_high || handles[slot].fh != fh)
		return NULL;
	return &handles[slot];
}

static struct handle *handle_of_kind(uint64_t fh, bool dir)
{
	struct handle *h = handle_get(fh);

	return h != NULL && h->dir == dir ? h : NULL;
}

/* A handle for fd (taken over); NULL with errno EMFILE when full. */
static struct handle *handle_add(int fd, bool dir)
{
	struct handle *h;
	uint32_t slot = handle_free;

	if (slot != 0)
		handle_free = handles[slot].next_free;
	else if (handle_high < MAX_HANDLES)
		slot = handle_high++;
	if (slot == 0) {
		close(fd);
		errno = EMFILE;
		return NULL;
	}
	h = &handles[slot];
	h->fh = (++handle_seq << HANDLE_BITS) | slot;
	h->fd = fd;
	h->dir = dir;
	h->dpos = 0;
	return h;
}

static void handle_close(struct handle *h)
{
	close(h->fd);
	h->fh = 0;
	h->fd = -1;
	h->next_free = handle_free;
	handle_free = (uint32_t)(h - handles);
}

/* ---- the connection's state ---- */

/* Every node and handle costs a descriptor; PID 1 starts with 4096. */
static void raise_nofile_for_fs(void)
{
	static bool done;
	struct rlimit rl;

	if (done || getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	done = true;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < FS_NOFILE)
		rl.rlim_max = FS_NOFILE;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < FS_NOFILE)
		rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		return;
	/* Unprivileged (tests on the host): as far as the hard limit goes. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The home directory, made if missing (its parent too, e.g. /home). */
static int open_home(void)
{
	char parent[PATH_MAX];
	char *slash;
	int fd;

	fd = open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		return fd;
	snprintf(parent, sizeof(parent), "%s", home);
	slash = strrchr(parent, '/');
	if (slash != NULL && slash != parent) {
		*slash = '\0';
		mkdir(parent, 0755);
	}
	if (mkdir(home, 0755) < 0 && errno != EEXIST)
		return -1;
	return open(home, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

static void reset_nodes(void)
{
	for (uint32_t slot = 1; slot < node_high; slot++)
		if (nodes[slot].nid != 0)
			close(nodes[slot].fd);
	memset(nodes, 0, sizeof(nodes[0]) * node_high);
	memset(buckets, 0, sizeof(buckets));
	node_free = 0;
	node_high = 2;
}

static void reset_handles(void)
{
	for (uint32_t slot = 1; slot < handle_high; slot++)
		if (handles[slot].fh != 0)
			close(handles[slot].fd);
	memset(handles, 0, sizeof(handles[0]) * handle_high);
	handle_free = 0;
	handle_high = 1;
}

/* Watches belong to one connection, like the nodes they are on. */
static void notify_reset(void)
{
	if (ifd >= 0)
		close(ifd);
	ifd = -1;
	memset(wd_buckets, 0, sizeof(wd_buckets));
	notes_len = 0;
	memset(noted, 0, sizeof(noted));
	if (!notify_on)
		return;
	ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ifd < 0)
		alog(L_WARN,
		     "files: inotify_init1: %s; no change notifications",
		     strerror(errno));
}

/*
 * A new HELLO: nids and handles belong to one connection.  Home is opened
 * afresh too, in case the guest replaced it meanwhile.
 */
void fs_reset(void)
{
	struct node *root = &nodes[PROTO_FS_ROOT];
	struct stat st;
	int fd;

	raise_nofile_for_fs();
	reset_nodes();
	reset_handles();
	notify_reset();
	fd = open_home();
	if (fd < 0 || fstat(fd, &st) < 0) {
		alog(L_ERR, "files: cannot open %s: %s", home, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	root->nid = PROTO_FS_ROOT;
	root->refs = 1;
	root->dev = st.st_dev;
	root->ino = st.st_ino;
	root->fd = fd;
	node_hash_insert(root);
	node_watch(root);
}

/* ---- request fields and answers ---- */

/* All fields read and nothing left over? */
static bool rd_done(const struct proto_rd *r)
{
	return !r->bad && r->left == 0;
}

/* A name of one path component, NUL-terminated into out[256]. */
static int name_copy(const uint8_t *s, uint16_t len, char *out)
{
	if (len == 0 || len > NAME_MAX_LEN || memchr(s, '/', len) != NULL ||
	    memchr(s, '\0', len) != NULL)
		return EINVAL;
	memcpy(out, s, len);
	out[len] = '\0';
	if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
		return EINVAL;
	return 0;
}

/* FUSE decodes rdev the kernel's way (new_decode_dev). */
static uint32_t encode_rdev(dev_t rdev)
{
	uint32_t ma = major(rdev), mi = minor(rdev);

	return (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
}

static void wr_stat(struct proto_wr *w, const struct stat *st)
{
	struct proto_attr a = {
	    .ino = st->st_ino,
	    .size = (uint64_t)st->st_size,
	    .blocks = (uint64_t)st->st_blocks,
	    .atime = st->st_atim.tv_sec,
	    .mtime = st->st_mtim.tv_sec,
	    .ctime = st->st_ctim.tv_sec,
	    .atime_ns = (uint32_t)st->st_atim.tv_nsec,
	    .mtime_ns = (uint32_t)st->st_mtim.tv_nsec,
	    .ctime_ns = (uint32_t)st->st_ctim.tv_nsec,
	    .mode = st->st_mode,
	    .nlink = (uint32_t)st->st_nlink,
	    .uid = st->st_uid,
	    .gid = st->st_gid,
	    .rdev = encode_rdev(st->st_rdev),
	    .blksize = (uint32_t)st->st_blksize,
	};

	proto_wr_attr(w, &a);
}

static int wr_node_attr(struct proto_wr *w, const struct node *n)
{
	struct stat st;

	if (node_stat(n, &st) < 0)
		return errno;
	wr_stat(w, &st);
	return 0;
}

/* An entry answer: "u64 nid, attr". */
static void wr_entry(struct proto_wr *w, const struct node *n,
		     const struct stat *st)
{
	proto_wr_u64(w, n->nid);
	wr_stat(w, st);
}

static void proc_path(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/*
 * Look name up in dir and add a reference to its node; never follows a
 * symlink.  On success *out is the node and st its attributes.
 */
static int lookup_fd(int dirfd, const char *name, struct node **out,
		     struct stat *st)
{
	int fd;

	fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		int e = errno;
		close(fd);
		return e;
	}
	*out = node_add(fd, st);
	return *out != NULL ? 0 : errno;
}

static int lookup_at(struct node *dir, const char *name, struct node **out,
		     struct stat *st)
{
	return lookup_fd(dir->fd, name, out, st);
}

/* Creation ops: look the new name up and answer with its entry. */
static int answer_new(struct proto_wr *w, struct node *dir, const char *name)
{
	struct node *n;
	struct stat st;
	int e;

	e = lookup_at(dir, name, &n, &st);
	if (e == 0)
		wr_entry(w, n, &st);
	return e;
}

/* ---- operations ---- */

static int op_lookup(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t parent = proto_rd_u64(r);
	uint16_t len;
	const uint8_t *s = proto_rd_str(r, &len);
	char name[NAME_MAX_LEN + 1];
	struct node *dir;

	if (!rd_done(r) || name_copy(s, len, name) != 0)
		return EINVAL;
	if ((dir = node_get(parent)) == NULL)
		return ESTALE;
	return answer_new(w, dir, name);
}

static int op_forget(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t nid = proto_rd_u64(r);
	uint64_t count = proto_rd_u64(r);
	struct node *n;

	if (!rd_done(r))
		return EINVAL;
	if ((n = node_get(nid)) != NULL)
		node_unref(n, count);
	return NO_ANSWER;
}

static int op_getattr(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t nid = proto_rd_u64(r);
	struct node *n;

	if (!rd_done(r))
		return EINVAL;
	if ((n = node_get(nid)) == NULL)
		return ESTALE;
	return wr_node_attr(w, n);
}

struct setattr {
	uint32_t valid, mode, uid, gid;
	uint64_t size;
	int64_t atime, mtime;
	uint32_t atime_ns, mtime_ns;
};

static int set_owner(struct node *n, const struct setattr *sa)
{
	uid_t uid = sa->valid & FS_SET_UID ? sa->uid : (uid_t)-1;
	gid_t gid = sa->valid & FS_SET_GID ? sa->gid : (gid_t)-1;

	if (fchownat(n->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) <
	    0)
		return errno;
	return 0;
}

/* A symlink's mode cannot change on Linux; anything else via /proc. */
static int set_mode(struct node *n, const struct stat *st,
		    const struct setattr *sa)
{
	char path[64];

	if (S_ISLNK(st->st_mode))
		return EOPNOTSUPP;
	proc_path(path, sizeof(path), n->fd);
	if (chmod(path, sa->mode & 07777) < 0)
		return errno;
	return 0;
}

/* truncate(2) on the /proc link opens nothing: no FIFO can block us. */
static int set_size(struct node *n, struct handle *h, const struct stat *st,
		    const struct setattr *sa)
{
	char path[64];

	if (sa->size > INT64_MAX)
		return EINVAL;
	if (h != NULL)
		return ftruncate(h->fd, (off_t)sa->size) < 0 ? errno : 0;
	if (S_ISLNK(st->st_mode))
		return EINVAL;
	proc_path(path, sizeof(path), n->fd);
	if (truncate(path, (off_t)sa->size) < 0)
		return errno;
	return 0;
}

static int set_times(struct node *n, const struct setattr *sa)
{
	struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};

	if (sa->valid & FS_SET_ATIME_NOW)
		ts[0].tv_nsec = UTIME_NOW;
	else if (sa->valid & FS_SET_ATIME)
		ts[0] = (struct timespec){sa->atime, sa->atime_ns};
	if (sa->valid & FS_SET_MTIME_NOW)
		ts[1].tv_nsec = UTIME_NOW;
	else if (sa->valid & FS_SET_MTIME)
		ts[1] = (struct timespec){sa->mtime, sa->mtime_ns};
	if ((sa->valid & FS_SET_ATIME) && !(sa->valid & FS_SET_ATIME_NOW) &&
	    sa->atime_ns >= 1000000000u)
		return EINVAL;
	if ((sa->valid & FS_SET_MTIME) && !(sa->valid & FS_SET_MTIME_NOW) &&
	    sa->mtime_ns >= 1000000000u)
		return EINVAL;
	if (utimensat(n->fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return errno;
	return 0;
}

/* Owner first (it clears set-id bits), then mode, size, and times last
 * (a truncate moves mtime). */
static int apply_setattr(struct node *n, struct handle *h,
			 const struct setattr *sa)
{
	const uint32_t times =
	    FS_SET_ATIME | FS_SET_MTIME | FS_SET_ATIME_NOW | FS_SET_MTIME_NOW;
	struct stat st;
	int e = 0;

	if (node_stat(n, &st) < 0)
		return errno;
	if (sa->valid & (FS_SET_UID | FS_SET_GID))
		e = set_owner(n, sa);
	if (e == 0 && (sa->valid & FS_SET_MODE))
		e = set_mode(n, &st, sa);
	if (e == 0 && (sa->valid & FS_SET_SIZE))
		e = set_size(n, h, &st, sa);
	if (e == 0 && (sa->valid & times))
		e = set_times(n, sa);
	return e;
}

static int op_setattr(struct proto_rd *r, struct proto_wr *w)
{
	struct setattr sa;
	struct handle *h = NULL;
	struct node *n;
	uint64_t nid, fh;
	int e;

	nid = proto_rd_u64(r);
	fh = proto_rd_u64(r);
	sa.valid = proto_rd_u32(r);
	sa.mode = proto_rd_u32(r);
	sa.uid = proto_rd_u32(r);
	sa.gid = proto_rd_u32(r);
	sa.size = proto_rd_u64(r);
	sa.atime = (int64_t)proto_rd_u64(r);
	sa.atime_ns = proto_rd_u32(r);
	sa.mtime = (int64_t)proto_rd_u64(r);
	sa.mtime_ns = proto_rd_u32(r);
	if (!rd_done(r))
		return EINVAL;
	if ((n = node_get(nid)) == NULL)
		return ESTALE;
	if (fh != 0 && (h = handle_of_kind(fh, false)) == NULL)
		return EBADF;
	if ((e = apply_setattr(n, h, &sa)) != 0)
		return e;
	return wr_node_attr(w, n);
}

static int op_readlink(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t nid = proto_rd_u64(r);
	char target[TARGET_MAX_LEN + 1];
	struct node *n;
	struct stat st;
	ssize_t len;

	if (!rd_done(r))
		return EINVAL;
	if ((n = node_get(nid)) == NULL)
		return ESTALE;
	/* readlink(2)'s answer for anything else (readlinkat "" says ENOENT) */
	if (node_stat(n, &st) < 0)
		return errno;
	if (!S_ISLNK(st.st_mode))
		return EINVAL;
	len = readlinkat(n->fd, "", target, sizeof(target));
	if (len < 0)
		return errno;
	if (len == 0 || (size_t)len > TARGET_MAX_LEN)
		return ENAMETOOLONG;
	proto_wr_bytes(w, target, (size_t)len);
	return 0;
}

/* umask is ours to clear for a moment: one thread, and jobs fork later. */
static int op_mkdir(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t parent = proto_rd_u64(r);
	uint32_t mode = proto_rd_u32(r);
	uint16_t len;
	const uint8_t *s = proto_rd_str(r, &len);
	char name[NAME_MAX_LEN + 1];
	struct node *dir;
	mode_t old;
	int rc;

	if (!rd_done(r) || name_copy(s, len, name) != 0)
		return EINVAL;
	if ((dir = node_get(parent)) == NULL)
		return ESTALE;
	old = umask(0);
	rc = mkdirat(dir->fd, name, mode & 07777);
	umask(old);
	if (rc < 0)
		return errno;
	return answer_new(w, dir, name);
}

static int remove_op(struct proto_rd *r, int flags)
{
	uint64_t parent = proto_rd_u64(r);
	uint16_t len;
	const uint8_t *s = proto_rd_str(r, &len);
	char name[NAME_MAX_LEN + 1];
	struct node *dir;

	if (!rd_done(r) || name_copy(s, len, name) != 0)
		return EINVAL;
	if ((dir = node_get(parent)) == NULL)
		return ESTALE;
	if (unlinkat(dir->fd, name, flags) < 0)
		return errno;
	return 0;
}

static int op_unlink(struct proto_rd *r, struct proto_wr *w)
{
	return remove_op(r, 0);
}

static int op_rmdir(struct proto_rd *r, struct proto_wr *w)
{
	return remove_op(r, AT_REMOVEDIR);
}

static int op_symlink(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t parent = proto_rd_u64(r);
	uint16_t nlen, tlen;
	const uint8_t *s = proto_rd_str(r, &nlen);
	const uint8_t *t = proto_rd_str(r, &tlen);
	char name[NAME_MAX_LEN + 1], target[TARGET_MAX_LEN + 1];
	struct node *dir;

	if (!rd_done(r) || name_copy(s, nlen, name) != 0)
		return EINVAL;
	if (tlen == 0 || memchr(t, '\0', tlen) != NULL)
		return EINVAL;
	if (tlen > TARGET_MAX_LEN)
		return ENAMETOOLONG;
	memcpy(target, t, tlen);
	target[tlen] = '\0';
	if ((dir = node_get(parent)) == NULL)
		return ESTALE;
	if (symlinkat(target, dir->fd, name) < 0)
		return errno;
	return answer_new(w, dir, name);
}

static int op_rename(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t parent, newparent;
	uint16_t len, newlen;
	const uint8_t *s, *ns;
	char name[NAME_MAX_LEN + 1], newname[NAME_MAX_LEN + 1];
	struct node *dir, *newdir;
	uint32_t flags;

	parent = proto_rd_u64(r);
	s = proto_rd_str(r, &len);
	newparent = proto_rd_u64(r);
	ns = proto_rd_str(r, &newlen);
	flags = proto_rd_u32(r);
	if (!rd_done(r) || name_copy(s, len, name) != 0 ||
	    name_copy(ns, newlen, newname) != 0 ||
	    (flags & ~(uint32_t)(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0)
		return EINVAL;
	if ((dir = node_get(parent)) == NULL ||
	    (newdir = node_get(newparent)) == NULL)
		return ESTALE;
	if (renameat2(dir->fd, name, newdir->fd, newname, flags) < 0)
		return errno;
	return 0;
}

static int op_link(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t nid = proto_rd_u64(r);
	uint64_t newparent = proto_rd_u64(r);
	uint16_t len;
	const uint8_t *s = proto_rd_str(r, &len);
	char name[NAME_MAX_LEN + 1];
	struct node *n, *dir;

	if (!rd_done(r) || name_copy(s, len, name) != 0)
		return EINVAL;
	if ((n = node_get(nid)) == NULL || (dir = node_get(newparent)) == NULL)
		return ESTALE;
	if (linkat(n->fd, "", dir->fd, name, AT_EMPTY_PATH) < 0)
		return errno;
	return answer_new(w, dir, name);
}

/* What may open a node: regular files only (a FIFO would block PID 1). */
static int openable(const struct stat *st)
{
	if (S_ISREG(st->st_mode))
		return 0;
	if (S_ISLNK(st->st_mode))
		return ELOOP;
	if (S_ISDIR(st->st_mode))
		return EISDIR;
	return ENXIO;
}

static int open_flags(uint32_t flags, int *out)
{
	if ((flags & O_ACCMODE) == O_ACCMODE)
		return EINVAL;
	*out = (int)(flags & (O_ACCMODE | O_APPEND | O_TRUNC)) | O_CLOEXEC;
	return 0;
}

static int op_open(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t nid = proto_rd_u64(r);
	uint32_t flags = proto_rd_u32(r);
	char path[64];
	struct handle *h;
	struct node *n;
	struct stat st;
	int fd, oflags, e;

	if (!rd_done(r) || open_flags(flags, &oflags) != 0)
		return EINVAL;
	if ((n = node_get(nid)) == NULL)
		return ESTALE;
	if (node_stat(n, &st) < 0)
		return errno;
	if ((e = openable(&st)) != 0)
		return e;
	/* A regular file's inode stays one: the /proc link cannot lead
	 * anywhere else. */
	proc_path(path, sizeof(path), n->fd);
	fd = open(path, oflags);
	if (fd < 0)
		return errno;
	if ((h = handle_add(fd, false)) == NULL)
		return errno;
	proto_wr_u64(w, h->fh);
	return 0;
}

/*
 * The open half of CREATE.  O_NONBLOCK so an existing FIFO under the name
 * cannot block us; anything but a regular file is refused once opened.
 */
static int create_open(struct node *dir, const char *name, uint32_t flags,
		       uint32_t mode, int *fdp, struct stat *st)
{
	int oflags, fd, e;
	mode_t old;

	if ((flags & O_ACCMODE) == O_ACCMODE)
		return EINVAL;
	oflags = (int)(flags & (O_ACCMODE | O_APPEND | O_TRUNC | O_EXCL)) |
		 O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
	old = umask(0);
	fd = openat(dir->fd, name, oflags, mode & 07777);
	umask(old);
	if (fd < 0)
		return errno;
	if (fstat(fd, st) < 0) {
		e = errno;
		close(fd);
		return e;
	}
	if ((e = openable(st)) != 0) {
		close(fd);
		return e;
	}
	*fdp = fd;
	return 0;
}

static int op_create(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t parent = proto_rd_u64(r);
	uint32_t mode = proto_rd_u32(r);
	uint32_t flags = proto_rd_u32(r);
	uint16_t len;
	const uint8_t *s = proto_rd_str(r, &len);
	char name[NAME_MAX_LEN + 1], path[64];
	struct node *dir, *n;
	struct handle *h;
	struct stat st;
	int fd = -1, pfd, e;

	if (!rd_done(r) || name_copy(s, len, name) != 0)
		return EINVAL;
	if ((dir = node_get(parent)) == NULL)
		return ESTALE;
	if ((e = create_open(dir, name, flags, mode, &fd, &st)) != 0)
		return e;
	/* The node is the inode we opened, whatever the name is now. */
	proc_path(path, sizeof(path), fd);
	pfd = open(path, O_PATH | O_CLOEXEC);
	if (pfd < 0) {
		e = errno;
		close(fd);
		return e;
	}
	if ((n = node_add(pfd, &st)) == NULL) {
		e = errno;
		close(fd);
		return e;
	}
	if ((h = handle_add(fd, false)) == NULL) {
		e = errno;
		node_unref(n, 1);
		return e;
	}
	wr_entry(w, n, &st);
	proto_wr_u64(w, h->fh);
	return 0;
}

static int op_read(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t fh = proto_rd_u64(r);
	uint64_t off = proto_rd_u64(r);
	uint32_t size = proto_rd_u32(r);
	struct handle *h;
	uint8_t *p;
	size_t got = 0;
	ssize_t n;

	if (!rd_done(r) || size > PROTO_FS_IO_MAX || off > INT64_MAX)
		return EINVAL;
	if ((h = handle_of_kind(fh, false)) == NULL)
		return EBADF;
	if (w->cap - w->len < size)
		return EIO; /* cannot happen: the answer buffer holds 1 MiB */
	p = w->p + w->len;
	/* A short answer means end of file to FUSE: read all there is. */
	while (got < size) {
		n = pread(h->fd, p + got, size - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && got == 0)
			return errno;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	w->len += got; /* read in place, not copied */
	return 0;
}

static int op_write(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t fh = proto_rd_u64(r);
	uint64_t off = proto_rd_u64(r);
	const uint8_t *data = r->p;
	size_t len = r->left, done = 0;
	struct handle *h;
	ssize_t n;

	if (r->bad || len > PROTO_FS_IO_MAX || off > INT64_MAX)
		return EINVAL;
	if ((h = handle_of_kind(fh, false)) == NULL)
		return EBADF;
	while (done < len) {
		n = pwrite(h->fd, data + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && done == 0)
			return errno;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	proto_wr_u32(w, (uint32_t)done);
	return 0;
}

static int release_op(struct proto_rd *r, bool dir)
{
	uint64_t fh = proto_rd_u64(r);
	struct handle *h;

	if (!rd_done(r))
		return EINVAL;
	if ((h = handle_of_kind(fh, dir)) == NULL)
		return EBADF;
	handle_close(h);
	return 0;
}

static int op_release(struct proto_rd *r, struct proto_wr *w)
{
	return release_op(r, false);
}

static int op_releasedir(struct proto_rd *r, struct proto_wr *w)
{
	return release_op(r, true);
}

static int op_fsync(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t fh = proto_rd_u64(r);
	uint32_t datasync = proto_rd_u32(r);
	struct handle *h;
	int rc;

	if (!rd_done(r))
		return EINVAL;
	if ((h = handle_get(fh)) == NULL)
		return EBADF;
	rc = datasync ? fdatasync(h->fd) : fsync(h->fd);
	return rc < 0 ? errno : 0;
}

/* openat(dir, ".") needs no /proc and cannot leave the directory. */
static int op_opendir(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t nid = proto_rd_u64(r);
	struct handle *h;
	struct node *n;
	struct stat st;
	int fd;

	if (!rd_done(r))
		return EINVAL;
	if ((n = node_get(nid)) == NULL)
		return ESTALE;
	if (node_stat(n, &st) < 0)
		return errno;
	if (S_ISLNK(st.st_mode))
		return ELOOP;
	if (!S_ISDIR(st.st_mode))
		return ENOTDIR;
	fd = openat(n->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if ((h = handle_add(fd, true)) == NULL)
		return errno;
	proto_wr_u64(w, h->fh);
	return 0;
}

static bool dot_or_dotdot(const char *name)
{
	return name[0] == '.' &&
	       (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

/*
 * Emit the entries of one getdents64 batch that fit.  Returns false when
 * the answer is full (the directory then stands past the last entry
 * sent, so its position is unknown).
 */
static bool emit_dirents(struct handle *h, struct proto_wr *w, size_t size,
			 const uint8_t *buf, size_t n, bool plus)
{
	const struct dirent64 *d;
	size_t off, nlen;
	struct node *child;
	struct stat st;

	for (off = 0; off < n; off += d->d_reclen) {
		d = (const struct dirent64 *)(buf + off);
		if (dot_or_dotdot(d->d_name)) {
			h->dpos = d->d_off;
			continue;
		}
		nlen = strnlen(d->d_name, NAME_MAX_LEN + 1);
		if (nlen == 0 || nlen > NAME_MAX_LEN)
			continue;
		if (w->len + 8 + 8 + 4 + 2 + nlen +
			(plus ? 8 + PROTO_FS_ATTR_LEN : 0) >
		    size) {
			h->dpos = -1;
			return false;
		}
		proto_wr_u64(w, (uint64_t)d->d_off);
		proto_wr_u64(w, d->d_ino);
		proto_wr_u32(w, d->d_type);
		proto_wr_str(w, d->d_name, (uint16_t)nlen);
		h->dpos = d->d_off;
		if (!plus)
			continue;
		/* READDIRPLUS: the entry as LOOKUP would answer it; nid 0
		 * when it went meanwhile (or the node table is full). */
		if (lookup_fd(h->fd, d->d_name, &child, &st) == 0) {
			wr_entry(w, child, &st);
		} else {
			memset(&st, 0, sizeof(st));
			proto_wr_u64(w, 0);
			wr_stat(w, &st);
		}
	}
	return true;
}

/*
 * getdents64 on the handle's descriptor; cookies are d_off values, the
 * same numbers telldir gives, and lseek is seekdir.  No DIR* per handle:
 * glibc's 32 KiB buffer times 4096 handles would be 128 MiB of guest RAM.
 * Each batch asks for about as many bytes as the answer has room for, so
 * a small READDIR does not read a big directory whole.
 */
static int readdir_op(struct proto_rd *r, struct proto_wr *w, bool plus)
{
	uint64_t fh = proto_rd_u64(r);
	uint64_t off = proto_rd_u64(r);
	uint32_t size = proto_rd_u32(r);
	struct handle *h;
	size_t want;
	ssize_t n;

	if (!rd_done(r) || size > PROTO_FS_IO_MAX || off > INT64_MAX)
		return EINVAL;
	if ((h = handle_of_kind(fh, true)) == NULL)
		return EBADF;
	if (h->dpos != (off_t)off) {
		if (lseek(h->fd, (off_t)off, SEEK_SET) < 0)
			return errno;
		h->dpos = (off_t)off;
	}
	for (;;) {
		want = size - w->len + 512;
		if (want > sizeof(dirents))
			want = sizeof(dirents);
		n = getdents64(h->fd, dirents, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return w->len > 0 ? 0 : errno;
		if (n == 0 ||
		    !emit_dirents(h, w, size, dirents, (size_t)n, plus))
			break;
	}
	return 0;
}

static int op_readdir(struct proto_rd *r, struct proto_wr *w)
{
	return readdir_op(r, w, false);
}

static int op_readdirplus(struct proto_rd *r, struct proto_wr *w)
{
	return readdir_op(r, w, true);
}

static int op_statfs(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t nid = proto_rd_u64(r);
	struct statvfs v;
	struct node *n;

	if (!rd_done(r))
		return EINVAL;
	if ((n = node_get(nid)) == NULL)
		return ESTALE;
	if (fstatvfs(n->fd, &v) < 0)
		return errno;
	proto_wr_u64(w, v.f_blocks);
	proto_wr_u64(w, v.f_bfree);
	proto_wr_u64(w, v.f_bavail);
	proto_wr_u64(w, v.f_files);
	proto_wr_u64(w, v.f_ffree);
	proto_wr_u32(w, (uint32_t)v.f_bsize);
	proto_wr_u32(w, (uint32_t)v.f_frsize);
	proto_wr_u32(w, (uint32_t)v.f_namemax);
	return 0;
}

/* One copy_file_range(2), at most COPY_MAX: callers loop on short copies. */
static int op_copy_range(struct proto_rd *r, struct proto_wr *w)
{
	uint64_t fh_in = proto_rd_u64(r), off_in = proto_rd_u64(r);
	uint64_t fh_out = proto_rd_u64(r), off_out = proto_rd_u64(r);
	uint64_t len = proto_rd_u64(r);
	struct handle *in, *out;
	loff_t oi, oo;
	ssize_t n;

	if (!rd_done(r) || off_in > INT64_MAX || off_out > INT64_MAX)
		return EINVAL;
	if ((in = handle_of_kind(fh_in, false)) == NULL ||
	    (out = handle_of_kind(fh_out, false)) == NULL)
		return EBADF;
	if (len > COPY_MAX)
		len = COPY_MAX;
	oi = (loff_t)off_in;
	oo = (loff_t)off_out;
	do
		n = copy_file_range(in->fd, &oi, out->fd, &oo, (size_t)len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno;
	proto_wr_u64(w, (uint64_t)n);
	return 0;
}

typedef int (*fs_op_fn)(struct proto_rd *, struct proto_wr *);

static const fs_op_fn fs_ops[FS_MAX_OP + 1] = {
    [FS_LOOKUP] = op_lookup,
    [FS_FORGET] = op_forget,
    [FS_GETATTR] = op_getattr,
    [FS_SETATTR] = op_setattr,
    [FS_READLINK] = op_readlink,
    [FS_MKDIR] = op_mkdir,
    [FS_UNLINK] = op_unlink,
    [FS_RMDIR] = op_rmdir,
    [FS_SYMLINK] = op_symlink,
    [FS_RENAME] = op_rename,
    [FS_LINK] = op_link,
    [FS_OPEN] = op_open,
    [FS_CREATE] = op_create,
    [FS_READ] = op_read,
    [FS_WRITE] = op_write,
    [FS_RELEASE] = op_release,
    [FS_FSYNC] = op_fsync,
    [FS_OPENDIR] = op_opendir,
    [FS_READDIR] = op_readdir,
    [FS_RELEASEDIR] = op_releasedir,
    [FS_STATFS] = op_statfs,
    [FS_COPY_RANGE] = op_copy_range,
    [FS_READDIRPLUS] = op_readdirplus,
};

static void fs_answer(uint64_t id, int err, size_t len)
{
	proto_put_u64(resp, id);
	proto_put_u32(resp + 8, (uint32_t)err);
	port_send(PT_FSRESP, 0, resp, RESP_HDR + (err ? 0 : len), NULL, 0);
}

/*
 * One FSREQ payload.  A request that cannot be parsed gets EINVAL, an
 * unknown op ENOSYS; one too short to hold an id cannot be answered.
 */
void fs_handle(const uint8_t *p, size_t len)
{
	struct proto_rd r = {p, len, 0};
	struct proto_wr w = {resp + RESP_HDR, 0, sizeof(resp) - RESP_HDR, 0};
	uint64_t id;
	uint32_t op, zero;
	int err;

	id = proto_rd_u64(&r);
	if (r.bad) {
		alog(L_WARN, "FSREQ of %zu bytes without an id dropped", len);
		return;
	}
	op = proto_rd_u32(&r);
	zero = proto_rd_u32(&r);
	if (r.bad || zero != 0)
		err = EINVAL;
	else if (op > FS_MAX_OP || fs_ops[op] == NULL)
		err = ENOSYS;
	else
		err = fs_ops[op](&r, &w);
	if (err == NO_ANSWER)
		return;
	if (err == 0 && w.bad)
		err = EIO; /* cannot happen: every answer fits PROTO_MAX_FS */
	if (err != 0)
		alog(L_DEBUG, "fs op %u (id %llu): %s", op,
		     (unsigned long long)id, strerror(err));
	fs_answer(id, err, w.len);
}

/* ---- change notifications (FSNOTIFY) ---- */

void fs_set_notify(bool on)
{
	notify_on = on;
}

bool fs_notifying(void)
{
	return ifd >= 0;
}

static void notes_send(void)
{
	if (notes_len > 0)
		port_send(PT_FSNOTIFY, 0, notes, notes_len, NULL, 0);
	notes_len = 0;
	memset(noted, 0, sizeof(noted));
}

static bool inode_noted(uint64_t nid)
{
	uint64_t *slot = &noted[nid % NOTED_SLOTS];

	if (*slot == nid)
		return true;
	*slot = nid;
	return false;
}

/* Queue one record; a repeat of the one before is dropped. */
static void note_add(uint32_t kind, uint64_t nid, const char *name,
		     uint16_t nlen)
{
	uint8_t rec[14 + NAME_MAX_LEN];
	struct proto_wr w = {rec, 0, sizeof(rec), 0};

	if (kind == FSN_INODE && inode_noted(nid))
		return;

	proto_wr_u32(&w, kind);
	proto_wr_u64(&w, nid);
	proto_wr_str(&w, name, nlen);
	if (notes_len > 0 && notes_len - last_note == w.len &&
	    memcmp(notes + last_note, rec, w.len) == 0)
		return;
	if (notes_len + w.len > sizeof(notes))
		notes_send();
	last_note = notes_len;
	memcpy(notes + notes_len, rec, w.len);
	notes_len += w.len;
}

/* The node the host may know as name in dir (never follows a symlink). */
static struct node *child_node(const struct node *dir, const char *name)
{
	struct stat st;

	if (fstatat(dir->fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return NULL;
	for (uint32_t slot = buckets[bucket_of(st.st_dev, st.st_ino)];
	     slot != 0; slot = nodes[slot].next)
		if (nodes[slot].dev == st.st_dev &&
		    nodes[slot].ino == st.st_ino)
			return &nodes[slot];
	return NULL;
}

static void note_event(const struct inotify_event *e)
{
	struct node *dir, *child;
	size_t nlen;

	if (e->mask & IN_Q_OVERFLOW) {
		note_add(FSN_ALL, 0, NULL, 0);
		return;
	}
	if ((dir = node_by_wd(e->wd)) == NULL)
		return;
	if (e->mask & IN_IGNORED) { /* removed, or its directory went */
		wd_forget(dir);
		return;
	}
	nlen = e->len ? strnlen(e->name, e->len) : 0;
	if (nlen == 0) {
		if (e->mask & (IN_ATTRIB | IN_MODIFY))
			note_add(FSN_INODE, dir->nid, NULL, 0);
		return;
	}
	if (nlen > NAME_MAX_LEN || dot_or_dotdot(e->name))
		return;
	if (e->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO))
		note_add(FSN_ENTRY, dir->nid, e->name, (uint16_t)nlen);
	/* A created name is new to the host (ENTRY covers it); a name moved
	 * here may be a node it knows under another name. */
	if ((e->mask &
	     (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO)) &&
	    (child = child_node(dir, e->name)) != NULL && child != dir)
		note_add(FSN_INODE, child->nid, NULL, 0);
}

/*
 * Read every pending inotify event and send what the host must forget.
 * Also called before an exit event, so a job's changes reach the host
 * before it learns that the job ended.
 */
void fs_notify_flush(void)
{
	static uint8_t ev[64 * 1024]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	if (ifd < 0)
		return;
	while ((n = read(ifd, ev, sizeof(ev))) > 0) {
		for (size_t off = 0;
		     off + sizeof(struct inotify_event) <= (size_t)n;) {
			const struct inotify_event *e =
			    (const struct inotify_event *)(ev + off);
			note_event(e);
			off += sizeof(*e) + e->len;
		}
	}
	notes_send();
}

void fs_add_polls(void)
{
	if (ifd >= 0)
		poll_add(ifd, POLLIN, PE_FSNOTIFY, NULL);
}
