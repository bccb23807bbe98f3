/*
 * SSH channels of the gateway: session channels (exec, shell, the sftp
 * subsystem; pty, env, window-change, signal) run as agent jobs, and
 * direct-tcpip channels (ssh -L) as agent connect streams.
 *
 * Each channel's bytes go through a socketpair: one end is bridged to the
 * guest by daemon/stream.c in tenkid's event loop, the other is ours,
 * serviced by the connection's libssh loop.  Flow control holds end to
 * end: we read our end only while the client's SSH window has room, and
 * take the client's bytes only while our buffer has room (what we leave
 * in libssh's buffer keeps its window shut).
 *
 * struct sshjob is the model's side of a channel (model_lock): what the
 * agent said about the job, its streams.  It outlives the channel when the
 * client goes first: the job then gets SIGHUP (SIGKILL 3 s later) and the
 * sshjob goes once the agent has told its exit and forgotten it.
 */
#include "agent.h"
#include "evloop.h"
#include "job.h"
#include "log.h"
#include "model.h"
#include "sshconn.h"
#include "sshgw.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IBUF_CAP	(256 * 1024) /* client bytes on their way in */
#define PULL_CHUNK	(64 * 1024)
#define OUT_CHUNK	(32 * 1024)
#define MAX_CHANS	64 /* per connection */
#define MAX_ENV		64
#define KILL_GRACE_MS	3000
#define CONNECT_WAIT_MS 15000

/* sh -c: the guest's login shell, bash where the image has it. */
#define LOGIN_SHELL                                                            \
	"for s in /bin/bash /bin/sh; do [ -x \"$s\" ] && exec \"$s\" -l; done"
#define SFTP_SERVER "/usr/lib/openssh/sftp-server"

enum sj_state { SJ_NEW, SJ_STARTING, SJ_RUNNING, SJ_ENDED, SJ_FAILED, SJ_LOST };

struct sshjob {
	struct sshjob *next;
	struct session *s;
	char key[48];
	bool tcpip;
	enum sj_state st;
	int exit_code, sig;
	char fail[256];
	struct stream *io, *err;
	struct sshconn *conn; /* whom to wake; NULL once the channel is gone */
	int pending;	      /* agent requests that will call back */
	bool forget_sent;
	struct timer kill_timer;
};

static struct sshjob *sshjobs; /* model_lock */

struct sshchan {
	struct sshchan *next;
	struct sshconn *c;
	ssh_channel ch;
	struct ssh_channel_callbacks_struct cb;
	bool tcpip;
	/* set up by requests before the start */
	bool pty;
	char term[65];
	int rows, cols;
	char *env[MAX_ENV];
	int nenv;
	bool started;
	/* our ends of the socketpairs, and their interest in c->ev */
	int fd_io, fd_err;
	short ev_io, ev_err;
	bool out_eof, err_eof;	   /* read EOF (or failed) */
	bool client_eof, in_shut;  /* the client's EOF, passed on */
	bool lib_pending, in_dead; /* bytes left in libssh; input dropped */
	uint8_t *ibuf;
	size_t ilen;
	struct sshjob *job;
	bool eof_sent; /* tcpip: the guest's EOF passed on */
	bool finished, remote_closed;
};

/* ---- the model side (model_lock held) ------------------------------------ */

static void sj_wake(struct sshjob *j)
{
	if (j->conn)
		sshconn_wake(j->conn);
}

