/* Golden states: boot once per image and shape, save, restore copies.
 * See golden.h. */
#include "golden.h"
#include "evloop.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "vmm.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define KEY_LEN 128

/* G_SEEN: created cold once; a shape used once is often the only time,
 * so its golden state is built at its second cold create. */
enum gstate { G_SEEN, G_BUILDING, G_READY, G_FAILED };

struct golden {
	struct golden *next;
	char key[KEY_LEN];
	enum gstate state;
	int64_t failed_ms;
};

static struct golden *goldens;
static bool building;	   /* one build at a time */
static char build_dom[64]; /* its domain while it runs */
static char gdom_prefix[32];

/* ---- keys ---------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 1099511628211ULL;
	return h;
}

static uint64_t hash_file(uint64_t h, const char *path, bool content)
{
	struct stat st;

	if (content) {
		size_t len;
		char *t = read_file(path, 1 << 20, &len);
		if (t)
			h = fnv(h, t, len);
		free(t);
	}
	if (stat(path, &st) == 0) {
		h = fnv(h, &st.st_ino, sizeof(st.st_ino));
		h = fnv(h, &st.st_size, sizeof(st.st_size));
		h = fnv(h, &st.st_mtim, sizeof(st.st_mtim));
	}
	return h;
}

/* The image build: what it says of itself and the files a guest boots
 * from (a rebuilt initrd or rootfs gets a new inode or mtime). */
static uint64_t image_hash(const char *image)
{
	static const char *files[] = {"info.json", "cmdline", "vmlinux",
				      "initrd.img", "rootfs.qcow2"};
	uint64_t h = 14695981039346656037ULL;
	char path[600];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s/%s", cfg.image_dir, image,
			 files[i]);
		h = hash_file(h, path, i < 2);
	}
	return h;
}

static void make_key(const struct sess_spec *sp, char key[KEY_LEN])
{
	snprintf(key, KEY_LEN, "%s-%016llx-c%u-m%u-n%d-%s", sp->image,
		 (unsigned long long)image_hash(sp->image), sp->cpu_cores,
		 sp->memory_mb, sp->allow_outbound ? 1 : 0,
		 vmm_accel_name(vmm));
}

static void golden_dir(const char *key, char *out, size_t n)
{
	snprintf(out, n, "%s/golden/%s", cfg.state_dir, key);
}

static struct golden *find(const char *key)
{
	for (struct golden *g = goldens; g; g = g->next)
		if (strcmp(g->key, key) == 0)
			return g;
	return NULL;
}

static struct golden *add(const char *key, enum gstate st)
{
	struct golden *g = calloc(1, sizeof(*g));

	if (!g)
		abort();
	snprintf(g->key, sizeof(g->key), "%s", key);
	g->state = st;
	g->next = goldens;
	goldens = g;
	return g;
}

/* ---- waiting for the agent ---------------------------------------- */

/* A frame to the agent on the blocking socket fd. */
static int send_frame(int fd, uint8_t type, const char *json)
{
	uint8_t hdr[PROTO_HDR_LEN];
	size_t n = strlen(json);

	proto_encode_hdr(hdr, type, 0, (uint32_t)n);
	if (send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL) != sizeof(hdr) ||
	    send(fd, json, n, MSG_NOSIGNAL) != (ssize_t)n)
		return -1;
	return 0;
}

struct reader {
	int fd;
	uint8_t buf[PROTO_HDR_LEN + PROTO_MAX_JSON];
	size_t have;
};

/*
 * Read frames until one of type whose payload contains needle (NULL:
 * any) arrives, or the deadline passes.  Payloads are only searched,
 * never trusted beyond their frame header.
 */
static int wait_frame(struct reader *r, uint8_t type, const char *needle,
		      int64_t deadline, char *err)
{
	for (;;) {
		size_t off = 0;
		while (r->have - off >= PROTO_HDR_LEN) {
			struct proto_hdr h;
			size_t flen;
			int st = proto_decode(r->buf + off, r->have - off, &h,
					      &flen);
			if (st == PROTO_NEED_MORE)
				break;
			if (st != PROTO_OK) {
				off++;
				continue;
			}
			bool hit =
			    h.type == type &&
			    (!needle || memmem(r->buf + off + PROTO_HDR_LEN,
					       h.len, needle, strlen(needle)));
			off += flen;
			if (hit) {
				memmove(r->buf, r->buf + off, r->have - off);
				r->have -= off;
				return 0;
			}
		}
		memmove(r->buf, r->buf + off, r->have - off);
		r->have -= off;
		int64_t left = deadline - mono_ms();
		struct pollfd p = {.fd = r->fd, .events = POLLIN};
		if (left <= 0) {
			snprintf(err, VMM_ERRLEN, "the agent did not answer");
			return -1;
		}
		if (poll(&p, 1, (int)(left > 1000 ? 1000 : left)) <= 0)
			continue;
		ssize_t n =
		    recv(r->fd, r->buf + r->have, sizeof(r->buf) - r->have, 0);
		if (n <= 0) {
			snprintf(err, VMM_ERRLEN, "the agent channel closed");
			return -1;
		}
		r->have += (size_t)n;
	}
}

