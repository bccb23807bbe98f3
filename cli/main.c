/* tenki(1): `tenki sandbox COMMAND ...`, the seed's command line over the
 * mounted tree.  Global options: --mount DIR (else $TENKI_MOUNT, else
 * /tenki). */
#include "tenki.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *progname = "tenki";

const struct cmd sandbox_cmds[] = {
    {"create", cmd_create,
     "[--name NAME] [--cpu N] [--memory-mb MB] [--allow-inbound[=BOOL]] "
     "[--allow-outbound[=BOOL]] [--max-duration DUR] [--snapshot ID] "
     "[--template T] [--image I] [--metadata K=V]... [--env K=V]... "
     "[--authorized-key KEY]... [--authorized-keys-file FILE]... "
     "[--volume ID:PATH[:ro]]... [--no-wait] [--wait-timeout DUR] [--json]",
     "create a session; waits until it is READY unless --no-wait"},
    {"list", cmd_list, "[--json]", "list sessions"},
    {"get", cmd_get, "--session S [--json]", "show one session"},
    {"wait", cmd_wait, "--session S [--timeout DUR]",
     "wait until a session is usable (READY or RUNNING)"},
    {"exec", cmd_exec,
     "--session S [--timeout DUR] [--env K=V]... [--cwd DIR] [--stdin] "
     "(-c LINE | [--] PROG ARGS...)",
     "run a command: streams stdout/stderr, exits with its code"},
    {"write", cmd_write,
     "--session S --path PATH [--data STR | --data-file FILE]",
     "write a file under /home/tenki (stdin without --data*)"},
    {"read", cmd_read, "--session S --path PATH [--out FILE]",
     "read a file under /home/tenki to stdout or --out"},
    {"expose", cmd_expose, "--session S --port N [--ttl DUR]",
     "expose a guest port as a preview URL"},
    {"ports", cmd_ports, "--session S [--json]", "list exposed ports"},
    {"unexpose", cmd_unexpose, "--session S --port N",
     "stop exposing a guest port"},
    {"ssh", cmd_ssh,
     "(--session S | S) [--user U] [--identity-file F] [--batch-mode] "
     "[--connect-timeout SEC] [--strict-host-key-checking V] [SSH ARGS...]",
     "ssh into a session through the gateway (the system ssh)"},
    {"ssh config", NULL, "install|status|uninstall",
     "manage Host sbx-<uuid> entries in ~/.ssh/config"},
    {"ssh-keys", cmd_ssh_keys,
     "set --session S --keys-file FILE | show "
     "--session S",
     "replace or show a session's authorized SSH keys"},
    {"extend", cmd_extend, "--session S --duration DUR",
     "push a session's deadline back by DUR"},
    {"pause", cmd_pause, "--session S", "pause a session (memory kept)"},
    {"resume", cmd_resume, "--session S", "resume a paused session"},
    {"close", cmd_close, "--session S",
     "close a session (its record stays until delete)"},
    {"delete", cmd_delete, "--session S",
     "close a session if open and remove every trace"},
    {"volume", cmd_volume, "create|list|get|attach|detach|delete ...",
     "persistent volumes"},
    {"snapshot", cmd_snapshot, "create|list|get|delete ...",
     "snapshots of sessions"},
    {"template", cmd_template, "create|build|list|get|logs|delete ...",
     "templates and their builds"},
    {NULL, NULL, NULL, NULL},
};

static void group_help(const char *group, const struct cmd *cmds, FILE *f)
{
	fprintf(f, "usage: %s [--mount DIR] %s COMMAND [OPTIONS]\n\n", progname,
		group);
	fprintf(f, "Commands:\n");
	for (const struct cmd *c = cmds; c->name; c++)
		fprintf(f, "  %-14s %s\n", c->name, c->help);
	fprintf(f, "\nEvery command takes --mount DIR (default $TENKI_MOUNT, "
		   "else /tenki) and --help.\n");
	fprintf(f, "`%s %s COMMAND --help` shows a command's options.\n",
		progname, group);
}

void usage_of(const struct cmd *c, int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f, "usage: %s sandbox %s %s\n  %s\n", progname, c->name,
		c->usage, c->help);
	exit(status);
}

bool common_opt(int c, const struct cmd *self)
{
	switch (c) {
	case OPT_MOUNT:
		tree_set_mount(optarg);
		return true;
	case 'h':
		usage_of(self, 0);
		return true;
	case '?':
		usage_of(self, EX_USAGE);
		return true;
	}
	return false;
}

