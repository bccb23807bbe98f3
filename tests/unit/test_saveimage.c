/* Unit tests for saveimage (qemu save image headers) and the rewrite of
 * the domain XML a save image carries (domxml_saved_rewrite). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "domxml.h"
#include "saveimage.h"

static const char saved_xml[] =
    "<domain type='qemu'>\n"
    "  <name>tenki-9c93e11c-5e2a9769c5ad</name>\n"
    "  <uuid>82faf9c5-50cf-4c06-8ca2-5e2a9769c5ad</uuid>\n"
    "  <memory unit='KiB'>524288</memory>\n"
    "  <os>\n"
    "    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>\n"
    "    <kernel>/img/sandbox/vmlinux</kernel>\n"
    "    <initrd>/img/sandbox/initrd.img</initrd>\n"
    "  </os>\n"
    "  <devices>\n"
    "    <controller type='pci' index='1' model='pcie-root-port'>\n"
    "      <model name='pcie-root-port'/>\n"
    "    </controller>\n"
    "    <disk type='file' device='disk'>\n"
    "      <driver name='qemu' type='qcow2' discard='unmap'/>\n"
    "      <source file='/s/sessions/OLD/disk.qcow2'/>\n"
    "      <target dev='vda' bus='virtio'/>\n"
    "    </disk>\n"
    "    <serial type='pty'>\n"
    "      <log file='/s/sessions/OLD/console.log' append='on'/>\n"
    "    </serial>\n"
    "    <console type='pty'>\n"
    "      <log file='/s/sessions/OLD/console.log' append='on'/>\n"
    "    </console>\n"
    "  </devices>\n"
    "</domain>\n";

static struct vmm_vm_spec copy_spec(void)
{
	struct vmm_vm_spec v = {
	    .domname = "tenki-9c93e11c-aaaaaaaaaaaa",
	    .uuid = "11111111-2222-3333-4444-aaaaaaaaaaaa",
	    .disk = "/s/sessions/NEW/disk.qcow2",
	    .console = "/s/sessions/NEW/console.log",
	};
	return v;
}

static void test_rewrite(void **state)
{
	struct vmm_vm_spec v = copy_spec();
	char err[VMM_ERRLEN];
	char *x = domxml_saved_rewrite(saved_xml, &v, err);

	assert_non_null(x);
	assert_non_null(strstr(x, "<name>tenki-9c93e11c-aaaaaaaaaaaa</name>"));
	assert_non_null(
	    strstr(x, "<uuid>11111111-2222-3333-4444-aaaaaaaaaaaa</uuid>"));
	assert_non_null(
	    strstr(x, "<source file='/s/sessions/NEW/disk.qcow2'/>"));
	assert_null(strstr(x, "OLD"));
	/* the rest is kept byte for byte */
	assert_non_null(strstr(x, "<model name='pcie-root-port'/>"));
	assert_int_equal(strlen(x), strlen(saved_xml));
	free(x);
}

static void test_rewrite_escapes_and_refuses(void **state)
{
	struct vmm_vm_spec v = copy_spec();
	char err[VMM_ERRLEN];
	char *x;

	v.disk = "/s/a&b'.qcow2";
	x = domxml_saved_rewrite(saved_xml, &v, err);
	assert_non_null(x);
	assert_non_null(strstr(x, "file='/s/a&amp;b&apos;.qcow2'"));
	free(x);
	v = copy_spec();
	v.domname = "bad\nname";
	assert_null(domxml_saved_rewrite(saved_xml, &v, err));
	v = copy_spec();
	assert_null(
	    domxml_saved_rewrite("<domain><name>x</name></domain>", &v, err));
	assert_null(domxml_saved_rewrite("", &v, err));
}

/* A copy on another host names the image files of that host's pool;
 * without them given the saved ones stay. */
static void test_rewrite_kernel(void **state)
{
	struct vmm_vm_spec v = copy_spec();
	char err[VMM_ERRLEN];
	char *x = domxml_saved_rewrite(saved_xml, &v, err);

	assert_non_null(x);
	assert_non_null(strstr(x, "<kernel>/img/sandbox/vmlinux</kernel>"));
	free(x);
	v.kernel = "/pool/sandbox-vmlinux-1";
	v.initrd = "/pool/sandbox-initrd.img-2";
	x = domxml_saved_rewrite(saved_xml, &v, err);
	assert_non_null(x);
	assert_non_null(strstr(x, "<kernel>/pool/sandbox-vmlinux-1</kernel>"));
	assert_non_null(
	    strstr(x, "<initrd>/pool/sandbox-initrd.img-2</initrd>"));
	assert_null(strstr(x, "/img/"));
	free(x);
	/* asked for, but the saved XML has none */
	assert_null(domxml_saved_rewrite(
	    "<domain><name>x</name><uuid>u</uuid><devices><disk>"
	    "<source file='/d'/><target dev='vda'/></disk></devices>"
	    "</domain>",
	    &v, err));
	assert_non_null(strstr(err, "kernel"));
}

