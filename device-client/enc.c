/* Confidential packages (PROTOCOL.md section 6.3), the device's side: the
 * offer's "enc" member is unwrapped with the device's own TLS key
 * (key_file, EC P-256), and each fragment is decrypted and authenticated
 * before it goes anywhere near a block. The wrapped key (not the content
 * key) is kept with the checkpoint, so a download resumes after a power
 * cut. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/log.h"
#include "device-client/dev.h"

/* The device's key pair from key_file, once. */
static int own_key(struct dev *d, char *why, size_t n)
{
	if (d->ec_loaded)
		return 0;
	FILE *f = fopen(d->cfg.key_file, "r");
	EVP_PKEY *pk = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	BIGNUM *bn = NULL;
	size_t len = 0;
	char grp[32] = "";
	int rc = -1;
	if (f)
		fclose(f);
	if (!pk) {
		snprintf(why, n, "cannot read this device's key %s",
			 d->cfg.key_file);
		goto out;
	}
	if (!EVP_PKEY_is_a(pk, "EC") ||
	    EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, grp,
					   sizeof(grp), NULL) != 1 ||
	    strcmp(grp, "prime256v1") != 0 ||
	    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &bn) != 1 ||
	    BN_bn2binpad(bn, d->ec_priv, PROTO_EC_PRIV_LEN) !=
		PROTO_EC_PRIV_LEN ||
	    EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY,
					    d->ec_pub, PROTO_EC_PUB_LEN,
					    &len) != 1 ||
	    len != PROTO_EC_PUB_LEN) {
		snprintf(why, n,
			 "this device's key %s is not an EC P-256 key: "
			 "it cannot take encrypted releases",
			 d->cfg.key_file);
		goto out;
	}
	d->ec_loaded = true;
	rc = 0;
out:
	ERR_clear_error();
	BN_clear_free(bn);
	EVP_PKEY_free(pk);
	return rc;
}

/* Unwrap epk/wrapped for `release` into d->aead. */
static int unwrap(struct dev *d, const char *release, const uint8_t *epk,
		  const uint8_t *wrapped, char *why, size_t n)
{
	uint8_t k[PROTO_ENC_KEY_LEN];
	if (own_key(d, why, n) != 0)
		return -1;
	int rc = proto_key_unwrap(d->ec_priv, d->ec_pub, release, d->cfg.id,
				  epk, wrapped, k);
	if (rc != 0) {
		snprintf(why, n,
			 "cannot unwrap the release's content key "
			 "with this device's key: %s",
			 rc == PROTO_EAUTH ? "it was not wrapped for this "
					     "device"
					   : proto_strerror(rc));
		return -1;
	}
	struct proto_aead *a = NULL;
	rc = proto_aead_new(k, &a);
	OPENSSL_cleanse(k, sizeof(k));
	if (rc != 0) {
		snprintf(why, n, "cannot set up AES-256-GCM: %s",
			 proto_strerror(rc));
		return -1;
	}
	proto_aead_free(d->aead);
	d->aead = a;
	return 0;
}

int dev__enc_accept(struct dev *d, const struct proto_offer *o, char *why,
		    size_t n)
{
	if (!o->enc_alg[0]) {
		d->enc = false;
		d->p.enc = false;
		return 0;
	}
	if (strcmp(o->enc_alg, PROTO_ENC_ALG) != 0) {
		snprintf(why, n,
			 "offer is encrypted with '%s', which this "
			 "device does not support (it knows '%s')",
			 o->enc_alg, PROTO_ENC_ALG);
		return -1;
	}
	if (unwrap(d, o->release, o->enc_epk, o->enc_key, why, n) != 0)
		return -1;
	d->enc = d->p.enc = true;
	memcpy(d->p.enc_epk, o->enc_epk, sizeof(d->p.enc_epk));
	memcpy(d->p.enc_key, o->enc_key, sizeof(d->p.enc_key));
	return 0;
}

int dev__enc_resume(struct dev *d, char *why, size_t n)
{
	d->enc = false;
	if (!d->p.enc)
		return 0;
	if (unwrap(d, d->p.release, d->p.enc_epk, d->p.enc_key, why, n) != 0)
		return -1;
	d->enc = true;
	return 0;
}

int dev__enc_open(struct dev *d, const void *msg, struct proto_frag *f)
{
	size_t n = f->len - PROTO_ENC_TAG_LEN;
	if (d->encbuf_cap < n) {
		uint8_t *b = realloc(d->encbuf, n);
		if (!b)
			return PROTO_ENOMEM;
		d->encbuf = b;
		d->encbuf_cap = n;
	}
	int rc = proto_frag_open(d->aead, msg, d->p.fragment_size, f->data,
				 f->len, d->encbuf);
	if (rc != 0)
		return rc;
	f->data = d->encbuf;
	f->len = n;
	return 0;
}

void dev__enc_free(struct dev *d)
{
	proto_aead_free(d->aead);
	d->aead = NULL;
	OPENSSL_cleanse(d->ec_priv, sizeof(d->ec_priv));
	d->ec_loaded = false;
	free(d->encbuf);
	d->encbuf = NULL;
	d->encbuf_cap = 0;
}
