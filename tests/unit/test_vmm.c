/*
 * Unit tests for the libvirt backend of vmm.h, against libvirt's built-in
 * test driver (test:///default): a fake hypervisor with the real API,
 * shared by every connection in this process, so a second connection
 * plays the part of virsh.  It cannot run qemu, so the agent socket path
 * is never filled in; everything else is exercised.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <libvirt/libvirt.h>

#include "vmm.h"

#define URI "test:///default"

struct stops {
	pthread_mutex_t lock;
	int n;
	char name[128];
	char reason[128];
};

static struct stops stops = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_stopped(const char *domname, const char *reason, void *opaque)
{
	struct stops *s = opaque;

	pthread_mutex_lock(&s->lock);
	s->n++;
	snprintf(s->name, sizeof(s->name), "%s", domname);
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	pthread_mutex_unlock(&s->lock);
}

static int stops_seen(void)
{
	int n;

	pthread_mutex_lock(&stops.lock);
	n = stops.n;
	pthread_mutex_unlock(&stops.lock);
	return n;
}

/* Wait up to ms for the stop count to reach want. */
static int wait_stops(int want, int ms)
{
	struct timespec ts = {0, 10 * 1000 * 1000};
	int i;

	for (i = 0; i < ms / 10 && stops_seen() < want; i++)
		nanosleep(&ts, NULL);
	return stops_seen();
}

static struct vmm_vm_spec spec_named(const char *name)
{
	struct vmm_vm_spec s = {
	    .domname = name,
	    .vcpus = 1,
	    .memory_mb = 512,
	    .kernel = "/nonexistent/vmlinux",
	    .initrd = "/nonexistent/initrd.img",
	    .cmdline = "quiet",
	    .loader = "/usr/share/qemu/qboot.rom",
	    .disk = "/nonexistent/disk.qcow2",
	    .console = "/nonexistent/console",
	    .network = true,
	};
	return s;
}

static int setup(void **state)
{
	char err[VMM_ERRLEN];
	struct vmm_host *h = vmm_open(URI, VMM_ACCEL_TCG, err);

	if (h == NULL) {
		fprintf(stderr, "vmm_open: %s\n", err);
		return -1;
	}
	vmm_on_stopped(h, on_stopped, &stops);
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	vmm_close(*state);
	return 0;
}

static bool listed(struct vmm_host *h, const char *name)
{
	char err[VMM_ERRLEN];
	char **names = vmm_list(h, "tenki-", err), **p;
	bool found = false;

	assert_non_null(names);
	for (p = names; *p != NULL; p++) {
		assert_true(strncmp(*p, "tenki-", 6) == 0);
		if (strcmp(*p, name) == 0)
			found = true;
	}
	vmm_free_names(names);
	return found;
}

static void test_open(void **state)
{
	char err[VMM_ERRLEN] = "";
	struct vmm_host *h;
	const char *a;

	h = vmm_open(URI, VMM_ACCEL_AUTO, err);
	assert_non_null(h);
	a = vmm_accel_name(h);
	assert_true(strcmp(a, "kvm") == 0 || strcmp(a, "tcg") == 0);
	vmm_close(h);

	h = vmm_open(URI, VMM_ACCEL_KVM, err);
	assert_non_null(h);
	assert_string_equal(vmm_accel_name(h), "kvm");
	vmm_close(h);

	assert_string_equal(vmm_accel_name(*state), "tcg");

	err[0] = '\0';
	assert_null(vmm_open("bogus:///nothing", VMM_ACCEL_AUTO, err));
	assert_true(err[0] != '\0');
	assert_null(strchr(err, '\n'));
}

