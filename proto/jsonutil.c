/*
 * proto/jsonutil.c: strict accessors over jansson for the JSON messages.
 */
#include <string.h>

#include "proto/internal.h"

int proto__json_parse(const char *buf, size_t len, size_t max, json_t **out,
		      struct proto_err *err)
{
	json_error_t jerr;
	json_t *root;
	char detail[96];

	*out = NULL;
	if (buf == NULL || len == 0)
		return proto__err(err, PROTO_EJSON, "empty message");
	if (len > max)
		return proto__err(err, PROTO_ERANGE,
				  "message is %zu bytes, limit is %zu", len,
				  max);
	/* No JSON_DECODE_ANY: the top level must be an object or array.
	 * No JSON_DISABLE_EOF_CHECK: trailing bytes are an error.
	 * No JSON_ALLOW_NUL: "\u0000" in a string is an error. */
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		proto__sanitize(detail, sizeof(detail), jerr.text);
		return proto__err(err, PROTO_EJSON,
				  "invalid JSON at byte %d: %s", jerr.position,
				  detail);
	}
	if (!json_is_object(root)) {
		json_decref(root);
		return proto__err(err, PROTO_EJSON,
				  "top level is not a JSON object");
	}
	*out = root;
	return 0;
}

int proto__json_str(const json_t *obj, const char *key, bool required,
		    const char **val, size_t *vlen, struct proto_err *err)
{
	json_t *v = json_object_get(obj, key);
	const char *s;
	size_t n;

	*val = NULL;
	if (vlen != NULL)
		*vlen = 0;
	if (v == NULL) {
		if (required)
			return proto__err(err, PROTO_EFIELD,
					  "field '%s': missing", key);
		return 0;
	}
	if (!json_is_string(v))
		return proto__err(err, PROTO_EFIELD, "field '%s': not a string",
				  key);
	s = json_string_value(v);
	n = json_string_length(v);
	if (strlen(s) != n)
		return proto__err(err, PROTO_EFIELD,
				  "field '%s': contains a NUL byte", key);
	*val = s;
	if (vlen != NULL)
		*vlen = n;
	return 0;
}

int proto__json_copy(const json_t *obj, const char *key, bool required,
		     char *dst, size_t cap, struct proto_err *err)
{
	const char *s;
	size_t n;
	int rc;

	dst[0] = '\0';
	if ((rc = proto__json_str(obj, key, required, &s, &n, err)) < 0)
		return rc;
	if (s == NULL)
		return 0;
	if (n >= cap)
		return proto__err(err, PROTO_ERANGE,
				  "field '%s': %zu bytes, limit is %zu", key, n,
				  cap - 1);
	memcpy(dst, s, n + 1);
	return 0;
}

int proto__json_id(const json_t *obj, const char *key, bool required, char *dst,
		   struct proto_err *err)
{
	int rc;

	rc = proto__json_copy(obj, key, required, dst, PROTO_ID_MAX + 1, err);
	if (rc < 0)
		return rc;
	if (json_object_get(obj, key) != NULL && !proto_id_valid(dst)) {
		dst[0] = '\0';
		return proto__err(err, PROTO_EFIELD,
				  "field '%s': not an identifier (1..%d of "
				  "[A-Za-z0-9_-])",
				  key, PROTO_ID_MAX);
	}
	return 0;
}

int proto__json_version(const json_t *obj, const char *key, char *dst,
			struct proto_err *err)
{
	int rc;

	rc = proto__json_copy(obj, key, true, dst, PROTO_VERSION_MAX + 1, err);
	if (rc < 0)
		return rc;
	if (proto_version_parse(dst, NULL) < 0) {
		dst[0] = '\0';
		return proto__err(err, PROTO_EFIELD,
				  "field '%s': not MAJOR.MINOR.PATCH", key);
	}
	return 0;
}

int proto__json_int(const json_t *obj, const char *key, bool required,
		    int64_t min, int64_t max, int64_t *val, bool *present,
		    struct proto_err *err)
{
	json_t *v = json_object_get(obj, key);
	json_int_t n;

	*val = 0;
	if (present != NULL)
		*present = false;
	if (v == NULL) {
		if (required)
			return proto__err(err, PROTO_EFIELD,
					  "field '%s': missing", key);
		return 0;
	}
	if (!json_is_integer(v))
		return proto__err(err, PROTO_EFIELD,
				  "field '%s': not an integer", key);
	n = json_integer_value(v);
	if (n < min || n > max)
		return proto__err(err, PROTO_ERANGE,
				  "field '%s': %lld is not within %lld..%lld",
				  key, (long long)n, (long long)min,
				  (long long)max);
	*val = (int64_t)n;
	if (present != NULL)
		*present = true;
	return 0;
}

int proto__json_bool(const json_t *obj, const char *key, bool *val,
		     struct proto_err *err)
{
	json_t *v = json_object_get(obj, key);

	*val = false;
	if (v == NULL)
		return 0;
	if (!json_is_boolean(v))
		return proto__err(err, PROTO_EFIELD,
				  "field '%s': not true or false", key);
	*val = json_is_true(v);
	return 0;
}

int proto__json_set(json_t *obj, const char *key, json_t *val)
{
	if (val == NULL)
		return PROTO_ENOMEM;
	if (json_object_set_new(obj, key, val) < 0)
		return PROTO_ENOMEM;
	return 0;
}

int proto__json_dump(const json_t *obj, char **out, size_t *len)
{
	char *s;

	s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER |
				JSON_REAL_PRECISION(6));
	if (s == NULL)
		return PROTO_ENOMEM;
	*out = s;
	if (len != NULL)
		*len = strlen(s);
	return 0;
}
