/*
 * Unit tests for proto/: errors, identifiers, versions, hex, state names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto/proto.h"

static void test_strerror(void **state)
{
	(void)state;
#define CHECK_TEXT(name, val, text)                                            \
	assert_int_equal(PROTO_##name, val);                                   \
	assert_string_equal(proto_strerror(val), text);
	PROTO_ERRNO_MAP(CHECK_TEXT)
#undef CHECK_TEXT
	assert_string_equal(proto_strerror(0), "success");
	assert_string_equal(proto_strerror(-999), "unknown error");
	assert_string_equal(proto_strerror(1), "unknown error");
}

static void test_id_valid(void **state)
{
	static const char *const good[] = {
	    "d1", "a", "Z", "0", "sensor-v2", "a_b_c-d", "_x", "-x",
	};
	/* No '.' anywhere: RabbitMQ maps '/' to '.' in routing keys, so a
	 * topic "ota/dev/dot.dev/status" would arrive as
	 * "ota/dev/dot/dev/status" (another device's, or nobody's). */
	static const char *const bad[] = {
	    "",	    ".hidden", "a/b",	      "a+b", "a#b",
	    "a b",  "a\nb",    "caf\xc3\xa9", "a$",  "a:b",
	    "\x7f", "dot.dev", "a.b_c-d",     "x.",  "a..b",
	};
	char s64[65], s63[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(*good); i++)
		assert_true(proto_id_valid(good[i]));
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_false(proto_id_valid(bad[i]));
	assert_false(proto_id_valid(NULL));
	memset(s63, 'x', 63);
	s63[63] = '\0';
	assert_true(proto_id_valid(s63));
	memset(s64, 'x', 64);
	s64[64] = '\0';
	assert_false(proto_id_valid(s64));
}

static void test_version_parse(void **state)
{
	static const char *const bad[] = {
	    "",		 "1",		"1.2",	       "1.2.3.4",
	    "01.2.3",	 "1.02.3",	"1.2.03",      "+1.2.3",
	    "-1.2.3",	 "1.-2.3",	" 1.2.3",      "1.2.3 ",
	    "1.2.3\n",	 "1000000.0.0", "0.1000000.0", "0.0.1000000",
	    "1..3",	 "1.2.",	".1.2",	       "a.b.c",
	    "0x1.2.3",	 "1.2.3-rc1",	"00.0.0",      "0000001.0.0",
	    "1.2.3\xff",
	};
	uint32_t p[3] = {7, 7, 7};
	size_t i;

	(void)state;
	assert_int_equal(proto_version_parse("1.2.3", p), 0);
	assert_int_equal(p[0], 1);
	assert_int_equal(p[1], 2);
	assert_int_equal(p[2], 3);
	assert_int_equal(proto_version_parse("0.0.0", p), 0);
	assert_int_equal(p[0] + p[1] + p[2], 0);
	assert_int_equal(proto_version_parse("999999.999999.999999", p), 0);
	assert_int_equal(p[0], 999999);
	assert_int_equal(p[2], 999999);
	assert_int_equal(proto_version_parse("10.0.100", p), 0);
	assert_int_equal(p[0], 10);
	assert_int_equal(p[2], 100);
	assert_int_equal(proto_version_parse("1.2.3", NULL), 0);
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		p[0] = p[1] = p[2] = 42;
		assert_int_equal(proto_version_parse(bad[i], p),
				 PROTO_EVERSION);
		assert_int_equal(p[0], 42); /* untouched on failure */
	}
	assert_int_equal(proto_version_parse(NULL, p), PROTO_EVERSION);
}

