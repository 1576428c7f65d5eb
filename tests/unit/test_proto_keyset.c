/*
 * Unit tests for the anti-rollback fields of the manifest (replaces,
 * security_version, expires) and for key sets: encode/decode round trips,
 * the root threshold, root rotation, version rollback, expiry, and which
 * publisher key a key set lets sign for which product. Fixed keys only.
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

/* Deterministic keys: private seed i is 32 bytes of (i + 1); the public
 * halves come from OpenSSL once, in the group setup. */
static uint8_t g_priv[6][32], g_pub[6][32];

static int keys_init(void **state)
{
	(void)state;
	for (int i = 0; i < 6; i++) {
		memset(g_priv[i], i + 1, 32);
		EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519,
							   NULL, g_priv[i], 32);
		size_t n = 32;
		if (!k || EVP_PKEY_get_raw_public_key(k, g_pub[i], &n) != 1)
			return -1;
		EVP_PKEY_free(k);
	}
	return 0;
}

/* A key set: roots[] (indices), threshold, publishers key 3 for sensor
 * and key 4 for every product. */
static void ks_make(struct proto_keyset *ks, uint64_t version, const int *roots,
		    uint32_t nroot, uint32_t threshold)
{
	memset(ks, 0, sizeof(*ks));
	ks->version = version;
	ks->created = 1700000000;
	ks->expires = 1900000000;
	ks->threshold = threshold;
	ks->nroot = nroot;
	for (uint32_t i = 0; i < nroot; i++)
		memcpy(ks->root[i], g_pub[roots[i]], 32);
	ks->npub = 2;
	strcpy(ks->pub[0].product, "sensor");
	memcpy(ks->pub[0].key, g_pub[3], 32);
	strcpy(ks->pub[1].product, "*");
	memcpy(ks->pub[1].key, g_pub[4], 32);
}

/* The envelope of ks signed by signers[] (indices); *json new. */
static void env_make(const struct proto_keyset *ks, const int *signers,
		     uint32_t nsig, struct proto_keyset_env *e, char **json)
{
	size_t len;
	memset(e, 0, sizeof(*e));
	assert_int_equal(proto_keyset_encode(ks, &e->body, &e->body_len), 0);
	e->nsig = nsig;
	for (uint32_t i = 0; i < nsig; i++) {
		memcpy(e->sig[i].key, g_pub[signers[i]], 32);
		assert_int_equal(proto_sign(g_priv[signers[i]], e->body,
					    e->body_len, e->sig[i].sig),
				 0);
	}
	assert_int_equal(proto_keyset_env_encode(e, json, &len), 0);
	assert_int_equal(strlen(*json), len);
	proto_keyset_env_free(e);
	/* Decode what travels, as a receiver would. */
	struct proto_err err = {{0}};
	assert_int_equal(proto_keyset_env_decode(*json, len, e, &err), 0);
}

static void anchor(struct proto_keyset *a, const int *roots, uint32_t n,
		   uint32_t threshold)
{
	memset(a, 0, sizeof(*a));
	a->nroot = n;
	a->threshold = threshold;
	for (uint32_t i = 0; i < n; i++)
		memcpy(a->root[i], g_pub[roots[i]], 32);
}

static void test_keyset_round_trip(void **state)
{
	struct proto_keyset ks, back;
	struct proto_err err = {{0}};
	char *a, *b;
	size_t alen, blen;
	const int roots[] = {0, 1};
	(void)state;
	ks_make(&ks, 7, roots, 2, 2);
	assert_int_equal(proto_keyset_encode(&ks, &a, &alen), 0);
	assert_int_equal(proto_keyset_decode(a, alen, &back, &err), 0);
	assert_int_equal(back.version, 7);
	assert_int_equal(back.threshold, 2);
	assert_int_equal(back.npub, 2);
	assert_string_equal(back.pub[1].product, "*");
	assert_int_equal(proto_keyset_encode(&back, &b, &blen), 0);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen); /* deterministic: decode∘encode = id */
	free(a);
	free(b);
}

