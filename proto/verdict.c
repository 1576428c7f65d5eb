/*
 * proto/verdict.c: the command plane's JSON: the announcement as the
 * operator's tool writes it, and the gateway's verdict on a command.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/internal.h"

#define VERDICT_JSON_MAX (64 * 1024)

static const char *const verdict_names[] = {"accepted", "refused", "known",
					    "dry_run"};
#define VERDICTS (sizeof(verdict_names) / sizeof(verdict_names[0]))

/* "control": a control message too malformed to name its action. */
static const char *const command_names[] = {"announce", "pause", "resume",
					    "abort",	"retry", "control"};

const char *proto_verdict_name(enum proto_verdict_kind k)
{
	return (unsigned)k < VERDICTS ? verdict_names[k] : "?";
}

static bool command_valid(const char *s)
{
	for (size_t i = 0; i < sizeof(command_names) / sizeof(*command_names);
	     i++)
		if (!strcmp(s, command_names[i]))
			return true;
	return false;
}

/* ----------------------------------------------------- announcement out */

static int set_u32(json_t *o, const char *key, uint32_t v)
{
	return v ? proto__json_set(o, key, json_integer(v)) : 0;
}

static int set_id(json_t *o, const char *key, const char *v)
{
	if (!v[0])
		return 0;
	if (!proto_id_valid(v))
		return PROTO_EFIELD;
	return proto__json_set(o, key, json_string(v));
}

int proto_announce_encode(const struct proto_announce *a, char **out,
			  size_t *len)
{
	json_t *o = json_object(), *arr = NULL;
	int rc = PROTO_ENOMEM;

	*out = NULL;
	if (o == NULL)
		return rc;
	if ((strncmp(a->url, "file://", 7) != 0 || !a->url[7]) &&
	    (strncmp(a->url, "https://", 8) != 0 || !a->url[8])) {
		rc = PROTO_EFIELD;
		goto out;
	}
	if ((rc = proto__json_set(o, "url", json_string(a->url))) < 0 ||
	    (rc = set_id(o, "group", a->group)) < 0)
		goto out;
	if (a->devices) {
		if (a->ndevices == 0 ||
		    a->ndevices > PROTO_ANNOUNCE_DEVICES_MAX) {
			rc = PROTO_ERANGE;
			goto out;
		}
		if ((arr = json_array()) == NULL)
			goto out;
		for (size_t i = 0; i < a->ndevices; i++) {
			if (!proto_id_valid(a->devices[i])) {
				json_decref(arr);
				rc = PROTO_EFIELD;
				goto out;
			}
			json_array_append_new(arr, json_string(a->devices[i]));
		}
		if ((rc = proto__json_set(o, "devices", arr)) < 0)
			goto out;
	}
	if ((a->fragment_size && a->fragment_size < PROTO_FRAG_SIZE_MIN) ||
	    a->fragment_size > PROTO_FRAG_SIZE_MAX ||
	    a->window > PROTO_WINDOW_MAX || a->concurrency > 1000000 ||
	    a->canary_percent > 100 || a->canary_success_percent > 100 ||
	    a->pause_failure_percent > 100 ||
	    a->restart_spread_s > PROTO_SPREAD_MS_MAX / 1000) {
		rc = PROTO_ERANGE;
		goto out;
	}
	if ((rc = set_u32(o, "fragment_size", a->fragment_size)) < 0 ||
	    (rc = set_u32(o, "window", a->window)) < 0 ||
	    (rc = set_u32(o, "concurrency", a->concurrency)) < 0 ||
	    (rc = set_u32(o, "canary_percent", a->canary_percent)) < 0 ||
	    (rc = set_u32(o, "canary_success_percent",
			  a->canary_success_percent)) < 0 ||
	    (rc = set_u32(o, "pause_failure_percent",
			  a->pause_failure_percent)) < 0 ||
	    (rc = set_id(o, "reply", a->reply)) < 0 ||
	    (rc = set_id(o, "operator", a->operator_name)) < 0 ||
	    (a->dry_run &&
	     (rc = proto__json_set(o, "dry_run", json_true())) < 0) ||
	    (a->no_delta &&
	     (rc = proto__json_set(o, "delta", json_false())) < 0) ||
	    (a->restart_spread_set &&
	     (rc = proto__json_set(o, "restart_spread_s",
				   json_integer(a->restart_spread_s))) < 0))
		goto out;
	rc = proto__json_dump(o, out, len);
out:
	json_decref(o);
	return rc;
}

/* ------------------------------------------------------------- verdict */

