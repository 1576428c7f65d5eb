/*
 * proto/status.c: the device's status message (PROTOCOL.md section 5.3):
 * its encoder and its decoder. The other JSON control messages are
 * proto/json.c.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/internal.h"

/* Upper bound on the whole message, before parsing. */
#define STATUS_JSON_MAX (64 * 1024)

/* The timings members, in wire order. */
#define TIMINGS_MAP(X)                                                         \
	X(download_ms)                                                         \
	X(verify_ms)                                                           \
	X(install_ms)                                                          \
	X(restart_ms)                                                          \
	X(total_ms)

void proto_status_init(struct proto_status *s)
{
	memset(s, 0, sizeof(*s));
	s->state = PROTO_ST_IDLE;
	s->progress = -1.0;
#define TIMING_INIT(name) s->timings.name = -1;
	TIMINGS_MAP(TIMING_INIT)
#undef TIMING_INIT
	s->ts = 0;
}

/* `progress` carries 6 decimal places (PROTOCOL.md section 5.3): both
 * sides round to the nearest multiple of 10^-6, so what the decoder
 * returns is exactly what the encoder writes (JSON_REAL_PRECISION(6) prints
 * such a number in full) and decode(encode(s)) gives s back. p in 0..1. */
static double progress_round(double p)
{
	return (double)(int64_t)(p * PROTO_PROGRESS_SCALE + 0.5) /
	       PROTO_PROGRESS_SCALE;
}

