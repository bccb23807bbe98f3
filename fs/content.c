/* Generated file contents. */
#include "content.h"
#include "job.h"
#include "pool.h"
#include "ports.h"
#include "sshgw.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONSOLE_MAX (1024 * 1024)

static const char readme[] =
    "tenki: sandboxes you drive with files\n"
    "\n"
    "  mkdir sessions/NAME              boot a microVM (returns when "
    "READY)\n"
    "  echo 'cpu=4 memory=8192' > sessions/new   create with options\n"
    "  cat sessions/NAME/state          CREATING READY RUNNING PAUSED "
    "TERMINATING TERMINATED\n"
    "  echo pause > sessions/NAME/ctl   also: resume, extend 30m, close\n"
    "  j=$(cat sessions/NAME/exec/clone)\n"
    "  echo 'make test' > sessions/NAME/exec/$j/cmd\n"
    "  cat sessions/NAME/exec/$j/output   streams until the command "
    "ends\n"
    "  cat sessions/NAME/exec/$j/exit     its exit code\n"
    "  touch sessions/NAME/ports/8000   expose guest port 8000 "
    "(allow_inbound=true)\n"
    "  cat sessions/NAME/ports/8000     its url; preview: the shared "
    "listener\n"
    "  rmdir sessions/NAME              close and remove every trace\n"
    "  echo 'name=data size=10G' > volumes/new   storage that outlives "
    "sessions\n"
    "  echo 'attach data /data' > sessions/NAME/ctl   mounted in the "
    "guest; also detach\n"
    "  mkdir templates/T; echo 'apt-get update; apt-get install -y jq' > "
    "templates/T/setup_script\n"
    "  echo build > templates/T/ctl     then: echo 'template=T' > "
    "sessions/new\n"
    "  echo 'name=n2 uri=qemu+tls://n2/system' > hosts/new   more "
    "machines\n"
    "\n"
    "A refused operation fails with an errno and says why in the nearest "
    "err file.\n"
    "defaults holds key=value words used by every mkdir.  See tenki-fs(5).\n";

static char *dup_or_die(const char *s)
{
	char *d = strdup(s);
	if (!d)
		abort();
	return d;
}

static char *with_newline(const char *s)
{
	char *out;

	if (asprintf(&out, "%s\n", s) < 0)
		abort();
	return out;
}

static char *metadata_value(struct session *s, const char *key)
{
	size_t kl = strlen(key);

	for (size_t i = 0; i < s->spec.nmetadata; i++)
		if (strncmp(s->spec.metadata[i], key, kl) == 0 &&
		    s->spec.metadata[i][kl] == '=')
			return with_newline(s->spec.metadata[i] + kl + 1);
	return NULL;
}

static char *console_text(struct session *s)
{
	char path[600];
	size_t len;
	char *t;

	snprintf(path, sizeof(path), "%s/console.log", s->dir);
	t = read_file(path, 64 * CONSOLE_MAX, &len);
	if (!t)
		return dup_or_die("");
	if (len > CONSOLE_MAX) {
		/* Only the newest part: a chatty guest cannot grow our reads.
		 */
		memmove(t, t + len - CONSOLE_MAX, CONSOLE_MAX + 1);
	}
	return t;
}

static char *wait_text(struct session *s, bool *ready, int *err)
{
	if (s->gone && s->state == S_CREATING) {
		*err = EIO;
		return NULL;
	}
	if (session_usable(s) || session_final(s)) {
		*ready = true;
		return with_newline(sess_state_name(s->state));
	}
	*ready = false;
	return NULL;
}

static char *exit_text(struct job *j, bool *ready)
{
	char *out;

	if (!job_ended(j)) {
		*ready = false;
		return NULL;
	}
	*ready = true;
	if (asprintf(&out, "%d\n", j->exit_code) < 0)
		abort();
	return out;
}

static char *err_text(struct errlog *log)
{
	size_t len;

	return errlog_read(log, &len);
}

