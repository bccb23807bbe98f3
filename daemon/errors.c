/* The errno table and the err files. */
#include "errors.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* SPEC.md, Conventions: the only errnos the tree hands out on refusal. */
static const struct {
	int err;
	const char *meaning;
} errno_table[] = {
    {EINVAL, "bad value"},
    {ENOENT, "no such object"},
    {EEXIST, "name taken"},
    {EBUSY, "object in use"},
    {EACCES, "not allowed by policy"},
    {ENOSPC, "no capacity"},
    {ETIMEDOUT, "waited too long"},
    {EAGAIN, "would block"},
    {EIO, "the VM or libvirt failed"},
    {EFBIG, "write larger than the file's limit"},
    {ENOTEMPTY, "directory not empty"},
    {EPERM, "operation not supported on this file"},
    {ENOTDIR, "not a directory"},
    {EISDIR, "is a directory"},
    {ENAMETOOLONG, "name too long"},
    {EPIPE, "the process has ended"},
};

#define ERRLOG_MAX  (256 * 1024)
#define ERRLOG_KEEP (128 * 1024)

const char *errno_meaning(int err)
{
	for (size_t i = 0; i < sizeof(errno_table) / sizeof(errno_table[0]);
	     i++)
		if (errno_table[i].err == err)
			return errno_table[i].meaning;
	return NULL;
}

void errlog_init(struct errlog *log, const char *path)
{
	log->path = strdup(path);
	if (!log->path)
		abort();
}

void errlog_free(struct errlog *log)
{
	free(log->path);
	log->path = NULL;
}

/* Keep the newest half when the file grows past its bound. */
static void errlog_trim(struct errlog *log)
{
	size_t len;
	char *all = read_file(log->path, 4 * ERRLOG_MAX, &len);

	if (!all)
		return;
	if (len > ERRLOG_MAX) {
		const char *start = all + len - ERRLOG_KEEP;
		const char *nl = strchr(start, '\n');
		if (nl)
			start = nl + 1;
		write_file_atomic(log->path, start, len - (size_t)(start - all),
				  0600);
	}
	free(all);
}

void errlog_add(struct errlog *log, const char *object, const char *text)
{
	char when[32], line[1024];
	struct stat st;
	int n, fd;

	fmt_time(now_ms(), when);
	n = snprintf(line, sizeof(line), "%s %s: %s", when, object, text);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	for (int i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	log_info("%.*s", n - 1, line);
	if (!log->path)
		return;
	fd = open(log->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_warnx("%s: %s", log->path, strerror(errno));
		return;
	}
	if (write(fd, line, (size_t)n) != n)
		log_warnx("%s: short write", log->path);
	if (fstat(fd, &st) == 0 && st.st_size > ERRLOG_MAX) {
		close(fd);
		errlog_trim(log);
		return;
	}
	close(fd);
}

char *errlog_read(struct errlog *log, size_t *len)
{
	char *s = log->path ? read_file(log->path, 4 * ERRLOG_MAX, len) : NULL;

	if (!s) {
		s = strdup("");
		if (!s)
			abort();
		*len = 0;
	}
	return s;
}

int refuse(struct errlog *log, int err, const char *object, const char *fmt,
	   ...)
{
	char text[900];
	va_list ap;

	if (!errno_meaning(err)) {
		log_warnx("bug: errno %d is not in the table", err);
		err = EIO;
	}
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	errlog_add(log, object, text);
	return -err;
}
