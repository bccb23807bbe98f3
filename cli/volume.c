/* volume create|list|get|attach|detach|delete: volumes/ of the tree. */
#include "tenki.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct option vol_opts[] = {
    COMMON_OPTS,
    {"name", required_argument, NULL, 'n'},
    {"size", required_argument, NULL, 'S'},
    {"volume", required_argument, NULL, 'v'},
    {"session", required_argument, NULL, 's'},
    {"path", required_argument, NULL, 'p'},
    {"ro", no_argument, NULL, 'r'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};

struct vol_args {
	const char *name, *size, *volume, *session, *path;
	bool ro, json;
};

static void parse(const struct cmd *me, int argc, char **argv,
		  struct vol_args *a, const char *allowed)
{
	int c;

	memset(a, 0, sizeof(*a));
	while ((c = getopt_long(argc, argv, "h", vol_opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		if (!strchr(allowed, c))
			die_usage(me, "option not taken by %s", me->name);
		switch (c) {
		case 'n':
			a->name = optarg;
			break;
		case 'S':
			a->size = optarg;
			break;
		case 'v':
			a->volume = optarg;
			break;
		case 's':
			a->session = optarg;
			break;
		case 'p':
			a->path = optarg;
			break;
		case 'r':
			a->ro = true;
			break;
		case 'j':
			a->json = true;
			break;
		}
	}
	if (!a->volume && optind < argc && strchr(allowed, 'v'))
		a->volume = argv[optind++];
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
	if (strchr(allowed, 'v') && !a->volume)
		die_usage(me, "--volume is required");
}

static const struct cmd *me_of(const char *n);

static int vol_create(int argc, char **argv)
{
	const struct cmd *me = me_of("create");
	struct vol_args a;
	struct errmark m;
	char *p, *errp, *text, got[256];
	json_t *spec;
	ssize_t n;
	int fd;

	parse(me, argc, argv, &a, "nSj");
	tree_check();
	spec = json_object();
	if (a.name)
		json_object_set_new(spec, "name", json_string(a.name));
	if (a.size)
		json_object_set_new(spec, "size", json_string(a.size));
	text = json_dumps(spec, JSON_COMPACT);
	p = tpath("volumes/new");
	errp = tpath("volumes/err");
	err_mark(&m, errp);
	fd = open(p, O_RDWR | O_CLOEXEC);
	if (fd < 0 || write_all_fd(fd, text, strlen(text)) < 0)
		fail_op(&m, errno, "create volume%s%s", a.name ? " " : "",
			a.name ? a.name : "");
	n = pread(fd, got, sizeof(got) - 1, 0);
	close(fd);
	if (n > 0) {
		got[n] = '\0';
		got[strcspn(got, "\n")] = '\0';
	} else if (a.name) {
		snprintf(got, sizeof(got), "%s", a.name);
	} else {
		die("create volume: %s gave no name back", p);
	}
	free(p);
	p = tpath("volumes/%s", got);
	show_object(p, a.json);
	free(p);
	free(errp);
	free(text);
	json_decref(spec);
	err_free(&m);
	return 0;
}

static int vol_list(int argc, char **argv)
{
	static const char *const cols[] = {"name", "id", "state", "size", NULL};
	struct vol_args a;

	parse(me_of("list"), argc, argv, &a, "j");
	return list_collection("volumes", a.json, cols);
}

static int vol_get(int argc, char **argv)
{
	struct vol_args a;
	char *name, *dir;

	parse(me_of("get"), argc, argv, &a, "vj");
	name = find_object("volumes", a.volume, "volume");
	dir = tpath("volumes/%s", name);
	show_object(dir, a.json);
	free(dir);
	free(name);
	return 0;
}

static int vol_attach(int argc, char **argv)
{
	const struct cmd *me = me_of("attach");
	struct vol_args a;
	char *name, *sess, *dir, *verb, *what;

	parse(me, argc, argv, &a, "vspr");
	if (!a.session || !a.path)
		die_usage(me, "--session and --path are required");
	if (a.path[0] != '/' || strpbrk(a.path, " \t\n"))
		die_usage(me, "--path: an absolute guest path without spaces");
	name = find_object("volumes", a.volume, "volume");
	sess = session_arg(a.session);
	dir = tpath("volumes/%s", name);
	verb = xasprintf("attach %s %s%s", sess, a.path, a.ro ? " ro" : "");
	what = xasprintf("volume %s", name);
	ctl_verb(dir, verb, what);
	free(what);
	free(verb);
	free(dir);
	free(sess);
	free(name);
	return 0;
}

static int vol_detach(int argc, char **argv)
{
	struct vol_args a;
	char *name, *dir, *what, *verb, *sess = NULL;

	parse(me_of("detach"), argc, argv, &a, "vs");
	name = find_object("volumes", a.volume, "volume");
	/* a volume attached read-only to several sessions: say which */
	if (a.session)
		sess = session_arg(a.session);
	dir = tpath("volumes/%s", name);
	what = xasprintf("volume %s", name);
	verb = sess ? xasprintf("detach %s", sess) : xstrdup("detach");
	ctl_verb(dir, verb, what);
	free(verb);
	free(what);
	free(dir);
	free(sess);
	free(name);
	return 0;
}

static int vol_delete(int argc, char **argv)
{
	struct vol_args a;
	char *name;

	parse(me_of("delete"), argc, argv, &a, "v");
	name = find_object("volumes", a.volume, "volume");
	remove_object("volumes", name, "volume");
	free(name);
	return 0;
}

const struct cmd volume_cmds[] = {
    {"create", vol_create, "[--name NAME] [--size SIZE] [--json]",
     "create a volume (1M..100G)"},
    {"list", vol_list, "[--json]", "list volumes"},
    {"get", vol_get, "--volume V [--json]", "show one volume"},
    {"attach", vol_attach, "--volume V --session S --path /PATH [--ro]",
     "attach a volume to a session"},
    {"detach", vol_detach, "--volume V [--session S]",
     "detach a volume (from S when it is on several)"},
    {"delete", vol_delete, "--volume V", "delete a volume (not attached)"},
    {NULL, NULL, NULL, NULL},
};

static const struct cmd *me_of(const char *n)
{
	return named_cmd(volume_cmds, "volume", n);
}

int cmd_volume(int argc, char **argv)
{
	return run_group("sandbox volume", volume_cmds, argc, argv);
}
