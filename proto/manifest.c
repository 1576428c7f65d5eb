/*
 * proto/manifest.c: the signed manifest and the package file.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "proto/internal.h"

#define MANIFEST_FORMAT 1
#define MANIFEST_SIZE_MAX ((int64_t)1 << 40)
#define CREATED_MAX ((int64_t)1 << 53) /* exact in any JSON reader */

static bool block_size_ok(uint64_t bs, uint64_t size)
{
	return bs >= PROTO_BLOCK_SIZE_MIN && bs <= PROTO_BLOCK_SIZE_MAX &&
	       (bs & (bs - 1)) == 0 && (size + bs - 1) / bs <= PROTO_BLOCKS_MAX;
}

int proto_manifest_encode(const struct proto_manifest *m, char **out,
			  size_t *len)
{
	char hex[2 * PROTO_SHA256_LEN + 1], bhex[2 * PROTO_SHA256_LEN + 1];
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
	if (m->block_size != 0 && !block_size_ok(m->block_size, m->size))
		return PROTO_ERANGE;
	if (m->downgrade != (m->replaces[0] != '\0'))
		return PROTO_EFIELD;
	if (m->downgrade &&
	    (proto_version_parse(m->replaces, NULL) < 0 ||
	     proto_version_cmp(m->replaces, m->version, &rc) < 0 || rc <= 0))
		return PROTO_EVERSION;
	if (m->security_version > PROTO_SECURITY_VERSION_MAX)
		return PROTO_ERANGE;
	if (m->expires != 0 &&
	    (m->expires <= m->created || m->expires > CREATED_MAX))
		return PROTO_ERANGE;
	proto_hex_encode(m->sha256, PROTO_SHA256_LEN, hex);
	proto_hex_encode(m->blocks, PROTO_SHA256_LEN, bhex);

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
	    (m->block_size &&
	     ((rc = proto__json_set(obj, "block_size",
				    json_integer(m->block_size))) < 0 ||
	      (rc = proto__json_set(obj, "blocks", json_string(bhex))) < 0)) ||
	    (m->downgrade &&
	     ((rc = proto__json_set(obj, "downgrade", json_true())) < 0 ||
	      (rc = proto__json_set(obj, "replaces",
				    json_string(m->replaces))) < 0)) ||
	    (m->security_version &&
	     (rc = proto__json_set(obj, "security_version",
				   json_integer(m->security_version))) < 0) ||
	    (m->expires &&
	     (rc = proto__json_set(obj, "expires",
				   json_integer((json_int_t)m->expires))) <
		 0) ||
	    (m->no_compress &&
	     (rc = proto__json_set(obj, "compress", json_false())) < 0))
		goto out_obj;
	rc = proto__json_dump(obj, out, len);
out_obj:
	json_decref(obj);
	return rc;
}

/* "replaces", "security_version" and "expires" (see proto.h). */
static int manifest_decode_rollback(const json_t *root,
				    struct proto_manifest *m,
				    struct proto_err *err)
{
	int64_t v;
	bool have;
	int rc, c;

	if (json_object_get(root, "replaces") != NULL || m->downgrade) {
		if (!m->downgrade)
			return proto__err(err, PROTO_EFIELD,
					  "field 'replaces' without "
					  "'downgrade':true");
		if ((rc = proto__json_version(root, "replaces", m->replaces,
					      err)) < 0)
			return rc;
		if (proto_version_cmp(m->replaces, m->version, &c) < 0 ||
		    c <= 0)
			return proto__err(err, PROTO_EVERSION,
					  "field 'replaces': %s is not newer "
					  "than the downgrade's version %s",
					  m->replaces, m->version);
	}
	if ((rc = proto__json_int(root, "security_version", false, 0,
				  PROTO_SECURITY_VERSION_MAX, &v, &have, err)) <
	    0)
		return rc;
	m->security_version = have ? (uint32_t)v : 0;
	if ((rc = proto__json_int(root, "expires", false, 1, CREATED_MAX, &v,
				  &have, err)) < 0)
		return rc;
	if (have && v <= m->created)
		return proto__err(err, PROTO_ERANGE,
				  "field 'expires': %lld is not after "
				  "'created' %lld",
				  (long long)v, (long long)m->created);
	m->expires = have ? v : 0;
	/* "compress": only false means anything (true is the default). */
	const json_t *cj = json_object_get(root, "compress");
	if (cj && !json_is_boolean(cj))
		return proto__err(err, PROTO_EFIELD,
				  "field 'compress': not true or false");
	m->no_compress = json_is_false(cj);
	return 0;
}

