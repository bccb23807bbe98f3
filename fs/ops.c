/*
 * FUSE low-level operations over the model.  Every operation replies
 * exactly once: either before it returns, or later from a parked request
 * (struct pending) woken by the model, a timer or an interrupt.
 */
#include "content.h"
#include "events.h"
#include "fs.h"
#include "gfs.h"
#include "inodes.h"
#include "job.h"
#include "log.h"
#include "ops.h"
#include "persist.h"
#include "ports.h"
#include "proto.h"
#include "tree.h"
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <string.h>
#include <unistd.h>

#define PATH_CAP 512

struct fh {
	struct node n;
	int flags;
	bool is_dir;
	struct buf text; /* generated content of this open */
	bool have_text;
	struct buf w; /* collected writes of a K_VALUE file */
	bool wdirty, wbad;
	char created[NAME_MAX_LEN + 1]; /* sessions/new: the name made */
	bool stdin_writer;
	uint64_t pos;	 /* streams ignore offsets */
	uint64_t ev_seq; /* events: the reader's cursor */
	size_t ev_off;
	struct fuse_pollhandle *ph;
	struct waiter pw; /* poll waiter */
	struct buf ends;  /* directories: end offset of each entry */
};

static int64_t started_ms;
static uid_t owner_uid;
static gid_t owner_gid;

/* Inodes under files/ belong to gfs.c, which takes the lock itself. */
#define GFS_DELEGATE(ino, call)                                                \
	do {                                                                   \
		if (gfs_owns(ino)) {                                           \
			gfs_ops.call;                                          \
			return;                                                \
		}                                                              \
	} while (0)

/* ---- helpers ------------------------------------------------------------ */

static void lock(void)
{
	pthread_mutex_lock(&model_lock);
}

static void unlock(void)
{
	pthread_mutex_unlock(&model_lock);
}

static int child_path(fuse_ino_t parent, const char *name, char *out)
{
	char p[PATH_CAP];

	if (ino_path(parent, p, sizeof(p)) < 0)
		return -ESTALE;
	if (strlen(name) > NAME_MAX_LEN || strchr(name, '/'))
		return -ENOENT;
	if (snprintf(out, PATH_CAP, "%s%s%s", p, p[0] ? "/" : "", name) >=
	    PATH_CAP)
		return -ENAMETOOLONG;
	return 0;
}

static bool node_is_dir(const struct node *n)
{
	return n->kind != N_FILE;
}

/* The errlog a refusal about node n belongs in. */
static struct errlog *nearest_err(const struct node *n)
{
	if (n->s)
		return &n->s->err;
	if (n->v)
		return &n->v->err;
	if (n->kind == N_VOLUMES ||
	    (n->kind == N_FILE &&
	     (n->fd->id == F_VOLUMES_NEW || n->fd->id == F_VOLUMES_ERR)))
		return &volumes_err;
	if (n->sn)
		return &n->sn->err;
	if (n->t)
		return &n->t->err;
	if (n->kind == N_TEMPLATES ||
	    (n->kind == N_FILE &&
	     (n->fd->id == F_TEMPLATES_NEW || n->fd->id == F_TEMPLATES_ERR)))
		return &templates_err;
	if (n->h)
		return &n->h->err;
	if (n->kind == N_HOSTS ||
	    (n->kind == N_FILE &&
	     (n->fd->id == F_HOSTS_NEW || n->fd->id == F_HOSTS_ERR)))
		return &hosts_err;
	if (n->kind == N_SNAPSHOTS ||
	    (n->kind == N_FILE &&
	     (n->fd->id == F_SNAPSHOTS_NEW || n->fd->id == F_SNAPSHOTS_ERR)))
		return &snapshots_err;
	if (n->kind == N_SESSIONS ||
	    (n->kind == N_FILE && n->fd->id >= F_SESSIONS_NEW &&
	     n->fd->id <= F_SESSIONS_ERR))
		return &sessions_err;
	return &root_err;
}

static const char *node_label(const struct node *n, const char *path)
{
	return path[0] ? path : "/";
}

static void fill_attr(const struct node *n, const char *path, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino_of(path);
	st->st_uid = owner_uid;
	st->st_gid = owner_gid;
	st->st_nlink = 1;
	if (node_is_dir(n)) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | n->fd->mode;
		if (n->fd->kind == K_TEXT || n->fd->kind == K_VALUE) {
			bool ready;
			int err;
			char *t = content_text(n, &ready, &err);
			st->st_size = t ? (off_t)strlen(t) : 0;
			free(t);
		}
	}
	int64_t ms = n->s   ? n->s->created_ms
		     : n->v ? n->v->created_ms
			    : started_ms;
	st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec =
	    (time_t)(ms / 1000);
}

/* ---- parked requests ------------------------------------------------------
 */

enum pend_kind { P_READ, P_SESSION_READY, P_STDIN_WRITE };

struct pending {
	struct waiter w;
	struct pending *next_all;
	uint64_t id;
	fuse_req_t req;
	enum pend_kind kind;
	struct fh *fh;
	size_t size;
	struct session *s; /* P_SESSION_READY */
	char path[PATH_CAP];
	bool entry; /* mkdir: reply with an entry; else a write count */
	size_t wcount;
	char *data; /* P_STDIN_WRITE */
	size_t dlen, done;
	struct timer timer;
	struct waitq *q;
};

static struct pending *all_pending;
static uint64_t pending_ids;

static void pending_finish(struct pending *p)
{
	waitq_del(&p->w);
	timer_cancel(&p->timer);
	for (struct pending **pp = &all_pending; *pp; pp = &(*pp)->next_all) {
		if (*pp == p) {
			*pp = p->next_all;
			break;
		}
	}
	if (p->s)
		session_put(p->s);
	free(p->data);
	free(p);
}

static bool try_read(struct pending *p);
static bool try_session_ready(struct pending *p, bool timed_out);
static bool try_stdin(struct pending *p);

static bool pending_try(struct pending *p)
{
	switch (p->kind) {
	case P_READ:
		return try_read(p);
	case P_SESSION_READY:
		return try_session_ready(p, false);
	case P_STDIN_WRITE:
		return try_stdin(p);
	}
	return false;
}

