/* File access to the mounted tree, and turning a refusal into a message:
 * the errno plus the reason tenkid appended to the nearest err file. */
#include "tenki.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *mount_dir;

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		die("out of memory");
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		die("out of memory");
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		die("out of memory");
	va_end(ap);
	return s;
}

void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EX_FAIL);
}

void die_usage(const struct cmd *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (c)
		fprintf(stderr, "usage: %s sandbox %s %s\n", progname, c->name,
			c->usage);
	exit(EX_USAGE);
}

void tree_set_mount(const char *dir)
{
	mount_dir = dir;
}

const char *tree_mount(void)
{
	if (!mount_dir) {
		const char *e = getenv("TENKI_MOUNT");
		mount_dir = e && *e ? e : "/tenki";
	}
	return mount_dir;
}

/* A tree is there when <mount>/version says "tenki ...".  A FUSE mount
 * whose daemon died answers ENOTCONN: say so rather than "no such file". */
void tree_check(void)
{
	const char *m = tree_mount();
	char *path = tpath("version");
	char *v;
	struct stat st;

	if (stat(m, &st) < 0 && errno == ENOTCONN)
		die("tenkid is not running: %s is a stale mount "
		    "(fusermount3 -u %s, then start tenkid)",
		    m, m);
	v = read_line(path);
	if (!v && errno == ENOTCONN)
		die("tenkid is not running: %s is a stale mount "
		    "(fusermount3 -u %s, then start tenkid)",
		    m, m);
	if (!v || strncmp(v, "tenki ", 6) != 0)
		die("no tenki tree at %s: is tenkid running? "
		    "(use --mount DIR or TENKI_MOUNT)",
		    m);
	free(v);
	free(path);
}

char *tpath(const char *fmt, ...)
{
	va_list ap;
	char *rel, *p;

	va_start(ap, fmt);
	if (vasprintf(&rel, fmt, ap) < 0)
		die("out of memory");
	va_end(ap);
	p = xasprintf("%s/%s", tree_mount(), rel);
	free(rel);
	return p;
}

/* Files of the tree report no useful size (streams say 0): read until
 * EOF.  The result is NUL-terminated. */
