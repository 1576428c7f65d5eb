/* ota-gateway keyset: the root key holder's tool. Signs which publisher
 * keys may sign for which product (proto.h "key sets"). */
#include <limits.h>
#include <openssl/crypto.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/conf.h"
#include "common/util.h"
#include "gateway/gw.h"

int gw__parse_when(const char *s, int64_t now, int64_t *out, char *err,
		   size_t n)
{
	char *end = NULL;
	struct tm tm;
	if (s[0] == '+') {
		long long v = strtoll(s + 1, &end, 10);
		int64_t unit = !strcmp(end, "d")   ? 86400
			       : !strcmp(end, "h") ? 3600
			       : !strcmp(end, "m") ? 60
			       : !strcmp(end, "s") ? 1
						   : 0;
		if (end == s + 1 || v <= 0 || unit == 0 || v > (1ll << 40)) {
			snprintf(err, n,
				 "'%s': a duration is +N followed by "
				 "d, h, m or s",
				 s);
			return -1;
		}
		*out = now + v * unit;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end) {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, "%Y-%m-%d", &tm);
	}
	if (end && !*end) {
		*out = (int64_t)timegm(&tm);
		return 0;
	}
	long long v = strtoll(s, &end, 10);
	if (end == s || *end || v <= 0) {
		snprintf(err, n,
			 "'%s' is not +30d, 2027-06-30, "
			 "2027-06-30T12:00:00Z or unix seconds",
			 s);
		return -1;
	}
	*out = v;
	return 0;
}

struct keyset_opts {
	char root_key[PATH_MAX];  /* private keys that sign, comma list */
	char root_pubs[PATH_MAX]; /* root keys the set names (default: the
				     signers' own) */
	uint32_t threshold;
	uint32_t version;
	char expires[64];
	char publishers[PATH_MAX]; /* product=file.pub,... */
	char out[PATH_MAX];
};

#define K(name, type, field, lo, hi, help)                                     \
	{                                                                      \
		name, type, offsetof(struct keyset_opts, field),               \
		    sizeof(((struct keyset_opts *)0)->field), lo, hi, help     \
	}

static const struct conf_key keyset_keys[] = {
    K("root-key", CONF_STR, root_key, 0, 0,
      "root private key(s) that sign it, comma-separated (mode 0600)"),
    K("root-pubs", CONF_STR, root_pubs, 0, 0,
      "root public keys it names (default: those of --root-key); a new "
      "root must sign too"),
    K("threshold", CONF_U32, threshold, 1, PROTO_ROOT_KEYS_MAX,
      "root keys needed to sign the next key set (default 1)"),
    K("version", CONF_U32, version, 1, 0xffffffffu,
      "key set version: must be above the one devices hold"),
    K("expires", CONF_STR, expires, 0, 0,
      "+365d, 2027-06-30 or unix seconds (default +365d)"),
    K("publishers", CONF_STR, publishers, 0, 0,
      "PRODUCT=publisher.pub,... (product * = every product)"),
    K("out", CONF_STR, out, 0, 0, "key set file to write"),
    {0}};

/* Next comma-separated item of *p into buf; false at the end. */
static bool next_item(const char **p, char *buf, size_t n)
{
	while (**p == ',')
		(*p)++;
	if (!**p)
		return false;
	const char *end = strchr(*p, ',');
	size_t len = end ? (size_t)(end - *p) : strlen(*p);
	snprintf(buf, n, "%.*s", (int)(len < n ? len : n - 1), *p);
	*p += len;
	return true;
}

static int load_publishers(const char *list, struct proto_keyset *ks, char *err,
			   size_t n)
{
	char item[PATH_MAX + PROTO_ID_MAX + 2], why[256];
	for (const char *p = list; next_item(&p, item, sizeof(item));) {
		char *eq = strchr(item, '=');
		struct proto_keyset_pub *kp = &ks->pub[ks->npub];
		if (ks->npub == PROTO_PUBLISHERS_MAX || !eq ||
		    (size_t)(eq - item) > PROTO_ID_MAX) {
			snprintf(err, n,
				 "--publishers: '%s' is not "
				 "PRODUCT=FILE (at most %d)",
				 item, PROTO_PUBLISHERS_MAX);
			return -1;
		}
		*eq = '\0';
		snprintf(kp->product, sizeof(kp->product), "%s", item);
		if ((strcmp(item, "*") && !proto_id_valid(item)) ||
		    util_load_pubkey(eq + 1, kp->key, why, sizeof(why))) {
			snprintf(err, n, "--publishers %s: %s", item,
				 strcmp(item, "*") && !proto_id_valid(item)
				     ? "not a product name"
				     : why);
			return -1;
		}
		ks->npub++;
	}
	return 0;
}

