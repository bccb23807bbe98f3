/* libFuzzer target: the ctl verb parsers of sessions, volumes and jobs.
 * The text is an exact-size copy without a NUL, as a write(2) delivers it,
 * so ASan sees any read past its end; what a successful parse returns must
 * hold the checks the appliers rely on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctlverbs.h"

static void check(enum ctl_kind kind, const struct ctl_call *c)
{
	switch (c->v) {
	case CTL_EXTEND:
		if (kind != CTL_SESSION || c->secs <= 0)
			abort();
		break;
	case CTL_SNAPSHOT:
		if (kind != CTL_SESSION || !valid_name(c->name) || c->secs < 0)
			abort();
		break;
	case CTL_PAUSE:
	case CTL_RESUME:
	case CTL_CLOSE:
		if (kind != CTL_SESSION)
			abort();
		break;
	case CTL_ATTACH:
		if (kind == CTL_JOB || !valid_name(c->vol.target) ||
		    c->vol.path[0] != '/' || !c->vol.attach)
			abort();
		break;
	case CTL_DETACH:
		if (kind == CTL_JOB || c->vol.attach ||
		    (kind == CTL_SESSION && !valid_name(c->vol.target)))
			abort();
		break;
	case CTL_KILL:
		if (kind != CTL_JOB || c->sig < 1 || c->sig > 64)
			abort();
		break;
	case CTL_EOF:
		if (kind != CTL_JOB)
			abort();
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum ctl_kind kinds[] = {CTL_SESSION, CTL_VOLUME, CTL_JOB};
	struct ctl_call calls[CTL_MAX_VERBS];
	char why[CTL_WHY_LEN];
	char *text = malloc(size ? size : 1);
	int n;

	if (!text)
		return 0;
	memcpy(text, data, size);
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		why[0] = '\0';
		if (ctl_parse(kinds[k], text, size, calls, &n, why) < 0) {
			if (!why[0] || !memchr(why, '\0', sizeof(why)))
				abort(); /* a refusal always says why */
			continue;
		}
		if (n < 1 || n > CTL_MAX_VERBS)
			abort();
		for (int i = 0; i < n; i++)
			check(kinds[k], &calls[i]);
	}
	free(text);
	return 0;
}
