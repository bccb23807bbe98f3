/* Session commands: create, list, get, wait and the lifecycle verbs, as
 * writes to sessions/new and sessions/NAME/ctl and reads of the records. */
#include "tenki.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --session takes a name or a UUID (also as an ssh alias, sbx-<uuid>). */
char *session_arg(const char *arg)
{
	char *p;

	if (!arg)
		die("--session is required");
	tree_check();
	p = tpath("sessions/%s", arg);
	if (!is_dir(p) && strncmp(arg, "sbx-", 4) == 0)
		arg += 4;
	free(p);
	return find_object("sessions", arg, "session");
}

static const struct cmd *self(const char *name)
{
	return find_cmd(sandbox_cmds, name);
}

static bool parse_bool(const char *s, const char *opt)
{
	if (!s)
		return true;
	if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on") ||
	    !strcmp(s, "1"))
		return true;
	if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off") ||
	    !strcmp(s, "0"))
		return false;
	die_usage(self("create"), "--%s: '%s' is not a boolean", opt, s);
}

static void add_kv(json_t *obj, const char *kv, const char *opt)
{
	const char *eq = strchr(kv, '=');
	char *k;

	if (!eq || eq == kv)
		die_usage(self("create"), "--%s: expected KEY=VALUE, got '%s'",
			  opt, kv);
	k = strndup(kv, (size_t)(eq - kv));
	json_object_set_new(obj, k, json_string(eq + 1));
	free(k);
}

