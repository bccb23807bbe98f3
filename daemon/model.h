/*
 * The object model of tenkid: sessions and their exec jobs, their states
 * and options.  Nothing here knows of FUSE; the tree (fs/) reads and
 * changes the model through these functions, always holding model_lock.
 *
 * Locking: one lock, model_lock, guards every object.  Slow work (libvirt
 * calls, disk creation) runs in worker threads without the lock and takes
 * it again to publish its result.  Objects are reference-counted so an
 * open file keeps its object alive after rmdir.
 */
#ifndef TENKI_MODEL_H
#define TENKI_MODEL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "errors.h"
#include "spec.h"
#include "util.h"

struct agent_conn;
struct host;
struct vmm_host;

extern pthread_mutex_t model_lock;

/* ---- waiting ---------------------------------------------------------- */

/*
 * A waiter is something parked until an object changes: a FUSE request
 * that blocks (wait, exit, a stream read, mkdir until READY) or a poll
 * handle.  wake() runs with model_lock held; it must not block, and may
 * remove its own waiter.
 */
struct waiter {
	struct waiter *prev, *next;
	void (*wake)(struct waiter *w);
};

struct waitq {
	struct waiter head;
};

void waitq_init(struct waitq *q);
void waitq_add(struct waitq *q, struct waiter *w);
void waitq_del(struct waiter *w); /* safe on a waiter not in a queue */
void waitq_wake(struct waitq *q);

/* ---- configuration ---------------------------------------------------- */

struct tenkid_config {
	const char *mount;
	const char *state_dir;
	const char *uri;
	const char *image_dir; /* /var/cache/tenki/images */
	int accel;	       /* enum vmm_accel */
	uint64_t output_cap;   /* bytes kept per job stream */
	int64_t boot_timeout_ms;
	int64_t agent_timeout_ms; /* a request the agent has not answered */
	double overcommit;     /* memory promised to sessions / host memory */
	bool golden;	       /* plain creates restore a golden state */
	unsigned pool;	       /* sessions kept restored ahead of time */
	const char *port_bind; /* host listeners of ports/ (127.0.0.1) */
	const char *preview;   /* the preview listener ADDR:PORT, or off */
	bool foreground, debug;
};

extern struct tenkid_config cfg;

/* ---- sessions --------------------------------------------------------- */

enum sess_state {
	S_CREATING,
	S_READY,
	S_RUNNING,
	S_PAUSED,
	S_TERMINATING,
	S_TERMINATED,
};

const char *sess_state_name(enum sess_state st);

struct job;

struct session {
	struct session *next;
	int refs;
	bool gone; /* removed (rmdir) or never published (failed create) */
	char name[NAME_MAX_LEN + 1];
	char id[UUID_LEN + 1];
	enum sess_state state;
	struct sess_spec spec;
	char *env_text;			/* the env file: KEY=VALUE lines */
	int64_t created_ms, expires_ms; /* expires 0: never */
	char domname[64];
	char dir[512];
	char *reason; /* why it ended, when it did */
	/* Restored from a snapshot that left volumes out: their mounts to
	 * drop before READY (volume.c); and while that worker runs. */
	json_t *left_out;
	bool volumes_booting;
	bool busy; /* a lifecycle change is under way */
	bool agent_up;
	int64_t guest_ready_ms;
	struct errlog err;
	struct waitq wq; /* any change of state, jobs, agent */
	struct agent_conn *conn;
	struct job *jobs;
	unsigned next_job;
	uint32_t next_chan;
	uint64_t expiry_gen;
	unsigned disk_gen;	/* live disk: disk.qcow2, then disk.N.qcow2 */
	const char *boot;	/* "cold", "golden", "snapshot" or "pool" */
	bool restore;		/* the create restores restore.src */
	struct host *host;	/* where its VM runs (referenced) */
	bool host_lost;		/* its host is DOWN: reason says since when */
	int64_t reattach_until; /* its agent is being re-attached: wait */
	bool prepared;		/* ... or restore.save, made with its disk ahead
				   of time (a staged guest of the pool) */
};

