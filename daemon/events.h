/*
 * The events stream (/tenki/events): every state change of every object
 * as one JSON line.  A bounded ring: readers never slow tenkid down; a
 * reader that falls more than the ring behind gets a "lost" line saying
 * how many it missed.  model_lock held for all calls.
 */
#ifndef TENKI_EVENTS_H
#define TENKI_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "model.h"

extern struct waitq events_wq;

/* kind: "session", "job", …; old_state NULL for a new object. */
void event_emit(const char *kind, const char *name, const char *id,
		const char *old_state, const char *new_state);

/* The sequence number the next event will get: where a new reader starts. */
uint64_t events_next(void);

/*
 * Copy bytes of the stream at (*seq, *off) into buf; advances the cursor.
 * Returns bytes copied, or -EAGAIN when nothing new is there.
 */
ssize_t events_read(uint64_t *seq, size_t *off, char *buf, size_t n);

#endif
