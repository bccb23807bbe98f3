/*
 * Golden states: per image and per guest shape (cpu, memory, network,
 * accelerator), one booted guest saved once, so that a plain create
 * restores a copy of it instead of booting a kernel.
 *
 *   STATE/golden/KEY/golden.json  the record (READY once saved)
 *   STATE/golden/KEY/mem.save     the saved guest (a libvirt save image)
 *   STATE/golden/KEY/disk.qcow2   its disk, an overlay on the image
 *
 * KEY names the image build (a hash of its info.json, cmdline and files)
 * and the shape, so a rebuilt image never matches an old golden state;
 * those are removed at start.  The defaults' shape is built soon after
 * start; another shape boots cold, and its second cold create starts its
 * build in the background (one build at a time), so later creates of that
 * shape restore.  Sessions link the golden files (hard links), so
 * removing a golden state never breaks a session made from it.
 */
#ifndef TENKI_GOLDEN_H
#define TENKI_GOLDEN_H

#include "model.h"

/* Load READY records, drop stale ones and leftovers of a build that a
 * stop interrupted (domain included).  After model_init. */
void golden_init(void);

/*
 * For a create of shape spec: when a golden state is READY, link its
 * files into dir (base.qcow2, restore.src) and return 0.  Otherwise
 * return -1, having started a build for that shape if this is its
 * second create and none runs.
 * model_lock held.
 */
int golden_claim(const struct sess_spec *spec, const char *dir);

/* Build the golden state of spec's shape now if there is none (in the
 * background); model_lock held. */
void golden_prepare(const struct sess_spec *spec);

/* Is a golden state of spec's shape READY?  model_lock held. */
bool golden_ready(const struct sess_spec *spec);

/* Stop: a build in progress is abandoned and its domain removed. */
void golden_shutdown(void);

#endif
