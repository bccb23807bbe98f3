/* Parsing and validation of create specs. */
#include "spec.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum key_id {
	K_NAME,
	K_CPU,
	K_MEMORY,
	K_INBOUND,
	K_OUTBOUND,
	K_MAX_DURATION,
	K_ENV,
	K_METADATA,
	K_SSH_KEY,
	K_VOLUME,
	K_SNAPSHOT,
	K_TEMPLATE,
	K_IMAGE,
	K_HOST,
	K_WAIT,
	K_WAIT_TIMEOUT,
	K_VOLUME_SIZE,
};

static const struct {
	const char *name;
	enum key_id id;
	bool repeatable;
} keys[] = {
    {"name", K_NAME, false},
    {"cpu_cores", K_CPU, false},
    {"cpu", K_CPU, false},
    {"memory_mb", K_MEMORY, false},
    {"memory", K_MEMORY, false},
    {"allow_inbound", K_INBOUND, false},
    {"allow_outbound", K_OUTBOUND, false},
    {"max_duration", K_MAX_DURATION, false},
    {"env", K_ENV, true},
    {"metadata", K_METADATA, true},
    {"ssh_key", K_SSH_KEY, true},
    {"ssh_authorized_keys", K_SSH_KEY, true},
    {"volume", K_VOLUME, true},
    {"volumes", K_VOLUME, true},
    {"snapshot", K_SNAPSHOT, false},
    {"snapshot_id", K_SNAPSHOT, false},
    {"template", K_TEMPLATE, false},
    {"image", K_IMAGE, false},
    {"host", K_HOST, false},
    {"wait", K_WAIT, false},
    {"wait_timeout", K_WAIT_TIMEOUT, false},
    {"volume_size", K_VOLUME_SIZE, false},
};

static void why_set(char *why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void why_set(char *why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, SPEC_WHY_LEN, fmt, ap);
	va_end(ap);
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (!p)
		abort();
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		abort();
	return p;
}

void spec_init(struct sess_spec *sp)
{
	memset(sp, 0, sizeof(*sp));
	sp->cpu_cores = 2;
	sp->memory_mb = 4096;
	sp->allow_outbound = true;
	sp->wait = true;
	sp->wait_timeout = 180;
	sp->volume_size = VOL_SIZE_DEFAULT;
	strcpy(sp->image, "sandbox");
}

void spec_free_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

void spec_free(struct sess_spec *sp)
{
	spec_free_list(sp->env, sp->nenv);
	spec_free_list(sp->metadata, sp->nmetadata);
	spec_free_list(sp->ssh_keys, sp->nssh_keys);
	free(sp->volumes);
	spec_init(sp);
}

static char **copy_list(char **src, size_t n)
{
	char **dst = xcalloc(n, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		dst[i] = xstrndup(src[i], strlen(src[i]));
	return dst;
}

int spec_copy(struct sess_spec *dst, const struct sess_spec *src)
{
	*dst = *src;
	dst->env = copy_list(src->env, src->nenv);
	dst->metadata = copy_list(src->metadata, src->nmetadata);
	dst->ssh_keys = copy_list(src->ssh_keys, src->nssh_keys);
	dst->volumes = xcalloc(src->nvolumes, sizeof(struct spec_volume));
	if (src->nvolumes)
		memcpy(dst->volumes, src->volumes,
		       src->nvolumes * sizeof(struct spec_volume));
	return 0;
}

bool spec_valid_env_key(const char *k, size_t n)
{
	if (n == 0 || n > 255 || !(isalpha((unsigned char)k[0]) || k[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)k[i]) && k[i] != '_')
			return false;
	return true;
}

static bool has_control_chars(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 && *s != '\t')
			return true;
	return false;
}

/* Add or replace "K=V" in a list keyed by K. */
static int list_put_kv(char ***list, size_t *n, const char *k, size_t klen,
		       const char *v, char *why, const char *keyname)
{
	char *item;

	if (*n >= SPEC_MAX_LIST) {
		why_set(why, "key %s: more than %d entries", keyname,
			SPEC_MAX_LIST);
		return -1;
	}
	if (asprintf(&item, "%.*s=%s", (int)klen, k, v) < 0)
		abort();
	for (size_t i = 0; i < *n; i++) {
		if (strncmp((*list)[i], k, klen) == 0 &&
		    (*list)[i][klen] == '=') {
			free((*list)[i]);
			(*list)[i] = item;
			return 0;
		}
	}
	char **nl = realloc(*list, (*n + 1) * sizeof(char *));
	if (!nl)
		abort();
	nl[(*n)++] = item;
	*list = nl;
	return 0;
}

