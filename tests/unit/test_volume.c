/*
 * Unit tests of the volume parsers: volume specs (volumes/new), the
 * volume_size key, attach/detach verbs, and the disk XML of domxml.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "domxml.h"
#include "spec.h"
#include "volume.h"

static int parse(struct vol_spec *vs, const char *text, char *why)
{
	return volspec_parse(vs, text, strlen(text), why);
}

static void test_volspec(void **state)
{
	struct vol_spec vs;
	char why[SPEC_WHY_LEN];

	assert_int_equal(parse(&vs, "name=data size=10G\n", why), 0);
	assert_string_equal(vs.name, "data");
	assert_int_equal(vs.size, 10ULL << 30);
	assert_int_equal(parse(&vs, "name=data", why), 0);
	assert_int_equal(vs.size, 0);
	assert_int_equal(parse(&vs, "size='1M' name=\"x.y_z\"", why), 0);
	assert_string_equal(vs.name, "x.y_z");
	assert_int_equal(vs.size, 1ULL << 20);
	/* rounded up to whole MiB */
	assert_int_equal(parse(&vs, "name=a size=1048577", why), 0);
	assert_int_equal(vs.size, 2ULL << 20);
	assert_int_equal(parse(&vs, "{\"name\": \"j\", \"size\": \"2G\"}", why),
			 0);
	assert_int_equal(vs.size, 2ULL << 30);
	assert_int_equal(
	    parse(&vs, "{\"name\": \"j\", \"size\": 1048576}", why), 0);
	assert_int_equal(vs.size, 1ULL << 20);
}

static void test_volspec_bad(void **state)
{
	static const char *bad[] = {
	    "name=a size=0",
	    "name=a size=200G",
	    "name=a size=10Q",
	    "name=a size=512K",
	    "name=a size=-1",
	    "name=a size=",
	    "name=-a size=1M",
	    "name=b@d",
	    "name=a name=b",
	    "name=a size=1M size=2M",
	    "name=a color=red",
	    "name",
	    "name='a",
	    "{\"name\": \"a\", \"size\": true}",
	    "{\"name\": \"a\", \"size\": -5}",
	    "{\"name\": [\"a\"]}",
	    "[1]",
	    "{\"name\": \"a\"",
	};
	struct vol_spec vs;
	char why[SPEC_WHY_LEN];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		if (parse(&vs, bad[i], why) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_true(why[0] != '\0');
	}
	assert_int_equal(volspec_parse(&vs, "name=a\0b", 8, why), -1);
}

static void test_volume_size_default(void **state)
{
	struct sess_spec sp;
	char why[SPEC_WHY_LEN];
	const char *d = "cpu=1 volume_size=5G";

	spec_init(&sp);
	assert_int_equal(sp.volume_size, VOL_SIZE_DEFAULT);
	assert_int_equal(spec_apply(&sp, d, strlen(d), why), 0);
	assert_int_equal(sp.volume_size, 5ULL << 30);
	assert_int_equal(spec_apply(&sp, "volume_size=0", 13, why), -1);
	assert_int_equal(spec_apply(&sp, "volume_size=101G", 16, why), -1);
	spec_free(&sp);
}

static void test_verbs(void **state)
{
	struct vol_verb vv;
	char why[400];

	assert_int_equal(
	    spec_parse_vol_verb("attach data /data", true, &vv, why, 400), 0);
	assert_true(vv.attach);
	assert_string_equal(vv.target, "data");
	assert_string_equal(vv.path, "/data");
	assert_false(vv.ro);
	assert_int_equal(
	    spec_parse_vol_verb("attach  s1  /mnt/x  ro", false, &vv, why, 400),
	    0);
	assert_true(vv.ro);
	assert_int_equal(
	    spec_parse_vol_verb("attach data /data rw", true, &vv, why, 400),
	    0);
	assert_false(vv.ro);
	assert_int_equal(
	    spec_parse_vol_verb("detach data", true, &vv, why, 400), 0);
	assert_false(vv.attach);
	assert_int_equal(spec_parse_vol_verb("detach", false, &vv, why, 400),
			 0);
	assert_string_equal(vv.target, "");
	assert_int_equal(spec_parse_vol_verb("detach s", false, &vv, why, 400),
			 0);
	assert_string_equal(vv.target, "s");
}