static void pending_wake(struct waiter *w)
{
	struct pending *p = (struct pending *)w;

	if (pending_try(p))
		pending_finish(p);
}

static void pending_timeout(struct timer *t)
{
	struct pending *p =
	    (struct pending *)((char *)t - offsetof(struct pending, timer));

	if (p->kind == P_SESSION_READY && try_session_ready(p, true))
		pending_finish(p);
}

static void pending_interrupted(fuse_req_t req, void *data)
{
	uint64_t id = (uint64_t)(uintptr_t)data;

	lock();
	for (struct pending *p = all_pending; p; p = p->next_all) {
		if (p->id != id)
			continue;
		if (p->kind == P_STDIN_WRITE && p->done > 0)
			fuse_reply_write(p->req, p->done);
		else
			fuse_reply_err(p->req, EINTR);
		pending_finish(p);
		break;
	}
	unlock();
}

static struct pending *pending_new(fuse_req_t req, enum pend_kind kind,
				   struct waitq *q)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p)
		abort();
	p->req = req;
	p->kind = kind;
	p->id = ++pending_ids;
	p->w.wake = pending_wake;
	p->timer.cb = pending_timeout;
	p->q = q;
	return p;
}

/* Park p; the interrupt hook goes last since it may answer at once. */
static void pending_park(struct pending *p)
{
	p->next_all = all_pending;
	all_pending = p;
	waitq_add(p->q, &p->w);
	fuse_req_interrupt_func(p->req, pending_interrupted,
				(void *)(uintptr_t)p->id);
}

/* ---- lookup, attributes, directories ------------------------------------- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char path[PATH_CAP];
	struct fuse_entry_param e = {0};
	struct node n;
	int rc;

	GFS_DELEGATE(parent, lookup(req, parent, name));
	if ((rc = child_path(parent, name, path)) < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	lock();
	rc = node_resolve(path, &n);
	if (rc == 0 && n.kind == N_FILES) {
		struct session *s = n.s;
		n.s = NULL; /* gfs_lookup_root takes this reference over */
		node_release(&n);
		unlock();
		gfs_lookup_root(req, s);
		return;
	}
	if (rc == 0) {
		fill_attr(&n, path, &e.attr);
		node_release(&n);
	}
	unlock();
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	e.ino = ino_ref(path);
	fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	GFS_DELEGATE(ino, forget(req, ino, nlookup));
	ino_forget(ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	size_t ng = 0;

	/* Split: tree inodes here, guest inodes to gfs (one batch). */
	for (size_t i = 0; i < count; i++) {
		if (gfs_owns(forgets[i].ino))
			forgets[ng++] = forgets[i];
		else
			ino_forget(forgets[i].ino, forgets[i].nlookup);
	}
	if (ng)
		gfs_ops.forget_multi(req, ng, forgets);
	else
		fuse_reply_none(req);
}

/* Resolve an inode; replies the error itself on failure. */
static int resolve_ino(fuse_req_t req, fuse_ino_t ino, char *path,
		       struct node *n)
{
	int rc;

	if (ino_path(ino, path, PATH_CAP) < 0) {
		fuse_reply_err(req, ESTALE);
		return -1;
	}
	if ((rc = node_resolve(path, n)) < 0) {
		fuse_reply_err(req, -rc);
		return -1;
	}
	return 0;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	char path[PATH_CAP];
	struct stat st;
	struct node n;
	GFS_DELEGATE(ino, getattr(req, ino, fi));

	lock();
	if (resolve_ino(req, ino, path, &n) < 0)
		goto out;
	fill_attr(&n, path, &st);
	node_release(&n);
	fuse_reply_attr(req, &st, 0);
out:
	unlock();
}

/* Truncation (`>`) alone changes nothing; anything else is refused. */
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	char path[PATH_CAP];
	struct stat st;
	struct node n;
	GFS_DELEGATE(ino, setattr(req, ino, attr, to_set, fi));

	lock();
	if (resolve_ino(req, ino, path, &n) < 0)
		goto out;
	if ((to_set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME |
			FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME)) ||
	    ((to_set & FUSE_SET_ATTR_SIZE) &&
	     (node_is_dir(&n) || !(n.fd->mode & 0200)))) {
		fuse_reply_err(req, EPERM);
		node_release(&n);
		goto out;
	}
	fill_attr(&n, path, &st);
	node_release(&n);
	fuse_reply_attr(req, &st, 0);
out:
	unlock();
}

struct dirlist {
	fuse_req_t req;
	struct buf b, ends;
	const char *path;
};

static void dir_add(void *ctx, const char *name, bool is_dir)
{
	struct dirlist *dl = ctx;
	char child[PATH_CAP];
	struct stat st = {0};

	snprintf(child, sizeof(child), "%s%s%s", dl->path,
		 dl->path[0] ? "/" : "", name);
	st.st_ino = strcmp(name, ".") == 0    ? ino_of(dl->path)
		    : strcmp(name, "..") == 0 ? INO_ROOT
					      : ino_of(child);
	st.st_mode = is_dir ? S_IFDIR : S_IFREG;
	size_t need = fuse_add_direntry(dl->req, NULL, 0, name, NULL, 0);
	size_t old = dl->b.len;
	if (old + need > dl->b.cap) {
		size_t cap = dl->b.cap ? dl->b.cap : 1024;
		while (cap < old + need)
			cap *= 2;
		dl->b.data = realloc(dl->b.data, cap);
		if (!dl->b.data)
			abort();
		dl->b.cap = cap;
	}
	fuse_add_direntry(dl->req, dl->b.data + old, need, name, &st,
			  (off_t)(old + need));
	dl->b.len = old + need;
	size_t end = dl->b.len;
	buf_add(&dl->ends, &end, sizeof(end));
	dl->b.len = old + need;
}

static void fh_free(struct fh *fh);

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	char path[PATH_CAP];
	struct node n;
	struct fh *fh;
	GFS_DELEGATE(ino, opendir(req, ino, fi));

	lock();
	if (resolve_ino(req, ino, path, &n) < 0)
		goto out;
	if (!node_is_dir(&n)) {
		node_release(&n);
		fuse_reply_err(req, ENOTDIR);
		goto out;
	}
	fh = calloc(1, sizeof(*fh));
	if (!fh)
		abort();
	fh->is_dir = true;
	struct dirlist dl = {.req = req, .path = path};
	dir_add(&dl, ".", true);
	dir_add(&dl, "..", true);
	node_list(&n, dir_add, &dl);
	fh->text = dl.b;
	fh->ends = dl.ends;
	fh->n = n;
	fi->fh = (uintptr_t)fh;
	if (fuse_reply_open(req, fi) != 0)
		fh_free(fh); /* interrupted: no release will come */
