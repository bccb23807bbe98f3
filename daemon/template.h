/*
 * Templates (SPEC.md templates/): a reusable environment recipe (base
 * image, setup script, start command, ready check, environment, CPUs and
 * memory) and its numbered builds.  A build boots a build session,
 * runs the setup script, starts the start command, retries the ready
 * command, and captures the running guest; sessions created with
 * template=NAME restore the latest READY build.
 *
 *   STATE/templates/ID/template.json        the record and its recipe
 *   STATE/templates/ID/err                  its err file
 *   STATE/templates/ID/builds/N/build.json  one build: state, times, recipe
 *   STATE/templates/ID/builds/N/log         the setup script's output
 *   STATE/templates/ID/builds/N/mem.save    the captured memory (READY)
 *   STATE/templates/ID/builds/N/disk.qcow2  the captured disk layer
 *
 * The build session is an ordinary session of tenkid marked internal:
 * it is named tb-TEMPLATEID-N, hidden from sessions/ and its index, has
 * outbound network, and boots cold so that its captured disk layer
 * backs onto the image itself (never onto a file of the build session,
 * which goes when the build ends, READY or FAILED).
 *
 * Like snapshots, restored sessions hard-link the build's files, so a
 * build's own names can go at any time; a build is "in use" while its
 * disk.qcow2 has other links.  Older builds go once a newer build is
 * READY and nothing uses them (checked then, at start and every 15 s).
 *
 * model_lock guards everything here.
 */
#ifndef TENKI_TEMPLATE_H
#define TENKI_TEMPLATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "model.h"

enum tb_state { TB_PENDING, TB_BUILDING, TB_READY, TB_FAILED };

/* What a build is made from; fixed for a build when it starts. */
struct recipe {
	char *text[TPL_NTEXT]; /* setup_script, start_cmd, ready_cmd */
	char *env_text;	       /* KEY=VALUE lines */
	unsigned cpu_cores, memory_mb;
	char image[64];
};

struct template;

struct tbuild {
	struct tbuild *next; /* oldest first */
	int refs;
	bool gone;
	unsigned n;
	enum tb_state state;
	char dir[600];
	struct recipe r;
	char *reason;
	int64_t created_ms, started_ms, ended_ms;
	uint32_t next_chan;	       /* channels the saved agent may use */
	char session_id[UUID_LEN + 1]; /* the build session while it runs */
	struct job *log_job;	       /* the setup job while it runs */
	bool log_final;		       /* the log file is complete */
	struct waiter relay;	       /* on log_job->wq: wakes wq */
	struct waitq wq;	       /* state and log changes */
};

struct template
{
	struct template *next;
	int refs;
	bool gone;
	char name[NAME_MAX_LEN + 1];
	char id[UUID_LEN + 1];
	char dir[512];
	struct recipe r;
	struct tbuild *builds;
	unsigned next_build;
	int64_t created_ms;
	struct errlog err;
	struct waitq wq;
};

/* The writable files of a template. */
enum tpl_file {
	TF_SETUP = TPL_SETUP,
	TF_START = TPL_START,
	TF_READY = TPL_READY,
	TF_ENV,
	TF_CPU,
	TF_MEM,
	TF_IMAGE,
};

/* Load the state directory (after model_restore): builds interrupted by
 * a stop become FAILED and their build sessions go. */
void templates_restore(void);

struct template *template_find(const char *name_or_id);
struct template *template_first(void);
void template_get(struct template *t);
void template_put(struct template *t);
void tbuild_get(struct tbuild *b);
void tbuild_put(struct tbuild *b);
/* The newest build (any state), or NULL. */
struct tbuild *template_latest(struct template *t);
/* builds/N by its number's text. */
struct tbuild *template_build_find(struct template *t, const char *n);

/* mkdir templates/NAME, or a spec written to templates/new (created gets
 * the name).  0 or -errno with a line in templates/err. */
int template_create(const char *name);
int template_create_spec(const char *text, size_t len, char *created,
			 size_t created_len);
/* rmdir: the template and its builds' files (EBUSY while building). */
int template_remove(struct template *t);
/* ctl: build. */
int template_ctl(struct template *t, const char *text, size_t len);

/* Writable files: check one write (complete lines), apply at close. */
int template_check_value(struct template *t, enum tpl_file f, const char *text,
			 size_t len, const char *label);
int template_set_value(struct template *t, enum tpl_file f, const char *text,
		       size_t len, const char *label);

/* Texts (callers free). */
char *template_value_text(struct template *t, enum tpl_file f);
const char *template_state_name(struct template *t);
const char *tbuild_state_name(const struct tbuild *b);
char *template_info_json(struct template *t);
char *tbuild_info_json(struct tbuild *b);

/*
 * The build log, a live stream while the setup script runs: >0 bytes,
 * 0 at its end, -EAGAIN while more may come (wait on b->wq).
 */
ssize_t tbuild_log_read(struct tbuild *b, char *buf, size_t n, uint64_t off);

/* What session_create needs to restore a template's build. */
struct tpl_restore {
	unsigned cpu_cores, memory_mb;
	char image[64];
	uint32_t next_chan;
	char build_dir[600];
	char *env_text;
	unsigned n;
};

/*
 * For a create with template=NAME: the latest READY build, checked
 * against what the spec repeats (cpu_cores, memory_mb may only repeat
 * the build's; allow_outbound must stay on).  0, or -errno with a line
 * in sessions/err.  template_restore_free after.
 */
int template_resolve(const struct sess_spec *spec, struct tpl_restore *tr);
/* The build's shape and environment into the effective spec: the
 * template's env first, the spec's own keys winning. */
void template_apply(struct sess_spec *eff, const struct tpl_restore *tr);
/* Link the build's memory and disk into a session's directory
 * (restore.src, base.qcow2).  -1 with errno. */
int template_link_into(const struct tpl_restore *tr, const char *dir);
void template_restore_free(struct tpl_restore *tr);

/* images/: the base images of --images (a dir with rootfs.qcow2). */
bool image_exists(const char *name);
void images_list(void (*add)(void *ctx, const char *name, bool is_dir),
		 void *ctx);
char *image_info_json(const char *name);

#endif