/* Collections' and the root's err files. */
extern struct errlog root_err, sessions_err;
/* Generic err logs of collections that have no objects yet. */
extern struct errlog volumes_err, snapshots_err, templates_err, hosts_err;

/* The defaults file: a spec text, validated on write. */
extern char *defaults_text;
extern struct waitq root_wq; /* session list changes */

int model_init(struct vmm_host *host);
/* Re-attach sessions found in the state directory (after model_init). */
void model_restore(void);
void model_shutdown(void);

struct session *session_find(const char *name_or_id);
struct session *session_first(void);
void session_get(struct session *s);
void session_put(struct session *s);

/*
 * Start creating a session from a validated spec.  On success returns 0
 * and *out (referenced) in state CREATING; the VM boots in the background
 * and s->wq wakes at every change.  On refusal returns -errno with a line
 * in the right err file.
 */
int session_create(const struct sess_spec *spec, struct session **out);

/* ctl verbs: each returns 0 or -errno (with an err line). */
int session_ctl(struct session *s, const char *text, size_t len);
/* rmdir: close if open and remove every trace.  Blocks (drops the lock)
 * until done. */
int session_remove(struct session *s);
int session_set_env(struct session *s, const char *text, size_t len);
/* Replace the SSH keys with the (checked) key lines of text. */
int session_set_keys(struct session *s, const char *text, size_t len);

bool session_usable(const struct session *s);
bool session_final(const struct session *s);
/* Has the creation failed (the session was withdrawn)? */
bool session_failed_create(const struct session *s);

/* KEY=VALUE lines as a JSON object (info.json's env). */
json_t *env_object(const char *text);
/* Records (callers free). */
char *session_info_json(struct session *s);
char *sessions_index(bool json);
/* Persist the record now (model_lock held). */
void session_save(struct session *s);
void session_set_state(struct session *s, enum sess_state st);
/* The VM is gone or unusable: TERMINATED with the reason. */
void session_fail(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Called by the agent connection (model_lock held). */
void session_agent_ready(struct session *s);
/* After a tenkid restart or its host's return, s's agent is re-attached
 * in the background: wait for it (model_lock held, at most 15 s from the
 * start of the re-attach).  Whether the agent is up. */
bool session_wait_agent(struct session *s);
void session_agent_lost(struct session *s, const char *why);

/* The libvirt domain name a session (or pooled guest) of this id gets. */
void session_domname(const char *id, char *out, size_t n);
/* The path of the session's disk layer gen (0: disk.qcow2). */
void session_disk_path(const struct session *s, unsigned gen, char *out,
		       size_t n);
/* Wait until no lifecycle change is under way (drops model_lock while
 * waiting); then op_begin/op_end bracket one, as pause, snapshot and
 * volume attach/detach do. */
void session_wait_idle(struct session *s);
void session_op_begin(struct session *s);
void session_op_end(struct session *s);

/* Hosts (host.c): a remote host went away, or came back (re-attach the
 * session if its VM survived); the session's reason says which. */
void session_host_down(struct session *s, const char *why);
void session_host_up(struct session *s);
/* 0 for a session on the local host; else -EINVAL with a line in log:
 * what (snapshot, attach) is done on the local host only. */
int session_local_only(struct session *s, struct errlog *log,
		       const char *object, const char *what);
/* Remove the domains of this state directory on v that no session owns.
 * No lock held. */
void session_sweep_orphans(struct vmm_host *v);

/* Worker threads for slow work. */
void spawn_worker(void *(*fn)(void *), void *arg);
/* Wait up to timeout_ms for every worker to end; how many still run. */
int model_workers_wait(int timeout_ms);

/* The vmm host sessions run on. */
extern struct vmm_host *vmm;

#endif