int proto_manifest_decode(const char *buf, size_t len, struct proto_manifest *m,
			  struct proto_err *err)
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
	bool have_bs;
	if ((rc = proto__json_int(root, "block_size", false, 0, INT64_MAX, &v,
				  &have_bs, err)) < 0)
		goto out_root;
	if ((rc = proto__json_str(root, "blocks", false, &hex, NULL, err)) < 0)
		goto out_root;
	if (have_bs != (hex != NULL)) {
		rc = proto__err(err, PROTO_EFIELD,
				"fields 'block_size' and 'blocks' go together");
		goto out_root;
	}
	if (have_bs && !block_size_ok((uint64_t)v, tmp.size)) {
		rc = proto__err(err, PROTO_ERANGE,
				"field 'block_size': %lld is not a power of "
				"two in %u..%u with at most %u blocks",
				(long long)v, PROTO_BLOCK_SIZE_MIN,
				PROTO_BLOCK_SIZE_MAX, PROTO_BLOCKS_MAX);
		goto out_root;
	}
	if (have_bs &&
	    proto_hex_decode(hex, tmp.blocks, PROTO_SHA256_LEN) < 0) {
		rc = proto__err(err, PROTO_EFIELD,
				"field 'blocks': not %d hex digits",
				2 * PROTO_SHA256_LEN);
		goto out_root;
	}
	tmp.block_size = have_bs ? (uint32_t)v : 0;
	json_t *dg = json_object_get(root, "downgrade");
	if (dg != NULL && !json_is_boolean(dg)) {
		rc = proto__err(err, PROTO_EFIELD,
				"field 'downgrade': not true or false");
		goto out_root;
	}
	tmp.downgrade = json_is_true(dg);
	if ((rc = manifest_decode_rollback(root, &tmp, err)) < 0)
		goto out_root;
	if (m != NULL)
		*m = tmp;
	rc = 0;
out_root:
	json_decref(root);
	return rc;
}

/* --------------------------------------------------------- block table */

uint64_t proto_block_count(const struct proto_manifest *m)
{
	if (m->block_size == 0)
		return 0;
	return (m->size + m->block_size - 1) / m->block_size;
}

uint32_t proto_block_len(const struct proto_manifest *m, uint64_t i)
{
	uint64_t off = i * m->block_size;
	if (m->block_size == 0 || off >= m->size)
		return 0;
	return m->size - off < m->block_size ? (uint32_t)(m->size - off)
					     : m->block_size;
}

uint32_t proto_table_fragments(const struct proto_manifest *m,
			       uint32_t fragment_size)
{
	if (fragment_size == 0)
		return 0;
	/* <= 2^24 blocks x 32 bytes / 160: fits in 32 bits */
	return (uint32_t)((proto_block_count(m) * PROTO_SHA256_LEN +
			   fragment_size - 1) /
			  fragment_size);
}