static void sj_maybe_free(struct sshjob *j)
{
	if (j->conn || j->pending || j->io || j->err || j->kill_timer.armed)
		return;
	if (j->st == SJ_STARTING || (j->st == SJ_RUNNING && !j->tcpip))
		return; /* its exit is still to come */
	for (struct sshjob **pp = &sshjobs; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	session_put(j->s);
	free(j);
}

static void req_answered(struct session *s, json_t *resp, int err,
			 const char *text, void *arg)
{
	struct sshjob *j = arg;

	(void)s, (void)resp;
	if (err)
		log_debug("ssh job %s: %s", j->key, text);
	j->pending--;
	sj_maybe_free(j);
}

/* A request about the job whose answer only matters for bookkeeping. */
static void sj_request(struct sshjob *j, json_t *req)
{
	j->pending++;
	if (agent_request(j->s, req, req_answered, j, cfg.agent_timeout_ms) < 0)
		j->pending--;
}

/* The agent drops the job once we have its exit and all of its output. */
static void sj_maybe_forget(struct sshjob *j)
{
	if (j->tcpip || j->st != SJ_ENDED || j->io || j->err || j->forget_sent)
		return;
	j->forget_sent = true;
	sj_request(j, json_pack("{s:s, s:s}", "op", "forget", "job", j->key));
}

static void sj_signal(struct sshjob *j, int sig)
{
	sj_request(j, json_pack("{s:s, s:s, s:i}", "op", "signal", "job",
				j->key, "signal", sig));
}

static void kill_grace_over(struct timer *t)
{
	struct sshjob *j =
	    (struct sshjob *)((char *)t - offsetof(struct sshjob, kill_timer));

	/* The last word: after SIGKILL the job is not followed any more (its
	 * exit, if it comes, finds no job and is forgotten), so what a guest
	 * claims in a HELLO cannot keep these alive. */
	if (j->st == SJ_STARTING || j->st == SJ_RUNNING) {
		if (j->s->agent_up)
			sj_signal(j, SIGKILL);
		j->st = SJ_LOST;
		snprintf(j->fail, sizeof(j->fail), "killed");
	}
	sj_maybe_free(j);
}

static void st_ended(struct stream *st, int err, void *arg)
{
	struct sshjob *j = arg;

	if (j->io == st)
		j->io = NULL;
	if (j->err == st)
		j->err = NULL;
	if (err == ECONNRESET &&
	    (j->st == SJ_STARTING || j->st == SJ_RUNNING)) {
		j->st = SJ_LOST;
		snprintf(j->fail, sizeof(j->fail),
			 "the session's agent connection was lost");
	}
	sj_wake(j);
	sj_maybe_forget(j);
	sj_maybe_free(j);
}

static struct sshjob *sj_new(struct session *s, struct sshconn *c, bool tcpip)
{
	struct sshjob *j = calloc(1, sizeof(*j));
	char id[UUID_LEN + 1];

	if (!j)
		abort();
	uuid_new(id);
	snprintf(j->key, sizeof(j->key), "%s%s", SSHGW_JOB_PREFIX, id);
	j->s = s;
	session_get(s);
	j->conn = c;
	j->tcpip = tcpip;
	j->st = SJ_NEW;
	j->kill_timer.cb = kill_grace_over;
	j->next = sshjobs;
	sshjobs = j;
	return j;
}

/*
 * The channel is gone.  abort: end the streams now and, if the job still
 * runs, SIGHUP its process group (SIGKILL after a grace): the client left.
 */
static void sj_detach(struct sshjob *j, bool abort_it)
{
	if (abort_it) {
		if (j->io)
			stream_abort(j->io);
		if (j->err)
			stream_abort(j->err);
		if (!j->tcpip &&
		    (j->st == SJ_STARTING || j->st == SJ_RUNNING)) {
			sj_signal(j, SIGHUP);
			timer_arm(&j->kill_timer, KILL_GRACE_MS);
		}
	}
	j->conn = NULL;
	sj_maybe_free(j);
}

static void exec_answered(struct session *s, json_t *resp, int err,
			  const char *text, void *arg)
{
	struct sshjob *j = arg;

	(void)s, (void)resp;
	if (j->st == SJ_STARTING) {
		if (err) {
			j->st = SJ_FAILED;
			j->exit_code = err == ENOENT ? 127 : 126;
			snprintf(j->fail, sizeof(j->fail), "%s", text);
			if (j->io)
				stream_abort(j->io);
			if (j->err)
				stream_abort(j->err);
		} else {
			j->st = SJ_RUNNING;
		}
	}
	j->pending--;
	sj_wake(j);
	sj_maybe_free(j);
}

static void connect_answered(struct session *s, json_t *resp, int err,
			     const char *text, void *arg)
{
	struct sshjob *j = arg;

	(void)s, (void)resp;
	if (j->st == SJ_STARTING) {
		j->st = err ? SJ_FAILED : SJ_RUNNING;
		if (err) {
			snprintf(j->fail, sizeof(j->fail), "%s", text);
			if (j->io)
				stream_abort(j->io);
		}
	}
	j->pending--;
	sj_wake(j);
	sj_maybe_free(j);
}

static void forget_unknown(struct session *s, json_t *resp, int err,
			   const char *text, void *arg)
{
	(void)s, (void)resp, (void)err, (void)text, (void)arg;
}

int sshgw_on_exit(struct session *s, json_t *ev)
{
	const char *key = json_string_value(json_object_get(ev, "job"));
	struct sshjob *j;

	if (!key)
		return -1;
	for (j = sshjobs; j; j = j->next)
		if (j->s == s && !j->tcpip && strcmp(j->key, key) == 0)
			break;
	if (!j) {
		/* A job of a connection tenkid no longer has (it restarted,
		 * or the job was given up): the agent may drop it. */
		agent_request(
		    s, json_pack("{s:s, s:s}", "op", "forget", "job", key),
		    forget_unknown, NULL, cfg.agent_timeout_ms);
		return 0;
	}
	if (j->st == SJ_ENDED)
		return 0; /* repeated after a reconnect */
	if (job_exit_status(ev, &j->exit_code, &j->sig) < 0)
		return -1;
	j->st = SJ_ENDED;
	timer_cancel(&j->kill_timer);
	sj_wake(j);
	sj_maybe_forget(j);
	sj_maybe_free(j);
	return 0;
}

void sshgw_on_hello(struct session *s, json_t *agent_jobs)
{
	size_t i, plen = strlen(SSHGW_JOB_PREFIX);
	struct sshjob *j;
	json_t *it;

	json_array_foreach(agent_jobs, i, it)
	{
		const char *k = json_string_value(json_object_get(it, "job"));
		if (!k || strncmp(k, SSHGW_JOB_PREFIX, plen) != 0 ||
		    strlen(k) >= sizeof(j->key) ||
		    !json_is_true(json_object_get(it, "running")))
			continue;
		for (j = sshjobs; j; j = j->next)
			if (j->s == s && strcmp(j->key, k) == 0)
				break;
		if (j)
			continue;
		j = sj_new(s, NULL, false);
		snprintf(j->key, sizeof(j->key), "%s", k);
		j->st = SJ_RUNNING;
		sj_detach(j, true); /* SIGHUP, SIGKILL after the grace */
	}
}

/* ---- starting jobs (connection thread) ------------------------------------
 */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/*
 * Start the channel's job: cmd NULL is the login shell, sftp the sftp
 * server.  The request goes out in the same model_lock hold as the
 * streams' start, so no stdin byte can reach the agent before its job.
 */
static int chan_start(struct sshchan *ch, const char *cmd, bool sftp)
{
	struct sshconn *c = ch->c;
	int io[2] = {-1, -1}, er[2] = {-1, -1};
	uint32_t tx = 0, rx = 0, erx = 0;
	struct sshjob *j = NULL;
	json_t *argv, *env, *req;
	const char *why = "the session is not usable";

	if (ch->started)
		return -1;
	if (sftp)
		argv = json_pack("[s]", SFTP_SERVER);
	else
		argv = json_pack("[s, s, s]", "/bin/sh", "-c",
				 cmd ? cmd : LOGIN_SHELL);
	if (!argv)
		return -1; /* not UTF-8 */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, io) < 0 ||
	    (!ch->pty &&
	     socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, er) < 0)) {
		why = strerror(errno);
		goto fail_nolock;
	}
	pthread_mutex_lock(&model_lock);
	struct session *s = c->s;
	if (!session_usable(s) || !s->agent_up)
		goto fail;
	j = sj_new(s, c, false);
	j->io = stream_open(s, io[1], &tx, &rx, st_ended, j);
	if (!j->io)
		goto fail;
	io[1] = -1;
	if (!ch->pty) {
		j->err = stream_open(s, er[1], NULL, &erx, st_ended, j);
		if (!j->err)
			goto fail;
		er[1] = -1;
	}
	env = json_array();
	job_append_env(env, s->env_text);
	for (int i = 0; i < ch->nenv; i++)
		json_array_append_new(env, json_string(ch->env[i]));
	req = json_pack("{s:s, s:s, s:O, s:o, s:s, s:i, s:i}", "op", "exec",
			"job", j->key, "argv", argv, "env", env, "cwd",
			"/home/tenki", "stdin", (int)tx, "stdout", (int)rx);
	if (ch->pty)
		json_object_set_new(req, "pty",
				    json_pack("{s:i, s:i, s:s}", "rows",
					      ch->rows, "cols", ch->cols,
					      "term", ch->term));
	else
		json_object_set_new(req, "stderr", json_integer(erx));
	j->pending++;
	if (agent_request(s, req, exec_answered, j, cfg.agent_timeout_ms) < 0) {
		j->pending--;
		why = "the agent is not reachable";
		goto fail;
	}
	j->st = SJ_STARTING;
	pthread_mutex_unlock(&model_lock);
	json_decref(argv);
	ch->job = j;
	ch->fd_io = io[0];
	ch->fd_err = er[0];
	ch->err_eof = ch->pty;
	ch->started = true;
	nonblock(ch->fd_io);
	if (ch->fd_err >= 0)
		nonblock(ch->fd_err);
	log_info("ssh %s: %s: %s%s", c->peer, c->user,
		 sftp  ? "sftp"
		 : cmd ? "exec"
		       : "shell",
		 ch->pty ? " (pty)" : "");
	return 0;
