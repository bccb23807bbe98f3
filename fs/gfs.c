/* FUSE operations on the guest's home, over the agent's file operations. */
#include "gfs.h"
#include "agent.h"
#include "log.h"
#include "model.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define NBUCKETS 4096

/*
 * How long the kernel may trust an entry or attributes without asking.
 * The guest changes files behind our back, so caching is only allowed
 * when the agent reports changes (FSNOTIFY): then the timeout only bounds
 * what inotify cannot see (docs/tree.md, "Caching under files/").
 */
#define CACHE_TIMEOUT 5.0

/* One guest node the kernel knows: host ino <-> (session, agent nid). */
struct gnode {
	struct gnode *next_ino, *next_key;
	uint64_t ino, nid, nlookup;
	uint64_t gen; /* agent connection the nid belongs to */
	struct session *s;
};

static struct gnode *by_ino[NBUCKETS], *by_key[NBUCKETS];
static uint64_t next_ino = 1;

/*
 * Write-behind: a WRITE is answered as soon as it is queued to the agent
 * while its handle has at most WB_WINDOW bytes on the way, so one cp
 * keeps several requests on the channel instead of waiting a round trip
 * for each.  The agent runs file operations one at a time in the order
 * they arrive, so anything sent later (a read, a getattr, another
 * handle's rename) sees these writes.  A write that fails in the guest
 * is remembered on its handle and returned by the next write, fsync or
 * close (FLUSH waits for every write of the handle), as on other
 * write-back filesystems (docs/tree.md, "Writes").
 */
#define WB_WINDOW (8u << 20)
/* ... and while the session's channel has at most this much queued: past
 * it, a write is answered when the guest did it (one per writer). */
#define WB_QUEUE_MAX (8u << 20)

/* A FLUSH waiting on write-behind: no agent op, only a context's op. */
#define GFS_FLUSH 0x10000u

/* An open file or directory under files/. */
struct gfh {
	struct session *s;
	uint64_t fh;
	bool dir;
	int refs;	    /* the kernel's, and one per write on the way */
	size_t wb_bytes;    /* written, answered, not yet done in the guest */
	int wb_err;	    /* the first such write's failure, not yet told */
	struct gctx *waits; /* WRITEs over the window, FLUSHes: in order */
};

/* What a callback needs to reply. */
struct gctx {
	struct gctx *next, *prev; /* in flight, for interrupts */
	bool replied;		  /* interrupted: the answer only cleans up */
	fuse_req_t req;
	struct session *s;
	uint32_t op;
	uint64_t ino; /* GETATTR/SETATTR: the host ino to answer with */
	struct fuse_file_info fi;
	bool has_fi;
	size_t size;	    /* READ/READDIR: bytes asked for */
	bool plus;	    /* READDIRPLUS asked: entries in its format */
	struct gfh *h;	    /* FSYNC, and those waiting on write-behind */
	struct gctx *wnext; /* in h->waits */
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

/* The root is nid 1 on every connection; other nids die with theirs. */
static uint64_t gen_of(struct session *s, uint64_t nid)
{
	return nid == PROTO_FS_ROOT ? 0 : agent_conn_gen(s);
}

static struct gnode *gnode_by_key(struct session *s, uint64_t nid)
{
	uint64_t gen = gen_of(s, nid);

