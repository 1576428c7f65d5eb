/*
 * The block table: its geometry, its digests, its place in the signed
 * manifest and in the package check, and the offer's table_fragments.
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

/* RFC 8032 test vector 1 */
static const char *const sk1 =
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char *const pk1 =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

static void unhex(const char *s, uint8_t *out, size_t n)
{
	assert_int_equal(proto_hex_decode(s, out, n), 0);
}

static void sha256(const void *buf, size_t len, uint8_t out[32])
{
	unsigned int n = 0;
	assert_int_equal(EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL), 1);
}

static struct proto_manifest manifest(uint64_t size, uint32_t bs)
{
	struct proto_manifest m;
	memset(&m, 0, sizeof(m));
	m.format = 1;
	strcpy(m.product, "sensor");
	strcpy(m.version, "1.2.3");
	m.size = size;
	m.created = 1700000000;
	m.block_size = bs;
	return m;
}

static void test_geometry(void **state)
{
	(void)state;
	struct proto_manifest m = manifest(1, 4096);
	assert_int_equal(proto_block_count(&m), 1);
	assert_int_equal(proto_block_len(&m, 0), 1);
	assert_int_equal(proto_block_len(&m, 1), 0);
	assert_int_equal(proto_table_fragments(&m, 160), 1);

	m = manifest(4096, 4096);
	assert_int_equal(proto_block_count(&m), 1);
	assert_int_equal(proto_block_len(&m, 0), 4096);

	m = manifest(4097, 4096);
	assert_int_equal(proto_block_count(&m), 2);
	assert_int_equal(proto_block_len(&m, 1), 1);

	m = manifest(1 << 20, 4096); /* 256 blocks: 8192 table bytes */
	assert_int_equal(proto_block_count(&m), 256);
	assert_int_equal(proto_table_fragments(&m, 4096), 2);
	assert_int_equal(proto_table_fragments(&m, 512), 16);
	assert_int_equal(proto_table_fragments(&m, 1000), 9);
	assert_int_equal(proto_table_fragments(&m, 65536), 1);

	m = manifest(1 << 20, 0); /* no table */
	assert_int_equal(proto_block_count(&m), 0);
	assert_int_equal(proto_table_fragments(&m, 4096), 0);
	assert_int_equal(proto_block_len(&m, 0), 0);
}

static void test_table_digests(void **state)
{
	(void)state;
	enum { SIZE = 3 * 1024 + 100, BS = 1024 };
	uint8_t *p = malloc(SIZE), table[4 * 32], root[32], want[32];
	assert_non_null(p);
	for (size_t i = 0; i < SIZE; i++)
		p[i] = (uint8_t)(i * 13 + 1);
	struct proto_manifest m = manifest(SIZE, BS);
	assert_int_equal(proto_block_count(&m), 4);
	assert_int_equal(proto_block_table(&m, p, table, root), 0);
	for (int b = 0; b < 4; b++) {
		sha256(p + b * BS, b == 3 ? 100 : BS, want);
		assert_memory_equal(table + b * 32, want, 32);
	}
	sha256(table, sizeof(table), want);
	assert_memory_equal(root, want, 32);
	/* Root only, no table out: the same root. */
	uint8_t root2[32];
	assert_int_equal(proto_block_table(&m, p, NULL, root2), 0);
	assert_memory_equal(root, root2, 32);
	/* One byte changes one entry and the root. */
	p[2 * BS + 5] ^= 1;
	uint8_t table2[4 * 32];
	assert_int_equal(proto_block_table(&m, p, table2, root2), 0);
	assert_memory_equal(table2, table, 64);
	assert_memory_not_equal(table2 + 64, table + 64, 32);
	assert_memory_equal(table2 + 96, table + 96, 32);
	assert_memory_not_equal(root, root2, 32);
	/* No table in the manifest: nothing to compute. */
	m.block_size = 0;
	assert_int_equal(proto_block_table(&m, p, table, root), PROTO_EFIELD);
	free(p);
}

