/* Unit tests of the ctl verb parsers (sessions, volumes, jobs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <string.h>

#include "ctlverbs.h"

static struct ctl_call calls[CTL_MAX_VERBS];
static char why[CTL_WHY_LEN];
static int n;

static int parse(enum ctl_kind kind, const char *text)
{
	why[0] = '\0';
	return ctl_parse(kind, text, strlen(text), calls, &n, why);
}

/* Refused, and the reason contains want. */
static void refused(enum ctl_kind kind, const char *text, const char *want)
{
	assert_int_equal(parse(kind, text), -1);
	if (!strstr(why, want))
		fail_msg("'%s': why '%s' lacks '%s'", text, why, want);
}

static void test_session_verbs(void **state)
{
	assert_int_equal(parse(CTL_SESSION, "extend 30m\n\n  \npause\nresume\n"
					    "close"),
			 0);
	assert_int_equal(n, 4);
	assert_int_equal(calls[0].v, CTL_EXTEND);
	assert_int_equal(calls[0].secs, 1800);
	assert_int_equal(calls[1].v, CTL_PAUSE);
	assert_int_equal(calls[2].v, CTL_RESUME);
	assert_int_equal(calls[3].v, CTL_CLOSE);

	assert_int_equal(parse(CTL_SESSION, "snapshot s-1 ttl=1h\n"), 0);
	assert_int_equal(calls[0].v, CTL_SNAPSHOT);
	assert_string_equal(calls[0].name, "s-1");
	assert_int_equal(calls[0].secs, 3600);
	assert_int_equal(parse(CTL_SESSION, "snapshot s-2"), 0);
	assert_int_equal(calls[0].secs, 0);

	assert_int_equal(parse(CTL_SESSION, "attach data /data ro\n"
					    "detach data\n"),
			 0);
	assert_int_equal(n, 2);
	assert_int_equal(calls[0].v, CTL_ATTACH);
	assert_string_equal(calls[0].vol.target, "data");
	assert_string_equal(calls[0].vol.path, "/data");
	assert_true(calls[0].vol.ro);
	assert_int_equal(calls[1].v, CTL_DETACH);
	assert_string_equal(calls[1].vol.target, "data");
}

static void test_session_bad(void **state)
{
	refused(CTL_SESSION, "", "no verb");
	refused(CTL_SESSION, "\n \n", "no verb");
	refused(CTL_SESSION, "dance", "unknown verb 'dance'");
	refused(CTL_SESSION, "pause now", "unknown verb");
	refused(CTL_SESSION, "extend", "unknown verb");
	refused(CTL_SESSION, "extend 5x", "not a duration");
	refused(CTL_SESSION, "extend 0", "not a duration");
	refused(CTL_SESSION, "snapshot", "NAME is");
	refused(CTL_SESSION, "snapshot .x", "NAME is");
	refused(CTL_SESSION, "snapshot a ttl=never", "not ttl=DUR");
	refused(CTL_SESSION, "snapshot a b", "not ttl=DUR");
	refused(CTL_SESSION, "snapshot a ttl=1h more", "NAME is");
	refused(CTL_SESSION, "detach", "detach VOLUME");
	refused(CTL_SESSION, "attach data", "attach VOLUME PATH");
	refused(CTL_SESSION, "attach data /", "");
	refused(CTL_SESSION, "template t", "not available");
	refused(CTL_SESSION, "kill", "unknown verb");
	/* One bad verb fails the write: nothing is returned to apply. */
	refused(CTL_SESSION, "pause\nresume\nbogus\n", "unknown verb 'bogus'");
}

static void test_limits(void **state)
{
	char big[CTL_MAX_LINE + 8];

	assert_int_equal(
	    ctl_parse(CTL_SESSION, "pause\0resume", 12, calls, &n, why), -1);
	assert_non_null(strstr(why, "NUL byte"));

	memset(big, ' ', sizeof(big));
	memcpy(big, "pause", 5);
	big[sizeof(big) - 1] = '\0';
	refused(CTL_SESSION, big, "line too long");
	big[CTL_MAX_LINE] = '\0'; /* exactly the limit: accepted */
	assert_int_equal(parse(CTL_SESSION, big), 0);

	char many[CTL_MAX_VERBS * 6 + 8] = "";
	for (int i = 0; i < CTL_MAX_VERBS; i++)
		strcat(many, "pause\n");
	assert_int_equal(parse(CTL_SESSION, many), 0);
	assert_int_equal(n, CTL_MAX_VERBS);
	strcat(many, "pause\n");
	refused(CTL_SESSION, many, "at most 16 verbs");

	/* Text is not NUL-terminated: only len bytes are read. */
	assert_int_equal(ctl_parse(CTL_JOB, "eofXXXX", 3, calls, &n, why), 0);
	assert_int_equal(calls[0].v, CTL_EOF);
}

static void test_volume_verbs(void **state)
{
	assert_int_equal(parse(CTL_VOLUME, "attach s1 /data\ndetach s1\n"
					   "detach\n"),
			 0);
	assert_int_equal(n, 3);
	assert_int_equal(calls[0].v, CTL_ATTACH);
	assert_string_equal(calls[0].vol.target, "s1");
	assert_false(calls[0].vol.ro);
	assert_int_equal(calls[1].v, CTL_DETACH);
	assert_int_equal(calls[2].v, CTL_DETACH);
	assert_string_equal(calls[2].vol.target, "");

	refused(CTL_VOLUME, "pause", "detach [SESSION]");
	refused(CTL_VOLUME, "attach s1", "attach SESSION PATH");
	refused(CTL_VOLUME, "attach s1 /data rx", "attach SESSION PATH");
	refused(CTL_VOLUME, "attach s/1 /data", "not a session name");
	refused(CTL_VOLUME, "", "no verb");
}

static void test_job_verbs(void **state)
{
	assert_int_equal(parse(CTL_JOB, "kill\nkill KILL\nkill SIGINT\nkill 9\n"
					"eof\n"),
			 0);
	assert_int_equal(n, 5);
	assert_int_equal(calls[0].v, CTL_KILL);
	assert_int_equal(calls[0].sig, SIGTERM);
	assert_int_equal(calls[1].sig, SIGKILL);
	assert_int_equal(calls[2].sig, SIGINT);
	assert_int_equal(calls[3].sig, 9);
	assert_int_equal(calls[4].v, CTL_EOF);

	refused(CTL_JOB, "kill BOGUS", "unknown signal 'BOGUS'");
	refused(CTL_JOB, "kill 99", "unknown signal");
	refused(CTL_JOB, "kill 0", "unknown signal");
	refused(CTL_JOB, "kill 9 9", "unknown verb");
	refused(CTL_JOB, "eof now", "unknown verb");
	refused(CTL_JOB, "pause", "kill [SIG] | eof");
	refused(CTL_JOB, "\n", "no verb");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_session_verbs),
	    cmocka_unit_test(test_session_bad),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_volume_verbs),
	    cmocka_unit_test(test_job_verbs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
