/*
 * Byte streams between a host fd and a pair of agent data channels (see
 * stream.h).  Level-triggered epoll interest always matches state: EPOLLIN
 * while the tx window has room, EPOLLOUT while guest bytes wait for fd;
 * with neither the fd is out of the loop altogether, so a hung-up peer we
 * are not ready to hear from cannot spin it.
 *
 * The guest's connection (connect) exists from its request on, so DATA on
 * tx may go out at once.  A stream that ends early (fd error, abort) also
 * asks the agent to drop its side (close), so no guest socket lingers.
 */
#include "stream.h"
#include "agent.h"
#include "evloop.h"
#include "log.h"
#include "model.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK   (PROTO_MAX_PAYLOAD - 8)
#define READ_ROUNDS  4			/* chunks per wake-up, for fairness */
#define QUEUE_HIGH   (4u * 1024 * 1024) /* towards the agent, all channels */
#define QUEUE_POLLMS 5

struct stream {
	struct stream *next;
	struct session *s;
	int fd;
	uint32_t tx, rx; /* 0: that direction is absent */
	/* host -> guest */
	uint64_t tx_sent, tx_acked;
	bool tx_eof_sent;
	bool q_blocked; /* waiting for the agent queue to drain */
	/* guest -> host: bytes [rx_written, rx_recv) wait in rbuf */
	struct buf rbuf;
	size_t rbuf_off;
	uint64_t rx_recv, rx_written, rx_final;
	bool rx_eof_known, rx_shut;
	/* fd in the loop, and with which events */
	bool registered;
	uint32_t events;
	bool ended;
	stream_end_cb cb;
	void *arg;
};

static struct stream *streams;
static struct timer queue_timer;

static void stream_update(struct stream *st);

static void stream_unlink(struct stream *st)
{
	for (struct stream **pp = &streams; *pp; pp = &(*pp)->next) {
		if (*pp == st) {
			*pp = st->next;
			return;
		}
	}
}

/* Tell the agent to drop the guest side (a reset for its server). */
static void close_answered(struct session *s, json_t *resp, int err,
			   const char *text, void *arg)
{
	(void)s, (void)resp, (void)err, (void)text, (void)arg;
}

static void guest_close(struct stream *st)
{
	uint32_t chan = st->rx ? st->rx : st->tx;
	json_t *req;

	if (!st->s->conn || !chan)
		return;
	req = json_pack("{s:s, s:I}", "op", "close", st->rx ? "rx" : "tx",
			(json_int_t)chan);
	agent_request(st->s, req, close_answered, NULL, 10000);
}

static void stream_end(struct stream *st, int err)
{
	if (st->ended)
		return;
	st->ended = true;
	stream_unlink(st);
	if (st->registered)
		evloop_del(st->fd);
	close(st->fd);
	st->fd = -1;
	if (err) {
		if (st->tx && !st->tx_eof_sent)
			agent_send_eof(st->s, st->tx, st->tx_sent);
		st->tx_eof_sent = true;
		if (err != ECONNRESET)
			guest_close(st);
	}
	buf_free(&st->rbuf);
	st->cb(st, err, st->arg);
	session_put(st->s);
	free(st);
}

static bool tx_done(const struct stream *st)
{
	return !st->tx || st->tx_eof_sent;
}

static bool rx_done(const struct stream *st)
{
	return !st->rx || (st->rx_eof_known && st->rx_written == st->rx_final);
}

/* Returns false when the stream ended. */
static bool check_done(struct stream *st)
{
	if (tx_done(st) && rx_done(st)) {
		stream_end(st, 0);
		return false;
	}
	return true;
}

static void queue_check(struct timer *t)
{
	bool again = false;

	(void)t;
	for (struct stream *st = streams; st; st = st->next) {
		if (!st->q_blocked)
			continue;
		if (agent_queued(st->s) < QUEUE_HIGH) {
			st->q_blocked = false;
			stream_update(st);
		} else {
			again = true;
		}
	}
	if (again)
		timer_arm(&queue_timer, QUEUE_POLLMS);
}

