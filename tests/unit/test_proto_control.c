/* Rollout control messages and the announcement's rollout fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/proto.h"

static int control(const char *json, struct proto_control *c)
{
	struct proto_err err = {{0}};
	return proto_control_decode(json, strlen(json), c, &err);
}

static void test_control_ok(void **state)
{
	(void)state;
	struct proto_control c;
	assert_int_equal(control("{\"action\":\"pause\"}", &c), 0);
	assert_int_equal(c.action, PROTO_ACT_PAUSE);
	assert_string_equal(c.release, "");
	assert_int_equal(
	    control("{\"action\":\"abort\",\"release\":\"0123456789abcdef\"}",
		    &c),
	    0);
	assert_int_equal(c.action, PROTO_ACT_ABORT);
	assert_string_equal(c.release, "0123456789abcdef");
	assert_int_equal(control("{\"action\":\"resume\"}", &c), 0);
	assert_int_equal(c.action, PROTO_ACT_RESUME);
	assert_string_equal(proto_action_name(PROTO_ACT_RESUME), "resume");
}

static void test_control_bad(void **state)
{
	(void)state;
	struct proto_control c;
	assert_int_equal(control("{\"action\":\"stop\"}", &c), PROTO_EFIELD);
	assert_int_equal(control("{}", &c), PROTO_EFIELD);
	assert_int_equal(control("{\"action\":1}", &c), PROTO_EFIELD);
	assert_int_equal(control("{\"action\":\"pause\",\"releas\":\"x\"}", &c),
			 PROTO_EFIELD);
	assert_int_equal(
	    control("{\"action\":\"pause\",\"release\":\"0123456789ABCDEF\"}",
		    &c),
	    PROTO_EFIELD);
	assert_int_equal(
	    control("{\"action\":\"pause\",\"release\":\"0123\"}", &c),
	    PROTO_EFIELD);
	assert_true(control("[\"pause\"]", &c) < 0);
	assert_true(control("{\"action\":\"pause\"} x", &c) < 0);
}

static void test_control_roundtrip(void **state)
{
	(void)state;
	struct proto_control in = {.action = PROTO_ACT_ABORT}, out;
	memcpy(in.release, "fedcba9876543210", 17);
	char *json = NULL;
	size_t len = 0;
	assert_int_equal(proto_control_encode(&in, &json, &len), 0);
	assert_string_equal(json,
			    "{\"action\":\"abort\",\"release\":\"fedcba9876543210\"}");
	assert_int_equal(proto_control_decode(json, len, &out, NULL), 0);
	assert_int_equal(out.action, PROTO_ACT_ABORT);
	assert_string_equal(out.release, in.release);
	free(json);
}

static void test_announce_rollout_fields(void **state)
{
	(void)state;
	struct proto_announce a;
	const char *ok = "{\"url\":\"file:///p.ota\",\"concurrency\":5,"
			 "\"canary_percent\":10,\"canary_success_percent\":90,"
			 "\"pause_failure_percent\":20,"
			 "\"pause_failure_min\":3}";
	assert_int_equal(proto_announce_decode(ok, strlen(ok), &a, NULL), 0);
	assert_int_equal(a.concurrency, 5);
	assert_int_equal(a.canary_percent, 10);
	assert_int_equal(a.canary_success_percent, 90);
	assert_int_equal(a.pause_failure_percent, 20);
	assert_int_equal(a.pause_failure_min, 3);
	proto_announce_free(&a);
	const char *bad[] = {
	    "{\"url\":\"file:///p\",\"canary_percent\":101}",
	    "{\"url\":\"file:///p\",\"pause_failure_percent\":-1}",
	    "{\"url\":\"file:///p\",\"concurrency\":\"5\"}",
	    "{\"url\":\"file:///p\",\"canary_success_percent\":1.5}",
	    "{\"url\":\"file:///p\",\"pause_failure_min\":1000001}",
	    "{\"url\":\"file:///p\",\"pause_failure_min\":true}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(proto_announce_decode(bad[i], strlen(bad[i]), &a,
						  NULL) < 0);
		assert_null(a.devices);
	}
}

/* A signed downgrade is one more member after "created"; without it the
 * manifest is byte for byte what it always was. */
static void test_manifest_downgrade(void **state)
{
	(void)state;
	struct proto_manifest m = {.format = 1, .size = 5, .created = 7};
	memcpy(m.product, "sensor", 7);
	memcpy(m.version, "1.0.1", 6);
	char *a = NULL, *b = NULL;
	size_t alen, blen;
	assert_int_equal(proto_manifest_encode(&m, &a, &alen), 0);
	assert_null(strstr(a, "downgrade"));
	m.downgrade = true;
	/* A downgrade must say which version it replaces. */
	assert_int_equal(proto_manifest_encode(&m, &b, &blen), PROTO_EFIELD);
	memcpy(m.replaces, "1.2.0", 6);
	assert_int_equal(proto_manifest_encode(&m, &b, &blen), 0);
	assert_int_equal(blen, alen + strlen(",\"downgrade\":true,"
					     "\"replaces\":\"1.2.0\""));
	assert_memory_equal(a, b, alen - 1);
	struct proto_manifest out;
	assert_int_equal(proto_manifest_decode(b, blen, &out, NULL), 0);
	assert_true(out.downgrade);
	assert_string_equal(out.replaces, "1.2.0");
	assert_int_equal(proto_manifest_decode(a, alen, &out, NULL), 0);
	assert_false(out.downgrade);
	const char *bad = "{\"format\":1,\"product\":\"s\",\"version\":\"1.0.0\","
			  "\"size\":1,\"sha256\":\"0000000000000000000000000000000000"
			  "000000000000000000000000000000\",\"created\":1,"
			  "\"downgrade\":\"yes\"}";
	assert_int_equal(proto_manifest_decode(bad, strlen(bad), &out, NULL),
			 PROTO_EFIELD);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_control_ok),
	    cmocka_unit_test(test_control_bad),
	    cmocka_unit_test(test_control_roundtrip),
	    cmocka_unit_test(test_announce_rollout_fields),
	    cmocka_unit_test(test_manifest_downgrade),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
