/*
 * domxml: the XML tenki gives libvirt and the little it reads back.
 *
 * Pure string work, no libvirt calls, so every piece is unit-tested: the
 * domain XML built from a struct vmm_vm_spec, the storage pool and overlay
 * volume XML, and bounded searches in libvirt's own XML (the agent
 * channel's socket path, a volume's format, the qemu user from the host
 * capabilities).  libxml2 is not a dependency: libvirt's output is regular
 * enough for a careful tag/attribute scanner.
 */
#ifndef TENKI_DOMXML_H
#define TENKI_DOMXML_H

#include <stdbool.h>
#include <sys/types.h>

#include "vmm.h"

#define DOMXML_AGENT_CHANNEL "org.tenki.agent.0"
#define DOMXML_NS_URI	     "https://tenki.dev/xmlns/vm/1"

/* Spare pcie-root-ports beyond those the initial devices take, so disks
 * can be hot-plugged later (q35 has no hotplug on pcie-root itself). */
#define DOMXML_SPARE_PORTS 4

/*
 * The domain XML for spec, running on accel (VMM_ACCEL_KVM or
 * VMM_ACCEL_TCG), malloc'd; NULL with a reason in err when spec is not
 * valid.  Every string from spec is XML-escaped.
 */
char *domxml_build(const struct vmm_vm_spec *spec, enum vmm_accel accel,
		   char *err);

/* A transient dir pool named name over the directory dir. */
char *domxml_pool(const char *name, const char *dir);

/*
 * A qcow2 volume named name of capacity bytes (the base's virtual size)
 * backed by base, whose format is base_fmt.  When uid is not (uid_t)-1
 * the file is owned by uid:gid, mode 0600.
 */
char *domxml_overlay_vol(const char *name, unsigned long long capacity,
			 const char *base, const char *base_fmt, uid_t uid,
			 gid_t gid);

/* A raw volume named name of capacity bytes (sparse: allocation 0),
 * owned as domxml_overlay_vol's. */
char *domxml_raw_vol(const char *name, unsigned long long capacity, uid_t uid,
		     gid_t gid);

/* The <disk> element of a volume disk on target ("vdb"). */
char *domxml_disk(const struct vmm_disk *disk, const char *target);

/* In a domain XML, the target dev of the disk whose source file is path,
 * malloc'd, or NULL. */
char *domxml_disk_target(const char *xml, const char *path);

/* In a domain XML, the first of vdb..vdz no disk uses, into out[8];
 * false when all are taken. */
bool domxml_free_target(const char *xml, char *out);

/* A disk of a domain XML: its target (vdb) and source file (malloc'd,
 * NULL when it has none). */
struct domxml_disk_ref {
	char target[8];
	char *source;
};

/* The disks besides vda (volumes) of a domain XML, at most max: their
 * count, or -1 for more or a malformed one.  Free with
 * domxml_disk_refs_free. */
int domxml_other_disks(const char *xml, struct domxml_disk_ref *out, int max);
void domxml_disk_refs_free(struct domxml_disk_ref *refs, int n);

/* Where a restored copy's stand-in for the saved guest's disk target
 * goes in dir (see domxml_saved_rewrite). */
#define DOMXML_STAND_IN "stand-in-"
void domxml_stand_in_path(const char *dir, const char *target, char *out,
			  size_t n);

/*
 * A live external snapshot: memory into the save image mem, the disk vda
 * switched to the overlay new_disk (made beforehand, on the current disk).
 */
char *domxml_snapshot(const char *mem, const char *new_disk,
		      const struct domxml_disk_ref *skip, int nskip);

/*
 * The XML saved in a save image, rewritten for a copy of the guest: the
 * domain name and UUID, the vda disk's source file, the console log files
 * (serial and console) and, when spec gives them, the kernel and initrd
 * files, from spec; everything else (the guest's ABI) kept.
 * malloc'd, or NULL with err when xml lacks one of them.
 */
char *domxml_saved_rewrite(const char *xml, const struct vmm_vm_spec *spec,
			   char *err);

/* XML-escaped copy of s (& < > ' " replaced), malloc'd. */
char *domxml_escape(const char *s);

/*
 * In a live domain XML, the unescaped source path of the unix channel
 * whose target name is name, malloc'd, or NULL if there is none.
 */
char *domxml_channel_path(const char *xml, const char *name);

/* In a storage pool XML, the unescaped target path, malloc'd, or NULL. */
char *domxml_pool_path(const char *xml);

/* In a storage volume XML, the format type of its target ("qcow2", "raw",
 * ...), malloc'd, or NULL. */
char *domxml_vol_format(const char *xml);

/* The host's <cpu> element in the capabilities XML, malloc'd, or NULL. */
char *domxml_host_cpu(const char *caps);

/*
 * In the host capabilities XML, the uid:gid the DAC security driver gives
 * domains of virttype ("qemu" or "kvm"): <baselabel type='…'>+U:+G.
 * Returns false when the host has no DAC model or no such label.
 */
bool domxml_dac_ids(const char *caps, const char *virttype, uid_t *uid,
		    gid_t *gid);

#endif