char *read_all(const char *path, size_t *lenp)
{
	size_t cap = 4096, len = 0;
	char *buf;
	ssize_t n;
	int fd, e;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	buf = xmalloc(cap + 1);
	for (;;) {
		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			if (!buf)
				die("out of memory");
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e = errno;
			free(buf);
			close(fd);
			errno = e;
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if (lenp)
		*lenp = len;
	return buf;
}

char *read_line(const char *path)
{
	char *s = read_all(path, NULL);

	if (s)
		s[strcspn(s, "\n")] = '\0';
	return s;
}

json_t *read_json(const char *path)
{
	json_error_t jerr;
	char *s = read_all(path, NULL);
	json_t *j;

	if (!s)
		return NULL;
	j = json_loads(s, 0, &jerr);
	free(s);
	if (!j)
		errno = EPROTO;
	return j;
}

int write_all_fd(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One write(2) where the tree acts on each write (ctl, new), then close:
 * value files are applied when the writer closes, so close's error
 * counts too. */
int write_file(const char *path, const char *data, size_t len, int flags)
{
	int fd, e;

	fd = open(path, O_WRONLY | O_CLOEXEC | flags, 0644);
	if (fd < 0)
		return -1;
	if (len > 0 && write_all_fd(fd, data, len) < 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (close(fd) < 0)
		return -1;
	return 0;
}

bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void err_mark(struct errmark *m, const char *errpath)
{
	char *s;

	m->path = xstrdup(errpath);
	m->len = 0;
	s = read_all(errpath, &m->len);
	free(s);
}

void err_free(struct errmark *m)
{
	free(m->path);
	m->path = NULL;
}

/* The last line appended since err_mark, without its timestamp. */
char *err_reason(struct errmark *m)
{
	size_t len;
	char *s, *line, *end, *r;

	if (!m || !m->path)
		return NULL;
	s = read_all(m->path, &len);
	if (!s)
		return NULL;
	if (len <= m->len) {
		free(s);
		return NULL;
	}
	line = s + m->len;
	while (len > 0 && s[len - 1] == '\n')
		s[--len] = '\0';
	if ((end = strrchr(line, '\n')) != NULL)
		line = end + 1;
	/* "TIME OBJECT: reason": the time is one word of digits */
	if (*line >= '0' && *line <= '9' && strchr(line, ' '))
		line = strchr(line, ' ') + 1;
	r = *line ? xstrdup(line) : NULL;
	free(s);
	return r;
}

void fail_op(struct errmark *m, int errnum, const char *fmt, ...)
{
	char *reason = err_reason(m);
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (errnum == ENOTCONN)
		fprintf(stderr, ": tenkid is not running (%s)\n", tree_mount());
	else if (reason)
		fprintf(stderr, ": %s (%s)\n", reason, strerror(errnum));
	else
		fprintf(stderr, ": %s\n", strerror(errnum));
	free(reason);
	exit(EX_FAIL);
}

/* An object of a collection by name or UUID (its `id` file). */
char *find_object(const char *coll, const char *arg, const char *what)
{
	char *p, *found = NULL;
	struct dirent *de;
	DIR *d;

	tree_check();
	if (!*arg || strchr(arg, '/') || strcmp(arg, ".") == 0 ||
	    strcmp(arg, "..") == 0)
		die("%s '%s': not a valid name or id", what, arg);
	p = tpath("%s/%s", coll, arg);
	if (is_dir(p)) {
		free(p);
		return xstrdup(arg);
	}
	free(p);
	p = tpath("%s", coll);
	d = opendir(p);
	if (!d)
		die("%s: %s (this tree has no %s/)", p, strerror(errno), coll);
	free(p);
	while (!found && (de = readdir(d)) != NULL) {
		char *id;
		if (de->d_name[0] == '.')
			continue;
		p = tpath("%s/%s/id", coll, de->d_name);
		id = read_line(p);
		if (id && strcasecmp(id, arg) == 0)
			found = xstrdup(de->d_name);
		free(id);
		free(p);
	}
	closedir(d);
	if (!found)
		die("%s %s: no such %s (No such file or directory)", what, arg,
		    what);
	return found;
}

int ctl_verb(const char *objdir, const char *verb, const char *what)
{
	struct errmark m;
	char *ctl = xasprintf("%s/ctl", objdir);
	char *errp = xasprintf("%s/err", objdir);
	char *line = xasprintf("%s\n", verb);

	err_mark(&m, errp);
	if (write_file(ctl, line, strlen(line), 0) < 0)
		fail_op(&m, errno, "%s: %s", what, verb);
	err_free(&m);
	free(ctl);
	free(errp);
	free(line);
	return 0;
}

/* rmdir: the reason is in the object's own err, else the collection's. */
int remove_object(const char *coll, const char *name, const char *what)
{
	struct errmark own, col;
	char *dir = tpath("%s/%s", coll, name);
	char *ownp = tpath("%s/%s/err", coll, name);
	char *colp = tpath("%s/err", coll);
	char *why;
	int e;

	err_mark(&own, ownp);
	err_mark(&col, colp);
	if (rmdir(dir) < 0) {
		e = errno;
		why = err_reason(&own);
		if (why) {
			free(why);
			fail_op(&own, e, "delete %s %s", what, name);
		}
		fail_op(&col, e, "delete %s %s", what, name);
	}
	err_free(&own);
	err_free(&col);
	free(dir);
	free(ownp);
	free(colp);
	return 0;
}

static void print_value(json_t *v)
{
	const char *k;
	json_t *x;
	size_t i;
	bool first = true;
	char *s;

	if (json_is_string(v)) {
		fputs(json_string_value(v), stdout);
	} else if (json_is_null(v)) {
		fputs("-", stdout);
	} else if (json_is_object(v)) {
		json_object_foreach(v, k, x)
		{
			printf("%s%s=", first ? "" : " ", k);
			print_value(x);
			first = false;
		}
	} else if (json_is_array(v) && json_array_size(v) == 0) {
		fputs("-", stdout);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
		{
			if (i)
				fputs(", ", stdout);
			print_value(x);
		}
	} else {
		s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		fputs(s ? s : "?", stdout);
		free(s);
	}
}

/* A record as "key: value" lines, nested objects flattened to k=v. */
void print_record(json_t *o)
{
	const char *k;
	json_t *v;
	int w = 0;

	json_object_foreach(o, k, v)
	{
		if ((int)strlen(k) > w)
			w = (int)strlen(k);
	}
	json_object_foreach(o, k, v)
	{
		printf("%-*s ", w, k);
		print_value(v);
		putchar('\n');
	}
}

int show_object(const char *dir, bool json)
{
	char *p = xasprintf("%s/info.json", dir);
	json_t *o = read_json(p);

	if (!o)
		die("%s: %s", p, strerror(errno));
	if (json) {
		char *s = json_dumps(o, JSON_INDENT(2));
		puts(s);
		free(s);
	} else {
		print_record(o);
	}
	json_decref(o);
	free(p);
	return 0;
}

static char *cell(json_t *o, const char *col)
{
	json_t *v = json_object_get(o, col);

	if (json_is_string(v))
		return xstrdup(json_string_value(v));
	if (v && !json_is_null(v))
		return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	return xstrdup("-");
}

/* Columns as wide as their widest cell; headers are the keys, upper. */
static void print_table(json_t *rows, const char *const *cols)
{
	size_t w[16] = {0}, c, i, k;
	json_t *o;

	for (c = 0; cols[c] && c < 16; c++) {
		w[c] = strlen(cols[c]);
		json_array_foreach(rows, i, o)
		{
			char *s = cell(o, cols[c]);
			if (strlen(s) > w[c])
				w[c] = strlen(s);
			free(s);
		}
	}
	for (c = 0; cols[c] && c < 16; c++) {
		for (k = 0; cols[c][k]; k++)
			putchar(cols[c][k] >= 'a' && cols[c][k] <= 'z'
				    ? cols[c][k] - 32
				    : cols[c][k]);
		printf(cols[c + 1] ? "%*s" : "\n", (int)(w[c] - k + 1), "");
	}
	json_array_foreach(rows, i, o)
	{
		for (c = 0; cols[c] && c < 16; c++) {
			char *s = cell(o, cols[c]);
			if (cols[c + 1])
				printf("%-*s ", (int)w[c], s);
			else
				printf("%s\n", s);
			free(s);
		}
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* volumes/, snapshots/, templates/ have no index: read each object's
 * info.json.  cols names the fields of the table. */
int list_collection(const char *coll, bool json, const char *const *cols)
{
	char *p = tpath("%s", coll);
	json_t *all = json_array();
	char **names = NULL;
	size_t n = 0, i;
	struct dirent *de;
	DIR *d;

	tree_check();
	d = opendir(p);
	if (!d)
		die("%s: %s (this tree has no %s/)", p, strerror(errno), coll);
	while ((de = readdir(d)) != NULL) {
		char *dp;
		if (de->d_name[0] == '.')
			continue;
		dp = tpath("%s/%s", coll, de->d_name);
		if (is_dir(dp)) {
			names = realloc(names, (n + 1) * sizeof(*names));
			if (!names)
				die("out of memory");
			names[n++] = xstrdup(de->d_name);
		}
		free(dp);
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (i = 0; i < n; i++) {
		char *ip = tpath("%s/%s/info.json", coll, names[i]);
		json_t *o = read_json(ip);
		if (!o) { /* removed meanwhile, or no info.json: name only */
			o = json_object();
			json_object_set_new(o, "name", json_string(names[i]));
		}
		json_array_append_new(all, o);
		free(ip);
		free(names[i]);
	}
	free(names);
	if (json) {
		char *s = json_dumps(all, JSON_INDENT(2));
		puts(s);
		free(s);
	} else {
		print_table(all, cols);
	}
	json_decref(all);
	free(p);
	return 0;
}
