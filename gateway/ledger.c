/* The ledger's record formats, each written and read back here only:
 * - devices: struct gw_device, written after every change of a device
 *   (gw.c), read back when the gateway starts;
 * - releases: struct gw_release with its campaign (release.c, campaign.c);
 * - events: one line of the event log (gw__event in gw.c);
 * - meta: the canary key (campaign.c).
 * status.c and fsck.c read the same records as JSON to show and check them.
 * Pure: no I/O and no gateway state, so tests/fuzz/fuzz_ledger.c can check
 * it on anything. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gw.h"

static json_t *timings_json(const struct proto_timings *t)
{
	json_t *o = json_object();
	const struct {
		const char *k;
		int64_t v;
	} f[] = {{"download_ms", t->download_ms},
		 {"verify_ms", t->verify_ms},
		 {"install_ms", t->install_ms},
		 {"restart_ms", t->restart_ms},
		 {"total_ms", t->total_ms}};
	for (size_t i = 0; i < 5; i++)
		if (f[i].v >= 0)
			json_object_set_new(o, f[i].k, json_integer(f[i].v));
	return o;
}

json_t *gw__failed_json(const struct gw_device *d)
{
	json_t *a = json_array();
	for (int i = 0; a && i < d->nfailed; i++)
		json_array_append_new(a,
				      json_pack("{s:s,s:s}", "release",
						d->failed[i].release, "state",
						d->failed[i].rolled_back
						    ? "rolled_back"
						    : "failed"));
	return a;
}

char *gw__device_record(const struct gw_device *d)
{
	/* A delta's base: its transfer goes on as the same delta after a
	 * restart (delta.c). */
	char base[2 * PROTO_SHA256_LEN + 1] = "";
	if (d->encoding == PROTO_ENCODING_DELTA)
		proto_hex_encode(d->xbase, PROTO_SHA256_LEN, base);
	json_t *o = json_pack(
	    "{s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:s,s:o,"
	    "s:I,s:I,s:I,s:I,s:s,s:I,s:s,s:s}",
	    "device", d->id, "product", d->product, "version", d->version,
	    "group", d->group, "state", proto_state_name(d->state), "online",
	    d->online, "release", d->release, "failed_release",
	    gw__failed_latest(d), "failed_releases", gw__failed_json(d),
	    "acked", (json_int_t)d->acked, "fragments", (json_int_t)d->frags,
	    "frags_sent", (json_int_t)d->frags_sent, "frags_resent",
	    (json_int_t)d->frags_resent, "error", d->error, "timings",
	    timings_json(&d->timings), "offered_ms", (json_int_t)d->offered_ms,
	    "transferred_ms", (json_int_t)d->transferred_ms, "finished_ms",
	    (json_int_t)d->finished_ms, "seen_ms", (json_int_t)d->seen_ms,
	    "encoding", proto_encoding_name(d->encoding), "wire_bytes",
	    (json_int_t)d->wire_bytes, "nodelta_release", d->nodelta_release,
	    "base", base);
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

/* "failed_releases": [{"release": ID, "state": "failed" | "rolled_back"},
 * ...] oldest first; an entry that is not that is skipped. A record
 * without it (written before it existed) has only "failed_release", the
 * last one, rolled back when the device's state says so. */
