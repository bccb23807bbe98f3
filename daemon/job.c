/* Exec jobs on the host side: spool, offsets, lifecycle. */
#include "job.h"
#include "ctlverbs.h"
#include "agent.h"
#include "events.h"
#include "evloop.h"
#include "log.h"
#include "proto.h"
#include "sshgw.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KILL_GRACE_MS 2000
#define MAX_JOBS      4096
#define MAX_ARGS      4096
#define OFFSETS_LEN   (5 * 8)

static const char *state_names[] = {"new",    "starting", "running", "exited",
				    "killed", "timeout",  "failed"};

const char *job_state_name(enum job_state st)
{
	return state_names[st];
}

static int job_refuse(struct job *j, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int job_refuse(struct job *j, int err, const char *fmt, ...)
{
	char obj[160], text[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	snprintf(obj, sizeof(obj), "%s/exec/%s", j->s->name, j->name);
	return refuse(&j->s->err, err, obj, "%s", text);
}

/* Jobs are named SESSION/exec/JOB in events. */
static void job_event(struct job *j, enum job_state old)
{
	char name[160];

	snprintf(name, sizeof(name), "%s/exec/%s", j->s->name, j->name);
	event_emit("job", name, j->key, job_state_name(old),
		   job_state_name(j->st));
}

bool job_started(const struct job *j)
{
	return j->st != J_NEW;
}

bool job_ended(const struct job *j)
{
	return j->st >= J_EXITED;
}

bool jobs_running(struct session *s)
{
	for (struct job *j = s->jobs; j; j = j->next)
		if (j->st == J_STARTING || j->st == J_RUNNING)
			return true;
	return false;
}

/* ---- persistence ---------------------------------------------------- */

static void job_save(struct job *j)
{
	char path[700];
	json_t *o = json_pack(
	    "{s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:i, s:i, s:b, s:b, s:i, "
	    "s:i, s:i, s:I, s:b}",
	    "name", j->name, "key", j->key, "state", job_state_name(j->st),
	    "created_ms", (json_int_t)j->created_ms, "started_ms",
	    (json_int_t)j->started_ms, "ended_ms", (json_int_t)j->ended_ms,
	    "pid", j->pid, "exit_code", j->exit_code, "signal", j->sig,
	    "timed_out", j->timed_out, "truncated", j->truncated, "chan_in",
	    (int)j->in_chan, "chan_out", (int)j->out.chan, "chan_err",
	    (int)j->err.chan, "timeout_ms", (json_int_t)j->timeout_ms,
	    "forgotten", j->forgotten);

	if (j->fail_reason)
		json_object_set_new(o, "fail_reason",
				    json_string(j->fail_reason));
	if (j->argv)
		json_object_set(o, "argv", j->argv);
	if (j->cwd)
		json_object_set_new(o, "cwd", json_string(j->cwd));
	if (j->env_text)
		json_object_set_new(o, "env", json_string(j->env_text));
	char *txt = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	snprintf(path, sizeof(path), "%s/job.json", j->dir);
	if (!txt || write_file_replace(path, txt, strlen(txt), 0600) < 0)
		log_warnx("%s: %s", path, strerror(errno));
	free(txt);
}

/* The offsets file says how much of each spool file is whole; a crash
 * between a spool write and this one is undone at load by truncation. */
static void job_save_offsets(struct job *j)
{
	uint8_t b[OFFSETS_LEN];

	proto_put_u64(b, j->out.recv);
	proto_put_u64(b + 8, j->out.stored);
	proto_put_u64(b + 16, j->err.recv);
	proto_put_u64(b + 24, j->err.stored);
	proto_put_u64(b + 32, j->output_stored);
	if (j->offsets_fd < 0)
		return; /* retired: complete, nothing moves any more */
	if (pwrite(j->offsets_fd, b, sizeof(b), 0) != sizeof(b))
		log_warnx("%s: offsets: %s", j->dir, strerror(errno));
}

static int open_spool(struct job *j, const char *name, int flags)
{
	char path[700];

	snprintf(path, sizeof(path), "%s/%s", j->dir, name);
	return open(path, flags | O_RDWR | O_CLOEXEC, 0600);
}

static int job_open_files(struct job *j, int flags)
{
	j->out.fd = open_spool(j, "stdout", flags);
	j->err.fd = open_spool(j, "stderr", flags);
	j->output_fd = open_spool(j, "output", flags);
	j->offsets_fd = open_spool(j, "offsets", flags);
	if (j->out.fd < 0 || j->err.fd < 0 || j->output_fd < 0 ||
	    j->offsets_fd < 0)
		return -1;
	return 0;
}

static void job_close_files(struct job *j)
{
	int *fds[] = {&j->out.fd, &j->err.fd, &j->output_fd, &j->offsets_fd};

	for (size_t i = 0; i < 4; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

/*
 * A job whose output is complete (ended, both streams at their final
 * offset, or failed) needs no open spool files: a session with thousands
 * of ended jobs must not hold thousands of descriptors.  job_read opens
 * the file for the moment instead.
 */
static void job_retire_files(struct job *j)
{
	bool complete = j->out.eof_known && j->err.eof_known &&
			j->out.recv >= j->out.final &&
			j->err.recv >= j->err.final;

	if (j->offsets_fd < 0 || !job_ended(j) ||
	    (!complete && j->st != J_FAILED))
		return;
	job_save_offsets(j);
	job_close_files(j);
}

static struct job *job_alloc(struct session *s, const char *name)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		abort();
	j->s = s;
	j->refs = 1;
	snprintf(j->name, sizeof(j->name), "%s", name);
	snprintf(j->dir, sizeof(j->dir), "%s/jobs/%s", s->dir, name);
	j->out.fd = j->err.fd = j->output_fd = j->offsets_fd = -1;
	waitq_init(&j->wq);
	return j;
}

static void job_free(struct job *j)
{
	job_close_files(j);
	free(j->env_text);
	free(j->cwd);
	free(j->fail_reason);
	json_decref(j->argv);
	buf_free(&j->in_pending);
	free(j);
}

void job_get(struct job *j)
{
	j->refs++;
}

void job_put(struct job *j)
{
	if (--j->refs == 0)
		job_free(j);
}

static void job_link(struct session *s, struct job *j)
{
	struct job **pp = &s->jobs;

	while (*pp)
		pp = &(*pp)->next;
	*pp = j;
	session_get(s);
}

static void job_unlink(struct job *j)
{
	for (struct job **pp = &j->s->jobs; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	j->gone = true;
}

struct job *job_find(struct session *s, const char *name)
{
	for (struct job *j = s->jobs; j; j = j->next)
		if (strcmp(j->name, name) == 0)
			return j;
	return NULL;
}

static unsigned count_jobs(struct session *s)
{
	unsigned n = 0;

	for (struct job *j = s->jobs; j; j = j->next)
		n++;
	return n;
}

int job_create(struct session *s, const char *name, struct job **out)
{
	char gen[24], obj[128];
	struct job *j;

	snprintf(obj, sizeof(obj), "%s/exec", s->name);
	if (s->state == S_TERMINATED || s->state == S_TERMINATING)
		return refuse(&s->err, EACCES, obj,
			      "session is %s: no new jobs",
			      sess_state_name(s->state));
	if (count_jobs(s) >= MAX_JOBS)
		return refuse(&s->err, ENOSPC, obj,
			      "at most %d jobs per session: rmdir old ones",
			      MAX_JOBS);
	if (!name) {
		do
			snprintf(gen, sizeof(gen), "%u", ++s->next_job);
		while (job_find(s, gen));
		name = gen;
	} else if (!valid_name(name)) {
		return refuse(&s->err, EINVAL, obj,
			      "'%.80s' is not a valid job name "
			      "([A-Za-z0-9][A-Za-z0-9_.-]{0,62})",
			      name);
	} else if (job_find(s, name)) {
		return refuse(&s->err, EEXIST, obj, "job %s exists", name);
	}
	j = job_alloc(s, name);
	uuid_new(j->key);
	j->created_ms = now_ms();
	if (mkdir_p(j->dir, 0700) < 0 ||
	    job_open_files(j, O_CREAT | O_TRUNC) < 0) {
		int e = errno;
		remove_tree(j->dir);
		job_free(j);
		return refuse(&s->err, EIO, obj, "cannot make job %s: %s", name,
			      strerror(e));
	}
	job_save_offsets(j);
	job_save(j);
	job_link(s, j);
	session_save(s);
	*out = j;
	return 0;
}

/* ---- before the start ----------------------------------------------- */

static int check_not_started(struct job *j, const char *what)
{
	if (job_started(j))
		return job_refuse(
		    j, EBUSY, "%s cannot change after the job started", what);
	return 0;
}

int job_set_env(struct job *j, const char *text, size_t len)
{
	char why[SPEC_WHY_LEN];
	char **list;
	size_t n;
	int rc = check_not_started(j, "env");

	if (rc < 0)
		return rc;
	if (spec_parse_env_lines(text, len, &list, &n, why) < 0)
		return job_refuse(j, EINVAL, "env: %s", why);
	spec_free_list(list, n);
	free(j->env_text);
	j->env_text = strndup(text, len);
	return 0;
}

static char *one_line(const char *text, size_t len)
{
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	if (memchr(text, '\n', len) || memchr(text, '\0', len))
		return NULL;
	return strndup(text, len);
}

bool job_valid_cwd(const char *text, size_t len)
{
	char *cwd = one_line(text, len);
	bool ok = cwd && cwd[0] == '/' && strlen(cwd) <= 4000;

	free(cwd);
	return ok;
}

bool job_valid_timeout(const char *text, size_t len)
{
	char *t = one_line(text, len);
	int64_t secs;
	bool ok = t && parse_duration(t, false, &secs) == 0;

	free(t);
	return ok;
}

int job_set_cwd(struct job *j, const char *text, size_t len)
{
	int rc = check_not_started(j, "cwd");
	char *cwd;

	if (rc < 0)
		return rc;
	cwd = one_line(text, len);
	if (!cwd || cwd[0] != '/' || strlen(cwd) > 4000) {
		free(cwd);
		return job_refuse(j, EINVAL,
				  "cwd must be one absolute path (got '%.*s')",
				  (int)(len > 80 ? 80 : len), text);
	}
	free(j->cwd);
	j->cwd = cwd;
	return 0;
}

int job_set_timeout(struct job *j, const char *text, size_t len)
{
	int rc = check_not_started(j, "timeout");
	int64_t secs;
	char *t;

	if (rc < 0)
		return rc;
	t = one_line(text, len);
	if (!t || parse_duration(t, false, &secs) < 0) {
		rc = job_refuse(j, EINVAL,
				"timeout '%.*s' is not a duration above zero "
				"(90, 90s, 30m, 2h, 1h30m, 1d)",
				(int)(len > 40 ? 40 : len), text);
		free(t);
		return rc;
	}
	free(t);
	j->timeout_ms = secs * 1000;
	return 0;
}

/* ---- start ------------------------------------------------------------ */

static void job_fail(struct job *j, const char *why)
{
	enum job_state old = j->st;

	free(j->fail_reason);
	j->fail_reason = strdup(why);
	j->st = J_FAILED;
	job_event(j, old);
	j->exit_code = 127;
	j->ended_ms = now_ms();
	j->out.eof_known = j->err.eof_known = true;
	j->out.final = j->out.recv;
	j->err.final = j->err.recv;
	job_save(j);
	job_retire_files(j);
	waitq_wake(&j->wq);
	session_set_state(j->s, j->s->state); /* RUNNING -> READY maybe */
}

static void send_pending_stdin(struct job *j);

static void late_kill_answered(struct session *s, json_t *resp, int err,
			       const char *text, void *arg)
{
}

/* The agent may still start a job whose start we gave up on: end it if
 * it does (a no-op for the agent when it never will). */
static void kill_late_start(struct job *j)
{
	json_t *req = json_pack("{s:s, s:s, s:i}", "op", "signal", "job",
				j->key, "signal", SIGKILL);

	agent_request(j->s, req, late_kill_answered, NULL,
		      cfg.agent_timeout_ms);
}

static void exec_answered(struct session *s, json_t *resp, int err,
			  const char *text, void *arg)
{
	struct job *j = arg;

	if (!j->gone && j->st == J_STARTING) {
		if (err) {
			char obj[160];
			snprintf(obj, sizeof(obj), "%s/exec/%s", s->name,
				 j->name);
			errlog_add(&s->err, obj, text);
			job_fail(j, text);
			if (err == ETIMEDOUT)
				kill_late_start(j);
		} else {
			json_t *pid = json_object_get(resp, "pid");
			j->pid = json_is_integer(pid)
				     ? (int)json_integer_value(pid)
				     : 0;
			j->st = J_RUNNING;
			job_event(j, J_STARTING);
			job_save(j);
			send_pending_stdin(j); /* written while starting */
			waitq_wake(&j->wq);
		}
	}
	job_put(j);
}

void job_append_env(json_t *env, const char *text)
{
	const char *p = text;

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		if (l)
			json_array_append_new(env, json_stringn(p, l));
		p = nl ? nl + 1 : NULL;
	}
}

static void send_pending_stdin(struct job *j);

static int job_start(struct job *j, json_t *argv)
{
	struct session *s = j->s;
	int rc;

	/* Just after a restart: the agent is on its way. */
	if (session_usable(s))
		session_wait_agent(s);
	if ((rc = check_not_started(j, "cmd/argv")) < 0) {
		json_decref(argv);
		return rc;
	}
	if (!session_usable(s) || !s->agent_up) {
		json_decref(argv);
		return job_refuse(j, EBUSY,
				  "session is %s%s: cannot start a job now",
				  sess_state_name(s->state),
				  s->agent_up ? "" : " (agent not connected)");
	}
	j->argv = argv;
	j->in_chan = ++s->next_chan;
	j->out.chan = ++s->next_chan;
	j->err.chan = ++s->next_chan;
	json_t *env = json_array();
	job_append_env(env, s->env_text);
	job_append_env(env, j->env_text);
	json_t *req =
	    json_pack("{s:s, s:s, s:O, s:o, s:s, s:I, s:i, s:i, s:i}", "op",
		      "exec", "job", j->key, "argv", argv, "env", env, "cwd",
		      j->cwd ? j->cwd : "/home/tenki", "timeout_ms",
		      (json_int_t)j->timeout_ms, "stdin", (int)j->in_chan,
		      "stdout", (int)j->out.chan, "stderr", (int)j->err.chan);
	job_get(j);
	if (agent_request(s, req, exec_answered, j, cfg.agent_timeout_ms) < 0) {
		job_put(j);
		return job_refuse(j, EIO, "agent not reachable");
	}
	j->st = J_STARTING;
	job_event(j, J_NEW);
	j->started_ms = now_ms();
	job_save(j);
	session_save(s);
	session_set_state(s, S_RUNNING);
	send_pending_stdin(j);
	waitq_wake(&j->wq);
	return 0;
}

int job_start_cmd(struct job *j, const char *text, size_t len)
{
	char *line;

	while (len > 0 && text[len - 1] == '\n')
		len--;
	if (len == 0 || memchr(text, '\0', len))
		return job_refuse(j, EINVAL, "cmd is empty or has a NUL byte");
	line = strndup(text, len);
	json_t *argv = json_pack("[s, s, s]", "/bin/sh", "-c", line);
	free(line);
	if (!argv)
		return job_refuse(j, EINVAL, "cmd is not valid UTF-8");
	return job_start(j, argv);
}

int job_start_argv(struct job *j, const char *text, size_t len)
{
	json_t *argv = json_array();
	const char *p = text, *end = text + len;

	if (len > 0 && text[len - 1] == '\n')
		end--;
	if (len == 0 || end == text || memchr(text, '\0', len)) {
		json_decref(argv);
		return job_refuse(j, EINVAL, "argv is empty or has a NUL byte");
	}
	while (p <= end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		json_t *a = json_stringn(p, l);
		if (!a || json_array_size(argv) >= MAX_ARGS) {
			json_decref(a);
			json_decref(argv);
			return job_refuse(j, EINVAL,
					  "argv: not UTF-8 or more than %d "
					  "arguments",
					  MAX_ARGS);
		}
		json_array_append_new(argv, a);
		if (!nl)
			break;
		p = nl + 1;
	}
	return job_start(j, argv);
}

/* ---- control ---------------------------------------------------------- */

static void signal_answered(struct session *s, json_t *resp, int err,
			    const char *text, void *arg)
{
	struct job *j = arg;

	if (err && !j->gone && !job_ended(j))
		log_warnx("session %s job %s: signal: %s", s->name, j->name,
			  text);
	job_put(j);
}

static void job_signal(struct job *j, int sig)
{
	json_t *req = json_pack("{s:s, s:s, s:i}", "op", "signal", "job",
				j->key, "signal", sig);

	job_get(j);
	if (agent_request(j->s, req, signal_answered, j, cfg.agent_timeout_ms) <
	    0)
		job_put(j);
}

static void kill_grace_over(struct timer *t)
{
	struct job *j =
	    (struct job *)((char *)t - offsetof(struct job, kill_timer));

	if (!job_ended(j))
		job_signal(j, SIGKILL);
	job_put(j);
}

static void job_kill(struct job *j, int sig, bool grace)
{
	if (job_ended(j) || j->st == J_NEW)
		return;
	job_signal(j, sig);
	if (grace && sig != SIGKILL && !j->kill_timer.armed) {
		j->kill_timer.cb = kill_grace_over;
		job_get(j);
		timer_arm(&j->kill_timer, KILL_GRACE_MS);
	}
}

/* "kill [SIG]" | "eof", one per line; validated whole before acting. */
int job_ctl(struct job *j, const char *text, size_t len)
{
	struct ctl_call calls[CTL_MAX_VERBS];
	char why[CTL_WHY_LEN];
	int n;

	if (ctl_parse(CTL_JOB, text, len, calls, &n, why) < 0)
		return job_refuse(j, EINVAL, "ctl: %s", why);
	for (int i = 0; i < n; i++) {
		if (calls[i].v == CTL_EOF) {
			j->in_eof = true;
			send_pending_stdin(j);
		} else {
			job_kill(j, calls[i].sig, calls[i].sig == SIGTERM);
		}
	}
	return 0;
}

static void forget_answered(struct session *s, json_t *resp, int err,
			    const char *text, void *arg)
{
	job_put(arg);
}

/* Tell the agent to drop a job it has told us everything about. */
static void job_maybe_forget(struct job *j)
{
	job_retire_files(j);
	if (j->forgotten || !job_ended(j) || j->st == J_FAILED ||
	    !j->out.eof_known || !j->err.eof_known ||
	    j->out.recv < j->out.final || j->err.recv < j->err.final)
		return;
	json_t *req = json_pack("{s:s, s:s}", "op", "forget", "job", j->key);
	job_get(j);
	if (agent_request(j->s, req, forget_answered, j, cfg.agent_timeout_ms) <
	    0) {
		job_put(j);
		return;
	}
	j->forgotten = true;
	job_save(j);
}

int job_remove(struct job *j)
{
	struct session *s = j->s;

	if (!job_ended(j) && j->st != J_NEW) {
		job_kill(j, SIGKILL, false);
		/* The agent forgets it after its exit; tell it now. */
		json_t *req =
		    json_pack("{s:s, s:s}", "op", "forget", "job", j->key);
		job_get(j);
		if (agent_request(s, req, forget_answered, j,
				  cfg.agent_timeout_ms) < 0)
			job_put(j);
	} else if (!j->forgotten && j->st != J_NEW) {
		job_maybe_forget(j);
	}
	if (j->kill_timer.armed) {
		timer_cancel(&j->kill_timer);
		job_put(j);
	}
	job_unlink(j);
	job_close_files(j);
	remove_tree(j->dir);
	waitq_wake(&j->wq);
	job_put(j); /* the session's reference */
	session_put(s);
	session_set_state(s, s->state);
	return 0;
}

/* ---- stdin -------------------------------------------------------------- */

static void send_pending_stdin(struct job *j)
{
	struct session *s = j->s;

	if (!job_started(j) || j->st == J_STARTING || !s->agent_up)
		return;
	if (job_ended(j)) {
		j->in_pending.len = 0;
		return;
	}
	uint64_t sent = j->in_queued - j->in_pending.len;
	size_t off = 0;
	while (off < j->in_pending.len) {
		size_t n = j->in_pending.len - off;
		if (n > PROTO_MAX_PAYLOAD - 8)
			n = PROTO_MAX_PAYLOAD - 8;
		agent_send_data(s, j->in_chan, sent + off,
				j->in_pending.data + off, n);
		off += n;
	}
	j->in_pending.len = 0;
	if (j->in_eof && !j->in_eof_sent) {
		agent_send_eof(s, j->in_chan, j->in_queued);
		j->in_eof_sent = true;
	}
}

ssize_t job_stdin_write(struct job *j, const char *p, size_t n)
{
	if (job_ended(j) || j->in_eof)
		return job_refuse(j, EPIPE, "stdin: the job %s",
				  job_ended(j) ? "has ended" : "got eof");
	uint64_t inflight = j->in_queued - j->in_acked;
	if (inflight >= PROTO_WINDOW)
		return -EAGAIN;
	if (n > PROTO_WINDOW - inflight)
		n = PROTO_WINDOW - inflight;
	buf_add(&j->in_pending, p, n);
	j->in_queued += n;
	send_pending_stdin(j);
	return (ssize_t)n;
}

void job_stdin_open(struct job *j)
{
	j->in_writers++;
}

void job_stdin_close(struct job *j)
{
	if (--j->in_writers > 0 || j->in_eof)
		return;
	j->in_eof = true;
	send_pending_stdin(j);
}

/* ---- output ------------------------------------------------------------ */

ssize_t job_read(struct job *j, enum job_view v, char *buf, size_t n,
		 uint64_t off)
{
	uint64_t avail;
	bool done;
	int fd;

	switch (v) {
	case V_STDOUT:
		avail = j->out.stored;
		fd = j->out.fd;
		done = j->out.eof_known && j->out.recv >= j->out.final;
		break;
	case V_STDERR:
		avail = j->err.stored;
		fd = j->err.fd;
		done = j->err.eof_known && j->err.recv >= j->err.final;
		break;
	default:
		avail = j->output_stored;
		fd = j->output_fd;
		done = j->out.eof_known && j->out.recv >= j->out.final &&
		       j->err.eof_known && j->err.recv >= j->err.final;
	}
	if (j->gone)
		return 0;
	if (off >= avail) {
		/* The streams end at the job's exit (SPEC), not at the pipe's
		 * close: a reader that saw EOF sees the job ended too. */
		if (job_ended(j) && (done || j->st == J_FAILED))
			return 0;
		return -EAGAIN;
	}
	if (n > avail - off)
		n = (size_t)(avail - off);
	if (fd >= 0) {
		ssize_t r = pread(fd, buf, n, (off_t)off);
		return r < 0 ? -EIO : r;
	}
	/* Retired (job_retire_files): read through a descriptor of our own. */
	static const char *const names[] = {"stdout", "stderr", "output"};
	char path[700];
	snprintf(path, sizeof(path), "%s/%s", j->dir, names[v]);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -EIO;
	ssize_t r = pread(fd, buf, n, (off_t)off);
	close(fd);
	return r < 0 ? -EIO : r;
}

static struct job *job_by_chan(struct session *s, uint32_t chan,
			       struct job_stream **st)
{
	for (struct job *j = s->jobs; j; j = j->next) {
		if (j->out.chan == chan) {
			*st = &j->out;
			return j;
		}
		if (j->err.chan == chan) {
			*st = &j->err;
			return j;
		}
	}
	return NULL;
}

static int spool_append(int fd, uint64_t at, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, (off_t)at);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		at += (uint64_t)w;
		n -= (size_t)w;
	}
	return 0;
}

static void job_store(struct job *j, struct job_stream *st, const uint8_t *p,
		      size_t n)
{
	size_t keep = n;

	if (st->stored + keep > cfg.output_cap)
		keep = cfg.output_cap > st->stored
			   ? (size_t)(cfg.output_cap - st->stored)
			   : 0;
	if (keep < n && !j->truncated) {
		j->truncated = true;
		job_save(j);
	}
	if (keep &&
	    (spool_append(st->fd, st->stored, p, keep) < 0 ||
	     spool_append(j->output_fd, j->output_stored, p, keep) < 0)) {
		log_warnx("%s: spool: %s", j->dir, strerror(errno));
		if (!j->truncated) {
			j->truncated = true;
			job_save(j);
		}
		keep = 0;
	}
	st->stored += keep;
	j->output_stored += keep;
}

int job_on_data(struct session *s, uint32_t chan, uint64_t off,
		const uint8_t *p, size_t n)
{
	struct job_stream *st;
	struct job *j = job_by_chan(s, chan, &st);

	if (!j)
		return 0; /* a removed job's late bytes */
	if (j->st == J_FAILED) {
		/* Its start was given up (the agent answered too late, e.g.
		 * on a starved host): take and drop what it still sends. */
		agent_send_ack(s, chan, off + n);
		return 0;
	}
	if (off > st->recv)
		return -1; /* a gap: the agent lost bytes */
	if (st->eof_known && off + n > st->final)
		return -1;
	uint64_t skip = st->recv - off;
	if (skip < n) {
		job_store(j, st, p + skip, n - (size_t)skip);
		st->recv = off + n;
		job_save_offsets(j);
		waitq_wake(&j->wq);
	}
	agent_send_ack(s, chan, st->recv);
	return 0;
}

int job_on_eof(struct session *s, uint32_t chan, uint64_t off)
{
	struct job_stream *st;
	struct job *j = job_by_chan(s, chan, &st);

	if (!j || j->st == J_FAILED)
		return 0;
	if (off < st->recv || (st->eof_known && off != st->final))
		return -1;
	st->final = off;
	st->eof_known = true;
	waitq_wake(&j->wq);
	job_maybe_forget(j);
	return 0;
}

int job_on_ack(struct session *s, uint32_t chan, uint64_t off)
{
	for (struct job *j = s->jobs; j; j = j->next) {
		if (j->in_chan != chan)
			continue;
		if (off > j->in_queued || off < j->in_acked)
			return -1;
		j->in_acked = off;
		waitq_wake(&j->wq);
		return 0;
	}
	return 0;
}

int job_exit_status(json_t *ev, int *exit_code, int *signo)
{
	json_t *code = json_object_get(ev, "exit_code");
	json_t *sig = json_object_get(ev, "signal");

	if (json_is_integer(code) && json_integer_value(code) >= 0 &&
	    json_integer_value(code) <= 255) {
		*exit_code = (int)json_integer_value(code);
		*signo = 0;
		return 0;
	}
	if (json_is_integer(sig) && json_integer_value(sig) > 0 &&
	    json_integer_value(sig) < 65) {
		*signo = (int)json_integer_value(sig);
		*exit_code = 128 + *signo;
		return 0;
	}
	return -1;
}

int job_on_exit(struct session *s, json_t *ev)
{
	const char *key = json_string_value(json_object_get(ev, "job"));
	struct job *j;

	if (!key)
		return -1;
	if (strncmp(key, SSHGW_JOB_PREFIX, strlen(SSHGW_JOB_PREFIX)) == 0)
		return sshgw_on_exit(s, ev); /* an SSH channel's job */
	for (j = s->jobs; j; j = j->next)
		if (strcmp(j->key, key) == 0)
			break;
	if (!j)
		return 0; /* removed meanwhile */
	if (job_ended(j))
		return 0; /* repeated after a reconnect */
	int exit_code, signo;
	if (job_exit_status(ev, &exit_code, &signo) < 0)
		return -1;
	j->timed_out = json_is_true(json_object_get(ev, "timed_out"));
	enum job_state old = j->st;
	j->exit_code = exit_code;
	j->sig = signo;
	j->st = signo ? J_KILLED : J_EXITED;
	if (j->timed_out) {
		j->st = J_TIMEOUT;
		j->exit_code = 124;
	}
	j->ended_ms = now_ms();
	job_event(j, old);
	if (j->kill_timer.armed) {
		timer_cancel(&j->kill_timer);
		job_put(j);
	}
	job_save(j);
	waitq_wake(&j->wq);
	job_maybe_forget(j);
	session_set_state(s, s->state);
	return 0;
}

static void jobs_send_acks(struct session *s);

void jobs_on_hello(struct session *s, json_t *agent_jobs)
{
	for (struct job *j = s->jobs; j; j = j->next) {
		bool held = false;
		size_t i;
		json_t *it;

		if (j->st == J_NEW || j->st == J_FAILED || j->forgotten)
			continue;
		json_array_foreach(agent_jobs, i, it)
		{
			const char *k =
			    json_string_value(json_object_get(it, "job"));
			if (k && strcmp(k, j->key) == 0)
				held = true;
		}
		if (!held) {
			if (j->st == J_STARTING || j->st == J_RUNNING ||
			    !j->out.eof_known || !j->err.eof_known) {
				char obj[160];
				snprintf(obj, sizeof(obj), "%s/exec/%s",
					 s->name, j->name);
				errlog_add(&s->err, obj,
					   "job lost: the guest agent no "
					   "longer knows it");
				job_fail(j, "lost: the guest agent no longer "
					    "knows this job");
			}
			continue;
		}
	}
	jobs_send_acks(s);
	for (struct job *j = s->jobs; j; j = j->next)
		send_pending_stdin(j);
	sshgw_on_hello(s, agent_jobs);
}

/* Sent once the handshake is done: where each stream stands, so the
 * agent resends only what we lack. */
static void jobs_send_acks(struct session *s)
{
	for (struct job *j = s->jobs; j; j = j->next) {
		if (j->st == J_NEW || j->forgotten || j->st == J_FAILED)
			continue;
		agent_send_ack(s, j->out.chan, j->out.recv);
		agent_send_ack(s, j->err.chan, j->err.recv);
	}
}

void jobs_session_closed(struct session *s)
{
	for (struct job *j = s->jobs; j; j = j->next) {
		if (j->st == J_NEW)
			continue;
		if (!job_ended(j)) {
			enum job_state old = j->st;
			j->st = J_KILLED;
			j->sig = SIGKILL;
			j->exit_code = 128 + SIGKILL;
			j->ended_ms = now_ms();
			job_event(j, old);
		}
		j->out.eof_known = j->err.eof_known = true;
		j->out.final = j->out.recv;
		j->err.final = j->err.recv;
		if (j->kill_timer.armed) {
			timer_cancel(&j->kill_timer);
			job_put(j);
		}
		job_save(j);
		waitq_wake(&j->wq);
	}
}

/* ---- status ------------------------------------------------------------ */

char *job_status_text(struct job *j)
{
	char *out = NULL;

	switch (j->st) {
	case J_NEW:
		out = strdup("new\n");
		break;
	case J_STARTING:
	case J_RUNNING:
		out = strdup("running\n");
		break;
	case J_EXITED:
		if (asprintf(&out, "exited %d\n", j->exit_code) < 0)
			out = NULL;
		break;
	case J_KILLED: {
		const char *name = sigabbrev_np(j->sig);
		if (asprintf(&out, "killed %s%s\n", name ? "SIG" : "",
			     name ? name : "?") < 0)
			out = NULL;
		break;
	}
	case J_TIMEOUT:
		out = strdup("timeout\n");
		break;
	case J_FAILED:
		if (asprintf(&out, "failed %s\n",
			     j->fail_reason ? j->fail_reason : "unknown") < 0)
			out = NULL;
		break;
	}
	if (!out)
		abort();
	return out;
}

int job_exit_code(struct job *j)
{
	return job_ended(j) ? j->exit_code : -1;
}

char *job_info_json(struct job *j)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", json_string(j->name));
	json_object_set_new(o, "state", json_string(job_state_name(j->st)));
	json_object_set_new(o, "pid",
			    j->pid ? json_integer(j->pid) : json_null());
	json_object_set_new(o, "started_at", json_time(j->started_ms));
	json_object_set_new(o, "ended_at", json_time(j->ended_ms));
	json_object_set_new(o, "duration_ms",
			    j->ended_ms && j->started_ms
				? json_integer(j->ended_ms - j->started_ms)
				: json_null());
	json_object_set_new(o, "exit_code",
			    job_ended(j) ? json_integer(j->exit_code)
					 : json_null());
	json_object_set_new(o, "signal",
			    j->sig ? json_integer(j->sig) : json_null());
	json_object_set_new(o, "timed_out", json_boolean(j->timed_out));
	json_object_set_new(o, "truncated", json_boolean(j->truncated));
	json_object_set_new(o, "stdout_bytes",
			    json_integer((json_int_t)j->out.stored));
	json_object_set_new(o, "stderr_bytes",
			    json_integer((json_int_t)j->err.stored));
	if (j->argv)
		json_object_set(o, "argv", j->argv);
	if (j->fail_reason)
		json_object_set_new(o, "reason", json_string(j->fail_reason));
	return json_dump_line(o, JSON_INDENT(1));
}

