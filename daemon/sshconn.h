/*
 * Inside the SSH gateway: one client connection (sshgw.c) and its
 * channels (sshchan.c).
 *
 * A connection and its channels belong to the connection's thread; only
 * that thread calls libssh for them.  What the model side must tell a
 * channel (a job started, ended, a stream closed) it writes into the
 * channel's sshjob under model_lock and wakes the thread through the
 * connection's eventfd; the thread reads it back under model_lock.
 */
#ifndef TENKI_SSHCONN_H
#define TENKI_SSHCONN_H

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <stdbool.h>
#include <stdint.h>

struct session;
struct sshchan;

struct sshconn {
	struct sshconn *next; /* all connections (gw_lock) */
	ssh_session ss;
	ssh_event ev;
	int efd;	       /* eventfd: the model woke us */
	char peer[64];	       /* ADDR:PORT of the client */
	char user[128];	       /* the SSH user: a session name or UUID */
	struct session *s;     /* once authenticated (referenced) */
	bool authed, stopping; /* stopping: gw_lock */
	int auth_fails;
	char why[200]; /* the last refusal, logged at the end */
	int64_t started_ms, active_ms;
	int64_t checked_ms; /* the session's state, last looked at */
	struct ssh_server_callbacks_struct srv_cb;
	struct sshchan *chans;
};

/* sshgw.c */
void sshconn_touch(struct sshconn *c); /* bytes moved: not idle */

/* sshchan.c: the channel callbacks and the channels' work. */
ssh_channel sshchan_open_session(struct sshconn *c);
/* A direct-tcpip open (ssh -L): 0 accepted, -1 refused (reason in c). */
int sshchan_open_tcpip(struct sshconn *c, ssh_message msg);
/* After every turn of the event loop: move bytes, finish channels. */
void sshchan_service(struct sshconn *c);
/* Does a channel still run a job or carry a forwarded connection? */
bool sshchan_busy(struct sshconn *c);
/* The connection is ending: every channel goes, guest jobs get SIGHUP. */
void sshchan_close_all(struct sshconn *c);
/* Wake the connection's thread (any thread). */
void sshconn_wake(struct sshconn *c);

#endif
