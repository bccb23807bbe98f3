/*
 * The SSH gateway: listener, host key, connections and authentication.
 * Channels are sshchan.c's.  See sshgw.h for the threads and locks, and
 * docs/ssh.md for what users get.
 */
#include "sshgw.h"
#include "errors.h"
#include "evloop.h"
#include "log.h"
#include "model.h"
#include "sshconn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

struct sshgw_config sshgw_cfg;

static pthread_mutex_t gw_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sshconn *conns; /* gw_lock */
static int nconns, nstartups; /* gw_lock */
static bool stopping;	      /* atomic */
static int listen_fd = -1, stop_pipe[2] = {-1, -1};
static int bound_port;
static ssh_bind sbind;
static pthread_t accept_thread;
static bool accepting;

void sshgw_defaults(void)
{
	snprintf(sshgw_cfg.addr, sizeof(sshgw_cfg.addr), "127.0.0.1");
	sshgw_cfg.port = 2222;
	sshgw_cfg.max_conns = 64;
	sshgw_cfg.max_per_session = 32;
	sshgw_cfg.max_startups = 16;
	sshgw_cfg.max_auth_tries = 6;
	sshgw_cfg.login_grace_ms = 30 * 1000;
	sshgw_cfg.idle_timeout_ms = 3600 * 1000;
}

int sshgw_parse_listen(const char *text)
{
	const char *colon = strrchr(text, ':');
	const char *host = text, *port = colon ? colon + 1 : text;
	size_t hl = colon ? (size_t)(colon - text) : 0;
	uint64_t p;

	if (strcmp(text, "off") == 0) {
		sshgw_cfg.addr[0] = '\0';
		return 0;
	}
	if (parse_uint(port, 0, 65535, &p) < 0)
		return -1;
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		host++;
		hl -= 2;
	}
	if (!colon) {
		host = "127.0.0.1";
		hl = strlen(host);
	}
	if (hl == 0 || hl >= sizeof(sshgw_cfg.addr))
		return -1;
	memcpy(sshgw_cfg.addr, host, hl);
	sshgw_cfg.addr[hl] = '\0';
	sshgw_cfg.port = (int)p;
	return 0;
}

/* ---- host key ------------------------------------------------------------ */

/* The ed25519 host key: made on the first start, kept in the state dir
 * (with its .pub beside it, for known_hosts). */
static ssh_key host_key(void)
{
	char path[600], pub[620];
	ssh_key key = NULL;
	char *b64 = NULL;
	size_t len;

	snprintf(path, sizeof(path), "%s/ssh_host_ed25519_key", cfg.state_dir);
	snprintf(pub, sizeof(pub), "%s.pub", path);
	char *text = read_file(path, 64 * 1024, &len);
	if (text) {
		if (ssh_pki_import_privkey_base64(text, NULL, NULL, NULL,
						  &key) != SSH_OK)
			log_warnx("%s: not a private key", path);
		free(text);
		return key;
	}
	if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK ||
	    ssh_pki_export_privkey_base64(key, NULL, NULL, NULL, &b64) !=
		SSH_OK ||
	    write_file_atomic(path, b64, strlen(b64), 0600) < 0) {
		log_warnx("%s: cannot make the host key", path);
		ssh_key_free(key);
		free(b64);
		return NULL;
	}
	free(b64);
	b64 = NULL;
	if (ssh_pki_export_pubkey_base64(key, &b64) == SSH_OK) {
		struct buf b = {0};
		buf_printf(&b, "ssh-ed25519 %s tenkid\n", b64);
		write_file_atomic(pub, b.data, b.len, 0644);
		buf_free(&b);
		free(b64);
	}
	log_info("made the SSH host key %s", path);
	return key;
}

static void log_fingerprint(ssh_key key)
{
	unsigned char *hash = NULL;
	size_t hlen;
	char *fp;

	if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash,
				   &hlen) < 0)
		return;
	fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
	log_info("ssh gateway on %s port %d, host key %s", sshgw_cfg.addr,
		 bound_port, fp ? fp : "?");
	ssh_string_free_char(fp);
	ssh_clean_pubkey_hash(&hash);
}

/* ---- authentication ------------------------------------------------------ */

static void put_session(struct session *s)
{
	pthread_mutex_lock(&model_lock);
	session_put(s);
	pthread_mutex_unlock(&model_lock);
}

