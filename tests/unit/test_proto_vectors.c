/*
 * Data-driven decoder tests: every file under tests/vectors/<kind>/.
 * ok-*: must decode (and survive an encode/decode round trip);
 * bad-<code>-*: must fail with PROTO_<CODE>. See tests/vectors/README.md.
 */
#include <ctype.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/proto.h"

#define VECTOR_MAX (1024 * 1024)

struct tally {
	int ok;
	int bad;
};

static const char *vectors_dir(void)
{
	const char *d = getenv("OTA_VECTORS");

	return d != NULL && d[0] != '\0' ? d : "tests/vectors";
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	size_t n;

	if (f == NULL)
		fail_msg("cannot open %s", path);
	buf = malloc(VECTOR_MAX + 1);
	assert_non_null(buf);
	n = fread(buf, 1, VECTOR_MAX + 1, f);
	fclose(f);
	if (n > VECTOR_MAX)
		fail_msg("%s: larger than %d bytes", path, VECTOR_MAX);
	*len = n;
	return buf;
}

/* Hex text to bytes in place: whitespace ignored, '#' to end of line is a
 * comment. */
static size_t unhex_text(uint8_t *buf, size_t len, const char *path)
{
	size_t i, out = 0;
	int hi = -1;

	for (i = 0; i < len; i++) {
		int c = buf[i], v;

		if (c == '#') {
			while (i < len && buf[i] != '\n')
				i++;
			continue;
		}
		if (isspace(c))
			continue;
		if (!isxdigit(c))
			fail_msg("%s: bad hex character at byte %zu", path, i);
		v = isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
		if (hi < 0) {
			hi = v;
		} else {
			buf[out++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	if (hi >= 0)
		fail_msg("%s: odd number of hex digits", path);
	return out;
}

/* "bad-erange-..." -> PROTO_ERANGE */
static int expected_code(const char *name)
{
	static const struct {
		const char *name;
		int code;
	} codes[] = {
#define CODE_ENTRY(n, val, text) {#n, val},
	    PROTO_ERRNO_MAP(CODE_ENTRY)
#undef CODE_ENTRY
	};
	const char *p = name + 4; /* after "bad-" */
	const char *dash = strchr(p, '-');
	size_t i, n, k;

	if (dash == NULL)
		fail_msg("%s: name has no bad-<code>-<what> form", name);
	n = (size_t)(dash - p);
	for (i = 0; i < sizeof(codes) / sizeof(*codes); i++) {
		if (strlen(codes[i].name) != n)
			continue;
		for (k = 0; k < n; k++)
			if (tolower((unsigned char)codes[i].name[k]) != p[k])
				break;
		if (k == n)
			return codes[i].code;
	}
	fail_msg("%s: unknown error code in name", name);
	return 0;
}

/* ---- per-kind decode + round trip; each returns the decode result ---- */

static int run_manifest(const uint8_t *buf, size_t len, bool ok)
{
	struct proto_manifest m, m2;
	struct proto_err err;
	char *out;
	size_t olen;
	int rc;

	err.text[0] = '\0';
	rc = proto_manifest_decode((const char *)buf, len, &m, &err);
	if (rc < 0) {
		assert_true(err.text[0] != '\0'); /* every failure says why */
		return rc;
	}
	if (!ok)
		return rc;
	assert_int_equal(proto_manifest_encode(&m, &out, &olen), 0);
	assert_int_equal(proto_manifest_decode(out, olen, &m2, NULL), 0);
	assert_memory_equal(&m, &m2, sizeof(m));
	free(out);
	return 0;
}

static int run_announce(const uint8_t *buf, size_t len, bool ok)
{
	struct proto_announce a;
	struct proto_err err;
	size_t i;
	int rc;

	(void)ok;
	err.text[0] = '\0';
	rc = proto_announce_decode((const char *)buf, len, &a, &err);
	if (rc < 0) {
		assert_true(err.text[0] != '\0');
		assert_null(a.devices);
		return rc;
	}
	assert_true(strncmp(a.url, "file://", 7) == 0 ||
		    strncmp(a.url, "https://", 8) == 0);
	for (i = 0; i < a.ndevices; i++)
		assert_true(proto_id_valid(a.devices[i]));
	/* What decodes encodes again, and decodes to the same. */
	struct proto_announce b;
	char *out = NULL;
	size_t olen;
	assert_int_equal(proto_announce_encode(&a, &out, &olen), 0);
	assert_int_equal(proto_announce_decode(out, olen, &b, NULL), 0);
	assert_string_equal(a.url, b.url);
	assert_string_equal(a.group, b.group);
	assert_string_equal(a.reply, b.reply);
	assert_string_equal(a.operator_name, b.operator_name);
	assert_int_equal(a.dry_run, b.dry_run);
	assert_int_equal(a.no_delta, b.no_delta);
	assert_int_equal(a.ndevices, b.ndevices);
	for (i = 0; i < a.ndevices; i++)
		assert_string_equal(a.devices[i], b.devices[i]);
	assert_int_equal(a.fragment_size, b.fragment_size);
	assert_int_equal(a.window, b.window);
	assert_int_equal(a.concurrency, b.concurrency);
	assert_int_equal(a.canary_percent, b.canary_percent);
	assert_int_equal(a.canary_success_percent, b.canary_success_percent);
	assert_int_equal(a.pause_failure_percent, b.pause_failure_percent);
	free(out);
	proto_announce_free(&b);
	proto_announce_free(&a);
	return 0;
}

static int run_verdict(const uint8_t *buf, size_t len, bool ok)
{
	static struct proto_verdict v, v2;
	struct proto_err err;
	char *out = NULL;
	size_t olen;
	int rc;

	(void)ok;
	err.text[0] = '\0';
	rc = proto_verdict_decode((const char *)buf, len, &v, &err);
	if (rc < 0) {
		assert_true(err.text[0] != '\0');
		return rc;
	}
	assert_int_equal(proto_verdict_encode(&v, &out, &olen), 0);
	assert_int_equal(proto_verdict_decode(out, olen, &v2, NULL), 0);
	assert_memory_equal(&v, &v2, sizeof(v));
	free(out);
	return 0;
}

static int run_offer(const uint8_t *buf, size_t len, bool ok)
{
	struct proto_offer o, o2;
	struct proto_err err;
	char *out;
	size_t olen;
	int rc;

	err.text[0] = '\0';
	rc = proto_offer_decode((const char *)buf, len, &o, &err);
	if (rc < 0) {
		assert_true(err.text[0] != '\0');
		assert_null(o.manifest);
		return rc;
	}
	assert_int_equal(strlen(o.manifest), o.manifest_len);
	if (ok) {
		assert_int_equal(proto_offer_encode(&o, &out, &olen), 0);
		assert_int_equal(proto_offer_decode(out, olen, &o2, NULL), 0);
		assert_string_equal(o2.release, o.release);
		assert_int_equal(o2.manifest_len, o.manifest_len);
		assert_memory_equal(o2.manifest, o.manifest, o.manifest_len);
		assert_memory_equal(o2.sig, o.sig, PROTO_SIG_LEN);
		assert_int_equal(o2.fragment_size, o.fragment_size);
		assert_int_equal(o2.fragments, o.fragments);
		assert_int_equal(o2.window, o.window);
		assert_string_equal(o2.enc_alg, o.enc_alg);
		assert_memory_equal(o2.enc_epk, o.enc_epk, PROTO_EC_PUB_LEN);
		assert_memory_equal(o2.enc_key, o.enc_key,
				    PROTO_ENC_WRAPPED_LEN);
		assert_int_equal(o2.keyset_len, o.keyset_len);
		if (o.keyset)
			assert_memory_equal(o2.keyset, o.keyset, o.keyset_len);
		assert_int_equal(o2.encoding, o.encoding);
		assert_int_equal(o2.payload_size, o.payload_size);
		assert_memory_equal(o2.base, o.base, PROTO_SHA256_LEN);
		assert_string_equal(o2.base_version, o.base_version);
		proto_offer_free(&o2);
		free(out);
	}
	proto_offer_free(&o);
	return 0;
}

/* Key set envelopes: decode, and for good ones encode again to the same
 * signed body and signatures (signatures are not checked here). */
static int run_keyset(const uint8_t *buf, size_t len, bool ok)
{
	struct proto_keyset_env e, e2;
	struct proto_err err;
	char *out;
	size_t olen;
	int rc;

	err.text[0] = '\0';
	rc = proto_keyset_env_decode((const char *)buf, len, &e, &err);
	if (rc < 0) {
		assert_true(err.text[0] != '\0');
		assert_null(e.body);
		return rc;
	}
	if (ok) {
		assert_int_equal(proto_keyset_env_encode(&e, &out, &olen), 0);
		assert_int_equal(proto_keyset_env_decode(out, olen, &e2, NULL),
				 0);
		assert_int_equal(e2.body_len, e.body_len);
		assert_memory_equal(e2.body, e.body, e.body_len);
		assert_int_equal(e2.nsig, e.nsig);
		assert_memory_equal(e2.sig, e.sig, sizeof(e.sig));
		assert_memory_equal(&e2.ks, &e.ks, sizeof(e.ks));
		proto_keyset_env_free(&e2);
		free(out);
	}
	proto_keyset_env_free(&e);
	return 0;
}

static int run_status(const uint8_t *buf, size_t len, bool ok)
{
	struct proto_status s, s2;
	struct proto_err err;
	char *out;
	size_t olen;
	int rc;

	err.text[0] = '\0';
	rc = proto_status_decode((const char *)buf, len, &s, &err);
	if (rc < 0) {
		assert_true(err.text[0] != '\0');
		return rc;
	}
	if (!ok)
		return rc;
	assert_int_equal(proto_status_encode(&s, &out, &olen), 0);
	assert_int_equal(proto_status_decode(out, olen, &s2, NULL), 0);
	assert_string_equal(s2.device, s.device);
	assert_string_equal(s2.product, s.product);
	assert_string_equal(s2.version, s.version);
	assert_string_equal(s2.group, s.group);
	assert_int_equal(s2.state, s.state);
	assert_string_equal(s2.release, s.release);
	assert_true(s2.progress - s.progress < 1e-6 &&
		    s.progress - s2.progress < 1e-6);
	assert_string_equal(s2.error, s.error);
	assert_memory_equal(&s2.timings, &s.timings, sizeof(s.timings));
	assert_int_equal(s2.ts, s.ts);
	assert_int_equal(s2.has_image, s.has_image);
	assert_memory_equal(s2.image, s.image, PROTO_SHA256_LEN);
	free(out);
	return 0;
}

static int run_frag(const uint8_t *buf, size_t len, bool ok)
{
	struct proto_frag f;
	uint8_t hdr[PROTO_FRAG_HDR_LEN];
	int rc;

	rc = proto_frag_decode(buf, len, &f);
	if (rc < 0 || !ok)
		return rc;
	assert_int_equal(f.len, len - PROTO_FRAG_HDR_LEN);
	assert_ptr_equal(f.data, buf + PROTO_FRAG_HDR_LEN);
	assert_int_equal(proto_frag_header_encode(hdr, f.tag, f.index), 0);
	assert_memory_equal(hdr, buf, PROTO_FRAG_HDR_LEN);
	return 0;
}

static int run_ack(const uint8_t *buf, size_t len, bool ok)
{
	struct proto_ack a;
	uint8_t out[PROTO_ACK_MAX_LEN];
	size_t olen;
	int rc;

	rc = proto_ack_decode(buf, len, &a);
	if (rc < 0 || !ok)
		return rc;
	assert_int_equal(proto_ack_encode(&a, out, sizeof(out), &olen), 0);
	assert_int_equal(olen, len);
	assert_memory_equal(out, buf, len);
	return 0;
}

/* ----------------------------------------------------------- driver */

static void run_kind(const char *kind, bool hex,
		     int (*run)(const uint8_t *, size_t, bool))
{
	char dir[4096], path[4096 + 256];
	struct tally t = {0, 0};
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s", vectors_dir(), kind);
	d = opendir(dir);
	if (d == NULL)
		fail_msg("cannot open %s (set OTA_VECTORS or run from the "
			 "repository root)",
			 dir);
	while ((de = readdir(d)) != NULL) {
		bool ok = strncmp(de->d_name, "ok-", 3) == 0;
		bool bad = strncmp(de->d_name, "bad-", 4) == 0;
		uint8_t *buf;
		size_t len;
		int rc, want;

		if (!ok && !bad)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		buf = read_file(path, &len);
		if (hex)
			len = unhex_text(buf, len, path);
		want = ok ? 0 : expected_code(de->d_name);
		rc = run(buf, len, ok);
		free(buf);
		if (rc != want) {
			closedir(d);
			fail_msg("%s: got %d (%s), want %d (%s)", path, rc,
				 proto_strerror(rc), want,
				 proto_strerror(want));
		}
		if (ok)
			t.ok++;
		else
			t.bad++;
	}
	closedir(d);
	/* An empty or missing set of vectors is a failure, not a pass. */
	if (t.ok == 0 || t.bad == 0)
		fail_msg("%s: %d ok and %d bad vectors; need both", dir, t.ok,
			 t.bad);
}

static void test_vectors_manifest(void **state)
{
	(void)state;
	run_kind("manifest", false, run_manifest);
}

static void test_vectors_keyset(void **state)
{
	(void)state;
	run_kind("keyset", false, run_keyset);
}

static void test_vectors_announce(void **state)
{
	(void)state;
	run_kind("announce", false, run_announce);
}

static void test_vectors_verdict(void **state)
{
	(void)state;
	run_kind("verdict", false, run_verdict);
}

static void test_vectors_offer(void **state)
{
	(void)state;
	run_kind("offer", false, run_offer);
}

static void test_vectors_status(void **state)
{
	(void)state;
	run_kind("status", false, run_status);
}

static void test_vectors_frag(void **state)
{
	(void)state;
	run_kind("frag", true, run_frag);
}

static void test_vectors_ack(void **state)
{
	(void)state;
	run_kind("ack", true, run_ack);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors_manifest),
	    cmocka_unit_test(test_vectors_keyset),
	    cmocka_unit_test(test_vectors_announce),
	    cmocka_unit_test(test_vectors_verdict),
	    cmocka_unit_test(test_vectors_offer),
	    cmocka_unit_test(test_vectors_status),
	    cmocka_unit_test(test_vectors_frag),
	    cmocka_unit_test(test_vectors_ack),
	};

	return cmocka_run_group_tests_name("proto_vectors", tests, NULL, NULL);
}