int proto_block_table(const struct proto_manifest *m, const uint8_t *payload,
		      uint8_t *table, uint8_t root[PROTO_SHA256_LEN])
{
	uint64_t n = proto_block_count(m);
	uint8_t md[PROTO_SHA256_LEN];
	unsigned int rlen = 0;
	EVP_MD_CTX *ctx;
	int rc = PROTO_ECRYPTO;

	if (n == 0)
		return PROTO_EFIELD;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return PROTO_ENOMEM;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	for (uint64_t i = 0; i < n; i++) {
		if (proto_sha256(payload + i * m->block_size,
				 proto_block_len(m, i), md) < 0 ||
		    EVP_DigestUpdate(ctx, md, sizeof(md)) != 1)
			goto out;
		if (table != NULL)
			memcpy(table + i * PROTO_SHA256_LEN, md, sizeof(md));
	}
	if (EVP_DigestFinal_ex(ctx, md, &rlen) != 1 || rlen != sizeof(md))
		goto out;
	if (root != NULL)
		memcpy(root, md, sizeof(md));
	rc = 0;
out:
	if (rc == PROTO_ECRYPTO)
		ERR_clear_error();
	EVP_MD_CTX_free(ctx);
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
			    struct proto_pkg_layout *lay, struct proto_err *err)
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

static int pkg_check(const uint8_t *buf, size_t len,
		     const struct proto_trust *t, struct proto_manifest *m,
		     struct proto_pkg_layout *lay, uint8_t **table,
		     struct proto_err *err)
{
	uint8_t *tab = NULL;
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
	rc = proto_trust_verify(t, man.product, buf + l.manifest_off,
				l.manifest_len, buf + l.sig_off);
	if (rc == PROTO_ESIG && t->ks != NULL)
		return proto__err(err, rc,
				  "signature does not verify with any "
				  "publisher key the key set (version %llu) "
				  "allows for product '%s'",
				  (unsigned long long)t->ks->version,
				  man.product);
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
	if ((rc = proto_sha256(buf + l.payload_off, (size_t)man.size, md)) < 0)
		return proto__err(err, rc, "SHA-256 computation failed");
	if (memcmp(md, man.sha256, PROTO_SHA256_LEN) != 0)
		return proto__err(err, PROTO_EDIGEST,
				  "payload SHA-256 does not match the signed "
				  "manifest");
	if (man.block_size != 0) {
		if (table != NULL &&
		    (tab = malloc((size_t)proto_block_count(&man) *
				  PROTO_SHA256_LEN)) == NULL)
			return proto__err(err, PROTO_ENOMEM, "out of memory");
		if ((rc = proto_block_table(&man, buf + l.payload_off, tab,
					    md)) < 0) {
			free(tab);
			return proto__err(err, rc,
					  "block table computation failed");
		}
		if (memcmp(md, man.blocks, PROTO_SHA256_LEN) != 0) {
			free(tab);
			return proto__err(err, PROTO_EDIGEST,
					  "block table of the payload does not "
					  "match the signed manifest");
		}
	}
	if (table != NULL)
		*table = tab;
	if (m != NULL)
		*m = man;
	if (lay != NULL)
		*lay = l;
	return 0;
}

int proto_pkg_check(const uint8_t *buf, size_t len,
		    const uint8_t pub[PROTO_PUBKEY_LEN],
		    struct proto_manifest *m, struct proto_pkg_layout *lay,
		    struct proto_err *err)
{
	struct proto_trust t = {.pub = pub};
	return pkg_check(buf, len, &t, m, lay, NULL, err);
}

int proto_pkg_check_table(const uint8_t *buf, size_t len,
			  const uint8_t pub[PROTO_PUBKEY_LEN],
			  struct proto_manifest *m,
			  struct proto_pkg_layout *lay, uint8_t **table,
			  struct proto_err *err)
{
	struct proto_trust t = {.pub = pub};
	*table = NULL;
	return pkg_check(buf, len, &t, m, lay, table, err);
}

int proto_pkg_check_trust(const uint8_t *buf, size_t len,
			  const struct proto_trust *t, struct proto_manifest *m,
			  struct proto_pkg_layout *lay, uint8_t **table,
			  struct proto_err *err)
{
	*table = NULL;
	return pkg_check(buf, len, t, m, lay, table, err);
}
