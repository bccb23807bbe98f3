/* Hosts: records, the hosts/ operations, placement, the monitor. */
#include "host.h"
#include "events.h"
#include "log.h"
#include "pool.h"
#include "spec.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROBE_MS	 1000
#define LOCAL_PROBE_MS	 5000
#define DEFAULT_POOL_DIR "/var/lib/libvirt/images/tenki"
#define HOST_CTL_VERBS	 "drain | undrain"

static struct host *hosts;
static vmm_stopped_cb stopped_cb;
static pthread_t monitor_tid;
static bool monitor_started, monitor_stop;
static pthread_cond_t monitor_cond = PTHREAD_COND_INITIALIZER;
/* Uploads to remote hosts, one at a time (each is hundreds of MiB). */
static pthread_mutex_t upload_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *state_names[] = {"CONNECTING", "UP", "DOWN"};

/* ---- records ------------------------------------------------------------ */

struct host *host_first(void)
{
	return hosts;
}

struct host *host_find(const char *name)
{
	for (struct host *h = hosts; h; h = h->next)
		if (strcmp(h->name, name) == 0 || strcmp(h->id, name) == 0)
			return h;
	return NULL;
}

struct host *host_local(void)
{
	for (struct host *h = hosts; h; h = h->next)
		if (h->local)
			return h;
	return NULL;
}

void host_get(struct host *h)
{
	h->refs++;
}

void host_put(struct host *h)
{
	if (--h->refs > 0)
		return;
	if (!h->local && h->vmm)
		vmm_close(h->vmm);
	errlog_free(&h->err);
	free(h->reason);
	free(h);
}

const char *host_state_name(const struct host *h)
{
	if (h->state == HOST_UP && h->draining)
		return "DRAINING";
	return state_names[h->state];
}

unsigned host_sessions(const struct host *h)
{
	unsigned n = 0;

	for (struct session *s = session_first(); s; s = s->next)
		if (s->host == h && !session_final(s))
			n++;
	return n;
}

/* Memory promised on h: its sessions', and on the local host the warm
 * pool's (one guest of sp's shape becomes the session). */
static uint64_t host_used_mb(const struct host *h, const struct sess_spec *sp)
{
	uint64_t used = 0;

	for (struct session *s = session_first(); s; s = s->next)
		if (s->host == h && !session_final(s))
			used += s->spec.memory_mb;
	if (h->local) {
		used += pool_memory_mb();
		if (sp && pool_has(sp) && used >= sp->memory_mb)
			used -= sp->memory_mb;
	}
	return used;
}

static uint64_t host_cap_mb(const struct host *h)
{
	return (uint64_t)((double)h->mem_mb * cfg.overcommit);
}

static void host_save(struct host *h)
{
	char path[600];
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:b}", "name", h->name,
			      "id", h->id, "uri", h->uri, "pool", h->pool_dir,
			      "draining", h->draining);
	char *txt = o ? json_dumps(o, JSON_INDENT(1)) : NULL;

	json_decref(o);
	snprintf(path, sizeof(path), "%s/host.json", h->dir);
	if (!txt || mkdir_p(h->dir, 0700) < 0 ||
	    write_file_replace(path, txt, strlen(txt), 0600) < 0)
		log_warnx("%s: %s", path, strerror(errno));
	free(txt);
}

/* FNV-1a of the pool directory: hosts sharing a directory share a pool. */
static void pool_name_of(const char *dir, char *out, size_t n)
{
	uint32_t x = 2166136261u;

	for (const char *p = dir; *p; p++)
		x = (x ^ (uint8_t)*p) * 16777619u;
	snprintf(out, n, "tenki-hostpool-%08x", x);
}

