/* Sessions: creation, the state machine, ctl verbs, removal. */
#include "agent.h"
#include "ctlverbs.h"
#include "events.h"
#include "golden.h"
#include "host.h"
#include "pool.h"
#include "evloop.h"
#include "job.h"
#include "log.h"
#include "model.h"
#include "persist.h"
#include "snapshot.h"
#include "sshgw.h"
#include "ports.h"
#include "template.h"
#include "vmm.h"
#include "volume.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Recursive: libfuse may run an interrupt hook at once, inside a call
 * made with the lock held. */
pthread_mutex_t model_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
/* Broadcast whenever a session's busy flag clears. */
static pthread_cond_t busy_cond = PTHREAD_COND_INITIALIZER;

struct tenkid_config cfg;
struct vmm_host *vmm;
struct errlog root_err, sessions_err, volumes_err, snapshots_err, templates_err,
    hosts_err;
char *defaults_text;
struct waitq root_wq;

static struct session *sessions;
static char dom_prefix[32];

static const char *state_names[] = {"CREATING", "READY",       "RUNNING",
				    "PAUSED",	"TERMINATING", "TERMINATED"};

const char *sess_state_name(enum sess_state st)
{
	return state_names[st];
}

bool session_usable(const struct session *s)
{
	return s->state == S_READY || s->state == S_RUNNING;
}

bool session_final(const struct session *s)
{
	return s->state == S_TERMINATED;
}

bool session_failed_create(const struct session *s)
{
	return s->gone && s->state == S_CREATING;
}

/* Workers still running, so shutdown knows whether it may free what they
 * use (see model_workers_wait). */
static int nworkers;
static pthread_cond_t workers_cond = PTHREAD_COND_INITIALIZER;

struct worker {
	void *(*fn)(void *);
	void *arg;
};

static void *worker_main(void *p)
{
	struct worker w = *(struct worker *)p;

	free(p);
	w.fn(w.arg);
	pthread_mutex_lock(&model_lock);
	if (__atomic_sub_fetch(&nworkers, 1, __ATOMIC_SEQ_CST) == 0)
		pthread_cond_broadcast(&workers_cond);
	pthread_mutex_unlock(&model_lock);
	return NULL;
}

/* Callers may hold model_lock, so the count goes up atomically; it goes
 * down under the lock, where model_workers_wait looks. */
void spawn_worker(void *(*fn)(void *), void *arg)
{
	struct worker *w = malloc(sizeof(*w));
	pthread_attr_t a;
	pthread_t t;

	if (!w)
		abort();
	w->fn = fn;
	w->arg = arg;
	__atomic_add_fetch(&nworkers, 1, __ATOMIC_SEQ_CST);
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, worker_main, w) != 0)
		fatal("pthread_create");
	pthread_attr_destroy(&a);
}

int model_workers_wait(int timeout_ms)
{
	struct timespec until;
	int n;

	realtime_after(timeout_ms, &until);
	pthread_mutex_lock(&model_lock);
	while (__atomic_load_n(&nworkers, __ATOMIC_SEQ_CST) > 0 &&
	       pthread_cond_timedwait(&workers_cond, &model_lock, &until) == 0)
		;
	n = __atomic_load_n(&nworkers, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&model_lock);
	return n;
}

/* The vmm host of s's VM. */
static struct vmm_host *sess_vmm(const struct session *s)
{
	return s->host ? s->host->vmm : vmm;
}

static bool sess_remote(const struct session *s)
{
	return s->host && !s->host->local;
}

void session_disk_path(const struct session *s, unsigned gen, char *out,
		       size_t n)
{
	/* A remote VM's disk is in its host's pool (it has no layers:
	 * snapshots are local only). */
	if (sess_remote(s))
		host_vm_file(s->host, s->domname, ".qcow2", out, n);
	else if (gen == 0)
		snprintf(out, n, "%s/disk.qcow2", s->dir);
	else
		snprintf(out, n, "%s/disk.%u.qcow2", s->dir, gen);
}

/* ---- references and lookup ----------------------------------------- */

void session_get(struct session *s)
{
	s->refs++;
}

static void session_free(struct session *s)
{
	if (s->host)
		host_put(s->host);
	errlog_free(&s->err);
	spec_free(&s->spec);
	json_decref(s->left_out);
	free(s->env_text);
	free(s->reason);
	free(s);
}

void session_put(struct session *s)
{
	if (--s->refs == 0)
		session_free(s);
}

struct session *session_first(void)
{
	return sessions;
}

struct session *session_find(const char *name_or_id)
{
	for (struct session *s = sessions; s; s = s->next)
		if (strcmp(s->name, name_or_id) == 0 ||
		    strcmp(s->id, name_or_id) == 0)
			return s;
	return NULL;
}

static void session_link(struct session *s)
{
	struct session **pp = &sessions;

	while (*pp)
		pp = &(*pp)->next;
	*pp = s;
	session_get(s);
	waitq_wake(&root_wq);
}

static void session_unlink(struct session *s)
{
	for (struct session **pp = &sessions; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			s->next = NULL;
			s->gone = true;
			waitq_wake(&root_wq);
			session_put(s);
			return;
		}
	}
}

/* ---- timers ------------------------------------------------------------ */

struct session_timer {
	struct timer t;
	struct session *s;
	uint64_t gen;
};

static void timer_done(struct session_timer *st)
{
	session_put(st->s);
	free(st);
}

static void expiry_fired(struct timer *t);

static void arm_expiry(struct session *s)
{
	s->expiry_gen++;
	if (!s->expires_ms || session_final(s) || s->state == S_TERMINATING)
		return;
	struct session_timer *st = calloc(1, sizeof(*st));
	if (!st)
		abort();
	st->t.cb = expiry_fired;
	st->s = s;
	st->gen = s->expiry_gen;
	session_get(s);
	int64_t delay = s->expires_ms - now_ms();
	/* Long deadlines are re-checked daily; clocks move. */
	timer_arm(&st->t, delay > 86400000 ? 86400000 : delay);
}

static void *close_worker(void *arg);

struct close_job {
	struct session *s;
	char *reason;
};

static void start_close(struct session *s, const char *reason)
{
	struct close_job *cj = calloc(1, sizeof(*cj));

	if (!cj)
		abort();
	cj->s = s;
	cj->reason = strdup(reason);
	session_get(s);
	s->busy = true;
	session_set_state(s, S_TERMINATING);
	spawn_worker(close_worker, cj);
}