static int set_kv(struct sess_spec *sp, enum key_id id, const char *kv,
		  char *why)
{
	const char *eq = strchr(kv, '=');
	const char *kname = id == K_ENV ? "env" : "metadata";

	if (!eq) {
		why_set(why, "key %s: value '%s' is not KEY=VALUE", kname, kv);
		return -1;
	}
	size_t klen = (size_t)(eq - kv);
	if (id == K_ENV && !spec_valid_env_key(kv, klen)) {
		why_set(why,
			"key env: '%.*s' is not a variable name "
			"([A-Za-z_][A-Za-z0-9_]*)",
			(int)klen, kv);
		return -1;
	}
	if (id == K_METADATA) {
		char k[NAME_MAX_LEN + 1];
		if (klen > NAME_MAX_LEN) {
			why_set(why, "key metadata: key longer than %d bytes",
				NAME_MAX_LEN);
			return -1;
		}
		memcpy(k, kv, klen);
		k[klen] = '\0';
		if (!valid_name(k)) {
			why_set(why,
				"key metadata: key '%s' must match "
				"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}",
				k);
			return -1;
		}
	}
	if (has_control_chars(eq + 1) || strlen(eq + 1) > 4096) {
		why_set(why,
			"key %s: value of '%.*s' has a newline or control "
			"character, or is longer than 4096 bytes",
			kname, (int)klen, kv);
		return -1;
	}
	if (id == K_ENV)
		return list_put_kv(&sp->env, &sp->nenv, kv, klen, eq + 1, why,
				   kname);
	return list_put_kv(&sp->metadata, &sp->nmetadata, kv, klen, eq + 1, why,
			   kname);
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode base64 into out (at most cap bytes); -1 on bad input. */
static long b64decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0, pad = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=') {
			pad++;
			continue;
		}
		if (pad)
			return -1;
		int v = b64val((unsigned char)s[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	if (pad > 2 || (n % 4) != 0)
		return -1;
	return (long)o;
}

/* "TYPE BASE64 [comment]": the blob must decode and name TYPE itself. */
bool spec_valid_ssh_key(const char *line, char *why)
{
	static const char *types[] = {"ssh-ed25519",
				      "ssh-rsa",
				      "ecdsa-sha2-nistp256",
				      "ecdsa-sha2-nistp384",
				      "ecdsa-sha2-nistp521",
				      "sk-ssh-ed25519@openssh.com",
				      "sk-ecdsa-sha2-nistp256@openssh.com"};
	uint8_t blob[8192];
	const char *sp1 = strchr(line, ' ');
	size_t tlen, blen;
	bool known = false;

	if (!sp1 || has_control_chars(line)) {
		why_set(why, "not an OpenSSH public key line (TYPE BASE64 "
			     "[COMMENT])");
		return false;
	}
	tlen = (size_t)(sp1 - line);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strlen(types[i]) == tlen && !strncmp(types[i], line, tlen))
			known = true;
	if (!known) {
		why_set(why, "unknown key type '%.*s'",
			(int)(tlen > 40 ? 40 : tlen), line);
		return false;
	}
	const char *b = sp1 + 1;
	blen = strcspn(b, " ");
	long n = b64decode(b, blen, blob, sizeof(blob));
	if (n < 4) {
		why_set(why, "key data is not valid base64");
		return false;
	}
	uint32_t inner = (uint32_t)blob[0] << 24 | (uint32_t)blob[1] << 16 |
			 (uint32_t)blob[2] << 8 | blob[3];
	if (inner != tlen || (size_t)n < 4 + tlen ||
	    memcmp(blob + 4, line, tlen) != 0) {
		why_set(why, "key data does not match its type '%.*s'",
			(int)tlen, line);
		return false;
	}
	return true;
}

static int set_volume(struct sess_spec *sp, const char *vol, const char *path,
		      bool ro, char *why)
{
	if (!valid_name(vol)) {
		why_set(why, "key volume: '%s' is not a volume name", vol);
		return -1;
	}
	char pwhy[SPEC_WHY_LEN];
	if (spec_check_mount_path(path, pwhy, sizeof(pwhy)) < 0) {
		why_set(why, "key volume: %s", pwhy);
		return -1;
	}
	if (sp->nvolumes >= 16) {
		why_set(why, "key volume: at most 16 volumes");
		return -1;
	}
	struct spec_volume *nv =
	    realloc(sp->volumes, (sp->nvolumes + 1) * sizeof(*nv));
	if (!nv)
		abort();
	sp->volumes = nv;
	struct spec_volume *v = &nv[sp->nvolumes++];
	memset(v, 0, sizeof(*v));
	snprintf(v->volume, sizeof(v->volume), "%s", vol);
	snprintf(v->path, sizeof(v->path), "%s", path);
	v->ro = ro;
	return 0;
}

/* volume=NAME:PATH[:ro] */
static int set_volume_word(struct sess_spec *sp, const char *val, char *why)
{
	char tmp[400];
	bool ro = false;

	if (strlen(val) >= sizeof(tmp)) {
		why_set(why, "key volume: value too long");
		return -1;
	}
	strcpy(tmp, val);
	char *colon = strchr(tmp, ':');
	if (!colon) {
		why_set(why, "key volume: '%s' is not NAME:PATH[:ro]", val);
		return -1;
	}
	*colon = '\0';
	char *path = colon + 1;
	char *last = strrchr(path, ':');
	if (last) {
		if (strcmp(last, ":ro") != 0 && strcmp(last, ":rw") != 0) {
			why_set(why, "key volume: '%s' is not NAME:PATH[:ro]",
				val);
			return -1;
		}
		ro = strcmp(last, ":ro") == 0;
		*last = '\0';
	}
	return set_volume(sp, tmp, path, ro, why);
}

