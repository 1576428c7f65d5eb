/*
 * proto: the wire formats shared by the gateway and the device client.
 *
 * Pure code: bytes in, structs out. No I/O, no logging, no global state.
 * Every decoder bounds-checks every field and returns a negative PROTO_E*
 * code (see proto_strerror()) with a human-readable detail in `err` when
 * the input is bad; a decoder never trusts a length it has not checked.
 *
 * The formats are written down in proto/PROTOCOL.md; keep the two in step.
 *
 * Ownership: unless a comment says otherwise, pointers passed in are
 * borrowed for the duration of the call; strings returned through `char **`
 * are new (malloc'd) and owned by the caller, who frees them with free().
 */
#ifndef OTA_PROTO_H
#define OTA_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- errors */

#define PROTO_ERRNO_MAP(X)                                                     \
	X(EMALFORMED, -1, "malformed message")                                 \
	X(ETRUNC, -2, "message truncated")                                     \
	X(ETYPE, -3, "unknown message type")                                   \
	X(ERANGE, -4, "field out of range")                                    \
	X(EJSON, -5, "invalid JSON")                                           \
	X(EFIELD, -6, "missing or invalid field")                              \
	X(ESIG, -7, "signature does not verify")                               \
	X(EDIGEST, -8, "digest mismatch")                                      \
	X(ESIZE, -9, "size mismatch")                                          \
	X(EKEY, -10, "invalid key")                                            \
	X(ENOMEM, -11, "out of memory")                                        \
	X(EBUF, -12, "buffer too small")                                       \
	X(EMAGIC, -13, "not an OTA package")                                   \
	X(EVERSION, -14, "invalid version string")                             \
	X(ECRYPTO, -15, "crypto library failure")                              \
	X(EAUTH, -16, "decryption failed: data or key not authentic")

enum proto_errno {
#define PROTO__ERR_ENUM(name, val, text) PROTO_##name = (val),
	PROTO_ERRNO_MAP(PROTO__ERR_ENUM)
#undef PROTO__ERR_ENUM
};

/* Static text for a PROTO_E* code ("success" for 0, "unknown error" for
 * anything else). */
const char *proto_strerror(int code);

/* Detail for the last error of a call, like jansson's json_error_t. */
struct proto_err {
	char text[160];
};

/* ------------------------------------------------------------- limits */

#define PROTO_ID_MAX 63	     /* device id, product, group: 1..63 chars */
#define PROTO_VERSION_MAX 31 /* "MAJOR.MINOR.PATCH", each 0..999999 */
#define PROTO_URL_MAX 1023
#define PROTO_ERROR_MAX 255	 /* status `error` text */
#define PROTO_MANIFEST_MAX 16384 /* bytes of signed manifest JSON */
#define PROTO_SIG_LEN 64	 /* Ed25519 signature */
#define PROTO_PUBKEY_LEN 32	 /* Ed25519 raw public key */
#define PROTO_PRIVKEY_LEN 32	 /* Ed25519 raw private key (seed) */
#define PROTO_SHA256_LEN 32
#define PROTO_RELEASE_ID_LEN 8 /* binary; hex form is 16 chars */
#define PROTO_RELEASE_HEX_LEN 16
#define PROTO_FRAG_SIZE_MIN 160
#define PROTO_FRAG_SIZE_MAX 65536
#define PROTO_FRAGS_MAX (1u << 24) /* fragment index is 24 bits on the wire */
#define PROTO_WINDOW_MAX 256	   /* fragments; bounded by the SACK bitmap */
#define PROTO_ANNOUNCE_DEVICES_MAX 4096
#define PROTO_BLOCK_SIZE_MIN 512 /* block table: power of two in range */
#define PROTO_BLOCK_SIZE_MAX (1u << 20)
#define PROTO_BLOCK_SIZE_DEFAULT 4096
#define PROTO_BLOCKS_MAX (1u << 24) /* blocks per package */

/*
 * Identifiers (device id, product, group) are 1..PROTO_ID_MAX characters
 * from [A-Za-z0-9_-]: safe inside MQTT topics (no '/', '+', '#') on every
 * broker (no '.': RabbitMQ maps '/' to '.' in its routing keys, so
 * "ota/dev/a.b/status" would arrive as "ota/dev/a/b/status") and as file
 * names.
 */
bool proto_id_valid(const char *s);

/*
 * Versions are "MAJOR.MINOR.PATCH", decimal, each part 0..999999, no
 * leading '+' or '-', no leading zeros except "0". proto_version_cmp sets
 * *res to <0, 0, >0. Returns 0 or PROTO_EVERSION.
 */
int proto_version_parse(const char *s, uint32_t parts[3]);
int proto_version_cmp(const char *a, const char *b, int *res);

/* Lower-case hex encode (out gets 2*len+1 bytes, NUL-terminated) and decode
 * (exactly 2*outlen hex digits, either case; PROTO_EMALFORMED otherwise). */
void proto_hex_encode(const uint8_t *in, size_t len, char *out);
int proto_hex_decode(const char *in, uint8_t *out, size_t outlen);

/* ------------------------------------------------------------- manifest */