/* ---- load at start ------------------------------------------------------ */

static enum job_state state_from_name(const char *n)
{
	for (int i = 0; i <= J_FAILED; i++)
		if (n && strcmp(n, state_names[i]) == 0)
			return (enum job_state)i;
	return J_FAILED;
}

static void job_restore_offsets(struct job *j)
{
	uint8_t b[OFFSETS_LEN];

	if (pread(j->offsets_fd, b, sizeof(b), 0) != sizeof(b))
		return;
	j->out.recv = proto_get_u64(b);
	j->out.stored = proto_get_u64(b + 8);
	j->err.recv = proto_get_u64(b + 16);
	j->err.stored = proto_get_u64(b + 24);
	j->output_stored = proto_get_u64(b + 32);
	/* Bytes written after the last offsets update were never acked:
	 * drop them, the agent sends them again. */
	if (ftruncate(j->out.fd, (off_t)j->out.stored) < 0 ||
	    ftruncate(j->err.fd, (off_t)j->err.stored) < 0 ||
	    ftruncate(j->output_fd, (off_t)j->output_stored) < 0)
		log_warnx("%s: truncate: %s", j->dir, strerror(errno));
}

static struct job *job_load(struct session *s, const char *name)
{
	char path[700];
	struct job *j = job_alloc(s, name);
	size_t len;

