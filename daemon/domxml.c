/*
 * domxml: building the XML tenki hands to libvirt, and reading the few
 * values it needs back out of libvirt's XML.  See domxml.h.
 */
#include "domxml.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(DOMXML_SPARE_PORTS >= VMM_HOTPLUG_DISKS,
	       "a spare port for every disk the model may hot-plug");

#define VCPUS_MAX     16
#define MEMORY_MIN_MB 512
#define MEMORY_MAX_MB 65536

/* vmm.h: the one way the vmm layer (this file, vmm_libvirt.c,
 * saveimage.c) writes a reason into err[VMM_ERRLEN]. */
void vmm_seterr(char *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, VMM_ERRLEN, fmt, ap);
	va_end(ap);
}

/* ---- writing ---- */

static void put_escaped(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			fputs("&amp;", f);
			break;
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '\'':
			fputs("&apos;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		default:
			fputc(*s, f);
		}
	}
}

/* <tag>text</tag> on a line of its own. */
static void put_elem(FILE *f, const char *indent, const char *tag,
		     const char *text)
{
	fprintf(f, "%s<%s>", indent, tag);
	put_escaped(f, text);
	fprintf(f, "</%s>\n", tag);
}

/* Open a memory stream; *buf is the result once it is closed. */
static FILE *xml_open(char **buf, size_t *len)
{
	*buf = NULL;
	return open_memstream(buf, len);
}

/* Close the stream; the buffer, or NULL if anything failed to be written. */
static char *xml_close(FILE *f, char **buf)
{
	int failed = ferror(f);

	if (fclose(f) != 0 || failed) {
		free(*buf);
		return NULL;
	}
	return *buf;
}

char *domxml_escape(const char *s)
{
	char *buf;
	size_t len;
	FILE *f;

	if ((f = xml_open(&buf, &len)) == NULL)
		return NULL;
	put_escaped(f, s);
	return xml_close(f, &buf);
}

/* ---- the domain ---- */

/* XML 1.0 cannot carry most control characters, even as references;
 * libvirt would refuse them with a less clear message. */
static int check_text(const char *what, const char *s, char *err)
{
	if (s == NULL)
		return 0;
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20) {
			vmm_seterr(err, "%s contains a control character",
				   what);
			return -1;
		}
	}
	return 0;
}

static int check_spec(const struct vmm_vm_spec *spec, enum vmm_accel accel,
		      char *err)
{
	if (accel != VMM_ACCEL_KVM && accel != VMM_ACCEL_TCG) {
		vmm_seterr(err, "no accelerator chosen");
		return -1;
	}
	if (spec->domname == NULL || spec->domname[0] == '\0') {
		vmm_seterr(err, "the domain has no name");
		return -1;
	}
	if (spec->vcpus < 1 || spec->vcpus > VCPUS_MAX) {
		vmm_seterr(err, "%u vcpus: must be 1..%d", spec->vcpus,
			   VCPUS_MAX);
		return -1;
	}
	if (spec->memory_mb < MEMORY_MIN_MB ||
	    spec->memory_mb > MEMORY_MAX_MB) {
		vmm_seterr(err, "%u MiB of memory: must be %d..%d",
			   spec->memory_mb, MEMORY_MIN_MB, MEMORY_MAX_MB);
		return -1;
	}
	if (check_text("domain name", spec->domname, err) == -1 ||
	    check_text("uuid", spec->uuid, err) == -1 ||
	    check_text("kernel path", spec->kernel, err) == -1 ||
	    check_text("initrd path", spec->initrd, err) == -1 ||
	    check_text("kernel command line", spec->cmdline, err) == -1 ||
	    check_text("loader path", spec->loader, err) == -1 ||
	    check_text("disk path", spec->disk, err) == -1 ||
	    check_text("console path", spec->console, err) == -1)
		return -1;
	if (spec->ndisks > VMM_MAX_DISKS) {
		vmm_seterr(err, "%u volumes: at most %d", spec->ndisks,
			   VMM_MAX_DISKS);
		return -1;
	}
	for (unsigned i = 0; i < spec->ndisks; i++)
		if (check_text("volume path", spec->disks[i].path, err) == -1 ||
		    check_text("volume serial", spec->disks[i].serial, err) ==
			-1)
			return -1;
	return 0;
}

static void put_head(FILE *f, const struct vmm_vm_spec *spec,
		     enum vmm_accel accel)
{
	fprintf(f, "<domain type='%s'>\n",
		accel == VMM_ACCEL_KVM ? "kvm" : "qemu");
	put_elem(f, "  ", "name", spec->domname);
	if (spec->uuid != NULL)
		put_elem(f, "  ", "uuid", spec->uuid);
	/* Marks the domain as tenki's whatever its name. */
	fputs("  <metadata>\n"
	      "    <tenki:vm xmlns:tenki='" DOMXML_NS_URI "'/>\n"
	      "  </metadata>\n",
	      f);
	fprintf(f, "  <memory unit='MiB'>%u</memory>\n", spec->memory_mb);
	fprintf(f, "  <vcpu placement='static'>%u</vcpu>\n", spec->vcpus);
}

