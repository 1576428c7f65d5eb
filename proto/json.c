/*
 * proto/json.c: the JSON control messages (announcement, control, offer);
 * the device's status is proto/status.c.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/internal.h"

/* Upper bounds on whole messages, before parsing. */
#define ANNOUNCE_JSON_MAX (1024 * 1024)
#define OFFER_JSON_MAX (256 * 1024)

#define SIG_HEX_LEN (2 * PROTO_SIG_LEN)

/* -------------------------------------------------------- announcement */

static const char *const announce_keys[] = {
    "url",
    "group",
    "devices",
    "fragment_size",
    "window",
    "concurrency",
    "canary_percent",
    "canary_success_percent",
    "pause_failure_percent",
    "encrypt",
    "reply",
    "dry_run",
    "operator",
    "pause_failure_min",
    "delta",
    "restart_spread_s",
};

static int announce_check_keys(const json_t *root, struct proto_err *err)
{
	const char *key;
	json_t *val;
	char name[40];
	size_t i;

	json_object_foreach((json_t *)root, key, val)
	{
		bool known = false;

		for (i = 0; i < sizeof(announce_keys) / sizeof(*announce_keys);
		     i++)
			known = known || strcmp(key, announce_keys[i]) == 0;
		if (!known) {
			/* A misspelt targeting key must not widen a rollout
			 * to the whole fleet: unknown members are refused. */
			proto__sanitize(name, sizeof(name), key);
			return proto__err(err, PROTO_EFIELD,
					  "unknown field '%s'", name);
		}
	}
	return 0;
}

static int announce_url(const json_t *root, char *dst, struct proto_err *err)
{
	size_t i, n;
	int rc;

	rc = proto__json_copy(root, "url", true, dst, PROTO_URL_MAX + 1, err);
	if (rc < 0)
		return rc;
	if (strncmp(dst, "file://", 7) == 0)
		n = 7;
	else if (strncmp(dst, "https://", 8) == 0)
		n = 8;
	else
		return proto__err(err, PROTO_EFIELD,
				  "field 'url': scheme is not file:// or "
				  "https://");
	if (dst[n] == '\0')
		return proto__err(err, PROTO_EFIELD,
				  "field 'url': nothing after the scheme");
	for (i = 0; dst[i] != '\0'; i++) {
		unsigned char c = (unsigned char)dst[i];

		if (c <= 0x20 || c == 0x7f)
			return proto__err(err, PROTO_EFIELD,
					  "field 'url': space or control "
					  "character at byte %zu",
					  i);
	}
	return 0;
}

static int announce_devices(const json_t *root, struct proto_announce *a,
			    struct proto_err *err)
{
	json_t *arr = json_object_get(root, "devices");
	size_t i, n;

	if (arr == NULL)
		return 0;
	if (!json_is_array(arr))
		return proto__err(err, PROTO_EFIELD,
				  "field 'devices': not an array");
	n = json_array_size(arr);
	if (n == 0)
		return proto__err(err, PROTO_EFIELD,
				  "field 'devices': empty (omit it to target "
				  "every device)");
	if (n > PROTO_ANNOUNCE_DEVICES_MAX)
		return proto__err(err, PROTO_ERANGE,
				  "field 'devices': %zu entries, limit is %d",
				  n, PROTO_ANNOUNCE_DEVICES_MAX);
	if ((a->devices = calloc(n, sizeof(*a->devices))) == NULL)
		return proto__err(err, PROTO_ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		json_t *v = json_array_get(arr, i);
		const char *s = json_string_value(v);

		if (!json_is_string(v) || strlen(s) != json_string_length(v) ||
		    !proto_id_valid(s))
			return proto__err(err, PROTO_EFIELD,
					  "field 'devices': entry %zu is not "
					  "a device id",
					  i);
		if ((a->devices[i] = strdup(s)) == NULL)
			return proto__err(err, PROTO_ENOMEM, "out of memory");
		a->ndevices = i + 1;
	}
	return 0;
}

int proto_announce_decode(const char *buf, size_t len, struct proto_announce *a,
			  struct proto_err *err)
{
	json_t *root;
	int64_t v;
	int rc;

