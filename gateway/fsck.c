/* ota-gateway fsck: check the ledger (LMDB, read-only) record by record.
 *
 * One read transaction walks releases, devices, events and meta, so the
 * check sees one consistent snapshot even while the gateway runs. Each
 * record must parse and hold the members the gateway writes, in range;
 * references must resolve (a device's release, an event's device and
 * release); and the counters must agree with each other and with the
 * event log: each release has one release_verified event, as many
 * "offered" events as its campaign started, as many "committed" events as
 * it counts committed, and as many "failed"/"rolled_back" as failed.
 * Every problem is one line; the last line is the summary. Exit 0 when
 * the ledger is consistent, 1 when it is not, 2 when it cannot be read. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/conf.h"
#include "common/util.h"
#include "gateway/gw.h"

#define FSCK_SHOW_MAX 200 /* problem lines printed; the rest are counted */

struct fsck_opts {
	char db[PATH_MAX];
	char publisher_key[PATH_MAX];
	char root_keys[PATH_MAX];
	char keyset[PATH_MAX];
	bool skip_packages;
};

static const struct conf_key fsck_keys[] = {
    {"db", CONF_STR, offsetof(struct fsck_opts, db), PATH_MAX, 0, 0,
     "ledger directory (the gateway's db_dir)"},
    {"publisher_key", CONF_STR, offsetof(struct fsck_opts, publisher_key),
     PATH_MAX, 0, 0,
     "also verify each release's manifest signature with this key"},
    {"root_keys", CONF_STR, offsetof(struct fsck_opts, root_keys), PATH_MAX, 0,
     0, "or with the publisher keys of --keyset, signed by these roots"},
    {"keyset", CONF_STR, offsetof(struct fsck_opts, keyset), PATH_MAX, 0, 0,
     "the gateway's keyset_file (with --root-keys)"},
    {"skip_packages", CONF_BOOL, offsetof(struct fsck_opts, skip_packages), 0,
     0, 0, "do not check the package files the releases name"},
    {0}};

struct fsck {
	const struct fsck_opts *o;
	FILE *out; /* problem lines; NULL: counted only */
	bool have_key;
	struct trust trust; /* with have_key */
	/* release id -> {"fragments", "started", ...; event counts} */
	json_t *rels;
	json_t *devs; /* device id -> true */
	uint64_t n[STORE__NDB];
	uint64_t first_seq, next_seq;
	uint64_t problems;
	char where[96]; /* the record being checked, for problem lines */
};

__attribute__((format(printf, 2, 3))) static void problem(struct fsck *f,
							  const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (++f->problems <= FSCK_SHOW_MAX && f->out)
		fprintf(f->out, "%s: %s\n", f->where, msg);
}

/* "db/key", with a key that is not printable text made safe to print. */
static void set_where(struct fsck *f, enum store_db db, const void *key,
		      size_t klen)
{
	char k[68];
	size_t n = klen < 64 ? klen : 64;
	const unsigned char *p = key;
	for (size_t i = 0; i < n; i++)
		k[i] = (p[i] >= 0x21 && p[i] < 0x7f) ? (char)p[i] : '?';
	snprintf(k + n, sizeof(k) - n, "%s", klen > 64 ? "..." : "");
	snprintf(f->where, sizeof(f->where), "%s/%s", store_db_name(db), k);
}

