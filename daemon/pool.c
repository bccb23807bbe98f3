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

static struct pooled *ready;
static unsigned nready;
static bool filling, stopping;
static char filling_dom[64]; /* the guest being restored */
static struct timer kick_timer;

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

static void *fill_worker(void *arg)
{
	struct pooled *p = arg;
	char err[VMM_ERRLEN] = "", base[600], src[600], copy[600], disk[600],
	     console[600], marker[600];
	struct vmm_vm_spec v = {0};
	int64_t t0 = now_ms();
	int rc = -1;

	snprintf(base, sizeof(base), "%s/base.qcow2", p->dir);
	snprintf(src, sizeof(src), "%s/restore.src", p->dir);
	snprintf(copy, sizeof(copy), "%s/restore.save", p->dir);
	snprintf(disk, sizeof(disk), "%s/disk.qcow2", p->dir);
	snprintf(console, sizeof(console), "%s/console.log", p->dir);
	snprintf(marker, sizeof(marker), "%s/pooled", p->dir);
	v.domname = p->domname;
	v.uuid = p->id;
	v.disk = disk;
	v.console = console;
	if (vmm_disk_create(vmm, base, disk, err) == 0 &&
	    vmm_restore(vmm, src, copy, &v, err) == 0 &&
	    (p->chan = vmm_channel_path(vmm, p->domname, err)))
		rc = 0;
	unlink(src);
	pthread_mutex_lock(&model_lock);
	filling = false;
	filling_dom[0] = '\0';
	if (rc == 0 && !stopping) {
		p->next = ready;
		ready = p;
		nready++;
		log_info("pool: guest %s ready in %lld ms (%u in the pool)",
			 p->domname, (long long)(now_ms() - t0), nready);
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
static void drop_other_shapes(const struct sess_spec *shape)
{
	for (struct pooled **pp = &ready; *pp;) {
		struct pooled *p = *pp;
		if (same_shape(&p->shape, shape)) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		nready--;
		log_info("pool: guest %s no longer has the defaults' shape",
			 p->domname);
		spawn_worker(discard_worker, p);
	}
}

void pool_kick(void)
{
	struct pooled *p;
	struct sess_spec shape;
	char errpath[600];

	if (stopping || filling || !vmm)
		return;
	default_shape(&shape);
	if (!cfg.pool) {
		/* No pool: the defaults' shape still gets its golden state
		 * early, as most creates are plain mkdirs. */
		golden_prepare(&shape);
		spec_free(&shape);
		return;
	}
	drop_other_shapes(&shape);
	if (nready >= cfg.pool) {
		spec_free(&shape);
		return;
	}
	if (!golden_ready(&shape)) {
		/* Built in the background; its end kicks again. */
		golden_prepare(&shape);
		spec_free(&shape);
		kick_timer.cb = kick_fired;
		timer_arm(&kick_timer, RETRY_MS * 5);
		return;
	}
	/* User work first: no refill while a session is being made. */
	if (sessions_creating()) {
		spec_free(&shape);
		kick_timer.cb = kick_fired;
		timer_arm(&kick_timer, RETRY_MS);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		abort();
	p->shape = shape;
	uuid_new(p->id);
	session_domname(p->id, p->domname, sizeof(p->domname));
	snprintf(p->dir, sizeof(p->dir), "%s/sessions/%s", cfg.state_dir,
		 p->id);
	snprintf(errpath, sizeof(errpath), "%s/pooled", p->dir);
	if (mkdir_p(p->dir, 0711) < 0 ||
	    write_file_replace(errpath, "", 0, 0600) < 0 ||
	    golden_claim(&p->shape, p->dir) < 0) {
		remove_tree(p->dir);
		pool_free(p);
		kick_timer.cb = kick_fired;
		timer_arm(&kick_timer, RETRY_MS * 5);
		return;
	}
	filling = true;
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

struct pooled *pool_take(const struct sess_spec *spec)
{
	char marker[600];

	for (struct pooled **pp = &ready; *pp; pp = &(*pp)->next) {
		struct pooled *p = *pp;
		if (!same_shape(&p->shape, spec))
			continue;
		*pp = p->next;
		p->next = NULL;
		nready--;
		snprintf(marker, sizeof(marker), "%s/pooled", p->dir);
		unlink(marker);
		/* Refill a little later: the claim's own HELLO first. */
		kick_timer.cb = kick_fired;
		timer_arm(&kick_timer, RETRY_MS);
		return p;
	}
	return NULL;
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
		   "size %u\nready %u\nfilling %s\nmemory_mb %u\n"
		   "shape cpu_cores=%u memory_mb=%u allow_outbound=%s "
		   "image=%s\ngolden %s\n",
		   cfg.pool, nready, filling ? "yes" : "no", pool_memory_mb(),
		   shape.cpu_cores, shape.memory_mb,
		   shape.allow_outbound ? "true" : "false", shape.image,
		   !cfg.golden		  ? "off"
		   : golden_ready(&shape) ? "ready"
					  : "not ready");
	/* The guests' domains, so tools can tell them from sessions'. */
	for (struct pooled *p = ready; p; p = p->next)
		buf_printf(&b, "guest %s\n", p->domname);
	if (filling_dom[0])
		buf_printf(&b, "guest %s\n", filling_dom);
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
	pthread_mutex_unlock(&model_lock);
	while (list) {
		struct pooled *p = list;
		list = p->next;
		discard(p);
		pool_free(p);
	}
}