	memset(a, 0, sizeof(*a));
	rc = proto__json_parse(buf, len, ANNOUNCE_JSON_MAX, &root, err);
	if (rc < 0)
		return rc;
	if ((rc = announce_check_keys(root, err)) < 0 ||
	    (rc = announce_url(root, a->url, err)) < 0 ||
	    (rc = proto__json_id(root, "group", false, a->group, err)) < 0 ||
	    (rc = announce_devices(root, a, err)) < 0)
		goto out_fail;
	if ((rc = proto__json_int(root, "fragment_size", false, 0,
				  PROTO_FRAG_SIZE_MAX, &v, NULL, err)) < 0)
		goto out_fail;
	if (v != 0 && v < PROTO_FRAG_SIZE_MIN) {
		rc = proto__err(err, PROTO_ERANGE,
				"field 'fragment_size': %lld is not 0 or "
				"within %d..%d",
				(long long)v, PROTO_FRAG_SIZE_MIN,
				PROTO_FRAG_SIZE_MAX);
		goto out_fail;
	}
	a->fragment_size = (uint32_t)v;
	if ((rc = proto__json_int(root, "window", false, 0, PROTO_WINDOW_MAX,
				  &v, NULL, err)) < 0)
		goto out_fail;
	a->window = (uint32_t)v;
	if ((rc = proto__json_int(root, "concurrency", false, 0, 1000000, &v,
				  NULL, err)) < 0)
		goto out_fail;
	a->concurrency = (uint32_t)v;
	if ((rc = proto__json_int(root, "canary_percent", false, 0, 100, &v,
				  NULL, err)) < 0)
		goto out_fail;
	a->canary_percent = (uint32_t)v;
	if ((rc = proto__json_int(root, "canary_success_percent", false, 0, 100,
				  &v, NULL, err)) < 0)
		goto out_fail;
	a->canary_success_percent = (uint32_t)v;
	if ((rc = proto__json_int(root, "pause_failure_percent", false, 0, 100,
				  &v, NULL, err)) < 0)
		goto out_fail;
	a->pause_failure_percent = (uint32_t)v;
	const json_t *enc = json_object_get(root, "encrypt");
	if (enc != NULL && !json_is_boolean(enc)) {
		rc = proto__err(err, PROTO_EFIELD,
				"field 'encrypt': not true or false");
		goto out_fail;
	}
	a->encrypt_set = enc != NULL;
	a->encrypt = json_is_true(enc);
	if ((rc = proto__json_id(root, "reply", false, a->reply, err)) < 0 ||
	    (rc = proto__json_id(root, "operator", false, a->operator_name,
				 err)) < 0 ||
	    (rc = proto__json_bool(root, "dry_run", &a->dry_run, err)) < 0)
		goto out_fail;
	if ((rc = proto__json_int(root, "pause_failure_min", false, 0,
				  PROTO_PAUSE_FAILURE_MIN_MAX, &v, NULL, err)) <
	    0)
		goto out_fail;
	a->pause_failure_min = (uint32_t)v;
	const json_t *dl = json_object_get(root, "delta");
	if (dl != NULL && !json_is_boolean(dl)) {
		rc = proto__err(err, PROTO_EFIELD,
				"field 'delta': not true or false");
		goto out_fail;
	}
	a->no_delta = json_is_false(dl);
	if ((rc = proto__json_int(root, "restart_spread_s", false, 0,
				  PROTO_SPREAD_MS_MAX / 1000, &v,
				  &a->restart_spread_set, err)) < 0)
		goto out_fail;
	a->restart_spread_s = (uint32_t)v;
	json_decref(root);
	return 0;
out_fail:
	json_decref(root);
	proto_announce_free(a);
	memset(a, 0, sizeof(*a));
	return rc;
}

/* ------------------------------------------------------------- control */

static const char *const action_names[] = {"pause", "resume", "abort", "retry"};
#define ACTIONS (sizeof(action_names) / sizeof(action_names[0]))

const char *proto_action_name(enum proto_action a)
{
	return (unsigned)a < ACTIONS ? action_names[a] : "?";
}

int proto_control_decode(const char *buf, size_t len, struct proto_control *c,
			 struct proto_err *err)
{
	json_t *root;
	const char *key;
	json_t *val;
	char act[16], name[40];
	int rc;

	memset(c, 0, sizeof(*c));
	rc = proto__json_parse(buf, len, 4096, &root, err);
	if (rc < 0)
		return rc;
	json_object_foreach(root, key, val)
	{
		if (strcmp(key, "action") != 0 && strcmp(key, "release") != 0 &&
		    strcmp(key, "reply") != 0 && strcmp(key, "operator") != 0) {
			proto__sanitize(name, sizeof(name), key);
			rc = proto__err(err, PROTO_EFIELD, "unknown field '%s'",
					name);
			goto out;
		}
	}
	rc = proto__json_copy(root, "action", true, act, sizeof(act), err);
	if (rc < 0)
		goto out;
	rc = proto__err(err, PROTO_EFIELD,
			"field 'action': not pause, resume, abort or retry");
	for (size_t i = 0; i < ACTIONS; i++) {
		if (strcmp(act, action_names[i]) == 0) {
			c->action = (enum proto_action)i;
			rc = 0;
		}
	}
	if (rc < 0)
		goto out;
	rc = proto__json_copy(root, "release", false, c->release,
			      sizeof(c->release), err);
	if (rc < 0)
		goto out;
	if (c->release[0] && !proto__release_hex_valid(c->release)) {
		rc = proto__err(err, PROTO_EFIELD,
				"field 'release': not 16 lowercase hex digits");
		goto out;
	}
	if ((rc = proto__json_id(root, "reply", false, c->reply, err)) < 0)
		goto out;
	rc = proto__json_id(root, "operator", false, c->operator_name, err);
out:
	json_decref(root);
	return rc < 0 ? rc : 0;
}