static void expiry_fired(struct timer *t)
{
	struct session_timer *st = (struct session_timer *)t;
	struct session *s = st->s;

	if (st->gen == s->expiry_gen && !s->gone && s->expires_ms) {
		if (now_ms() < s->expires_ms) {
			arm_expiry(s);
		} else if (!s->busy && !session_final(s) &&
			   s->state != S_TERMINATING &&
			   s->state != S_CREATING) {
			errlog_add(&s->err, s->name,
				   "max_duration reached: closing");
			start_close(s, "max_duration reached");
		} else {
			/* Busy: look again shortly. */
			s->expiry_gen--;
			arm_expiry(s);
		}
	}
	timer_done(st);
}

/* ---- state ------------------------------------------------------------- */

void session_set_state(struct session *s, enum sess_state st)
{
	/* READY and RUNNING follow the jobs; callers refresh them by
	 * passing the current state. */
	if (st == S_READY || st == S_RUNNING)
		st = jobs_running(s) ? S_RUNNING : S_READY;
	if (st == s->state)
		return;
	log_info("session %s: %s -> %s", s->name, sess_state_name(s->state),
		 sess_state_name(st));
	event_emit("session", s->name, s->id, sess_state_name(s->state),
		   sess_state_name(st));
	s->state = st;
	if (!s->gone)
		session_save(s);
	waitq_wake(&s->wq);
}

static void withdraw_failed_create(struct session *s, const char *why);

