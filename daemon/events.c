/* A ring of JSON-lines events with per-reader cursors. */
#include "events.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 4096

struct waitq events_wq = {{&events_wq.head, &events_wq.head, NULL}};
static char *ring[RING];
static uint64_t next_seq; /* events [next_seq - RING, next_seq) are kept */

void event_emit(const char *kind, const char *name, const char *id,
		const char *old_state, const char *new_state)
{
	char when[32];
	json_t *o;

	fmt_time(now_ms(), when);
	o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s}", "time", when, "kind",
		      kind, "name", name, "id", id ? id : "", "old",
		      old_state ? json_string(old_state) : json_null(), "new",
		      new_state);
	char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!line)
		return;
	char *withnl;
	if (asprintf(&withnl, "%s\n", line) < 0)
		abort();
	free(line);
	free(ring[next_seq % RING]);
	ring[next_seq % RING] = withnl;
	next_seq++;
	waitq_wake(&events_wq);
}

uint64_t events_next(void)
{
	return next_seq;
}

ssize_t events_read(uint64_t *seq, size_t *off, char *buf, size_t n)
{
	size_t done = 0;

	if (next_seq > RING && *seq < next_seq - RING) {
		/* Fell behind the ring: say so, then go on from the oldest. */
		char lost[96];
		int l = snprintf(lost, sizeof(lost),
				 "{\"kind\":\"lost\",\"count\":%llu}\n",
				 (unsigned long long)(next_seq - RING - *seq));
		*seq = next_seq - RING;
		*off = 0;
		if ((size_t)l > n)
			l = (int)n;
		memcpy(buf, lost, (size_t)l);
		return l;
	}
	while (done < n && *seq < next_seq) {
		const char *line = ring[*seq % RING];
		size_t len = strlen(line), take = len - *off;
		if (take > n - done)
			take = n - done;
		memcpy(buf + done, line + *off, take);
		done += take;
		*off += take;
		if (*off == len) {
			(*seq)++;
			*off = 0;
		}
	}
	return done ? (ssize_t)done : -EAGAIN;
}