static struct host *host_alloc(const char *name, const char *uri,
			       const char *pool_dir, const char *id)
{
	struct host *h = calloc(1, sizeof(*h));
	char path[700];

	if (!h)
		abort();
	h->refs = 1;
	snprintf(h->name, sizeof(h->name), "%s", name);
	snprintf(h->uri, sizeof(h->uri), "%s", uri);
	snprintf(h->pool_dir, sizeof(h->pool_dir), "%s",
		 pool_dir && *pool_dir ? pool_dir : DEFAULT_POOL_DIR);
	pool_name_of(h->pool_dir, h->pool_name, sizeof(h->pool_name));
	if (id && strlen(id) == UUID_LEN)
		snprintf(h->id, sizeof(h->id), "%s", id);
	else
		uuid_new(h->id);
	h->state = HOST_CONNECTING;
	h->since_ms = now_ms();
	snprintf(h->dir, sizeof(h->dir), "%s/hosts/%s", cfg.state_dir, name);
	snprintf(path, sizeof(path), "%s/err", h->dir);
	errlog_init(&h->err, path);
	return h;
}

static void host_link(struct host *h)
{
	struct host **pp = &hosts;

	while (*pp)
		pp = &(*pp)->next;
	*pp = h;
	waitq_wake(&root_wq);
}

static void load_one(const char *dir)
{
	char path[700];
	size_t len;
	char *txt;
	json_t *o;

	snprintf(path, sizeof(path), "%s/host.json", dir);
	if (!(txt = read_file(path, 1 << 16, &len)))
		return;
	o = json_loadb(txt, len, 0, NULL);
	free(txt);
	const char *name = json_string_value(json_object_get(o, "name"));
	const char *uri = json_string_value(json_object_get(o, "uri"));
	if (!name || !uri || !valid_name(name) || host_find(name)) {
		log_warnx("%s: unreadable host record, skipped", path);
	} else {
		struct host *h = host_alloc(
		    name, uri, json_string_value(json_object_get(o, "pool")),
		    json_string_value(json_object_get(o, "id")));
		h->draining = json_is_true(json_object_get(o, "draining"));
		host_link(h);
	}
	json_decref(o);
}

int hosts_init(struct vmm_host *local, vmm_stopped_cb on_stopped)
{
	char path[600];
	struct host *h;

	stopped_cb = on_stopped;
	h = host_alloc(HOST_LOCAL, local ? vmm_uri(local) : cfg.uri, NULL,
		       NULL);
	h->local = true;
	h->vmm = local;
	h->state = local ? HOST_UP : HOST_DOWN;
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	h->mem_mb =
	    pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz >> 20 : 0;
	h->free_mb = h->mem_mb;
	h->cpus = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	host_link(h);
	snprintf(path, sizeof(path), "%s/hosts", cfg.state_dir);
	if (mkdir_p(path, 0700) < 0)
		return -1;
	/* The local host's id stays the same across restarts. */
	snprintf(path, sizeof(path), "%s/hosts/%s/host.json", cfg.state_dir,
		 HOST_LOCAL);
	size_t len;
	char *txt = read_file(path, 1 << 16, &len);
	json_t *o = txt ? json_loadb(txt, len, 0, NULL) : NULL;
	const char *id = json_string_value(json_object_get(o, "id"));
	if (id && strlen(id) == UUID_LEN)
		snprintf(h->id, sizeof(h->id), "%s", id);
	h->draining = json_is_true(json_object_get(o, "draining"));
	json_decref(o);
	free(txt);
	snprintf(path, sizeof(path), "%s/hosts", cfg.state_dir);
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char dir[700];
		if (e->d_name[0] == '.' || strcmp(e->d_name, HOST_LOCAL) == 0)
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", path, e->d_name);
		load_one(dir);
	}
	if (d)
		closedir(d);
	host_save(h);
	return 0;
}

/* ---- state changes --------------------------------------------------- */

static void host_set_state(struct host *h, enum host_state st)
{
	if (h->state == st)
		return;
	log_info("host %s: %s -> %s", h->name, state_names[h->state],
		 state_names[st]);
	event_emit("host", h->name, h->id, state_names[h->state],
		   state_names[st]);
	h->state = st;
	h->since_ms = now_ms();
	waitq_wake(&root_wq);
}