static void put_os(FILE *f, const struct vmm_vm_spec *spec)
{
	fputs("  <os>\n"
	      "    <type arch='x86_64' machine='q35'>hvm</type>\n",
	      f);
	if (spec->loader != NULL) {
		fputs("    <loader type='rom'>", f);
		put_escaped(f, spec->loader);
		fputs("</loader>\n", f);
	}
	if (spec->kernel != NULL)
		put_elem(f, "    ", "kernel", spec->kernel);
	if (spec->initrd != NULL)
		put_elem(f, "    ", "initrd", spec->initrd);
	if (spec->cmdline != NULL)
		put_elem(f, "    ", "cmdline", spec->cmdline);
	fputs("  </os>\n", f);
}

/* The guest kernel needs ACPI (acpi=off hangs it); every way out of the
 * guest ends the domain, so tenki sees one kind of stop. */
static void put_machine(FILE *f, enum vmm_accel accel)
{
	fputs("  <features>\n"
	      "    <acpi/>\n"
	      "  </features>\n",
	      f);
	if (accel == VMM_ACCEL_KVM)
		fputs("  <cpu mode='host-passthrough'/>\n", f);
	else
		fputs("  <cpu mode='maximum'/>\n", f);
	fputs("  <clock offset='utc'/>\n"
	      "  <on_poweroff>destroy</on_poweroff>\n"
	      "  <on_reboot>destroy</on_reboot>\n"
	      "  <on_crash>destroy</on_crash>\n",
	      f);
}

/*
 * libvirt puts each PCIe device on a free pcie-root-port before it adds
 * one of its own, so the ports the devices take are counted and
 * DOMXML_SPARE_PORTS more are left free for hotplug.
 */
static void put_controllers(FILE *f, const struct vmm_vm_spec *spec)
{
	/* virtio-serial and virtio-rng, plus the disk and the NIC. */
	int used = 2 + (spec->disk != NULL) + (spec->network ? 1 : 0) +
		   (int)spec->ndisks;
	int i;

	fputs("    <controller type='pci' index='0' model='pcie-root'/>\n", f);
	for (i = 1; i <= used + DOMXML_SPARE_PORTS; i++)
		fprintf(f,
			"    <controller type='pci' index='%d' "
			"model='pcie-root-port'/>\n",
			i);
	fputs("    <controller type='usb' model='none'/>\n", f);
}

static void put_disk(FILE *f, const struct vmm_vm_spec *spec)
{
	if (spec->disk == NULL)
		return;
	fputs("    <disk type='file' device='disk'>\n"
	      "      <driver name='qemu' type='qcow2' discard='unmap'/>\n"
	      "      <source file='",
	      f);
	put_escaped(f, spec->disk);
	fputs("'/>\n"
	      "      <target dev='vda' bus='virtio'/>\n"
	      "    </disk>\n",
	      f);
}

/* Volumes present from the start take vdb, vdc, ... in order. */
static void put_volume_disks(FILE *f, const struct vmm_vm_spec *spec)
{
	char target[8], *xml;

	for (unsigned i = 0; i < spec->ndisks; i++) {
		snprintf(target, sizeof(target), "vd%c", 'b' + i);
		if ((xml = domxml_disk(&spec->disks[i], target)) != NULL)
			fputs(xml, f);
		free(xml);
	}
}

static void put_network(FILE *f, const struct vmm_vm_spec *spec)
{
	if (!spec->network)
		return;
	fputs("    <interface type='user'>\n"
	      "      <model type='virtio'/>\n"
	      "    </interface>\n",
	      f);
}

/*
 * The console is a pty whose output qemu also hands to virtlogd, which
 * runs as root and writes the log file, so the file needs no permissions
 * for the qemu user, and a pty with no reader discards rather than blocks.
 * append='on' keeps what a previous run of the domain wrote.
 */
static void put_console(FILE *f, const struct vmm_vm_spec *spec)
{
	fputs("    <serial type='pty'>\n", f);
	if (spec->console != NULL) {
		fputs("      <log file='", f);
		put_escaped(f, spec->console);
		fputs("' append='on'/>\n", f);
	}
	fputs("      <target type='isa-serial' port='0'/>\n"
	      "    </serial>\n"
	      "    <console type='pty'>\n"
	      "      <target type='serial' port='0'/>\n"
	      "    </console>\n",
	      f);
}

/* No path: libvirt picks one under its own channel directory, with the
 * permissions qemu needs; vmm_channel_path reads it back. */