fail:
	if (j)
		sj_detach(j, true);
	pthread_mutex_unlock(&model_lock);
fail_nolock:
	json_decref(argv);
	for (int i = 0; i < 2; i++) {
		close_fd(&io[i]);
		close_fd(&er[i]);
	}
	log_warnx("ssh %s: %s: cannot start: %s", c->peer, c->user, why);
	return -1;
}

/* ---- channel callbacks (connection thread, inside libssh) -----------------
 */

static int on_data(ssh_session ss, ssh_channel chn, void *data, uint32_t len,
		   int is_stderr, void *ud)
{
	struct sshchan *ch = ud;
	size_t take;

	(void)ss, (void)chn;
	if (is_stderr || ch->in_dead || ch->finished)
		return (int)len; /* nowhere to go: dropped */
	take = IBUF_CAP > ch->ilen ? IBUF_CAP - ch->ilen : 0;
	if (take > len)
		take = len;
	memcpy(ch->ibuf + ch->ilen, data, take);
	ch->ilen += take;
	if (take < len)
		ch->lib_pending = true; /* libssh keeps it, the window shuts */
	sshconn_touch(ch->c);
	return (int)take;
}

static void on_eof(ssh_session ss, ssh_channel chn, void *ud)
{
	struct sshchan *ch = ud;

	(void)ss, (void)chn;
	ch->client_eof = true;
}