static void host_went_down(struct host *h, const char *why)
{
	char line[600];

	if (h->state == HOST_DOWN)
		return;
	snprintf(line, sizeof(line), "DOWN: %s", why);
	errlog_add(&h->err, h->name, line);
	free(h->reason);
	h->reason = strdup(why);
	host_set_state(h, HOST_DOWN);
	/* Local VMs' sockets outlive libvirtd: only remote sessions lose
	 * their channel with the host. */
	if (h->local)
		return;
	for (struct session *s = session_first(); s; s = s->next)
		if (s->host == h && !session_final(s))
			session_host_down(s, why);
}

static void *sweep_worker(void *arg)
{
	struct host *h = arg;

	session_sweep_orphans(h->vmm);
	pthread_mutex_lock(&model_lock);
	host_put(h);
	pthread_mutex_unlock(&model_lock);
	return NULL;
}

static void host_came_up(struct host *h)
{
	if (h->state == HOST_UP)
		return;
	if (h->state == HOST_DOWN)
		errlog_add(&h->err, h->name, "UP again");
	free(h->reason);
	h->reason = NULL;
	host_set_state(h, HOST_UP);
	if (h->local)
		return;
	for (struct session *s = session_first(); s; s = s->next)
		if (s->host == h && !session_final(s))
			session_host_up(s);
	/* Domains closed while the host was away. */
	host_get(h);
	spawn_worker(sweep_worker, h);
}

/* One probe without the lock; the result published with it.  mine: the
 * monitor's probe, which clears the host's probing flag. */
static void probe(struct host *h, bool mine)
{
	char err[VMM_ERRLEN] = "", uri[256];
	struct vmm_host *v;
	unsigned cpus = 0;
	uint64_t mem = 0, free_mb = 0;
	int rc = -1;

	pthread_mutex_lock(&model_lock);
	v = h->vmm;
	snprintf(uri, sizeof(uri), "%s", h->uri);
	pthread_mutex_unlock(&model_lock);
	if (!v && !(v = vmm_open(uri, (enum vmm_accel)cfg.accel, err)))
		goto publish;
	rc = vmm_node_info(v, &cpus, &mem, &free_mb, err);
publish:
	pthread_mutex_lock(&model_lock);
	if (v && !h->vmm) {
		h->vmm = v;
		vmm_on_stopped(v, stopped_cb, NULL);
	} else if (v && v != h->vmm) {
		vmm_close(v); /* another probe connected first */
	}
	if (h->gone) {
		/* Removed meanwhile: its reference closes the connection. */
	} else if (rc == 0) {
		h->cpus = cpus;
		h->mem_mb = mem;
		h->free_mb = free_mb;
		host_came_up(h);
		/* Sessions that were busy when it came back: again now. */
		for (struct session *s = session_first(); s && !h->local;
		     s = s->next)
			if (s->host == h && s->host_lost)
				session_host_up(s);
	} else {
		host_went_down(h, err);
	}
	if (mine)
		h->probing = false;
	pthread_mutex_unlock(&model_lock);
}

bool host_check(struct host *h)
{
	probe(h, false);
	pthread_mutex_lock(&model_lock);
	bool up = h->state == HOST_UP;
	pthread_mutex_unlock(&model_lock);
	return up;
}

static void *probe_worker(void *arg)
{
	struct host *h = arg;

	probe(h, true);
	pthread_mutex_lock(&model_lock);
	host_put(h);
	pthread_mutex_unlock(&model_lock);
	return NULL;
}

/* Each host is probed by a worker of its own: a host whose connection
 * hangs (a TCP connect to a silent address) delays no other's. */
