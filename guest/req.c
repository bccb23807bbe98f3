/*
 * The JSON half of the protocol: HELLO, requests, answers and events.
 *
 * Every request is checked field by field before anything acts on it; a
 * bad one gets an error answer (EINVAL, ENOSYS for an unknown op), never a
 * crash.  Unknown fields are ignored so a newer host can add some.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TIMEOUT_MS (1000LL * 86400 * 365 * 10) /* ten years */

/* Each call of a handler that fails fills msg with the reason. */
struct reqctx {
	json_t *o;
	json_int_t id;
	char msg[512];
};

static const char *const base_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/home/tenki",
    "USER=root",
    "LOGNAME=root",
    "SHELL=/bin/sh",
    "LANG=C.UTF-8",
};
#define NBASE_ENV (sizeof(base_env) / sizeof(base_env[0]))

static json_t *parse_object(const uint8_t *p, size_t len, char *why,
			    size_t whylen)
{
	json_error_t e;
	json_t *o;

	o = json_loadb((const char *)p, len,
		       JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
	if (o == NULL) {
		snprintf(why, whylen, "bad JSON: %s", e.text);
		return NULL;
	}
	if (!json_is_object(o)) {
		snprintf(why, whylen, "not a JSON object");
		json_decref(o);
		return NULL;
	}
	return o;
}

/* ---- answers and events ---- */

/* Takes over extra (may be NULL). */
void resp_ok(json_int_t id, json_t *extra)
{
	json_t *o = extra ? extra : json_object();

	if (o == NULL)
		return;
	json_object_set_new(o, "id", json_integer(id));
	port_send_json(PT_RESP, o);
}

void resp_error(json_int_t id, int err, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	o = json_pack("{s:I,s:i,s:s}", "id", id, "errno", err, "error", text);
	if (o != NULL)
		port_send_json(PT_RESP, o);
}

void event_exit(const struct job *j)
{
	json_t *o;

	fs_notify_flush(); /* the job's file changes go first */
	o = json_pack("{s:s,s:s,s:i}", "event", "exit", "job", j->key, "pid",
		      (int)j->pid);
	if (o == NULL)
		return;
	if (WIFSIGNALED(j->status))
		json_object_set_new(o, "signal",
				    json_integer(WTERMSIG(j->status)));
	else
		json_object_set_new(o, "exit_code",
				    json_integer(WEXITSTATUS(j->status)));
	if (j->timed_out)
		json_object_set_new(o, "timed_out", json_true());
	port_send_json(PT_EVENT, o);
}

/* ---- HELLO ---- */

static const char *boot_id(void)
{
	static char id[64];
	ssize_t n;
	int fd;

	if (id[0] != '\0')
		return id;
	fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return "unknown";
	n = read(fd, id, sizeof(id) - 1);
	close(fd);
	if (n <= 0) {
		id[0] = '\0';
		return "unknown";
	}
	id[n] = '\0';
	id[strcspn(id, "\n")] = '\0';
	return id;
}

/* Is this a HELLO we can answer?  Applies its clock, name and entropy. */
int hello_check(const uint8_t *p, size_t len)
{
	char why[256];
	json_t *o, *v;
	int rc = HELLO_BAD;

	o = parse_object(p, len, why, sizeof(why));
	if (o == NULL) {
		alog(L_DEBUG, "HELLO skipped: %s", why);
		return HELLO_BAD;
	}
	v = json_object_get(o, "proto");
	if (!json_is_integer(v)) {
		alog(L_DEBUG, "HELLO skipped: no proto");
		goto out;
	}
	if (json_integer_value(v) != PROTO_VERSION) {
		alog(L_ERR, "host speaks protocol %lld, this agent %d",
		     (long long)json_integer_value(v), PROTO_VERSION);
		rc = HELLO_MISMATCH;
		goto out;
	}
	init_apply_hello(o);
	fs_set_notify(json_is_true(json_object_get(o, "fs_notify")));
	rc = HELLO_OK;
out:
	json_decref(o);
	return rc;
}

/*
 * Answer the host's HELLO, then re-send what it may have missed: the
 * unacknowledged output of every job and the exit of every ended one.
 */
void hello_reply(bool resend)
{
	json_t *list = json_array(), *o;
	struct job *j;

	if (list == NULL)
		return;
	for (size_t i = 0; i < njobs; i++) {
		j = jobs[i];
		if (j->state == JOB_DEAD)
			continue;
		json_array_append_new(list,
				      json_pack("{s:s,s:i,s:b}", "job", j->key,
						"pid", (int)j->pid, "running",
						j->state != JOB_ENDED));
	}
	o = json_pack("{s:i,s:s,s:s,s:o,s:b}", "proto", PROTO_VERSION, "agent",
		      AGENT_VERSION, "boot_id", boot_id(), "jobs", list,
		      "fs_notify", fs_notifying());
	if (o == NULL)
		return;
	port_send_json(PT_HELLO, o);
	if (!resend)
		return;
	chan_resend_all();
	resend_exit_events();
}

/* Until a job is forgotten, every new session hears of its exit. */
void resend_exit_events(void)
{
	for (size_t i = 0; i < njobs; i++)
		if (jobs[i]->state == JOB_ENDED)
			event_exit(jobs[i]);
}

/* ---- field checks ---- */

/* A string without NULs, at most max bytes; absent or null: *out = NULL. */
static int get_str(struct reqctx *r, const char *name, size_t max,
		   const char **out)
{
	json_t *v = json_object_get(r->o, name);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) ||
	    json_string_length(v) != strlen(json_string_value(v)) ||
	    json_string_length(v) > max) {
		snprintf(r->msg, sizeof(r->msg),
			 "%s: a string of at most %zu bytes expected", name,
			 max);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static int get_key(struct reqctx *r, const char **key)
{
	const char *k;
	size_t n;

	if (get_str(r, "job", JOB_KEY_MAX, &k) < 0)
		return -1;
	n = k ? strlen(k) : 0;
	if (n == 0 ||
	    strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "abcdefghijklmnopqrstuvwxyz0123456789_.-") != n) {
		snprintf(r->msg, sizeof(r->msg),
			 "job: 1..%d characters of [A-Za-z0-9_.-] expected",
			 JOB_KEY_MAX);
		return -1;
	}
	*key = k;
	return 0;
}