out:
	unlock();
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fh *fh = (struct fh *)(uintptr_t)fi->fh;
	size_t start = (size_t)off, end;
	GFS_DELEGATE(ino, readdir(req, ino, size, off, fi));

	/* Under the lock: an interrupted readdir's releasedir may come in
	 * on another thread while this one still replies. */
	lock();
	if (start >= fh->text.len) {
		fuse_reply_buf(req, NULL, 0);
		unlock();
		return;
	}
	/* Entries were packed with their end offsets: cut on a boundary. */
	const size_t *ends = (const size_t *)fh->ends.data;
	size_t n = fh->ends.len / sizeof(size_t);
	end = start;
	for (size_t i = 0; i < n; i++) {
		if (ends[i] <= start)
			continue;
		if (ends[i] - start > size)
			break;
		end = ends[i];
	}
	fuse_reply_buf(req, fh->text.data + start, end - start);
	unlock();
}

/*
 * The kernel asks every directory of the mount for READDIRPLUS once files/
 * offers it.  The tree's listings carry no attributes: the entries packed
 * at opendir go out again in READDIRPLUS format with no node (nodeid 0),
 * which the kernel takes as plain entries.
 */
static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	struct fh *fh = (struct fh *)(uintptr_t)fi->fh;
	size_t pos = (size_t)off, used = 0;
	GFS_DELEGATE(ino, readdirplus(req, ino, size, off, fi));

	char *out = malloc(size ? size : 1);
	if (!out)
		abort();
	lock();
	/* struct fuse_dirent: u64 ino, u64 off, u32 namelen, u32 type, name,
	 * padded to 8 bytes */
	while (pos + 24 <= fh->text.len) {
		const uint8_t *d = (const uint8_t *)fh->text.data + pos;
		struct fuse_entry_param e = {0};
		uint64_t next;
		uint32_t nlen, type;
		char name[256];
		memcpy(&e.attr.st_ino, d, 8);
		memcpy(&next, d + 8, 8);
		memcpy(&nlen, d + 16, 4);
		memcpy(&type, d + 20, 4);
		if (nlen > 255 || pos + 24 + nlen > fh->text.len)
			break;
		memcpy(name, d + 24, nlen);
		name[nlen] = '\0';
		e.attr.st_mode = (mode_t)type << 12;
		size_t need =
		    fuse_add_direntry_plus(req, NULL, 0, name, NULL, 0);
		if (used + need > size)
			break;
		fuse_add_direntry_plus(req, out + used, size - used, name, &e,
				       (off_t)next);
		used += need;
		pos += (24 + nlen + 7) & ~(size_t)7;
	}
	fuse_reply_buf(req, out, used);
	unlock();
	free(out);
}

static void fh_free(struct fh *fh)
{
	node_release(&fh->n);
	buf_free(&fh->text);
	buf_free(&fh->w);
	buf_free(&fh->ends);
	waitq_del(&fh->pw);
	if (fh->ph)
		fuse_pollhandle_destroy(fh->ph);
	free(fh);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	GFS_DELEGATE(ino, releasedir(req, ino, fi));
	lock();
	fh_free((struct fh *)(uintptr_t)fi->fh);
	unlock();
	fuse_reply_err(req, 0);
}

/* ---- mkdir and rmdir -------------------------------------------------------
 */

static bool reply_created(struct pending *p);

static bool try_session_ready(struct pending *p, bool timed_out)
{
	struct session *s = p->s;

	if (s->gone && s->state == S_CREATING) {
		fuse_reply_err(p->req, EIO); /* reason in sessions/err */
		return true;
	}
	if (!session_usable(s) && !session_final(s) && !s->gone) {
		if (!timed_out)
			return false;
		errlog_add(&s->err, s->name,
			   "still CREATING after wait_timeout; it keeps "
			   "booting: cat wait");
		fuse_reply_err(p->req, ETIMEDOUT);
		return true;
	}
	if (session_final(s) || s->gone) {
		fuse_reply_err(p->req, EIO);
		return true;
	}
	return reply_created(p);
}

/* The answer to a create: mkdir's entry, or the write's count. */
static bool reply_created(struct pending *p)
{
	struct fuse_entry_param e = {0};
	struct node n;

	if (!p->entry) {
		fuse_reply_write(p->req, p->wcount);
		return true;
	}
	if (node_resolve(p->path, &n) < 0) {
		fuse_reply_err(p->req, EIO);
		return true;
	}
	fill_attr(&n, p->path, &e.attr);
	node_release(&n);
	e.ino = ino_ref(p->path);
	fuse_reply_entry(p->req, &e);
	return true;
}

/* Create from defaults plus text; answer now or when the VM is usable. */
static void create_session(fuse_req_t req, const char *text, size_t len,
			   const char *mkdir_path, size_t wcount, struct fh *fh)
{
	struct sess_spec sp;
	struct session *s = NULL;
	char why[SPEC_WHY_LEN];
	int rc;

	spec_init(&sp);
	if (defaults_text &&
	    spec_apply(&sp, defaults_text, strlen(defaults_text), why) < 0) {
		rc = refuse(&root_err, EINVAL, "defaults", "%s", why);
		goto out;
	}
	if (spec_apply(&sp, text, len, why) < 0) {
		rc = refuse(&sessions_err, EINVAL, "sessions/new", "%s", why);
		goto out;
	}
	if (!sp.name[0]) {
		/* A generated name: short, readable, unused. */
		char id[UUID_LEN + 1];
		do {
			uuid_new(id);
			snprintf(sp.name, sizeof(sp.name), "s-%.8s", id);
		} while (session_find(sp.name));
	}
	rc = session_create(&sp, &s);
	if (rc < 0)
		goto out;
	if (fh)
		snprintf(fh->created, sizeof(fh->created), "%s", s->name);
	struct pending *p = pending_new(req, P_SESSION_READY, &s->wq);
	p->s = s; /* takes session_create's reference */
	p->entry = mkdir_path != NULL;
	p->wcount = wcount;
	snprintf(p->path, sizeof(p->path), "sessions/%s", s->name);
	if (!sp.wait) {
		/* Answer at once: the entry exists, still CREATING. */
		if (!try_session_ready(p, false))
			reply_created(p);
		pending_finish(p);
		spec_free(&sp);
		return;
	}
	timer_arm(&p->timer, sp.wait_timeout * 1000);
	pending_park(p);
	spec_free(&sp);
	return;
out:
	spec_free(&sp);
	fuse_reply_err(req, -rc);
}

