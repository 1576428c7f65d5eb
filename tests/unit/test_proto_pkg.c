/*
 * Unit tests for proto/: Ed25519, the manifest, release ids, the package
 * file and proto_pkg_check. Fixed keys only (RFC 8032 test vectors).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "proto/proto.h"

/* RFC 8032 section 7.1, TEST 1 and TEST 2. */
static const char rfc_sk1[] =
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char rfc_pk1[] =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
static const char rfc_sig1[] =
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
    "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
static const char rfc_sk2[] =
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
static const char rfc_pk2[] =
    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
static const char rfc_sig2[] =
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da0"
    "85ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

static void unhex(const char *hex, uint8_t *out, size_t len)
{
	assert_int_equal(proto_hex_decode(hex, out, len), 0);
}

static void test_sign_known_answer(void **state)
{
	uint8_t sk[32], pk[32], sig[64], want[64];
	const uint8_t msg2 = 0x72;

	(void)state;
	unhex(rfc_sk1, sk, 32);
	unhex(rfc_pk1, pk, 32);
	unhex(rfc_sig1, want, 64);
	assert_int_equal(proto_sign(sk, "", 0, sig), 0);
	assert_memory_equal(sig, want, 64);
	assert_int_equal(proto_verify(pk, "", 0, sig), 0);

	unhex(rfc_sk2, sk, 32);
	unhex(rfc_pk2, pk, 32);
	unhex(rfc_sig2, want, 64);
	assert_int_equal(proto_sign(sk, &msg2, 1, sig), 0);
	assert_memory_equal(sig, want, 64);
	assert_int_equal(proto_verify(pk, &msg2, 1, sig), 0);
}

static void test_sign_verify_tamper(void **state)
{
	uint8_t sk[32], pk[32], pk2[32], sig[64];
	char msg[] = "{\"format\":1,\"product\":\"sensor\"}";
	size_t len = strlen(msg), i;

	(void)state;
	unhex(rfc_sk1, sk, 32);
	unhex(rfc_pk1, pk, 32);
	unhex(rfc_pk2, pk2, 32);
	assert_int_equal(proto_sign(sk, msg, len, sig), 0);
	assert_int_equal(proto_verify(pk, msg, len, sig), 0);
	/* deterministic: the same signature twice */
	{
		uint8_t sig2[64];

		assert_int_equal(proto_sign(sk, msg, len, sig2), 0);
		assert_memory_equal(sig, sig2, 64);
	}
	/* every bit of the message matters: flip a few spread out */
	for (i = 0; i < len; i += 7) {
		msg[i] ^= 0x01;
		assert_int_equal(proto_verify(pk, msg, len, sig), PROTO_ESIG);
		msg[i] ^= 0x01;
	}
	/* shorter message */
	assert_int_equal(proto_verify(pk, msg, len - 1, sig), PROTO_ESIG);
	/* flipped bit in the signature, first and last byte */
	sig[0] ^= 0x80;
	assert_int_equal(proto_verify(pk, msg, len, sig), PROTO_ESIG);
	sig[0] ^= 0x80;
	sig[63] ^= 0x01;
	assert_int_equal(proto_verify(pk, msg, len, sig), PROTO_ESIG);
	sig[63] ^= 0x01;
	/* wrong key */
	assert_int_equal(proto_verify(pk2, msg, len, sig), PROTO_ESIG);
	/* still good after all that */
	assert_int_equal(proto_verify(pk, msg, len, sig), 0);
}

static void test_verify_bad_key(void **state)
{
	uint8_t pk[32], sig[64];
	int rc;

	(void)state;
	/* y = 2 is not on the curve: must never verify. */
	memset(pk, 0, sizeof(pk));
	pk[0] = 2;
	memset(sig, 0, sizeof(sig));
	rc = proto_verify(pk, "x", 1, sig);
	assert_true(rc == PROTO_ESIG || rc == PROTO_EKEY);
}

static void test_release_id(void **state)
{
	static const uint8_t want[8] = {0xba, 0x78, 0x16, 0xbf,
					0x8f, 0x01, 0xcf, 0xea};
	uint8_t id[PROTO_RELEASE_ID_LEN];

	(void)state;
	/* SHA-256("abc") = ba7816bf8f01cfea... */
	proto_release_id("abc", 3, id);
	assert_memory_equal(id, want, 8);
	assert_int_equal(proto_release_tag(id), 0xbf1678bau);
	proto_release_id("abd", 3, id);
	assert_memory_not_equal(id, want, 8);
}

