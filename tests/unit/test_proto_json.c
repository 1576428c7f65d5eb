/*
 * Unit tests for proto/: announcement, offer and status JSON messages.
 * (tests/vectors/ holds the data-driven cases; see test_proto_vectors.c.)
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/proto.h"

static int announce(const char *json, struct proto_announce *a,
		    struct proto_err *err)
{
	return proto_announce_decode(json, strlen(json), a, err);
}

/* ---------------------------------------------------------- announce */

static void test_announce_full(void **state)
{
	static const char json[] =
	    "{\"url\":\"file:///srv/pkg.ota\",\"group\":\"g1\","
	    "\"devices\":[\"d1\",\"d-2\"],\"fragment_size\":4096,"
	    "\"window\":32}";
	struct proto_announce a;
	struct proto_err err;

	(void)state;
	assert_int_equal(announce(json, &a, &err), 0);
	assert_string_equal(a.url, "file:///srv/pkg.ota");
	assert_string_equal(a.group, "g1");
	assert_int_equal(a.ndevices, 2);
	assert_non_null(a.devices);
	assert_string_equal(a.devices[0], "d1");
	assert_string_equal(a.devices[1], "d-2");
	assert_int_equal(a.fragment_size, 4096);
	assert_int_equal(a.window, 32);
	proto_announce_free(&a);
	assert_null(a.devices);
	assert_int_equal(a.ndevices, 0);
	proto_announce_free(&a); /* twice is harmless */
}

static void test_announce_minimal(void **state)
{
	struct proto_announce a;

	(void)state;
	memset(&a, 0x5a, sizeof(a));
	assert_int_equal(announce("{\"url\":\"https://h/p\"}", &a, NULL), 0);
	assert_string_equal(a.url, "https://h/p");
	assert_string_equal(a.group, "");
	assert_null(a.devices);
	assert_int_equal(a.ndevices, 0);
	assert_int_equal(a.fragment_size, 0);
	assert_int_equal(a.window, 0);
	proto_announce_free(&a);
}

static void test_announce_rejects(void **state)
{
	static const struct {
		const char *json;
		int rc;
		const char *text;
	} cases[] = {
	    {"{}", PROTO_EFIELD, "field 'url': missing"},
	    {"{\"url\":\"http://h/p\"}", PROTO_EFIELD,
	     "field 'url': scheme is not file:// or https://"},
	    {"{\"url\":\"file://\"}", PROTO_EFIELD, NULL},
	    {"{\"url\":\"file:///a b\"}", PROTO_EFIELD, NULL},
	    {"{\"url\":7}", PROTO_EFIELD, "field 'url': not a string"},
	    {"{\"url\":\"file:///x\",\"grup\":\"g1\"}", PROTO_EFIELD,
	     "unknown field 'grup'"},
	    {"{\"url\":\"file:///x\",\"group\":\"\"}", PROTO_EFIELD, NULL},
	    {"{\"url\":\"file:///x\",\"devices\":[]}", PROTO_EFIELD, NULL},
	    {"{\"url\":\"file:///x\",\"devices\":\"d1\"}", PROTO_EFIELD,
	     "field 'devices': not an array"},
	    {"{\"url\":\"file:///x\",\"devices\":[\"d1\",\"a/b\"]}",
	     PROTO_EFIELD, "field 'devices': entry 1 is not a device id"},
	    {"{\"url\":\"file:///x\",\"devices\":[\"d1\",5]}", PROTO_EFIELD,
	     NULL},
	    {"{\"url\":\"file:///x\",\"fragment_size\":159}", PROTO_ERANGE,
	     "field 'fragment_size': 159 is not 0 or within 160..65536"},
	    {"{\"url\":\"file:///x\",\"fragment_size\":65537}", PROTO_ERANGE,
	     NULL},
	    {"{\"url\":\"file:///x\",\"fragment_size\":-1}", PROTO_ERANGE,
	     NULL},
	    {"{\"url\":\"file:///x\",\"fragment_size\":4096.0}", PROTO_EFIELD,
	     "field 'fragment_size': not an integer"},
	    {"{\"url\":\"file:///x\",\"window\":257}", PROTO_ERANGE, NULL},
	    {"{\"url\":\"file:///x\",\"window\":-3}", PROTO_ERANGE, NULL},
	    {"{\"url\":\"file:///x\",\"url\":\"file:///y\"}", PROTO_EJSON,
	     NULL},
	    {"[\"url\"]", PROTO_EJSON, "top level is not a JSON object"},
	    {"{\"url\":\"file:///x\"} x", PROTO_EJSON, NULL},
	    {"{\"url\":\"file:///x\\u0000y\"}", PROTO_EJSON, NULL},
	    {"", PROTO_EJSON, "empty message"},
	};
	struct proto_announce a;
	struct proto_err err;
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		memset(&err, 0, sizeof(err));
		rc = announce(cases[i].json, &a, &err);
		if (rc != cases[i].rc)
			fail_msg("case %zu %s: got %d, want %d", i,
				 cases[i].json, rc, cases[i].rc);
		assert_true(err.text[0] != '\0');
		if (cases[i].text != NULL)
			assert_string_equal(err.text, cases[i].text);
		assert_null(a.devices);
		assert_int_equal(a.ndevices, 0);
		/* err == NULL is allowed too */
		assert_int_equal(announce(cases[i].json, &a, NULL),
				 cases[i].rc);
	}
}