static void test_lifecycle(void **state)
{
	struct vmm_host *h = *state;
	struct vmm_vm_spec s = spec_named("tenki-life");
	char err[VMM_ERRLEN] = "";
	char *path;
	int before = stops_seen();

	assert_int_equal(vmm_state(h, "tenki-life"), VMM_NOT_FOUND);
	assert_int_equal(vmm_create(h, &s, err), 0);
	assert_int_equal(vmm_state(h, "tenki-life"), VMM_RUNNING);
	assert_true(listed(h, "tenki-life"));

	/* The test driver cannot run qemu, so no socket path is assigned. */
	err[0] = '\0';
	path = vmm_channel_path(h, "tenki-life", err);
	assert_null(path);
	assert_non_null(strstr(err, "org.tenki.agent.0"));

	assert_int_equal(vmm_pause(h, "tenki-life", err), 0);
	assert_int_equal(vmm_state(h, "tenki-life"), VMM_PAUSED);
	assert_int_equal(vmm_pause(h, "tenki-life", err), 0);
	assert_int_equal(vmm_resume(h, "tenki-life", err), 0);
	assert_int_equal(vmm_state(h, "tenki-life"), VMM_RUNNING);
	assert_int_equal(vmm_resume(h, "tenki-life", err), 0);

	assert_int_equal(vmm_destroy(h, "tenki-life", err), 0);
	assert_int_equal(vmm_state(h, "tenki-life"), VMM_SHUTOFF);
	assert_int_equal(vmm_destroy(h, "tenki-life", err), 0);
	assert_true(listed(h, "tenki-life"));
	err[0] = '\0';
	assert_null(vmm_channel_path(h, "tenki-life", err));
	assert_non_null(strstr(err, "not running"));

	assert_int_equal(vmm_remove(h, "tenki-life", err), 0);
	assert_int_equal(vmm_state(h, "tenki-life"), VMM_NOT_FOUND);
	assert_false(listed(h, "tenki-life"));
	assert_int_equal(vmm_remove(h, "tenki-life", err), 0);

	/* None of that was news. */
	assert_int_equal(wait_stops(before + 1, 300), before);
}

static void test_remove_running(void **state)
{
	struct vmm_host *h = *state;
	struct vmm_vm_spec s = spec_named("tenki-rm");
	char err[VMM_ERRLEN];
	int before = stops_seen();

	assert_int_equal(vmm_create(h, &s, err), 0);
	assert_int_equal(vmm_remove(h, "tenki-rm", err), 0);
	assert_int_equal(vmm_state(h, "tenki-rm"), VMM_NOT_FOUND);
	assert_int_equal(wait_stops(before + 1, 300), before);
}

static void test_missing(void **state)
{
	struct vmm_host *h = *state;
	char err[VMM_ERRLEN];

	err[0] = '\0';
	assert_int_equal(vmm_pause(h, "tenki-none", err), -1);
	assert_non_null(strstr(err, "tenki-none"));
	assert_int_equal(vmm_resume(h, "tenki-none", err), -1);
	assert_int_equal(vmm_destroy(h, "tenki-none", err), -1);
	assert_null(vmm_channel_path(h, "tenki-none", err));
	assert_int_equal(vmm_remove(h, "tenki-none", err), 0);
	assert_int_equal(vmm_state(h, "tenki-none"), VMM_NOT_FOUND);
}

static void test_create_refused(void **state)
{
	struct vmm_host *h = *state;
	struct vmm_vm_spec s = spec_named("tenki-dup");
	char err[VMM_ERRLEN];

	assert_int_equal(vmm_create(h, &s, err), 0);
	err[0] = '\0';
	s.memory_mb = 1024;
	assert_int_equal(vmm_create(h, &s, err), -1);
	assert_non_null(strstr(err, "already exists"));
	assert_int_equal(vmm_state(h, "tenki-dup"), VMM_RUNNING);
	assert_int_equal(vmm_remove(h, "tenki-dup", err), 0);

	s = spec_named("tenki-bad");
	s.vcpus = 0;
	err[0] = '\0';
	assert_int_equal(vmm_create(h, &s, err), -1);
	assert_true(err[0] != '\0');
	assert_int_equal(vmm_state(h, "tenki-bad"), VMM_NOT_FOUND);

	/* libvirt's own refusal (a malformed UUID) comes back in err. */
	s = spec_named("tenki-bad");
	s.uuid = "not-a-uuid";
	err[0] = '\0';
	assert_int_equal(vmm_create(h, &s, err), -1);
	assert_non_null(strstr(err, "cannot define tenki-bad: "));
	assert_int_equal(vmm_state(h, "tenki-bad"), VMM_NOT_FOUND);
}

