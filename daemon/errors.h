/*
 * Refusals: every operation the tree refuses fails with an errno from one
 * table (errors.c, SPEC.md's list) and appends one line
 * "TIME OBJECT: reason" to the nearest err file.
 */
#ifndef TENKI_ERRORS_H
#define TENKI_ERRORS_H

#include <pthread.h>
#include <stddef.h>

/* One err file: kept on disk so reasons survive a restart; bounded. */
struct errlog {
	char *path;
};

void errlog_init(struct errlog *log, const char *path);
void errlog_free(struct errlog *log);
/* Append "TIME OBJECT: text" (one line; newlines in text become spaces). */
void errlog_add(struct errlog *log, const char *object, const char *text);
/* The whole file, malloc'd (empty string when none). */
char *errlog_read(struct errlog *log, size_t *len);

/*
 * Record a refusal and return -err for the caller to hand back.  err must
 * be in the table; anything else is logged as a bug and becomes EIO.
 */
int refuse(struct errlog *log, int err, const char *object, const char *fmt,
	   ...) __attribute__((format(printf, 4, 5)));

/* The table's meaning of an errno ("bad value", "no such object", ...). */
const char *errno_meaning(int err);

#endif