static void test_announce_boundaries(void **state)
{
	size_t cap = 64 + 8 * (PROTO_ANNOUNCE_DEVICES_MAX + 1) + 2048, n, i;
	struct proto_announce a;
	struct proto_err err;
	char *json;
	int off;

	(void)state;
	json = malloc(cap);
	assert_non_null(json);

	/* url of exactly PROTO_URL_MAX bytes, then one more */
	off = snprintf(json, cap, "{\"url\":\"file://");
	for (i = 7; i < PROTO_URL_MAX; i++)
		json[off++] = 'a';
	memcpy(json + off, "\"}", 3);
	assert_int_equal(announce(json, &a, &err), 0);
	assert_int_equal(strlen(a.url), PROTO_URL_MAX);
	memcpy(json + off, "a\"}", 4);
	assert_int_equal(announce(json, &a, &err), PROTO_ERANGE);
	assert_string_equal(err.text, "field 'url': 1024 bytes, limit is 1023");

	/* fragment_size 160, 65536, 0; window 256 */
	assert_int_equal(announce("{\"url\":\"file:///x\",\"fragment_size\":"
				  "160,\"window\":256}",
				  &a, &err),
			 0);
	assert_int_equal(a.fragment_size, 160);
	assert_int_equal(a.window, 256);
	assert_int_equal(announce("{\"url\":\"file:///x\",\"fragment_size\":"
				  "65536,\"window\":1}",
				  &a, &err),
			 0);
	assert_int_equal(a.fragment_size, 65536);
	assert_int_equal(announce("{\"url\":\"file:///x\",\"fragment_size\":"
				  "0,\"window\":0}",
				  &a, &err),
			 0);

	/* device lists of PROTO_ANNOUNCE_DEVICES_MAX and one more */
	for (n = PROTO_ANNOUNCE_DEVICES_MAX;
	     n <= PROTO_ANNOUNCE_DEVICES_MAX + 1; n++) {
		off =
		    snprintf(json, cap, "{\"url\":\"file:///x\",\"devices\":[");
		for (i = 0; i < n; i++)
			off += snprintf(json + off, cap - (size_t)off,
					"%s\"d%zu\"", i ? "," : "", i);
		snprintf(json + off, cap - (size_t)off, "]}");
		if (n == PROTO_ANNOUNCE_DEVICES_MAX) {
			assert_int_equal(announce(json, &a, &err), 0);
			assert_int_equal(a.ndevices, n);
			assert_string_equal(a.devices[n - 1], "d4095");
			proto_announce_free(&a);
		} else {
			assert_int_equal(announce(json, &a, &err),
					 PROTO_ERANGE);
			assert_null(a.devices);
		}
	}
	free(json);
}

/* -------------------------------------------------------------- offer */

static const char manifest_json[] =
    "{\"format\":1,\"product\":\"sensor\",\"version\":\"1.1.0\","
    "\"size\":1234,\"sha256\":\"00112233445566778899aabbccddeeff0011223344"
    "5566778899aabbccddeeff\",\"created\":1700000000}";

