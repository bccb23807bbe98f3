/* Unit tests for domxml: the XML tenki builds and the bits it reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "domxml.h"

static struct vmm_vm_spec typical(void)
{
	struct vmm_vm_spec s = {
	    .domname = "tenki-0123abcd",
	    .uuid = "6c3f7ad4-2b0e-4d7e-9a43-0d1b5c1f9e21",
	    .vcpus = 1,
	    .memory_mb = 512,
	    .kernel = "/var/cache/tenki/images/sandbox/vmlinux",
	    .initrd = "/var/cache/tenki/images/sandbox/initrd.img",
	    .cmdline = "quiet console=ttyS0",
	    .loader = "/usr/share/qemu/qboot.rom",
	    .disk = "/var/lib/tenki/sessions/x/disk.qcow2",
	    .console = "/var/lib/tenki/sessions/x/console",
	    .network = true,
	};
	return s;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (; (hay = strstr(hay, needle)) != NULL; hay++)
		n++;
	return n;
}

#define assert_has(xml, s)   assert_non_null(strstr((xml), (s)))
#define assert_hasnt(xml, s) assert_null(strstr((xml), (s)))

static void test_build_tcg(void **state)
{
	struct vmm_vm_spec s = typical();
	char err[VMM_ERRLEN] = "";
	char *x = domxml_build(&s, VMM_ACCEL_TCG, err);

	assert_non_null(x);
	assert_true(strncmp(x, "<domain type='qemu'>\n", 21) == 0);
	assert_has(x, "<cpu mode='maximum'/>");
	assert_hasnt(x, "host-passthrough");
	assert_has(x, "<name>tenki-0123abcd</name>");
	assert_has(x, "<uuid>6c3f7ad4-2b0e-4d7e-9a43-0d1b5c1f9e21</uuid>");
	assert_has(x, "<tenki:vm xmlns:tenki='https://tenki.dev/xmlns/vm/1'/>");
	assert_has(x, "<memory unit='MiB'>512</memory>");
	assert_has(x, ">1</vcpu>");
	assert_has(x, "machine='q35'>hvm</type>");
	assert_has(x, "<loader type='rom'>/usr/share/qemu/qboot.rom</loader>");
	assert_has(x,
		   "<kernel>/var/cache/tenki/images/sandbox/vmlinux</kernel>");
	assert_has(x, "<initrd>/var/cache/tenki/images/sandbox/initrd.img<");
	assert_has(x, "<cmdline>quiet console=ttyS0</cmdline>");
	assert_has(x, "<acpi/>");
	assert_has(x, "<on_poweroff>destroy</on_poweroff>");
	assert_has(x, "<on_reboot>destroy</on_reboot>");
	assert_has(x, "<on_crash>destroy</on_crash>");
	assert_has(x, "index='0' model='pcie-root'/>");
	/* disk, NIC, virtio-serial, rng, and the spares */
	assert_int_equal(count(x, "model='pcie-root-port'"),
			 4 + DOMXML_SPARE_PORTS);
	assert_has(x, "index='8' model='pcie-root-port'");
	assert_has(x, "<controller type='usb' model='none'/>");
	assert_has(x, "<source file='/var/lib/tenki/sessions/x/disk.qcow2'/>");
	assert_has(x, "<driver name='qemu' type='qcow2'");
	assert_has(x, "<target dev='vda' bus='virtio'/>");
	assert_has(x, "<interface type='user'>\n      <model type='virtio'/>");
	assert_has(x, "<log file='/var/lib/tenki/sessions/x/console'");
	assert_has(x, "<serial type='pty'>");
	assert_has(x, "<source mode='bind'/>");
	assert_has(x, "<target type='virtio' name='org.tenki.agent.0'/>");
	assert_has(x, "<backend model='random'>/dev/urandom</backend>");
	assert_has(x, "<memballoon model='none'/>");
	assert_has(x, "<seclabel type='none' model='dac'/>");
	assert_hasnt(x, "<graphics");
	assert_hasnt(x, "<video");
	assert_hasnt(x, "<sound");
	assert_true(strcmp(x + strlen(x) - 10, "</domain>\n") == 0);
	free(x);
}

static void test_build_kvm_no_network(void **state)
{
	struct vmm_vm_spec s = typical();
	char err[VMM_ERRLEN] = "";
	char *x;

	s.network = false;
	s.vcpus = 16;
	s.memory_mb = 65536;
	x = domxml_build(&s, VMM_ACCEL_KVM, err);
	assert_non_null(x);
	assert_true(strncmp(x, "<domain type='kvm'>\n", 20) == 0);
	assert_has(x, "<cpu mode='host-passthrough'/>");
	assert_hasnt(x, "<interface");
	assert_has(x, ">16</vcpu>");
	assert_has(x, ">65536</memory>");
	assert_int_equal(count(x, "model='pcie-root-port'"),
			 3 + DOMXML_SPARE_PORTS);
	free(x);
}

