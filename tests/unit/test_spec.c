/* Unit tests of the value parsers and create specs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "spec.h"
#include "util.h"

static void test_durations(void **state)
{
	static const struct {
		const char *in;
		int64_t secs;
	} good[] = {{"90", 90},		{"90s", 90},	 {"30m", 1800},
		    {"2h", 7200},	{"1h30m", 5400}, {"1d", 86400},
		    {"1d2h3m4s", 93784}};
	static const char *bad[] = {
	    "",	 "0",	"-5",	"banana",	   "1h30", "30m1h", "1x",
	    "h", "1hh", "1.5h", "99999999999999d", " 5",   "5 "};
	int64_t v;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(parse_duration(good[i].in, false, &v), 0);
		assert_int_equal(v, good[i].secs);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse_duration(bad[i], false, &v), -1);
	assert_int_equal(parse_duration("0", true, &v), 0);
	assert_int_equal(v, 0);
}

static void test_sizes(void **state)
{
	uint64_t v;

	assert_int_equal(parse_size("10G", &v), 0);
	assert_true(v == 10ULL << 30);
	assert_int_equal(parse_size("1M", &v), 0);
	assert_true(v == 1ULL << 20);
	assert_int_equal(parse_size("123", &v), 0);
	assert_true(v == 123);
	assert_int_equal(parse_size("10Q", &v), -1);
	assert_int_equal(parse_size("G", &v), -1);
	assert_int_equal(parse_size("1GG", &v), -1);
	assert_int_equal(parse_size("99999999999999999999", &v), -1);
	assert_int_equal(parse_size("17179869184G", &v), -1);
}

static void test_names(void **state)
{
	assert_true(valid_name("demo"));
	assert_true(valid_name("a.b-c_d9"));
	assert_false(valid_name(""));
	assert_false(valid_name(".hidden"));
	assert_false(valid_name("-x"));
	assert_false(valid_name("a/b"));
	assert_false(valid_name("a b"));
	char long_name[80];
	memset(long_name, 'a', 64);
	long_name[64] = '\0';
	assert_false(valid_name(long_name));
	long_name[63] = '\0';
	assert_true(valid_name(long_name));
}

static int apply(struct sess_spec *sp, const char *text, char *why)
{
	return spec_apply(sp, text, strlen(text), why);
}

static void test_spec_words(void **state)
{
	struct sess_spec sp;
	char why[SPEC_WHY_LEN];

	spec_init(&sp);
	assert_int_equal(
	    apply(&sp,
		  "name=big cpu=4 memory=8192 allow_outbound=false "
		  "env=APP_ENV=dev metadata=owner=alice max_duration=30m "
		  "env='GREETING=hello world'",
		  why),
	    0);
	assert_string_equal(sp.name, "big");
	assert_int_equal(sp.cpu_cores, 4);
	assert_int_equal(sp.memory_mb, 8192);
	assert_false(sp.allow_outbound);
	assert_int_equal(sp.max_duration, 1800);
	assert_int_equal(sp.nenv, 2);
	assert_string_equal(sp.env[1], "GREETING=hello world");
	assert_string_equal(sp.metadata[0], "owner=alice");
	spec_free(&sp);
}

static void test_spec_json(void **state)
{
	struct sess_spec sp;
	char why[SPEC_WHY_LEN];

	spec_init(&sp);
	assert_int_equal(apply(&sp,
			       "{\"name\":\"big\",\"cpu_cores\":4,"
			       "\"memory_mb\":8192,\"allow_outbound\":false,"
			       "\"env\":{\"APP_ENV\":\"dev\"},"
			       "\"metadata\":{\"owner\":\"alice\"},"
			       "\"max_duration\":\"30m\",\"wait\":false}",
			       why),
			 0);
	assert_int_equal(sp.cpu_cores, 4);
	assert_false(sp.wait);
	assert_string_equal(sp.env[0], "APP_ENV=dev");
	spec_free(&sp);
}

static void test_spec_bad(void **state)
{
	static const char *bad[] = {
	    "cpu=0",
	    "cpu=17",
	    "cpu=two",
	    "memory=511",
	    "memory=65537",
	    "name=bad/name",
	    "name=",
	    "allow_inbound=maybe",
	    "max_duration=banana",
	    "max_duration=0",
	    "env=NOEQUALS",
	    "env=1BAD=x",
	    "metadata=/x=y",
	    "unknown=1",
	    "cpu=1 cpu=2",
	    "name=a name=b",
	    "justaword",
	    "ssh_key=garbage",
	    "ssh_key='ssh-ed25519 !!!notbase64'",
	    "ssh_key='ssh-ed25519 AAAAC3NzaC1yc2EAAAADAQABAAABAQ'",
	    "volume=data",
	    "volume=data:relative",
	    "wait=sometimes",
	    "wait_timeout=-1",
	    "name='unterminated",
	    "{\"cpu_cores\": \"x\"}",
	    "{\"cpu_cores\": [1]}",
	    "{\"env\": [\"A=1\"]}",
	    "{\"env\": {\"A\": 1}}",
	    "{\"unknown\": 1}",
	    "{\"cpu\": 1, \"cpu\": 2}",
	    "[1,2]",
	    "{\"name\": 5}",
	    "{\"volumes\": [{\"volume_id\": \"v\"}]}",
	    "{\"ssh_authorized_keys\": \"ssh-ed25519 AAAA\"}",
	    "{\"memory_mb\": -1}",
	    "{not json",
	    "{\"allow_inbound\": 3}",
	    "{\"metadata\": {\"a b\": \"c\"}}",
	    "image=../etc",
	};
	char why[SPEC_WHY_LEN];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sess_spec sp;
		spec_init(&sp);
		if (apply(&sp, bad[i], why) != -1)
			fail_msg("accepted bad spec: %s", bad[i]);
		assert_true(why[0] != '\0');
		spec_free(&sp);
	}
}

static void test_ssh_key(void **state)
{
	char why[SPEC_WHY_LEN];
	/* A real ed25519 public key blob: "ssh-ed25519" + 32 bytes. */
	const char *key =
	    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UO"
	    "oqKLsabgH5C9okWi0dh2l9GKJl user@host";

	assert_true(spec_valid_ssh_key(key, why));
	assert_false(spec_valid_ssh_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqq"
					"nkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9"
					"GKJl",
					why));
}