static int set_name_field(char *dst, size_t cap, const char *key,
			  const char *val, char *why)
{
	if (!valid_name(val)) {
		why_set(why,
			"key %s: '%s' is not a valid name "
			"([A-Za-z0-9][A-Za-z0-9_.-]{0,62})",
			key, val);
		return -1;
	}
	snprintf(dst, cap, "%s", val);
	return 0;
}

static int set_ranged(unsigned *dst, const char *key, const char *val,
		      unsigned lo, unsigned hi, char *why)
{
	uint64_t v;

	if (parse_uint(val, lo, hi, &v) < 0) {
		why_set(why, "key %s: '%s' is not a whole number in %u..%u",
			key, val, lo, hi);
		return -1;
	}
	*dst = (unsigned)v;
	return 0;
}

static int set_boolean(bool *dst, const char *key, const char *val, char *why)
{
	if (parse_bool(val, dst) < 0) {
		why_set(why,
			"key %s: '%s' is not a boolean "
			"(true/false/yes/no/on/off/1/0)",
			key, val);
		return -1;
	}
	return 0;
}

static int set_dur(int64_t *dst, const char *key, const char *val,
		   bool allow_zero, char *why)
{
	if (parse_duration(val, allow_zero, dst) < 0) {
		why_set(why,
			"key %s: '%s' is not a duration (90, 90s, 30m, 2h, "
			"1h30m, 1d)%s",
			key, val, allow_zero ? "" : " above zero");
		return -1;
	}
	return 0;
}

/* Apply one key with a string value. */
static int set_key(struct sess_spec *sp, enum key_id id, const char *key,
		   const char *val, char *why)
{
	switch (id) {
	case K_NAME:
		return set_name_field(sp->name, sizeof(sp->name), key, val,
				      why);
	case K_CPU:
		return set_ranged(&sp->cpu_cores, key, val, 1, 16, why);
	case K_MEMORY:
		return set_ranged(&sp->memory_mb, key, val, 512, 65536, why);
	case K_INBOUND:
		return set_boolean(&sp->allow_inbound, key, val, why);
	case K_OUTBOUND:
		return set_boolean(&sp->allow_outbound, key, val, why);
	case K_MAX_DURATION:
		return set_dur(&sp->max_duration, key, val, false, why);
	case K_ENV:
	case K_METADATA:
		return set_kv(sp, id, val, why);
	case K_SSH_KEY: {
		char kwhy[SPEC_WHY_LEN];
		if (!spec_valid_ssh_key(val, kwhy)) {
			why_set(why, "key ssh_key: %s", kwhy);
			return -1;
		}
		if (sp->nssh_keys >= SPEC_MAX_LIST) {
			why_set(why, "key ssh_key: too many keys");
			return -1;
		}
		char **nl =
		    realloc(sp->ssh_keys, (sp->nssh_keys + 1) * sizeof(char *));
		if (!nl)
			abort();
		sp->ssh_keys = nl;
		nl[sp->nssh_keys++] = xstrndup(val, strlen(val));
		return 0;
	}
	case K_VOLUME:
		return set_volume_word(sp, val, why);
	case K_SNAPSHOT:
		return set_name_field(sp->snapshot, sizeof(sp->snapshot), key,
				      val, why);
	case K_TEMPLATE:
		return set_name_field(sp->template_name,
				      sizeof(sp->template_name), key, val, why);
	case K_IMAGE:
		return set_name_field(sp->image, sizeof(sp->image), key, val,
				      why);
	case K_HOST:
		return set_name_field(sp->host, sizeof(sp->host), key, val,
				      why);
	case K_WAIT:
		return set_boolean(&sp->wait, key, val, why);
	case K_WAIT_TIMEOUT:
		if (set_dur(&sp->wait_timeout, key, val, true, why) < 0)
			return -1;
		if (sp->wait_timeout == 0)
			sp->wait = false;
		return 0;
	case K_VOLUME_SIZE:
		return spec_volume_size(key, val, &sp->volume_size, why);
	}
	return -1;
}

int spec_volume_size(const char *key, const char *val, uint64_t *bytes,
		     char *why)
{
	uint64_t v;

	if (parse_size(val, &v) < 0) {
		why_set(why,
			"key %s: '%.40s' is not a size (bytes, or a number "
			"with K, M, G or T)",
			key, val);
		return -1;
	}
	if (v < VOL_SIZE_MIN || v > VOL_SIZE_MAX) {
		why_set(why, "key %s: %.40s is out of range: 1M..100G", key,
			val);
		return -1;
	}
	*bytes = (v + VOL_SIZE_MIN - 1) / VOL_SIZE_MIN * VOL_SIZE_MIN;
	return 0;
}