/* Does one authorized_keys line name the key the client offers? */
static bool line_matches(const char *line, ssh_key offered)
{
	char type[64], *b64;
	const char *sp = strchr(line, ' ');
	ssh_key k = NULL;
	bool ok;

	if (!sp || (size_t)(sp - line) >= sizeof(type))
		return false;
	memcpy(type, line, (size_t)(sp - line));
	type[sp - line] = '\0';
	b64 = strndup(sp + 1, strcspn(sp + 1, " "));
	if (!b64)
		return false;
	ok = ssh_pki_import_pubkey_base64(b64, ssh_key_type_from_name(type),
					  &k) == SSH_OK &&
	     ssh_key_cmp(k, offered, SSH_KEY_CMP_PUBLIC) == 0;
	ssh_key_free(k);
	free(b64);
	return ok;
}

static void key_fingerprint(ssh_key key, char *out, size_t len)
{
	unsigned char *hash = NULL;
	size_t hlen;
	char *fp = NULL;

	snprintf(out, len, "(unknown)");
	if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash,
				   &hlen) == 0)
		fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash,
					      hlen);
	if (fp)
		snprintf(out, len, "%s", fp);
	ssh_string_free_char(fp);
	ssh_clean_pubkey_hash(&hash);
}

static int session_conns(struct session *s)
{
	int n = 0;

	for (struct sshconn *c = conns; c; c = c->next)
		if (c->authed && c->s == s)
			n++;
	return n;
}

/*
 * The session's keys are read at every attempt, so a replaced set locks
 * out the old keys for every new connection at once.  Returns the
 * referenced session when the key is one of its keys.
 */
static struct session *key_session(struct sshconn *c, const char *user,
				   ssh_key offered)
{
	struct session *s;
	char **keys = NULL, fp[100];
	size_t n = 0;
	bool match = false;

	pthread_mutex_lock(&model_lock);
	s = session_find(user);
	if (s && (!session_usable(s) || !s->agent_up)) {
		snprintf(c->why, sizeof(c->why), "session %s is %s%s", s->name,
			 sess_state_name(s->state),
			 s->agent_up ? "" : " (agent not connected)");
		s = NULL;
	} else if (!s) {
		snprintf(c->why, sizeof(c->why), "no session named '%.60s'",
			 user);
	} else {
		session_get(s);
		n = s->spec.nssh_keys;
		keys = calloc(n + 1, sizeof(char *));
		if (!keys)
			abort();
		for (size_t i = 0; i < n; i++)
			keys[i] = strdup(s->spec.ssh_keys[i]);
	}
	pthread_mutex_unlock(&model_lock);
	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (!match && keys[i] && line_matches(keys[i], offered))
			match = true;
		free(keys[i]);
	}
	free(keys);
	if (!match) {
		key_fingerprint(offered, fp, sizeof(fp));
		snprintf(c->why, sizeof(c->why),
			 "key %s is not in %s's ssh/authorized_keys", fp, user);
		put_session(s);
		return NULL;
	}
	return s;
}

static int auth_failed(struct sshconn *c)
{
	c->auth_fails++;
	log_debug("ssh %s: user %s: %s", c->peer, c->user, c->why);
	return SSH_AUTH_DENIED;
}

static int on_auth_pubkey(ssh_session ss, const char *user,
			  struct ssh_key_struct *key, char state, void *ud)
{
	struct sshconn *c = ud;
	struct session *s;
	bool full;

	(void)ss;
	snprintf(c->user, sizeof(c->user), "%s", user);
	if (state != SSH_PUBLICKEY_STATE_NONE &&
	    state != SSH_PUBLICKEY_STATE_VALID) {
		snprintf(c->why, sizeof(c->why), "bad signature");
		return auth_failed(c);
	}
	s = key_session(c, user, key);
	if (!s)
		return auth_failed(c);
	if (state == SSH_PUBLICKEY_STATE_NONE) {
		/* A probe: yes, sign with this key. */
		put_session(s);
		return SSH_AUTH_SUCCESS;
	}
	pthread_mutex_lock(&gw_lock);
	full = session_conns(s) >= sshgw_cfg.max_per_session;
	if (!full) {
		c->s = s;
		c->authed = true;
		nstartups--;
	}
	pthread_mutex_unlock(&gw_lock);
	if (full) {
		snprintf(c->why, sizeof(c->why),
			 "session %s has %d SSH connections (the limit)", user,
			 sshgw_cfg.max_per_session);
		put_session(s);
		return auth_failed(c);
	}
	log_info("ssh %s: %s logged in", c->peer, user);
	sshconn_touch(c);
	return SSH_AUTH_SUCCESS;
}