/* A stop made with another connection, as virsh would, is reported. */
static void test_outside_stop(void **state)
{
	struct vmm_host *h = *state;
	struct vmm_vm_spec s = spec_named("tenki-ext");
	char err[VMM_ERRLEN];
	virConnectPtr c;
	virDomainPtr dom;
	int before = stops_seen();

	assert_int_equal(vmm_create(h, &s, err), 0);
	assert_non_null(c = virConnectOpen(URI));
	assert_non_null(dom = virDomainLookupByName(c, "tenki-ext"));
	assert_int_equal(virDomainDestroy(dom), 0);
	assert_int_equal(wait_stops(before + 1, 5000), before + 1);
	pthread_mutex_lock(&stops.lock);
	assert_string_equal(stops.name, "tenki-ext");
	assert_string_equal(stops.reason, "destroyed outside tenki");
	pthread_mutex_unlock(&stops.lock);
	assert_int_equal(vmm_state(h, "tenki-ext"), VMM_SHUTOFF);

	/* Domains without the prefix are none of tenki's business. */
	virDomainFree(dom);
	assert_non_null(dom = virDomainLookupByName(c, "test"));
	if (virDomainIsActive(dom) == 1) {
		assert_int_equal(virDomainDestroy(dom), 0);
		assert_int_equal(wait_stops(before + 2, 300), before + 1);
		assert_int_equal(virDomainCreate(dom), 0);
	}
	virDomainFree(dom);
	virConnectClose(c);
	assert_int_equal(vmm_remove(h, "tenki-ext", err), 0);
	assert_int_equal(wait_stops(before + 2, 300), before + 1);
}

static void test_list(void **state)
{
	struct vmm_host *h = *state;
	struct vmm_vm_spec a = spec_named("tenki-la"),
			   b = spec_named("tenki-lb");
	char err[VMM_ERRLEN];
	char **names;

	assert_int_equal(vmm_create(h, &a, err), 0);
	assert_int_equal(vmm_create(h, &b, err), 0);
	assert_int_equal(vmm_destroy(h, "tenki-lb", err), 0);
	assert_true(listed(h, "tenki-la"));
	assert_true(listed(h, "tenki-lb")); /* defined, not running */

	names = vmm_list(h, "nothing-has-this-prefix-", err);
	assert_non_null(names);
	assert_null(names[0]);
	vmm_free_names(names);
	names = vmm_list(h, "", err);
	assert_non_null(names);
	assert_non_null(names[0]); /* the test driver's own "test" */
	vmm_free_names(names);

	assert_int_equal(vmm_remove(h, "tenki-la", err), 0);
	assert_int_equal(vmm_remove(h, "tenki-lb", err), 0);
	assert_false(listed(h, "tenki-la"));
}

struct churn {
	struct vmm_host *h;
	int id;
	int failures;
};