static int lookup_key(const char *k, size_t n, int *idx)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strlen(keys[i].name) == n && !strncmp(keys[i].name, k, n)) {
			*idx = (int)i;
			return 0;
		}
	}
	return -1;
}

bool spec_given(const struct sess_spec *sp, const char *key)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(keys[i].name, key) == 0)
			return (sp->given & (1u << keys[i].id)) != 0;
	return false;
}

static int note_given(struct sess_spec *sp, int idx, char *why)
{
	uint32_t bit = 1u << keys[idx].id;

	if (keys[idx].repeatable)
		return 0;
	if (sp->given & bit) {
		why_set(why, "key %s: given twice", keys[idx].name);
		return -1;
	}
	sp->given |= bit;
	return 0;
}

/* ---- key=value words ---------------------------------------------------
 * Shell-style: whitespace separates words; '…' is literal; "…" allows
 * \" \\ \$ \` escapes; a backslash outside quotes escapes the next byte. */
static int next_word(const char **pp, const char *end, struct buf *w, char *why)
{
	const char *p = *pp;

	while (p < end && isspace((unsigned char)*p))
		p++;
	if (p == end)
		return 0;
	w->len = 0;
	buf_add(w, "", 0);
	while (p < end && !isspace((unsigned char)*p)) {
		if (*p == '\'') {
			const char *q =
			    memchr(p + 1, '\'', (size_t)(end - p - 1));
			if (!q) {
				why_set(why, "unterminated ' quote");
				return -1;
			}
			buf_add(w, p + 1, (size_t)(q - p - 1));
			p = q + 1;
		} else if (*p == '"') {
			p++;
			while (p < end && *p != '"') {
				if (*p == '\\' && p + 1 < end &&
				    strchr("\"\\$`", p[1]))
					p++;
				buf_add(w, p++, 1);
			}
			if (p == end) {
				why_set(why, "unterminated \" quote");
				return -1;
			}
			p++;
		} else if (*p == '\\' && p + 1 < end) {
			buf_add(w, p + 1, 1);
			p += 2;
		} else {
			buf_add(w, p++, 1);
		}
	}
	*pp = p;
	return 1;
}

static int apply_words(struct sess_spec *sp, const char *text, size_t len,
		       char *why)
{
	const char *p = text, *end = text + len;
	struct buf w = {0};
	int rc = 0, r;

	while ((r = next_word(&p, end, &w, why)) > 0) {
		if (memchr(w.data, '\0', w.len)) {
			why_set(why, "spec contains a NUL byte");
			rc = -1;
			break;
		}
		char *eq = strchr(w.data, '=');
		int idx;
		if (!eq) {
			why_set(why, "'%.60s' is not key=value", w.data);
			rc = -1;
			break;
		}
		if (lookup_key(w.data, (size_t)(eq - w.data), &idx) < 0) {
			why_set(why, "unknown key '%.*s'",
				(int)((eq - w.data) > 60 ? 60 : eq - w.data),
				w.data);
			rc = -1;
			break;
		}
		if (note_given(sp, idx, why) < 0 ||
		    set_key(sp, keys[idx].id, keys[idx].name, eq + 1, why) <
			0) {
			rc = -1;
			break;
		}
	}
	if (r < 0)
		rc = -1;
	buf_free(&w);
	return rc;
}

/* ---- JSON ---------------------------------------------------------------- */

/* Scalars in JSON: strings as written; numbers and booleans as text. */
static int json_scalar_text(json_t *v, const char *key, char *out, size_t cap,
			    char *why)
{
	if (json_is_string(v)) {
		if (strlen(json_string_value(v)) != json_string_length(v)) {
			why_set(why, "key %s: string contains a NUL byte", key);
			return -1;
		}
		snprintf(out, cap, "%s", json_string_value(v));
	} else if (json_is_integer(v)) {
		if (json_integer_value(v) < 0) {
			why_set(why, "key %s: %lld is negative", key,
				(long long)json_integer_value(v));
			return -1;
		}
		snprintf(out, cap, "%lld", (long long)json_integer_value(v));
	} else if (json_is_boolean(v)) {
		snprintf(out, cap, "%s", json_is_true(v) ? "true" : "false");
	} else {
		why_set(why, "key %s: expected a string, number or boolean",
			key);
		return -1;
	}
	return 0;
}

static int json_expect_type(json_t *v, enum key_id id, const char *key,
			    char *why)
{
	bool ok = true;

	switch (id) {
	case K_CPU:
	case K_MEMORY:
		ok = json_is_integer(v) || json_is_string(v);
		break;
	case K_INBOUND:
	case K_OUTBOUND:
	case K_WAIT:
		ok = json_is_boolean(v) || json_is_string(v);
		break;
	case K_MAX_DURATION:
	case K_WAIT_TIMEOUT:
		ok = json_is_integer(v) || json_is_string(v);
		break;
	default:
		ok = json_is_string(v);
	}
	if (!ok)
		why_set(why, "key %s: wrong JSON type", key);
	return ok ? 0 : -1;
}

