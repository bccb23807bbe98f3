/* Host side of the agent protocol: framing, handshake, requests. */
#include "agent.h"
#include "evloop.h"
#include "job.h"
#include "log.h"
#include "model.h"
#include "proto.h"
#include "stream.h"
#include "transport.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define MAX_PENDING 1024
/*
 * Bytes waiting to go to the guest.  Past MAX_QUEUED, a guest that took
 * nothing for STALL_MS has stopped reading (a hostile one may send PINGs
 * and never read the PONGs); past HARD_QUEUED it has in any case.  The
 * host itself may queue a lot for a guest that reads (write-behind under
 * files/, many writers at once), hence the time bound.
 */
#define MAX_QUEUED  (16u * 1024 * 1024)
#define HARD_QUEUED (64u * 1024 * 1024)
#define STALL_MS    5000
#define RBUF_CAP    (PROTO_HDR_LEN + PROTO_MAX_FS)

struct pending {
	struct pending *next;
	uint64_t id;
	int64_t deadline;
	agent_resp_cb cb;
	agent_fs_cb fs_cb; /* binary file operation instead of JSON */
	void *arg;
};

struct agent_conn {
	struct session *s;
	struct transport *t;
	uint8_t *rbuf;
	size_t rlen;
	struct buf out;
	size_t out_off;
	int hello_done;
	uint64_t next_id;
	struct pending *pend;
	int npend;
	struct timer req_timer;
	int64_t sent_ms; /* when the guest last took bytes */
	uint64_t gen;	 /* agent_conn_gen, set at the handshake */
	bool fs_notify;	 /* the agent sends FSNOTIFY */
};

static uint64_t last_gen;
static agent_fs_notify_fn fs_notify_hook;
static agent_fs_timeout_fn fs_timeout_hook;

static void conn_flush(struct agent_conn *c);
static int agent_attach_transport(struct session *s, struct transport *t);
static void conn_ready(struct transport *t, bool readable, bool writable,
		       bool hangup);

static struct agent_conn *conn_of(struct timer *t)
{
	return (struct agent_conn *)((char *)t -
				     offsetof(struct agent_conn, req_timer));
}

static void b64encode(const uint8_t *in, size_t n, char *out)
{
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
	    "tuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = tbl[(v >> 18) & 63];
		out[o++] = tbl[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? tbl[v & 63] : '=';
	}
	out[o] = '\0';
}

static void conn_queue(struct agent_conn *c, uint8_t type, uint32_t chan,
		       const void *p1, size_t n1, const void *p2, size_t n2)
{
	uint8_t hdr[PROTO_HDR_LEN];

	proto_encode_hdr(hdr, type, chan, (uint32_t)(n1 + n2));
	buf_add(&c->out, hdr, sizeof(hdr));
	buf_add(&c->out, p1, n1);
	buf_add(&c->out, p2, n2);
	conn_flush(c);
}

static void conn_queue_json(struct agent_conn *c, uint8_t type, json_t *j)
{
	char *txt = json_dumps(j, JSON_COMPACT);

	if (!txt)
		abort();
	conn_queue(c, type, 0, txt, strlen(txt), NULL, 0);
	free(txt);
}

static void conn_flush(struct agent_conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = c->t->ops->send(c->t, c->out.data + c->out_off,
					    c->out.len - c->out_off);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			/* The read side sees the hangup and handles it. */
			c->out_off = c->out.len;
			break;
		}
		c->out_off += (size_t)n;
		if (n > 0)
			c->sent_ms = mono_ms();
	}
	if (c->out_off == c->out.len) {
		c->out.len = 0;
		c->out_off = 0;
	} else if (c->out_off > 65536) {
		memmove(c->out.data, c->out.data + c->out_off,
			c->out.len - c->out_off);
		c->out.len -= c->out_off;
		c->out_off = 0;
	}
	c->t->ops->want_write(c->t, c->out.len > c->out_off);
}

static void send_hello(struct agent_conn *c)
{
	uint8_t rnd[64];
	char b64[100];

	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		abort();
	b64encode(rnd, sizeof(rnd), b64);
	/* fs_notify: an agent that knows FSNOTIFY may send it (an older
	 * agent ignores the key, and files/ then caches nothing). */
	json_t *j =
	    json_pack("{s:i, s:I, s:s, s:s, s:b}", "proto", PROTO_VERSION,
		      "time_ns", (json_int_t)now_ns(), "hostname", c->s->name,
		      "entropy", b64, "fs_notify", fs_notify_hook != NULL);
	conn_queue_json(c, PT_HELLO, j);
	json_decref(j);
}

