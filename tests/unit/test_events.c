/* Unit tests of the events ring: readers from their own point, lost
 * notices for readers that fell behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "events.h"

static void test_reader_sees_events_after_open(void **state)
{
	uint64_t seq = events_next();
	size_t off = 0;
	char buf[4096];

	assert_int_equal(events_read(&seq, &off, buf, sizeof(buf)), -EAGAIN);
	event_emit("session", "a", "id-a", NULL, "CREATING");
	event_emit("session", "a", "id-a", "CREATING", "READY");
	ssize_t n = events_read(&seq, &off, buf, sizeof(buf));
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "\"new\":\"CREATING\""));
	assert_non_null(strstr(buf, "\"old\":\"CREATING\",\"new\":\"READY\""));
	assert_int_equal(events_read(&seq, &off, buf, sizeof(buf)), -EAGAIN);
}

static void test_small_reads_split_lines(void **state)
{
	uint64_t seq = events_next();
	size_t off = 0;
	char all[1024] = "", buf[7];

	event_emit("job", "a/exec/1", "k", "new", "starting");
	for (;;) {
		ssize_t n = events_read(&seq, &off, buf, sizeof(buf) - 1);
		if (n < 0)
			break;
		buf[n] = '\0';
		strcat(all, buf);
	}
	assert_non_null(strstr(all, "\"kind\":\"job\""));
	assert_int_equal(all[strlen(all) - 1], '\n');
}

static void test_slow_reader_is_told_it_lost(void **state)
{
	uint64_t seq = events_next();
	size_t off = 0;
	char buf[256];

	for (int i = 0; i < 5000; i++)
		event_emit("session", "x", "id", "READY", "RUNNING");
	ssize_t n = events_read(&seq, &off, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "{\"kind\":\"lost\",\"count\":904}\n");
	/* then the oldest kept event, whole */
	n = events_read(&seq, &off, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "\"new\":\"RUNNING\""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reader_sees_events_after_open),
	    cmocka_unit_test(test_small_reads_split_lines),
	    cmocka_unit_test(test_slow_reader_is_told_it_lost),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