void session_fail(struct session *s, const char *fmt, ...)
{
	char why[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (s->gone || session_final(s) || s->state == S_TERMINATING)
		return;
	if (s->state == S_CREATING) {
		withdraw_failed_create(s, why);
		return;
	}
	errlog_add(&s->err, s->name, why);
	if (s->busy) {
		/* A lifecycle change is under way; it will see the VM gone. */
		free(s->reason);
		s->reason = strdup(why);
		return;
	}
	start_close(s, why);
}

/* ---- creation ---------------------------------------------------------- */

static void dom_prefix_init(void)
{
	/* Domains of this state directory carry its hash, so tenkids with
	 * other state directories (tests) never touch each other's VMs. */
	uint32_t h = 2166136261u;

	for (const char *p = cfg.state_dir; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	snprintf(dom_prefix, sizeof(dom_prefix), "tenki-%08x-", h);
}

void session_domname(const char *id, char *out, size_t n)
{
	snprintf(out, n, "%s%.12s", dom_prefix, id + 24);
}

static void image_path(const struct session *s, const char *file, char *out,
		       size_t n)
{
	snprintf(out, n, "%s/%s/%s", cfg.image_dir, s->spec.image, file);
}

static void *create_worker(void *arg);

static void boot_timeout_fired(struct timer *t)
{
	struct session_timer *st = (struct session_timer *)t;
	struct session *s = st->s;

	if (!s->gone && s->state == S_CREATING && !s->busy)
		session_fail(s,
			     "the guest agent did not answer within %llds "
			     "(see console)",
			     (long long)(cfg.boot_timeout_ms / 1000));
	timer_done(st);
}

static void arm_boot_timeout(struct session *s)
{
	struct session_timer *st = calloc(1, sizeof(*st));

	if (!st)
		abort();
	st->t.cb = boot_timeout_fired;
	st->s = s;
	session_get(s);
	timer_arm(&st->t, cfg.boot_timeout_ms);
}

/* A restore names a READY snapshot; cpu, memory and network, when given,
 * may only repeat the saved guest's. */
static int check_snapshot(const struct sess_spec *spec, struct snapshot **out)
{
	const char *name = spec->name;
	struct snapshot *sn = snapshot_find(spec->snapshot);

	if (!sn)
		return refuse(&sessions_err, ENOENT, name, "no snapshot %s",
			      spec->snapshot);
	if (sn->state != SN_READY)
		return refuse(&sessions_err, EINVAL, name,
			      "snapshot %s is %s, not READY", sn->name,
			      snap_state_name(sn->state));
	if ((spec_given(spec, "cpu_cores") &&
	     spec->cpu_cores != sn->cpu_cores) ||
	    (spec_given(spec, "memory_mb") && spec->memory_mb != sn->memory_mb))
		return refuse(&sessions_err, EINVAL, name,
			      "snapshot %s was taken with cpu_cores=%u "
			      "memory_mb=%u: a restore keeps them",
			      sn->name, sn->cpu_cores, sn->memory_mb);
	if (spec_given(spec, "allow_outbound") &&
	    spec->allow_outbound != sn->network)
		return refuse(&sessions_err, EINVAL, name,
			      "snapshot %s was taken with allow_outbound=%s: "
			      "a restore keeps it",
			      sn->name, sn->network ? "true" : "false");
	*out = sn;
	return 0;
}

int session_create(const struct sess_spec *spec, struct session **out)
{
	char why[400], path[600];
	struct stat st;
	struct session *s;
	const char *name = spec->name;

	struct snapshot *sn = NULL;
	struct tpl_restore tr = {0};
	bool tpl = spec->template_name[0] != '\0';
	struct sess_spec eff;
	int rc;

	if (tpl && spec->snapshot[0])
		return refuse(&sessions_err, EINVAL, name,
			      "snapshot= and template= exclude each other");
	if (session_find(name))
		return refuse(&sessions_err, EEXIST, name,
			      "a session named %s exists", name);
	int verr = volumes_check_spec(spec, why, sizeof(why));
	if (verr < 0)
		return refuse(&sessions_err, -verr, name, "%s", why);
	/* A saved guest's machine has no disks for volumes (libvirt
	 * refuses a restore that adds devices): they are hot-plugged into
	 * its spare PCIe ports before READY. */
	if (spec->snapshot[0] && spec->nvolumes > VMM_HOTPLUG_DISKS)
		return refuse(&sessions_err, ENOSPC, name,
			      "%zu volumes given with snapshot=: a restored "
			      "machine has hot-plug ports for %d",
			      spec->nvolumes, VMM_HOTPLUG_DISKS);
	if (tpl && spec->nvolumes > VMM_HOTPLUG_DISKS)
		return refuse(&sessions_err, ENOSPC, name,
			      "%zu volumes given with template=: a restored "
			      "machine has hot-plug ports for %d",
			      spec->nvolumes, VMM_HOTPLUG_DISKS);
	if (spec->snapshot[0] && (rc = check_snapshot(spec, &sn)) < 0)
		return rc;
	if (tpl && (rc = template_resolve(spec, &tr)) < 0)
		return rc;
	const char *image = sn ? sn->image : tpl ? tr.image : spec->image;
	snprintf(path, sizeof(path), "%s/%s/rootfs.qcow2", cfg.image_dir,
		 image);
	if (stat(path, &st) < 0) {
		template_restore_free(&tr);
		return refuse(&sessions_err, ENOENT, name,
			      "image %s not found (%s): run scripts/setup.sh",
			      image, path);
	}
	spec_copy(&eff, spec);
	if (tpl)
		template_apply(&eff, &tr);
	if (sn) {
		/* The saved guest's shape, whatever the defaults say. */
		eff.cpu_cores = sn->cpu_cores;
		eff.memory_mb = sn->memory_mb;
		eff.allow_outbound = sn->network;
		snprintf(eff.image, sizeof(eff.image), "%s", sn->image);
		snprintf(eff.snapshot, sizeof(eff.snapshot), "%s", sn->name);
	}
	/* Saved guests and volumes live on this host only. */
	struct host *h = NULL;
	if ((rc =
		 host_place(&eff, sn || tpl || spec->internal || spec->nvolumes,
			    &h)) < 0) {
		spec_free(&eff);
		template_restore_free(&tr);
		return rc;
	}
	snprintf(eff.host, sizeof(eff.host), "%s", h->name);

	s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	s->refs = 1;
	s->spec = eff;
	s->host = h;
	snprintf(s->name, sizeof(s->name), "%s", name);
	/* A restored guest takes volumes on its spare hot-plug ports; a
	 * session given more boots cold, its volumes disks from the start.
	 * A remote host takes golden states when it runs this machine's
	 * guests (host_takes_saved); the warm pool is this host's.  A
	 * template's build session boots cold too: its captured disk layer
	 * must back onto the image, not onto a file of its own dir. */
	bool saved_ok = !sn && !tpl && spec->nvolumes <= VMM_HOTPLUG_DISKS &&
			!spec->internal && host_takes_saved(h);
	struct pooled *pg =
	    saved_ok && h->local && cfg.pool ? pool_take(&s->spec) : NULL;
	/* No running guest: a staged one, which only needs restoring. */
	struct pooled *sg = saved_ok && h->local && !pg && cfg.golden
				? pool_take_staged(&s->spec)
				: NULL;
	if (pg || sg)
		snprintf(s->id, sizeof(s->id), "%s", (pg ? pg : sg)->id);
	else
		uuid_new(s->id);
	s->state = S_CREATING;
	s->created_ms = now_ms();
	if (spec->max_duration)
		s->expires_ms = s->created_ms + spec->max_duration * 1000;
	session_domname(s->id, s->domname, sizeof(s->domname));
	snprintf(s->dir, sizeof(s->dir), "%s/sessions/%s", cfg.state_dir,
		 s->id);
	struct buf env = {0};
	for (size_t i = 0; i < s->spec.nenv; i++)
		buf_printf(&env, "%s\n", s->spec.env[i]);
	buf_add(&env, "", 0);
	s->env_text = env.data;
	waitq_init(&s->wq);
	char errpath[600];
	snprintf(errpath, sizeof(errpath), "%s/err", s->dir);
	errlog_init(&s->err, errpath);
	if (mkdir_p(s->dir, 0711) < 0) {
		int e = errno;
		if (sg)
			remove_tree(s->dir);
		pool_free(sg);
		session_put(s);
		template_restore_free(&tr);
		return refuse(&sessions_err, EIO, name,
			      "cannot make state directory: %s", strerror(e));
	}
	if (pg) {
		s->boot = "pool";
	} else if (sg) {
		s->restore = true;
		s->prepared = true;
		s->boot = "golden";
		pool_free(sg);
	} else if (sn) {
		/* Hold the saved state: the snapshot may be deleted while
		 * this session restores from it. */
		if (snapshot_link_into(sn, s->dir) < 0) {
			int e = errno;
			remove_tree(s->dir);
			session_put(s);
			return refuse(&sessions_err, EIO, name,
				      "cannot link snapshot %s: %s", sn->name,
				      strerror(e));
		}
		s->next_chan = sn->next_chan;
		s->restore = true;
		s->boot = "snapshot";
		s->left_out = json_incref(sn->left_out);
	} else if (tpl) {
		/* Hold the build's files: a rebuild may remove it. */
		if (template_link_into(&tr, s->dir) < 0) {
			int e = errno;
			remove_tree(s->dir);
			session_put(s);
			template_restore_free(&tr);
			return refuse(&sessions_err, EIO, name,
				      "cannot link template %s: %s",
				      spec->template_name, strerror(e));
		}
		s->next_chan = tr.next_chan;
		s->restore = true;
		s->boot = "template";
	} else if (saved_ok && golden_claim(&s->spec, s->dir) == 0) {
		s->restore = true;
		s->boot = "golden";
	} else {
		s->boot = "cold";
	}
	template_restore_free(&tr);
	session_save(s);
	session_link(s);
	volumes_reserve(s);
	event_emit("session", s->name, s->id, NULL, "CREATING");
	*out = s; /* the caller takes the reference calloc'd with s */
	if (pg) {
		/* Running already: its HELLO gives it this identity. */
		if (agent_attach(s, pg->chan, why, sizeof(why)) < 0)
			withdraw_failed_create(s, why);
		else
			arm_boot_timeout(s);
		pool_free(pg);
		return 0;
	}
	s->busy = true;
	session_get(s);
	spawn_worker(create_worker, s);
	return 0;
}

static void build_vm_spec(struct session *s, struct vmm_vm_spec *v,
			  char paths[5][600], char *cmdline, size_t cmdlen)
{
	image_path(s, "vmlinux", paths[0], 600);
	image_path(s, "initrd.img", paths[1], 600);
	session_disk_path(s, s->disk_gen, paths[2], 600);
	snprintf(paths[3], 600, "%s/console.log", s->dir);
	snprintf(paths[4], 600, "%s/%s/cmdline", cfg.image_dir, s->spec.image);
	size_t n;
	char *c = read_file(paths[4], 4096, &n);
	snprintf(cmdline, cmdlen, "%s",
		 c ? c : "console=ttyS0 root=/dev/vda rw quiet");
	free(c);
	cmdline[strcspn(cmdline, "\n")] = '\0';

	memset(v, 0, sizeof(*v));
	v->domname = s->domname;
	v->uuid = s->id;
	v->vcpus = s->spec.cpu_cores;
	v->memory_mb = s->spec.memory_mb;
	v->kernel = paths[0];
	v->initrd = paths[1];
	v->cmdline = cmdline;
	v->loader = access("/usr/share/qemu/qboot.rom", R_OK) == 0
			? "/usr/share/qemu/qboot.rom"
			: NULL;
	v->disk = paths[2];
	v->console = paths[3];
	v->network = s->spec.allow_outbound;
	/* A snapshot's volumes get stand-ins beside the session's files. */
	v->stand_in_dir = sess_remote(s) ? NULL : s->dir;
}

/*
 * The agent channel of s's VM, opened without the lock: the socket
 * libvirt bound on this host, or for a VM on another host its channel
 * carried over the libvirt connection (vmm_channel_open).
 */
struct vm_chan {
	char *path;
	int fd;
};

static int chan_open(struct session *s, struct vm_chan *c, char *err)
{
	c->path = NULL;
	c->fd = -1;
	if (!sess_remote(s))
		return (c->path =
			    vmm_channel_path(sess_vmm(s), s->domname, err))
			   ? 0
			   : -1;
	return (c->fd = vmm_channel_open(sess_vmm(s), s->domname, err)) >= 0
		   ? 0
		   : -1;
}

/* model_lock held; the channel is used up either way. */
static int chan_attach(struct session *s, struct vm_chan *c, char *err,
		       size_t n)
{
	int rc = c->path ? agent_attach(s, c->path, err, n)
			 : agent_attach_fd(s, c->fd, err, n);

	c->fd = -1;
	return rc;
}

static void chan_close(struct vm_chan *c)
{
	free(c->path);
	c->path = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Boot the VM without the lock; publish the result with it. */
static void *create_worker(void *arg)
{
	struct session *s = arg;
	struct vmm_vm_spec v;
	struct vol_boot_disks disks;
	char paths[5][600], cmdline[4096], err[VMM_ERRLEN], base[600];
	char src[600], copy[600], mem_vol[128];
	struct vm_chan chan = {NULL, -1};
	int64_t t0 = now_ms();
	bool restore, prepared;
	int rc;

	pthread_mutex_lock(&model_lock);
	build_vm_spec(s, &v, paths, cmdline, sizeof(cmdline));
	restore = s->restore;
	prepared = s->prepared;
	/* A restored guest gets its volumes hot-plugged once it is up. */
	if (!restore) {
		volumes_boot_disks(s, &disks);
		v.disks = disks.d;
		v.ndisks = disks.n;
	}
	image_path(s, "rootfs.qcow2", base, sizeof(base));
	snprintf(src, sizeof(src), "%s/restore.src", s->dir);
	snprintf(copy, sizeof(copy), "%s/restore.save", s->dir);
	if (restore)
		snprintf(base, sizeof(base), "%s/base.qcow2", s->dir);
	pthread_mutex_unlock(&model_lock);
	/* rootfs.qcow2 is a link to the newest build: the overlay must name
	 * the build itself, so a rebuild never changes a live disk's base. */
	char *real = restore ? NULL : realpath(base, NULL);
	if (real) {
		snprintf(base, sizeof(base), "%s", real);
		free(real);
	}

	err[0] = '\0';
	rc = 0;
	if (sess_remote(s)) {
		/* Paths there: the image in the host's pool (uploaded once),
		 * the console log beside the disk. */
		rc = host_image(s->host, s->spec.image, paths[0], paths[1],
				base, sizeof(base), err);
		host_vm_file(s->host, s->domname, ".console.log", paths[3],
			     sizeof(paths[3]));
		/* A golden state is copied there once, then restored from
		 * its copy there. */
		if (rc == 0 && restore)
			rc = host_golden(s->host, s->dir, base, sizeof(base),
					 mem_vol, sizeof(mem_vol), err);
	}
	if (rc == 0)
		rc = prepared ? 0
			      : vmm_disk_create(sess_vmm(s), base, v.disk, err);
	int64_t t_disk = now_ms();
	if (rc == 0)
		rc = prepared ? vmm_restore_prepared(sess_vmm(s), copy, &v, err)
		     : restore && sess_remote(s)
			 ? host_restore(s->host, src, mem_vol, &v, err)
		     : restore ? vmm_restore(sess_vmm(s), src, copy, &v, err)
			       : vmm_create(sess_vmm(s), &v, err);
	log_debug("session %s: disk %lld ms, VM %lld ms", s->name,
		  (long long)(t_disk - t0), (long long)(now_ms() - t_disk));
	if (restore)
		unlink(src);
	if (rc < 0 || chan_open(s, &chan, err) < 0) {
		pthread_mutex_lock(&model_lock);
		s->busy = false;
		withdraw_failed_create(s, err);
		goto out;
	}
	pthread_mutex_lock(&model_lock);
	s->busy = false;
	pthread_cond_broadcast(&busy_cond);
	log_info("session %s: VM %s %s in %lld ms", s->name, s->domname,
		 restore ? "restored" : "started", (long long)(now_ms() - t0));
	if (s->gone || s->state != S_CREATING) {
		/* Removed while booting: session_remove cleans up. */
		goto out;
	}
	if (chan_attach(s, &chan, err, sizeof(err)) < 0) {
		withdraw_failed_create(s, err);
		goto out;
	}
	arm_boot_timeout(s);
out:
	pthread_cond_broadcast(&busy_cond);
	pthread_mutex_unlock(&model_lock);
	chan_close(&chan);
	pthread_mutex_lock(&model_lock);
	session_put(s);
	pthread_mutex_unlock(&model_lock);
	return NULL;
}

static void close_vm(struct session *s);

/* The end of a failed create's console log, into tenkid's log before the
 * directory goes: a guest that dies at boot or right after a restore
 * (a kernel panic) says why there and nowhere else.  The guest wrote
 * it: control characters are shown as '?', lines cut at 200 bytes. */
static void log_console_tail(const struct session *s)
{
	char path[600], buf[2049], *line, *save;
	ssize_t n;
	off_t size;
	int fd;

	snprintf(path, sizeof(path), "%s/console.log", s->dir);
	if (sess_remote(s) || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	n = size > 0
		? pread(fd, buf, sizeof(buf) - 1, size > 2048 ? size - 2048 : 0)
		: 0;
	close(fd);
	if (n <= 0) {
		log_warnx("session %s: its console is empty", s->name);
		return;
	}
	buf[n] = '\0';
	for (ssize_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c == '\t')
			buf[i] = ' ';
		else if ((c < 0x20 && c != '\n') || c == 0x7f)
			buf[i] = '?';
	}
	log_warnx("session %s: its console before the failure:", s->name);
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		log_warnx("session %s: console: %.200s", s->name, line);
}

static void *withdraw_worker(void *arg)
{
	struct session *s = arg;

	close_vm(s);
	if (remove_tree(s->dir) < 0)
		log_warnx("session %s: remove %s failed", s->name, s->dir);
	pthread_mutex_lock(&model_lock);
	s->busy = false;
	pthread_cond_broadcast(&busy_cond);
	waitq_wake(&s->wq);
	session_put(s);
	pthread_mutex_unlock(&model_lock);
	return NULL;
}

/*
 * A create that failed leaves nothing: the record leaves the tree at once
 * (waiters see it gone and fail with the reason in sessions/err), and a
 * worker removes the domain, the disk and the state directory.
 */
static void withdraw_failed_create(struct session *s, const char *why)
{
	char line[600];

	/* Before the creator is told: its log then holds the guest's side. */
	log_console_tail(s);
	snprintf(line, sizeof(line), "create failed: %s", why);
	errlog_add(&sessions_err, s->name, line);
	event_emit("session", s->name, s->id, sess_state_name(s->state),
		   "FAILED");
	free(s->reason);
	s->reason = strdup(why);
	agent_detach(s);
	volumes_session_closed(s);
	session_get(s); /* the worker's */
	if (!s->gone)
		session_unlink(s);
	s->busy = true;
	spawn_worker(withdraw_worker, s);
	waitq_wake(&s->wq);
}

/* What waits for a re-attached agent (session_wait_agent). */
static pthread_cond_t agent_cond = PTHREAD_COND_INITIALIZER;

/* How long what needs the agent waits for a re-attach under way. */
#define REATTACH_WAIT_MS 15000

static void reattach_begin(struct session *s)
{
	s->reattach_until = now_ms() + REATTACH_WAIT_MS;
}

/* The agent is up, or will not come: nothing waits any more. */
static void reattach_end(struct session *s)
{
	s->reattach_until = 0;
	pthread_cond_broadcast(&agent_cond);
}

bool session_wait_agent(struct session *s)
{
	struct timespec ts;
	int64_t left;

	while (!s->agent_up && !s->gone && session_usable(s) &&
	       (left = s->reattach_until - now_ms()) > 0) {
		realtime_after(left, &ts);
		pthread_cond_timedwait(&agent_cond, &model_lock, &ts);
	}
	return s->agent_up;
}

void session_agent_ready(struct session *s)
{
	s->agent_up = true;
	reattach_end(s);
	if (s->host_lost) {
		s->host_lost = false;
		free(s->reason);
		s->reason = NULL;
		errlog_add(&s->err, s->name, "re-attached: its host is back");
		session_save(s);
	}
	/* Volumes given at create are mounted before the session is READY;
	 * their worker calls here again when they are. */
	if (s->state == S_CREATING && volumes_boot_mount(s)) {
		waitq_wake(&s->wq);
		return;
	}
	if (s->state == S_CREATING) {
		s->guest_ready_ms = now_ms();
		log_info("session %s: READY %lld ms after create", s->name,
			 (long long)(s->guest_ready_ms - s->created_ms));
		session_set_state(s, S_READY);
		arm_expiry(s);
		/* The pool waits while sessions are made: refill now. */
		pool_kick();
	}
	waitq_wake(&s->wq);
}

static void *lost_worker(void *arg);

/* The channel closed: on this host that means qemu went away, unless
 * libvirt is merely restarting.  Ask libvirt, without the lock. */
void session_agent_lost(struct session *s, const char *why)
{
	log_info("session %s: %s", s->name, why);
	if (s->gone || session_final(s) || s->state == S_TERMINATING)
		return;
	session_get(s);
	spawn_worker(lost_worker, s);
}

static void *lost_worker(void *arg)
{
	struct session *s = arg;
	char err[VMM_ERRLEN];
	struct vm_chan chan = {NULL, -1};
	enum vmm_state vs;

	/* A remote stream also dies with its host: then the host is DOWN
	 * and its sessions wait for it (host_check marks them). */
	if (sess_remote(s) && !host_check(s->host))
		goto out;
	vs = vmm_state(sess_vmm(s), s->domname);
	if (vs == VMM_RUNNING || vs == VMM_PAUSED)
		chan_open(s, &chan, err);
	usleep(200 * 1000);
	pthread_mutex_lock(&model_lock);
	if (!s->gone && !session_final(s) && s->state != S_TERMINATING &&
	    !s->conn && !s->host_lost) {
		if ((chan.path || chan.fd >= 0) &&
		    chan_attach(s, &chan, err, sizeof(err)) == 0)
			log_info("session %s: channel re-opened", s->name);
		else
			session_fail(s, "the VM stopped (libvirt state %d)",
				     (int)vs);
	}
	pthread_mutex_unlock(&model_lock);
	chan_close(&chan);
out:
	pthread_mutex_lock(&model_lock);
	session_put(s);
	pthread_mutex_unlock(&model_lock);
	return NULL;
}

/* ---- closing and removal -------------------------------------------- */

/* The domain, then every disk layer, newest first (a snapshot's or a
 * restored session's link to a layer keeps its data). */
static void close_vm(struct session *s)
{
	char err[VMM_ERRLEN], disk[600];

	if (!sess_vmm(s)) {
		/* Its host never answered since tenkid started: what is left
		 * there goes when it does (session_sweep_orphans). */
		log_warnx("session %s: host %s not connected; its VM is "
			  "removed when the host is back",
			  s->name, s->host->name);
		return;
	}
	if (vmm_remove(sess_vmm(s), s->domname, err) < 0)
		log_warnx("session %s: %s", s->name, err);
	for (unsigned g = s->disk_gen + 1; g-- > 0;) {
		session_disk_path(s, g, disk, sizeof(disk));
		if (vmm_disk_delete(sess_vmm(s), disk, err) < 0)
			log_warnx("session %s: %s", s->name, err);
	}
	if (sess_remote(s)) {
		host_vm_file(s->host, s->domname, ".console.log", disk,
			     sizeof(disk));
		if (vmm_disk_delete(sess_vmm(s), disk, err) < 0)
			log_warnx("session %s: %s", s->name, err);
	}
	snprintf(disk, sizeof(disk), "%s/base.qcow2", s->dir);
	unlink(disk);
}

static void finish_close(struct session *s, const char *reason)
{
	agent_detach(s);
	jobs_session_closed(s);
	volumes_session_closed(s);
	ports_session_closed(s);
	if (!s->reason)
		s->reason = strdup(reason);
	s->busy = false;
	s->expiry_gen++;
	pthread_cond_broadcast(&busy_cond);
	session_set_state(s, S_TERMINATED);
}

static void *close_worker(void *arg)
{
	struct close_job *cj = arg;
	struct session *s = cj->s;

	pthread_mutex_lock(&model_lock);
	volumes_session_closing(s);
	pthread_mutex_unlock(&model_lock);
	close_vm(s);
	pthread_mutex_lock(&model_lock);
	finish_close(s, cj->reason);
	session_put(s);
	pthread_mutex_unlock(&model_lock);
	free(cj->reason);
	free(cj);
	return NULL;
}

static void wait_not_busy(struct session *s)
{
	while (s->busy)
		pthread_cond_wait(&busy_cond, &model_lock);
}

void session_wait_idle(struct session *s)
{
	wait_not_busy(s);
}

void session_op_begin(struct session *s)
{
	s->busy = true;
}

void session_op_end(struct session *s)
{
	s->busy = false;
	pthread_cond_broadcast(&busy_cond);
	waitq_wake(&s->wq);
}

/* model_lock held; drops it while libvirt works. */
static void close_now(struct session *s, const char *reason)
{
	wait_not_busy(s);
	if (session_final(s))
		return;
	s->busy = true;
	session_set_state(s, S_TERMINATING);
	volumes_session_closing(s);
	pthread_mutex_unlock(&model_lock);
	close_vm(s);
	pthread_mutex_lock(&model_lock);
	finish_close(s, reason);
}

int session_remove(struct session *s)
{
	session_get(s);
	wait_not_busy(s);
	if (s->gone) {
		session_put(s);
		return -ENOENT;
	}
	if (!session_final(s))
		close_now(s, "removed");
	jobs_free(s);
	if (remove_tree(s->dir) < 0)
		log_warnx("session %s: cannot remove %s", s->name, s->dir);
	log_info("session %s: removed", s->name);
	event_emit("session", s->name, s->id, sess_state_name(s->state),
		   "REMOVED");
	session_unlink(s);
	waitq_wake(&s->wq);
	session_put(s);
	return 0;
}

/* ---- ctl ----------------------------------------------------------------- */

static int do_pause(struct session *s, bool pause)
{
	char err[VMM_ERRLEN];
	int rc;

	wait_not_busy(s);
	if (pause ? !session_usable(s) : s->state != S_PAUSED)
		return refuse(&s->err, EBUSY, s->name, "%s: session is %s",
			      pause ? "pause" : "resume",
			      sess_state_name(s->state));
	if (s->host_lost)
		return refuse(
		    &s->err, EIO, s->name, "%s: %s", pause ? "pause" : "resume",
		    s->reason ? s->reason : "its host is not connected yet");
	s->busy = true;
	pthread_mutex_unlock(&model_lock);
	rc = pause ? vmm_pause(sess_vmm(s), s->domname, err)
		   : vmm_resume(sess_vmm(s), s->domname, err);
	pthread_mutex_lock(&model_lock);
	s->busy = false;
	pthread_cond_broadcast(&busy_cond);
	if (rc < 0)
		return refuse(&s->err, EIO, s->name, "%s: %s",
			      pause ? "pause" : "resume", err);
	session_set_state(s, pause ? S_PAUSED : S_READY);
	return 0;
}

static int do_extend(struct session *s, int64_t secs)
{
	if (session_final(s) || s->state == S_TERMINATING)
		return refuse(&s->err, EBUSY, s->name, "extend: session is %s",
			      sess_state_name(s->state));
	if (!s->expires_ms)
		return 0; /* no deadline: nothing to push */
	int64_t base = s->expires_ms > now_ms() ? s->expires_ms : now_ms();
	s->expires_ms = base + secs * 1000;
	session_save(s);
	arm_expiry(s);
	waitq_wake(&s->wq);
	return 0;
}

int session_ctl(struct session *s, const char *text, size_t len)
{
	struct ctl_call calls[CTL_MAX_VERBS];
	char why[CTL_WHY_LEN];
	int n, rc = 0;

	if (ctl_parse(CTL_SESSION, text, len, calls, &n, why) < 0)
		return refuse(&s->err, EINVAL, s->name, "ctl: %s", why);
	session_get(s);
	for (int i = 0; i < n && rc == 0; i++) {
		if (s->gone) {
			rc = -ENOENT;
			break;
		}
		switch (calls[i].v) {
		case CTL_EXTEND:
			rc = do_extend(s, calls[i].secs);
			break;
		case CTL_PAUSE:
			rc = do_pause(s, true);
			break;
		case CTL_RESUME:
			rc = do_pause(s, false);
			break;
		case CTL_ATTACH:
		case CTL_DETACH:
			rc = volume_session_verb(s, &calls[i].vol);
			break;
		case CTL_SNAPSHOT:
			rc = snapshot_take(s, calls[i].name, calls[i].secs,
					   &s->err, s->name);
			break;
		case CTL_CLOSE:
			wait_not_busy(s);
			if (s->state == S_CREATING)
				rc = refuse(&s->err, EBUSY, s->name,
					    "close: session is still "
					    "CREATING; rmdir removes it");
			else if (!session_final(s))
				close_now(s, "closed");
			break;
		case CTL_KILL:
		case CTL_EOF:
			break; /* job verbs: not parsed for a session */
		}
	}
	session_put(s);
	return rc;
}

int session_set_env(struct session *s, const char *text, size_t len)
{
	char why[SPEC_WHY_LEN];
	char **list;
	size_t n;

	if (spec_parse_env_lines(text, len, &list, &n, why) < 0)
		return refuse(&s->err, EINVAL, s->name, "env: %s", why);
	struct buf b = {0};
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s\n", list[i]);
	buf_add(&b, "", 0);
	spec_free_list(list, n);
	free(s->env_text);
	s->env_text = b.data;
	session_save(s);
	return 0;
}

int session_set_keys(struct session *s, const char *text, size_t len)
{
	char **keys = NULL;
	size_t n = 0;
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (l && *p != '#') {
			char **nk = realloc(keys, (n + 1) * sizeof(char *));
			if (!nk)
				abort();
			keys = nk;
			keys[n++] = strndup(p, l);
		}
		p += l + 1;
	}
	spec_free_list(s->spec.ssh_keys, s->spec.nssh_keys);
	s->spec.ssh_keys = keys;
	s->spec.nssh_keys = n;
	session_save(s);
	return 0;
}

/* ---- records ----------------------------------------------------------- */

static json_t *kv_object(char **list, size_t n)
{
	json_t *o = json_object();

	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(list[i], '=');
		if (!eq)
			continue;
		char *k = strndup(list[i], (size_t)(eq - list[i]));
		json_object_set_new(o, k, json_string(eq + 1));
		free(k);
	}
	return o;
}

json_t *env_object(const char *text)
{
	json_t *o = json_object();
	const char *p = text;

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		const char *eq = memchr(p, '=', l);
		if (eq) {
			char *k = strndup(p, (size_t)(eq - p));
			json_object_set_new(
			    o, k,
			    json_stringn(eq + 1, l - (size_t)(eq - p) - 1));
			free(k);
		}
		p = nl ? nl + 1 : NULL;
	}
	return o;
}