static void test_build_optional_parts(void **state)
{
	struct vmm_vm_spec s = typical();
	char err[VMM_ERRLEN] = "";
	char *x;

	s.uuid = NULL;
	s.loader = NULL;
	s.initrd = NULL;
	s.cmdline = NULL;
	s.console = NULL;
	x = domxml_build(&s, VMM_ACCEL_TCG, err);
	assert_non_null(x);
	assert_hasnt(x, "<uuid>");
	assert_hasnt(x, "<loader");
	assert_hasnt(x, "<initrd>");
	assert_hasnt(x, "<cmdline>");
	assert_hasnt(x, "<log ");
	assert_has(x, "<serial type='pty'>");
	free(x);
}

static void test_build_escapes(void **state)
{
	struct vmm_vm_spec s = typical();
	char err[VMM_ERRLEN] = "";
	char *x;

	s.domname = "tenki-<a&b>";
	s.cmdline = "init=/x a='b' c=\"d\"";
	s.disk = "/tmp/it's <here>&.qcow2";
	s.console = "/tmp/\"c\"";
	x = domxml_build(&s, VMM_ACCEL_TCG, err);
	assert_non_null(x);
	assert_has(x, "<name>tenki-&lt;a&amp;b&gt;</name>");
	assert_has(x, "<cmdline>init=/x a=&apos;b&apos; c=&quot;d&quot;<");
	assert_has(x,
		   "<source file='/tmp/it&apos;s &lt;here&gt;&amp;.qcow2'/>");
	assert_has(x, "<log file='/tmp/&quot;c&quot;'");
	free(x);
}

static void test_build_refuses(void **state)
{
	struct vmm_vm_spec s;
	char err[VMM_ERRLEN];

	s = typical();
	s.vcpus = 0;
	err[0] = '\0';
	assert_null(domxml_build(&s, VMM_ACCEL_TCG, err));
	assert_non_null(strstr(err, "vcpus"));

	s = typical();
	s.vcpus = 17;
	assert_null(domxml_build(&s, VMM_ACCEL_TCG, err));

	s = typical();
	s.memory_mb = 256;
	err[0] = '\0';
	assert_null(domxml_build(&s, VMM_ACCEL_TCG, err));
	assert_non_null(strstr(err, "memory"));

	s = typical();
	s.memory_mb = 65537;
	assert_null(domxml_build(&s, VMM_ACCEL_TCG, err));

	s = typical();
	s.domname = "";
	assert_null(domxml_build(&s, VMM_ACCEL_TCG, err));
	s.domname = NULL;
	assert_null(domxml_build(&s, VMM_ACCEL_TCG, err));

	s = typical();
	s.cmdline = "quiet\ninit=/bin/sh";
	err[0] = '\0';
	assert_null(domxml_build(&s, VMM_ACCEL_TCG, err));
	assert_non_null(strstr(err, "control character"));

	s = typical();
	assert_null(domxml_build(&s, VMM_ACCEL_AUTO, err));
}

static void test_escape(void **state)
{
	char *e = domxml_escape("a&b<c>'d\"e");

	assert_string_equal(e, "a&amp;b&lt;c&gt;&apos;d&quot;e");
	free(e);
	e = domxml_escape("");
	assert_string_equal(e, "");
	free(e);
}

/* What libvirt 9 gives back for a running domain, trimmed. */
static const char live_xml[] =
    "<domain type='qemu' id='3'>\n"
    "  <name>tenki-0123abcd</name>\n"
    "  <devices>\n"
    "    <channel type='unix'>\n"
    "      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/"
    "domain-3-tenki-0123abcd/org.qemu.guest_agent.0'/>\n"
    "      <target type='virtio' name='org.qemu.guest_agent.0' "
    "state='disconnected'/>\n"
    "      <alias name='channel0'/>\n"
    "    </channel>\n"
    "    <channel type='unix'>\n"
    "      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/"
    "domain-3-tenki-0123abcd/org.tenki.agent.0'/>\n"
    "      <target type='virtio' name='org.tenki.agent.0' "
    "state='disconnected'/>\n"
    "      <alias name='channel1'/>\n"
    "      <address type='virtio-serial' controller='0' bus='0' "
    "port='2'/>\n"
    "    </channel>\n"
    "  </devices>\n"
    "</domain>\n";