static void put_channel(FILE *f)
{
	fputs("    <channel type='unix'>\n"
	      "      <source mode='bind'/>\n"
	      "      <target type='virtio' name='" DOMXML_AGENT_CHANNEL "'/>\n"
	      "    </channel>\n",
	      f);
}

static void put_devices(FILE *f, const struct vmm_vm_spec *spec)
{
	fputs("  <devices>\n", f);
	put_controllers(f, spec);
	put_disk(f, spec);
	put_volume_disks(f, spec);
	put_network(f, spec);
	put_console(f, spec);
	put_channel(f);
	fputs("    <rng model='virtio'>\n"
	      "      <backend model='random'>/dev/urandom</backend>\n"
	      "    </rng>\n"
	      "    <memballoon model='none'/>\n"
	      "  </devices>\n",
	      f);
}

/*
 * No DAC relabelling: libvirt would chown the kernel, initrd and base
 * image, which many domains share, to the qemu user.  tenki makes them
 * world-readable and gives the qemu user its own overlay instead.
 */
static void put_seclabel(FILE *f)
{
	fputs("  <seclabel type='none' model='dac'/>\n", f);
}

char *domxml_build(const struct vmm_vm_spec *spec, enum vmm_accel accel,
		   char *err)
{
	char *buf;
	size_t len;
	FILE *f;

	if (check_spec(spec, accel, err) == -1)
		return NULL;
	if ((f = xml_open(&buf, &len)) == NULL) {
		vmm_seterr(err, "out of memory");
		return NULL;
	}
	put_head(f, spec, accel);
	put_os(f, spec);
	put_machine(f, accel);
	put_devices(f, spec);
	put_seclabel(f);
	fputs("</domain>\n", f);
	if (xml_close(f, &buf) == NULL) {
		vmm_seterr(err, "out of memory");
		return NULL;
	}
	return buf;
}

/* ---- storage ---- */

char *domxml_pool(const char *name, const char *dir)
{
	char *buf;
	size_t len;
	FILE *f;

	if ((f = xml_open(&buf, &len)) == NULL)
		return NULL;
	fputs("<pool type='dir'>\n", f);
	put_elem(f, "  ", "name", name);
	fputs("  <target>\n", f);
	put_elem(f, "    ", "path", dir);
	fputs("  </target>\n"
	      "</pool>\n",
	      f);
	return xml_close(f, &buf);
}

char *domxml_overlay_vol(const char *name, unsigned long long capacity,
			 const char *base, const char *base_fmt, uid_t uid,
			 gid_t gid)
{
	char *buf;
	size_t len;
	FILE *f;

	if ((f = xml_open(&buf, &len)) == NULL)
		return NULL;
	fputs("<volume type='file'>\n", f);
	put_elem(f, "  ", "name", name);
	fprintf(f, "  <capacity unit='bytes'>%llu</capacity>\n", capacity);
	fputs("  <target>\n"
	      "    <format type='qcow2'/>\n",
	      f);
	if (uid != (uid_t)-1)
		fprintf(f,
			"    <permissions>\n"
			"      <mode>0600</mode>\n"
			"      <owner>%u</owner>\n"
			"      <group>%u</group>\n"
			"    </permissions>\n",
			(unsigned)uid, (unsigned)gid);
	fputs("  </target>\n"
	      "  <backingStore>\n",
	      f);
	put_elem(f, "    ", "path", base);
	fputs("    <format type='", f);
	put_escaped(f, base_fmt);
	fputs("'/>\n"
	      "  </backingStore>\n"
	      "</volume>\n",
	      f);
	return xml_close(f, &buf);
}

char *domxml_raw_vol(const char *name, unsigned long long capacity, uid_t uid,
		     gid_t gid)
{
	char *buf;
	size_t len;
	FILE *f;

	if ((f = xml_open(&buf, &len)) == NULL)
		return NULL;
	fputs("<volume type='file'>\n", f);
	put_elem(f, "  ", "name", name);
	fprintf(f,
		"  <capacity unit='bytes'>%llu</capacity>\n"
		"  <allocation unit='bytes'>0</allocation>\n",
		capacity);
	fputs("  <target>\n"
	      "    <format type='raw'/>\n",
	      f);
	if (uid != (uid_t)-1)
		fprintf(f,
			"    <permissions>\n"
			"      <mode>0600</mode>\n"
			"      <owner>%u</owner>\n"
			"      <group>%u</group>\n"
			"    </permissions>\n",
			(unsigned)uid, (unsigned)gid);
	fputs("  </target>\n"
	      "</volume>\n",
	      f);
	return xml_close(f, &buf);
}