static void fill_offer(struct proto_offer *o)
{
	size_t i;

	memset(o, 0, sizeof(*o));
	memcpy(o->release, "0123456789abcdef", 17);
	o->manifest = (char *)manifest_json;
	o->manifest_len = strlen(manifest_json);
	for (i = 0; i < PROTO_SIG_LEN; i++)
		o->sig[i] = (uint8_t)i;
	o->fragment_size = 160;
	o->fragments = 8;
	o->window = 32;
}

static void test_offer_round_trip(void **state)
{
	static const char want_head[] =
	    "{\"release\":\"0123456789abcdef\",\"manifest\":\"{\\\"format\\\":1,"
	    "\\\"product\\\":\\\"sensor\\\",";
	static const char want_tail[] =
	    "\",\"sig\":\"000102030405060708090a0b0c0d0e0f101112131415161718"
	    "191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233343536"
	    "3738393a3b3c3d3e3f\",\"fragment_size\":160,\"fragments\":8,"
	    "\"window\":32}";
	struct proto_offer o, d;
	struct proto_err err;
	char *out = NULL;
	size_t len = 0;

	(void)state;
	fill_offer(&o);
	assert_int_equal(proto_offer_encode(&o, &out, &len), 0);
	assert_int_equal(len, strlen(out));
	assert_memory_equal(out, want_head, strlen(want_head));
	assert_string_equal(out + len - strlen(want_tail), want_tail);

	assert_int_equal(proto_offer_decode(out, len, &d, &err), 0);
	assert_string_equal(d.release, o.release);
	assert_int_equal(d.manifest_len, o.manifest_len);
	assert_memory_equal(d.manifest, manifest_json, o.manifest_len);
	assert_int_equal(d.manifest[d.manifest_len], '\0');
	assert_memory_equal(d.sig, o.sig, PROTO_SIG_LEN);
	assert_int_equal(d.fragment_size, 160);
	assert_int_equal(d.fragments, 8);
	assert_int_equal(d.window, 32);
	assert_int_equal(d.restart_spread_ms, 0); /* absent: no spread */
	proto_offer_free(&d);
	assert_null(d.manifest);
	free(out);
}

/* restart_spread_ms: carried when set, 0 .. PROTO_SPREAD_MS_MAX. */
static void test_offer_restart_spread(void **state)
{
	struct proto_offer o, d;
	struct proto_err err;
	char *out = NULL;
	size_t len = 0;

	(void)state;
	fill_offer(&o);
	o.restart_spread_ms = 20000;
	assert_int_equal(proto_offer_encode(&o, &out, &len), 0);
	assert_non_null(strstr(out, "\"restart_spread_ms\":20000"));
	assert_int_equal(proto_offer_decode(out, len, &d, &err), 0);
	assert_int_equal(d.restart_spread_ms, 20000);
	proto_offer_free(&d);
	/* One past the limit, in the text: refused. */
	char *p = strstr(out, "20000");
	char bad[4096];
	snprintf(bad, sizeof(bad), "%.*s3600001%s", (int)(p - out), out, p + 5);
	assert_int_equal(proto_offer_decode(bad, strlen(bad), &d, &err),
			 PROTO_ERANGE);
	snprintf(bad, sizeof(bad), "%.*s\"20\"%s", (int)(p - out), out, p + 5);
	assert_int_equal(proto_offer_decode(bad, strlen(bad), &d, &err),
			 PROTO_EFIELD);
	free(out);
	o.restart_spread_ms = PROTO_SPREAD_MS_MAX + 1;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_ERANGE);
}

static void test_offer_verbatim_bytes(void **state)
{
	/* Whitespace, escapes and non-ASCII survive byte for byte: they are
	 * what the signature covers. */
	static const char odd[] = "{ \"a\" : \"\\u00e9\\n/\xc3\xa9\" }\n";
	struct proto_offer o, d;
	char *out = NULL;
	size_t len = 0;

	(void)state;
	fill_offer(&o);
	o.manifest = (char *)odd;
	o.manifest_len = strlen(odd);
	assert_int_equal(proto_offer_encode(&o, &out, &len), 0);
	assert_int_equal(proto_offer_decode(out, len, &d, NULL), 0);
	assert_int_equal(d.manifest_len, strlen(odd));
	assert_memory_equal(d.manifest, odd, strlen(odd));
	proto_offer_free(&d);
	free(out);
}

