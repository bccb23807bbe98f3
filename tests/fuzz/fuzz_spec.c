/* libFuzzer target: create specs (key=value words and JSON), volume,
 * snapshot and host specs,
 * volume attach/detach verbs and mount paths, the env file parser and the
 * duration and size parsers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spec.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sess_spec sp;
	char why[SPEC_WHY_LEN];
	char **list;
	size_t n;

	struct vol_spec vs;
	struct snap_spec ss;
	struct host_spec hs;
	struct vol_verb vv;

	spec_init(&sp);
	spec_apply(&sp, (const char *)data, size, why);
	spec_free(&sp);
	volspec_parse(&vs, (const char *)data, size, why);
	snapspec_parse(&ss, (const char *)data, size, why);
	hostspec_parse(&hs, (const char *)data, size, why);
	char *line = strndup((const char *)data, size < 600 ? size : 600);
	if (line) {
		spec_parse_vol_verb(line, true, &vv, why, sizeof(why));
		spec_parse_vol_verb(line, false, &vv, why, sizeof(why));
		spec_check_mount_path(line, why, sizeof(why));
		free(line);
	}
	if (spec_parse_env_lines((const char *)data, size, &list, &n, why) == 0)
		spec_free_list(list, n);
	char *s = strndup((const char *)data, size < 64 ? size : 64);
	if (s) {
		int64_t d;
		uint64_t b;
		parse_duration(s, true, &d);
		parse_size(s, &b);
		valid_name(s);
		spec_valid_ssh_key(s, why);
		free(s);
	}
	return 0;
}