static void test_version_cmp(void **state)
{
	int res = 99;

	(void)state;
	assert_int_equal(proto_version_cmp("1.2.3", "1.10.0", &res), 0);
	assert_true(res < 0); /* numeric, not lexicographic */
	assert_int_equal(proto_version_cmp("1.10.0", "1.2.3", &res), 0);
	assert_true(res > 0);
	assert_int_equal(proto_version_cmp("2.0.0", "1.999999.999999", &res),
			 0);
	assert_true(res > 0);
	assert_int_equal(proto_version_cmp("1.0.9", "1.0.10", &res), 0);
	assert_true(res < 0);
	assert_int_equal(proto_version_cmp("3.4.5", "3.4.5", &res), 0);
	assert_int_equal(res, 0);
	assert_int_equal(proto_version_cmp("1.0", "1.0.0", &res),
			 PROTO_EVERSION);
	assert_int_equal(proto_version_cmp("1.0.0", "v1.0.0", &res),
			 PROTO_EVERSION);
}

static void test_hex(void **state)
{
	static const uint8_t bytes[] = {0x00, 0x01, 0xab, 0xcd, 0xef, 0xff};
	uint8_t out[6];
	char hex[13];

	(void)state;
	proto_hex_encode(bytes, sizeof(bytes), hex);
	assert_string_equal(hex, "0001abcdefff");
	proto_hex_encode(bytes, 0, hex);
	assert_string_equal(hex, "");

	memset(out, 0x55, sizeof(out));
	assert_int_equal(proto_hex_decode("0001ABcdEFff", out, 6), 0);
	assert_memory_equal(out, bytes, 6);
	assert_int_equal(proto_hex_decode("", out, 0), 0);

	memset(out, 0x55, sizeof(out));
	/* one digit short, one long, one too many bytes, bad digits */
	assert_int_equal(proto_hex_decode("0001abcdeff", out, 6),
			 PROTO_EMALFORMED);
	assert_int_equal(proto_hex_decode("0001abcdefff0", out, 6),
			 PROTO_EMALFORMED);
	assert_int_equal(proto_hex_decode("0001abcdefff00", out, 6),
			 PROTO_EMALFORMED);
	assert_int_equal(proto_hex_decode("0001abcdefgf", out, 6),
			 PROTO_EMALFORMED);
	assert_int_equal(proto_hex_decode(" 001abcdefff", out, 6),
			 PROTO_EMALFORMED);
	assert_int_equal(proto_hex_decode(NULL, out, 6), PROTO_EMALFORMED);
	/* nothing written on failure */
	assert_int_equal(out[0], 0x55);
	assert_int_equal(out[5], 0x55);
}

static void test_state_names(void **state)
{
	static const char *const names[] = {
	    "idle",	  "downloading", "verifying",
	    "installing", "restarting",	 "committed",
	    "failed",	  "rolled_back", "offline",
	};
	enum proto_state st;
	int i;

	(void)state;
	assert_int_equal(PROTO_ST__COUNT, 9);
	for (i = 0; i < PROTO_ST__COUNT; i++) {
		assert_string_equal(proto_state_name((enum proto_state)i),
				    names[i]);
		st = PROTO_ST__COUNT;
		assert_int_equal(proto_state_parse(names[i], &st), 0);
		assert_int_equal(st, i);
	}
	assert_string_equal(proto_state_name(PROTO_ST__COUNT), "?");
	assert_string_equal(proto_state_name((enum proto_state) - 1), "?");
	assert_int_equal(proto_state_parse("IDLE", &st), PROTO_EFIELD);
	assert_int_equal(proto_state_parse("idle ", &st), PROTO_EFIELD);
	assert_int_equal(proto_state_parse("", &st), PROTO_EFIELD);
	assert_int_equal(proto_state_parse(NULL, &st), PROTO_EFIELD);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_strerror),
	    cmocka_unit_test(test_id_valid),
	    cmocka_unit_test(test_version_parse),
	    cmocka_unit_test(test_version_cmp),
	    cmocka_unit_test(test_hex),
	    cmocka_unit_test(test_state_names),
	};

	return cmocka_run_group_tests_name("proto_util", tests, NULL, NULL);
}