static void fail_pending(struct agent_conn *c, int err, const char *text)
{
	while (c->pend) {
		struct pending *p = c->pend;
		c->pend = p->next;
		c->npend--;
		if (p->fs_cb)
			p->fs_cb(c->s, err, NULL, 0, p->arg);
		else
			p->cb(c->s, NULL, err, text, p->arg);
		free(p);
	}
}

static void conn_free(struct agent_conn *c)
{
	timer_cancel(&c->req_timer);
	c->t->ops->close(c->t);
	buf_free(&c->out);
	free(c->rbuf);
	free(c);
}

void agent_detach(struct session *s)
{
	struct agent_conn *c = s->conn;

	if (!c)
		return;
	s->conn = NULL;
	s->agent_up = false;
	fail_pending(c, ECONNRESET, "agent connection closed");
	conn_free(c);
	stream_session_lost(s);
	waitq_wake(&s->wq);
}

/* The guest broke the protocol: its session fails, nothing else does. */
static void conn_violation(struct agent_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void conn_violation(struct agent_conn *c, const char *fmt, ...)
{
	struct session *s = c->s;
	char why[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warnx("session %s: agent protocol violation: %s", s->name, why);
	agent_detach(s);
	session_fail(s, "agent protocol violation: %s", why);
}

static void req_timeout(struct timer *t)
{
	struct agent_conn *c = conn_of(t);
	int64_t now = mono_ms(), next = INT64_MAX;

	for (struct pending **pp = &c->pend; *pp;) {
		struct pending *p = *pp;
		if (p->deadline <= now && p->fs_cb && fs_timeout_hook) {
			/* Answered now; the late answer still comes to cb. */
			p->deadline = INT64_MAX;
			fs_timeout_hook(p->fs_cb, p->arg);
		} else if (p->deadline <= now) {
			*pp = p->next;
			c->npend--;
			if (p->fs_cb)
				p->fs_cb(c->s, ETIMEDOUT, NULL, 0, p->arg);
			else
				p->cb(c->s, NULL, ETIMEDOUT,
				      "agent did not answer", p->arg);
			free(p);
			continue;
		}
		if (p->deadline < next)
			next = p->deadline;
		pp = &p->next;
	}
	if (next != INT64_MAX)
		timer_arm(&c->req_timer, next - now);
}

void agent_set_fs_timeout(agent_fs_timeout_fn fn)
{
	fs_timeout_hook = fn;
}

int agent_request(struct session *s, json_t *req, agent_resp_cb cb, void *arg,
		  int64_t timeout_ms)
{
	struct agent_conn *c = s->conn;

	if (!c || !c->hello_done || c->npend >= MAX_PENDING) {
		json_decref(req);
		return -1;
	}
	struct pending *p = calloc(1, sizeof(*p));
	if (!p)
		abort();
	p->id = ++c->next_id;
	p->deadline = mono_ms() + timeout_ms;
	p->cb = cb;
	p->arg = arg;
	p->next = c->pend;
	c->pend = p;
	c->npend++;
	json_object_set_new(req, "id", json_integer((json_int_t)p->id));
	conn_queue_json(c, PT_REQ, req);
	json_decref(req);
	if (!c->req_timer.armed || c->req_timer.when_ms > p->deadline)
		timer_arm(&c->req_timer, timeout_ms);
	return 0;
}

int agent_fs_request(struct session *s, uint32_t op, const void *args,
		     size_t alen, const void *data, size_t dlen, agent_fs_cb cb,
		     void *arg)
{
	struct agent_conn *c = s->conn;
	uint8_t hdr[16];
	uint64_t id;

	if (!c || !c->hello_done)
		return -EAGAIN;
	if (16 + alen + dlen > PROTO_MAX_FS)
		return -EINVAL;
	if (cb && c->npend >= MAX_PENDING)
		return -EAGAIN;
	id = ++c->next_id;
	if (cb) {
		struct pending *p = calloc(1, sizeof(*p));
		if (!p)
			abort();
		p->id = id;
		p->deadline = mono_ms() + cfg.agent_timeout_ms;
		p->fs_cb = cb;
		p->arg = arg;
		p->next = c->pend;
		c->pend = p;
		c->npend++;
		if (!c->req_timer.armed || c->req_timer.when_ms > p->deadline)
			timer_arm(&c->req_timer, cfg.agent_timeout_ms);
	}
	proto_put_u64(hdr, id);
	proto_put_u32(hdr + 8, op);
	proto_put_u32(hdr + 12, 0);
	uint8_t fh[PROTO_HDR_LEN];
	proto_encode_hdr(fh, PT_FSREQ, 0, (uint32_t)(16 + alen + dlen));
	buf_add(&c->out, fh, sizeof(fh));
	buf_add(&c->out, hdr, sizeof(hdr));
	buf_add(&c->out, args, alen);
	buf_add(&c->out, data, dlen);
	conn_flush(c);
	return 0;
}

static void on_fsresp(struct agent_conn *c, const uint8_t *p, size_t n)
{
	uint64_t id = proto_get_u64(p);
	int32_t err = (int32_t)proto_get_u32(p + 8);

	for (struct pending **pp = &c->pend; *pp; pp = &(*pp)->next) {
		struct pending *q = *pp;
		if (q->id != id || !q->fs_cb)
			continue;
		*pp = q->next;
		c->npend--;
		if (err < 0 || err >= 4096)
			err = EIO;
		q->fs_cb(c->s, err, err ? NULL : p + 12, err ? 0 : n - 12,
			 q->arg);
		free(q);
		return;
	}
	log_debug("session %s: fs answer to unknown request %llu", c->s->name,
		  (unsigned long long)id);
}

void agent_send_data(struct session *s, uint32_t chan, uint64_t off,
		     const void *p, size_t n)
{
	uint8_t o[8];

	if (!s->conn || !s->conn->hello_done)
		return;
	proto_put_u64(o, off);
	conn_queue(s->conn, PT_DATA, chan, o, 8, p, n);
}

static void send_u64(struct session *s, uint8_t type, uint32_t chan,
		     uint64_t off)
{
	uint8_t o[8];

	if (!s->conn || !s->conn->hello_done)
		return;
	proto_put_u64(o, off);
	conn_queue(s->conn, type, chan, o, 8, NULL, 0);
}

void agent_send_ack(struct session *s, uint32_t chan, uint64_t off)
{
	send_u64(s, PT_ACK, chan, off);
}

void agent_send_eof(struct session *s, uint32_t chan, uint64_t off)
{
	send_u64(s, PT_EOF, chan, off);
}

void agent_set_fs_notify(agent_fs_notify_fn fn)
{
	fs_notify_hook = fn;
}

bool agent_fs_notifies(struct session *s)
{
	return s->conn && s->conn->hello_done && s->conn->fs_notify;
}

uint64_t agent_conn_gen(struct session *s)
{
	return s->conn && s->conn->hello_done ? s->conn->gen : 0;
}

size_t agent_queued(struct session *s)
{
	return s->conn ? s->conn->out.len - s->conn->out_off : 0;
}

static json_t *parse_json(struct agent_conn *c, const uint8_t *p, size_t n)
{
	json_error_t jerr;
	json_t *j =
	    json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &jerr);

	if (!j || !json_is_object(j)) {
		json_decref(j);
		conn_violation(c, "message is not a JSON object");
		return NULL;
	}
	return j;
}

static void on_hello(struct agent_conn *c, json_t *j)
{
	json_t *proto = json_object_get(j, "proto");
	json_t *jobs = json_object_get(j, "jobs");

	if (!json_is_integer(proto) ||
	    json_integer_value(proto) != PROTO_VERSION) {
		conn_violation(c, "agent speaks protocol %lld, tenkid %d",
			       json_is_integer(proto)
				   ? (long long)json_integer_value(proto)
				   : -1LL,
			       PROTO_VERSION);
		return;
	}
	if (jobs && !json_is_array(jobs)) {
		conn_violation(c, "HELLO jobs is not an array");
		return;
	}
	c->hello_done = 1;
	c->gen = ++last_gen;
	c->fs_notify =
	    fs_notify_hook && json_is_true(json_object_get(j, "fs_notify"));
	log_info("session %s: agent up (%s)", c->s->name,
		 json_string_value(json_object_get(j, "agent"))
		     ?: "unknown agent");
	struct session *s = c->s;
	jobs_on_hello(s, jobs);
	if (s->conn == c)
		session_agent_ready(s);
}

static void on_resp(struct agent_conn *c, json_t *j)
{
	json_t *id = json_object_get(j, "id");

	if (!json_is_integer(id)) {
		conn_violation(c, "answer without an id");
		return;
	}
	for (struct pending **pp = &c->pend; *pp; pp = &(*pp)->next) {
		struct pending *p = *pp;
		if ((json_int_t)p->id != json_integer_value(id) || p->fs_cb)
			continue;
		*pp = p->next;
		c->npend--;
		json_t *e = json_object_get(j, "errno");
		if (e) {
			int err = json_is_integer(e) &&
					  json_integer_value(e) > 0 &&
					  json_integer_value(e) < 4096
				      ? (int)json_integer_value(e)
				      : EIO;
			const char *txt =
			    json_string_value(json_object_get(j, "error"));
			p->cb(c->s, NULL, err, txt ? txt : strerror(err),
			      p->arg);
		} else {
			p->cb(c->s, j, 0, NULL, p->arg);
		}
		free(p);
		return;
	}
	/* An answer to a request that timed out: harmless, ignore. */
	log_debug("session %s: answer to unknown request %lld", c->s->name,
		  (long long)json_integer_value(id));
}

static void on_event(struct agent_conn *c, json_t *j)
{
	const char *ev = json_string_value(json_object_get(j, "event"));

	if (ev && strcmp(ev, "exit") == 0) {
		if (job_on_exit(c->s, j) < 0)
			conn_violation(c, "exit event for an unknown job");
		return;
	}
	if (ev && strcmp(ev, "reset") == 0) {
		json_t *rx = json_object_get(j, "rx");
		if (!json_is_integer(rx) || json_integer_value(rx) < 1 ||
		    json_integer_value(rx) > PROTO_MAX_CHANNEL)
			conn_violation(c, "reset event without a channel");
		else
			stream_on_reset(c->s, (uint32_t)json_integer_value(rx));
		return;
	}
	log_debug("session %s: ignoring event %s", c->s->name,
		  ev ? ev : "(none)");
}

/* Returns false when the connection is gone after this frame. */
static bool handle_frame(struct agent_conn *c, const struct proto_hdr *h,
			 const uint8_t *p)
{
	struct session *s = c->s;
	json_t *j;
	int rc;

	if (!c->hello_done && h->type != PT_HELLO) {
		conn_violation(c, "%s frame before HELLO",
			       proto_type_str(h->type));
		return false;
	}
	switch (h->type) {
	case PT_HELLO:
		if (c->hello_done) {
			conn_violation(c, "second HELLO");
			return false;
		}
		if (!(j = parse_json(c, p, h->len)))
			return false;
		on_hello(c, j);
		json_decref(j);
		break;
	case PT_RESP:
	case PT_EVENT:
		if (!(j = parse_json(c, p, h->len)))
			return false;
		if (h->type == PT_RESP)
			on_resp(c, j);
		else
			on_event(c, j);
		json_decref(j);
		break;
	case PT_DATA:
		if ((rc = stream_on_data(s, h->chan, proto_get_u64(p), p + 8,
					 h->len - 8)) < 0 ||
		    (rc == 0 && job_on_data(s, h->chan, proto_get_u64(p), p + 8,
					    h->len - 8) < 0)) {
			conn_violation(c, "bad DATA on channel %u", h->chan);
			return false;
		}
		break;
	case PT_ACK:
		if ((rc = stream_on_ack(s, h->chan, proto_get_u64(p))) < 0 ||
		    (rc == 0 && job_on_ack(s, h->chan, proto_get_u64(p)) < 0)) {
			conn_violation(c, "bad ACK on channel %u", h->chan);
			return false;
		}
		break;
	case PT_EOF:
		if ((rc = stream_on_eof(s, h->chan, proto_get_u64(p))) < 0 ||
		    (rc == 0 && job_on_eof(s, h->chan, proto_get_u64(p)) < 0)) {
			conn_violation(c, "bad EOF on channel %u", h->chan);
			return false;
		}
		break;
	case PT_FSRESP:
		on_fsresp(c, p, h->len);
		break;
	case PT_FSNOTIFY:
		if (!c->fs_notify || fs_notify_hook(s, p, h->len) < 0) {
			conn_violation(c, "bad FSNOTIFY");
			return false;
		}
		break;
	case PT_PING:
		conn_queue(c, PT_PONG, 0, p, h->len, NULL, 0);
		break;
	case PT_PONG:
		break;
	default:
		conn_violation(c, "%s frame from the agent",
			       proto_type_str(h->type));
		return false;
	}
	return s->conn == c;
}

/*
 * Before the handshake, bytes of an earlier connection may still come
 * through the port: whole frames, cut-off frames, garbage.  Skip to the
 * first valid HELLO header; returns its offset, or where scanning must
 * go on once more bytes arrive.
 */
static size_t skip_to_hello(struct agent_conn *c)
{
	size_t off = 0;

	while (off < c->rlen) {
		off += proto_resync(c->rbuf + off, c->rlen - off);
		if (c->rlen - off < PROTO_HDR_LEN)
			return off;
		struct proto_hdr h;
		size_t flen;
		int st = proto_decode(c->rbuf + off, c->rlen - off, &h, &flen);
		if (st == PROTO_OK && h.type == PT_HELLO)
			return off;
		if (st == PROTO_NEED_MORE && c->rbuf[off + 12] == PT_HELLO)
			return off; /* a HELLO still arriving */
		off++;		    /* anything else cannot start our HELLO */
	}
	return off;
}

/* Decode every whole frame in rbuf. */
static bool conn_parse(struct agent_conn *c)
{
	size_t off = 0;

	if (!c->hello_done) {
		off = skip_to_hello(c);
		if (off)
			log_debug("session %s: skipped %zu stale bytes",
				  c->s->name, off);
	}
	while (off < c->rlen) {
		struct proto_hdr h;
		size_t flen;
		int st = proto_decode(c->rbuf + off, c->rlen - off, &h, &flen);
		if (st == PROTO_NEED_MORE)
			break;
		if (st != PROTO_OK) {
			conn_violation(c, "%s", proto_status_str(st));
			return false;
		}
		if (!handle_frame(c, &h, c->rbuf + off + PROTO_HDR_LEN))
			return false;
		off += flen;
	}
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= off;
	return true;
}

static void conn_ready(struct transport *t, bool readable, bool writable,
		       bool hangup)
{
	struct agent_conn *c = t->opaque;
	struct session *s = c->s;

	if (writable)
		conn_flush(c);
	/* Read a bounded amount per wake-up so one guest cannot monopolise
	 * the loop. */
	for (int round = 0; readable && round < 16; round++) {
		ssize_t n =
		    t->ops->recv(t, c->rbuf + c->rlen, RBUF_CAP - c->rlen);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			hangup = true;
			break;
		}
		if (n == 0) {
			hangup = true;
			break;
		}
		c->rlen += (size_t)n;
		if (!conn_parse(c))
			return; /* c is gone */
	}
	if (hangup) {
		agent_detach(s);
		session_agent_lost(s, "agent channel closed");
		return;
	}
	size_t queued = c->out.len - c->out_off;
	if (queued > HARD_QUEUED ||
	    (queued > MAX_QUEUED && mono_ms() - c->sent_ms > STALL_MS))
		conn_violation(c, "agent stopped reading (%zu bytes queued)",
			       queued);
}

int agent_attach(struct session *s, const char *sock_path, char *err,
		 size_t errlen)
{
	agent_detach(s);
	return agent_attach_transport(
	    s, transport_unix_open(sock_path, err, errlen));
}

int agent_attach_fd(struct session *s, int fd, char *err, size_t errlen)
{
	agent_detach(s);
	return agent_attach_transport(s, transport_fd_open(fd, err, errlen));
}

static int agent_attach_transport(struct session *s, struct transport *t)
{
	struct agent_conn *c;

	if (!t)
		return -1;
	c = calloc(1, sizeof(*c));
	c->rbuf = malloc(RBUF_CAP);
	if (!c || !c->rbuf)
		abort();
	c->s = s;
	c->t = t;
	c->sent_ms = mono_ms();
	c->req_timer.cb = req_timeout;
	t->opaque = c;
	t->on_ready = conn_ready;
	s->conn = c;
	send_hello(c);
	return 0;
}
