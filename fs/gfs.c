/* FUSE operations on the guest's home, over the agent's file operations. */
#include "gfs.h"
#include "agent.h"
#include "log.h"
#include "model.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define NBUCKETS     4096
#define ATTR_TIMEOUT 0.0 /* the guest changes files behind our back */

/* One guest node the kernel knows: host ino <-> (session, agent nid). */
struct gnode {
	struct gnode *next_ino, *next_key;
	uint64_t ino, nid, nlookup;
	struct session *s;
};

static struct gnode *by_ino[NBUCKETS], *by_key[NBUCKETS];
static uint64_t next_ino = 1;

/* An open file or directory under files/. */
struct gfh {
	struct session *s;
	uint64_t fh;
	bool dir;
};

/* What a callback needs to reply. */
struct gctx {
	fuse_req_t req;
	struct session *s;
	uint32_t op;
	uint64_t ino; /* GETATTR/SETATTR: the host ino to answer with */
	struct fuse_file_info fi;
	bool has_fi;
	size_t size; /* READ/READDIR: bytes asked for */
};

static uid_t owner_uid(void)
{
	return getuid();
}

static size_t key_bucket(struct session *s, uint64_t nid)
{
	return (size_t)(((uintptr_t)s >> 4) ^ (nid * 11400714819323198485ULL)) %
	       NBUCKETS;
}

static struct gnode *gnode_by_ino(uint64_t ino)
{
	for (struct gnode *g = by_ino[ino % NBUCKETS]; g; g = g->next_ino)
		if (g->ino == ino)
			return g;
	return NULL;
}

static struct gnode *gnode_by_key(struct session *s, uint64_t nid)
{
	for (struct gnode *g = by_key[key_bucket(s, nid)]; g; g = g->next_key)
		if (g->s == s && g->nid == nid)
			return g;
	return NULL;
}

/* One more kernel reference to (s, nid); returns the host ino. */
static uint64_t gnode_ref(struct session *s, uint64_t nid)
{
	struct gnode *g = gnode_by_key(s, nid);

	if (!g) {
		g = calloc(1, sizeof(*g));
		if (!g)
			abort();
		g->ino = GFS_INO_BIT | next_ino++;
		g->nid = nid;
		g->s = s;
		session_get(s);
		g->next_ino = by_ino[g->ino % NBUCKETS];
		by_ino[g->ino % NBUCKETS] = g;
		size_t kb = key_bucket(s, nid);
		g->next_key = by_key[kb];
		by_key[kb] = g;
	}
	g->nlookup++;
	return g->ino;
}

static void gnode_unlink(struct gnode *g)
{
	struct gnode **pp;

	for (pp = &by_ino[g->ino % NBUCKETS]; *pp; pp = &(*pp)->next_ino)
		if (*pp == g) {
			*pp = g->next_ino;
			break;
		}
	for (pp = &by_key[key_bucket(g->s, g->nid)]; *pp; pp = &(*pp)->next_key)
		if (*pp == g) {
			*pp = g->next_key;
			break;
		}
}

static void gnode_forget(uint64_t ino, uint64_t n)
{
	struct gnode *g = gnode_by_ino(ino);
	uint8_t a[16];

	if (!g)
		return;
	if (n > g->nlookup)
		n = g->nlookup;
	g->nlookup -= n;
	/* The agent counts its own references; the root is never counted. */
	if (g->nid != PROTO_FS_ROOT && n && !g->s->gone) {
		proto_put_u64(a, g->nid);
		proto_put_u64(a + 8, n);
		agent_fs_request(g->s, FS_FORGET, a, sizeof(a), NULL, 0, NULL,
				 NULL);
	}
	if (g->nlookup == 0) {
		gnode_unlink(g);
		session_put(g->s);
		free(g);
	}
}

static void lock(void)
{
	pthread_mutex_lock(&model_lock);
}

static void unlock(void)
{
	pthread_mutex_unlock(&model_lock);
}