static void *monitor(void *arg)
{
	struct timespec ts;

	pthread_mutex_lock(&model_lock);
	while (!monitor_stop) {
		for (struct host *h = hosts; h; h = h->next) {
			/* The local host only for its figures: its sessions'
			 * sockets do not depend on libvirtd. */
			if (h->probing || now_ms() < h->next_probe_ms)
				continue;
			h->next_probe_ms =
			    now_ms() + (h->local ? LOCAL_PROBE_MS : 0);
			h->probing = true;
			host_get(h);
			spawn_worker(probe_worker, h);
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += PROBE_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		if (!monitor_stop)
			pthread_cond_timedwait(&monitor_cond, &model_lock, &ts);
	}
	pthread_mutex_unlock(&model_lock);
	return NULL;
}

void hosts_start(void)
{
	if (pthread_create(&monitor_tid, NULL, monitor, NULL) != 0)
		fatal("pthread_create");
	monitor_started = true;
}

void hosts_shutdown(void)
{
	if (!monitor_started)
		return;
	pthread_mutex_lock(&model_lock);
	monitor_stop = true;
	pthread_cond_broadcast(&monitor_cond);
	pthread_mutex_unlock(&model_lock);
	pthread_join(monitor_tid, NULL);
	monitor_started = false;
}

/* ---- the tree's operations ------------------------------------------ */

static int host_add(const struct host_spec *hs)
{
	if (host_find(hs->name))
		return refuse(&hosts_err, EEXIST, hs->name,
			      "a host named %s exists", hs->name);
	for (struct host *o = hosts; o; o = o->next)
		if (strcmp(o->uri, hs->uri) == 0)
			return refuse(&hosts_err, EEXIST, hs->name,
				      "host %s has the uri %s already", o->name,
				      hs->uri);
	struct host *h = host_alloc(hs->name, hs->uri, hs->pool, NULL);
	host_save(h);
	host_link(h);
	log_info("host %s: added (%s, pool %s)", h->name, h->uri, h->pool_dir);
	event_emit("host", h->name, h->id, NULL, "CONNECTING");
	/* Probe it now rather than at the next round. */
	pthread_cond_broadcast(&monitor_cond);
	return 0;
}

int host_new_spec(const char *text, size_t len, char *out, size_t outlen)
{
	struct host_spec hs;
	char why[SPEC_WHY_LEN];
	int rc;

	if (hostspec_parse(&hs, text, len, why) < 0)
		return refuse(&hosts_err, EINVAL, "hosts", "new: %s", why);
	if ((rc = host_add(&hs)) == 0)
		snprintf(out, outlen, "%s", hs.name);
	return rc;
}

/* mkdir hosts/NAME: NAME is the machine, reached with libvirt's own TLS
 * transport (docs/hosts.md); hosts/new takes any URI. */
int host_mkdir(const char *name)
{
	struct host_spec hs;

	memset(&hs, 0, sizeof(hs));
	snprintf(hs.name, sizeof(hs.name), "%s", name);
	snprintf(hs.uri, sizeof(hs.uri), "qemu+tls://%s/system", name);
	return host_add(&hs);
}

static void host_unlink(struct host *h)
{
	for (struct host **pp = &hosts; *pp; pp = &(*pp)->next) {
		if (*pp == h) {
			*pp = h->next;
			h->next = NULL;
			h->gone = true;
			waitq_wake(&root_wq);
			host_put(h);
			return;
		}
	}
}

int host_remove(struct host *h)
{
	unsigned n;

	if (h->local)
		return refuse(&h->err, EACCES, h->name,
			      "the local host cannot be removed (drain it "
			      "instead)");
	if ((n = host_sessions(h)) > 0)
		return refuse(&h->err, EBUSY, h->name,
			      "%u session%s still on this host: remove them "
			      "first (drain stops new ones)",
			      n, n == 1 ? " is" : "s are");
	if (remove_tree(h->dir) < 0)
		log_warnx("host %s: cannot remove %s", h->name, h->dir);
	log_info("host %s: removed", h->name);
	event_emit("host", h->name, h->id, host_state_name(h), "REMOVED");
	host_unlink(h);
	return 0;
}

int host_ctl(struct host *h, const char *text, size_t len)
{
	char line[64];
	const char *p = text, *end = text + len;
	int drain = -1;

	if (memchr(text, '\0', len))
		return refuse(&h->err, EINVAL, h->name, "ctl: NUL byte");
	/* Checked whole before anything is applied. */
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char verb[32] = "", extra[2];
		int n;

		if (l >= sizeof(line))
			return refuse(&h->err, EINVAL, h->name,
				      "ctl: line too long");
		memcpy(line, p, l);
		line[l] = '\0';
		p += l + (nl ? 1 : 0);
		n = sscanf(line, "%31s %1s", verb, extra);
		if (n <= 0)
			continue;
		if (n == 1 && strcmp(verb, "drain") == 0)
			drain = 1;
		else if (n == 1 && strcmp(verb, "undrain") == 0)
			drain = 0;
		else
			return refuse(&h->err, EINVAL, h->name,
				      "ctl: unknown verb '%.40s' "
				      "(" HOST_CTL_VERBS ")",
				      line);
	}
	if (drain < 0)
		return refuse(&h->err, EINVAL, h->name,
			      "ctl: no verb (" HOST_CTL_VERBS ")");
	if (h->draining != (drain == 1)) {
		const char *from = host_state_name(h);
		h->draining = drain == 1;
		host_save(h);
		log_info("host %s: %s", h->name,
			 h->draining ? "draining" : "undrained");
		event_emit("host", h->name, h->id, from, host_state_name(h));
		waitq_wake(&root_wq);
	}
	return 0;
}