static json_t *session_record(struct session *s)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_string(s->id));
	json_object_set_new(o, "name", json_string(s->name));
	json_object_set_new(o, "state", json_string(sess_state_name(s->state)));
	json_object_set_new(o, "cpu_cores", json_integer(s->spec.cpu_cores));
	json_object_set_new(o, "memory_mb", json_integer(s->spec.memory_mb));
	json_object_set_new(o, "allow_inbound",
			    json_boolean(s->spec.allow_inbound));
	json_object_set_new(o, "allow_outbound",
			    json_boolean(s->spec.allow_outbound));
	json_object_set_new(o, "created_at", json_time(s->created_ms));
	json_object_set_new(o, "expires_at", json_time(s->expires_ms));
	json_object_set_new(o, "env", env_object(s->env_text));
	json_object_set_new(o, "metadata",
			    kv_object(s->spec.metadata, s->spec.nmetadata));
	json_object_set_new(o, "image", json_string(s->spec.image));
	json_object_set_new(o, "snapshot",
			    s->spec.snapshot[0] ? json_string(s->spec.snapshot)
						: json_null());
	json_object_set_new(o, "template",
			    s->spec.template_name[0]
				? json_string(s->spec.template_name)
				: json_null());
	json_object_set_new(o, "boot", json_string(s->boot ? s->boot : "cold"));
	json_object_set_new(o, "volumes", volumes_session_json(s));
	json_object_set_new(o, "ports", ports_json(s));
	char *target = sshgw_target(s);
	if (target)
		target[strcspn(target, "\n")] = '\0';
	json_object_set_new(o, "ssh",
			    json_pack("{s:s?, s:i}", "target", target, "keys",
				      (int)s->spec.nssh_keys));
	free(target);
	json_object_set_new(o, "host",
			    json_string(s->host ? s->host->name : HOST_LOCAL));
	json_object_set_new(o, "reason",
			    s->reason ? json_string(s->reason) : json_null());
	return o;
}