static void test_offer_encode_rejects(void **state)
{
	struct proto_offer o;
	char *out = (char *)&o;
	size_t len;

	(void)state;
	fill_offer(&o);
	memcpy(o.release, "0123456789ABCDEF", 17);
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_EFIELD);
	assert_null(out);
	fill_offer(&o);
	o.release[15] = '\0';
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_EFIELD);
	fill_offer(&o);
	o.manifest = NULL;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_EFIELD);
	fill_offer(&o);
	o.manifest_len = PROTO_MANIFEST_MAX + 1;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_EFIELD);
	fill_offer(&o);
	o.manifest = (char *)"ab\0cd";
	o.manifest_len = 5;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_EFIELD);
	fill_offer(&o);
	o.manifest = (char *)"\xff\xfe";
	o.manifest_len = 2;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_EFIELD);
	fill_offer(&o);
	o.fragment_size = 159;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_ERANGE);
	fill_offer(&o);
	o.fragment_size = 65537;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_ERANGE);
	fill_offer(&o);
	o.fragments = 0;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_ERANGE);
	fill_offer(&o);
	o.fragments = PROTO_FRAGS_MAX + 1;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_ERANGE);
	fill_offer(&o);
	o.window = 0;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_ERANGE);
	fill_offer(&o);
	o.window = PROTO_WINDOW_MAX + 1;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_ERANGE);
	fill_offer(&o);
	o.fragments = PROTO_FRAGS_MAX;
	o.window = PROTO_WINDOW_MAX;
	o.fragment_size = PROTO_FRAG_SIZE_MAX;
	assert_int_equal(proto_offer_encode(&o, &out, &len), 0);
	free(out);
}

static void test_offer_decode_manifest_limit(void **state)
{
	struct proto_offer o, d;
	struct proto_err err;
	char *man, *out = NULL;
	size_t len = 0;

	(void)state;
	man = malloc(PROTO_MANIFEST_MAX + 2);
	assert_non_null(man);
	memset(man, 'm', PROTO_MANIFEST_MAX + 1);
	man[PROTO_MANIFEST_MAX + 1] = '\0';
	fill_offer(&o);
	o.manifest = man;
	o.manifest_len = PROTO_MANIFEST_MAX;
	assert_int_equal(proto_offer_encode(&o, &out, &len), 0);
	assert_int_equal(proto_offer_decode(out, len, &d, &err), 0);
	assert_int_equal(d.manifest_len, PROTO_MANIFEST_MAX);
	proto_offer_free(&d);
	free(out);

	/* one byte more, hand-built since the encoder refuses it */
	out = malloc(PROTO_MANIFEST_MAX + 512);
	assert_non_null(out);
	len = (size_t)snprintf(out, PROTO_MANIFEST_MAX + 512,
			       "{\"release\":\"0123456789abcdef\","
			       "\"manifest\":\"%s\",\"sig\":\"%0128d\","
			       "\"fragment_size\":160,\"fragments\":8,"
			       "\"window\":32}",
			       man, 0);
	assert_int_equal(proto_offer_decode(out, len, &d, &err), PROTO_ERANGE);
	assert_string_equal(err.text,
			    "field 'manifest': 16385 bytes, must be 1..16384");
	assert_null(d.manifest);
	free(out);
	free(man);
}

/* ------------------------------------------------------------- status */

static void test_status_init(void **state)
{
	struct proto_status s;

	(void)state;
	memset(&s, 0x7f, sizeof(s));
	proto_status_init(&s);
	assert_string_equal(s.device, "");
	assert_string_equal(s.group, "");
	assert_string_equal(s.release, "");
	assert_string_equal(s.error, "");
	assert_true(s.progress < 0);
	assert_int_equal(s.timings.download_ms, -1);
	assert_int_equal(s.timings.verify_ms, -1);
	assert_int_equal(s.timings.install_ms, -1);
	assert_int_equal(s.timings.restart_ms, -1);
	assert_int_equal(s.timings.total_ms, -1);
	assert_int_equal(s.ts, 0);
}