static void add_keys_file(json_t *keys, const char *file)
{
	char *s = read_all(file, NULL), *line, *save = NULL;

	if (!s)
		die("--authorized-keys-file %s: %s", file, strerror(errno));
	for (line = strtok_r(s, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		while (*line == ' ' || *line == '\t')
			line++;
		line[strcspn(line, "\r")] = '\0';
		if (*line && *line != '#')
			json_array_append_new(keys, json_string(line));
	}
	free(s);
}

/* ID:PATH[:ro]; the volume by name or UUID. */
static void add_volume(json_t *vols, const char *arg)
{
	char *s = xstrdup(arg), *path, *ro, *name;
	json_t *v;

	path = strchr(s, ':');
	if (!path || path == s || path[1] != '/')
		die_usage(self("create"),
			  "--volume: expected VOLUME:/PATH[:ro], got '%s'",
			  arg);
	*path++ = '\0';
	ro = strchr(path, ':');
	if (ro) {
		*ro++ = '\0';
		if (strcmp(ro, "ro") != 0 && strcmp(ro, "rw") != 0)
			die_usage(self("create"),
				  "--volume: '%s': the mode is ro or rw", arg);
	}
	name = find_object("volumes", s, "volume");
	v = json_pack("{s:s, s:s, s:b}", "volume_id", name, "mount_path", path,
		      "read_only", ro && strcmp(ro, "ro") == 0);
	json_array_append_new(vols, v);
	free(name);
	free(s);
}

int cmd_create(int argc, char **argv)
{
	enum {
		O_NAME = OPT_FIRST_CMD,
		O_CPU,
		O_MEM,
		O_IN,
		O_OUT,
		O_MAXD,
		O_SNAP,
		O_TMPL,
		O_IMAGE,
		O_META,
		O_ENV,
		O_KEY,
		O_KEYS,
		O_VOL,
		O_NOWAIT,
		O_WT,
		O_JSON,
	};
	static const struct option opts[] = {
	    COMMON_OPTS,
	    {"name", required_argument, NULL, O_NAME},
	    {"cpu", required_argument, NULL, O_CPU},
	    {"memory-mb", required_argument, NULL, O_MEM},
	    {"allow-inbound", optional_argument, NULL, O_IN},
	    {"allow-outbound", optional_argument, NULL, O_OUT},
	    {"max-duration", required_argument, NULL, O_MAXD},
	    {"snapshot", required_argument, NULL, O_SNAP},
	    {"template", required_argument, NULL, O_TMPL},
	    {"image", required_argument, NULL, O_IMAGE},
	    {"metadata", required_argument, NULL, O_META},
	    {"env", required_argument, NULL, O_ENV},
	    {"authorized-key", required_argument, NULL, O_KEY},
	    {"authorized-keys-file", required_argument, NULL, O_KEYS},
	    {"volume", required_argument, NULL, O_VOL},
	    {"no-wait", no_argument, NULL, O_NOWAIT},
	    {"wait-timeout", required_argument, NULL, O_WT},
	    {"json", no_argument, NULL, O_JSON},
	    {NULL, 0, NULL, 0},
	};
	const struct cmd *me = self("create");
	json_t *spec = json_object(), *env = json_object(),
	       *meta = json_object(), *keys = json_array(),
	       *vols = json_array();
	bool wait = true, json = false;
	const char *name = NULL;
	struct errmark m;
	struct progress *pr;
	char *text, *path, *errp, *label, *statep = NULL;
	char got[256];
	ssize_t n;
	int c, fd;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		switch (c) {
		case O_NAME:
			name = optarg;
			json_object_set_new(spec, "name", json_string(optarg));
			break;
		case O_CPU:
		case O_MEM: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || end == optarg)
				die_usage(me, "--%s: '%s' is not a number",
					  c == O_CPU ? "cpu" : "memory-mb",
					  optarg);
			json_object_set_new(
			    spec, c == O_CPU ? "cpu_cores" : "memory_mb",
			    json_integer(v));
			break;
		}
		case O_IN:
			json_object_set_new(
			    spec, "allow_inbound",
			    json_boolean(parse_bool(optarg, "allow-inbound")));
			break;
		case O_OUT:
			json_object_set_new(
			    spec, "allow_outbound",
			    json_boolean(parse_bool(optarg, "allow-outbound")));
			break;
		case O_MAXD:
			json_object_set_new(spec, "max_duration",
					    json_string(optarg));
			break;
		case O_SNAP:
			json_object_set_new(spec, "snapshot",
					    json_string(optarg));
			break;
		case O_TMPL:
			json_object_set_new(spec, "template",
					    json_string(optarg));
			break;
		case O_IMAGE:
			json_object_set_new(spec, "image", json_string(optarg));
			break;
		case O_META:
			add_kv(meta, optarg, "metadata");
			break;
		case O_ENV:
			add_kv(env, optarg, "env");
			break;
		case O_KEY:
			json_array_append_new(keys, json_string(optarg));
			break;
		case O_KEYS:
			add_keys_file(keys, optarg);
			break;
		case O_VOL:
			add_volume(vols, optarg);
			break;
		case O_NOWAIT:
			wait = false;
			break;
		case O_WT:
			json_object_set_new(spec, "wait_timeout",
					    json_string(optarg));
			break;
		case O_JSON:
			json = true;
			break;
		}
	}
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
	tree_check();
	if (json_object_size(env))
		json_object_set(spec, "env", env);
	if (json_object_size(meta))
		json_object_set(spec, "metadata", meta);
	if (json_array_size(keys))
		json_object_set(spec, "ssh_authorized_keys", keys);
	if (json_array_size(vols))
		json_object_set(spec, "volumes", vols);
	json_object_set_new(spec, "wait", json_boolean(wait));
	text = json_dumps(spec, JSON_COMPACT);

	path = tpath("sessions/new");
	errp = tpath("sessions/err");
	err_mark(&m, errp);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fail_op(&m, errno, "create session");
	if (name)
		statep = tpath("sessions/%s/state", name);
	label = xasprintf("creating session%s%s:", name ? " " : "",
			  name ? name : "");
	/* the write returns once the session is usable (spec's wait) */
	pr = wait ? progress_start(label, statep) : NULL;
	if (write_all_fd(fd, text, strlen(text)) < 0) {
		int e = errno;
		progress_stop(pr);
		if (e == ETIMEDOUT && name)
			fprintf(stderr,
				"%s: session %s is still booting: "
				"`%s sandbox wait --session %s`\n",
				progname, name, progname, name);
		fail_op(&m, e, "create session%s%s", name ? " " : "",
			name ? name : "");
	}
	progress_stop(pr);
	n = pread(fd, got, sizeof(got) - 1, 0);
	close(fd);
	if (n <= 0)
		die("create session: %s gave no name back", path);
	got[n] = '\0';
	got[strcspn(got, "\n")] = '\0';
	free(path);
	path = tpath("sessions/%s", got);
	show_object(path, json);

	free(path);
	free(errp);
	free(label);
	free(statep);
	free(text);
	err_free(&m);
	json_decref(env);
	json_decref(meta);
	json_decref(keys);
	json_decref(vols);
	json_decref(spec);
	return 0;
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
	    COMMON_OPTS,
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	const struct cmd *me = self("list");
	bool json = false;
	char *p, *s, *line, *save = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		if (c == 'j')
			json = true;
	}
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
	tree_check();
	p = tpath(json ? "sessions/index.json" : "sessions/index");
	s = read_all(p, NULL);
	if (!s)
		die("%s: %s", p, strerror(errno));
	if (json) {
		fputs(s, stdout);
		goto out;
	}
	printf("%-20s %-36s %-11s %4s %7s %s\n", "NAME", "ID", "STATE", "CPU",
	       "MEM_MB", "EXPIRES");
	for (line = strtok_r(s, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char nm[128], id[64], st[32], exp[64];
		unsigned cpu, mem;
		if (sscanf(line, "%127s %63s %31s %u %u %63s", nm, id, st, &cpu,
			   &mem, exp) == 6)
			printf("%-20s %-36s %-11s %4u %7u %s\n", nm, id, st,
			       cpu, mem, exp);
		else
			puts(line);
	}
out:
	free(s);
	free(p);
	return 0;
}