static void test_manifest_fields(void **state)
{
	(void)state;
	struct proto_manifest m = manifest(10000, 4096), d;
	struct proto_err err;
	char *out = NULL;
	size_t len = 0;
	memset(m.sha256, 0xab, 32);
	memset(m.blocks, 0xcd, 32);
	m.downgrade = true;
	memcpy(m.replaces, "9.0.0", 6);
	assert_int_equal(proto_manifest_encode(&m, &out, &len), 0);
	/* block_size and blocks come after created, before downgrade */
	assert_non_null(strstr(out,
			       "\"created\":1700000000,\"block_size\":4096,"
			       "\"blocks\":\"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
			       "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd\","
			       "\"downgrade\":true,\"replaces\":\"9.0.0\"}"));
	assert_int_equal(proto_manifest_decode(out, len, &d, &err), 0);
	assert_int_equal(d.block_size, 4096);
	assert_memory_equal(d.blocks, m.blocks, 32);
	free(out);
	/* Without a table the bytes are what they always were. */
	m.block_size = 0;
	m.downgrade = false;
	m.replaces[0] = '\0';
	assert_int_equal(proto_manifest_encode(&m, &out, &len), 0);
	assert_null(strstr(out, "block"));
	assert_int_equal(proto_manifest_decode(out, len, &d, &err), 0);
	assert_int_equal(d.block_size, 0);
	free(out);
	/* Encode refuses block sizes that are not powers of two in range,
	 * or that make too many blocks. */
	static const uint32_t badbs[] = {256, 4095, 3 << 10, 2u << 20};
	for (size_t i = 0; i < sizeof(badbs) / sizeof(badbs[0]); i++) {
		m = manifest(10000, badbs[i]);
		assert_int_equal(proto_manifest_encode(&m, &out, &len),
				 PROTO_ERANGE);
		assert_null(out);
	}
	m = manifest((uint64_t)1 << 40, 512); /* 2^31 blocks */
	assert_int_equal(proto_manifest_encode(&m, &out, &len), PROTO_ERANGE);
}

static void test_manifest_decode_rejects(void **state)
{
	(void)state;
	static const char *const pre =
	    "{\"format\":1,\"product\":\"sensor\",\"version\":\"1.2.3\","
	    "\"size\":10000,\"sha256\":\"00000000000000000000000000000000"
	    "00000000000000000000000000000000\",\"created\":1";
	static const char *const zeros64 =
	    "0000000000000000000000000000000000000000000000000000000000000000";
	struct {
		const char *tail;
		int rc;
		const char *text;
	} cases[] = {
	    {",\"block_size\":4096}", PROTO_EFIELD, "go together"},
	    {",\"blocks\":\"%s\"}", PROTO_EFIELD, "go together"},
	    {",\"block_size\":4000,\"blocks\":\"%s\"}", PROTO_ERANGE,
	     "power of two"},
	    {",\"block_size\":256,\"blocks\":\"%s\"}", PROTO_ERANGE,
	     "power of two"},
	    {",\"block_size\":\"4096\",\"blocks\":\"%s\"}", PROTO_EFIELD,
	     "not an integer"},
	    {",\"block_size\":4096,\"blocks\":\"00\"}", PROTO_EFIELD,
	     "hex digits"},
	    {",\"block_size\":4096,\"blocks\":7}", PROTO_EFIELD, "blocks"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char tail[256], buf[512];
		struct proto_manifest m;
		struct proto_err err = {{0}};
		snprintf(tail, sizeof(tail), cases[i].tail, zeros64);
		snprintf(buf, sizeof(buf), "%s%s", pre, tail);
		assert_int_equal(proto_manifest_decode(buf, strlen(buf), &m,
						       &err),
				 cases[i].rc);
		if (!strstr(err.text, cases[i].text))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.text,
				 cases[i].text);
	}
}

/* A signed package of `size` bytes with a block table; `lie` flips a bit
 * of the signed table digest (the signature still verifies). */
static uint8_t *package(size_t size, bool lie, size_t *len)
{
	uint8_t sk[32], *payload = malloc(size);
	assert_non_null(payload);
	for (size_t i = 0; i < size; i++)
		payload[i] = (uint8_t)(i * 31 + 7);
	struct proto_manifest m = manifest(size, 1024);
	sha256(payload, size, m.sha256);
	assert_int_equal(proto_block_table(&m, payload, NULL, m.blocks), 0);
	if (lie)
		m.blocks[31] ^= 1;
	char *man = NULL;
	size_t mlen = 0;
	assert_int_equal(proto_manifest_encode(&m, &man, &mlen), 0);
	unhex(sk1, sk, 32);
	*len = PROTO_PKG_HDR_LEN + mlen + PROTO_SIG_LEN + size;
	uint8_t *buf = malloc(*len);
	assert_non_null(buf);
	assert_int_equal(proto_pkg_header_encode(buf, (uint32_t)mlen), 0);
	memcpy(buf + PROTO_PKG_HDR_LEN, man, mlen);
	assert_int_equal(proto_sign(sk, man, mlen,
				    buf + PROTO_PKG_HDR_LEN + mlen),
			 0);
	memcpy(buf + PROTO_PKG_HDR_LEN + mlen + PROTO_SIG_LEN, payload, size);
	free(man);
	free(payload);
	return buf;
}

