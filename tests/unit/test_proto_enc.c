/*
 * Unit tests for proto/enc.c: confidential packages (PROTOCOL.md 6.3).
 * Known answers come from an independent implementation of the same
 * text (tests/tools/enc_vector.py, Python 'cryptography').
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/proto.h"

#define REL "eb66cecd2c30a94e"

static const char kat_dev_pub[] =
    "040217e617f0b6443928278f96999e69a23a4f2c152bdf6d6cdf66e5b80282d4ed"
    "194a7debcb97712d2dda3ca85aa8765a56f45fc758599652f2897c65306e5794";
static const char kat_epk[] =
    "04d65a93977caa3d1b081852ff57a79e465f1660577304baead505dd3a48589cf3"
    "50185e895372df6221ea3a137557e473fddb6755f05bd507c3c533fce9c91285";
static const char kat_wrapped[] =
    "cbc6f87b5f491d5bc49a9544ee890d377721fcb0f9f09b16623e3f1e7285721a01"
    "e8cab071864acb11d786791e779069";
static const char kat_sealed[] =
    "10355144d3f72392a80c5263ceae1056e3aa7dd3951617821212aaa83034da53a809"
    "30bd2ba350da6a0e3ff1f469f935e2c60d33fe6683cd991014df472bd8fb057068db"
    "c68bfce9349fa2f0fa0d135fc2540801d2abe1431115e0e14260cd0b2b2a66450826"
    "e01251fa5e732163c5eb882fc6b0b3d9980d2c14105cf79ca3978396bab19f5af2c9"
    "a977a501a4f107ead6237c9cf299de6d3527db7ad6f8880989bf2e1b3e0b19181f14"
    "60a68cbeb879";

/* One-shot seal/open under a raw key, through a proto_aead. */
static int seal(const uint8_t *key, const uint8_t *hdr, uint32_t fs,
		const uint8_t *pt, size_t len, uint8_t *out)
{
	struct proto_aead *a;
	int rc;

	assert_int_equal(proto_aead_new(key, &a), 0);
	rc = proto_frag_seal(a, hdr, fs, pt, len, out);
	proto_aead_free(a);
	return rc;
}

static int open_(const uint8_t *key, const uint8_t *hdr, uint32_t fs,
		 const uint8_t *ct, size_t len, uint8_t *out)
{
	struct proto_aead *a;
	int rc;

	assert_int_equal(proto_aead_new(key, &a), 0);
	rc = proto_frag_open(a, hdr, fs, ct, len, out);
	proto_aead_free(a);
	return rc;
}

static void unhex(const char *s, uint8_t *out, size_t n)
{
	assert_int_equal(strlen(s), 2 * n);
	assert_int_equal(proto_hex_decode(s, out, n), 0);
}

static void ckey_kat(uint8_t ckey[PROTO_ENC_KEY_LEN])
{
	for (int i = 0; i < PROTO_ENC_KEY_LEN; i++)
		ckey[i] = (uint8_t)i;
}

/* The known answer: the same bytes as an independent implementation. */
static void test_wrap_known_answer(void **state)
{
	uint8_t dpriv[32], dpub[65], want_pub[65], eph[32], ckey[32];
	uint8_t epk[65], want_epk[65], w[48], want_w[48], out[32];

	(void)state;
	memset(dpriv, 0x11, sizeof(dpriv));
	memset(eph, 0x22, sizeof(eph));
	ckey_kat(ckey);
	unhex(kat_dev_pub, want_pub, sizeof(want_pub));
	unhex(kat_epk, want_epk, sizeof(want_epk));
	unhex(kat_wrapped, want_w, sizeof(want_w));
	memcpy(dpub, want_pub, sizeof(dpub));
	assert_int_equal(proto_key_wrap(dpub, REL, "dev-001", ckey, eph, epk,
					w),
			 0);
	assert_memory_equal(epk, want_epk, sizeof(epk));
	assert_memory_equal(w, want_w, sizeof(w));
	assert_int_equal(proto_key_unwrap(dpriv, dpub, REL, "dev-001", epk, w,
					  out),
			 0);
	assert_memory_equal(out, ckey, sizeof(out));
}

