/*
 * The warm pool: tenkid --pool N sessions' worth of guests restored from
 * the golden state of the defaults' shape ahead of time, running, their
 * agents waiting for a host.  A create of that shape takes one: the
 * guest gets the new session's identity through the agent's HELLO (name
 * as hostname, fresh entropy, clock; env travels with every exec), so
 * the session is READY after one round trip.  Refills run one at a time
 * in the background, and wait while any session is being created.
 *
 * Behind them the pool keeps one staged guest: the slow files of a
 * restore made ahead of time (the overlay on the golden disk and the save
 * image copy whose header names the guest), no VM: a create of the
 * defaults' shape that finds no running guest (or --pool 0) takes it and
 * only has libvirt restore it.
 *
 * A pooled guest lives in STATE/sessions/ID (marked by a file "pooled")
 * with the domain name a session of that ID would have, so taking it
 * means giving the session that ID; nothing of it depends on a session
 * name.  The pool's memory counts against capacity; the root file
 * "pool" shows it.  Pooled guests are removed when tenkid stops, and
 * swept like any orphan when it did not stop cleanly.
 */
#ifndef TENKI_POOL_H
#define TENKI_POOL_H

#include "model.h"

struct pooled {
	struct pooled *next;
	char id[UUID_LEN + 1];
	char domname[64];
	char dir[512];
	char *chan; /* the agent channel socket, once running */
	struct sess_spec shape;
	bool run; /* filled to run, not only to be staged */
};

/* After golden_init: remove leftovers and start filling. */
void pool_init(void);
/* Refill if there is room; model_lock held. */
void pool_kick(void);
/* Take a running guest of spec's shape, or NULL; model_lock held.  The
 * caller owns the result (free with pool_free after use). */
struct pooled *pool_take(const struct sess_spec *spec);
/* Take a staged guest of spec's shape, or NULL; model_lock held.  Its
 * directory holds the disk.qcow2 and restore.save (vmm_restore_prepare)
 * of a guest whose id, domain name and directory are the caller's to
 * adopt: the create only restores.  Free with pool_free. */
struct pooled *pool_take_staged(const struct sess_spec *spec);
void pool_free(struct pooled *p);
/* Memory of the pooled guests, MiB; model_lock held. */
unsigned pool_memory_mb(void);
/* Does the pool hold a guest of this shape? */
bool pool_has(const struct sess_spec *spec);
/* The root file "pool"; malloc'd. */
char *pool_status_text(void);
/* A domain stopped outside tenki: if it was pooled, forget it (and
 * refill); model_lock held. */
void pool_vm_stopped(const char *domname);
/* Remove every pooled guest (tenkid stops). */
void pool_shutdown(void);

#endif
