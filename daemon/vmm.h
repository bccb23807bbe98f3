/*
 * vmm: one libvirt host, behind one interface.
 *
 * The model asks a host to make, start, pause, resume, stop and remove VMs
 * and their disks; it never sees libvirt types.  Today there is one backend
 * (vmm_libvirt.c) and one host, the local qemu:///system; remote hosts
 * (qemu+tcp://, qemu+ssh://) use the same interface.
 *
 * Every function that can fail writes a one-line human-readable reason
 * (no trailing newline) into err[VMM_ERRLEN] and returns -1.
 * All functions are safe to call from several threads at once.
 */
#ifndef TENKI_VMM_H
#define TENKI_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMM_ERRLEN 512

/* Write a reason into err[VMM_ERRLEN] (the vmm backend's helper). */
void vmm_seterr(char *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

struct vmm_host;

enum vmm_accel {
	VMM_ACCEL_AUTO = 0, /* kvm when the CPU has vmx/svm and is not PVM */
	VMM_ACCEL_KVM,
	VMM_ACCEL_TCG,
};

enum vmm_state {
	VMM_NOT_FOUND = 0, /* no such domain */
	VMM_RUNNING,
	VMM_PAUSED,
	VMM_SHUTOFF, /* defined, not running (crashed, shut down, destroyed) */
	VMM_OTHER,   /* starting, shutting down, pmsuspended, ... */
};

/* A volume given to a VM as a virtio disk: the guest finds it by serial
 * (/sys/block/vdX/serial), never by its vd letter. */
struct vmm_disk {
	const char *path;   /* raw file of the volume */
	const char *serial; /* at most VMM_SERIAL_MAX characters */
	bool ro;	    /* read-only (and shareable) */
};

#define VMM_SERIAL_MAX 20 /* virtio-blk's ID field */
#define VMM_MAX_DISKS  16 /* vdb..vdq besides the root disk */
/* Disks a running VM can take beyond those it started with: its spare
 * PCIe hot-plug ports (DOMXML_SPARE_PORTS). */
#define VMM_HOTPLUG_DISKS 4

struct vmm_vm_spec {
	const char *domname; /* libvirt domain name, "tenki-<hex>" */
	const char *uuid;    /* libvirt domain UUID (not the session id) */
	unsigned vcpus;	     /* 1..16 */
	unsigned memory_mb;  /* 512..65536 */
	const char *kernel;  /* uncompressed PVH vmlinux */
	const char *initrd;  /* initramfs with the agent */
	const char *cmdline; /* kernel command line */
	const char *loader;  /* firmware rom (qboot) or NULL for the default */
	const char *disk;    /* qcow2 overlay made by vmm_disk_create */
	const char *console; /* file the serial console is logged to */
	bool network;	     /* user-mode NIC (outbound access) or none */
	const struct vmm_disk *disks; /* volumes attached from the start */
	unsigned ndisks;	      /* at most VMM_MAX_DISKS */
	/* Restores: where blank stand-ins for the saved guest's volumes go
	 * (vmm_restore); NULL refuses a saved guest that had volumes. */
	const char *stand_in_dir;
};

/* Open a connection to the libvirt at uri; chooses the accelerator when
 * accel is VMM_ACCEL_AUTO and logs which one it chose and why. */
struct vmm_host *vmm_open(const char *uri, enum vmm_accel accel, char *err);
void vmm_close(struct vmm_host *host);

/* "kvm" or "tcg": what this host's VMs run on. */
const char *vmm_accel_name(const struct vmm_host *host);

/*
 * Create a qcow2 overlay at path backed by the read-only image base
 * (qcow2 or raw, detected), readable and writable by the qemu process.
 * Leaves nothing behind on failure.
 */
int vmm_disk_create(struct vmm_host *host, const char *base, const char *path,
		    char *err);
int vmm_disk_delete(struct vmm_host *host, const char *path, char *err);

/*
 * Define a persistent domain from spec and start it.  On failure, nothing
 * of it remains defined.  The agent channel is a unix socket libvirt
 * creates (mode='bind', target name org.tenki.agent.0); its path is
 * returned by vmm_channel_path.
 */
int vmm_create(struct vmm_host *host, const struct vmm_vm_spec *spec,
	       char *err);

/* The host path of the domain's agent channel socket, malloc'd, or NULL
 * (with err) when the domain is not running. */
char *vmm_channel_path(struct vmm_host *host, const char *domname, char *err);

int vmm_pause(struct vmm_host *host, const char *domname, char *err);
int vmm_resume(struct vmm_host *host, const char *domname, char *err);

/* Power off at once (virDomainDestroy); a domain already off is success. */
int vmm_destroy(struct vmm_host *host, const char *domname, char *err);

/* Destroy if running, then undefine (with managed save and snapshot
 * metadata); a domain that does not exist is success. */
int vmm_remove(struct vmm_host *host, const char *domname, char *err);

/*
 * Live capture of a running domain: its memory goes to the save image
 * mem_path while the VM keeps running (paused only for the switch), and
 * its disk vda switches to new_disk, an overlay the caller made with
 * vmm_disk_create on the current disk, which nothing writes from then on.
 */
int vmm_snapshot(struct vmm_host *host, const char *domname,
		 const char *mem_path, const char *new_disk, char *err);

/* Wait until no libvirt job (a snapshot, a save) runs on the domain, for
 * at most timeout_ms: a job whose caller died (tenkid killed mid-call)
 * goes on in libvirtd.  0 when none runs or there is no such domain; -1
 * (err) on timeout or when libvirt cannot tell. */
int vmm_job_wait(struct vmm_host *host, const char *domname, int timeout_ms,
		 char *err);

/* Save a running domain's memory to the save image path; the domain
 * stops and is undefined (its disk is no longer written). */
int vmm_save(struct vmm_host *host, const char *domname, const char *path,
	     char *err);

/*
 * Start a copy of a saved guest (a vmm_snapshot memory image) as a new,
 * running, transient domain named spec->domname with spec->uuid, disk
 * spec->disk (an overlay on the saved disk) and console spec->console;
 * the rest of spec must match the saved guest.  copy is a scratch path
 * for the per-copy image (its header names the new domain), removed
 * before returning.  On failure no domain remains.
 */
int vmm_restore(struct vmm_host *host, const char *image, const char *copy,
		const struct vmm_vm_spec *spec, char *err);

/*
 * vmm_restore in two halves, so the first can run ahead of time, off a
 * create's path: vmm_restore_prepare writes the per-copy image copy (the
 * slow part is the copy of the guest's memory, not libvirt); nothing of
 * it touches libvirt.  vmm_restore_prepared starts the copy and removes
 * it, as vmm_restore does.
 */
int vmm_restore_prepare(struct vmm_host *host, const char *image,
			const char *copy, const struct vmm_vm_spec *spec,
			char *err);
int vmm_restore_prepared(struct vmm_host *host, const char *copy,
			 const struct vmm_vm_spec *spec, char *err);

enum vmm_state vmm_state(struct vmm_host *host, const char *domname);

/* Names of all defined domains whose name starts with prefix, as a
 * NULL-terminated malloc'd array of malloc'd strings (free with
 * vmm_free_names).  Used to find orphans after a crash. */
char **vmm_list(struct vmm_host *host, const char *prefix, char *err);
void vmm_free_names(char **names);

/*
 * Volumes: one persistent libvirt dir pool named pool over dir, holding
 * raw volumes (sparse files) owned by the qemu user.
 */
/* Define (if needed) and start the pool; an existing one is reused. */
int vmm_pool_ensure(struct vmm_host *host, const char *pool, const char *dir,
		    char *err);
/* Create the raw volume name of bytes in pool (sparse); nothing remains on
 * failure.  An existing volume of that name is an error. */
int vmm_vol_create(struct vmm_host *host, const char *pool, const char *name,
		   unsigned long long bytes, char *err);
/* Grow the volume to bytes (never shrinks). */
int vmm_vol_resize(struct vmm_host *host, const char *pool, const char *name,
		   unsigned long long bytes, char *err);
/* Delete it; a volume that does not exist is success. */
int vmm_vol_delete(struct vmm_host *host, const char *pool, const char *name,
		   char *err);

/* Hot-plug disk into the running domain (live and in its definition). */
int vmm_attach_disk(struct vmm_host *host, const char *domname,
		    const struct vmm_disk *disk, char *err);
/* Unplug the disk whose file is path, waiting until the guest let it go;
 * a disk that is not there is success. */
int vmm_detach_disk(struct vmm_host *host, const char *domname,
		    const char *path, char *err);
/* 1 when the running domain has a disk on path, 0 when not, -1 (err) when
 * libvirt cannot tell. */
int vmm_disk_attached(struct vmm_host *host, const char *domname,
		      const char *path, char *err);

/*
 * Lifecycle events: cb is called (from the vmm event thread, with no lock
 * held by vmm) when a domain stops for any reason other than a call made
 * through this interface: crash, guest poweroff, virsh destroy.
 * reason is a short text such as "crashed" or "destroyed outside tenki".
 */
typedef void (*vmm_stopped_cb)(const char *domname, const char *reason,
			       void *opaque);
void vmm_on_stopped(struct vmm_host *host, vmm_stopped_cb cb, void *opaque);

/* ---- several hosts ---- */

/* The connection's URI. */
const char *vmm_uri(const struct vmm_host *host);

/* The host's CPUs and memory (MiB), as libvirt reports them; also the
 * cheap probe of a host's health: -1 (err) when libvirt cannot be
 * reached (the connection is reopened when it died). */
int vmm_node_info(struct vmm_host *host, unsigned *cpus, uint64_t *mem_mb,
		  uint64_t *free_mb, char *err);

/*
 * The file local_path as the volume name of the pool (made with
 * vmm_pool_ensure), uploaded through libvirt (virStorageVolUpload) unless
 * a complete upload of that name is there already: a marker volume
 * NAME.done is made last, so an interrupted upload is redone.  Returns
 * the volume's path on that host (malloc'd), or NULL with err.
 */
char *vmm_vol_upload(struct vmm_host *host, const char *pool, const char *name,
		     const char *local_path, char *err);

/* Where a restore puts the stand-in for the saved guest's volume disk
 * target (vdb...) in spec->stand_in_dir; detach it by this path. */
void vmm_stand_in_path(const char *dir, const char *target, char *out,
		       size_t n);

/* vmm_vol_upload of a qcow2 overlay whose backing file is renamed to
 * backing, a path on host (its base there), on the way. */
char *vmm_overlay_upload(struct vmm_host *host, const char *pool,
			 const char *name, const char *local_path,
			 const char *backing, char *err);

/* Whether a guest saved on a can run on from its memory on b: the same
 * accelerator and qemu, and under KVM the same host CPU. */
bool vmm_same_machine(const struct vmm_host *a, const struct vmm_host *b);

/*
 * vmm_restore on another host: image is the saved guest on this machine,
 * image_vol the same file uploaded into host's pool (vmm_vol_upload).
 * The copy is a clone of image_vol made there by libvirtd, its header
 * (a few KiB, naming spec's domain and spec's paths there, kernel and
 * initrd included) sent from here; it is deleted once the guest runs.
 * On failure no domain remains.
 */
int vmm_restore_in_pool(struct vmm_host *host, const char *pool,
			const char *image, const char *image_vol,
			const struct vmm_vm_spec *spec, char *err);

/* At exit, once every agent connection is closed: wait (at most
 * timeout_ms) for libvirt's event loop to end their channels' pumps. */
void vmm_channels_wait(int timeout_ms);

/*
 * The domain's agent channel carried over the libvirt connection
 * (virDomainOpenChannel, for VMs on any host, remote ones included), as
 * one end of a socketpair: a pump in libvirt's event loop moves bytes
 * between the other end and the non-blocking stream.  The socket ends
 * (EOF, then hangup) when the stream dies: libvirtd restarted, the VM
 * stopped or was saved, the host went away.  Returns the fd or -1.
 */
int vmm_channel_open(struct vmm_host *host, const char *domname, char *err);

#endif
