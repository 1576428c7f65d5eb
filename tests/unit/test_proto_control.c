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

/* The announcement's restart_spread_s: absent, 0 and 3600 are not alike. */
static void test_announce_restart_spread(void **state)
{
	(void)state;
	struct proto_announce a;
	struct proto_err err = {{0}};
	const char *j = "{\"url\":\"file:///p.ota\"}";
	assert_int_equal(proto_announce_decode(j, strlen(j), &a, &err), 0);
	assert_false(a.restart_spread_set);
	proto_announce_free(&a);
	j = "{\"url\":\"file:///p.ota\",\"restart_spread_s\":0}";
	assert_int_equal(proto_announce_decode(j, strlen(j), &a, &err), 0);
	assert_true(a.restart_spread_set);
	assert_int_equal(a.restart_spread_s, 0);
	char *out = NULL;
	size_t len;
	assert_int_equal(proto_announce_encode(&a, &out, &len), 0);
	assert_non_null(strstr(out, "\"restart_spread_s\":0"));
	free(out);
	proto_announce_free(&a);
	j = "{\"url\":\"file:///p.ota\",\"restart_spread_s\":3600}";
	assert_int_equal(proto_announce_decode(j, strlen(j), &a, &err), 0);
	assert_int_equal(a.restart_spread_s, 3600);
	proto_announce_free(&a);
	j = "{\"url\":\"file:///p.ota\",\"restart_spread_s\":3601}";
	assert_int_equal(proto_announce_decode(j, strlen(j), &a, &err),
			 PROTO_ERANGE);
	j = "{\"url\":\"file:///p.ota\",\"restart_spread_s\":\"5\"}";
	assert_int_equal(proto_announce_decode(j, strlen(j), &a, &err),
			 PROTO_EFIELD);
}