/*
 * The signed manifest: compact JSON, signed byte for byte.
 * {"format":1,"product":"sensor","version":"1.1.0","size":1234,
 *  "sha256":"<64 hex>","created":1700000000}
 * then, when the package has a block table (`ota-gateway pack` always
 * makes one), "block_size":4096,"blocks":"<64 hex>", and optionally, in
 * this order, "downgrade":true,"replaces":"1.2.0" (a signed, explicit
 * downgrade and the newest version it replaces: always together),
 * "security_version":N (1..2^24-1) and "expires":T (unix seconds >
 * created).
 * The block table is the SHA-256 of every block_size piece of the payload
 * (the last may be shorter), 32 bytes each, in order; `blocks` is the
 * SHA-256 of that table. It lets a device check each block before it
 * writes it (see proto_block_*).
 * Decoding ignores unknown members (forward compatibility) but requires
 * every member above with the right type and range.
 * Encoding validates first: PROTO_ERANGE (format != 1, size, created),
 * PROTO_EFIELD (product), PROTO_EVERSION (version). The output is
 * deterministic: the same struct always gives the same bytes.
 */
struct proto_manifest {
	uint32_t format; /* 1 */
	char product[PROTO_ID_MAX + 1];
	char version[PROTO_VERSION_MAX + 1];
	uint64_t size; /* payload bytes, 1 .. 2^40 */
	uint8_t sha256[PROTO_SHA256_LEN];
	int64_t created; /* unix seconds, >= 0 */
	/* Block table: 0 = none; else a power of two, PROTO_BLOCK_SIZE_MIN..
	 * PROTO_BLOCK_SIZE_MAX, with at most PROTO_BLOCKS_MAX blocks. */
	uint32_t block_size;
	uint8_t blocks[PROTO_SHA256_LEN]; /* SHA-256 of the block table */
	/* The publisher allows installing this over a newer version. Encoded
	 * as "downgrade":true after "created" only when set, so manifests
	 * without it are byte for byte what they were. */
	bool downgrade;
	/* A downgrade names the newest version it replaces ("replaces"):
	 * it applies only to devices that never ran anything newer than
	 * that. Required with downgrade, refused without it. */
	char replaces[PROTO_VERSION_MAX + 1];
	/* Anti-rollback counter (MCUboot's security counter): a device never
	 * installs a manifest whose security_version is below the highest it
	 * has committed. 0 = absent (encoded only when > 0). */
	uint32_t security_version;
	/* Unix seconds after which nobody may announce or accept it; 0 =
	 * never (encoded only when set). Freeze-attack bound. */
	int64_t expires;
	/* "compress":false (written last, only then): the publisher asks
	 * that the payload travel as is, never zstd (pack --no-compress). */
	bool no_compress;
};

#define PROTO_SECURITY_VERSION_MAX 0xffffffu

int proto_manifest_encode(const struct proto_manifest *m, char **out,
			  size_t *len);
int proto_manifest_decode(const char *buf, size_t len, struct proto_manifest *m,
			  struct proto_err *err);

/* Blocks in the payload (0 when the manifest has no block table). */
uint64_t proto_block_count(const struct proto_manifest *m);
/* Bytes of block `i` (block_size, the last one possibly less). */
uint32_t proto_block_len(const struct proto_manifest *m, uint64_t i);
/* Fragments that carry the table at `fragment_size` (0 without one). */
uint32_t proto_table_fragments(const struct proto_manifest *m,
			       uint32_t fragment_size);
/*
 * Compute the block table of `payload` (m->size bytes) into `table`
 * (32 x proto_block_count(m) bytes) and, when `root` is not NULL, its
 * SHA-256. Returns 0 or PROTO_ECRYPTO / PROTO_EFIELD (no table).
 */
int proto_block_table(const struct proto_manifest *m, const uint8_t *payload,
		      uint8_t *table, uint8_t root[PROTO_SHA256_LEN]);
/* SHA-256 of `len` bytes (a block, a table). Returns 0 or PROTO_ECRYPTO. */
int proto_sha256(const void *buf, size_t len, uint8_t out[PROTO_SHA256_LEN]);

/* Release id: the first 8 bytes of SHA-256(manifest bytes). */
void proto_release_id(const void *manifest, size_t len,
		      uint8_t id[PROTO_RELEASE_ID_LEN]);
/* The 32-bit tag carried by binary messages: release id bytes 0..3 read
 * little-endian. */
uint32_t proto_release_tag(const uint8_t id[PROTO_RELEASE_ID_LEN]);

/* ---------------------------------------------------------- signatures */

/* Ed25519 through OpenSSL EVP, raw 32-byte keys (loading PEM files is the
 * callers' business). Return 0, PROTO_ESIG, PROTO_EKEY or PROTO_ECRYPTO. */
int proto_sign(const uint8_t priv[PROTO_PRIVKEY_LEN], const void *msg,
	       size_t len, uint8_t sig[PROTO_SIG_LEN]);
int proto_verify(const uint8_t pub[PROTO_PUBKEY_LEN], const void *msg,
		 size_t len, const uint8_t sig[PROTO_SIG_LEN]);

/* --------------------------------------------------------- package file */

/*
 * Package file layout (all integers little-endian):
 *   0  8  magic "OTAPKG01"
 *   8  4  manifest_len (1 .. PROTO_MANIFEST_MAX)
 *  12  4  sig_len (must be 64)
 *  16  manifest_len bytes: manifest JSON
 *   .  64 bytes: Ed25519 signature over the manifest bytes
 *   .  payload (manifest.size bytes, nothing after it)
 */
#define PROTO_PKG_MAGIC "OTAPKG01"
#define PROTO_PKG_HDR_LEN 16

struct proto_pkg_layout {
	uint32_t manifest_len;
	uint64_t manifest_off; /* 16 */
	uint64_t sig_off;
	uint64_t payload_off;
};