static int json_apply_volumes(struct sess_spec *sp, json_t *v, char *why)
{
	size_t i;
	json_t *it;

	if (!json_is_array(v)) {
		why_set(why, "key volumes: expected an array of "
			     "{volume_id, mount_path, read_only}");
		return -1;
	}
	json_array_foreach(v, i, it)
	{
		json_t *vol = json_object_get(it, "volume_id");
		json_t *path = json_object_get(it, "mount_path");
		json_t *ro = json_object_get(it, "read_only");
		if (!json_is_object(it) || !json_is_string(vol) ||
		    !json_is_string(path) || (ro && !json_is_boolean(ro)) ||
		    json_object_size(it) > (ro ? 3u : 2u)) {
			why_set(why,
				"key volumes: entry %zu must be "
				"{volume_id, mount_path, read_only}",
				i);
			return -1;
		}
		if (set_volume(sp, json_string_value(vol),
			       json_string_value(path), ro && json_is_true(ro),
			       why) < 0)
			return -1;
	}
	return 0;
}

static int json_apply_list(struct sess_spec *sp, enum key_id id,
			   const char *key, json_t *v, char *why)
{
	char tmp[8192];

	if (id == K_VOLUME)
		return json_apply_volumes(sp, v, why);
	if (id == K_SSH_KEY) {
		size_t i;
		json_t *it;
		if (!json_is_array(v)) {
			why_set(why, "key %s: expected an array of strings",
				key);
			return -1;
		}
		json_array_foreach(v, i, it)
		{
			if (!json_is_string(it)) {
				why_set(why,
					"key %s: entry %zu is not a string",
					key, i);
				return -1;
			}
			if (set_key(sp, id, key, json_string_value(it), why) <
			    0)
				return -1;
		}
		return 0;
	}
	/* env, metadata: an object of strings */
	const char *k;
	json_t *it;
	if (!json_is_object(v)) {
		why_set(why, "key %s: expected an object of strings", key);
		return -1;
	}
	json_object_foreach(v, k, it)
	{
		if (!json_is_string(it)) {
			why_set(why, "key %s: value of '%.60s' is not a string",
				key, k);
			return -1;
		}
		if (snprintf(tmp, sizeof(tmp), "%s=%s", k,
			     json_string_value(it)) >= (int)sizeof(tmp)) {
			why_set(why, "key %s: entry '%.60s' too long", key, k);
			return -1;
		}
		if (strchr(k, '=')) {
			why_set(why, "key %s: '%.60s' contains '='", key, k);
			return -1;
		}
		if (set_kv(sp, id, tmp, why) < 0)
			return -1;
	}
	return 0;
}

static int apply_json(struct sess_spec *sp, const char *text, size_t len,
		      char *why)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	const char *key;
	json_t *v;
	int rc = -1;

	if (!root) {
		why_set(why, "invalid JSON at line %d column %d: %s", jerr.line,
			jerr.column, jerr.text);
		return -1;
	}
	if (!json_is_object(root)) {
		why_set(why, "a JSON spec must be one object");
		goto out;
	}
	json_object_foreach(root, key, v)
	{
		int idx;
		char val[8192];
		if (lookup_key(key, strlen(key), &idx) < 0) {
			why_set(why, "unknown key '%.60s'", key);
			goto out;
		}
		if (note_given(sp, idx, why) < 0)
			goto out;
		if (keys[idx].repeatable) {
			if (json_apply_list(sp, keys[idx].id, key, v, why) < 0)
				goto out;
			continue;
		}
		if (json_expect_type(v, keys[idx].id, key, why) < 0 ||
		    json_scalar_text(v, key, val, sizeof(val), why) < 0 ||
		    set_key(sp, keys[idx].id, key, val, why) < 0)
			goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int spec_apply(struct sess_spec *sp, const char *text, size_t len, char *why)
{
	size_t i = 0;

	why[0] = '\0';
	if (len > SPEC_MAX_TEXT) {
		why_set(why, "spec longer than %d bytes", SPEC_MAX_TEXT);
		return -1;
	}
	sp->given = 0;
	while (i < len && isspace((unsigned char)text[i]))
		i++;
	if (i < len && (text[i] == '{' || text[i] == '['))
		return apply_json(sp, text, len, why);
	return apply_words(sp, text, len, why);
}

int spec_parse_env_lines(const char *text, size_t len, char ***out, size_t *n,
			 char *why)
{
	char **list = NULL;
	size_t cnt = 0;
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (l > 0) {
			char *line = xstrndup(p, l);
			char *eq = strchr(line, '=');
			if (strlen(line) != l || !eq ||
			    !spec_valid_env_key(line, (size_t)(eq - line)) ||
			    has_control_chars(eq + 1)) {
				why_set(why, "'%.60s' is not KEY=VALUE", line);
				free(line);
				spec_free_list(list, cnt);
				return -1;
			}
			if (list_put_kv(&list, &cnt, line, (size_t)(eq - line),
					eq + 1, why, "env") < 0) {
				free(line);
				spec_free_list(list, cnt);
				return -1;
			}
			free(line);
		}
		p += l + (nl ? 1 : 0);
	}
	*out = list;
	*n = cnt;
	return 0;
}