/* volumes/new or mkdir volumes/NAME: made before the answer (~30 ms). */
static void create_volume(fuse_req_t req, const char *text, size_t len,
			  const char *mkdir_path, struct fh *fh)
{
	char why[SPEC_WHY_LEN];
	struct vol_spec vs;
	struct volume *v;
	int rc;

	if (mkdir_path) {
		memset(&vs, 0, sizeof(vs));
		snprintf(vs.name, sizeof(vs.name), "%.*s", (int)len, text);
	} else if (volspec_parse(&vs, text, len, why) < 0) {
		rc = refuse(&volumes_err, EINVAL, "volumes/new", "%s", why);
		goto out;
	} else if (!vs.name[0]) {
		/* A generated name, as for sessions: short, unused. */
		char id[UUID_LEN + 1];
		do {
			uuid_new(id);
			snprintf(vs.name, sizeof(vs.name), "v-%.8s", id);
		} while (volume_find(vs.name));
	}
	if ((rc = volume_create(&vs, &v)) < 0)
		goto out;
	if (fh) {
		snprintf(fh->created, sizeof(fh->created), "%s", v->name);
		fuse_reply_write(req, len);
		return;
	}
	struct fuse_entry_param e = {0};
	struct node n;
	if (node_resolve(mkdir_path, &n) == 0) {
		fill_attr(&n, mkdir_path, &e.attr);
		node_release(&n);
	}
	e.ino = ino_ref(mkdir_path);
	fuse_reply_entry(req, &e);
	return;
out:
	fuse_reply_err(req, -rc);
}

