/*
 * vmm_libvirt: the vmm interface on one libvirt connection.
 *
 * One process-wide libvirt event loop thread (libvirt's default
 * implementation) carries keepalives and lifecycle events for every host.
 * A host reconnects by itself when its connection dies (libvirtd
 * restarted).  Disks are made through libvirt's storage API so the same
 * code works on remote hosts; see vmm_disk_create.
 */
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "domxml.h"
#include "log.h"
#include "saveimage.h"
#include "util.h"
#include "vmm_libvirt.h"

#define DOMAIN_PREFIX "tenki-"
#define POOL_PREFIX   "tenki-pool-"

/* How long a stop this process asked for may take to show up as an event
 * before a later stop of the same name counts as unexpected again. */
#define QUIET_SECONDS 60

/* Keepalive for remote hosts: a peer silent for 5 s * (3 + 1) is dead. */
#define KEEPALIVE_INTERVAL 5
#define KEEPALIVE_COUNT	   3

/* A domain whose next stop (or crash) event is ours, not news. */
struct quiet {
	struct quiet *next;
	char *name;
	time_t until;
};

struct vmm_host {
	int refs; /* atomic: the caller's, and one per event registration */
	char *uri;
	bool remote;
	enum vmm_accel accel;	  /* KVM or TCG, never AUTO */
	uid_t qemu_uid;		  /* owner of overlays, (uid_t)-1 if unknown */
	unsigned long hv_version; /* qemu's, 0 if unknown */
	char *cpu;		  /* the host's <cpu> in its capabilities */
	gid_t qemu_gid;
	pthread_mutex_t disk_lock; /* storage calls: pools are shared */

	/* Held while (re)connecting, which may block for long on a remote
	 * host; the event thread never takes it. */
	pthread_mutex_t conn_lock;
	virConnectPtr conn; /* NULL once closed or dead */
	int event_id;	    /* lifecycle callback on conn, or -1 */

	pthread_mutex_t lock; /* the fields below */
	vmm_stopped_cb stopped_cb;
	void *stopped_arg;
	struct quiet *quiet;
};

/* ---- errors ---- */

/* err is "what: libvirt's last error", on one line (libvirt quotes qemu's
 * stderr, newlines and all). */
static void virt_err(char *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void virt_err(char *err, const char *fmt, ...)
{
	const char *msg = virGetLastErrorMessage();
	size_t len;
	va_list ap;
	char *p;

	va_start(ap, fmt);
	vsnprintf(err, VMM_ERRLEN, fmt, ap);
	va_end(ap);
	len = strlen(err);
	snprintf(err + len, VMM_ERRLEN - len, ": %s", msg);
	for (p = err; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	while (p > err && p[-1] == ' ')
		*--p = '\0';
}

/* libvirt prints every error to stderr unless told otherwise; callers
 * report what matters, so the rest is debug noise. */
static void on_libvirt_error(void *opaque, virErrorPtr e)
{
	log_debug("libvirt: %s", e != NULL && e->message != NULL
				     ? e->message
				     : "unknown error");
}

/* ---- the process-wide event loop ---- */

static pthread_once_t libvirt_once = PTHREAD_ONCE_INIT;
static bool libvirt_ready;

static void *event_loop(void *arg)
{
	for (;;) {
		if (virEventRunDefaultImpl() < 0) {
			log_warnx("libvirt event loop: %s",
				  virGetLastErrorMessage());
			sleep(1);
		}
	}
	return NULL;
}

/* libvirt wants its event implementation registered before the first
 * connection is opened, and only once per process. */
static void libvirt_init(void)
{
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	if (virInitialize() < 0)
		return;
	virSetErrorFunc(NULL, on_libvirt_error);
	if (virEventRegisterDefaultImpl() < 0) {
		log_warnx("cannot register libvirt's event loop: %s",
			  virGetLastErrorMessage());
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, event_loop, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		log_warnx("cannot start the libvirt event thread: %s",
			  strerror(rc));
		return;
	}
	libvirt_ready = true;
}

/* ---- host references ---- */

static void host_ref(struct vmm_host *h)
{
	__atomic_add_fetch(&h->refs, 1, __ATOMIC_SEQ_CST);
}

static void host_unref(void *opaque)
{
	struct vmm_host *h = opaque;
	struct quiet *q;

	if (__atomic_sub_fetch(&h->refs, 1, __ATOMIC_SEQ_CST) > 0)
		return;
	while ((q = h->quiet) != NULL) {
		h->quiet = q->next;
		free(q->name);
		free(q);
	}
	pthread_mutex_destroy(&h->lock);
	pthread_mutex_destroy(&h->conn_lock);
	pthread_mutex_destroy(&h->disk_lock);
	free(h->uri);
	free(h->cpu);
	free(h);
}

/* ---- stops this process asked for ---- */

static time_t now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Forget name's entry (and any that expired); true if name's was live. */
static bool quiet_take_locked(struct vmm_host *h, const char *name)
{
	struct quiet **qp = &h->quiet, *q;
	time_t t = now();
	bool found = false;

	while ((q = *qp) != NULL) {
		if (strcmp(q->name, name) == 0 || q->until < t) {
			if (strcmp(q->name, name) == 0 && q->until >= t)
				found = true;
			*qp = q->next;
			free(q->name);
			free(q);
			continue;
		}
		qp = &q->next;
	}
	return found;
}

static void quiet_add(struct vmm_host *h, const char *name)
{
	struct quiet *q;

	pthread_mutex_lock(&h->lock);
	quiet_take_locked(h, name);
	if ((q = calloc(1, sizeof(*q))) != NULL &&
	    (q->name = strdup(name)) != NULL) {
		q->until = now() + QUIET_SECONDS;
		q->next = h->quiet;
		h->quiet = q;
	} else {
		free(q);
		log_warnx("out of memory: a stop of %s may be reported", name);
	}
	pthread_mutex_unlock(&h->lock);
}

static void quiet_del(struct vmm_host *h, const char *name)
{
	pthread_mutex_lock(&h->lock);
	quiet_take_locked(h, name);
	pthread_mutex_unlock(&h->lock);
}

/* ---- lifecycle events ---- */

static const char *stop_reason(int event, int detail)
{
	if (event == VIR_DOMAIN_EVENT_CRASHED)
		return "crashed";
	switch (detail) {
	case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
		return "shut down by the guest";
	case VIR_DOMAIN_EVENT_STOPPED_DESTROYED:
		return "destroyed outside tenki";
	case VIR_DOMAIN_EVENT_STOPPED_CRASHED:
		return "crashed";
	case VIR_DOMAIN_EVENT_STOPPED_MIGRATED:
		return "migrated away";
	case VIR_DOMAIN_EVENT_STOPPED_SAVED:
		return "saved outside tenki";
	case VIR_DOMAIN_EVENT_STOPPED_FAILED:
		return "qemu exited unexpectedly";
	case VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT:
		return "reverted to a snapshot outside tenki";
	default:
		return "stopped";
	}
}

/*
 * Runs on the event thread.  A crash is reported at once; the domain is
 * then destroyed by libvirt (on_crash=destroy), and that stop is quieted
 * so it is not reported a second time.
 */
static int on_lifecycle(virConnectPtr c, virDomainPtr dom, int event,
			int detail, void *opaque)
{
	struct vmm_host *h = opaque;
	const char *name = virDomainGetName(dom);
	const char *reason = stop_reason(event, detail);
	vmm_stopped_cb cb;
	void *arg;
	bool ours;

	if (event != VIR_DOMAIN_EVENT_STOPPED &&
	    event != VIR_DOMAIN_EVENT_CRASHED)
		return 0;
	if (name == NULL ||
	    strncmp(name, DOMAIN_PREFIX, strlen(DOMAIN_PREFIX)) != 0)
		return 0;
	pthread_mutex_lock(&h->lock);
	ours = quiet_take_locked(h, name);
	cb = h->stopped_cb;
	arg = h->stopped_arg;
	pthread_mutex_unlock(&h->lock);
	if (ours) {
		log_debug("%s stopped, as asked", name);
		return 0;
	}
	/* Other tenkids' domains pass here too (same prefix, another state
	 * tag): the callback, which knows ours, says what matters. */
	log_debug("%s %s", name, reason);
	if (event == VIR_DOMAIN_EVENT_CRASHED)
		quiet_add(h, name);
	if (cb != NULL)
		cb(name, reason, arg);
	return 0;
}

/* ---- the accelerator ---- */

static bool has_word(const char *line, const char *word)
{
	size_t n = strlen(word);
	const char *p = line;

	while ((p = strstr(p, word)) != NULL) {
		if ((p == line || p[-1] == ' ' || p[-1] == '\t') &&
		    (p[n] == ' ' || p[n] == '\t' || p[n] == '\n' ||
		     p[n] == '\0'))
			return true;
		p += n;
	}
	return false;
}

static bool cpuinfo_has_virt(void)
{
	char *line = NULL;
	size_t size = 0;
	bool found = false;
	FILE *f;

	if ((f = fopen("/proc/cpuinfo", "re")) == NULL)
		return false;
	while (!found && getline(&line, &size, f) != -1) {
		if (strncmp(line, "flags", 5) == 0)
			found = has_word(line, "vmx") || has_word(line, "svm");
	}
	free(line);
	fclose(f);
	return found;
}

/* This machine: KVM only when it is real hardware virtualisation. */
static enum vmm_accel choose_local(char *why, size_t len)
{
	int fd;

	if (access("/sys/module/kvm_pvm", F_OK) == 0) {
		snprintf(why, len,
			 "kvm_pvm is loaded: this host's KVM is "
			 "PVM, which does not boot stock guest kernels");
		return VMM_ACCEL_TCG;
	}
	if (!cpuinfo_has_virt()) {
		snprintf(why, len, "the CPU has no vmx or svm");
		return VMM_ACCEL_TCG;
	}
	if ((fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)) == -1) {
		snprintf(why, len, "/dev/kvm: %s", strerror(errno));
		return VMM_ACCEL_TCG;
	}
	close(fd);
	snprintf(why, len, "/dev/kvm is usable and the CPU has vmx or svm");
	return VMM_ACCEL_KVM;
}

/* A remote host, from its capabilities: a kvm domain type and a host CPU
 * with vmx or svm (a PVM guest has neither flag). */
static enum vmm_accel choose_remote(virConnectPtr c, char *why, size_t len)
{
	char *caps = virConnectGetCapabilities(c);
	enum vmm_accel accel = VMM_ACCEL_TCG;

	if (caps == NULL)
		snprintf(why, len, "no capabilities: %s",
			 virGetLastErrorMessage());
	else if (strstr(caps, "<domain type='kvm'") == NULL)
		snprintf(why, len, "libvirt offers no kvm domains");
	else if (strstr(caps, "<feature name='vmx'/>") == NULL &&
		 strstr(caps, "<feature name='svm'/>") == NULL)
		snprintf(why, len, "the host CPU has no vmx or svm");
	else {
		snprintf(why, len, "kvm domains and a CPU with vmx or svm");
		accel = VMM_ACCEL_KVM;
	}
	free(caps);
	return accel;
}

static void choose_accel(struct vmm_host *h, virConnectPtr c,
			 enum vmm_accel want)
{
	char why[256];

	if (want != VMM_ACCEL_AUTO) {
		h->accel = want;
		log_info("%s: %s, as configured", h->uri, vmm_accel_name(h));
		return;
	}
	if (h->remote)
		h->accel = choose_remote(c, why, sizeof(why));
	else
		h->accel = choose_local(why, sizeof(why));
	log_info("%s: %s, because %s", h->uri, vmm_accel_name(h), why);
}

/* The uid:gid qemu runs as there, which must own the overlays. */
static void find_qemu_ids(struct vmm_host *h, virConnectPtr c)
{
	const char *virttype = h->accel == VMM_ACCEL_KVM ? "kvm" : "qemu";
	char *caps = virConnectGetCapabilities(c);

	h->qemu_uid = (uid_t)-1;
	h->qemu_gid = (gid_t)-1;
	if (caps == NULL ||
	    !domxml_dac_ids(caps, virttype, &h->qemu_uid, &h->qemu_gid))
		log_debug("%s: no DAC label; overlays keep libvirt's owner",
			  h->uri);
	else
		log_debug("%s: qemu runs as %u:%u", h->uri,
			  (unsigned)h->qemu_uid, (unsigned)h->qemu_gid);
	h->cpu = caps ? domxml_host_cpu(caps) : NULL;
	if (virConnectGetVersion(c, &h->hv_version) < 0)
		h->hv_version = 0;
	free(caps);
}

/* ---- the connection ---- */

/* "qemu+ssh://host/system" names a host; "qemu:///system" does not. */
static bool uri_is_remote(const char *uri)
{
	const char *p = strstr(uri, "://");

	return p != NULL && p[3] != '/' && p[3] != '\0';
}

/* conn_lock held. */
static int host_connect(struct vmm_host *h, char *err)
{
	virConnectPtr c;
	int id;

	if ((c = virConnectOpen(h->uri)) == NULL) {
		virt_err(err, "cannot connect to %s", h->uri);
		return -1;
	}
	if (h->remote &&
	    virConnectSetKeepAlive(c, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT) < 0)
		log_warnx("%s: no keepalive: %s", h->uri,
			  virGetLastErrorMessage());
	host_ref(h); /* dropped by libvirt through host_unref */
	id = virConnectDomainEventRegisterAny(
	    c, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
	    VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), h, host_unref);
	if (id < 0) {
		__atomic_sub_fetch(&h->refs, 1, __ATOMIC_SEQ_CST);
		log_warnx("%s: no lifecycle events, stops will go unseen: %s",
			  h->uri, virGetLastErrorMessage());
	}
	h->conn = c;
	h->event_id = id;
	return 0;
}