/* ---- small specs: volumes/new, snapshots/new ------------------------------
 */

/* A spec of a few keys, as words key=value (shell quoting) or one JSON
 * object of strings and integers: each pair goes to fn as text. */
typedef int (*pair_fn)(const char *key, const char *val, void *arg, char *why);

/* A JSON object value, where kv_objects allows it: one "K=V" pair per
 * member, as the words form repeats env=K=V. */
static int pairs_json_object(const char *key, json_t *obj, pair_fn fn,
			     void *arg, char *why)
{
	const char *k;
	json_t *v;

	json_object_foreach(obj, k, v)
	{
		char *kv;
		if (!json_is_string(v) ||
		    strlen(json_string_value(v)) != json_string_length(v)) {
			why_set(why, "key %.60s: %.60s: expected a string", key,
				k);
			return -1;
		}
		if (asprintf(&kv, "%s=%s", k, json_string_value(v)) < 0)
			abort();
		int rc = fn(key, kv, arg, why);
		free(kv);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int pairs_json(const char *text, size_t len, pair_fn fn, void *arg,
		      bool kv_objects, char *why)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	const char *key;
	json_t *v;
	char *val = NULL;
	int rc = -1;

	if (!root) {
		why_set(why, "invalid JSON at line %d column %d: %s", jerr.line,
			jerr.column, jerr.text);
		return -1;
	}
	if (!json_is_object(root)) {
		why_set(why, "a JSON spec must be one object");
		goto out;
	}
	json_object_foreach(root, key, v)
	{
		if (kv_objects && json_is_object(v)) {
			if (pairs_json_object(key, v, fn, arg, why) < 0)
				goto out;
			continue;
		}
		if (json_is_boolean(v) ||
		    (!json_is_string(v) && !json_is_integer(v))) {
			why_set(why, "key %.60s: wrong JSON type", key);
			goto out;
		}
		/* Values are whole: a setup script is longer than a name. */
		size_t cap =
		    (json_is_string(v) ? json_string_length(v) : 0) + 32;
		free(val);
		val = xcalloc(cap, 1);
		if (json_scalar_text(v, key, val, cap, why) < 0 ||
		    fn(key, val, arg, why) < 0)
			goto out;
	}
	rc = 0;
out:
	free(val);
	json_decref(root);
	return rc;
}

static int parse_pairs(const char *text, size_t len, pair_fn fn, void *arg,
		       bool kv_objects, char *why)
{
	const char *p = text, *end = text + len;
	struct buf w = {0};
	int rc = 0, r;

	why[0] = '\0';
	if (len > SPEC_MAX_TEXT) {
		why_set(why, "spec longer than %d bytes", SPEC_MAX_TEXT);
		return -1;
	}
	while (p < end && isspace((unsigned char)*p))
		p++;
	if (p < end && (*p == '{' || *p == '['))
		return pairs_json(text, len, fn, arg, kv_objects, why);
	while ((r = next_word(&p, end, &w, why)) > 0) {
		char *eq = memchr(w.data, '=', w.len);
		if (memchr(w.data, '\0', w.len)) {
			why_set(why, "spec contains a NUL byte");
			rc = -1;
			break;
		}
		if (!eq) {
			why_set(why, "'%.60s' is not key=value", w.data);
			rc = -1;
			break;
		}
		*eq = '\0';
		if (fn(w.data, eq + 1, arg, why) < 0) {
			rc = -1;
			break;
		}
	}
	if (r < 0)
		rc = -1;
	buf_free(&w);
	return rc;
}

/* The index of k in keys (n of them), once: -1 with why otherwise. */
static int pair_key(const char *k, const char *const *names, size_t n,
		    bool *seen, const char *usage, char *why)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(k, names[i]) != 0)
			continue;
		if (seen[i]) {
			why_set(why, "key %s: given twice", k);
			return -1;
		}
		seen[i] = true;
		return (int)i;
	}
	why_set(why, "unknown key '%.60s' (%s)", k, usage);
	return -1;
}

struct volspec_ctx {
	struct vol_spec *vs;
	bool seen[2];
};

static int volspec_key(const char *k, const char *val, void *arg, char *why)
{
	static const char *const vkeys[] = {"name", "size"};
	struct volspec_ctx *c = arg;
	int i = pair_key(k, vkeys, 2, c->seen, "name, size", why);

	if (i < 0)
		return -1;
	if (i == 0)
		return set_name_field(c->vs->name, sizeof(c->vs->name), k, val,
				      why);
	return spec_volume_size(k, val, &c->vs->size, why);
}

int volspec_parse(struct vol_spec *vs, const char *text, size_t len, char *why)
{
	struct volspec_ctx c = {vs, {false, false}};

	memset(vs, 0, sizeof(*vs));
	return parse_pairs(text, len, volspec_key, &c, false, why);
}

struct snapspec_ctx {
	struct snap_spec *ss;
	bool seen[3];
};