static void fill_manifest(struct proto_manifest *m, uint64_t size);

/* The example of proto/PROTOCOL.md section 4: manifest bytes, release id
 * and tag. */
static void test_protocol_md_example(void **state)
{
	static const char want[] =
	    "{\"format\":1,\"product\":\"sensor\",\"version\":\"1.1.0\","
	    "\"size\":10000,\"sha256\":\"6e97d8601cb17906a4819e0fcc8d0315"
	    "0d3e4331353ecaa516c0084cadad54dd\",\"created\":1700000000}";
	struct proto_manifest m;
	uint8_t id[PROTO_RELEASE_ID_LEN];
	char hex[PROTO_RELEASE_HEX_LEN + 1];
	char *out = NULL;
	size_t len = 0;

	(void)state;
	fill_manifest(&m, 10000);
	unhex("6e97d8601cb17906a4819e0fcc8d03150d3e4331353ecaa516c0084cadad54dd",
	      m.sha256, 32);
	assert_int_equal(proto_manifest_encode(&m, &out, &len), 0);
	assert_string_equal(out, want);
	proto_release_id(out, len, id);
	proto_hex_encode(id, sizeof(id), hex);
	assert_string_equal(hex, "eb66cecd2c30a94e");
	assert_int_equal(proto_release_tag(id), 0xcdce66ebu);
	free(out);
}

static void fill_manifest(struct proto_manifest *m, uint64_t size)
{
	size_t i;

	memset(m, 0, sizeof(*m));
	m->format = 1;
	memcpy(m->product, "sensor", 7);
	memcpy(m->version, "1.1.0", 6);
	m->size = size;
	for (i = 0; i < PROTO_SHA256_LEN; i++)
		m->sha256[i] = (uint8_t)(0xa0 + i);
	m->created = 1700000000;
}

static void test_manifest_encode_exact(void **state)
{
	static const char want[] =
	    "{\"format\":1,\"product\":\"sensor\",\"version\":\"1.1.0\","
	    "\"size\":1234,\"sha256\":\"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0"
	    "b1b2b3b4b5b6b7b8b9babbbcbdbebf\",\"created\":1700000000}";
	struct proto_manifest m, d;
	char *out = NULL, *out2 = NULL;
	size_t len = 0, len2 = 0;

	(void)state;
	fill_manifest(&m, 1234);
	assert_int_equal(proto_manifest_encode(&m, &out, &len), 0);
	assert_string_equal(out, want);
	assert_int_equal(len, strlen(want));
	/* deterministic */
	assert_int_equal(proto_manifest_encode(&m, &out2, &len2), 0);
	assert_int_equal(len2, len);
	assert_memory_equal(out, out2, len);
	/* round trip */
	memset(&d, 0xee, sizeof(d));
	assert_int_equal(proto_manifest_decode(out, len, &d, NULL), 0);
	assert_int_equal(d.format, 1);
	assert_string_equal(d.product, "sensor");
	assert_string_equal(d.version, "1.1.0");
	assert_int_equal(d.size, 1234);
	assert_memory_equal(d.sha256, m.sha256, 32);
	assert_int_equal(d.created, 1700000000);
	free(out);
	free(out2);
}

static void test_manifest_encode_rejects(void **state)
{
	struct proto_manifest m;
	char *out = (char *)&m;
	size_t len;

	(void)state;
	fill_manifest(&m, 1);
	m.format = 2;
	assert_int_equal(proto_manifest_encode(&m, &out, &len), PROTO_ERANGE);
	assert_null(out);
	fill_manifest(&m, 1);
	memcpy(m.product, "a/b", 4);
	assert_int_equal(proto_manifest_encode(&m, &out, &len), PROTO_EFIELD);
	fill_manifest(&m, 1);
	memcpy(m.version, "1.1", 4);
	assert_int_equal(proto_manifest_encode(&m, &out, &len), PROTO_EVERSION);
	fill_manifest(&m, 0);
	assert_int_equal(proto_manifest_encode(&m, &out, &len), PROTO_ERANGE);
	fill_manifest(&m, ((uint64_t)1 << 40) + 1);
	assert_int_equal(proto_manifest_encode(&m, &out, &len), PROTO_ERANGE);
	fill_manifest(&m, 1);
	m.created = -1;
	assert_int_equal(proto_manifest_encode(&m, &out, &len), PROTO_ERANGE);
	/* upper size bound itself is fine */
	fill_manifest(&m, (uint64_t)1 << 40);
	assert_int_equal(proto_manifest_encode(&m, &out, &len), 0);
	assert_non_null(strstr(out, "\"size\":1099511627776,"));
	free(out);
}

