/* template create|build|list|get|logs|delete: templates/ of the tree.  A
 * template is made by mkdir and its writable files; a failed create
 * removes what it made. */
#include "tenki.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
	O_NAME = OPT_FIRST_CMD,
	O_SETUP,
	O_SETUP_FILE,
	O_START,
	O_READY,
	O_ENV,
	O_CPU,
	O_MEM,
	O_BASE,
	O_TMPL,
	O_BUILD,
	O_NOWAIT,
	O_FOLLOW,
	O_JSON,
};

static const struct option tmpl_opts[] = {
    COMMON_OPTS,
    {"name", required_argument, NULL, O_NAME},
    {"setup-script", required_argument, NULL, O_SETUP},
    {"setup-script-file", required_argument, NULL, O_SETUP_FILE},
    {"start-cmd", required_argument, NULL, O_START},
    {"ready-cmd", required_argument, NULL, O_READY},
    {"env", required_argument, NULL, O_ENV},
    {"cpu", required_argument, NULL, O_CPU},
    {"memory-mb", required_argument, NULL, O_MEM},
    {"base-image", required_argument, NULL, O_BASE},
    {"template", required_argument, NULL, O_TMPL},
    {"build", required_argument, NULL, O_BUILD},
    {"no-wait", no_argument, NULL, O_NOWAIT},
    {"follow", no_argument, NULL, O_FOLLOW},
    {"json", no_argument, NULL, O_JSON},
    {NULL, 0, NULL, 0},
};

struct tmpl_args {
	const char *name, *setup, *setup_file, *start, *ready, *cpu, *mem,
	    *base, *tmpl, *build;
	char *env;
	bool nowait, follow, json;
};

static const struct cmd *me_of(const char *n);

static void parse(const struct cmd *me, int argc, char **argv,
		  struct tmpl_args *a, bool need_tmpl)
{
	int c;