/* An integer in [min, max]; absent or null: *out = dflt. */
static int get_int(struct reqctx *r, const char *name, json_int_t min,
		   json_int_t max, json_int_t dflt, json_int_t *out)
{
	json_t *v = json_object_get(r->o, name);

	*out = dflt;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min ||
	    json_integer_value(v) > max) {
		snprintf(r->msg, sizeof(r->msg),
			 "%s: an integer in %lld..%lld expected", name,
			 (long long)min, (long long)max);
		return -1;
	}
	*out = json_integer_value(v);
	return 0;
}

/* A NULL-terminated copy of a JSON array of strings (pointers borrowed). */
static char **get_strv(struct reqctx *r, const char *name, size_t min,
		       size_t max, size_t extra)
{
	json_t *a = json_object_get(r->o, name), *v;
	char **sv;
	size_t n = 0, i;

	if (a != NULL && !json_is_null(a) && !json_is_array(a))
		goto bad;
	if (a != NULL && json_is_array(a))
		n = json_array_size(a);
	if (n < min || n > max)
		goto bad;
	sv = calloc(n + extra + 1, sizeof(*sv));
	if (sv == NULL) {
		snprintf(r->msg, sizeof(r->msg), "out of memory");
		return NULL;
	}
	for (i = 0; i < n; i++) {
		v = json_array_get(a, i);
		if (!json_is_string(v) ||
		    json_string_length(v) != strlen(json_string_value(v))) {
			free(sv);
			goto bad;
		}
		sv[i] = (char *)json_string_value(v);
	}
	return sv;
bad:
	snprintf(r->msg, sizeof(r->msg),
		 "%s: an array of %zu..%zu strings without NULs expected", name,
		 min, max);
	return NULL;
}

static size_t env_key_len(const char *kv)
{
	const char *eq = strchr(kv, '=');

	return eq ? (size_t)(eq - kv) : 0;
}

/*
 * The job's environment: our base (and term, TERM=… of a pty, when not
 * NULL), with the request's entries on top.
 */
