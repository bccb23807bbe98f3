/* The warm pool of restored guests; see pool.h. */
#include "pool.h"
#include "evloop.h"
#include "golden.h"
#include "log.h"
#include "vmm.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETRY_MS 1000

/* Running guests, and staged ones: files ready, no VM (see pool.h). */
static struct pooled *ready, *staged;
static unsigned nready, nstaged;
static bool filling, stopping; /* filling: a worker stages or restores */
static char filling_dom[64];   /* the guest being restored */
static struct timer kick_timer;

/* Staged guests kept: one is what a golden create takes at a time. */
#define STAGED_MAX 1

static bool same_shape(const struct sess_spec *a, const struct sess_spec *b)
{
	return a->cpu_cores == b->cpu_cores && a->memory_mb == b->memory_mb &&
	       a->allow_outbound == b->allow_outbound &&
	       strcmp(a->image, b->image) == 0;
}

/* The shape a plain mkdir gets: the table's defaults and the defaults
 * file. */
static void default_shape(struct sess_spec *sp)
{
	char why[SPEC_WHY_LEN];

	spec_init(sp);
	if (defaults_text &&
	    spec_apply(sp, defaults_text, strlen(defaults_text), why) < 0)
		log_warnx("pool: defaults: %s", why);
}

void pool_free(struct pooled *p)
{
	if (!p)
		return;
	spec_free(&p->shape);
	free(p->chan);
	free(p);
}

/* Remove a guest that never became a session: domain, disks, dir. */
static void discard(struct pooled *p)
{
	char err[VMM_ERRLEN], disk[600];

	if (vmm_remove(vmm, p->domname, err) < 0)
		log_warnx("pool: %s", err);
	snprintf(disk, sizeof(disk), "%s/disk.qcow2", p->dir);
	if (vmm_disk_delete(vmm, disk, err) < 0)
		log_warnx("pool: %s", err);
	remove_tree(p->dir);
}

static bool sessions_creating(void)
{
	for (struct session *s = session_first(); s; s = s->next)
		if (s->state == S_CREATING)
			return true;
	return false;
}

/* The spec a guest in p->dir is restored with: its own name, UUID, disk
 * and console, as a session of that id would have them. */
static void guest_spec(struct pooled *p, struct vmm_vm_spec *v, char *disk,
		       char *console, size_t n)
{
	snprintf(disk, n, "%s/disk.qcow2", p->dir);
	snprintf(console, n, "%s/console.log", p->dir);
	memset(v, 0, sizeof(*v));
	v->domname = p->domname;
	v->uuid = p->id;
	v->disk = disk;
	v->console = console;
}

/* The slow half of a restore, ahead of time: the overlay on the golden
 * disk and the save image copy that names this guest. */
static int stage(struct pooled *p, char *err)
{
	char base[600], src[600], copy[600], disk[600], console[600];
	struct vmm_vm_spec v;
	int rc = -1;

	guest_spec(p, &v, disk, console, sizeof(disk));
	snprintf(base, sizeof(base), "%s/base.qcow2", p->dir);
	snprintf(src, sizeof(src), "%s/restore.src", p->dir);
	snprintf(copy, sizeof(copy), "%s/restore.save", p->dir);
	if (vmm_disk_create(vmm, base, disk, err) == 0 &&
	    vmm_restore_prepare(vmm, src, copy, &v, err) == 0)
		rc = 0;
	unlink(src);
	return rc;
}

static int start_staged(struct pooled *p, char *err)
{
	char copy[600], disk[600], console[600];
	struct vmm_vm_spec v;

	guest_spec(p, &v, disk, console, sizeof(disk));
	snprintf(copy, sizeof(copy), "%s/restore.save", p->dir);
	if (vmm_restore_prepared(vmm, copy, &v, err) < 0 ||
	    !(p->chan = vmm_channel_path(vmm, p->domname, err)))
		return -1;
	return 0;
}