/* The record as a JSON object, or NULL (reported). */
static json_t *parse(struct fsck *f, const char *val, size_t vlen)
{
	json_error_t je;
	json_t *o = json_loadb(val, vlen, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		problem(f, "not JSON: %s", je.text);
		return NULL;
	}
	if (!json_is_object(o)) {
		problem(f, "not a JSON object");
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Member `k` as a string (NULL, reported, when missing or not one). */
static const char *str_of(struct fsck *f, json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	if (!s)
		problem(f, "member '%s' is missing or not a string", k);
	return s;
}

/* Member `k` as an integer in [lo, hi]; false (reported) otherwise. */
static bool int_of(struct fsck *f, json_t *o, const char *k, json_int_t lo,
		   json_int_t hi, json_int_t *out)
{
	json_t *v = json_object_get(o, k);
	if (!json_is_integer(v)) {
		problem(f, "member '%s' is missing or not an integer", k);
		return false;
	}
	*out = json_integer_value(v);
	if (*out < lo || *out > hi) {
		problem(f, "member '%s' is %lld, outside %lld .. %lld", k,
			(long long)*out, (long long)lo, (long long)hi);
		return false;
	}
	return true;
}

/* Counters kept per release during the walk, next to its campaign's. */
static void bump(json_t *rel, const char *what)
{
	json_object_set_new(
	    rel, what,
	    json_integer(1 + json_integer_value(json_object_get(rel, what))));
}

static bool is_release_id(const char *s)
{
	uint8_t id[PROTO_RELEASE_ID_LEN];
	return strlen(s) == PROTO_RELEASE_HEX_LEN &&
	       strspn(s, "0123456789abcdef") == PROTO_RELEASE_HEX_LEN &&
	       proto_hex_decode(s, id, sizeof(id)) == 0;
}

/* ------------------------------------------------------------ releases */

/* The signed manifest, against the record's key and members; m gets it
 * (false, reported, when it does not parse). */
static bool check_manifest(struct fsck *f, json_t *o, const char *key,
			   const char *man, struct proto_manifest *mp)
{
	struct proto_manifest m;
	struct proto_err perr = {{0}};
	uint8_t rid[PROTO_RELEASE_ID_LEN], sig[PROTO_SIG_LEN];
	char hex[PROTO_RELEASE_HEX_LEN + 1], why[320];
	const char *s;
	json_int_t size;
	if (proto_manifest_decode(man, strlen(man), &m, &perr) != 0) {
		problem(f, "manifest does not parse: %s", perr.text);
		return false;
	}
	*mp = m;
	proto_release_id(man, strlen(man), rid);
	proto_hex_encode(rid, sizeof(rid), hex);
	if (strcmp(hex, key) != 0)
		problem(f, "the manifest's release id is %s, not the key", hex);
	if ((s = str_of(f, o, "product")) && strcmp(s, m.product) != 0)
		problem(f, "product '%s' differs from the manifest's '%s'", s,
			m.product);
	if ((s = str_of(f, o, "version")) && strcmp(s, m.version) != 0)
		problem(f, "version '%s' differs from the manifest's '%s'", s,
			m.version);
	if (int_of(f, o, "size", 1, INT64_MAX, &size) &&
	    (uint64_t)size != m.size)
		problem(f, "size %lld differs from the manifest's %llu",
			(long long)size, (unsigned long long)m.size);
	s = str_of(f, o, "sig");
	if (s && proto_hex_decode(s, sig, sizeof(sig)) != 0)
		problem(f, "member 'sig' is not %d hex digits",
			2 * PROTO_SIG_LEN);
	else if (s && f->have_key &&
		 trust_check(&f->trust, m.product, man, strlen(man), sig, 0,
			     why, sizeof(why)) != 0)
		problem(f, "the manifest's signature does not verify: %s", why);
	return true;
}

/* Fragment layout and the package file it describes. m: the decoded
 * manifest, or NULL. The transfer's fragments are the block table's
 * (table_fragments, first) and the payload's. */
static void check_layout(struct fsck *f, json_t *o, size_t man_len,
			 const struct proto_manifest *m, json_t *ent)
{
	json_int_t size, fs, nf, win, off, tf = 0;
	if (!int_of(f, o, "size", 1, INT64_MAX, &size) ||
	    !int_of(f, o, "fragment_size", PROTO_FRAG_SIZE_MIN,
		    PROTO_FRAG_SIZE_MAX, &fs) ||
	    !int_of(f, o, "fragments", 1, PROTO_FRAGS_MAX, &nf))
		return;
	json_object_set_new(ent, "fragments", json_integer(nf));
	if (json_object_get(o, "table_fragments") &&
	    int_of(f, o, "table_fragments", 0, PROTO_FRAGS_MAX, &tf) && m &&
	    tf != proto_table_fragments(m, (uint32_t)fs))
		problem(f,
			"table_fragments %lld, the manifest's block table "
			"takes %u",
			(long long)tf, proto_table_fragments(m, (uint32_t)fs));
	if (nf != (size + fs - 1) / fs + tf)
		problem(f,
			"%lld fragments of %lld bytes do not carry %lld "
			"bytes and %lld table fragments",
			(long long)nf, (long long)fs, (long long)size,
			(long long)tf);
	int_of(f, o, "window", 1, PROTO_WINDOW_MAX, &win);
	json_int_t min_off = PROTO_PKG_HDR_LEN + (json_int_t)man_len +
			     PROTO_SIG_LEN;
	if (!int_of(f, o, "payload_off", min_off, INT64_MAX - size, &off))
		return;
	const char *path = str_of(f, o, "path");
	struct stat st;
	if (!path || f->o->skip_packages)
		return;
	if (stat(path, &st) != 0)
		problem(f, "package %s: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode) || st.st_size != off + size)
		problem(f, "package %s holds %lld bytes, the record says %lld",
			path, (long long)st.st_size, (long long)(off + size));
}

/* The campaign's counters: within bounds and consistent. */
static void check_campaign(struct fsck *f, json_t *o, json_t *ent)
{
	static const char *const k[] = {"started", "active", "committed",
					"failed"};
	json_int_t v[4];
	json_t *c = json_object_get(o, "campaign");
	if (!json_is_object(c)) {
		problem(f, "member 'campaign' is missing or not an object");
		return;
	}
	for (int i = 0; i < 4; i++) {
		if (!int_of(f, c, k[i], 0, UINT32_MAX, &v[i]))
			return;
		json_object_set_new(ent, k[i], json_integer(v[i]));
	}
	if (v[1] + v[2] + v[3] > v[0])
		problem(f,
			"campaign: %lld active + %lld committed + %lld failed "
			"is more than the %lld started",
			(long long)v[1], (long long)v[2], (long long)v[3],
			(long long)v[0]);
	const char *st = str_of(f, c, "state");
	bool aborted = json_is_true(json_object_get(c, "aborted"));
	if (st && strcmp(st, "rolling") && strcmp(st, "canary") &&
	    strcmp(st, "paused") && strcmp(st, "aborted") &&
	    strcmp(st, "finished"))
		problem(f, "campaign: unknown state '%s'", st);
	else if (st && aborted != !strcmp(st, "aborted"))
		problem(f, "campaign: state '%s' but aborted is %s", st,
			aborted ? "true" : "false");
}

/* ent: the release's entry in f->rels (borrowed). */
static void check_release(struct fsck *f, const char *key, json_t *o,
			  json_t *ent)
{
	const char *id = str_of(f, o, "release");
	const char *man = str_of(f, o, "manifest");
	json_int_t created;
	if (id && strcmp(id, key) != 0)
		problem(f, "member 'release' is '%s', not the key", id);
	struct proto_manifest m;
	bool have_m = man && check_manifest(f, o, key, man, &m);
	check_layout(f, o, man ? strlen(man) : 0, have_m ? &m : NULL, ent);
	check_campaign(f, o, ent);
	int_of(f, o, "created_ms", 0, INT64_MAX, &created);
}

/* What the gateway's own reader (ledger.c) makes of a record the checks
 * above passed: one it cannot use is skipped when it starts. Only then,
 * so one damaged record stays one problem. */
static void check_release_read(struct fsck *f, const char *val, size_t vlen)
{
	char why[160];
	struct gw_release *r = calloc(1, sizeof(*r));
	if (!r) {
		problem(f, "out of memory");
		return;
	}
	if (gw__release_parse(val, vlen, r, why, sizeof(why)) != 0)
		problem(f, "the gateway cannot use it: %s", why);
	free(r->manifest);
	proto_announce_free(&r->target);
	free(r);
}

/* ------------------------------------------------------------- devices */

/* A release member of a device record: "" or a release in the ledger. */
static json_t *device_release(struct fsck *f, json_t *o, const char *k)
{
	const char *r = str_of(f, o, k);
	json_t *ent;
	if (!r || !r[0])
		return NULL;
	if (!(ent = json_object_get(f->rels, r)))
		problem(f, "%s '%s' is not in the ledger's releases", k, r);
	return ent;
}

/* "failed_releases" (not in a record written before it): at most
 * GW_FAILED_MAX entries {"release": a release in the ledger, "state":
 * "failed" or "rolled_back"}, each release once; "failed_release" is the
 * last one's ("" when none), as the gateway writes them. */
static const char *failed_entry(json_t *a, size_t i)
{
	return json_string_value(json_object_get(json_array_get(a, i),
						 "release"));
}

static void check_failed(struct fsck *f, json_t *o)
{
	json_t *a = json_object_get(o, "failed_releases"), *e;
	const char *last = "", *fr;
	size_t i;
	if (!a) {
		device_release(f, o, "failed_release");
		return;
	}
	if (!json_is_array(a)) {
		problem(f, "member 'failed_releases' is not an array");
		return;
	}
	if (json_array_size(a) > GW_FAILED_MAX)
		problem(f, "failed_releases has %zu entries, at most %d",
			json_array_size(a), GW_FAILED_MAX);
	json_array_foreach(a, i, e)
	{
		const char *r = failed_entry(a, i);
		const char *st = json_string_value(json_object_get(e, "state"));
		if (!r || !st ||
		    (strcmp(st, "failed") != 0 &&
		     strcmp(st, "rolled_back") != 0)) {
			problem(f,
				"failed_releases[%zu] is not {\"release\": ID, "
				"\"state\": \"failed\" or \"rolled_back\"}",
				i);
			continue;
		}
		if (!json_object_get(f->rels, r))
			problem(f,
				"failed_releases[%zu] '%s' is not in the "
				"ledger's releases",
				i, r);
		for (size_t j = 0; j < i; j++) {
			const char *p = failed_entry(a, j);
			if (p && !strcmp(p, r)) {
				problem(f, "failed_releases names '%s' twice",
					r);
				break;
			}
		}
		last = r;
	}
	fr = str_of(f, o, "failed_release");
	if (fr && strcmp(fr, last) != 0)
		problem(f,
			"failed_release '%s' is not the last of "
			"failed_releases ('%s')",
			fr, last);
}

static void check_device_numbers(struct fsck *f, json_t *o, json_t *rel)
{
	static const char *const ms[] = {"offered_ms", "transferred_ms",
					 "finished_ms", "seen_ms"};
	json_int_t acked, nf, sent, resent, t;
	bool a = int_of(f, o, "acked", 0, PROTO_FRAGS_MAX, &acked);
	bool n = int_of(f, o, "fragments", 0, PROTO_FRAGS_MAX, &nf);
	if (a && n && acked > nf)
		problem(f, "acked %lld is more than its %lld fragments",
			(long long)acked, (long long)nf);
	json_int_t want = json_integer_value(json_object_get(rel, "fragments"));
	/* An encoded payload (a delta, zstd) has fragments of its own. */
	const char *enc = json_string_value(json_object_get(o, "encoding"));
	if (n && rel && want && nf != want && (!enc || !strcmp(enc, "full")))
		problem(f, "%lld fragments, its release has %lld",
			(long long)nf, (long long)want);
	if (int_of(f, o, "frags_sent", 0, INT64_MAX, &sent) &&
	    int_of(f, o, "frags_resent", 0, INT64_MAX, &resent) &&
	    resent > sent)
		problem(f, "frags_resent %lld is more than frags_sent %lld",
			(long long)resent, (long long)sent);
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
		int_of(f, o, ms[i], 0, INT64_MAX, &t);
	json_t *tm = json_object_get(o, "timings"), *v;
	const char *k;
	if (!json_is_object(tm)) {
		problem(f, "member 'timings' is missing or not an object");
		return;
	}
	json_object_foreach(tm, k, v) int_of(f, tm, k, 0, INT64_MAX, &t);
}

static void check_device(struct fsck *f, const char *key, json_t *o)
{
	const char *id = str_of(f, o, "device");
	const char *st = str_of(f, o, "state");
	const char *prod = str_of(f, o, "product");
	const char *ver = str_of(f, o, "version");
	enum proto_state s;
	uint32_t parts[3];
	if (id && strcmp(id, key) != 0)
		problem(f, "member 'device' is '%s', not the key", id);
	if (st && proto_state_parse(st, &s) != 0)
		problem(f, "unknown state '%s'", st);
	if (prod && prod[0] && !proto_id_valid(prod))
		problem(f, "product '%s' is not a valid identifier", prod);
	if (ver && ver[0] && proto_version_parse(ver, parts) != 0)
		problem(f, "version '%s' is not a valid version", ver);
	json_t *rel = device_release(f, o, "release");
	check_failed(f, o);
	if (rel)
		bump(rel, "n_devices");
	check_device_numbers(f, o, rel);
}

/* ------------------------------------------------------------- events */

/* Events that always name a device, and those that name a release the
 * ledger keeps (release_ignored names one it did not keep). */
static bool names_device(const char *ev)
{
	static const char *const evs[] = {"offered", "transferred", "committed",
					  "failed",  "rolled_back", "aborted"};
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (!strcmp(ev, evs[i]))
			return true;
	return false;
}

static bool names_kept_release(const char *ev)
{
	return names_device(ev) || !strcmp(ev, "release_verified") ||
	       !strcmp(ev, "finished") || !strcmp(ev, "retry") ||
	       !strcmp(ev, "release_aborted") || !strcmp(ev, "canary_passed") ||
	       !strcmp(ev, "canary_failed") || !strcmp(ev, "auto_paused") ||
	       !strcmp(ev, "paused") || !strcmp(ev, "resumed");
}

static void check_event(struct fsck *f, json_t *o)
{
	json_int_t ts;
	const char *ev = str_of(f, o, "event");
	const char *dev = str_of(f, o, "device");
	const char *rel = str_of(f, o, "release");
	int_of(f, o, "ts", 0, INT64_MAX, &ts);
	str_of(f, o, "detail");
	if (!ev || !dev || !rel)
		return;
	if (!ev[0])
		problem(f, "empty event name");
	if (dev[0] && !json_object_get(f->devs, dev))
		problem(f, "%s: device '%s' is not in the ledger's devices", ev,
			dev);
	else if (!dev[0] && names_device(ev))
		problem(f, "%s: names no device", ev);
	json_t *r = rel[0] ? json_object_get(f->rels, rel) : NULL;
	if (rel[0] && !is_release_id(rel))
		problem(f, "%s: '%s' is not a release id", ev, rel);
	else if (!r && names_kept_release(ev))
		problem(f, "%s: release '%s' is not in the ledger's releases",
			ev, rel);
	char k[80];
	if (!r)
		return;
	snprintf(k, sizeof(k), "ev_%s",
		 strcmp(ev, "rolled_back") ? ev : "failed");
	bump(r, k);
}

/* Keys are 8-byte big-endian sequence numbers, one after another. */
static void check_event_key(struct fsck *f, const void *key, size_t klen)
{
	const uint8_t *b = key;
	uint64_t seq = 0;
	if (klen != 8) {
		problem(f, "key of %zu bytes, not an 8-byte sequence number",
			klen);
		return;
	}
	for (int i = 0; i < 8; i++)
		seq = (seq << 8) | b[i];
	snprintf(f->where, sizeof(f->where), "events/#%llu",
		 (unsigned long long)seq);
	if (f->n[STORE_EVENTS] == 1)
		f->first_seq = seq;
	else if (seq != f->next_seq)
		problem(f, "follows #%llu: %llu event(s) missing",
			(unsigned long long)(f->next_seq - 1),
			(unsigned long long)(seq - f->next_seq));
	f->next_seq = seq + 1;
}

static bool leader_epoch_ok(const char *val, size_t vlen)
{
	uint64_t e = 0;
	if (vlen < 1 || vlen > 10)
		return false;
	for (size_t i = 0; i < vlen; i++) {
		if (val[i] < '0' || val[i] > '9')
			return false;
		e = e * 10 + (uint64_t)(val[i] - '0');
	}
	return e <= UINT32_MAX;
}

static int walk_cb(void *ud, enum store_db db, const void *key, size_t klen,
		   const char *val, size_t vlen)
{
	struct fsck *f = ud;
	char k[512];
	f->n[db]++;
	set_where(f, db, key, klen);
	if (db == STORE_META) {
		/* The canary key (ledger.c) and the highest leader epoch
		 * seen (leader.c). */
		uint8_t ck[GW_CANARY_KEY_LEN];
		if (klen == 12 && memcmp(key, "leader_epoch", 12) == 0) {
			if (!leader_epoch_ok(val, vlen))
				problem(f, "leader_epoch is not a decimal "
					   "number below 2^32");
		} else if (klen != strlen(GW_CANARY_KEY_NAME) ||
			   memcmp(key, GW_CANARY_KEY_NAME, klen) != 0)
			problem(f, "unknown meta record");
		else if (gw__canary_key_parse(val, vlen, ck) != 0)
			problem(f, "canary_key is not 64 lower-case hex digits "
				   "(the gateway makes a new one: canaries of "
				   "running campaigns would be drawn anew)");
		return 0;
	}
	if (db == STORE_EVENTS)
		check_event_key(f, key, klen);
	snprintf(k, sizeof(k), "%.*s", (int)klen, (const char *)key);
	/* A record is known by its key even when its value is damaged, so
	 * one broken record is one problem, not one per reference to it. */
	json_t *ent = NULL;
	if (db == STORE_RELEASES) {
		if (strlen(k) != klen || !is_release_id(k))
			problem(f, "key is not a release id (16 lower-case "
				   "hex digits)");
		else
			json_object_set_new(f->rels, k, ent = json_object());
	} else if (db == STORE_DEVICES) {
		if (strlen(k) != klen || !proto_id_valid(k))
			problem(f, "key is not a valid device id");
		else
			json_object_set_new(f->devs, k, json_true());
	}
	json_t *o = parse(f, val, vlen);
	if (!o)
		return 0;
	if (db == STORE_RELEASES) {
		json_t *tmp = ent ? NULL : (ent = json_object());
		uint64_t before = f->problems;
		check_release(f, k, o, ent);
		if (f->problems == before)
			check_release_read(f, val, vlen);
		json_decref(tmp);
	} else if (db == STORE_DEVICES)
		check_device(f, k, o);
	else
		check_event(f, o);
	json_decref(o);
	return 0;
}

/* After the walk: each release's counters against its events. */
static void check_counts(struct fsck *f)
{
	static const char *const pair[][2] = {{"started", "ev_offered"},
					      {"committed", "ev_committed"},
					      {"failed", "ev_failed"}};
	const char *id;
	json_t *r;
	json_object_foreach(f->rels, id, r)
	{
		snprintf(f->where, sizeof(f->where), "releases/%s", id);
#define N(k) json_integer_value(json_object_get(r, k))
		if (N("ev_release_verified") != 1)
			problem(f, "%lld release_verified events, expected 1",
				(long long)N("ev_release_verified"));
		for (size_t i = 0; i < 3; i++)
			if (json_object_get(r, pair[i][0]) &&
			    N(pair[i][0]) != N(pair[i][1]))
				problem(f,
					"campaign %s is %lld, the event log "
					"has %lld \"%s\" events",
					pair[i][0], (long long)N(pair[i][0]),
					(long long)N(pair[i][1]),
					pair[i][1] + 3);
		if (json_object_get(r, "started") &&
		    N("n_devices") > N("started"))
			problem(f,
				"%lld devices name it, its campaign started "
				"%lld",
				(long long)N("n_devices"),
				(long long)N("started"));
#undef N
	}
}

uint64_t gw__fsck_records(const struct gw__ledger_rec *recs, size_t n,
			  FILE *out)
{
	struct fsck_opts o = {.skip_packages = true};
	struct fsck f = {.o = &o, .out = out};
	f.rels = json_object();
	f.devs = json_object();
	for (size_t i = 0; i < n; i++)
		walk_cb(&f, recs[i].db, recs[i].key, recs[i].klen, recs[i].val,
			recs[i].vlen);
	check_counts(&f);
	json_decref(f.rels);
	json_decref(f.devs);
	return f.problems;
}

static int fsck_run(const struct fsck_opts *o)
{
	struct fsck f = {.o = o, .out = stdout};
	struct store *db;
	struct store_opts so = {.readonly = true};
	char err[512];
	if (o->publisher_key[0] || o->root_keys[0]) {
		if (trust_load(&f.trust, o->publisher_key, o->root_keys, 1,
			       o->keyset, false, 0, err, sizeof(err)) != 0) {
			fprintf(stderr, "ota-gateway fsck: %s\n", err);
			return 2;
		}
		f.have_key = true;
	}
	int orc = store_open(o->db, &so, &db, err, sizeof(err));
	if (orc == STORE_EEMPTY) { /* killed before its first commit */
		printf("ota-gateway fsck: %s: 0 releases, 0 devices, 0 events, "
		       "nothing committed yet: consistent, 0 problems\n",
		       o->db);
		return 0;
	}
	if (orc != 0) {
		fprintf(stderr, "ota-gateway fsck: %s\n", err);
		trust_free(&f.trust);
		return 2;
	}
	f.rels = json_object();
	f.devs = json_object();
	int rc = store_walk_snapshot(db, walk_cb, &f, err, sizeof(err));
	store_close(db);
	if (rc != 0) {
		snprintf(f.where, sizeof(f.where), "%s", o->db);
		problem(&f, "reading stopped: %s", err);
	} else {
		check_counts(&f);
	}
	if (f.problems > FSCK_SHOW_MAX)
		printf("... %llu more problems not shown\n",
		       (unsigned long long)(f.problems - FSCK_SHOW_MAX));
	printf("ota-gateway fsck: %s: %llu releases, %llu devices, %llu events, "
	       "%llu meta: %s%llu problem%s\n",
	       o->db, (unsigned long long)f.n[STORE_RELEASES],
	       (unsigned long long)f.n[STORE_DEVICES],
	       (unsigned long long)f.n[STORE_EVENTS],
	       (unsigned long long)f.n[STORE_META],
	       f.problems ? "" : "consistent, ", (unsigned long long)f.problems,
	       f.problems == 1 ? "" : "s");
	json_decref(f.rels);
	json_decref(f.devs);
	trust_free(&f.trust);
	return f.problems ? 1 : 0;
}

int gw__cmd_fsck(int argc, char **argv)
{
	struct fsck_opts o = {.db = "ota-gateway-db"};
	struct conf_cli cli;
	char err[512];
	if (conf_from_argv(argc, argv, fsck_keys, &o, &cli, err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "ota-gateway fsck: %s\n", err);
		return 2;
	}
	if (cli.help) {
		printf("usage: ota-gateway fsck [--db DIR] [--publisher-key "
		       "FILE] [--skip-packages]\n\nChecks every record of the "
		       "ledger and their references; exit 0 when consistent,\n"
		       "1 with one line per problem, 2 when it cannot be "
		       "read.\n\noptions:\n");
		conf_print_help(fsck_keys);
		printf(
		    "\nexample:\n  ota-gateway fsck --db "
		    "/var/lib/ota-gateway/db --publisher-key publisher.pub\n");
		return 0;
	}
	if (cli.nargs) {
		fprintf(stderr, "ota-gateway fsck: unexpected argument '%s'\n",
			cli.args[0]);
		return 2;
	}
	return fsck_run(&o);
}
