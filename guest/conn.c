/*
 * Connect streams (docs/protocol.md, "Streams"): a TCP connection from the
 * agent to a port on the guest's loopback, bridged to two data channels.
 *
 * The connection reuses the job streams' machinery: the socket's read side
 * is an ostream (socket -> host on rx) and a dup of it the write side of an
 * istream (host -> socket on tx), so windows, ACKs and the memory budget
 * are the same as for a job's pipes.  The stream exists from the request
 * on: DATA and EOF on tx that follow the request at once are held (within
 * the window) until the connection is up.  Streams belong to one host
 * connection; a new HELLO drops them all.
 *
 * Like jobs, a finished or closed connection is only marked dead; it is
 * freed at the top of the loop so no poll entry of the turn dangles.
 */
#include "agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum conn_state { C_CONNECTING, C_OPEN, C_DEAD };

struct conn {
	enum conn_state state;
	int port;
	int family;    /* AF_INET first, then AF_INET6 */
	int first_err; /* why 127.0.0.1 failed */
	json_int_t id; /* the connect request, answered once */
	int fd;	       /* the socket while connecting */
	int64_t deadline;
	struct ostream out; /* socket -> host, channel rx */
	struct istream in;  /* host -> socket, channel tx */
};

static struct conn *conns[AGENT_MAX_CONNS];
static size_t nconns;
static size_t fill_rr;

static struct conn *conn_by_tx(uint32_t chan)
{
	for (size_t i = 0; i < nconns; i++)
		if (conns[i]->state != C_DEAD && conns[i]->in.chan == chan)
			return conns[i];
	return NULL;
}

static struct conn *conn_by_rx(uint32_t chan)
{
	for (size_t i = 0; i < nconns; i++)
		if (conns[i]->state != C_DEAD && conns[i]->out.chan == chan)
			return conns[i];
	return NULL;
}

bool conn_chan_in_use(uint32_t chan)
{
	return chan != 0 && (conn_by_tx(chan) || conn_by_rx(chan));
}

/* Drop the connection at once; reset tells the guest's server (RST). */
static void conn_kill(struct conn *c, bool reset)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	int fd = c->state == C_OPEN ? c->out.fd : c->fd;

	if (reset && fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	if (reset && c->in.fd >= 0)
		setsockopt(c->in.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	if (c->fd >= 0 && c->state != C_OPEN)
		close(c->fd);
	c->fd = -1;
	c->in.sock = !reset; /* a reset sends no FIN first */
	ostream_free(&c->out);
	istream_free(&c->in);
	c->state = C_DEAD;
}

static void conn_opened(struct conn *c)
{
	int one = 1;
	int d = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);

	if (d < 0) {
		resp_error(c->id, errno, "dup: %s", strerror(errno));
		conn_kill(c, true);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->out.fd = c->fd;
	c->in.fd = d;
	c->fd = -1;
	c->state = C_OPEN;
	resp_ok(c->id, NULL);
	istream_write(&c->in); /* what the host sent meanwhile */
}

static void conn_try(struct conn *c);

static void conn_failed(struct conn *c, int err)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->family == AF_INET) {
		c->first_err = err;
		c->family = AF_INET6;
		conn_try(c);
		return;
	}
	/* ::1 missing altogether says less than why 127.0.0.1 failed. */
	if (err == ECONNREFUSED || err == EAFNOSUPPORT ||
	    err == EADDRNOTAVAIL || err == ENETUNREACH)
		err = c->first_err;
	resp_error(c->id, err, "127.0.0.1 and ::1 port %d: %s", c->port,
		   strerror(err));
	conn_kill(c, false);
}

