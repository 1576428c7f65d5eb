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

int proto_sign(const uint8_t priv[PROTO_PRIVKEY_LEN], const void *msg,
	       size_t len, uint8_t sig[PROTO_SIG_LEN])
{
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *ctx = NULL;
	size_t siglen = PROTO_SIG_LEN;
	int rc;

	if (msg == NULL)
		msg = "";
	pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv,
					    PROTO_PRIVKEY_LEN);
	if (pkey == NULL) {
		rc = PROTO_EKEY;
		goto out_err;
	}
	if ((ctx = EVP_MD_CTX_new()) == NULL) {
		rc = PROTO_ENOMEM;
		goto out_err;
	}
	if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) != 1 ||
	    EVP_DigestSign(ctx, sig, &siglen, msg, len) != 1 ||
	    siglen != PROTO_SIG_LEN) {
		rc = PROTO_ECRYPTO;
		goto out_err;
	}
	rc = 0;
	goto out_free;
out_err:
	ERR_clear_error();
out_free:
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return rc;
}

int proto_verify(const uint8_t pub[PROTO_PUBKEY_LEN], const void *msg,
		 size_t len, const uint8_t sig[PROTO_SIG_LEN])
{
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *ctx = NULL;
	int rc;

	if (msg == NULL)
		msg = "";
	pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub,
					   PROTO_PUBKEY_LEN);
	if (pkey == NULL) {
		rc = PROTO_EKEY;
		goto out_err;
	}
	if ((ctx = EVP_MD_CTX_new()) == NULL) {
		rc = PROTO_ENOMEM;
		goto out_err;
	}
	if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) != 1) {
		rc = PROTO_ECRYPTO;
		goto out_err;
	}
	/* 1 = valid; 0 = does not verify; < 0 = the library could not
	 * tell (e.g. a public key that is not a curve point). Only 1 is
	 * ever accepted. */
	if (EVP_DigestVerify(ctx, sig, PROTO_SIG_LEN, msg, len) != 1) {
		rc = PROTO_ESIG;
		goto out_err;
	}
	rc = 0;
	goto out_free;
out_err:
	ERR_clear_error();
out_free:
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return rc;
}
