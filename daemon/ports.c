/*
 * Exposed guest ports: host listeners, the preview listener, and the
 * bridge of each accepted connection to the guest (see ports.h).
 *
 * Every socket is non-blocking and every callback runs in the event loop
 * with model_lock held, so nothing here blocks: a client that sends
 * nothing is dropped after a deadline, one that reads nothing stalls only
 * its own stream (the window), and connections are bounded per session
 * and in all.  A client connection lives in a struct pconn until both its
 * stream has ended and the agent has answered its connect.
 */
#include "ports.h"
#include "agent.h"
#include "evloop.h"
#include "hostroute.h"
#include "log.h"
#include "model.h"
#include "stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS_SESSION 256 /* bridged connections per session */
#define MAX_CONNS_ALL	  1024
#define MAX_HEADS	  256 /* preview clients still sending their head */
#define HEAD_MAX	  8192
#define HEAD_TIMEOUT_MS	  10000
#define CONNECT_TIMEOUT	  75000 /* the agent gives up at 60 s */
#define ACCEPT_BURST	  64
#define PORTS_FILE	  "ports.json"

struct expo {
	struct expo *next;
	struct session *s; /* not referenced: ports_session_closed unlinks */
	int port;
	int64_t expires_ms; /* wall clock; 0: never */
	int lfd;
	int host_port;
	int nconns;
	struct timer ttl;
};

struct pconn {
	struct pconn *next;
	struct expo *e;	   /* NULL once unexposed, or while a head is read */
	struct session *s; /* referenced while bridged */
	int fd;		   /* until the stream takes it */
	struct stream *st;
	bool st_done, answered;
	int64_t head_deadline; /* preview: monotonic ms */
};

static struct expo *expos;
static struct pconn *pconns;
static int nbridged, nheads;
static int preview_fd = -1;
static char preview_host[128]; /* "localhost:8090" */
static struct timer head_timer;

/* ---- addresses ------------------------------------------------------- */

static const char *bind_addr(void)
{
	return cfg.port_bind ? cfg.port_bind : "127.0.0.1";
}

