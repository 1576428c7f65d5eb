/* trust: publisher key or root-signed key set, see trust.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/trust.h"
#include "common/util.h"

static int load_roots(struct trust *t, const char *list, uint32_t threshold,
		      char *err, size_t n)
{
	char path[4096], why[256];
	struct proto_keyset *a = &t->anchor;
	memset(a, 0, sizeof(*a));
	for (const char *p = list, *end; *p; p = *end ? end + 1 : end) {
		end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		if (end == p)
			continue;
		if ((size_t)(end - p) >= sizeof(path)) {
			snprintf(err, n, "root_keys: a path is too long");
			return -1;
		}
		memcpy(path, p, (size_t)(end - p));
		path[end - p] = '\0';
		if (a->nroot == PROTO_ROOT_KEYS_MAX) {
			snprintf(err, n, "root_keys: more than %d keys",
				 PROTO_ROOT_KEYS_MAX);
			return -1;
		}
		if (util_load_pubkey(path, a->root[a->nroot], why,
				     sizeof(why))) {
			snprintf(err, n, "root_keys: %s", why);
			return -1;
		}
		a->nroot++;
	}
	if (a->nroot == 0 || threshold < 1 || threshold > a->nroot) {
		snprintf(err, n,
			 "root_threshold %u: must be 1..%u (the number "
			 "of root_keys)",
			 threshold, a->nroot);
		return -1;
	}
	a->threshold = threshold;
	a->expires = INT64_MAX;
	t->have_root = true;
	return 0;
}

int trust_load(struct trust *t, const char *publisher_key,
	       const char *root_keys, uint32_t threshold,
	       const char *keyset_file, bool keyset_optional, int64_t now,
	       char *err, size_t errlen)
{
	char why[256], *json = NULL;
	size_t len;
	memset(t, 0, sizeof(*t));
	/* With root keys, only key sets say who may sign. */
	if (publisher_key && publisher_key[0] && !(root_keys && root_keys[0])) {
		if (util_load_pubkey(publisher_key, t->pub, why, sizeof(why))) {
			snprintf(err, errlen, "publisher_key: %s", why);
			return -1;
		}
		t->have_pub = true;
	}
	if (!root_keys || !root_keys[0]) {
		if (keyset_file && keyset_file[0]) {
			snprintf(err, errlen,
				 "keyset_file needs root_keys "
				 "(the keys that sign it)");
			return -1;
		}
		if (!t->have_pub) {
			snprintf(err, errlen,
				 "key 'publisher_key' or "
				 "'root_keys' is required");
			return -1;
		}
		return 0;
	}
	if (load_roots(t, root_keys, threshold, err, errlen) != 0)
		return -1;
	if (!keyset_file || !keyset_file[0]) {
		if (keyset_optional)
			return 0;
		snprintf(err, errlen,
			 "key 'keyset_file' is required with "
			 "root_keys");
		return -1;
	}
	if (keyset_optional && access(keyset_file, F_OK) != 0)
		return 0;
	if (util_read_file(keyset_file, PROTO_KEYSET_MAX, &json, &len, why,
			   sizeof(why)) != 0) {
		snprintf(err, errlen, "keyset_file: %s", why);
		return -1;
	}
	int rc = trust_update(t, json, len, now, why, sizeof(why));
	free(json);
	if (rc <= 0) {
		snprintf(err, errlen, "keyset_file %s: %s", keyset_file,
			 rc == 0 ? "not a newer key set" : why);
		trust_free(t);
		return -1;
	}
	return 0;
}

/* Trust e (stolen) and its envelope text. 0, or -1 out of memory. */
static int adopt(struct trust *t, struct proto_keyset_env *e, const char *json,
		 size_t len)
{
	char *copy = malloc(len + 1);
	if (!copy)
		return -1;
	memcpy(copy, json, len);
	copy[len] = '\0';
	proto_keyset_env_free(&t->env);
	free(t->env_json);
	t->env = *e;
	t->env_json = copy;
	t->env_len = len;
	t->have_ks = true;
	return 0;
}

int trust_update(struct trust *t, const char *json, size_t len, int64_t now,
		 char *err, size_t errlen)
{
	struct proto_keyset_env e;
	struct proto_err perr = {{0}};
	if (!t->have_root) {
		snprintf(err, errlen,
			 "no root_keys configured: key sets are "
			 "not trusted here");
		return -1;
	}
	if (proto_keyset_env_decode(json, len, &e, &perr) != 0) {
		snprintf(err, errlen, "key set unreadable: %s", perr.text);
		return -1;
	}
	const struct proto_keyset *cur = t->have_ks ? &t->env.ks : &t->anchor;
	if (e.ks.version <= cur->version && t->have_ks) {
		proto_keyset_env_free(&e);
		return 0;
	}
	if (proto_keyset_accept(cur, &e, now, &perr) != 0 ||
	    adopt(t, &e, json, len) != 0) {
		snprintf(err, errlen, "%s",
			 perr.text[0] ? perr.text : "out of memory");
		proto_keyset_env_free(&e);
		return -1;
	}
	return 1;
}

int trust_restore_saved(struct trust *t, const char *json, size_t len,
			char *err, size_t errlen)
{
	struct proto_keyset_env e;
	struct proto_err perr = {{0}};
	struct proto_keyset self;
	if (proto_keyset_env_decode(json, len, &e, &perr) != 0) {
		snprintf(err, errlen, "key set unreadable: %s", perr.text);
		return -1;
	}
	self = e.ks;
	self.version = 0; /* its own root, as an anchor */
	if (proto_keyset_accept(&self, &e, 0, &perr) != 0) {
		snprintf(err, errlen, "%s", perr.text);
		proto_keyset_env_free(&e);
		return -1;
	}
	if ((t->have_ks && e.ks.version <= t->env.ks.version) ||
	    adopt(t, &e, json, len) != 0) {
		proto_keyset_env_free(&e);
		return 0;
	}
	return 1;
}

int trust_check(const struct trust *t, const char *product,
		const void *manifest, size_t len,
		const uint8_t sig[PROTO_SIG_LEN], int64_t now, char *err,
		size_t errlen)
{
	struct proto_trust pt = trust_proto(t);
	if (t->have_root && !t->have_ks) {
		snprintf(err, errlen,
			 "no key set received yet: nothing is "
			 "trusted to sign manifests");
		return -1;
	}
	if (t->have_ks && now > 0 && now >= t->env.ks.expires) {
		snprintf(err, errlen,
			 "the trusted key set (version %llu) "
			 "expired at %lld: a newer one is needed",
			 (unsigned long long)t->env.ks.version,
			 (long long)t->env.ks.expires);
		return -1;
	}
	if (proto_trust_verify(&pt, product, manifest, len, sig) != 0) {
		if (t->have_ks)
			snprintf(err, errlen,
				 "manifest signature does not verify with any "
				 "publisher key of key set version %llu for "
				 "product '%s'",
				 (unsigned long long)t->env.ks.version,
				 product);
		else
			snprintf(err, errlen,
				 "manifest signature does not "
				 "verify with the publisher key");
		return -1;
	}
	return 0;
}

struct proto_trust trust_proto(const struct trust *t)
{
	struct proto_trust pt = {
	    .pub = t->have_pub ? t->pub : NULL,
	    .ks = t->have_ks ? &t->env.ks : NULL,
	};
	return pt;
}

void trust_free(struct trust *t)
{
	proto_keyset_env_free(&t->env);
	free(t->env_json);
	t->env_json = NULL;
	t->have_ks = false;
}