/* Can files/ of s be used now?  0, or an errno with an err line. */
static int session_check(struct session *s)
{
	if (s->gone)
		return ENOENT;
	if (s->state == S_PAUSED) {
		char obj[100];
		snprintf(obj, sizeof(obj), "%s/files", s->name);
		return -refuse(&s->err, EAGAIN, obj,
			       "session is PAUSED: resume it to use files/");
	}
	if (session_final(s) || s->state == S_TERMINATING)
		return ENOENT;
	if (!s->agent_up) {
		char obj[100];
		snprintf(obj, sizeof(obj), "%s/files", s->name);
		return -refuse(&s->err, EAGAIN, obj,
			       "the guest agent is not connected (state %s)",
			       sess_state_name(s->state));
	}
	return 0;
}

static void to_stat(const struct proto_attr *a, uint64_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = owner_uid();
	st->st_gid = getgid();
	st->st_rdev = a->rdev;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)a->blocks;
	st->st_blksize = a->blksize ? a->blksize : 4096;
	st->st_atim.tv_sec = a->atime;
	st->st_atim.tv_nsec = a->atime_ns;
	st->st_mtim.tv_sec = a->mtime;
	st->st_mtim.tv_nsec = a->mtime_ns;
	st->st_ctim.tv_sec = a->ctime;
	st->st_ctim.tv_nsec = a->ctime_ns;
}

static struct gctx *ctx_new(fuse_req_t req, struct session *s, uint32_t op)
{
	struct gctx *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	c->req = req;
	c->s = s;
	c->op = op;
	session_get(s);
	return c;
}

static void ctx_free(struct gctx *c)
{
	session_put(c->s);
	free(c);
}

/* A malformed answer ends the session's agent connection. */
static void bad_answer(struct gctx *c)
{
	log_warnx("session %s: malformed answer to fs op %u", c->s->name,
		  c->op);
	fuse_reply_err(c->req, EIO);
	agent_detach(c->s);
	session_fail(c->s,
		     "agent protocol violation: malformed answer to "
		     "file operation %u",
		     c->op);
}

/* Answers of ops that return "u64 nid, attr": an entry. */
static void on_entry(struct session *s, int err, const uint8_t *res, size_t len,
		     void *arg)
{
	struct gctx *c = arg;
	struct proto_rd r = {res, len, 0};
	struct fuse_entry_param e = {0};
	struct proto_attr a;
	uint64_t fh = 0;

	if (err) {
		fuse_reply_err(c->req, err);
		goto out;
	}
	uint64_t nid = proto_rd_u64(&r);
	proto_rd_attr(&r, &a);
	if (c->op == FS_CREATE)
		fh = proto_rd_u64(&r);
	if (r.bad || nid == 0) {
		bad_answer(c);
		goto out;
	}
	e.ino = gnode_ref(s, nid);
	to_stat(&a, e.ino, &e.attr);
	e.attr_timeout = ATTR_TIMEOUT;
	e.entry_timeout = ATTR_TIMEOUT;
	if (c->op == FS_CREATE) {
		struct gfh *h = calloc(1, sizeof(*h));
		if (!h)
			abort();
		h->s = s;
		h->fh = fh;
		session_get(s);
		c->fi.fh = (uintptr_t)h;
		if (fuse_reply_create(c->req, &e, &c->fi) != 0) {
			/* The opener went away: the kernel forgets nothing
			 * and releases nothing; the guest's file closes. */
			uint8_t rel[8];
			gnode_forget(e.ino, 1);
			proto_put_u64(rel, fh);
			agent_fs_request(s, FS_RELEASE, rel, 8, NULL, 0, NULL,
					 NULL);
			session_put(s);
			free(h);
		}
	} else if (fuse_reply_entry(c->req, &e) != 0) {
		gnode_forget(e.ino, 1);
	}
out:
	ctx_free(c);
}

static void on_attr(struct session *s, int err, const uint8_t *res, size_t len,
		    void *arg)
{
	struct gctx *c = arg;
	struct proto_rd r = {res, len, 0};
	struct proto_attr a;
	struct stat st;

	if (err) {
		fuse_reply_err(c->req, err);
		goto out;
	}
	proto_rd_attr(&r, &a);
	if (r.bad) {
		bad_answer(c);
		goto out;
	}
	to_stat(&a, c->ino, &st);
	fuse_reply_attr(c->req, &st, ATTR_TIMEOUT);
out:
	ctx_free(c);
}

