/*
 * proto/enc.c: confidential packages (PROTOCOL.md section 6.3). Fragment
 * data sealed with AES-256-GCM under a per-release content key, and that
 * key wrapped for each device: ephemeral P-256 ECDH with the device's
 * certificate key, HKDF-SHA256, AES-256-GCM. OpenSSL 3 EVP only.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>

#include "proto/internal.h"

#define GCM_IV_LEN 12
#define WRAP_INFO "ota key wrap v1"

struct proto_aead {
	EVP_CIPHER_CTX *ctx; /* cipher and key set; only the nonce changes */
	EVP_CIPHER *cipher;
};

/* AES-256-GCM over one buffer with a context whose cipher (and, when
 * key is NULL, key) is already set. enc: out gets len bytes then the
 * tag; !enc: `in` ends with the tag (len counts it), out gets len - 16. */
static int gcm_ctx(EVP_CIPHER_CTX *ctx, bool enc, const uint8_t *key,
		   const uint8_t iv[GCM_IV_LEN], const uint8_t *aad,
		   size_t aadlen, const uint8_t *in, size_t len, uint8_t *out)
{
	size_t n = enc ? len : len - PROTO_ENC_TAG_LEN;
	int olen = 0, flen = 0, rc = PROTO_ECRYPTO;

	if (EVP_CipherInit_ex(ctx, NULL, NULL, key, iv, enc ? 1 : 0) != 1 ||
	    (aadlen > 0 &&
	     EVP_CipherUpdate(ctx, NULL, &olen, aad, (int)aadlen) != 1) ||
	    EVP_CipherUpdate(ctx, out, &olen, in, (int)n) != 1)
		goto out;
	if (!enc &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, PROTO_ENC_TAG_LEN,
				(void *)(in + n)) != 1)
		goto out;
	if (EVP_CipherFinal_ex(ctx, out + olen, &flen) != 1) {
		/* Decryption: the tag does not verify. Nothing of out may be
		 * used; wipe what was written. */
		rc = enc ? PROTO_ECRYPTO : PROTO_EAUTH;
		if (!enc)
			OPENSSL_cleanse(out, n);
		goto out;
	}
	if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG,
				       PROTO_ENC_TAG_LEN, out + n) != 1)
		goto out;
	rc = 0;
out:
	ERR_clear_error();
	return rc;
}

/* One-shot AES-256-GCM under `key` (key wrapping). */
static int gcm(bool enc, const uint8_t key[32], const uint8_t iv[GCM_IV_LEN],
	       const uint8_t *in, size_t len, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int rc;

	if (ctx == NULL)
		return PROTO_ENOMEM;
	if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL,
			      enc ? 1 : 0) != 1)
		rc = PROTO_ECRYPTO;
	else
		rc = gcm_ctx(ctx, enc, key, iv, NULL, 0, in, len, out);
	ERR_clear_error();
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

int proto_aead_new(const uint8_t key[PROTO_ENC_KEY_LEN],
		   struct proto_aead **out)
{
	struct proto_aead *a = calloc(1, sizeof(*a));
	int rc = PROTO_ENOMEM;

	*out = NULL;
	if (a == NULL || (a->ctx = EVP_CIPHER_CTX_new()) == NULL)
		goto fail;
	rc = PROTO_ECRYPTO;
	if ((a->cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL)) == NULL ||
	    EVP_CipherInit_ex(a->ctx, a->cipher, NULL, key, NULL, 1) != 1)
		goto fail;
	*out = a;
	return 0;
fail:
	ERR_clear_error();
	proto_aead_free(a);
	return rc;
}

void proto_aead_free(struct proto_aead *a)
{
	if (a == NULL)
		return;
	EVP_CIPHER_CTX_free(a->ctx); /* wipes the key schedule */
	EVP_CIPHER_free(a->cipher);
	free(a);
}

/* Nonce: tag (4) and index (3) as in the header, fragment_size (u32 LE),
 * one zero byte. */
static void frag_nonce(const uint8_t hdr[8], uint32_t fragment_size,
		       uint8_t iv[GCM_IV_LEN])
{
	memcpy(iv, hdr + 1, 7);
	iv[7] = (uint8_t)fragment_size;
	iv[8] = (uint8_t)(fragment_size >> 8);
	iv[9] = (uint8_t)(fragment_size >> 16);
	iv[10] = (uint8_t)(fragment_size >> 24);
	iv[11] = 0;
}

int proto_frag_seal(struct proto_aead *a, const uint8_t hdr[8],
		    uint32_t fragment_size, const uint8_t *pt, size_t len,
		    uint8_t *out)
{
	uint8_t iv[GCM_IV_LEN];

	if (len < 1 || len > PROTO_FRAG_SIZE_MAX)
		return PROTO_ERANGE;
	frag_nonce(hdr, fragment_size, iv);
	return gcm_ctx(a->ctx, true, NULL, iv, hdr, PROTO_FRAG_HDR_LEN, pt, len,
		       out);
}

