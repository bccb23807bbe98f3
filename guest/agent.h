/*
 * tenki-agent: the guest side of the agent protocol (docs/protocol.md).
 *
 * One process, one thread, one poll loop.  The agent is PID 1 in the guest,
 * so nothing here may exit or block on a single fd: every pipe and the port
 * are non-blocking, every buffer is bounded, and frees are deferred to the
 * top of the loop so no handler sees a dangling job.
 *
 * (Named guest/agent.h; daemon/agent.h is tenkid's and unrelated.  Quoted
 * includes find this one first because it sits next to the .c files.)
 */
#ifndef TENKI_GUEST_AGENT_H
#define TENKI_GUEST_AGENT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "proto.h"

#ifdef TENKI_VERSION
#define AGENT_VERSION "tenki-agent " TENKI_VERSION
#else
#define AGENT_VERSION "tenki-agent 0.1.0"
#endif
#define AGENT_PORT_NAME "org.tenki.agent.0"

/* The HELLO answer lists every job in one 64 KiB JSON: ~110 bytes a job. */
#define AGENT_MAX_JOBS	   512
#define AGENT_MAX_CONNS	   512 /* open connect streams */
#define CONNECT_TIMEOUT_MS 60000
#define JOB_KEY_MAX	   64
#define EXEC_MAX_ARGS	   4096
#define EXEC_MAX_ENV	   4096
#define EXEC_DEFAULT_CWD   "/home/tenki"

#define DATA_MAX	 (PROTO_MAX_PAYLOAD - 8) /* bytes after a DATA offset */
#define STREAM_MIN_BUF	 (64u * 1024u) /* every stream may buffer this */
#define STREAM_BUDGET	 (64u * 1024u * 1024u) /* all stream buffers above it */
#define STREAM_PIPE_SIZE (256 * 1024)	/* F_SETPIPE_SZ of output pipes */
#define DRAIN_MAX	 PROTO_WINDOW	/* read after the exit grace, at most */
#define OUTQ_LOW	 (256u * 1024u) /* refill the port queue below this */
#define OUTQ_HIGH	 (1024u * 1024u) /* stop reading pipes and port above */

#define EXIT_GRACE_MS 2000 /* streams end this long after the main exit */
#define KILL_GRACE_MS 2000 /* SIGKILL this long after a timeout's SIGTERM */
#define RETRY_MS      20   /* port open / reconnect / host probe period */

/* What a poll entry stands for (agent.c dispatches on it). */
enum pe_kind {
	PE_SIGNAL,
	PE_PORT,
	PE_LISTEN,
	PE_OUT,
	PE_IN,
	PE_START,
	PE_CONNECT,
	PE_FSNOTIFY
};