static void fill_status(struct proto_status *s)
{
	proto_status_init(s);
	memcpy(s->device, "d1", 3);
	memcpy(s->product, "sensor", 7);
	memcpy(s->version, "1.0.0", 6);
}

static void test_status_encode_minimal(void **state)
{
	struct proto_status s;
	char *out = NULL;
	size_t len = 0;

	(void)state;
	fill_status(&s);
	assert_int_equal(proto_status_encode(&s, &out, &len), 0);
	assert_string_equal(out, "{\"device\":\"d1\",\"product\":\"sensor\","
				 "\"version\":\"1.0.0\",\"state\":\"idle\"}");
	assert_int_equal(len, strlen(out));
	free(out);

	/* The Last Will */
	s.state = PROTO_ST_OFFLINE;
	assert_int_equal(proto_status_encode(&s, &out, &len), 0);
	assert_string_equal(out,
			    "{\"device\":\"d1\",\"product\":\"sensor\","
			    "\"version\":\"1.0.0\",\"state\":\"offline\"}");
	free(out);
}

static void test_status_encode_full(void **state)
{
	struct proto_status s, d;
	char *out = NULL;
	size_t len = 0;

	(void)state;
	fill_status(&s);
	memcpy(s.group, "g1", 3);
	s.state = PROTO_ST_DOWNLOADING;
	memcpy(s.release, "0123456789abcdef", 17);
	s.progress = 0.42;
	memcpy(s.error, "disk \"full\"", 12);
	s.timings.download_ms = 1500;
	s.timings.total_ms = 0;
	s.ts = 1700000000123;
	assert_int_equal(proto_status_encode(&s, &out, &len), 0);
	assert_string_equal(
	    out, "{\"device\":\"d1\",\"product\":\"sensor\",\"version\":"
		 "\"1.0.0\",\"group\":\"g1\",\"state\":\"downloading\","
		 "\"release\":\"0123456789abcdef\",\"progress\":0.42,"
		 "\"error\":\"disk \\\"full\\\"\",\"timings\":"
		 "{\"download_ms\":1500,\"total_ms\":0},"
		 "\"ts\":1700000000123}");

	memset(&d, 0x33, sizeof(d));
	assert_int_equal(proto_status_decode(out, len, &d, NULL), 0);
	assert_string_equal(d.device, "d1");
	assert_string_equal(d.product, "sensor");
	assert_string_equal(d.version, "1.0.0");
	assert_string_equal(d.group, "g1");
	assert_int_equal(d.state, PROTO_ST_DOWNLOADING);
	assert_string_equal(d.release, "0123456789abcdef");
	assert_true(d.progress > 0.42 - 1e-9 && d.progress < 0.42 + 1e-9);
	assert_string_equal(d.error, "disk \"full\"");
	assert_int_equal(d.timings.download_ms, 1500);
	assert_int_equal(d.timings.verify_ms, -1);
	assert_int_equal(d.timings.install_ms, -1);
	assert_int_equal(d.timings.restart_ms, -1);
	assert_int_equal(d.timings.total_ms, 0);
	assert_int_equal(d.ts, 1700000000123);
	free(out);
}

static void test_status_decode_absent(void **state)
{
	static const char json[] =
	    "{\"device\":\"d1\",\"product\":\"sensor\","
	    "\"version\":\"2.0.0\",\"state\":\"committed\","
	    "\"future\":{\"x\":[1,2]}}";
	struct proto_status s;

	(void)state;
	memset(&s, 0x44, sizeof(s)); /* garbage in: absent values out */
	assert_int_equal(proto_status_decode(json, strlen(json), &s, NULL), 0);
	assert_int_equal(s.state, PROTO_ST_COMMITTED);
	assert_string_equal(s.version, "2.0.0");
	assert_string_equal(s.group, "");
	assert_string_equal(s.release, "");
	assert_string_equal(s.error, "");
	assert_true(s.progress < 0);
	assert_int_equal(s.timings.download_ms, -1);
	assert_int_equal(s.timings.total_ms, -1);
	assert_int_equal(s.ts, 0);
}