static void on_empty(struct session *s, int err, const uint8_t *res, size_t len,
		     void *arg)
{
	struct gctx *c = arg;

	fuse_reply_err(c->req, err);
	ctx_free(c);
}

static void on_bytes(struct session *s, int err, const uint8_t *res, size_t len,
		     void *arg)
{
	struct gctx *c = arg;

	if (err)
		fuse_reply_err(c->req, err);
	else if (c->op == FS_READLINK) {
		char *t = strndup((const char *)res, len);
		if (!t || len == 0 || memchr(res, '\0', len))
			bad_answer(c);
		else
			fuse_reply_readlink(c->req, t);
		free(t);
	} else if (len > c->size)
		bad_answer(c);
	else
		fuse_reply_buf(c->req, (const char *)res, len);
	ctx_free(c);
}

static void on_written(struct session *s, int err, const uint8_t *res,
		       size_t len, void *arg)
{
	struct gctx *c = arg;
	struct proto_rd r = {res, len, 0};

	if (err) {
		fuse_reply_err(c->req, err);
	} else {
		uint64_t n = c->op == FS_COPY_RANGE ? proto_rd_u64(&r)
						    : proto_rd_u32(&r);
		if (r.bad || n > c->size)
			bad_answer(c);
		else
			fuse_reply_write(c->req, (size_t)n);
	}
	ctx_free(c);
}

static void on_open(struct session *s, int err, const uint8_t *res, size_t len,
		    void *arg)
{
	struct gctx *c = arg;
	struct proto_rd r = {res, len, 0};

	if (err) {
		fuse_reply_err(c->req, err);
		goto out;
	}
	uint64_t fh = proto_rd_u64(&r);
	if (r.bad) {
		bad_answer(c);
		goto out;
	}
	struct gfh *h = calloc(1, sizeof(*h));
	if (!h)
		abort();
	h->s = s;
	h->fh = fh;
	h->dir = c->op == FS_OPENDIR;
	session_get(s);
	c->fi.fh = (uintptr_t)h;
	if (!h->dir)
		c->fi.keep_cache = 0;
	if ((h->dir ? fuse_reply_open(c->req, &c->fi)
		    : fuse_reply_open(c->req, &c->fi)) != 0) {
		uint8_t a[8];
		proto_put_u64(a, fh);
		agent_fs_request(s, h->dir ? FS_RELEASEDIR : FS_RELEASE, a, 8,
				 NULL, 0, NULL, NULL);
		session_put(s);
		free(h);
	}
out:
	ctx_free(c);
}

static void on_readdir(struct session *s, int err, const uint8_t *res,
		       size_t len, void *arg)
{
	struct gctx *c = arg;
	struct proto_rd r = {res, len, 0};
	char *out = malloc(c->size ? c->size : 1);
	size_t used = 0;

	if (!out)
		abort();
	if (err) {
		fuse_reply_err(c->req, err);
		goto out;
	}
	while (r.left > 0) {
		uint64_t next = proto_rd_u64(&r);
		uint64_t ino = proto_rd_u64(&r);
		uint32_t type = proto_rd_u32(&r);
		uint16_t nlen;
		const uint8_t *name = proto_rd_str(&r, &nlen);
		char nm[256];
		if (r.bad || nlen == 0 || nlen > 255 ||
		    memchr(name, '/', nlen) || memchr(name, '\0', nlen)) {
			bad_answer(c);
			goto out;
		}
		memcpy(nm, name, nlen);
		nm[nlen] = '\0';
		struct stat st = {.st_ino = ino, .st_mode = (type & 017) << 12};
		size_t need = fuse_add_direntry(c->req, NULL, 0, nm, NULL, 0);
		if (used + need > c->size)
			break;
		fuse_add_direntry(c->req, out + used, c->size - used, nm, &st,
				  (off_t)next);
		used += need;
	}
	fuse_reply_buf(c->req, out, used);
out:
	free(out);
	ctx_free(c);
}

