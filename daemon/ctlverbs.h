/* The verbs of the ctl files of sessions, volumes and jobs, parsed from the
 * text of one write without the model: a write is checked whole (every line,
 * every argument) before any of its verbs acts, so a bad verb changes
 * nothing.  Checks that need the model (does the volume exist, is the
 * session paused) are the caller's, when it applies the verbs. */
#ifndef TENKI_CTLVERBS_H
#define TENKI_CTLVERBS_H

#include <stddef.h>
#include <stdint.h>

#include "spec.h"
#include "util.h"

#define CTL_MAX_VERBS 16  /* per write */
#define CTL_MAX_LINE  511 /* bytes of one verb line, without its newline */
#define CTL_WHY_LEN   SPEC_WHY_LEN

enum ctl_kind { CTL_SESSION, CTL_VOLUME, CTL_JOB };

enum ctl_verb {
	CTL_EXTEND,   /* session: extend DUR */
	CTL_PAUSE,    /* session: pause */
	CTL_RESUME,   /* session: resume */
	CTL_CLOSE,    /* session: close */
	CTL_SNAPSHOT, /* session: snapshot NAME [ttl=DUR] */
	CTL_ATTACH,   /* session or volume: attach X PATH [ro] (vol) */
	CTL_DETACH,   /* session or volume: detach [X] (vol) */
	CTL_KILL,     /* job: kill [SIG] */
	CTL_EOF,      /* job: eof */
};

struct ctl_call {
	enum ctl_verb v;
	int64_t secs;		     /* extend; snapshot ttl (0: none) */
	int sig;		     /* kill (SIGTERM when not given) */
	struct vol_verb vol;	     /* attach, detach */
	char name[NAME_MAX_LEN + 1]; /* snapshot */
};

/* The usage line of a kind's ctl, for messages. */
const char *ctl_usage(enum ctl_kind kind);

/* Parse the text of one write to a ctl file of that kind: one verb per
 * line, blank lines skipped, at most CTL_MAX_VERBS.  0 with calls[0..*n)
 * filled, or -1 with why (CTL_WHY_LEN, without a "ctl: " prefix). */
int ctl_parse(enum ctl_kind kind, const char *text, size_t len,
	      struct ctl_call *calls, int *n, char *why);

/* A signal by name (TERM, SIGTERM, …) or number 1..64. */
int ctl_parse_signal(const char *s, int *sig);

#endif
