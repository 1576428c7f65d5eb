/*
 * proto/manifest.c: the signed manifest and the package file.
 */
#include <string.h>

#include "proto/internal.h"

#define MANIFEST_FORMAT 1
#define MANIFEST_SIZE_MAX ((int64_t)1 << 40)
#define CREATED_MAX ((int64_t)1 << 53) /* exact in any JSON reader */

int proto_manifest_encode(const struct proto_manifest *m, char **out,
			  size_t *len)
{
	char hex[2 * PROTO_SHA256_LEN + 1];
	json_t *obj;
	int rc;

	*out = NULL;
	if (len != NULL)
		*len = 0;
	if (m->format != MANIFEST_FORMAT)
		return PROTO_ERANGE;
	if (!proto_id_valid(m->product))
		return PROTO_EFIELD;
	if (proto_version_parse(m->version, NULL) < 0)
		return PROTO_EVERSION;
	if (m->size < 1 || m->size > (uint64_t)MANIFEST_SIZE_MAX)
		return PROTO_ERANGE;
	if (m->created < 0 || m->created > CREATED_MAX)
		return PROTO_ERANGE;
	proto_hex_encode(m->sha256, PROTO_SHA256_LEN, hex);

	if ((obj = json_object()) == NULL)
		return PROTO_ENOMEM;
	/* The member order here is the signed byte order: never change it. */
	if ((rc = proto__json_set(obj, "format",
				  json_integer(MANIFEST_FORMAT))) < 0 ||
	    (rc = proto__json_set(obj, "product", json_string(m->product))) <
		    0 ||
	    (rc = proto__json_set(obj, "version", json_string(m->version))) <
		    0 ||
	    (rc = proto__json_set(obj, "size",
				  json_integer((json_int_t)m->size))) < 0 ||
	    (rc = proto__json_set(obj, "sha256", json_string(hex))) < 0 ||
	    (rc = proto__json_set(obj, "created",
				  json_integer((json_int_t)m->created))) < 0 ||
	    (m->downgrade &&
	     (rc = proto__json_set(obj, "downgrade", json_true())) < 0))
		goto out_obj;
	rc = proto__json_dump(obj, out, len);
out_obj:
	json_decref(obj);
	return rc;
}

int proto_manifest_decode(const char *buf, size_t len,
			  struct proto_manifest *m, struct proto_err *err)
{
	struct proto_manifest tmp;
	const char *hex;
	json_t *root;
	int64_t v;
	int rc;

	memset(&tmp, 0, sizeof(tmp));
	rc = proto__json_parse(buf, len, PROTO_MANIFEST_MAX, &root, err);
	if (rc < 0)
		return rc;
	if ((rc = proto__json_int(root, "format", true, 0, INT64_MAX, &v, NULL,
				  err)) < 0)
		goto out_root;
	if (v != MANIFEST_FORMAT) {
		rc = proto__err(err, PROTO_ERANGE,
				"field 'format': unsupported format %lld "
				"(this reader knows %d)",
				(long long)v, MANIFEST_FORMAT);
		goto out_root;
	}
	tmp.format = MANIFEST_FORMAT;
	if ((rc = proto__json_id(root, "product", true, tmp.product, err)) <
		    0 ||
	    (rc = proto__json_version(root, "version", tmp.version, err)) < 0)
		goto out_root;
	if ((rc = proto__json_int(root, "size", true, 1, MANIFEST_SIZE_MAX, &v,
				  NULL, err)) < 0)
		goto out_root;
	tmp.size = (uint64_t)v;
	if ((rc = proto__json_str(root, "sha256", true, &hex, NULL, err)) < 0)
		goto out_root;
	if (proto_hex_decode(hex, tmp.sha256, PROTO_SHA256_LEN) < 0) {
		rc = proto__err(err, PROTO_EFIELD,
				"field 'sha256': not %d hex digits",
				2 * PROTO_SHA256_LEN);
		goto out_root;
	}
	if ((rc = proto__json_int(root, "created", true, 0, CREATED_MAX, &v,
				  NULL, err)) < 0)
		goto out_root;
	tmp.created = v;
	json_t *dg = json_object_get(root, "downgrade");
	if (dg != NULL && !json_is_boolean(dg)) {
		rc = proto__err(err, PROTO_EFIELD,
				"field 'downgrade': not true or false");
		goto out_root;
	}
	tmp.downgrade = json_is_true(dg);
	if (m != NULL)
		*m = tmp;
	rc = 0;
out_root:
	json_decref(root);
	return rc;
}

/* ------------------------------------------------------------ package */

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