/*
 * The default cache mode: qemu writes raw data straight to the file and
 * turns the guest's flushes into fdatasync, so what the guest synced
 * survives a crash of the guest or of qemu (cache='none' would need
 * O_DIRECT, which tmpfs state directories lack).  A read-only disk is
 * also shareable: several guests may read one volume.
 */
char *domxml_disk(const struct vmm_disk *disk, const char *target)
{
	char *buf;
	size_t len;
	FILE *f;

	if ((f = xml_open(&buf, &len)) == NULL)
		return NULL;
	fputs("    <disk type='file' device='disk'>\n"
	      "      <driver name='qemu' type='raw' discard='unmap'/>\n"
	      "      <source file='",
	      f);
	put_escaped(f, disk->path);
	fputs("'/>\n      <target dev='", f);
	put_escaped(f, target);
	fputs("' bus='virtio'/>\n", f);
	put_elem(f, "      ", "serial", disk->serial);
	if (disk->ro)
		fputs("      <readonly/>\n"
		      "      <shareable/>\n",
		      f);
	fputs("    </disk>\n", f);
	return xml_close(f, &buf);
}

/* ---- reading libvirt's XML ---- */

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Append the UTF-8 encoding of code point c to out. */
static char *put_utf8(char *out, unsigned long c)
{
	if (c < 0x80) {
		*out++ = (char)c;
	} else if (c < 0x800) {
		*out++ = (char)(0xc0 | (c >> 6));
		*out++ = (char)(0x80 | (c & 0x3f));
	} else if (c < 0x10000) {
		*out++ = (char)(0xe0 | (c >> 12));
		*out++ = (char)(0x80 | ((c >> 6) & 0x3f));
		*out++ = (char)(0x80 | (c & 0x3f));
	} else {
		*out++ = (char)(0xf0 | (c >> 18));
		*out++ = (char)(0x80 | ((c >> 12) & 0x3f));
		*out++ = (char)(0x80 | ((c >> 6) & 0x3f));
		*out++ = (char)(0x80 | (c & 0x3f));
	}
	return out;
}

/* Decode the entity at s (just after '&', n bytes left) into out;
 * returns the bytes of input used, 0 if it is not an entity. */
static size_t put_entity(const char *s, size_t n, char **out)
{
	static const struct {
		const char *name;
		char c;
	} named[] = {
	    {"amp;", '&'},   {"lt;", '<'},   {"gt;", '>'},
	    {"apos;", '\''}, {"quot;", '"'},
	};
	unsigned long c = 0;
	size_t i, len;
	int base = 10;

	for (i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		len = strlen(named[i].name);
		if (n >= len && memcmp(s, named[i].name, len) == 0) {
			*(*out)++ = named[i].c;
			return len;
		}
	}
	if (n < 3 || s[0] != '#')
		return 0;
	i = 1;
	if (s[1] == 'x') {
		base = 16;
		i = 2;
	}
	for (len = i; i < n && i < len + 8 && s[i] != ';'; i++) {
		const char *digits = "0123456789abcdef";
		const char *d = memchr(digits, s[i] | 0x20, base);

		if (d == NULL)
			return 0;
		c = c * base + (unsigned long)(d - digits);
	}
	if (i == len || i >= n || s[i] != ';' || c == 0 || c > 0x10ffff)
		return 0;
	*out = put_utf8(*out, c);
	return i + 1;
}

/* The unescaped copy of the n bytes at s; an unknown entity is kept. */
static char *unescape(const char *s, size_t n)
{
	char *buf, *out;
	size_t i, used;

	/* Decoding never lengthens the text (&#x10000; is 9 bytes for 4). */
	if ((buf = malloc(n + 1)) == NULL)
		return NULL;
	out = buf;
	for (i = 0; i < n; i++) {
		if (s[i] == '&' &&
		    (used = put_entity(s + i + 1, n - i - 1, &out)) > 0) {
			i += used;
			continue;
		}
		*out++ = s[i];
	}
	*out = '\0';
	return buf;
}

/* The first element <name ...> in [p, end), or NULL. */
static const char *find_elem(const char *p, const char *end, const char *name)
{
	size_t n = strlen(name);

	while (p < end && (p = memchr(p, '<', (size_t)(end - p))) != NULL) {
		if ((size_t)(end - p) > n + 1 && strncmp(p + 1, name, n) == 0 &&
		    (is_space(p[n + 1]) || p[n + 1] == '>' || p[n + 1] == '/'))
			return p;
		p++;
	}
	return NULL;
}

/* Just past the '>' that ends the tag at p, quotes respected; NULL if
 * the tag does not end before end. */
static const char *tag_end(const char *p, const char *end)
{
	char quote = 0;

	for (; p < end; p++) {
		if (quote != 0) {
			if (*p == quote)
				quote = 0;
		} else if (*p == '\'' || *p == '"') {
			quote = *p;
		} else if (*p == '>') {
			return p + 1;
		}
	}
	return NULL;
}