static void failed_parse(json_t *o, struct gw_device *d)
{
	json_t *a = json_object_get(o, "failed_releases"), *e;
	char id[PROTO_RELEASE_HEX_LEN + 1];
	size_t i;
	d->nfailed = 0;
	if (!json_is_array(a)) {
		str_member(o, "failed_release", id, sizeof(id), release_ok);
		if (id[0])
			gw__failed_put(d, id, d->state == PROTO_ST_ROLLED_BACK,
				       NULL);
		return;
	}
	json_array_foreach(a, i, e)
	{
		const char *st = json_string_value(json_object_get(e, "state"));
		str_member(e, "release", id, sizeof(id), release_ok);
		if (id[0] && st &&
		    (!strcmp(st, "failed") || !strcmp(st, "rolled_back")))
			gw__failed_put(d, id, !strcmp(st, "rolled_back"), NULL);
	}
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
	str_member(o, "error", d->error, sizeof(d->error), NULL);
	enum proto_state st;
	const char *sn = json_string_value(json_object_get(o, "state"));
	d->state = (sn && proto_state_parse(sn, &st) == 0) ? st
							   : PROTO_ST_OFFLINE;
	failed_parse(o, d);
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
	char base[2 * PROTO_SHA256_LEN + 1];
	str_member(o, "base", base, sizeof(base), NULL);
	/* None (an older record): a restored transfer sends the full image */
	if (proto_hex_decode(base, d->xbase, PROTO_SHA256_LEN) != 0)
		memset(d->xbase, 0, sizeof(d->xbase));
	d->online = false; /* until the device speaks again */
	json_decref(o);
	return 0;
}

/* ------------------------------------------------------------ releases */

static json_t *campaign_json(const struct gw_release *r, const char *state)
{
	char cut[17];
	json_t *c = json_pack(
	    "{s:s,s:b,s:b,s:b,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
	    "state", state, "paused", r->camp.st == GW_CAMP_PAUSED, "aborted",
	    r->camp.st == GW_CAMP_ABORTED, "canary",
	    r->camp.st == GW_CAMP_CANARY, "pause_reason", r->camp.pause_reason,
	    "canary_quota", (json_int_t)r->camp.canary_quota, "started",
	    (json_int_t)r->camp.started, "active", (json_int_t)r->camp.active,
	    "committed", (json_int_t)r->camp.committed, "failed",
	    (json_int_t)r->camp.failed, "concurrency",
	    (json_int_t)r->target.concurrency, "canary_percent",
	    (json_int_t)r->target.canary_percent, "canary_success_percent",
	    (json_int_t)r->target.canary_success_percent,
	    "pause_failure_percent",
	    (json_int_t)r->target.pause_failure_percent);
	if (!c)
		return NULL;
	if (r->camp.finished_ms)
		json_object_set_new(c, "finished_ms",
				    json_integer(r->camp.finished_ms));
	snprintf(cut, sizeof(cut), "%016llx",
		 (unsigned long long)r->camp.canary_cut);
	json_object_set_new(c, "canary_cut", json_string(cut));
	json_object_set_new(c, "pause_failure_min",
			    json_integer(r->camp.fail_min));
	if (r->target.restart_spread_set)
		json_object_set_new(c, "restart_spread_s",
				    json_integer(r->target.restart_spread_s));
	return c;
}