/* Parse the fixed 16-byte header. `buf` needs PROTO_PKG_HDR_LEN bytes. */
int proto_pkg_header_decode(const uint8_t *buf, size_t len,
			    struct proto_pkg_layout *lay,
			    struct proto_err *err);
/* Encode the 16-byte header for a manifest of `manifest_len` bytes. */
int proto_pkg_header_encode(uint8_t buf[PROTO_PKG_HDR_LEN],
			    uint32_t manifest_len);

/*
 * Check a package held entirely in memory (e.g. mmapped): header, manifest
 * syntax, signature against `pub`, total length == payload_off + size, the
 * payload's SHA-256, and (when the manifest has one) the block table's
 * SHA-256 against `blocks`, in that order. On success fills `m` and `lay`
 * (either may be NULL); on failure leaves them untouched. The error text
 * says exactly what is wrong ("payload is 12 bytes longer than signed",
 * "signature does not verify with the configured publisher key", ...).
 */
int proto_pkg_check(const uint8_t *buf, size_t len,
		    const uint8_t pub[PROTO_PUBKEY_LEN],
		    struct proto_manifest *m, struct proto_pkg_layout *lay,
		    struct proto_err *err);
/* The same, also handing back the block table it checked: *table is new
 * (32 x proto_block_count(m) bytes; NULL when the manifest has none). */
int proto_pkg_check_table(const uint8_t *buf, size_t len,
			  const uint8_t pub[PROTO_PUBKEY_LEN],
			  struct proto_manifest *m,
			  struct proto_pkg_layout *lay, uint8_t **table,
			  struct proto_err *err);

/* -------------------------------------------------- package encryption */

/*
 * Confidential packages (PROTOCOL.md section 6.3). A release may be sent
 * encrypted: every fragment's data (table and payload alike) is sealed
 * with AES-256-GCM under a random per-release content key; the 8-byte
 * header is the associated data and stays in clear; the nonce is the
 * header's tag and index plus the fragment size, so a resend is the same
 * message and no nonce repeats under a key. Each device gets the content
 * key wrapped for it alone: an ephemeral P-256 key, ECDH with the
 * device's certificate key, HKDF-SHA256 (salt epk || device key, info
 * naming the release and the device), AES-256-GCM over the content key.
 * Keys are raw: P-256 public keys as 65-byte uncompressed points, private
 * keys as 32-byte big-endian scalars (loading PEM is the callers'
 * business).
 */
#define PROTO_ENC_ALG "aes-256-gcm+p256-hkdf-sha256"
#define PROTO_ENC_KEY_LEN 32 /* content key */
#define PROTO_ENC_TAG_LEN 16 /* appended to each fragment's data */
#define PROTO_EC_PUB_LEN 65  /* 0x04 || X || Y */
#define PROTO_EC_PRIV_LEN 32
#define PROTO_ENC_WRAPPED_LEN 48 /* wrapped content key and its tag */

/*
 * A content key ready to seal or open fragments: the cipher is fetched and
 * the key schedule computed once, not per fragment. New; free it with
 * proto_aead_free (NULL is fine), which also wipes the key. Returns 0,
 * PROTO_ENOMEM or PROTO_ECRYPTO.
 */
struct proto_aead;
int proto_aead_new(const uint8_t key[PROTO_ENC_KEY_LEN],
		   struct proto_aead **out);
void proto_aead_free(struct proto_aead *a);

/*
 * Seal `len` bytes (1 .. PROTO_FRAG_SIZE_MAX) of fragment data: out gets
 * len + PROTO_ENC_TAG_LEN bytes (it may not overlap pt). `hdr` is the
 * fragment's encoded header, `fragment_size` the offer's. Returns 0,
 * PROTO_ERANGE or PROTO_ECRYPTO.
 */
int proto_frag_seal(struct proto_aead *a, const uint8_t hdr[8],
		    uint32_t fragment_size, const uint8_t *pt, size_t len,
		    uint8_t *out);
/*
 * Open sealed data of `len` bytes (tag included, so > 16): out gets
 * len - 16 bytes, usable only when 0 is returned (it is wiped otherwise).
 * PROTO_EAUTH when the tag does not verify (tampered data, another
 * header, another key), PROTO_ERANGE or PROTO_ECRYPTO.
 */
int proto_frag_open(struct proto_aead *a, const uint8_t hdr[8],
		    uint32_t fragment_size, const uint8_t *ct, size_t len,
		    uint8_t *out);

/*
 * Wrap the content key for device `device` (identifier) and release
 * `release` (16 hex) under its P-256 public key `dev_pub`. `eph_priv` is
 * NULL for a fresh random ephemeral key (always, outside tests). Fills
 * epk (the ephemeral public key) and wrapped. Returns 0, PROTO_EKEY (not
 * a valid P-256 point or scalar), PROTO_EFIELD or PROTO_ECRYPTO.
 */
int proto_key_wrap(const uint8_t dev_pub[PROTO_EC_PUB_LEN], const char *release,
		   const char *device, const uint8_t ckey[PROTO_ENC_KEY_LEN],
		   const uint8_t *eph_priv, uint8_t epk[PROTO_EC_PUB_LEN],
		   uint8_t wrapped[PROTO_ENC_WRAPPED_LEN]);
