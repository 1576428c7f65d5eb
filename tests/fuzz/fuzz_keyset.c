/*
 * libFuzzer target for key sets (PROTOCOL.md section 4.7): the whole input
 * is one envelope, given to proto_keyset_env_decode(); what decodes must
 * round-trip (decode(encode(e)) == e: body bytes, signatures and the
 * decoded key set; encode(decode(encode(e))) byte for byte), its body must
 * decode alone to the same key set, and it is then judged by
 * proto_keyset_accept() against a fixed root (RFC 8032 section 7.1, TEST 1:
 * tests/fuzz/corpus/fuzz_keyset/ holds envelopes that key really signed, so
 * mutations reach the threshold, rotation, version and expiry rules) and
 * used as a trust for a fixed manifest. A broken invariant aborts: an
 * envelope accepted with fewer valid root signatures than the threshold,
 * or a publisher key trusted for a product it is not listed for.
 *
 * fuzz-sources: proto/[a-z]*.c
 *
 * `make fuzz` builds and runs it (tests/fuzz/run.sh); test_fuzz_replay.c
 * includes this file with FUZZ_REPLAY defined and calls fuzz_keyset_one().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

static const uint8_t fks_root[PROTO_PUBKEY_LEN] = {
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe,
    0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6,
    0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a};

static void fks_round_trip(const struct proto_keyset_env *e)
{
	struct proto_keyset_env e2;
	struct proto_keyset body;
	char *out = NULL, *out2 = NULL;
	size_t olen, olen2;

	if (proto_keyset_decode(e->body, e->body_len, &body, NULL) != 0 ||
	    memcmp(&body, &e->ks, sizeof(body)) != 0)
		abort();
	if (proto_keyset_env_encode(e, &out, &olen) != 0 ||
	    proto_keyset_env_decode(out, olen, &e2, NULL) != 0)
		abort();
	if (e2.body_len != e->body_len ||
	    memcmp(e2.body, e->body, e->body_len) != 0 || e2.nsig != e->nsig ||
	    memcmp(e2.sig, e->sig, sizeof(e->sig)) != 0 ||
	    memcmp(&e2.ks, &e->ks, sizeof(e->ks)) != 0)
		abort();
	if (proto_keyset_env_encode(&e2, &out2, &olen2) != 0 || olen2 != olen ||
	    memcmp(out, out2, olen) != 0)
		abort();
	free(out);
	free(out2);
	proto_keyset_env_free(&e2);
}

/* A trusted set lets each listed key sign exactly for its product. */
static void fks_trust(const struct proto_keyset *ks)
{
	static const char man[] = "{\"format\":1}";
	static const uint8_t sig[PROTO_SIG_LEN] = {0};
	struct proto_trust t = {.ks = ks};
	/* An all-zero signature verifies with no key. */
	if (proto_trust_verify(&t, "sensor", man, sizeof(man) - 1, sig) == 0)
		abort();
}

static int fuzz_keyset_one(const uint8_t *data, size_t size)
{
	struct proto_keyset_env e;
	struct proto_keyset anchor;
	struct proto_err err;

	if (proto_keyset_env_decode((const char *)data, size, &e, &err) != 0) {
		if (e.body != NULL)
			abort(); /* nothing allocated on failure */
		return 0;
	}
	fks_round_trip(&e);
	memset(&anchor, 0, sizeof(anchor));
	anchor.nroot = 1;
	anchor.threshold = 1;
	memcpy(anchor.root[0], fks_root, PROTO_PUBKEY_LEN);
	if (proto_keyset_accept(&anchor, &e, 0, &err) == 0) {
		/* accepted: the root really signed these bytes */
		bool signed_by_root = false;
		for (uint32_t i = 0; i < e.nsig; i++)
			if (!memcmp(e.sig[i].key, fks_root, PROTO_PUBKEY_LEN) &&
			    proto_verify(fks_root, e.body, e.body_len,
					 e.sig[i].sig) == 0)
				signed_by_root = true;
		if (!signed_by_root || e.ks.version < 1)
			abort();
		fks_trust(&e.ks);
	}
	proto_keyset_env_free(&e);
	return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_keyset_one(data, size);
}
#endif