#define SETTLE_JOB "tenki-golden-settle"
/* Drop the page cache, then zero most of the freed memory (a process
 * touches it and exits): the save skips zero pages, so the image, and
 * every restore, shrinks to what the guest really uses. */
#define SETTLE_CMD                                                             \
	"sync; echo 3 > /proc/sys/vm/drop_caches; "                            \
	"dd if=/dev/zero of=/dev/null bs=320M count=1 2>/dev/null"

/*
 * Connect to the guest's channel, send a HELLO, wait for the agent's:
 * then the guest is booted.  Then let it drop its page cache and zero
 * its free memory (SETTLE_CMD) through a job with no channels, and make
 * the agent forget that job, so no copy inherits it.
 */
static int wait_agent(const char *sock, int64_t timeout_ms, char *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int64_t deadline = mono_ms() + timeout_ms;
	struct reader *r = calloc(1, sizeof(*r));
	char hello[160];
	int rc = -1;

	if (!r)
		abort();
	r->fd = -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if ((r->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, VMM_ERRLEN, "%s: %s", sock, strerror(errno));
		goto out;
	}
	snprintf(hello, sizeof(hello),
		 "{\"proto\":%d,\"time_ns\":%lld,\"hostname\":\"tenki\"}",
		 PROTO_VERSION, (long long)now_ns());
	if (send_frame(r->fd, PT_HELLO, hello) < 0) {
		snprintf(err, VMM_ERRLEN, "HELLO: %s", strerror(errno));
		goto out;
	}
	if (wait_frame(r, PT_HELLO, NULL, deadline, err) < 0)
		goto out;
	rc = 0;
	/* Best effort: a guest that keeps its cache is only slower. */
	int64_t d2 = mono_ms() + 30000;
	char e2[VMM_ERRLEN] = "the agent's channel failed";
	if (send_frame(r->fd, PT_REQ,
		       "{\"op\":\"exec\",\"id\":1,\"job\":\"" SETTLE_JOB
		       "\",\"argv\":[\"/bin/sh\",\"-c\",\"" SETTLE_CMD
		       "\"]}") < 0 ||
	    wait_frame(r, PT_EVENT, SETTLE_JOB, d2, e2) < 0 ||
	    send_frame(r->fd, PT_REQ,
		       "{\"op\":\"forget\",\"id\":2,\"job\":\"" SETTLE_JOB
		       "\"}") < 0 ||
	    wait_frame(r, PT_RESP, "\"id\":2", d2, e2) < 0)
		log_warnx("golden: settling the guest: %s", e2);
out:
	if (r->fd >= 0)
		close(r->fd);
	free(r);
	return rc;
}

/* ---- building ------------------------------------------------------ */

struct build {
	struct sess_spec spec;
	char key[KEY_LEN];
	char dom[64];
};

