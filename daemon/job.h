/*
 * Exec jobs (SPEC.md exec/): what a job is on the host, its output spool
 * and its life, driven by the tree and by the agent's frames.
 * All functions run with model_lock held.
 */
#ifndef TENKI_JOB_H
#define TENKI_JOB_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "evloop.h"
#include "model.h"

enum job_state {
	J_NEW,	    /* made; cmd/argv not written yet */
	J_STARTING, /* exec sent to the agent */
	J_RUNNING,
	J_EXITED,
	J_KILLED,
	J_TIMEOUT,
	J_FAILED, /* could not start, or lost */
};

struct job_stream {
	uint32_t chan;
	int fd;		 /* spool file */
	uint64_t recv;	 /* protocol offset: bytes received */
	uint64_t stored; /* bytes in the spool file (<= cap) */
	uint64_t final;	 /* EOF offset once known */
	bool eof_known;
};

struct job {
	struct job *next;
	struct session *s;
	int refs;
	bool gone;
	char name[NAME_MAX_LEN + 1];
	char key[40]; /* the agent's name for it */
	char dir[600];
	enum job_state st;
	/* what to run, fixed at start */
	char *env_text;
	char *cwd;
	int64_t timeout_ms;
	json_t *argv; /* array, set at start */
	/* how it went */
	int pid, exit_code, sig;
	bool timed_out, truncated;
	char *fail_reason;
	int64_t created_ms, started_ms, ended_ms;
	struct job_stream out, err;
	int output_fd;
	uint64_t output_stored;
	int offsets_fd;
	/* stdin, host to agent */
	uint32_t in_chan;
	struct buf in_pending; /* bytes from in_sent on not yet sent */
	uint64_t in_queued;    /* offset after the last byte taken */
	uint64_t in_acked;
	bool in_eof, in_eof_sent;
	int in_writers;
	bool forgotten;
	struct timer kill_timer;
	struct waitq wq;
};

const char *job_state_name(enum job_state st);

/* mkdir exec/NAME (name NULL: the next number, for clone). */
int job_create(struct session *s, const char *name, struct job **out);
struct job *job_find(struct session *s, const char *name);
void job_get(struct job *j);
void job_put(struct job *j);
/* rmdir exec/NAME: kill if running, free output. */
int job_remove(struct job *j);

/* Before the start: env lines, cwd, timeout (EBUSY after). */
int job_set_env(struct job *j, const char *text, size_t len);
int job_set_cwd(struct job *j, const char *text, size_t len);
/* Checks of one write, before anything is applied. */
bool job_valid_cwd(const char *text, size_t len);
bool job_valid_timeout(const char *text, size_t len);
int job_set_timeout(struct job *j, const char *text, size_t len);
/* Start: cmd is a shell line, argv one argument per line. */
int job_start_cmd(struct job *j, const char *text, size_t len);
int job_start_argv(struct job *j, const char *text, size_t len);
bool job_started(const struct job *j);
bool job_ended(const struct job *j);
int job_ctl(struct job *j, const char *text, size_t len);

/* stdin: -EAGAIN when the window is full (wait on j->wq). */
ssize_t job_stdin_write(struct job *j, const char *p, size_t n);
void job_stdin_open(struct job *j);
void job_stdin_close(struct job *j);

/* The outcome of an agent's exit event: exit_code and signal 0, or
 * 128+signal and the signal; -1 when the event carries neither validly.
 * Also used by sshchan.c. */
int job_exit_status(json_t *ev, int *exit_code, int *signo);

/* Append the KEY=VALUE lines of text (an env file) to the JSON array env
 * of an exec request; blank lines are skipped.  Also used by sshchan.c. */
void job_append_env(json_t *env, const char *text);

enum job_view { V_STDOUT, V_STDERR, V_OUTPUT };
/* Read from a stream at off: >0 bytes, 0 at the end, -EAGAIN when more
 * may come (wait on j->wq). */
ssize_t job_read(struct job *j, enum job_view v, char *buf, size_t n,
		 uint64_t off);
char *job_status_text(struct job *j);
char *job_info_json(struct job *j);
/* The exit code once ended, else -1. */
int job_exit_code(struct job *j);

/* From the agent connection: -1 is a protocol violation. */
int job_on_data(struct session *s, uint32_t chan, uint64_t off,
		const uint8_t *p, size_t n);
int job_on_ack(struct session *s, uint32_t chan, uint64_t off);
int job_on_eof(struct session *s, uint32_t chan, uint64_t off);
int job_on_exit(struct session *s, json_t *ev);
void jobs_on_hello(struct session *s, json_t *agent_jobs);
/* The session ended: its jobs end with it. */
void jobs_session_closed(struct session *s);
bool jobs_running(struct session *s);

/* Persistence. */
void jobs_load(struct session *s);
void jobs_free(struct session *s);

#endif