static void test_frag_known_answer(void **state)
{
	uint8_t ckey[32], hdr[8], data[160], sealed[176], want[176], back[160];

	(void)state;
	ckey_kat(ckey);
	for (int i = 0; i < 160; i++)
		data[i] = (uint8_t)i;
	unhex(kat_sealed, want, sizeof(want));
	assert_int_equal(proto_frag_header_encode(hdr, 0xcdce66ebu, 5), 0);
	assert_int_equal(seal(ckey, hdr, 160, data, 160, sealed), 0);
	assert_memory_equal(sealed, want, sizeof(want));
	assert_int_equal(open_(ckey, hdr, 160, sealed, 176, back), 0);
	assert_memory_equal(back, data, sizeof(back));
}

/* Round trips at several sizes; a resend is the same message. */
static void test_frag_round_trip(void **state)
{
	static const size_t sizes[] = {1, 159, 160, 4096, 65536};
	uint8_t key[32], hdr[8];
	uint8_t *pt = malloc(65536), *ct = malloc(65552), *ct2 = malloc(65552),
		*back = malloc(65536);

	(void)state;
	assert_non_null(pt);
	assert_non_null(ct);
	assert_non_null(ct2);
	assert_non_null(back);
	memset(key, 0xa5, sizeof(key));
	for (size_t i = 0; i < 65536; i++)
		pt[i] = (uint8_t)(i * 7 + 3);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(*sizes); k++) {
		size_t n = sizes[k];
		assert_int_equal(proto_frag_header_encode(hdr, 42, (uint32_t)k),
				 0);
		assert_int_equal(seal(key, hdr, 4096, pt, n, ct), 0);
		assert_int_equal(seal(key, hdr, 4096, pt, n, ct2), 0);
		assert_memory_equal(ct, ct2, n + 16);
		assert_true(n < 16 || memcmp(ct, pt, n) != 0);
		memset(back, 0, n);
		assert_int_equal(open_(key, hdr, 4096, ct, n + 16, back), 0);
		assert_memory_equal(back, pt, n);
	}
	assert_int_equal(seal(key, hdr, 4096, pt, 0, ct), PROTO_ERANGE);
	assert_int_equal(seal(key, hdr, 4096, pt, 65537, ct), PROTO_ERANGE);
	assert_int_equal(open_(key, hdr, 4096, ct, 16, back), PROTO_ERANGE);
	free(pt);
	free(ct);
	free(ct2);
	free(back);
}

/* One context seals many fragments and opens them again, interleaved. */
static void test_aead_reuse(void **state)
{
	struct proto_aead *a, *b;
	uint8_t key[32], hdr[8], pt[1000], ct[1016], once[1016], back[1000];

	(void)state;
	memset(key, 9, sizeof(key));
	memset(pt, 0x33, sizeof(pt));
	assert_int_equal(proto_aead_new(key, &a), 0);
	assert_int_equal(proto_aead_new(key, &b), 0);
	for (uint32_t i = 0; i < 50; i++) {
		assert_int_equal(proto_frag_header_encode(hdr, 77, i), 0);
		pt[0] = (uint8_t)i;
		assert_int_equal(proto_frag_seal(a, hdr, 1000, pt, 1000, ct),
				 0);
		assert_int_equal(seal(key, hdr, 1000, pt, 1000, once), 0);
		assert_memory_equal(ct, once, sizeof(ct));
		assert_int_equal(proto_frag_open(b, hdr, 1000, ct, 1016, back),
				 0);
		assert_memory_equal(back, pt, sizeof(back));
		ct[5] ^= 1;
		assert_int_equal(proto_frag_open(b, hdr, 1000, ct, 1016, back),
				 PROTO_EAUTH);
		/* a context that opened can seal again */
		assert_int_equal(proto_frag_open(a, hdr, 1000, once, 1016,
						 back),
				 0);
	}
	proto_aead_free(a);
	proto_aead_free(b);
	proto_aead_free(NULL);
}

/* Any change to data, tag, header, fragment size or key is refused, and
 * nothing of the plaintext is handed back. */
