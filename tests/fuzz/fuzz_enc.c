/*
 * libFuzzer target for confidential packages (proto/enc.c, PROTOCOL.md
 * 6.3). The first input byte, modulo FENC__COUNT, picks what the rest is:
 *
 *   0 an offer (JSON) with or without its "enc" member: whatever decodes
 *     must encode and decode to the same enc_alg, epk and key;
 *   1 unwrap input: epk (65 bytes) || wrapped key (48) || device id, fed
 *     to proto_key_unwrap with a fixed device key pair: it must never
 *     crash, and hand out no key but the known answer's (the only valid
 *     wrap for that pair the fuzzer can know: forging another needs the
 *     ephemeral key's ECDH);
 *   2 a fragment: header (8) || data, sealed with a fixed key and opened
 *     again: the plaintext must come back, and with any byte of the
 *     sealed message changed it must be refused;
 *   3 a sealed fragment as received: header (8) || ciphertext and tag,
 *     opened with the fixed key: never accepted (forging GCM).
 *
 * Seeds: tests/fuzz/corpus/fuzz_enc/. Build and run with
 * `sh tests/fuzz/run.sh 60 fuzz_enc`. With FUZZ_REPLAY defined only
 * fuzz_enc_one() is compiled, for a replay of the corpus.
 *
 * fuzz-sources: proto/[a-z]*.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

enum fenc_sel { FENC_OFFER, FENC_UNWRAP, FENC_ROUND, FENC_OPEN, FENC__COUNT };

static const uint8_t fenc_key[PROTO_ENC_KEY_LEN] = {
    1,	2,  3,	4,  5,	6,  7,	8,  9,	10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static void fenc_offer(const char *buf, size_t len)
{
	struct proto_offer o, o2;
	struct proto_err err;
	char *out = NULL;
	size_t olen;

	if (proto_offer_decode(buf, len, &o, &err) != 0)
		return;
	if (memchr(o.enc_alg, '\0', sizeof(o.enc_alg)) == NULL)
		abort();
	if (proto_offer_encode(&o, &out, &olen) != 0 ||
	    proto_offer_decode(out, olen, &o2, &err) != 0)
		abort();
	if (strcmp(o.enc_alg, o2.enc_alg) != 0 ||
	    memcmp(o.enc_epk, o2.enc_epk, sizeof(o.enc_epk)) != 0 ||
	    memcmp(o.enc_key, o2.enc_key, sizeof(o.enc_key)) != 0)
		abort();
	proto_offer_free(&o2);
	proto_offer_free(&o);
	free(out);
}

static void fenc_unwrap(const uint8_t *p, size_t len)
{
	/* Device private key 32 x 0x11 and its public point (the known
	 * answer of tests/unit/test_proto_enc.c). */
	static const uint8_t priv[PROTO_EC_PRIV_LEN] = {
	    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
	    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
	    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11};
	static const char pub_hex[] =
	    "040217e617f0b6443928278f96999e69a23a4f2c152bdf6d6cdf66e5b8028"
	    "2d4ed194a7debcb97712d2dda3ca85aa8765a56f45fc758599652f2897c6530"
	    "6e5794";
	uint8_t pub[PROTO_EC_PUB_LEN], ck[PROTO_ENC_KEY_LEN];
	char id[PROTO_ID_MAX + 1];
	size_t n;

	if (len < PROTO_EC_PUB_LEN + PROTO_ENC_WRAPPED_LEN ||
	    proto_hex_decode(pub_hex, pub, sizeof(pub)) != 0)
		return;
	n = len - PROTO_EC_PUB_LEN - PROTO_ENC_WRAPPED_LEN;
	if (n > PROTO_ID_MAX)
		n = PROTO_ID_MAX;
	memcpy(id, p + PROTO_EC_PUB_LEN + PROTO_ENC_WRAPPED_LEN, n);
	id[n] = '\0';
	if (proto_key_unwrap(priv, pub, "eb66cecd2c30a94e", id, p,
			     p + PROTO_EC_PUB_LEN, ck) != 0)
		return;
	for (int i = 0; i < PROTO_ENC_KEY_LEN; i++)
		if (ck[i] != i || strcmp(id, "dev-001") != 0)
			abort();
}

static struct proto_aead *fenc_aead(void)
{
	struct proto_aead *a;

	if (proto_aead_new(fenc_key, &a) != 0)
		abort();
	return a;
}

static void fenc_round(const uint8_t *p, size_t len)
{
	struct proto_aead *a;
	uint8_t *ct, *back;
	size_t n;

	if (len < PROTO_FRAG_HDR_LEN + 1 ||
	    len > PROTO_FRAG_HDR_LEN + PROTO_FRAG_SIZE_MAX)
		return;
	n = len - PROTO_FRAG_HDR_LEN;
	ct = malloc(n + PROTO_ENC_TAG_LEN);
	back = malloc(n);
	a = fenc_aead();
	if (!ct || !back)
		abort();
	if (proto_frag_seal(a, p, 4096, p + PROTO_FRAG_HDR_LEN, n, ct) != 0 ||
	    proto_frag_open(a, p, 4096, ct, n + PROTO_ENC_TAG_LEN, back) != 0 ||
	    memcmp(back, p + PROTO_FRAG_HDR_LEN, n) != 0)
		abort();
	ct[p[0] % (n + PROTO_ENC_TAG_LEN)] ^= 0x40;
	if (proto_frag_open(a, p, 4096, ct, n + PROTO_ENC_TAG_LEN, back) !=
	    PROTO_EAUTH)
		abort();
	proto_aead_free(a);
	free(ct);
	free(back);
}

static void fenc_open(const uint8_t *p, size_t len)
{
	struct proto_aead *a;
	uint8_t *out;

	if (len < PROTO_FRAG_HDR_LEN)
		return;
	out = malloc(len + 1);
	a = fenc_aead();
	if (!out)
		abort();
	if (proto_frag_open(a, p, 4096, p + PROTO_FRAG_HDR_LEN,
			    len - PROTO_FRAG_HDR_LEN, out) == 0)
		abort();
	proto_aead_free(a);
	free(out);
}

int fuzz_enc_one(const uint8_t *data, size_t size);

int fuzz_enc_one(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch ((enum fenc_sel)(data[0] % FENC__COUNT)) {
	case FENC_OFFER:
		fenc_offer((const char *)data + 1, size - 1);
		break;
	case FENC_UNWRAP:
		fenc_unwrap(data + 1, size - 1);
		break;
	case FENC_ROUND:
		fenc_round(data + 1, size - 1);
		break;
	case FENC_OPEN:
	case FENC__COUNT:
		fenc_open(data + 1, size - 1);
		break;
	}
	return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_enc_one(data, size);
}
#endif