static void test_manifest_decode_limits(void **state)
{
	struct proto_err err;
	struct proto_manifest m;
	char *big;
	int rc;

	(void)state;
	big = malloc(PROTO_MANIFEST_MAX + 1);
	assert_non_null(big);
	memset(big, ' ', PROTO_MANIFEST_MAX + 1);
	big[0] = '{';
	big[PROTO_MANIFEST_MAX] = '}';
	rc = proto_manifest_decode(big, PROTO_MANIFEST_MAX + 1, &m, &err);
	assert_int_equal(rc, PROTO_ERANGE);
	/* exactly at the limit it parses, then misses its fields */
	big[PROTO_MANIFEST_MAX - 1] = '}';
	rc = proto_manifest_decode(big, PROTO_MANIFEST_MAX, &m, &err);
	assert_int_equal(rc, PROTO_EFIELD);
	assert_string_equal(err.text, "field 'format': missing");
	free(big);
}

/* ------------------------------------------------- packages in memory */

#define PAYLOAD_LEN 1000

struct pkg {
	uint8_t *buf;
	size_t len;
	size_t sig_off;
	size_t payload_off;
};

static void sha256(const void *buf, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	assert_int_equal(EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL), 1);
	assert_int_equal(n, 32);
}

/* A package whose manifest claims PAYLOAD_LEN bytes, signed with RFC 8032
 * key 1, followed by `actual` payload bytes (pattern i*7+3). */
static void build_pkg(struct pkg *p, size_t actual)
{
	struct proto_manifest m;
	uint8_t payload[PAYLOAD_LEN + 16], sk[32];
	char *man = NULL;
	size_t mlen = 0, i;

	assert_true(actual <= sizeof(payload));
	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7 + 3);
	fill_manifest(&m, PAYLOAD_LEN);
	sha256(payload, PAYLOAD_LEN, m.sha256);
	assert_int_equal(proto_manifest_encode(&m, &man, &mlen), 0);
	unhex(rfc_sk1, sk, 32);

	p->sig_off = PROTO_PKG_HDR_LEN + mlen;
	p->payload_off = p->sig_off + PROTO_SIG_LEN;
	p->len = p->payload_off + actual;
	p->buf = malloc(p->len);
	assert_non_null(p->buf);
	assert_int_equal(proto_pkg_header_encode(p->buf, (uint32_t)mlen), 0);
	memcpy(p->buf + PROTO_PKG_HDR_LEN, man, mlen);
	assert_int_equal(proto_sign(sk, man, mlen, p->buf + p->sig_off), 0);
	memcpy(p->buf + p->payload_off, payload, actual);
	free(man);
}

static int check(const struct pkg *p, size_t len, struct proto_err *err)
{
	uint8_t pk[32];

	unhex(rfc_pk1, pk, 32);
	memset(err->text, 0, sizeof(err->text));
	return proto_pkg_check(p->buf, len, pk, NULL, NULL, err);
}