static bool tag_is_empty(const char *p, const char *end)
{
	const char *e = tag_end(p, end);

	return e != NULL && e - p >= 2 && e[-2] == '/';
}

/* The unescaped value of attribute attr of the tag at p, malloc'd, or
 * NULL when the tag has no such attribute or is cut off before end. */
static char *tag_attr(const char *p, const char *end, const char *attr)
{
	size_t alen = strlen(attr), nlen;
	const char *name, *val;
	char quote;

	for (p++; p < end && !is_space(*p) && *p != '>' && *p != '/'; p++)
		;
	for (;;) {
		while (p < end && is_space(*p))
			p++;
		if (p >= end || *p == '>' || *p == '/')
			return NULL;
		for (name = p; p < end && !is_space(*p) && *p != '=' &&
			       *p != '>' && *p != '/';
		     p++)
			;
		nlen = (size_t)(p - name);
		while (p < end && is_space(*p))
			p++;
		if (p >= end || *p++ != '=')
			return NULL;
		while (p < end && is_space(*p))
			p++;
		if (p >= end || (*p != '\'' && *p != '"'))
			return NULL;
		quote = *p++;
		for (val = p; p < end && *p != quote; p++)
			;
		if (p >= end)
			return NULL;
		if (nlen == alen && memcmp(name, attr, alen) == 0)
			return unescape(val, (size_t)(p - val));
		p++;
	}
}

static bool tag_attr_is(const char *p, const char *end, const char *attr,
			const char *want)
{
	char *v = tag_attr(p, end, attr);
	bool same = v != NULL && strcmp(v, want) == 0;

	free(v);
	return same;
}

/* The unescaped text of the element at p (up to its first child or its
 * end tag), malloc'd, or NULL. */
static char *elem_text(const char *p, const char *end)
{
	const char *s, *e;

	if ((s = tag_end(p, end)) == NULL || s[-2] == '/')
		return NULL;
	if ((e = memchr(s, '<', (size_t)(end - s))) == NULL)
		return NULL;
	return unescape(s, (size_t)(e - s));
}

/* The end of the element <name> starting at p (its "</name>"), or NULL. */
static const char *elem_close(const char *p, const char *end, const char *name)
{
	char closer[64];
	const char *c;

	snprintf(closer, sizeof(closer), "</%s>", name);
	if ((c = strstr(p, closer)) == NULL || c >= end)
		return NULL;
	return c;
}

char *domxml_channel_path(const char *xml, const char *name)
{
	const char *end = xml + strlen(xml);
	const char *p = xml, *close, *t, *src;

	while ((p = find_elem(p, end, "channel")) != NULL) {
		if (tag_is_empty(p, end)) {
			p++;
			continue;
		}
		if ((close = elem_close(p, end, "channel")) == NULL)
			return NULL;
		t = find_elem(p, close, "target");
		if (t != NULL && tag_attr_is(t, close, "name", name)) {
			if ((src = find_elem(p, close, "source")) == NULL)
				return NULL;
			return tag_attr(src, close, "path");
		}
		p = close;
	}
	return NULL;
}

char *domxml_pool_path(const char *xml)
{
	const char *end = xml + strlen(xml);
	const char *t, *close, *path;

	if ((t = find_elem(xml, end, "target")) == NULL ||
	    (close = elem_close(t, end, "target")) == NULL ||
	    (path = find_elem(t, close, "path")) == NULL)
		return NULL;
	return elem_text(path, close);
}

char *domxml_vol_format(const char *xml)
{
	const char *end = xml + strlen(xml);
	const char *t, *close, *fmt;

	/* The volume's own <target>, not its <backingStore>'s format. */
	if ((t = find_elem(xml, end, "target")) == NULL ||
	    (close = elem_close(t, end, "target")) == NULL ||
	    (fmt = find_elem(t, close, "format")) == NULL)
		return NULL;
	return tag_attr(fmt, close, "type");
}

/* "+64055:+107" or "64055:107". */
static bool parse_ids(const char *s, uid_t *uid, gid_t *gid)
{
	unsigned long u, g;
	char *e;

	if (*s == '+')
		s++;
	if (*s < '0' || *s > '9')
		return false;
	u = strtoul(s, &e, 10);
	if (*e != ':')
		return false;
	s = e + 1;
	if (*s == '+')
		s++;
	if (*s < '0' || *s > '9')
		return false;
	g = strtoul(s, &e, 10);
	if (*e != '\0' || u >= UINT32_MAX || g >= UINT32_MAX)
		return false;
	*uid = (uid_t)u;
	*gid = (gid_t)g;
	return true;
}