static void test_keyset_decode_refuses(void **state)
{
	static const char *const bad[] = {
	    "{}",
	    /* unknown member: policy is never half-read */
	    "{\"type\":\"ota-keyset\",\"version\":1,\"created\":1,\"expires\":2,"
	    "\"root\":{\"threshold\":1,\"keys\":[\"" /* 64 zeros */
	    "0000000000000000000000000000000000000000000000000000000000000000"
	    "\"]},\"publishers\":[],\"extra\":1}",
	    /* threshold above the number of root keys */
	    "{\"type\":\"ota-keyset\",\"version\":1,\"created\":1,\"expires\":2,"
	    "\"root\":{\"threshold\":2,\"keys\":[\""
	    "0000000000000000000000000000000000000000000000000000000000000000"
	    "\"]},\"publishers\":[]}",
	    /* expires not after created */
	    "{\"type\":\"ota-keyset\",\"version\":1,\"created\":5,\"expires\":5,"
	    "\"root\":{\"threshold\":1,\"keys\":[\""
	    "0000000000000000000000000000000000000000000000000000000000000000"
	    "\"]},\"publishers\":[]}",
	    /* a product that is not an id */
	    "{\"type\":\"ota-keyset\",\"version\":1,\"created\":1,\"expires\":2,"
	    "\"root\":{\"threshold\":1,\"keys\":[\""
	    "0000000000000000000000000000000000000000000000000000000000000000"
	    "\"]},\"publishers\":[{\"product\":\"a/b\",\"key\":\""
	    "0000000000000000000000000000000000000000000000000000000000000000"
	    "\"}]}",
	    /* wrong type */
	    "{\"type\":\"tuf-root\",\"version\":1,\"created\":1,\"expires\":2,"
	    "\"root\":{\"threshold\":1,\"keys\":[\""
	    "0000000000000000000000000000000000000000000000000000000000000000"
	    "\"]},\"publishers\":[]}",
	};
	struct proto_keyset ks;
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct proto_err err = {{0}};
		assert_true(proto_keyset_decode(bad[i], strlen(bad[i]), &ks,
						&err) < 0);
		assert_true(err.text[0] != '\0');
	}
}

static void test_keyset_threshold(void **state)
{
	struct proto_keyset ks, a;
	struct proto_keyset_env e;
	struct proto_err err = {{0}};
	char *json;
	const int roots[] = {0, 1, 2}, one[] = {0}, two[] = {0, 2},
		  dup[] = {0, 0}, other[] = {0, 5};
	(void)state;
	ks_make(&ks, 1, roots, 3, 2);
	anchor(&a, roots, 3, 2);
	env_make(&ks, one, 1, &e, &json);
	assert_int_equal(proto_keyset_accept(&a, &e, 0, &err), PROTO_ESIG);
	proto_keyset_env_free(&e);
	free(json);
	env_make(&ks, dup, 2, &e, &json); /* one key twice counts once */
	assert_int_equal(proto_keyset_accept(&a, &e, 0, &err), PROTO_ESIG);
	proto_keyset_env_free(&e);
	free(json);
	env_make(&ks, other, 2, &e, &json); /* a key not in the root */
	assert_int_equal(proto_keyset_accept(&a, &e, 0, &err), PROTO_ESIG);
	proto_keyset_env_free(&e);
	free(json);
	env_make(&ks, two, 2, &e, &json);
	assert_int_equal(proto_keyset_accept(&a, &e, 0, &err), 0);
	/* A flipped byte in the signed body breaks every signature. */
	e.body[10] ^= 1;
	assert_int_equal(proto_keyset_accept(&a, &e, 0, &err), PROTO_ESIG);
	proto_keyset_env_free(&e);
	free(json);
}

static void test_keyset_rotation_rollback_expiry(void **state)
{
	struct proto_keyset v1, v2, a;
	struct proto_keyset_env e1, e2;
	struct proto_err err = {{0}};
	char *j1, *j2;
	const int r0[] = {0}, r1[] = {1}, both[] = {0, 1};
	(void)state;
	anchor(&a, r0, 1, 1);
	ks_make(&v1, 1, r0, 1, 1);
	env_make(&v1, r0, 1, &e1, &j1);
	assert_int_equal(proto_keyset_accept(&a, &e1, 1800000000, &err), 0);
	assert_int_equal(proto_keyset_accept(&a, &e1, 1900000000, &err),
			 PROTO_ERANGE); /* expired */
	/* A new root (key 1): signed by the old root only is not enough. */
	ks_make(&v2, 2, r1, 1, 1);
	env_make(&v2, r0, 1, &e2, &j2);
	assert_int_equal(proto_keyset_accept(&e1.ks, &e2, 0, &err), PROTO_ESIG);
	proto_keyset_env_free(&e2);
	free(j2);
	env_make(&v2, both, 2, &e2, &j2);
	assert_int_equal(proto_keyset_accept(&e1.ks, &e2, 0, &err), 0);
	/* Rollback: v1 again after v2. */
	assert_int_equal(proto_keyset_accept(&e2.ks, &e1, 0, &err),
			 PROTO_ESIG); /* and v1 is not signed by key 1 either */
	ks_make(&v1, 1, r1, 1, 1);
	proto_keyset_env_free(&e1);
	free(j1);
	env_make(&v1, r1, 1, &e1, &j1);
	assert_int_equal(proto_keyset_accept(&e2.ks, &e1, 0, &err),
			 PROTO_ERANGE);
	assert_non_null(strstr(err.text, "rollback"));
	proto_keyset_env_free(&e1);
	proto_keyset_env_free(&e2);
	free(j1);
	free(j2);
}

