/* Session records on disk. */
#include "persist.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *persist_load_defaults(void)
{
	char path[600];
	char *t;

	snprintf(path, sizeof(path), "%s/defaults", cfg.state_dir);
	t = read_file(path, SPEC_MAX_TEXT, NULL);
	return t ? t : strdup("");
}

int persist_save_defaults(const char *text)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/defaults", cfg.state_dir);
	return write_file_atomic(path, text, strlen(text), 0600);
}

static json_t *list_json(char **list, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(list[i]));
	return a;
}

void session_save(struct session *s)
{
	char path[600];
	json_t *o = json_pack(
	    "{s:s, s:s, s:s, s:i, s:i, s:b, s:b, s:I, s:s, s:b, s:I, "
	    "s:o, s:o, s:o, s:s, s:I, s:I, s:s, s:i, s:i}",
	    "id", s->id, "name", s->name, "state", sess_state_name(s->state),
	    "cpu_cores", (int)s->spec.cpu_cores, "memory_mb",
	    (int)s->spec.memory_mb, "allow_inbound", s->spec.allow_inbound,
	    "allow_outbound", s->spec.allow_outbound, "max_duration",
	    (json_int_t)s->spec.max_duration, "image", s->spec.image, "wait",
	    s->spec.wait, "wait_timeout", (json_int_t)s->spec.wait_timeout,
	    "env_spec", list_json(s->spec.env, s->spec.nenv), "metadata",
	    list_json(s->spec.metadata, s->spec.nmetadata), "ssh_keys",
	    list_json(s->spec.ssh_keys, s->spec.nssh_keys), "env",
	    s->env_text ? s->env_text : "", "created_ms",
	    (json_int_t)s->created_ms, "expires_ms", (json_int_t)s->expires_ms,
	    "domname", s->domname, "next_job", (int)s->next_job, "next_chan",
	    (int)s->next_chan);

	if (!o) {
		log_warnx("session %s: cannot encode record", s->name);
		return;
	}
	if (s->reason)
		json_object_set_new(o, "reason", json_string(s->reason));
	json_object_set_new(o, "disk_gen", json_integer(s->disk_gen));
	json_object_set_new(o, "boot", json_string(s->boot ? s->boot : "cold"));
	if (s->spec.host[0])
		json_object_set_new(o, "host", json_string(s->spec.host));
	if (s->spec.snapshot[0])
		json_object_set_new(o, "snapshot",
				    json_string(s->spec.snapshot));
	if (s->spec.template_name[0])
		json_object_set_new(o, "template",
				    json_string(s->spec.template_name));
	if (s->spec.internal)
		json_object_set_new(o, "internal", json_true());
	char *txt = json_dumps(o, JSON_INDENT(1));
	json_decref(o);
	snprintf(path, sizeof(path), "%s/session.json", s->dir);
	if (!txt || write_file_replace(path, txt, strlen(txt), 0600) < 0)
		log_warnx("%s: %s", path, strerror(errno));
	free(txt);
}

static char **list_from_json(json_t *a, size_t *n)
{
	size_t i;
	json_t *it;
	char **list = calloc(json_array_size(a) + 1, sizeof(char *));

	if (!list)
		abort();
	*n = 0;
	json_array_foreach(a, i, it)
	{
		if (json_is_string(it))
			list[(*n)++] = strdup(json_string_value(it));
	}
	return list;
}

static int state_from_name(const char *n)
{
	for (int i = S_CREATING; i <= S_TERMINATED; i++)
		if (n && strcmp(n, sess_state_name((enum sess_state)i)) == 0)
			return i;
	return -1;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

static struct session *load_one(const char *dir)
{
	char path[600];
	size_t len;
	struct session *s = NULL;

	snprintf(path, sizeof(path), "%s/session.json", dir);
	char *txt = read_file(path, 1 << 22, &len);
	json_t *o = txt ? json_loadb(txt, len, 0, NULL) : NULL;
	free(txt);
	int st = o ? state_from_name(jstr(o, "state")) : -1;
	if (!o || st < 0 || !valid_name(jstr(o, "name")) ||
	    strlen(jstr(o, "id")) != UUID_LEN) {
		log_warnx("%s: unreadable session record, skipped", path);
		json_decref(o);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	s->refs = 1;
	spec_init(&s->spec);
	snprintf(s->name, sizeof(s->name), "%s", jstr(o, "name"));
	snprintf(s->id, sizeof(s->id), "%s", jstr(o, "id"));
	s->state = (enum sess_state)st;
	s->spec.cpu_cores =
	    (unsigned)json_integer_value(json_object_get(o, "cpu_cores"));
	s->spec.memory_mb =
	    (unsigned)json_integer_value(json_object_get(o, "memory_mb"));
	s->spec.allow_inbound =
	    json_is_true(json_object_get(o, "allow_inbound"));
	s->spec.allow_outbound =
	    json_is_true(json_object_get(o, "allow_outbound"));
	s->spec.max_duration =
	    json_integer_value(json_object_get(o, "max_duration"));
	snprintf(s->spec.image, sizeof(s->spec.image), "%s", jstr(o, "image"));
	s->spec.env =
	    list_from_json(json_object_get(o, "env_spec"), &s->spec.nenv);
	s->spec.metadata =
	    list_from_json(json_object_get(o, "metadata"), &s->spec.nmetadata);
	s->spec.ssh_keys =
	    list_from_json(json_object_get(o, "ssh_keys"), &s->spec.nssh_keys);
	s->env_text = strdup(jstr(o, "env"));
	s->created_ms = json_integer_value(json_object_get(o, "created_ms"));
	s->expires_ms = json_integer_value(json_object_get(o, "expires_ms"));
	snprintf(s->domname, sizeof(s->domname), "%s", jstr(o, "domname"));
	s->next_job =
	    (unsigned)json_integer_value(json_object_get(o, "next_job"));
	s->next_chan =
	    (uint32_t)json_integer_value(json_object_get(o, "next_chan"));
	if (json_object_get(o, "reason"))
		s->reason = strdup(jstr(o, "reason"));
	s->disk_gen =
	    (unsigned)json_integer_value(json_object_get(o, "disk_gen"));
	static const char *boots[] = {"cold", "golden", "snapshot", "pool",
				      "template"};
	for (size_t i = 0; i < 5; i++)
		if (strcmp(jstr(o, "boot"), boots[i]) == 0)
			s->boot = boots[i];
	snprintf(s->spec.snapshot, sizeof(s->spec.snapshot), "%s",
		 jstr(o, "snapshot"));
	snprintf(s->spec.template_name, sizeof(s->spec.template_name), "%s",
		 jstr(o, "template"));
	s->spec.internal = json_is_true(json_object_get(o, "internal"));
	snprintf(s->spec.host, sizeof(s->spec.host), "%s", jstr(o, "host"));
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	snprintf(path, sizeof(path), "%s/err", dir);
	errlog_init(&s->err, path);
	json_decref(o);
	return s;
}

struct session *persist_load_sessions(void)
{
	char path[600], dir[600];
	struct session *head = NULL, **tail = &head;
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/sessions", cfg.state_dir);
	if (!(d = opendir(path)))
		return NULL;
	while ((e = readdir(d)) != NULL) {
		if (strlen(e->d_name) != UUID_LEN)
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", path, e->d_name);
		struct session *s = load_one(dir);
		if (!s)
			continue;
		*tail = s;
		tail = &s->next;
	}
	closedir(d);
	return head;
}