static bool want_read(struct stream *st)
{
	if (!st->tx || st->tx_eof_sent || !st->s->conn)
		return false;
	if (st->tx_sent - st->tx_acked >= PROTO_WINDOW)
		return false;
	if (agent_queued(st->s) >= QUEUE_HIGH) {
		/* The agent's queue drains without an event of ours. */
		st->q_blocked = true;
		if (!queue_timer.armed)
			timer_arm(&queue_timer, QUEUE_POLLMS);
		return false;
	}
	return true;
}

static void on_fd(int fd, uint32_t events, void *arg);

/* Make the loop's interest match the stream's state. */
static void stream_update(struct stream *st)
{
	uint32_t ev = 0;

	if (want_read(st))
		ev |= EPOLLIN;
	if (st->rbuf.len > st->rbuf_off)
		ev |= EPOLLOUT;
	if (ev == 0) {
		if (st->registered)
			evloop_del(st->fd);
		st->registered = false;
		st->events = 0;
		return;
	}
	if (st->registered && ev == st->events)
		return;
	if (st->registered)
		evloop_mod(st->fd, ev, on_fd, st);
	else if (evloop_add(st->fd, ev, on_fd, st) < 0)
		log_warnx("stream fd %d: epoll: %s", st->fd, strerror(errno));
	st->registered = true;
	st->events = ev;
}

static void send_ack(struct stream *st)
{
	agent_send_ack(st->s, st->rx, st->rx_written);
}

/* Write what the guest sent into fd; false when the stream ended. */
static bool flush_rx(struct stream *st)
{
	uint64_t before = st->rx_written;

	while (st->rbuf.len > st->rbuf_off) {
		ssize_t n = write(st->fd, st->rbuf.data + st->rbuf_off,
				  st->rbuf.len - st->rbuf_off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			stream_end(st, n < 0 ? errno : EIO);
			return false;
		}
		st->rbuf_off += (size_t)n;
		st->rx_written += (uint64_t)n;
	}
	if (st->rbuf_off == st->rbuf.len) {
		st->rbuf.len = 0;
		st->rbuf_off = 0;
		if (st->rbuf.cap > 2 * READ_CHUNK)
			buf_free(&st->rbuf); /* a burst is over */
	} else if (st->rbuf_off >= READ_CHUNK) {
		/* A slow reader: keep the buffer at about a window. */
		memmove(st->rbuf.data, st->rbuf.data + st->rbuf_off,
			st->rbuf.len - st->rbuf_off);
		st->rbuf.len -= st->rbuf_off;
		st->rbuf_off = 0;
	}
	if (st->rx_written != before)
		send_ack(st);
	if (st->rx_eof_known && st->rx_written == st->rx_final &&
	    !st->rx_shut) {
		st->rx_shut = true;
		/* Half-close: the client reads our EOF and may still send. */
		if (shutdown(st->fd, SHUT_WR) < 0 && errno != ENOTSOCK &&
		    errno != ENOTCONN) {
			stream_end(st, errno);
			return false;
		}
	}
	return check_done(st);
}

/* Read from fd towards the guest; false when the stream ended. */
static bool pump_tx(struct stream *st)
{
	uint8_t chunk[READ_CHUNK];

	for (int round = 0; round < READ_ROUNDS && want_read(st); round++) {
		size_t room =
		    PROTO_WINDOW - (size_t)(st->tx_sent - st->tx_acked);
		if (room > sizeof(chunk))
			room = sizeof(chunk);
		ssize_t n = read(st->fd, chunk, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			stream_end(st, errno);
			return false;
		}
		if (n == 0) {
			agent_send_eof(st->s, st->tx, st->tx_sent);
			st->tx_eof_sent = true;
			return check_done(st);
		}
		agent_send_data(st->s, st->tx, st->tx_sent, chunk, (size_t)n);
		st->tx_sent += (uint64_t)n;
	}
	return true;
}

