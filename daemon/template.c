/* Templates: recipes, builds, restores.  See template.h. */
#include "template.h"
#include "events.h"
#include "job.h"
#include "log.h"
#include "snapshot.h"
#include "vmm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long a build may take at each step (under TCG, apt-get of one
 * package takes about a minute). */
#define SETUP_TIMEOUT	  "2h"
#define STEP_TIMEOUT	  "60s"
#define READY_TRY_TIMEOUT "30s"
#define READY_TIMEOUT_MS  (10 * 60 * 1000)
#define READY_PAUSE_MS	  1000
#define PRUNE_EVERY_MS	  (15 * 1000)
/* Drop the page cache before the capture: the save skips free pages, so
 * the image, and every restore, shrinks to what the guest really uses. */
#define SETTLE_CMD "sync; echo 3 > /proc/sys/vm/drop_caches"
/* The start command runs on in the captured guest, detached from its
 * job (whose output nobody reads after the capture): its output goes to
 * this file in the guest. */
#define START_LOG "/var/log/tenki-start.log"

static struct template *templates;
static pthread_cond_t tpl_cond = PTHREAD_COND_INITIALIZER;
static struct timer prune_timer;

static const char *const tb_names[] = {"PENDING", "BUILDING", "READY",
				       "FAILED"};

const char *tbuild_state_name(const struct tbuild *b)
{
	return tb_names[b->state];
}

const char *template_state_name(struct template *t)
{
	struct tbuild *b = template_latest(t);

	return b ? tbuild_state_name(b) : "NONE";
}

/* ---- recipes ------------------------------------------------------- */

static void recipe_free(struct recipe *r)
{
	for (int i = 0; i < TPL_NTEXT; i++)
		free(r->text[i]);
	free(r->env_text);
	memset(r, 0, sizeof(*r));
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (!d)
		abort();
	return d;
}

static void recipe_copy(struct recipe *dst, const struct recipe *src)
{
	*dst = *src;
	for (int i = 0; i < TPL_NTEXT; i++)
		dst->text[i] = xstrdup(src->text[i]);
	dst->env_text = xstrdup(src->env_text);
}

static const char *const text_keys[TPL_NTEXT] = {"setup_script", "start_cmd",
						 "ready_cmd"};

