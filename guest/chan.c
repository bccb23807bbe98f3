/*
 * Data channels: a job's stdout/stderr (pipe -> host) and stdin
 * (host -> pipe), with u64 offsets, ACKs and the per-channel window.
 *
 * Output is pulled, not pushed: a stream keeps every byte above the host's
 * last ACK and remembers how far it has sent on this connection; the port
 * asks for frames (chan_fill) only when its queue is short.  So a reconnect
 * is "sent = acked", and memory is the windows, never the port queue.
 */
#include "agent.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static size_t stream_mem; /* capacity of all output buffers above the min */
static size_t fill_rr;	  /* round-robin start among streams */

void ostream_init(struct ostream *s, uint32_t chan, int fd)
{
	memset(s, 0, sizeof(*s));
	s->chan = chan;
	s->fd = fd;
}

static size_t over_min(size_t cap)
{
	return cap > STREAM_MIN_BUF ? cap - STREAM_MIN_BUF : 0;
}

static void ostream_release_buf(struct ostream *s)
{
	stream_mem -= over_min(s->buf.cap);
	buf_free(&s->buf);
}

/* Can the buffer take more bytes, now or after growing within budget? */
static bool ostream_can_grow(const struct ostream *s)
{
	size_t want;

	if (s->buf.cap - s->buf.len > 0)
		return true;
	if (s->buf.cap >= PROTO_WINDOW)
		return false;
	want = s->buf.cap ? s->buf.cap * 2 : STREAM_MIN_BUF;
	if (want <= STREAM_MIN_BUF)
		return true;
	return stream_mem + over_min(want) - over_min(s->buf.cap) <=
	       STREAM_BUDGET;
}

/*
 * Reading the pipe is allowed while the window has room, the memory budget
 * allows and the port queue is short; otherwise the job blocks in write(2)
 * like any process with a full pipe.
 */
bool ostream_may_read(const struct ostream *s)
{
	if (s->fd < 0 || s->end - s->acked >= PROTO_WINDOW)
		return false;
	if (port_outq_len() >= OUTQ_HIGH)
		return false;
	return ostream_can_grow(s);
}

/* Room at the buffer's tail for the next read, growing it if allowed. */
static size_t ostream_room(struct ostream *s)
{
	size_t window = PROTO_WINDOW - (size_t)(s->end - s->acked);
	size_t cap, room;
	uint8_t *p;

	/* Acknowledged bytes free the front; move the rest down for reads
	 * of a useful size rather than a few bytes at the very end. */
	if (buf_tailroom(&s->buf) < STREAM_MIN_BUF / 4 && s->buf.head > 0) {
		memmove(s->buf.data, s->buf.data + s->buf.head, s->buf.len);
		s->buf.head = 0;
	}
	if (buf_tailroom(&s->buf) == 0 && ostream_can_grow(s)) {
		cap = s->buf.cap ? s->buf.cap * 2 : STREAM_MIN_BUF;
		p = realloc(s->buf.data, cap);
		if (p != NULL) {
			stream_mem += over_min(cap) - over_min(s->buf.cap);
			s->buf.data = p;
			s->buf.cap = cap;
		}
	}
	room = buf_tailroom(&s->buf);
	return room < window ? room : window;
}

void ostream_read(struct ostream *s)
{
	size_t room;
	ssize_t n;

	if (!ostream_may_read(s))
		return;
	room = ostream_room(s);
	if (room == 0)
		return;
	n = read(s->fd, buf_tail(&s->buf), room);
	if (n > 0) {
		s->buf.len += (size_t)n;
		s->end += (uint64_t)n;
		if (s->draining) {
			s->drained += (uint64_t)n;
			if (s->drained >= DRAIN_MAX)
				ostream_close(s);
		}
		return;
	}
	if (n < 0 && errno == EINTR)
		return;
	if (n < 0 && errno == EAGAIN) {
		/* After the exit grace, an empty pipe ends the stream. */
		if (s->draining)
			ostream_close(s);
		return;
	}
	/* A pty master reads EIO once every slave fd is closed: its EOF. */
	if (n < 0 && errno != EIO) {
		s->read_err = errno;
		alog(L_DEBUG, "channel %u: read: %s", s->chan, strerror(errno));
	}
	ostream_close(s);
}

/* The pipe is done; EOF goes out once every byte before it has. */
void ostream_close(struct ostream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->draining = false;
	if (s->acked == s->end)
		ostream_release_buf(s);
}

