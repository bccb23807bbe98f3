/*
 * The host side of the agent protocol (docs/protocol.md) for one session:
 * handshake, requests and their answers, data channels.  Every frame from
 * the guest is hostile input: a violation ends the session, never tenkid.
 * All functions run with model_lock held.
 */
#ifndef TENKI_AGENT_H
#define TENKI_AGENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct session;

/* err is 0 on success (resp is the answer), else an errno with text. */
typedef void (*agent_resp_cb)(struct session *s, json_t *resp, int err,
			      const char *text, void *arg);

/* Connect to the guest's channel socket and send HELLO.  The session's
 * agent_up turns true when the agent answers. */
int agent_attach(struct session *s, const char *sock_path, char *err,
		 size_t errlen);
/* The same over a connected socket fd (vmm_channel_open's), taken over. */
int agent_attach_fd(struct session *s, int fd, char *err, size_t errlen);
/* Drop the connection; pending requests fail with ECONNRESET. */
void agent_detach(struct session *s);

/* Send a request (takes the reference to req; adds "id").  The callback
 * runs exactly once: answer, error, timeout or detach. */
int agent_request(struct session *s, json_t *req, agent_resp_cb cb, void *arg,
		  int64_t timeout_ms);

void agent_send_data(struct session *s, uint32_t chan, uint64_t off,
		     const void *p, size_t n);
void agent_send_ack(struct session *s, uint32_t chan, uint64_t off);
void agent_send_eof(struct session *s, uint32_t chan, uint64_t off);

/*
 * A file operation (binary FSREQ).  The request is the op's fields after
 * the 16-byte header, then data (WRITE's bytes).  cb runs exactly once with
 * the result after the 12-byte answer header (err 0), or an errno: the
 * guest's own, ETIMEDOUT, or ECONNRESET when the connection went away.
 * FS_FORGET takes no callback and gets no answer.
 */
typedef void (*agent_fs_cb)(struct session *s, int err, const uint8_t *res,
			    size_t len, void *arg);
int agent_fs_request(struct session *s, uint32_t op, const void *args,
		     size_t alen, const void *data, size_t dlen, agent_fs_cb cb,
		     void *arg);

/*
 * When a file request's agent timeout passes: with this hook set, the hook
 * runs (model_lock held) to answer the caller, and the request stays, so
 * its cb still runs exactly once, with the guest's late answer (whose
 * nodes and handles can then be given back) or ECONNRESET when the
 * connection ends.  Without it cb gets ETIMEDOUT and the request is gone.
 * Set once at start.
 */
typedef void (*agent_fs_timeout_fn)(agent_fs_cb cb, void *arg);
void agent_set_fs_timeout(agent_fs_timeout_fn fn);

/*
 * Change notifications for files/ (FSNOTIFY frames, docs/protocol.md).
 * The host asks for them in its HELLO; the hook runs for each frame with
 * model_lock held and returns -1 for a malformed payload, which ends the
 * connection.  Set once at start, before any session connects.
 */
typedef int (*agent_fs_notify_fn)(struct session *s, const uint8_t *p,
				  size_t len);
void agent_set_fs_notify(agent_fs_notify_fn fn);
/* Whether the session's agent said it sends FSNOTIFY. */
bool agent_fs_notifies(struct session *s);
/* The number of the session's connection since its handshake: never
 * reused, 0 while there is none.  Nids belong to one connection. */
uint64_t agent_conn_gen(struct session *s);

/* Bytes queued towards the agent (for back-pressure of stdin writers). */
size_t agent_queued(struct session *s);

#endif