/* Stage p, then, if p->run, start it. */
static void *fill_worker(void *arg)
{
	struct pooled *p = arg;
	char err[VMM_ERRLEN] = "";
	int64_t t0 = now_ms();
	int rc = stage(p, err);

	if (rc == 0 && p->run)
		rc = start_staged(p, err);
	pthread_mutex_lock(&model_lock);
	filling = false;
	filling_dom[0] = '\0';
	if (rc == 0 && !stopping) {
		struct pooled **list = p->run ? &ready : &staged;
		p->next = *list;
		*list = p;
		if (p->run)
			nready++;
		else
			nstaged++;
		log_info("pool: guest %s %s in %lld ms (%u ready, %u staged)",
			 p->domname, p->run ? "ready" : "staged",
			 (long long)(now_ms() - t0), nready, nstaged);
		pool_kick();
		p = NULL;
	}
	pthread_mutex_unlock(&model_lock);
	if (p) {
		if (rc < 0)
			log_warnx("pool: refill failed: %s", err);
		discard(p);
		pool_free(p);
	}
	return NULL;
}

static void kick_fired(struct timer *t)
{
	pool_kick();
}

static void *discard_worker(void *arg)
{
	discard(arg);
	pool_free(arg);
	return NULL;
}

/* Guests of a shape plain creates no longer get (defaults changed). */
static void drop_other_shapes(struct pooled **list, unsigned *n,
			      const struct sess_spec *shape)
{
	for (struct pooled **pp = list; *pp;) {
		struct pooled *p = *pp;
		if (same_shape(&p->shape, shape)) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		(*n)--;
		log_info("pool: guest %s no longer has the defaults' shape",
			 p->domname);
		spawn_worker(discard_worker, p);
	}
}

static void kick_later(int64_t ms)
{
	kick_timer.cb = kick_fired;
	timer_arm(&kick_timer, ms);
}

/* A new guest of shape: a directory named by its id, holding links to the
 * golden state (golden_claim); NULL if there is none to claim. */
static struct pooled *new_guest(struct sess_spec *shape)
{
	struct pooled *p = calloc(1, sizeof(*p));
	char marker[600];

	if (!p)
		abort();
	p->shape = *shape;
	spec_init(shape); /* moved into p */
	uuid_new(p->id);
	session_domname(p->id, p->domname, sizeof(p->domname));
	snprintf(p->dir, sizeof(p->dir), "%s/sessions/%s", cfg.state_dir,
		 p->id);
	snprintf(marker, sizeof(marker), "%s/pooled", p->dir);
	if (mkdir_p(p->dir, 0711) < 0 ||
	    write_file_replace(marker, "", 0, 0600) < 0 ||
	    golden_claim(&p->shape, p->dir) < 0) {
		remove_tree(p->dir);
		pool_free(p);
		return NULL;
	}
	return p;
}

/*
 * One background step at a time: the running guests (--pool) come first;
 * then one staged guest is kept, so that a create that finds the pool
 * empty (or --pool 0) only has to restore.  Refills never take it: it is
 * there for the creates that come while they run.
 */
void pool_kick(void)
{
	struct pooled *p;
	struct sess_spec shape;
	bool run;

	if (stopping || filling || !vmm)
		return;
	default_shape(&shape);
	if (!cfg.golden) {
		spec_free(&shape);
		return;
	}
	drop_other_shapes(&ready, &nready, &shape);
	drop_other_shapes(&staged, &nstaged, &shape);
	run = nready < cfg.pool;
	if (!run && nstaged >= STAGED_MAX) {
		spec_free(&shape);
		return;
	}
	if (!golden_ready(&shape)) {
		/* Built in the background; its end kicks again. */
		golden_prepare(&shape);
		spec_free(&shape);
		kick_later(RETRY_MS * 5);
		return;
	}
	/* User work first: nothing while a session is being made. */
	if (sessions_creating()) {
		spec_free(&shape);
		kick_later(RETRY_MS);
		return;
	}
	if (!(p = new_guest(&shape))) {
		spec_free(&shape);
		kick_later(RETRY_MS * 5);
		return;
	}
	p->run = run;
	filling = true;
	if (run)
		snprintf(filling_dom, sizeof(filling_dom), "%s", p->domname);
	spawn_worker(fill_worker, p);
}

bool pool_has(const struct sess_spec *spec)
{
	for (struct pooled *p = ready; p; p = p->next)
		if (same_shape(&p->shape, spec))
			return true;
	return false;
}

