/* Confidential packages (PROTOCOL.md section 6.3), the gateway's side:
 * each encrypted release's content key (random, kept in a 0600 file in
 * store_dir), the device certificates it is wrapped for (device_cert_dir,
 * checked against the fleet CA and the device id), and the offer's "enc"
 * member. The content key is never logged. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

#define RECHECK_MS 30000 /* a refused certificate is looked at again */

int gw__enc_init(struct gw *gw, char *err, size_t n)
{
	X509_STORE *st;
	if (!gw->cfg.device_cert_dir[0])
		return 0;
	if ((st = X509_STORE_new()) == NULL ||
	    X509_STORE_load_file(st, gw->cfg.ca_file) != 1) {
		snprintf(err, n,
			 "cannot load %s as the CA of device "
			 "certificates",
			 gw->cfg.ca_file);
		X509_STORE_free(st);
		ERR_clear_error();
		return -1;
	}
	gw->enc_ca = st;
	return 0;
}

void gw__enc_close(struct gw *gw)
{
	X509_STORE_free(gw->enc_ca);
	gw->enc_ca = NULL;
}

/* ------------------------------------------------------ content keys */

static void key_path(const struct gw *gw, const char *id, char *out, size_t n)
{
	snprintf(out, n, "%s/%s.key", gw->cfg.store_dir, id);
}

static int key_new(struct gw *gw, struct gw_release *r, char *err, size_t n)
{
	char path[PATH_MAX], why[256];
	if (RAND_bytes(r->ckey, sizeof(r->ckey)) != 1) {
		ERR_clear_error();
		snprintf(err, n, "no random bytes for the content key");
		return -1;
	}
	key_path(gw, r->id, path, sizeof(path));
	if (util_write_atomic(path, r->ckey, sizeof(r->ckey), 0600, why,
			      sizeof(why)) != 0) {
		OPENSSL_cleanse(r->ckey, sizeof(r->ckey));
		snprintf(err, n, "cannot store the content key: %s", why);
		return -1;
	}
	return 0;
}

/* A stored key, only when it is exactly a key and readable by the
 * gateway's user alone. */
static int key_load(struct gw *gw, struct gw_release *r, char *why, size_t n)
{
	char path[PATH_MAX], *buf = NULL;
	size_t len = 0;
	struct stat st;
	key_path(gw, r->id, path, sizeof(path));
	if (stat(path, &st) != 0) {
		snprintf(why, n, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_mode & 077) {
		snprintf(why, n,
			 "%s is readable by others (mode %03o): taken "
			 "as disclosed",
			 path, (unsigned)st.st_mode & 0777);
		return -1;
	}
	if (util_read_file(path, sizeof(r->ckey), &buf, &len, why, n) != 0)
		return -1;
	int rc = len == sizeof(r->ckey) ? 0 : -1;
	if (rc == 0)
		memcpy(r->ckey, buf, sizeof(r->ckey));
	else
		snprintf(why, n, "%s: %zu bytes, not a key", path, len);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rc;
}

static int key_ready(struct gw_release *r, char *err, size_t n)
{
	proto_aead_free(r->aead);
	if (proto_aead_new(r->ckey, &r->aead) != 0) {
		snprintf(err, n, "cannot set up AES-256-GCM");
		return -1;
	}
	return 0;
}

int gw__enc_release_key(struct gw *gw, struct gw_release *r, bool fresh,
			char *err, size_t n)
{
	char why[320];
	/* A new release always gets a new key, even if a file of an older
	 * ledger is there: a key never serves two plaintexts. */
	if (fresh)
		return key_new(gw, r, err, n) ? -1 : key_ready(r, err, n);
	if (key_load(gw, r, why, sizeof(why)) == 0)
		return key_ready(r, err, n);
	/* Lost or exposed: a new key is safe (devices hold checked
	 * plaintext, and every offer carries the key it needs), it only
	 * costs the fragments in flight. */
	log_warnx("release=%s content key unusable (%s): making a new one",
		  r->id, why);
	return key_new(gw, r, err, n) ? -1 : key_ready(r, err, n);
}

/* ------------------------------------------------ device certificates */

/* CN == id exactly, and only one CN. */
static bool cn_is(X509 *c, const char *id)
{
	X509_NAME *nm = X509_get_subject_name(c);
	int i = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
	if (i < 0 || X509_NAME_get_index_by_NID(nm, NID_commonName, i) >= 0)
		return false;
	ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i));
	size_t len = strlen(id);
	return s && (size_t)ASN1_STRING_length(s) == len &&
	       memcmp(ASN1_STRING_get0_data(s), id, len) == 0;
}