static bool fixed_str_ok(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

static int status_check(const struct proto_status *s)
{
	if (!fixed_str_ok(s->device, sizeof(s->device)) ||
	    !proto_id_valid(s->device) ||
	    !fixed_str_ok(s->product, sizeof(s->product)) ||
	    !proto_id_valid(s->product))
		return PROTO_EFIELD;
	if (!fixed_str_ok(s->version, sizeof(s->version)) ||
	    proto_version_parse(s->version, NULL) < 0)
		return PROTO_EVERSION;
	if ((int)s->state < 0 || (int)s->state >= PROTO_ST__COUNT)
		return PROTO_EFIELD;
	if (!fixed_str_ok(s->group, sizeof(s->group)) ||
	    (s->group[0] != '\0' && !proto_id_valid(s->group)))
		return PROTO_EFIELD;
	if (!fixed_str_ok(s->release, sizeof(s->release)) ||
	    (s->release[0] != '\0' && !proto__release_hex_valid(s->release)))
		return PROTO_EFIELD;
	if (!fixed_str_ok(s->error, sizeof(s->error)))
		return PROTO_ERANGE;
	if (!(s->progress < 0) && !(s->progress <= 1.0)) /* also NaN */
		return PROTO_ERANGE;
	if (s->ts < 0)
		return PROTO_ERANGE;
	return 0;
}

/* The error text is informational and often cut to fit its buffer, maybe
 * inside a UTF-8 sequence: rather than lose the whole status, bytes that
 * are not valid UTF-8 make the text fall back to ASCII with '?'. */
static json_t *error_string(const char *text)
{
	char ascii[PROTO_ERROR_MAX + 1];
	json_t *v;
	size_t i;

	if ((v = json_string(text)) != NULL)
		return v;
	for (i = 0; i < PROTO_ERROR_MAX && text[i] != '\0'; i++)
		ascii[i] = (unsigned char)text[i] < 0x80 ? text[i] : '?';
	ascii[i] = '\0';
	return json_string(ascii);
}

static int status_timings(json_t *obj, const struct proto_timings *t)
{
	json_t *tobj;
	int rc;

	if (t->download_ms < 0 && t->verify_ms < 0 && t->install_ms < 0 &&
	    t->restart_ms < 0 && t->total_ms < 0)
		return 0;
	if ((tobj = json_object()) == NULL)
		return PROTO_ENOMEM;
#define TIMING_SET(name)                                                       \
	if (t->name >= 0 &&                                                    \
	    (rc = proto__json_set(tobj, #name,                                 \
				  json_integer((json_int_t)t->name))) < 0) {   \
		json_decref(tobj);                                             \
		return rc;                                                     \
	}
	TIMINGS_MAP(TIMING_SET)
#undef TIMING_SET
	return proto__json_set(obj, "timings", tobj);
}

int proto_status_encode(const struct proto_status *s, char **out, size_t *len)
{
	json_t *obj, *errstr = NULL;
	int rc;

	*out = NULL;
	if (len != NULL)
		*len = 0;
	if ((rc = status_check(s)) < 0)
		return rc;
	if (s->error[0] != '\0' && (errstr = error_string(s->error)) == NULL)
		return PROTO_ENOMEM;
	if ((obj = json_object()) == NULL) {
		json_decref(errstr);
		return PROTO_ENOMEM;
	}
	if ((rc = proto__json_set(obj, "device", json_string(s->device))) < 0 ||
	    (rc = proto__json_set(obj, "product", json_string(s->product))) <
		0 ||
	    (rc = proto__json_set(obj, "version", json_string(s->version))) < 0)
		goto out_obj;
	if (s->group[0] != '\0' &&
	    (rc = proto__json_set(obj, "group", json_string(s->group))) < 0)
		goto out_obj;
	if ((rc = proto__json_set(obj, "state",
				  json_string(proto_state_name(s->state)))) < 0)
		goto out_obj;
	if (s->release[0] != '\0' &&
	    (rc = proto__json_set(obj, "release", json_string(s->release))) < 0)
		goto out_obj;
	if (s->progress >= 0 &&
	    (rc = proto__json_set(obj, "progress",
				  json_real(progress_round(s->progress)))) < 0)
		goto out_obj;
	if (errstr != NULL) {
		rc = proto__json_set(obj, "error", errstr);
		errstr = NULL; /* stolen, even on failure */
		if (rc < 0)
			goto out_obj;
	}
	if ((rc = status_timings(obj, &s->timings)) < 0)
		goto out_obj;
	if ((s->ts > 0 &&
	     (rc = proto__json_set(obj, "ts",
				   json_integer((json_int_t)s->ts))) < 0) ||
	    (rc = proto__status_image_encode(obj, s)) < 0)
		goto out_obj;
	rc = proto__json_dump(obj, out, len);
out_obj:
	json_decref(errstr);
	json_decref(obj);
	return rc;
}

static int status_timings_decode(const json_t *root, struct proto_timings *t,
				 struct proto_err *err)
{
	json_t *tobj = json_object_get(root, "timings");
	bool present;
	int64_t v;
	int rc;

	if (tobj == NULL)
		return 0;
	if (!json_is_object(tobj))
		return proto__err(err, PROTO_EFIELD,
				  "field 'timings': not an object");
#define TIMING_GET(name)                                                       \
	if ((rc = proto__json_int(tobj, #name, false, 0, INT64_MAX, &v,        \
				  &present, err)) < 0)                         \
		return rc;                                                     \
	t->name = present ? v : -1;
	TIMINGS_MAP(TIMING_GET)
#undef TIMING_GET
	return 0;
}

static int status_fields(const json_t *root, struct proto_status *s,
			 struct proto_err *err)
{
	const char *str;
	json_t *v;
	bool present;
	int64_t ts;
	int rc;

	if ((rc = proto__json_id(root, "device", true, s->device, err)) < 0 ||
	    (rc = proto__json_id(root, "product", true, s->product, err)) < 0 ||
	    (rc = proto__json_version(root, "version", s->version, err)) < 0 ||
	    (rc = proto__json_id(root, "group", false, s->group, err)) < 0)
		return rc;
	if ((rc = proto__json_str(root, "state", true, &str, NULL, err)) < 0)
		return rc;
	if (proto_state_parse(str, &s->state) < 0)
		return proto__err(err, PROTO_EFIELD,
				  "field 'state': unknown state");
	if ((rc = proto__json_str(root, "release", false, &str, NULL, err)) < 0)
		return rc;
	if (str != NULL) {
		if (!proto__release_hex_valid(str))
			return proto__err(err, PROTO_EFIELD,
					  "field 'release': not %d lower-case "
					  "hex digits",
					  PROTO_RELEASE_HEX_LEN);
		memcpy(s->release, str, PROTO_RELEASE_HEX_LEN + 1);
	}
	if ((v = json_object_get(root, "progress")) != NULL) {
		if (!json_is_number(v))
			return proto__err(err, PROTO_EFIELD,
					  "field 'progress': not a number");
		s->progress = json_number_value(v);
		if (!(s->progress >= 0 && s->progress <= 1.0))
			return proto__err(err, PROTO_ERANGE,
					  "field 'progress': not within 0..1");
		s->progress = progress_round(s->progress);
	}
	if ((rc = proto__json_copy(root, "error", false, s->error,
				   sizeof(s->error), err)) < 0 ||
	    (rc = status_timings_decode(root, &s->timings, err)) < 0)
		return rc;
	if ((rc = proto__json_int(root, "ts", false, 0, INT64_MAX, &ts,
				  &present, err)) < 0)
		return rc;
	s->ts = ts;
	return proto__status_image_decode(root, s, err);
}

int proto_status_decode(const char *buf, size_t len, struct proto_status *s,
			struct proto_err *err)
{
	struct proto_status tmp;
	json_t *root;
	int rc;

	proto_status_init(&tmp);
	rc = proto__json_parse(buf, len, STATUS_JSON_MAX, &root, err);
	if (rc < 0)
		return rc;
	rc = status_fields(root, &tmp, err);
	json_decref(root);
	if (rc == 0 && s != NULL)
		*s = tmp;
	return rc;
}