static void test_pkg_header(void **state)
{
	static const uint8_t want[16] = {'O', 'T', 'A',	 'P',  'K', 'G',
					 '0', '1', 0x34, 0x12, 0,   0,
					 64,  0,   0,	 0};
	struct proto_pkg_layout lay;
	struct proto_err err;
	uint8_t hdr[16];

	(void)state;
	assert_int_equal(proto_pkg_header_encode(hdr, 0x1234), 0);
	assert_memory_equal(hdr, want, 16);
	assert_int_equal(proto_pkg_header_decode(hdr, 16, &lay, &err), 0);
	assert_int_equal(lay.manifest_len, 0x1234);
	assert_int_equal(lay.manifest_off, 16);
	assert_int_equal(lay.sig_off, 16 + 0x1234);
	assert_int_equal(lay.payload_off, 16 + 0x1234 + 64);

	assert_int_equal(proto_pkg_header_decode(hdr, 15, &lay, &err),
			 PROTO_ETRUNC);
	assert_int_equal(proto_pkg_header_encode(hdr, 0), PROTO_ERANGE);
	assert_int_equal(proto_pkg_header_encode(hdr, PROTO_MANIFEST_MAX + 1),
			 PROTO_ERANGE);
	assert_int_equal(proto_pkg_header_encode(hdr, PROTO_MANIFEST_MAX), 0);
	assert_int_equal(proto_pkg_header_decode(hdr, 16, &lay, NULL), 0);
	/* manifest_len 16385 */
	hdr[8] = 0x01;
	hdr[9] = 0x40;
	assert_int_equal(proto_pkg_header_decode(hdr, 16, &lay, &err),
			 PROTO_ERANGE);
	assert_non_null(strstr(err.text, "manifest_len 16385"));
	/* manifest_len 0 */
	memset(hdr + 8, 0, 4);
	assert_int_equal(proto_pkg_header_decode(hdr, 16, &lay, &err),
			 PROTO_ERANGE);
	/* sig_len 63 */
	hdr[8] = 1;
	hdr[12] = 63;
	assert_int_equal(proto_pkg_header_decode(hdr, 16, &lay, &err),
			 PROTO_ERANGE);
	assert_non_null(strstr(err.text, "sig_len is 63"));
	/* magic */
	hdr[12] = 64;
	assert_int_equal(proto_pkg_header_decode(hdr, 16, &lay, &err), 0);
	hdr[7] = '2';
	assert_int_equal(proto_pkg_header_decode(hdr, 16, &lay, &err),
			 PROTO_EMAGIC);
}

static void test_pkg_valid(void **state)
{
	struct proto_manifest m;
	struct proto_pkg_layout lay;
	struct proto_err err;
	struct pkg p;
	uint8_t pk[32];

	(void)state;
	build_pkg(&p, PAYLOAD_LEN);
	unhex(rfc_pk1, pk, 32);
	memset(&m, 0, sizeof(m));
	assert_int_equal(proto_pkg_check(p.buf, p.len, pk, &m, &lay, &err), 0);
	assert_int_equal(m.size, PAYLOAD_LEN);
	assert_string_equal(m.product, "sensor");
	assert_string_equal(m.version, "1.1.0");
	assert_int_equal(lay.manifest_off, 16);
	assert_int_equal(lay.sig_off, p.sig_off);
	assert_int_equal(lay.payload_off, p.payload_off);
	assert_int_equal(lay.payload_off + m.size, p.len);
	/* err may be NULL */
	assert_int_equal(proto_pkg_check(p.buf, p.len, pk, NULL, NULL, NULL),
			 0);
	free(p.buf);
}

static void test_pkg_payload_tampered(void **state)
{
	struct proto_err err;
	struct pkg p;

	(void)state;
	build_pkg(&p, PAYLOAD_LEN);
	p.buf[p.payload_off + 500] ^= 0x04;
	assert_int_equal(check(&p, p.len, &err), PROTO_EDIGEST);
	assert_non_null(strstr(err.text, "SHA-256"));
	p.buf[p.payload_off + 500] ^= 0x04;
	p.buf[p.len - 1] ^= 0x80;
	assert_int_equal(check(&p, p.len, &err), PROTO_EDIGEST);
	p.buf[p.len - 1] ^= 0x80;
	assert_int_equal(check(&p, p.len, &err), 0);
	free(p.buf);
}

