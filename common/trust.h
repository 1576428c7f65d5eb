/*
 * trust: what a gateway or a device trusts to sign manifests, loaded from
 * its configuration: one publisher key (`publisher_key`), or root keys
 * (`root_keys`, `root_threshold`) and the newest key set they signed
 * (`keyset_file`, and key sets that arrive in offers or on SIGHUP).
 * Functions return 0 or -1 with the reason in err (errlen bytes).
 */
#ifndef OTA_TRUST_H
#define OTA_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

struct trust {
	bool have_pub;
	uint8_t pub[PROTO_PUBKEY_LEN];
	bool have_root;
	struct proto_keyset anchor; /* version 0: the configured root */
	bool have_ks;
	struct proto_keyset_env env; /* the newest key set accepted */
	char *env_json;		     /* ... as it travels (new) */
	size_t env_len;
};

/*
 * Load the configured trust. `root_keys` is a comma-separated list of
 * Ed25519 public key files (PEM); with it, `keyset_file` (may be "" or
 * missing when `keyset_optional`) must be signed by `threshold` of them.
 * Without root keys, `publisher_key` is required; with them it is not
 * used (the caller says so).
 */
int trust_load(struct trust *t, const char *publisher_key,
	       const char *root_keys, uint32_t threshold,
	       const char *keyset_file, bool keyset_optional, int64_t now,
	       char *err, size_t errlen);

/*
 * A key set envelope from outside (an offer, a reloaded file). Returns 1
 * when it was newer and is now trusted, 0 when it is not newer than the
 * one trusted (nothing changes), -1 when it is refused (err says why:
 * bad signature, expired, unreadable, or no root configured).
 */
int trust_update(struct trust *t, const char *json, size_t len, int64_t now,
		 char *err, size_t errlen);

/*
 * A key set this program accepted earlier and kept (its own state): taken
 * when newer than the one trusted and signed by its own root keys (a
 * damaged copy is refused). Returns like trust_update.
 */
int trust_restore_saved(struct trust *t, const char *json, size_t len,
			char *err, size_t errlen);

/*
 * Check a manifest's signature with what is trusted now: the key set's
 * publishers for `product` (refused when the key set expired at `now`,
 * 0 = do not check), or the publisher key. 0, or -1 with the reason.
 */
int trust_check(const struct trust *t, const char *product,
		const void *manifest, size_t len,
		const uint8_t sig[PROTO_SIG_LEN], int64_t now, char *err,
		size_t errlen);

/* The proto view (borrowed from t). */
struct proto_trust trust_proto(const struct trust *t);

void trust_free(struct trust *t);

#endif
