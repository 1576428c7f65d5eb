/*
 * proto/keyset.c: key sets (which publisher keys may sign for which
 * product, signed by the root keys) and the trust that verifies manifests.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/internal.h"

#define KEYSET_TYPE "ota-keyset"
#define KEYSET_NUM_MAX ((int64_t)1 << 53) /* exact in any JSON reader */

static bool product_ok(const char *p)
{
	return !strcmp(p, "*") || proto_id_valid(p);
}

static bool key_listed(const uint8_t (*keys)[PROTO_PUBKEY_LEN], uint32_t n,
		       const uint8_t key[PROTO_PUBKEY_LEN])
{
	for (uint32_t i = 0; i < n; i++)
		if (!memcmp(keys[i], key, PROTO_PUBKEY_LEN))
			return true;
	return false;
}

static bool keyset_valid(const struct proto_keyset *ks)
{
	if (ks->version < 1 || ks->version > (uint64_t)KEYSET_NUM_MAX ||
	    ks->created < 0 || ks->expires <= ks->created ||
	    ks->expires > KEYSET_NUM_MAX || ks->nroot < 1 ||
	    ks->nroot > PROTO_ROOT_KEYS_MAX || ks->threshold < 1 ||
	    ks->threshold > ks->nroot || ks->npub > PROTO_PUBLISHERS_MAX)
		return false;
	for (uint32_t i = 1; i < ks->nroot; i++)
		if (key_listed(ks->root, i, ks->root[i]))
			return false;
	for (uint32_t i = 0; i < ks->npub; i++)
		if (!product_ok(ks->pub[i].product))
			return false;
	return true;
}

static json_t *hex_string(const uint8_t *b, size_t n)
{
	char hex[2 * PROTO_SIG_LEN + 1];
	proto_hex_encode(b, n, hex);
	return json_string(hex);
}

int proto_keyset_encode(const struct proto_keyset *ks, char **out, size_t *len)
{
	json_t *o, *root, *keys, *pubs;
	int rc = PROTO_ENOMEM;

	*out = NULL;
	if (len)
		*len = 0;
	if (!keyset_valid(ks))
		return PROTO_ERANGE;
	o = json_object();
	root = json_object();
	keys = json_array();
	pubs = json_array();
	if (!o || !root || !keys || !pubs) {
		json_decref(root);
		json_decref(keys);
		json_decref(pubs);
		goto out;
	}
	for (uint32_t i = 0; i < ks->nroot; i++)
		if (json_array_append_new(keys, hex_string(ks->root[i], 32)))
			goto out_parts;
	for (uint32_t i = 0; i < ks->npub; i++) {
		json_t *p = json_object();
		if (!p || json_array_append_new(pubs, p) ||
		    proto__json_set(p, "product",
				    json_string(ks->pub[i].product)) < 0 ||
		    proto__json_set(p, "key", hex_string(ks->pub[i].key, 32)) <
			0)
			goto out_parts;
	}
	if (proto__json_set(root, "threshold", json_integer(ks->threshold)) <
		0 ||
	    proto__json_set(root, "keys", keys) < 0)
		goto out_root;
	keys = NULL;
	/* The member order here is the signed byte order: never change it. */
	if (proto__json_set(o, "type", json_string(KEYSET_TYPE)) < 0 ||
	    proto__json_set(o, "version",
			    json_integer((json_int_t)ks->version)) < 0 ||
	    proto__json_set(o, "created",
			    json_integer((json_int_t)ks->created)) < 0 ||
	    proto__json_set(o, "expires",
			    json_integer((json_int_t)ks->expires)) < 0 ||
	    proto__json_set(o, "root", root) < 0)
		goto out_pubs;
	root = NULL;
	if (proto__json_set(o, "publishers", pubs) < 0)
		goto out;
	rc = proto__json_dump(o, out, len);
	goto out;
out_parts:
	json_decref(keys);
out_root:
	json_decref(root);
out_pubs:
	json_decref(pubs);
out:
	json_decref(o);
	return rc;
}

static int hex_member(const json_t *v, uint8_t *out, size_t n, const char *what,
		      struct proto_err *err)
{
	const char *s = json_string_value(v);
	if (s == NULL || strlen(s) != 2 * n || proto_hex_decode(s, out, n) < 0)
		return proto__err(err, PROTO_EFIELD, "%s: not %zu hex digits",
				  what, 2 * n);
	return 0;
}