static void test_snapshot_xml(void **state)
{
	struct domxml_disk_ref vols[2] = {{"vdb", NULL}, {"vdc", NULL}};
	char *x = domxml_snapshot("/s/mem.save", "/s/disk.1.qcow2", NULL, 0);

	assert_non_null(x);
	assert_non_null(
	    strstr(x, "<memory snapshot='external' file='/s/mem.save'/>"));
	assert_non_null(strstr(x, "<source file='/s/disk.1.qcow2'/>"));
	assert_null(strstr(x, "snapshot='no'"));
	free(x);
	/* volumes stay out of the capture */
	x = domxml_snapshot("/s/mem.save", "/s/disk.1.qcow2", vols, 2);
	assert_non_null(x);
	assert_non_null(strstr(x, "<disk name='vdb' snapshot='no'/>"));
	assert_non_null(strstr(x, "<disk name='vdc' snapshot='no'/>"));
	free(x);
}

static const char saved_with_volume[] =
    "<domain><name>n</name><uuid>u</uuid><devices>\n"
    "<disk type='file' device='disk'><source file='/s/OLD/disk.qcow2'/>"
    "<target dev='vda' bus='virtio'/></disk>\n"
    "<disk type='file' device='disk'><source file='/vol/abc.raw'/>"
    "<target dev='vdb' bus='virtio'/><serial>tkabc</serial></disk>\n"
    "</devices></domain>";

/* A saved guest's volume: listed, and in a copy a stand-in in the
 * copy's directory, never the volume itself; without a directory for
 * stand-ins the copy is refused. */
static void test_volume_stand_ins(void **state)
{
	struct vmm_vm_spec v = copy_spec();
	struct domxml_disk_ref refs[4];
	char err[VMM_ERRLEN], *x;

	assert_int_equal(domxml_other_disks(saved_with_volume, refs, 4), 1);
	assert_string_equal(refs[0].target, "vdb");
	assert_string_equal(refs[0].source, "/vol/abc.raw");
	domxml_disk_refs_free(refs, 1);
	assert_int_equal(domxml_other_disks(saved_with_volume, refs, 0), -1);
	assert_int_equal(domxml_other_disks(saved_xml, refs, 4), 0);

	assert_null(domxml_saved_rewrite(saved_with_volume, &v, err));
	assert_non_null(strstr(err, "vdb"));
	v.stand_in_dir = "/s/NEW";
	x = domxml_saved_rewrite(saved_with_volume, &v, err);
	assert_non_null(x);
	assert_non_null(strstr(x, "<source file='/s/NEW/stand-in-vdb.raw'/>"));
	assert_non_null(
	    strstr(x, "<source file='/s/sessions/NEW/disk.qcow2'/>"));
	assert_null(strstr(x, "/vol/"));
	assert_non_null(strstr(x, "<serial>tkabc</serial>"));
	free(x);
}

/* A header, data_len bytes of data (xml, cookie at cookie_off), then a
 * tail standing for the migration stream. */
static size_t make_image(uint8_t *buf, const char *xml, uint32_t data_len,
			 uint32_t cookie_off, const char *tail)
{
	uint32_t u[5] = {2, data_len, 1, 0, cookie_off};

	memset(buf, 0, SAVEIMAGE_HDR_LEN + data_len);
	memcpy(buf, "LibvirtQemudSave", 16);
	memcpy(buf + 16, u, sizeof(u));
	memcpy(buf + SAVEIMAGE_HDR_LEN, xml, strlen(xml) + 1);
	if (cookie_off)
		strcpy((char *)buf + SAVEIMAGE_HDR_LEN + cookie_off,
		       "<cookie/>");
	memcpy(buf + SAVEIMAGE_HDR_LEN + data_len, tail, strlen(tail));
	return SAVEIMAGE_HDR_LEN + data_len + strlen(tail);
}