/* conn_lock held.  libvirt may call host_unref from here, which takes no
 * lock. */
static void host_disconnect(struct vmm_host *h)
{
	if (h->conn == NULL)
		return;
	if (h->event_id >= 0)
		virConnectDomainEventDeregisterAny(h->conn, h->event_id);
	virConnectClose(h->conn);
	h->conn = NULL;
	h->event_id = -1;
}

/* A reference to a live connection (reopened if it died); release it with
 * virConnectClose. */
static virConnectPtr host_conn(struct vmm_host *h, char *err)
{
	virConnectPtr c = NULL;

	pthread_mutex_lock(&h->conn_lock);
	if (h->conn != NULL && virConnectIsAlive(h->conn) != 1) {
		log_warnx("%s: connection lost, reconnecting", h->uri);
		host_disconnect(h);
	}
	if (h->conn == NULL && host_connect(h, err) == -1)
		goto out;
	c = h->conn;
	virConnectRef(c);
out:
	pthread_mutex_unlock(&h->conn_lock);
	return c;
}

virConnectPtr vmm_libvirt_conn(struct vmm_host *h, char *err)
{
	return host_conn(h, err);
}

void vmm_libvirt_err(char *err, const char *fmt, ...)
{
	char what[VMM_ERRLEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	virt_err(err, "%s", what);
}

struct vmm_host *vmm_open(const char *uri, enum vmm_accel accel, char *err)
{
	struct vmm_host *h;
	virConnectPtr c;

	pthread_once(&libvirt_once, libvirt_init);
	if (!libvirt_ready) {
		vmm_seterr(err, "libvirt's event loop could not be started");
		return NULL;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->uri = strdup(uri)) == NULL) {
		free(h);
		vmm_seterr(err, "out of memory");
		return NULL;
	}
	h->refs = 1;
	h->remote = uri_is_remote(uri);
	h->event_id = -1;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->conn_lock, NULL);
	pthread_mutex_init(&h->disk_lock, NULL);
	if ((c = host_conn(h, err)) == NULL) {
		host_unref(h);
		return NULL;
	}
	choose_accel(h, c, accel);
	find_qemu_ids(h, c);
	virConnectClose(c);
	return h;
}

void vmm_close(struct vmm_host *h)
{
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->conn_lock);
	host_disconnect(h);
	pthread_mutex_unlock(&h->conn_lock);
	host_unref(h);
}

const char *vmm_accel_name(const struct vmm_host *h)
{
	return h->accel == VMM_ACCEL_KVM ? "kvm" : "tcg";
}

void vmm_on_stopped(struct vmm_host *h, vmm_stopped_cb cb, void *opaque)
{
	pthread_mutex_lock(&h->lock);
	h->stopped_cb = cb;
	h->stopped_arg = opaque;
	pthread_mutex_unlock(&h->lock);
}

/* ---- storage ---- */

/* FNV-1a: a stable pool name for a directory. */
static uint64_t hash_path(const char *s)
{
	uint64_t x = 14695981039346656037ULL;

	for (; *s != '\0'; s++) {
		x ^= (unsigned char)*s;
		x *= 1099511628211ULL;
	}
	return x;
}