/* Every member of `o` is one of `names` (NULL-terminated). */
static int only_members(const json_t *o, const char *const *names,
			const char *what, struct proto_err *err)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v)
	{
		const char *const *n = names;
		while (*n && strcmp(*n, k) != 0)
			n++;
		if (*n == NULL) {
			char safe[40];
			proto__sanitize(safe, sizeof(safe), k);
			return proto__err(err, PROTO_EFIELD,
					  "%s: unknown member '%s'", what,
					  safe);
		}
	}
	return 0;
}

static int decode_root(const json_t *root, struct proto_keyset *ks,
		       struct proto_err *err)
{
	static const char *const names[] = {"threshold", "keys", NULL};
	int64_t v;
	int rc;
	json_t *keys = json_object_get(root, "keys");
	if (!json_is_object(root))
		return proto__err(err, PROTO_EFIELD,
				  "field 'root': not an "
				  "object");
	if ((rc = only_members(root, names, "field 'root'", err)) < 0 ||
	    (rc = proto__json_int(root, "threshold", true, 1,
				  PROTO_ROOT_KEYS_MAX, &v, NULL, err)) < 0)
		return rc;
	ks->threshold = (uint32_t)v;
	if (!json_is_array(keys) || json_array_size(keys) < 1 ||
	    json_array_size(keys) > PROTO_ROOT_KEYS_MAX)
		return proto__err(err, PROTO_EFIELD,
				  "field 'root.keys': not an array of 1..%d "
				  "keys",
				  PROTO_ROOT_KEYS_MAX);
	ks->nroot = (uint32_t)json_array_size(keys);
	for (uint32_t i = 0; i < ks->nroot; i++)
		if ((rc = hex_member(json_array_get(keys, i), ks->root[i],
				     PROTO_PUBKEY_LEN, "field 'root.keys'",
				     err)) < 0)
			return rc;
	return 0;
}

static int decode_pubs(const json_t *pubs, struct proto_keyset *ks,
		       struct proto_err *err)
{
	static const char *const names[] = {"product", "key", NULL};
	int rc;
	if (!json_is_array(pubs) ||
	    json_array_size(pubs) > PROTO_PUBLISHERS_MAX)
		return proto__err(err, PROTO_EFIELD,
				  "field 'publishers': not an array of at "
				  "most %d entries",
				  PROTO_PUBLISHERS_MAX);
	ks->npub = (uint32_t)json_array_size(pubs);
	for (uint32_t i = 0; i < ks->npub; i++) {
		json_t *p = json_array_get(pubs, i);
		struct proto_keyset_pub *kp = &ks->pub[i];
		if (!json_is_object(p))
			return proto__err(err, PROTO_EFIELD,
					  "field 'publishers': entry %u is "
					  "not an object",
					  i);
		if ((rc = only_members(p, names, "field 'publishers'", err)) <
			0 ||
		    (rc = proto__json_copy(p, "product", true, kp->product,
					   sizeof(kp->product), err)) < 0 ||
		    (rc = hex_member(json_object_get(p, "key"), kp->key,
				     PROTO_PUBKEY_LEN, "field 'publishers.key'",
				     err)) < 0)
			return rc;
		if (!product_ok(kp->product))
			return proto__err(err, PROTO_EFIELD,
					  "field 'publishers.product': not a "
					  "product name or \"*\"");
	}
	return 0;
}

int proto_keyset_decode(const char *buf, size_t len, struct proto_keyset *ks,
			struct proto_err *err)
{
	static const char *const names[] = {"type",    "version", "created",
					    "expires", "root",	  "publishers",
					    NULL};
	struct proto_keyset tmp;
	const char *type;
	json_t *o;
	int64_t v;
	int rc;