/* The entry of a directory made now. */
static void reply_entry(fuse_req_t req, const char *path)
{
	struct fuse_entry_param e = {0};
	struct node n;

	if (node_resolve(path, &n) == 0) {
		fill_attr(&n, path, &e.attr);
		node_release(&n);
	}
	e.ino = ino_ref(path);
	fuse_reply_entry(req, &e);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	char path[PATH_CAP], ppath[PATH_CAP], spec[128];
	struct node n;
	struct job *j;
	int rc;
	GFS_DELEGATE(parent, mkdir(req, parent, name, mode));

	if ((rc = child_path(parent, name, path)) < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	lock();
	if (resolve_ino(req, parent, ppath, &n) < 0)
		goto out;
	if (n.kind == N_SESSIONS) {
		if (!valid_name(name)) {
			rc = refuse(&sessions_err, EINVAL, "sessions",
				    "'%.80s' is not a valid session name "
				    "([A-Za-z0-9][A-Za-z0-9_.-]{0,62})",
				    name);
			fuse_reply_err(req, -rc);
		} else {
			snprintf(spec, sizeof(spec), "name=%s", name);
			create_session(req, spec, strlen(spec), path, 0, NULL);
		}
	} else if (n.kind == N_VOLUMES) {
		if (!valid_name(name)) {
			rc = refuse(&volumes_err, EINVAL, "volumes",
				    "'%.80s' is not a valid volume name "
				    "([A-Za-z0-9][A-Za-z0-9_.-]{0,62})",
				    name);
			fuse_reply_err(req, -rc);
		} else {
			create_volume(req, name, strlen(name), path, NULL);
		}
	} else if (n.kind == N_TEMPLATES) {
		if ((rc = template_create(name)) < 0)
			fuse_reply_err(req, -rc);
		else
			reply_entry(req, path);
	} else if (n.kind == N_HOSTS) {
		if (!valid_name(name))
			rc = refuse(&hosts_err, EINVAL, "hosts",
				    "'%.80s' is not a valid host name "
				    "([A-Za-z0-9][A-Za-z0-9_.-]{0,62})",
				    name);
		else
			rc = host_mkdir(name);
		if (rc < 0)
			fuse_reply_err(req, -rc);
		else
			reply_entry(req, path);
	} else if (n.kind == N_EXEC_DIR) {
		rc = job_create(n.s, name, &j);
		if (rc < 0)
			fuse_reply_err(req, -rc);
		else
			reply_entry(req, path);
	} else {
		rc = refuse(nearest_err(&n), EPERM, node_label(&n, ppath),
			    "mkdir is not possible here");
		fuse_reply_err(req, -rc);
	}
	node_release(&n);
out:
	unlock();
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char path[PATH_CAP];
	struct node n;
	int rc = 0;
	GFS_DELEGATE(parent, rmdir(req, parent, name));

	if ((rc = child_path(parent, name, path)) < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	lock();
	rc = node_resolve(path, &n);
	if (rc < 0)
		goto out;
	if (n.kind == N_SESSION)
		rc = session_remove(n.s);
	else if (n.kind == N_VOLUME)
		rc = volume_remove(n.v);
	else if (n.kind == N_SNAPSHOT)
		rc = snapshot_remove(n.sn);
	else if (n.kind == N_TEMPLATE)
		rc = template_remove(n.t);
	else if (n.kind == N_HOST)
		rc = host_remove(n.h);
	else if (n.kind == N_JOB)
		rc = job_remove(n.j);
	else
		rc = refuse(nearest_err(&n), node_is_dir(&n) ? EPERM : ENOTDIR,
			    path, "rmdir is not possible here");
	node_release(&n);
out:
	unlock();
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char path[PATH_CAP];
	struct node n;
	int rc;
	GFS_DELEGATE(parent, unlink(req, parent, name));

	if ((rc = child_path(parent, name, path)) < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	lock();
	rc = node_resolve(path, &n);
	if (rc == 0 && n.kind == N_FILE && n.fd->id == F_S_PORT) {
		rc = ports_remove(n.s, n.key);
		node_release(&n);
	} else if (rc == 0) {
		rc = refuse(nearest_err(&n), node_is_dir(&n) ? EISDIR : EPERM,
			    path, "this file cannot be removed");
		node_release(&n);
	}
	unlock();
	fuse_reply_err(req, -rc);
}

/* touch ports/N (create or mknod): expose; *e is the new file's entry. */
static int create_port(const struct node *parent, const char *ppath,
		       const char *name, struct fuse_entry_param *e,
		       struct node *child)
{
	char path[PATH_CAP];
	int rc = ports_create(parent->s, name);

	if (rc < 0)
		return rc;
	if (snprintf(path, sizeof(path), "%s/%s", ppath, name) >=
		(int)sizeof(path) ||
	    (rc = node_resolve(path, child)) < 0)
		return rc < 0 ? rc : -ENAMETOOLONG;
	memset(e, 0, sizeof(*e));
	fill_attr(child, path, &e->attr);
	e->ino = ino_ref(path);
	return 0;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	char path[PATH_CAP];
	struct fuse_entry_param e;
	struct node n, child;
	struct fh *fh;
	int rc;
	GFS_DELEGATE(parent, create(req, parent, name, mode, fi));

	lock();
	if (resolve_ino(req, parent, path, &n) < 0)
		goto out;
	if (n.kind == N_PORTS_DIR) {
		rc = create_port(&n, path, name, &e, &child);
		node_release(&n);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
			goto out;
		}
		fh = calloc(1, sizeof(*fh));
		if (!fh)
			abort();
		fh->n = child;
		fh->flags = fi->flags;
		fi->fh = (uintptr_t)fh;
		fi->direct_io = 1;
		if (fuse_reply_create(req, &e, fi) != 0) {
			/* interrupted: no release and no forget will come */
			ino_forget(e.ino, 1);
			fh_free(fh);
		}
		goto out;
	}
	rc = refuse(nearest_err(&n), EACCES, node_label(&n, path),
		    "cannot create '%.80s': only the files tenki makes exist "
		    "here",
		    name);
	node_release(&n);
	fuse_reply_err(req, -rc);
out:
	unlock();
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	char path[PATH_CAP];
	struct fuse_entry_param e;
	struct node n, child;
	int rc;

	if (gfs_owns(parent)) { /* files/ has no special files */
		fuse_reply_err(req, ENOSYS);
		return;
	}

	lock();
	if (resolve_ino(req, parent, path, &n) < 0)
		goto out;
	if (n.kind == N_PORTS_DIR && S_ISREG(mode)) {
		rc = create_port(&n, path, name, &e, &child);
		if (rc == 0)
			node_release(&child);
	} else {
		rc = refuse(nearest_err(&n), EACCES, node_label(&n, path),
			    "cannot make '%.80s' here", name);
	}
	node_release(&n);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
out:
	unlock();
}

/* ---- open, read, write -----------------------------------------------------
 */

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	char path[PATH_CAP];
	struct node n;
	struct fh *fh;
	int acc = fi->flags & O_ACCMODE, rc;
	GFS_DELEGATE(ino, open(req, ino, fi));

	lock();
	if (resolve_ino(req, ino, path, &n) < 0)
		goto out;
	if (node_is_dir(&n)) {
		rc = EISDIR;
		goto refuse_out;
	}
	if ((acc != O_RDONLY && !(n.fd->mode & 0200)) ||
	    (acc != O_WRONLY && !(n.fd->mode & 0400))) {
		rc = -refuse(nearest_err(&n), EACCES, path,
			     acc == O_RDONLY ? "this file is write-only"
					     : "this file is read-only");
		goto refuse_out;
	}
	fh = calloc(1, sizeof(*fh));
	if (!fh)
		abort();
	fh->n = n;
	fh->flags = fi->flags;
	if (n.fd->kind == K_STDIN) {
		job_stdin_open(n.j);
		fh->stdin_writer = true;
	}
	if (n.fd->id == F_EVENTS)
		fh->ev_seq = events_next(); /* from the moment it opened */
	fi->fh = (uintptr_t)fh;
	fi->direct_io = 1;
	if (n.fd->kind == K_STREAM || n.fd->kind == K_STDIN ||
	    n.fd->kind == K_WAIT)
		fi->nonseekable = 1;
	if (fuse_reply_open(req, fi) != 0) {
		/* The open was interrupted: the kernel will not release
		 * this handle (libfuse's high-level API does the same). */
		if (fh->stdin_writer && !fh->n.j->gone)
			job_stdin_close(fh->n.j);
		fh_free(fh);
	}
	goto out;
refuse_out:
	node_release(&n);
	fuse_reply_err(req, rc);
out:
	unlock();
}

static void reply_slice(fuse_req_t req, const struct buf *b, size_t size,
			off_t off)
{
	if ((size_t)off >= b->len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(
		    req, b->data + off,
		    b->len - (size_t)off < size ? b->len - (size_t)off : size);
}

/* Fill fh->text; false (with *err) when it cannot be had now. */
static bool fh_generate(struct fh *fh, bool *ready, int *err)
{
	char *t = content_text(&fh->n, ready, err);

	if (!t)
		return false;
	buf_free(&fh->text);
	buf_add(&fh->text, t, strlen(t));
	fh->have_text = true;
	free(t);
	return true;
}

/* A live output stream: an exec job's, or a template build's log. */
static ssize_t stream_read(struct fh *fh, char *buf, size_t size)
{
	enum file_id id = fh->n.fd->id;

	if (id == F_T_LOG || id == F_B_LOG)
		return fh->n.b ? tbuild_log_read(fh->n.b, buf, size, fh->pos)
			       : 0; /* no build yet: an empty log */
	return job_read(fh->n.j,
			id == F_J_STDOUT   ? V_STDOUT
			: id == F_J_STDERR ? V_STDERR
					   : V_OUTPUT,
			buf, size, fh->pos);
}

/* Where a blocked reader or poller of fh waits. */
static struct waitq *stream_wq(struct fh *fh)
{
	return fh->n.fd->id == F_EVENTS ? &events_wq
	       : fh->n.b		? &fh->n.b->wq
	       : fh->n.t		? &fh->n.t->wq
	       : fh->n.j		? &fh->n.j->wq
					: &fh->n.s->wq;
}

static bool try_read(struct pending *p)
{
	struct fh *fh = p->fh;
	bool ready;
	int err;

	if (fh->n.fd->kind == K_WAIT) {
		if (!fh_generate(fh, &ready, &err)) {
			if (err) {
				fuse_reply_err(p->req, err);
				return true;
			}
			return false;
		}
		reply_slice(p->req, &fh->text, p->size, 0);
		fh->pos = fh->text.len < p->size ? fh->text.len : p->size;
		return true;
	}
	/* K_STREAM */
	char *buf = malloc(p->size ? p->size : 1);
	if (!buf)
		abort();
	if (fh->n.fd->id == F_EVENTS) {
		ssize_t en =
		    events_read(&fh->ev_seq, &fh->ev_off, buf, p->size);
		if (en == -EAGAIN) {
			free(buf);
			return false;
		}
		fuse_reply_buf(p->req, buf, (size_t)en);
		free(buf);
		return true;
	}
	ssize_t n = stream_read(fh, buf, p->size);
	if (n == -EAGAIN) {
		free(buf);
		return false;
	}
	if (n < 0)
		fuse_reply_err(p->req, (int)-n);
	else {
		fh->pos += (uint64_t)n;
		fuse_reply_buf(p->req, buf, (size_t)n);
	}
	free(buf);
	return true;
}

static void read_blocking(fuse_req_t req, struct fh *fh, size_t size)
{
	struct pending *p = pending_new(req, P_READ, stream_wq(fh));

	p->fh = fh;
	p->size = size;
	if (try_read(p)) {
		free(p);
		return;
	}
	if (fh->flags & O_NONBLOCK) {
		free(p);
		fuse_reply_err(req, EAGAIN);
		return;
	}
	pending_park(p);
}

static void read_clone(fuse_req_t req, struct fh *fh, size_t size, off_t off)
{
	struct job *j;
	int rc;

	if (!fh->have_text) {
		rc = job_create(fh->n.s, NULL, &j);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
			return;
		}
		buf_printf(&fh->text, "%s\n", j->name);
		fh->have_text = true;
	}
	reply_slice(req, &fh->text, size, off);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fh *fh = (struct fh *)(uintptr_t)fi->fh;
	bool ready;
	int err;
	GFS_DELEGATE(ino, read(req, ino, size, off, fi));

	lock();
	switch (fh->n.fd->kind) {
	case K_TEXT:
	case K_VALUE:
	case K_CTL: /* ports/N: the only readable one */
		if ((off == 0 || !fh->have_text) &&
		    !fh_generate(fh, &ready, &err)) {
			fuse_reply_err(req, err ? err : EIO);
			break;
		}
		reply_slice(req, &fh->text, size, off);
		break;
	case K_NEW:
		/* The answer is readable at any offset (a shell reads where its
		 * write left off): follow our own cursor, reset by each write.
		 */
		buf_free(&fh->text);
		if (fh->created[0])
			buf_printf(&fh->text, "%s\n", fh->created);
		reply_slice(req, &fh->text, size, (off_t)fh->pos);
		fh->pos += fh->pos < fh->text.len
			       ? (fh->text.len - fh->pos < size
				      ? fh->text.len - fh->pos
				      : size)
			       : 0;
		break;
	case K_CLONE:
		read_clone(req, fh, size, off);
		break;
	case K_WAIT:
		if (fh->have_text) {
			reply_slice(req, &fh->text, size, (off_t)fh->pos);
			fh->pos = fh->text.len;
			break;
		}
		read_blocking(req, fh, size);
		break;
	case K_STREAM:
		read_blocking(req, fh, size);
		break;
	default:
		fuse_reply_err(req, EBADF);
	}
	unlock();
}

/* Each write is checked as it arrives; complete lines only. */
static int check_value_write(struct fh *fh, const char *label)
{
	struct node *n = &fh->n;
	const char *t = fh->w.data;
	size_t len = fh->w.len;
	char why[SPEC_WHY_LEN];

	if (len && t[len - 1] != '\n')
		return 0; /* a line still coming: checked at close */
	switch (n->fd->id) {
	case F_DEFAULTS: {
		struct sess_spec sp;
		int rc = 0;
		spec_init(&sp);
		if (spec_apply(&sp, t, len, why) < 0)
			rc = refuse(&root_err, EINVAL, "defaults", "%s", why);
		else if (sp.name[0])
			rc = refuse(&root_err, EINVAL, "defaults",
				    "key name: not allowed in defaults (names "
				    "are per session)");
		spec_free(&sp);
		return rc;
	}
	case F_S_ENV:
	case F_J_ENV: {
		char **list;
		size_t cnt;
		if (spec_parse_env_lines(t, len, &list, &cnt, why) < 0)
			return refuse(nearest_err(n), EINVAL, label, "%s", why);
		spec_free_list(list, cnt);
		return 0;
	}
	case F_S_KEYS: {
		/* One public key per line; blank lines and # comments pass. */
		const char *p = t, *end = t + len;
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
			char line[8192];
			if (l >= sizeof(line))
				return refuse(nearest_err(n), EINVAL, label,
					      "a key line is longer than %zu "
					      "bytes",
					      sizeof(line) - 1);
			memcpy(line, p, l);
			line[l] = '\0';
			if (l && line[0] != '#' &&
			    !spec_valid_ssh_key(line, why))
				return refuse(nearest_err(n), EINVAL, label,
					      "%s", why);
			p += l + 1;
		}
		return 0;
	}
	case F_V_SIZE: {
		uint64_t bytes;
		return volume_check_size(n->v, t, len, &bytes);
	}
	case F_T_SETUP:
	case F_T_START:
	case F_T_READY:
	case F_T_ENV:
	case F_T_CPU:
	case F_T_MEM:
	case F_T_IMAGE:
		return template_check_value(
		    n->t, (enum tpl_file)(n->fd->id - F_T_SETUP), t, len,
		    label);
	case F_J_CWD:
		if (!job_valid_cwd(t, len))
			return refuse(nearest_err(n), EINVAL, label,
				      "cwd must be one absolute path (got "
				      "'%.*s')",
				      (int)(len > 80 ? 80 : len - 1), t);
		return 0;
	case F_J_TIMEOUT:
		if (!job_valid_timeout(t, len))
			return refuse(nearest_err(n), EINVAL, label,
				      "timeout '%.*s' is not a duration above "
				      "zero (90, 90s, 30m, 2h, 1h30m, 1d)",
				      (int)(len > 40 ? 40 : len - 1), t);
		return 0;
	default:
		return 0;
	}
}