static char **build_env(struct reqctx *r, char *term)
{
	char **env, **envp;
	size_t n = NBASE_ENV, i, k, kl;

	env = get_strv(r, "env", 0, EXEC_MAX_ENV, 0);
	if (env == NULL)
		return NULL;
	for (i = 0; env[i] != NULL; i++)
		;
	envp = calloc(NBASE_ENV + 1 + i + 1, sizeof(*envp));
	if (envp == NULL) {
		snprintf(r->msg, sizeof(r->msg), "out of memory");
		goto out;
	}
	for (k = 0; k < NBASE_ENV; k++)
		envp[k] = (char *)base_env[k];
	if (term != NULL)
		envp[n++] = term;
	for (i = 0; env[i] != NULL; i++) {
		kl = env_key_len(env[i]);
		if (kl == 0) {
			snprintf(r->msg, sizeof(r->msg),
				 "env: \"%.64s\" is not KEY=VALUE", env[i]);
			free(envp);
			envp = NULL;
			goto out;
		}
		for (k = 0; k < n; k++)
			if (env_key_len(envp[k]) == kl &&
			    strncmp(envp[k], env[i], kl + 1) == 0)
				break;
		envp[k] = env[i];
		if (k == n)
			n++;
	}
out:
	free(env);
	return envp;
}

static int get_channels(struct reqctx *r, struct exec_spec *sp)
{
	json_int_t in, out, err;

	if (get_int(r, "stdin", 1, PROTO_MAX_CHANNEL, 0, &in) < 0 ||
	    get_int(r, "stdout", 1, PROTO_MAX_CHANNEL, 0, &out) < 0 ||
	    get_int(r, "stderr", 1, PROTO_MAX_CHANNEL, 0, &err) < 0)
		return -1;
	if ((in && (in == out || in == err)) || (out && out == err)) {
		snprintf(r->msg, sizeof(r->msg),
			 "stdin, stdout and stderr need distinct channels");
		return -1;
	}
	sp->chan_in = (uint32_t)in;
	sp->chan_out = (uint32_t)out;
	sp->chan_err = (uint32_t)err;
	return 0;
}

/*
 * "pty": {"rows":R,"cols":C,"term":"xterm"}: the job gets a terminal
 * (stdout carries it, so stderr must be absent) and TERM=term.
 */
static int get_pty(struct reqctx *r, struct exec_spec *sp, const char **term)
{
	json_t *o = json_object_get(r->o, "pty");
	json_t *jr, *jc, *jt;
	const char *t = NULL;

	*term = NULL;
	if (o == NULL || json_is_null(o))
		return 0;
	if (!json_is_object(o) || sp->chan_err != 0)
		goto bad;
	jr = json_object_get(o, "rows");
	jc = json_object_get(o, "cols");
	jt = json_object_get(o, "term");
	if (!json_is_integer(jr) || !json_is_integer(jc) ||
	    json_integer_value(jr) < 1 || json_integer_value(jr) > 65535 ||
	    json_integer_value(jc) < 1 || json_integer_value(jc) > 65535)
		goto bad;
	if (jt != NULL && !json_is_null(jt)) {
		t = json_string_value(jt);
		if (t == NULL || json_string_length(jt) > 64 ||
		    strlen(t) != json_string_length(jt) || t[0] == '\0' ||
		    strchr(t, '=') != NULL)
			goto bad;
	}
	sp->pty = true;
	sp->rows = (unsigned short)json_integer_value(jr);
	sp->cols = (unsigned short)json_integer_value(jc);
	*term = t;
	return 0;
bad:
	snprintf(r->msg, sizeof(r->msg),
		 "pty: {\"rows\":1..65535,\"cols\":1..65535,\"term\":NAME} "
		 "expected, and no stderr channel");
	return -1;
}

/* ---- operations ---- */