/*
 * The device's side: its own key pair (dev_priv, dev_pub), the offer's
 * epk and wrapped key. PROTO_EAUTH when this key pair, release or device
 * is not the one it was wrapped for (or the bytes were changed).
 */
int proto_key_unwrap(const uint8_t dev_priv[PROTO_EC_PRIV_LEN],
		     const uint8_t dev_pub[PROTO_EC_PUB_LEN],
		     const char *release, const char *device,
		     const uint8_t epk[PROTO_EC_PUB_LEN],
		     const uint8_t wrapped[PROTO_ENC_WRAPPED_LEN],
		     uint8_t ckey[PROTO_ENC_KEY_LEN]);
/* A fresh P-256 key pair (tests, tools). Returns 0 or PROTO_ECRYPTO. */
int proto_ec_keygen(uint8_t priv[PROTO_EC_PRIV_LEN],
		    uint8_t pub[PROTO_EC_PUB_LEN]);
/* ------------------------------------------------------------- key sets */

/*
 * Key set (TUF's root role, reduced): an offline root key, or k of n root
 * keys, signs which publisher keys may sign manifests for which product.
 * The signed body is compact JSON, signed byte for byte:
 * {"type":"ota-keyset","version":2,"created":1700000000,"expires":1800000000,
 *  "root":{"threshold":1,"keys":["<64 hex>",...]},
 *  "publishers":[{"product":"sensor","key":"<64 hex>"},
 *                {"product":"*","key":"<64 hex>"}]}
 * and travels in an envelope:
 * {"signed":"<the body, verbatim>","signatures":[{"key":"<64 hex>",
 *  "sig":"<128 hex>"},...]}
 * `version` only goes up; `expires` is required (freeze bound); product
 * "*" means every product. A publisher key not listed is not trusted: a
 * revoked key is one the newest key set no longer lists.
 */
#define PROTO_KEYSET_MAX 16384 /* bytes of an envelope */
#define PROTO_ROOT_KEYS_MAX 8
#define PROTO_PUBLISHERS_MAX 32

struct proto_keyset_pub {
	char product[PROTO_ID_MAX + 1]; /* or "*" */
	uint8_t key[PROTO_PUBKEY_LEN];
};

struct proto_keyset {
	uint64_t version; /* 1 .. 2^53 */
	int64_t created, expires;
	uint32_t threshold; /* 1 .. nroot */
	uint32_t nroot;
	uint8_t root[PROTO_ROOT_KEYS_MAX][PROTO_PUBKEY_LEN];
	uint32_t npub;
	struct proto_keyset_pub pub[PROTO_PUBLISHERS_MAX];
};

struct proto_keyset_sig {
	uint8_t key[PROTO_PUBKEY_LEN];
	uint8_t sig[PROTO_SIG_LEN];
};

struct proto_keyset_env {
	char *body; /* new: the signed body, NUL-terminated */
	size_t body_len;
	uint32_t nsig;
	struct proto_keyset_sig sig[PROTO_ROOT_KEYS_MAX];
	struct proto_keyset ks; /* the body, decoded */
};

/* The body. Encode validates (ranges, distinct root keys, threshold) and
 * is deterministic; decode rejects unknown members (a key set is policy,
 * and a misread policy is worse than a refused one). */
int proto_keyset_encode(const struct proto_keyset *ks, char **out, size_t *len);
int proto_keyset_decode(const char *buf, size_t len, struct proto_keyset *ks,
			struct proto_err *err);
/* The envelope (body decoded into e->ks; signatures not checked here).
 * On failure nothing is allocated. */
int proto_keyset_env_encode(const struct proto_keyset_env *e, char **out,
			    size_t *len);
int proto_keyset_env_decode(const char *buf, size_t len,
			    struct proto_keyset_env *e, struct proto_err *err);
void proto_keyset_env_free(struct proto_keyset_env *e);

/*
 * May `next` replace the trusted `cur`? (cur may be an anchor: version 0,
 * its root keys and threshold from the configuration, no publishers.)
 * Requires: at least cur's threshold of distinct cur root keys signed
 * the body; when next names other root keys, also next's own threshold
 * of them (TUF root rotation); next->version > cur->version; and, when
 * now > 0, now < next's expires. Returns 0 or PROTO_ESIG / PROTO_ERANGE
 * with the reason in err.
 */
int proto_keyset_accept(const struct proto_keyset *cur,
			const struct proto_keyset_env *next, int64_t now,
			struct proto_err *err);

/* Who may sign manifests: the key set's publisher keys when `ks` is set,
 * else the single key `pub`. */
struct proto_trust {
	const uint8_t *pub;
	const struct proto_keyset *ks;
};

/* Does `sig` over the manifest bytes verify with a key trusted for
 * `product`? 0, PROTO_ESIG (none does) or PROTO_EKEY (no key at all). */
int proto_trust_verify(const struct proto_trust *t, const char *product,
		       const void *manifest, size_t len,
		       const uint8_t sig[PROTO_SIG_LEN]);

/* proto_pkg_check_table, with a trust instead of one key. */
int proto_pkg_check_trust(const uint8_t *buf, size_t len,
			  const struct proto_trust *t, struct proto_manifest *m,
			  struct proto_pkg_layout *lay, uint8_t **table,
			  struct proto_err *err);

/* ------------------------------------------- compressed and delta payloads */

/*
 * PROTOCOL.md 6.4. An encoded payload is a sequence of zstd frames, each
 * reconstructing a whole number of blocks (at most PROTO_ZFRAME_MAX bytes
 * of image), each decodable on its own: with no prefix (`zstd`) or with
 * the whole base image as its raw-content prefix (`delta`, zstd's
 * --patch-from mechanism). Pure code, no I/O.
 */