static int on_auth_password(ssh_session ss, const char *user,
			    const char *password, void *ud)
{
	struct sshconn *c = ud;

	(void)ss, (void)password;
	snprintf(c->user, sizeof(c->user), "%s", user);
	snprintf(c->why, sizeof(c->why),
		 "password authentication refused (public keys only)");
	return auth_failed(c);
}

static int on_auth_none(ssh_session ss, const char *user, void *ud)
{
	struct sshconn *c = ud;

	(void)ss;
	snprintf(c->user, sizeof(c->user), "%s", user);
	if (!c->why[0])
		snprintf(c->why, sizeof(c->why),
			 "no public key offered (public keys only)");
	return SSH_AUTH_DENIED;
}

static ssh_channel on_open_session(ssh_session ss, void *ud)
{
	struct sshconn *c = ud;

	(void)ss;
	return c->authed ? sshchan_open_session(c) : NULL;
}

/* What the server callbacks do not cover: keyboard-interactive (refused)
 * and direct-tcpip.  Returning 1 sends libssh's default refusal. */
static int on_message(ssh_session ss, ssh_message msg, void *ud)
{
	struct sshconn *c = ud;
	int type = ssh_message_type(msg), sub = ssh_message_subtype(msg);

	(void)ss;
	if (type == SSH_REQUEST_AUTH && sub == SSH_AUTH_METHOD_INTERACTIVE) {
		snprintf(c->why, sizeof(c->why),
			 "keyboard-interactive authentication refused "
			 "(public keys only)");
		auth_failed(c);
		return 1;
	}
	if (type == SSH_REQUEST_CHANNEL_OPEN &&
	    sub == SSH_CHANNEL_DIRECT_TCPIP && c->authed)
		return sshchan_open_tcpip(c, msg) == 0 ? 0 : 1;
	return 1;
}

/* ---- connections --------------------------------------------------------- */

void sshconn_touch(struct sshconn *c)
{
	c->active_ms = mono_ms();
}