int proto_control_encode(const struct proto_control *c, char **out, size_t *len)
{
	json_t *o = json_object();
	int rc = PROTO_ENOMEM;

	if (o == NULL || (unsigned)c->action >= ACTIONS)
		goto out;
	if (proto__json_set(o, "action", json_string(action_names[c->action])) <
	    0)
		goto out;
	if (c->release[0] &&
	    proto__json_set(o, "release", json_string(c->release)) < 0)
		goto out;
	if ((c->reply[0] &&
	     (!proto_id_valid(c->reply) ||
	      proto__json_set(o, "reply", json_string(c->reply)) < 0)) ||
	    (c->operator_name[0] &&
	     (!proto_id_valid(c->operator_name) ||
	      proto__json_set(o, "operator", json_string(c->operator_name)) <
		  0))) {
		rc = PROTO_EFIELD;
		goto out;
	}
	rc = proto__json_dump(o, out, len);
out:
	json_decref(o);
	return rc;
}

void proto_announce_free(struct proto_announce *a)
{
	size_t i;

	if (a == NULL || a->devices == NULL)
		return;
	/* Entries past ndevices are NULL (calloc) when decoding failed. */
	for (i = 0; i < a->ndevices; i++)
		free(a->devices[i]);
	free(a->devices);
	a->devices = NULL;
	a->ndevices = 0;
}

/* --------------------------------------------------------------- offer */

static bool offer_numbers_ok(uint32_t fragment_size, uint32_t fragments,
			     uint32_t window)
{
	return fragment_size >= PROTO_FRAG_SIZE_MIN &&
	       fragment_size <= PROTO_FRAG_SIZE_MAX && fragments >= 1 &&
	       fragments <= PROTO_FRAGS_MAX && window >= 1 &&
	       window <= PROTO_WINDOW_MAX;
}

#define EPK_HEX_LEN (2 * PROTO_EC_PUB_LEN)
#define WRAPPED_HEX_LEN (2 * PROTO_ENC_WRAPPED_LEN)

/* "enc":{"alg":"...","epk":"<130 hex>","key":"<96 hex>"} */
static int offer_enc_encode(json_t *obj, const struct proto_offer *o)
{
	char epk[EPK_HEX_LEN + 1], key[WRAPPED_HEX_LEN + 1];
	json_t *enc;
	int rc;

	if (memchr(o->enc_alg, '\0', sizeof(o->enc_alg)) == NULL)
		return PROTO_EFIELD;
	if ((enc = json_object()) == NULL)
		return PROTO_ENOMEM;
	proto_hex_encode(o->enc_epk, PROTO_EC_PUB_LEN, epk);
	proto_hex_encode(o->enc_key, PROTO_ENC_WRAPPED_LEN, key);
	/* epk and key belong to PROTO_ENC_ALG; another alg has its own. */
	bool ours = strcmp(o->enc_alg, PROTO_ENC_ALG) == 0;
	if ((rc = proto__json_set(enc, "alg", json_string(o->enc_alg))) < 0 ||
	    (ours &&
	     (rc = proto__json_set(enc, "epk", json_string(epk))) < 0) ||
	    (ours &&
	     (rc = proto__json_set(enc, "key", json_string(key))) < 0)) {
		json_decref(enc);
		return rc;
	}
	return proto__json_set(obj, "enc", enc);
}

/* The offer's "enc" member: absent, or an object with "alg" (a name, at
 * most 63 bytes) and, for PROTO_ENC_ALG, "epk" and "key" in hex. */
static int offer_enc_decode(const json_t *root, struct proto_offer *o,
			    struct proto_err *err)
{
	const json_t *enc = json_object_get(root, "enc");
	const char *s;
	int rc;