char *session_info_json(struct session *s)
{
	return json_dump_line(session_record(s), JSON_INDENT(1));
}

char *sessions_index(bool json)
{
	if (json) {
		json_t *a = json_array();
		for (struct session *s = sessions; s; s = s->next)
			if (!s->spec.internal)
				json_array_append_new(a, session_record(s));
		return json_dump_line(a, JSON_INDENT(1));
	}
	struct buf b = {0};
	buf_add(&b, "", 0);
	for (struct session *s = sessions; s; s = s->next) {
		char exp[32] = "never";
		if (s->spec.internal)
			continue;
		if (s->expires_ms)
			fmt_time(s->expires_ms, exp);
		buf_printf(&b, "%s %s %s %u %u %s\n", s->name, s->id,
			   sess_state_name(s->state), s->spec.cpu_cores,
			   s->spec.memory_mb, exp);
	}
	return b.data;
}

/* ---- start and restore -------------------------------------------------- */

static void on_vm_stopped(const char *domname, const char *reason, void *opaque)
{
	pthread_mutex_lock(&model_lock);
	pool_vm_stopped(domname);
	for (struct session *s = sessions; s; s = s->next) {
		if (strcmp(s->domname, domname) != 0)
			continue;
		log_info("session %s: %s %s", s->name, domname, reason);
		if (!s->busy && !session_final(s) && s->state != S_TERMINATING)
			session_fail(s, "the VM stopped: %s", reason);
		break;
	}
	pthread_mutex_unlock(&model_lock);
}