/* Root private keys into priv[], their public halves into env sigs. */
static int load_signers(const struct keyset_opts *o,
			uint8_t priv[][PROTO_PRIVKEY_LEN],
			struct proto_keyset_env *e, char *err, size_t n)
{
	char path[PATH_MAX], why[256];
	for (const char *p = o->root_key; next_item(&p, path, sizeof(path));) {
		if (e->nsig == PROTO_ROOT_KEYS_MAX) {
			snprintf(err, n, "--root-key: more than %d keys",
				 PROTO_ROOT_KEYS_MAX);
			return -1;
		}
		snprintf(why, sizeof(why), "cannot derive its public key");
		if (util_load_privkey(path, priv[e->nsig], why, sizeof(why)) ||
		    util_pubkey_of(priv[e->nsig], e->sig[e->nsig].key)) {
			snprintf(err, n, "--root-key %s: %s", path, why);
			return -1;
		}
		e->nsig++;
	}
	if (e->nsig == 0) {
		snprintf(err, n, "--root-key is required");
		return -1;
	}
	return 0;
}

static int load_root(const struct keyset_opts *o,
		     const struct proto_keyset_env *e, struct proto_keyset *ks,
		     char *err, size_t n)
{
	char path[PATH_MAX], why[256];
	if (!o->root_pubs[0]) {
		for (uint32_t i = 0; i < e->nsig; i++)
			memcpy(ks->root[i], e->sig[i].key, PROTO_PUBKEY_LEN);
		ks->nroot = e->nsig;
		return 0;
	}
	for (const char *p = o->root_pubs; next_item(&p, path, sizeof(path));) {
		if (ks->nroot == PROTO_ROOT_KEYS_MAX ||
		    util_load_pubkey(path, ks->root[ks->nroot], why,
				     sizeof(why))) {
			snprintf(err, n, "--root-pubs %s: %s", path,
				 ks->nroot == PROTO_ROOT_KEYS_MAX
				     ? "too many keys"
				     : why);
			return -1;
		}
		ks->nroot++;
	}
	return 0;
}

static int keyset_build(const struct keyset_opts *o, char **json, char *err,
			size_t n)
{
	uint8_t priv[PROTO_ROOT_KEYS_MAX][PROTO_PRIVKEY_LEN];
	struct proto_keyset_env e;
	struct proto_keyset *ks = &e.ks;
	size_t len;
	int rc = -1;
	memset(&e, 0, sizeof(e));
	ks->version = o->version;
	ks->created = (int64_t)time(NULL);
	ks->threshold = o->threshold ? o->threshold : 1;
	if (gw__parse_when(o->expires[0] ? o->expires : "+365d", ks->created,
			   &ks->expires, err, n) != 0 ||
	    load_signers(o, priv, &e, err, n) != 0 ||
	    load_root(o, &e, ks, err, n) != 0 ||
	    load_publishers(o->publishers, ks, err, n) != 0)
		goto out;
	if (proto_keyset_encode(ks, &e.body, &e.body_len) != 0) {
		snprintf(err, n,
			 "invalid key set: the threshold must be at "
			 "most the number of root keys, expiry in the "
			 "future, root keys distinct");
		goto out;
	}
	for (uint32_t i = 0; i < e.nsig; i++)
		if (proto_sign(priv[i], e.body, e.body_len, e.sig[i].sig)) {
			snprintf(err, n, "signing failed");
			goto out;
		}
	if (proto_keyset_env_encode(&e, json, &len) != 0) {
		snprintf(err, n, "encoding failed");
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(priv, sizeof(priv));
	proto_keyset_env_free(&e);
	return rc;
}

int gw__cmd_keyset(int argc, char **argv)
{
	struct keyset_opts o;
	struct conf_cli cli;
	char err[512], *json = NULL;
	memset(&o, 0, sizeof(o));
	if (conf_from_argv(argc, argv, keyset_keys, &o, &cli, err,
			   sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway keyset: %s\n", err);
		return 2;
	}
	if (cli.help) {
		printf("usage: ota-gateway keyset --root-key ROOT.key --version "
		       "N\n           --publishers PRODUCT=PUB,... --out "
		       "FILE\n\noptions:\n");
		conf_print_help(keyset_keys);
		printf("\nexamples:\n"
		       "  ota-gateway keygen --out root     (keep root.key "
		       "offline)\n"
		       "  ota-gateway keyset --root-key root.key --version 1 "
		       "\\\n      --publishers sensor=publisher.pub --out "
		       "keyset.json\n"
		       "  # rotate: a new publisher key, the old one revoked\n"
		       "  ota-gateway keyset --root-key root.key --version 2 "
		       "\\\n      --publishers sensor=publisher2.pub --out "
		       "keyset.json\n");
		return 0;
	}
	const char *missing = !o.root_key[0]	 ? "--root-key"
			      : !o.version	 ? "--version"
			      : !o.publishers[0] ? "--publishers"
			      : !o.out[0]	 ? "--out"
						 : NULL;
	if (missing) {
		fprintf(stderr, "ota-gateway keyset: %s is required\n",
			missing);
		return 2;
	}
	if (keyset_build(&o, &json, err, sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway keyset: %s\n", err);
		return 1;
	}
	if (util_write_atomic(o.out, json, strlen(json), 0644, err,
			      sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway keyset: %s\n", err);
		free(json);
		return 1;
	}
	printf("wrote %s: key set version %u, signed by the root; give it "
	       "to the gateway\n(keyset_file, then SIGHUP); devices receive "
	       "it with their next offer\n",
	       o.out, o.version);
	free(json);
	return 0;
}