static void op_exec(struct reqctx *r)
{
	struct exec_spec sp;
	json_int_t timeout;
	const char *term;
	char termkv[80];
	int e = EINVAL;

	memset(&sp, 0, sizeof(sp));
	if (get_key(r, &sp.key) < 0 ||
	    get_str(r, "cwd", PATH_MAX, &sp.cwd) < 0 ||
	    get_int(r, "timeout_ms", 0, MAX_TIMEOUT_MS, 0, &timeout) < 0 ||
	    get_channels(r, &sp) < 0 || get_pty(r, &sp, &term) < 0)
		goto fail;
	if (term != NULL)
		snprintf(termkv, sizeof(termkv), "TERM=%s", term);
	sp.argv = get_strv(r, "argv", 1, EXEC_MAX_ARGS, 0);
	if (sp.argv == NULL)
		goto fail;
	if (sp.argv[0][0] == '\0') {
		snprintf(r->msg, sizeof(r->msg), "argv[0] is empty");
		goto fail;
	}
	if (sp.cwd == NULL || sp.cwd[0] == '\0')
		sp.cwd = EXEC_DEFAULT_CWD;
	sp.timeout_ms = (uint64_t)timeout;
	sp.envp = build_env(r, term != NULL ? termkv : NULL);
	if (sp.envp == NULL)
		goto fail;
	/* Success is answered by the job once the child has exec'd. */
	e = job_start(&sp, r->id, r->msg, sizeof(r->msg));
	if (e == 0)
		goto out;
fail:
	resp_error(r->id, e, "%s", r->msg);
out:
	free(sp.argv);
	free(sp.envp);
}

static void op_signal(struct reqctx *r)
{
	const char *key;
	json_int_t sig;
	int e;

	if (get_key(r, &key) < 0 ||
	    get_int(r, "signal", 0, NSIG - 1, -1, &sig) < 0 || sig < 0) {
		if (r->msg[0] == '\0')
			snprintf(r->msg, sizeof(r->msg), "signal: missing");
		resp_error(r->id, EINVAL, "%s", r->msg);
		return;
	}
	e = job_signal(key, (int)sig, r->msg, sizeof(r->msg));
	if (e != 0)
		resp_error(r->id, e, "%s", r->msg);
	else
		resp_ok(r->id, NULL);
}

static void op_forget(struct reqctx *r)
{
	const char *key;
	int e;

	if (get_key(r, &key) < 0) {
		resp_error(r->id, EINVAL, "%s", r->msg);
		return;
	}
	e = job_forget(key, r->msg, sizeof(r->msg));
	if (e != 0)
		resp_error(r->id, e, "%s", r->msg);
	else
		resp_ok(r->id, NULL);
}

static void op_resize(struct reqctx *r)
{
	json_int_t rows, cols;
	const char *key;
	int e;

	if (get_key(r, &key) < 0 ||
	    get_int(r, "rows", 1, 65535, -1, &rows) < 0 ||
	    get_int(r, "cols", 1, 65535, -1, &cols) < 0 || rows < 0 ||
	    cols < 0) {
		if (r->msg[0] == '\0')
			snprintf(r->msg, sizeof(r->msg),
				 "rows and cols: 1..65535 expected");
		resp_error(r->id, EINVAL, "%s", r->msg);
		return;
	}
	e = job_resize(key, (unsigned)rows, (unsigned)cols, r->msg,
		       sizeof(r->msg));
	if (e != 0)
		resp_error(r->id, e, "%s", r->msg);
	else
		resp_ok(r->id, NULL);
}

static void op_sync(struct reqctx *r)
{
	sync_start(r->id);
}

static void op_info(struct reqctx *r)
{
	struct timespec rt, bt;
	struct sysinfo si;
	json_t *o;

	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_BOOTTIME, &bt);
	memset(&si, 0, sizeof(si));
	sysinfo(&si);
	o = json_pack(
	    "{s:I,s:I,s:i,s:I,s:I,s:i}", "time_ns",
	    (json_int_t)rt.tv_sec * 1000000000 + rt.tv_nsec, "uptime_ms",
	    (json_int_t)bt.tv_sec * 1000 + bt.tv_nsec / 1000000, "cpus",
	    (int)sysconf(_SC_NPROCESSORS_ONLN), "mem_kb",
	    (json_int_t)si.totalram * si.mem_unit / 1024, "mem_free_kb",
	    (json_int_t)(si.freeram + si.bufferram) * si.mem_unit / 1024,
	    "jobs", (int)njobs);
	if (o == NULL)
		resp_error(r->id, ENOMEM, "out of memory");
	else
		resp_ok(r->id, o);
}

