/* Snapshots: live capture, records, ttl, removal.  See snapshot.h. */
#include "snapshot.h"
#include "events.h"
#include "log.h"
#include "vmm.h"
#include "volume.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct snapshot *snapshots;

static const char *state_names[] = {"CREATING", "READY", "FAILED", "DELETING",
				    "DELETED"};

const char *snap_state_name(enum snap_state st)
{
	return state_names[st];
}

/* ---- references and lookup ----------------------------------------- */

void snapshot_get(struct snapshot *sn)
{
	sn->refs++;
}

void snapshot_put(struct snapshot *sn)
{
	if (--sn->refs > 0)
		return;
	errlog_free(&sn->err);
	json_decref(sn->left_out);
	free(sn->reason);
	free(sn);
}

struct snapshot *snapshot_first(void)
{
	return snapshots;
}

struct snapshot *snapshot_find(const char *name_or_id)
{
	for (struct snapshot *sn = snapshots; sn; sn = sn->next)
		if (strcmp(sn->name, name_or_id) == 0 ||
		    strcmp(sn->id, name_or_id) == 0)
			return sn;
	return NULL;
}

static void snap_link(struct snapshot *sn)
{
	struct snapshot **pp = &snapshots;

	while (*pp)
		pp = &(*pp)->next;
	*pp = sn;
	snapshot_get(sn);
	waitq_wake(&root_wq);
}

static void snap_unlink(struct snapshot *sn)
{
	for (struct snapshot **pp = &snapshots; *pp; pp = &(*pp)->next) {
		if (*pp == sn) {
			*pp = sn->next;
			sn->next = NULL;
			sn->gone = true;
			waitq_wake(&root_wq);
			snapshot_put(sn);
			return;
		}
	}
}

/* ---- records ----------------------------------------------------------- */

static void snap_path(const struct snapshot *sn, const char *file, char *out,
		      size_t n)
{
	snprintf(out, n, "%s/%s", sn->dir, file);
}

static json_t *snap_json(const struct snapshot *sn)
{
	json_t *o = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:i, s:b, s:s, "
	    "s:i}",
	    "id", sn->id, "name", sn->name, "state", snap_state_name(sn->state),
	    "source", sn->source, "source_id", sn->source_id, "created_ms",
	    (json_int_t)sn->created_ms, "expires_ms",
	    (json_int_t)sn->expires_ms, "size_bytes",
	    (json_int_t)sn->size_bytes, "cpu_cores", (int)sn->cpu_cores,
	    "memory_mb", (int)sn->memory_mb, "network", sn->network, "image",
	    sn->image, "next_chan", (int)sn->next_chan);

	if (o && sn->reason)
		json_object_set_new(o, "reason", json_string(sn->reason));
	if (o && sn->left_out)
		json_object_set(o, "volumes_left_out", sn->left_out);
	return o;
}

static void snap_save(struct snapshot *sn)
{
	char path[600], *txt;
	json_t *o = snap_json(sn);

	if (!o)
		return;
	txt = json_dumps(o, JSON_INDENT(1));
	json_decref(o);
	snap_path(sn, "snapshot.json", path, sizeof(path));
	if (!txt || write_file_replace(path, txt, strlen(txt), 0600) < 0)
		log_warnx("%s: %s", path, strerror(errno));
	free(txt);
}

static void snap_set_state(struct snapshot *sn, enum snap_state st)
{
	if (st == sn->state)
		return;
	log_info("snapshot %s: %s -> %s", sn->name, snap_state_name(sn->state),
		 snap_state_name(st));
	event_emit("snapshot", sn->name, sn->id, snap_state_name(sn->state),
		   snap_state_name(st));
	sn->state = st;
	if (st != SN_DELETED)
		snap_save(sn);
	waitq_wake(&sn->wq);
}

