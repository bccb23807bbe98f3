/*
 * Snapshots (SPEC.md snapshots/): a point-in-time capture of a running
 * session's memory and disk, restorable into any number of new sessions.
 *
 *   STATE/snapshots/ID/snapshot.json  the record
 *   STATE/snapshots/ID/err            its err file
 *   STATE/snapshots/ID/mem.save       the memory (a libvirt save image)
 *   STATE/snapshots/ID/disk.qcow2     the disk: the source's frozen layer
 *
 * Files are shared by hard links, so the kernel counts their users: the
 * frozen layer is linked by the source session (its live overlay's
 * backing file) and by the snapshot; every session restored from it
 * links it again as its own base.qcow2.  Deleting a snapshot removes its
 * own names at once; the data stays while a session still links it, and
 * goes with the last of them, across tenkid restarts too.
 *
 * States: CREATING -> READY | FAILED (reason in err), then DELETING ->
 * DELETED when removed (rmdir or ttl).  model_lock guards everything.
 */
#ifndef TENKI_SNAPSHOT_H
#define TENKI_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "evloop.h"
#include "model.h"

enum snap_state { SN_CREATING, SN_READY, SN_FAILED, SN_DELETING, SN_DELETED };

struct snapshot {
	struct snapshot *next;
	int refs;
	bool gone;
	char name[NAME_MAX_LEN + 1];
	char id[UUID_LEN + 1];
	enum snap_state state;
	char source[NAME_MAX_LEN + 1], source_id[UUID_LEN + 1];
	int64_t created_ms, expires_ms; /* expires 0: never */
	uint64_t size_bytes;
	/* The saved guest: a restore must match it. */
	unsigned cpu_cores, memory_mb;
	bool network;
	char image[64];
	uint32_t next_chan; /* channels the saved agent may still use */
	/* Volumes the source had mounted, left out of the capture:
	 * [{name, mount_path, serial}]; restored copies unmount them. */
	json_t *left_out;
	char *reason;
	char dir[512];
	struct errlog err;
	struct waitq wq;
	struct timer ttl;
};

extern struct errlog snapshots_err;

const char *snap_state_name(enum snap_state st);

/* Load the records of the state directory (after model_init). */
void snapshots_restore(void);

struct snapshot *snapshot_find(const char *name_or_id);
struct snapshot *snapshot_first(void);
void snapshot_get(struct snapshot *sn);
void snapshot_put(struct snapshot *sn);

/*
 * Capture session s now into a new snapshot named name (ttl_secs 0: no
 * expiry).  Blocks, dropping model_lock while libvirt works; s keeps
 * running.  Refusals go to log under object.  0 or -errno.
 */
int snapshot_take(struct session *s, const char *name, int64_t ttl_secs,
		  struct errlog *log, const char *object);
/*
 * The capture itself, for snapshot_take and template builds: s's memory
 * into mem (a save image) and its current disk layer linked as disk; s
 * keeps running on a new overlay.  Call after session_wait_idle with s
 * usable; drops model_lock while libvirt works.  0, or -1 with
 * err[VMM_ERRLEN] (nothing left at disk or mem).
 */
int snapshot_capture(struct session *s, const char *disk, const char *mem,
		     char *err);
/* A spec written to snapshots/new: name=S session=NAME [ttl=DUR]. */
int snapshot_create_spec(const char *text, size_t len, char *created,
			 size_t created_len);
/* rmdir: its files go now, DELETED. */
int snapshot_remove(struct snapshot *sn);

char *snapshot_info_json(struct snapshot *sn);

/*
 * For a session restored from sn: link the saved memory and disk into
 * the session's directory (restore.src, base.qcow2), so the snapshot may
 * go meanwhile.  -1 with errno.
 */
int snapshot_link_into(struct snapshot *sn, const char *session_dir);

#endif