int proto_pkg_header_decode(const uint8_t *buf, size_t len,
			    struct proto_pkg_layout *lay,
			    struct proto_err *err)
{
	uint32_t mlen, slen;

	if (buf == NULL || len < PROTO_PKG_HDR_LEN)
		return proto__err(err, PROTO_ETRUNC,
				  "package is %zu bytes, shorter than its "
				  "%d-byte header",
				  buf == NULL ? (size_t)0 : len,
				  PROTO_PKG_HDR_LEN);
	if (memcmp(buf, PROTO_PKG_MAGIC, 8) != 0)
		return proto__err(err, PROTO_EMAGIC,
				  "not an OTA package (magic is not \"%s\")",
				  PROTO_PKG_MAGIC);
	mlen = get_le32(buf + 8);
	slen = get_le32(buf + 12);
	if (mlen < 1 || mlen > PROTO_MANIFEST_MAX)
		return proto__err(err, PROTO_ERANGE,
				  "manifest_len %u is not within 1..%d", mlen,
				  PROTO_MANIFEST_MAX);
	if (slen != PROTO_SIG_LEN)
		return proto__err(err, PROTO_ERANGE,
				  "sig_len is %u, must be %d (Ed25519)", slen,
				  PROTO_SIG_LEN);
	if (lay != NULL) {
		lay->manifest_len = mlen;
		lay->manifest_off = PROTO_PKG_HDR_LEN;
		lay->sig_off = PROTO_PKG_HDR_LEN + (uint64_t)mlen;
		lay->payload_off = lay->sig_off + PROTO_SIG_LEN;
	}
	return 0;
}

int proto_pkg_header_encode(uint8_t buf[PROTO_PKG_HDR_LEN],
			    uint32_t manifest_len)
{
	if (manifest_len < 1 || manifest_len > PROTO_MANIFEST_MAX)
		return PROTO_ERANGE;
	memcpy(buf, PROTO_PKG_MAGIC, 8);
	put_le32(buf + 8, manifest_len);
	put_le32(buf + 12, PROTO_SIG_LEN);
	return 0;
}

int proto_pkg_check(const uint8_t *buf, size_t len,
		    const uint8_t pub[PROTO_PUBKEY_LEN],
		    struct proto_manifest *m, struct proto_pkg_layout *lay,
		    struct proto_err *err)
{
	struct proto_pkg_layout l;
	struct proto_manifest man;
	struct proto_err merr = {{0}};
	uint8_t md[PROTO_SHA256_LEN];
	uint64_t want;
	int rc;

	if ((rc = proto_pkg_header_decode(buf, len, &l, err)) < 0)
		return rc;
	if ((uint64_t)len < l.payload_off)
		return proto__err(err, PROTO_ETRUNC,
				  "package truncated: %zu bytes, but manifest "
				  "and signature end at byte %llu",
				  len, (unsigned long long)l.payload_off);
	rc = proto_manifest_decode((const char *)buf + l.manifest_off,
				   l.manifest_len, &man, &merr);
	if (rc < 0)
		return proto__err(err, rc, "manifest: %s", merr.text);
	rc = proto_verify(pub, buf + l.manifest_off, l.manifest_len,
			  buf + l.sig_off);
	if (rc == PROTO_ESIG)
		return proto__err(err, rc,
				  "signature does not verify with the "
				  "configured publisher key");
	if (rc < 0)
		return proto__err(err, rc, "signature check failed: %s",
				  proto_strerror(rc));
	want = l.payload_off + man.size; /* <= 2^40 + 16 KiB: no overflow */
	if ((uint64_t)len > want)
		return proto__err(err, PROTO_ESIZE,
				  "payload is %llu byte%s longer than signed "
				  "(%llu bytes)",
				  (unsigned long long)((uint64_t)len - want),
				  (uint64_t)len - want == 1 ? "" : "s",
				  (unsigned long long)man.size);
	if ((uint64_t)len < want)
		return proto__err(err, PROTO_ESIZE,
				  "payload is %llu byte%s shorter than signed "
				  "(%llu bytes)",
				  (unsigned long long)(want - (uint64_t)len),
				  want - (uint64_t)len == 1 ? "" : "s",
				  (unsigned long long)man.size);
	if ((rc = proto__sha256(buf + l.payload_off, (size_t)man.size, md)) <
	    0)
		return proto__err(err, rc, "SHA-256 computation failed");
	if (memcmp(md, man.sha256, PROTO_SHA256_LEN) != 0)
		return proto__err(err, PROTO_EDIGEST,
				  "payload SHA-256 does not match the signed "
				  "manifest");
	if (m != NULL)
		*m = man;
	if (lay != NULL)
		*lay = l;
	return 0;
}