/* vol_mount {serial, path, ro} and vol_umount {serial, path, lazy}:
 * volume.c */
static void op_volume(struct reqctx *r, bool mount_it)
{
	const char *serial, *path;
	json_t *ro = json_object_get(r->o, mount_it ? "ro" : "lazy");

	if (get_str(r, "serial", 64, &serial) < 0 ||
	    get_str(r, "path", PATH_MAX, &path) < 0 || !serial || !path ||
	    (ro && !json_is_boolean(ro))) {
		if (r->msg[0] == '\0')
			snprintf(r->msg, sizeof(r->msg),
				 "serial and path strings expected, ro and "
				 "lazy booleans");
		resp_error(r->id, EINVAL, "%s", r->msg);
		return;
	}
	volop_start(r->id, mount_it, serial, path, json_is_true(ro));
}

static void op_vol_mount(struct reqctx *r)
{
	op_volume(r, true);
}

static void op_vol_umount(struct reqctx *r)
{
	op_volume(r, false);
}

static void op_connect(struct reqctx *r)
{
	json_int_t port, tx, rx;
	int e;

	if (get_int(r, "port", 1, 65535, 0, &port) < 0 ||
	    get_int(r, "tx", 1, PROTO_MAX_CHANNEL, 0, &tx) < 0 ||
	    get_int(r, "rx", 1, PROTO_MAX_CHANNEL, 0, &rx) < 0) {
		resp_error(r->id, EINVAL, "%s", r->msg);
		return;
	}
	if (port == 0 || tx == 0 || rx == 0) {
		resp_error(r->id, EINVAL, "port, tx and rx are required");
		return;
	}
	/* Success is answered once the connection is up. */
	e = conn_start((int)port, (uint32_t)tx, (uint32_t)rx, r->id, r->msg,
		       sizeof(r->msg));
	if (e != 0)
		resp_error(r->id, e, "%s", r->msg);
}

static void op_close(struct reqctx *r)
{
	json_int_t tx, rx;
	int e;

	if (get_int(r, "tx", 1, PROTO_MAX_CHANNEL, 0, &tx) < 0 ||
	    get_int(r, "rx", 1, PROTO_MAX_CHANNEL, 0, &rx) < 0 ||
	    (tx == 0 && rx == 0)) {
		if (r->msg[0] == '\0')
			snprintf(r->msg, sizeof(r->msg), "tx or rx: missing");
		resp_error(r->id, EINVAL, "%s", r->msg);
		return;
	}
	e = conn_close((uint32_t)(rx ? rx : tx), r->msg, sizeof(r->msg));
	if (e != 0)
		resp_error(r->id, e, "%s", r->msg);
	else
		resp_ok(r->id, NULL);
}

static const struct {
	const char *name;
	void (*fn)(struct reqctx *);
} ops[] = {
    {"exec", op_exec},		 {"signal", op_signal},
    {"forget", op_forget},	 {"sync", op_sync},
    {"info", op_info},		 {"connect", op_connect},
    {"close", op_close},	 {"resize", op_resize},
    {"vol_mount", op_vol_mount}, {"vol_umount", op_vol_umount},
};

void req_handle(const uint8_t *p, size_t len)
{
	struct reqctx r;
	const char *op;
	json_t *v;

	memset(&r, 0, sizeof(r));
	r.o = parse_object(p, len, r.msg, sizeof(r.msg));
	if (r.o == NULL) {
		alog(L_WARN, "REQ dropped: %s", r.msg);
		return;
	}
	v = json_object_get(r.o, "id");
	if (!json_is_integer(v)) {
		alog(L_WARN, "REQ without an integer id dropped");
		goto out;
	}
	r.id = json_integer_value(v);
	v = json_object_get(r.o, "op");
	if (!json_is_string(v)) {
		resp_error(r.id, EINVAL, "op: a string expected");
		goto out;
	}
	op = json_string_value(v);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (strcmp(op, ops[i].name) == 0) {
			ops[i].fn(&r);
			goto out;
		}
	}
	resp_error(r.id, ENOSYS, "unknown op \"%.64s\"", op);
out:
	json_decref(r.o);
}