/* In one <secmodel>, the DAC base label for virttype. */
static bool secmodel_dac_ids(const char *p, const char *end,
			     const char *virttype, uid_t *uid, gid_t *gid)
{
	const char *m, *b;
	char *text;
	bool found = false;

	if ((m = find_elem(p, end, "model")) == NULL)
		return false;
	text = elem_text(m, end);
	found = text != NULL && strcmp(text, "dac") == 0;
	free(text);
	if (!found)
		return false;
	for (b = p; (b = find_elem(b, end, "baselabel")) != NULL; b++) {
		if (!tag_attr_is(b, end, "type", virttype))
			continue;
		text = elem_text(b, end);
		found = text != NULL && parse_ids(text, uid, gid);
		free(text);
		return found;
	}
	return false;
}

char *domxml_host_cpu(const char *caps)
{
	const char *end = caps + strlen(caps), *host, *close, *cpu, *cend;

	if ((host = find_elem(caps, end, "host")) == NULL ||
	    (close = elem_close(host, end, "host")) == NULL ||
	    (cpu = find_elem(host, close, "cpu")) == NULL ||
	    (cend = elem_close(cpu, close, "cpu")) == NULL)
		return NULL;
	return strndup(cpu, (size_t)(cend - cpu));
}

bool domxml_dac_ids(const char *caps, const char *virttype, uid_t *uid,
		    gid_t *gid)
{
	const char *end = caps + strlen(caps);
	const char *p = caps, *close;

	while ((p = find_elem(p, end, "secmodel")) != NULL) {
		if ((close = elem_close(p, end, "secmodel")) == NULL)
			return false;
		if (secmodel_dac_ids(p, close, virttype, uid, gid))
			return true;
		p = close;
	}
	return false;
}

/* Calls fn for each <disk> element of a domain XML until it returns true. */
static bool each_disk(const char *xml,
		      bool (*fn)(const char *p, const char *close, void *arg),
		      void *arg)
{
	const char *end = xml + strlen(xml);
	const char *p = xml, *close;

	while ((p = find_elem(p, end, "disk")) != NULL) {
		if (tag_is_empty(p, end)) {
			p++;
			continue;
		}
		if ((close = elem_close(p, end, "disk")) == NULL)
			return false;
		if (fn(p, close, arg))
			return true;
		p = close;
	}
	return false;
}

struct disk_find {
	const char *path;
	char *target;
};

static bool disk_match(const char *p, const char *close, void *arg)
{
	struct disk_find *df = arg;
	const char *src = find_elem(p, close, "source");
	const char *t = find_elem(p, close, "target");

	if (src == NULL || t == NULL ||
	    !tag_attr_is(src, close, "file", df->path))
		return false;
	df->target = tag_attr(t, close, "dev");
	return df->target != NULL;
}

char *domxml_disk_target(const char *xml, const char *path)
{
	struct disk_find df = {path, NULL};

	each_disk(xml, disk_match, &df);
	return df.target;
}

static bool disk_mark(const char *p, const char *close, void *arg)
{
	bool *used = arg;
	const char *t = find_elem(p, close, "target");
	char *dev = t != NULL ? tag_attr(t, close, "dev") : NULL;

	if (dev != NULL && strlen(dev) == 3 && strncmp(dev, "vd", 2) == 0 &&
	    dev[2] >= 'a' && dev[2] <= 'z')
		used[dev[2] - 'a'] = true;
	free(dev);
	return false;
}

struct other_disks {
	struct domxml_disk_ref *out;
	int max, n;
	bool bad;
};

static bool disk_other(const char *p, const char *close, void *arg)
{
	struct other_disks *od = arg;
	const char *t = find_elem(p, close, "target");
	const char *src = find_elem(p, close, "source");
	char *dev = t != NULL ? tag_attr(t, close, "dev") : NULL;

	if (dev == NULL || strcmp(dev, "vda") == 0 || strlen(dev) > 7) {
		od->bad |= dev == NULL || strlen(dev) > 7;
		free(dev);
		return od->bad;
	}
	if (od->n == od->max) {
		od->bad = true;
		free(dev);
		return true;
	}
	struct domxml_disk_ref *r = &od->out[od->n++];
	snprintf(r->target, sizeof(r->target), "%s", dev);
	r->source = src != NULL ? tag_attr(src, close, "file") : NULL;
	free(dev);
	return false;
}

int domxml_other_disks(const char *xml, struct domxml_disk_ref *out, int max)
{
	struct other_disks od = {out, max, 0, false};

	each_disk(xml, disk_other, &od);
	if (od.bad) {
		domxml_disk_refs_free(out, od.n);
		return -1;
	}
	return od.n;
}

void domxml_disk_refs_free(struct domxml_disk_ref *refs, int n)
{
	for (int i = 0; i < n; i++) {
		free(refs[i].source);
		refs[i].source = NULL;
	}
}

