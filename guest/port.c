/*
 * The host connection: the virtio-serial port (or, for tests, a unix
 * socket), inbound framing and the outbound queue.
 *
 * A virtio port never closes; the host comes and goes behind it.  Reading
 * gives EOF and poll gives POLLHUP while nobody is connected, so then the
 * agent stops polling the fd and probes it with a read every RETRY_MS.
 * Each connection starts with the host's HELLO; bytes before it may be a
 * previous connection's leftovers and are skipped (proto_resync).  After
 * the handshake a framing error is not skipped: the agent drops the
 * connection (sockets) or goes back to waiting for a HELLO (virtio), and
 * the jobs go on regardless.
 *
 * One race needs care on virtio: the port's data and its "host
 * connected" state travel on different virtqueues, so a host that
 * reconnects quickly can have its HELLO read while the guest kernel still
 * thinks nobody is there.  The answer then cannot be written, and the
 * port reports EOF a moment later.  Dropping the session there would leave
 * that host waiting forever for an answer to a HELLO we already consumed,
 * so an unsent HELLO answer is kept across such an EOF and written when
 * the host shows up, unless a new HELLO arrives first (HOLD_MS).
 */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* After a kept answer's host shows up: wait this long for a newer HELLO. */
#define HOLD_MS 100

/* The biggest payload either way: file operations carry 1 MiB + 4 KiB. */
#define PORT_MAX_PAYLOAD                                                       \
	(PROTO_MAX_FS > PROTO_MAX_PAYLOAD ? PROTO_MAX_FS : PROTO_MAX_PAYLOAD)

enum port_state {
	PS_CLOSED, /* no connection: open, connect or accept one */
	PS_IDLE,   /* virtio fd open, no host behind it: probe on a timer */
	PS_HELLO,  /* connected, skipping to the host's HELLO */
	PS_READY,  /* handshake done */
};

static struct {
	enum port_mode mode;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;	 /* the connection, or the virtio port */
	int lfd; /* --listen socket */
	enum port_state state;
	bool closing;	    /* drop the connection once the queue is out */
	bool logged_wait;   /* "waiting for the port" said once */
	int64_t retry_at;   /* 0: no timer */
	unsigned gen;	    /* bumped whenever the session is reset */
	size_t hello_left;  /* bytes of our HELLO answer not yet written */
	bool resume;	    /* virtio: answer kept across an EOF */
	int64_t hold_until; /* write nothing before this (0: not armed) */
	size_t fs_queued;   /* FSRESP bytes since the streams had a turn */
	size_t inlen;
	uint8_t in[PROTO_HDR_LEN + PORT_MAX_PAYLOAD];
	struct buf out;
} port; /* zeroed, in .bss: port_init sets the fds to -1 */

static void process_input(void);
static bool input_waiting(void);

/*
 * May the frame be handled now?  A full queue holds input back as it stops
 * reading the port, so a burst of small READs cannot queue a MiB each; and
 * file answers wait for the streams' turn (chan_fill) once they have
 * queued OUTQ_LOW bytes, so bulk file I/O cannot starve exec output.
 * Frames go in order: what follows a held-back one waits with it.
 */
static bool may_take(const struct proto_hdr *h)
{
	if (port.state != PS_READY)
		return true;
	if (port.out.len >= OUTQ_HIGH)
		return false;
	return h->type != PT_FSREQ || port.fs_queued < OUTQ_LOW;
}

bool port_ready(void)
{
	return port.state == PS_READY && !port.closing;
}

size_t port_outq_len(void)
{
	return port.out.len;
}

/*
 * Forget unsent output: it belongs to a session that has ended.  A frame
 * the kernel took only in part is cut short too; the next host skips to
 * the magic of our HELLO anyway.  Every stream resends from its last ACK
 * at the next HELLO, so no byte is lost.
 */
static void outq_reset(void)
{
	port.out.head = 0;
	port.out.len = 0;
	if (port.out.cap > 4 * OUTQ_HIGH)
		buf_free(&port.out);
	port.closing = false;
	port.hello_left = 0;
	port.resume = false;
	port.hold_until = 0;
	port.fs_queued = 0;
}

/* Forget this connection's partial input and unsent output. */
static void session_reset(void)
{
	port.inlen = 0;
	outq_reset();
	port.gen++;
}

static void retry_soon(void)
{
	port.retry_at = now_ms() + RETRY_MS;
}