/* Split an absolute file path into its directory and file name. */
static int split_path(const char *path, char **dir, char **file, char *err)
{
	const char *slash = strrchr(path, '/');

	*dir = *file = NULL;
	if (path[0] != '/' || slash == NULL || slash[1] == '\0') {
		vmm_seterr(err, "%s: not an absolute file path", path);
		return -1;
	}
	*dir = slash == path ? strdup("/") : strndup(path, slash - path);
	*file = strdup(slash + 1);
	if (*dir == NULL || *file == NULL) {
		free(*dir);
		free(*file);
		vmm_seterr(err, "out of memory");
		return -1;
	}
	return 0;
}

static bool last_error_is_enoent(void)
{
	virErrorPtr e = virGetLastError();

	return e != NULL && e->code == VIR_ERR_SYSTEM_ERROR &&
	       e->int1 == ENOENT;
}

/* Without virStoragePoolLookupByTargetPath (libvirt < 4.1, the test
 * driver), the pool over dir is found by reading every pool's target. */
static virStoragePoolPtr pool_scan(virConnectPtr c, const char *dir)
{
	virStoragePoolPtr *pools = NULL, found = NULL;
	char *xml, *path;
	int n, i;

	if ((n = virConnectListAllStoragePools(c, &pools, 0)) < 0)
		return NULL;
	for (i = 0; i < n; i++) {
		if (found == NULL &&
		    (xml = virStoragePoolGetXMLDesc(pools[i], 0)) != NULL) {
			path = domxml_pool_path(xml);
			if (path != NULL && strcmp(path, dir) == 0)
				found = pools[i];
			free(path);
			free(xml);
		}
		if (found != pools[i])
			virStoragePoolFree(pools[i]);
	}
	free(pools);
	return found;
}

static virStoragePoolPtr pool_find(virConnectPtr c, const char *dir)
{
	virStoragePoolPtr pool;

	if ((pool = virStoragePoolLookupByTargetPath(c, dir)) != NULL ||
	    virGetLastErrorCode() != VIR_ERR_NO_SUPPORT)
		return pool;
	return pool_scan(c, dir);
}

/*
 * The active pool over dir: the host's own if it has one (libvirt allows
 * one pool per directory), else a transient one made for this call
 * (*made), to be destroyed by pool_done so no pool outlives its use.
 */
static virStoragePoolPtr pool_get(virConnectPtr c, const char *dir, bool *made,
				  char *err)
{
	virStoragePoolPtr pool;
	char name[64], *xml;

	*made = false;
	if ((pool = pool_find(c, dir)) != NULL) {
		if (virStoragePoolIsActive(pool) != 1 &&
		    virStoragePoolCreate(pool, 0) < 0) {
			virt_err(err, "cannot start the pool over %s", dir);
			virStoragePoolFree(pool);
			return NULL;
		}
		/* Another tenkid's transient pool (or one a crash left) is
		 * used, never destroyed: its maker may be using it.  A
		 * leftover goes with libvirtd's next restart. */
		return pool;
	}
	snprintf(name, sizeof(name), POOL_PREFIX "%016llx",
		 (unsigned long long)hash_path(dir));
	if ((xml = domxml_pool(name, dir)) == NULL) {
		vmm_seterr(err, "out of memory");
		return NULL;
	}
	pool = virStoragePoolCreateXML(c, xml, 0);
	free(xml);
	if (pool == NULL && (pool = pool_find(c, dir)) != NULL)
		return pool; /* another tenkid made it meanwhile */
	if (pool == NULL) {
		virt_err(err, "cannot open %s as a storage pool", dir);
		return NULL;
	}
	*made = true;
	return pool;
}

static void pool_done(virStoragePoolPtr pool, bool made)
{
	if (pool == NULL)
		return;
	if (made && virStoragePoolDestroy(pool) < 0)
		log_warnx("cannot remove the transient pool %s: %s",
			  virStoragePoolGetName(pool),
			  virGetLastErrorMessage());
	virStoragePoolFree(pool);
}

/* The volume at path in pool; a pool that was not just made may not have
 * seen the file yet, so it is refreshed once. */
static virStorageVolPtr vol_get(virStoragePoolPtr pool, bool made,
				const char *file)
{
	virStorageVolPtr vol;

	if ((vol = virStorageVolLookupByName(pool, file)) != NULL || made)
		return vol;
	if (virStoragePoolRefresh(pool, 0) < 0)
		return NULL;
	return virStorageVolLookupByName(pool, file);
}

/* The format ("qcow2" or "raw") and virtual size of the image at path,
 * as libvirt probes them. */
static int image_info(virConnectPtr c, const char *path, char **fmt,
		      unsigned long long *size, char *err)
{
	virStoragePoolPtr pool = NULL;
	virStorageVolPtr vol = NULL;
	virStorageVolInfo info;
	char *dir = NULL, *file = NULL, *xml = NULL;
	bool made;
	int rc = -1;

	*fmt = NULL;
	if (split_path(path, &dir, &file, err) == -1)
		return -1;
	if ((pool = pool_get(c, dir, &made, err)) == NULL)
		goto out;
	/* A foreign pool may remember an older file of that name. */
	if (!made && virStoragePoolRefresh(pool, 0) < 0)
		log_debug("refresh of the pool over %s: %s", dir,
			  virGetLastErrorMessage());
	if ((vol = vol_get(pool, made, file)) == NULL) {
		virt_err(err, "base image %s", path);
		goto out;
	}
	if (virStorageVolGetInfo(vol, &info) < 0 ||
	    (xml = virStorageVolGetXMLDesc(vol, 0)) == NULL) {
		virt_err(err, "base image %s", path);
		goto out;
	}
	*fmt = domxml_vol_format(xml);
	if (*fmt == NULL ||
	    (strcmp(*fmt, "qcow2") != 0 && strcmp(*fmt, "raw") != 0)) {
		vmm_seterr(err, "base image %s is %s, not qcow2 or raw", path,
			   *fmt != NULL ? *fmt : "of no known format");
		free(*fmt);
		*fmt = NULL;
		goto out;
	}
	*size = info.capacity;
	rc = 0;
out:
	if (vol != NULL)
		virStorageVolFree(vol);
	pool_done(pool, made);
	free(xml);
	free(dir);
	free(file);
	return rc;
}

static int overlay_make(struct vmm_host *h, virConnectPtr c, const char *base,
			const char *fmt, unsigned long long size,
			const char *path, char *err)
{
	virStoragePoolPtr pool = NULL;
	virStorageVolPtr vol = NULL;
	char *dir = NULL, *file = NULL, *xml = NULL;
	bool made = false;
	int rc = -1;

	if (split_path(path, &dir, &file, err) == -1)
		return -1;
	if ((pool = pool_get(c, dir, &made, err)) == NULL)
		goto out;
	xml =
	    domxml_overlay_vol(file, size, base, fmt, h->qemu_uid, h->qemu_gid);
	if (xml == NULL) {
		vmm_seterr(err, "out of memory");
		goto out;
	}
	/* libvirt deletes what it made when the build fails. */
	if ((vol = virStorageVolCreateXML(pool, xml, 0)) == NULL) {
		virt_err(err, "cannot create %s", path);
		goto out;
	}
	rc = 0;
out:
	if (vol != NULL)
		virStorageVolFree(vol);
	pool_done(pool, made);
	free(xml);
	free(dir);
	free(file);
	return rc;
}

/*
 * Through the storage API rather than qemu-img: libvirtd (root, on the
 * host that runs the VM, local or remote) runs qemu-img, probes the
 * base's format, and chowns the overlay to the qemu user it knows.
 * Pools are per directory and only exist during the call unless the
 * host already had one there.
 */
int vmm_disk_create(struct vmm_host *h, const char *base, const char *path,
		    char *err)
{
	unsigned long long size = 0;
	virConnectPtr c;
	char *fmt = NULL;
	int rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	pthread_mutex_lock(&h->disk_lock);
	/* Other tenkids on this host make and drop transient pools over the
	 * same image directory: a pool can go away under us; try again. */
	for (int attempt = 0; attempt < 3 && rc == -1; attempt++) {
		if (attempt > 0)
			usleep(200 * 1000);
		free(fmt);
		fmt = NULL;
		if (image_info(c, base, &fmt, &size, err) == -1 ||
		    overlay_make(h, c, base, fmt, size, path, err) == -1)
			continue;
		log_debug("%s: overlay on %s (%s, %llu bytes)", path, base, fmt,
			  size);
		rc = 0;
	}
	pthread_mutex_unlock(&h->disk_lock);
	free(fmt);
	virConnectClose(c);
	return rc;
}