bool domxml_free_target(const char *xml, char *out)
{
	bool used[26] = {true}; /* vda is the root disk */

	each_disk(xml, disk_mark, used);
	for (int i = 1; i < 26; i++) {
		if (!used[i]) {
			snprintf(out, 8, "vd%c", 'a' + i);
			return true;
		}
	}
	return false;
}

/* ---- snapshots and restored copies ---- */

char *domxml_snapshot(const char *mem, const char *new_disk,
		      const struct domxml_disk_ref *skip, int nskip)
{
	char *buf;
	size_t len;
	FILE *f;

	if ((f = xml_open(&buf, &len)) == NULL)
		return NULL;
	fputs("<domainsnapshot>\n"
	      "  <memory snapshot='external' file='",
	      f);
	put_escaped(f, mem);
	fputs("'/>\n"
	      "  <disks>\n"
	      "    <disk name='vda' snapshot='external' type='file'>\n"
	      "      <source file='",
	      f);
	put_escaped(f, new_disk);
	fputs("'/>\n"
	      "    </disk>\n",
	      f);
	for (int i = 0; i < nskip; i++) {
		fputs("    <disk name='", f);
		put_escaped(f, skip[i].target);
		fputs("' snapshot='no'/>\n", f);
	}
	fputs("  </disks>\n"
	      "</domainsnapshot>\n",
	      f);
	return xml_close(f, &buf);
}

/* One replacement of [from, to) in the XML by text (escaped). */
struct edit {
	const char *from, *to;
	const char *text;
};

#define MAX_EDITS (8 + VMM_MAX_DISKS)

/* The span of the value of attribute attr in the tag at p (inside its
 * quotes), or false. */
static bool attr_span(const char *p, const char *end, const char *attr,
		      const char **from, const char **to)
{
	const char *e = tag_end(p, end);
	size_t n = strlen(attr);
	const char *a;

	if (e == NULL)
		return false;
	for (a = p; (a = strstr(a, attr)) != NULL && a < e; a += n) {
		if (!is_space(a[-1]) || a[n] != '=' ||
		    (a[n + 1] != '\'' && a[n + 1] != '"'))
			continue;
		*from = a + n + 2;
		*to = memchr(*from, a[n + 1], (size_t)(e - *from));
		return *to != NULL;
	}
	return false;
}

/* The span of the text of the element <name> at p. */
static bool text_span(const char *p, const char *end, const char **from,
		      const char **to)
{
	const char *s = tag_end(p, end);

	if (s == NULL || s[-2] == '/')
		return false;
	*from = s;
	*to = memchr(s, '<', (size_t)(end - s));
	return *to != NULL;
}

/* The <disk> whose <target dev='vda'>: the span of its source file. */
static bool vda_source(const char *xml, const char *end, const char **from,
		       const char **to)
{
	const char *p = xml, *close, *t, *src;

	while ((p = find_elem(p, end, "disk")) != NULL) {
		if ((close = elem_close(p, end, "disk")) == NULL)
			return false;
		t = find_elem(p, close, "target");
		if (t != NULL && tag_attr_is(t, close, "dev", "vda")) {
			src = find_elem(p, close, "source");
			return src != NULL &&
			       attr_span(src, close, "file", from, to);
		}
		p = close;
	}
	return false;
}

static int add_edit(struct edit *ed, int *n, const char *from, const char *to,
		    const char *text)
{
	if (*n >= MAX_EDITS)
		return -1;
	ed[*n].from = from;
	ed[*n].to = to;
	ed[*n].text = text;
	(*n)++;
	return 0;
}

static int edit_cmp(const void *a, const void *b)
{
	const struct edit *x = a, *y = b;

	return x->from < y->from ? -1 : x->from > y->from;
}

/* The <os> element's kernel or initrd file, when the copy runs where the
 * image's files have other paths (another host's pool). */
static int os_file_edit(const char *xml, const char *end, const char *tag,
			const char *path, struct edit *ed, int *n, char *err)
{
	const char *os, *close, *p, *from, *to;

	if (path == NULL)
		return 0;
	if ((os = find_elem(xml, end, "os")) == NULL ||
	    (close = elem_close(os, end, "os")) == NULL ||
	    (p = find_elem(os, close, tag)) == NULL ||
	    !text_span(p, close, &from, &to) ||
	    add_edit(ed, n, from, to, path) < 0) {
		vmm_seterr(err, "the saved domain XML has no %s", tag);
		return -1;
	}
	return 0;
}

void domxml_stand_in_path(const char *dir, const char *target, char *out,
			  size_t n)
{
	snprintf(out, n, "%s/" DOMXML_STAND_IN "%s.raw", dir, target);
}