int model_init(struct vmm_host *host)
{
	char path[600];

	vmm = host;
	dom_prefix_init();
	waitq_init(&root_wq);
	snprintf(path, sizeof(path), "%s/err", cfg.state_dir);
	errlog_init(&root_err, path);
	snprintf(path, sizeof(path), "%s/sessions.err", cfg.state_dir);
	errlog_init(&sessions_err, path);
	snprintf(path, sizeof(path), "%s/volumes.err", cfg.state_dir);
	errlog_init(&volumes_err, path);
	snprintf(path, sizeof(path), "%s/snapshots.err", cfg.state_dir);
	errlog_init(&snapshots_err, path);
	snprintf(path, sizeof(path), "%s/templates.err", cfg.state_dir);
	errlog_init(&templates_err, path);
	snprintf(path, sizeof(path), "%s/hosts.err", cfg.state_dir);
	errlog_init(&hosts_err, path);
	snprintf(path, sizeof(path), "%s/sessions", cfg.state_dir);
	if (mkdir_p(path, 0711) < 0)
		return -1;
	defaults_text = persist_load_defaults();
	if (vmm)
		vmm_on_stopped(vmm, on_vm_stopped, NULL);
	if (hosts_init(vmm, on_vm_stopped) < 0)
		return -1;
	return volumes_init();
}