static void on_statfs(struct session *s, int err, const uint8_t *res,
		      size_t len, void *arg)
{
	struct gctx *c = arg;
	struct proto_rd r = {res, len, 0};
	struct statvfs v = {0};

	if (err) {
		fuse_reply_err(c->req, err);
		goto out;
	}
	v.f_blocks = proto_rd_u64(&r);
	v.f_bfree = proto_rd_u64(&r);
	v.f_bavail = proto_rd_u64(&r);
	v.f_files = proto_rd_u64(&r);
	v.f_ffree = proto_rd_u64(&r);
	v.f_bsize = proto_rd_u32(&r);
	v.f_frsize = proto_rd_u32(&r);
	v.f_namemax = proto_rd_u32(&r);
	if (r.bad) {
		bad_answer(c);
		goto out;
	}
	fuse_reply_statfs(c->req, &v);
out:
	ctx_free(c);
}

/* Send op for the node behind ino; replies the error itself on failure. */
static int send_op(fuse_req_t req, struct session *s, uint32_t op,
		   struct proto_wr *w, const void *data, size_t dlen,
		   agent_fs_cb cb, struct gctx *c)
{
	int err = session_check(s);

	if (!err && w->bad)
		err = ENAMETOOLONG;
	if (!err)
		err = -agent_fs_request(s, op, w->p, w->len, data, dlen, cb, c);
	if (err) {
		fuse_reply_err(req, err);
		if (c)
			ctx_free(c);
		return -1;
	}
	return 0;
}

/* Resolve ino to its node under the lock; replies ESTALE when unknown. */
static struct gnode *node_of(fuse_req_t req, fuse_ino_t ino)
{
	struct gnode *g = gnode_by_ino(ino);

	if (!g || g->s->gone) {
		fuse_reply_err(req, g ? ENOENT : ESTALE);
		return NULL;
	}
	return g;
}

static bool name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n <= 255 && strcmp(name, ".") && strcmp(name, "..");
}

#define WR(buf) struct proto_wr w = {(buf), 0, sizeof(buf), 0}

static void on_root_attr(struct session *s, int err, const uint8_t *res,
			 size_t len, void *arg)
{
	struct gctx *c = arg;
	struct proto_rd r = {res, len, 0};
	struct fuse_entry_param e = {0};
	struct proto_attr a;

	if (err) {
		fuse_reply_err(c->req, err);
		goto out;
	}
	proto_rd_attr(&r, &a);
	if (r.bad) {
		bad_answer(c);
		goto out;
	}
	e.ino = gnode_ref(s, PROTO_FS_ROOT);
	to_stat(&a, e.ino, &e.attr);
	if (fuse_reply_entry(c->req, &e) != 0)
		gnode_forget(e.ino, 1);
out:
	ctx_free(c);
}

/* files/ itself is nid 1: answer its lookup with the agent's attributes
 * of /home/tenki. */
void gfs_lookup_root(fuse_req_t req, struct session *s)
{
	uint8_t b[8];
	WR(b);

	proto_wr_u64(&w, PROTO_FS_ROOT);
	struct gctx *c = ctx_new(req, s, FS_GETATTR);
	send_op(req, s, FS_GETATTR, &w, NULL, 0, on_root_attr, c);
}

static void gfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n)
{
	lock();
	gnode_forget(ino, n);
	unlock();
	fuse_reply_none(req);
}

static void gfs_forget_multi(fuse_req_t req, size_t count,
			     struct fuse_forget_data *f)
{
	lock();
	for (size_t i = 0; i < count; i++)
		gnode_forget(f[i].ino, f[i].nlookup);
	unlock();
	fuse_reply_none(req);
}

static void gfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
			int to_set, struct fuse_file_info *fi)
{
	uint8_t b[8 * 6 + 4 * 8];
	WR(b);

	lock();
	struct gnode *g = node_of(req, ino);
	if (!g)
		goto out;
	struct gfh *h = fi ? (struct gfh *)(uintptr_t)fi->fh : NULL;
	proto_wr_u64(&w, g->nid);
	proto_wr_u64(&w, h ? h->fh : 0);
	proto_wr_u32(&w, (uint32_t)to_set &
			     (FS_SET_MODE | FS_SET_UID | FS_SET_GID |
			      FS_SET_SIZE | FS_SET_ATIME | FS_SET_MTIME |
			      FS_SET_ATIME_NOW | FS_SET_MTIME_NOW));
	proto_wr_u32(&w, attr->st_mode);
	proto_wr_u32(&w, attr->st_uid);
	proto_wr_u32(&w, attr->st_gid);
	proto_wr_u64(&w, (uint64_t)attr->st_size);
	proto_wr_u64(&w, (uint64_t)attr->st_atim.tv_sec);
	proto_wr_u32(&w, (uint32_t)attr->st_atim.tv_nsec);
	proto_wr_u64(&w, (uint64_t)attr->st_mtim.tv_sec);
	proto_wr_u32(&w, (uint32_t)attr->st_mtim.tv_nsec);
	struct gctx *c = ctx_new(req, g->s, FS_SETATTR);
	c->ino = ino;
	send_op(req, g->s, FS_SETATTR, &w, NULL, 0, on_attr, c);
out:
	unlock();
}