	memset(&tmp, 0, sizeof(tmp));
	if ((rc = proto__json_parse(buf, len, PROTO_KEYSET_MAX, &o, err)) < 0)
		return rc;
	if ((rc = only_members(o, names, "key set", err)) < 0 ||
	    (rc = proto__json_str(o, "type", true, &type, NULL, err)) < 0)
		goto out;
	if (strcmp(type, KEYSET_TYPE) != 0) {
		rc = proto__err(err, PROTO_EFIELD,
				"field 'type': not \"" KEYSET_TYPE "\"");
		goto out;
	}
	if ((rc = proto__json_int(o, "version", true, 1, KEYSET_NUM_MAX, &v,
				  NULL, err)) < 0)
		goto out;
	tmp.version = (uint64_t)v;
	if ((rc = proto__json_int(o, "created", true, 0, KEYSET_NUM_MAX,
				  &tmp.created, NULL, err)) < 0 ||
	    (rc = proto__json_int(o, "expires", true, 1, KEYSET_NUM_MAX,
				  &tmp.expires, NULL, err)) < 0 ||
	    (rc = decode_root(json_object_get(o, "root"), &tmp, err)) < 0 ||
	    (rc = decode_pubs(json_object_get(o, "publishers"), &tmp, err)) < 0)
		goto out;
	if (!keyset_valid(&tmp)) {
		rc = proto__err(err, PROTO_ERANGE,
				"key set: expires not after created, "
				"threshold above the number of root keys, or "
				"a root key listed twice");
		goto out;
	}
	if (ks)
		*ks = tmp;
	rc = 0;
out:
	json_decref(o);
	return rc;
}

int proto_keyset_env_encode(const struct proto_keyset_env *e, char **out,
			    size_t *len)
{
	json_t *o = json_object(), *sigs = json_array();
	int rc = PROTO_ENOMEM;
	*out = NULL;
	if (len)
		*len = 0;
	if (!o || !sigs || e->body == NULL || e->nsig > PROTO_ROOT_KEYS_MAX) {
		rc = o && sigs ? PROTO_ERANGE : PROTO_ENOMEM;
		json_decref(sigs);
		goto out;
	}
	for (uint32_t i = 0; i < e->nsig; i++) {
		json_t *s = json_object();
		if (!s || json_array_append_new(sigs, s) ||
		    proto__json_set(s, "key", hex_string(e->sig[i].key, 32)) <
			0 ||
		    proto__json_set(s, "sig",
				    hex_string(e->sig[i].sig, PROTO_SIG_LEN)) <
			0) {
			json_decref(sigs);
			goto out;
		}
	}
	if (proto__json_set(o, "signed", json_stringn(e->body, e->body_len)) <
		0 ||
	    proto__json_set(o, "signatures", sigs) < 0)
		goto out;
	rc = proto__json_dump(o, out, len);
out:
	json_decref(o);
	return rc;
}

static int decode_sigs(const json_t *sigs, struct proto_keyset_env *e,
		       struct proto_err *err)
{
	static const char *const names[] = {"key", "sig", NULL};
	int rc;
	if (!json_is_array(sigs) || json_array_size(sigs) < 1 ||
	    json_array_size(sigs) > PROTO_ROOT_KEYS_MAX)
		return proto__err(err, PROTO_EFIELD,
				  "field 'signatures': not an array of 1..%d "
				  "signatures",
				  PROTO_ROOT_KEYS_MAX);
	e->nsig = (uint32_t)json_array_size(sigs);
	for (uint32_t i = 0; i < e->nsig; i++) {
		json_t *s = json_array_get(sigs, i);
		if (!json_is_object(s))
			return proto__err(err, PROTO_EFIELD,
					  "field 'signatures': entry %u is "
					  "not an object",
					  i);
		if ((rc = only_members(s, names, "field 'signatures'", err)) <
			0 ||
		    (rc = hex_member(json_object_get(s, "key"), e->sig[i].key,
				     PROTO_PUBKEY_LEN, "field 'signatures.key'",
				     err)) < 0 ||
		    (rc = hex_member(json_object_get(s, "sig"), e->sig[i].sig,
				     PROTO_SIG_LEN, "field 'signatures.sig'",
				     err)) < 0)
			return rc;
	}
	return 0;
}

int proto_keyset_env_decode(const char *buf, size_t len,
			    struct proto_keyset_env *e, struct proto_err *err)
{
	static const char *const names[] = {"signed", "signatures", NULL};
	struct proto_keyset_env tmp;
	struct proto_err berr = {{0}};
	const char *body;
	size_t blen;
	json_t *o;
	int rc;