/* After a restart of tenkid, or when s's host came back (host_lost). */
static void *reattach_worker(void *arg)
{
	struct session *s = arg;
	enum vmm_state vs = vmm_state(sess_vmm(s), s->domname);
	char err[VMM_ERRLEN] = "", when[128];
	struct vm_chan chan = {NULL, -1};

	if (vs == VMM_RUNNING || vs == VMM_PAUSED)
		chan_open(s, &chan, err);
	pthread_mutex_lock(&model_lock);
	s->busy = false;
	pthread_cond_broadcast(&busy_cond);
	if (s->host_lost)
		snprintf(when, sizeof(when), "host %s came back",
			 s->host->name);
	else
		snprintf(when, sizeof(when), "tenkid restarted");
	if (!chan.path && chan.fd < 0)
		reattach_end(s);
	if (s->gone || session_final(s)) {
		/* Removed meanwhile. */
	} else if (!chan.path && chan.fd < 0) {
		/* The reason is what ended it, not the host's absence. */
		bool lost = s->host_lost;
		free(s->reason);
		s->reason = NULL;
		s->host_lost = false;
		if (s->state == S_CREATING)
			withdraw_failed_create(
			    s, lost ? "its host went away while the "
				      "VM was being made"
				    : "tenkid restarted while the VM "
				      "was being made");
		else
			session_fail(s, "the VM was gone when %s", when);
	} else {
		if (vs == VMM_PAUSED)
			s->state = S_PAUSED;
		else if (s->state == S_PAUSED)
			s->state = S_READY; /* resumed outside tenkid */
		if (chan_attach(s, &chan, err, sizeof(err)) < 0)
			session_fail(s, "cannot re-open the agent channel: %s",
				     err);
		else if (s->state == S_CREATING)
			arm_boot_timeout(s);
		log_info("session %s: re-attached after %s (%s)", s->name, when,
			 sess_state_name(s->state));
	}
	session_put(s);
	pthread_mutex_unlock(&model_lock);
	chan_close(&chan);
	return NULL;
}