/* The host went away: wait for the next one. */
static void port_lost(const char *why)
{
	if (port.mode == PORT_VIRTIO && port.state == PS_READY &&
	    port.hello_left > 0 && !port.closing) {
		alog(L_INFO,
		     "host not there (%s) before our HELLO answer "
		     "went out; keeping it",
		     why);
		port.inlen = 0;
		port.gen++;
		port.resume = true;
		port.state = PS_IDLE;
		retry_soon();
		return;
	}
	alog(L_INFO, "host disconnected (%s)", why);
	session_reset();
	if (port.mode == PORT_VIRTIO) {
		port.state = PS_IDLE;
		retry_soon();
		return;
	}
	close(port.fd);
	port.fd = -1;
	port.state = PS_CLOSED;
	if (port.mode == PORT_CONNECT)
		retry_soon();
}

/*
 * The host broke the protocol: end this connection, keep the jobs.  A
 * virtio port cannot be closed, so there the agent goes back to skipping
 * bytes until a HELLO, keeping its input: when a host reconnects faster
 * than the agent notices, the new HELLO sits right behind the old
 * connection's cut-off last frame.
 */
static void port_drop(const char *why)
{
	if (port.mode != PORT_VIRTIO) {
		alog(L_WARN, "protocol error from host: %s; closing", why);
		port_lost("connection closed");
		return;
	}
	alog(L_WARN, "protocol error from host: %s; waiting for a new HELLO",
	     why);
	outq_reset();
	port.state = PS_HELLO;
}

static void port_connected(int fd)
{
	if (port.resume) {
		/* Events of jobs that ended meanwhile were not queued. */
		port.resume = false;
		port.state = PS_READY;
		port.hold_until = now_ms() + HOLD_MS;
		resend_exit_events();
		alog(L_INFO, "host connected; sending the kept HELLO answer");
		return;
	}
	port.fd = fd;
	port.state = PS_HELLO;
	port.retry_at = 0;
	port.logged_wait = false;
	session_reset();
	alog(L_INFO, "host connected; waiting for HELLO");
}

/* ---- opening the transport ---- */

static int read_small_file(const char *path, char *out, size_t outlen)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, out, outlen - 1);
	close(fd);
	if (n < 0)
		return -1;
	out[n] = '\0';
	out[strcspn(out, "\n")] = '\0';
	return 0;
}

/* /dev/vportNpM whose sysfs name is ours; no udev in the guest. */
static int virtio_find(char *dev, size_t devlen)
{
	char path[300], name[128];
	struct dirent *de;
	DIR *d;
	int rc = -1;

	d = opendir("/sys/class/virtio-ports");
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "vport", 5) != 0)
			continue;
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name",
			 de->d_name);
		if (read_small_file(path, name, sizeof(name)) < 0 ||
		    strcmp(name, AGENT_PORT_NAME) != 0)
			continue;
		snprintf(dev, devlen, "/dev/%s", de->d_name);
		rc = 0;
		break;
	}
	closedir(d);
	return rc;
}

static void virtio_open(void)
{
	char dev[300];
	int fd;

	if (virtio_find(dev, sizeof(dev)) < 0 ||
	    (fd = open(dev, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)) < 0) {
		if (!port.logged_wait)
			alog(L_INFO, "waiting for virtio port %s",
			     AGENT_PORT_NAME);
		port.logged_wait = true;
		retry_soon();
		return;
	}
	alog(L_INFO, "opened %s", dev);
	port.fd = fd;
	port.state = PS_IDLE;
	port.retry_at = now_ms(); /* probe for a host at once */
}

static int unix_addr(struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", port.path);
	return 0;
}

static void sock_connect(void)
{
	struct sockaddr_un sa;
	int fd;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto retry;
	unix_addr(&sa);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		goto retry;
	}
	port_connected(fd);
	return;
retry:
	if (!port.logged_wait)
		alog(L_INFO, "waiting for %s", port.path);
	port.logged_wait = true;
	retry_soon();
}