static void test_status_progress_bounds(void **state)
{
	static const struct {
		const char *p;
		int rc;
	} cases[] = {
	    {"0", 0},
	    {"1", 0},
	    {"0.0", 0},
	    {"1.0", 0},
	    {"0.5", 0},
	    {"1.0001", PROTO_ERANGE},
	    {"-0.1", PROTO_ERANGE},
	    {"2", PROTO_ERANGE},
	    {"1e400", PROTO_EJSON},
	    {"\"0.5\"", PROTO_EFIELD},
	    {"null", PROTO_EFIELD},
	    {"true", PROTO_EFIELD},
	};
	struct proto_status s;
	char json[256];
	size_t i;
	int n, rc;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		n = snprintf(json, sizeof(json),
			     "{\"device\":\"d1\",\"product\":\"p\",\"version\":"
			     "\"1.0.0\",\"state\":\"downloading\","
			     "\"progress\":%s}",
			     cases[i].p);
		rc = proto_status_decode(json, (size_t)n, &s, NULL);
		if (rc != cases[i].rc)
			fail_msg("progress %s: got %d, want %d", cases[i].p, rc,
				 cases[i].rc);
	}
}

/* progress carries 6 decimal places: the decoder rounds as the encoder
 * does, so decode(encode(decode(x))) == decode(x) exactly (issue 19: a
 * status with progress 0.4200000000123 did not survive a round trip). */
static void test_status_progress_precision(void **state)
{
	static const struct {
		const char *in, *out;
		double want;
	} cases[] = {
	    {"0.4200000000123", "0.42", 0.42},
	    {"0.3333333333", "0.333333", 0.333333},
	    {"0.9999996", "1.0", 1.0},
	    {"0.0000004", "0.0", 0.0},
	    {"0.000123", "0.000123", 0.000123},
	    {"1e-6", "1e-6", 0.000001},
	    {"1", "1.0", 1.0},
	};
	struct proto_status s, d;
	char json[256], want[64], *out = NULL;
	size_t i, len;
	int n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		n = snprintf(json, sizeof(json),
			     "{\"device\":\"d1\",\"product\":\"p\",\"version\":"
			     "\"1.0.0\",\"state\":\"downloading\","
			     "\"progress\":%s}",
			     cases[i].in);
		assert_int_equal(proto_status_decode(json, (size_t)n, &s, NULL),
				 0);
		if (s.progress != cases[i].want)
			fail_msg("progress %s: decoded %.17g, want %.17g",
				 cases[i].in, s.progress, cases[i].want);
		assert_int_equal(proto_status_encode(&s, &out, &len), 0);
		snprintf(want, sizeof(want), "\"progress\":%s}", cases[i].out);
		if (strstr(out, want) == NULL)
			fail_msg("progress %s: encoded %s, want %s",
				 cases[i].in, out, want);
		assert_int_equal(proto_status_decode(out, len, &d, NULL), 0);
		assert_true(d.progress == s.progress);
		free(out);
	}
	/* the encoder rounds a value the device computed the same way */
	fill_status(&s);
	s.state = PROTO_ST_DOWNLOADING;
	s.progress = 1.0 / 3.0;
	assert_int_equal(proto_status_encode(&s, &out, &len), 0);
	assert_non_null(strstr(out, "\"progress\":0.333333}"));
	assert_int_equal(proto_status_decode(out, len, &d, NULL), 0);
	assert_true(d.progress == 0.333333);
	free(out);
}