int proto_frag_open(struct proto_aead *a, const uint8_t hdr[8],
		    uint32_t fragment_size, const uint8_t *ct, size_t len,
		    uint8_t *out)
{
	uint8_t iv[GCM_IV_LEN];

	if (len <= PROTO_ENC_TAG_LEN ||
	    len > PROTO_FRAG_SIZE_MAX + PROTO_ENC_TAG_LEN)
		return PROTO_ERANGE;
	frag_nonce(hdr, fragment_size, iv);
	return gcm_ctx(a->ctx, false, NULL, iv, hdr, PROTO_FRAG_HDR_LEN, ct,
		       len, out);
}

/* ------------------------------------------------------------ P-256 keys */

/* The public point of a private scalar (for a given ephemeral key). */
static int ec_pub_from_priv(const BIGNUM *priv, uint8_t pub[PROTO_EC_PUB_LEN])
{
	EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	EC_POINT *pt = g ? EC_POINT_new(g) : NULL;
	int rc = PROTO_EKEY;

	if (pt != NULL && BN_cmp(priv, EC_GROUP_get0_order(g)) < 0 &&
	    EC_POINT_mul(g, pt, priv, NULL, NULL, NULL) == 1 &&
	    EC_POINT_point2oct(g, pt, POINT_CONVERSION_UNCOMPRESSED, pub,
			       PROTO_EC_PUB_LEN, NULL) == PROTO_EC_PUB_LEN)
		rc = 0;
	EC_POINT_free(pt);
	EC_GROUP_free(g);
	return rc;
}

/* An EVP_PKEY from a raw public point and/or private scalar (either may
 * be NULL, not both; the public point of a lone scalar is computed). The
 * point is checked to be on the curve. */
static int ec_key(const uint8_t *priv, const uint8_t *pub, EVP_PKEY **out)
{
	uint8_t own[PROTO_EC_PUB_LEN];
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	BIGNUM *bn = NULL;
	int rc = PROTO_EKEY;

	*out = NULL;
	if (bld == NULL)
		return PROTO_ENOMEM;
	if (priv != NULL &&
	    ((bn = BN_bin2bn(priv, PROTO_EC_PRIV_LEN, NULL)) == NULL ||
	     BN_is_zero(bn)))
		goto out;
	if (pub == NULL && bn != NULL) {
		if (ec_pub_from_priv(bn, own) != 0)
			goto out;
		pub = own;
	}
	if (pub == NULL || pub[0] != 0x04)
		goto out; /* uncompressed points only */
	if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
					    "prime256v1", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub,
					     PROTO_EC_PUB_LEN) != 1)
		goto out;
	if (bn != NULL &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn) != 1)
		goto out;
	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, out,
			      priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
			      params) != 1)
		goto out;
	rc = 0;
out:
	ERR_clear_error();
	OPENSSL_cleanse(own, sizeof(own));
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(bn);
	return rc;
}

static int ec_pub_of(EVP_PKEY *k, uint8_t pub[PROTO_EC_PUB_LEN])
{
	size_t n = 0;

	if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pub,
					    PROTO_EC_PUB_LEN, &n) != 1 ||
	    n != PROTO_EC_PUB_LEN || pub[0] != 0x04) {
		ERR_clear_error();
		return PROTO_ECRYPTO;
	}
	return 0;
}

int proto_ec_keygen(uint8_t priv[PROTO_EC_PRIV_LEN],
		    uint8_t pub[PROTO_EC_PUB_LEN])
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	BIGNUM *bn = NULL;
	int rc = PROTO_ECRYPTO;

	if (k == NULL)
		goto out;
	if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &bn) != 1 ||
	    BN_bn2binpad(bn, priv, PROTO_EC_PRIV_LEN) != PROTO_EC_PRIV_LEN ||
	    ec_pub_of(k, pub) != 0)
		goto out;
	rc = 0;
out:
	ERR_clear_error();
	BN_clear_free(bn);
	EVP_PKEY_free(k);
	return rc;
}

/* ECDH of `mine` with `peer`, then HKDF-SHA256 into the key-wrapping key.
 * salt = epk || dev_pub, info = WRAP_INFO 0 release 0 device. */