static int sock_listen(void)
{
	struct sockaddr_un sa;
	struct stat st;

	if (lstat(port.path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(port.path); /* a previous run's socket */
	port.lfd =
	    socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (port.lfd < 0)
		goto fail;
	unix_addr(&sa);
	if (bind(port.lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(port.lfd, 4) < 0)
		goto fail;
	alog(L_INFO, "listening on %s", port.path);
	return 0;
fail:
	alog(L_ERR, "listen on %s: %s", port.path, strerror(errno));
	if (port.lfd >= 0)
		close(port.lfd);
	port.lfd = -1;
	return -1;
}

static void sock_accept(void)
{
	int fd;

	if (port.state != PS_CLOSED)
		return;
	fd = accept4(port.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR)
			alog(L_WARN, "accept: %s", strerror(errno));
		return;
	}
	port_connected(fd);
}

int port_init(enum port_mode mode, const char *path)
{
	port.mode = mode;
	port.state = PS_CLOSED;
	port.fd = -1;
	port.lfd = -1;
	if (path != NULL) {
		if (strlen(path) >= sizeof(port.path)) {
			alog(L_ERR, "socket path too long: %s", path);
			return -1;
		}
		snprintf(port.path, sizeof(port.path), "%s", path);
	}
	if (mode == PORT_LISTEN)
		return sock_listen();
	port.retry_at = now_ms();
	return 0;
}

void port_cleanup(void)
{
	if (port.fd >= 0)
		close(port.fd);
	if (port.lfd >= 0) {
		close(port.lfd);
		unlink(port.path);
	}
	port.fd = port.lfd = -1;
}

/* ---- output ---- */

int port_send(uint8_t type, uint32_t chan, const void *a, size_t alen,
	      const void *b, size_t blen)
{
	size_t plen = alen + blen;
	uint8_t *p;

	if (port.state != PS_READY || port.closing ||
	    plen > (type == PT_FSRESP ? PROTO_MAX_FS : PROTO_MAX_PAYLOAD))
		return -1;
	if (buf_reserve(&port.out, PROTO_HDR_LEN + plen) < 0) {
		alog(L_WARN, "out of memory; %s frame not sent",
		     proto_type_str(type));
		return -1;
	}
	p = buf_tail(&port.out);
	proto_encode_hdr(p, type, chan, (uint32_t)plen);
	if (alen > 0)
		memcpy(p + PROTO_HDR_LEN, a, alen);
	if (blen > 0)
		memcpy(p + PROTO_HDR_LEN + alen, b, blen);
	port.out.len += PROTO_HDR_LEN + plen;
	if (type == PT_FSRESP)
		port.fs_queued += PROTO_HDR_LEN + plen;
	return 0;
}

/* Sends and releases obj. */
int port_send_json(uint8_t type, json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT);
	size_t n;
	int rc = -1;

	json_decref(obj);
	if (s == NULL)
		return -1;
	n = strlen(s);
	if (n > PROTO_MAX_JSON)
		alog(L_ERR, "%s of %zu bytes is too big; not sent",
		     proto_type_str(type), n);
	else
		rc = port_send(type, 0, s, n, NULL, 0);
	free(s);
	return rc;
}

/*
 * Write until the queue is empty (true) or the port would block or broke
 * (false), refilling from the streams.
 */
static bool outq_write(void)
{
	ssize_t n;

	while (port.state == PS_READY) {
		if (port.out.len < OUTQ_LOW && !port.closing) {
			chan_fill();
			port.fs_queued = 0; /* the streams had their turn */
		}
		if (port.out.len == 0)
			return true;
		n = write(port.fd, port.out.data + port.out.head, port.out.len);
		if (n > 0) {
			buf_consume(&port.out, (size_t)n);
			port.hello_left -= (size_t)n < port.hello_left
					       ? (size_t)n
					       : port.hello_left;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return false;
		port_lost(n < 0 ? strerror(errno) : "write returned 0");
		return false;
	}
	return true;
}

/* Frames held back (see may_take) that may go once the queue is out. */
static bool held_input_due(void)
{
	return port.out.len == 0 && input_waiting();
}

/*
 * Take in what the host sent meanwhile, without waiting: its ACKs pass
 * held-back FSREQs (pass_held).  EOF and errors are left for poll.
 */
static void input_top_up(void)
{
	ssize_t n;

	if (port.inlen == sizeof(port.in))
		return;
	n = read(port.fd, port.in + port.inlen, sizeof(port.in) - port.inlen);
	if (n > 0)
		port.inlen += (size_t)n;
}

/*
 * Before a batch of file answers, read the jobs' pipes: the poll set
 * leaves them out while the queue is long, which file answers keep it,
 * and a stream with nothing read has nothing for its turn (chan_fill).
 */
static void streams_top_up(void)
{
	struct job *j;

	for (size_t i = 0; i < njobs; i++) {
		j = jobs[i];
		if (j->state == JOB_DEAD || j->state == JOB_STARTING)
			continue;
		for (int k = 0; k < 2; k++)
			if (!j->out[k].draining && ostream_may_read(&j->out[k]))
				ostream_read(&j->out[k]);
	}
}

/*
 * Write what is queued.  Held-back frames get one batch once the queue is
 * out: never sooner, so the poll set is built with a short queue now and
 * then, which is when the jobs' pipes are read; and at most one batch a
 * turn of the loop (port_next_deadline keeps poll from sleeping on input
 * we already have), so the pipes are polled between batches.
 */
void port_flush(void)
{
	if (port.hold_until != 0) {
		if (now_ms() < port.hold_until)
			return;
		port.hold_until = 0;
	}
	if (!outq_write())
		return;
	if (held_input_due()) {
		streams_top_up();
		if (!outq_write())
			return;
		input_top_up();
		process_input();
		if (!outq_write())
			return;
	}
	if (port.state == PS_READY && port.closing && port.out.len == 0)
		port_drop("protocol version mismatch");
}

/* ---- input ---- */

static void on_hello(const uint8_t *p, size_t len, bool *skip)
{
	int rc = hello_check(p, len);

	*skip = false;
	if (rc == HELLO_BAD) {
		*skip = true;
		return;
	}
	/* A HELLO on a live port is a new host we did not see arrive. */
	outq_reset();
	fs_reset();    /* nids and handles belong to one connection */
	conns_reset(); /* and so do connect streams */
	port.state = PS_READY;
	if (rc == HELLO_MISMATCH) {
		hello_reply(false); /* so the host can log why, too */
		port.closing = true;
		return;
	}
	alog(L_INFO, "HELLO from host; %zu job(s) held", njobs);
	hello_reply(true);
	/* The answer is the first frame in the (just emptied) queue. */
	if (port.out.len >= PROTO_HDR_LEN)
		port.hello_left =
		    PROTO_HDR_LEN +
		    proto_get_u32(port.out.data + port.out.head + 4);
}

static void on_frame(const struct proto_hdr *h, const uint8_t *p)
{
	bool skip;

	switch (h->type) {
	case PT_HELLO:
		/* Again on a live connection: answer and resend again. */
		on_hello(p, h->len, &skip);
		break;
	case PT_REQ:
		req_handle(p, h->len);
		break;
	case PT_DATA:
		chan_on_data(h->chan, p, h->len);
		break;
	case PT_ACK:
		chan_on_ack(h->chan, p);
		break;
	case PT_EOF:
		chan_on_eof(h->chan, p);
		break;
	case PT_PING:
		port_send(PT_PONG, 0, p, h->len, NULL, 0);
		break;
	case PT_FSREQ:
		fs_handle(p, h->len);
		break;
	default:
		alog(L_DEBUG, "%s from host ignored", proto_type_str(h->type));
		break;
	}
}

/*
 * Bytes to skip from off before something that may be a HELLO: up to the
 * next magic, and past any header that is not a HELLO's, so a cut-off
 * frame of an old connection cannot make us wait for its payload.
 */
static size_t hello_skip(size_t off)
{
	struct proto_hdr h;
	size_t start = off, flen;
	int rc;

	for (;;) {
		off += proto_resync(port.in + off, port.inlen - off);
		if (port.inlen - off < PROTO_HDR_LEN)
			return off - start;
		rc = proto_decode(port.in + off, port.inlen - off, &h, &flen);
		if ((rc == PROTO_OK || rc == PROTO_NEED_MORE) &&
		    h.type == PT_HELLO)
			return off - start;
		off++;
	}
}

/*
 * Stream frames (DATA, ACK, EOF) behind a held-back frame go ahead of it:
 * a job's ACK must not wait for bulk file I/O, or its stream would get one
 * window per queue of file answers.  Nothing else overtakes: FSREQs keep
 * their order, and any other frame (a REQ that opens a channel, a HELLO)
 * ends the scan.
 */
static void pass_held(size_t off)
{
	struct proto_hdr h;
	size_t flen;

	while (off < port.inlen && !port.closing) {
		if (proto_decode(port.in + off, port.inlen - off, &h, &flen) !=
		    PROTO_OK)
			return;
		if (h.type == PT_FSREQ) {
			off += flen;
			continue;
		}
		if (h.type != PT_DATA && h.type != PT_ACK && h.type != PT_EOF)
			return;
		on_frame(&h, port.in + off + PROTO_HDR_LEN);
		memmove(port.in + off, port.in + off + flen,
			port.inlen - off - flen);
		port.inlen -= flen;
	}
}

/*
 * Decode every whole frame in the input buffer.  Before the handshake any
 * byte that does not start a valid HELLO is skipped one at a time.
 */
static void process_input(void)
{
	unsigned gen = port.gen;
	struct proto_hdr h;
	size_t off = 0, flen;
	bool skip;
	int rc;

	while (off < port.inlen) {
		if (port.state == PS_HELLO) {
			off += hello_skip(off);
			if (off == port.inlen)
				break;
		}
		rc = proto_decode(port.in + off, port.inlen - off, &h, &flen);
		if (rc == PROTO_NEED_MORE)
			break;
		if (port.state == PS_HELLO) {
			if (rc == PROTO_OK && h.type == PT_HELLO)
				on_hello(port.in + off + PROTO_HDR_LEN, h.len,
					 &skip);
			else
				skip = true;
			off += skip ? 1 : flen;
			continue;
		}
		if (rc != PROTO_OK) {
			port_drop(proto_status_str(rc));
			if (port.gen != gen)
				return;
			off++; /* virtio: look for a HELLO in what we have */
			continue;
		}
		if (!may_take(&h)) {
			pass_held(off); /* port_flush comes back for the rest */
			break;
		}
		if (!port.closing)
			on_frame(&h, port.in + off + PROTO_HDR_LEN);
		if (port.gen != gen)
			return;
		off += flen;
	}
	if (off > 0) {
		memmove(port.in, port.in + off, port.inlen - off);
		port.inlen -= off;
	}
}

/* A whole frame (or a broken header) held back that may go now? */
static bool input_waiting(void)
{
	struct proto_hdr h;
	size_t flen;
	int rc;

	if (port.state != PS_READY || port.closing || port.inlen == 0)
		return false;
	rc = proto_decode(port.in, port.inlen, &h, &flen);
	return rc != PROTO_NEED_MORE && (rc != PROTO_OK || may_take(&h));
}

/*
 * With the buffer full of held-back frames the read below asks for 0
 * bytes and sees "EOF": only POLLHUP or POLLERR get here then (POLLIN is
 * not polled with a full buffer), and the host is gone.
 */
static void port_read(void)
{
	ssize_t n;

	if (port.fd < 0)
		return;
	n = read(port.fd, port.in + port.inlen, sizeof(port.in) - port.inlen);
	if (n > 0) {
		if (port.state == PS_IDLE)
			port_connected(port.fd);
		port.inlen += (size_t)n;
		process_input();
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		/* virtio: no data but no EOF either, so a host is there. */
		if (port.state == PS_IDLE)
			port_connected(port.fd);
		return;
	}
	if (port.state == PS_IDLE) {
		retry_soon(); /* still nobody */
		return;
	}
	port_lost(n == 0 ? "EOF" : strerror(errno));
}

/* ---- the loop's view ---- */

void port_timer(int64_t now)
{
	if (port.retry_at == 0 || now < port.retry_at)
		return;
	port.retry_at = 0;
	if (port.state == PS_IDLE) {
		port_read();
		return;
	}
	if (port.state != PS_CLOSED)
		return;
	if (port.mode == PORT_VIRTIO)
		virtio_open();
	else if (port.mode == PORT_CONNECT)
		sock_connect();
}

int64_t port_next_deadline(void)
{
	if (port.hold_until == 0 && held_input_due())
		return now_ms();
	return deadline_min(port.retry_at, port.hold_until);
}

void port_add_polls(void)
{
	short ev = 0;

	if (port.state == PS_CLOSED) {
		if (port.mode == PORT_LISTEN)
			poll_add(port.lfd, POLLIN, PE_LISTEN, NULL);
		return;
	}
	if (port.state == PS_IDLE)
		return; /* POLLHUP until a host comes: probe on the timer */
	if (!port.closing && port.out.len < OUTQ_HIGH &&
	    port.inlen < sizeof(port.in))
		ev |= POLLIN;
	if (port.state == PS_READY && port.out.len > 0 && port.hold_until == 0)
		ev |= POLLOUT;
	poll_add(port.fd, ev, PE_PORT, NULL);
}

void port_on_poll(enum pe_kind kind, int fd, short revents)
{
	if (kind == PE_LISTEN) {
		sock_accept();
		return;
	}
	if (fd != port.fd || port.state < PS_HELLO)
		return;
	/*
	 * Input first: if it holds a new host's HELLO, what we were about to
	 * write belongs to the old session and must not reach the new one.
	 */
	if (revents & (POLLIN | POLLHUP | POLLERR))
		port_read();
	if (fd == port.fd && port.state == PS_READY && (revents & POLLOUT))
		port_flush();
}