#define PROTO_ZFRAME_MAX (1u << 20)

enum proto_encoding {
	PROTO_ENCODING_FULL,
	PROTO_ENCODING_ZSTD,
	PROTO_ENCODING_DELTA
};
/* "full", "zstd", "delta" ("?" out of range); parse: 0 or PROTO_EFIELD. */
const char *proto_encoding_name(enum proto_encoding e);
int proto_encoding_parse(const char *s, enum proto_encoding *e);

/*
 * Encode `size` bytes of image into frames of `frame_len` bytes of
 * content (a multiple of block_size, 1 .. PROTO_ZFRAME_MAX; 0 = the
 * largest such), each with `base` (base_len bytes; NULL = none) as its
 * prefix, at zstd `level`. *out is new (*out_len bytes). Returns 0,
 * PROTO_ERANGE, PROTO_ENOMEM or PROTO_ECRYPTO (zstd failed) with err.
 */
/* The zstd level for base + image of `bytes`. Every frame of a delta
 * takes the whole base as prefix, which zstd indexes again per frame: the
 * cost grows with frames x base. Measured (docs/BENCHMARKS.md, "Deltas"):
 * on a 150 KiB firmware levels 6 to 19 make deltas within 1% of each
 * other; on 8 MiB, level 19 takes 46 s of CPU where level 3 takes 0.6 s
 * for a delta 0.1% larger. 19 below 4 MiB, 6 below 32 MiB, else 3. */
int proto_zenc_level(uint64_t bytes);
int proto_zenc(const uint8_t *img, uint64_t size, const uint8_t *base,
	       size_t base_len, uint32_t block_size, uint32_t frame_len,
	       int level, uint8_t **out, size_t *out_len,
	       struct proto_err *err);

/*
 * Streaming decoder of an untrusted encoded payload. Memory is bounded by
 * the protocol, whatever the input says: one frame's input (at most
 * ZSTD_compressBound(PROTO_ZFRAME_MAX)) and one frame's output (at most
 * PROTO_ZFRAME_MAX), plus zstd's context. `base` is borrowed (e.g. a
 * read-only mapping of the active slot) until proto_zdec_free.
 * `image_off` is where decoding (re)starts: the image bytes before it are
 * already written (a resumed download); a multiple of block_size.
 */
struct proto_zdec;
int proto_zdec_new(const uint8_t *base, size_t base_len, uint64_t image_size,
		   uint32_t block_size, uint64_t image_off,
		   struct proto_zdec **out, struct proto_err *err);
void proto_zdec_free(struct proto_zdec *z);
/*
 * Feed up to len bytes (len may be 0); *used says how many were taken.
 * Returns 1 when a frame is complete and decoded (see proto_zdec_frame;
 * push the bytes not used, even none, again: the decoder may already
 * hold the next frame), 0 when every byte was taken and more are needed,
 * or a negative PROTO_E* with the reason in err (the frame breaks a rule
 * of 6.4, or does not decode). After an error, or to drop a frame whose
 * blocks failed their check, call proto_zdec_restart. The payload offset
 * where the next frame starts is (bytes taken in all) - pending.
 */
int proto_zdec_push(struct proto_zdec *z, const uint8_t *data, size_t len,
		    size_t *used, struct proto_err *err);
/* The frame just decoded: its image offset and content (borrowed until
 * the next push or restart). */
void proto_zdec_frame(const struct proto_zdec *z, uint64_t *image_off,
		      const uint8_t **data, size_t *len);
/* Forget a partial frame; decoding restarts at image offset `image_off`
 * with the next byte pushed (the start of a frame). */
void proto_zdec_restart(struct proto_zdec *z, uint64_t image_off);
/* Image bytes decoded in completed frames so far (the next frame's
 * image offset; the image's size once it is all decoded). */
uint64_t proto_zdec_image_off(const struct proto_zdec *z);
/* The bytes of the frame not yet decoded, as taken so far (borrowed until
 * the next push or restart): after a failed push, what was refused. */
void proto_zdec_input(const struct proto_zdec *z, const uint8_t **data,
		      size_t *len);
/* Bytes taken and kept that belong to frames not yet decoded. */
size_t proto_zdec_pending(const struct proto_zdec *z);

/* ------------------------------------------------------ binary messages */

/*
 * Fragment (gateway -> device), 8-byte header then data:
 *   0 1 type 0x11
 *   1 4 release tag (LE)
 *   5 3 fragment index (LE, 24 bits)
 *   8 .. data (1 .. PROTO_FRAG_SIZE_MAX bytes)
 * It names the release, never a device: the same message can be published
 * on a device's own topic or on a group topic.
 */
#define PROTO_MSG_FRAG 0x11
#define PROTO_MSG_ACK 0x12
#define PROTO_FRAG_HDR_LEN 8

struct proto_frag {
	uint32_t tag;
	uint32_t index;
	const uint8_t *data; /* borrowed from the decoded buffer */
	size_t len;
};

int proto_frag_header_encode(uint8_t hdr[PROTO_FRAG_HDR_LEN], uint32_t tag,
			     uint32_t index);
int proto_frag_decode(const void *buf, size_t len, struct proto_frag *f);