static void on_close(ssh_session ss, ssh_channel chn, void *ud)
{
	struct sshchan *ch = ud;

	(void)ss, (void)chn;
	ch->remote_closed = true;
}

static const struct {
	const char *name;
	int sig;
} signames[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},	  {"QUIT", SIGQUIT}, {"ILL", SIGILL},
    {"ABRT", SIGABRT}, {"FPE", SIGFPE},	  {"KILL", SIGKILL}, {"USR1", SIGUSR1},
    {"SEGV", SIGSEGV}, {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},
    {"TERM", SIGTERM},
};

static const char *sig_name(int sig)
{
	for (size_t i = 0; i < sizeof(signames) / sizeof(signames[0]); i++)
		if (signames[i].sig == sig)
			return signames[i].name;
	return NULL;
}

static void on_signal(ssh_session ss, ssh_channel chn, const char *name,
		      void *ud)
{
	struct sshchan *ch = ud;

	(void)ss, (void)chn;
	for (size_t i = 0; i < sizeof(signames) / sizeof(signames[0]); i++) {
		if (strcmp(signames[i].name, name) != 0)
			continue;
		pthread_mutex_lock(&model_lock);
		if (ch->job &&
		    (ch->job->st == SJ_STARTING || ch->job->st == SJ_RUNNING))
			sj_signal(ch->job, signames[i].sig);
		pthread_mutex_unlock(&model_lock);
		return;
	}
	log_debug("ssh %s: unknown signal %s ignored", ch->c->peer, name);
}