static void test_parse(void **state)
{
	static uint8_t buf[8192];
	char err[VMM_ERRLEN];
	const char *xml;
	size_t dl, n = make_image(buf, "<domain/>", 1000, 100, "QEVM");

	assert_int_equal(saveimage_parse(buf, n, &xml, &dl, err), 0);
	assert_string_equal(xml, "<domain/>");
	assert_int_equal(dl, 1000);
	/* short, bad magic, bad version, cookie past the data, no NUL */
	assert_int_equal(saveimage_parse(buf, 50, &xml, &dl, err), -1);
	buf[0] = 'X';
	assert_int_equal(saveimage_parse(buf, n, &xml, &dl, err), -1);
	n = make_image(buf, "<domain/>", 1000, 1000, "");
	assert_int_equal(saveimage_parse(buf, n, &xml, &dl, err), -1);
	n = make_image(buf, "<domain/>", 20, 0, "");
	memset(buf + SAVEIMAGE_HDR_LEN, 'x', 20);
	assert_int_equal(saveimage_parse(buf, n, &xml, &dl, err), -1);
	n = make_image(buf, "<domain/>", 1000, 0, "");
	buf[16] = 3;
	assert_int_equal(saveimage_parse(buf, n, &xml, &dl, err), -1);
}

static void test_relayout(void **state)
{
	static uint8_t buf[8192], out[8192];
	char err[VMM_ERRLEN];
	const char *xml;
	size_t dl;

	make_image(buf, "<domain>short</domain>", 200, 40, "");
	/* fits before the cookie: the cookie stays put */
	assert_int_equal(saveimage_relayout(buf, 200, "<d>x</d>", out, err), 0);
	assert_int_equal(
	    saveimage_parse(out, SAVEIMAGE_HDR_LEN + 200, &xml, &dl, err), 0);
	assert_string_equal(xml, "<d>x</d>");
	assert_string_equal((char *)out + SAVEIMAGE_HDR_LEN + 40, "<cookie/>");
	/* longer than the space before the cookie: the cookie moves */
	char longer[100];
	memset(longer, 'a', 99);
	longer[99] = '\0';
	assert_int_equal(saveimage_relayout(buf, 200, longer, out, err), 0);
	assert_int_equal(
	    saveimage_parse(out, SAVEIMAGE_HDR_LEN + 200, &xml, &dl, err), 0);
	assert_string_equal(xml, longer);
	uint32_t ck;
	memcpy(&ck, out + 32, 4);
	assert_int_equal(ck, 100);
	assert_string_equal((char *)out + SAVEIMAGE_HDR_LEN + 100, "<cookie/>");
	/* too long for the whole data */
	char huge[300];
	memset(huge, 'b', 299);
	huge[299] = '\0';
	assert_int_equal(saveimage_relayout(buf, 200, huge, out, err), -1);
}

static char *upper_name(const char *xml, void *arg, char *err)
{
	return strdup(arg);
}

static void test_copy(void **state)
{
	static uint8_t buf[8192];
	char src[] = "/tmp/tenki-test-saveXXXXXX", dst[64], err[VMM_ERRLEN];
	size_t n = make_image(buf, "<domain>old</domain>", 300, 0,
			      "the migration stream");
	int fd = mkstemp(src);
	uint8_t back[8192];

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, n), (ssize_t)n);
	close(fd);
	snprintf(dst, sizeof(dst), "%s.copy", src);
	unlink(dst);
	assert_int_equal(
	    saveimage_copy(src, dst, upper_name, "<domain>new</domain>", err),
	    0);
	FILE *f = fopen(dst, "rb");
	assert_non_null(f);
	size_t m = fread(back, 1, sizeof(back), f);
	fclose(f);
	assert_int_equal(m, n);
	assert_string_equal((char *)back + SAVEIMAGE_HDR_LEN,
			    "<domain>new</domain>");
	assert_memory_equal(back + SAVEIMAGE_HDR_LEN + 300,
			    "the migration stream", 20);
	/* the head alone: what a copy made elsewhere starts with */
	uint8_t *head;
	size_t hl;
	assert_int_equal(saveimage_head(src, upper_name, "<domain>new</domain>",
					&head, &hl, err),
			 0);
	assert_int_equal(hl, SAVEIMAGE_HDR_LEN + 300);
	assert_memory_equal(head, back, hl);
	free(head);
	/* an existing destination is refused and left alone */
	assert_int_equal(saveimage_copy(src, dst, upper_name, "<x/>", err), -1);
	unlink(dst);
	unlink(src);
	assert_int_equal(saveimage_copy(src, dst, upper_name, "<x/>", err), -1);
	assert_int_equal(access(dst, F_OK), -1);
	assert_int_equal(
	    saveimage_head(src, upper_name, "<x/>", &head, &hl, err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rewrite),
	    cmocka_unit_test(test_rewrite_escapes_and_refuses),
	    cmocka_unit_test(test_rewrite_kernel),
	    cmocka_unit_test(test_snapshot_xml),
	    cmocka_unit_test(test_volume_stand_ins),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_relayout),
	    cmocka_unit_test(test_copy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
