/* ssh (the system's ssh, to the gateway target in ssh/target), the
 * managed block of Host sbx-<uuid> entries in ~/.ssh/config, and
 * ssh-keys (a session's ssh/authorized_keys). */
#include "tenki.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK_BEGIN                                                            \
	"# >>> tenki managed block: `tenki sandbox ssh config uninstall` "     \
	"removes it >>>\n"
#define BLOCK_END     "# <<< tenki managed block <<<\n"
#define BLOCK_CREATED "# tenki: this file was created by install\n"

struct target {
	char user[256], host[256], port[16];
};

/* "USER@HOST -p PORT" */
static int parse_target(const char *s, struct target *t)
{
	char up[600];
	unsigned port = 22;
	const char *at;

	memset(t, 0, sizeof(*t));
	if (sscanf(s, "%599s -p %u", up, &port) < 1 || port < 1 || port > 65535)
		return -1;
	at = strrchr(up, '@');
	if (!at || at == up || !at[1] || (size_t)(at - up) >= sizeof(t->user) ||
	    strlen(at + 1) >= sizeof(t->host))
		return -1;
	memcpy(t->user, up, (size_t)(at - up));
	strcpy(t->host, at + 1);
	snprintf(t->port, sizeof(t->port), "%u", port);
	return 0;
}

static int read_target(const char *name, struct target *t)
{
	char *p = tpath("sessions/%s/ssh/target", name);
	char *s = read_line(p);
	int rc = -1;

	if (s && parse_target(s, t) == 0)
		rc = 0;
	else if (s)
		errno = EPROTO;
	free(s);
	free(p);
	return rc;
}

/* Our options, then the session (unless --session), then ssh's own
 * arguments: `tenki sandbox ssh S -L 8080:127.0.0.1:8080`. */
int cmd_ssh(int argc, char **argv)
{
	static const char *const valued[] = {"session",
					     "user",
					     "identity-file",
					     "connect-timeout",
					     "strict-host-key-checking",
					     "mount",
					     NULL};
	const struct cmd *me = find_cmd(sandbox_cmds, "ssh");
	const char *sess = NULL, *user = NULL, *ident = NULL, *ctimeout = NULL,
		   *strict = NULL;
	const char *prog = getenv("TENKI_SSH");
	bool batch = false;
	char **av, *name, *opt;
	struct target t;
	int i, n = 0;

	/* a session named "config" is reached with --session config */
	if (argc > 1 && strcmp(argv[1], "config") == 0) {
		optind = 0;
		return run_group("sandbox ssh config", ssh_config_cmds,
				 argc - 1, argv + 1);
	}
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		size_t k;
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			usage_of(me, 0);
		if (strcmp(a, "--batch-mode") == 0) {
			batch = true;
			continue;
		}
		if (strncmp(a, "--", 2) != 0) {
			if (sess || a[0] == '-')
				break; /* ssh's arguments from here */
			sess = a;
			continue;
		}
		for (k = 0; valued[k]; k++) {
			size_t l = strlen(valued[k]);
			if (strncmp(a + 2, valued[k], l) != 0)
				continue;
			if (a[2 + l] == '=') {
				val = a + 3 + l;
				break;
			}
			if (a[2 + l] == '\0') {
				if (i + 1 >= argc)
					die_usage(me, "%s needs a value", a);
				val = argv[++i];
				break;
			}
		}
		if (!valued[k])
			die_usage(me,
				  "unknown option %s (ssh's own options "
				  "go after the session)",
				  a);
		switch (k) {
		case 0:
			sess = val;
			break;
		case 1:
			user = val;
			break;
		case 2:
			ident = val;
			break;
		case 3:
			ctimeout = val;
			break;
		case 4:
			strict = val;
			break;
		case 5:
			tree_set_mount(val);
			break;
		}
	}
	if (!sess)
		die_usage(me, "which session? --session S");
	name = session_arg(sess);
	if (read_target(name, &t) < 0)
		die("ssh: session %s: no SSH target (%s): this tenkid has no "
		    "SSH gateway",
		    name, strerror(errno));
	av = xmalloc(sizeof(*av) * (size_t)(argc + 16));
	av[n++] = (char *)(prog && *prog ? prog : "ssh");
	av[n++] = "-p";
	av[n++] = t.port;
	if (ident) {
		av[n++] = "-i";
		av[n++] = (char *)ident;
	}
	if (batch) {
		av[n++] = "-o";
		av[n++] = "BatchMode=yes";
	}
	if (ctimeout) {
		av[n++] = "-o";
		av[n++] = xasprintf("ConnectTimeout=%s", ctimeout);
	}
	if (strict) {
		av[n++] = "-o";
		av[n++] = xasprintf("StrictHostKeyChecking=%s", strict);
	}
	opt = xasprintf("%s@%s", user ? user : t.user, t.host);
	av[n++] = opt;
	for (; i < argc; i++)
		av[n++] = argv[i];
	av[n] = NULL;
	fflush(stdout);
	execvp(av[0], av);
	die("ssh: cannot run %s: %s", av[0], strerror(errno));
}