static int snapspec_key(const char *k, const char *val, void *arg, char *why)
{
	static const char *const skeys[] = {"name", "session", "ttl"};
	struct snapspec_ctx *c = arg;
	int i =
	    pair_key(k, skeys, 3, c->seen, "name=S session=NAME ttl=DUR", why);

	if (i < 0)
		return -1;
	if (i == 0)
		return set_name_field(c->ss->name, sizeof(c->ss->name), k, val,
				      why);
	if (i == 1) {
		/* A name or an id; one that names nothing is ENOENT later. */
		if (strlen(val) >= sizeof(c->ss->session)) {
			why_set(why, "key session: '%.60s' is too long", val);
			return -1;
		}
		snprintf(c->ss->session, sizeof(c->ss->session), "%s", val);
		return 0;
	}
	if (parse_duration(val, false, &c->ss->ttl) < 0) {
		why_set(why,
			"ttl '%.40s': not a duration (90, 90s, 30m, 2h, "
			"1h30m, 1d)",
			val);
		return -1;
	}
	return 0;
}

int snapspec_parse(struct snap_spec *ss, const char *text, size_t len,
		   char *why)
{
	struct snapspec_ctx c = {ss, {false, false, false}};

	memset(ss, 0, sizeof(*ss));
	return parse_pairs(text, len, snapspec_key, &c, false, why);
}

/* ---- templates/new ------------------------------------------------------ */

void tplspec_init(struct tpl_spec *ts)
{
	memset(ts, 0, sizeof(*ts));
	spec_init(&ts->shape);
}

void tplspec_free(struct tpl_spec *ts)
{
	for (int i = 0; i < TPL_NTEXT; i++)
		free(ts->text[i]);
	spec_free(&ts->shape);
	memset(ts, 0, sizeof(*ts));
}

struct tplspec_ctx {
	struct tpl_spec *ts;
	bool seen[9];
};

static int tplspec_key(const char *k, const char *val, void *arg, char *why)
{
	/* The order of the texts first (enum tpl_text), then the rest. */
	static const char *const tkeys[] = {
	    "setup_script", "start_cmd", "ready_cmd", "name",	   "cpu_cores",
	    "cpu",	    "memory_mb", "memory",    "base_image"};
	static const enum key_id shape[] = {K_NAME,   K_CPU,	K_CPU,
					    K_MEMORY, K_MEMORY, K_IMAGE};
	struct tplspec_ctx *c = arg;
	struct tpl_spec *ts = c->ts;
	int i;

	if (strcmp(k, "env") == 0) /* repeatable, as in session specs */
		return set_key(&ts->shape, K_ENV, k, val, why);
	i = pair_key(k, tkeys, 9, c->seen,
		     "name, setup_script, start_cmd, ready_cmd, env, "
		     "cpu_cores, memory_mb, base_image",
		     why);
	if (i < 0)
		return -1;
	if (i < TPL_NTEXT) {
		if (strlen(val) > TPL_TEXT_MAX) {
			why_set(why, "key %s: longer than %d bytes", k,
				TPL_TEXT_MAX);
			return -1;
		}
		ts->text[i] = xstrndup(val, strlen(val));
		return 0;
	}
	if ((k[0] == 'c' && (c->seen[4] && c->seen[5])) ||
	    (k[0] == 'm' && (c->seen[6] && c->seen[7]))) {
		why_set(why, "key %s: given twice", k);
		return -1;
	}
	ts->given |= 1u << (i - TPL_NTEXT);
	return set_key(&ts->shape, shape[i - TPL_NTEXT], k, val, why);
}

bool tplspec_given(const struct tpl_spec *ts, const char *key)
{
	if (strcmp(key, "cpu_cores") == 0)
		return ts->given & (3u << 1);
	if (strcmp(key, "memory_mb") == 0)
		return ts->given & (3u << 3);
	if (strcmp(key, "base_image") == 0)
		return ts->given & (1u << 5);
	return false;
}

int tplspec_parse(struct tpl_spec *ts, const char *text, size_t len, char *why)
{
	struct tplspec_ctx c = {.ts = ts};

	return parse_pairs(text, len, tplspec_key, &c, true, why);
}

/* ---- volume attach verbs and mount paths ------------------------------------
 */

static bool system_path(const char *p)
{
	static const char *sys[] = {"/proc", "/sys", "/dev", "/run", "/bin",
				    "/sbin", "/lib", "/usr", "/etc", "/boot"};

	for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
		size_t n = strlen(sys[i]);
		if (strncmp(p, sys[i], n) == 0 && (p[n] == '\0' || p[n] == '/'))
			return true;
	}
	return false;
}

