/*
 * proto/coding.c: the JSON members of compressed and delta payloads
 * (PROTOCOL.md 5.2, 5.3, 6.4): the offer's encoding, payload size and
 * base, and the status's image digest.
 */
#include <stdio.h>
#include <string.h>

#include "proto/internal.h"

#define PAYLOAD_SIZE_MAX ((int64_t)1 << 40)

int proto__offer_coding_encode(json_t *obj, const struct proto_offer *o)
{
	char hex[2 * PROTO_SHA256_LEN + 1];
	int rc;

	if (o->encoding == PROTO_ENCODING_FULL)
		return 0;
	if (o->encoding != PROTO_ENCODING_ZSTD &&
	    o->encoding != PROTO_ENCODING_DELTA)
		return PROTO_EFIELD;
	if (o->payload_size < 1 || o->payload_size > PAYLOAD_SIZE_MAX)
		return PROTO_ERANGE;
	if ((rc = proto__json_set(
		 obj, "encoding",
		 json_string(proto_encoding_name(o->encoding)))) < 0 ||
	    (rc = proto__json_set(obj, "payload_size",
				  json_integer((json_int_t)o->payload_size))) <
		0)
		return rc;
	if (o->encoding != PROTO_ENCODING_DELTA)
		return 0;
	if (memchr(o->base_version, '\0', sizeof(o->base_version)) == NULL ||
	    proto_version_parse(o->base_version, NULL) < 0)
		return PROTO_EVERSION;
	proto_hex_encode(o->base, PROTO_SHA256_LEN, hex);
	if ((rc = proto__json_set(obj, "base", json_string(hex))) < 0)
		return rc;
	return proto__json_set(obj, "base_version",
			       json_string(o->base_version));
}

/* 64 lower-case hex digits (what writers produce: the delta's group
 * topic is made of them, so one spelling only). */
static int sha_hex(const json_t *root, const char *key, uint8_t *out,
		   bool *present, struct proto_err *err)
{
	const char *s;
	size_t n;
	int rc;

	if ((rc = proto__json_str(root, key, false, &s, &n, err)) < 0)
		return rc;
	*present = s != NULL;
	if (!s)
		return 0;
	if (n != 2 * PROTO_SHA256_LEN || strspn(s, "0123456789abcdef") != n ||
	    proto_hex_decode(s, out, PROTO_SHA256_LEN) < 0)
		return proto__err(err, PROTO_EFIELD,
				  "field '%s': not %d lower-case hex digits",
				  key, 2 * PROTO_SHA256_LEN);
	return 0;
}

int proto__offer_coding_decode(const json_t *root, struct proto_offer *o,
			       struct proto_err *err)
{
	const char *s;
	bool have_size, have_base;
	int64_t v;
	int rc;

	if ((rc = proto__json_str(root, "encoding", false, &s, NULL, err)) < 0)
		return rc;
	o->encoding = PROTO_ENCODING_FULL;
	if (s && proto_encoding_parse(s, &o->encoding) < 0)
		return proto__err(err, PROTO_EFIELD,
				  "field 'encoding': not full, zstd or delta");
	if ((rc = proto__json_int(root, "payload_size", false, 1,
				  PAYLOAD_SIZE_MAX, &v, &have_size, err)) < 0)
		return rc;
	if (have_size != (o->encoding != PROTO_ENCODING_FULL))
		return proto__err(err, PROTO_EFIELD, "field 'payload_size': %s",
				  have_size ? "without an encoding"
					    : "missing for an encoding");
	o->payload_size = have_size ? (uint64_t)v : 0;
	if ((rc = sha_hex(root, "base", o->base, &have_base, err)) < 0)
		return rc;
	bool delta = o->encoding == PROTO_ENCODING_DELTA;
	bool have_ver = json_object_get(root, "base_version") != NULL;
	if (have_base != delta || have_ver != delta)
		return proto__err(err, PROTO_EFIELD,
				  "fields 'base' and 'base_version': %s",
				  delta ? "both required for a delta"
					: "only for a delta");
	if (delta)
		return proto__json_version(root, "base_version",
					   o->base_version, err);
	return 0;
}

int proto__status_image_encode(json_t *obj, const struct proto_status *s)
{
	char hex[2 * PROTO_SHA256_LEN + 1];

	if (!s->has_image)
		return 0;
	proto_hex_encode(s->image, PROTO_SHA256_LEN, hex);
	return proto__json_set(obj, "image", json_string(hex));
}

int proto__status_image_decode(const json_t *root, struct proto_status *s,
			       struct proto_err *err)
{
	return sha_hex(root, "image", s->image, &s->has_image, err);
}

void proto_group_topic(const char *release, enum proto_encoding e,
		       const uint8_t base[PROTO_SHA256_LEN], char *out,
		       size_t n)
{
	char hex[2 * PROTO_SHA256_LEN + 1];

	proto_hex_encode(base, PROTO_SHA256_LEN, hex);
	if (e == PROTO_ENCODING_DELTA)
		snprintf(out, n, "ota/grp/%sd%.16s/frag", release, hex);
	else if (e == PROTO_ENCODING_ZSTD)
		snprintf(out, n, "ota/grp/%sz/frag", release);
	else
		snprintf(out, n, PROTO_GROUP_TOPIC_FMT, release);
}