/* ---- ~/.ssh/config --------------------------------------------------- */

/* install|status|uninstall take only --mount and --help */
static void cfg_args(const char *name, int argc, char **argv)
{
	static const struct option opts[] = {COMMON_OPTS, {NULL, 0, NULL, 0}};
	const struct cmd *me = named_cmd(ssh_config_cmds, "ssh config", name);
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
		common_opt(c, me);
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
}

static char *config_path(void)
{
	const char *home = getenv("HOME");
	char *p, real[PATH_MAX];

	if (!home || !*home)
		die("ssh config: HOME is not set");
	p = xasprintf("%s/.ssh/config", home);
	/* a config that is a symlink (dotfiles repos): edit its target */
	if (realpath(p, real)) {
		free(p);
		p = xstrdup(real);
	}
	return p;
}

/* The block's bounds in s: [*b, *e). */
static bool find_block(const char *s, size_t *b, size_t *e)
{
	const char *begin = NULL, *end, *p = s;

	while ((p = strstr(p, BLOCK_BEGIN)) != NULL) {
		if (p == s || p[-1] == '\n') {
			begin = p;
			break;
		}
		p++;
	}
	if (!begin)
		return false;
	end = strstr(begin, BLOCK_END);
	if (!end)
		die("ssh config: the tenki block has no end line; fix "
		    "~/.ssh/config by hand");
	*b = (size_t)(begin - s);
	*e = (size_t)(end - s) + strlen(BLOCK_END);
	return true;
}

/* Replace the file with data, keeping its mode (0600 for a new one). */
static void put_config(const char *path, const char *data, size_t len)
{
	char *tmp = xasprintf("%s.tenki.XXXXXX", path);
	struct stat st;
	mode_t mode = 0600;
	int fd;

	if (stat(path, &st) == 0)
		mode = st.st_mode & 07777;
	fd = mkstemp(tmp);
	if (fd < 0)
		die("ssh config: %s: %s", tmp, strerror(errno));
	if (fchmod(fd, mode) < 0 || write_all_fd(fd, data, len) < 0 ||
	    fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		die("ssh config: %s: %s", path, strerror(e));
	}
	free(tmp);
}

static char *block_text(bool created, int *count)
{
	size_t cap = 4096, len = 0;
	char *out = xmalloc(cap);
	struct dirent *de;
	char *p;
	DIR *d;

#define ADD(...)                                                               \
	do {                                                                   \
		char *x_ = xasprintf(__VA_ARGS__);                             \
		size_t l_ = strlen(x_);                                        \
		while (len + l_ + 1 > cap) {                                   \
			cap *= 2;                                              \
			out = realloc(out, cap);                               \
			if (!out)                                              \
				die("out of memory");                          \
		}                                                              \
		memcpy(out + len, x_, l_ + 1);                                 \
		len += l_;                                                     \
		free(x_);                                                      \
	} while (0)

	out[0] = '\0';
	*count = 0;
	ADD("%s", BLOCK_BEGIN);
	if (created)
		ADD("%s", BLOCK_CREATED);
	p = tpath("sessions");
	d = opendir(p);
	if (!d)
		die("ssh config: %s: %s", p, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		struct target t;
		char *ip, *id;
		if (de->d_name[0] == '.')
			continue;
		ip = tpath("sessions/%s/id", de->d_name);
		id = read_line(ip);
		free(ip);
		if (!id || read_target(de->d_name, &t) < 0) {
			free(id);
			continue;
		}
		ADD("Host sbx-%s\n\tHostName %s\n\tPort %s\n\tUser %s\n"
		    "\t# session %s\n",
		    id, t.host, t.port, t.user, de->d_name);
		(*count)++;
		free(id);
	}
	closedir(d);
	free(p);
	ADD("%s", BLOCK_END);
#undef ADD
	return out;
}

static int cfg_install(int argc, char **argv)
{
	char *path = config_path(), *old, *blk, *dir, *all;
	size_t len = 0, b, e;
	bool created = false;
	int count;

	cfg_args("install", argc, argv);
	tree_check();
	old = read_all(path, &len);
	if (!old && errno != ENOENT)
		die("ssh config: %s: %s", path, strerror(errno));
	if (!old) {
		created = true;
		old = xstrdup("");
		len = 0;
		dir = xasprintf("%s/.ssh", getenv("HOME"));
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			die("ssh config: %s: %s", dir, strerror(errno));
		free(dir);
	}
	if (find_block(old, &b, &e)) {
		/* refresh: the same place, the same created mark */
		created = strstr(old + b, BLOCK_CREATED) &&
			  strstr(old + b, BLOCK_CREATED) < old + e;
		blk = block_text(created, &count);
		all = xasprintf("%.*s%s%s", (int)b, old, blk, old + e);
	} else {
		/* first: Host entries must precede any `Host *` that would
		 * set the same keywords (the first value wins) */
		blk = block_text(created, &count);
		all = xasprintf("%s%s", blk, old);
	}
	put_config(path, all, strlen(all));
	printf("installed %d Host sbx-<uuid> entr%s in %s\n", count,
	       count == 1 ? "y" : "ies", path);
	free(all);
	free(blk);
	free(old);
	free(path);
	return 0;
}