int spec_check_mount_path(const char *path, char *why, size_t n)
{
	size_t len = strlen(path);

	if (path[0] != '/' || len >= 256 || strcmp(path, "/") == 0) {
		snprintf(why, n,
			 "mount path '%.80s' must be absolute, not /, at most "
			 "255 bytes",
			 path);
		return -1;
	}
	for (const char *p = path; *p; p++) {
		if ((unsigned char)*p < 0x21 || *p == 0x7f) {
			snprintf(why, n,
				 "mount path '%.80s' has a space or a control "
				 "character",
				 path);
			return -1;
		}
	}
	if (strstr(path, "/../") || strstr(path, "/./") ||
	    (len >= 3 && strcmp(path + len - 3, "/..") == 0) ||
	    (len >= 2 && strcmp(path + len - 2, "/.") == 0) ||
	    strstr(path, "//")) {
		snprintf(why, n, "mount path '%.80s' is not a plain path",
			 path);
		return -1;
	}
	if (system_path(path)) {
		snprintf(why, n,
			 "mount path '%.80s' is a system directory of the "
			 "guest",
			 path);
		return -1;
	}
	return 0;
}

int spec_parse_vol_verb(const char *line, bool session_side,
			struct vol_verb *vv, char *why, size_t whylen)
{
	char verb[16], a1[80], a2[300], a3[8], extra[2];
	int n;

	memset(vv, 0, sizeof(*vv));
	n = sscanf(line, "%15s %79s %299s %7s %1s", verb, a1, a2, a3, extra);
	if (n >= 1 && strcmp(verb, "attach") == 0) {
		vv->attach = true;
		if (n < 3 || n > 4 ||
		    (n == 4 && strcmp(a3, "ro") != 0 &&
		     strcmp(a3, "rw") != 0)) {
			snprintf(why, whylen, "'%.80s': attach %s PATH [ro]",
				 line, session_side ? "VOLUME" : "SESSION");
			return -1;
		}
		vv->ro = n == 4 && strcmp(a3, "ro") == 0;
	} else if (n >= 1 && strcmp(verb, "detach") == 0) {
		if (n > 2 || (session_side && n != 2)) {
			snprintf(why, whylen, "'%.80s': detach%s", line,
				 session_side ? " VOLUME" : " [SESSION]");
			return -1;
		}
	} else {
		snprintf(why, whylen, "unknown verb '%.60s'", line);
		return -1;
	}
	if (n >= 2) {
		if (!valid_name(a1)) {
			snprintf(why, whylen, "'%.80s' is not a %s name", a1,
				 session_side ? "volume" : "session");
			return -1;
		}
		snprintf(vv->target, sizeof(vv->target), "%s", a1);
	}
	if (vv->attach) {
		if (spec_check_mount_path(a2, why, whylen) < 0)
			return -1;
		snprintf(vv->path, sizeof(vv->path), "%s", a2);
	}
	return 0;
}

/* ---- host specs (hosts/new) ---------------------------------------------- */

struct hostspec_ctx {
	struct host_spec *hs;
	bool seen[3];
};

/* A libvirt URI or an absolute directory: printable, no spaces or
 * quotes, as they go into XML and log lines. */
static int set_plain_field(char *dst, size_t cap, const char *key,
			   const char *val, char *why)
{
	size_t n = strlen(val);

	if (n == 0 || n >= cap) {
		why_set(why, "key %s: 1 to %zu characters", key, cap - 1);
		return -1;
	}
	for (const char *p = val; *p; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '\'' ||
		    *p == '"' || *p == '<' || *p == '>' || *p == '&') {
			why_set(why,
				"key %s: '%.80s' has a space, a quote or a "
				"control character",
				key, val);
			return -1;
		}
	}
	snprintf(dst, cap, "%s", val);
	return 0;
}

static int hostspec_key(const char *k, const char *val, void *arg, char *why)
{
	static const char *const hkeys[] = {"name", "uri", "pool"};
	struct hostspec_ctx *c = arg;
	int i =
	    pair_key(k, hkeys, 3, c->seen, "name=NAME uri=URI pool=DIR", why);

	if (i < 0)
		return -1;
	if (i == 0)
		return set_name_field(c->hs->name, sizeof(c->hs->name), k, val,
				      why);
	if (i == 1) {
		if (set_plain_field(c->hs->uri, sizeof(c->hs->uri), k, val,
				    why) < 0)
			return -1;
		if (!strstr(val, "://")) {
			why_set(why,
				"uri '%.80s' is not a libvirt URI "
				"(qemu+tcp://HOST/system, "
				"qemu+ssh://USER@HOST/system, "
				"qemu+tls://HOST/system)",
				val);
			return -1;
		}
		return 0;
	}
	if (set_plain_field(c->hs->pool, sizeof(c->hs->pool), k, val, why) < 0)
		return -1;
	if (val[0] != '/' || strstr(val, "/../") || strcmp(val, "/") == 0) {
		why_set(why, "pool '%.80s' must be an absolute directory", val);
		return -1;
	}
	return 0;
}

int hostspec_parse(struct host_spec *hs, const char *text, size_t len,
		   char *why)
{
	struct hostspec_ctx c = {hs, {false, false, false}};

	memset(hs, 0, sizeof(*hs));
	if (parse_pairs(text, len, hostspec_key, &c, false, why) < 0)
		return -1;
	if (!hs->name[0] || !hs->uri[0]) {
		why_set(why, "name=NAME and uri=URI are required");
		return -1;
	}
	return 0;
}
