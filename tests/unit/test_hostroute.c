/* The preview listener's Host routing (daemon/hostroute.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hostroute.h"

static int parse(const char *req, int *port, char *name)
{
	return hostroute_parse(req, strlen(req), port, name);
}

static void test_routes(void **state)
{
	char name[NAME_MAX_LEN + 1];
	int port = 0;

	(void)state;
	assert_int_equal(
	    parse("GET / HTTP/1.1\r\nHost: 8000-demo.localhost:8090\r\n"
		  "Accept: */*\r\n\r\n",
		  &port, name),
	    HR_OK);
	assert_int_equal(port, 8000);
	assert_string_equal(name, "demo");
	assert_int_equal(parse("GET /ws HTTP/1.1\r\nUser-Agent: x\r\n"
			       "hOsT:\t3000-my.app-1.LOCALHOST.  \r\n\r\nbody",
			       &port, name),
			 HR_OK);
	assert_int_equal(port, 3000);
	assert_string_equal(name, "my.app-1");
	assert_int_equal(
	    parse("GET / HTTP/1.0\nHost: 65535-x.localhost\n\n", &port, name),
	    HR_OK);
	assert_int_equal(port, 65535);
}

static void test_refuses(void **state)
{
	char name[NAME_MAX_LEN + 1];
	int port;
	static const char *const no_host[] = {
	    "GET / HTTP/1.1\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: 0-demo.localhost\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: 65536-demo.localhost\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: 08000-demo.localhost\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: 8000-.localhost\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: 8000-_x.localhost\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: 8000demo.localhost\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: 8000-demo.localhost.evil\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: [::1]:8090\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: 80-a.localhost\r\nHost: 81-b.localhost"
	    "\r\n\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(no_host) / sizeof(no_host[0]); i++)
		assert_int_equal(parse(no_host[i], &port, name), HR_NO_HOST);
	assert_int_equal(
	    parse("GET / HTTP/1.1\r\nHost: 80-a.local", &port, name), HR_MORE);
	assert_int_equal(parse("", &port, name), HR_MORE);
	assert_int_equal(parse("\x16\x03\x01 tls hello", &port, name), HR_BAD);
	assert_int_equal(parse("get / HTTP/1.1\r\n\r\n", &port, name), HR_BAD);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_routes),
	    cmocka_unit_test(test_refuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