static void conn_try(struct conn *c)
{
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	struct sockaddr *sa;
	socklen_t len;

	if (c->family == AF_INET) {
		memset(&a4, 0, sizeof(a4));
		a4.sin_family = AF_INET;
		a4.sin_port = htons((uint16_t)c->port);
		a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa = (struct sockaddr *)&a4;
		len = sizeof(a4);
	} else {
		memset(&a6, 0, sizeof(a6));
		a6.sin6_family = AF_INET6;
		a6.sin6_port = htons((uint16_t)c->port);
		a6.sin6_addr = in6addr_loopback;
		sa = (struct sockaddr *)&a6;
		len = sizeof(a6);
	}
	c->fd =
	    socket(c->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_failed(c, errno);
		return;
	}
	if (connect(c->fd, sa, len) == 0) {
		conn_opened(c);
		return;
	}
	if (errno == EINPROGRESS) {
		c->state = C_CONNECTING;
		c->deadline = now_ms() + CONNECT_TIMEOUT_MS;
		return;
	}
	conn_failed(c, errno);
}

int conn_start(int port, uint32_t tx, uint32_t rx, json_int_t id, char *msg,
	       size_t msglen)
{
	struct conn *c;

	if (tx == rx || conn_chan_in_use(tx) || conn_chan_in_use(rx) ||
	    job_by_chan_in(tx) || job_by_chan_out(tx) || job_by_chan_in(rx) ||
	    job_by_chan_out(rx)) {
		snprintf(msg, msglen,
			 "tx and rx: distinct unused channels "
			 "expected");
		return EINVAL;
	}
	if (nconns >= AGENT_MAX_CONNS) {
		snprintf(msg, msglen, "too many connections (%d)",
			 AGENT_MAX_CONNS);
		return EMFILE;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(msg, msglen, "out of memory");
		return ENOMEM;
	}
	c->port = port;
	c->id = id;
	c->family = AF_INET;
	c->state = C_CONNECTING;
	istream_init(&c->in, tx, -1);
	c->in.sock = true;
	ostream_init(&c->out, rx, -1);
	conns[nconns++] = c;
	conn_try(c);
	return 0;
}

int conn_close(uint32_t chan, char *msg, size_t msglen)
{
	struct conn *c = conn_by_tx(chan);

	if (c == NULL)
		c = conn_by_rx(chan);
	if (c == NULL) {
		snprintf(msg, msglen, "no connection on channel %u", chan);
		return ENOENT;
	}
	if (c->state == C_CONNECTING)
		resp_error(c->id, ECONNABORTED, "closed while connecting");
	conn_kill(c, true);
	return 0;
}

void conn_on_connect(void *ptr, int fd)
{
	struct conn *c = ptr;
	socklen_t len = sizeof(int);
	int err = 0;

	if (c->state != C_CONNECTING || c->fd != fd)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == EINPROGRESS || err == EALREADY)
		return;
	if (err != 0)
		conn_failed(c, err);
	else
		conn_opened(c);
}

bool conn_on_data(uint32_t chan, uint64_t off, const uint8_t *p, size_t n)
{
	struct conn *c = conn_by_tx(chan);
	struct istream *s;
	size_t skip;

	if (c == NULL)
		return false;
	s = &c->in;
	if (off > s->recv) {
		alog(L_WARN, "channel %u: DATA at %llu after %llu; dropped",
		     chan, (unsigned long long)off,
		     (unsigned long long)s->recv);
		return true;
	}
	skip = (size_t)(s->recv - off);
	if (skip >= n || s->eof) {
		s->ack_due = true;
		return true;
	}
	p += skip;
	n -= skip;
	if (c->state == C_OPEN && s->fd < 0) {
		/* The server is gone: acknowledge and drop. */
		s->recv += n;
		s->written = s->recv;
		s->ack_due = true;
		return true;
	}
	if (s->buf.len + n > PROTO_WINDOW) {
		alog(L_WARN, "channel %u: host overran the window; dropped",
		     chan);
		return true;
	}
	if (buf_append(&s->buf, p, n) < 0) {
		alog(L_WARN, "channel %u: out of memory; DATA dropped", chan);
		return true;
	}
	s->recv += n;
	if (c->state == C_OPEN)
		istream_write(s);
	return true;
}

bool conn_on_eof(uint32_t chan, uint64_t off)
{
	struct conn *c = conn_by_tx(chan);

	if (c == NULL)
		return false;
	if (off < c->in.recv)
		off = c->in.recv;
	c->in.eof = true;
	c->in.eof_at = off;
	if (c->state == C_OPEN)
		istream_write(&c->in); /* shuts the write side once written */
	return true;
}