static void test_status_encode_rejects(void **state)
{
	struct proto_status s;
	char *out = (char *)&s;
	size_t len;

	(void)state;
	fill_status(&s);
	s.progress = 1.5;
	assert_int_equal(proto_status_encode(&s, &out, &len), PROTO_ERANGE);
	assert_null(out);
	s.progress = NAN;
	assert_int_equal(proto_status_encode(&s, &out, &len), PROTO_ERANGE);
	fill_status(&s);
	s.device[0] = '\0';
	assert_int_equal(proto_status_encode(&s, &out, &len), PROTO_EFIELD);
	fill_status(&s);
	memcpy(s.version, "1.0", 4);
	assert_int_equal(proto_status_encode(&s, &out, &len), PROTO_EVERSION);
	fill_status(&s);
	s.state = PROTO_ST__COUNT;
	assert_int_equal(proto_status_encode(&s, &out, &len), PROTO_EFIELD);
	fill_status(&s);
	memcpy(s.release, "0123", 5);
	assert_int_equal(proto_status_encode(&s, &out, &len), PROTO_EFIELD);
	fill_status(&s);
	memcpy(s.group, ".g", 3);
	assert_int_equal(proto_status_encode(&s, &out, &len), PROTO_EFIELD);
	fill_status(&s);
	memset(s.error, 'e', sizeof(s.error)); /* not NUL-terminated */
	assert_int_equal(proto_status_encode(&s, &out, &len), PROTO_ERANGE);
	/* error text cut inside a UTF-8 sequence: sent as ASCII with '?' */
	fill_status(&s);
	s.state = PROTO_ST_FAILED;
	memcpy(s.error, "caf\xc3\xa9 disk \xc3", 12);
	assert_int_equal(proto_status_encode(&s, &out, &len), 0);
	assert_non_null(strstr(out, "\"error\":\"caf?? disk ?\""));
	free(out);
	memcpy(s.error, "caf\xc3\xa9", 6); /* valid UTF-8 kept as is */
	assert_int_equal(proto_status_encode(&s, &out, &len), 0);
	assert_non_null(strstr(out, "\"error\":\"caf\xc3\xa9\""));
	free(out);
	/* any negative timing is "not measured" (a clock step must not lose
	 * the status) */
	fill_status(&s);
	s.timings.verify_ms = -2;
	s.timings.install_ms = 5;
	assert_int_equal(proto_status_encode(&s, &out, &len), 0);
	assert_non_null(strstr(out, "\"timings\":{\"install_ms\":5}"));
	free(out);
	fill_status(&s);
	s.timings.total_ms = INT64_MIN;
	assert_int_equal(proto_status_encode(&s, &out, &len), 0);
	assert_null(strstr(out, "timings"));
	free(out);
	fill_status(&s);
	s.ts = -5;
	assert_int_equal(proto_status_encode(&s, &out, &len), PROTO_ERANGE);
	/* error of exactly PROTO_ERROR_MAX bytes is fine */
	fill_status(&s);
	memset(s.error, 'e', PROTO_ERROR_MAX);
	s.error[PROTO_ERROR_MAX] = '\0';
	s.state = PROTO_ST_FAILED;
	assert_int_equal(proto_status_encode(&s, &out, &len), 0);
	{
		struct proto_status d;

		assert_int_equal(proto_status_decode(out, len, &d, NULL), 0);
		assert_int_equal(strlen(d.error), PROTO_ERROR_MAX);
	}
	free(out);
}

static void test_status_every_state(void **state)
{
	struct proto_status s, d;
	char *out;
	size_t len;
	int i;

	(void)state;
	for (i = 0; i < PROTO_ST__COUNT; i++) {
		fill_status(&s);
		s.state = (enum proto_state)i;
		assert_int_equal(proto_status_encode(&s, &out, &len), 0);
		assert_non_null(strstr(out, proto_state_name(s.state)));
		assert_int_equal(proto_status_decode(out, len, &d, NULL), 0);
		assert_int_equal(d.state, i);
		free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_announce_full),
	    cmocka_unit_test(test_announce_minimal),
	    cmocka_unit_test(test_announce_rejects),
	    cmocka_unit_test(test_announce_boundaries),
	    cmocka_unit_test(test_offer_round_trip),
	    cmocka_unit_test(test_offer_restart_spread),
	    cmocka_unit_test(test_offer_verbatim_bytes),
	    cmocka_unit_test(test_offer_encode_rejects),
	    cmocka_unit_test(test_offer_decode_manifest_limit),
	    cmocka_unit_test(test_status_init),
	    cmocka_unit_test(test_status_encode_minimal),
	    cmocka_unit_test(test_status_encode_full),
	    cmocka_unit_test(test_status_decode_absent),
	    cmocka_unit_test(test_status_progress_bounds),
	    cmocka_unit_test(test_status_progress_precision),
	    cmocka_unit_test(test_status_encode_rejects),
	    cmocka_unit_test(test_status_every_state),
	};

	return cmocka_run_group_tests_name("proto_json", tests, NULL, NULL);
}