static void test_pkg_size(void **state)
{
	struct proto_err err;
	struct pkg p;

	(void)state;
	build_pkg(&p, PAYLOAD_LEN + 1);
	assert_int_equal(check(&p, p.len, &err), PROTO_ESIZE);
	assert_string_equal(err.text,
			    "payload is 1 byte longer than signed (1000 bytes)");
	/* twelve more */
	free(p.buf);
	build_pkg(&p, PAYLOAD_LEN + 12);
	assert_int_equal(check(&p, p.len, &err), PROTO_ESIZE);
	assert_non_null(strstr(err.text, "12 bytes longer"));
	/* one and all shorter */
	assert_int_equal(check(&p, p.len - 13, &err), PROTO_ESIZE);
	assert_string_equal(
	    err.text, "payload is 1 byte shorter than signed (1000 bytes)");
	assert_int_equal(check(&p, p.payload_off, &err), PROTO_ESIZE);
	assert_non_null(strstr(err.text, "1000 bytes shorter"));
	assert_int_equal(check(&p, p.len - 12, &err), 0);
	free(p.buf);
}

static void test_pkg_truncated(void **state)
{
	struct proto_err err;
	struct pkg p;

	(void)state;
	build_pkg(&p, PAYLOAD_LEN);
	/* signature cut short, by one byte and by half */
	assert_int_equal(check(&p, p.payload_off - 1, &err), PROTO_ETRUNC);
	assert_non_null(strstr(err.text, "truncated"));
	assert_int_equal(check(&p, p.sig_off + 32, &err), PROTO_ETRUNC);
	/* inside the manifest, inside the header */
	assert_int_equal(check(&p, 40, &err), PROTO_ETRUNC);
	assert_int_equal(check(&p, 15, &err), PROTO_ETRUNC);
	assert_int_equal(check(&p, 0, &err), PROTO_ETRUNC);
	free(p.buf);
}

static void test_pkg_magic(void **state)
{
	struct proto_err err;
	struct pkg p;

	(void)state;
	build_pkg(&p, PAYLOAD_LEN);
	p.buf[0] = 'X';
	assert_int_equal(check(&p, p.len, &err), PROTO_EMAGIC);
	assert_non_null(strstr(err.text, "not an OTA package"));
	free(p.buf);
}

static void test_pkg_manifest_tampered(void **state)
{
	struct proto_err err;
	struct pkg p;
	uint8_t *ver;
	uint8_t pk2[32];

	(void)state;
	build_pkg(&p, PAYLOAD_LEN);
	/* "1.1.0" -> "1.1.1": still a valid manifest, not the signed one */
	ver = memmem(p.buf, p.sig_off, "\"1.1.0\"", 7);
	assert_non_null(ver);
	ver[5] = '1';
	assert_int_equal(check(&p, p.len, &err), PROTO_ESIG);
	assert_string_equal(err.text, "signature does not verify with the "
				      "configured publisher key");
	ver[5] = '0';
	assert_int_equal(check(&p, p.len, &err), 0);
	/* signature flipped */
	p.buf[p.sig_off + 10] ^= 0x10;
	assert_int_equal(check(&p, p.len, &err), PROTO_ESIG);
	p.buf[p.sig_off + 10] ^= 0x10;
	/* another publisher's key */
	unhex(rfc_pk2, pk2, 32);
	assert_int_equal(proto_pkg_check(p.buf, p.len, pk2, NULL, NULL, &err),
			 PROTO_ESIG);
	/* manifest broken as JSON: said so, before the signature */
	p.buf[PROTO_PKG_HDR_LEN] = '[';
	assert_int_equal(check(&p, p.len, &err), PROTO_EJSON);
	assert_non_null(strstr(err.text, "manifest:"));
	free(p.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sign_known_answer),
	    cmocka_unit_test(test_sign_verify_tamper),
	    cmocka_unit_test(test_verify_bad_key),
	    cmocka_unit_test(test_release_id),
	    cmocka_unit_test(test_protocol_md_example),
	    cmocka_unit_test(test_manifest_encode_exact),
	    cmocka_unit_test(test_manifest_encode_rejects),
	    cmocka_unit_test(test_manifest_decode_limits),
	    cmocka_unit_test(test_pkg_header),
	    cmocka_unit_test(test_pkg_valid),
	    cmocka_unit_test(test_pkg_payload_tampered),
	    cmocka_unit_test(test_pkg_size),
	    cmocka_unit_test(test_pkg_truncated),
	    cmocka_unit_test(test_pkg_magic),
	    cmocka_unit_test(test_pkg_manifest_tampered),
	};

	return cmocka_run_group_tests_name("proto_pkg", tests, NULL, NULL);
}