static void test_frag_tampered(void **state)
{
	uint8_t key[32], key2[32], hdr[8], hdr2[8], pt[300], ct[316], back[300];

	(void)state;
	memset(key, 1, sizeof(key));
	memset(key2, 1, sizeof(key2));
	key2[31] ^= 1;
	memset(pt, 0x5c, sizeof(pt));
	assert_int_equal(proto_frag_header_encode(hdr, 7, 9), 0);
	assert_int_equal(seal(key, hdr, 300, pt, 300, ct), 0);
	for (size_t i = 0; i < sizeof(ct); i += 37) {
		ct[i] ^= 0x01;
		memset(back, 0, sizeof(back));
		assert_int_equal(open_(key, hdr, 300, ct, 316, back),
				 PROTO_EAUTH);
		assert_int_equal(back[0], 0);
		ct[i] ^= 0x01;
	}
	ct[315] ^= 0x80; /* the tag's last byte */
	assert_int_equal(open_(key, hdr, 300, ct, 316, back), PROTO_EAUTH);
	ct[315] ^= 0x80;
	assert_int_equal(open_(key2, hdr, 300, ct, 316, back), PROTO_EAUTH);
	assert_int_equal(proto_frag_header_encode(hdr2, 7, 10), 0);
	assert_int_equal(open_(key, hdr2, 300, ct, 316, back),
			 PROTO_EAUTH); /* moved to another index */
	assert_int_equal(proto_frag_header_encode(hdr2, 8, 9), 0);
	assert_int_equal(open_(key, hdr2, 300, ct, 316, back),
			 PROTO_EAUTH); /* another release's tag */
	assert_int_equal(open_(key, hdr, 512, ct, 316, back),
			 PROTO_EAUTH); /* another fragment size */
	assert_int_equal(open_(key, hdr, 300, ct, 315, back),
			 PROTO_EAUTH); /* truncated */
	assert_int_equal(open_(key, hdr, 300, ct, 316, back), 0);
}

/* A random ephemeral key each time; only the device it was wrapped for,
 * for that release, unwraps it. */
static void test_wrap_wrong_device(void **state)
{
	uint8_t p1[32], q1[65], p2[32], q2[65], ckey[32], out[32];
	uint8_t epk[65], w[48], epk2[65], w2[48];

	(void)state;
	ckey_kat(ckey);
	assert_int_equal(proto_ec_keygen(p1, q1), 0);
	assert_int_equal(proto_ec_keygen(p2, q2), 0);
	assert_int_equal(proto_key_wrap(q1, REL, "dev-001", ckey, NULL, epk, w),
			 0);
	assert_int_equal(proto_key_wrap(q1, REL, "dev-001", ckey, NULL, epk2,
					w2),
			 0);
	assert_memory_not_equal(epk, epk2, sizeof(epk)); /* fresh each time */
	assert_int_equal(proto_key_unwrap(p1, q1, REL, "dev-001", epk, w, out),
			 0);
	assert_memory_equal(out, ckey, sizeof(out));
	memset(out, 0, sizeof(out));
	/* Another device's key pair, even under the same id. */
	assert_int_equal(proto_key_unwrap(p2, q2, REL, "dev-001", epk, w, out),
			 PROTO_EAUTH);
	/* The right key pair for another id or another release. */
	assert_int_equal(proto_key_unwrap(p1, q1, REL, "dev-002", epk, w, out),
			 PROTO_EAUTH);
	assert_int_equal(proto_key_unwrap(p1, q1, "eb66cecd2c30a94f", "dev-001",
					  epk, w, out),
			 PROTO_EAUTH);
	/* Another ephemeral key than the one used. */
	assert_int_equal(proto_key_unwrap(p1, q1, REL, "dev-001", epk2, w, out),
			 PROTO_EAUTH);
	w[47] ^= 1;
	assert_int_equal(proto_key_unwrap(p1, q1, REL, "dev-001", epk, w, out),
			 PROTO_EAUTH);
	w[47] ^= 1;
	w[0] ^= 1;
	assert_int_equal(proto_key_unwrap(p1, q1, REL, "dev-001", epk, w, out),
			 PROTO_EAUTH);
	assert_int_equal(out[0], 0); /* nothing handed out */
}