/*
 * Acknowledgement (device -> gateway):
 *   0 1 type 0x12
 *   1 4 release tag (LE)
 *   5 3 cum: fragments 0..cum-1 are all held (LE, 24 bits); cum is the
 *          first one the device still needs
 *   8 1 sack_len: bytes of SACK bitmap that follow (0..32)
 *   9 .. bitmap: bit i (byte i/8, bit i%8, LSB first) set = fragment
 *          cum+1+i is held
 * An ack with cum == 0 and no bitmap is also the device's "accept, start
 * from 0"; after a power cut the first ack names what the device kept.
 */
#define PROTO_SACK_MAX 32
#define PROTO_ACK_MAX_LEN (9 + PROTO_SACK_MAX)

struct proto_ack {
	uint32_t tag;
	uint32_t cum;
	uint8_t sack_len;
	uint8_t sack[PROTO_SACK_MAX];
};

int proto_ack_encode(const struct proto_ack *a, uint8_t *buf, size_t cap,
		     size_t *len);
int proto_ack_decode(const void *buf, size_t len, struct proto_ack *a);
/* True when the ack says fragment `index` is held. */
bool proto_ack_has(const struct proto_ack *a, uint32_t index);

/* ------------------------------------------------------- JSON messages */

/*
 * Release announcement (operator -> ota/release/<product>):
 * {"url":"file:///path/pkg.ota", "group":"g1", "devices":["d1","d2"],
 *  "fragment_size":4096, "window":32, "concurrency":50,
 *  "canary_percent":10, "canary_success_percent":90,
 *  "pause_failure_percent":20, "pause_failure_min":2, "encrypt":true,
 *  "reply":"r-1a2b", "dry_run":true, "operator":"ota-operator"}
 * Only `url` is required (scheme file:// or https://). Unlike the other
 * decoders, unknown members are rejected (PROTO_EFIELD): a misspelt
 * targeting key must not widen a rollout. `group` "" and `devices` []
 * are invalid (omit them instead). On failure nothing is allocated
 * (devices NULL) and _free is not needed, though harmless.
 */
#define PROTO_PAUSE_FAILURE_MIN_MAX 1000000
struct proto_announce {
	char url[PROTO_URL_MAX + 1];
	char group[PROTO_ID_MAX + 1]; /* "" = any group */
	char **devices;		      /* NULL = all; new, see _free */
	size_t ndevices;
	uint32_t fragment_size; /* 0 = gateway default */
	uint32_t window;	/* 0 = gateway default */
	/* Rollout control (0 = off / default): */
	uint32_t concurrency;	 /* devices transferring at once */
	uint32_t canary_percent; /* 1..100: this share of targets goes first */
	uint32_t canary_success_percent; /* 1..100, default 100: canary share
					    that must commit before the rest */
	uint32_t pause_failure_percent;	 /* 1..100: auto-pause above this */
	/* "encrypt": true / false; absent = the gateway's default. */
	bool encrypt;
	bool encrypt_set;
	/* The command plane (PROTOCOL.md section 5.5): */
	char reply[PROTO_ID_MAX + 1];	      /* "" = no per-request verdict */
	char operator_name[PROTO_ID_MAX + 1]; /* claimed, "" = unnamed */
	bool dry_run;		    /* only say which devices it would target */
	uint32_t pause_failure_min; /* 1..PROTO_PAUSE_FAILURE_MIN_MAX: failed
				       devices before any automatic pause
				       (canary or rate); 0 = gateway's */
	bool no_delta; /* "delta":false: never send this release as a delta */
	/* "restart_spread_s": 0..3600, the offers' restart spread for this
	 * campaign (0 = none); absent (restart_spread_set false) = the
	 * gateway's, from restart_rate. */
	uint32_t restart_spread_s;
	bool restart_spread_set;
};

int proto_announce_decode(const char *buf, size_t len, struct proto_announce *a,
			  struct proto_err *err);
void proto_announce_free(struct proto_announce *a);
/* The announcement as JSON (members at their defaults are left out).
 * Validates first, as decode would: PROTO_EFIELD / PROTO_ERANGE. */
int proto_announce_encode(const struct proto_announce *a, char **out,
			  size_t *len);

/*
 * Offer (gateway -> ota/dev/<id>/offer, QoS 1):
 * {"release":"<16 hex>","manifest":"<the signed manifest JSON, verbatim>",
 *  "sig":"<128 hex>","fragment_size":4096,"fragments":256,"window":32,
 *  "table_fragments":1}
 * `fragments` must equal ceil(manifest.size / fragment_size) and
 * `table_fragments` (absent = 0) proto_table_fragments(): fragment indices
 * [0, table_fragments) carry the block table, the next `fragments` the
 * payload. The device checks that and the signature itself (decode checks
 * syntax and ranges only). On decode failure o->manifest is NULL. `sig` hex is accepted in
 * either case; `release` must be lower case.
 */