/* A listening socket on addr:port (port 0: any); -1 with errno. */
static int listen_on(const char *addr, int port, int *bound)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
	struct addrinfo *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char pstr[8];
	int fd, one = 1, e;

	snprintf(pstr, sizeof(pstr), "%d", port);
	if ((e = getaddrinfo(addr, pstr, &hints, &ai)) != 0) {
		errno = EINVAL;
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		goto fail;
	freeaddrinfo(ai);
	*bound = ntohs(ss.ss_family == AF_INET6
			   ? ((struct sockaddr_in6 *)&ss)->sin6_port
			   : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	errno = e;
	return -1;
}

/* The host part of URLs: the bind address, bracketed for IPv6; a
 * wildcard address is reached as localhost. */
static void url_host(const char *addr, char *out, size_t n)
{
	if (strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0)
		snprintf(out, n, "localhost");
	else if (strchr(addr, ':'))
		snprintf(out, n, "[%s]", addr);
	else
		snprintf(out, n, "%s", addr);
}

static void expo_url(const struct expo *e, char *out, size_t n)
{
	char h[80];

	url_host(bind_addr(), h, sizeof(h));
	snprintf(out, n, "http://%s:%d/", h, e->host_port);
}

/* ---- persistence -------------------------------------------------------- */

static void ports_save(struct session *s)
{
	json_t *a = json_array();
	char path[600];

	for (struct expo *e = expos; e; e = e->next)
		if (e->s == s)
			json_array_append_new(
			    a,
			    json_pack("{s:i, s:i, s:I}", "port", e->port,
				      "host_port", e->host_port, "expires_ms",
				      (json_int_t)e->expires_ms));
	char *txt = json_dump_line(json_pack("{s:o}", "ports", a), 0);
	snprintf(path, sizeof(path), "%s/%s", s->dir, PORTS_FILE);
	if (write_file_replace(path, txt, strlen(txt), 0600) < 0)
		log_warnx("session %s: %s: %s", s->name, path, strerror(errno));
	free(txt);
}

/* ---- bridged connections -------------------------------------------------
 */

static void pconn_unlink(struct pconn *pc)
{
	for (struct pconn **pp = &pconns; *pp; pp = &(*pp)->next) {
		if (*pp == pc) {
			*pp = pc->next;
			return;
		}
	}
}

static void pconn_maybe_free(struct pconn *pc)
{
	if (!pc->st_done || !pc->answered)
		return;
	pconn_unlink(pc);
	if (pc->e)
		pc->e->nconns--;
	nbridged--;
	session_put(pc->s);
	free(pc);
}

static void on_stream_end(struct stream *st, int err, void *arg)
{
	struct pconn *pc = arg;

	if (err && err != ECANCELED)
		log_debug("session %s: port connection ended: %s", pc->s->name,
			  strerror(err));
	pc->st = NULL;
	pc->st_done = true;
	pconn_maybe_free(pc);
}

/* Reset rather than close: the client sees the guest refused. */
static void pconn_reset(struct pconn *pc, int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (!pc->st)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	stream_abort(pc->st);
}

static void connect_answered(struct session *s, json_t *resp, int err,
			     const char *text, void *arg)
{
	struct pconn *pc = arg;

	pc->answered = true;
	if (err && pc->st) {
		log_debug("session %s: guest port: %s", s->name, text);
		pconn_reset(pc, pc->fd);
		return; /* the end callback frees */
	}
	pconn_maybe_free(pc);
}

static int session_conns(struct session *s)
{
	int n = 0;

	for (struct expo *e = expos; e; e = e->next)
		if (e->s == s)
			n += e->nconns;
	return n;
}

/* Bridge client fd to exposure e; takes fd in every case. */
static void bridge(struct expo *e, int fd)
{
	struct session *s = e->s;
	struct pconn *pc;
	uint32_t tx, rx;

	if (nbridged >= MAX_CONNS_ALL ||
	    session_conns(s) >= MAX_CONNS_SESSION || !s->conn) {
		close(fd);
		return;
	}
	pc = calloc(1, sizeof(*pc));
	if (!pc)
		abort();
	pc->st = stream_open(s, fd, &tx, &rx, on_stream_end, pc);
	if (!pc->st) {
		free(pc);
		close(fd);
		return;
	}
	pc->e = e;
	pc->s = s;
	pc->fd = fd;
	session_get(s);
	e->nconns++;
	nbridged++;
	pc->next = pconns;
	pconns = pc;
	json_t *req =
	    json_pack("{s:s, s:i, s:I, s:I}", "op", "connect", "port", e->port,
		      "tx", (json_int_t)tx, "rx", (json_int_t)rx);
	if (agent_request(s, req, connect_answered, pc, CONNECT_TIMEOUT) < 0) {
		pc->answered = true;
		pconn_reset(pc, fd);
	}
}

/* ---- per-port listeners ------------------------------------------------ */

static void on_accept(int lfd, uint32_t events, void *arg)
{
	struct expo *e = arg;

	for (int i = 0; i < ACCEPT_BURST; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warnx("port %d: accept: %s", e->port,
					  strerror(errno));
			return;
		}
		bridge(e, fd);
	}
}

static struct expo *expo_find(struct session *s, int port)
{
	for (struct expo *e = expos; e; e = e->next)
		if (e->s == s && e->port == port)
			return e;
	return NULL;
}

static void ttl_fired(struct timer *t);

static void expo_arm(struct expo *e)
{
	if (e->expires_ms)
		timer_arm(&e->ttl, e->expires_ms - now_ms());
	else
		timer_cancel(&e->ttl);
}

/* Listen (on want_port if it is free) and link a new exposure. */
static struct expo *expo_new(struct session *s, int port, int want_port,
			     int64_t expires_ms)
{
	struct expo *e = calloc(1, sizeof(*e));
	int bound;

	if (!e)
		abort();
	e->lfd = -1;
	if (want_port > 0)
		e->lfd = listen_on(bind_addr(), want_port, &bound);
	if (e->lfd < 0)
		e->lfd = listen_on(bind_addr(), 0, &bound);
	if (e->lfd < 0 || evloop_add(e->lfd, EPOLLIN, on_accept, e) < 0) {
		int err = errno;
		if (e->lfd >= 0)
			close(e->lfd);
		free(e);
		errno = err;
		return NULL;
	}
	e->s = s;
	e->port = port;
	e->host_port = bound;
	e->expires_ms = expires_ms;
	e->ttl.cb = ttl_fired;
	e->next = expos;
	expos = e;
	expo_arm(e);
	return e;
}

/* Unexpose: the listener goes (new connections are refused) and so do
 * the open connections. */
