/* ctl verbs: text to calls, with every check that needs no model state.
 * Kept apart from session.c, volume.c and job.c so it can be fuzzed alone
 * (tests/fuzz/fuzz_ctlverbs.c). */
#include "ctlverbs.h"

#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define SESSION_VERBS                                                          \
	"extend DUR | pause | resume | close | snapshot NAME [ttl=DUR] | "     \
	"attach VOLUME PATH [ro] | detach VOLUME"
#define VOLUME_VERBS "attach SESSION PATH [ro] | detach [SESSION]"
#define JOB_VERBS    "kill [SIG] | eof"

const char *ctl_usage(enum ctl_kind kind)
{
	switch (kind) {
	case CTL_SESSION:
		return SESSION_VERBS;
	case CTL_VOLUME:
		return VOLUME_VERBS;
	case CTL_JOB:
		return JOB_VERBS;
	}
	return "";
}

int ctl_parse_signal(const char *s, int *sig)
{
	static const struct {
		const char *name;
		int sig;
	} sigs[] = {{"HUP", SIGHUP},   {"INT", SIGINT},	  {"QUIT", SIGQUIT},
		    {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
		    {"TERM", SIGTERM}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}};
	uint64_t n;

	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		if (strcmp(s, sigs[i].name) == 0) {
			*sig = sigs[i].sig;
			return 0;
		}
	}
	if (parse_uint(s, 1, 64, &n) < 0)
		return -1;
	*sig = (int)n;
	return 0;
}

/* snapshot NAME [ttl=DUR] */
static int parse_snapshot(const char *line, struct ctl_call *c, char *why)
{
	char verb[32], name[80] = "", opt[80] = "", extra[2];
	int n = sscanf(line, "%31s %79s %79s %1s", verb, name, opt, extra);

	c->v = CTL_SNAPSHOT;
	c->secs = 0;
	if (n < 2 || n > 3 || !valid_name(name)) {
		snprintf(why, CTL_WHY_LEN,
			 "snapshot NAME [ttl=DUR]: NAME is "
			 "[A-Za-z0-9][A-Za-z0-9_.-]{0,62}");
		return -1;
	}
	if (n == 3 && (strncmp(opt, "ttl=", 4) != 0 ||
		       parse_duration(opt + 4, false, &c->secs) < 0)) {
		snprintf(why, CTL_WHY_LEN, "snapshot: '%s' is not ttl=DUR",
			 opt);
		return -1;
	}
	snprintf(c->name, sizeof(c->name), "%s", name);
	return 0;
}

/* attach/detach, on either side; the session side names the volume. */
static int parse_vol(enum ctl_kind kind, const char *line, struct ctl_call *c,
		     char *why)
{
	char vwhy[CTL_WHY_LEN];

	if (spec_parse_vol_verb(line, kind == CTL_SESSION, &c->vol, vwhy,
				sizeof(vwhy)) < 0) {
		if (kind == CTL_SESSION)
			snprintf(why, CTL_WHY_LEN, "%s", vwhy);
		else
			snprintf(why, CTL_WHY_LEN, "%s (" VOLUME_VERBS ")",
				 vwhy);
		return -1;
	}
	c->v = c->vol.attach ? CTL_ATTACH : CTL_DETACH;
	return 0;
}

static int parse_session_line(const char *line, struct ctl_call *c, char *why)
{
	char verb[32] = "", arg[64] = "", extra[2];
	int n = sscanf(line, "%31s %63s %1s", verb, arg, extra);

	if (strcmp(verb, "attach") == 0 || strcmp(verb, "detach") == 0)
		return parse_vol(CTL_SESSION, line, c, why);
	if (strcmp(verb, "snapshot") == 0)
		return parse_snapshot(line, c, why);
	if (strcmp(verb, "extend") == 0 && n == 2) {
		c->v = CTL_EXTEND;
		if (parse_duration(arg, false, &c->secs) == 0)
			return 0;
		snprintf(why, CTL_WHY_LEN,
			 "extend '%s': not a duration (90, 90s, 30m, 2h, "
			 "1h30m, 1d)",
			 arg);
		return -1;
	}
	if (n == 1 && strcmp(verb, "pause") == 0)
		c->v = CTL_PAUSE;
	else if (n == 1 && strcmp(verb, "resume") == 0)
		c->v = CTL_RESUME;
	else if (n == 1 && strcmp(verb, "close") == 0)
		c->v = CTL_CLOSE;
	else if (strcmp(verb, "template") == 0) {
		snprintf(why, CTL_WHY_LEN,
			 "%s is not available in this version of tenkid", verb);
		return -1;
	} else {
		snprintf(why, CTL_WHY_LEN,
			 "unknown verb '%.60s' (" SESSION_VERBS ")", line);
		return -1;
	}
	return 0;
}

static int parse_job_line(const char *line, struct ctl_call *c, char *why)
{
	char verb[16], arg[16], extra[2];
	int n = sscanf(line, "%15s %15s %1s", verb, arg, extra);

	if (n == 1 && strcmp(verb, "eof") == 0) {
		c->v = CTL_EOF;
		return 0;
	}
	if (n <= 2 && strcmp(verb, "kill") == 0) {
		c->v = CTL_KILL;
		c->sig = SIGTERM;
		if (n == 1 || ctl_parse_signal(arg, &c->sig) == 0)
			return 0;
		snprintf(why, CTL_WHY_LEN, "unknown signal '%s'", arg);
		return -1;
	}
	snprintf(why, CTL_WHY_LEN, "unknown verb '%.60s' (" JOB_VERBS ")",
		 line);
	return -1;
}

static bool blank(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return *s == '\0';
}

int ctl_parse(enum ctl_kind kind, const char *text, size_t len,
	      struct ctl_call *calls, int *n, char *why)
{
	char line[CTL_MAX_LINE + 1];
	const char *p = text, *end = text + len;

	*n = 0;
	if (memchr(text, '\0', len)) {
		snprintf(why, CTL_WHY_LEN, "NUL byte");
		return -1;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		int rc;

		if (l > CTL_MAX_LINE) {
			snprintf(why, CTL_WHY_LEN, "line too long");
			return -1;
		}
		memcpy(line, p, l);
		line[l] = '\0';
		p += l + (nl ? 1 : 0);
		if (blank(line))
			continue;
		if (*n >= CTL_MAX_VERBS) {
			snprintf(why, CTL_WHY_LEN, "at most %d verbs per write",
				 CTL_MAX_VERBS);
			return -1;
		}
		struct ctl_call *c = &calls[*n];
		memset(c, 0, sizeof(*c));
		if (kind == CTL_SESSION)
			rc = parse_session_line(line, c, why);
		else if (kind == CTL_VOLUME)
			rc = parse_vol(kind, line, c, why);
		else
			rc = parse_job_line(line, c, why);
		if (rc < 0)
			return -1;
		(*n)++;
	}
	if (*n == 0) {
		snprintf(why, CTL_WHY_LEN, "no verb (%s)", ctl_usage(kind));
		return -1;
	}
	return 0;
}