int vmm_disk_delete(struct vmm_host *h, const char *path, char *err)
{
	virStoragePoolPtr pool = NULL;
	virStorageVolPtr vol = NULL;
	char *dir = NULL, *file = NULL;
	virConnectPtr c;
	bool made = false;
	int rc = -1;

	if (split_path(path, &dir, &file, err) == -1)
		return -1;
	if ((c = host_conn(h, err)) == NULL)
		goto out_free;
	pthread_mutex_lock(&h->disk_lock);
	if ((pool = pool_get(c, dir, &made, err)) == NULL) {
		/* No directory, no disk. */
		if (last_error_is_enoent())
			rc = 0;
		goto out;
	}
	if ((vol = vol_get(pool, made, file)) == NULL) {
		if (virGetLastErrorCode() == VIR_ERR_NO_STORAGE_VOL)
			rc = 0;
		else
			virt_err(err, "cannot find %s", path);
		goto out;
	}
	if (virStorageVolDelete(vol, 0) < 0) {
		virt_err(err, "cannot delete %s", path);
		goto out;
	}
	rc = 0;
out:
	if (vol != NULL)
		virStorageVolFree(vol);
	pool_done(pool, made);
	pthread_mutex_unlock(&h->disk_lock);
	virConnectClose(c);
out_free:
	free(dir);
	free(file);
	return rc;
}

/* ---- domains ---- */

/* The domain named name, or NULL: *missing tells "no such domain" from
 * other failures (err is set for both). */
static virDomainPtr dom_get(virConnectPtr c, const char *name, bool *missing,
			    char *err)
{
	virDomainPtr dom;

	*missing = false;
	if ((dom = virDomainLookupByName(c, name)) != NULL)
		return dom;
	*missing = virGetLastErrorCode() == VIR_ERR_NO_DOMAIN;
	if (*missing)
		vmm_seterr(err, "no domain %s", name);
	else
		virt_err(err, "cannot look up %s", name);
	return NULL;
}

/* Undefine with everything libvirt keeps beside the definition, dropping
 * flags a driver refuses. */
static int dom_undefine(virDomainPtr dom)
{
	static const unsigned int tries[] = {
	    VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
		VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
		VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
		VIR_DOMAIN_UNDEFINE_NVRAM,
	    VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
		VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
	    0,
	};
	size_t i;
	int code;

	for (i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		if (virDomainUndefineFlags(dom, tries[i]) == 0)
			return 0;
		code = virGetLastErrorCode();
		if (code != VIR_ERR_INVALID_ARG && code != VIR_ERR_NO_SUPPORT &&
		    code != VIR_ERR_ARGUMENT_UNSUPPORTED)
			break;
	}
	return -1;
}

/* Power dom off; its stop event is ours.  Off already is success. */
static int dom_stop(struct vmm_host *h, virDomainPtr dom, const char *name,
		    char *err)
{
	if (virDomainIsActive(dom) == 0)
		return 0;
	quiet_add(h, name);
	if (virDomainDestroy(dom) == 0)
		return 0;
	/* It may have stopped by itself in the meantime. */
	if (virDomainIsActive(dom) == 0)
		return 0;
	virt_err(err, "cannot destroy %s", name);
	quiet_del(h, name);
	return -1;
}

int vmm_create(struct vmm_host *h, const struct vmm_vm_spec *spec, char *err)
{
	virDomainPtr dom = NULL;
	virConnectPtr c;
	char *xml;
	bool missing;
	int rc = -1;

	if ((xml = domxml_build(spec, h->accel, err)) == NULL)
		return -1;
	if ((c = host_conn(h, err)) == NULL)
		goto out_free;
	/* Defining over an existing name would replace its definition. */
	if ((dom = dom_get(c, spec->domname, &missing, err)) != NULL) {
		vmm_seterr(err, "domain %s already exists", spec->domname);
		goto out;
	}
	if (!missing)
		goto out;
	if ((dom = virDomainDefineXML(c, xml)) == NULL) {
		virt_err(err, "cannot define %s", spec->domname);
		goto out;
	}
	/* A failed start may still send a stop event: not news. */
	quiet_add(h, spec->domname);
	if (virDomainCreate(dom) < 0) {
		virt_err(err, "cannot start %s", spec->domname);
		if (virDomainIsActive(dom) == 1)
			virDomainDestroy(dom);
		if (dom_undefine(dom) < 0)
			log_warnx("%s stays defined: %s", spec->domname,
				  virGetLastErrorMessage());
		goto out;
	}
	quiet_del(h, spec->domname);
	log_debug("%s started", spec->domname);
	rc = 0;
out:
	if (dom != NULL)
		virDomainFree(dom);
	virConnectClose(c);
out_free:
	free(xml);
	return rc;
}

char *vmm_channel_path(struct vmm_host *h, const char *domname, char *err)
{
	virDomainPtr dom;
	virConnectPtr c;
	char *xml = NULL, *path = NULL;
	bool missing;

	if ((c = host_conn(h, err)) == NULL)
		return NULL;
	if ((dom = dom_get(c, domname, &missing, err)) == NULL)
		goto out;
	if (virDomainIsActive(dom) != 1) {
		vmm_seterr(err, "%s is not running", domname);
		goto out;
	}
	if ((xml = virDomainGetXMLDesc(dom, 0)) == NULL) {
		virt_err(err, "cannot read the definition of %s", domname);
		goto out;
	}
	if ((path = domxml_channel_path(xml, DOMXML_AGENT_CHANNEL)) == NULL)
		vmm_seterr(err, "%s has no %s socket", domname,
			   DOMXML_AGENT_CHANNEL);
out:
	free(xml);
	if (dom != NULL)
		virDomainFree(dom);
	virConnectClose(c);
	return path;
}

static int dom_state(virDomainPtr dom, int *reason)
{
	int state;

	if (virDomainGetState(dom, &state, reason, 0) < 0)
		return -1;
	return state;
}

/* Suspend or resume; being there already is success. */
static int dom_pause(struct vmm_host *h, const char *domname, bool pause,
		     char *err)
{
	int want = pause ? VIR_DOMAIN_PAUSED : VIR_DOMAIN_RUNNING;
	virDomainPtr dom;
	virConnectPtr c;
	bool missing;
	int rc = -1, reason;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	if ((dom = dom_get(c, domname, &missing, err)) == NULL)
		goto out;
	if ((pause ? virDomainSuspend(dom) : virDomainResume(dom)) == 0 ||
	    dom_state(dom, &reason) == want)
		rc = 0;
	else
		virt_err(err, "cannot %s %s", pause ? "pause" : "resume",
			 domname);
	virDomainFree(dom);
out:
	virConnectClose(c);
	return rc;
}

int vmm_pause(struct vmm_host *h, const char *domname, char *err)
{
	return dom_pause(h, domname, true, err);
}

int vmm_resume(struct vmm_host *h, const char *domname, char *err)
{
	return dom_pause(h, domname, false, err);
}

int vmm_destroy(struct vmm_host *h, const char *domname, char *err)
{
	virDomainPtr dom;
	virConnectPtr c;
	bool missing;
	int rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	if ((dom = dom_get(c, domname, &missing, err)) == NULL)
		goto out;
	rc = dom_stop(h, dom, domname, err);
	virDomainFree(dom);
out:
	virConnectClose(c);
	return rc;
}

int vmm_remove(struct vmm_host *h, const char *domname, char *err)
{
	virDomainPtr dom;
	virConnectPtr c;
	bool missing;
	int rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	if ((dom = dom_get(c, domname, &missing, err)) == NULL) {
		if (missing)
			rc = 0;
		goto out;
	}
	if (dom_stop(h, dom, domname, err) == -1)
		goto out_dom;
	if (dom_undefine(dom) < 0) {
		/* Gone meanwhile (a transient domain, another caller). */
		if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN)
			rc = 0;
		else
			virt_err(err, "cannot undefine %s", domname);
		goto out_dom;
	}
	rc = 0;
out_dom:
	virDomainFree(dom);
out:
	virConnectClose(c);
	return rc;
}

enum vmm_state vmm_state(struct vmm_host *h, const char *domname)
{
	char err[VMM_ERRLEN];
	enum vmm_state st = VMM_OTHER;
	virDomainPtr dom;
	virConnectPtr c;
	bool missing;
	int reason;

