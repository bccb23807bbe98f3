/* Volumes: the model, attach and detach, records.  See volume.h. */
#include "volume.h"
#include "ctlverbs.h"
#include "agent.h"
#include "events.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MOUNT_TIMEOUT_MS  120000 /* mkfs of a large volume under TCG */
#define UMOUNT_TIMEOUT_MS 30000
#define CLOSE_TIMEOUT_MS  5000 /* best-effort unmount before a close */
#define MAX_PER_SESSION	  VMM_MAX_DISKS

static struct volume *volumes;
static pthread_cond_t vol_cond = PTHREAD_COND_INITIALIZER;
static char pool_name[64], pool_dir[600];

/* ---- names, references, records ---------------------------------------- */

const char *vol_state_name(const struct volume *v)
{
	if (v->deleting)
		return "DELETING";
	return v->atts ? "ATTACHED" : "AVAILABLE";
}

struct volume *volume_first(void)
{
	return volumes;
}

/* Including volumes still being made: their names are taken. */
static struct volume *find_any(const char *name_or_id)
{
	for (struct volume *v = volumes; v; v = v->next)
		if (strcmp(v->name, name_or_id) == 0 ||
		    strcmp(v->id, name_or_id) == 0)
			return v;
	return NULL;
}

struct volume *volume_find(const char *name_or_id)
{
	struct volume *v = find_any(name_or_id);

	return v && !v->creating ? v : NULL;
}

void volume_get(struct volume *v)
{
	v->refs++;
}

/* Not inlined: gcc's use-after-free check cannot count references. */
__attribute__((noinline)) void volume_put(struct volume *v)
{
	if (--v->refs > 0)
		return;
	while (v->atts) {
		struct vol_att *a = v->atts;
		v->atts = a->next;
		free(a);
	}
	errlog_free(&v->err);
	free(v);
}

static void link_volume(struct volume *v)
{
	struct volume **pp = &volumes;

	while (*pp)
		pp = &(*pp)->next;
	*pp = v;
	volume_get(v);
	waitq_wake(&root_wq);
}

static void unlink_volume(struct volume *v)
{
	for (struct volume **pp = &volumes; *pp; pp = &(*pp)->next) {
		if (*pp == v) {
			*pp = v->next;
			v->next = NULL;
			v->gone = true;
			waitq_wake(&root_wq);
			waitq_wake(&v->wq);
			volume_put(v);
			return;
		}
	}
}

static void record_dir(const char *id, char *out, size_t n)
{
	snprintf(out, n, "%s/volumes/%s", cfg.state_dir, id);
}

/* The file libvirt keeps the volume in, and its name in the pool. */
static void vol_file(const struct volume *v, char *name, size_t n)
{
	snprintf(name, n, "%s.raw", v->id);
}

static void vol_path(const struct volume *v, char *out, size_t n)
{
	snprintf(out, n, "%s/%s.raw", pool_dir, v->id);
}

/* virtio-blk serials hold 20 bytes: "tk" and 18 hex digits of the id. */
static void vol_serial(const struct volume *v, char *out)
{
	size_t k = 0;

	out[k++] = 't';
	out[k++] = 'k';
	for (const char *p = v->id; *p && k < VMM_SERIAL_MAX; p++)
		if (*p != '-')
			out[k++] = *p;
	out[k] = '\0';
}

void volume_save(struct volume *v)
{
	char dir[600], path[700];
	json_t *atts = json_array();

	for (struct vol_att *a = v->atts; a; a = a->next)
		json_array_append_new(
		    atts, json_pack("{s:s, s:s, s:s, s:b}", "session_id",
				    a->session_id, "session", a->session_name,
				    "mount_path", a->path, "read_only", a->ro));
	json_t *o =
	    json_pack("{s:s, s:s, s:I, s:I, s:o}", "id", v->id, "name", v->name,
		      "size", (json_int_t)v->size, "created_ms",
		      (json_int_t)v->created_ms, "attachments", atts);
	char *txt = o ? json_dumps(o, JSON_INDENT(1)) : NULL;

	json_decref(o);
	record_dir(v->id, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/volume.json", dir);
	if (!txt || mkdir_p(dir, 0700) < 0 ||
	    write_file_atomic(path, txt, strlen(txt), 0600) < 0)
		log_warnx("volume %s: cannot save %s: %s", v->name, path,
			  strerror(errno));
	free(txt);
}

static struct volume *volume_alloc(const char *name, const char *id)
{
	struct volume *v = calloc(1, sizeof(*v));
	char path[700];

	if (!v)
		abort();
	v->refs = 1;
	snprintf(v->name, sizeof(v->name), "%s", name);
	snprintf(v->id, sizeof(v->id), "%s", id);
	waitq_init(&v->wq);
	record_dir(v->id, path, sizeof(path));
	strncat(path, "/err", sizeof(path) - strlen(path) - 1);
	errlog_init(&v->err, path);
	return v;
}

static struct vol_att *att_add(struct volume *v, struct session *s,
			       const char *path, bool ro)
{
	struct vol_att *a = calloc(1, sizeof(*a)), **pp = &v->atts;

	if (!a)
		abort();
	snprintf(a->session_id, sizeof(a->session_id), "%s", s->id);
	snprintf(a->session_name, sizeof(a->session_name), "%s", s->name);
	snprintf(a->path, sizeof(a->path), "%s", path);
	a->ro = ro;
	while (*pp)
		pp = &(*pp)->next;
	*pp = a;
	return a;
}

static void att_del(struct volume *v, struct vol_att *a)
{
	for (struct vol_att **pp = &v->atts; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			free(a);
			return;
		}
	}
}

