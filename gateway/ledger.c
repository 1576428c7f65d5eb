/* The ledger's device record <-> struct gw_device: written after every change
 * of a device (gw.c), read back when the gateway starts. Pure: no I/O and no
 * gateway state, so tests/fuzz/fuzz_ledger.c can check it on anything. */
#include <jansson.h>
#include <string.h>

#include "gateway/gw.h"

static json_t *timings_json(const struct proto_timings *t)
{
	json_t *o = json_object();
	const struct {
		const char *k;
		int64_t v;
	} f[] = {{"download_ms", t->download_ms}, {"verify_ms", t->verify_ms},
		 {"install_ms", t->install_ms},	  {"restart_ms", t->restart_ms},
		 {"total_ms", t->total_ms}};
	for (size_t i = 0; i < 5; i++)
		if (f[i].v >= 0)
			json_object_set_new(o, f[i].k, json_integer(f[i].v));
	return o;
}

char *gw__device_record(const struct gw_device *d)
{
	json_t *o = json_pack(
	    "{s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:o,"
	    "s:I,s:I,s:I,s:I,s:s,s:I,s:s}",
	    "device", d->id, "product", d->product, "version", d->version,
	    "group", d->group, "state", proto_state_name(d->state), "online",
	    d->online, "release", d->release, "failed_release",
	    d->failed_release, "acked", (json_int_t)d->acked, "fragments",
	    (json_int_t)d->frags, "frags_sent", (json_int_t)d->frags_sent,
	    "frags_resent", (json_int_t)d->frags_resent, "error", d->error,
	    "timings", timings_json(&d->timings), "offered_ms",
	    (json_int_t)d->offered_ms, "transferred_ms",
	    (json_int_t)d->transferred_ms, "finished_ms",
	    (json_int_t)d->finished_ms, "seen_ms", (json_int_t)d->seen_ms,
	    "encoding", proto_encoding_name(d->encoding), "wire_bytes",
	    (json_int_t)d->wire_bytes, "nodelta_release", d->nodelta_release);
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	return s;
}

/* Member k as a string that fits cap bytes and passes ok (NULL: any), else
 * "". */
static void str_member(json_t *o, const char *k, char *dst, size_t cap,
		       bool (*ok)(const char *))
{
	json_t *v = json_object_get(o, k);
	dst[0] = '\0';
	if (json_is_string(v) && json_string_length(v) < cap &&
	    strlen(json_string_value(v)) == json_string_length(v) &&
	    (!ok || ok(json_string_value(v))))
		memcpy(dst, json_string_value(v), json_string_length(v) + 1);
}

/* Member k as an integer in 0..max, else dflt. */
static int64_t int_member(json_t *o, const char *k, int64_t max, int64_t dflt)
{
	json_t *v = json_object_get(o, k);
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > max)
		return dflt;
	return json_integer_value(v);
}

static bool version_ok(const char *s) { return !proto_version_parse(s, NULL); }

static bool release_ok(const char *s)
{
	return strlen(s) == PROTO_RELEASE_HEX_LEN &&
	       strspn(s, "0123456789abcdef") == PROTO_RELEASE_HEX_LEN;
}

int gw__device_parse(const char *val, size_t vlen, struct gw_device *d)
{
	json_t *o = json_loadb(val, vlen, 0, NULL);
	char id[PROTO_ID_MAX + 1];
	str_member(o, "device", id, sizeof(id), proto_id_valid);
	if (!json_is_object(o) || !id[0]) {
		json_decref(o);
		return -1;
	}
	memcpy(d->id, id, sizeof(id));
	str_member(o, "product", d->product, sizeof(d->product),
		   proto_id_valid);
	str_member(o, "version", d->version, sizeof(d->version), version_ok);
	str_member(o, "group", d->group, sizeof(d->group), proto_id_valid);
	str_member(o, "release", d->release, sizeof(d->release), release_ok);
	str_member(o, "failed_release", d->failed_release,
		   sizeof(d->failed_release), release_ok);
	str_member(o, "error", d->error, sizeof(d->error), NULL);
	enum proto_state st;
	const char *sn = json_string_value(json_object_get(o, "state"));
	d->state = (sn && proto_state_parse(sn, &st) == 0) ? st
							   : PROTO_ST_OFFLINE;
	d->frags = (uint32_t)int_member(o, "fragments", PROTO_FRAGS_MAX, 0);
	d->acked = (uint32_t)int_member(o, "acked", d->frags, 0);
	d->frags_sent = (uint64_t)int_member(o, "frags_sent", INT64_MAX, 0);
	d->frags_resent =
	    (uint64_t)int_member(o, "frags_resent", (int64_t)d->frags_sent, 0);
	json_t *t = json_object_get(o, "timings");
	d->timings.download_ms = int_member(t, "download_ms", INT64_MAX, -1);
	d->timings.verify_ms = int_member(t, "verify_ms", INT64_MAX, -1);
	d->timings.install_ms = int_member(t, "install_ms", INT64_MAX, -1);
	d->timings.restart_ms = int_member(t, "restart_ms", INT64_MAX, -1);
	d->timings.total_ms = int_member(t, "total_ms", INT64_MAX, -1);
	d->offered_ms = int_member(o, "offered_ms", INT64_MAX, 0);
	d->transferred_ms = int_member(o, "transferred_ms", INT64_MAX, 0);
	d->finished_ms = int_member(o, "finished_ms", INT64_MAX, 0);
	d->seen_ms = int_member(o, "seen_ms", INT64_MAX, 0);
	const char *en = json_string_value(json_object_get(o, "encoding"));
	if (!en || proto_encoding_parse(en, &d->encoding) != 0)
		d->encoding = PROTO_ENCODING_FULL;
	d->wire_bytes = (uint64_t)int_member(o, "wire_bytes", INT64_MAX, 0);
	str_member(o, "nodelta_release", d->nodelta_release,
		   sizeof(d->nodelta_release), release_ok);
	d->online = false; /* until the device speaks again */
	json_decref(o);
	return 0;
}
