/*
 * The shape of the tree (SPEC.md "The tree"): which names exist, what kind
 * of file each is, and how a path resolves to model objects.  Resolution
 * happens under model_lock on every operation, so the tree always shows
 * the model as it is now.
 */
#ifndef TENKI_TREE_H
#define TENKI_TREE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "model.h"
#include "volume.h"
#include "snapshot.h"
#include "template.h"
#include "host.h"

enum file_id {
	F_README,
	F_VERSION,
	F_DEFAULTS,
	F_ROOT_ERR,
	F_EVENTS,
	F_PREVIEW,
	F_POOL,
	F_SESSIONS_NEW,
	F_SESSIONS_INDEX,
	F_SESSIONS_INDEX_JSON,
	F_SESSIONS_ERR,
	F_S_ID,
	F_S_STATE,
	F_S_WAIT,
	F_S_INFO,
	F_S_CTL,
	F_S_ENV,
	F_S_CONSOLE,
	F_S_ERR,
	F_S_META,
	F_S_KEYS,
	F_S_SSH_TARGET,
	F_S_PORT,
	F_EXEC_CLONE,
	F_J_CMD,
	F_J_ARGV,
	F_J_ENV,
	F_J_CWD,
	F_J_TIMEOUT,
	F_J_STDIN,
	F_J_STDOUT,
	F_J_STDERR,
	F_J_OUTPUT,
	F_J_STATUS,
	F_J_EXIT,
	F_J_INFO,
	F_J_CTL,
	F_S_VOLUMES,
	F_VOLUMES_NEW,
	F_VOLUMES_ERR,
	F_V_ID,
	F_V_SIZE,
	F_V_STATE,
	F_V_INFO,
	F_V_CTL,
	F_V_ERR,
	F_SNAPSHOTS_NEW,
	F_SNAPSHOTS_ERR,
	F_SN_ID,
	F_SN_STATE,
	F_SN_INFO,
	F_SN_ERR,
	F_TEMPLATES_NEW,
	F_TEMPLATES_ERR,
	F_T_ID,
	F_T_INFO,
	F_T_SETUP, /* F_T_SETUP..F_T_IMAGE: the order of enum tpl_file */
	F_T_START,
	F_T_READY,
	F_T_ENV,
	F_T_CPU,
	F_T_MEM,
	F_T_IMAGE,
	F_T_CTL,
	F_T_ERR,
	F_T_STATE,
	F_T_LOG,
	F_B_STATE,
	F_B_LOG,
	F_B_INFO,
	F_IMG_INFO,
	F_HOSTS_NEW,
	F_HOSTS_ERR,
	F_H_URI,
	F_H_STATE,
	F_H_INFO,
	F_H_CTL,
	F_H_ERR,
};

/* How a file behaves. */
enum file_kind {
	K_TEXT,	  /* generated at open/read; re-generated at offset 0 */
	K_VALUE,  /* writable: collected, checked per write, applied at close */
	K_CTL,	  /* each write acts */
	K_NEW,	  /* write a spec: creates; read back the name */
	K_CLONE,  /* read makes a job */
	K_WAIT,	  /* read blocks until a condition, then text */
	K_STREAM, /* live output: blocks, size 0 */
	K_STDIN,  /* write-only stream to a job */
};

struct file_desc {
	const char *name;
	enum file_id id;
	enum file_kind kind;
	unsigned mode;
	size_t max_write; /* EFBIG beyond this, for K_VALUE/K_CTL/K_NEW */
};

enum node_kind {
	N_ROOT,
	N_SESSIONS,
	N_SESSION,
	N_META_DIR,
	N_EXEC_DIR,
	N_JOB,
	N_FILES, /* sessions/NAME/files: the guest's home (gfs.c) */
	N_SSH_DIR,
	N_VOLUMES,
	N_VOLUME,
	N_SNAPSHOTS,
	N_SNAPSHOT,
	N_PORTS_DIR,
	N_TEMPLATES,
	N_TEMPLATE,
	N_BUILDS,
	N_BUILD,
	N_IMAGES,
	N_IMAGE,
	N_HOSTS,
	N_HOST,
	N_FILE,
};

struct node {
	enum node_kind kind;
	const struct file_desc *fd; /* N_FILE */
	struct session *s;	    /* referenced when set */
	struct job *j;		    /* referenced when set */
	struct volume *v;	    /* referenced when set */
	struct snapshot *sn;	    /* referenced when set */
	struct template *t;	    /* referenced when set */
	struct tbuild *b;	    /* referenced when set; a template's log
				       and state: its latest build, if any */
	char key[NAME_MAX_LEN + 1]; /* metadata key, port number, image */
	struct host *h;		    /* referenced when set */
};

/* Resolve a path ("" is the root); model_lock held.  Takes references
 * on the objects it names: release with node_release. */
int node_resolve(const char *path, struct node *n);
void node_release(struct node *n);
void node_copy(struct node *dst, const struct node *src);

/* The names in a directory node, in order: calls add for each.  Returns
 * -ENOTDIR for a file. */
int node_list(const struct node *n,
	      void (*add)(void *ctx, const char *name, bool is_dir), void *ctx);

#endif
