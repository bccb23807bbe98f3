/* Small parsers and file helpers shared by the model and the tree. */
#ifndef TENKI_UTIL_H
#define TENKI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

#define NAME_MAX_LEN 63
#define UUID_LEN     36

/* Names of sessions, volumes, snapshots, templates:
 * [A-Za-z0-9][A-Za-z0-9_.-]{0,62} */
bool valid_name(const char *s);

/* Durations: 90, 90s, 30m, 2h, 1h30m, 1d.  Result in seconds, > 0 unless
 * allow_zero.  Returns -1 on a malformed or out-of-range value. */
int parse_duration(const char *s, bool allow_zero, int64_t *secs);
/* Sizes: bytes or K/M/G/T (powers of 1024). */
int parse_size(const char *s, uint64_t *bytes);
/* true/false/yes/no/on/off/1/0 */
int parse_bool(const char *s, bool *v);
/* A decimal unsigned integer in [min, max], nothing else. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *v);

void uuid_new(char out[UUID_LEN + 1]);
int64_t now_ms(void);
int64_t now_ns(void);
/* Bytes [off, end) of in to the same offsets of out, by the kernel
 * (copy_file_range): 0, or -1 with errno (0 when in ends before end). */
int copy_file_part(int in, int out, off_t off, off_t end);
/* The CLOCK_REALTIME moment ms from now, for pthread_cond_timedwait. */
void realtime_after(int64_t ms, struct timespec *ts);
/* RFC 3339 UTC with milliseconds: 2026-11-23T13:37:00.123Z */
void fmt_time(int64_t ms, char out[32]);

/* Write data to path atomically: temp file in the same dir, fsync, rename. */
int write_file_atomic(const char *path, const void *data, size_t len,
		      unsigned mode);
/* The same without fsync: whole-or-old across a crash of tenkid (rename is
 * atomic), not across a power loss.  For records rewritten at every state
 * change, where an fsync each would cost more than the change. */
int write_file_replace(const char *path, const void *data, size_t len,
		       unsigned mode);
/* Read a whole (small) file; NUL-terminated; *len excludes the NUL. */
char *read_file(const char *path, size_t max, size_t *len);
int mkdir_p(const char *path, unsigned mode);
/* rm -rf that does not follow symlinks; missing is success. */
int remove_tree(const char *path);

/* A time for a record: RFC 3339 (fmt_time), or null when ms is 0. */
json_t *json_time(int64_t ms);
/* Dump o (and drop the reference) as text ending in a newline. */
char *json_dump_line(json_t *o, size_t flags);

/* A growable byte buffer. */
struct buf {
	char *data;
	size_t len, cap;
};
void buf_add(struct buf *b, const void *p, size_t n);
void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void buf_free(struct buf *b);

#endif