/* The gateway's hello and status poll (PROTOCOL.md 5.6). */
static void test_poll(void **state)
{
	(void)state;
	struct proto_poll p = {.spread_ms = 1500}, d;
	struct proto_err err = {{0}};
	char *out = NULL;
	size_t len = 0;
	assert_int_equal(proto_poll_encode(&p, &out, &len), 0);
	assert_string_equal(out, "{\"spread_ms\":1500}");
	assert_int_equal(proto_poll_decode(out, len, &d, &err), 0);
	assert_int_equal(d.spread_ms, 1500);
	free(out);
	/* Empty and {} are a poll to answer at once; unknown members are
	 * ignored (a newer gateway may say more). */
	d.spread_ms = 7;
	assert_int_equal(proto_poll_decode("", 0, &d, &err), 0);
	assert_int_equal(d.spread_ms, 0);
	assert_int_equal(proto_poll_decode("{}", 2, &d, &err), 0);
	assert_int_equal(d.spread_ms, 0);
	const char *j = "{\"spread_ms\":3600000,\"why\":\"start\"}";
	assert_int_equal(proto_poll_decode(j, strlen(j), &d, &err), 0);
	assert_int_equal(d.spread_ms, PROTO_SPREAD_MS_MAX);
	/* Out of range, wrong type, not an object. */
	j = "{\"spread_ms\":3600001}";
	assert_int_equal(proto_poll_decode(j, strlen(j), &d, &err),
			 PROTO_ERANGE);
	j = "{\"spread_ms\":-1}";
	assert_int_not_equal(proto_poll_decode(j, strlen(j), &d, &err), 0);
	j = "{\"spread_ms\":\"10\"}";
	assert_int_equal(proto_poll_decode(j, strlen(j), &d, &err),
			 PROTO_EFIELD);
	j = "[1]";
	assert_int_equal(proto_poll_decode(j, strlen(j), &d, &err),
			 PROTO_EJSON);
	p.spread_ms = PROTO_SPREAD_MS_MAX + 1;
	out = NULL;
	assert_int_equal(proto_poll_encode(&p, &out, &len), PROTO_ERANGE);
	assert_null(out);
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
	assert_int_equal(control("{\"action\":\"pause\",\"release\":\"0123\"}",
				 &c),
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
	assert_string_equal(
	    json, "{\"action\":\"abort\",\"release\":\"fedcba9876543210\"}");
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
	const char *bad =
	    "{\"format\":1,\"product\":\"s\",\"version\":\"1.0.0\","
	    "\"size\":1,\"sha256\":\"0000000000000000000000000000000000"
	    "000000000000000000000000000000\",\"created\":1,"
	    "\"downgrade\":\"yes\"}";
	assert_int_equal(proto_manifest_decode(bad, strlen(bad), &out, NULL),
			 PROTO_EFIELD);
	free(a);
	free(b);
}

/* The command plane: retry, reply and operator in control messages. */
static void test_control_reply_retry(void **state)
{
	(void)state;
	struct proto_control c, out;
	assert_int_equal(control("{\"action\":\"retry\",\"reply\":\"req-1\","
				 "\"operator\":\"ota-operator\"}",
				 &c),
			 0);
	assert_int_equal(c.action, PROTO_ACT_RETRY);
	assert_string_equal(c.reply, "req-1");
	assert_string_equal(c.operator_name, "ota-operator");
	assert_string_equal(proto_action_name(PROTO_ACT_RETRY), "retry");
	assert_int_equal(control("{\"action\":\"pause\",\"reply\":\"a/b\"}",
				 &c),
			 PROTO_EFIELD);
	assert_int_equal(control("{\"action\":\"pause\",\"operator\":3}", &c),
			 PROTO_EFIELD);
	char *json = NULL;
	size_t len = 0;
	assert_int_equal(control("{\"action\":\"retry\",\"reply\":\"req-1\","
				 "\"operator\":\"ota-operator\"}",
				 &c),
			 0);
	assert_int_equal(proto_control_encode(&c, &json, &len), 0);
	assert_string_equal(json, "{\"action\":\"retry\",\"reply\":\"req-1\","
				  "\"operator\":\"ota-operator\"}");
	assert_int_equal(proto_control_decode(json, len, &out, NULL), 0);
	assert_memory_equal(&c, &out, sizeof(c));
	free(json);
	json = NULL;
	/* An id that could not be decoded is not encoded either. */
	memcpy(c.reply, "a+b", 4);
	assert_int_equal(proto_control_encode(&c, &json, &len), PROTO_EFIELD);
	assert_null(json);
}

static void test_announce_encode(void **state)
{
	(void)state;
	char *devs[] = {"dev-001", "dev-002"};
	struct proto_announce a = {.devices = devs,
				   .ndevices = 2,
				   .canary_percent = 10,
				   .dry_run = true};
	memcpy(a.url, "file:///p.ota", 14);
	memcpy(a.reply, "req-9", 6);
	char *json = NULL;
	size_t len;
	assert_int_equal(proto_announce_encode(&a, &json, &len), 0);
	assert_string_equal(json,
			    "{\"url\":\"file:///p.ota\",\"devices\":"
			    "[\"dev-001\",\"dev-002\"],\"canary_percent\":10,"
			    "\"reply\":\"req-9\",\"dry_run\":true}");
	free(json);
	struct proto_announce bad = a;
	memcpy(bad.url, "ftp://x", 8);
	assert_int_equal(proto_announce_encode(&bad, &json, &len),
			 PROTO_EFIELD);
	bad = a;
	bad.canary_percent = 101;
	assert_int_equal(proto_announce_encode(&bad, &json, &len),
			 PROTO_ERANGE);
	bad = a;
	memcpy(bad.group, "a/b", 4);
	assert_int_equal(proto_announce_encode(&bad, &json, &len),
			 PROTO_EFIELD);
	bad = a;
	bad.fragment_size = 100;
	assert_int_equal(proto_announce_encode(&bad, &json, &len),
			 PROTO_ERANGE);
	assert_null(json);
}

static void test_verdict_encode(void **state)
{
	(void)state;
	static struct proto_verdict v, out;
	memcpy(v.command, "pause", 6);
	memcpy(v.product, "sensor", 7);
	v.verdict = PROTO_VERDICT_REFUSED;
	v.targets = -1;
	memcpy(v.reason, "no such product", 16);
	char *json = NULL;
	size_t len;
	assert_int_equal(proto_verdict_encode(&v, &json, &len), 0);
	assert_string_equal(json,
			    "{\"command\":\"pause\",\"product\":\"sensor\","
			    "\"verdict\":\"refused\",\"reason\":\"no such "
			    "product\"}");
	assert_int_equal(proto_verdict_decode(json, len, &out, NULL), 0);
	assert_memory_equal(&v, &out, sizeof(v));
	free(json);
	json = NULL;
	memcpy(v.command, "reboot", 7);
	assert_int_equal(proto_verdict_encode(&v, &json, &len), PROTO_EFIELD);
	memcpy(v.command, "pause", 6);
	v.ndevices = PROTO_VERDICT_DEVICES_MAX + 1;
	assert_int_equal(proto_verdict_encode(&v, &json, &len), PROTO_EFIELD);
	v.ndevices = 0;
	v.verdict = (enum proto_verdict_kind)9;
	assert_int_equal(proto_verdict_encode(&v, &json, &len), PROTO_EFIELD);
	assert_null(json);
	assert_string_equal(proto_verdict_name(PROTO_VERDICT_DRY_RUN),
			    "dry_run");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_control_ok),
	    cmocka_unit_test(test_control_bad),
	    cmocka_unit_test(test_control_roundtrip),
	    cmocka_unit_test(test_announce_rollout_fields),
	    cmocka_unit_test(test_poll),
	    cmocka_unit_test(test_announce_restart_spread),
	    cmocka_unit_test(test_manifest_downgrade),
	    cmocka_unit_test(test_control_reply_retry),
	    cmocka_unit_test(test_announce_encode),
	    cmocka_unit_test(test_verdict_encode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