static void test_snapspec(void **state)
{
	struct snap_spec ss;
	char why[SPEC_WHY_LEN];
	const char *t;

	t = "name=s1 session=demo ttl=1h";
	assert_int_equal(snapspec_parse(&ss, t, strlen(t), why), 0);
	assert_string_equal(ss.name, "s1");
	assert_string_equal(ss.session, "demo");
	assert_int_equal(ss.ttl, 3600);
	t = "{\"session\": \"demo\", \"ttl\": 90}";
	assert_int_equal(snapspec_parse(&ss, t, strlen(t), why), 0);
	assert_string_equal(ss.name, "");
	assert_int_equal(ss.ttl, 90);
	const char *bad[] = {
	    "name=-x session=a",
	    "session=a ttl=soon",
	    "session=a session=b",
	    "colour=blue",
	    "{\"session\": true}",
	    "name=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaa session=a"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		assert_int_equal(
		    snapspec_parse(&ss, bad[i], strlen(bad[i]), why), -1);
		assert_true(why[0] != '\0');
	}
}

static void test_tplspec(void **state)
{
	char why[SPEC_WHY_LEN];
	struct tpl_spec ts;
	const char *t;

	tplspec_init(&ts);
	t = "name=web setup_script='apt-get update\nexit 0' env=A=1 env=B=2 "
	    "cpu=2 memory_mb=1024 base_image=sandbox";
	assert_int_equal(tplspec_parse(&ts, t, strlen(t), why), 0);
	assert_string_equal(ts.shape.name, "web");
	assert_string_equal(ts.text[TPL_SETUP], "apt-get update\nexit 0");
	assert_null(ts.text[TPL_START]);
	assert_int_equal(ts.shape.nenv, 2);
	assert_int_equal(ts.shape.cpu_cores, 2);
	assert_int_equal(ts.shape.memory_mb, 1024);
	assert_true(tplspec_given(&ts, "cpu_cores"));
	assert_true(tplspec_given(&ts, "base_image"));
	tplspec_free(&ts);

	/* JSON: env as an object, values longer than a name */
	char big[2000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	char *j;
	assert_true(asprintf(&j,
			     "{\"name\": \"j\", \"start_cmd\": \"%s\", "
			     "\"env\": {\"K\": \"v w\"}, \"cpu_cores\": 4}",
			     big) > 0);
	tplspec_init(&ts);
	assert_int_equal(tplspec_parse(&ts, j, strlen(j), why), 0);
	assert_int_equal(strlen(ts.text[TPL_START]), sizeof(big) - 1);
	assert_int_equal(ts.shape.nenv, 1);
	assert_string_equal(ts.shape.env[0], "K=v w");
	assert_int_equal(ts.shape.cpu_cores, 4);
	tplspec_free(&ts);
	free(j);

	const char *bad[] = {"name=a cpu_cores=0",
			     "name=a cpu=1 cpu_cores=1",
			     "name=a memory=100",
			     "name=a base_image=-x",
			     "name=a env=1X=2",
			     "name=a colour=red",
			     "{\"env\": {\"K\": 1}}",
			     "{\"setup_script\": true}",
			     "name=a setup_script=x setup_script=y"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		tplspec_init(&ts);
		assert_int_equal(
		    tplspec_parse(&ts, bad[i], strlen(bad[i]), why), -1);
		assert_true(why[0] != '\0');
		tplspec_free(&ts);
	}
}

static void test_hostspec(void **state)
{
	struct host_spec hs;
	char why[SPEC_WHY_LEN];
	const char *t;

	t = "name=n2 uri=qemu+tcp://10.0.0.2/system";
	assert_int_equal(hostspec_parse(&hs, t, strlen(t), why), 0);
	assert_string_equal(hs.name, "n2");
	assert_string_equal(hs.uri, "qemu+tcp://10.0.0.2/system");
	assert_string_equal(hs.pool, "");
	t = "{\"name\": \"n3\", \"uri\": \"qemu+ssh://root@n3/system\", "
	    "\"pool\": \"/srv/tenki\"}";
	assert_int_equal(hostspec_parse(&hs, t, strlen(t), why), 0);
	assert_string_equal(hs.pool, "/srv/tenki");
	const char *bad[] = {"name=n2",
			     "uri=qemu+tcp://x/system",
			     "name=n2 uri=n2",
			     "name=n2 uri='qemu+tcp://x/system extra'",
			     "name=n2 uri=qemu+tcp://x/<system>",
			     "name=n2 uri=qemu+tcp://x/system pool=relative",
			     "name=n2 uri=qemu+tcp://x/system pool=/",
			     "name=n2 name=n3 uri=qemu+tcp://x/system",
			     "name=-n uri=qemu+tcp://x/system",
			     "name=n2 uri=qemu+tcp://x/system colour=blue"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		assert_int_equal(
		    hostspec_parse(&hs, bad[i], strlen(bad[i]), why), -1);
		assert_true(why[0] != '\0');
	}
}

static void test_env_lines(void **state)
{
	char why[SPEC_WHY_LEN];
	char **list;
	size_t n;
	const char *ok = "A=1\nB=two words\n\nA=3\n";

	assert_int_equal(spec_parse_env_lines(ok, strlen(ok), &list, &n, why),
			 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0], "A=3");
	spec_free_list(list, n);
	assert_int_equal(spec_parse_env_lines("A\n", 2, &list, &n, why), -1);
	assert_int_equal(spec_parse_env_lines("=x\n", 3, &list, &n, why), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_durations), cmocka_unit_test(test_sizes),
	    cmocka_unit_test(test_names),     cmocka_unit_test(test_spec_words),
	    cmocka_unit_test(test_spec_json), cmocka_unit_test(test_spec_bad),
	    cmocka_unit_test(test_ssh_key),   cmocka_unit_test(test_env_lines),
	    cmocka_unit_test(test_snapspec),  cmocka_unit_test(test_tplspec),
	    cmocka_unit_test(test_hostspec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