static struct pooled *take(struct pooled **list, unsigned *n,
			   const struct sess_spec *spec)
{
	char marker[600];

	for (struct pooled **pp = list; *pp; pp = &(*pp)->next) {
		struct pooled *p = *pp;
		if (!same_shape(&p->shape, spec))
			continue;
		*pp = p->next;
		p->next = NULL;
		(*n)--;
		snprintf(marker, sizeof(marker), "%s/pooled", p->dir);
		unlink(marker);
		/* Refill a little later: the claim's own work first. */
		kick_later(RETRY_MS);
		return p;
	}
	return NULL;
}

struct pooled *pool_take(const struct sess_spec *spec)
{
	return take(&ready, &nready, spec);
}

struct pooled *pool_take_staged(const struct sess_spec *spec)
{
	return take(&staged, &nstaged, spec);
}

void pool_vm_stopped(const char *domname)
{
	for (struct pooled **pp = &ready; *pp; pp = &(*pp)->next) {
		struct pooled *p = *pp;
		if (strcmp(p->domname, domname) != 0)
			continue;
		*pp = p->next;
		nready--;
		log_warnx("pool: guest %s stopped; replacing it", domname);
		spawn_worker(discard_worker, p);
		kick_timer.cb = kick_fired;
		timer_arm(&kick_timer, RETRY_MS);
		return;
	}
}

unsigned pool_memory_mb(void)
{
	unsigned mb = 0;

	for (struct pooled *p = ready; p; p = p->next)
		mb += p->shape.memory_mb;
	return mb;
}

char *pool_status_text(void)
{
	struct sess_spec shape;
	struct buf b = {0};

	default_shape(&shape);
	buf_printf(&b,
		   "size %u\nready %u\nstaged %u\nfilling %s\nmemory_mb %u\n"
		   "shape cpu_cores=%u memory_mb=%u allow_outbound=%s "
		   "image=%s\ngolden %s\n",
		   cfg.pool, nready, nstaged, filling ? "yes" : "no",
		   pool_memory_mb(), shape.cpu_cores, shape.memory_mb,
		   shape.allow_outbound ? "true" : "false", shape.image,
		   !cfg.golden		  ? "off"
		   : golden_ready(&shape) ? "ready"
					  : "not ready");
	/* The guests' domains, so tools can tell them from sessions'. */
	for (struct pooled *p = ready; p; p = p->next)
		buf_printf(&b, "guest %s\n", p->domname);
	if (filling_dom[0])
		buf_printf(&b, "guest %s\n", filling_dom);
	/* The domain a staged guest gets when a create takes it. */
	for (struct pooled *p = staged; p; p = p->next)
		buf_printf(&b, "staged_guest %s\n", p->domname);
	spec_free(&shape);
	return b.data;
}

/* Guests of an earlier run: their domains are swept as orphans; their
 * directories go here. */
void pool_init(void)
{
	char path[600], marker[900];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/sessions", cfg.state_dir);
	if ((d = opendir(path))) {
		while ((e = readdir(d)) != NULL) {
			if (strlen(e->d_name) != UUID_LEN)
				continue;
			snprintf(marker, sizeof(marker), "%s/%s/pooled", path,
				 e->d_name);
			if (access(marker, F_OK) == 0) {
				marker[strlen(marker) - 7] = '\0';
				remove_tree(marker);
			}
		}
		closedir(d);
	}
	/* A moment after start: whoever starts tenkid may set defaults. */
	pthread_mutex_lock(&model_lock);
	kick_timer.cb = kick_fired;
	timer_arm(&kick_timer, 3000);
	pthread_mutex_unlock(&model_lock);
}

void pool_shutdown(void)
{
	struct pooled *list;

	pthread_mutex_lock(&model_lock);
	stopping = true;
	timer_cancel(&kick_timer);
	list = ready;
	ready = NULL;
	nready = 0;
	for (struct pooled **pp = &list;; pp = &(*pp)->next) {
		if (!*pp) {
			*pp = staged;
			break;
		}
	}
	staged = NULL;
	nstaged = 0;
	pthread_mutex_unlock(&model_lock);
	while (list) {
		struct pooled *p = list;
		list = p->next;
		discard(p);
		pool_free(p);
	}
}