char *gw__release_record(const struct gw_release *r, const char *campaign_state)
{
	char sig[2 * PROTO_SIG_LEN + 1];
	proto_hex_encode(r->sig, PROTO_SIG_LEN, sig);
	json_t *devs = json_null();
	if (r->target.devices) {
		devs = json_array();
		for (size_t i = 0; i < r->target.ndevices; i++)
			json_array_append_new(devs,
					      json_string(r->target.devices[i]));
	}
	json_t *o = json_pack(
	    "{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:o,s:I}",
	    "release", r->id, "product", r->m.product, "version", r->m.version,
	    "size", (json_int_t)r->m.size, "path", r->path, "manifest",
	    r->manifest, "sig", sig, "payload_off", (json_int_t)r->payload_off,
	    "fragment_size", (json_int_t)r->frag_size, "fragments",
	    (json_int_t)r->nfrags, "window", (json_int_t)r->window, "group",
	    r->target.group, "devices", devs, "created_ms",
	    (json_int_t)r->created_ms);
	json_t *c = campaign_json(r, campaign_state);
	if (!o || !c) {
		json_decref(o);
		json_decref(c);
		return NULL;
	}
	/* "fragments" counts the whole transfer: the first table_fragments
	 * carry the block table. */
	json_object_set_new(o, "table_fragments", json_integer(r->tfrags));
	json_object_set_new(o, "block_size", json_integer(r->m.block_size));
	json_object_set_new(o, "fetch_ms", json_integer(r->fetch_ms));
	json_object_set_new(o, "verify_ms", json_integer(r->verify_ms));
	/* Only the flag: the content key is in <store>/<id>.key. */
	json_object_set_new(o, "encrypt", json_boolean(r->encrypt));
	json_object_set_new(o, "campaign", c);
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

#define JINT(o, k) json_integer_value(json_object_get((o), (k)))
#define JSTR(o, k) json_string_value(json_object_get((o), (k)))

/* The campaign object c of a release record into r. */
static void campaign_parse(json_t *c, struct gw_release *r)
{
	r->target.concurrency = (uint32_t)JINT(c, "concurrency");
	r->target.canary_percent = (uint32_t)JINT(c, "canary_percent");
	r->target.canary_success_percent =
	    (uint32_t)JINT(c, "canary_success_percent");
	r->target.pause_failure_percent =
	    (uint32_t)JINT(c, "pause_failure_percent");
	r->camp.canary_quota = (uint32_t)JINT(c, "canary_quota");
	r->camp.started = (uint32_t)JINT(c, "started");
	r->camp.committed = (uint32_t)JINT(c, "committed");
	r->camp.failed = (uint32_t)JINT(c, "failed");
	r->camp.fail_min = (uint32_t)JINT(c, "pause_failure_min");
	json_t *rs = json_object_get(c, "restart_spread_s");
	if (json_is_integer(rs) && json_integer_value(rs) >= 0 &&
	    json_integer_value(rs) <= PROTO_SPREAD_MS_MAX / 1000) {
		r->target.restart_spread_s = (uint32_t)json_integer_value(rs);
		r->target.restart_spread_set = true;
	}
	/* A campaign of an older gateway has no draw: the first to come. */
	const char *cut = JSTR(c, "canary_cut");
	r->camp.canary_cut = cut ? strtoull(cut, NULL, 16) : UINT64_MAX;
	/* The record keeps the three flags older gateways wrote. */
	if (json_is_true(json_object_get(c, "aborted")))
		r->camp.st = GW_CAMP_ABORTED;
	else if (json_is_true(json_object_get(c, "paused")))
		r->camp.st = GW_CAMP_PAUSED;
	else if (json_is_true(json_object_get(c, "canary")))
		r->camp.st = GW_CAMP_CANARY;
	else
		r->camp.st = GW_CAMP_ROLLING;
	r->camp.finished_ms = JINT(c, "finished_ms");
	const char *pr = JSTR(c, "pause_reason");
	snprintf(r->camp.pause_reason, sizeof(r->camp.pause_reason), "%s",
		 pr ? pr : "");
}

/* The target device list: NULL for "every device of the group". */
static int devices_parse(json_t *devs, struct gw_release *r)
{
	if (!json_is_array(devs))
		return 0;
	r->target.ndevices = json_array_size(devs);
	r->target.devices = calloc(r->target.ndevices + 1, sizeof(char *));
	if (!r->target.devices)
		return -1;
	for (size_t i = 0; i < r->target.ndevices; i++) {
		const char *d = json_string_value(json_array_get(devs, i));
		if (!(r->target.devices[i] = strdup(d ? d : "")))
			return -1;
	}
	return 0;
}

/* The fragment layout the record claims, against its manifest. */
static bool layout_ok(const struct gw_release *r)
{
	return r->frag_size >= PROTO_FRAG_SIZE_MIN &&
	       r->frag_size <= PROTO_FRAG_SIZE_MAX && r->window != 0 &&
	       r->m.block_size != 0 &&
	       r->nfrags ==
		   (r->m.size + r->frag_size - 1) / r->frag_size + r->tfrags;
}

int gw__release_parse(const char *val, size_t vlen, struct gw_release *r,
		      char *err, size_t n)
{
	json_t *o = json_loadb(val, vlen, 0, NULL);
	const char *id = JSTR(o, "release"), *man = JSTR(o, "manifest");
	const char *sig = JSTR(o, "sig"), *path = JSTR(o, "path");
	const char *grp = JSTR(o, "group");
	int rc = -1;
	snprintf(err, n, "not a release record");
	if (!id || !man || !sig || !path ||
	    strlen(id) != PROTO_RELEASE_HEX_LEN ||
	    strspn(id, "0123456789abcdef") != PROTO_RELEASE_HEX_LEN ||
	    proto_hex_decode(sig, r->sig, PROTO_SIG_LEN) != 0 ||
	    proto_manifest_decode(man, strlen(man), &r->m, NULL) != 0 ||
	    strlen(path) >= sizeof(r->path) ||
	    (grp && strlen(grp) >= sizeof(r->target.group)))
		goto out;
	snprintf(err, n, "out of memory");
	memcpy(r->id, id, PROTO_RELEASE_HEX_LEN + 1);
	if (!(r->manifest = strdup(man)) ||
	    devices_parse(json_object_get(o, "devices"), r) != 0)
		goto out;
	r->manifest_len = strlen(man);
	snprintf(r->path, sizeof(r->path), "%s", path);
	snprintf(r->target.group, sizeof(r->target.group), "%s",
		 grp ? grp : "");
	r->payload_off = (uint64_t)JINT(o, "payload_off");
	r->frag_size = (uint32_t)JINT(o, "fragment_size");
	r->nfrags = (uint32_t)JINT(o, "fragments");
	r->window = (uint32_t)JINT(o, "window");
	r->created_ms = JINT(o, "created_ms");
	r->fetch_ms = JINT(o, "fetch_ms");
	r->verify_ms = JINT(o, "verify_ms");
	r->encrypt = json_is_true(json_object_get(o, "encrypt"));
	campaign_parse(json_object_get(o, "campaign"), r);
	r->tfrags = r->frag_size >= PROTO_FRAG_SIZE_MIN
			? proto_table_fragments(&r->m, r->frag_size)
			: 0;
	snprintf(err, n, "fragment layout does not match the manifest");
	if (layout_ok(r))
		rc = 0;
out:
	json_decref(o);
	return rc;
}

#undef JINT
#undef JSTR

/* ------------------------------------------------------------- events */

char *gw__event_record(int64_t ts, const char *event, const char *device,
		       const char *release, const char *detail)
{
	json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s}", "ts", (json_int_t)ts,
			      "event", event, "device", device ? device : "",
			      "release", release ? release : "", "detail",
			      detail ? detail : "");
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	return s;
}