char *host_info_json(struct host *h)
{
	uint64_t used = host_used_mb(h, NULL), cap = host_cap_mb(h);
	json_t *o = json_object();

	json_object_set_new(o, "id", json_string(h->id));
	json_object_set_new(o, "name", json_string(h->name));
	json_object_set_new(o, "uri", json_string(h->uri));
	json_object_set_new(o, "state", json_string(host_state_name(h)));
	json_object_set_new(o, "local", json_boolean(h->local));
	json_object_set_new(o, "draining", json_boolean(h->draining));
	json_object_set_new(o, "since", json_time(h->since_ms));
	json_object_set_new(o, "cpus", json_integer(h->cpus));
	json_object_set_new(o, "memory_mb",
			    json_integer((json_int_t)h->mem_mb));
	json_object_set_new(o, "free_memory_mb",
			    json_integer((json_int_t)h->free_mb));
	json_object_set_new(o, "promised_memory_mb",
			    json_integer((json_int_t)used));
	json_object_set_new(o, "capacity_mb", json_integer((json_int_t)cap));
	json_object_set_new(o, "sessions", json_integer(host_sessions(h)));
	json_object_set_new(o, "accel",
			    h->vmm ? json_string(vmm_accel_name(h->vmm))
				   : json_null());
	json_object_set_new(o, "pool",
			    h->local ? json_null() : json_string(h->pool_dir));
	json_object_set_new(o, "reason",
			    h->reason ? json_string(h->reason) : json_null());
	return json_dump_line(o, JSON_INDENT(1));
}

/* ---- placement ---------------------------------------------------------- */

/* Why h cannot take sp, or NULL when it can. */
static const char *no_room(const struct host *h, const struct sess_spec *sp,
			   bool local_only, char *why, size_t n)
{
	uint64_t used = host_used_mb(h, sp), cap = host_cap_mb(h);

	/* The local host is always tried: its connection is reopened on
	 * use, and a libvirtd that just restarted is not DOWN for a create
	 * made before the next probe. */
	if (h->state != HOST_UP && !h->local)
		snprintf(why, n, "%s is %s%s%s", h->name, host_state_name(h),
			 h->reason ? ": " : "", h->reason ? h->reason : "");
	else if (h->draining)
		snprintf(why, n, "%s is DRAINING", h->name);
	else if (local_only && !h->local)
		snprintf(why, n,
			 "%s is remote (snapshots and volumes are local "
			 "only)",
			 h->name);
	else if (cap && used + sp->memory_mb > cap)
		snprintf(why, n,
			 "%s: no capacity: %llu MiB promised to sessions, "
			 "%u more asked, limit %llu MiB (%.2g x host "
			 "memory, tenkid --overcommit)",
			 h->name, (unsigned long long)used, sp->memory_mb,
			 (unsigned long long)cap, cfg.overcommit);
	else
		return NULL;
	return why;
}

