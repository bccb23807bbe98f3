/* Paths of the tree and the objects they name. */
#include "tree.h"
#include "job.h"
#include "ports.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define RO	    0444
#define RW	    0644
#define WO	    0200
#define LIMIT_SMALL 4096
#define LIMIT_SPEC  (64 * 1024)

static const struct file_desc root_files[] = {
    {"README", F_README, K_TEXT, RO, 0},
    {"version", F_VERSION, K_TEXT, RO, 0},
    {"defaults", F_DEFAULTS, K_VALUE, RW, LIMIT_SPEC},
    {"err", F_ROOT_ERR, K_TEXT, RO, 0},
    {"events", F_EVENTS, K_STREAM, RO, 0},
    {"pool", F_POOL, K_TEXT, RO, 0},
    {"preview", F_PREVIEW, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc sessions_files[] = {
    {"new", F_SESSIONS_NEW, K_NEW, RW, LIMIT_SPEC},
    {"index", F_SESSIONS_INDEX, K_TEXT, RO, 0},
    {"index.json", F_SESSIONS_INDEX_JSON, K_TEXT, RO, 0},
    {"err", F_SESSIONS_ERR, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc session_files[] = {
    {"id", F_S_ID, K_TEXT, RO, 0},
    {"state", F_S_STATE, K_TEXT, RO, 0},
    {"wait", F_S_WAIT, K_WAIT, RO, 0},
    {"info.json", F_S_INFO, K_TEXT, RO, 0},
    {"ctl", F_S_CTL, K_CTL, WO, LIMIT_SMALL},
    {"env", F_S_ENV, K_VALUE, RW, LIMIT_SPEC},
    {"console", F_S_CONSOLE, K_TEXT, RO, 0},
    {"err", F_S_ERR, K_TEXT, RO, 0},
    {"volumes", F_S_VOLUMES, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc volumes_files[] = {
    {"new", F_VOLUMES_NEW, K_NEW, RW, LIMIT_SPEC},
    {"err", F_VOLUMES_ERR, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc volume_files[] = {
    {"id", F_V_ID, K_TEXT, RO, 0},
    {"size", F_V_SIZE, K_VALUE, RW, LIMIT_SMALL},
    {"state", F_V_STATE, K_TEXT, RO, 0},
    {"info.json", F_V_INFO, K_TEXT, RO, 0},
    {"ctl", F_V_CTL, K_CTL, WO, LIMIT_SMALL},
    {"err", F_V_ERR, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc meta_file = {"", F_S_META, K_TEXT, RO, 0};
/* ports/N: read the exposure, write a TTL (each write acts) */
static const struct file_desc port_file = {"", F_S_PORT, K_CTL, RW,
					   LIMIT_SMALL};

static const struct file_desc ssh_files[] = {
    {"authorized_keys", F_S_KEYS, K_VALUE, RW, LIMIT_SPEC},
    {"target", F_S_SSH_TARGET, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc exec_files[] = {
    {"clone", F_EXEC_CLONE, K_CLONE, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc job_files[] = {
    {"cmd", F_J_CMD, K_VALUE, RW, 1024 * 1024},
    {"argv", F_J_ARGV, K_VALUE, RW, 1024 * 1024},
    {"env", F_J_ENV, K_VALUE, RW, LIMIT_SPEC},
    {"cwd", F_J_CWD, K_VALUE, RW, LIMIT_SMALL},
    {"timeout", F_J_TIMEOUT, K_VALUE, RW, LIMIT_SMALL},
    {"stdin", F_J_STDIN, K_STDIN, WO, 0},
    {"stdout", F_J_STDOUT, K_STREAM, RO, 0},
    {"stderr", F_J_STDERR, K_STREAM, RO, 0},
    {"output", F_J_OUTPUT, K_STREAM, RO, 0},
    {"status", F_J_STATUS, K_TEXT, RO, 0},
    {"exit", F_J_EXIT, K_WAIT, RO, 0},
    {"info.json", F_J_INFO, K_TEXT, RO, 0},
    {"ctl", F_J_CTL, K_CTL, WO, LIMIT_SMALL},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc snapshots_files[] = {
    {"new", F_SNAPSHOTS_NEW, K_NEW, RW, LIMIT_SMALL},
    {"err", F_SNAPSHOTS_ERR, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc snapshot_files[] = {
    {"id", F_SN_ID, K_TEXT, RO, 0},
    {"state", F_SN_STATE, K_TEXT, RO, 0},
    {"info.json", F_SN_INFO, K_TEXT, RO, 0},
    {"err", F_SN_ERR, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc templates_files[] = {
    {"new", F_TEMPLATES_NEW, K_NEW, RW, LIMIT_SPEC},
    {"err", F_TEMPLATES_ERR, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc template_files[] = {
    {"id", F_T_ID, K_TEXT, RO, 0},
    {"info.json", F_T_INFO, K_TEXT, RO, 0},
    {"setup_script", F_T_SETUP, K_VALUE, RW, TPL_TEXT_MAX},
    {"start_cmd", F_T_START, K_VALUE, RW, LIMIT_SPEC},
    {"ready_cmd", F_T_READY, K_VALUE, RW, LIMIT_SPEC},
    {"env", F_T_ENV, K_VALUE, RW, LIMIT_SPEC},
    {"cpu_cores", F_T_CPU, K_VALUE, RW, LIMIT_SMALL},
    {"memory_mb", F_T_MEM, K_VALUE, RW, LIMIT_SMALL},
    {"base_image", F_T_IMAGE, K_VALUE, RW, LIMIT_SMALL},
    {"ctl", F_T_CTL, K_CTL, WO, LIMIT_SMALL},
    {"err", F_T_ERR, K_TEXT, RO, 0},
    {"state", F_T_STATE, K_TEXT, RO, 0},
    {"log", F_T_LOG, K_STREAM, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc build_files[] = {
    {"state", F_B_STATE, K_TEXT, RO, 0},
    {"log", F_B_LOG, K_STREAM, RO, 0},
    {"info.json", F_B_INFO, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc image_files[] = {
    {"info.json", F_IMG_INFO, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc hosts_files[] = {
    {"new", F_HOSTS_NEW, K_NEW, RW, LIMIT_SMALL},
    {"err", F_HOSTS_ERR, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc host_files[] = {
    {"uri", F_H_URI, K_TEXT, RO, 0},
    {"state", F_H_STATE, K_TEXT, RO, 0},
    {"info.json", F_H_INFO, K_TEXT, RO, 0},
    {"ctl", F_H_CTL, K_CTL, WO, LIMIT_SMALL},
    {"err", F_H_ERR, K_TEXT, RO, 0},
    {NULL, 0, 0, 0, 0},
};

static const struct file_desc *find_file(const struct file_desc *t,
					 const char *name)
{
	for (; t->name; t++)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

void node_release(struct node *n)
{
	if (n->j)
		job_put(n->j);
	if (n->s)
		session_put(n->s);
	if (n->v)
		volume_put(n->v);
	if (n->sn)
		snapshot_put(n->sn);
	if (n->b)
		tbuild_put(n->b);
	if (n->t)
		template_put(n->t);
	n->b = NULL;
	n->t = NULL;
	if (n->h)
		host_put(n->h);
	n->h = NULL;
	n->j = NULL;
	n->s = NULL;
	n->v = NULL;
	n->sn = NULL;
}

void node_copy(struct node *dst, const struct node *src)
{
	*dst = *src;
	if (dst->s)
		session_get(dst->s);
	if (dst->j)
		job_get(dst->j);
	if (dst->v)
		volume_get(dst->v);
	if (dst->sn)
		snapshot_get(dst->sn);
	if (dst->t)
		template_get(dst->t);
	if (dst->b)
		tbuild_get(dst->b);
	if (dst->h)
		host_get(dst->h);
}

/* hosts/, hosts/NAME, hosts/NAME/FILE */
static int resolve_hosts(char comp[6][NAME_MAX_LEN + 2], int n, struct node *nd)
{
	struct host *h;

	if (n == 1) {
		nd->kind = N_HOSTS;
		return 0;
	}
	if (n == 2 && (nd->fd = find_file(hosts_files, comp[1]))) {
		nd->kind = N_FILE;
		return 0;
	}
	h = host_find(comp[1]);
	if (!h || strcmp(h->name, comp[1]) != 0 || n > 3)
		return -ENOENT;
	host_get(h);
	nd->h = h;
	if (n == 2) {
		nd->kind = N_HOST;
		return 0;
	}
	if ((nd->fd = find_file(host_files, comp[2]))) {
		nd->kind = N_FILE;
		return 0;
	}
	return -ENOENT;
}

static void node_set_build(struct node *nd, struct tbuild *b)
{
	if (b)
		tbuild_get(b);
	nd->b = b;
}

/* templates/, templates/NAME[/FILE], templates/NAME/builds/N[/FILE] */
static int resolve_templates(char comp[6][NAME_MAX_LEN + 2], int n,
			     struct node *nd)
{
	struct template *t;

	if (n == 1) {
		nd->kind = N_TEMPLATES;
		return 0;
	}
	if (n == 2 && (nd->fd = find_file(templates_files, comp[1]))) {
		nd->kind = N_FILE;
		return 0;
	}
	t = template_find(comp[1]);
	if (!t || strcmp(t->name, comp[1]) != 0)
		return -ENOENT;
	template_get(t);
	nd->t = t;
	if (n == 2) {
		nd->kind = N_TEMPLATE;
		return 0;
	}
	if (n == 3 && (nd->fd = find_file(template_files, comp[2]))) {
		nd->kind = N_FILE;
		if (nd->fd->id == F_T_LOG)
			node_set_build(nd, template_latest(t));
		return 0;
	}
	if (strcmp(comp[2], "builds") != 0 || n > 5)
		return -ENOENT;
	if (n == 3) {
		nd->kind = N_BUILDS;
		return 0;
	}
	struct tbuild *b = template_build_find(t, comp[3]);
	if (!b)
		return -ENOENT;
	node_set_build(nd, b);
	if (n == 4) {
		nd->kind = N_BUILD;
		return 0;
	}
	if ((nd->fd = find_file(build_files, comp[4]))) {
		nd->kind = N_FILE;
		return 0;
	}
	return -ENOENT;
}

/* images/, images/NAME, images/NAME/info.json */
static int resolve_images(char comp[6][NAME_MAX_LEN + 2], int n,
			  struct node *nd)
{
	if (n == 1) {
		nd->kind = N_IMAGES;
		return 0;
	}
	if (n > 3 || !image_exists(comp[1]))
		return -ENOENT;
	snprintf(nd->key, sizeof(nd->key), "%s", comp[1]);
	if (n == 2) {
		nd->kind = N_IMAGE;
		return 0;
	}
	if ((nd->fd = find_file(image_files, comp[2]))) {
		nd->kind = N_FILE;
		return 0;
	}
	return -ENOENT;
}

/* snapshots/, snapshots/NAME, snapshots/NAME/FILE */
static int resolve_snapshots(char comp[6][NAME_MAX_LEN + 2], int n,
			     struct node *nd)
{
	struct snapshot *sn;

	if (n == 1) {
		nd->kind = N_SNAPSHOTS;
		return 0;
	}
	if (n == 2 && (nd->fd = find_file(snapshots_files, comp[1]))) {
		nd->kind = N_FILE;
		return 0;
	}
	sn = snapshot_find(comp[1]);
	if (!sn || strcmp(sn->name, comp[1]) != 0 || n > 3)
		return -ENOENT;
	snapshot_get(sn);
	nd->sn = sn;
	if (n == 2) {
		nd->kind = N_SNAPSHOT;
		return 0;
	}
	if ((nd->fd = find_file(snapshot_files, comp[2]))) {
		nd->kind = N_FILE;
		return 0;
	}
	return -ENOENT;
}

static bool meta_has(struct session *s, const char *k)
{
	size_t kl = strlen(k);

	for (size_t i = 0; i < s->spec.nmetadata; i++)
		if (strncmp(s->spec.metadata[i], k, kl) == 0 &&
		    s->spec.metadata[i][kl] == '=')
			return true;
	return false;
}

/* Components: split on '/', at most 6 deep. */
static int split(const char *path, char comp[6][NAME_MAX_LEN + 2])
{
	int n = 0;
	const char *p = path;

	while (*p) {
		const char *sl = strchr(p, '/');
		size_t l = sl ? (size_t)(sl - p) : strlen(p);
		if (n == 6 || l > NAME_MAX_LEN)
			return -1;
		memcpy(comp[n], p, l);
		comp[n][l] = '\0';
		n++;
		p += l;
		if (*p == '/')
			p++;
	}
	return n;
}

static int resolve_job(char comp[6][NAME_MAX_LEN + 2], int n, struct node *nd)
{
	struct job *j = job_find(nd->s, comp[3]);

	if (!j)
		return -ENOENT;
	job_get(j);
	nd->j = j;
	if (n == 4) {
		nd->kind = N_JOB;
		return 0;
	}
	if (n == 5 && (nd->fd = find_file(job_files, comp[4]))) {
		nd->kind = N_FILE;
		return 0;
	}
	return -ENOENT;
}

static int resolve_session(char comp[6][NAME_MAX_LEN + 2], int n,
			   struct node *nd)
{
	struct session *s = session_find(comp[1]);

	/* A template's build session is tenkid's own: not in the tree. */
	if (!s || s->spec.internal || strcmp(s->name, comp[1]) != 0)
		return -ENOENT;
	session_get(s);
	nd->s = s;
	if (n == 2) {
		nd->kind = N_SESSION;
		return 0;
	}
	if (n == 3 && (nd->fd = find_file(session_files, comp[2]))) {
		nd->kind = N_FILE;
		return 0;
	}
	if (strcmp(comp[2], "ssh") == 0) {
		if (n == 3) {
			nd->kind = N_SSH_DIR;
			return 0;
		}
		if (n == 4 && (nd->fd = find_file(ssh_files, comp[3]))) {
			nd->kind = N_FILE;
			return 0;
		}
		return -ENOENT;
	}
	if (strcmp(comp[2], "ports") == 0) {
		if (n == 3) {
			nd->kind = N_PORTS_DIR;
			return 0;
		}
		if (n == 4 && ports_exposed(s, comp[3])) {
			nd->kind = N_FILE;
			nd->fd = &port_file;
			strcpy(nd->key, comp[3]);
			return 0;
		}
		return -ENOENT;
	}
	if (n == 3 && strcmp(comp[2], "files") == 0) {
		nd->kind = N_FILES;
		return 0;
	}
	if (strcmp(comp[2], "metadata") == 0) {
		if (n == 3) {
			nd->kind = N_META_DIR;
			return 0;
		}
		if (n == 4 && meta_has(s, comp[3])) {
			nd->kind = N_FILE;
			nd->fd = &meta_file;
			strcpy(nd->key, comp[3]);
			return 0;
		}
		return -ENOENT;
	}
	if (strcmp(comp[2], "exec") == 0) {
		if (n == 3) {
			nd->kind = N_EXEC_DIR;
			return 0;
		}
		if (n == 4 && (nd->fd = find_file(exec_files, comp[3]))) {
			nd->kind = N_FILE;
			return 0;
		}
		return resolve_job(comp, n, nd);
	}
	return -ENOENT;
}

static int resolve_volumes(char comp[6][NAME_MAX_LEN + 2], int n,
			   struct node *nd)
{
	struct volume *v;

	if (n == 1) {
		nd->kind = N_VOLUMES;
		return 0;
	}
	if (n == 2 && (nd->fd = find_file(volumes_files, comp[1]))) {
		nd->kind = N_FILE;
		return 0;
	}
	v = volume_find(comp[1]);
	if (!v || strcmp(v->name, comp[1]) != 0)
		return -ENOENT;
	volume_get(v);
	nd->v = v;
	if (n == 2) {
		nd->kind = N_VOLUME;
		return 0;
	}
	if (n == 3 && (nd->fd = find_file(volume_files, comp[2]))) {
		nd->kind = N_FILE;
		return 0;
	}
	node_release(nd);
	return -ENOENT;
}

int node_resolve(const char *path, struct node *nd)
{
	char comp[6][NAME_MAX_LEN + 2];
	int n = split(path, comp), rc;

	memset(nd, 0, sizeof(*nd));
	if (n < 0)
		return -ENOENT;
	if (n == 0) {
		nd->kind = N_ROOT;
		return 0;
	}
	if (n == 1) {
		if ((nd->fd = find_file(root_files, comp[0]))) {
			nd->kind = N_FILE;
			return 0;
		}
		if (strcmp(comp[0], "sessions") == 0) {
			nd->kind = N_SESSIONS;
			return 0;
		}
	}
	if (strcmp(comp[0], "volumes") == 0)
		return resolve_volumes(comp, n, nd);
	if (strcmp(comp[0], "hosts") == 0) {
		rc = resolve_hosts(comp, n, nd);
		if (rc < 0)
			node_release(nd);
		return rc;
	}
	if (strcmp(comp[0], "snapshots") == 0 ||
	    strcmp(comp[0], "templates") == 0 ||
	    strcmp(comp[0], "images") == 0) {
		rc = comp[0][0] == 's'	 ? resolve_snapshots(comp, n, nd)
		     : comp[0][0] == 't' ? resolve_templates(comp, n, nd)
					 : resolve_images(comp, n, nd);
		if (rc < 0)
			node_release(nd);
		return rc;
	}
	if (n == 1 || strcmp(comp[0], "sessions") != 0)
		return -ENOENT;
	if (n == 2 && (nd->fd = find_file(sessions_files, comp[1]))) {
		nd->kind = N_FILE;
		return 0;
	}
	rc = resolve_session(comp, n, nd);
	if (rc < 0)
		node_release(nd);
	return rc;
}

static void list_files(const struct file_desc *t,
		       void (*add)(void *, const char *, bool), void *ctx)
{
	for (; t->name; t++)
		add(ctx, t->name, false);
}

int node_list(const struct node *n, void (*add)(void *, const char *, bool),
	      void *ctx)
{
	switch (n->kind) {
	case N_ROOT:
		list_files(root_files, add, ctx);
		add(ctx, "sessions", true);
		add(ctx, "volumes", true);
		add(ctx, "snapshots", true);
		add(ctx, "templates", true);
		add(ctx, "images", true);
		add(ctx, "hosts", true);
		return 0;
	case N_HOSTS:
		list_files(hosts_files, add, ctx);
		for (struct host *h = host_first(); h; h = h->next)
			add(ctx, h->name, true);
		return 0;
	case N_HOST:
		list_files(host_files, add, ctx);
		return 0;
	case N_TEMPLATES:
		list_files(templates_files, add, ctx);
		for (struct template *t = template_first(); t; t = t->next)
			add(ctx, t->name, true);
		return 0;
	case N_TEMPLATE:
		list_files(template_files, add, ctx);
		add(ctx, "builds", true);
		return 0;
	case N_BUILDS:
		for (struct tbuild *b = n->t->builds; b; b = b->next) {
			char num[16];
			snprintf(num, sizeof(num), "%u", b->n);
			add(ctx, num, true);
		}
		return 0;
	case N_BUILD:
		list_files(build_files, add, ctx);
		return 0;
	case N_IMAGES:
		images_list(add, ctx);
		return 0;
	case N_IMAGE:
		list_files(image_files, add, ctx);
		return 0;
	case N_VOLUMES:
		list_files(volumes_files, add, ctx);
		for (struct volume *v = volume_first(); v; v = v->next)
			if (!v->creating)
				add(ctx, v->name, true);
		return 0;
	case N_VOLUME:
		list_files(volume_files, add, ctx);
		return 0;
	case N_SNAPSHOTS:
		list_files(snapshots_files, add, ctx);
		for (struct snapshot *sn = snapshot_first(); sn; sn = sn->next)
			add(ctx, sn->name, true);
		return 0;
	case N_SNAPSHOT:
		list_files(snapshot_files, add, ctx);
		return 0;
	case N_SESSIONS:
		list_files(sessions_files, add, ctx);
		for (struct session *s = session_first(); s; s = s->next)
			if (!s->spec.internal)
				add(ctx, s->name, true);
		return 0;
	case N_SESSION:
		list_files(session_files, add, ctx);
		add(ctx, "metadata", true);
		add(ctx, "exec", true);
		add(ctx, "files", true);
		add(ctx, "ports", true);
		add(ctx, "ssh", true);
		return 0;
	case N_PORTS_DIR:
		ports_list(n->s, add, ctx);
		return 0;
	case N_SSH_DIR:
		list_files(ssh_files, add, ctx);
		return 0;
	case N_META_DIR:
		for (size_t i = 0; i < n->s->spec.nmetadata; i++) {
			char k[NAME_MAX_LEN + 1];
			const char *m = n->s->spec.metadata[i];
			size_t kl = strcspn(m, "=");
			if (kl > NAME_MAX_LEN)
				continue;
			memcpy(k, m, kl);
			k[kl] = '\0';
			add(ctx, k, false);
		}
		return 0;
	case N_EXEC_DIR:
		list_files(exec_files, add, ctx);
		for (struct job *j = n->s->jobs; j; j = j->next)
			add(ctx, j->name, true);
		return 0;
	case N_JOB:
		list_files(job_files, add, ctx);
		return 0;
	case N_FILES: /* served by gfs.c */
	case N_FILE:
		break;
	}
	return -ENOTDIR;
}