static void simple_node_op(fuse_req_t req, fuse_ino_t ino, uint32_t op,
			   agent_fs_cb cb, size_t size)
{
	uint8_t b[8];
	WR(b);

	lock();
	struct gnode *g = node_of(req, ino);
	if (g) {
		proto_wr_u64(&w, g->nid);
		struct gctx *c = ctx_new(req, g->s, op);
		c->size = size;
		c->ino = ino;
		send_op(req, g->s, op, &w, NULL, 0, cb, c);
	}
	unlock();
}

static void gfs_getattr(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	simple_node_op(req, ino, FS_GETATTR, on_attr, 0);
}

static void gfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	simple_node_op(req, ino, FS_READLINK, on_bytes, 4096);
}

static void gfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	simple_node_op(req, ino, FS_STATFS, on_statfs, 0);
}

/* Ops on (parent, name) with optional extra fields. */
static void name_op(fuse_req_t req, fuse_ino_t parent, const char *name,
		    uint32_t op, const uint32_t *pre, int npre,
		    const char *target, agent_fs_cb cb)
{
	uint8_t b[8 + 8 + 2 + 256 + 2 + 4096];
	WR(b);

	lock();
	struct gnode *g = node_of(req, parent);
	if (!g)
		goto out;
	if (!name_ok(name)) {
		/* A name that cannot exist: not found when looked up or
		 * removed, invalid when made. */
		fuse_reply_err(req, op == FS_LOOKUP || op == FS_UNLINK ||
					    op == FS_RMDIR
					? ENOENT
					: EINVAL);
		goto out;
	}
	proto_wr_u64(&w, g->nid);
	for (int i = 0; i < npre; i++)
		proto_wr_u32(&w, pre[i]);
	proto_wr_str(&w, name, (uint16_t)strlen(name));
	if (target) {
		size_t tl = strlen(target);
		if (tl == 0 || tl > 4095) {
			fuse_reply_err(req, ENAMETOOLONG);
			goto out;
		}
		proto_wr_str(&w, target, (uint16_t)tl);
	}
	struct gctx *c = ctx_new(req, g->s, op);
	send_op(req, g->s, op, &w, NULL, 0, cb, c);
out:
	unlock();
}

static void gfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	name_op(req, parent, name, FS_LOOKUP, NULL, 0, NULL, on_entry);
}

static void gfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode)
{
	uint32_t m = mode;

	name_op(req, parent, name, FS_MKDIR, &m, 1, NULL, on_entry);
}

static void gfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	name_op(req, parent, name, FS_UNLINK, NULL, 0, NULL, on_empty);
}

static void gfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	name_op(req, parent, name, FS_RMDIR, NULL, 0, NULL, on_empty);
}

static void gfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
			const char *name)
{
	name_op(req, parent, name, FS_SYMLINK, NULL, 0, link, on_entry);
}

static void gfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		       fuse_ino_t newparent, const char *newname,
		       unsigned int flags)
{
	uint8_t b[8 + 2 + 256 + 8 + 2 + 256 + 4];
	WR(b);

	lock();
	struct gnode *g = node_of(req, parent);
	struct gnode *ng = g ? node_of(req, newparent) : NULL;
	if (!g || !ng)
		goto out;
	if (g->s != ng->s) {
		fuse_reply_err(req, EXDEV);
		goto out;
	}
	if (!name_ok(name) || !name_ok(newname)) {
		fuse_reply_err(req, EINVAL);
		goto out;
	}
	proto_wr_u64(&w, g->nid);
	proto_wr_str(&w, name, (uint16_t)strlen(name));
	proto_wr_u64(&w, ng->nid);
	proto_wr_str(&w, newname, (uint16_t)strlen(newname));
	proto_wr_u32(&w, flags & 3u);
	struct gctx *c = ctx_new(req, g->s, FS_RENAME);
	send_op(req, g->s, FS_RENAME, &w, NULL, 0, on_empty, c);
out:
	unlock();
}

