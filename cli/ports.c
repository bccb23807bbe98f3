/* expose, ports, unexpose: files in a session's ports/ directory. */
#include "tenki.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct option port_opts[] = {
    COMMON_OPTS,
    {"session", required_argument, NULL, 's'},
    {"port", required_argument, NULL, 'p'},
    {"ttl", required_argument, NULL, 't'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};

struct port_args {
	const char *sess, *port, *ttl;
	bool json;
};

static char *parse(const char *cmdname, int argc, char **argv,
		   struct port_args *a, bool need_port)
{
	const struct cmd *me = find_cmd(sandbox_cmds, cmdname);
	char *end;
	long n;
	int c;

	memset(a, 0, sizeof(*a));
	while ((c = getopt_long(argc, argv, "hs:p:t:", port_opts, NULL)) !=
	       -1) {
		if (common_opt(c, me))
			continue;
		if (c == 's')
			a->sess = optarg;
		else if (c == 'p' && need_port)
			a->port = optarg;
		else if (c == 't' && strcmp(cmdname, "expose") == 0)
			a->ttl = optarg;
		else if (c == 'j' && strcmp(cmdname, "ports") == 0)
			a->json = true;
		else
			die_usage(me, "option not taken by %s", cmdname);
	}
	if (optind < argc)
		die_usage(me, "unexpected argument '%s'", argv[optind]);
	if (!a->sess)
		die_usage(me, "--session is required");
	if (need_port) {
		if (!a->port)
			die_usage(me, "--port is required");
		n = strtol(a->port, &end, 10);
		if (*end || end == a->port || n < 1 || n > 65535)
			die_usage(me,
				  "--port %s: port numbers must be between 1 "
				  "and 65535",
				  a->port);
	}
	return session_arg(a->sess);
}

static void print_port(const char *name, const char *port)
{
	char *p = tpath("sessions/%s/ports/%s", name, port);
	char *s = read_all(p, NULL), *url = NULL, *exp = NULL, *line, *save;

	if (!s)
		die("ports: %s: %s", p, strerror(errno));
	for (line = strtok_r(s, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "url ", 4) == 0)
			url = line + 4;
		else if (strncmp(line, "expires ", 8) == 0)
			exp = line + 8;
	}
	printf("%-6s %-50s %s\n", port, url ? url : "-", exp ? exp : "-");
	free(s);
	free(p);
}

int cmd_expose(int argc, char **argv)
{
	struct port_args a;
	char *name = parse("expose", argc, argv, &a, true);
	char *dir = tpath("sessions/%s/ports", name);
	char *p =
	    tpath("sessions/%s/ports/%ld", name, strtol(a.port, NULL, 10));
	char *errp = tpath("sessions/%s/err", name);
	char *ttl = a.ttl ? xasprintf("%s\n", a.ttl) : NULL;
	struct errmark m;

	if (!is_dir(dir))
		die("expose: session %s has no ports/ (this tenkid does not "
		    "expose ports)",
		    name);
	err_mark(&m, errp);
	if (write_file(p, ttl ? ttl : "", ttl ? strlen(ttl) : 0, O_CREAT) < 0)
		fail_op(&m, errno, "expose port %s of session %s", a.port,
			name);
	print_port(name, strrchr(p, '/') + 1);
	err_free(&m);
	free(ttl);
	free(errp);
	free(p);
	free(dir);
	free(name);
	return 0;
}

int cmd_unexpose(int argc, char **argv)
{
	struct port_args a;
	char *name = parse("unexpose", argc, argv, &a, true);
	char *p =
	    tpath("sessions/%s/ports/%ld", name, strtol(a.port, NULL, 10));
	char *errp = tpath("sessions/%s/err", name);
	struct errmark m;

	err_mark(&m, errp);
	if (unlink(p) < 0)
		fail_op(&m, errno, "unexpose port %s of session %s", a.port,
			name);
	err_free(&m);
	free(errp);
	free(p);
	free(name);
	return 0;
}

static int cmp_port(const void *a, const void *b)
{
	return atoi(*(char *const *)a) - atoi(*(char *const *)b);
}

int cmd_ports(int argc, char **argv)
{
	struct port_args a;
	char *name = parse("ports", argc, argv, &a, false);
	char *dir = tpath("sessions/%s/ports", name);
	char **ports = NULL;
	size_t n = 0;
	struct dirent *de;
	DIR *d;

	if (a.json) {
		char *ip = tpath("sessions/%s/info.json", name);
		json_t *o = read_json(ip), *pa;
		char *s;
		if (!o)
			die("%s: %s", ip, strerror(errno));
		pa = json_object_get(o, "ports");
		s = json_dumps(pa ? pa : json_array(), JSON_INDENT(2));
		puts(s);
		free(s);
		json_decref(o);
		free(ip);
		goto out;
	}
	d = opendir(dir);
	if (!d)
		die("ports: session %s: %s", name, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		ports = realloc(ports, (n + 1) * sizeof(*ports));
		if (!ports)
			die("out of memory");
		ports[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n)
		qsort(ports, n, sizeof(*ports), cmp_port);
	printf("%-6s %-50s %s\n", "PORT", "URL", "EXPIRES");
	for (size_t i = 0; i < n; i++) {
		print_port(name, ports[i]);
		free(ports[i]);
	}
	free(ports);
out:
	free(dir);
	free(name);
	return 0;
}
