/*
 * The SSH gateway (docs/ssh.md): a libssh server inside tenkid.  The SSH
 * user names the session; public-key authentication against the session's
 * keys; each SSH channel is carried to the guest over the agent protocol
 * (exec jobs on daemon/stream.h bridges, direct-tcpip on `connect`).
 *
 * Threads: one accepts, one runs each connection's libssh event loop.
 * They take model_lock only for short, non-blocking model calls and never
 * hold it while libssh may block; the model reaches a connection through
 * its eventfd (see sshconn.h).
 */
#ifndef TENKI_SSHGW_H
#define TENKI_SSHGW_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct session;

struct sshgw_config {
	char addr[64]; /* listen address; "" when the gateway is off */
	int port;      /* 2222 */
	int max_conns; /* connections at once, in total */
	int max_per_session;
	int max_startups; /* connections not yet authenticated */
	int max_auth_tries;
	int64_t login_grace_ms;	 /* key exchange and authentication */
	int64_t idle_timeout_ms; /* no channel at work, no bytes; 0: none */
};

extern struct sshgw_config sshgw_cfg;

/* Defaults, then "ADDR:PORT", "[V6]:PORT", "PORT" or "off". */
void sshgw_defaults(void);
int sshgw_parse_listen(const char *text);

/*
 * Load (or make, once) the host key in the state directory and listen.
 * A listener that cannot bind is logged and the gateway stays off: the
 * tree works without it.
 */
void sshgw_start(void);
/* Stop accepting and end every connection (their guest jobs get SIGHUP). */
void sshgw_stop(void);

/* "USER@HOST -p PORT\n" for ssh/target; NULL when the gateway is off. */
char *sshgw_target(const struct session *s);

/* Agent job keys of SSH channels start with this; job.c routes them. */
#define SSHGW_JOB_PREFIX "ssh-"
/* The agent's exit event of an SSH job (model_lock held); -1: malformed. */
int sshgw_on_exit(struct session *s, json_t *ev);
/* The agent's HELLO job list: SSH jobs still running whose client tenkid
 * no longer has (it restarted) are ended like those of a disconnect. */
void sshgw_on_hello(struct session *s, json_t *agent_jobs);

#endif