static void gfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		     const char *newname)
{
	uint8_t b[8 + 8 + 2 + 256];
	WR(b);

	lock();
	struct gnode *g = node_of(req, ino);
	struct gnode *ng = g ? node_of(req, newparent) : NULL;
	if (!g || !ng)
		goto out;
	if (g->s != ng->s) {
		fuse_reply_err(req, EXDEV);
		goto out;
	}
	if (!name_ok(newname)) {
		fuse_reply_err(req, EINVAL);
		goto out;
	}
	proto_wr_u64(&w, g->nid);
	proto_wr_u64(&w, ng->nid);
	proto_wr_str(&w, newname, (uint16_t)strlen(newname));
	struct gctx *c = ctx_new(req, g->s, FS_LINK);
	send_op(req, g->s, FS_LINK, &w, NULL, 0, on_entry, c);
out:
	unlock();
}

static void open_op(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    uint32_t op)
{
	uint8_t b[12];
	WR(b);

	lock();
	struct gnode *g = node_of(req, ino);
	if (g) {
		proto_wr_u64(&w, g->nid);
		if (op == FS_OPEN)
			proto_wr_u32(&w, (uint32_t)fi->flags &
					     (O_ACCMODE | O_APPEND | O_TRUNC));
		struct gctx *c = ctx_new(req, g->s, op);
		c->fi = *fi;
		send_op(req, g->s, op, &w, NULL, 0, on_open, c);
	}
	unlock();
}

static void gfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	open_op(req, ino, fi, FS_OPEN);
}

static void gfs_opendir(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	open_op(req, ino, fi, FS_OPENDIR);
}

static void gfs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		       mode_t mode, struct fuse_file_info *fi)
{
	uint8_t b[8 + 4 + 4 + 2 + 256];
	WR(b);

	lock();
	struct gnode *g = node_of(req, parent);
	if (!g)
		goto out;
	if (!name_ok(name)) {
		fuse_reply_err(req, EINVAL);
		goto out;
	}
	proto_wr_u64(&w, g->nid);
	proto_wr_u32(&w, mode);
	proto_wr_u32(&w, (uint32_t)fi->flags &
			     (O_ACCMODE | O_APPEND | O_TRUNC | O_EXCL));
	proto_wr_str(&w, name, (uint16_t)strlen(name));
	struct gctx *c = ctx_new(req, g->s, FS_CREATE);
	c->fi = *fi;
	send_op(req, g->s, FS_CREATE, &w, NULL, 0, on_entry, c);
out:
	unlock();
}

static struct gfh *gfh_of(struct fuse_file_info *fi)
{
	return (struct gfh *)(uintptr_t)fi->fh;
}

/* READ and READDIR: handle, offset, size; the answer is bytes or entries. */
static void handle_io(fuse_req_t req, struct fuse_file_info *fi, uint32_t op,
		      off_t off, size_t size, agent_fs_cb cb)
{
	struct gfh *h = gfh_of(fi);
	uint8_t b[20];
	WR(b);

	if (size > PROTO_FS_IO_MAX)
		size = PROTO_FS_IO_MAX;
	lock();
	proto_wr_u64(&w, h->fh);
	proto_wr_u64(&w, (uint64_t)off);
	proto_wr_u32(&w, (uint32_t)size);
	struct gctx *c = ctx_new(req, h->s, op);
	c->size = size;
	send_op(req, h->s, op, &w, NULL, 0, cb, c);
	unlock();
}

static void gfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	handle_io(req, fi, FS_READ, off, size, on_bytes);
}