	snprintf(path, sizeof(path), "%s/job.json", j->dir);
	char *txt = read_file(path, 1 << 20, &len);
	json_t *o = txt ? json_loadb(txt, len, 0, NULL) : NULL;
	free(txt);
	if (!o || job_open_files(j, 0) < 0) {
		log_warnx("%s: cannot load job, dropping it", j->dir);
		json_decref(o);
		job_free(j);
		return NULL;
	}
	snprintf(j->key, sizeof(j->key), "%s",
		 json_string_value(json_object_get(o, "key")) ?: "");
	j->st = state_from_name(json_string_value(json_object_get(o, "state")));
	j->created_ms = json_integer_value(json_object_get(o, "created_ms"));
	j->started_ms = json_integer_value(json_object_get(o, "started_ms"));
	j->ended_ms = json_integer_value(json_object_get(o, "ended_ms"));
	j->pid = (int)json_integer_value(json_object_get(o, "pid"));
	j->exit_code = (int)json_integer_value(json_object_get(o, "exit_code"));
	j->sig = (int)json_integer_value(json_object_get(o, "signal"));
	j->timed_out = json_is_true(json_object_get(o, "timed_out"));
	j->truncated = json_is_true(json_object_get(o, "truncated"));
	j->forgotten = json_is_true(json_object_get(o, "forgotten"));
	j->in_chan =
	    (uint32_t)json_integer_value(json_object_get(o, "chan_in"));
	j->out.chan =
	    (uint32_t)json_integer_value(json_object_get(o, "chan_out"));
	j->err.chan =
	    (uint32_t)json_integer_value(json_object_get(o, "chan_err"));
	j->timeout_ms = json_integer_value(json_object_get(o, "timeout_ms"));
	const char *fr = json_string_value(json_object_get(o, "fail_reason"));
	j->fail_reason = fr ? strdup(fr) : NULL;
	json_t *argv = json_object_get(o, "argv");
	j->argv = json_is_array(argv) ? json_incref(argv) : NULL;
	json_decref(o);
	job_restore_offsets(j);
	/* Streams of ended jobs whose agent forgot them are complete. */
	if (j->forgotten || j->st == J_FAILED) {
		j->out.eof_known = j->err.eof_known = true;
		j->out.final = j->out.recv;
		j->err.final = j->err.recv;
	}
	/* stdin writers did not survive the restart. */
	j->in_eof = true;
	job_retire_files(j);
	return j;
}

void jobs_load(struct session *s)
{
	char path[600];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/jobs", s->dir);
	if (!(d = opendir(path)))
		return;
	while ((e = readdir(d)) != NULL) {
		if (!valid_name(e->d_name))
			continue;
		struct job *j = job_load(s, e->d_name);
		if (j)
			job_link(s, j);
	}
	closedir(d);
}

void jobs_free(struct session *s)
{
	while (s->jobs) {
		struct job *j = s->jobs;
		job_unlink(j);
		job_put(j);
		session_put(s);
	}
}
