/*
 * proto/crypto.c: SHA-256, release ids and Ed25519 through OpenSSL 3 EVP.
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "proto/internal.h"

int proto_sha256(const void *buf, size_t len, uint8_t out[PROTO_SHA256_LEN])
{
	unsigned int outlen = 0;

	if (buf == NULL)
		buf = "";
	if (EVP_Digest(buf, len, out, &outlen, EVP_sha256(), NULL) != 1 ||
	    outlen != PROTO_SHA256_LEN) {
		ERR_clear_error();
		return PROTO_ECRYPTO;
	}
	return 0;
}

void proto_release_id(const void *manifest, size_t len,
		      uint8_t id[PROTO_RELEASE_ID_LEN])
{
	uint8_t md[PROTO_SHA256_LEN];

	/* SHA-256 only fails when the library cannot allocate; an all-zero
	 * id then matches no real release. */
	if (proto_sha256(manifest, len, md) < 0)
		memset(md, 0, sizeof(md));
	memcpy(id, md, PROTO_RELEASE_ID_LEN);
}

uint32_t proto_release_tag(const uint8_t id[PROTO_RELEASE_ID_LEN])
{
	return (uint32_t)id[0] | (uint32_t)id[1] << 8 | (uint32_t)id[2] << 16 |
	       (uint32_t)id[3] << 24;
}

/* A new Ed25519 key (the private one to sign, else the public one) and a
 * new context set up to sign or verify with it. Both are the caller's to
 * free through ed25519_end, on failure too. */
static int ed25519_begin(bool sign, const uint8_t *key, EVP_PKEY **pkey,
			 EVP_MD_CTX **ctx)
{
	*pkey = sign ? EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, key,
						    PROTO_PRIVKEY_LEN)
		     : EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key,
						   PROTO_PUBKEY_LEN);
	if (*pkey == NULL)
		return PROTO_EKEY;
	if ((*ctx = EVP_MD_CTX_new()) == NULL)
		return PROTO_ENOMEM;
	if ((sign ? EVP_DigestSignInit(*ctx, NULL, NULL, NULL, *pkey)
		  : EVP_DigestVerifyInit(*ctx, NULL, NULL, NULL, *pkey)) != 1)
		return PROTO_ECRYPTO;
	return 0;
}

/* Frees what ed25519_begin made; rc passes through (on failure, with
 * OpenSSL's error queue cleared). */
static int ed25519_end(int rc, EVP_PKEY *pkey, EVP_MD_CTX *ctx)
{
	if (rc != 0)
		ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return rc;
}

int proto_sign(const uint8_t priv[PROTO_PRIVKEY_LEN], const void *msg,
	       size_t len, uint8_t sig[PROTO_SIG_LEN])
{
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *ctx = NULL;
	size_t siglen = PROTO_SIG_LEN;
	int rc = ed25519_begin(true, priv, &pkey, &ctx);

	if (rc == 0 &&
	    (EVP_DigestSign(ctx, sig, &siglen, msg ? msg : "", len) != 1 ||
	     siglen != PROTO_SIG_LEN))
		rc = PROTO_ECRYPTO;
	return ed25519_end(rc, pkey, ctx);
}

int proto_verify(const uint8_t pub[PROTO_PUBKEY_LEN], const void *msg,
		 size_t len, const uint8_t sig[PROTO_SIG_LEN])
{
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *ctx = NULL;
	int rc = ed25519_begin(false, pub, &pkey, &ctx);

	/* 1 = valid; 0 = does not verify; < 0 = the library could not
	 * tell (e.g. a public key that is not a curve point). Only 1 is
	 * ever accepted. */
	if (rc == 0 &&
	    EVP_DigestVerify(ctx, sig, PROTO_SIG_LEN, msg ? msg : "", len) != 1)
		rc = PROTO_ESIG;
	return ed25519_end(rc, pkey, ctx);
}