int host_place(const struct sess_spec *sp, bool local_only, struct host **out)
{
	const char *name = sp->name[0] ? sp->name : "sessions";
	struct host *best = NULL;
	uint64_t best_room = 0;
	unsigned best_n = 0;
	char why[400];
	struct buf all = {0};

	if (sp->host[0]) {
		struct host *h = host_find(sp->host);
		if (!h)
			return refuse(&sessions_err, ENOENT, name,
				      "no host %s (see hosts/)", sp->host);
		if (local_only && !h->local)
			return refuse(&sessions_err, EINVAL, name,
				      "host=%s: snapshot= and volume= "
				      "sessions run on the local host only",
				      sp->host);
		if (no_room(h, sp, local_only, why, sizeof(why)))
			return refuse(&sessions_err, ENOSPC, name,
				      "host=%s: %s", sp->host, why);
		host_get(h);
		*out = h;
		return 0;
	}
	buf_add(&all, "", 0);
	for (struct host *h = hosts; h; h = h->next) {
		if (no_room(h, sp, local_only, why, sizeof(why))) {
			buf_printf(&all, "%s%s", all.len > 0 ? "; " : "", why);
			continue;
		}
		/* A pooled guest of this shape is READY in tens of ms; any
		 * other host would boot one cold, in seconds. */
		if (h->local && pool_has(sp)) {
			best = h;
			break;
		}
		uint64_t cap = host_cap_mb(h), used = host_used_mb(h, sp);
		uint64_t room = cap > used ? cap - used : 0;
		unsigned n = host_sessions(h);
		if (!best || room > best_room ||
		    (room == best_room && n < best_n)) {
			best = h;
			best_room = room;
			best_n = n;
		}
	}
	if (!best) {
		int rc = refuse(&sessions_err, ENOSPC, name,
				"no capacity: no host can take %u MiB: %s",
				sp->memory_mb, all.data);
		free(all.data);
		return rc;
	}
	free(all.data);
	host_get(best);
	*out = best;
	return 0;
}

/* ---- storage on remote hosts ------------------------------------------- */

void host_vm_file(const struct host *h, const char *domname, const char *suffix,
		  char *out, size_t n)
{
	snprintf(out, n, "%s/%s%s", h->pool_dir, domname, suffix);
}

/* The volume name of an image file: its build (size and mtime) in the
 * name, so a rebuilt image is uploaded again and a host keeps serving
 * the build its live disks are based on. */
static int image_vol(const char *image, const char *file, char *path, size_t pn,
		     char *vol, size_t vn, char *err)
{
	struct stat st;
	char *real;

	snprintf(path, pn, "%s/%s/%s", cfg.image_dir, image, file);
	if (!(real = realpath(path, NULL)) || stat(real, &st) < 0) {
		vmm_seterr(err, "image %s: %s: %s", image, file,
			   strerror(errno));
		free(real);
		return -1;
	}
	snprintf(path, pn, "%s", real);
	free(real);
	snprintf(vol, vn, "%s-%s-%llx-%llx", image, file,
		 (unsigned long long)st.st_size,
		 (unsigned long long)st.st_mtime);
	return 0;
}

/* h's connection and its pool's name (and directory, when dir is not
 * NULL), read under model_lock for work done without it; NULL with err
 * while h is not connected. */