static int cfg_uninstall(int argc, char **argv)
{
	char *path = config_path(), *old, *rest;
	size_t len = 0, b, e;
	bool created;

	cfg_args("uninstall", argc, argv);
	old = read_all(path, &len);
	if (!old || !find_block(old, &b, &e)) {
		printf("not installed in %s\n", path);
		free(old);
		free(path);
		return 0;
	}
	created = strstr(old + b, BLOCK_CREATED) &&
		  strstr(old + b, BLOCK_CREATED) < old + e;
	rest = xasprintf("%.*s%s", (int)b, old, old + e);
	if (created && !*rest) {
		if (unlink(path) < 0)
			die("ssh config: %s: %s", path, strerror(errno));
		printf("removed %s (install had created it)\n", path);
	} else {
		put_config(path, rest, strlen(rest));
		printf("removed the tenki block from %s\n", path);
	}
	free(rest);
	free(old);
	free(path);
	return 0;
}

static int cfg_status(int argc, char **argv)
{
	char *path = config_path(), *old, *line, *save = NULL, *blk;
	size_t len = 0, b, e;
	int n = 0;

	cfg_args("status", argc, argv);
	old = read_all(path, &len);
	if (!old || !find_block(old, &b, &e)) {
		printf("not installed in %s\n", path);
		free(old);
		free(path);
		return EX_FAIL;
	}
	blk = strndup(old + b, e - b);
	printf("installed in %s\n", path);
	for (line = strtok_r(blk, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "Host sbx-", 9) == 0) {
			char *p = tpath("sessions");
			const char *live = "";
			/* a session gone since install: say so */
			if (is_dir(p)) {
				char *idp;
				live = " (session gone: run install again)";
				for (DIR *d = opendir(p); d; d = NULL) {
					struct dirent *de;
					while ((de = readdir(d)) != NULL) {
						char *id;
						if (de->d_name[0] == '.')
							continue;
						idp = tpath("sessions/%s/id",
							    de->d_name);
						id = read_line(idp);
						if (id &&
						    strcmp(id, line + 9) == 0)
							live = "";
						free(id);
						free(idp);
					}
					closedir(d);
				}
			}
			printf("  %s%s\n", line + 5, live);
			free(p);
			n++;
		}
	}
	printf("%d entr%s\n", n, n == 1 ? "y" : "ies");
	free(blk);
	free(old);
	free(path);
	return 0;
}

const struct cmd ssh_config_cmds[] = {
    {"install", cfg_install, "",
     "add (or refresh) Host sbx-<uuid> entries for the sessions"},
    {"status", cfg_status, "", "show the managed entries"},
    {"uninstall", cfg_uninstall, "",
     "remove the block: ~/.ssh/config as it was before install"},
    {NULL, NULL, NULL, NULL},
};

/* ---- ssh-keys -------------------------------------------------------- */

int cmd_ssh_keys(int argc, char **argv)
{
	static const struct option opts[] = {
	    COMMON_OPTS,
	    {"session", required_argument, NULL, 's'},
	    {"keys-file", required_argument, NULL, 'k'},
	    {NULL, 0, NULL, 0},
	};
	const struct cmd *me = find_cmd(sandbox_cmds, "ssh-keys");
	const char *sess = NULL, *file = NULL, *sub;
	char *name, *p, *errp, *data;
	struct errmark m;
	size_t len;
	int c;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		usage_of(me, 0);
	if (argc < 2 || argv[1][0] == '-')
		die_usage(me, "set or show?");
	sub = argv[1];
	argc--, argv++;
	optind = 0;
	while ((c = getopt_long(argc, argv, "hs:k:", opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		if (c == 's')
			sess = optarg;
		else if (c == 'k')
			file = optarg;
	}
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
	if (!sess)
		die_usage(me, "--session is required");
	if (strcmp(sub, "set") == 0 && !file)
		die_usage(me, "--keys-file is required");
	if (strcmp(sub, "set") != 0 && strcmp(sub, "show") != 0)
		die_usage(me, "unknown subcommand '%s'", sub);
	name = session_arg(sess);
	p = tpath("sessions/%s/ssh/authorized_keys", name);
	if (strcmp(sub, "show") == 0) {
		data = read_all(p, &len);
		if (!data)
			die("ssh-keys: session %s: %s", name, strerror(errno));
		fwrite(data, 1, len, stdout);
		goto out;
	}
	data = read_all(strcmp(file, "-") == 0 ? "/dev/stdin" : file, &len);
	if (!data)
		die("ssh-keys: %s: %s", file, strerror(errno));
	errp = tpath("sessions/%s/err", name);
	err_mark(&m, errp);
	/* one open: the whole set is checked, replaced when we close */
	if (write_file(p, data, len, O_TRUNC) < 0)
		fail_op(&m, errno, "ssh-keys set: session %s", name);
	err_free(&m);
	free(errp);
out:
	free(data);
	free(p);
	free(name);
	return 0;
}