static void expo_free(struct expo *e)
{
	for (struct expo **pp = &expos; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	timer_cancel(&e->ttl);
	evloop_del(e->lfd);
	close(e->lfd);
	for (;;) {
		struct pconn *pc;
		for (pc = pconns; pc && !(pc->e == e && pc->st); pc = pc->next)
			;
		if (!pc)
			break;
		pc->e = NULL;
		e->nconns--;
		pconn_reset(pc, pc->fd);
	}
	for (struct pconn *pc = pconns; pc; pc = pc->next)
		if (pc->e == e)
			pc->e = NULL;
	free(e);
}

static void ttl_fired(struct timer *t)
{
	struct expo *e =
	    (struct expo *)((char *)t - offsetof(struct expo, ttl));
	struct session *s = e->s;

	log_info("session %s: port %d expired", s->name, e->port);
	expo_free(e);
	ports_save(s);
	waitq_wake(&s->wq);
}

/* ---- the preview listener ----------------------------------------------- */

static void head_reply(int fd, int code, const char *reason, const char *msg)
{
	char r[512];
	int n = snprintf(r, sizeof(r),
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			 code, reason, strlen(msg), msg);

	/* A fresh socket's buffer takes this whole; if not, too bad. */
	if (write(fd, r, (size_t)n) < 0)
		log_debug("preview: %s", strerror(errno));
}

static void head_done(struct pconn *pc)
{
	evloop_del(pc->fd);
	pconn_unlink(pc);
	nheads--;
	free(pc);
}

static void head_drop(struct pconn *pc)
{
	int fd = pc->fd;

	head_done(pc);
	close(fd);
}

static void route(struct pconn *pc, int port, const char *name)
{
	struct session *s = session_find(name);
	struct expo *e =
	    s && strcmp(s->name, name) == 0 ? expo_find(s, port) : NULL;
	char msg[200];
	int fd = pc->fd;

	if (!e) {
		snprintf(msg, sizeof(msg),
			 "tenki: no session %s with port %d exposed\n", name,
			 port);
		head_reply(fd, 404, "Not Found", msg);
		head_drop(pc);
		return;
	}
	if (!s->conn) {
		snprintf(msg, sizeof(msg),
			 "tenki: session %s is not reachable (%s)\n", name,
			 sess_state_name(s->state));
		head_reply(fd, 502, "Bad Gateway", msg);
		head_drop(pc);
		return;
	}
	head_done(pc);
	/* The head was only peeked at: the guest gets every byte. */
	bridge(e, fd);
}

static void on_head(int fd, uint32_t events, void *arg)
{
	struct pconn *pc = arg;
	char buf[HEAD_MAX + 1], name[NAME_MAX_LEN + 1];
	int port;

	ssize_t n = recv(fd, buf, HEAD_MAX, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		head_drop(pc);
		return;
	}
	switch (hostroute_parse(buf, (size_t)n, &port, name)) {
	case HR_OK:
		route(pc, port, name);
		return;
	case HR_MORE:
		if (n < HEAD_MAX)
			return; /* edge-triggered: woken by more bytes */
		head_reply(fd, 431, "Request Header Fields Too Large",
			   "tenki: request head too large\n");
		break;
	case HR_NO_HOST:
		head_reply(fd, 404, "Not Found",
			   "tenki: the Host header must be "
			   "PORT-SESSION.localhost\n");
		break;
	default:
		head_reply(fd, 400, "Bad Request",
			   "tenki: not an HTTP request\n");
	}
	head_drop(pc);
}

static void head_sweep(struct timer *t)
{
	int64_t now = mono_ms();
	bool any = false;

	for (struct pconn *pc = pconns, *next; pc; pc = next) {
		next = pc->next;
		if (!pc->head_deadline)
			continue;
		if (pc->head_deadline <= now) {
			head_reply(pc->fd, 408, "Request Timeout",
				   "tenki: no request head in time\n");
			head_drop(pc);
			continue;
		}
		any = true;
	}
	if (any)
		timer_arm(&head_timer, 1000);
}

static void on_preview_accept(int lfd, uint32_t events, void *arg)
{
	for (int i = 0; i < ACCEPT_BURST; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (nheads >= MAX_HEADS) {
			close(fd);
			continue;
		}
		struct pconn *pc = calloc(1, sizeof(*pc));
		if (!pc)
			abort();
		pc->fd = fd;
		pc->head_deadline = mono_ms() + HEAD_TIMEOUT_MS;
		if (evloop_add(fd, EPOLLIN | EPOLLET, on_head, pc) < 0) {
			close(fd);
			free(pc);
			continue;
		}
		pc->next = pconns;
		pconns = pc;
		nheads++;
		if (!head_timer.armed)
			timer_arm(&head_timer, 1000);
	}
}

static void preview_start(void)
{
	const char *spec = cfg.preview ? cfg.preview : "127.0.0.1:8090";
	char addr[100];
	const char *colon = strrchr(spec, ':');
	int port, bound;

	head_timer.cb = head_sweep;
	if (strcmp(spec, "off") == 0)
		return;
	/* Port 0: one the host picks (the preview file names it). */
	char *pend;
	long lp = colon ? strtol(colon + 1, &pend, 10) : -1;
	if (!colon || (size_t)(colon - spec) >= sizeof(addr) ||
	    colon[1] == '\0' || *pend != '\0' || lp < 0 || lp > 65535) {
		log_warnx("--preview %s: ADDR:PORT expected; preview off",
			  spec);
		return;
	}
	port = (int)lp;
	memcpy(addr, spec, (size_t)(colon - spec));
	addr[colon - spec] = '\0';
	if (addr[0] == '[' && addr[strlen(addr) - 1] == ']') {
		memmove(addr, addr + 1, strlen(addr));
		addr[strlen(addr) - 1] = '\0';
	}
	preview_fd = listen_on(addr, port, &bound);
	if (preview_fd < 0 ||
	    evloop_add(preview_fd, EPOLLIN, on_preview_accept, NULL) < 0) {
		log_warnx("preview listener %s: %s; preview off", spec,
			  strerror(errno));
		if (preview_fd >= 0)
			close(preview_fd);
		preview_fd = -1;
		return;
	}
	/* Browsers resolve *.localhost to loopback by themselves. */
	snprintf(preview_host, sizeof(preview_host), "localhost:%d", bound);
	log_info("preview listener on %s", spec);
}

/* ---- the tree's operations ---------------------------------------------- */

int ports_parse_name(const char *name)
{
	uint64_t v;

	if (name[0] == '0' || parse_uint(name, 1, 65535, &v) < 0)
		return -1;
	return (int)v;
}

bool ports_exposed(struct session *s, const char *name)
{
	int port = ports_parse_name(name);

	return port > 0 && expo_find(s, port);
}

/* Checks shared by create and write: the name, the policy, the state. */
static int check(struct session *s, const char *name, int *port)
{
	char obj[128];

	snprintf(obj, sizeof(obj), "%s/ports/%.10s", s->name, name);
	if ((*port = ports_parse_name(name)) < 0)
		return refuse(&s->err, EINVAL, obj,
			      "'%.40s' is not a port number 1..65535", name);
	if (!s->spec.allow_inbound)
		return refuse(&s->err, EACCES, obj,
			      "the session was created with "
			      "allow_inbound=false: no port may be exposed");
	if (!session_usable(s) && s->state != S_PAUSED)
		return refuse(&s->err, EBUSY, obj,
			      "the session is %s: ports can be exposed only "
			      "while it is usable",
			      sess_state_name(s->state));
	return 0;
}

int ports_create(struct session *s, const char *name)
{
	char obj[128];
	int port, rc;

	if ((rc = check(s, name, &port)) < 0)
		return rc;
	if (expo_find(s, port))
		return 0;
	if (!expo_new(s, port, 0, 0)) {
		snprintf(obj, sizeof(obj), "%s/ports/%d", s->name, port);
		return refuse(&s->err, ENOSPC, obj, "no host listener: %s",
			      strerror(errno));
	}
	log_info("session %s: port %d exposed", s->name, port);
	ports_save(s);
	waitq_wake(&s->wq);
	return 0;
}

int ports_write(struct session *s, const char *name, const char *text,
		size_t len)
{
	char obj[128], val[64];
	int64_t secs = 0;
	struct expo *e;
	int port, rc;

	if ((rc = check(s, name, &port)) < 0)
		return rc;
	snprintf(obj, sizeof(obj), "%s/ports/%d", s->name, port);
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
		len--;
	if (len == 0)
		return 0;
	if (len >= sizeof(val))
		return refuse(&s->err, EINVAL, obj, "a TTL is expected");
	memcpy(val, text, len);
	val[len] = '\0';
	if (strcmp(val, "never") != 0 && parse_duration(val, false, &secs) < 0)
		return refuse(&s->err, EINVAL, obj,
			      "'%s' is not a TTL (90, 30m, 1h, never)", val);
	if (!(e = expo_find(s, port))) {
		if ((rc = ports_create(s, name)) < 0)
			return rc;
		e = expo_find(s, port);
	}
	e->expires_ms = secs ? now_ms() + secs * 1000 : 0;
	expo_arm(e);
	ports_save(s);
	waitq_wake(&s->wq);
	return 0;
}

int ports_remove(struct session *s, const char *name)
{
	int port = ports_parse_name(name);
	struct expo *e = port > 0 ? expo_find(s, port) : NULL;

	if (!e)
		return -ENOENT;
	expo_free(e);
	log_info("session %s: port %d unexposed", s->name, port);
	ports_save(s);
	waitq_wake(&s->wq);
	return 0;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* The exposed ports of s, sorted; caller frees. */
static int *sorted_ports(struct session *s, size_t *n)
{
	size_t k = 0;
	int *v;

	for (struct expo *e = expos; e; e = e->next)
		k += e->s == s;
	v = calloc(k + 1, sizeof(*v));
	if (!v)
		abort();
	k = 0;
	for (struct expo *e = expos; e; e = e->next)
		if (e->s == s)
			v[k++] = e->port;
	qsort(v, k, sizeof(*v), cmp_int);
	*n = k;
	return v;
}

void ports_list(struct session *s,
		void (*add)(void *ctx, const char *name, bool is_dir),
		void *ctx)
{
	size_t n;
	int *v = sorted_ports(s, &n);
	char name[8];

	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%d", v[i]);
		add(ctx, name, false);
	}
	free(v);
}

static void expires_text(const struct expo *e, char out[32])
{
	if (e->expires_ms)
		fmt_time(e->expires_ms, out);
	else
		strcpy(out, "never");
}

char *ports_text(struct session *s, const char *name)
{
	int port = ports_parse_name(name);
	struct expo *e = port > 0 ? expo_find(s, port) : NULL;
	char url[160], exp[32];
	struct buf b = {0};

	if (!e)
		return NULL;
	expo_url(e, url, sizeof(url));
	expires_text(e, exp);
	buf_printf(&b, "url %s\nexpires %s\n", url, exp);
	if (preview_fd >= 0)
		buf_printf(&b, "preview http://%d-%s.%s/\n", e->port, s->name,
			   preview_host);
	return b.data;
}

json_t *ports_json(struct session *s)
{
	json_t *a = json_array();
	size_t n;
	int *v = sorted_ports(s, &n);
	char url[160], exp[32];

	for (size_t i = 0; i < n; i++) {
		struct expo *e = expo_find(s, v[i]);
		expo_url(e, url, sizeof(url));
		expires_text(e, exp);
		json_array_append_new(
		    a,
		    json_pack("{s:i, s:s, s:o}", "port", e->port, "url", url,
			      "expires_at",
			      e->expires_ms ? json_string(exp) : json_null()));
	}
	free(v);
	return a;
}

char *ports_preview_text(void)
{
	struct buf b = {0};

	if (preview_fd >= 0)
		buf_printf(&b, "http://{port}-{session}.%s/\n", preview_host);
	else
		buf_printf(&b, "off\n");
	return b.data;
}

void ports_session_closed(struct session *s)
{
	bool any = false;

	for (;;) {
		struct expo *e;
		for (e = expos; e && e->s != s; e = e->next)
			;
		if (!e)
			break;
		expo_free(e);
		any = true;
	}
	if (any)
		ports_save(s);
}

/* ---- restart ---------------------------------------------------------------
 */

static void restore_session(struct session *s)
{
	char path[600];
	json_error_t jerr;
	json_t *o, *a, *it;
	size_t i;
	bool changed = false;

	snprintf(path, sizeof(path), "%s/%s", s->dir, PORTS_FILE);
	o = json_load_file(path, 0, &jerr);
	if (!o)
		return;
	a = json_object_get(o, "ports");
	json_array_foreach(a, i, it)
	{
		json_int_t port =
		    json_integer_value(json_object_get(it, "port"));
		json_int_t hp =
		    json_integer_value(json_object_get(it, "host_port"));
		json_int_t exp =
		    json_integer_value(json_object_get(it, "expires_ms"));
		if (port < 1 || port > 65535 || hp < 0 || hp > 65535 ||
		    expo_find(s, (int)port))
			continue;
		if (exp && exp <= now_ms()) {
			changed = true;
			continue;
		}
		struct expo *e = expo_new(s, (int)port, (int)hp, exp);
		if (!e) {
			log_warnx("session %s: port %d not re-exposed: %s",
				  s->name, (int)port, strerror(errno));
			changed = true;
			continue;
		}
		if (e->host_port != hp) {
			log_warnx("session %s: port %d: host port %d taken; "
				  "now %d",
				  s->name, e->port, (int)hp, e->host_port);
			changed = true;
		}
	}
	json_decref(o);
	if (changed)
		ports_save(s);
}

void ports_start(void)
{
	pthread_mutex_lock(&model_lock);
	preview_start();
	for (struct session *s = session_first(); s; s = s->next)
		if (!session_final(s) && s->spec.allow_inbound)
			restore_session(s);
	pthread_mutex_unlock(&model_lock);
}