	if (enc == NULL)
		return 0;
	if (!json_is_object(enc))
		return proto__err(err, PROTO_EFIELD,
				  "field 'enc': not an object");
	if ((rc = proto__json_copy(enc, "alg", true, o->enc_alg,
				   sizeof(o->enc_alg), err)) < 0)
		return rc;
	if (o->enc_alg[0] == '\0' ||
	    strspn(o->enc_alg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
			       "VWXYZ0123456789.+_-") != strlen(o->enc_alg))
		return proto__err(err, PROTO_EFIELD,
				  "field 'enc.alg': not a name of "
				  "[A-Za-z0-9.+_-]");
	if (strcmp(o->enc_alg, PROTO_ENC_ALG) != 0)
		return 0; /* the device says it does not know it */
	if ((rc = proto__json_str(enc, "epk", true, &s, NULL, err)) < 0)
		return rc;
	if (proto_hex_decode(s, o->enc_epk, PROTO_EC_PUB_LEN) < 0)
		return proto__err(err, PROTO_EFIELD,
				  "field 'enc.epk': not %d hex digits",
				  EPK_HEX_LEN);
	if ((rc = proto__json_str(enc, "key", true, &s, NULL, err)) < 0)
		return rc;
	if (proto_hex_decode(s, o->enc_key, PROTO_ENC_WRAPPED_LEN) < 0)
		return proto__err(err, PROTO_EFIELD,
				  "field 'enc.key': not %d hex digits",
				  WRAPPED_HEX_LEN);
	return 0;
}

int proto_offer_encode(const struct proto_offer *o, char **out, size_t *len)
{
	char sighex[SIG_HEX_LEN + 1];
	json_t *obj, *man;
	int rc;

	*out = NULL;
	if (len != NULL)
		*len = 0;
	if (!proto__release_hex_valid(o->release))
		return PROTO_EFIELD;
	if (o->manifest == NULL || o->manifest_len < 1 ||
	    o->manifest_len > PROTO_MANIFEST_MAX ||
	    memchr(o->manifest, '\0', o->manifest_len) != NULL)
		return PROTO_EFIELD;
	if (!offer_numbers_ok(o->fragment_size, o->fragments, o->window) ||
	    (uint64_t)o->fragments + o->table_fragments > PROTO_FRAGS_MAX ||
	    o->restart_spread_ms > PROTO_SPREAD_MS_MAX)
		return PROTO_ERANGE;
	proto_hex_encode(o->sig, PROTO_SIG_LEN, sighex);
	/* NULL when the manifest is not valid UTF-8. */
	if ((man = json_stringn(o->manifest, o->manifest_len)) == NULL)
		return PROTO_EFIELD;
	if ((obj = json_object()) == NULL) {
		json_decref(man);
		return PROTO_ENOMEM;
	}
	if ((rc = proto__json_set(obj, "release", json_string(o->release))) <
		0 ||
	    (rc = proto__json_set(obj, "manifest", man)) < 0 ||
	    (rc = proto__json_set(obj, "sig", json_string(sighex))) < 0 ||
	    (rc = proto__json_set(obj, "fragment_size",
				  json_integer(o->fragment_size))) < 0 ||
	    (rc = proto__json_set(obj, "fragments",
				  json_integer(o->fragments))) < 0 ||
	    (rc = proto__json_set(obj, "window", json_integer(o->window))) <
		0 ||
	    (o->table_fragments &&
	     (rc = proto__json_set(obj, "table_fragments",
				   json_integer(o->table_fragments))) < 0) ||
	    (o->group &&
	     (rc = proto__json_set(obj, "group", json_true())) < 0) ||
	    (o->restart_spread_ms &&
	     (rc = proto__json_set(obj, "restart_spread_ms",
				   json_integer(o->restart_spread_ms))) < 0) ||
	    (o->enc_alg[0] && (rc = offer_enc_encode(obj, o)) < 0) ||
	    (o->epoch && (rc = proto__json_set(obj, "epoch",
					       json_integer(o->epoch))) < 0) ||
	    (o->keyset &&
	     (rc = proto__json_set(obj, "keyset",
				   json_stringn(o->keyset, o->keyset_len))) <
		 0) ||
	    (rc = proto__offer_coding_encode(obj, o)) < 0)
		goto out_obj;
	rc = proto__json_dump(obj, out, len);
out_obj:
	json_decref(obj);
	return rc;
}

static int offer_fields(const json_t *root, struct proto_offer *o,
			struct proto_err *err)
{
	const char *s, *ks;
	size_t n, kn;
	int64_t v;
	int rc;