static json_t *recipe_json(const struct recipe *r, bool env_as_object)
{
	json_t *o = json_object();

	for (int i = 0; i < TPL_NTEXT; i++)
		json_object_set_new(o, text_keys[i],
				    json_string(r->text[i] ? r->text[i] : ""));
	json_object_set_new(o, "env",
			    env_as_object ? env_object(r->env_text)
					  : json_string(r->env_text));
	json_object_set_new(o, "cpu_cores", json_integer(r->cpu_cores));
	json_object_set_new(o, "memory_mb", json_integer(r->memory_mb));
	json_object_set_new(o, "base_image", json_string(r->image));
	return o;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

static int64_t jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void recipe_from_json(struct recipe *r, json_t *o)
{
	for (int i = 0; i < TPL_NTEXT; i++)
		r->text[i] = xstrdup(jstr(o, text_keys[i]));
	r->env_text = xstrdup(jstr(o, "env"));
	r->cpu_cores = (unsigned)jint(o, "cpu_cores");
	r->memory_mb = (unsigned)jint(o, "memory_mb");
	snprintf(r->image, sizeof(r->image), "%s", jstr(o, "base_image"));
}

/* Is the text blank (a cleared start_cmd or ready_cmd)? */
static bool blank(const char *s)
{
	for (; s && *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			return false;
	return true;
}

/* ---- images/ ------------------------------------------------------- */

bool image_exists(const char *name)
{
	char path[600];

	if (!valid_name(name))
		return false;
	snprintf(path, sizeof(path), "%s/%s/rootfs.qcow2", cfg.image_dir, name);
	return access(path, R_OK) == 0;
}

void images_list(void (*add)(void *ctx, const char *name, bool is_dir),
		 void *ctx)
{
	struct dirent *e;
	DIR *d = opendir(cfg.image_dir);

	while (d && (e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && image_exists(e->d_name))
			add(ctx, e->d_name, true);
	if (d)
		closedir(d);
}

char *image_info_json(const char *name)
{
	char path[600];
	size_t len;
	char *t;

	snprintf(path, sizeof(path), "%s/%s/info.json", cfg.image_dir, name);
	t = read_file(path, 1 << 20, &len);
	if (!t) /* an image made by hand: what tenkid knows of it */
		return json_dump_line(json_pack("{s:s}", "name", name),
				      JSON_INDENT(1));
	if (len && t[len - 1] != '\n') {
		char *u;
		if (asprintf(&u, "%s\n", t) < 0)
			abort();
		free(t);
		t = u;
	}
	return t;
}

/* ---- references and lookup ----------------------------------------- */

void template_get(struct template *t)
{
	t->refs++;
}

void tbuild_get(struct tbuild *b)
{
	b->refs++;
}

void tbuild_put(struct tbuild *b)
{
	if (--b->refs > 0)
		return;
	recipe_free(&b->r);
	free(b->reason);
	free(b);
}

void template_put(struct template *t)
{
	if (--t->refs > 0)
		return;
	while (t->builds) {
		struct tbuild *b = t->builds;
		t->builds = b->next;
		tbuild_put(b);
	}
	recipe_free(&t->r);
	errlog_free(&t->err);
	free(t);
}

struct template *template_first(void)
{
	return templates;
}

struct template *template_find(const char *name_or_id)
{
	for (struct template *t = templates; t; t = t->next)
		if (strcmp(t->name, name_or_id) == 0 ||
		    strcmp(t->id, name_or_id) == 0)
			return t;
	return NULL;
}

struct tbuild *template_latest(struct template *t)
{
	struct tbuild *b = t->builds;

	while (b && b->next)
		b = b->next;
	return b;
}

struct tbuild *template_build_find(struct template *t, const char *n)
{
	uint64_t v;

	if (parse_uint(n, 1, UINT32_MAX, &v) < 0)
		return NULL;
	for (struct tbuild *b = t->builds; b; b = b->next)
		if (b->n == v)
			return b;
	return NULL;
}

static void tpl_link(struct template *t)
{
	struct template **pp = &templates;

	while (*pp)
		pp = &(*pp)->next;
	*pp = t;
	template_get(t);
	waitq_wake(&root_wq);
}

static void tpl_unlink(struct template *t)
{
	for (struct template **pp = &templates; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			t->next = NULL;
			t->gone = true;
			waitq_wake(&root_wq);
			template_put(t);
			return;
		}
	}
}

/* ---- records ------------------------------------------------------- */

static void tpl_save(struct template *t)
{
	char path[600];
	json_t *o = recipe_json(&t->r, false);

	json_object_set_new(o, "id", json_string(t->id));
	json_object_set_new(o, "name", json_string(t->name));
	json_object_set_new(o, "created_ms", json_integer(t->created_ms));
	json_object_set_new(o, "next_build", json_integer(t->next_build));
	char *txt = json_dumps(o, JSON_INDENT(1));
	json_decref(o);
	snprintf(path, sizeof(path), "%s/template.json", t->dir);
	if (!txt || write_file_atomic(path, txt, strlen(txt), 0600) < 0)
		log_warnx("%s: %s", path, strerror(errno));
	free(txt);
}

static void tb_save(struct tbuild *b)
{
	char path[700];
	json_t *o = json_object();

	json_object_set_new(o, "n", json_integer(b->n));
	json_object_set_new(o, "state", json_string(tbuild_state_name(b)));
	json_object_set_new(o, "created_ms", json_integer(b->created_ms));
	json_object_set_new(o, "started_ms", json_integer(b->started_ms));
	json_object_set_new(o, "ended_ms", json_integer(b->ended_ms));
	json_object_set_new(o, "next_chan", json_integer(b->next_chan));
	json_object_set_new(o, "session_id", json_string(b->session_id));
	json_object_set_new(o, "recipe", recipe_json(&b->r, false));
	if (b->reason)
		json_object_set_new(o, "reason", json_string(b->reason));
	char *txt = json_dumps(o, JSON_INDENT(1));
	json_decref(o);
	snprintf(path, sizeof(path), "%s/build.json", b->dir);
	if (!txt || write_file_replace(path, txt, strlen(txt), 0600) < 0)
		log_warnx("%s: %s", path, strerror(errno));
	free(txt);
}

static void tb_set_state(struct template *t, struct tbuild *b, enum tb_state st)
{
	char label[NAME_MAX_LEN + 16];

	if (st == b->state)
		return;
	snprintf(label, sizeof(label), "%s/builds/%u", t->name, b->n);
	log_info("template %s: %s -> %s", label, tb_names[b->state],
		 tb_names[st]);
	event_emit("template", t->name, t->id, tb_names[b->state],
		   tb_names[st]);
	b->state = st;
	tb_save(b);
	waitq_wake(&b->wq);
	waitq_wake(&t->wq);
}

static void json_put_ms(json_t *o, const char *k, int64_t ms)
{
	json_object_set_new(o, k, json_time(ms));
}

char *template_info_json(struct template *t)
{
	json_t *o = json_object(), *builds = json_array();
	struct tbuild *latest = template_latest(t), *ready = NULL;

	for (struct tbuild *b = t->builds; b; b = b->next) {
		json_array_append_new(builds, json_integer(b->n));
		if (b->state == TB_READY)
			ready = b;
	}
	json_object_set_new(o, "id", json_string(t->id));
	json_object_set_new(o, "name", json_string(t->name));
	json_object_set_new(o, "state", json_string(template_state_name(t)));
	json_put_ms(o, "created_at", t->created_ms);
	json_object_update(o, recipe_json(&t->r, true));
	json_object_set_new(o, "latest_build",
			    latest ? json_integer(latest->n) : json_null());
	json_object_set_new(o, "ready_build",
			    ready ? json_integer(ready->n) : json_null());
	json_object_set_new(o, "builds", builds);
	return json_dump_line(o, JSON_INDENT(1));
}

char *tbuild_info_json(struct tbuild *b)
{
	json_t *o = json_object();
	int64_t end = b->ended_ms ? b->ended_ms : 0;

	json_object_set_new(o, "build", json_integer(b->n));
	json_object_set_new(o, "state", json_string(tbuild_state_name(b)));
	json_put_ms(o, "created_at", b->created_ms);
	json_put_ms(o, "started_at", b->started_ms);
	json_put_ms(o, "ended_at", end);
	json_object_set_new(o, "duration_ms",
			    b->started_ms && end
				? json_integer(end - b->started_ms)
				: json_null());
	json_object_set_new(o, "recipe", recipe_json(&b->r, true));
	json_object_set_new(o, "reason",
			    b->reason ? json_string(b->reason) : json_null());
	return json_dump_line(o, JSON_INDENT(1));
}

/* ---- the log ------------------------------------------------------- */

ssize_t tbuild_log_read(struct tbuild *b, char *buf, size_t n, uint64_t off)
{
	char path[700];
	ssize_t r;
	int fd;

	if (b->log_job)
		return job_read(b->log_job, V_OUTPUT, buf, n, off);
	if (!b->log_final && !b->gone)
		return -EAGAIN; /* the setup script has not started yet */
	snprintf(path, sizeof(path), "%s/log", b->dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	r = pread(fd, buf, n, (off_t)off);
	close(fd);
	return r < 0 ? -EIO : r;
}

static void relay_wake(struct waiter *w)
{
	struct tbuild *b =
	    (struct tbuild *)((char *)w - offsetof(struct tbuild, relay));

	waitq_wake(&b->wq);
}

/* The setup job's output is the live log until it ends. */
static void log_attach(struct tbuild *b, struct job *j)
{
	char from[700], to[700];

	snprintf(from, sizeof(from), "%s/output", j->dir);
	snprintf(to, sizeof(to), "%s/log", b->dir);
	unlink(to);
	if (link(from, to) < 0)
		log_warnx("%s: %s", to, strerror(errno));
	job_get(j);
	b->log_job = j;
	b->relay.wake = relay_wake;
	waitq_add(&j->wq, &b->relay);
	waitq_wake(&b->wq);
}

static void log_finish(struct tbuild *b)
{
	if (b->log_job) {
		waitq_del(&b->relay);
		job_put(b->log_job);
		b->log_job = NULL;
	}
	b->log_final = true;
	waitq_wake(&b->wq);
}

/* ---- building ------------------------------------------------------ */

static void cond_wake(struct waiter *w)
{
	(void)w;
	pthread_cond_broadcast(&tpl_cond);
}

/*
 * In a worker, model_lock held once: sleep until q wakes or a second
 * passes (callers re-check their condition), never past deadline.
 */
static void wait_on(struct waitq *q, int64_t deadline)
{
	struct waiter w = {.wake = cond_wake};
	struct timespec ts;
	int64_t ms = deadline - mono_ms();

	if (ms <= 0)
		return;
	if (ms > 1000)
		ms = 1000;
	realtime_after(ms, &ts);
	waitq_add(q, &w);
	pthread_cond_timedwait(&tpl_cond, &model_lock, &ts);
	waitq_del(&w);
}

static bool session_down(struct session *s)
{
	return s->gone || session_final(s) || s->state == S_TERMINATING;
}

/* Ended, and its output all in (it ends at most 2 s after the exit). */
static bool job_done(struct job *j)
{
	char c;

	return job_ended(j) &&
	       job_read(j, V_OUTPUT, &c, 1, j->output_stored) != -EAGAIN;
}

/* The end of a job's output, on one line, into out. */
static void output_tail(struct job *j, char *out, size_t n)
{
	uint64_t len = j->output_stored, off = len > 200 ? len - 200 : 0;
	char buf[201];
	ssize_t r = job_read(j, V_OUTPUT, buf, sizeof(buf) - 1, off);

	if (r < 0)
		r = 0;
	buf[r] = '\0';
	for (ssize_t i = 0; i < r; i++)
		if (buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\0')
			buf[i] = ' ';
	snprintf(out, n, "%s", buf);
}

/*
 * Run cmd as job name of the build session and wait for its end; with
 * log, its output is the build's live log.  Returns the exit code, or -1
 * with why.  The job is removed after (the agent forgets it, so the
 * captured guest holds none of the build's jobs).
 */
static int run_job(struct session *s, const char *name, const char *cmd,
		   const char *env, const char *timeout, struct tbuild *log,
		   char *why, size_t whylen)
{
	struct job *j;
	int code = -1;

	if (job_create(s, name, &j) < 0) {
		snprintf(why, whylen, "cannot make job %s in the build session",
			 name);
		return -1;
	}
	job_get(j);
	if (log)
		log_attach(log, j);
	if ((env && job_set_env(j, env, strlen(env)) < 0) ||
	    job_set_timeout(j, timeout, strlen(timeout)) < 0 ||
	    job_start_cmd(j, cmd, strlen(cmd)) < 0) {
		snprintf(why, whylen, "cannot start %s in the build session",
			 name);
		goto out;
	}
	job_ctl(j, "eof", 3); /* nothing reads a terminal here */
	int64_t grace = 0;
	while (!job_done(j)) {
		if (job_ended(j) && !grace)
			grace = mono_ms() + 5000;
		if (grace && mono_ms() > grace)
			break;
		wait_on(&j->wq, mono_ms() + 1000);
	}
	code = job_exit_code(j);
	if (code > 0) /* its last words: why it failed */
		output_tail(j, why, whylen);
	if (code < 0 || session_down(s)) {
		char *st = job_status_text(j);
		st[strcspn(st, "\n")] = '\0';
		snprintf(why, whylen, "%s: %s%s", name, st,
			 session_down(s) ? " (the build session ended)" : "");
		free(st);
		code = -1;
	}
out:
	if (log)
		log_finish(log);
	if (!j->gone)
		job_remove(j);
	job_put(j);
	return code;
}

static int step_setup(struct session *s, struct tbuild *b, char *why, size_t n)
{
	const char *script = b->r.text[TPL_SETUP];
	const char *env = strstr(b->r.env_text, "DEBIAN_FRONTEND=")
			      ? NULL
			      : "DEBIAN_FRONTEND=noninteractive\n";
	int code;

	if (blank(script))
		return 0;
	code = run_job(s, "setup", script, env, SETUP_TIMEOUT, b, why, n);
	if (code > 0)
		snprintf(why, n, "setup_script exited %d (see log)", code);
	return code == 0 ? 0 : -1;
}

/* Shell-quote text as one '...' word. */
static char *sh_quote(const char *text)
{
	struct buf q = {0};

	buf_add(&q, "'", 1);
	for (const char *p = text; *p; p++) {
		if (*p == '\'')
			buf_add(&q, "'\\''", 4);
		else
			buf_add(&q, p, 1);
	}
	buf_add(&q, "'", 2); /* with the NUL */
	return q.data;
}

static int step_start(struct session *s, struct tbuild *b, char *why, size_t n)
{
	const char *cmd = b->r.text[TPL_START];
	char *q, *line;
	int code;

	if (blank(cmd))
		return 0;
	q = sh_quote(cmd);
	if (asprintf(&line,
		     "setsid /bin/sh -c %s </dev/null >>" START_LOG " 2>&1 &",
		     q) < 0)
		abort();
	free(q);
	code = run_job(s, "start", line, NULL, STEP_TIMEOUT, NULL, why, n);
	free(line);
	if (code > 0) {
		char out[300];
		snprintf(out, sizeof(out), "%s", why);
		snprintf(why, n, "start_cmd could not be started (exit %d: %s)",
			 code, out);
	}
	return code == 0 ? 0 : -1;
}

/* ready_cmd, retried until it succeeds, for at most READY_TIMEOUT_MS. */
static int step_ready(struct session *s, struct tbuild *b, char *why, size_t n)
{
	const char *cmd = b->r.text[TPL_READY];
	int64_t deadline = mono_ms() + READY_TIMEOUT_MS;
	char last[300] = "";
	int code = -1;

	if (blank(cmd))
		return 0;
	for (unsigned i = 1; mono_ms() < deadline && !session_down(s); i++) {
		char name[32];
		snprintf(name, sizeof(name), "ready-%u", i);
		code = run_job(s, name, cmd, NULL, READY_TRY_TIMEOUT, NULL,
			       last, sizeof(last));
		if (code == 0)
			return 0;
		int64_t until = mono_ms() + READY_PAUSE_MS;
		while (mono_ms() < until && !session_down(s))
			wait_on(&s->wq, until);
	}
	if (code > 0 || (code < 0 && !session_down(s)))
		snprintf(why, n,
			 "ready_cmd did not succeed within %ds (last: exit "
			 "%d%s%s)",
			 READY_TIMEOUT_MS / 1000, code, last[0] ? ", " : "",
			 last);
	else
		snprintf(why, n, "%s", last);
	return -1;
}

static int step_capture(struct session *s, struct tbuild *b, char *why,
			size_t n)
{
	char disk[700], mem[700], err[VMM_ERRLEN] = "";

	(void)run_job(s, "settle", SETTLE_CMD, NULL, STEP_TIMEOUT, NULL, err,
		      sizeof(err));
	session_wait_idle(s);
	if (!session_usable(s)) {
		snprintf(why, n, "the build session is %s",
			 s->gone ? "gone" : sess_state_name(s->state));
		return -1;
	}
	snprintf(disk, sizeof(disk), "%s/disk.qcow2", b->dir);
	snprintf(mem, sizeof(mem), "%s/mem.save", b->dir);
	if (snapshot_capture(s, disk, mem, err) < 0) {
		snprintf(why, n, "capture failed: %s", err);
		return -1;
	}
	b->next_chan = s->next_chan;
	return 0;
}

/* The build session: the recipe's shape, outbound network, its env. */
static int start_session(struct template *t, struct tbuild *b,
			 struct session **out, char *why, size_t n)
{
	char ewhy[SPEC_WHY_LEN];
	struct sess_spec sp;
	int rc;

	spec_init(&sp);
	snprintf(sp.name, sizeof(sp.name), "tb-%s-%u", t->id, b->n);
	sp.cpu_cores = b->r.cpu_cores;
	sp.memory_mb = b->r.memory_mb;
	snprintf(sp.image, sizeof(sp.image), "%s", b->r.image);
	sp.allow_outbound = true;
	sp.internal = true;
	if (spec_parse_env_lines(b->r.env_text, strlen(b->r.env_text), &sp.env,
				 &sp.nenv, ewhy) < 0) {
		snprintf(why, n, "env: %s", ewhy);
		spec_free(&sp);
		return -1;
	}
	rc = session_create(&sp, out);
	spec_free(&sp);
	if (rc < 0) {
		snprintf(why, n,
			 "the build session could not be created: %s (see "
			 "sessions/err)",
			 strerror(-rc));
		return -1;
	}
	snprintf(b->session_id, sizeof(b->session_id), "%s", (*out)->id);
	tb_save(b);
	int64_t deadline = mono_ms() + cfg.boot_timeout_ms + 30000;
	while (!session_usable(*out) && !session_down(*out) &&
	       mono_ms() < deadline)
		wait_on(&(*out)->wq, deadline);
	if (!session_usable(*out)) {
		snprintf(why, n, "the build session did not start: %s",
			 (*out)->reason ? (*out)->reason
					: sess_state_name((*out)->state));
		return -1;
	}
	return 0;
}

static void prune(struct template *t);

struct build_arg {
	struct template *t;
	struct tbuild *b;
};

/* Boot, set up, start, wait ready, capture; then the build session goes. */
static void *build_worker(void *arg)
{
	struct build_arg *ba = arg;
	struct template *t = ba->t;
	struct tbuild *b = ba->b;
	struct session *s = NULL;
	char why[600] = "";
	int rc;

	free(ba);
	pthread_mutex_lock(&model_lock);
	b->started_ms = now_ms();
	tb_set_state(t, b, TB_BUILDING);
	rc = start_session(t, b, &s, why, sizeof(why));
	if (rc == 0)
		rc = step_setup(s, b, why, sizeof(why));
	log_finish(b);
	if (rc == 0)
		rc = step_start(s, b, why, sizeof(why));
	if (rc == 0)
		rc = step_ready(s, b, why, sizeof(why));
	if (rc == 0)
		rc = step_capture(s, b, why, sizeof(why));
	if (s) {
		/* Nothing half-made: the VM, its disk and its record go. */
		session_remove(s);
		session_put(s);
	}
	b->session_id[0] = '\0';
	b->ended_ms = now_ms();
	if (rc < 0) {
		char d[700];
		snprintf(d, sizeof(d), "%s/mem.save", b->dir);
		unlink(d);
		snprintf(d, sizeof(d), "%s/disk.qcow2", b->dir);
		unlink(d);
		free(b->reason);
		b->reason = xstrdup(why);
		char obj[NAME_MAX_LEN + 24];
		snprintf(obj, sizeof(obj), "%s/builds/%u", t->name, b->n);
		char line[700];
		snprintf(line, sizeof(line), "build failed: %s", why);
		errlog_add(&t->err, obj, line);
		tb_set_state(t, b, TB_FAILED);
	} else {
		log_info("template %s: build %u READY in %lld ms", t->name,
			 b->n, (long long)(b->ended_ms - b->started_ms));
		tb_set_state(t, b, TB_READY);
		prune(t);
	}
	template_put(t);
	tbuild_put(b);
	pthread_mutex_unlock(&model_lock);
	return NULL;
}

static struct tbuild *tb_new(struct template *t, unsigned n)
{
	struct tbuild *b = calloc(1, sizeof(*b));

	if (!b)
		abort();
	b->refs = 1;
	b->n = n;
	snprintf(b->dir, sizeof(b->dir), "%s/builds/%u", t->dir, n);
	waitq_init(&b->wq);
	return b;
}

static void tb_append(struct template *t, struct tbuild *b)
{
	struct tbuild **pp = &t->builds;

	while (*pp)
		pp = &(*pp)->next;
	*pp = b;
}

static int start_build(struct template *t)
{
	struct tbuild *last = template_latest(t), *b;

	if (last && (last->state == TB_PENDING || last->state == TB_BUILDING))
		return refuse(&t->err, EBUSY, t->name,
			      "ctl: build %u is still %s", last->n,
			      tbuild_state_name(last));
	if (!image_exists(t->r.image))
		return refuse(&t->err, ENOENT, t->name,
			      "ctl: base_image %s not found in %s", t->r.image,
			      cfg.image_dir);
	b = tb_new(t, ++t->next_build);
	if (mkdir_p(b->dir, 0711) < 0) {
		int e = errno;
		tbuild_put(b);
		return refuse(&t->err, EIO, t->name, "ctl: cannot make %s: %s",
			      b->dir, strerror(e));
	}
	tpl_save(t);
	recipe_copy(&b->r, &t->r);
	b->created_ms = now_ms();
	b->state = TB_PENDING;
	tb_save(b);
	tb_append(t, b);
	event_emit("template", t->name, t->id, NULL, "PENDING");
	waitq_wake(&t->wq);
	struct build_arg *ba = calloc(1, sizeof(*ba));
	if (!ba)
		abort();
	ba->t = t;
	ba->b = b;
	template_get(t);
	tbuild_get(b);
	spawn_worker(build_worker, ba);
	return 0;
}

int template_ctl(struct template *t, const char *text, size_t len)
{
	char line[64];
	size_t l = len;

	if (t->gone)
		return -ENOENT;
	while (l && (text[l - 1] == '\n' || text[l - 1] == ' '))
		l--;
	if (l >= sizeof(line) || memchr(text, '\0', l))
		return refuse(&t->err, EINVAL, t->name, "ctl: verbs: build");
	memcpy(line, text, l);
	line[l] = '\0';
	if (strcmp(line, "build") != 0)
		return refuse(&t->err, EINVAL, t->name,
			      "ctl: '%.40s' is not a verb (verbs: build)",
			      line);
	return start_build(t);
}

/* ---- removal and pruning ------------------------------------------- */

/* A session restored from the build links its disk layer. */
static bool tb_in_use(const struct tbuild *b)
{
	char path[700];
	struct stat st;

	snprintf(path, sizeof(path), "%s/disk.qcow2", b->dir);
	return stat(path, &st) == 0 && st.st_nlink > 1;
}

static void tb_remove(struct template *t, struct tbuild *b)
{
	for (struct tbuild **pp = &t->builds; *pp; pp = &(*pp)->next) {
		if (*pp != b)
			continue;
		*pp = b->next;
		b->next = NULL;
		break;
	}
	log_info("template %s: build %u removed", t->name, b->n);
	if (remove_tree(b->dir) < 0)
		log_warnx("template %s: cannot remove %s", t->name, b->dir);
	b->gone = true;
	waitq_wake(&b->wq);
	tbuild_put(b);
}

/* Builds older than the newest READY one that nothing uses. */
static void prune(struct template *t)
{
	struct tbuild *ready = NULL;

	for (struct tbuild *b = t->builds; b; b = b->next)
		if (b->state == TB_READY)
			ready = b;
	if (!ready)
		return;
	for (struct tbuild *b = t->builds, *nx; b && b != ready; b = nx) {
		nx = b->next;
		if (b->state != TB_PENDING && b->state != TB_BUILDING &&
		    !tb_in_use(b))
			tb_remove(t, b);
	}
}

static void prune_fired(struct timer *tm)
{
	for (struct template *t = templates; t; t = t->next)
		prune(t);
	timer_arm(tm, PRUNE_EVERY_MS);
}

int template_remove(struct template *t)
{
	struct tbuild *last;

	if (t->gone)
		return -ENOENT;
	last = template_latest(t);
	if (last && (last->state == TB_PENDING || last->state == TB_BUILDING))
		return refuse(&t->err, EBUSY, t->name,
			      "build %u is still %s: rmdir once it ends",
			      last->n, tbuild_state_name(last));
	while (t->builds)
		tb_remove(t, t->builds);
	if (remove_tree(t->dir) < 0)
		log_warnx("template %s: cannot remove %s", t->name, t->dir);
	log_info("template %s: removed", t->name);
	event_emit("template", t->name, t->id, template_state_name(t),
		   "REMOVED");
	waitq_wake(&t->wq);
	tpl_unlink(t); /* last: it may drop the last reference */
	return 0;
}

/* ---- values -------------------------------------------------------- */

/* One line without its newline, for cpu_cores, memory_mb, base_image. */
static int one_word(const char *text, size_t len, char *out, size_t cap)
{
	while (len && (text[len - 1] == '\n' || text[len - 1] == ' ' ||
		       text[len - 1] == '\t'))
		len--;
	while (len && (*text == ' ' || *text == '\t')) {
		text++;
		len--;
	}
	if (len == 0 || len >= cap || memchr(text, '\n', len) ||
	    memchr(text, '\0', len))
		return -1;
	memcpy(out, text, len);
	out[len] = '\0';
	return 0;
}

/* Check a value as the session spec key would (its messages too). */
static int check_shape(struct template *t, enum tpl_file f, const char *text,
		       size_t len, const char *label, struct sess_spec *sp)
{
	static const char *const keys[] = {"cpu_cores", "memory_mb",
					   "base_image"};
	const char *key = keys[f - TF_CPU];
	char word[80], spec[128], why[SPEC_WHY_LEN];

	spec_init(sp);
	if (one_word(text, len, word, sizeof(word)) < 0)
		return refuse(&t->err, EINVAL, label,
			      "%s: one value on one line", key);
	snprintf(spec, sizeof(spec), "%s=%s", f == TF_IMAGE ? "image" : key,
		 word);
	if (strchr(word, ' ') || spec_apply(sp, spec, strlen(spec), why) < 0)
		return refuse(&t->err, EINVAL, label, "%s: '%s' is not valid",
			      key, word);
	if (f == TF_IMAGE && !image_exists(sp->image))
		return refuse(&t->err, ENOENT, label,
			      "base_image: image %s not found in %s", word,
			      cfg.image_dir);
	return 0;
}

int template_check_value(struct template *t, enum tpl_file f, const char *text,
			 size_t len, const char *label)
{
	char why[SPEC_WHY_LEN];
	struct sess_spec sp;
	int rc;

	if (t->gone)
		return -ENOENT;
	if (memchr(text, '\0', len))
		return refuse(&t->err, EINVAL, label, "a NUL byte");
	switch (f) {
	case TF_SETUP:
	case TF_START:
	case TF_READY:
		return 0;
	case TF_ENV: {
		char **list;
		size_t n;
		if (spec_parse_env_lines(text, len, &list, &n, why) < 0)
			return refuse(&t->err, EINVAL, label, "%s", why);
		spec_free_list(list, n);
		return 0;
	}
	default:
		rc = check_shape(t, f, text, len, label, &sp);
		spec_free(&sp);
		return rc;
	}
}

int template_set_value(struct template *t, enum tpl_file f, const char *text,
		       size_t len, const char *label)
{
	struct sess_spec sp;
	int rc;

	if ((rc = template_check_value(t, f, text, len, label)) < 0)
		return rc;
	switch (f) {
	case TF_SETUP:
	case TF_START:
	case TF_READY:
		free(t->r.text[f]);
		t->r.text[f] = strndup(text, len);
		break;
	case TF_ENV:
		free(t->r.env_text);
		t->r.env_text = strndup(text, len);
		break;
	default:
		check_shape(t, f, text, len, label, &sp);
		if (f == TF_CPU)
			t->r.cpu_cores = sp.cpu_cores;
		else if (f == TF_MEM)
			t->r.memory_mb = sp.memory_mb;
		else
			snprintf(t->r.image, sizeof(t->r.image), "%s",
				 sp.image);
		spec_free(&sp);
	}
	tpl_save(t);
	waitq_wake(&t->wq);
	return 0;
}

char *template_value_text(struct template *t, enum tpl_file f)
{
	char *out;

	switch (f) {
	case TF_SETUP:
	case TF_START:
	case TF_READY:
		return xstrdup(t->r.text[f]);
	case TF_ENV:
		return xstrdup(t->r.env_text);
	case TF_CPU:
		if (asprintf(&out, "%u\n", t->r.cpu_cores) < 0)
			abort();
		return out;
	case TF_MEM:
		if (asprintf(&out, "%u\n", t->r.memory_mb) < 0)
			abort();
		return out;
	default:
		if (asprintf(&out, "%s\n", t->r.image) < 0)
			abort();
		return out;
	}
}

/* ---- creation ------------------------------------------------------ */

static struct template *tpl_new(const char *name)
{
	struct template *t = calloc(1, sizeof(*t));

	if (!t)
		abort();
	t->refs = 1;
	snprintf(t->name, sizeof(t->name), "%s", name);
	waitq_init(&t->wq);
	return t;
}

static void tpl_init_err(struct template *t)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/err", t->dir);
	errlog_init(&t->err, path);
}

/* A text value as its file holds it: a line ends in a newline. */
static char *text_value(const char *v)
{
	char *out;
	size_t l = strlen(v);

	if (l == 0 || v[l - 1] == '\n')
		return xstrdup(v);
	if (asprintf(&out, "%s\n", v) < 0)
		abort();
	return out;
}

/* From a parsed spec (the defaults' shape under its keys). */
static int tpl_make(struct tpl_spec *ts, const char *object)
{
	const char *name = ts->shape.name;
	struct template *t;
	struct buf env = {0};

	if (template_find(name))
		return refuse(&templates_err, EEXIST, object,
			      "a template named %s exists", name);
	if (!image_exists(ts->shape.image))
		return refuse(&templates_err, ENOENT, object,
			      "base_image: image %s not found in %s",
			      ts->shape.image, cfg.image_dir);
	t = tpl_new(name);
	uuid_new(t->id);
	t->created_ms = now_ms();
	snprintf(t->dir, sizeof(t->dir), "%s/templates/%s", cfg.state_dir,
		 t->id);
	for (int i = 0; i < TPL_NTEXT; i++)
		t->r.text[i] = text_value(ts->text[i] ? ts->text[i] : "");
	buf_add(&env, "", 0);
	for (size_t i = 0; i < ts->shape.nenv; i++)
		buf_printf(&env, "%s\n", ts->shape.env[i]);
	t->r.env_text = env.data;
	t->r.cpu_cores = ts->shape.cpu_cores;
	t->r.memory_mb = ts->shape.memory_mb;
	snprintf(t->r.image, sizeof(t->r.image), "%s", ts->shape.image);
	if (mkdir_p(t->dir, 0711) < 0) {
		int e = errno;
		template_put(t);
		return refuse(&templates_err, EIO, object, "cannot make %s: %s",
			      t->dir, strerror(e));
	}
	tpl_init_err(t);
	tpl_save(t);
	tpl_link(t);
	template_put(t);
	event_emit("template", t->name, t->id, NULL, "NONE");
	log_info("template %s: created", name);
	return 0;
}

/* The defaults' cpu_cores, memory_mb and image are a new template's. */
static int tpl_spec_from_defaults(struct tpl_spec *ts)
{
	char why[SPEC_WHY_LEN];

	tplspec_init(ts);
	if (defaults_text && spec_apply(&ts->shape, defaults_text,
					strlen(defaults_text), why) < 0)
		return refuse(&root_err, EINVAL, "defaults", "%s", why);
	ts->shape.name[0] = '\0';
	spec_free_list(ts->shape.env, ts->shape.nenv);
	ts->shape.env = NULL;
	ts->shape.nenv = 0;
	return 0;
}

int template_create(const char *name)
{
	struct tpl_spec ts;
	int rc;

	if (!valid_name(name))
		return refuse(&templates_err, EINVAL, "templates",
			      "'%.80s' is not a valid template name "
			      "([A-Za-z0-9][A-Za-z0-9_.-]{0,62})",
			      name);
	if ((rc = tpl_spec_from_defaults(&ts)) == 0) {
		snprintf(ts.shape.name, sizeof(ts.shape.name), "%s", name);
		rc = tpl_make(&ts, name);
	}
	tplspec_free(&ts);
	return rc;
}

int template_create_spec(const char *text, size_t len, char *created,
			 size_t created_len)
{
	char why[SPEC_WHY_LEN];
	struct tpl_spec ts;
	int rc;

	if ((rc = tpl_spec_from_defaults(&ts)) < 0)
		goto out;
	if (tplspec_parse(&ts, text, len, why) < 0) {
		rc = refuse(&templates_err, EINVAL, "templates/new", "%s", why);
		goto out;
	}
	if (!ts.shape.name[0]) {
		char id[UUID_LEN + 1];
		do {
			uuid_new(id);
			snprintf(ts.shape.name, sizeof(ts.shape.name), "t-%.8s",
				 id);
		} while (template_find(ts.shape.name));
	}
	if ((rc = tpl_make(&ts, ts.shape.name)) == 0)
		snprintf(created, created_len, "%s", ts.shape.name);
out:
	tplspec_free(&ts);
	return rc;
}

/* ---- restoring sessions from a build ------------------------------- */

int template_resolve(const struct sess_spec *spec, struct tpl_restore *tr)
{
	const char *name = spec->name;
	struct template *t = template_find(spec->template_name);
	struct tbuild *ready = NULL;

	memset(tr, 0, sizeof(*tr));
	if (!t)
		return refuse(&sessions_err, ENOENT, name, "no template %s",
			      spec->template_name);
	for (struct tbuild *b = t->builds; b; b = b->next)
		if (b->state == TB_READY)
			ready = b;
	if (!ready)
		return refuse(&sessions_err, ENOENT, name,
			      "template %s has no READY build (state %s): "
			      "echo build > templates/%s/ctl",
			      t->name, template_state_name(t), t->name);
	if ((spec_given(spec, "cpu_cores") &&
	     spec->cpu_cores != ready->r.cpu_cores) ||
	    (spec_given(spec, "memory_mb") &&
	     spec->memory_mb != ready->r.memory_mb))
		return refuse(&sessions_err, EINVAL, name,
			      "template %s build %u has cpu_cores=%u "
			      "memory_mb=%u: a restore keeps them",
			      t->name, ready->n, ready->r.cpu_cores,
			      ready->r.memory_mb);
	if (spec_given(spec, "allow_outbound") && !spec->allow_outbound)
		return refuse(&sessions_err, EINVAL, name,
			      "template %s was built with allow_outbound=true: "
			      "a restore keeps it",
			      t->name);
	tr->cpu_cores = ready->r.cpu_cores;
	tr->memory_mb = ready->r.memory_mb;
	snprintf(tr->image, sizeof(tr->image), "%s", ready->r.image);
	tr->next_chan = ready->next_chan;
	snprintf(tr->build_dir, sizeof(tr->build_dir), "%s", ready->dir);
	tr->env_text = xstrdup(ready->r.env_text);
	tr->n = ready->n;
	return 0;
}

void template_apply(struct sess_spec *eff, const struct tpl_restore *tr)
{
	char why[SPEC_WHY_LEN], **tenv;
	size_t nt;

	eff->cpu_cores = tr->cpu_cores;
	eff->memory_mb = tr->memory_mb;
	eff->allow_outbound = true;
	snprintf(eff->image, sizeof(eff->image), "%s", tr->image);
	if (spec_parse_env_lines(tr->env_text, strlen(tr->env_text), &tenv, &nt,
				 why) < 0)
		return; /* checked when written */
	/* The template's variables the spec does not set, then the spec's. */
	char **all = calloc(nt + eff->nenv + 1, sizeof(char *));
	size_t n = 0;
	if (!all)
		abort();
	for (size_t i = 0; i < nt; i++) {
		size_t kl = strcspn(tenv[i], "=") + 1;
		bool own = false;
		for (size_t k = 0; k < eff->nenv; k++)
			if (strncmp(eff->env[k], tenv[i], kl) == 0)
				own = true;
		if (own)
			free(tenv[i]);
		else
			all[n++] = tenv[i];
	}
	free(tenv);
	for (size_t k = 0; k < eff->nenv; k++)
		all[n++] = eff->env[k];
	free(eff->env);
	eff->env = all;
	eff->nenv = n;
}

int template_link_into(const struct tpl_restore *tr, const char *dir)
{
	char from[700], to[700];

	snprintf(from, sizeof(from), "%s/disk.qcow2", tr->build_dir);
	snprintf(to, sizeof(to), "%s/base.qcow2", dir);
	if (link(from, to) < 0)
		return -1;
	snprintf(from, sizeof(from), "%s/mem.save", tr->build_dir);
	snprintf(to, sizeof(to), "%s/restore.src", dir);
	return link(from, to);
}

void template_restore_free(struct tpl_restore *tr)
{
	free(tr->env_text);
	tr->env_text = NULL;
}

/* ---- after a restart ----------------------------------------------- */

static json_t *load_json(const char *path)
{
	size_t len;
	char *txt = read_file(path, 1 << 24, &len);
	json_t *o = txt ? json_loadb(txt, len, 0, NULL) : NULL;

	free(txt);
	return o;
}

/* A build session found at start belongs to a build a stop ended. */
static void *remove_session_worker(void *arg)
{
	struct session *s = arg;

	pthread_mutex_lock(&model_lock);
	log_info("removing the build session %s of a stopped build", s->name);
	session_remove(s);
	session_put(s);
	pthread_mutex_unlock(&model_lock);
	return NULL;
}

static void load_build(struct template *t, const char *dir, unsigned n)
{
	char path[700];
	json_t *o;
	int st = -1;

	snprintf(path, sizeof(path), "%s/build.json", dir);
	o = load_json(path);
	for (int i = TB_PENDING; o && i <= TB_FAILED; i++)
		if (strcmp(jstr(o, "state"), tb_names[i]) == 0)
			st = i;
	if (!o || st < 0 || jint(o, "n") != (int64_t)n) {
		log_warnx("%s: unreadable build record, removed", path);
		json_decref(o);
		remove_tree(dir);
		return;
	}
	struct tbuild *b = tb_new(t, n);
	b->state = (enum tb_state)st;
	b->created_ms = jint(o, "created_ms");
	b->started_ms = jint(o, "started_ms");
	b->ended_ms = jint(o, "ended_ms");
	b->next_chan = (uint32_t)jint(o, "next_chan");
	recipe_from_json(&b->r, json_object_get(o, "recipe"));
	if (json_object_get(o, "reason"))
		b->reason = xstrdup(jstr(o, "reason"));
	b->log_final = true;
	json_decref(o);
	if (b->n > t->next_build)
		t->next_build = b->n;
	/* Keep the order: oldest first. */
	struct tbuild **pp = &t->builds;
	while (*pp && (*pp)->n < b->n)
		pp = &(*pp)->next;
	b->next = *pp;
	*pp = b;
	if (b->state == TB_PENDING || b->state == TB_BUILDING) {
		b->reason = xstrdup("tenkid stopped during the build");
		b->ended_ms = now_ms();
		char obj[NAME_MAX_LEN + 24];
		snprintf(obj, sizeof(obj), "%s/builds/%u", t->name, b->n);
		errlog_add(&t->err, obj,
			   "build failed: tenkid stopped "
			   "during the build");
		snprintf(path, sizeof(path), "%s/mem.save", dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/disk.qcow2", dir);
		unlink(path);
		b->state = TB_FAILED;
		b->session_id[0] = '\0';
		tb_save(b);
	}
}

static void load_template(const char *dir)
{
	char path[700], bdir[1000];
	struct dirent *e;
	json_t *o;
	DIR *d;

	snprintf(path, sizeof(path), "%s/template.json", dir);
	o = load_json(path);
	if (!o || !valid_name(jstr(o, "name")) ||
	    strlen(jstr(o, "id")) != UUID_LEN ||
	    template_find(jstr(o, "name"))) {
		log_warnx("%s: unreadable template record, skipped", path);
		json_decref(o);
		return;
	}
	struct template *t = tpl_new(jstr(o, "name"));
	snprintf(t->id, sizeof(t->id), "%s", jstr(o, "id"));
	snprintf(t->dir, sizeof(t->dir), "%s", dir);
	t->created_ms = jint(o, "created_ms");
	t->next_build = (unsigned)jint(o, "next_build");
	recipe_from_json(&t->r, o);
	json_decref(o);
	tpl_init_err(t);
	snprintf(path, sizeof(path), "%s/builds", dir);
	if ((d = opendir(path))) {
		while ((e = readdir(d)) != NULL) {
			uint64_t n;
			if (parse_uint(e->d_name, 1, UINT32_MAX, &n) < 0)
				continue;
			snprintf(bdir, sizeof(bdir), "%s/%s", path, e->d_name);
			load_build(t, bdir, (unsigned)n);
		}
		closedir(d);
	}
	tpl_link(t);
	template_put(t);
	prune(t);
}

void templates_restore(void)
{
	char path[600], dir[900];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/templates", cfg.state_dir);
	mkdir_p(path, 0700);
	pthread_mutex_lock(&model_lock);
	for (struct session *s = session_first(); s; s = s->next) {
		if (!s->spec.internal || s->gone)
			continue;
		session_get(s);
		spawn_worker(remove_session_worker, s);
	}
	prune_timer.cb = prune_fired;
	timer_arm(&prune_timer, PRUNE_EVERY_MS);
	if ((d = opendir(path))) {
		while ((e = readdir(d)) != NULL) {
			if (strlen(e->d_name) != UUID_LEN)
				continue;
			snprintf(dir, sizeof(dir), "%s/%s", path, e->d_name);
			load_template(dir);
		}
		closedir(d);
	}
	pthread_mutex_unlock(&model_lock);
}
