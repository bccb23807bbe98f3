/*
 * Volumes: block storage that outlives sessions (SPEC.md volumes/).
 *
 * Each volume is a raw libvirt storage volume in tenkid's own dir pool
 * (STATE/volume-pool, named after the state directory's hash like the
 * domains) and a record in STATE/volumes/ID/.  A volume is attached to a
 * session as a virtio disk whose serial names it; the guest agent makes
 * an ext4 filesystem on first use and mounts it (docs/protocol.md,
 * vol_mount and vol_umount).  One read-write attachment, or any number of
 * read-only ones, never both.
 *
 * All functions run with model_lock held; those that call libvirt or the
 * agent drop it while they wait.
 */
#ifndef TENKI_VOLUME_H
#define TENKI_VOLUME_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"
#include "vmm.h"

enum vol_state { V_AVAILABLE, V_ATTACHED, V_DELETING };

struct vol_att {
	struct vol_att *next;
	char session_id[UUID_LEN + 1];
	char session_name[NAME_MAX_LEN + 1];
	char path[256];
	bool ro;
	bool mounted;  /* the guest has it mounted (or did at last sight) */
	bool mounting; /* being mounted at boot */
	bool plugged;  /* in the domain (a restored guest's are hot-plugged
			  at boot, before their mount) */
};

struct volume {
	struct volume *next;
	int refs;
	bool gone;     /* deleted, or never made */
	bool creating; /* not in the tree until libvirt made it */
	bool deleting;
	bool busy; /* an attach, detach, resize or delete is under way */
	char name[NAME_MAX_LEN + 1];
	char id[UUID_LEN + 1];
	uint64_t size;
	int64_t created_ms;
	struct vol_att *atts;
	struct errlog err;
	struct waitq wq;
};

/* Disks of a session's volumes for its domain definition. */
struct vol_boot_disks {
	struct vmm_disk d[VMM_MAX_DISKS];
	char path[VMM_MAX_DISKS][600];
	char serial[VMM_MAX_DISKS][VMM_SERIAL_MAX + 1];
	unsigned n;
};

const char *vol_state_name(const struct volume *v);

/* At start: make sure of the pool, load the records. */
int volumes_init(void);
/* After sessions were restored: drop attachments whose session or disk
 * is gone (asks libvirt, without the lock). */
void volumes_restore(void);

struct volume *volume_first(void);
/* By name or id; creating and gone volumes are not found. */
struct volume *volume_find(const char *name_or_id);
void volume_get(struct volume *v);
void volume_put(struct volume *v);

/* Create from a parsed spec (size 0: the defaults' volume_size); *out is
 * the list's, valid while model_lock is held. */
int volume_create(const struct vol_spec *vs, struct volume **out);
/* rmdir: EBUSY while attached. */
int volume_remove(struct volume *v);
/* A size write: checked per write (volume_check_size), applied at close. */
int volume_check_size(struct volume *v, const char *text, size_t len,
		      uint64_t *bytes);
int volume_set_size(struct volume *v, const char *text, size_t len);
/* The volume's ctl: attach SESSION PATH [ro] | detach [SESSION]. */
int volume_ctl(struct volume *v, const char *text, size_t len);

/* A session's ctl verbs (session.c parses, these act). */
int volume_session_verb(struct session *s, const struct vol_verb *vv);

/* Records. */
char *volume_info_json(struct volume *v);
void volume_save(struct volume *v);

/* ---- the session side ---- */

/* Check a create spec's volume= keys: every volume exists and may be
 * attached so.  0, or -errno with a reason in why. */
int volumes_check_spec(const struct sess_spec *sp, char *why, size_t n);
/* Record the spec's attachments for the new session s (checked). */
void volumes_reserve(struct session *s);
/* The disks s's domain starts with (a cold boot's: a restored guest gets
 * them hot-plugged by volumes_boot_mount). */
void volumes_boot_disks(struct session *s, struct vol_boot_disks *out);
/* The agent is up in a CREATING session: true when volumes must be
 * plugged in and mounted first (a worker does it, then READY or a failed
 * create, which leaves nothing attached). */
bool volumes_boot_mount(struct session *s);
/* Closing: sync and unmount in the guest, best effort. */
void volumes_session_closing(struct session *s);
/* Closed or withdrawn: its attachments end; the data stays. */
void volumes_session_closed(struct session *s);
/* The volumes s has attached, for a snapshot that leaves them out:
 * [{name, mount_path, serial}], or NULL when there are none. */
json_t *volumes_left_out(struct session *s);
/* A record's list of left-out volumes, its well-formed entries only
 * (a new array, or NULL). */
json_t *volumes_left_out_check(json_t *arr);

/* The session's volumes file and info.json's volumes. */
char *volumes_session_text(struct session *s);
json_t *volumes_session_json(struct session *s);

#endif