	memset(a, 0, sizeof(*a));
	a->env = xstrdup("");
	while ((c = getopt_long(argc, argv, "h", tmpl_opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		switch (c) {
		case O_NAME:
			a->name = optarg;
			break;
		case O_SETUP:
			a->setup = optarg;
			break;
		case O_SETUP_FILE:
			a->setup_file = optarg;
			break;
		case O_START:
			a->start = optarg;
			break;
		case O_READY:
			a->ready = optarg;
			break;
		case O_ENV: {
			char *e;
			if (!strchr(optarg, '=') || strchr(optarg, '\n'))
				die_usage(me, "--env: expected KEY=VALUE");
			e = xasprintf("%s%s\n", a->env, optarg);
			free(a->env);
			a->env = e;
			break;
		}
		case O_CPU:
			a->cpu = optarg;
			break;
		case O_MEM:
			a->mem = optarg;
			break;
		case O_BASE:
			a->base = optarg;
			break;
		case O_TMPL:
			a->tmpl = optarg;
			break;
		case O_BUILD:
			a->build = optarg;
			break;
		case O_NOWAIT:
			a->nowait = true;
			break;
		case O_FOLLOW:
			a->follow = true;
			break;
		case O_JSON:
			a->json = true;
			break;
		}
	}
	if (!a->tmpl && need_tmpl && optind < argc)
		a->tmpl = argv[optind++];
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
	if (need_tmpl && !a->tmpl)
		die_usage(me, "--template is required");
}

static void set_file(const char *name, const char *file, const char *val,
		     struct errmark *m)
{
	char *p = tpath("templates/%s/%s", name, file);
	char *v = xasprintf("%s%s", val,
			    *val && val[strlen(val) - 1] != '\n' ? "\n" : "");

	if (write_file(p, v, strlen(v), O_TRUNC) < 0) {
		int e = errno;
		char *dir = tpath("templates/%s", name);
		char *reason = err_reason(m);
		rmdir(dir); /* nothing half-made */
		fprintf(stderr, "%s: create template %s: %s: %s%s%s\n",
			progname, name, file, strerror(e), reason ? ": " : "",
			reason ? reason : "");
		exit(EX_FAIL);
	}
	free(v);
	free(p);
}

static int tmpl_create(int argc, char **argv)
{
	const struct cmd *me = me_of("create");
	struct tmpl_args a;
	struct errmark m;
	char *dir, *errp, *script = NULL;

	parse(me, argc, argv, &a, false);
	if (!a.name)
		die_usage(me, "--name is required");
	if (a.setup && a.setup_file)
		die_usage(me, "--setup-script and --setup-script-file "
			      "exclude each other");
	if (a.setup_file) {
		script = read_all(a.setup_file, NULL);
		if (!script)
			die("template: %s: %s", a.setup_file, strerror(errno));
	}
	tree_check();
	if (!is_dir(tpath("templates")))
		die("template: this tree has no templates/");
	dir = tpath("templates/%s", a.name);
	errp = tpath("templates/err");
	err_mark(&m, errp);
	if (mkdir(dir, 0755) < 0)
		fail_op(&m, errno, "create template %s", a.name);
	err_free(&m);
	free(errp);
	errp = tpath("templates/%s/err", a.name);
	err_mark(&m, errp);
	if (script || a.setup)
		set_file(a.name, "setup_script", script ? script : a.setup, &m);
	if (a.start)
		set_file(a.name, "start_cmd", a.start, &m);
	if (a.ready)
		set_file(a.name, "ready_cmd", a.ready, &m);
	if (*a.env)
		set_file(a.name, "env", a.env, &m);
	if (a.cpu)
		set_file(a.name, "cpu_cores", a.cpu, &m);
	if (a.mem)
		set_file(a.name, "memory_mb", a.mem, &m);
	if (a.base)
		set_file(a.name, "base_image", a.base, &m);
	show_object(dir, a.json);
	err_free(&m);
	free(errp);
	free(dir);
	free(script);
	free(a.env);
	return 0;
}

/* Copy the live build log to stderr until it ends. */
static void follow_log(const char *name)
{
	char *p = tpath("templates/%s/log", name);
	char buf[65536];
	ssize_t n;
	int fd = open(p, O_RDONLY | O_CLOEXEC);

	while (fd >= 0 && ((n = read(fd, buf, sizeof(buf))) > 0 ||
			   (n < 0 && errno == EINTR)))
		if (n > 0 && write_all_fd(2, buf, (size_t)n) < 0)
			break;
	if (fd >= 0)
		close(fd);
	free(p);
}

static int tmpl_build(int argc, char **argv)
{
	const struct cmd *me = me_of("build");
	struct tmpl_args a;
	char *name, *dir, *what, *sp, *st = NULL, *label;
	struct progress *pr = NULL;

	parse(me, argc, argv, &a, true);
	name = find_object("templates", a.tmpl, "template");
	dir = tpath("templates/%s", name);
	what = xasprintf("template %s", name);
	ctl_verb(dir, "build", what);
	if (a.nowait)
		goto out;
	sp = tpath("templates/%s/state", name);
	/* the build's log is its progress: on a terminal, or --follow */
	if (a.follow || progress_on())
		follow_log(name);
	label = xasprintf("building %s:", name);
	pr = progress_start(label, sp);
	for (;;) {
		free(st);
		st = read_line(sp);
		if (!st)
			die("template %s: %s", name, strerror(errno));
		if (strcmp(st, "PENDING") != 0 && strcmp(st, "BUILDING") != 0)
			break;
		usleep(500 * 1000);
	}
	progress_stop(pr);
	printf("%s\n", st);
	if (strcmp(st, "READY") != 0) {
		fprintf(stderr,
			"%s: template %s: build %s (see `%s sandbox "
			"template logs --template %s`)\n",
			progname, name, st, progname, name);
		exit(EX_FAIL);
	}
	free(st);
	free(label);
	free(sp);
out:
	free(what);
	free(dir);
	free(name);
	free(a.env);
	return 0;
}

static int tmpl_list(int argc, char **argv)
{
	static const char *const cols[] = {"name", "id", "state", NULL};
	struct tmpl_args a;

	parse(me_of("list"), argc, argv, &a, false);
	free(a.env);
	return list_collection("templates", a.json, cols);
}

static int tmpl_get(int argc, char **argv)
{
	struct tmpl_args a;
	char *name, *dir;

	parse(me_of("get"), argc, argv, &a, true);
	name = find_object("templates", a.tmpl, "template");
	dir = tpath("templates/%s", name);
	show_object(dir, a.json);
	free(dir);
	free(name);
	free(a.env);
	return 0;
}

static int tmpl_logs(int argc, char **argv)
{
	struct tmpl_args a;
	char *name, *p, *s;
	size_t len;

	parse(me_of("logs"), argc, argv, &a, true);
	name = find_object("templates", a.tmpl, "template");
	if (a.build)
		p = tpath("templates/%s/builds/%s/log", name, a.build);
	else
		p = tpath("templates/%s/log", name);
	s = read_all(p, &len);
	if (!s)
		die("template %s: log: %s", name, strerror(errno));
	fwrite(s, 1, len, stdout);
	free(s);
	free(p);
	free(name);
	free(a.env);
	return 0;
}

static int tmpl_delete(int argc, char **argv)
{
	struct tmpl_args a;
	char *name;

	parse(me_of("delete"), argc, argv, &a, true);
	name = find_object("templates", a.tmpl, "template");
	remove_object("templates", name, "template");
	free(name);
	free(a.env);
	return 0;
}

const struct cmd template_cmds[] = {
    {"create", tmpl_create,
     "--name NAME [--setup-script STR | --setup-script-file FILE] "
     "[--start-cmd CMD] [--ready-cmd CMD] [--env K=V]... [--cpu N] "
     "[--memory-mb MB] [--base-image IMG] [--json]",
     "create a template (a recipe; build it to use it)"},
    {"build", tmpl_build, "--template T [--no-wait] [--follow]",
     "build a template's golden snapshot; waits for the result"},
    {"list", tmpl_list, "[--json]", "list templates"},
    {"get", tmpl_get, "--template T [--json]", "show one template"},
    {"logs", tmpl_logs, "--template T [--build N]",
     "print the latest (or build N's) build log"},
    {"delete", tmpl_delete, "--template T", "delete a template and its builds"},
    {NULL, NULL, NULL, NULL},
};

static const struct cmd *me_of(const char *n)
{
	return named_cmd(template_cmds, "template", n);
}

int cmd_template(int argc, char **argv)
{
	return run_group("sandbox template", template_cmds, argc, argv);
}