struct proto_offer {
	char release[PROTO_RELEASE_HEX_LEN + 1];
	char *manifest; /* new, NUL-terminated, exactly manifest_len bytes */
	size_t manifest_len;
	uint8_t sig[PROTO_SIG_LEN];
	uint32_t fragment_size;
	uint32_t fragments;
	uint32_t window;
	uint32_t table_fragments;
	/* The gateway publishes this transfer's fragments once, for every
	 * device in a group, on PROTO_GROUP_TOPIC(release): subscribe to it
	 * too. Optional, false when absent. */
	bool group;
	/* "restart_spread_ms": after installing, wait a uniformly random
	 * time in [0, this) before restarting, so that a fleet updated
	 * together does not reconnect in the same second. 0 when absent. */
	uint32_t restart_spread_ms;
	/* "enc": the fragments' data is encrypted (see proto_frag_open) and
	 * this device's copy of the content key is wrapped here (see
	 * proto_key_unwrap). enc_alg is "" when absent; an alg other than
	 * PROTO_ENC_ALG decodes (the device refuses it with a status), and
	 * then epk and key are not read. */
	char enc_alg[PROTO_ID_MAX + 1];
	uint8_t enc_epk[PROTO_EC_PUB_LEN];
	uint8_t enc_key[PROTO_ENC_WRAPPED_LEN];
	/* The gateway's newest key set envelope, verbatim (new on decode,
	 * borrowed on encode; NULL = absent): the device adopts it when it
	 * is newer than its own and signed by its root keys. */
	char *keyset;
	size_t keyset_len;
	/* PROTOCOL.md 6.4: how the payload fragments carry the image.
	 * FULL (absent): as is; ZSTD / DELTA: `payload_size` bytes of zstd
	 * frames, `fragments` = ceil(payload_size / fragment_size); DELTA:
	 * from the base image whose SHA-256 is `base`, version
	 * `base_version` (both required with DELTA, refused without). */
	enum proto_encoding encoding;
	uint64_t payload_size;
	uint8_t base[PROTO_SHA256_LEN];
	char base_version[PROTO_VERSION_MAX + 1];
	/* "epoch": the sending gateway's leader epoch (PROTOCOL.md 5.2 and
	 * 5.7), 0 .. PROTO_EPOCH_MAX; 0 when absent (a gateway without a
	 * standby). A device ignores an offer whose epoch is lower than the
	 * highest it has seen. */
	uint32_t epoch;
};
#define PROTO_EPOCH_MAX UINT32_MAX

/* Where the group fragments of an offer's payload go (PROTOCOL.md 6.4):
 * "ota/grp/<release>/frag" for the full image, "ota/grp/<release>z/frag"
 * for zstd, "ota/grp/<release>d<first 16 hex of base>/frag" for a delta.
 * out gets at most PROTO_GROUP_TOPIC_MAX + 17 bytes. */
void proto_group_topic(const char *release, enum proto_encoding e,
		       const uint8_t base[PROTO_SHA256_LEN], char *out,
		       size_t n);
/* Longest spread of restarts (offer) or of answers to a poll: 1 hour. */
#define PROTO_SPREAD_MS_MAX 3600000u

/*
 * Poll (gateway -> device, QoS 1, not retained; PROTOCOL.md 5.6):
 * {"spread_ms":N}. On "ota/hello" every device, on "ota/dev/<id>/poll"
 * that one device, publishes its status again after a uniformly random
 * delay in [0, spread_ms]. Unknown members are ignored; an empty payload
 * is {"spread_ms":0}.
 */
#define PROTO_HELLO_TOPIC "ota/hello"
#define PROTO_POLL_TOPIC_FMT "ota/dev/%s/poll"

struct proto_poll {
	uint32_t spread_ms; /* 0 .. PROTO_SPREAD_MS_MAX */
};

int proto_poll_encode(const struct proto_poll *p, char **out, size_t *len);
int proto_poll_decode(const char *buf, size_t len, struct proto_poll *p,
		      struct proto_err *err);

/* "ota/grp/<release>/frag": where group fragments of a release go. */
#define PROTO_GROUP_TOPIC_FMT "ota/grp/%s/frag"
#define PROTO_GROUP_TOPIC_MAX (PROTO_RELEASE_HEX_LEN + 16)

int proto_offer_encode(const struct proto_offer *o, char **out, size_t *len);
int proto_offer_decode(const char *buf, size_t len, struct proto_offer *o,
		       struct proto_err *err);
void proto_offer_free(struct proto_offer *o);

/*
 * Rollout control (operator -> ota/ctl/<product>, QoS 1):
 * {"action":"pause"|"resume"|"abort"|"retry", "release":"<16 hex>",
 *  "reply":"<request id>", "operator":"<claimed name>"}
 * `release` is optional: without it the command applies to the newest
 * release of the product. `reply` and `operator` are optional ids (see
 * proto_id_valid); `retry` offers the release again to the devices that
 * failed it.
 */
enum proto_action {
	PROTO_ACT_PAUSE,
	PROTO_ACT_RESUME,
	PROTO_ACT_ABORT,
	PROTO_ACT_RETRY
};

struct proto_control {
	enum proto_action action;
	char release[PROTO_RELEASE_HEX_LEN + 1]; /* "" = newest */
	char reply[PROTO_ID_MAX + 1];		 /* "" = none */
	char operator_name[PROTO_ID_MAX + 1];	 /* claimed; "" = none */
};

int proto_control_decode(const char *buf, size_t len, struct proto_control *c,
			 struct proto_err *err);
int proto_control_encode(const struct proto_control *c, char **out,
			 size_t *len);
const char *proto_action_name(enum proto_action a);

/*
 * Verdict (gateway -> ota/result/<product>/..., QoS 1; PROTOCOL.md 5.5):
 * the gateway's answer to one announcement or control command.
 * {"request":"r-1a2b","command":"announce","product":"sensor",
 *  "verdict":"accepted","release":"<16 hex>","version":"1.1.0",
 *  "targets":3,"devices":["dev-001","dev-002","dev-003"],
 *  "reason":"...","operator":"ota-operator","ts":1700000000000}
 * `verdict` is accepted, refused, known (the release was announced
 * before: nothing changed) or dry_run (what an announcement would do).
 * Only command, product and verdict are required; `targets` absent means
 * not applicable (-1); `devices` lists at most PROTO_VERDICT_DEVICES_MAX
 * of the targets. Decoding ignores unknown members (newer gateways may
 * say more); encoding validates.
 */