static int wrap_kek(EVP_PKEY *mine, EVP_PKEY *peer,
		    const uint8_t epk[PROTO_EC_PUB_LEN],
		    const uint8_t dev_pub[PROTO_EC_PUB_LEN],
		    const char *release, const char *device, uint8_t kek[32])
{
	uint8_t z[32], salt[2 * PROTO_EC_PUB_LEN];
	uint8_t
	    info[sizeof(WRAP_INFO) + PROTO_RELEASE_HEX_LEN + 1 + PROTO_ID_MAX];
	size_t zlen = sizeof(z), ilen = 0;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, mine, NULL);
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *kctx = NULL;
	int rc = PROTO_ECRYPTO;

	if (ctx == NULL || EVP_PKEY_derive_init(ctx) != 1 ||
	    /* No second check of the peer: ec_key() imported it through
	     * EC_POINT_oct2point, which refuses a point off the curve, and
	     * P-256 has cofactor 1 (a full check costs a scalar multiple). */
	    EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) != 1 ||
	    EVP_PKEY_derive(ctx, z, &zlen) != 1 || zlen != sizeof(z))
		goto out;
	memcpy(salt, epk, PROTO_EC_PUB_LEN);
	memcpy(salt + PROTO_EC_PUB_LEN, dev_pub, PROTO_EC_PUB_LEN);
	memcpy(info, WRAP_INFO, sizeof(WRAP_INFO)); /* with its NUL */
	ilen = sizeof(WRAP_INFO);
	memcpy(info + ilen, release, PROTO_RELEASE_HEX_LEN);
	ilen += PROTO_RELEASE_HEX_LEN;
	info[ilen++] = 0;
	memcpy(info + ilen, device, strlen(device));
	ilen += strlen(device);
	OSSL_PARAM p[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256",
					     0),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, z, zlen),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt,
					      sizeof(salt)),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, ilen),
	    OSSL_PARAM_construct_end()};
	if ((kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL ||
	    (kctx = EVP_KDF_CTX_new(kdf)) == NULL ||
	    EVP_KDF_derive(kctx, kek, 32, p) != 1)
		goto out;
	rc = 0;
out:
	ERR_clear_error();
	OPENSSL_cleanse(z, sizeof(z));
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

static bool names_ok(const char *release, const char *device)
{
	return release != NULL && device != NULL &&
	       proto__release_hex_valid(release) && proto_id_valid(device);
}

static const uint8_t zero_iv[GCM_IV_LEN];

int proto_key_wrap(const uint8_t dev_pub[PROTO_EC_PUB_LEN], const char *release,
		   const char *device, const uint8_t ckey[PROTO_ENC_KEY_LEN],
		   const uint8_t *eph_priv, uint8_t epk[PROTO_EC_PUB_LEN],
		   uint8_t wrapped[PROTO_ENC_WRAPPED_LEN])
{
	EVP_PKEY *peer = NULL, *eph = NULL;
	uint8_t kek[32];
	int rc;

	if (!names_ok(release, device))
		return PROTO_EFIELD;
	if ((rc = ec_key(NULL, dev_pub, &peer)) < 0)
		return rc;
	if (eph_priv != NULL)
		rc = ec_key(eph_priv, NULL, &eph);
	else if ((eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL)
		rc = PROTO_ECRYPTO;
	if (rc < 0 || (rc = ec_pub_of(eph, epk)) < 0 ||
	    (rc = wrap_kek(eph, peer, epk, dev_pub, release, device, kek)) < 0)
		goto out;
	/* The key-wrapping key is used once (a fresh ephemeral key per
	 * wrap): a fixed nonce is safe. */
	rc = gcm(true, kek, zero_iv, ckey, PROTO_ENC_KEY_LEN, wrapped);
out:
	ERR_clear_error();
	OPENSSL_cleanse(kek, sizeof(kek));
	EVP_PKEY_free(eph);
	EVP_PKEY_free(peer);
	return rc;
}

int proto_key_unwrap(const uint8_t dev_priv[PROTO_EC_PRIV_LEN],
		     const uint8_t dev_pub[PROTO_EC_PUB_LEN],
		     const char *release, const char *device,
		     const uint8_t epk[PROTO_EC_PUB_LEN],
		     const uint8_t wrapped[PROTO_ENC_WRAPPED_LEN],
		     uint8_t ckey[PROTO_ENC_KEY_LEN])
{
	EVP_PKEY *mine = NULL, *peer = NULL;
	uint8_t kek[32];
	int rc;

	if (!names_ok(release, device))
		return PROTO_EFIELD;
	if ((rc = ec_key(dev_priv, dev_pub, &mine)) < 0 ||
	    (rc = ec_key(NULL, epk, &peer)) < 0 ||
	    (rc = wrap_kek(mine, peer, epk, dev_pub, release, device, kek)) < 0)
		goto out;
	rc = gcm(false, kek, zero_iv, wrapped, PROTO_ENC_WRAPPED_LEN, ckey);
out:
	OPENSSL_cleanse(kek, sizeof(kek));
	EVP_PKEY_free(mine);
	EVP_PKEY_free(peer);
	return rc;
}