static void test_pkg_table(void **state)
{
	(void)state;
	uint8_t pk[32], *table = (uint8_t *)1;
	struct proto_manifest m;
	struct proto_pkg_layout lay;
	struct proto_err err = {{0}};
	size_t len;
	unhex(pk1, pk, 32);

	uint8_t *buf = package(5000, false, &len);
	assert_int_equal(proto_pkg_check_table(buf, len, pk, &m, &lay, &table,
					       &err),
			 0);
	assert_non_null(table);
	assert_int_equal(proto_block_count(&m), 5);
	uint8_t want[32];
	sha256(buf + lay.payload_off + 4096, 5000 - 4096, want);
	assert_memory_equal(table + 4 * 32, want, 32);
	sha256(table, 5 * 32, want);
	assert_memory_equal(want, m.blocks, 32);
	free(table);
	/* A changed payload byte: the whole-image digest catches it first. */
	buf[len - 1] ^= 1;
	assert_int_equal(proto_pkg_check(buf, len, pk, NULL, NULL, &err),
			 PROTO_EDIGEST);
	assert_non_null(strstr(err.text, "payload SHA-256"));
	free(buf);

	/* A signed manifest whose table digest is wrong: refused, and no
	 * table is handed back. */
	buf = package(5000, true, &len);
	table = (uint8_t *)1;
	assert_int_equal(proto_pkg_check_table(buf, len, pk, &m, &lay, &table,
					       &err),
			 PROTO_EDIGEST);
	assert_null(table);
	assert_non_null(strstr(err.text, "block table"));
	assert_int_equal(proto_pkg_check(buf, len, pk, NULL, NULL, &err),
			 PROTO_EDIGEST);
	free(buf);
}

static void test_offer_table_fragments(void **state)
{
	(void)state;
	struct proto_offer o = {.manifest = "{}",
				.manifest_len = 2,
				.fragment_size = 4096,
				.fragments = 256,
				.window = 32,
				.table_fragments = 2},
			   d;
	struct proto_err err = {{0}};
	char *out = NULL;
	size_t len;
	strcpy(o.release, "0123456789abcdef");
	assert_int_equal(proto_offer_encode(&o, &out, &len), 0);
	assert_non_null(strstr(out, "\"window\":32,\"table_fragments\":2}"));
	assert_int_equal(proto_offer_decode(out, len, &d, &err), 0);
	assert_int_equal(d.table_fragments, 2);
	proto_offer_free(&d);
	free(out);
	/* Absent: 0, and not encoded. */
	o.table_fragments = 0;
	assert_int_equal(proto_offer_encode(&o, &out, &len), 0);
	assert_null(strstr(out, "table_fragments"));
	assert_int_equal(proto_offer_decode(out, len, &d, &err), 0);
	assert_int_equal(d.table_fragments, 0);
	proto_offer_free(&d);
	free(out);
	/* Table and payload together must fit the 24-bit index. */
	o.fragments = PROTO_FRAGS_MAX;
	o.table_fragments = 1;
	assert_int_equal(proto_offer_encode(&o, &out, &len), PROTO_ERANGE);
	static const char *const big =
	    "{\"release\":\"0123456789abcdef\",\"manifest\":\"{}\",\"sig\":\""
	    "00000000000000000000000000000000000000000000000000000000000000"
	    "000000000000000000000000000000000000000000000000000000000000000"
	    "000\",\"fragment_size\":4096,\"fragments\":16777216,\"window\":1,"
	    "\"table_fragments\":1}";
	assert_int_equal(proto_offer_decode(big, strlen(big), &d, &err),
			 PROTO_ERANGE);
	assert_null(d.manifest);
	static const char *const neg =
	    "{\"release\":\"0123456789abcdef\",\"manifest\":\"{}\",\"sig\":\""
	    "00000000000000000000000000000000000000000000000000000000000000"
	    "000000000000000000000000000000000000000000000000000000000000000"
	    "000\",\"fragment_size\":4096,\"fragments\":1,\"window\":1,"
	    "\"table_fragments\":-1}";
	assert_int_equal(proto_offer_decode(neg, strlen(neg), &d, &err),
			 PROTO_ERANGE);
}

/* The leader epoch (PROTOCOL.md 5.2): round trip, absent is 0 and not
 * encoded, out of range and of the wrong type refused. */