static void gfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		      size_t size, off_t off, struct fuse_file_info *fi)
{
	struct gfh *h = gfh_of(fi);
	uint8_t b[16];
	WR(b);

	if (size > PROTO_FS_IO_MAX) {
		fuse_reply_err(req, EFBIG);
		return;
	}
	lock();
	proto_wr_u64(&w, h->fh);
	proto_wr_u64(&w, (uint64_t)off);
	struct gctx *c = ctx_new(req, h->s, FS_WRITE);
	c->size = size;
	send_op(req, h->s, FS_WRITE, &w, buf, size, on_written, c);
	unlock();
}

static void gfs_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
				struct fuse_file_info *fi_in,
				fuse_ino_t ino_out, off_t off_out,
				struct fuse_file_info *fi_out, size_t len,
				int flags)
{
	struct gfh *in = gfh_of(fi_in), *out = gfh_of(fi_out);
	uint8_t b[40];
	WR(b);

	if (in->s != out->s) {
		fuse_reply_err(req, EXDEV);
		return;
	}
	lock();
	proto_wr_u64(&w, in->fh);
	proto_wr_u64(&w, (uint64_t)off_in);
	proto_wr_u64(&w, out->fh);
	proto_wr_u64(&w, (uint64_t)off_out);
	proto_wr_u64(&w, len);
	struct gctx *c = ctx_new(req, in->s, FS_COPY_RANGE);
	c->size = len;
	send_op(req, in->s, FS_COPY_RANGE, &w, NULL, 0, on_written, c);
	unlock();
}

static void gfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		      struct fuse_file_info *fi)
{
	struct gfh *h = gfh_of(fi);
	uint8_t b[12];
	WR(b);

	lock();
	proto_wr_u64(&w, h->fh);
	proto_wr_u32(&w, (uint32_t)datasync);
	struct gctx *c = ctx_new(req, h->s, FS_FSYNC);
	send_op(req, h->s, FS_FSYNC, &w, NULL, 0, on_empty, c);
	unlock();
}

static void gfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* Writes are not buffered on the host: nothing to push. */
	fuse_reply_err(req, 0);
}

static void release_any(fuse_req_t req, struct fuse_file_info *fi)
{
	struct gfh *h = gfh_of(fi);
	uint8_t a[8];

	lock();
	if (!h->s->gone && h->s->agent_up) {
		proto_put_u64(a, h->fh);
		/* Fire and forget: the agent answers, nobody waits. */
		agent_fs_request(h->s, h->dir ? FS_RELEASEDIR : FS_RELEASE, a,
				 8, NULL, 0, NULL, NULL);
	}
	session_put(h->s);
	free(h);
	unlock();
	fuse_reply_err(req, 0);
}

static void gfs_release(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	release_any(req, fi);
}

static void gfs_releasedir(fuse_req_t req, fuse_ino_t ino,
			   struct fuse_file_info *fi)
{
	release_any(req, fi);
}

static void gfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	handle_io(req, fi, FS_READDIR, off, size, on_readdir);
}

const struct fuse_lowlevel_ops gfs_ops = {
    .lookup = gfs_lookup,
    .forget = gfs_forget,
    .forget_multi = gfs_forget_multi,
    .getattr = gfs_getattr,
    .setattr = gfs_setattr,
    .readlink = gfs_readlink,
    .mkdir = gfs_mkdir,
    .unlink = gfs_unlink,
    .rmdir = gfs_rmdir,
    .symlink = gfs_symlink,
    .rename = gfs_rename,
    .link = gfs_link,
    .open = gfs_open,
    .create = gfs_create,
    .read = gfs_read,
    .write = gfs_write,
    .flush = gfs_flush,
    .release = gfs_release,
    .fsync = gfs_fsync,
    .opendir = gfs_opendir,
    .readdir = gfs_readdir,
    .releasedir = gfs_releasedir,
    .statfs = gfs_statfs,
    .copy_file_range = gfs_copy_file_range,
};

void gfs_init(struct fuse_conn_info *conn)
{
	/* Large requests for bulk copies (the agent takes up to 1 MiB). */
	conn->max_write = PROTO_FS_IO_MAX;
	/* Sequential readers (cp) then ask for 1 MiB at a time too. */
	conn->max_readahead = PROTO_FS_IO_MAX;
	if (conn->capable & FUSE_CAP_SPLICE_READ)
		conn->want &= ~FUSE_CAP_SPLICE_READ;
}