static bool job_value_file(enum file_id id)
{
	return id >= F_J_CMD && id <= F_J_TIMEOUT;
}

static void write_value(fuse_req_t req, struct fh *fh, const char *buf,
			size_t size, const char *label)
{
	int rc;

	if (fh->wbad) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (job_value_file(fh->n.fd->id) && job_started(fh->n.j)) {
		rc = refuse(nearest_err(&fh->n), EBUSY, label,
			    "the job has started: %s can no longer change",
			    fh->n.fd->name);
		fuse_reply_err(req, -rc);
		return;
	}
	if (fh->w.len + size > fh->n.fd->max_write) {
		fh->wbad = true;
		rc = refuse(nearest_err(&fh->n), EFBIG, label,
			    "more than %zu bytes written", fh->n.fd->max_write);
		fuse_reply_err(req, -rc);
		return;
	}
	buf_add(&fh->w, buf, size);
	fh->wdirty = true;
	if ((rc = check_value_write(fh, label)) < 0) {
		fh->wbad = true;
		fuse_reply_err(req, -rc);
		return;
	}
	fuse_reply_write(req, size);
}

static int apply_value(struct fh *fh, const char *label)
{
	struct node *n = &fh->n;
	const char *t = fh->w.data ? fh->w.data : "";
	size_t len = fh->w.len;
	int rc;

	if (!fh->wdirty || fh->wbad)
		return 0;
	fh->wdirty = false;
	if (len && t[len - 1] != '\n') {
		buf_add(&fh->w, "\n", 1);
		t = fh->w.data;
		len = fh->w.len;
		if ((rc = check_value_write(fh, label)) < 0)
			return rc;
	}
	switch (n->fd->id) {
	case F_DEFAULTS:
		if (persist_save_defaults(t) < 0)
			return refuse(&root_err, EIO, "defaults",
				      "cannot save: %s", strerror(errno));
		free(defaults_text);
		defaults_text = strdup(t);
		pool_kick(); /* the pool follows the defaults' shape */
		return 0;
	case F_S_ENV:
		return session_set_env(n->s, t, len);
	case F_S_KEYS:
		return session_set_keys(n->s, t, len);
	case F_V_SIZE:
		return volume_set_size(n->v, t, len);
	case F_J_ENV:
		return job_set_env(n->j, t, len);
	case F_T_SETUP:
	case F_T_START:
	case F_T_READY:
	case F_T_ENV:
	case F_T_CPU:
	case F_T_MEM:
	case F_T_IMAGE:
		return template_set_value(
		    n->t, (enum tpl_file)(n->fd->id - F_T_SETUP), t, len,
		    label);
	case F_J_CWD:
		return job_set_cwd(n->j, t, len);
	case F_J_TIMEOUT:
		return job_set_timeout(n->j, t, len);
	case F_J_CMD:
		return job_start_cmd(n->j, t, len);
	case F_J_ARGV:
		return job_start_argv(n->j, t, len);
	default:
		return -EACCES;
	}
}