static void test_trust_products(void **state)
{
	struct proto_keyset ks;
	const int r0[] = {0};
	uint8_t sig3[64], sig4[64], sig5[64];
	const char *man = "{\"format\":1}";
	(void)state;
	ks_make(&ks, 1, r0, 1, 1);
	proto_sign(g_priv[3], man, strlen(man), sig3);
	proto_sign(g_priv[4], man, strlen(man), sig4);
	proto_sign(g_priv[5], man, strlen(man), sig5);
	struct proto_trust t = {.ks = &ks};
	assert_int_equal(proto_trust_verify(&t, "sensor", man, strlen(man),
					    sig3),
			 0);
	/* key 3 is for sensor only; key 4 ("*") for every product */
	assert_int_equal(proto_trust_verify(&t, "meter", man, strlen(man),
					    sig3),
			 PROTO_ESIG);
	assert_int_equal(proto_trust_verify(&t, "meter", man, strlen(man),
					    sig4),
			 0);
	assert_int_equal(proto_trust_verify(&t, "sensor", man, strlen(man),
					    sig5),
			 PROTO_ESIG); /* not listed: revoked */
	struct proto_trust one = {.pub = g_pub[5]};
	assert_int_equal(proto_trust_verify(&one, "x", man, strlen(man), sig5),
			 0);
	struct proto_trust none = {0};
	assert_int_equal(proto_trust_verify(&none, "x", man, strlen(man), sig5),
			 PROTO_EKEY);
}

static struct proto_manifest base_manifest(void)
{
	struct proto_manifest m;
	memset(&m, 0, sizeof(m));
	m.format = 1;
	strcpy(m.product, "sensor");
	strcpy(m.version, "1.0.7");
	m.size = 100;
	m.created = 1700000000;
	return m;
}

static void test_manifest_rollback_fields(void **state)
{
	struct proto_manifest m = base_manifest(), back;
	struct proto_err err = {{0}};
	char *out;
	size_t len;
	(void)state;
	m.downgrade = true;
	assert_int_equal(proto_manifest_encode(&m, &out, &len), PROTO_EFIELD);
	strcpy(m.replaces, "1.0.7"); /* not newer than the version */
	assert_int_equal(proto_manifest_encode(&m, &out, &len), PROTO_EVERSION);
	strcpy(m.replaces, "1.2.0");
	m.security_version = 9;
	m.expires = 1700000000; /* not after created */
	assert_int_equal(proto_manifest_encode(&m, &out, &len), PROTO_ERANGE);
	m.expires = 1800000000;
	assert_int_equal(proto_manifest_encode(&m, &out, &len), 0);
	assert_non_null(strstr(out, "\"downgrade\":true,\"replaces\":\"1.2.0\","
				    "\"security_version\":9,\"expires\":"
				    "1800000000}"));
	assert_int_equal(proto_manifest_decode(out, len, &back, &err), 0);
	assert_true(back.downgrade);
	assert_string_equal(back.replaces, "1.2.0");
	assert_int_equal(back.security_version, 9);
	assert_int_equal(back.expires, 1800000000);
	free(out);

	/* Without the new fields, the bytes are what they always were. */
	m = base_manifest();
	assert_int_equal(proto_manifest_encode(&m, &out, &len), 0);
	assert_null(strstr(out, "security_version"));
	assert_null(strstr(out, "expires"));
	free(out);
}

static void test_manifest_rollback_decode_refuses(void **state)
{
	static const char *const bad[] = {
	    /* replaces without downgrade */
	    "{\"format\":1,\"product\":\"s\",\"version\":\"1.0.0\",\"size\":1,"
	    "\"sha256\":\""
	    "00000000000000000000000000000000"
	    "00000000000000000000000000000000"
	    "\",\"created\":5,\"replaces\":\"2.0.0\"}",
	    /* downgrade without replaces */
	    "{\"format\":1,\"product\":\"s\",\"version\":\"1.0.0\",\"size\":1,"
	    "\"sha256\":\""
	    "00000000000000000000000000000000"
	    "00000000000000000000000000000000"
	    "\",\"created\":5,\"downgrade\":true}",
	    /* expires before created */
	    "{\"format\":1,\"product\":\"s\",\"version\":\"1.0.0\",\"size\":1,"
	    "\"sha256\":\""
	    "00000000000000000000000000000000"
	    "00000000000000000000000000000000"
	    "\",\"created\":5,\"expires\":4}",
	    /* security_version out of range */
	    "{\"format\":1,\"product\":\"s\",\"version\":\"1.0.0\",\"size\":1,"
	    "\"sha256\":\""
	    "00000000000000000000000000000000"
	    "00000000000000000000000000000000"
	    "\",\"created\":5,\"security_version\":16777216}",
	};
	struct proto_manifest m;
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct proto_err err = {{0}};
		assert_true(proto_manifest_decode(bad[i], strlen(bad[i]), &m,
						  &err) < 0);
		assert_true(err.text[0] != '\0');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keyset_round_trip),
	    cmocka_unit_test(test_keyset_decode_refuses),
	    cmocka_unit_test(test_keyset_threshold),
	    cmocka_unit_test(test_keyset_rotation_rollback_expiry),
	    cmocka_unit_test(test_trust_products),
	    cmocka_unit_test(test_manifest_rollback_fields),
	    cmocka_unit_test(test_manifest_rollback_decode_refuses),
	};
	return cmocka_run_group_tests(tests, keys_init, NULL);
}