static void test_channel_path(void **state)
{
	char *p = domxml_channel_path(live_xml, DOMXML_AGENT_CHANNEL);

	assert_non_null(p);
	assert_string_equal(p, "/var/lib/libvirt/qemu/channel/target/"
			       "domain-3-tenki-0123abcd/org.tenki.agent.0");
	free(p);
	p = domxml_channel_path(live_xml, "org.qemu.guest_agent.0");
	assert_non_null(p);
	assert_non_null(strstr(p, "guest_agent.0"));
	free(p);
	assert_null(domxml_channel_path(live_xml, "org.tenki.agent"));
	assert_null(domxml_channel_path(live_xml, "org.tenki.agent.00"));
}

static void test_channel_path_odd_xml(void **state)
{
	char *p;

	/* Double quotes, spaces around '=', escaped path, attribute order. */
	p = domxml_channel_path(
	    "<channel type=\"unix\"><target name = \"org.tenki.agent.0\" "
	    "type=\"virtio\"/><source path=\"/a&amp;b/&lt;c&gt;/&#65;&#x42;"
	    "/&apos;&quot;\" mode=\"bind\"/></channel>",
	    DOMXML_AGENT_CHANNEL);
	assert_non_null(p);
	assert_string_equal(p, "/a&b/<c>/AB/'\"");
	free(p);

	/* The name inside another attribute's value does not count. */
	assert_null(domxml_channel_path(
	    "<channel><target alias=\"name='org.tenki.agent.0'\"/>"
	    "<source path='/x'/></channel>",
	    DOMXML_AGENT_CHANNEL));
	/* A bound channel without a path yet (test driver, inactive). */
	assert_null(
	    domxml_channel_path("<channel type='unix'><target type='virtio' "
				"name='org.tenki.agent.0'/></channel>",
				DOMXML_AGENT_CHANNEL));
	/* Cut off, empty, or no channel at all. */
	assert_null(domxml_channel_path(
	    "<channel type='unix'><source path='/x'/><target "
	    "name='org.tenki.agent.0'/>",
	    DOMXML_AGENT_CHANNEL));
	assert_null(domxml_channel_path("<channel type='unix'><source path='/x",
					DOMXML_AGENT_CHANNEL));
	assert_null(domxml_channel_path("", DOMXML_AGENT_CHANNEL));
	assert_null(domxml_channel_path("<", DOMXML_AGENT_CHANNEL));
	assert_null(domxml_channel_path("<channels><target name='org.tenki."
					"agent.0'/><source path='/x'/>"
					"</channels>",
					DOMXML_AGENT_CHANNEL));
	/* A self-closing channel is skipped, the next one is found. */
	p = domxml_channel_path("<channel type='pty'/><channel><source "
				"path='/y'/><target name='org.tenki.agent.0'/>"
				"</channel>",
				DOMXML_AGENT_CHANNEL);
	assert_non_null(p);
	assert_string_equal(p, "/y");
	free(p);
	/* Unknown entities are kept as they are. */
	p = domxml_channel_path("<channel><source path='/a&bogus;&#;&#x;'/>"
				"<target name='org.tenki.agent.0'/></channel>",
				DOMXML_AGENT_CHANNEL);
	assert_non_null(p);
	assert_string_equal(p, "/a&bogus;&#;&#x;");
	free(p);
}

/* Whatever domxml_escape writes, the reader gets back unchanged. */
static void test_escape_round_trip(void **state)
{
	static const char *paths[] = {
	    "/plain",  "/a b/c",  "/&amp;",
	    "/'\"<>&", "/x&#65;", "/unicode/\xc3\xa9t\xc3\xa9",
	    "/;&;",
	};
	size_t i;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		char *e = domxml_escape(paths[i]), *xml, *back;

		assert_non_null(e);
		assert_true(asprintf(&xml,
				     "<channel><source path='%s'/><target "
				     "name='org.tenki.agent.0'/></channel>",
				     e) > 0);
		back = domxml_channel_path(xml, DOMXML_AGENT_CHANNEL);
		assert_non_null(back);
		assert_string_equal(back, paths[i]);
		free(back);
		free(xml);
		free(e);
	}
}

static void test_vol_format(void **state)
{
	char *f;

	f = domxml_vol_format(
	    "<volume type='file'>\n  <name>disk.qcow2</name>\n"
	    "  <capacity unit='bytes'>2147483648</capacity>\n"
	    "  <target>\n    <path>/x/disk.qcow2</path>\n"
	    "    <format type='qcow2'/>\n  </target>\n"
	    "  <backingStore>\n    <path>/b/rootfs.img</path>\n"
	    "    <format type='raw'/>\n  </backingStore>\n</volume>\n");
	assert_non_null(f);
	assert_string_equal(f, "qcow2");
	free(f);
	f = domxml_vol_format("<volume><target><path>/v</path></target>"
			      "<backingStore><format type='raw'/>"
			      "</backingStore></volume>");
	assert_null(f);
	assert_null(domxml_vol_format("<volume/>"));
}

