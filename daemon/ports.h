/*
 * Exposed guest ports (SPEC.md, ports/): per session, a guest port made
 * reachable from the host through its own host listener (URL
 * http://HOST:PORT/) and through the shared preview listener, which routes
 * by Host header PORT-SESSION.localhost.  Every accepted connection is
 * bridged to the guest's loopback by a stream and the agent's connect.
 * Exposures are persisted in the session's directory (ports.json) and
 * listen again after a tenkid restart.
 *
 * All functions run with model_lock held; refusals return -errno with an
 * err line (refuse()).
 */
#ifndef TENKI_PORTS_H
#define TENKI_PORTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct session;

/* Start the preview listener and re-expose persisted ports (after
 * model_restore).  A preview address that cannot be bound is logged, not
 * fatal. */
void ports_start(void);

/* Is name a canonical port number 1..65535?  (No refusal, no err line.) */
int ports_parse_name(const char *name);
/* Is name exposed on s? */
bool ports_exposed(struct session *s, const char *name);

/* touch ports/N: expose without expiry (no change if already exposed). */
int ports_create(struct session *s, const char *name);
/* A write to ports/N: a TTL (90, 1h, ...) from now, or "never". */
int ports_write(struct session *s, const char *name, const char *text,
		size_t len);
/* rm ports/N: unexpose and close its connections. */
int ports_remove(struct session *s, const char *name);

/* ls ports/: calls add for each exposed port, in port order. */
void ports_list(struct session *s,
		void (*add)(void *ctx, const char *name, bool is_dir),
		void *ctx);
/* The text of ports/N ("url URL", "expires TIME|never", "preview URL"),
 * or NULL when not exposed. */
char *ports_text(struct session *s, const char *name);
/* info.json's "ports" array (a new reference). */
json_t *ports_json(struct session *s);
/* The root file preview: the URL pattern, or a line saying it is off. */
char *ports_preview_text(void);

/* The session ended (TERMINATED or removed): unexpose everything. */
void ports_session_closed(struct session *s);

#endif