bool conn_on_ack(uint32_t chan, uint64_t off)
{
	struct conn *c = conn_by_rx(chan);

	if (c == NULL)
		return false;
	if (c->state == C_OPEN)
		ostream_ack(&c->out, off);
	return true;
}

void conn_send_acks(void)
{
	uint8_t off[8];
	struct conn *c;

	for (size_t i = 0; i < nconns; i++) {
		c = conns[i];
		if (c->state == C_DEAD || !c->in.ack_due)
			continue;
		proto_put_u64(off, c->in.written);
		if (port_send(PT_ACK, c->in.chan, off, 8, NULL, 0) < 0)
			return;
		c->in.ack_due = false;
	}
}

/* One frame per open connection, from a rotating start; true if any. */
bool conn_fill_round(void)
{
	bool any = false;
	struct conn *c;

	for (size_t k = 0; k < nconns; k++) {
		if (port_outq_len() >= OUTQ_LOW || !port_ready())
			break;
		c = conns[(fill_rr + k) % nconns];
		if (c->state != C_OPEN)
			continue;
		if (c->out.read_err) {
			/* The server reset the connection: so does the host's
			 * client, rather than seeing a clean end. */
			json_t *ev = json_pack(
			    "{s:s, s:I, s:i}", "event", "reset", "rx",
			    (json_int_t)c->out.chan, "errno", c->out.read_err);
			if (ev)
				port_send_json(PT_EVENT, ev);
			conn_kill(c, true);
			any = true;
			continue;
		}
		if (ostream_emit(&c->out))
			any = true;
	}
	if (nconns)
		fill_rr = (fill_rr + 1) % nconns;
	return any;
}

void conns_add_polls(void)
{
	struct conn *c;

	for (size_t i = 0; i < nconns; i++) {
		c = conns[i];
		if (c->state == C_CONNECTING) {
			poll_add(c->fd, POLLOUT, PE_CONNECT, c);
			continue;
		}
		if (c->state != C_OPEN)
			continue;
		if (ostream_may_read(&c->out))
			poll_add(c->out.fd, POLLIN, PE_OUT, &c->out);
		if (c->in.fd >= 0 && c->in.buf.len > 0)
			poll_add(c->in.fd, POLLOUT, PE_IN, &c->in);
	}
}

void conns_timers(int64_t now)
{
	for (size_t i = 0; i < nconns; i++) {
		struct conn *c = conns[i];
		if (c->state != C_CONNECTING || c->deadline > now)
			continue;
		resp_error(c->id, ETIMEDOUT, "port %d: connect timed out",
			   c->port);
		conn_kill(c, true);
	}
}

int64_t conns_next_deadline(void)
{
	int64_t next = 0;

	for (size_t i = 0; i < nconns; i++)
		if (conns[i]->state == C_CONNECTING)
			next = deadline_min(next, conns[i]->deadline);
	return next;
}

/* Both directions over: the socket's EOF went out and was acknowledged,
 * and the host's EOF was written (or the server stopped reading). */
static bool conn_finished(const struct conn *c)
{
	return c->state == C_OPEN && c->out.fd < 0 && c->out.eof_sent &&
	       c->out.acked == c->out.end && c->in.fd < 0 && c->in.eof &&
	       !c->in.ack_due;
}

void conns_free_dead(void)
{
	size_t i = 0;

	while (i < nconns) {
		struct conn *c = conns[i];
		if (conn_finished(c))
			conn_kill(c, false);
		if (c->state != C_DEAD) {
			i++;
			continue;
		}
		free(c);
		conns[i] = conns[--nconns];
		conns[nconns] = NULL;
	}
}

/* A new host connection: streams of the old one are gone for good. */
void conns_reset(void)
{
	for (size_t i = 0; i < nconns; i++)
		if (conns[i]->state != C_DEAD)
			conn_kill(conns[i], true);
}