static int build_one(struct build *b, char *err)
{
	char dir[600], disk[600], mem[600], console[600], kernel[600],
	    initrd[600], base[600], cpath[600], cmdline[4096], uuid[40];
	struct vmm_vm_spec v = {0};
	char *chan = NULL, *c, *real;
	size_t n;
	int rc = -1;

	golden_dir(b->key, dir, sizeof(dir));
	remove_tree(dir);
	if (mkdir_p(dir, 0711) < 0) {
		snprintf(err, VMM_ERRLEN, "%s: %s", dir, strerror(errno));
		return -1;
	}
	snprintf(disk, sizeof(disk), "%s/disk.qcow2", dir);
	snprintf(mem, sizeof(mem), "%s/mem.save", dir);
	snprintf(console, sizeof(console), "%s/console.log", dir);
	snprintf(kernel, sizeof(kernel), "%s/%s/vmlinux", cfg.image_dir,
		 b->spec.image);
	snprintf(initrd, sizeof(initrd), "%s/%s/initrd.img", cfg.image_dir,
		 b->spec.image);
	snprintf(cpath, sizeof(cpath), "%s/%s/cmdline", cfg.image_dir,
		 b->spec.image);
	snprintf(base, sizeof(base), "%s/%s/rootfs.qcow2", cfg.image_dir,
		 b->spec.image);
	c = read_file(cpath, 4096, &n);
	snprintf(cmdline, sizeof(cmdline), "%s",
		 c ? c : "console=ttyS0 root=/dev/vda rw quiet");
	free(c);
	cmdline[strcspn(cmdline, "\n")] = '\0';
	if ((real = realpath(base, NULL))) {
		snprintf(base, sizeof(base), "%s", real);
		free(real);
	}
	uuid_new(uuid);
	v.domname = b->dom;
	v.uuid = uuid;
	v.vcpus = b->spec.cpu_cores;
	v.memory_mb = b->spec.memory_mb;
	v.kernel = kernel;
	v.initrd = initrd;
	v.cmdline = cmdline;
	v.loader = access("/usr/share/qemu/qboot.rom", R_OK) == 0
		       ? "/usr/share/qemu/qboot.rom"
		       : NULL;
	v.disk = disk;
	v.console = console;
	v.network = b->spec.allow_outbound;
	if (vmm_disk_create(vmm, base, disk, err) < 0 ||
	    vmm_create(vmm, &v, err) < 0 ||
	    !(chan = vmm_channel_path(vmm, b->dom, err)) ||
	    wait_agent(chan, cfg.boot_timeout_ms, err) < 0)
		goto out;
	/* Let the agent see the hang-up and settle before the capture. */
	usleep(100 * 1000);
	if (vmm_save(vmm, b->dom, mem, err) < 0)
		goto out;
	rc = 0;
out:
	free(chan);
	if (rc < 0) {
		char e2[VMM_ERRLEN];
		if (vmm_remove(vmm, b->dom, e2) < 0)
			log_warnx("golden %s: %s", b->key, e2);
		remove_tree(dir);
	}
	return rc;
}

static void *build_worker(void *arg)
{
	struct build *b = arg;
	char err[VMM_ERRLEN] = "", dir[600], path[700];
	int64_t t0 = now_ms();
	int rc = build_one(b, err);

	if (rc == 0) {
		golden_dir(b->key, dir, sizeof(dir));
		snprintf(path, sizeof(path), "%s/golden.json", dir);
		char *rec = json_dump_line(
		    json_pack("{s:s, s:s, s:s}", "key", b->key, "image",
			      b->spec.image, "state", "READY"),
		    0);
		if (!rec || write_file_atomic(path, rec, strlen(rec), 0600) < 0)
			rc = -1;
		free(rec);
	}
	pthread_mutex_lock(&model_lock);
	struct golden *g = find(b->key);
	if (g) {
		g->state = rc == 0 ? G_READY : G_FAILED;
		g->failed_ms = rc == 0 ? 0 : now_ms();
	}
	building = false;
	build_dom[0] = '\0';
	if (rc == 0)
		pool_kick();
	pthread_mutex_unlock(&model_lock);
	if (rc == 0)
		log_info("golden state %s ready in %lld ms", b->key,
			 (long long)(now_ms() - t0));
	else
		log_warnx("golden state %s failed: %s", b->key, err);
	spec_free(&b->spec);
	free(b);
	return NULL;
}

/* A failed build is retried after a while, not at every create. */
#define RETRY_MS (5 * 60 * 1000)

static void start_build(const struct sess_spec *sp, const char *key)
{
	struct golden *g = find(key);
	struct build *b;
	char id[UUID_LEN + 1];

	if (building || !cfg.golden)
		return;
	if (g && (g->state == G_BUILDING || g->state == G_READY ||
		  (g->state == G_FAILED && now_ms() - g->failed_ms < RETRY_MS)))
		return;
	if (!g)
		g = add(key, G_BUILDING);
	g->state = G_BUILDING;
	building = true;
	b = calloc(1, sizeof(*b));
	if (!b)
		abort();
	spec_copy(&b->spec, sp);
	snprintf(b->key, sizeof(b->key), "%s", key);
	uuid_new(id);
	snprintf(b->dom, sizeof(b->dom), "%s%.12s", gdom_prefix, id + 24);
	snprintf(build_dom, sizeof(build_dom), "%s", b->dom);
	log_info("golden state %s: building", key);
	spawn_worker(build_worker, b);
}