static void test_verbs_bad(void **state)
{
	static const char *bad[] = {
	    "attach",
	    "attach data",
	    "attach data data",
	    "attach data /",
	    "attach data /a/../b",
	    "attach data /a/./b",
	    "attach data /a//b",
	    "attach data /proc",
	    "attach data /dev/x",
	    "attach data /x ro extra",
	    "attach data /x rx",
	    "attach d@ta /x",
	    "detach",
	    "detach a b",
	    "mount data /x",
	};
	struct vol_verb vv;
	char why[400];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		if (spec_parse_vol_verb(bad[i], true, &vv, why, 400) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_true(why[0] != '\0');
	}
}

static void test_disk_xml(void **state)
{
	struct vmm_disk d = {"/s/volume-pool/a'b.raw", "tk0123", true};
	char *x = domxml_disk(&d, "vdc"), *t, out[8];

	assert_non_null(x);
	assert_non_null(
	    strstr(x, "<source file='/s/volume-pool/a&apos;b.raw'/>"));
	assert_non_null(strstr(x, "<target dev='vdc' bus='virtio'/>"));
	assert_non_null(strstr(x, "<serial>tk0123</serial>"));
	assert_non_null(strstr(x, "<readonly/>"));
	assert_non_null(strstr(x, "type='raw'"));
	free(x);
	d.ro = false;
	x = domxml_disk(&d, "vdb");
	assert_null(strstr(x, "<readonly/>"));
	free(x);

	const char *dom =
	    "<domain><devices>"
	    "<disk type='file' device='disk'><source file='/root.qcow2'/>"
	    "<target dev='vda' bus='virtio'/></disk>"
	    "<disk type='file' device='disk'><source file='/v/a.raw'/>"
	    "<target dev='vdb' bus='virtio'/><serial>x</serial></disk>"
	    "<disk type='file' device='disk'><source file='/v/b.raw'/>"
	    "<target dev='vdd' bus='virtio'/></disk>"
	    "</devices></domain>";
	t = domxml_disk_target(dom, "/v/b.raw");
	assert_string_equal(t, "vdd");
	free(t);
	assert_null(domxml_disk_target(dom, "/v/c.raw"));
	assert_true(domxml_free_target(dom, out));
	assert_string_equal(out, "vdc");
	assert_true(domxml_free_target("<domain/>", out));
	assert_string_equal(out, "vdb");

	x = domxml_raw_vol("v.raw", 1048576, 64055, 107);
	assert_non_null(strstr(x, "<format type='raw'/>"));
	assert_non_null(strstr(x, "<allocation unit='bytes'>0</allocation>"));
	assert_non_null(strstr(x, "<owner>64055</owner>"));
	free(x);
}

static void test_domain_with_volumes(void **state)
{
	struct vmm_disk disks[2] = {{"/v/a.raw", "tka", false},
				    {"/v/b.raw", "tkb", true}};
	struct vmm_vm_spec spec = {
	    .domname = "tenki-x",
	    .vcpus = 1,
	    .memory_mb = 512,
	    .disk = "/d.qcow2",
	    .disks = disks,
	    .ndisks = 2,
	};
	char err[VMM_ERRLEN], *x = domxml_build(&spec, VMM_ACCEL_TCG, err);
	int ports = 0;

	assert_non_null(x);
	assert_non_null(strstr(x, "<target dev='vdb' bus='virtio'/>"));
	assert_non_null(strstr(x, "<target dev='vdc' bus='virtio'/>"));
	assert_non_null(strstr(x, "<serial>tkb</serial>"));
	/* each volume takes a root port; the spares stay free */
	for (const char *p = x; (p = strstr(p, "pcie-root-port")); p++)
		ports++;
	assert_int_equal(ports, 2 + 1 + 2 + DOMXML_SPARE_PORTS);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_volspec),
	    cmocka_unit_test(test_volspec_bad),
	    cmocka_unit_test(test_volume_size_default),
	    cmocka_unit_test(test_verbs),
	    cmocka_unit_test(test_verbs_bad),
	    cmocka_unit_test(test_disk_xml),
	    cmocka_unit_test(test_domain_with_volumes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