static struct vmm_host *host_storage(struct host *h, char pool[64],
				     char dir[256], char *err)
{
	struct vmm_host *v;

	pthread_mutex_lock(&model_lock);
	v = h->vmm;
	snprintf(pool, 64, "%s", h->pool_name);
	if (dir != NULL)
		snprintf(dir, 256, "%s", h->pool_dir);
	pthread_mutex_unlock(&model_lock);
	if (!v)
		vmm_seterr(err, "host %s is not connected", h->name);
	return v;
}

int host_image(struct host *h, const char *image, char *kernel, char *initrd,
	       char *base, size_t n, char *err)
{
	static const char *files[] = {"vmlinux", "initrd.img", "rootfs.qcow2"};
	char *outs[] = {kernel, initrd, base};
	char path[600], vol[300], pool[64], dir[256];
	struct vmm_host *v;
	int rc = -1;

	if (!(v = host_storage(h, pool, dir, err)))
		return -1;
	pthread_mutex_lock(&upload_lock);
	if (vmm_pool_ensure(v, pool, dir, err) < 0)
		goto out;
	for (size_t i = 0; i < 3; i++) {
		int64_t t0 = now_ms();
		char *there;
		if (image_vol(image, files[i], path, sizeof(path), vol,
			      sizeof(vol), err) < 0 ||
		    !(there = vmm_vol_upload(v, pool, vol, path, err)))
			goto out;
		snprintf(outs[i], n, "%s", there);
		free(there);
		log_debug("host %s: %s ready in %lld ms", h->name, vol,
			  (long long)(now_ms() - t0));
	}
	rc = 0;
out:
	pthread_mutex_unlock(&upload_lock);
	return rc;
}

bool host_takes_saved(const struct host *h)
{
	const struct host *l = host_local();

	if (h->local)
		return true;
	return h->vmm != NULL && l != NULL && l->vmm != NULL &&
	       vmm_same_machine(l->vmm, h->vmm);
}

/* A golden file's volume name there: its build (inode and mtime), so a
 * rebuilt golden state is uploaded again and a live overlay keeps the
 * base it was made on. */
static int saved_vol(const char *path, const char *ext, char *vol, size_t n,
		     char *err)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		vmm_seterr(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	snprintf(
	    vol, n, "golden-%llx-%llx%09ld.%s", (unsigned long long)st.st_ino,
	    (unsigned long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, ext);
	return 0;
}

int host_golden(struct host *h, const char *dir, char *base, size_t n,
		char *mem_vol, size_t mn, char *err)
{
	char disk[600], mem[600], dvol[128];
	struct vmm_host *v;
	char pool[64], *there = NULL;
	int64_t t0 = now_ms();
	int rc = -1;

	snprintf(disk, sizeof(disk), "%s/base.qcow2", dir);
	snprintf(mem, sizeof(mem), "%s/restore.src", dir);
	if (saved_vol(disk, "qcow2", dvol, sizeof(dvol), err) < 0 ||
	    saved_vol(mem, "save", mem_vol, mn, err) < 0)
		return -1;
	if (!(v = host_storage(h, pool, NULL, err)))
		return -1;
	pthread_mutex_lock(&upload_lock);
	/* The golden disk is an overlay on the image's base: there, on the
	 * base uploaded by host_image (its path in base). */
	if (!(there = vmm_overlay_upload(v, pool, dvol, disk, base, err)))
		goto out;
	snprintf(base, n, "%s", there);
	free(there);
	if (!(there = vmm_vol_upload(v, pool, mem_vol, mem, err)))
		goto out;
	free(there);
	rc = 0;
	log_debug("host %s: golden state %s ready in %lld ms", h->name, mem_vol,
		  (long long)(now_ms() - t0));
out:
	pthread_mutex_unlock(&upload_lock);
	return rc;
}

int host_restore(struct host *h, const char *image, const char *image_vol,
		 const struct vmm_vm_spec *spec, char *err)
{
	struct vmm_host *v;
	char pool[64];

	if (!(v = host_storage(h, pool, NULL, err)))
		return -1;
	return vmm_restore_in_pool(v, pool, image, image_vol, spec, err);
}