static int cert_check(struct gw *gw, X509 *c, const char *id,
		      uint8_t pub[PROTO_EC_PUB_LEN], char *why, size_t n)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	char grp[32] = "";
	size_t len = 0;
	int rc = -1;
	if (!ctx || X509_STORE_CTX_init(ctx, gw->enc_ca, c, NULL) != 1) {
		snprintf(why, n, "out of memory");
		goto out;
	}
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	if (X509_verify_cert(ctx) != 1) {
		snprintf(why, n, "does not verify against %s: %s",
			 gw->cfg.ca_file,
			 X509_verify_cert_error_string(
			     X509_STORE_CTX_get_error(ctx)));
		goto out;
	}
	if (!cn_is(c, id)) {
		snprintf(why, n, "its CN is not '%s'", id);
		goto out;
	}
	EVP_PKEY *pk = X509_get0_pubkey(c);
	if (!pk || !EVP_PKEY_is_a(pk, "EC") ||
	    EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, grp,
					   sizeof(grp), NULL) != 1 ||
	    strcmp(grp, "prime256v1") != 0 ||
	    EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pub,
					    PROTO_EC_PUB_LEN, &len) != 1 ||
	    len != PROTO_EC_PUB_LEN || pub[0] != 0x04) {
		snprintf(why, n, "its key is not an EC P-256 key");
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	return rc;
}

/* <device_cert_dir>/<id>.crt, checked; its public key into pub. */
static int cert_load(struct gw *gw, const char *id,
		     uint8_t pub[PROTO_EC_PUB_LEN], char *why, size_t n)
{
	char path[PATH_MAX], name[PROTO_ID_MAX + 8], sub[200];
	snprintf(name, sizeof(name), "%s.crt", id);
	if (!gw->enc_ca ||
	    util_path(path, sizeof(path), gw->cfg.device_cert_dir, name) != 0) {
		snprintf(why, n, "no device_cert_dir is configured");
		return -1;
	}
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(why, n, "no certificate %s: %s", path,
			 strerror(errno));
		return -1;
	}
	X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	ERR_clear_error();
	if (!c) {
		snprintf(why, n, "%s is not a PEM certificate", path);
		return -1;
	}
	int rc = cert_check(gw, c, id, pub, sub, sizeof(sub));
	if (rc != 0)
		snprintf(why, n, "certificate %s %s", path, sub);
	X509_free(c);
	return rc;
}

bool gw__enc_may_offer(struct gw *gw, struct gw_device *d,
		       const struct gw_release *r)
{
	uint64_t now = gw__mono_ms(gw);
	char why[PATH_MAX + 256];
	if (!strcmp(d->enc_release, r->id) &&
	    (d->enc_ok || now - d->enc_checked_ms < RECHECK_MS))
		return d->enc_ok;
	bool again = !strcmp(d->enc_release, r->id);
	snprintf(d->enc_release, sizeof(d->enc_release), "%s", r->id);
	d->enc_checked_ms = now;
	d->enc_ok = cert_load(gw, d->id, d->enc_pub, why, sizeof(why)) == 0;
	if (!d->enc_ok && !again) {
		/* Never plaintext instead: the device is not offered it. */
		log_warnx("device=%s release=%s is encrypted and not offered "
			  "to it: %s",
			  d->id, r->id, why);
		gw__event(gw, d->id, r->id, "not_offered", why);
	}
	return d->enc_ok;
}

int gw__enc_offer(struct gw *gw, struct gw_device *d,
		  const struct gw_release *r, struct proto_offer *o)
{
	if (!gw__enc_may_offer(gw, d, r))
		return -1;
	int rc = proto_key_wrap(d->enc_pub, r->id, d->id, r->ckey, NULL,
				o->enc_epk, o->enc_key);
	if (rc != 0) {
		log_warnx("device=%s release=%s cannot wrap the content key: "
			  "%s",
			  d->id, r->id, proto_strerror(rc));
		return -1;
	}
	snprintf(o->enc_alg, sizeof(o->enc_alg), "%s", PROTO_ENC_ALG);
	return 0;
}