static bool try_stdin(struct pending *p)
{
	struct job *j = p->fh->n.j;

	while (p->done < p->dlen) {
		ssize_t n =
		    job_stdin_write(j, p->data + p->done, p->dlen - p->done);
		if (n == -EAGAIN)
			return false;
		if (n < 0) {
			if (p->done)
				fuse_reply_write(p->req, p->done);
			else
				fuse_reply_err(p->req, (int)-n);
			return true;
		}
		p->done += (size_t)n;
	}
	fuse_reply_write(p->req, p->done);
	return true;
}

static void write_stdin(fuse_req_t req, struct fh *fh, const char *buf,
			size_t size)
{
	struct pending *p = pending_new(req, P_STDIN_WRITE, &fh->n.j->wq);

	p->fh = fh;
	p->data = malloc(size ? size : 1);
	if (!p->data)
		abort();
	memcpy(p->data, buf, size);
	p->dlen = size;
	if (try_stdin(p)) {
		free(p->data);
		free(p);
		return;
	}
	if ((fh->flags & O_NONBLOCK) && p->done == 0) {
		free(p->data);
		free(p);
		fuse_reply_err(req, EAGAIN);
		return;
	}
	pending_park(p);
}

/* A `new` file whose spec makes an object that is not a session or a
 * volume, and reads back its name (snapshots block, without the lock,
 * while the capture runs). */
typedef int (*spec_make_fn)(const char *, size_t, char *, size_t);

