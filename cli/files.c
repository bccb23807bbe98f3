/* write and read: a session's files/ is the guest's /home/tenki, so a
 * path is resolved against /home/tenki and must stay inside it. */
#include "tenki.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOME	"/home/tenki"
#define CHUNK	(1024 * 1024) /* the tree's largest single read or write */
#define BIGFILE (4 * 1024 * 1024)

/* "/home/tenki/a/../b" -> "b"; "x" -> "x"; "/tmp/x" -> NULL.  ".." is
 * resolved here, lexically, so nothing climbs out of files/. */
char *guest_rel(const char *path)
{
	char *s, *out, *tok, *save = NULL;
	size_t len = 0;

	if (path[0] == '/') {
		size_t hl = strlen(HOME);
		if (strncmp(path, HOME, hl) != 0 ||
		    (path[hl] != '\0' && path[hl] != '/'))
			return NULL;
		path += hl;
	}
	s = xstrdup(path);
	out = xmalloc(strlen(path) + 1);
	out[0] = '\0';
	for (tok = strtok_r(s, "/", &save); tok;
	     tok = strtok_r(NULL, "/", &save)) {
		if (strcmp(tok, ".") == 0)
			continue;
		if (strcmp(tok, "..") == 0) {
			char *slash;
			if (len == 0) {
				free(s);
				free(out);
				return NULL;
			}
			slash = strrchr(out, '/');
			len = slash ? (size_t)(slash - out) : 0;
			out[len] = '\0';
			continue;
		}
		if (len)
			out[len++] = '/';
		strcpy(out + len, tok);
		len += strlen(tok);
	}
	free(s);
	return out;
}

static char *files_path(const char *cmdname, const char *name, const char *path)
{
	char *rel = guest_rel(path), *p;

	if (!rel) {
		fprintf(stderr,
			"%s: %s %s: Permission denied: only paths under " HOME
			" can be reached\n",
			progname, cmdname, path);
		exit(EX_FAIL);
	}
	if (!*rel) {
		fprintf(stderr, "%s: %s %s: Is a directory\n", progname,
			cmdname, path);
		exit(EX_FAIL);
	}
	p = tpath("sessions/%s/files/%s", name, rel);
	free(rel);
	return p;
}

/* mkdir -p of the parents inside files/ (the guest's errno if refused). */
static void make_parents(const char *p)
{
	char *d = xstrdup(p);
	char *files = strstr(d, "/files/");
	char *s;

	if (!files)
		goto out;
	for (s = files + 7; (s = strchr(s, '/')) != NULL; s++) {
		*s = '\0';
		if (mkdir(d, 0755) < 0 && errno != EEXIST)
			break;
		*s = '/';
	}
out:
	free(d);
}

static void show(const char *verb, const char *path, size_t done, size_t total,
		 double *last, bool end)
{
	double t = now_s();

	if (!progress_on() || (total && total < BIGFILE) ||
	    (!end && t - *last < 0.2))
		return;
	*last = t;
	if (end) {
		fprintf(stderr, "\r\033[K");
		return;
	}
	if (total)
		fprintf(stderr, "\r\033[K%s %s: %.1f / %.1f MiB (%.0f%%)", verb,
			path, done / 1048576.0, total / 1048576.0,
			100.0 * (double)done / (double)total);
	else if (done >= BIGFILE)
		fprintf(stderr, "\r\033[K%s %s: %.1f MiB", verb, path,
			done / 1048576.0);
}

/* Copy in to out in 1 MiB pieces; total (0 unknown) only for progress. */
static int copy_fd(int in, int out, size_t total, const char *verb,
		   const char *path, int *which)
{
	char *buf = xmalloc(CHUNK);
	size_t done = 0;
	double last = 0;
	ssize_t n;
	int rc = 0;

	for (;;) {
		n = read(in, buf, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*which = 0;
			rc = -1;
			break;
		}
		if (n == 0)
			break;
		if (write_all_fd(out, buf, (size_t)n) < 0) {
			*which = 1;
			rc = -1;
			break;
		}
		done += (size_t)n;
		show(verb, path, done, total, &last, false);
	}
	show(verb, path, done, total, &last, true);
	free(buf);
	return rc;
}

