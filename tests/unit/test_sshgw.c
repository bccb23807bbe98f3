/* Unit tests of the SSH gateway's option parsing (--ssh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "sshgw.h"

static void test_defaults(void **state)
{
	sshgw_defaults();
	assert_string_equal(sshgw_cfg.addr, "127.0.0.1");
	assert_int_equal(sshgw_cfg.port, 2222);
	assert_true(sshgw_cfg.max_conns > 0 && sshgw_cfg.max_per_session > 0);
	assert_true(sshgw_cfg.max_startups > 0 && sshgw_cfg.max_auth_tries > 0);
	assert_true(sshgw_cfg.login_grace_ms > 0 &&
		    sshgw_cfg.idle_timeout_ms > 0);
}

static void test_listen(void **state)
{
	static const struct {
		const char *in, *addr;
		int port;
	} good[] = {
	    {"127.0.0.1:2200", "127.0.0.1", 2200},
	    {"0.0.0.0:22", "0.0.0.0", 22},
	    {"[::1]:2222", "::1", 2222},
	    {"::1:2222", "::1", 2222},
	    {"2022", "127.0.0.1", 2022},
	    {"127.0.0.1:0", "127.0.0.1", 0},
	};
	static const char *bad[] = {"",	     "127.0.0.1:",    ":22",
				    "x:y",   "1.2.3.4:65536", "1.2.3.4:-1",
				    "[]:22", "1.2.3.4:22x"};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		sshgw_defaults();
		assert_int_equal(sshgw_parse_listen(good[i].in), 0);
		assert_string_equal(sshgw_cfg.addr, good[i].addr);
		assert_int_equal(sshgw_cfg.port, good[i].port);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sshgw_defaults();
		assert_int_equal(sshgw_parse_listen(bad[i]), -1);
		/* A refused value changes nothing. */
		assert_string_equal(sshgw_cfg.addr, "127.0.0.1");
		assert_int_equal(sshgw_cfg.port, 2222);
	}
	assert_int_equal(sshgw_parse_listen("off"), 0);
	assert_string_equal(sshgw_cfg.addr, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_listen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