#define PROTO_VERDICT_DEVICES_MAX 20
#define PROTO_REASON_MAX 511

enum proto_verdict_kind {
	PROTO_VERDICT_ACCEPTED,
	PROTO_VERDICT_REFUSED,
	PROTO_VERDICT_KNOWN,
	PROTO_VERDICT_DRY_RUN
};

struct proto_verdict {
	char request[PROTO_ID_MAX + 1]; /* "" = none */
	char command[16]; /* announce, pause, resume, abort, retry, control */
	char product[PROTO_ID_MAX + 1];
	enum proto_verdict_kind verdict;
	char release[PROTO_RELEASE_HEX_LEN + 1]; /* "" = none */
	char version[PROTO_VERSION_MAX + 1];	 /* "" = none */
	int64_t targets;			 /* -1 = not applicable */
	uint32_t ndevices;
	char devices[PROTO_VERDICT_DEVICES_MAX][PROTO_ID_MAX + 1];
	char reason[PROTO_REASON_MAX + 1];
	char operator_name[PROTO_ID_MAX + 1]; /* as claimed in the request */
	int64_t ts;			      /* unix ms, 0 = absent */
};

int proto_verdict_encode(const struct proto_verdict *v, char **out,
			 size_t *len);
int proto_verdict_decode(const char *buf, size_t len, struct proto_verdict *v,
			 struct proto_err *err);
const char *proto_verdict_name(enum proto_verdict_kind k);

/* Device states, as named in status messages. */
#define PROTO_STATE_MAP(X)                                                     \
	X(IDLE, "idle")                                                        \
	X(DOWNLOADING, "downloading")                                          \
	X(VERIFYING, "verifying")                                              \
	X(INSTALLING, "installing")                                            \
	X(RESTARTING, "restarting")                                            \
	X(COMMITTED, "committed")                                              \
	X(FAILED, "failed")                                                    \
	X(ROLLED_BACK, "rolled_back")                                          \
	X(OFFLINE, "offline")

enum proto_state {
#define PROTO__STATE_ENUM(name, text) PROTO_ST_##name,
	PROTO_STATE_MAP(PROTO__STATE_ENUM)
#undef PROTO__STATE_ENUM
	    PROTO_ST__COUNT
};

const char *proto_state_name(enum proto_state s); /* "?" when out of range */
/* Exact, case-sensitive name to state. Returns 0 or PROTO_EFIELD. */
int proto_state_parse(const char *s, enum proto_state *out);

/* Stage timings in milliseconds; -1 = not measured (the encoder omits any
 * negative value). */
struct proto_timings {
	int64_t download_ms; /* offer accepted -> last fragment */
	int64_t verify_ms;   /* image digest check */
	int64_t install_ms;  /* write slot + switch */
	int64_t restart_ms;  /* restart step -> up again */
	int64_t total_ms;    /* offer accepted -> committed */
};

/*
 * Status (device -> ota/dev/<id>/status, retained, QoS 1):
 * {"device":"d1","product":"sensor","version":"1.0.0","group":"g1",
 *  "state":"downloading","release":"<16 hex>","progress":0.42,
 *  "error":"...","timings":{"download_ms":..,...},"ts":1700000000123}
 * Required: device, product, version, state. `release` is present while an
 * update is in progress or has just ended; `progress` while downloading
 * (0..1); `error` when failed or rolled back; `timings` once measured.
 * The Last Will is the same message with state "offline".
 * `progress` carries 6 decimal places: encode and decode both round it to
 * the nearest multiple of 1/PROTO_PROGRESS_SCALE, so decode(encode(s))
 * equals s once s came from decode.
 * Encode omits absent fields (see proto_status_init) and rejects invalid
 * ones; an `error` that is not valid UTF-8 is sent as ASCII with '?'. Decode sets absent optional fields to their absent values and
 * ignores unknown members; on failure *s is left untouched.
 */
#define PROTO_PROGRESS_SCALE 1000000.0 /* progress: 6 decimal places */

struct proto_status {
	char device[PROTO_ID_MAX + 1];
	char product[PROTO_ID_MAX + 1];
	char version[PROTO_VERSION_MAX + 1];
	char group[PROTO_ID_MAX + 1]; /* "" = none */
	enum proto_state state;
	char release[PROTO_RELEASE_HEX_LEN + 1]; /* "" = none */
	double progress;			 /* < 0 = absent */
	char error[PROTO_ERROR_MAX + 1];	 /* "" = none */
	struct proto_timings timings;
	int64_t ts; /* unix ms; 0 = absent */
	/* "image": SHA-256 of the image the device runs, when it holds it
	 * (a delta base, PROTOCOL.md 6.4); has_image false = absent. */
	bool has_image;
	uint8_t image[PROTO_SHA256_LEN];
};

/* Set every field to "absent" (progress -1, timings -1, strings ""). */
void proto_status_init(struct proto_status *s);
int proto_status_encode(const struct proto_status *s, char **out, size_t *len);
int proto_status_decode(const char *buf, size_t len, struct proto_status *s,
			struct proto_err *err);

#endif