void sshconn_wake(struct sshconn *c)
{
	uint64_t one = 1;

	if (write(c->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warnx("ssh %s: eventfd: %s", c->peer, strerror(errno));
}

static int on_wake(socket_t fd, int revents, void *ud)
{
	uint64_t v;

	(void)revents, (void)ud;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -1;
	return 0;
}

/* Why the connection must end now, or NULL. */
static const char *conn_over(struct sshconn *c)
{
	int64_t now = mono_ms();
	const char *why = NULL;
	bool stop;

	stop = __atomic_load_n(&stopping, __ATOMIC_RELAXED);
	if (stop)
		return "tenkid is stopping";
	if (ssh_get_status(c->ss) & (SSH_CLOSED | SSH_CLOSED_ERROR))
		return "closed by the client";
	if (c->auth_fails >= sshgw_cfg.max_auth_tries)
		return "too many authentication failures";
	if (!c->authed) {
		if (now - c->started_ms > sshgw_cfg.login_grace_ms)
			return "login grace time over";
		return NULL;
	}
	if (sshgw_cfg.idle_timeout_ms && !sshchan_busy(c) &&
	    now - c->active_ms > sshgw_cfg.idle_timeout_ms)
		return "idle timeout";
	/* A paused session keeps its connections (they wait, like any SSH
	 * to a stopped machine); a closed or removed one ends them.  Looked
	 * at a few times a second, not at every packet. */
	if (now - c->checked_ms < 200)
		return NULL;
	c->checked_ms = now;
	pthread_mutex_lock(&model_lock);
	if (c->s->gone || session_final(c->s) || c->s->state == S_TERMINATING)
		why = "the session is closed";
	pthread_mutex_unlock(&model_lock);
	return why;
}

static const char *conn_loop(struct sshconn *c)
{
	const char *why;

	c->ev = ssh_event_new();
	if (!c->ev || ssh_event_add_session(c->ev, c->ss) != SSH_OK ||
	    ssh_event_add_fd(c->ev, c->efd, POLLIN, on_wake, c) != SSH_OK)
		return "cannot make an event loop";
	while (!(why = conn_over(c))) {
		if (ssh_event_dopoll(c->ev, 500) == SSH_ERROR) {
			if (ssh_get_status(c->ss) &
			    (SSH_CLOSED | SSH_CLOSED_ERROR))
				return "closed by the client";
			return "connection error";
		}
		if (c->authed)
			sshchan_service(c);
	}
	return why;
}

/* A refused login goes to tenkid's log and, when the session exists, to
 * its err file, so the user can learn why. */
static void log_refused(struct sshconn *c, const char *end)
{
	struct session *s;
	char obj[100], why[300], line[400];

	/* The last refusal, and how the connection ended when that says
	 * more than "the client gave up". */
	snprintf(why, sizeof(why), "%s%s%s",
		 c->why[0] ? c->why : "no authentication",
		 strcmp(end, "closed by the client") ? "; " : "",
		 strcmp(end, "closed by the client") ? end : "");
	snprintf(line, sizeof(line), "ssh login from %s refused: %s", c->peer,
		 why);
	log_warnx("ssh %s: user '%s': %s", c->peer, c->user, why);
	pthread_mutex_lock(&model_lock);
	if (c->user[0] && (s = session_find(c->user))) {
		snprintf(obj, sizeof(obj), "%s/ssh", s->name);
		errlog_add(&s->err, obj, line);
	}
	pthread_mutex_unlock(&model_lock);
}

static void conn_free(struct sshconn *c)
{
	pthread_mutex_lock(&gw_lock);
	for (struct sshconn **pp = &conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	nconns--;
	if (!c->authed)
		nstartups--;
	pthread_mutex_unlock(&gw_lock);
	if (c->ev) {
		ssh_event_remove_fd(c->ev, c->efd);
		ssh_event_remove_session(c->ev, c->ss);
		ssh_event_free(c->ev);
	}
	ssh_free(c->ss);
	if (c->s)
		put_session(c->s);
	close(c->efd);
	free(c);
}

static void *conn_main(void *arg)
{
	struct sshconn *c = arg;
	long grace = (long)((sshgw_cfg.login_grace_ms + 999) / 1000);
	const char *why;

	ssh_options_set(c->ss, SSH_OPTIONS_TIMEOUT, &grace);
	ssh_callbacks_init(&c->srv_cb);
	c->srv_cb.userdata = c;
	c->srv_cb.auth_pubkey_function = on_auth_pubkey;
	c->srv_cb.auth_password_function = on_auth_password;
	c->srv_cb.auth_none_function = on_auth_none;
	c->srv_cb.channel_open_request_session_function = on_open_session;
	ssh_set_server_callbacks(c->ss, &c->srv_cb);
	ssh_set_message_callback(c->ss, on_message, c);
	ssh_set_auth_methods(c->ss, SSH_AUTH_METHOD_PUBLICKEY);
	if (ssh_handle_key_exchange(c->ss) != SSH_OK) {
		snprintf(c->why, sizeof(c->why), "key exchange: %s",
			 ssh_get_error(c->ss));
		why = c->why;
	} else {
		ssh_set_blocking(c->ss, 0);
		why = conn_loop(c);
	}
	if (c->authed)
		log_info("ssh %s: %s: connection ends: %s", c->peer, c->user,
			 why);
	else
		log_refused(c, why);
	sshchan_close_all(c);
	ssh_disconnect(c->ss);
	conn_free(c);
	return NULL;
}

static void peer_name(const struct sockaddr_storage *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(out, len, "%s:%d", host, port);
}

/* Admit a connection within the limits, or close it with a log line. */
static void admit(int fd, const struct sockaddr_storage *sa)
{
	struct sshconn *c;
	const char *full = NULL;
	char peer[64];
	pthread_attr_t attr;
	pthread_t t;

	peer_name(sa, peer, sizeof(peer));
	pthread_mutex_lock(&gw_lock);
	if (nconns >= sshgw_cfg.max_conns)
		full = "too many SSH connections";
	else if (nstartups >= sshgw_cfg.max_startups)
		full = "too many unauthenticated SSH connections";
	else {
		nconns++;
		nstartups++;
	}
	pthread_mutex_unlock(&gw_lock);
	if (full) {
		log_warnx("ssh %s: refused: %s", peer, full);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->started_ms = c->active_ms = mono_ms();
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->ss = ssh_new();
	if (c->efd < 0 || !c->ss ||
	    ssh_bind_accept_fd(sbind, c->ss, fd) != SSH_OK) {
		log_warnx("ssh %s: cannot set up the connection: %s", peer,
			  c->ss ? ssh_get_error(sbind) : "out of memory");
		close(fd);
		goto fail;
	}
	pthread_mutex_lock(&gw_lock);
	c->next = conns;
	conns = c;
	pthread_mutex_unlock(&gw_lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, conn_main, c) != 0) {
		pthread_attr_destroy(&attr);
		log_warnx("ssh %s: no thread for the connection", peer);
		conn_free(c); /* counts it down */
		return;
	}
	pthread_attr_destroy(&attr);
	return;
fail:
	if (c->ss)
		ssh_free(c->ss);
	if (c->efd >= 0)
		close(c->efd);
	free(c);
	pthread_mutex_lock(&gw_lock);
	nconns--;
	nstartups--;
	pthread_mutex_unlock(&gw_lock);
}

static void *accept_main(void *arg)
{
	struct pollfd pf[2] = {{.fd = listen_fd, .events = POLLIN},
			       {.fd = stop_pipe[0], .events = POLLIN}};

	(void)arg;
	for (;;) {
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_warnx("ssh gateway: poll: %s", strerror(errno));
			break;
		}
		if (pf[1].revents)
			break;
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		int fd = accept4(listen_fd, (struct sockaddr *)&sa, &len,
				 SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warnx("ssh gateway: accept: %s",
					  strerror(errno));
			if (errno == EMFILE || errno == ENFILE)
				poll(NULL, 0, 100); /* let fds come back */
			continue;
		}
		admit(fd, &sa);
	}
	return NULL;
}

static int open_listener(void)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_PASSIVE |
					     AI_NUMERICSERV},
			*ai = NULL;
	char port[8];
	int fd = -1, one = 1, rc;

	snprintf(port, sizeof(port), "%d", sshgw_cfg.port);
	rc = getaddrinfo(sshgw_cfg.addr, port, &hints, &ai);
	if (rc != 0) {
		log_warnx("ssh gateway: address %s: %s", sshgw_cfg.addr,
			  gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		log_warnx("ssh gateway: cannot listen on %s port %d: %s",
			  sshgw_cfg.addr, sshgw_cfg.port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		bound_port = ntohs(sa.ss_family == AF_INET6
				       ? ((struct sockaddr_in6 *)&sa)->sin6_port
				       : ((struct sockaddr_in *)&sa)->sin_port);
	return fd;
}

void sshgw_start(void)
{
	ssh_key key;
	bool no = false;

	if (!sshgw_cfg.addr[0]) {
		log_info("ssh gateway off");
		return;
	}
	key = host_key();
	if (!key)
		return;
	sbind = ssh_bind_new();
	if (!sbind ||
	    ssh_bind_options_set(sbind, SSH_BIND_OPTIONS_PROCESS_CONFIG, &no) !=
		SSH_OK ||
	    ssh_bind_options_set(sbind, SSH_BIND_OPTIONS_IMPORT_KEY, key) !=
		SSH_OK) {
		log_warnx("ssh gateway: cannot set up libssh");
		ssh_key_free(key);
		goto fail;
	}
	listen_fd = open_listener();
	if (listen_fd < 0 || pipe2(stop_pipe, O_CLOEXEC) < 0)
		goto fail;
	if (pthread_create(&accept_thread, NULL, accept_main, NULL) != 0)
		goto fail;
	accepting = true;
	log_fingerprint(key);
	return;
fail:
	log_warnx("ssh gateway off");
	if (listen_fd >= 0)
		close(listen_fd);
	listen_fd = -1;
	if (sbind)
		ssh_bind_free(sbind);
	sbind = NULL;
}

void sshgw_stop(void)
{
	char x = 0;

	if (!accepting)
		return;
	if (write(stop_pipe[1], &x, 1) < 0)
		log_warnx("ssh gateway: stop: %s", strerror(errno));
	pthread_join(accept_thread, NULL);
	accepting = false;
	close(listen_fd);
	listen_fd = -1;
	/* Every connection ends within a turn of its loop (500 ms). */
	pthread_mutex_lock(&gw_lock);
	__atomic_store_n(&stopping, true, __ATOMIC_RELAXED);
	for (struct sshconn *c = conns; c; c = c->next) {
		/* A key exchange blocks in read: end it too. */
		if (!c->authed && ssh_get_fd(c->ss) >= 0)
			shutdown(ssh_get_fd(c->ss), SHUT_RDWR);
		sshconn_wake(c);
	}
	pthread_mutex_unlock(&gw_lock);
	for (int i = 0; i < 50; i++) {
		pthread_mutex_lock(&gw_lock);
		int n = nconns;
		pthread_mutex_unlock(&gw_lock);
		if (n == 0)
			break;
		poll(NULL, 0, 100);
	}
	ssh_bind_free(sbind);
	sbind = NULL;
}

char *sshgw_target(const struct session *s)
{
	char host[256], *out;
	const char *h = sshgw_cfg.addr;

	if (!accepting)
		return NULL;
	if (strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0) {
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		h = host;
	}
	if (asprintf(&out, "%s@%s -p %d\n", s->name, h, bound_port) < 0)
		abort();
	return out;
}