static void test_offer_epoch(void **state)
{
	(void)state;
	struct proto_offer o = {.manifest = "{}",
				.manifest_len = 2,
				.fragment_size = 4096,
				.fragments = 1,
				.window = 32,
				.epoch = 7},
			   d;
	struct proto_err err = {{0}};
	char *out = NULL;
	size_t len;
	strcpy(o.release, "0123456789abcdef");
	assert_int_equal(proto_offer_encode(&o, &out, &len), 0);
	assert_non_null(strstr(out, "\"epoch\":7"));
	assert_int_equal(proto_offer_decode(out, len, &d, &err), 0);
	assert_int_equal(d.epoch, 7);
	proto_offer_free(&d);
	free(out);
	o.epoch = PROTO_EPOCH_MAX;
	assert_int_equal(proto_offer_encode(&o, &out, &len), 0);
	assert_int_equal(proto_offer_decode(out, len, &d, &err), 0);
	assert_int_equal(d.epoch, PROTO_EPOCH_MAX);
	proto_offer_free(&d);
	free(out);
	o.epoch = 0; /* an offer of a gateway without a standby */
	assert_int_equal(proto_offer_encode(&o, &out, &len), 0);
	assert_null(strstr(out, "epoch"));
	assert_int_equal(proto_offer_decode(out, len, &d, &err), 0);
	assert_int_equal(d.epoch, 0);
	proto_offer_free(&d);
	free(out);
#define OFFER_HEAD                                                             \
	"{\"release\":\"0123456789abcdef\",\"manifest\":\"{}\",\"sig\":\""     \
	"00000000000000000000000000000000000000000000000000000000000000"       \
	"000000000000000000000000000000000000000000000000000000000000000"      \
	"000\",\"fragment_size\":4096,\"fragments\":1,\"window\":1,"
	static const char *const bad[] = {
	    OFFER_HEAD "\"epoch\":-1}", OFFER_HEAD "\"epoch\":4294967296}",
	    OFFER_HEAD "\"epoch\":\"3\"}", OFFER_HEAD "\"epoch\":1.5}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(proto_offer_decode(bad[i], strlen(bad[i]), &d,
					       &err) < 0);
		assert_null(d.manifest);
	}
#undef OFFER_HEAD
}

/* Encode o, find want in the text (NULL: no "group" at all), decode it
 * back: the same group flag. */
static void offer_group_roundtrip(const struct proto_offer *o, const char *want)
{
	struct proto_offer d;
	struct proto_err err = {{0}};
	char *out = NULL;
	size_t len;
	assert_int_equal(proto_offer_encode(o, &out, &len), 0);
	if (want)
		assert_non_null(strstr(out, want));
	else
		assert_null(strstr(out, "group"));
	assert_int_equal(proto_offer_decode(out, len, &d, &err), 0);
	assert_int_equal(d.group, o->group);
	proto_offer_free(&d);
	free(out);
}

static void test_offer_group(void **state)
{
	(void)state;
	struct proto_offer o = {.manifest = "{}",
				.manifest_len = 2,
				.fragment_size = 4096,
				.fragments = 8,
				.window = 32,
				.group = true},
			   d;
	struct proto_err err = {{0}};
	char topic[PROTO_GROUP_TOPIC_MAX];
	strcpy(o.release, "0123456789abcdef");
	offer_group_roundtrip(&o, "\"group\":true");
	/* Absent: false, and not encoded. */
	o.group = false;
	offer_group_roundtrip(&o, NULL);
	/* Not a boolean: refused, with the field named. */
	static const char *const bad =
	    "{\"release\":\"0123456789abcdef\",\"manifest\":\"{}\",\"sig\":\""
	    "00000000000000000000000000000000000000000000000000000000000000"
	    "000000000000000000000000000000000000000000000000000000000000000"
	    "000\",\"fragment_size\":4096,\"fragments\":1,\"window\":1,"
	    "\"group\":1}";
	assert_int_equal(proto_offer_decode(bad, strlen(bad), &d, &err),
			 PROTO_EFIELD);
	assert_non_null(strstr(err.text, "group"));
	assert_null(d.manifest);
	/* The topic fits its buffer. */
	assert_int_equal(snprintf(topic, sizeof(topic), PROTO_GROUP_TOPIC_FMT,
				  o.release),
			 (int)strlen("ota/grp/0123456789abcdef/frag"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_geometry),
	    cmocka_unit_test(test_table_digests),
	    cmocka_unit_test(test_manifest_fields),
	    cmocka_unit_test(test_manifest_decode_rejects),
	    cmocka_unit_test(test_pkg_table),
	    cmocka_unit_test(test_offer_table_fragments),
	    cmocka_unit_test(test_offer_group),
	    cmocka_unit_test(test_offer_epoch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