/* Points not on the curve, compressed points, bad scalars and names. */
static void test_wrap_bad_keys(void **state)
{
	uint8_t p[32], q[65], bad[65], ckey[32], epk[65], w[48], out[32], s[32];

	(void)state;
	ckey_kat(ckey);
	assert_int_equal(proto_ec_keygen(p, q), 0);
	memcpy(bad, q, sizeof(bad));
	bad[64] ^= 1; /* off the curve */
	assert_int_equal(proto_key_wrap(bad, REL, "dev-001", ckey, NULL, epk,
					w),
			 PROTO_EKEY);
	memcpy(bad, q, sizeof(bad));
	bad[0] = 0x02; /* compressed form: refused */
	assert_int_equal(proto_key_wrap(bad, REL, "dev-001", ckey, NULL, epk,
					w),
			 PROTO_EKEY);
	memset(bad, 0, sizeof(bad));
	assert_int_equal(proto_key_wrap(bad, REL, "dev-001", ckey, NULL, epk,
					w),
			 PROTO_EKEY);
	memset(s, 0xff, sizeof(s)); /* not below the group order */
	assert_int_equal(proto_key_wrap(q, REL, "dev-001", ckey, s, epk, w),
			 PROTO_EKEY);
	memset(s, 0, sizeof(s));
	assert_int_equal(proto_key_wrap(q, REL, "dev-001", ckey, s, epk, w),
			 PROTO_EKEY);
	assert_int_equal(proto_key_wrap(q, "EB66CECD2C30A94E", "dev-001", ckey,
					NULL, epk, w),
			 PROTO_EFIELD);
	assert_int_equal(proto_key_wrap(q, REL, "a/b", ckey, NULL, epk, w),
			 PROTO_EFIELD);
	assert_int_equal(proto_key_wrap(q, REL, "dev-001", ckey, NULL, epk, w),
			 0);
	memcpy(bad, epk, sizeof(bad));
	bad[40] ^= 4; /* an epk off the curve */
	assert_int_equal(proto_key_unwrap(p, q, REL, "dev-001", bad, w, out),
			 PROTO_EKEY);
}

/* The offer's "enc" member: encoded, decoded, and refused when bad. */
static void test_offer_enc(void **state)
{
	static const char man[] = "{\"format\":1}";
	struct proto_offer o = {.manifest = (char *)man,
				.manifest_len = sizeof(man) - 1,
				.fragment_size = 4096,
				.fragments = 3,
				.window = 8},
			   d;
	struct proto_err err;
	char *json = NULL;
	size_t len;

	(void)state;
	memcpy(o.release, REL, sizeof(o.release));
	snprintf(o.enc_alg, sizeof(o.enc_alg), "%s", PROTO_ENC_ALG);
	for (int i = 0; i < PROTO_EC_PUB_LEN; i++)
		o.enc_epk[i] = (uint8_t)i;
	memset(o.enc_key, 0xab, sizeof(o.enc_key));
	assert_int_equal(proto_offer_encode(&o, &json, &len), 0);
	assert_non_null(strstr(json, ",\"enc\":{\"alg\":\"" PROTO_ENC_ALG
				     "\",\"epk\":\"000102"));
	assert_int_equal(proto_offer_decode(json, len, &d, &err), 0);
	assert_string_equal(d.enc_alg, PROTO_ENC_ALG);
	assert_memory_equal(d.enc_epk, o.enc_epk, sizeof(d.enc_epk));
	assert_memory_equal(d.enc_key, o.enc_key, sizeof(d.enc_key));
	proto_offer_free(&d);
	free(json);
	/* Without it: enc_alg stays empty. */
	o.enc_alg[0] = '\0';
	assert_int_equal(proto_offer_encode(&o, &json, &len), 0);
	assert_null(strstr(json, "enc"));
	assert_int_equal(proto_offer_decode(json, len, &d, &err), 0);
	assert_string_equal(d.enc_alg, "");
	proto_offer_free(&d);
	free(json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wrap_known_answer),
	    cmocka_unit_test(test_frag_known_answer),
	    cmocka_unit_test(test_frag_round_trip),
	    cmocka_unit_test(test_aead_reuse),
	    cmocka_unit_test(test_frag_tampered),
	    cmocka_unit_test(test_wrap_wrong_device),
	    cmocka_unit_test(test_wrap_bad_keys),
	    cmocka_unit_test(test_offer_enc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
