/*
 * proto/internal.h: helpers shared by the proto/ source files only.
 * Not part of the module's contract (that is proto.h).
 */
#ifndef OTA_PROTO_INTERNAL_H
#define OTA_PROTO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "proto/proto.h"

#if defined(__GNUC__)
#define PROTO__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PROTO__PRINTF(f, a)
#endif

/* Fill err->text (when err is not NULL) and return `code`. */
int proto__err(struct proto_err *err, int code, const char *fmt, ...)
    PROTO__PRINTF(3, 4);

/* Copy `src` into `dst` (cap bytes, NUL-terminated), replacing bytes that
 * are not printable ASCII by '?'. For quoting untrusted text in errors. */
void proto__sanitize(char *dst, size_t cap, const char *src);

/* True when `s` is exactly PROTO_RELEASE_HEX_LEN lower-case hex digits. */
bool proto__release_hex_valid(const char *s);

/* ---- JSON helpers (jsonutil.c) ---- */

/*
 * Parse `len` bytes (at most `max`) as one JSON object: duplicate keys,
 * trailing bytes and a non-object top level are rejected. On success
 * *out is a new reference.
 */
int proto__json_parse(const char *buf, size_t len, size_t max, json_t **out,
		      struct proto_err *err);

/* Borrow the string member `key`. Absent: *val = NULL and 0, or
 * PROTO_EFIELD when `required`. Wrong type or an embedded NUL:
 * PROTO_EFIELD. */
int proto__json_str(const json_t *obj, const char *key, bool required,
		    const char **val, size_t *vlen, struct proto_err *err);

/* Copy the string member `key` into dst[cap] (absent: ""); longer than
 * cap-1 bytes: PROTO_ERANGE. */
int proto__json_copy(const json_t *obj, const char *key, bool required,
		     char *dst, size_t cap, struct proto_err *err);

/* An identifier member (see proto_id_valid) into dst[PROTO_ID_MAX + 1]. */
int proto__json_id(const json_t *obj, const char *key, bool required, char *dst,
		   struct proto_err *err);

/* A version member into dst[PROTO_VERSION_MAX + 1]; always required. */
int proto__json_version(const json_t *obj, const char *key, char *dst,
			struct proto_err *err);

/* An integer member within min..max. Absent: *present = false (present
 * may be NULL when `required`). */
int proto__json_int(const json_t *obj, const char *key, bool required,
		    int64_t min, int64_t max, int64_t *val, bool *present,
		    struct proto_err *err);

/* An optional boolean member (absent: false). */
int proto__json_bool(const json_t *obj, const char *key, bool *val,
		     struct proto_err *err);

/* Add a member, stealing `val` (which may be NULL after a failed
 * constructor: then PROTO_ENOMEM / PROTO_EFIELD for strings). */
int proto__json_set(json_t *obj, const char *key, json_t *val);

/* Serialize compactly in insertion order; *out new, *len its strlen. */
int proto__json_dump(const json_t *obj, char **out, size_t *len);

/* ---- compressed and delta payloads: JSON members (coding.c) ---- */

/* The offer's "encoding", "payload_size", "base", "base_version"
 * (PROTOCOL.md 5.2, 6.4): written only when not full; read with their
 * rules (base and base_version with delta only, payload_size with an
 * encoding only). */
int proto__offer_coding_encode(json_t *obj, const struct proto_offer *o);
int proto__offer_coding_decode(const json_t *root, struct proto_offer *o,
			       struct proto_err *err);
/* The status's "image" (64 lower-case hex digits), after "ts". */
int proto__status_image_encode(json_t *obj, const struct proto_status *s);
int proto__status_image_decode(const json_t *root, struct proto_status *s,
			       struct proto_err *err);

#endif