const struct cmd *find_cmd(const struct cmd *cmds, const char *name)
{
	for (const struct cmd *c = cmds; c->name; c++)
		if (c->run && strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

const struct cmd *named_cmd(const struct cmd *cmds, const char *group,
			    const char *name)
{
	const struct cmd *c = find_cmd(cmds, name);
	struct cmd *n = xmalloc(sizeof(*n));

	*n = *c;
	n->name = xasprintf("%s %s", group, c->name);
	return n;
}

/* argv[0] is the group's name; argv[1] the command. */
int run_group(const char *group, const struct cmd *cmds, int argc, char **argv)
{
	const struct cmd *c;

	while (argc > 1 && strncmp(argv[1], "--mount", 7) == 0) {
		if (argv[1][7] == '=') {
			tree_set_mount(argv[1] + 8);
			argv++, argc--;
		} else if (argv[1][7] == '\0' && argc > 2) {
			tree_set_mount(argv[2]);
			argv += 2, argc -= 2;
		} else {
			break;
		}
	}
	if (argc < 2) {
		group_help(group, cmds, stderr);
		return EX_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		group_help(group, cmds, stdout);
		return 0;
	}
	c = find_cmd(cmds, argv[1]);
	if (!c) {
		fprintf(stderr, "%s: %s: unknown command '%s'\n", progname,
			group, argv[1]);
		group_help(group, cmds, stderr);
		return EX_USAGE;
	}
	optind = 0; /* glibc: start a fresh getopt scan */
	return c->run(argc - 1, argv + 1);
}

/* ---- progress, on a terminal only ---------------------------------- */

struct progress {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	char *label;
	char *statepath;
	double start;
};

double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool progress_on(void)
{
	return isatty(2);
}

static void *progress_main(void *arg)
{
	struct progress *p = arg;
	struct timespec ts;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		char *st = NULL;
		pthread_mutex_unlock(&p->lock);
		if (p->statepath)
			st = read_line(p->statepath);
		fprintf(stderr, "\r\033[K%s %s%s%.0fs", p->label, st ? st : "",
			st ? " " : "", now_s() - p->start);
		free(st);
		pthread_mutex_lock(&p->lock);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (!p->stop)
			pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	}
	pthread_mutex_unlock(&p->lock);
	fprintf(stderr, "\r\033[K");
	return NULL;
}

/* A line on stderr that counts seconds (and shows statepath's value)
 * while a blocking call runs; nothing when stderr is not a terminal. */
struct progress *progress_start(const char *label, const char *statepath)
{
	struct progress *p;

	if (!progress_on())
		return NULL;
	p = xmalloc(sizeof(*p));
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->label = xstrdup(label);
	p->statepath = statepath ? xstrdup(statepath) : NULL;
	p->start = now_s();
	if (pthread_create(&p->thread, NULL, progress_main, p) != 0) {
		free(p->label);
		free(p->statepath);
		free(p);
		return NULL;
	}
	return p;
}

void progress_stop(struct progress *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	free(p->label);
	free(p->statepath);
	free(p);
}

static void main_help(FILE *f)
{
	fprintf(f,
		"usage: %s [--mount DIR] sandbox COMMAND [OPTIONS]\n"
		"       %s --version\n\n"
		"tenki runs sandboxes (Linux microVMs) and serves them as a "
		"file tree;\nthis command drives that tree.  "
		"`%s sandbox --help` lists the commands.\n",
		progname, progname, progname);
}

int main(int argc, char **argv)
{
	int i = 1;

	while (i < argc && strncmp(argv[i], "--mount", 7) == 0) {
		if (argv[i][7] == '=') {
			tree_set_mount(argv[i] + 8);
			i++;
		} else if (argv[i][7] == '\0' && i + 1 < argc) {
			tree_set_mount(argv[i + 1]);
			i += 2;
		} else {
			break;
		}
	}
	if (i >= argc) {
		main_help(stderr);
		return EX_USAGE;
	}
	if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
	    strcmp(argv[i], "help") == 0) {
		main_help(stdout);
		return 0;
	}
	if (strcmp(argv[i], "--version") == 0 ||
	    strcmp(argv[i], "version") == 0) {
		printf("tenki %s\n", TENKI_VERSION);
		return 0;
	}
	if (strcmp(argv[i], "sandbox") == 0)
		return run_group("sandbox", sandbox_cmds, argc - i, argv + i);
	/* `tenki create ...` works too: the group is implied */
	if (find_cmd(sandbox_cmds, argv[i]))
		return run_group("sandbox", sandbox_cmds, argc - i + 1,
				 argv + i - 1);
	fprintf(stderr, "%s: unknown command '%s'\n", progname, argv[i]);
	main_help(stderr);
	return EX_USAGE;
}