void ostream_free(struct ostream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	ostream_release_buf(s);
}

void istream_init(struct istream *s, uint32_t chan, int fd)
{
	memset(s, 0, sizeof(*s));
	s->chan = chan;
	s->fd = fd;
}

static void istream_close(struct istream *s)
{
	/* A socket's peer must see our EOF even while its read side (a dup
	 * of the same socket) stays open. */
	if (s->fd >= 0 && s->sock)
		shutdown(s->fd, SHUT_WR);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

/*
 * Stop feeding the job (it exited or closed its stdin): what is buffered
 * and what still comes is dropped but acknowledged, so the host's sender
 * never waits on a job that will not read.
 */
void istream_abandon(struct istream *s)
{
	istream_close(s);
	if (s->written != s->recv)
		s->ack_due = true;
	s->written = s->recv;
	buf_free(&s->buf);
}

void istream_free(struct istream *s)
{
	istream_close(s);
	buf_free(&s->buf);
}

static void istream_maybe_finish(struct istream *s)
{
	if (s->fd >= 0 && s->eof && s->written >= s->eof_at)
		istream_close(s);
}

/* Write what we hold into the job's stdin pipe, never blocking. */
void istream_write(struct istream *s)
{
	ssize_t n;

	while (s->fd >= 0 && s->buf.len > 0) {
		n = write(s->fd, s->buf.data + s->buf.head, s->buf.len);
		if (n > 0) {
			buf_consume(&s->buf, (size_t)n);
			s->written += (uint64_t)n;
			s->ack_due = true;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		/* EPIPE: the job closed its stdin; the rest is dropped. */
		if (n < 0 && errno != EPIPE)
			alog(L_WARN, "channel %u: write: %s", s->chan,
			     strerror(errno));
		istream_abandon(s);
		return;
	}
	if (s->buf.len == 0 && s->buf.cap > STREAM_MIN_BUF)
		buf_free(&s->buf); /* a big burst is over; give it back */
	istream_maybe_finish(s);
}

void chan_on_data(uint32_t chan, const uint8_t *p, size_t len)
{
	struct job *j = job_by_chan_in(chan);
	uint64_t off = proto_get_u64(p);
	struct istream *s;
	size_t n = len - 8, skip;

	p += 8;
	if (j == NULL) {
		if (!conn_on_data(chan, off, p, n))
			alog(L_DEBUG, "DATA for unknown channel %u dropped",
			     chan);
		return;
	}
	s = &j->in;
	if (off > s->recv) {
		alog(L_WARN,
		     "channel %u: DATA at %llu leaves a gap after %llu; "
		     "dropped",
		     chan, (unsigned long long)off,
		     (unsigned long long)s->recv);
		return;
	}
	skip = (size_t)(s->recv - off); /* resent bytes we already hold */
	if (skip >= n) {
		s->ack_due = true;
		return;
	}
	p += skip;
	n -= skip;
	if (s->eof) {
		alog(L_WARN, "channel %u: DATA after EOF dropped", chan);
		return;
	}
	if (s->fd < 0) {
		s->recv += n;
		s->written = s->recv;
		s->ack_due = true;
		return;
	}
	if (s->buf.len + n > PROTO_WINDOW) {
		alog(L_WARN, "channel %u: host overran the window; dropped",
		     chan);
		return;
	}
	if (buf_append(&s->buf, p, n) < 0) {
		alog(L_WARN, "channel %u: out of memory; DATA dropped", chan);
		return;
	}
	s->recv += n;
	istream_write(s);
}

void chan_on_eof(uint32_t chan, const uint8_t *p)
{
	struct job *j = job_by_chan_in(chan);
	uint64_t off = proto_get_u64(p);
	struct istream *s;

	if (j == NULL) {
		if (!conn_on_eof(chan, off))
			alog(L_DEBUG, "EOF for unknown channel %u ignored",
			     chan);
		return;
	}
	s = &j->in;
	if (off < s->recv) {
		alog(L_WARN, "channel %u: EOF at %llu below received %llu",
		     chan, (unsigned long long)off,
		     (unsigned long long)s->recv);
		off = s->recv;
	}
	s->eof = true;
	s->eof_at = off;
	istream_maybe_finish(s);
}

void chan_on_ack(uint32_t chan, const uint8_t *p)
{
	struct job *j = job_by_chan_out(chan);
	uint64_t off = proto_get_u64(p);
	struct ostream *s;

	if (j == NULL) {
		if (!conn_on_ack(chan, off))
			alog(L_DEBUG, "ACK for unknown channel %u ignored",
			     chan);
		return;
	}
	s = j->out[0].chan == chan ? &j->out[0] : &j->out[1];
	ostream_ack(s, off);
}

void ostream_ack(struct ostream *s, uint64_t off)
{
	if (off <= s->acked)
		return;
	if (off > s->end) {
		alog(L_WARN, "channel %u: ACK %llu beyond %llu ignored",
		     s->chan, (unsigned long long)off,
		     (unsigned long long)s->end);
		return;
	}
	buf_consume(&s->buf, (size_t)(off - s->acked));
	s->acked = off;
	if (s->sent < off) /* the host had it from an earlier connection */
		s->sent = off;
	if (s->fd < 0 && s->acked == s->end)
		ostream_release_buf(s);
}

/* One DATA (or the final EOF) frame of s, if it has something to send. */
bool ostream_emit(struct ostream *s)
{
	uint8_t off[8];
	size_t n;

	if (s->chan == 0)
		return false;
	/* File changes the stream's writer made before this output reach
	 * the host first: whoever reads the output and then files/ sees
	 * them (docs/protocol.md, "Change notifications"). */
	if (s->sent < s->end || (s->fd < 0 && !s->eof_sent))
		fs_notify_flush();
	if (s->sent < s->end) {
		n = (size_t)(s->end - s->sent);
		if (n > DATA_MAX)
			n = DATA_MAX;
		proto_put_u64(off, s->sent);
		if (port_send(PT_DATA, s->chan, off, 8,
			      s->buf.data + s->buf.head +
				  (size_t)(s->sent - s->acked),
			      n) < 0)
			return false;
		s->sent += n;
		return true;
	}
	if (s->fd < 0 && !s->eof_sent) {
		proto_put_u64(off, s->end);
		if (port_send(PT_EOF, s->chan, off, 8, NULL, 0) < 0)
			return false;
		s->eof_sent = true;
		return true;
	}
	return false;
}

static void send_stdin_acks(void)
{
	uint8_t off[8];
	struct istream *s;

	for (size_t i = 0; i < njobs; i++) {
		s = &jobs[i]->in;
		if (jobs[i]->state == JOB_DEAD || s->chan == 0 || !s->ack_due)
			continue;
		proto_put_u64(off, s->written);
		if (port_send(PT_ACK, s->chan, off, 8, NULL, 0) < 0)
			return;
		s->ack_due = false;
	}
}

/*
 * Queue frames until the port queue is long enough: stdin ACKs first (they
 * unblock the host), then one frame per output stream per round, starting
 * at a rotating stream so no busy job starves the others.
 */
void chan_fill(void)
{
	size_t nstreams, k, i;
	struct job *j;
	bool any;

	send_stdin_acks();
	conn_send_acks();
	nstreams = 2 * njobs;
	do {
		any = conn_fill_round();
		if (nstreams == 0)
			continue;
		for (k = 0; k < nstreams; k++) {
			if (port_outq_len() >= OUTQ_LOW || !port_ready())
				return;
			i = (fill_rr + k) % nstreams;
			j = jobs[i / 2];
			if (j->state == JOB_DEAD || j->state == JOB_STARTING)
				continue;
			if (ostream_emit(&j->out[i % 2]))
				any = true;
		}
		fill_rr = (fill_rr + 1) % nstreams;
	} while (any);
}

/* Streams past their exit grace are read here until empty, then closed. */
void chan_service(void)
{
	struct ostream *s;

	for (size_t i = 0; i < njobs; i++) {
		for (int k = 0; k < 2; k++) {
			s = &jobs[i]->out[k];
			while (s->draining && ostream_may_read(s)) {
				uint64_t before = s->end;

				ostream_read(s);
				if (s->end == before)
					break;
			}
		}
	}
}

/* A new connection: everything the host has not acknowledged goes again. */
void chan_resend_all(void)
{
	struct job *j;

	for (size_t i = 0; i < njobs; i++) {
		j = jobs[i];
		for (int k = 0; k < 2; k++) {
			j->out[k].sent = j->out[k].acked;
			j->out[k].eof_sent = false;
		}
		if (j->in.chan != 0)
			j->in.ack_due = true;
	}
}