	if ((rc = proto__json_str(root, "release", true, &s, NULL, err)) < 0)
		return rc;
	if (!proto__release_hex_valid(s))
		return proto__err(err, PROTO_EFIELD,
				  "field 'release': not %d lower-case hex "
				  "digits",
				  PROTO_RELEASE_HEX_LEN);
	memcpy(o->release, s, PROTO_RELEASE_HEX_LEN + 1);
	if ((rc = proto__json_str(root, "sig", true, &s, NULL, err)) < 0)
		return rc;
	if (proto_hex_decode(s, o->sig, PROTO_SIG_LEN) < 0)
		return proto__err(err, PROTO_EFIELD,
				  "field 'sig': not %d hex digits",
				  SIG_HEX_LEN);
	if ((rc = proto__json_int(root, "fragment_size", true,
				  PROTO_FRAG_SIZE_MIN, PROTO_FRAG_SIZE_MAX, &v,
				  NULL, err)) < 0)
		return rc;
	o->fragment_size = (uint32_t)v;
	if ((rc = proto__json_int(root, "fragments", true, 1, PROTO_FRAGS_MAX,
				  &v, NULL, err)) < 0)
		return rc;
	o->fragments = (uint32_t)v;
	if ((rc = proto__json_int(root, "window", true, 1, PROTO_WINDOW_MAX, &v,
				  NULL, err)) < 0)
		return rc;
	o->window = (uint32_t)v;
	if ((rc = proto__json_int(root, "table_fragments", false, 0,
				  PROTO_FRAGS_MAX - 1, &v, NULL, err)) < 0)
		return rc;
	o->table_fragments = (uint32_t)v;
	const json_t *grp = json_object_get(root, "group");
	if (grp != NULL && !json_is_boolean(grp))
		return proto__err(err, PROTO_EFIELD,
				  "field 'group': not true or false");
	o->group = json_is_true(grp);
	if ((rc = proto__json_int(root, "restart_spread_ms", false, 0,
				  PROTO_SPREAD_MS_MAX, &v, NULL, err)) < 0)
		return rc;
	o->restart_spread_ms = (uint32_t)v;
	if ((rc = proto__json_int(root, "epoch", false, 0, PROTO_EPOCH_MAX, &v,
				  NULL, err)) < 0)
		return rc;
	o->epoch = (uint32_t)v;
	if ((rc = offer_enc_decode(root, o, err)) < 0 ||
	    (rc = proto__offer_coding_decode(root, o, err)) < 0)
		return rc;
	if ((uint64_t)o->fragments + o->table_fragments > PROTO_FRAGS_MAX)
		return proto__err(err, PROTO_ERANGE,
				  "%u table and %u payload fragments exceed "
				  "%u",
				  o->table_fragments, o->fragments,
				  PROTO_FRAGS_MAX);
	/* Last, so that nothing is allocated when another field is bad. */
	if ((rc = proto__json_str(root, "manifest", true, &s, &n, err)) < 0)
		return rc;
	if (n < 1 || n > PROTO_MANIFEST_MAX)
		return proto__err(err, PROTO_ERANGE,
				  "field 'manifest': %zu bytes, must be "
				  "1..%d",
				  n, PROTO_MANIFEST_MAX);
	if ((rc = proto__json_str(root, "keyset", false, &ks, &kn, err)) < 0)
		return rc;
	if (ks && (kn < 1 || kn > PROTO_KEYSET_MAX))
		return proto__err(err, PROTO_ERANGE,
				  "field 'keyset': %zu bytes, must be 1..%d",
				  kn, PROTO_KEYSET_MAX);
	if ((o->manifest = malloc(n + 1)) == NULL ||
	    (ks && (o->keyset = malloc(kn + 1)) == NULL))
		return proto__err(err, PROTO_ENOMEM, "out of memory");
	memcpy(o->manifest, s, n + 1);
	o->manifest_len = n;
	if (ks) {
		memcpy(o->keyset, ks, kn + 1);
		o->keyset_len = kn;
	}
	return 0;
}

int proto_offer_decode(const char *buf, size_t len, struct proto_offer *o,
		       struct proto_err *err)
{
	json_t *root;
	int rc;

	memset(o, 0, sizeof(*o));
	rc = proto__json_parse(buf, len, OFFER_JSON_MAX, &root, err);
	if (rc < 0)
		return rc;
	rc = offer_fields(root, o, err);
	json_decref(root);
	if (rc < 0) {
		proto_offer_free(o);
		memset(o, 0, sizeof(*o));
	}
	return rc;
}

void proto_offer_free(struct proto_offer *o)
{
	if (o == NULL)
		return;
	free(o->manifest);
	free(o->keyset);
	o->manifest = NULL;
	o->keyset = NULL;
	o->manifest_len = o->keyset_len = 0;
}