	if ((c = host_conn(h, err)) == NULL) {
		log_warnx("%s: %s", domname, err);
		return VMM_OTHER;
	}
	if ((dom = dom_get(c, domname, &missing, err)) == NULL) {
		if (missing)
			st = VMM_NOT_FOUND;
		else
			log_warnx("%s", err);
		goto out;
	}
	switch (dom_state(dom, &reason)) {
	case VIR_DOMAIN_RUNNING:
		st = VMM_RUNNING;
		break;
	case VIR_DOMAIN_PAUSED:
		/* Paused while qemu starts is not a pause anyone asked for. */
		st = reason == VIR_DOMAIN_PAUSED_STARTING_UP ? VMM_OTHER
							     : VMM_PAUSED;
		break;
	case VIR_DOMAIN_SHUTOFF:
	case VIR_DOMAIN_CRASHED:
		st = VMM_SHUTOFF;
		break;
	default:
		st = VMM_OTHER;
	}
	virDomainFree(dom);
out:
	virConnectClose(c);
	return st;
}

char **vmm_list(struct vmm_host *h, const char *prefix, char *err)
{
	virDomainPtr *doms = NULL;
	virConnectPtr c;
	char **names = NULL;
	size_t plen = strlen(prefix), k = 0;
	int n, i;

	if ((c = host_conn(h, err)) == NULL)
		return NULL;
	if ((n = virConnectListAllDomains(c, &doms, 0)) < 0) {
		virt_err(err, "cannot list domains");
		goto out;
	}
	if ((names = calloc((size_t)n + 1, sizeof(*names))) == NULL) {
		vmm_seterr(err, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		const char *name = virDomainGetName(doms[i]);

		if (name == NULL || strncmp(name, prefix, plen) != 0)
			continue;
		if ((names[k++] = strdup(name)) == NULL) {
			vmm_free_names(names);
			names = NULL;
			vmm_seterr(err, "out of memory");
			goto out;
		}
	}
out:
	for (i = 0; doms != NULL && i < n; i++)
		virDomainFree(doms[i]);
	free(doms);
	virConnectClose(c);
	return names;
}

void vmm_free_names(char **names)
{
	char **p;

	if (names == NULL)
		return;
	for (p = names; *p != NULL; p++)
		free(*p);
	free(names);
}

/* ---- volumes ---- */

/* The named pool, started.  A pool of that name over another directory
 * is refused: it belongs to someone else. */
static virStoragePoolPtr vpool_get(virConnectPtr c, const char *name, char *err)
{
	virStoragePoolPtr pool;

	if ((pool = virStoragePoolLookupByName(c, name)) == NULL) {
		virt_err(err, "no storage pool %s", name);
		return NULL;
	}
	if (virStoragePoolIsActive(pool) != 1 &&
	    virStoragePoolCreate(pool, 0) < 0) {
		virt_err(err, "cannot start the storage pool %s", name);
		virStoragePoolFree(pool);
		return NULL;
	}
	return pool;
}

/* Start the pool, making its directory if it does not exist yet (a new
 * remote host); drivers without the flag (test://) just start it. */
static int pool_start_built(virStoragePoolPtr pool)
{
	if (virStoragePoolCreate(pool, VIR_STORAGE_POOL_CREATE_WITH_BUILD) == 0)
		return 0;
	if (virGetLastErrorCode() != VIR_ERR_INVALID_ARG &&
	    virGetLastErrorCode() != VIR_ERR_NO_SUPPORT)
		return -1;
	return virStoragePoolCreate(pool, 0);
}

/*
 * Persistent and autostarted, unlike the transient pools of overlays:
 * volumes outlive sessions and tenkid, and `virsh vol-list` should show
 * them whenever libvirtd runs.
 */
int vmm_pool_ensure(struct vmm_host *h, const char *name, const char *dir,
		    char *err)
{
	virStoragePoolPtr pool = NULL;
	virConnectPtr c;
	char *xml = NULL, *xdesc = NULL, *path = NULL;
	int rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	pthread_mutex_lock(&h->disk_lock);
	if ((pool = virStoragePoolLookupByName(c, name)) == NULL) {
		if ((xml = domxml_pool(name, dir)) == NULL) {
			vmm_seterr(err, "out of memory");
			goto out;
		}
		if ((pool = virStoragePoolDefineXML(c, xml, 0)) == NULL) {
			virt_err(err, "cannot define the storage pool %s",
				 name);
			goto out;
		}
		if (virStoragePoolSetAutostart(pool, 1) < 0)
			log_debug("pool %s: no autostart: %s", name,
				  virGetLastErrorMessage());
	}
	if ((xdesc = virStoragePoolGetXMLDesc(pool, 0)) == NULL ||
	    (path = domxml_pool_path(xdesc)) == NULL ||
	    strcmp(path, dir) != 0) {
		vmm_seterr(err, "storage pool %s is not over %s", name, dir);
		goto out;
	}
	if (virStoragePoolIsActive(pool) != 1 && pool_start_built(pool) < 0) {
		virt_err(err, "cannot start the storage pool %s", name);
		goto out;
	}
	if (virStoragePoolRefresh(pool, 0) < 0)
		log_debug("pool %s: refresh: %s", name,
			  virGetLastErrorMessage());
	rc = 0;
out:
	if (pool != NULL)
		virStoragePoolFree(pool);
	pthread_mutex_unlock(&h->disk_lock);
	virConnectClose(c);
	free(xml);
	free(xdesc);
	free(path);
	return rc;
}

int vmm_vol_create(struct vmm_host *h, const char *poolname, const char *name,
		   unsigned long long bytes, char *err)
{
	virStoragePoolPtr pool = NULL;
	virStorageVolPtr vol = NULL;
	virConnectPtr c;
	char *xml = NULL;
	int rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	pthread_mutex_lock(&h->disk_lock);
	if ((pool = vpool_get(c, poolname, err)) == NULL)
		goto out;
	if ((xml = domxml_raw_vol(name, bytes, h->qemu_uid, h->qemu_gid)) ==
	    NULL) {
		vmm_seterr(err, "out of memory");
		goto out;
	}
	if ((vol = virStorageVolCreateXML(pool, xml, 0)) == NULL) {
		virt_err(err, "cannot create volume %s", name);
		goto out;
	}
	rc = 0;
out:
	if (vol != NULL)
		virStorageVolFree(vol);
	if (pool != NULL)
		virStoragePoolFree(pool);
	pthread_mutex_unlock(&h->disk_lock);
	virConnectClose(c);
	free(xml);
	return rc;
}

/* The volume name in the named pool; *missing when there is none. */
static virStorageVolPtr vvol_get(virConnectPtr c, const char *poolname,
				 const char *name, virStoragePoolPtr *pool,
				 bool *missing, char *err)
{
	virStorageVolPtr vol;

	*missing = false;
	if ((*pool = vpool_get(c, poolname, err)) == NULL)
		return NULL;
	if ((vol = virStorageVolLookupByName(*pool, name)) == NULL &&
	    virStoragePoolRefresh(*pool, 0) == 0)
		vol = virStorageVolLookupByName(*pool, name);
	if (vol == NULL) {
		*missing = virGetLastErrorCode() == VIR_ERR_NO_STORAGE_VOL;
		virt_err(err, "no volume %s", name);
	}
	return vol;
}

int vmm_vol_resize(struct vmm_host *h, const char *poolname, const char *name,
		   unsigned long long bytes, char *err)
{
	virStoragePoolPtr pool = NULL;
	virStorageVolPtr vol;
	virConnectPtr c;
	bool missing;
	int rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	pthread_mutex_lock(&h->disk_lock);
	if ((vol = vvol_get(c, poolname, name, &pool, &missing, err)) == NULL)
		goto out;
	if (virStorageVolResize(vol, bytes, 0) < 0)
		virt_err(err, "cannot resize volume %s", name);
	else
		rc = 0;
	virStorageVolFree(vol);
out:
	if (pool != NULL)
		virStoragePoolFree(pool);
	pthread_mutex_unlock(&h->disk_lock);
	virConnectClose(c);
	return rc;
}

int vmm_vol_delete(struct vmm_host *h, const char *poolname, const char *name,
		   char *err)
{
	virStoragePoolPtr pool = NULL;
	virStorageVolPtr vol;
	virConnectPtr c;
	bool missing;
	int rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	pthread_mutex_lock(&h->disk_lock);
	if ((vol = vvol_get(c, poolname, name, &pool, &missing, err)) == NULL) {
		if (missing)
			rc = 0;
		goto out;
	}
	if (virStorageVolDelete(vol, 0) < 0)
		virt_err(err, "cannot delete volume %s", name);
	else
		rc = 0;
	virStorageVolFree(vol);
out:
	if (pool != NULL)
		virStoragePoolFree(pool);
	pthread_mutex_unlock(&h->disk_lock);
	virConnectClose(c);
	return rc;
}

/* The running domain name and its live XML. */
static virDomainPtr live_dom(virConnectPtr c, const char *domname, char **xml,
			     char *err)
{
	virDomainPtr dom;
	bool missing;

	*xml = NULL;
	if ((dom = dom_get(c, domname, &missing, err)) == NULL)
		return NULL;
	if (virDomainIsActive(dom) != 1) {
		vmm_seterr(err, "%s is not running", domname);
		virDomainFree(dom);
		return NULL;
	}
	if ((*xml = virDomainGetXMLDesc(dom, 0)) == NULL) {
		virt_err(err, "cannot read the definition of %s", domname);
		virDomainFree(dom);
		return NULL;
	}
	return dom;
}

/* Live only when the domain has no persistent definition to follow. */
static unsigned int affect_flags(virDomainPtr dom)
{
	return VIR_DOMAIN_AFFECT_LIVE |
	       (virDomainIsPersistent(dom) == 1 ? VIR_DOMAIN_AFFECT_CONFIG : 0);
}

int vmm_attach_disk(struct vmm_host *h, const char *domname,
		    const struct vmm_disk *disk, char *err)
{
	virDomainPtr dom;
	virConnectPtr c;
	char *xml = NULL, *dxml = NULL, target[8];
	int rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	if ((dom = live_dom(c, domname, &xml, err)) == NULL)
		goto out;
	if (!domxml_free_target(xml, target)) {
		vmm_seterr(err, "%s has no free disk name left", domname);
		goto out_dom;
	}
	if ((dxml = domxml_disk(disk, target)) == NULL) {
		vmm_seterr(err, "out of memory");
		goto out_dom;
	}
	if (virDomainAttachDeviceFlags(dom, dxml, affect_flags(dom)) < 0) {
		virt_err(err, "cannot attach %s to %s", disk->path, domname);
		goto out_dom;
	}
	log_debug("%s: %s attached as %s", domname, disk->path, target);
	rc = 0;
out_dom:
	virDomainFree(dom);
out:
	free(xml);
	free(dxml);
	virConnectClose(c);
	return rc;
}

#define DETACH_WAIT_MS 15000

/*
 * libvirt returns from a live detach once it asked the guest, which may
 * let go of the device later (PCIe hot-unplug takes the guest's
 * consent): wait until the disk is gone from the live definition.
 */
int vmm_detach_disk(struct vmm_host *h, const char *domname, const char *path,
		    char *err)
{
	struct vmm_disk d = {path, NULL, false};
	virDomainPtr dom;
	virConnectPtr c;
	char *xml = NULL, *target = NULL, *dxml = NULL;
	int rc = -1, waited;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	if ((dom = live_dom(c, domname, &xml, err)) == NULL)
		goto out;
	if ((target = domxml_disk_target(xml, path)) == NULL) {
		rc = 0;
		goto out_dom;
	}
	d.serial = "";
	if ((dxml = domxml_disk(&d, target)) == NULL) {
		vmm_seterr(err, "out of memory");
		goto out_dom;
	}
	if (virDomainDetachDeviceFlags(dom, dxml, affect_flags(dom)) < 0) {
		virt_err(err, "cannot detach %s from %s", path, domname);
		goto out_dom;
	}
	for (waited = 0; waited < DETACH_WAIT_MS; waited += 50) {
		char *live = virDomainGetXMLDesc(dom, 0), *t;

		if (live == NULL)
			break;
		t = domxml_disk_target(live, path);
		free(live);
		free(t);
		if (t == NULL) {
			rc = 0;
			goto out_dom;
		}
		usleep(50 * 1000);
	}
	vmm_seterr(err, "%s did not release %s within %d s", domname, path,
		   DETACH_WAIT_MS / 1000);
out_dom:
	virDomainFree(dom);
out:
	free(xml);
	free(target);
	free(dxml);
	virConnectClose(c);
	return rc;
}

int vmm_disk_attached(struct vmm_host *h, const char *domname, const char *path,
		      char *err)
{
	virDomainPtr dom;
	virConnectPtr c;
	char *xml = NULL, *target;
	bool missing;
	int rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	if ((dom = dom_get(c, domname, &missing, err)) == NULL) {
		if (missing)
			rc = 0;
		goto out;
	}
	if (virDomainIsActive(dom) != 1) {
		rc = 0;
	} else if ((xml = virDomainGetXMLDesc(dom, 0)) == NULL) {
		virt_err(err, "cannot read the definition of %s", domname);
	} else {
		target = domxml_disk_target(xml, path);
		rc = target != NULL;
		free(target);
	}
	virDomainFree(dom);
out:
	free(xml);
	virConnectClose(c);
	return rc;
}

/* ---- snapshots and restored copies ---- */

int vmm_snapshot(struct vmm_host *h, const char *domname, const char *mem_path,
		 const char *new_disk, char *err)
{
	struct domxml_disk_ref vols[VMM_MAX_DISKS];
	virDomainSnapshotPtr snap;
	virDomainPtr dom;
	virConnectPtr c;
	char *xml = NULL, *live = NULL;
	unsigned int flags;
	int nvols, rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	if ((dom = live_dom(c, domname, &live, err)) == NULL)
		goto out;
	/* The volumes stay out of the capture: they are not part of the
	 * guest's disk, and the source keeps writing them. */
	if ((nvols = domxml_other_disks(live, vols, VMM_MAX_DISKS)) < 0) {
		vmm_seterr(err, "%s has disks tenki did not attach", domname);
		goto out_dom;
	}
	xml = domxml_snapshot(mem_path, new_disk, vols, nvols);
	domxml_disk_refs_free(vols, nvols);
	if (xml == NULL) {
		vmm_seterr(err, "out of memory");
		goto out_dom;
	}
	/* No metadata: tenki keeps its own records, and libvirt could not
	 * revert an external snapshot anyway.  Under TCG the guest pauses
	 * while its memory is written: live captures of a busy TCG guest
	 * (qemu 7.2) gave images whose restores panicked or hung, 1 to 3 in
	 * 3-10 here, paused ones none in 24 (docs/reliability.md). */
	flags = VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT |
		VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA;
	if (h->accel == VMM_ACCEL_KVM)
		flags |= VIR_DOMAIN_SNAPSHOT_CREATE_LIVE;
	snap = virDomainSnapshotCreateXML(dom, xml, flags);
	if (snap == NULL) {
		virt_err(err, "cannot snapshot %s", domname);
	} else {
		virDomainSnapshotFree(snap);
		rc = 0;
	}
out_dom:
	virDomainFree(dom);
out:
	virConnectClose(c);
	free(live);
	free(xml);
	return rc;
}

/* 1 while a job runs on dom, 0 when none, -1 (err) when libvirt cannot
 * tell.  A query waits for the job lock, which a snapshot may hold: its
 * timeout means a job is running. */
static int dom_job_running(virDomainPtr dom, char *err)
{
	virDomainJobInfo info;

	if (virDomainGetJobInfo(dom, &info) == 0)
		return info.type != VIR_DOMAIN_JOB_NONE;
	switch (virGetLastErrorCode()) {
	case VIR_ERR_OPERATION_TIMEOUT:
		return 1;
	case VIR_ERR_NO_DOMAIN:
	case VIR_ERR_OPERATION_INVALID: /* not running: no job */
		return 0;
	default:
		virt_err(err, "cannot read the job of the domain");
		return -1;
	}
}

int vmm_job_wait(struct vmm_host *h, const char *domname, int timeout_ms,
		 char *err)
{
	virDomainPtr dom;
	virConnectPtr c;
	bool missing;
	int rc = -1, r;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	if ((dom = dom_get(c, domname, &missing, err)) == NULL) {
		rc = missing ? 0 : -1;
		goto out;
	}
	/* A query that waits for a held job lock takes up to 30 s itself:
	 * the bound counts polls and is only roughly timeout_ms. */
	for (int left = timeout_ms / 200;
	     (r = dom_job_running(dom, err)) == 1 && left > 0; left--)
		usleep(200 * 1000);
	if (r == 1)
		vmm_seterr(err, "a libvirt job on %s still runs after %d s",
			   domname, timeout_ms / 1000);
	rc = r == 0 ? 0 : -1;
	virDomainFree(dom);
out:
	virConnectClose(c);
	return rc;
}

int vmm_save(struct vmm_host *h, const char *domname, const char *path,
	     char *err)
{
	virDomainPtr dom;
	virConnectPtr c;
	bool missing;
	int rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	if ((dom = dom_get(c, domname, &missing, err)) == NULL)
		goto out;
	quiet_add(h, domname);
	if (virDomainSaveFlags(dom, path, NULL, VIR_DOMAIN_SAVE_RUNNING) < 0) {
		virt_err(err, "cannot save %s", domname);
		quiet_del(h, domname);
	} else if (dom_undefine(dom) < 0 &&
		   virGetLastErrorCode() != VIR_ERR_NO_DOMAIN) {
		virt_err(err, "cannot undefine %s", domname);
	} else {
		rc = 0;
	}
	virDomainFree(dom);
out:
	virConnectClose(c);
	return rc;
}

static char *rewrite_saved(const char *xml, void *arg, char *err)
{
	return domxml_saved_rewrite(xml, arg, err);
}

/* A blank raw file for the saved guest's volume at source (its size, so
 * the guest's view of the disk stays in range until it is detached),
 * the qemu user's. */
static int stand_in_make(struct vmm_host *h, const char *dir,
			 const struct domxml_disk_ref *r, char *err)
{
	char path[600];
	struct stat st;
	int fd;

	domxml_stand_in_path(dir, r->target, path, sizeof(path));
	if (r->source == NULL || stat(r->source, &st) < 0)
		st.st_size = 1 << 20;
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) <
		0 ||
	    ftruncate(fd, st.st_size) < 0 ||
	    (h->qemu_uid != (uid_t)-1 &&
	     fchown(fd, h->qemu_uid, h->qemu_gid) < 0)) {
		vmm_seterr(err, "stand-in %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

struct prepare {
	struct vmm_host *h;
	const struct vmm_vm_spec *spec;
};

static char *rewrite_with_stand_ins(const char *xml, void *arg, char *err)
{
	struct prepare *pr = arg;
	struct domxml_disk_ref vols[VMM_MAX_DISKS];
	int n = 0, i;
	char *out = domxml_saved_rewrite(xml, pr->spec, err);

	if (out == NULL || pr->spec->stand_in_dir == NULL)
		return out;
	if ((n = domxml_other_disks(xml, vols, VMM_MAX_DISKS)) < 0) {
		vmm_seterr(err, "the saved guest's disks are malformed");
		free(out);
		return NULL;
	}
	for (i = 0; i < n; i++) {
		if (stand_in_make(pr->h, pr->spec->stand_in_dir, &vols[i],
				  err) < 0) {
			free(out);
			out = NULL;
			break;
		}
	}
	domxml_disk_refs_free(vols, n);
	return out;
}

int vmm_restore_prepare(struct vmm_host *h, const char *image, const char *copy,
			const struct vmm_vm_spec *spec, char *err)
{
	struct prepare pr = {h, spec};

	return saveimage_copy(image, copy, rewrite_with_stand_ins, &pr, err);
}

/* Start the saved guest at path (a file where h runs) as spec's domain. */
static int restore_file(struct vmm_host *h, const char *path,
			const struct vmm_vm_spec *spec, char *err)
{
	virConnectPtr c;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	/* A failed restore may still send a stop event: not news. */
	quiet_add(h, spec->domname);
	if (virDomainRestoreFlags(c, path, NULL, VIR_DOMAIN_SAVE_RUNNING) < 0) {
		virt_err(err, "cannot restore %s", spec->domname);
		virConnectClose(c);
		/* Nothing half-started may stay. */
		char err2[VMM_ERRLEN];
		if (vmm_remove(h, spec->domname, err2) < 0)
			log_warnx("%s", err2);
		return -1;
	}
	quiet_del(h, spec->domname);
	virConnectClose(c);
	return 0;
}

int vmm_restore_prepared(struct vmm_host *h, const char *copy,
			 const struct vmm_vm_spec *spec, char *err)
{
	int rc = restore_file(h, copy, spec, err);

	unlink(copy);
	return rc;
}

/* ---- several hosts ---- */

const char *vmm_uri(const struct vmm_host *h)
{
	return h->uri;
}

int vmm_node_info(struct vmm_host *h, unsigned *cpus, uint64_t *mem_mb,
		  uint64_t *free_mb, char *err)
{
	virNodeInfo info;
	unsigned long long free_b;
	virConnectPtr c;
	int rc = -1;

	if ((c = host_conn(h, err)) == NULL)
		return -1;
	if (virNodeGetInfo(c, &info) < 0) {
		virt_err(err, "%s: node info", h->uri);
		goto out;
	}
	/* 0 with an error set when the driver cannot tell. */
	free_b = virNodeGetFreeMemory(c);
	*cpus = info.cpus;
	*mem_mb = info.memory >> 10; /* KiB */
	*free_mb = free_b ? free_b >> 20 : *mem_mb;
	rc = 0;
out:
	virConnectClose(c);
	return rc;
}

/* Feeds virStreamSendAll from the file. */
static int upload_read(virStreamPtr st, char *data, size_t n, void *opaque)
{
	int fd = *(int *)opaque;
	ssize_t r;

	do
		r = read(fd, data, n);
	while (r < 0 && errno == EINTR);
	return (int)r;
}

/* A raw volume of exactly bytes, readable by the qemu user (kernels,
 * initrds and base images are shared by every VM of the host). */
static virStorageVolPtr upload_vol_create(virStoragePoolPtr pool,
					  const char *name,
					  unsigned long long bytes, char *err)
{
	char xml[1024];
	virStorageVolPtr vol;

	snprintf(xml, sizeof(xml),
		 "<volume><name>%s</name>"
		 "<capacity unit='bytes'>%llu</capacity>"
		 "<allocation unit='bytes'>0</allocation>"
		 "<target><format type='raw'/>"
		 "<permissions><mode>0644</mode></permissions>"
		 "</target></volume>",
		 name, bytes);
	if ((vol = virStorageVolCreateXML(pool, xml, 0)) == NULL)
		virt_err(err, "cannot create the volume %s", name);
	return vol;
}

/* A head of bytes in memory, for virStreamSendAll. */
struct mem_source {
	const uint8_t *p;
	size_t left;
};

static int upload_mem(virStreamPtr st, char *data, size_t n, void *opaque)
{
	struct mem_source *m = opaque;

	if (n > m->left)
		n = m->left;
	memcpy(data, m->p, n);
	m->p += n;
	m->left -= n;
	return (int)n;
}

/* The first bytes of vol, what from gives (the rest of vol stays);
 * what names the upload in err. */
static int upload_stream(virConnectPtr c, virStorageVolPtr vol,
			 unsigned long long bytes, virStreamSourceFunc from,
			 void *opaque, const char *what, char *err)
{
	virStreamPtr st;
	int rc = -1;

	if ((st = virStreamNew(c, 0)) == NULL) {
		virt_err(err, "no stream");
		return -1;
	}
	if (virStorageVolUpload(vol, st, 0, bytes, 0) < 0) {
		virt_err(err, "%s", what);
		goto out;
	}
	if (virStreamSendAll(st, from, opaque) < 0) {
		virt_err(err, "%s", what);
		virStreamAbort(st);
		goto out;
	}
	if (virStreamFinish(st) < 0) {
		virt_err(err, "%s", what);
		goto out;
	}
	rc = 0;
out:
	virStreamFree(st);
	return rc;
}

/* Names in the pool are checked by libvirt; only plain ones here. */
static bool plain_vol_name(const char *name)
{
	if (!*name || strlen(name) > 200)
		return false;
	for (const char *p = name; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '-' && *p != '_' &&
		    *p != '.')
			return false;
	return true;
}

/* dst (made 0600, replaced if there) a copy of src. */
static int copy_whole(const char *src, const char *dst, char *err)
{
	int in, out = -1, rc = -1;
	struct stat st;

	if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0 || fstat(in, &st) < 0 ||
	    (out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) <
		0) {
		vmm_seterr(err, "copy of %s: %s", src, strerror(errno));
		goto out;
	}
	if (copy_file_part(in, out, 0, st.st_size) < 0) {
		vmm_seterr(err, "copy of %s: %s", src,
			   errno ? strerror(errno) : "short file");
		goto out;
	}
	rc = 0;
out:
	if (out >= 0)
		close(out);
	if (rc < 0 && out >= 0)
		unlink(dst);
	if (in >= 0)
		close(in);
	return rc;
}

/* The file to upload: local_path itself, or with backing a copy at tmp
 * whose backing file is renamed (a qcow2 overlay that goes to a host
 * where its base has another path).  qemu-img edits only the header. */
static int upload_source(const char *local_path, const char *backing, char *tmp,
			 size_t n, char *err)
{
	char *argv[] = {"qemu-img",	 "rebase", "-u",    "-f", "qcow2", "-b",
			(char *)backing, "-F",	   "qcow2", tmp,  NULL};
	pid_t pid;
	int st;

	if (backing == NULL) {
		snprintf(tmp, n, "%s", local_path);
		return 0;
	}
	snprintf(tmp, n, "%s.upload", local_path);
	if (copy_whole(local_path, tmp, err) < 0)
		return -1;
	if ((st = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ)) !=
	    0) {
		vmm_seterr(err, "cannot run qemu-img: %s", strerror(st));
		goto fail;
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		vmm_seterr(err, "qemu-img rebase of %s failed (status %d)", tmp,
			   st);
		goto fail;
	}
	return 0;
fail:
	unlink(tmp);
	return -1;
}

