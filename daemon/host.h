/*
 * Hosts: the libvirt hosts sessions run on (SPEC.md hosts/).
 *
 * Each host is one vmm connection (local: tenkid's own, qemu:///system;
 * others: any libvirt URI).  libvirt is the distributed engine: domains,
 * storage (a dir pool per host, images uploaded into it), the agent
 * channel (virDomainOpenChannel) and liveness (keepalive) all go through
 * the host's connection; tenkid only places sessions and watches hosts.
 *
 * A monitor thread probes each remote host about once a second, the local
 * one every 5 s for its figures (node info,
 * reconnecting when the connection died): CONNECTING until the first
 * answer, then UP or DOWN.  A remote host going DOWN marks its sessions
 * with the reason and drops their channels; coming back UP re-attaches
 * the sessions whose VMs survived and removes what no session owns.
 *
 * Records: STATE/hosts/NAME/host.json and err.  All functions run with
 * model_lock held unless they say otherwise.
 */
#ifndef TENKI_HOST_H
#define TENKI_HOST_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"
#include "vmm.h"

#define HOST_LOCAL "local"

enum host_state {
	HOST_CONNECTING,
	HOST_UP,
	HOST_DOWN,
};

struct host {
	struct host *next;
	int refs;
	bool gone; /* removed */
	bool local;
	char name[NAME_MAX_LEN + 1];
	char id[UUID_LEN + 1];
	char uri[256];
	char pool_dir[256]; /* remote hosts: the tenki pool's directory there */
	char pool_name[64];
	enum host_state state;
	bool draining;
	bool probing;
	int64_t next_probe_ms;
	char *reason; /* why DOWN */
	int64_t since_ms;
	struct vmm_host *vmm; /* NULL until first connected */
	unsigned cpus;
	uint64_t mem_mb, free_mb;
	struct errlog err;
	char dir[512];
};

/* Load the hosts of the state directory; local is tenkid's own
 * connection, on_stopped the sessions' stop callback for every host. */
int hosts_init(struct vmm_host *local, vmm_stopped_cb on_stopped);
/* Start probing (after sessions are loaded: a host coming UP re-attaches
 * them).  No lock held. */
void hosts_start(void);
void hosts_shutdown(void);

struct host *host_first(void);
struct host *host_find(const char *name);
struct host *host_local(void);
void host_get(struct host *h);
void host_put(struct host *h);

/* CONNECTING, UP, DOWN, or DRAINING for an UP host being drained. */
const char *host_state_name(const struct host *h);
/* Non-final sessions placed on h. */
unsigned host_sessions(const struct host *h);

/* hosts/new, mkdir hosts/NAME, rmdir, ctl: 0 or -errno with an err line.
 * host_new_spec writes the new host's name into out. */
int host_new_spec(const char *text, size_t len, char *out, size_t outlen);
int host_mkdir(const char *name);
int host_remove(struct host *h);
int host_ctl(struct host *h, const char *text, size_t len);
char *host_info_json(struct host *h);

/*
 * Where a new session of spec sp goes: the host it pins (host=), else the
 * UP, non-draining host with the most memory left, then the fewest
 * sessions; local_only for what only the local host can do (snapshots,
 * volumes).  0 with *out (referenced), or -errno with a line in
 * sessions/err (ENOENT no such host, ENOSPC no host with room).
 */
int host_place(const struct sess_spec *sp, bool local_only, struct host **out);

/*
 * A remote host's copies of an image's kernel, initrd and base disk
 * (uploaded once per host and build, then reused); their paths there.
 * No lock held; uploads to one host run one at a time.
 */
int host_image(struct host *h, const char *image, char *kernel, char *initrd,
	       char *base, size_t n, char *err);
/*
 * Whether h can run copies of this machine's saved guests (golden
 * states): the local host, or a remote one with the same accelerator,
 * qemu and (KVM) CPU.  model_lock held.
 */
bool host_takes_saved(const struct host *h);
/*
 * A remote host's copy of the golden state linked into the session
 * directory dir (base.qcow2, restore.src), uploaded once per host and
 * golden build: on entry base is the image's base there (host_image), on
 * return the golden disk there; mem_vol names the saved memory's volume
 * there.  No lock held.
 */
int host_golden(struct host *h, const char *dir, char *base, size_t n,
		char *mem_vol, size_t mn, char *err);
/* vmm_restore on remote host h of the saved guest image (a local file)
 * uploaded there as image_vol by host_golden.  No lock held. */
int host_restore(struct host *h, const char *image, const char *image_vol,
		 const struct vmm_vm_spec *spec, char *err);
/* The path on remote host h of a VM's file (overlay, console log). */
void host_vm_file(const struct host *h, const char *domname, const char *suffix,
		  char *out, size_t n);

/* Probe h now (no lock held): false when its libvirt cannot be reached,
 * and then h is DOWN.  Used when a channel dies, to tell a dead VM from a
 * host that went away. */
bool host_check(struct host *h);

#endif