/* util.c */
enum { L_ERR, L_WARN, L_INFO, L_DEBUG };
extern int log_verbose;
void alog(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int64_t now_ms(void);
int64_t deadline_min(int64_t a, int64_t b);
int set_nonblock(int fd);

/* A byte queue: data[head .. head+len) is live, capacity cap. */
struct buf {
	uint8_t *data;
	size_t head, len, cap;
};
int buf_reserve(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n);
void buf_free(struct buf *b);
static inline uint8_t *buf_tail(struct buf *b)
{
	return b->data + b->head + b->len;
}
static inline size_t buf_tailroom(const struct buf *b)
{
	return b->cap - b->head - b->len;
}
ssize_t base64_decode(const char *in, size_t inlen, uint8_t *out,
		      size_t outcap);

/* init.c: PID 1 duties */
extern bool agent_is_init;
void init_system(void);
void init_std_fds(void);
void init_apply_hello(json_t *hello);

/* chan.c: job output (pipe -> host) and input (host -> pipe) streams */
struct ostream {
	uint32_t chan;	/* 0: no channel, the job writes to /dev/null */
	int fd;		/* pipe read end, -1 once closed */
	struct buf buf; /* bytes [acked, end) */
	uint64_t acked; /* the host has these */
	uint64_t sent;	/* sent on this connection */
	uint64_t end;	/* read from the pipe */
	uint64_t drained;
	bool draining; /* exit grace over: read what is left, then close */
	bool eof_sent;
	int read_err; /* why reading failed (a socket's reset), else 0 */
};

struct istream {
	uint32_t chan;	/* 0: no channel, the job reads /dev/null */
	int fd;		/* pipe write end, -1 once closed */
	struct buf buf; /* bytes [written, recv) */
	uint64_t written;
	uint64_t recv;
	uint64_t eof_at; /* valid when eof */
	bool eof;
	bool ack_due;
	bool sock; /* fd is a socket: shut its write side before closing */
};

void ostream_init(struct ostream *s, uint32_t chan, int fd);
bool ostream_may_read(const struct ostream *s);
void ostream_read(struct ostream *s);
void ostream_close(struct ostream *s);
void ostream_free(struct ostream *s);
void istream_init(struct istream *s, uint32_t chan, int fd);
void istream_write(struct istream *s);
void istream_abandon(struct istream *s);
void istream_free(struct istream *s);
void chan_on_data(uint32_t chan, const uint8_t *p, size_t len);
void chan_on_ack(uint32_t chan, const uint8_t *p);
void chan_on_eof(uint32_t chan, const uint8_t *p);
void chan_fill(void);
void chan_service(void);
void chan_resend_all(void);
bool ostream_emit(struct ostream *s);
void ostream_ack(struct ostream *s, uint64_t off);

/* conn.c: connect streams, a guest TCP connection bridged to two channels */
int conn_start(int port, uint32_t tx, uint32_t rx, json_int_t id, char *msg,
	       size_t msglen);
int conn_close(uint32_t chan, char *msg, size_t msglen);
bool conn_chan_in_use(uint32_t chan);
bool conn_on_data(uint32_t chan, uint64_t off, const uint8_t *p, size_t n);
bool conn_on_ack(uint32_t chan, uint64_t off);
bool conn_on_eof(uint32_t chan, uint64_t off);
void conn_send_acks(void);
bool conn_fill_round(void);
void conn_on_connect(void *ptr, int fd);
void conns_add_polls(void);
void conns_timers(int64_t now);
int64_t conns_next_deadline(void);
void conns_free_dead(void);
void conns_reset(void);

/* jobs.c */
enum job_state {
	JOB_STARTING, /* forked; waiting to learn whether exec worked */
	JOB_RUNNING,
	JOB_ENDED, /* main process reaped; held until forgotten */
	JOB_DEAD,  /* freed at the top of the loop */
};

struct job {
	char key[JOB_KEY_MAX + 1];
	pid_t pid; /* also the process group and session id */
	enum job_state state;
	json_int_t req_id; /* the exec request, answered once exec is known */
	int errfd;	   /* CLOEXEC pipe carrying the child's exec failure */
	int status;	   /* wait status once ended */
	bool reaped_early; /* exited before we knew exec worked */
	bool timed_out;
	int64_t timeout_at, kill_at, close_at; /* 0: not armed */
	struct ostream out[2];		       /* stdout, stderr */
	struct istream in;
	int ptyfd; /* the pty master (resize), -1 without a pty */
};

struct exec_spec {
	const char *key;
	char **argv; /* NULL-terminated */
	char **envp; /* NULL-terminated, complete environment */
	const char *cwd;
	uint64_t timeout_ms;
	uint32_t chan_in, chan_out, chan_err; /* 0: none */
	bool pty;			      /* on a new pseudo-terminal */
	unsigned short rows, cols;
};

extern struct job *jobs[AGENT_MAX_JOBS];
extern size_t njobs;

struct job *job_find(const char *key);
struct job *job_by_chan_out(uint32_t chan);
struct job *job_by_chan_in(uint32_t chan);
int job_start(const struct exec_spec *sp, json_int_t id, char *msg,
	      size_t msglen);
void job_on_errpipe(struct job *j);
int job_signal(const char *key, int sig, char *msg, size_t msglen);
int job_forget(const char *key, char *msg, size_t msglen);
int job_resize(const char *key, unsigned rows, unsigned cols, char *msg,
	       size_t msglen);
void jobs_reap(void);
void jobs_timers(int64_t now);
int64_t jobs_next_deadline(void);
void jobs_free_dead(void);
void jobs_add_polls(void);
void jobs_kill_all(void);
int sync_start(json_int_t id);

/* req.c: JSON messages */
enum { HELLO_OK, HELLO_BAD, HELLO_MISMATCH };
int hello_check(const uint8_t *p, size_t len);
void hello_reply(bool resend);
void resend_exit_events(void);
void req_handle(const uint8_t *p, size_t len);
void resp_ok(json_int_t id, json_t *extra);
void resp_error(json_int_t id, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void event_exit(const struct job *j);

/* fsops.c: file operations on the home directory (FSREQ -> FSRESP) */
void fs_set_home(const char *path);
void fs_reset(void);
void fs_handle(const uint8_t *p, size_t len);
void fs_set_notify(bool on); /* the host's HELLO asked for FSNOTIFY */
bool fs_notifying(void);
void fs_notify_flush(void);
void fs_add_polls(void);

/* volume.c: mounting volumes (a child per request); flag is ro for a
 * mount, lazy for an unmount */
void volop_start(json_int_t id, bool mount_it, const char *serial,
		 const char *path, bool flag);
bool volop_reaped(pid_t pid, int status);

/* port.c: the host connection */
enum port_mode { PORT_VIRTIO, PORT_CONNECT, PORT_LISTEN };
int port_init(enum port_mode mode, const char *path);
void port_cleanup(void);
bool port_ready(void);
size_t port_outq_len(void);
int port_send(uint8_t type, uint32_t chan, const void *a, size_t alen,
	      const void *b, size_t blen);
int port_send_json(uint8_t type, json_t *obj);
void port_timer(int64_t now);
int64_t port_next_deadline(void);
void port_flush(void);
void port_add_polls(void);
void port_on_poll(enum pe_kind kind, int fd, short revents);

/* agent.c: the poll set, rebuilt every turn of the loop */
void poll_add(int fd, short events, enum pe_kind kind, void *ptr);

#endif
