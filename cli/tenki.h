/* tenki(1): the command line over the mounted tree.  Every command is
 * a handful of file operations on the tree; nothing talks to tenkid any
 * other way, so the CLI is also a proof that the tree is the whole API. */
#ifndef TENKI_CLI_H
#define TENKI_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define EX_FAIL	 1 /* an operation was refused or failed */
#define EX_USAGE 2 /* bad command line */

/* Options every command takes; commands add their own after these. */
enum { OPT_MOUNT = 1000, OPT_HELP, OPT_FIRST_CMD };
#define COMMON_OPTS                                                            \
	{"mount", required_argument, NULL, OPT_MOUNT},                         \
	{                                                                      \
		"help", no_argument, NULL, 'h'                                 \
	}

struct cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage; /* one line: the arguments */
	const char *help;  /* one line: what it does */
};

/* main.c */
extern const char *progname;
void usage_of(const struct cmd *c, int status);
int run_group(const char *group, const struct cmd *cmds, int argc, char **argv);
/* common option handling inside a command's getopt loop: returns true
 * when the option was one of COMMON_OPTS. */
bool common_opt(int c, const struct cmd *self);
const struct cmd *find_cmd(const struct cmd *cmds, const char *name);
/* the command of a subgroup, named "GROUP NAME" for usage lines */
const struct cmd *named_cmd(const struct cmd *cmds, const char *group,
			    const char *name);

/* tree.c: the mounted tree */
void tree_set_mount(const char *dir);
const char *tree_mount(void);
void tree_check(void); /* dies with a clear message without a tree */
char *tpath(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *read_all(const char *path, size_t *len); /* NULL + errno */
char *read_line(const char *path);	       /* first line, no newline */
json_t *read_json(const char *path);	       /* NULL + errno */
int write_all_fd(int fd, const void *buf, size_t len);
int write_file(const char *path, const char *data, size_t len, int flags);
bool is_dir(const char *path);

/* refusals: remember an err file's size, then explain a failure with
 * the line tenkid appended to it. */
struct errmark {
	char *path;
	size_t len;
};
void err_mark(struct errmark *m, const char *errpath);
void err_free(struct errmark *m);
char *err_reason(struct errmark *m); /* the new reason, or NULL */
void fail_op(struct errmark *m, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void die_usage(const struct cmd *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
void *xmalloc(size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ctl verbs and object lookup */
char *find_object(const char *coll, const char *arg, const char *what);
int ctl_verb(const char *objdir, const char *verb, const char *what);
int remove_object(const char *coll, const char *name, const char *what);
int list_collection(const char *coll, bool json, const char *const *cols);
int show_object(const char *dir, bool json);
void print_record(json_t *o);

/* progress on a terminal only */
struct progress;
struct progress *progress_start(const char *label, const char *statepath);
void progress_stop(struct progress *p);
bool progress_on(void);
double now_s(void);

/* command groups */
extern const struct cmd sandbox_cmds[];
extern const struct cmd ssh_config_cmds[];
extern const struct cmd ssh_keys_cmds[];
extern const struct cmd volume_cmds[];
extern const struct cmd snapshot_cmds[];
extern const struct cmd template_cmds[];
int cmd_create(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_extend(int argc, char **argv);
int cmd_pause(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_close(int argc, char **argv);
int cmd_delete(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_write(int argc, char **argv);
int cmd_read(int argc, char **argv);
int cmd_expose(int argc, char **argv);
int cmd_ports(int argc, char **argv);
int cmd_unexpose(int argc, char **argv);
int cmd_ssh(int argc, char **argv);
int cmd_ssh_keys(int argc, char **argv);
int cmd_volume(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_template(int argc, char **argv);

/* session.c */
char *session_arg(const char *arg); /* name or UUID -> name; dies */

/* files.c */
char *guest_rel(const char *path); /* /home/tenki/... -> relative; NULL */

#endif