	memset(&tmp, 0, sizeof(tmp));
	memset(e, 0, sizeof(*e));
	if ((rc = proto__json_parse(buf, len, PROTO_KEYSET_MAX, &o, err)) < 0)
		return rc;
	if ((rc = only_members(o, names, "key set envelope", err)) < 0 ||
	    (rc = proto__json_str(o, "signed", true, &body, &blen, err)) < 0 ||
	    (rc = decode_sigs(json_object_get(o, "signatures"), &tmp, err)) < 0)
		goto out;
	if ((rc = proto_keyset_decode(body, blen, &tmp.ks, &berr)) < 0) {
		rc = proto__err(err, rc, "signed key set: %s", berr.text);
		goto out;
	}
	if ((tmp.body = malloc(blen + 1)) == NULL) {
		rc = proto__err(err, PROTO_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(tmp.body, body, blen);
	tmp.body[blen] = '\0';
	tmp.body_len = blen;
	*e = tmp;
	rc = 0;
out:
	json_decref(o);
	return rc;
}

void proto_keyset_env_free(struct proto_keyset_env *e)
{
	if (e == NULL)
		return;
	free(e->body);
	e->body = NULL;
	e->body_len = 0;
}

/* Distinct keys of `keys` whose signature over the body verifies. */
static uint32_t count_signers(const struct proto_keyset_env *e,
			      const uint8_t (*keys)[PROTO_PUBKEY_LEN],
			      uint32_t nkeys)
{
	uint32_t n = 0;
	for (uint32_t k = 0; k < nkeys; k++)
		for (uint32_t i = 0; i < e->nsig; i++)
			if (!memcmp(e->sig[i].key, keys[k], PROTO_PUBKEY_LEN) &&
			    proto_verify(keys[k], e->body, e->body_len,
					 e->sig[i].sig) == 0) {
				n++;
				break;
			}
	return n;
}

static bool same_root(const struct proto_keyset *a,
		      const struct proto_keyset *b)
{
	if (a->nroot != b->nroot || a->threshold != b->threshold)
		return false;
	for (uint32_t i = 0; i < a->nroot; i++)
		if (!key_listed(b->root, b->nroot, a->root[i]))
			return false;
	return true;
}

int proto_keyset_accept(const struct proto_keyset *cur,
			const struct proto_keyset_env *next, int64_t now,
			struct proto_err *err)
{
	const struct proto_keyset *n = &next->ks;
	uint32_t got = count_signers(next, cur->root, cur->nroot);
	if (got < cur->threshold)
		return proto__err(err, PROTO_ESIG,
				  "key set version %llu is signed by %u of the "
				  "%u trusted root keys, %u needed",
				  (unsigned long long)n->version, got,
				  cur->nroot, cur->threshold);
	if (!same_root(cur, n) &&
	    (got = count_signers(next, n->root, n->nroot)) < n->threshold)
		return proto__err(err, PROTO_ESIG,
				  "key set version %llu names new root keys "
				  "but is signed by %u of them, %u needed",
				  (unsigned long long)n->version, got,
				  n->threshold);
	if (n->version <= cur->version)
		return proto__err(err, PROTO_ERANGE,
				  "key set version %llu is not newer than the "
				  "trusted version %llu (rollback)",
				  (unsigned long long)n->version,
				  (unsigned long long)cur->version);
	if (now > 0 && now >= n->expires)
		return proto__err(err, PROTO_ERANGE,
				  "key set version %llu expired at %lld",
				  (unsigned long long)n->version,
				  (long long)n->expires);
	return 0;
}

int proto_trust_verify(const struct proto_trust *t, const char *product,
		       const void *manifest, size_t len,
		       const uint8_t sig[PROTO_SIG_LEN])
{
	if (t->ks == NULL)
		return t->pub ? proto_verify(t->pub, manifest, len, sig)
			      : PROTO_EKEY;
	for (uint32_t i = 0; i < t->ks->npub; i++) {
		const struct proto_keyset_pub *p = &t->ks->pub[i];
		if (strcmp(p->product, "*") != 0 && strcmp(p->product, product))
			continue;
		if (proto_verify(p->key, manifest, len, sig) == 0)
			return 0;
	}
	return PROTO_ESIG;
}