static struct vol_att *att_of(struct volume *v, const char *session_id)
{
	for (struct vol_att *a = v->atts; a; a = a->next)
		if (strcmp(a->session_id, session_id) == 0)
			return a;
	return NULL;
}

/* Emit a state event when the visible state changed. */
static void state_changed(struct volume *v, const char *old)
{
	const char *now = vol_state_name(v);

	if (strcmp(old, now) != 0) {
		log_info("volume %s: %s -> %s", v->name, old, now);
		event_emit("volume", v->name, v->id, old, now);
	}
	waitq_wake(&v->wq);
}

/* ---- loading ---------------------------------------------------------- */

static struct volume *load_one(const char *id)
{
	char dir[600], path[700];
	json_error_t jerr;
	json_t *o, *atts, *it;
	size_t i;

	record_dir(id, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/volume.json", dir);
	if (!(o = json_load_file(path, 0, &jerr))) {
		log_warnx("%s: %s", path, jerr.text);
		return NULL;
	}
	const char *name = json_string_value(json_object_get(o, "name"));
	const char *vid = json_string_value(json_object_get(o, "id"));
	json_t *size = json_object_get(o, "size");
	if (!name || !vid || !valid_name(name) || strcmp(vid, id) != 0 ||
	    !json_is_integer(size)) {
		log_warnx("%s: not a volume record", path);
		json_decref(o);
		return NULL;
	}
	struct volume *v = volume_alloc(name, id);
	v->size = (uint64_t)json_integer_value(size);
	v->created_ms =
	    (int64_t)json_integer_value(json_object_get(o, "created_ms"));
	atts = json_object_get(o, "attachments");
	json_array_foreach(atts, i, it)
	{
		const char *sid =
		    json_string_value(json_object_get(it, "session_id"));
		const char *sn =
		    json_string_value(json_object_get(it, "session"));
		const char *mp =
		    json_string_value(json_object_get(it, "mount_path"));
		if (!sid || !sn || !mp)
			continue;
		struct vol_att *a = calloc(1, sizeof(*a)), **pp = &v->atts;
		if (!a)
			abort();
		snprintf(a->session_id, sizeof(a->session_id), "%s", sid);
		snprintf(a->session_name, sizeof(a->session_name), "%s", sn);
		snprintf(a->path, sizeof(a->path), "%s", mp);
		a->ro = json_is_true(json_object_get(it, "read_only"));
		a->mounted = true;
		while (*pp)
			pp = &(*pp)->next;
		*pp = a;
	}
	json_decref(o);
	return v;
}

static void pool_init(void)
{
	uint32_t h = 2166136261u;

	for (const char *p = cfg.state_dir; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	snprintf(pool_name, sizeof(pool_name), "tenki-%08x-volumes", h);
	snprintf(pool_dir, sizeof(pool_dir), "%s/volume-pool", cfg.state_dir);
}

static int pool_ensure(char *err)
{
	if (mkdir_p(pool_dir, 0711) < 0) {
		snprintf(err, VMM_ERRLEN, "%s: %s", pool_dir, strerror(errno));
		return -1;
	}
	return vmm_pool_ensure(vmm, pool_name, pool_dir, err);
}

int volumes_init(void)
{
	char dir[600], err[VMM_ERRLEN];
	struct dirent *de;
	DIR *d;

	pool_init();
	snprintf(dir, sizeof(dir), "%s/volumes", cfg.state_dir);
	if (mkdir_p(dir, 0700) < 0)
		return -1;
	if (!(d = opendir(dir)))
		return -1;
	while ((de = readdir(d))) {
		struct volume *v;
		if (de->d_name[0] == '.' || strlen(de->d_name) != UUID_LEN)
			continue;
		if (!(v = load_one(de->d_name)))
			continue;
		if (find_any(v->name)) {
			log_warnx("volume %s: a second record %s, skipped",
				  v->name, v->id);
			volume_put(v);
			continue;
		}
		link_volume(v);
		volume_put(v);
	}
	closedir(d);
	/* The pool is made with the first volume; after a restart, make
	 * sure libvirt still has it (undefined by hand, libvirtd reset). */
	if (volumes && vmm && pool_ensure(err) < 0)
		log_warnx("volumes: %s (retried at the next create)", err);
	return 0;
}

struct att_probe {
	struct volume *v;
	char session_id[UUID_LEN + 1];
	char domname[64];
	char path[600];
	struct att_probe *next;
};

/*
 * After a restart, an attachment stands only if its session is alive and
 * its domain still has the disk (a crash may have come between libvirt's
 * answer and the record).
 */
void volumes_restore(void)
{
	struct att_probe *probes = NULL;
	char err[VMM_ERRLEN];

	pthread_mutex_lock(&model_lock);
	for (struct volume *v = volumes; v; v = v->next) {
		const char *old = vol_state_name(v);
		bool changed = false;
		for (struct vol_att *a = v->atts, *next; a; a = next) {
			struct session *s = session_find(a->session_id);
			next = a->next;
			if (!s || session_final(s) ||
			    s->state == S_TERMINATING) {
				log_info("volume %s: session %s is gone: "
					 "detached",
					 v->name, a->session_name);
				att_del(v, a);
				changed = true;
				continue;
			}
			/* A boot cut short by the restart: mount again when
			 * the agent answers (vol_mount is idempotent). */
			if (s->state == S_CREATING)
				a->mounted = false;
			struct att_probe *p = calloc(1, sizeof(*p));
			if (!p)
				abort();
			p->v = v;
			volume_get(v);
			snprintf(p->session_id, sizeof(p->session_id), "%s",
				 s->id);
			snprintf(p->domname, sizeof(p->domname), "%s",
				 s->domname);
			vol_path(v, p->path, sizeof(p->path));
			p->next = probes;
			probes = p;
		}
		if (changed) {
			volume_save(v);
			state_changed(v, old);
		}
	}
	pthread_mutex_unlock(&model_lock);
	while (probes) {
		struct att_probe *p = probes;
		int there = vmm_disk_attached(vmm, p->domname, p->path, err);
		probes = p->next;
		pthread_mutex_lock(&model_lock);
		struct vol_att *a = att_of(p->v, p->session_id);
		if (there == 0 && a && !p->v->gone) {
			const char *old = vol_state_name(p->v);
			log_info("volume %s: %s has no such disk: detached",
				 p->v->name, p->domname);
			att_del(p->v, a);
			volume_save(p->v);
			state_changed(p->v, old);
		} else if (there < 0) {
			log_warnx("volume %s: %s", p->v->name, err);
		}
		volume_put(p->v);
		pthread_mutex_unlock(&model_lock);
		free(p);
	}
}

/* ---- create, delete, resize ---------------------------------------------- */

static void wait_vol(struct volume *v)
{
	while (v->busy)
		pthread_cond_wait(&vol_cond, &model_lock);
}

static void vol_done(struct volume *v)
{
	v->busy = false;
	pthread_cond_broadcast(&vol_cond);
	waitq_wake(&v->wq);
}

int volume_create(const struct vol_spec *vs, struct volume **out)
{
	char id[UUID_LEN + 1], file[64], err[VMM_ERRLEN];
	const char *name = vs->name;
	uint64_t size = vs->size;
	int rc;

	if (!size) {
		struct sess_spec sp;
		char why[SPEC_WHY_LEN];
		spec_init(&sp);
		if (defaults_text && spec_apply(&sp, defaults_text,
						strlen(defaults_text), why) < 0)
			log_warnx("defaults: %s", why);
		size = sp.volume_size;
		spec_free(&sp);
	}
	if (find_any(name))
		return refuse(&volumes_err, EEXIST, name,
			      "a volume named %s exists", name);
	uuid_new(id);
	struct volume *v = volume_alloc(name, id);
	v->size = size;
	v->created_ms = now_ms();
	v->creating = true;
	link_volume(v);
	vol_file(v, file, sizeof(file));
	pthread_mutex_unlock(&model_lock);
	rc = pool_ensure(err);
	if (rc == 0)
		rc = vmm_vol_create(vmm, pool_name, file, size, err);
	pthread_mutex_lock(&model_lock);
	if (rc < 0) {
		unlink_volume(v);
		volume_put(v);
		return refuse(&volumes_err, EIO, name, "create failed: %s",
			      err);
	}
	v->creating = false;
	volume_save(v);
	log_info("volume %s: made (%llu bytes)", v->name,
		 (unsigned long long)v->size);
	event_emit("volume", v->name, v->id, NULL, "AVAILABLE");
	*out = v;
	volume_put(v); /* volume_alloc's: the list holds v */
	return 0;
}

int volume_remove(struct volume *v)
{
	char file[64], err[VMM_ERRLEN], dir[600];
	int rc;

	volume_get(v);
	wait_vol(v);
	if (v->gone) {
		rc = -ENOENT;
		goto out;
	}
	if (v->atts) {
		rc = refuse(&v->err, EBUSY, v->name,
			    "attached to session %s at %s: detach it first",
			    v->atts->session_name, v->atts->path);
		goto out;
	}
	v->busy = true;
	v->deleting = true;
	state_changed(v, "AVAILABLE");
	vol_file(v, file, sizeof(file));
	pthread_mutex_unlock(&model_lock);
	rc = vmm_vol_delete(vmm, pool_name, file, err);
	pthread_mutex_lock(&model_lock);
	if (rc < 0) {
		v->deleting = false;
		vol_done(v);
		state_changed(v, "DELETING");
		rc = refuse(&v->err, EIO, v->name, "delete failed: %s", err);
		goto out;
	}
	record_dir(v->id, dir, sizeof(dir));
	if (remove_tree(dir) < 0)
		log_warnx("volume %s: cannot remove %s", v->name, dir);
	log_info("volume %s: deleted", v->name);
	event_emit("volume", v->name, v->id, "DELETING", "DELETED");
	vol_done(v);
	unlink_volume(v);
	rc = 0;
out:
	volume_put(v);
	return rc;
}

int volume_check_size(struct volume *v, const char *text, size_t len,
		      uint64_t *bytes)
{
	char val[64], why[SPEC_WHY_LEN];

	while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
		len--;
	if (len == 0 || len >= sizeof(val) || memchr(text, '\n', len))
		return refuse(&v->err, EINVAL, v->name,
			      "size: one size expected (1M..100G)");
	memcpy(val, text, len);
	val[len] = '\0';
	if (spec_volume_size("size", val, bytes, why) < 0)
		return refuse(&v->err, EINVAL, v->name, "%s", why);
	if (*bytes < v->size)
		return refuse(&v->err, EINVAL, v->name,
			      "size: %s is smaller than the volume's %llu "
			      "bytes; volumes only grow",
			      val, (unsigned long long)v->size);
	return 0;
}

int volume_set_size(struct volume *v, const char *text, size_t len)
{
	char file[64], err[VMM_ERRLEN];
	uint64_t bytes;
	int rc;

	volume_get(v);
	wait_vol(v);
	if ((rc = volume_check_size(v, text, len, &bytes)) < 0 ||
	    bytes == v->size)
		goto out;
	if (v->gone || v->deleting) {
		rc = refuse(&v->err, ENOENT, v->name, "size: being deleted");
		goto out;
	}
	v->busy = true;
	vol_file(v, file, sizeof(file));
	pthread_mutex_unlock(&model_lock);
	rc = vmm_vol_resize(vmm, pool_name, file, bytes, err);
	pthread_mutex_lock(&model_lock);
	vol_done(v);
	if (rc < 0) {
		rc = refuse(&v->err, EIO, v->name, "resize failed: %s", err);
		goto out;
	}
	log_info("volume %s: grown from %llu to %llu bytes", v->name,
		 (unsigned long long)v->size, (unsigned long long)bytes);
	v->size = bytes;
	volume_save(v);
	rc = 0;
out:
	volume_put(v);
	return rc;
}

/* ---- talking to the guest ------------------------------------------------ */

struct call {
	bool done;
	int err;
	char text[300];
};

static void call_done(struct session *s, json_t *resp, int err,
		      const char *text, void *arg)
{
	struct call *c = arg;

	c->err = err;
	snprintf(c->text, sizeof(c->text), "%s", text ? text : "");
	c->done = true;
	pthread_cond_broadcast(&vol_cond);
}

/* Send req and wait for the answer (model_lock dropped meanwhile): 0, or
 * the errno with the guest's reason in c->text. */
static int agent_call(struct session *s, json_t *req, int64_t timeout_ms,
		      struct call *c)
{
	memset(c, 0, sizeof(*c));
	if (!s->conn || !s->agent_up) {
		json_decref(req);
		snprintf(c->text, sizeof(c->text),
			 "the guest agent is not connected");
		return c->err = EIO;
	}
	if (agent_request(s, req, call_done, c, timeout_ms) < 0) {
		snprintf(c->text, sizeof(c->text),
			 "the guest agent takes no more requests");
		return c->err = EIO;
	}
	while (!c->done)
		pthread_cond_wait(&vol_cond, &model_lock);
	return c->err;
}

static int guest_mount(struct session *s, struct volume *v, const char *path,
		       bool ro, struct call *c)
{
	char serial[VMM_SERIAL_MAX + 1];

	vol_serial(v, serial);
	return agent_call(s,
			  json_pack("{s:s, s:s, s:s, s:b}", "op", "vol_mount",
				    "serial", serial, "path", path, "ro", ro),
			  MOUNT_TIMEOUT_MS, c);
}

static int guest_umount_at(struct session *s, const char *serial,
			   const char *path, bool lazy, int64_t timeout_ms,
			   struct call *c)
{
	return agent_call(s,
			  json_pack("{s:s, s:s, s:s, s:b}", "op", "vol_umount",
				    "serial", serial, "path", path, "lazy",
				    lazy),
			  timeout_ms, c);
}

static int guest_umount(struct session *s, struct volume *v, const char *path,
			int64_t timeout_ms, struct call *c)
{
	char serial[VMM_SERIAL_MAX + 1];

	vol_serial(v, serial);
	return guest_umount_at(s, serial, path, false, timeout_ms, c);
}

/* The guest's errno, if the table has it; else EIO. */
static int table_errno(int e)
{
	switch (e) {
	case EINVAL:
	case EBUSY:
	case ENOSPC:
	case ETIMEDOUT:
	case EACCES:
	case ENOENT:
		return e;
	default:
		return EIO;
	}
}

/* ---- attach and detach ----------------------------------------------------
 */

/*
 * A running VM takes disks on the PCIe ports its domain was made with:
 * a cold-booted one has one for each volume= key and the spare ones; a
 * restored one the spare ones of the saved machine, which its volume=
 * keys took.
 */
static int session_disk_room(const struct session *s)
{
	bool cold = !s->boot || strcmp(s->boot, "cold") == 0;

	return (cold ? (int)s->spec.nvolumes : 0) + VMM_HOTPLUG_DISKS;
}

/* Another volume of s mounted at path, or s over its disk limit. */
static int check_session_room(struct session *s, const struct volume *self,
			      const char *path, int *err, char *why, size_t n)
{
	int count = 0;

	for (struct volume *o = volumes; o; o = o->next) {
		for (struct vol_att *a = o->atts; a; a = a->next) {
			if (strcmp(a->session_id, s->id) != 0)
				continue;
			count++;
			if (o != self && strcmp(a->path, path) == 0) {
				*err = EBUSY;
				snprintf(why, n,
					 "volume %s is mounted at %s in "
					 "session %s",
					 o->name, path, s->name);
				return -1;
			}
		}
	}
	int room = session_disk_room(s);
	if (room > MAX_PER_SESSION)
		room = MAX_PER_SESSION;
	if (count >= room) {
		*err = ENOSPC;
		snprintf(why, n,
			 "session %s has %d volumes, the most its VM has "
			 "hot-plug ports for",
			 s->name, count);
		return -1;
	}
	return 0;
}

/*
 * ext4 is not a cluster filesystem: one writer and nobody else, or any
 * number of readers that mount it read-only without replaying the journal
 * (noload), so none of them writes a byte.
 */
static int check_sharing(const struct volume *v, const struct session *s,
			 bool ro, char *why, size_t n)
{
	for (const struct vol_att *a = v->atts; a; a = a->next) {
		if (strcmp(a->session_id, s->id) == 0) {
			snprintf(why, n,
				 "volume %s is already attached to %s at %s",
				 v->name, s->name, a->path);
			return -1;
		}
		if (!a->ro) {
			snprintf(why, n,
				 "volume %s is attached read-write to session "
				 "%s: ext4 allows no other user meanwhile",
				 v->name, a->session_name);
			return -1;
		}
		if (!ro) {
			snprintf(why, n,
				 "volume %s is attached read-only to session "
				 "%s: a read-write attach needs it unattached",
				 v->name, a->session_name);
			return -1;
		}
	}
	return 0;
}

/* Checks common to live attach and attach at create. */
static int check_attach(struct volume *v, struct session *s, const char *path,
			bool ro, char *why, size_t n)
{
	int err;

	if (spec_check_mount_path(path, why, n) < 0)
		return EINVAL;
	if (v->deleting) {
		snprintf(why, n, "volume %s is being deleted", v->name);
		return EBUSY;
	}
	if (check_sharing(v, s, ro, why, n) < 0)
		return EBUSY;
	if (check_session_room(s, v, path, &err, why, n) < 0)
		return err;
	return 0;
}

/* s and v are referenced by the caller; model_lock held once. */
static int do_attach(struct volume *v, struct session *s, const char *path,
		     bool ro, struct errlog *log, const char *obj)
{
	char why[400], err[VMM_ERRLEN], dpath[600];
	char serial[VMM_SERIAL_MAX + 1];
	struct vmm_disk disk;
	struct call c;
	int e, rc;

	if ((rc = session_local_only(s, log, obj, "attach")) < 0)
		return rc;
	session_wait_idle(s);
	wait_vol(v);
	if (v->gone)
		return refuse(log, ENOENT, obj, "volume %s was deleted",
			      v->name);
	if (s->gone || !session_usable(s))
		return refuse(log, EBUSY, obj,
			      "attach: session %s is %s (volumes attach to "
			      "READY or RUNNING sessions)",
			      s->name, sess_state_name(s->state));
	if ((e = check_attach(v, s, path, ro, why, sizeof(why))) != 0)
		return refuse(log, e, obj, "attach: %s", why);

	const char *old = vol_state_name(v);
	struct vol_att *a = att_add(v, s, path, ro);
	session_op_begin(s);
	v->busy = true;
	/* Recorded before libvirt acts: after a crash in between, the
	 * restart asks libvirt whether the disk is there. */
	volume_save(v);
	state_changed(v, old);
	vol_path(v, dpath, sizeof(dpath));
	vol_serial(v, serial);
	disk = (struct vmm_disk){dpath, serial, ro};
	pthread_mutex_unlock(&model_lock);
	rc = vmm_attach_disk(vmm, s->domname, &disk, err);
	pthread_mutex_lock(&model_lock);
	if (rc < 0) {
		e = EIO;
		snprintf(why, sizeof(why), "attach: %s", err);
		goto undo;
	}
	if ((e = guest_mount(s, v, path, ro, &c)) != 0) {
		e = table_errno(e);
		snprintf(why, sizeof(why), "attach: mount in the guest: %s",
			 c.text);
		pthread_mutex_unlock(&model_lock);
		if (vmm_detach_disk(vmm, s->domname, dpath, err) < 0)
			log_warnx("volume %s: %s", v->name, err);
		pthread_mutex_lock(&model_lock);
		goto undo;
	}
	a->mounted = true;
	volume_save(v);
	log_info("volume %s: attached to %s at %s (%s)", v->name, s->name, path,
		 ro ? "ro" : "rw");
	vol_done(v);
	session_op_end(s);
	return 0;
undo:
	att_del(v, a);
	volume_save(v);
	vol_done(v);
	session_op_end(s);
	state_changed(v, "ATTACHED");
	return refuse(log, e, obj, "%s", why);
}

static int do_detach(struct volume *v, struct session *s, struct errlog *log,
		     const char *obj)
{
	char err[VMM_ERRLEN], dpath[600];
	struct vol_att *a;
	struct call c;
	int e, rc;

	session_wait_idle(s);
	wait_vol(v);
	if (!(a = att_of(v, s->id)))
		return refuse(log, ENOENT, obj,
			      "detach: volume %s is not attached to %s",
			      v->name, s->name);
	if (!session_usable(s))
		return refuse(log, EBUSY, obj, "detach: session %s is %s",
			      s->name, sess_state_name(s->state));
	session_op_begin(s);
	v->busy = true;
	if ((e = guest_umount(s, v, a->path, UMOUNT_TIMEOUT_MS, &c)) != 0) {
		vol_done(v);
		session_op_end(s);
		if (e == EBUSY)
			return refuse(log, EBUSY, obj,
				      "detach: %s is in use in session %s: "
				      "%s",
				      a->path, s->name, c.text);
		return refuse(log, table_errno(e), obj,
			      "detach: unmount in the guest: %s", c.text);
	}
	a->mounted = false;
	vol_path(v, dpath, sizeof(dpath));
	pthread_mutex_unlock(&model_lock);
	rc = vmm_detach_disk(vmm, s->domname, dpath, err);
	pthread_mutex_lock(&model_lock);
	vol_done(v);
	session_op_end(s);
	if (rc < 0)
		return refuse(log, EIO, obj, "detach: %s", err);
	log_info("volume %s: detached from %s", v->name, s->name);
	att_del(v, a);
	volume_save(v);
	state_changed(v, "ATTACHED");
	return 0;
}

/* ---- ctl verbs ------------------------------------------------------------
 */

int volume_session_verb(struct session *s, const struct vol_verb *vv)
{
	struct volume *v = volume_find(vv->target);
	int rc;

	if (!v)
		return refuse(&s->err, ENOENT, s->name, "%s: no volume %s",
			      vv->attach ? "attach" : "detach", vv->target);
	volume_get(v);
	rc = vv->attach ? do_attach(v, s, vv->path, vv->ro, &s->err, s->name)
			: do_detach(v, s, &s->err, s->name);
	volume_put(v);
	return rc;
}

/* detach with no session: from every session it is attached to. */
static int detach_all(struct volume *v)
{
	int rc = 0;

	while (rc == 0 && v->atts) {
		struct session *s = session_find(v->atts->session_id);
		if (!s) {
			att_del(v, v->atts);
			volume_save(v);
			continue;
		}
		session_get(s);
		rc = do_detach(v, s, &v->err, v->name);
		session_put(s);
	}
	return rc;
}

int volume_ctl(struct volume *v, const char *text, size_t len)
{
	struct ctl_call calls[CTL_MAX_VERBS];
	char why[CTL_WHY_LEN];
	int n, rc = 0;

	if (ctl_parse(CTL_VOLUME, text, len, calls, &n, why) < 0)
		return refuse(&v->err, EINVAL, v->name, "ctl: %s", why);
	volume_get(v);
	for (int i = 0; i < n && rc == 0; i++) {
		struct session *s = NULL;
		if (calls[i].vol.target[0] &&
		    !(s = session_find(calls[i].vol.target))) {
			rc = refuse(&v->err, ENOENT, v->name,
				    "ctl: no session %s", calls[i].vol.target);
			break;
		}
		if (!s) {
			rc = detach_all(v);
			continue;
		}
		session_get(s);
		rc = calls[i].vol.attach
			 ? do_attach(v, s, calls[i].vol.path, calls[i].vol.ro,
				     &v->err, v->name)
			 : do_detach(v, s, &v->err, v->name);
		session_put(s);
	}
	volume_put(v);
	return rc;
}

/* ---- records ---------------------------------------------------------- */

char *volume_info_json(struct volume *v)
{
	char t[32];
	json_t *o = json_object(), *atts = json_array();

	fmt_time(v->created_ms, t);
	json_object_set_new(o, "id", json_string(v->id));
	json_object_set_new(o, "name", json_string(v->name));
	json_object_set_new(o, "size", json_integer((json_int_t)v->size));
	json_object_set_new(o, "state", json_string(vol_state_name(v)));
	json_object_set_new(o, "created_at", json_string(t));
	json_object_set_new(o, "format", json_string("raw"));
	json_object_set_new(o, "filesystem", json_string("ext4"));
	for (struct vol_att *a = v->atts; a; a = a->next)
		json_array_append_new(
		    atts,
		    json_pack("{s:s, s:s, s:s, s:b}", "session",
			      a->session_name, "session_id", a->session_id,
			      "mount_path", a->path, "read_only", a->ro));
	/* The first attachment also at the top (the only one unless the
	 * volume is shared read-only). */
	struct vol_att *a = v->atts;
	json_object_set_new(o, "session",
			    a ? json_string(a->session_name) : json_null());
	json_object_set_new(o, "mount_path",
			    a ? json_string(a->path) : json_null());
	json_object_set_new(o, "read_only", json_boolean(a && a->ro));
	json_object_set_new(o, "attachments", atts);
	return json_dump_line(o, JSON_INDENT(1));
}

/* ---- the session side ------------------------------------------------------
 */

int volumes_check_spec(const struct sess_spec *sp, char *why, size_t n)
{
	for (size_t i = 0; i < sp->nvolumes; i++) {
		const struct spec_volume *sv = &sp->volumes[i];
		struct volume *v = volume_find(sv->volume);
		if (!v) {
			snprintf(why, n, "volume=%s: no such volume",
				 sv->volume);
			return -ENOENT;
		}
		if (spec_check_mount_path(sv->path, why, n) < 0)
			return -EINVAL;
		if (v->deleting) {
			snprintf(why, n, "volume %s is being deleted", v->name);
			return -EBUSY;
		}
		for (const struct vol_att *a = v->atts; a; a = a->next) {
			if (!a->ro || !sv->ro) {
				snprintf(
				    why, n,
				    "volume %s is attached %s to session "
				    "%s%s",
				    v->name, a->ro ? "read-only" : "read-write",
				    a->session_name,
				    a->ro ? ": a read-write attach needs it "
					    "unattached"
					  : ": ext4 allows no other user "
					    "meanwhile");
				return -EBUSY;
			}
		}
		for (size_t k = 0; k < i; k++) {
			const struct spec_volume *o = &sp->volumes[k];
			if (strcmp(o->path, sv->path) == 0 ||
			    volume_find(o->volume) == v) {
				snprintf(why, n,
					 "volume=%s:%s: that volume or path "
					 "is given twice",
					 sv->volume, sv->path);
				return -EINVAL;
			}
		}
	}
	return 0;
}

void volumes_reserve(struct session *s)
{
	for (size_t i = 0; i < s->spec.nvolumes; i++) {
		const struct spec_volume *sv = &s->spec.volumes[i];
		struct volume *v = volume_find(sv->volume);
		if (!v)
			continue;
		const char *old = vol_state_name(v);
		att_add(v, s, sv->path, sv->ro);
		volume_save(v);
		state_changed(v, old);
	}
}

void volumes_boot_disks(struct session *s, struct vol_boot_disks *out)
{
	out->n = 0;
	for (struct volume *v = volumes; v; v = v->next) {
		struct vol_att *a = att_of(v, s->id);
		if (!a || out->n == VMM_MAX_DISKS)
			continue;
		unsigned i = out->n++;
		vol_path(v, out->path[i], sizeof(out->path[i]));
		vol_serial(v, out->serial[i]);
		out->d[i] =
		    (struct vmm_disk){out->path[i], out->serial[i], a->ro};
		a->plugged = true;
	}
}

/* Hot-plug v's disk into the creating session s (model_lock dropped
 * meanwhile): 0, or -1 with the reason in why. */
static int boot_plug(struct session *s, struct volume *v, bool ro, char *why,
		     size_t n)
{
	char dpath[600], serial[VMM_SERIAL_MAX + 1], err[VMM_ERRLEN];
	struct vmm_disk disk;
	int rc;

	vol_path(v, dpath, sizeof(dpath));
	vol_serial(v, serial);
	disk = (struct vmm_disk){dpath, serial, ro};
	pthread_mutex_unlock(&model_lock);
	rc = vmm_attach_disk(vmm, s->domname, &disk, err);
	pthread_mutex_lock(&model_lock);
	if (rc < 0)
		snprintf(why, n, "volume %s: %s", v->name, err);
	return rc;
}

/* Unplug one stand-in (model_lock dropped meanwhile). */
static int unplug_stand_in(struct session *s, const char *path, char *why,
			   size_t n)
{
	char err[VMM_ERRLEN];
	int rc;

	pthread_mutex_unlock(&model_lock);
	rc = vmm_detach_disk(vmm, s->domname, path, err);
	pthread_mutex_lock(&model_lock);
	if (rc < 0)
		snprintf(why, n, "unplugging a left-out volume: %s", err);
	else
		unlink(path);
	return rc;
}

/*
 * A copy of a snapshot taken with volumes attached still has them
 * mounted, on blank stand-ins (vmm_restore_prepare): unmount them in the
 * guest, lazily (its processes may hold them, and nothing of theirs is
 * worth keeping), then unplug the stand-ins, before READY.
 */
static void drop_left_out(struct session *s, char *why, size_t n)
{
	json_t *lo = s->left_out, *e;
	char dir[600], path[700];
	struct call c;
	size_t i;

	s->left_out = NULL;
	json_array_foreach(lo, i, e)
	{
		const char *p =
		    json_string_value(json_object_get(e, "mount_path"));
		const char *serial =
		    json_string_value(json_object_get(e, "serial"));
		if (s->gone || !p || !serial)
			continue;
		if (guest_umount_at(s, serial, p, true, UMOUNT_TIMEOUT_MS, &c))
			log_info("session %s: unmount of left-out %s: %s",
				 s->name, p, c.text);
	}
	json_decref(lo);
	snprintf(dir, sizeof(dir), "%s", s->dir);
	for (char t = 'b'; t <= 'z' && !why[0] && !s->gone; t++) {
		char target[4] = {'v', 'd', t, '\0'};
		vmm_stand_in_path(dir, target, path, sizeof(path));
		if (access(path, F_OK) == 0)
			unplug_stand_in(s, path, why, n);
	}
}

static void *boot_worker(void *arg)
{
	struct session *s = arg;
	struct volume *v, *next;
	char why[400] = "", path[256];
	struct call c;

	pthread_mutex_lock(&model_lock);
	if (s->left_out)
		drop_left_out(s, why, sizeof(why));
	for (v = volumes; v && !why[0] && !s->gone; v = next) {
		struct vol_att *a = att_of(v, s->id);
		next = v->next;
		if (!a || !a->mounting)
			continue;
		volume_get(v);
		snprintf(path, sizeof(path), "%s", a->path);
		bool ro = a->ro, plugged = a->plugged;
		if (!plugged && boot_plug(s, v, ro, why, sizeof(why)) == 0 &&
		    (a = att_of(v, s->id)))
			a->plugged = plugged = true;
		if (plugged && guest_mount(s, v, path, ro, &c) != 0)
			snprintf(why, sizeof(why),
				 "volume %s: mount at %s in the guest: %s",
				 v->name, path, c.text);
		if ((a = att_of(v, s->id))) {
			a->mounting = false;
			a->mounted = !why[0];
		}
		/* The list may have changed while the lock was dropped. */
		next = v->gone ? volumes : v->next;
		volume_put(v);
	}
	for (v = volumes; v; v = v->next) {
		struct vol_att *a = att_of(v, s->id);
		if (a)
			a->mounting = false;
	}
	s->volumes_booting = false;
	if (!s->gone && s->state == S_CREATING) {
		if (why[0])
			session_fail(s, "%s", why);
		else
			session_agent_ready(s);
	}
	session_put(s);
	pthread_mutex_unlock(&model_lock);
	return NULL;
}

bool volumes_boot_mount(struct session *s)
{
	bool pending = s->left_out != NULL;

	if (s->volumes_booting)
		return true;

	for (struct volume *v = volumes; v; v = v->next) {
		struct vol_att *a = att_of(v, s->id);
		if (a && a->mounting)
			return true; /* the boot worker is at it */
		if (a && !a->mounted)
			pending = true;
	}
	if (!pending)
		return false;
	for (struct volume *v = volumes; v; v = v->next) {
		struct vol_att *a = att_of(v, s->id);
		if (a && !a->mounted)
			a->mounting = true;
	}
	s->volumes_booting = true;
	session_get(s);
	spawn_worker(boot_worker, s);
	return true;
}

void volumes_session_closing(struct session *s)
{
	struct volume *v, *next;
	char path[256];
	struct call c;

	for (v = volumes; v; v = next) {
		struct vol_att *a = att_of(v, s->id);
		next = v->next;
		if (!a || !a->mounted || !s->agent_up)
			continue;
		a->mounted = false;
		snprintf(path, sizeof(path), "%s", a->path);
		volume_get(v);
		if (guest_umount(s, v, path, CLOSE_TIMEOUT_MS, &c) != 0)
			log_info("volume %s: unmount at close of %s: %s",
				 v->name, s->name, c.text);
		next = v->gone ? volumes : v->next;
		volume_put(v);
	}
}

void volumes_session_closed(struct session *s)
{
	for (struct volume *v = volumes; v; v = v->next) {
		struct vol_att *a = att_of(v, s->id);
		if (!a)
			continue;
		log_info("volume %s: detached from %s (session ended)", v->name,
			 s->name);
		att_del(v, a);
		volume_save(v);
		state_changed(v, "ATTACHED");
	}
}

json_t *volumes_left_out(struct session *s)
{
	char serial[VMM_SERIAL_MAX + 1];
	json_t *arr = json_array();

	for (struct volume *v = volumes; v; v = v->next) {
		struct vol_att *a = att_of(v, s->id);
		if (!a)
			continue;
		vol_serial(v, serial);
		json_array_append_new(
		    arr, json_pack("{s:s, s:s, s:s}", "name", v->name,
				   "mount_path", a->path, "serial", serial));
	}
	if (json_array_size(arr) == 0) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

json_t *volumes_left_out_check(json_t *arr)
{
	json_t *out = json_array(), *e;
	char why[200];
	size_t i;

	json_array_foreach(arr, i, e)
	{
		const char *name =
		    json_string_value(json_object_get(e, "name"));
		const char *path =
		    json_string_value(json_object_get(e, "mount_path"));
		const char *serial =
		    json_string_value(json_object_get(e, "serial"));
		if (name && path && serial &&
		    strlen(serial) <= VMM_SERIAL_MAX &&
		    spec_check_mount_path(path, why, sizeof(why)) == 0 &&
		    json_array_size(out) < VMM_MAX_DISKS)
			json_array_append(out, e);
	}
	if (json_array_size(out) == 0) {
		json_decref(out);
		return NULL;
	}
	return out;
}

char *volumes_session_text(struct session *s)
{
	struct buf b = {0};

	buf_add(&b, "", 0);
	for (struct volume *v = volumes; v; v = v->next) {
		struct vol_att *a = att_of(v, s->id);
		if (a)
			buf_printf(&b, "%s %s %s\n", v->name, a->path,
				   a->ro ? "ro" : "rw");
	}
	return b.data;
}

json_t *volumes_session_json(struct session *s)
{
	json_t *arr = json_array();

	for (struct volume *v = volumes; v; v = v->next) {
		struct vol_att *a = att_of(v, s->id);
		if (a)
			json_array_append_new(
			    arr, json_pack("{s:s, s:s, s:s, s:b}", "volume_id",
					   v->id, "name", v->name, "mount_path",
					   a->path, "read_only", a->ro));
	}
	return arr;
}