static char *vol_upload(struct vmm_host *h, const char *poolname,
			const char *name, const char *local_path,
			const char *backing, char *err)
{
	char src[700];

	virStoragePoolPtr pool = NULL;
	virStorageVolPtr vol = NULL, done = NULL;
	virConnectPtr c;
	char marker[256], *path = NULL;
	struct stat st;
	int fd = -1;

	if (!plain_vol_name(name)) {
		vmm_seterr(err, "bad volume name %s", name);
		return NULL;
	}
	snprintf(marker, sizeof(marker), "%s.done", name);
	if ((c = host_conn(h, err)) == NULL)
		return NULL;
	pthread_mutex_lock(&h->disk_lock);
	if ((pool = vpool_get(c, poolname, err)) == NULL)
		goto out;
	if ((done = virStorageVolLookupByName(pool, marker)) != NULL &&
	    (vol = virStorageVolLookupByName(pool, name)) != NULL)
		goto found;
	/* Not there, or an upload cut short: start again. */
	if (done == NULL && (vol = virStorageVolLookupByName(pool, name)))
		virStorageVolDelete(vol, 0);
	if (vol != NULL)
		virStorageVolFree(vol);
	vol = NULL;
	if (upload_source(local_path, backing, src, sizeof(src), err) < 0)
		goto out;
	fd = open(src, O_RDONLY | O_CLOEXEC);
	if (backing != NULL)
		unlink(src); /* the open descriptor is enough */
	if (fd < 0 || fstat(fd, &st) < 0) {
		vmm_seterr(err, "%s: %s", src, strerror(errno));
		goto out;
	}
	if ((vol = upload_vol_create(pool, name, (unsigned long long)st.st_size,
				     err)) == NULL)
		goto out;
	if (upload_stream(c, vol, (unsigned long long)st.st_size, upload_read,
			  &fd, "upload", err) < 0 ||
	    (done = upload_vol_create(pool, marker, 1, err)) == NULL) {
		virStorageVolDelete(vol, 0);
		goto out;
	}
	log_info("%s: uploaded %s (%lld bytes) as %s", h->uri, local_path,
		 (long long)st.st_size, name);
	/* The dir pool probes the format (a qcow2 base) on refresh. */
	if (virStoragePoolRefresh(pool, 0) < 0)
		log_debug("refresh: %s", virGetLastErrorMessage());
found:
	if ((path = virStorageVolGetPath(vol)) == NULL)
		virt_err(err, "path of %s", name);
out:
	if (fd >= 0)
		close(fd);
	if (vol != NULL)
		virStorageVolFree(vol);
	if (done != NULL)
		virStorageVolFree(done);
	if (pool != NULL)
		virStoragePoolFree(pool);
	pthread_mutex_unlock(&h->disk_lock);
	virConnectClose(c);
	return path;
}