static void clamp_size(struct sshchan *ch, int cols, int rows)
{
	ch->cols = cols < 1 ? 80 : cols > 65535 ? 65535 : cols;
	ch->rows = rows < 1 ? 24 : rows > 65535 ? 65535 : rows;
}

static int on_pty(ssh_session ss, ssh_channel chn, const char *term, int cols,
		  int rows, int px, int py, void *ud)
{
	struct sshchan *ch = ud;

	(void)ss, (void)chn, (void)px, (void)py;
	if (ch->started || ch->pty)
		return -1;
	ch->pty = true;
	snprintf(ch->term, sizeof(ch->term), "%s",
		 term && *term && !strchr(term, '=') ? term : "xterm");
	clamp_size(ch, cols, rows);
	return 0;
}

static int on_winch(ssh_session ss, ssh_channel chn, int cols, int rows, int px,
		    int py, void *ud)
{
	struct sshchan *ch = ud;

	(void)ss, (void)chn, (void)px, (void)py;
	if (!ch->pty)
		return -1;
	clamp_size(ch, cols, rows);
	pthread_mutex_lock(&model_lock);
	if (ch->job &&
	    (ch->job->st == SJ_STARTING || ch->job->st == SJ_RUNNING))
		sj_request(ch->job,
			   json_pack("{s:s, s:s, s:i, s:i}", "op", "resize",
				     "job", ch->job->key, "rows", ch->rows,
				     "cols", ch->cols));
	pthread_mutex_unlock(&model_lock);
	return 0;
}

static int on_env(ssh_session ss, ssh_channel chn, const char *name,
		  const char *value, void *ud)
{
	struct sshchan *ch = ud;
	char *kv;

	(void)ss, (void)chn;
	if (ch->started || ch->nenv >= MAX_ENV ||
	    !spec_valid_env_key(name, strlen(name)) || strlen(value) > 4096 ||
	    asprintf(&kv, "%s=%s", name, value) < 0)
		return 1;
	ch->env[ch->nenv++] = kv;
	return 0;
}

static int on_shell(ssh_session ss, ssh_channel chn, void *ud)
{
	(void)ss, (void)chn;
	return chan_start(ud, NULL, false) == 0 ? 0 : 1;
}

static int on_exec(ssh_session ss, ssh_channel chn, const char *cmd, void *ud)
{
	(void)ss, (void)chn;
	return chan_start(ud, cmd, false) == 0 ? 0 : 1;
}

static int on_subsystem(ssh_session ss, ssh_channel chn, const char *name,
			void *ud)
{
	(void)ss, (void)chn;
	if (strcmp(name, "sftp") != 0)
		return 1;
	return chan_start(ud, NULL, true) == 0 ? 0 : 1;
}

static int count_chans(struct sshconn *c)
{
	int n = 0;

	for (struct sshchan *ch = c->chans; ch; ch = ch->next)
		n++;
	return n;
}

static struct sshchan *chan_new(struct sshconn *c, ssh_channel chn, bool tcpip)
{
	struct sshchan *ch = calloc(1, sizeof(*ch));

	if (!ch || !(ch->ibuf = malloc(IBUF_CAP + PULL_CHUNK)))
		abort();
	ch->c = c;
	ch->ch = chn;
	ch->tcpip = tcpip;
	ch->fd_io = ch->fd_err = -1;
	ssh_callbacks_init(&ch->cb);
	ch->cb.userdata = ch;
	ch->cb.channel_data_function = on_data;
	ch->cb.channel_eof_function = on_eof;
	ch->cb.channel_close_function = on_close;
	if (!tcpip) {
		ch->cb.channel_signal_function = on_signal;
		ch->cb.channel_pty_request_function = on_pty;
		ch->cb.channel_pty_window_change_function = on_winch;
		ch->cb.channel_env_request_function = on_env;
		ch->cb.channel_shell_request_function = on_shell;
		ch->cb.channel_exec_request_function = on_exec;
		ch->cb.channel_subsystem_request_function = on_subsystem;
	}
	ssh_set_channel_callbacks(chn, &ch->cb);
	ch->next = c->chans;
	c->chans = ch;
	return ch;
}