static const char caps_xml[] =
    "<capabilities>\n  <host>\n"
    "    <cpu><arch>x86_64</arch><feature name='vmx'/></cpu>\n"
    "    <secmodel>\n      <model>apparmor</model>\n"
    "      <doi>0</doi>\n    </secmodel>\n"
    "    <secmodel>\n      <model>dac</model>\n      <doi>0</doi>\n"
    "      <baselabel type='kvm'>+64055:+107</baselabel>\n"
    "      <baselabel type='qemu'>+1000:+1001</baselabel>\n"
    "    </secmodel>\n  </host>\n</capabilities>\n";

static void test_dac_ids(void **state)
{
	uid_t u = 0;
	gid_t g = 0;

	assert_true(domxml_dac_ids(caps_xml, "kvm", &u, &g));
	assert_int_equal(u, 64055);
	assert_int_equal(g, 107);
	assert_true(domxml_dac_ids(caps_xml, "qemu", &u, &g));
	assert_int_equal(u, 1000);
	assert_int_equal(g, 1001);
	assert_false(domxml_dac_ids(caps_xml, "xen", &u, &g));
	assert_false(domxml_dac_ids("<capabilities/>", "qemu", &u, &g));
	assert_false(domxml_dac_ids(
	    "<secmodel><model>selinux</model><baselabel type='qemu'>"
	    "+1:+2</baselabel></secmodel>",
	    "qemu", &u, &g));
	assert_false(
	    domxml_dac_ids("<secmodel><model>dac</model><baselabel type='qemu'>"
			   "qemu:kvm</baselabel></secmodel>",
			   "qemu", &u, &g));
	assert_true(domxml_dac_ids("<secmodel><model>dac</model><baselabel "
				   "type='qemu'>0:0</baselabel></secmodel>",
				   "qemu", &u, &g));
	assert_int_equal(u, 0);
}

static void test_host_cpu(void **state)
{
	char *c = domxml_host_cpu(caps_xml);

	assert_non_null(c);
	assert_string_equal(c, "<cpu><arch>x86_64</arch><feature name='vmx'/>");
	free(c);
	/* a guest's <cpu> outside <host> is not the host's */
	assert_null(domxml_host_cpu("<capabilities><guest><cpu/></guest>"
				    "<host></host></capabilities>"));
	assert_null(domxml_host_cpu("<host><cpu>"));
}

static void test_pool_and_volume(void **state)
{
	char *p = domxml_pool("tenki-pool-1", "/var/lib/tenki/a&b");
	char *v;

	assert_non_null(p);
	assert_has(p, "<pool type='dir'>");
	assert_has(p, "<name>tenki-pool-1</name>");
	assert_has(p, "<path>/var/lib/tenki/a&amp;b</path>");
	free(p);
	p = domxml_pool_path("<pool type='dir'><name>n</name><source>"
			     "</source><target>\n    <path>/d&amp;x</path>\n"
			     "  </target></pool>");
	assert_non_null(p);
	assert_string_equal(p, "/d&x");
	free(p);
	assert_null(domxml_pool_path("<pool><target></target></pool>"));

	v = domxml_overlay_vol("disk.qcow2", 2147483648ULL,
			       "/var/cache/tenki/images/sandbox/rootfs.qcow2",
			       "qcow2", 64055, 107);
	assert_non_null(v);
	assert_has(v, "<name>disk.qcow2</name>");
	assert_has(v, "<capacity unit='bytes'>2147483648</capacity>");
	assert_has(v, "<target>\n    <format type='qcow2'/>");
	assert_has(v, "<owner>64055</owner>");
	assert_has(v, "<group>107</group>");
	assert_has(v, "<mode>0600</mode>");
	assert_has(v,
		   "<backingStore>\n    <path>/var/cache/tenki/images/"
		   "sandbox/rootfs.qcow2</path>\n    <format type='qcow2'/>");
	free(v);

	v = domxml_overlay_vol("d", 1, "/b", "raw", (uid_t)-1, (gid_t)-1);
	assert_non_null(v);
	assert_hasnt(v, "<permissions>");
	assert_has(v, "<format type='raw'/>");
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build_tcg),
	    cmocka_unit_test(test_build_kvm_no_network),
	    cmocka_unit_test(test_build_optional_parts),
	    cmocka_unit_test(test_build_escapes),
	    cmocka_unit_test(test_build_refuses),
	    cmocka_unit_test(test_escape),
	    cmocka_unit_test(test_channel_path),
	    cmocka_unit_test(test_channel_path_odd_xml),
	    cmocka_unit_test(test_escape_round_trip),
	    cmocka_unit_test(test_vol_format),
	    cmocka_unit_test(test_dac_ids),
	    cmocka_unit_test(test_host_cpu),
	    cmocka_unit_test(test_pool_and_volume),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
