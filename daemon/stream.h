/*
 * A byte stream between a host file descriptor and the guest, carried on
 * one or two agent data channels (docs/protocol.md, "Data channels"): the
 * bridge under ports/ (a TCP client's socket to a guest port) and the SSH
 * gateway (a socketpair to an SSH channel's stdio).
 *
 * Host to guest: bytes read from fd go out as DATA on tx; fd is read only
 * while fewer than PROTO_WINDOW bytes are unacknowledged, so a fast client
 * cannot starve the session's other channels.  EOF on fd sends EOF.
 * Guest to host: DATA on rx is written to fd and ACKed once written; while
 * fd would block the bytes wait (at most a window: the guest honours it).
 * The guest's EOF shuts down fd's write side (half-close).
 *
 * All functions run with model_lock held.  The stream owns fd from
 * stream_open on and closes it when it ends.
 */
#ifndef TENKI_STREAM_H
#define TENKI_STREAM_H

#include <stddef.h>
#include <stdint.h>

struct session;
struct stream;

/*
 * Called exactly once when the stream ends: both directions finished
 * (err 0), fd failed, the guest broke the protocol on its channels, or the
 * session's agent connection went away (ECONNRESET).  The stream is freed
 * after the callback returns.
 */
typedef void (*stream_end_cb)(struct stream *st, int err, void *arg);

/*
 * Bridge fd (made non-blocking here) to session s.  Channel numbers are
 * allocated from the session; *tx (host to guest) and *rx (guest to host)
 * receive them to be named in the agent request that opens the guest
 * side.  A NULL tx or rx makes the stream one-way (e.g. a job's stderr).
 * Returns NULL with errno set on failure (fd is then not taken).
 */
struct stream *stream_open(struct session *s, int fd, uint32_t *tx,
			   uint32_t *rx, stream_end_cb cb, void *arg);

/* End the stream now: close fd, send EOF on tx if not yet sent; the end
 * callback runs with err ECANCELED. */
void stream_abort(struct stream *st);

/* Frames from the agent connection.  Each returns 1 when chan belongs to
 * a stream (handled), 0 when it does not, -1 on a protocol violation. */
int stream_on_data(struct session *s, uint32_t chan, uint64_t off,
		   const void *p, size_t n);
int stream_on_ack(struct session *s, uint32_t chan, uint64_t off);
int stream_on_eof(struct session *s, uint32_t chan, uint64_t off);

/* The guest's side was reset (docs/protocol.md, the reset event): the
 * stream of rx channel chan ends with ECONNRESET and fd is reset too.
 * Returns 1 when chan belongs to a stream, else 0. */
int stream_on_reset(struct session *s, uint32_t chan);

/* The session's agent connection is gone: every stream of s ends with
 * ECONNRESET. */
void stream_session_lost(struct session *s);

#endif