void session_host_down(struct session *s, const char *why)
{
	char line[600];

	if (s->gone || session_final(s))
		return;
	snprintf(line, sizeof(line), "host %s is DOWN: %s", s->host->name, why);
	if (!s->host_lost || !s->reason)
		errlog_add(&s->err, s->name, line);
	s->host_lost = true;
	free(s->reason);
	s->reason = strdup(line);
	agent_detach(s);
	session_save(s);
	waitq_wake(&s->wq);
}

int session_local_only(struct session *s, struct errlog *log,
		       const char *object, const char *what)
{
	if (!sess_remote(s))
		return 0;
	return refuse(log, EINVAL, object,
		      "%s: session %s runs on the remote host %s; snapshots "
		      "and volumes are available on the local host only",
		      what, s->name, s->host->name);
}

void session_host_up(struct session *s)
{
	if (s->gone || session_final(s) || !s->host_lost || s->busy)
		return;
	s->busy = true;
	reattach_begin(s);
	session_get(s);
	spawn_worker(reattach_worker, s);
}

/* Remove domains of this state directory that no session owns. */
void session_sweep_orphans(struct vmm_host *v)
{
	char err[VMM_ERRLEN];
	char **names = v ? vmm_list(v, dom_prefix, err) : NULL;

	if (!names)
		return;
	for (char **n = names; *n; n++) {
		bool owned = false;
		pthread_mutex_lock(&model_lock);
		for (struct session *s = sessions; s; s = s->next)
			if (strcmp(s->domname, *n) == 0 && !session_final(s))
				owned = true;
		pthread_mutex_unlock(&model_lock);
		if (owned)
			continue;
		log_info("removing orphan domain %s (%s)", *n, vmm_uri(v));
		if (vmm_remove(v, *n, err) < 0)
			log_warnx("%s: %s", *n, err);
	}
	vmm_free_names(names);
}

void model_restore(void)
{
	struct session *loaded = persist_load_sessions();

	pthread_mutex_lock(&model_lock);
	while (loaded) {
		struct session *s = loaded;
		loaded = s->next;
		s->next = NULL;
		waitq_init(&s->wq);
		jobs_load(s);
		session_link(s);
		session_put(s); /* the loader's reference */
		s->host =
		    host_find(s->spec.host[0] ? s->spec.host : HOST_LOCAL);
		if (!s->host) {
			/* Its host was removed behind tenkid's back. */
			s->host = host_local();
			if (!session_final(s))
				session_fail(s, "its host %s is not in hosts/",
					     s->spec.host);
		}
		host_get(s->host);
	}
	pthread_mutex_unlock(&model_lock);
	/* A snapshot cut short settles its source's disk before the source
	 * is re-attached. */
	snapshots_restore();
	golden_init();
	pthread_mutex_lock(&model_lock);
	for (struct session *s = sessions; s; s = s->next) {
		if (!session_final(s) && !s->host->local) {
			/* Re-attached when its host comes UP. */
			s->host_lost = true;
		} else if (!session_final(s)) {
			s->busy = true;
			reattach_begin(s);
			session_get(s);
			spawn_worker(reattach_worker, s);
		}
		arm_expiry(s);
	}
	pthread_mutex_unlock(&model_lock);
	session_sweep_orphans(vmm);
	templates_restore();
	volumes_restore();
	pool_init();
	hosts_start();
}

void model_shutdown(void)
{
	hosts_shutdown();
	golden_shutdown();
	pool_shutdown();
	pthread_mutex_lock(&model_lock);
	for (struct session *s = sessions; s; s = s->next)
		agent_detach(s);
	pthread_mutex_unlock(&model_lock);
}