char *vmm_vol_upload(struct vmm_host *h, const char *poolname, const char *name,
		     const char *local_path, char *err)
{
	return vol_upload(h, poolname, name, local_path, NULL, err);
}

char *vmm_overlay_upload(struct vmm_host *h, const char *poolname,
			 const char *name, const char *local_path,
			 const char *backing, char *err)
{
	return vol_upload(h, poolname, name, local_path, backing, err);
}

void vmm_stand_in_path(const char *dir, const char *target, char *out, size_t n)
{
	domxml_stand_in_path(dir, target, out, n);
}

/* ---- saved guests on another host ---- */

bool vmm_same_machine(const struct vmm_host *a, const struct vmm_host *b)
{
	if (a->accel != b->accel || a->hv_version == 0 ||
	    a->hv_version != b->hv_version)
		return false;
	/* TCG emulates the same CPU wherever the same qemu runs; KVM passes
	 * the host's through, so only an identical one will do. */
	return a->accel == VMM_ACCEL_TCG || (a->cpu != NULL && b->cpu != NULL &&
					     strcmp(a->cpu, b->cpu) == 0);
}

/* A clone of the volume from in the pool, made there by libvirtd. */
static virStorageVolPtr clone_vol(virStoragePoolPtr pool, const char *from,
				  const char *name, char *err)
{
	virStorageVolInfo info;
	virStorageVolPtr src, vol = NULL;
	char xml[1024];

	if ((src = virStorageVolLookupByName(pool, from)) == NULL) {
		virt_err(err, "no volume %s", from);
		return NULL;
	}
	if (virStorageVolGetInfo(src, &info) < 0) {
		virt_err(err, "size of %s", from);
		goto out;
	}
	snprintf(xml, sizeof(xml),
		 "<volume><name>%s</name>"
		 "<capacity unit='bytes'>%llu</capacity>"
		 "<target><format type='raw'/>"
		 "<permissions><mode>0600</mode></permissions>"
		 "</target></volume>",
		 name, info.capacity);
	if ((vol = virStorageVolCreateXMLFrom(pool, xml, src, 0)) == NULL)
		virt_err(err, "cannot copy %s to %s", from, name);
out:
	virStorageVolFree(src);
	return vol;
}