static void on_fd(int fd, uint32_t events, void *arg)
{
	struct stream *st = arg;

	(void)fd;
	if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) &&
	    st->rbuf.len > st->rbuf_off && !flush_rx(st))
		return;
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && !pump_tx(st))
		return;
	if ((events & EPOLLERR) && !(st->events & EPOLLIN) &&
	    st->rbuf.len == st->rbuf_off) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		stream_end(st, err ? err : EIO);
		return;
	}
	stream_update(st);
}

struct stream *stream_open(struct session *s, int fd, uint32_t *tx,
			   uint32_t *rx, stream_end_cb cb, void *arg)
{
	struct stream *st;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return NULL;
	if (!s->conn) {
		errno = ENOTCONN;
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		errno = ENOMEM;
		return NULL;
	}
	queue_timer.cb = queue_check;
	st->s = s;
	session_get(s);
	st->fd = fd;
	st->cb = cb;
	st->arg = arg;
	if (tx)
		*tx = st->tx = ++s->next_chan;
	if (rx)
		*rx = st->rx = ++s->next_chan;
	st->next = streams;
	streams = st;
	stream_update(st);
	return st;
}

void stream_abort(struct stream *st)
{
	stream_end(st, ECANCELED);
}

static struct stream *by_chan(struct session *s, uint32_t chan, bool rx)
{
	for (struct stream *st = streams; st; st = st->next)
		if (st->s == s && (rx ? st->rx : st->tx) == chan)
			return st;
	return NULL;
}

int stream_on_data(struct session *s, uint32_t chan, uint64_t off,
		   const void *p, size_t n)
{
	struct stream *st = by_chan(s, chan, true);

	if (!st)
		return by_chan(s, chan, false) ? -1 : 0;
	if (off > st->rx_recv)
		return -1; /* a gap */
	if (st->rx_eof_known && off + n > st->rx_final)
		return -1;
	uint64_t skip = st->rx_recv - off;
	if (skip >= n)
		return 1;
	n -= (size_t)skip;
	if (st->rx_recv + n - st->rx_written > PROTO_WINDOW)
		return -1; /* the guest ignored the window */
	buf_add(&st->rbuf, (const uint8_t *)p + skip, n);
	st->rx_recv += n;
	if (flush_rx(st))
		stream_update(st);
	return 1;
}

int stream_on_ack(struct session *s, uint32_t chan, uint64_t off)
{
	struct stream *st = by_chan(s, chan, false);

	if (!st)
		return by_chan(s, chan, true) ? -1 : 0;
	if (off > st->tx_sent || off < st->tx_acked)
		return -1;
	st->tx_acked = off;
	stream_update(st);
	return 1;
}

int stream_on_eof(struct session *s, uint32_t chan, uint64_t off)
{
	struct stream *st = by_chan(s, chan, true);

	if (!st)
		return by_chan(s, chan, false) ? -1 : 0;
	if (off < st->rx_recv || (st->rx_eof_known && off != st->rx_final))
		return -1;
	st->rx_final = off;
	st->rx_eof_known = true;
	if (flush_rx(st))
		stream_update(st);
	return 1;
}

int stream_on_reset(struct session *s, uint32_t chan)
{
	struct stream *st = by_chan(s, chan, true);
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (!st)
		return 0;
	/* A TCP client sees a reset too (other sockets ignore this). */
	setsockopt(st->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	stream_end(st, ECONNRESET);
	return 1;
}

void stream_session_lost(struct session *s)
{
	struct stream *st;

	/* Each end may change the list (a callback may abort others). */
	for (;;) {
		for (st = streams; st && st->s != s; st = st->next)
			;
		if (!st)
			break;
		stream_end(st, ECONNRESET);
	}
}