char *snapshot_info_json(struct snapshot *sn)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_string(sn->id));
	json_object_set_new(o, "name", json_string(sn->name));
	json_object_set_new(o, "state",
			    json_string(snap_state_name(sn->state)));
	json_object_set_new(o, "source_session", json_string(sn->source));
	json_object_set_new(o, "source_session_id", json_string(sn->source_id));
	json_object_set_new(o, "created_at", json_time(sn->created_ms));
	json_object_set_new(o, "expires_at", json_time(sn->expires_ms));
	json_object_set_new(o, "size_bytes",
			    json_integer((json_int_t)sn->size_bytes));
	json_object_set_new(o, "cpu_cores", json_integer(sn->cpu_cores));
	json_object_set_new(o, "memory_mb", json_integer(sn->memory_mb));
	json_object_set_new(o, "image", json_string(sn->image));
	json_t *lo = json_array();
	for (size_t i = 0; sn->left_out && i < json_array_size(sn->left_out);
	     i++) {
		json_t *e = json_array_get(sn->left_out, i);
		json_array_append_new(
		    lo,
		    json_pack("{s:O, s:O}", "name", json_object_get(e, "name"),
			      "mount_path", json_object_get(e, "mount_path")));
	}
	json_object_set_new(o, "volumes_left_out", lo);
	json_object_set_new(o, "reason",
			    sn->reason ? json_string(sn->reason) : json_null());
	return json_dump_line(o, JSON_INDENT(1));
}

/* ---- removal and expiry -------------------------------------------- */

/* Its own files: what sessions restored from it linked stays theirs. */
static void snap_remove_files(struct snapshot *sn)
{
	if (remove_tree(sn->dir) < 0)
		log_warnx("snapshot %s: cannot remove %s", sn->name, sn->dir);
}

int snapshot_remove(struct snapshot *sn)
{
	if (sn->gone)
		return -ENOENT;
	if (sn->state == SN_CREATING)
		return refuse(&sn->err, EBUSY, sn->name,
			      "the snapshot is still being taken");
	timer_cancel(&sn->ttl);
	snap_set_state(sn, SN_DELETING);
	snap_remove_files(sn);
	snap_set_state(sn, SN_DELETED);
	snap_unlink(sn); /* last: it may drop the last reference */
	return 0;
}

static void ttl_fired(struct timer *t)
{
	struct snapshot *sn =
	    (struct snapshot *)((char *)t - offsetof(struct snapshot, ttl));

	if (sn->gone || !sn->expires_ms)
		return;
	if (now_ms() < sn->expires_ms) {
		int64_t d = sn->expires_ms - now_ms();
		timer_arm(&sn->ttl, d > 86400000 ? 86400000 : d);
		return;
	}
	if (sn->state == SN_CREATING) {
		timer_arm(&sn->ttl, 1000);
		return;
	}
	log_info("snapshot %s: ttl reached", sn->name);
	snapshot_remove(sn);
}

static void arm_ttl(struct snapshot *sn)
{
	sn->ttl.cb = ttl_fired;
	if (!sn->expires_ms)
		return;
	int64_t d = sn->expires_ms - now_ms();
	timer_arm(&sn->ttl, d < 0 ? 0 : d > 86400000 ? 86400000 : d);
}

/* ---- taking one ---------------------------------------------------- */

static struct snapshot *snap_new(const char *name)
{
	struct snapshot *sn = calloc(1, sizeof(*sn));

	if (!sn)
		abort();
	sn->refs = 1;
	snprintf(sn->name, sizeof(sn->name), "%s", name);
	waitq_init(&sn->wq);
	sn->ttl.cb = ttl_fired;
	return sn;
}