void golden_prepare(const struct sess_spec *sp)
{
	char key[KEY_LEN];

	make_key(sp, key);
	start_build(sp, key);
}

bool golden_ready(const struct sess_spec *sp)
{
	char key[KEY_LEN];
	struct golden *g;

	make_key(sp, key);
	g = find(key);
	return g && g->state == G_READY;
}

int golden_claim(const struct sess_spec *sp, const char *dir)
{
	char key[KEY_LEN], gdir[600], from[700], to[700];
	struct golden *g;

	if (!cfg.golden)
		return -1;
	make_key(sp, key);
	g = find(key);
	if (!g) {
		add(key, G_SEEN);
		return -1;
	}
	if (g->state != G_READY) {
		start_build(sp, key);
		return -1;
	}
	golden_dir(key, gdir, sizeof(gdir));
	snprintf(from, sizeof(from), "%s/disk.qcow2", gdir);
	snprintf(to, sizeof(to), "%s/base.qcow2", dir);
	if (link(from, to) < 0)
		goto broken;
	snprintf(from, sizeof(from), "%s/mem.save", gdir);
	snprintf(to, sizeof(to), "%s/restore.src", dir);
	if (link(from, to) < 0) {
		snprintf(to, sizeof(to), "%s/base.qcow2", dir);
		unlink(to);
		goto broken;
	}
	return 0;
broken:
	log_warnx("golden state %s unusable (%s): rebuilding", key,
		  strerror(errno));
	g->state = G_FAILED;
	g->failed_ms = 0;
	start_build(sp, key);
	return -1;
}

/* ---- start and stop -------------------------------------------------- */

static void prefix_init(void)
{
	uint32_t h = 2166136261u;

	for (const char *p = cfg.state_dir; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	/* Not the sessions' prefix: never counted or swept as one. */
	snprintf(gdom_prefix, sizeof(gdom_prefix), "tenki-g%08x-", h);
}

static void sweep_domains(void)
{
	char err[VMM_ERRLEN];
	char **names = vmm_list(vmm, gdom_prefix, err);

	if (!names)
		return;
	for (char **n = names; *n; n++) {
		log_info("removing an interrupted golden build %s", *n);
		if (vmm_remove(vmm, *n, err) < 0)
			log_warnx("%s: %s", *n, err);
	}
	vmm_free_names(names);
}

void golden_init(void)
{
	char path[600], dir[900], rec[1000];
	struct dirent *e;
	DIR *d;

	prefix_init();
	if (vmm)
		sweep_domains();
	snprintf(path, sizeof(path), "%s/golden", cfg.state_dir);
	mkdir_p(path, 0711);
	if (!(d = opendir(path)))
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", path, e->d_name);
		snprintf(rec, sizeof(rec), "%s/golden.json", dir);
		/* Only finished states whose image is still the current
		 * build are kept; sessions hold links to what they use. */
		size_t len;
		char *t = read_file(rec, 4096, &len);
		json_t *o = t ? json_loadb(t, len, 0, NULL) : NULL;
		const char *image =
		    json_string_value(json_object_get(o, "image"));
		const char *st = json_string_value(json_object_get(o, "state"));
		bool keep = false;
		if (image && st && strcmp(st, "READY") == 0 && vmm &&
		    valid_name(image)) {
			struct sess_spec sp;
			char want[KEY_LEN];
			spec_init(&sp);
			snprintf(sp.image, sizeof(sp.image), "%s", image);
			make_key(&sp, want);
			/* Same image build: "IMAGE-HASH-" must agree. */
			size_t hl = strlen(image) + 18;
			keep = strlen(e->d_name) > hl &&
			       strncmp(want, e->d_name, hl) == 0;
			spec_free(&sp);
		}
		json_decref(o);
		free(t);
		if (keep) {
			add(e->d_name, G_READY);
			log_info("golden state %s kept", e->d_name);
		} else {
			log_info("golden state %s removed (stale)", e->d_name);
			remove_tree(dir);
		}
	}
	closedir(d);
}

void golden_shutdown(void)
{
	char err[VMM_ERRLEN], dom[64];

	pthread_mutex_lock(&model_lock);
	snprintf(dom, sizeof(dom), "%s", build_dom);
	pthread_mutex_unlock(&model_lock);
	if (dom[0] && vmm && vmm_remove(vmm, dom, err) < 0)
		log_warnx("%s: %s", dom, err);
}