	for (struct gnode *g = by_key[key_bucket(s, nid)]; g; g = g->next_key)
		if (g->s == s && g->nid == nid && g->gen == gen)
			return g;
	return NULL;
}

/* Whether g's nid still means something to the session's agent. */
static bool gnode_live(const struct gnode *g)
{
	return g->gen == gen_of(g->s, g->nid);
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
		g->gen = gen_of(s, nid);
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
	if (g->nid != PROTO_FS_ROOT && n && !g->s->gone && gnode_live(g)) {
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
	if (!session_wait_agent(s)) {
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
	/* cp, cat and friends size their buffers by st_blksize: 1 MiB makes
	 * each write(2) one full-size WRITE, where the guest's 4 KiB would
	 * make cp move 128 KiB per round trip. */
	st->st_blksize = S_ISREG(a->mode) ? PROTO_FS_IO_MAX
			 : a->blksize	  ? a->blksize
					  : 4096;
	st->st_atim.tv_sec = a->atime;
	st->st_atim.tv_nsec = a->atime_ns;
	st->st_mtim.tv_sec = a->mtime;
	st->st_mtim.tv_nsec = a->mtime_ns;
	st->st_ctim.tv_sec = a->ctime;
	st->st_ctim.tv_nsec = a->ctime_ns;
}

/*
 * Requests in flight, so an interrupt can find its request: libfuse may
 * call the interrupt function after the answer replied, so it looks the
 * request up here (model_lock) instead of trusting a pointer to a context
 * that may be gone.
 */
static struct gctx inflight = {.next = &inflight, .prev = &inflight};

static struct gfh *gfh_get(struct gfh *h)
{
	h->refs++;
	return h;
}

static void gfh_put(struct gfh *h)
{
	if (--h->refs > 0)
		return;
	session_put(h->s);
	free(h);
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
	c->next = &inflight;
	c->prev = inflight.prev;
	inflight.prev->next = c;
	inflight.prev = c;
	return c;
}

static void ctx_free(struct gctx *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
	if (c->h)
		gfh_put(c->h);
	session_put(c->s);
	free(c);
}

/*
 * The one reply to c's request: false when an interrupt already answered
 * it (the answer then only undoes what it created in the guest).
 */
static bool ctx_claim(struct gctx *c)
{
	if (c->replied)
		return false;
	c->replied = true;
	return true;
}

static void ctx_reply_err(struct gctx *c, int err)
{
	if (ctx_claim(c))
		fuse_reply_err(c->req, err);
}

/*
 * FUSE_INTERRUPT (the caller got a signal): answer EINTR now; the guest's
 * late answer finds the context replied.  Runs under libfuse's request
 * lock, so nothing may call fuse_req_interrupt_func with model_lock held.
 */
static void gfs_interrupt(fuse_req_t req, void *data)
{
	(void)data;
	lock();
	for (struct gctx *c = inflight.next; c != &inflight; c = c->next)
		if (c->req == req && !c->replied) {
			c->replied = true;
			fuse_reply_err(req, EINTR);
			break;
		}
	unlock();
}

/* Before model_lock: see gfs_interrupt. */
static void want_interrupt(fuse_req_t req)
{
	fuse_req_interrupt_func(req, gfs_interrupt, NULL);
}

/* A malformed answer ends the session's agent connection. */
static void bad_answer(struct gctx *c)
{
	log_warnx("session %s: malformed answer to fs op %u", c->s->name,
		  c->op);
	ctx_reply_err(c, EIO);
	agent_detach(c->s);
	session_fail(c->s,
		     "agent protocol violation: malformed answer to "
		     "file operation %u",
		     c->op);
}

/* Attribute and entry timeout for s's answers (see CACHE_TIMEOUT). */
static double cache_timeout(struct session *s)
{
	return agent_fs_notifies(s) ? CACHE_TIMEOUT : 0.0;
}

/* Drop a guest handle nobody will release (its open was not delivered). */
static void release_fh(struct session *s, uint64_t fh, bool dir)
{
	uint8_t a[8];

	proto_put_u64(a, fh);
	agent_fs_request(s, dir ? FS_RELEASEDIR : FS_RELEASE, a, 8, NULL, 0,
			 NULL, NULL);
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
	int rc;

	if (err) {
		ctx_reply_err(c, err);
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
	e.attr_timeout = cache_timeout(s);
	e.entry_timeout = 0; /* see inval_apply */
	if (!ctx_claim(c)) {
		rc = -1; /* interrupted: the kernel takes no reference */
	} else if (c->op == FS_CREATE) {
		struct gfh *h = calloc(1, sizeof(*h));
		if (!h)
			abort();
		h->s = s;
		h->fh = fh;
		h->refs = 1;
		session_get(s);
		c->fi.fh = (uintptr_t)h;
		c->fi.keep_cache = agent_fs_notifies(s);
		rc = fuse_reply_create(c->req, &e, &c->fi);
		if (rc != 0) {
			session_put(s);
			free(h);
		}
	} else {
		rc = fuse_reply_entry(c->req, &e);
	}
	if (rc != 0) {
		/* The opener went away: the kernel holds neither the node
		 * nor the handle. */
		if (c->op == FS_CREATE)
			release_fh(s, fh, false);
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
		ctx_reply_err(c, err);
		goto out;
	}
	proto_rd_attr(&r, &a);
	if (r.bad) {
		bad_answer(c);
		goto out;
	}
	to_stat(&a, c->ino, &st);
	if (ctx_claim(c))
		fuse_reply_attr(c->req, &st, cache_timeout(s));
out:
	ctx_free(c);
}

static void on_empty(struct session *s, int err, const uint8_t *res, size_t len,
		     void *arg)
{
	struct gctx *c = arg;

	/* FSYNC went after the handle's writes: their failure is its. */
	if (!err && c->h && c->h->wb_err) {
		err = c->h->wb_err;
		c->h->wb_err = 0;
	}
	ctx_reply_err(c, err);
	ctx_free(c);
}

static void on_bytes(struct session *s, int err, const uint8_t *res, size_t len,
		     void *arg)
{
	struct gctx *c = arg;

	if (err)
		ctx_reply_err(c, err);
	else if (c->op == FS_READLINK) {
		char *t = strndup((const char *)res, len);
		if (!t || len == 0 || memchr(res, '\0', len))
			bad_answer(c);
		else if (ctx_claim(c))
			fuse_reply_readlink(c->req, t);
		free(t);
	} else if (len > c->size)
		bad_answer(c);
	else if (ctx_claim(c))
		fuse_reply_buf(c->req, (const char *)res, len);
	ctx_free(c);
}

static void on_written(struct session *s, int err, const uint8_t *res,
		       size_t len, void *arg)
{
	struct gctx *c = arg;
	struct proto_rd r = {res, len, 0};

	if (err) {
		ctx_reply_err(c, err);
	} else {
		uint64_t n = c->op == FS_COPY_RANGE ? proto_rd_u64(&r)
						    : proto_rd_u32(&r);
		if (r.bad || n > c->size)
			bad_answer(c);
		else if (ctx_claim(c))
			fuse_reply_write(c->req, (size_t)n);
	}
	ctx_free(c);
}

/*
 * With change notifications the kernel keeps a file's pages and a
 * directory's listing across opens: a change in the guest invalidates
 * them (and a size or mtime change seen in new attributes does too).
 */
static void on_open(struct session *s, int err, const uint8_t *res, size_t len,
		    void *arg)
{
	struct gctx *c = arg;
	struct proto_rd r = {res, len, 0};
	bool dir = c->op == FS_OPENDIR;

	if (err) {
		ctx_reply_err(c, err);
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
	h->dir = dir;
	h->refs = 1;
	session_get(s);
	c->fi.fh = (uintptr_t)h;
	c->fi.keep_cache = agent_fs_notifies(s);
	if (dir)
		c->fi.cache_readdir = agent_fs_notifies(s);
	if (!ctx_claim(c) || fuse_reply_open(c->req, &c->fi) != 0) {
		release_fh(s, fh, dir);
		session_put(s);
		free(h);
	}
out:
	ctx_free(c);
}

/* One entry of a READDIR or READDIRPLUS answer. */
struct gdirent {
	uint64_t next, ino, nid;
	uint32_t type;
	struct proto_attr a;
	char name[256];
};

/* false for a malformed entry */
static bool rd_dirent(struct proto_rd *r, bool plus, struct gdirent *d)
{
	uint16_t nlen;
	const uint8_t *name;

	d->next = proto_rd_u64(r);
	d->ino = proto_rd_u64(r);
	d->type = proto_rd_u32(r);
	name = proto_rd_str(r, &nlen);
	d->nid = 0;
	if (plus) {
		d->nid = proto_rd_u64(r);
		proto_rd_attr(r, &d->a);
	}
	if (r->bad || nlen == 0 || nlen > 255 || memchr(name, '/', nlen) ||
	    memchr(name, '\0', nlen))
		return false;
	memcpy(d->name, name, nlen);
	d->name[nlen] = '\0';
	return true;
}

/* A reference the agent counted for an entry the kernel never got. */
static void forget_nid(struct session *s, uint64_t nid)
{
	uint8_t a[16];

	proto_put_u64(a, nid);
	proto_put_u64(a + 8, 1);
	agent_fs_request(s, FS_FORGET, a, sizeof(a), NULL, 0, NULL, NULL);
}

/*
 * Pack the entries that fit into out.  READDIRPLUS entries carry a
 * reference each (the kernel then knows the node, as after LOOKUP):
 * refs lists the host inos taken, and every nid that did not fit is
 * given back to the agent at once.
 */
static int pack_dirents(struct gctx *c, struct proto_rd *r, char *out,
			size_t *used, uint64_t *refs, size_t *nrefs)
{
	bool plus_answer = c->op == FS_READDIRPLUS, full = false;
	struct gdirent d;

	while (r->left > 0) {
		if (!rd_dirent(r, plus_answer, &d))
			return -1;
		if (full) {
			if (d.nid)
				forget_nid(c->s, d.nid);
			continue;
		}
		struct fuse_entry_param e = {0};
		e.attr.st_ino = d.ino;
		e.attr.st_mode = (d.type & 017) << 12;
		size_t need = c->plus ? fuse_add_direntry_plus(c->req, NULL, 0,
							       d.name, NULL, 0)
				      : fuse_add_direntry(c->req, NULL, 0,
							  d.name, NULL, 0);
		if (*used + need > c->size) {
			full = true;
			if (d.nid)
				forget_nid(c->s, d.nid);
			continue;
		}
		if (!c->plus) {
			fuse_add_direntry(c->req, out + *used, c->size - *used,
					  d.name, &e.attr, (off_t)d.next);
		} else {
			if (d.nid) {
				e.ino = gnode_ref(c->s, d.nid);
				refs[(*nrefs)++] = e.ino;
				to_stat(&d.a, e.ino, &e.attr);
				e.attr_timeout = cache_timeout(c->s);
				e.entry_timeout = 0; /* see inval_apply */
			}
			fuse_add_direntry_plus(c->req, out + *used,
					       c->size - *used, d.name, &e,
					       (off_t)d.next);
		}
		*used += need;
	}
	return 0;
}

static void on_readdir(struct session *s, int err, const uint8_t *res,
		       size_t len, void *arg)
{
	struct gctx *c = arg;
	struct proto_rd r = {res, len, 0};
	char *out = malloc(c->size ? c->size : 1);
	/* an entry takes at least 8+8+4+2+1 bytes of the answer */
	uint64_t *refs = malloc((len / 23 + 1) * sizeof(*refs));
	size_t used = 0, nrefs = 0;

	if (!out || !refs)
		abort();
	if (err) {
		ctx_reply_err(c, err);
		goto out;
	}
	if (pack_dirents(c, &r, out, &used, refs, &nrefs) < 0) {
		bad_answer(c);
		goto undo;
	}
	if (ctx_claim(c) && fuse_reply_buf(c->req, out, used) == 0)
		goto out;
undo:
	/* The kernel did not take the entries: nor their references. */
	for (size_t i = 0; i < nrefs; i++)
		gnode_forget(refs[i], 1);
out:
	free(refs);
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
		ctx_reply_err(c, err);
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
	if (ctx_claim(c))
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
	/* Interrupted before its context was in flight: see gfs_interrupt. */
	if (!err && fuse_req_interrupted(req))
		err = EINTR;
	if (!err)
		err = -agent_fs_request(s, op, w->p, w->len, data, dlen, cb, c);
	if (err) {
		if (c) {
			ctx_reply_err(c, err);
			ctx_free(c);
		} else {
			fuse_reply_err(req, err);
		}
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
	/* A node of an earlier agent connection: its nid is gone (or,
	 * after a guest restart, may name another file). */
	if (agent_conn_gen(g->s) != 0 && !gnode_live(g)) {
		fuse_reply_err(req, ESTALE);
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
		ctx_reply_err(c, err);
		goto out;
	}
	proto_rd_attr(&r, &a);
	if (r.bad) {
		bad_answer(c);
		goto out;
	}
	e.ino = gnode_ref(s, PROTO_FS_ROOT);
	to_stat(&a, e.ino, &e.attr);
	/* The entry files/ belongs to the tree, which never caches. */
	e.attr_timeout = cache_timeout(s);
	if (!ctx_claim(c) || fuse_reply_entry(c->req, &e) != 0)
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
	want_interrupt(req);
	lock();
	struct gctx *c = ctx_new(req, s, FS_GETATTR);
	send_op(req, s, FS_GETATTR, &w, NULL, 0, on_root_attr, c);
	session_put(s);
	unlock();
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

	want_interrupt(req);
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

	want_interrupt(req);
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

	want_interrupt(req);
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

	want_interrupt(req);
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

	want_interrupt(req);
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

	want_interrupt(req);
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

	want_interrupt(req);
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
	bool plus = op == FS_READDIRPLUS;
	uint8_t b[20];
	WR(b);

	if (size > PROTO_FS_IO_MAX)
		size = PROTO_FS_IO_MAX;
	want_interrupt(req);
	lock();
	/* Agents before change notifications have no READDIRPLUS: their
	 * entries go out in its format without attributes. */
	if (plus && !agent_fs_notifies(h->s))
		op = FS_READDIR;
	proto_wr_u64(&w, h->fh);
	proto_wr_u64(&w, (uint64_t)off);
	proto_wr_u32(&w, (uint32_t)size);
	struct gctx *c = ctx_new(req, h->s, op);
	c->size = size;
	c->plus = plus;
	send_op(req, h->s, op, &w, NULL, 0, cb, c);
	unlock();
}

static void gfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	handle_io(req, fi, FS_READ, off, size, on_bytes);
}

/* One write on the way (see WB_WINDOW). */
struct wbreq {
	struct gfh *h;
	size_t size;
	bool timed_out; /* counted as failed already (gfs_timeout) */
};

/*
 * Answer the writes and flushes of h that may go now: a WRITE once the
 * window has room for it again, a FLUSH once nothing is on the way.  A
 * failure already known is their answer (and is then told).
 */
static void wb_wake(struct gfh *h)
{
	struct gctx *c;

	while ((c = h->waits) != NULL) {
		bool flush = c->op == GFS_FLUSH;
		if (flush ? h->wb_bytes > 0 : h->wb_bytes > WB_WINDOW)
			break;
		h->waits = c->wnext;
		if (h->wb_err) {
			ctx_reply_err(c, h->wb_err);
			h->wb_err = 0;
		} else if (flush) {
			ctx_reply_err(c, 0);
		} else if (ctx_claim(c)) {
			fuse_reply_write(c->req, c->size);
		}
		ctx_free(c);
	}
}

static void on_wb_written(struct session *s, int err, const uint8_t *res,
			  size_t len, void *arg)
{
	struct wbreq *w = arg;
	struct gfh *h = w->h;
	struct proto_rd r = {res, len, 0};

	if (w->timed_out)
		goto out;
	if (!err) {
		uint32_t n = proto_rd_u32(&r);
		/* A short write to a regular file: the guest's disk is full. */
		if (r.bad || n > w->size)
			err = EIO;
		else if (n < w->size)
			err = ENOSPC;
	}
	if (err && !h->wb_err)
		h->wb_err = err;
	h->wb_bytes -= w->size;
	wb_wake(h);
out:
	gfh_put(h);
	free(w);
}

static void gfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		      size_t size, off_t off, struct fuse_file_info *fi)
{
	struct gfh *h = gfh_of(fi);
	struct wbreq *wb;
	uint8_t b[16];
	int err;
	WR(b);

	if (size > PROTO_FS_IO_MAX) {
		fuse_reply_err(req, EFBIG);
		return;
	}
	want_interrupt(req);
	lock();
	if (h->wb_err) {
		err = h->wb_err;
		h->wb_err = 0;
		goto fail;
	}
	if ((err = session_check(h->s)) != 0)
		goto fail;
	proto_wr_u64(&w, h->fh);
	proto_wr_u64(&w, (uint64_t)off);
	if (agent_queued(h->s) > WB_QUEUE_MAX) {
		struct gctx *c = ctx_new(req, h->s, FS_WRITE);
		c->size = size;
		send_op(req, h->s, FS_WRITE, &w, buf, size, on_written, c);
		unlock();
		return;
	}
	wb = calloc(1, sizeof(*wb));
	if (!wb)
		abort();
	wb->h = gfh_get(h);
	wb->size = size;
	err = -agent_fs_request(h->s, FS_WRITE, w.p, w.len, buf, size,
				on_wb_written, wb);
	if (err) {
		gfh_put(h);
		free(wb);
		goto fail;
	}
	h->wb_bytes += size;
	if (h->wb_bytes <= WB_WINDOW && h->waits == NULL) {
		fuse_reply_write(req, size);
	} else {
		/* Over the window: answered when the guest catches up. */
		struct gctx *c = ctx_new(req, h->s, FS_WRITE), **pp;
		c->size = size;
		c->h = gfh_get(h);
		for (pp = &h->waits; *pp; pp = &(*pp)->wnext)
			;
		*pp = c;
	}
	unlock();
	return;
fail:
	unlock();
	fuse_reply_err(req, err);
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
	want_interrupt(req);
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

	want_interrupt(req);
	lock();
	proto_wr_u64(&w, h->fh);
	proto_wr_u32(&w, (uint32_t)datasync);
	struct gctx *c = ctx_new(req, h->s, FS_FSYNC);
	c->h = gfh_get(h);
	send_op(req, h->s, FS_FSYNC, &w, NULL, 0, on_empty, c);
	unlock();
}

/* close(2): wait for the handle's writes; their failure is close's. */
static void gfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct gfh *h = gfh_of(fi);
	struct gctx *c, **pp;

	want_interrupt(req);
	lock();
	c = ctx_new(req, h->s, GFS_FLUSH);
	c->h = gfh_get(h);
	for (pp = &h->waits; *pp; pp = &(*pp)->wnext)
		;
	*pp = c;
	wb_wake(h);
	unlock();
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
	gfh_put(h); /* writes still on the way hold it */
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

/* find, du, ls -l, git status: names and attributes in one round trip. */
static void gfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			    off_t off, struct fuse_file_info *fi)
{
	handle_io(req, fi, FS_READDIRPLUS, off, size, on_readdir);
}

/* ---- change notifications ------------------------------------------- */

/*
 * The agent reports changes in the guest (FSNOTIFY); the kernel's cached
 * entries, attributes, pages and listings for them are dropped by a thread
 * of its own: fuse_lowlevel_notify_inval_entry waits for the directory's
 * lock, which a FUSE request may hold while it waits for the event loop,
 * so neither the loop nor anything holding model_lock may call it.
 */
#define QCAP 4096

struct inval {
	uint64_t ino;	   /* attributes and data of ino go */
	uint64_t parent;   /* nonzero: the entry name in parent goes too */
	struct session *s; /* ino 0: every node of s (only compared) */
	uint16_t nlen;
	char name[256];
};

static struct fuse_session *notify_se;
static pthread_t notify_thread;
static bool notify_running;
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static struct inval q[QCAP];
static size_t q_head, q_len;
static bool q_overflow, q_stop;

static bool inval_same(const struct inval *a, const struct inval *b)
{
	return a->ino == b->ino && a->parent == b->parent && a->s == b->s &&
	       a->nlen == b->nlen && memcmp(a->name, b->name, a->nlen) == 0;
}

/* Queue one invalidation (model_lock held).  When the thread falls that
 * far behind, it drops everything instead. */
static void inval_push(const struct inval *v)
{
	pthread_mutex_lock(&q_lock);
	if (q_len > 0 && inval_same(&q[(q_head + q_len - 1) % QCAP], v))
		goto out;
	if (q_len == QCAP) {
		q_overflow = true;
		q_len = 0;
	} else {
		q[(q_head + q_len) % QCAP] = *v;
		q_len++;
	}
	pthread_cond_signal(&q_cond);
out:
	pthread_mutex_unlock(&q_lock);
}

/* Every node of s (NULL: of every session), copied under model_lock. */
static uint64_t *inos_of(struct session *s, size_t *n)
{
	size_t cap = 64, used = 0;
	uint64_t *v = malloc(cap * sizeof(*v));

	if (!v)
		abort();
	lock();
	for (size_t b = 0; b < NBUCKETS; b++)
		for (struct gnode *g = by_ino[b]; g; g = g->next_ino) {
			if (s && g->s != s)
				continue;
			if (used == cap) {
				cap *= 2;
				v = realloc(v, cap * sizeof(*v));
				if (!v)
					abort();
			}
			v[used++] = g->ino;
		}
	unlock();
	*n = used;
	return v;
}

static void inval_nodes(struct session *s)
{
	size_t n;
	uint64_t *v = inos_of(s, &n);

	for (size_t i = 0; i < n; i++)
		fuse_lowlevel_notify_inval_inode(notify_se, v[i], 0, 0);
	free(v);
}

/*
 * Errors (ENOENT: the kernel does not hold it) need nothing done.
 * Names are never invalidated: notify_inval_entry unhashes the dentry
 * even when it is a process's cwd (a directory just made through the
 * mount and entered: its own creation is reported back, and getcwd then
 * fails with ENOENT).  Entries are answered with a zero timeout instead,
 * so the kernel revalidates names by lookup and keeps a dentry whose
 * node is unchanged; attributes, pages and listings stay cached.
 */
static void inval_apply(const struct inval *v)
{
	if (v->ino == 0) {
		inval_nodes(v->s);
		return;
	}
	fuse_lowlevel_notify_inval_inode(notify_se, v->ino, 0, 0);
}

static void *notify_main(void *arg)
{
	static struct inval batch[64];

	(void)arg;
	pthread_mutex_lock(&q_lock);
	for (;;) {
		while (!q_len && !q_overflow && !q_stop)
			pthread_cond_wait(&q_cond, &q_lock);
		if (q_stop)
			break;
		bool all = q_overflow;
		size_t n = 0;
		q_overflow = false;
		while (q_len && n < 64) {
			batch[n++] = q[q_head];
			q_head = (q_head + 1) % QCAP;
			q_len--;
		}
		pthread_mutex_unlock(&q_lock);
		if (all)
			inval_nodes(NULL);
		for (size_t i = 0; i < n; i++)
			inval_apply(&batch[i]);
		pthread_mutex_lock(&q_lock);
	}
	pthread_mutex_unlock(&q_lock);
	return NULL;
}

/* One FSNOTIFY frame (model_lock held; the hook of agent.h). */
static int gfs_on_notify(struct session *s, const uint8_t *p, size_t len)
{
	struct proto_rd r = {p, len, 0};
	struct proto_fs_note n;
	int rc;

	while ((rc = proto_fs_note_next(&r, &n)) > 0) {
		struct inval v = {.s = s};
		if (n.kind != FSN_ALL) {
			struct gnode *g = gnode_by_key(s, n.nid);
			if (!g)
				continue; /* not known here: nothing cached */
			v.ino = g->ino;
			if (n.kind == FSN_ENTRY) {
				v.parent = g->ino;
				v.nlen = n.nlen;
				memcpy(v.name, n.name, n.nlen);
			}
		}
		inval_push(&v);
	}
	return rc;
}

/*
 * The agent timeout passed: answer ETIMEDOUT now, like an interrupt, and
 * let the late answer (or the connection's end) come to the callback,
 * which gives back what the guest made for a request answered already.
 */
static void gfs_timeout(agent_fs_cb cb, void *arg)
{
	if (cb == on_wb_written) {
		struct wbreq *w = arg;
		struct gfh *h = w->h;
		w->timed_out = true;
		if (!h->wb_err)
			h->wb_err = ETIMEDOUT;
		h->wb_bytes -= w->size;
		wb_wake(h);
		return;
	}
	ctx_reply_err(arg, ETIMEDOUT);
}

void gfs_start(struct fuse_session *se)
{
	agent_set_fs_timeout(gfs_timeout);
	notify_se = se;
	if (pthread_create(&notify_thread, NULL, notify_main, NULL) != 0) {
		log_warnx("files/: no notification thread; nothing is cached");
		return;
	}
	notify_running = true;
	agent_set_fs_notify(gfs_on_notify);
}

bool gfs_stop(void)
{
	struct timespec until;

	if (!notify_running)
		return true;
	pthread_mutex_lock(&q_lock);
	q_stop = true;
	pthread_cond_signal(&q_cond);
	pthread_mutex_unlock(&q_lock);
	/* It may sit in the kernel behind a directory lock: do not hang
	 * the shutdown on it. */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	notify_running = pthread_timedjoin_np(notify_thread, NULL, &until) != 0;
	return !notify_running;
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
    .readdirplus = gfs_readdirplus,
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
