/* Parsers for the tree's value syntax, and file helpers. */
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > NAME_MAX_LEN || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 1; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '_' && c != '.' && c != '-')
			return false;
	}
	return true;
}

static int unit_seconds(char u, int64_t *mult)
{
	switch (u) {
	case 's':
		*mult = 1;
		return 0;
	case 'm':
		*mult = 60;
		return 0;
	case 'h':
		*mult = 3600;
		return 0;
	case 'd':
		*mult = 86400;
		return 0;
	}
	return -1;
}

/* Units must come in decreasing order (1h30m, not 30m1h), each at most
 * once; a bare number is seconds.  Capped at ten years. */
int parse_duration(const char *s, bool allow_zero, int64_t *secs)
{
	const int64_t cap = 10LL * 365 * 86400;
	int64_t total = 0, last_mult = INT64_MAX;
	const char *p = s;

	if (*p == '\0')
		return -1;
	while (*p) {
		int64_t v = 0, mult;
		if (!isdigit((unsigned char)*p))
			return -1;
		while (isdigit((unsigned char)*p)) {
			v = v * 10 + (*p++ - '0');
			if (v > cap)
				return -1;
		}
		if (*p == '\0') {
			if (last_mult != INT64_MAX)
				return -1; /* "1h30" is ambiguous */
			mult = 1;
		} else if (unit_seconds(*p++, &mult) < 0) {
			return -1;
		}
		if (mult >= last_mult)
			return -1;
		last_mult = mult;
		total += v * mult;
		if (total > cap)
			return -1;
	}
	if (total == 0 && !allow_zero)
		return -1;
	*secs = total;
	return 0;
}

int parse_size(const char *s, uint64_t *bytes)
{
	uint64_t v = 0, mult = 1;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	while (isdigit((unsigned char)*p)) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p++ - '0');
	}
	switch (*p) {
	case '\0':
		break;
	case 'K':
		mult = 1ULL << 10;
		break;
	case 'M':
		mult = 1ULL << 20;
		break;
	case 'G':
		mult = 1ULL << 30;
		break;
	case 'T':
		mult = 1ULL << 40;
		break;
	default:
		return -1;
	}
	if (*p && p[1] != '\0')
		return -1;
	if (v > UINT64_MAX / mult)
		return -1;
	*bytes = v * mult;
	return 0;
}

int parse_bool(const char *s, bool *v)
{
	static const char *yes[] = {"true", "yes", "on", "1"};
	static const char *no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcmp(s, yes[i]) == 0) {
			*v = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*v = false;
			return 0;
		}
	}
	return -1;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
	uint64_t x = 0;

	if (!isdigit((unsigned char)*s) || strlen(s) > 19)
		return -1;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	if (x < min || x > max)
		return -1;
	*v = x;
	return 0;
}

void uuid_new(char out[UUID_LEN + 1])
{
	uint8_t r[16];

	if (getrandom(r, sizeof(r), 0) != sizeof(r))
		abort(); /* no entropy at all: nothing sane to do */
	r[6] = (r[6] & 0x0f) | 0x40;
	r[8] = (r[8] & 0x3f) | 0x80;
	snprintf(out, UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x"
		 "%02x%02x",
		 r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
		 r[10], r[11], r[12], r[13], r[14], r[15]);
}

int64_t now_ms(void)
{
	return now_ns() / 1000000;
}

int copy_file_part(int in, int out, off_t off, off_t end)
{
	off_t ioff = off, ooff = off;

	while (ioff < end) {
		ssize_t n = copy_file_range(in, &ioff, out, &ooff,
					    (size_t)(end - ioff), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = 0;
			return -1;
		}
	}
	return 0;
}

void realtime_after(int64_t ms, struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void fmt_time(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char base[24];

	gmtime_r(&t, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 32, "%s.%03dZ", base, (int)(ms % 1000));
}

static int write_file_tmp_rename(const char *path, const void *data, size_t len,
				 unsigned mode, bool sync);

int write_file_atomic(const char *path, const void *data, size_t len,
		      unsigned mode)
{
	return write_file_tmp_rename(path, data, len, mode, true);
}

int write_file_replace(const char *path, const void *data, size_t len,
		       unsigned mode)
{
	return write_file_tmp_rename(path, data, len, mode, false);
}

static int write_file_tmp_rename(const char *path, const void *data, size_t len,
				 unsigned mode, bool sync)
{
	char tmp[PATH_MAX];
	int fd, rc = -1;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid()) >=
	    (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, (const char *)data + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		off += (size_t)n;
	}
	if (sync && fsync(fd) < 0)
		goto out;
	rc = 0;
out:
	if (close(fd) < 0)
		rc = -1;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -1;
	if (rc < 0) {
		int saved = errno;
		unlink(tmp);
		errno = saved;
	}
	return rc;
}

char *read_file(const char *path, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct buf b = {0};
	char chunk[8192];

	if (fd < 0)
		return NULL;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			buf_free(&b);
			close(fd);
			return NULL;
		}
		if (n == 0)
			break;
		if (b.len + (size_t)n > max) {
			buf_free(&b);
			close(fd);
			errno = EFBIG;
			return NULL;
		}
		buf_add(&b, chunk, (size_t)n);
	}
	close(fd);
	buf_add(&b, "", 1);
	if (len)
		*len = b.len - 1;
	return b.data;
}

int mkdir_p(const char *path, unsigned mode)
{
	char tmp[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int remove_at(int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;

	int fd = openat(dirfd, name,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	int rc = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (remove_at(fd, e->d_name) < 0)
			rc = -1;
	}
	closedir(d);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = -1;
	return rc;
}

int remove_tree(const char *path)
{
	return remove_at(AT_FDCWD, path);
}

void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (!d)
			abort();
		b->data = d;
		b->cap = cap;
	}
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char small[512];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		buf_add(b, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big)
		abort();
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_add(b, big, (size_t)n);
	free(big);
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *json_dump_line(json_t *o, size_t flags)
{
	char *txt = json_dumps(o, flags);

	json_decref(o);
	if (!txt)
		abort();
	size_t n = strlen(txt);
	char *res = realloc(txt, n + 2);
	if (!res)
		abort();
	res[n] = '\n';
	res[n + 1] = '\0';
	return res;
}

json_t *json_time(int64_t ms)
{
	char t[32];

	if (!ms)
		return json_null();
	fmt_time(ms, t);
	return json_string(t);
}