int vmm_restore_in_pool(struct vmm_host *h, const char *poolname,
			const char *image, const char *image_vol,
			const struct vmm_vm_spec *spec, char *err)
{
	virStoragePoolPtr pool = NULL;
	virStorageVolPtr vol = NULL;
	virConnectPtr c;
	uint8_t *head = NULL;
	char name[128], *path = NULL;
	size_t len;
	int rc = -1;

	snprintf(name, sizeof(name), "%s.save", spec->domname);
	if (saveimage_head(image, rewrite_saved, (void *)spec, &head, &len,
			   err) < 0)
		return -1;
	if ((c = host_conn(h, err)) == NULL)
		goto out_free;
	pthread_mutex_lock(&h->disk_lock);
	if ((pool = vpool_get(c, poolname, err)) != NULL)
		vol = clone_vol(pool, image_vol, name, err);
	pthread_mutex_unlock(&h->disk_lock);
	if (vol == NULL)
		goto out;
	struct mem_source m = {head, len};
	if (upload_stream(c, vol, len, upload_mem, &m,
			  "upload of the copy's header", err) == 0) {
		if ((path = virStorageVolGetPath(vol)) == NULL)
			virt_err(err, "path of %s", name);
		else
			rc = restore_file(h, path, spec, err);
	}
	/* The copy is qemu's only while it loads. */
	pthread_mutex_lock(&h->disk_lock);
	if (virStorageVolDelete(vol, 0) < 0)
		log_warnx("%s: cannot delete %s: %s", h->uri, name,
			  virGetLastErrorMessage());
	pthread_mutex_unlock(&h->disk_lock);
	virStorageVolFree(vol);
out:
	if (pool != NULL)
		virStoragePoolFree(pool);
	virConnectClose(c);
out_free:
	free(path);
	free(head);
	return rc;
}

int vmm_restore(struct vmm_host *h, const char *image, const char *copy,
		const struct vmm_vm_spec *spec, char *err)
{
	if (vmm_restore_prepare(h, image, copy, spec, err) < 0)
		return -1;
	return vmm_restore_prepared(h, copy, spec, err);
}