/* The options of commands that name one session and nothing else. */
static char *session_only(const char *cmdname, int argc, char **argv,
			  bool *json)
{
	static const struct option opts[] = {
	    COMMON_OPTS,
	    {"session", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	const struct cmd *me = self(cmdname);
	const char *sess = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "hs:", opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		if (c == 's')
			sess = optarg;
		else if (c == 'j' && json)
			*json = true;
		else if (c == 'j')
			die_usage(me, "--json: not an option of %s", cmdname);
	}
	if (!sess && optind < argc) /* `get NAME` reads well too */
		sess = argv[optind++];
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
	if (!sess)
		die_usage(me, "--session is required");
	return session_arg(sess);
}

int cmd_get(int argc, char **argv)
{
	bool json = false;
	char *name = session_only("get", argc, argv, &json);
	char *dir = tpath("sessions/%s", name);

	show_object(dir, json);
	free(dir);
	free(name);
	return 0;
}

static int verb(const char *cmdname, const char *v, int argc, char **argv)
{
	char *name = session_only(cmdname, argc, argv, NULL);
	char *dir = tpath("sessions/%s", name);
	char *what = xasprintf("session %s", name);

	ctl_verb(dir, v, what);
	free(what);
	free(dir);
	free(name);
	return 0;
}

int cmd_pause(int argc, char **argv)
{
	return verb("pause", "pause", argc, argv);
}

int cmd_resume(int argc, char **argv)
{
	return verb("resume", "resume", argc, argv);
}

int cmd_close(int argc, char **argv)
{
	return verb("close", "close", argc, argv);
}

int cmd_delete(int argc, char **argv)
{
	char *name = session_only("delete", argc, argv, NULL);
	struct progress *pr = progress_start("deleting session:", NULL);

	remove_object("sessions", name, "session");
	progress_stop(pr);
	free(name);
	return 0;
}

int cmd_extend(int argc, char **argv)
{
	static const struct option opts[] = {
	    COMMON_OPTS,
	    {"session", required_argument, NULL, 's'},
	    {"duration", required_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	const struct cmd *me = self("extend");
	const char *sess = NULL, *dur = NULL;
	char *name, *dir, *what, *v;
	int c;

	while ((c = getopt_long(argc, argv, "hs:d:", opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		if (c == 's')
			sess = optarg;
		else if (c == 'd')
			dur = optarg;
	}
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
	if (!sess || !dur)
		die_usage(me, "--session and --duration are required");
	if (strpbrk(dur, " \t\n"))
		die_usage(me, "--duration: '%s' is not a duration", dur);
	name = session_arg(sess);
	dir = tpath("sessions/%s", name);
	what = xasprintf("session %s", name);
	v = xasprintf("extend %s", dur);
	ctl_verb(dir, v, what);
	free(v);
	free(what);
	free(dir);
	free(name);
	return 0;
}

static void on_alarm(int sig)
{
	(void)sig;
}

int cmd_wait(int argc, char **argv)
{
	static const struct option opts[] = {
	    COMMON_OPTS,
	    {"session", required_argument, NULL, 's'},
	    {"timeout", required_argument, NULL, 't'},
	    {NULL, 0, NULL, 0},
	};
	const struct cmd *me = self("wait");
	const char *sess = NULL;
	long secs = 0;
	char *name, *p, *st, *label;
	struct progress *pr;
	struct sigaction sa;
	int c;

	while ((c = getopt_long(argc, argv, "hs:t:", opts, NULL)) != -1) {
		if (common_opt(c, me))
			continue;
		if (c == 's') {
			sess = optarg;
		} else if (c == 't') {
			char *end;
			secs = strtol(optarg, &end, 10);
			if (*end == 'm')
				secs *= 60, end++;
			else if (*end == 'h')
				secs *= 3600, end++;
			else if (*end == 's')
				end++;
			if (*end || secs <= 0)
				die_usage(me,
					  "--timeout: '%s': use N, Ns, "
					  "Nm or Nh",
					  optarg);
		}
	}
	if (!sess && optind < argc)
		sess = argv[optind++];
	if (!sess)
		die_usage(me, "--session is required");
	name = session_arg(sess);
	p = tpath("sessions/%s/wait", name);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm; /* no SA_RESTART: the read ends */
	sigaction(SIGALRM, &sa, NULL);
	if (secs)
		alarm((unsigned)secs);
	label = xasprintf("waiting for %s:", name);
	pr = progress_start(label, NULL);
	st = read_line(p);
	progress_stop(pr);
	alarm(0);
	if (!st && errno == EINTR)
		die("session %s: not usable after %lds (Connection timed out)",
		    name, secs);
	if (!st)
		die("session %s: wait: %s", name, strerror(errno));
	puts(st);
	c = strcmp(st, "READY") == 0 || strcmp(st, "RUNNING") == 0 ? 0
								   : EX_FAIL;
	free(st);
	free(label);
	free(p);
	free(name);
	return c;
}