int cmd_write(int argc, char **argv)
{
	enum { O_DATA = OPT_FIRST_CMD, O_FILE };
	static const struct option opts[] = {
	    COMMON_OPTS,
	    {"session", required_argument, NULL, 's'},
	    {"path", required_argument, NULL, 'p'},
	    {"data", required_argument, NULL, O_DATA},
	    {"data-file", required_argument, NULL, O_FILE},
	    {NULL, 0, NULL, 0},
	};
	const struct cmd *me = find_cmd(sandbox_cmds, "write");
	const char *sess = NULL, *path = NULL, *data = NULL, *file = NULL;
	char *name, *dst, *errp;
	struct errmark m;
	struct stat st;
	int c, in = 0, out, which = 0, e;

	while ((c = getopt_long(argc, argv, "hs:p:", opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		if (c == 's')
			sess = optarg;
		else if (c == 'p')
			path = optarg;
		else if (c == O_DATA)
			data = optarg;
		else if (c == O_FILE)
			file = optarg;
	}
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
	if (!sess || !path)
		die_usage(me, "--session and --path are required");
	if (data && file)
		die_usage(me, "--data and --data-file exclude each other");
	name = session_arg(sess);
	dst = files_path("write", name, path);
	errp = tpath("sessions/%s/err", name);
	err_mark(&m, errp);
	if (file && strcmp(file, "-") != 0) {
		in = open(file, O_RDONLY | O_CLOEXEC);
		if (in < 0)
			die("write: %s: %s", file, strerror(errno));
	}
	make_parents(dst);
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		fail_op(&m, errno, "write %s", path);
	if (data) {
		if (write_all_fd(out, data, strlen(data)) < 0)
			fail_op(&m, errno, "write %s", path);
	} else if (copy_fd(in, out,
			   fstat(in, &st) == 0 && S_ISREG(st.st_mode)
			       ? (size_t)st.st_size
			       : 0,
			   "writing", path, &which) < 0) {
		e = errno;
		die("write %s: %s: %s", path,
		    which ? "in the session" : (file ? file : "stdin"),
		    strerror(e));
	}
	if (close(out) < 0)
		fail_op(&m, errno, "write %s", path);
	if (in > 0)
		close(in);
	err_free(&m);
	free(errp);
	free(dst);
	free(name);
	return 0;
}

int cmd_read(int argc, char **argv)
{
	static const struct option opts[] = {
	    COMMON_OPTS,
	    {"session", required_argument, NULL, 's'},
	    {"path", required_argument, NULL, 'p'},
	    {"out", required_argument, NULL, 'o'},
	    {NULL, 0, NULL, 0},
	};
	const struct cmd *me = find_cmd(sandbox_cmds, "read");
	const char *sess = NULL, *path = NULL, *outf = NULL;
	char *name, *src, *errp;
	struct errmark m;
	struct stat st;
	int c, in, out = 1, which = 0, e;

	while ((c = getopt_long(argc, argv, "hs:p:o:", opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		if (c == 's')
			sess = optarg;
		else if (c == 'p')
			path = optarg;
		else if (c == 'o')
			outf = optarg;
	}
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
	if (!sess || !path)
		die_usage(me, "--session and --path are required");
	name = session_arg(sess);
	src = files_path("read", name, path);
	errp = tpath("sessions/%s/err", name);
	err_mark(&m, errp);
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		fail_op(&m, errno, "read %s", path);
	if (fstat(in, &st) == 0 && S_ISDIR(st.st_mode))
		die("read %s: %s", path, strerror(EISDIR));
	if (outf && strcmp(outf, "-") != 0) {
		out =
		    open(outf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out < 0)
			die("read: %s: %s", outf, strerror(errno));
	}
	if (copy_fd(in, out, S_ISREG(st.st_mode) ? (size_t)st.st_size : 0,
		    "reading", path, &which) < 0) {
		e = errno;
		die("read %s: %s%s%s", path,
		    which ? (outf ? outf : "stdout") : "", which ? ": " : "",
		    strerror(e));
	}
	close(in);
	if (out != 1 && close(out) < 0)
		die("read: %s: %s", outf, strerror(errno));
	err_free(&m);
	free(errp);
	free(src);
	free(name);
	return 0;
}