int proto_verdict_encode(const struct proto_verdict *v, char **out, size_t *len)
{
	json_t *o = json_object(), *arr = NULL;
	int rc = PROTO_ENOMEM;

	*out = NULL;
	if (o == NULL)
		return rc;
	rc = PROTO_EFIELD;
	if ((unsigned)v->verdict >= VERDICTS || !command_valid(v->command) ||
	    !proto_id_valid(v->product) ||
	    (v->release[0] && !proto__release_hex_valid(v->release)) ||
	    (v->version[0] &&
	     proto_version_parse(v->version, (uint32_t[3]){0})) ||
	    v->ndevices > PROTO_VERDICT_DEVICES_MAX || v->targets < -1 ||
	    memchr(v->reason, '\0', sizeof(v->reason)) == NULL)
		goto out;
	if ((rc = set_id(o, "request", v->request)) < 0 ||
	    (rc = proto__json_set(o, "command", json_string(v->command))) < 0 ||
	    (rc = proto__json_set(o, "product", json_string(v->product))) < 0 ||
	    (rc = proto__json_set(o, "verdict",
				  json_string(verdict_names[v->verdict]))) < 0)
		goto out;
	if ((v->release[0] &&
	     (rc = proto__json_set(o, "release", json_string(v->release))) <
		 0) ||
	    (v->version[0] &&
	     (rc = proto__json_set(o, "version", json_string(v->version))) <
		 0) ||
	    (v->targets >= 0 &&
	     (rc = proto__json_set(o, "targets", json_integer(v->targets))) <
		 0))
		goto out;
	if (v->ndevices) {
		if ((arr = json_array()) == NULL) {
			rc = PROTO_ENOMEM;
			goto out;
		}
		for (uint32_t i = 0; i < v->ndevices; i++) {
			if (!proto_id_valid(v->devices[i])) {
				json_decref(arr);
				rc = PROTO_EFIELD;
				goto out;
			}
			json_array_append_new(arr, json_string(v->devices[i]));
		}
		if ((rc = proto__json_set(o, "devices", arr)) < 0)
			goto out;
	}
	if ((v->reason[0] &&
	     (rc = proto__json_set(o, "reason", json_string(v->reason))) < 0) ||
	    (rc = set_id(o, "operator", v->operator_name)) < 0 ||
	    (v->ts > 0 &&
	     (rc = proto__json_set(o, "ts", json_integer(v->ts))) < 0))
		goto out;
	rc = proto__json_dump(o, out, len);
out:
	json_decref(o);
	return rc;
}

static int verdict_kind(const json_t *root, struct proto_verdict *v,
			struct proto_err *err)
{
	char kind[16];
	int rc =
	    proto__json_copy(root, "verdict", true, kind, sizeof(kind), err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < VERDICTS; i++)
		if (!strcmp(kind, verdict_names[i])) {
			v->verdict = (enum proto_verdict_kind)i;
			return 0;
		}
	return proto__err(err, PROTO_EFIELD,
			  "field 'verdict': not accepted, refused, known or "
			  "dry_run");
}

static int verdict_devices(const json_t *root, struct proto_verdict *v,
			   struct proto_err *err)
{
	json_t *arr = json_object_get(root, "devices");
	size_t i;

	if (arr == NULL)
		return 0;
	if (!json_is_array(arr))
		return proto__err(err, PROTO_EFIELD,
				  "field 'devices': not an array");
	if (json_array_size(arr) > PROTO_VERDICT_DEVICES_MAX)
		return proto__err(err, PROTO_ERANGE,
				  "field 'devices': more than %d entries",
				  PROTO_VERDICT_DEVICES_MAX);
	for (i = 0; i < json_array_size(arr); i++) {
		json_t *d = json_array_get(arr, i);
		const char *s = json_string_value(d);
		if (!s || strlen(s) != json_string_length(d) ||
		    !proto_id_valid(s))
			return proto__err(err, PROTO_EFIELD,
					  "field 'devices': entry %zu is not "
					  "a device id",
					  i);
		memcpy(v->devices[i], s, strlen(s) + 1);
	}
	v->ndevices = (uint32_t)i;
	return 0;
}

int proto_verdict_decode(const char *buf, size_t len, struct proto_verdict *v,
			 struct proto_err *err)
{
	json_t *root;
	int64_t n;
	bool have;
	int rc;

	memset(v, 0, sizeof(*v));
	rc = proto__json_parse(buf, len, VERDICT_JSON_MAX, &root, err);
	if (rc < 0)
		return rc;
	if ((rc = proto__json_id(root, "request", false, v->request, err)) <
		0 ||
	    (rc = proto__json_copy(root, "command", true, v->command,
				   sizeof(v->command), err)) < 0)
		goto out;
	if (!command_valid(v->command)) {
		rc = proto__err(err, PROTO_EFIELD,
				"field 'command': not announce, pause, resume, "
				"abort, retry or control");
		goto out;
	}
	if ((rc = proto__json_id(root, "product", true, v->product, err)) < 0 ||
	    (rc = verdict_kind(root, v, err)) < 0 ||
	    (rc = proto__json_copy(root, "release", false, v->release,
				   sizeof(v->release), err)) < 0)
		goto out;
	if (v->release[0] && !proto__release_hex_valid(v->release)) {
		rc = proto__err(err, PROTO_EFIELD,
				"field 'release': not 16 lowercase hex digits");
		goto out;
	}
	if (json_object_get(root, "version") &&
	    (rc = proto__json_version(root, "version", v->version, err)) < 0)
		goto out;
	if ((rc = proto__json_int(root, "targets", false, 0, INT32_MAX, &n,
				  &have, err)) < 0)
		goto out;
	v->targets = have ? n : -1;
	if ((rc = verdict_devices(root, v, err)) < 0 ||
	    (rc = proto__json_copy(root, "reason", false, v->reason,
				   sizeof(v->reason), err)) < 0 ||
	    (rc = proto__json_id(root, "operator", false, v->operator_name,
				 err)) < 0 ||
	    (rc = proto__json_int(root, "ts", false, 0, INT64_MAX, &v->ts, NULL,
				  err)) < 0)
		goto out;
out:
	json_decref(root);
	if (rc < 0)
		memset(v, 0, sizeof(*v));
	return rc < 0 ? rc : 0;
}