static spec_make_fn spec_maker(enum file_id id)
{
	switch (id) {
	case F_SNAPSHOTS_NEW:
		return snapshot_create_spec;
	case F_TEMPLATES_NEW:
		return template_create_spec;
	case F_HOSTS_NEW:
		return host_new_spec;
	default:
		return NULL;
	}
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fh *fh = (struct fh *)(uintptr_t)fi->fh;
	char label[PATH_CAP];
	spec_make_fn make;
	int rc;
	GFS_DELEGATE(ino, write(req, ino, buf, size, off, fi));

	lock();
	if (ino_path(ino, label, sizeof(label)) < 0)
		strcpy(label, "?");
	switch (fh->n.fd->kind) {
	case K_VALUE:
		write_value(req, fh, buf, size, label);
		break;
	case K_CTL:
		if (size > fh->n.fd->max_write) {
			rc = refuse(nearest_err(&fh->n), EFBIG, label,
				    "ctl write larger than %zu bytes",
				    fh->n.fd->max_write);
		} else if (fh->n.v) {
			rc = volume_ctl(fh->n.v, buf, size);
		} else if (fh->n.t) {
			rc = template_ctl(fh->n.t, buf, size);
		} else if (fh->n.h) {
			rc = host_ctl(fh->n.h, buf, size);
		} else if (fh->n.fd->id == F_S_PORT) {
			rc = ports_write(fh->n.s, fh->n.key, buf, size);
		} else if (fh->n.j) {
			rc = job_ctl(fh->n.j, buf, size);
		} else {
			rc = session_ctl(fh->n.s, buf, size);
		}
		if (rc < 0)
			fuse_reply_err(req, -rc);
		else
			fuse_reply_write(req, size);
		break;
	case K_NEW:
		if (size > fh->n.fd->max_write) {
			rc = refuse(nearest_err(&fh->n), EFBIG, label,
				    "spec larger than %zu bytes",
				    fh->n.fd->max_write);
			fuse_reply_err(req, -rc);
			break;
		}
		fh->pos = 0;
		if ((make = spec_maker(fh->n.fd->id)) != NULL) {
			rc = make(buf, size, fh->created, sizeof(fh->created));
			if (rc < 0)
				fuse_reply_err(req, -rc);
			else
				fuse_reply_write(req, size);
			break;
		}
		if (fh->n.fd->id == F_VOLUMES_NEW)
			create_volume(req, buf, size, NULL, fh);
		else
			create_session(req, buf, size, NULL, size, fh);
		break;
	case K_STDIN:
		write_stdin(req, fh, buf, size);
		break;
	default:
		rc = refuse(nearest_err(&fh->n), EACCES, label,
			    "this file is read-only");
		fuse_reply_err(req, -rc);
	}
	unlock();
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *fh = (struct fh *)(uintptr_t)fi->fh;
	char label[PATH_CAP];
	int rc = 0;
	GFS_DELEGATE(ino, flush(req, ino, fi));

	lock();
	if (ino_path(ino, label, sizeof(label)) < 0)
		strcpy(label, "?");
	if (fh->n.fd->kind == K_VALUE)
		rc = apply_value(fh, label);
	unlock();
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fh *fh = (struct fh *)(uintptr_t)fi->fh;
	GFS_DELEGATE(ino, release(req, ino, fi));

	lock();
	if (fh->stdin_writer && !fh->n.j->gone)
		job_stdin_close(fh->n.j);
	/* Parked requests on this handle cannot outlive it: the kernel
	 * releases only after every request on it has been answered. */
	fh_free(fh);
	unlock();
	fuse_reply_err(req, 0);
}

/* ---- poll -------------------------------------------------------------- */

static void poll_wake(struct waiter *w)
{
	struct fh *fh = (struct fh *)((char *)w - offsetof(struct fh, pw));

	waitq_del(w);
	if (fh->ph) {
		fuse_lowlevel_notify_poll(fh->ph);
		fuse_pollhandle_destroy(fh->ph);
		fh->ph = NULL;
	}
}

static unsigned poll_events(struct fh *fh)
{
	struct node *n = &fh->n;
	bool ready;
	int err;
	char c;

	switch (n->fd->kind) {
	case K_WAIT: {
		char *t = content_text(n, &ready, &err);
		free(t);
		return ready || err ? POLLIN : 0;
	}
	case K_STREAM: {
		if (n->fd->id == F_EVENTS)
			return fh->ev_seq < events_next() ? POLLIN : 0;
		return stream_read(fh, &c, 1) == -EAGAIN ? 0 : POLLIN;
	}
	case K_STDIN:
		return n->j->in_queued - n->j->in_acked < PROTO_WINDOW ? POLLOUT
								       : 0;
	default:
		return POLLIN | POLLOUT;
	}
}

static void op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    struct fuse_pollhandle *ph)
{
	struct fh *fh = (struct fh *)(uintptr_t)fi->fh;
	unsigned ev;

	/* A guest file (files/) is a regular file: always ready.  Its fi->fh
	 * is gfs.c's handle, not ours. */
	if (gfs_owns(ino)) {
		if (ph)
			fuse_pollhandle_destroy(ph);
		fuse_reply_poll(req,
				POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM);
		return;
	}

	lock();
	ev = poll_events(fh);
	if (ph) {
		if (fh->ph)
			fuse_pollhandle_destroy(fh->ph);
		fh->ph = ph;
		if (ev) {
			fuse_lowlevel_notify_poll(ph);
			fuse_pollhandle_destroy(ph);
			fh->ph = NULL;
		} else {
			waitq_del(&fh->pw);
			fh->pw.wake = poll_wake;
			waitq_add(stream_wq(fh), &fh->pw);
		}
	}
	unlock();
	fuse_reply_poll(req, ev);
}

/* Ops only files/ has; the tree itself refuses them. */
static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	GFS_DELEGATE(ino, readlink(req, ino));
	fuse_reply_err(req, EINVAL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	GFS_DELEGATE(parent, symlink(req, link, parent, name));
	fuse_reply_err(req, EPERM);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	if (gfs_owns(parent) && gfs_owns(newparent)) {
		gfs_ops.rename(req, parent, name, newparent, newname, flags);
		return;
	}
	fuse_reply_err(req,
		       gfs_owns(parent) || gfs_owns(newparent) ? EXDEV : EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	if (gfs_owns(ino) && gfs_owns(newparent)) {
		gfs_ops.link(req, ino, newparent, newname);
		return;
	}
	fuse_reply_err(req, EPERM);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	GFS_DELEGATE(ino, fsync(req, ino, datasync, fi));
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs v = {.f_bsize = 4096, .f_namemax = 255};

	GFS_DELEGATE(ino, statfs(req, ino));
	fuse_reply_statfs(req, &v);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out,
			       off_t off_out, struct fuse_file_info *fi_out,
			       size_t len, int flags)
{
	if (gfs_owns(ino_in) && gfs_owns(ino_out)) {
		gfs_ops.copy_file_range(req, ino_in, off_in, fi_in, ino_out,
					off_out, fi_out, len, flags);
		return;
	}
	fuse_reply_err(req, EXDEV);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	gfs_init(conn);
}

const struct fuse_lowlevel_ops tenki_ops = {
    .init = op_init,
    .readlink = op_readlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .fsync = op_fsync,
    .statfs = op_statfs,
    .copy_file_range = op_copy_file_range,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .mkdir = op_mkdir,
    .rmdir = op_rmdir,
    .unlink = op_unlink,
    .create = op_create,
    .mknod = op_mknod,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .poll = op_poll,
};

void ops_set_owner(uid_t uid, gid_t gid)
{
	owner_uid = uid;
	owner_gid = gid;
	started_ms = now_ms();
}