int gw__event_parse(const char *val, size_t vlen, struct gw__event_rec *e)
{
	json_t *o = json_loadb(val, vlen, 0, NULL);
	memset(e, 0, sizeof(*e));
	str_member(o, "event", e->event, sizeof(e->event), NULL);
	if (!json_is_object(o) || !e->event[0]) {
		json_decref(o);
		return -1;
	}
	e->ts = int_member(o, "ts", INT64_MAX, 0);
	str_member(o, "device", e->device, sizeof(e->device), NULL);
	str_member(o, "release", e->release, sizeof(e->release), NULL);
	str_member(o, "detail", e->detail, sizeof(e->detail), NULL);
	json_decref(o);
	return 0;
}

/* --------------------------------------------------------------- meta */

void gw__canary_key_record(const uint8_t key[GW_CANARY_KEY_LEN],
			   char hex[2 * GW_CANARY_KEY_LEN + 1])
{
	proto_hex_encode(key, GW_CANARY_KEY_LEN, hex);
}

int gw__canary_key_parse(const char *val, size_t vlen,
			 uint8_t key[GW_CANARY_KEY_LEN])
{
	char hex[2 * GW_CANARY_KEY_LEN + 1];
	if (vlen != 2 * GW_CANARY_KEY_LEN)
		return -1;
	memcpy(hex, val, vlen);
	hex[vlen] = '\0';
	if (strspn(hex, "0123456789abcdef") != vlen)
		return -1;
	return proto_hex_decode(hex, key, GW_CANARY_KEY_LEN) == 0 ? 0 : -1;
}