static uint64_t file_bytes(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

int snapshot_capture(struct session *s, const char *disk, const char *mem,
		     char *err)
{
	char cur[600], next[600];
	int rc;

	/* The frozen layer keeps the session's name (its new overlay's
	 * backing file) and gains the capture's. */
	session_disk_path(s, s->disk_gen, cur, sizeof(cur));
	session_disk_path(s, s->disk_gen + 1, next, sizeof(next));
	session_op_begin(s);
	pthread_mutex_unlock(&model_lock);
	if (link(cur, disk) < 0) {
		snprintf(err, VMM_ERRLEN, "link %s: %s", disk, strerror(errno));
		rc = -1;
	} else if ((rc = vmm_disk_create(vmm, cur, next, err)) == 0 &&
		   (rc = vmm_snapshot(vmm, s->domname, mem, next, err)) < 0) {
		char e2[VMM_ERRLEN];
		if (vmm_disk_delete(vmm, next, e2) < 0)
			log_warnx("session %s: %s", s->name, e2);
	}
	pthread_mutex_lock(&model_lock);
	session_op_end(s);
	if (rc < 0) {
		unlink(disk);
		unlink(mem);
		return -1;
	}
	s->disk_gen++;
	session_save(s);
	return 0;
}

int snapshot_take(struct session *s, const char *name, int64_t ttl_secs,
		  struct errlog *log, const char *object)
{
	char disk[600], mem[600], errpath[600];
	char err[VMM_ERRLEN] = "";
	struct snapshot *sn;
	int rc;

	if ((rc = session_local_only(s, log, object, "snapshot")) < 0)
		return rc;
	if (!valid_name(name))
		return refuse(log, EINVAL, object,
			      "snapshot: '%.80s' is not a valid name "
			      "([A-Za-z0-9][A-Za-z0-9_.-]{0,62})",
			      name);
	if (snapshot_find(name))
		return refuse(log, EEXIST, object,
			      "snapshot: a snapshot named %s exists", name);
	session_wait_idle(s);
	if (s->gone || !session_usable(s))
		return refuse(log, EBUSY, object,
			      "snapshot: session %s is %s (READY or RUNNING "
			      "needed)",
			      s->name,
			      s->gone ? "removed" : sess_state_name(s->state));
	if (snapshot_find(name)) /* taken while we waited */
		return refuse(log, EEXIST, object,
			      "snapshot: a snapshot named %s exists", name);
	sn = snap_new(name);
	/* Volumes are not part of the capture (vmm_snapshot): copies get
	 * stand-ins for them and unmount them before READY. */
	sn->left_out = volumes_left_out(s);
	uuid_new(sn->id);
	sn->state = SN_CREATING;
	snprintf(sn->source, sizeof(sn->source), "%s", s->name);
	snprintf(sn->source_id, sizeof(sn->source_id), "%s", s->id);
	sn->created_ms = now_ms();
	if (ttl_secs)
		sn->expires_ms = sn->created_ms + ttl_secs * 1000;
	sn->cpu_cores = s->spec.cpu_cores;
	sn->memory_mb = s->spec.memory_mb;
	sn->network = s->spec.allow_outbound;
	snprintf(sn->image, sizeof(sn->image), "%s", s->spec.image);
	sn->next_chan = s->next_chan;
	snprintf(sn->dir, sizeof(sn->dir), "%s/snapshots/%s", cfg.state_dir,
		 sn->id);
	snap_path(sn, "err", errpath, sizeof(errpath));
	errlog_init(&sn->err, errpath);
	if (mkdir_p(sn->dir, 0700) < 0) {
		rc = refuse(log, EIO, object, "snapshot: cannot make %s: %s",
			    sn->dir, strerror(errno));
		snapshot_put(sn);
		return rc;
	}
	snap_save(sn);
	snap_link(sn);
	event_emit("snapshot", sn->name, sn->id, NULL, "CREATING");

	snap_path(sn, "disk.qcow2", disk, sizeof(disk));
	snap_path(sn, "mem.save", mem, sizeof(mem));
	/* The list holds sn now; snap_new's reference is ours until the end. */
	int64_t t0 = now_ms();
	rc = snapshot_capture(s, disk, mem, err);
	int64_t took = now_ms() - t0;
	if (rc < 0) {
		sn->reason = strdup(err);
		errlog_add(&sn->err, sn->name, err);
		snap_set_state(sn, SN_FAILED);
		arm_ttl(sn);
		snapshot_put(sn);
		return refuse(log, EIO, object, "snapshot %s failed: %s", name,
			      err);
	}
	sn->size_bytes = file_bytes(mem) + file_bytes(disk);
	log_info("snapshot %s of %s taken in %lld ms (%llu bytes)", name,
		 s->name, (long long)took, (unsigned long long)sn->size_bytes);
	snap_set_state(sn, SN_READY);
	arm_ttl(sn);
	snapshot_put(sn);
	return 0;
}

int snapshot_create_spec(const char *text, size_t len, char *created,
			 size_t created_len)
{
	char why[SPEC_WHY_LEN];
	struct snap_spec ss;
	struct session *s;
	int rc;

	if (snapspec_parse(&ss, text, len, why) < 0)
		return refuse(&snapshots_err, EINVAL, "snapshots/new", "%s",
			      why);
	char *name = ss.name, *sess = ss.session;
	int64_t ttl = ss.ttl;
	if (!sess[0])
		return refuse(&snapshots_err, EINVAL, "snapshots/new",
			      "session=NAME is required");
	if (!name[0]) {
		char id[UUID_LEN + 1];
		do {
			uuid_new(id);
			snprintf(name, sizeof(ss.name), "snap-%.8s", id);
		} while (snapshot_find(name));
	}
	if (!(s = session_find(sess)))
		return refuse(&snapshots_err, ENOENT, "snapshots/new",
			      "no session %s", sess);
	session_get(s);
	rc = snapshot_take(s, name, ttl, &snapshots_err, name);
	session_put(s);
	if (rc == 0)
		snprintf(created, created_len, "%s", name);
	return rc;
}

int snapshot_link_into(struct snapshot *sn, const char *session_dir)
{
	char from[600], to[600];

	snap_path(sn, "disk.qcow2", from, sizeof(from));
	snprintf(to, sizeof(to), "%s/base.qcow2", session_dir);
	if (link(from, to) < 0)
		return -1;
	snap_path(sn, "mem.save", from, sizeof(from));
	snprintf(to, sizeof(to), "%s/restore.src", session_dir);
	return link(from, to);
}

/* ---- after a restart ----------------------------------------------- */

static const char *jstr(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

static int64_t jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static struct snapshot *load_one(const char *dir)
{
	char path[600];
	size_t len;
	struct snapshot *sn;
	int st = -1;

	snprintf(path, sizeof(path), "%s/snapshot.json", dir);
	char *txt = read_file(path, 1 << 20, &len);
	json_t *o = txt ? json_loadb(txt, len, 0, NULL) : NULL;
	free(txt);
	for (int i = SN_CREATING; o && i <= SN_DELETED; i++)
		if (strcmp(jstr(o, "state"), state_names[i]) == 0)
			st = i;
	if (!o && access(path, F_OK) < 0 && errno == ENOENT) {
		/* tenkid stopped between making the directory and writing
		 * the record: nothing was taken. */
		log_info("%s: no record, removed", dir);
		if (remove_tree(dir) < 0)
			log_warnx("cannot remove %s", dir);
		return NULL;
	}
	if (!o || st < 0 || !valid_name(jstr(o, "name")) ||
	    strlen(jstr(o, "id")) != UUID_LEN) {
		log_warnx("%s: unreadable snapshot record, skipped", path);
		json_decref(o);
		return NULL;
	}
	sn = snap_new(jstr(o, "name"));
	snprintf(sn->id, sizeof(sn->id), "%s", jstr(o, "id"));
	sn->state = (enum snap_state)st;
	snprintf(sn->source, sizeof(sn->source), "%s", jstr(o, "source"));
	snprintf(sn->source_id, sizeof(sn->source_id), "%s",
		 jstr(o, "source_id"));
	sn->created_ms = jint(o, "created_ms");
	sn->expires_ms = jint(o, "expires_ms");
	sn->size_bytes = (uint64_t)jint(o, "size_bytes");
	sn->cpu_cores = (unsigned)jint(o, "cpu_cores");
	sn->memory_mb = (unsigned)jint(o, "memory_mb");
	sn->network = json_is_true(json_object_get(o, "network"));
	snprintf(sn->image, sizeof(sn->image), "%s", jstr(o, "image"));
	sn->next_chan = (uint32_t)jint(o, "next_chan");
	sn->left_out =
	    volumes_left_out_check(json_object_get(o, "volumes_left_out"));
	if (json_object_get(o, "reason"))
		sn->reason = strdup(jstr(o, "reason"));
	snprintf(sn->dir, sizeof(sn->dir), "%s", dir);
	snprintf(path, sizeof(path), "%s/err", dir);
	errlog_init(&sn->err, path);
	json_decref(o);
	return sn;
}

/* A snapshot tenkid was taking when it stopped.  libvirtd goes on with a
 * capture whose caller died, so wait for it to end, then look at which
 * layer the source's VM writes: the new one means the capture completed
 * (the memory is saved before the disks switch) and the snapshot is READY;
 * the old one means it did not, and the snapshot FAILED with nothing left
 * of it (no memory image, no link to the frozen layer, no new overlay).
 * Either way the source keeps running on a disk its record names. */
static bool settle_source(struct snapshot *sn, struct session *s)
{
	char err[VMM_ERRLEN], next[600];
	bool settled;
	int on_next;

	session_disk_path(s, s->disk_gen + 1, next, sizeof(next));
	session_get(s);
	pthread_mutex_unlock(&model_lock);
	settled = vmm_job_wait(vmm, s->domname, 300000, err) == 0;
	if (!settled)
		log_warnx("snapshot %s: %s", sn->name, err);
	on_next = vmm_disk_attached(vmm, s->domname, next, err);
	if (on_next < 0)
		log_warnx("snapshot %s: %s", sn->name, err);
	/* The overlay the capture did not switch to; never while a capture
	 * may still switch to it. */
	if (settled && on_next == 0 && access(next, F_OK) == 0 &&
	    vmm_disk_delete(vmm, next, err) < 0)
		log_warnx("snapshot %s: %s", sn->name, err);
	/* A capture pauses the VM for its switch; if it was left paused
	 * under a session that was not, resume it (reattach would else
	 * believe the session PAUSED). */
	if (s->state != S_PAUSED && vmm_state(vmm, s->domname) == VMM_PAUSED &&
	    vmm_resume(vmm, s->domname, err) < 0)
		log_warnx("session %s: %s", s->name, err);
	pthread_mutex_lock(&model_lock);
	if (on_next == 1) {
		s->disk_gen++;
		session_save(s);
	}
	session_put(s);
	return on_next == 1;
}

static void settle_cut(struct snapshot *sn)
{
	char mem[600], disk[600];
	struct session *s = session_find(sn->source_id);

	snap_path(sn, "mem.save", mem, sizeof(mem));
	snap_path(sn, "disk.qcow2", disk, sizeof(disk));
	if (s && !session_final(s) && settle_source(sn, s) &&
	    access(mem, F_OK) == 0 && access(disk, F_OK) == 0) {
		sn->size_bytes = file_bytes(mem) + file_bytes(disk);
		log_info("snapshot %s: completed while tenkid was stopped",
			 sn->name);
		snap_set_state(sn, SN_READY);
		return;
	}
	unlink(mem);
	unlink(disk);
	free(sn->reason);
	sn->reason = strdup("tenkid stopped while it was taken");
	errlog_add(&sn->err, sn->name, sn->reason);
	snap_set_state(sn, SN_FAILED);
}

/* After the sessions are loaded (settle_cut looks at a snapshot's
 * source) and before they are re-attached. */
void snapshots_restore(void)
{
	char path[600], dir[900];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/snapshots", cfg.state_dir);
	mkdir_p(path, 0700);
	if (!(d = opendir(path)))
		return;
	pthread_mutex_lock(&model_lock);
	while ((e = readdir(d)) != NULL) {
		if (strlen(e->d_name) != UUID_LEN)
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", path, e->d_name);
		struct snapshot *sn = load_one(dir);
		if (!sn)
			continue;
		if (sn->state == SN_DELETING || sn->state == SN_DELETED) {
			/* Removed, but tenkid stopped before its files. */
			snap_remove_files(sn);
			snapshot_put(sn);
			continue;
		}
		snap_link(sn);
		snapshot_put(sn);
		if (sn->state == SN_CREATING)
			settle_cut(sn);
		arm_ttl(sn);
	}
	pthread_mutex_unlock(&model_lock);
	closedir(d);
}