ssh_channel sshchan_open_session(struct sshconn *c)
{
	ssh_channel chn;

	if (count_chans(c) >= MAX_CHANS) {
		log_warnx("ssh %s: more than %d channels refused", c->peer,
			  MAX_CHANS);
		return NULL;
	}
	chn = ssh_channel_new(c->ss);
	if (!chn)
		return NULL;
	chan_new(c, chn, false);
	return chn;
}

/* ---- direct-tcpip (ssh -L) ------------------------------------------------
 */

static void tcpip_refused(struct sshconn *c, int port, const char *why)
{
	char obj[100];

	log_warnx("ssh %s: %s: direct-tcpip to port %d refused: %s", c->peer,
		  c->user, port, why);
	pthread_mutex_lock(&model_lock);
	snprintf(obj, sizeof(obj), "%s/ssh", c->s->name);
	errlog_add(&c->s->err, obj, why);
	pthread_mutex_unlock(&model_lock);
}

/* Wait (without model_lock) until the agent answered the connect. */
static enum sj_state wait_connected(struct sshconn *c, struct sshjob *j)
{
	int64_t end = mono_ms() + CONNECT_WAIT_MS;
	enum sj_state st;
	uint64_t v;

	for (;;) {
		pthread_mutex_lock(&model_lock);
		st = j->st;
		pthread_mutex_unlock(&model_lock);
		if (st != SJ_STARTING || mono_ms() > end)
			return st;
		struct pollfd pf = {.fd = c->efd, .events = POLLIN};
		if (poll(&pf, 1, 100) > 0 && read(c->efd, &v, sizeof(v)) < 0)
			poll(NULL, 0, 10);
	}
}

int sshchan_open_tcpip(struct sshconn *c, ssh_message msg)
{
	int port = ssh_message_channel_request_open_destination_port(msg);
	int sp[2] = {-1, -1};
	uint32_t tx, rx;
	struct sshjob *j = NULL;
	struct session *s = c->s;
	char why[300] = "the session is not usable";
	ssh_channel chn;

	if (count_chans(c) >= MAX_CHANS || port < 1 || port > 65535) {
		tcpip_refused(c, port, "bad port or too many channels");
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		tcpip_refused(c, port, strerror(errno));
		return -1;
	}
	pthread_mutex_lock(&model_lock);
	if (!s->spec.allow_inbound) {
		snprintf(why, sizeof(why),
			 "ssh -L to guest port %d: the session has "
			 "allow_inbound=false",
			 port);
		goto fail;
	}
	if (!session_usable(s) || !s->agent_up)
		goto fail;
	j = sj_new(s, c, true);
	j->io = stream_open(s, sp[1], &tx, &rx, st_ended, j);
	if (!j->io)
		goto fail;
	sp[1] = -1;
	j->pending++;
	if (agent_request(s,
			  json_pack("{s:s, s:i, s:i, s:i}", "op", "connect",
				    "port", port, "tx", (int)tx, "rx", (int)rx),
			  connect_answered, j, CONNECT_WAIT_MS) < 0) {
		j->pending--;
		goto fail;
	}
	j->st = SJ_STARTING;
	pthread_mutex_unlock(&model_lock);

	if (wait_connected(c, j) != SJ_RUNNING) {
		pthread_mutex_lock(&model_lock);
		snprintf(why, sizeof(why), "guest port %d: %s", port,
			 j->fail[0] ? j->fail : "no answer");
		goto fail;
	}
	chn = ssh_message_channel_request_open_reply_accept(msg);
	if (!chn) {
		pthread_mutex_lock(&model_lock);
		snprintf(why, sizeof(why), "libssh: cannot accept the channel");
		goto fail;
	}
	struct sshchan *ch = chan_new(c, chn, true);
	ch->job = j;
	ch->fd_io = sp[0];
	ch->err_eof = true;
	ch->started = true;
	nonblock(ch->fd_io);
	log_info("ssh %s: %s: direct-tcpip to guest port %d", c->peer, c->user,
		 port);
	return 0;
fail:
	if (j)
		sj_detach(j, true);
	pthread_mutex_unlock(&model_lock);
	close_fd(&sp[0]);
	close_fd(&sp[1]);
	tcpip_refused(c, port, why);
	return -1;
}