/*
 * Disks of the saved guest besides vda are volumes that were attached at
 * the capture: a copy must never open them (it would write into a
 * volume another guest has mounted), so each gets a blank stand-in in
 * spec->stand_in_dir, which the caller makes and detaches after the
 * restore.  Without stand_in_dir such a guest is refused.  The paths go
 * to paths, one per edit.
 */
struct stand_ins {
	const struct vmm_vm_spec *spec;
	struct edit *ed;
	int *n;
	char (*paths)[600];
	int k;
	char *err;
	bool failed;
};

static bool disk_stand_in(const char *p, const char *close, void *arg)
{
	struct stand_ins *si = arg;
	const char *t = find_elem(p, close, "target"), *src, *from, *to;
	char *dev;

	if (t == NULL || tag_attr_is(t, close, "dev", "vda"))
		return false;
	dev = tag_attr(t, close, "dev");
	src = find_elem(p, close, "source");
	if (si->spec->stand_in_dir == NULL || dev == NULL || strlen(dev) > 7 ||
	    si->k == VMM_MAX_DISKS || src == NULL ||
	    !attr_span(src, close, "file", &from, &to)) {
		vmm_seterr(si->err,
			   "the saved guest has a disk %s besides vda and no "
			   "place for its stand-in",
			   dev ? dev : "without a target");
		free(dev);
		return si->failed = true;
	}
	domxml_stand_in_path(si->spec->stand_in_dir, dev, si->paths[si->k],
			     sizeof(si->paths[si->k]));
	free(dev);
	if (add_edit(si->ed, si->n, from, to, si->paths[si->k++]) < 0) {
		vmm_seterr(si->err, "the saved domain XML has too many disks");
		return si->failed = true;
	}
	return false;
}

char *domxml_saved_rewrite(const char *xml, const struct vmm_vm_spec *spec,
			   char *err)
{
	char stand_ins[VMM_MAX_DISKS][600];
	const char *end = xml + strlen(xml), *p, *from, *to;
	struct edit ed[MAX_EDITS];
	int n = 0, i;
	char *buf;
	size_t len;
	FILE *f;

	if (check_text("domain name", spec->domname, err) == -1 ||
	    check_text("uuid", spec->uuid, err) == -1 ||
	    check_text("disk path", spec->disk, err) == -1 ||
	    check_text("console path", spec->console, err) == -1 ||
	    check_text("kernel path", spec->kernel, err) == -1 ||
	    check_text("initrd path", spec->initrd, err) == -1)
		return NULL;
	if ((p = find_elem(xml, end, "name")) == NULL ||
	    !text_span(p, end, &from, &to) ||
	    add_edit(ed, &n, from, to, spec->domname) < 0 ||
	    (p = find_elem(xml, end, "uuid")) == NULL ||
	    !text_span(p, end, &from, &to) ||
	    add_edit(ed, &n, from, to, spec->uuid) < 0) {
		vmm_seterr(err, "the saved domain XML has no name or uuid");
		return NULL;
	}
	if (!vda_source(xml, end, &from, &to) ||
	    add_edit(ed, &n, from, to, spec->disk) < 0) {
		vmm_seterr(err, "the saved domain XML has no vda disk file");
		return NULL;
	}
	struct stand_ins si = {spec, ed, &n, stand_ins, 0, err, false};
	each_disk(xml, disk_stand_in, &si);
	if (si.failed)
		return NULL;
	if (os_file_edit(xml, end, "kernel", spec->kernel, ed, &n, err) < 0 ||
	    os_file_edit(xml, end, "initrd", spec->initrd, ed, &n, err) < 0)
		return NULL;
	for (p = xml; (p = find_elem(p, end, "log")) != NULL; p++) {
		if (spec->console != NULL &&
		    attr_span(p, end, "file", &from, &to) &&
		    add_edit(ed, &n, from, to, spec->console) < 0) {
			vmm_seterr(err,
				   "the saved domain XML has too many logs");
			return NULL;
		}
	}
	/* In libvirt's XML each edit is in a different tag or text; odd
	 * XML could make two overlap: refuse it. */
	qsort(ed, (size_t)n, sizeof(ed[0]), edit_cmp);
	for (i = 1; i < n; i++) {
		if (ed[i].from < ed[i - 1].to) {
			vmm_seterr(err, "the saved domain XML is malformed");
			return NULL;
		}
	}
	if ((f = xml_open(&buf, &len)) == NULL) {
		vmm_seterr(err, "out of memory");
		return NULL;
	}
	for (p = xml, i = 0; i < n; i++) {
		fwrite(p, 1, (size_t)(ed[i].from - p), f);
		put_escaped(f, ed[i].text);
		p = ed[i].to;
	}
	fwrite(p, 1, (size_t)(end - p), f);
	if (xml_close(f, &buf) == NULL) {
		vmm_seterr(err, "out of memory");
		return NULL;
	}
	return buf;
}