char *content_text(const struct node *n, bool *ready, int *err)
{
	struct session *s = n->s;
	struct job *j = n->j;

	*ready = true;
	*err = 0;
	switch (n->fd->id) {
	case F_README:
		return dup_or_die(readme);
	case F_VERSION:
		return dup_or_die("tenki " TENKI_VERSION "\n");
	case F_DEFAULTS:
		return dup_or_die(defaults_text ? defaults_text : "");
	case F_ROOT_ERR:
		return err_text(&root_err);
	case F_POOL:
		return pool_status_text();
	case F_PREVIEW:
		return ports_preview_text();
	case F_SESSIONS_INDEX:
		return sessions_index(false);
	case F_SESSIONS_INDEX_JSON:
		return sessions_index(true);
	case F_SESSIONS_ERR:
		return err_text(&sessions_err);
	case F_S_ID:
		return with_newline(s->id);
	case F_S_STATE:
		return with_newline(sess_state_name(s->state));
	case F_S_WAIT:
		return wait_text(s, ready, err);
	case F_S_INFO:
		return session_info_json(s);
	case F_S_ENV:
		return dup_or_die(s->env_text ? s->env_text : "");
	case F_S_CONSOLE:
		return console_text(s);
	case F_S_ERR:
		return err_text(&s->err);
	case F_S_META: {
		char *v = metadata_value(s, n->key);
		if (!v)
			*err = ENOENT;
		return v;
	}
	case F_S_PORT: {
		char *v = ports_text(s, n->key);
		if (!v)
			*err = ENOENT;
		return v;
	}
	case F_S_KEYS: {
		struct buf b = {0};
		buf_add(&b, "", 0);
		for (size_t i = 0; i < s->spec.nssh_keys; i++)
			buf_printf(&b, "%s\n", s->spec.ssh_keys[i]);
		return b.data;
	}
	case F_S_VOLUMES:
		return volumes_session_text(s);
	case F_VOLUMES_ERR:
		return err_text(&volumes_err);
	case F_V_ID:
		return with_newline(n->v->id);
	case F_V_SIZE: {
		char *out;
		if (asprintf(&out, "%llu\n", (unsigned long long)n->v->size) <
		    0)
			abort();
		return out;
	}
	case F_V_STATE:
		return with_newline(vol_state_name(n->v));
	case F_V_INFO:
		return volume_info_json(n->v);
	case F_V_ERR:
		return err_text(&n->v->err);
	case F_HOSTS_ERR:
		return err_text(&hosts_err);
	case F_H_URI:
		return with_newline(n->h->uri);
	case F_H_STATE:
		return with_newline(host_state_name(n->h));
	case F_H_INFO:
		return host_info_json(n->h);
	case F_H_ERR:
		return err_text(&n->h->err);
	case F_SNAPSHOTS_ERR:
		return err_text(&snapshots_err);
	case F_SN_ID:
		return with_newline(n->sn->id);
	case F_SN_STATE:
		return with_newline(snap_state_name(n->sn->state));
	case F_SN_INFO:
		return snapshot_info_json(n->sn);
	case F_SN_ERR:
		return err_text(&n->sn->err);
	case F_TEMPLATES_ERR:
		return err_text(&templates_err);
	case F_T_ID:
		return with_newline(n->t->id);
	case F_T_INFO:
		return template_info_json(n->t);
	case F_T_SETUP:
	case F_T_START:
	case F_T_READY:
	case F_T_ENV:
	case F_T_CPU:
	case F_T_MEM:
	case F_T_IMAGE:
		return template_value_text(
		    n->t, (enum tpl_file)(n->fd->id - F_T_SETUP));
	case F_T_ERR:
		return err_text(&n->t->err);
	case F_T_STATE:
		return with_newline(template_state_name(n->t));
	case F_B_STATE:
		return with_newline(tbuild_state_name(n->b));
	case F_B_INFO:
		return tbuild_info_json(n->b);
	case F_IMG_INFO:
		return image_info_json(n->key);
	case F_S_SSH_TARGET: {
		char *t = sshgw_target(s);
		return t ? t : dup_or_die("");
	}
	case F_J_STATUS:
		return job_status_text(j);
	case F_J_EXIT:
		return exit_text(j, ready);
	case F_J_INFO:
		return job_info_json(j);
	case F_J_ENV:
		return dup_or_die(j->env_text ? j->env_text : "");
	case F_J_CWD:
		return with_newline(j->cwd ? j->cwd : "/home/tenki");
	case F_J_TIMEOUT: {
		char *out;
		if (!j->timeout_ms)
			return dup_or_die("");
		if (asprintf(&out, "%llds\n",
			     (long long)(j->timeout_ms / 1000)) < 0)
			abort();
		return out;
	}
	case F_J_CMD:
	case F_J_ARGV: {
		struct buf b = {0};
		size_t i;
		json_t *a;
		buf_add(&b, "", 0);
		if (j->argv && n->fd->id == F_J_ARGV)
			json_array_foreach(j->argv, i, a)
			    buf_printf(&b, "%s\n", json_string_value(a));
		if (j->argv && n->fd->id == F_J_CMD &&
		    json_array_size(j->argv) == 3 &&
		    strcmp(json_string_value(json_array_get(j->argv, 0)),
			   "/bin/sh") == 0)
			buf_printf(
			    &b, "%s\n",
			    json_string_value(json_array_get(j->argv, 2)));
		return b.data;
	}
	default:
		return dup_or_die("");
	}
}
