/* snapshot create|list|get|delete: snapshots/ of the tree. */
#include "tenki.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const struct option snap_opts[] = {
    COMMON_OPTS,
    {"session", required_argument, NULL, 's'},
    {"name", required_argument, NULL, 'n'},
    {"ttl", required_argument, NULL, 't'},
    {"snapshot", required_argument, NULL, 'S'},
    {"no-wait", no_argument, NULL, 'W'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};

struct snap_args {
	const char *session, *name, *ttl, *snapshot;
	bool nowait, json;
};

static const struct cmd *me_of(const char *n);

static void parse(const struct cmd *me, int argc, char **argv,
		  struct snap_args *a, const char *allowed)
{
	int c;

	memset(a, 0, sizeof(*a));
	while ((c = getopt_long(argc, argv, "h", snap_opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		if (!strchr(allowed, c))
			die_usage(me, "option not taken by %s", me->name);
		switch (c) {
		case 's':
			a->session = optarg;
			break;
		case 'n':
			a->name = optarg;
			break;
		case 't':
			a->ttl = optarg;
			break;
		case 'S':
			a->snapshot = optarg;
			break;
		case 'W':
			a->nowait = true;
			break;
		case 'j':
			a->json = true;
			break;
		}
	}
	if (!a->snapshot && optind < argc && strchr(allowed, 'S'))
		a->snapshot = argv[optind++];
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
	if (strchr(allowed, 'S') && !a->snapshot)
		die_usage(me, "--snapshot is required");
}

/* A snapshot is CREATING until its capture is done: poll its state. */
static const char *wait_final(const char *name)
{
	char *p = tpath("snapshots/%s/state", name);
	char *label = xasprintf("snapshot %s:", name);
	struct progress *pr = progress_start(label, p);
	static char st[32];
	char *s;

	for (;;) {
		s = read_line(p);
		if (!s)
			die("snapshot %s: %s", name, strerror(errno));
		snprintf(st, sizeof(st), "%s", s);
		free(s);
		if (strcmp(st, "CREATING") != 0)
			break;
		usleep(200 * 1000);
	}
	progress_stop(pr);
	free(label);
	free(p);
	return st;
}

static int snap_create(int argc, char **argv)
{
	const struct cmd *me = me_of("create");
	struct snap_args a;
	struct errmark m;
	char *sess, *p, *errp, *text, got[256], gen[128];
	const char *st;
	json_t *spec;
	ssize_t n;
	int fd;

	parse(me, argc, argv, &a, "sntWj");
	if (!a.session)
		die_usage(me, "--session is required");
	sess = session_arg(a.session);
	if (!a.name) { /* the tree wants a name: SESSION-YYYYmmdd-HHMMSS */
		time_t t = time(NULL);
		char ts[32];
		strftime(ts, sizeof(ts), "%Y%m%d-%H%M%S", gmtime(&t));
		snprintf(gen, sizeof(gen), "%.40s-%s", sess, ts);
		a.name = gen;
	}
	spec = json_pack("{s:s, s:s}", "name", a.name, "session", sess);
	if (a.ttl)
		json_object_set_new(spec, "ttl", json_string(a.ttl));
	text = json_dumps(spec, JSON_COMPACT);
	p = tpath("snapshots/new");
	errp = tpath("snapshots/err");
	if (!is_dir(tpath("snapshots")))
		die("snapshot: this tree has no snapshots/");
	err_mark(&m, errp);
	fd = open(p, O_RDWR | O_CLOEXEC);
	if (fd < 0 || write_all_fd(fd, text, strlen(text)) < 0)
		fail_op(&m, errno, "snapshot session %s as %s", sess, a.name);
	n = pread(fd, got, sizeof(got) - 1, 0);
	close(fd);
	if (n > 0) {
		got[n] = '\0';
		got[strcspn(got, "\n")] = '\0';
	} else {
		snprintf(got, sizeof(got), "%s", a.name);
	}
	if (!a.nowait) {
		st = wait_final(got);
		if (strcmp(st, "READY") != 0) {
			char *e = tpath("snapshots/%s/err", got);
			char *why = read_all(e, NULL);
			die("snapshot %s: %s%s%s", got, st, why ? ": " : "",
			    why ? why : "");
		}
	}
	free(p);
	p = tpath("snapshots/%s", got);
	show_object(p, a.json);
	free(p);
	free(errp);
	free(text);
	free(sess);
	json_decref(spec);
	err_free(&m);
	return 0;
}

static int snap_list(int argc, char **argv)
{
	static const char *const cols[] = {"name", "id", "state",
					   "source_session", NULL};
	struct snap_args a;

	parse(me_of("list"), argc, argv, &a, "j");
	return list_collection("snapshots", a.json, cols);
}

static int snap_get(int argc, char **argv)
{
	struct snap_args a;
	char *name, *dir;

	parse(me_of("get"), argc, argv, &a, "Sj");
	name = find_object("snapshots", a.snapshot, "snapshot");
	dir = tpath("snapshots/%s", name);
	show_object(dir, a.json);
	free(dir);
	free(name);
	return 0;
}

static int snap_delete(int argc, char **argv)
{
	struct snap_args a;
	char *name;

	parse(me_of("delete"), argc, argv, &a, "S");
	name = find_object("snapshots", a.snapshot, "snapshot");
	remove_object("snapshots", name, "snapshot");
	free(name);
	return 0;
}

const struct cmd snapshot_cmds[] = {
    {"create", snap_create,
     "--session S [--name NAME] [--ttl DUR] [--no-wait] [--json]",
     "snapshot a session (disk and memory); waits until READY"},
    {"list", snap_list, "[--json]", "list snapshots"},
    {"get", snap_get, "--snapshot SNAP [--json]", "show one snapshot"},
    {"delete", snap_delete, "--snapshot SNAP", "delete a snapshot"},
    {NULL, NULL, NULL, NULL},
};

static const struct cmd *me_of(const char *n)
{
	return named_cmd(snapshot_cmds, "snapshot", n);
}

int cmd_snapshot(int argc, char **argv)
{
	return run_group("sandbox snapshot", snapshot_cmds, argc, argv);
}
