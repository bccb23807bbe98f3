/*
 * Create specs (SPEC.md "Create specs"): one line of key=value words with
 * shell-style quoting, or one JSON object.  Parsing validates every key
 * before anything is made.
 */
#ifndef TENKI_SPEC_H
#define TENKI_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPEC_WHY_LEN  400
#define SPEC_MAX_TEXT (64 * 1024)
#define SPEC_MAX_LIST 256

struct spec_volume {
	char volume[64];
	char path[256];
	bool ro;
};

/* Volume sizes (SPEC.md): 1M..100G; mkdir volumes/NAME takes the
 * volume_size key of defaults, else VOL_SIZE_DEFAULT. */
#define VOL_SIZE_MIN	 (1ULL << 20)
#define VOL_SIZE_MAX	 (100ULL << 30)
#define VOL_SIZE_DEFAULT (1ULL << 30)

struct sess_spec {
	char name[64];
	unsigned cpu_cores, memory_mb;
	bool allow_inbound, allow_outbound;
	int64_t max_duration; /* seconds; 0: none */
	char **env;	      /* "K=V" */
	size_t nenv;
	char **metadata; /* "K=V" */
	size_t nmetadata;
	char **ssh_keys;
	size_t nssh_keys;
	struct spec_volume *volumes;
	size_t nvolumes;
	char snapshot[64], template_name[64], image[64], host[64];
	bool wait;
	int64_t wait_timeout; /* seconds; 0 means do not wait */
	uint64_t volume_size; /* bytes: mkdir volumes/NAME (defaults only) */
	uint32_t given;	      /* bit per scalar key seen in this text */
	/* Set by tenkid, never parsed: a template's build session, hidden
	 * from sessions/ and its index. */
	bool internal;
};

/* The table's defaults (SPEC.md). */
void spec_init(struct sess_spec *sp);
void spec_free(struct sess_spec *sp);
int spec_copy(struct sess_spec *dst, const struct sess_spec *src);

/*
 * Apply the keys of text on top of *sp.  Repeatable keys add to the lists
 * (a later env or metadata key replaces an earlier one of the same name).
 * A key given twice in text that is not repeatable is an error.  On error
 * returns -1 with a reason naming the key, the value and what is allowed
 * in why[SPEC_WHY_LEN], and *sp may be half-changed: parse into a copy.
 */
int spec_apply(struct sess_spec *sp, const char *text, size_t len, char *why);

/* A volume spec (volumes/new): name=NAME size=SIZE, words or JSON. */
struct vol_spec {
	char name[64];
	uint64_t size; /* 0: not given */
};

/* Parse text into *vs (zeroed first); -1 with why on error. */
int volspec_parse(struct vol_spec *vs, const char *text, size_t len, char *why);

/* A snapshot spec (snapshots/new): name=S session=NAME [ttl=DUR], words
 * or JSON; name may be absent (tenkid picks one), session is a session's
 * name or id. */
struct snap_spec {
	char name[64];
	char session[64];
	int64_t ttl; /* seconds, 0: none */
};

/* Parse text into *ss (zeroed first); -1 with why on error. */
int snapspec_parse(struct snap_spec *ss, const char *text, size_t len,
		   char *why);
/*
 * A template spec (templates/new): name=T, the texts setup_script,
 * start_cmd and ready_cmd, env=K=V (repeatable; JSON: an object), and
 * cpu_cores, memory_mb and base_image checked as a session spec's keys
 * (into shape, whose name is the template's).  Words or JSON.
 */
enum tpl_text { TPL_SETUP, TPL_START, TPL_READY, TPL_NTEXT };
#define TPL_TEXT_MAX (1024 * 1024)

struct tpl_spec {
	char *text[TPL_NTEXT]; /* NULL: not given */
	struct sess_spec shape;
	uint32_t given;
};

void tplspec_init(struct tpl_spec *ts);
void tplspec_free(struct tpl_spec *ts);
/* Parse text on top of *ts (from tplspec_init); -1 with why on error. */
int tplspec_parse(struct tpl_spec *ts, const char *text, size_t len, char *why);
/* Was "cpu_cores", "memory_mb" or "base_image" given? */
bool tplspec_given(const struct tpl_spec *ts, const char *key);
/* A host spec (hosts/new): name=NAME uri=URI [pool=DIR], words or JSON;
 * pool is the directory of the host's tenki storage pool, on that host. */
struct host_spec {
	char name[64];
	char uri[256];
	char pool[256];
};

/* Parse text into *hs (zeroed first); -1 with why on error. */
int hostspec_parse(struct host_spec *hs, const char *text, size_t len,
		   char *why);

/* A volume size: a size in 1M..100G, rounded up to whole MiB. */
int spec_volume_size(const char *key, const char *val, uint64_t *bytes,
		     char *why);

/* A mount path of a volume in the guest: absolute, not /, no . or ..
 * components, no spaces, not a system directory; -1 with why. */
int spec_check_mount_path(const char *path, char *why, size_t n);

/* A parsed attach or detach verb of a ctl file. */
struct vol_verb {
	bool attach;
	char target[64]; /* volume (session ctl) or session (volume ctl) */
	char path[256];
	bool ro;
};

/* Parse one ctl line "attach X PATH [ro]" or "detach [X]"; X is required
 * on the session side.  -1 with why on a bad line. */
int spec_parse_vol_verb(const char *line, bool session_side,
			struct vol_verb *vv, char *why, size_t whylen);
/* Was key (a name of the table, e.g. "cpu_cores") given in the text last
 * applied? */
bool spec_given(const struct sess_spec *sp, const char *key);

/* Helpers shared with the env file and ssh keys. */
bool spec_valid_env_key(const char *k, size_t n);
bool spec_valid_ssh_key(const char *line, char *why);
/* Split "K=V" text lines; checks each line; -1 with why on a bad one. */
int spec_parse_env_lines(const char *text, size_t len, char ***out, size_t *n,
			 char *why);
void spec_free_list(char **list, size_t n);

#endif