static void *churn(void *arg)
{
	struct churn *c = arg;
	char name[64], err[VMM_ERRLEN];
	struct vmm_vm_spec s;
	int i;

	for (i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "tenki-churn-%d-%d", c->id, i);
		s = spec_named(name);
		if (vmm_create(c->h, &s, err) != 0 ||
		    vmm_state(c->h, name) != VMM_RUNNING ||
		    vmm_pause(c->h, name, err) != 0 ||
		    (i % 2 == 0 && vmm_destroy(c->h, name, err) != 0) ||
		    vmm_remove(c->h, name, err) != 0 ||
		    vmm_state(c->h, name) != VMM_NOT_FOUND)
			c->failures++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct churn c[4];
	pthread_t t[4];
	int i, before = stops_seen();

	for (i = 0; i < 4; i++) {
		c[i] = (struct churn){.h = *state, .id = i};
		assert_int_equal(pthread_create(&t[i], NULL, churn, &c[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(c[i].failures, 0);
	}
	assert_int_equal(wait_stops(before + 1, 300), before);
}

/* A base volume in the test driver's default pool (/default-pool). */
static void make_base(const char *name, const char *fmt)
{
	char xml[512];
	virConnectPtr c;
	virStoragePoolPtr pool;
	virStorageVolPtr vol;

	assert_non_null(c = virConnectOpen(URI));
	assert_non_null(pool = virStoragePoolLookupByName(c, "default-pool"));
	snprintf(xml, sizeof(xml),
		 "<volume><name>%s</name><capacity unit='bytes'>1073741824"
		 "</capacity><target><format type='%s'/></target></volume>",
		 name, fmt);
	if ((vol = virStorageVolLookupByName(pool, name)) == NULL)
		assert_non_null(vol = virStorageVolCreateXML(pool, xml, 0));
	virStorageVolFree(vol);
	virStoragePoolFree(pool);
	virConnectClose(c);
}

static char *vol_xml(const char *path)
{
	virConnectPtr c;
	virStorageVolPtr vol;
	char *xml = NULL;

	assert_non_null(c = virConnectOpen(URI));
	if ((vol = virStorageVolLookupByPath(c, path)) != NULL) {
		xml = virStorageVolGetXMLDesc(vol, 0);
		virStorageVolFree(vol);
	}
	virConnectClose(c);
	return xml;
}

static int tenki_pools(void)
{
	virConnectPtr c;
	virStoragePoolPtr *pools = NULL;
	int n, i, ours = 0;

	assert_non_null(c = virConnectOpen(URI));
	assert_true((n = virConnectListAllStoragePools(c, &pools, 0)) >= 0);
	for (i = 0; i < n; i++) {
		if (strncmp(virStoragePoolGetName(pools[i]), "tenki-", 6) == 0)
			ours++;
		virStoragePoolFree(pools[i]);
	}
	free(pools);
	virConnectClose(c);
	return ours;
}

static void test_disks(void **state)
{
	struct vmm_host *h = *state;
	char err[VMM_ERRLEN];
	char *xml;

	make_base("base.qcow2", "qcow2");
	make_base("base.raw", "raw");

	/* In a directory that already is a pool. */
	assert_int_equal(vmm_disk_create(h, "/default-pool/base.qcow2",
					 "/default-pool/s1.qcow2", err),
			 0);
	assert_non_null(xml = vol_xml("/default-pool/s1.qcow2"));
	assert_non_null(strstr(xml, "<format type='qcow2'/>"));
	assert_non_null(strstr(xml, "<path>/default-pool/base.qcow2</path>"));
	free(xml);
	assert_int_equal(vmm_disk_create(h, "/default-pool/base.raw",
					 "/default-pool/s2.qcow2", err),
			 0);
	assert_non_null(xml = vol_xml("/default-pool/s2.qcow2"));
	assert_non_null(strstr(xml, "<format type='raw'/>"));
	free(xml);

	/* Taken name: refused, the first disk intact. */
	err[0] = '\0';
	assert_int_equal(vmm_disk_create(h, "/default-pool/base.raw",
					 "/default-pool/s1.qcow2", err),
			 -1);
	assert_true(err[0] != '\0');
	assert_non_null(xml = vol_xml("/default-pool/s1.qcow2"));
	assert_non_null(strstr(xml, "base.qcow2"));
	free(xml);

	assert_int_equal(vmm_disk_delete(h, "/default-pool/s1.qcow2", err), 0);
	assert_int_equal(vmm_disk_delete(h, "/default-pool/s2.qcow2", err), 0);
	assert_null(vol_xml("/default-pool/s1.qcow2"));
	assert_int_equal(vmm_disk_delete(h, "/default-pool/s1.qcow2", err), 0);

	/* Elsewhere: a transient pool for the call, gone after it. */
	assert_int_equal(vmm_disk_create(h, "/default-pool/base.qcow2",
					 "/tenki-unit/s3.qcow2", err),
			 0);
	assert_int_equal(tenki_pools(), 0);
	assert_int_equal(vmm_disk_delete(h, "/tenki-unit/s3.qcow2", err), 0);
	assert_int_equal(tenki_pools(), 0);
}

/* A transient pool over the directory, ours left by a crash or another
 * tenkid's in use, is used and left alone (its maker may need it). */
static void test_disks_leftover_pool(void **state)
{
	struct vmm_host *h = *state;
	char err[VMM_ERRLEN];
	virConnectPtr c;
	virStoragePoolPtr pool;

	make_base("base.qcow2", "qcow2");
	assert_non_null(c = virConnectOpen(URI));
	pool = virStoragePoolCreateXML(c,
				       "<pool type='dir'><name>tenki-pool-left"
				       "</name><target><path>/tenki-left</path>"
				       "</target></pool>",
				       0);
	assert_non_null(pool);
	virStoragePoolFree(pool);
	virConnectClose(c);
	assert_int_equal(tenki_pools(), 1);
	assert_int_equal(vmm_disk_create(h, "/default-pool/base.qcow2",
					 "/tenki-left/s5.qcow2", err),
			 0);
	assert_int_equal(tenki_pools(), 1);
	assert_non_null(c = virConnectOpen(URI));
	assert_non_null(pool =
			    virStoragePoolLookupByName(c, "tenki-pool-left"));
	assert_int_equal(virStoragePoolDestroy(pool), 0);
	virStoragePoolFree(pool);
	virConnectClose(c);
	assert_int_equal(tenki_pools(), 0);
}

static void test_disks_refused(void **state)
{
	struct vmm_host *h = *state;
	char err[VMM_ERRLEN];

	err[0] = '\0';
	assert_int_equal(vmm_disk_create(h, "/default-pool/no-such-base",
					 "/default-pool/s4.qcow2", err),
			 -1);
	assert_non_null(strstr(err, "no-such-base"));
	assert_null(vol_xml("/default-pool/s4.qcow2"));

	assert_int_equal(vmm_disk_create(h, "relative/base", "/x/y", err), -1);
	assert_int_equal(vmm_disk_create(h, "/default-pool/base.qcow2",
					 "/default-pool/", err),
			 -1);
	assert_int_equal(vmm_disk_delete(h, "not/absolute", err), -1);
	assert_int_equal(tenki_pools(), 0);
}

static unsigned long long vol_capacity(const char *pool, const char *name)
{
	virConnectPtr c;
	virStoragePoolPtr p;
	virStorageVolPtr v;
	virStorageVolInfo info = {0};

	assert_non_null(c = virConnectOpen(URI));
	assert_non_null(p = virStoragePoolLookupByName(c, pool));
	if ((v = virStorageVolLookupByName(p, name)) != NULL) {
		virStorageVolGetInfo(v, &info);
		virStorageVolFree(v);
	}
	virStoragePoolFree(p);
	virConnectClose(c);
	return v ? info.capacity : 0;
}

/* The volumes pool: persistent, reused, over its directory only. */
static void test_volumes_pool(void **state)
{
	struct vmm_host *h = *state;
	char err[VMM_ERRLEN];
	virConnectPtr c;
	virStoragePoolPtr p;

	assert_int_equal(
	    vmm_pool_ensure(h, "tenki-unit-volumes", "/tenki-vols", err), 0);
	assert_int_equal(
	    vmm_pool_ensure(h, "tenki-unit-volumes", "/tenki-vols", err), 0);
	err[0] = '\0';
	assert_int_equal(
	    vmm_pool_ensure(h, "tenki-unit-volumes", "/elsewhere", err), -1);
	assert_non_null(strstr(err, "not over"));

	assert_int_equal(
	    vmm_vol_create(h, "tenki-unit-volumes", "v1.raw", 1ULL << 20, err),
	    0);
	assert_int_equal(vol_capacity("tenki-unit-volumes", "v1.raw"),
			 1ULL << 20);
	assert_int_equal(
	    vmm_vol_create(h, "tenki-unit-volumes", "v1.raw", 1ULL << 20, err),
	    -1);
	/* The test driver has no resize (the e2e suite grows volumes):
	 * the failure is reported, the volume unchanged. */
	err[0] = '\0';
	assert_int_equal(
	    vmm_vol_resize(h, "tenki-unit-volumes", "v1.raw", 4ULL << 20, err),
	    -1);
	assert_non_null(strstr(err, "v1.raw"));
	assert_int_equal(vol_capacity("tenki-unit-volumes", "v1.raw"),
			 1ULL << 20);
	assert_int_equal(vmm_vol_resize(h, "tenki-unit-volumes", "nope.raw",
					4ULL << 20, err),
			 -1);
	assert_int_equal(vmm_vol_delete(h, "tenki-unit-volumes", "v1.raw", err),
			 0);
	assert_int_equal(vol_capacity("tenki-unit-volumes", "v1.raw"), 0);
	assert_int_equal(vmm_vol_delete(h, "tenki-unit-volumes", "v1.raw", err),
			 0);
	assert_int_equal(
	    vmm_vol_create(h, "tenki-no-pool", "v.raw", 1ULL << 20, err), -1);

	/* The test driver cannot hot-plug; a stopped domain has no disk. */
	assert_int_equal(vmm_disk_attached(h, "tenki-none", "/x.raw", err), 0);

	assert_non_null(c = virConnectOpen(URI));
	assert_non_null(
	    p = virStoragePoolLookupByName(c, "tenki-unit-volumes"));
	virStoragePoolDestroy(p);
	virStoragePoolUndefine(p);
	virStoragePoolFree(p);
	virConnectClose(c);
}

/* Node info for capacity; an upload of a file the host does not have
 * fails with the reason and leaves no volume behind. */
static void test_node_and_upload(void **state)
{
	struct vmm_host *h = *state;
	char err[VMM_ERRLEN] = "";
	uint64_t mem = 0, free_mb = 0;
	unsigned cpus = 0;

	assert_int_equal(vmm_node_info(h, &cpus, &mem, &free_mb, err), 0);
	assert_true(cpus >= 1);
	assert_true(mem >= 1);
	assert_true(free_mb >= 1);
	assert_string_equal(vmm_uri(h), URI);
	assert_int_equal(vmm_pool_ensure(h, "tenki-unit-up", "/tenki-up", err),
			 0);
	assert_null(vmm_vol_upload(h, "tenki-unit-up", "img-k",
				   "/nonexistent/vmlinux", err));
	assert_non_null(strstr(err, "/nonexistent/vmlinux"));
	assert_null(
	    vmm_vol_upload(h, "tenki-unit-up", "../bad", "/etc/hostname", err));
	assert_null(
	    vmm_vol_upload(h, "tenki-no-pool", "img-k", "/etc/hostname", err));
	/* No channel on a domain that does not exist. */
	err[0] = '\0';
	assert_int_equal(vmm_channel_open(h, "tenki-none", err), -1);
	assert_true(err[0] != '\0');

	virConnectPtr c;
	virStoragePoolPtr p;
	assert_non_null(c = virConnectOpen(URI));
	assert_non_null(p = virStoragePoolLookupByName(c, "tenki-unit-up"));
	virStoragePoolDestroy(p);
	virStoragePoolUndefine(p);
	virStoragePoolFree(p);
	virConnectClose(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open),
	    cmocka_unit_test(test_lifecycle),
	    cmocka_unit_test(test_remove_running),
	    cmocka_unit_test(test_missing),
	    cmocka_unit_test(test_create_refused),
	    cmocka_unit_test(test_outside_stop),
	    cmocka_unit_test(test_list),
	    cmocka_unit_test(test_threads),
	    cmocka_unit_test(test_disks),
	    cmocka_unit_test(test_disks_leftover_pool),
	    cmocka_unit_test(test_disks_refused),
	    cmocka_unit_test(test_volumes_pool),
	    cmocka_unit_test(test_node_and_upload),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