/* ---- moving bytes and finishing (connection thread, after each poll) ------
 */

/* Client -> guest: our buffer into the socketpair, then what libssh
 * kept back (which reopens the client's window). */
static void pump_in(struct sshchan *ch)
{
	uint8_t tmp[PULL_CHUNK];

	while (ch->fd_io >= 0 && !ch->in_shut) {
		if (ch->ilen > 0 && !ch->in_dead) {
			ssize_t n = write(ch->fd_io, ch->ibuf, ch->ilen);
			if (n > 0) {
				memmove(ch->ibuf, ch->ibuf + n,
					ch->ilen - (size_t)n);
				ch->ilen -= (size_t)n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				break;
			ch->in_dead = true; /* the guest side is gone */
		}
		if (ch->in_dead)
			ch->ilen = 0;
		if (!ch->lib_pending || ch->ilen >= IBUF_CAP)
			break;
		size_t room = IBUF_CAP - ch->ilen;
		if (room > sizeof(tmp))
			room = sizeof(tmp);
		/* May run our data callback first: it appends before us. */
		int n = ssh_channel_read_nonblocking(ch->ch, tmp,
						     (uint32_t)room, 0);
		if (n <= 0 || (size_t)n < room)
			ch->lib_pending = false;
		if (n <= 0)
			break;
		memcpy(ch->ibuf + ch->ilen, tmp, (size_t)n);
		ch->ilen += (size_t)n;
	}
	if (ch->client_eof && !ch->ilen && !ch->lib_pending && !ch->in_shut &&
	    ch->fd_io >= 0) {
		ch->in_shut = true;
		shutdown(ch->fd_io, SHUT_WR);
	}
}

/* Guest -> client: read our end only as far as the client's window. */
static void pump_out(struct sshchan *ch, int fd, bool is_stderr)
{
	bool *eof = is_stderr ? &ch->err_eof : &ch->out_eof;
	char buf[OUT_CHUNK];

	for (int round = 0; round < 8 && fd >= 0 && !*eof; round++) {
		uint32_t win = ssh_channel_window_size(ch->ch);
		if (win == 0 || !ssh_channel_is_open(ch->ch))
			return;
		ssize_t n =
		    read(fd, buf, win < sizeof(buf) ? win : sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			*eof = true;
			return;
		}
		int w = is_stderr
			    ? ssh_channel_write_stderr(ch->ch, buf, (uint32_t)n)
			    : ssh_channel_write(ch->ch, buf, (uint32_t)n);
		if (w != n) {
			*eof = true; /* the channel broke under us */
			return;
		}
		sshconn_touch(ch->c);
	}
}

static int on_fd(socket_t fd, int revents, void *ud)
{
	(void)fd, (void)revents, (void)ud;
	return 0; /* the work is done in sshchan_service, after the poll */
}

static void set_interest(struct sshchan *ch, int fd, short *cur, short want)
{
	if (*cur == want)
		return;
	if (*cur)
		ssh_event_remove_fd(ch->c->ev, fd);
	*cur = 0;
	if (want && ssh_event_add_fd(ch->c->ev, fd, want, on_fd, ch) == SSH_OK)
		*cur = want;
}

static void update_interest(struct sshchan *ch)
{
	bool win = ssh_channel_window_size(ch->ch) > 0;
	short io = 0, er = 0;

	if (ch->fd_io >= 0) {
		if (!ch->out_eof && win)
			io |= POLLIN;
		if (ch->ilen > 0 && !ch->in_dead && !ch->in_shut)
			io |= POLLOUT;
		set_interest(ch, ch->fd_io, &ch->ev_io, io);
	}
	if (ch->fd_err >= 0) {
		if (!ch->err_eof && win)
			er = POLLIN;
		set_interest(ch, ch->fd_err, &ch->ev_err, er);
	}
}

static void close_ends(struct sshchan *ch)
{
	set_interest(ch, ch->fd_io, &ch->ev_io, 0);
	set_interest(ch, ch->fd_err, &ch->ev_err, 0);
	close_fd(&ch->fd_io);
	close_fd(&ch->fd_err);
}

/* Why the job could not run, on the client's stderr (the pty's output). */
static void say_failure(struct sshchan *ch, const char *fail)
{
	char line[320];
	int n = snprintf(line, sizeof(line), "tenki: %s%s", fail,
			 ch->pty ? "\r\n" : "\n");

	if (n <= 0 || (uint32_t)n > ssh_channel_window_size(ch->ch))
		return;
	if (ch->pty)
		ssh_channel_write(ch->ch, line, (uint32_t)n);
	else
		ssh_channel_write_stderr(ch->ch, line, (uint32_t)n);
}

/* All output is out and the job's end is known: exit-status or
 * exit-signal, EOF, close. */
static void maybe_finish(struct sshchan *ch)
{
	struct sshjob snap;
	bool io_gone;

	if (ch->finished || !ch->started)
		return;
	/* Every end (exit, failure, a lost agent) closes our ends too: wait
	 * for their EOF before looking at the job. */
	if (!ch->out_eof || (!ch->tcpip && !ch->err_eof))
		return;
	pthread_mutex_lock(&model_lock);
	snap = *ch->job;
	io_gone = ch->job->io == NULL;
	pthread_mutex_unlock(&model_lock);
	if (ch->tcpip) {
		/* Half-close: the guest's server is done, the client may not.
		 */
		if (ch->out_eof && !ch->eof_sent) {
			ssh_channel_send_eof(ch->ch);
			ch->eof_sent = true;
		}
		if (!ch->out_eof || !(ch->in_shut || io_gone))
			return;
	} else {
		if (snap.st != SJ_ENDED && snap.st != SJ_FAILED &&
		    snap.st != SJ_LOST)
			return;
		if (!ch->out_eof || !ch->err_eof)
			return;
		if (snap.st != SJ_ENDED)
			say_failure(ch, snap.fail);
		if (snap.st == SJ_ENDED && snap.sig && sig_name(snap.sig))
			ssh_channel_request_send_exit_signal(
			    ch->ch, sig_name(snap.sig), 0, "", "");
		else if (snap.st != SJ_LOST)
			ssh_channel_request_send_exit_status(ch->ch,
							     snap.exit_code);
	}
	if (!ch->eof_sent)
		ssh_channel_send_eof(ch->ch);
	ssh_channel_close(ch->ch);
	ch->finished = true;
	sshconn_touch(ch->c); /* idle from now on */
	/* Our ends close: the streams see EOF and end by themselves. */
	close_ends(ch);
	pthread_mutex_lock(&model_lock);
	sj_detach(ch->job, false);
	ch->job = NULL;
	pthread_mutex_unlock(&model_lock);
}

static void chan_free(struct sshconn *c, struct sshchan *ch)
{
	for (struct sshchan **pp = &c->chans; *pp; pp = &(*pp)->next) {
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	}
	close_ends(ch);
	if (ch->job) {
		pthread_mutex_lock(&model_lock);
		sj_detach(ch->job, true);
		pthread_mutex_unlock(&model_lock);
	}
	ssh_remove_channel_callbacks(ch->ch, &ch->cb);
	ssh_channel_close(ch->ch);
	ssh_channel_free(ch->ch);
	for (int i = 0; i < ch->nenv; i++)
		free(ch->env[i]);
	free(ch->ibuf);
	free(ch);
}

void sshchan_service(struct sshconn *c)
{
	struct sshchan *ch = c->chans, *next;

	for (; ch; ch = next) {
		next = ch->next;
		if (ch->remote_closed) {
			chan_free(c, ch);
			continue;
		}
		if (!ch->started || ch->finished)
			continue;
		pump_in(ch);
		pump_out(ch, ch->fd_io, false);
		pump_out(ch, ch->fd_err, true);
		maybe_finish(ch);
		if (!ch->finished)
			update_interest(ch);
	}
}

bool sshchan_busy(struct sshconn *c)
{
	for (struct sshchan *ch = c->chans; ch; ch = ch->next)
		if (ch->started && !ch->finished)
			return true;
	return false;
}

void sshchan_close_all(struct sshconn *c)
{
	while (c->chans)
		chan_free(c, c->chans);
}
