/*
 * libFuzzer target for the gateway's ledger records as `ota-gateway fsck`,
 * `ota-gateway status` and the gateway itself read them back (after a
 * crash, a damaged disk or a hand edit). The input is a ledger, one record
 * a line:
 *
 *   <db> <key> <value>      db: r releases, d devices, e events, m meta
 *
 * the key up to the first space (an events key of 16 hex digits is its
 * 8-byte big-endian sequence number, any other key is taken as bytes), the
 * value the rest of the line. Records are given to the readers in database
 * order (r, d, e, m; the order of the lines within one), as LMDB walks them:
 *
 * - fsck's checks (gw__fsck_records in gateway/fsck.c, packages not read);
 * - the device, release and event records through the gateway's readers
 *   (gw__device_parse, gw__release_parse, gw__event_parse in
 *   gateway/ledger.c, which `ota-gateway run` uses on start);
 * - status's table, normal and wide (gw__status_print), on /dev/null.
 *
 * Invariants checked with abort(): a device record the gateway reads is in
 * range (ids valid or empty, acked <= fragments, frags_resent <= frags_sent,
 * timings -1 or >= 0) and survives the round trip of proto/PROTOCOL.md
 * section 1 through gw__device_record(); a release record the gateway
 * reads has a valid id, its manifest, a fragment layout that carries the
 * manifest's size, and survives the round trip through
 * gw__release_record(); an event it reads survives gw__event_record(); and
 * when fsck finds no problem, the gateway reads
 * every device record, with the same counters, product, version, state
 * and releases as the record holds, and every release record.
 *
 * fuzz-sources: gateway/fsck.c gateway/status.c gateway/ledger.c gateway/failed.c store/store.c common/conf.c common/util.c common/log.c common/trust.c proto/[a-z]*.c
 *
 * `make fuzz` builds and runs it (tests/fuzz/run.sh); test_fuzz_replay.c
 * includes this file with FUZZ_REPLAY defined and calls fuzz_ledger_one().
 */
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/gw.h"

#define FLEDGER_RECS_MAX 256

#define FLEDGER_TERMINATED(arr) (memchr((arr), '\0', sizeof(arr)) != NULL)

struct fledger {
	struct gw__ledger_rec rec[FLEDGER_RECS_MAX];
	uint8_t keys[FLEDGER_RECS_MAX][8]; /* decoded events keys */
	size_t n;
};

/* One line "<db> <key> <value>" into l (ignored when malformed). */
static void fledger_line(struct fledger *l, const char *s, size_t len)
{
	static const char dbs[] = "rdem";
	const char *db = len >= 2 && s[1] == ' ' ? memchr(dbs, s[0], 4) : NULL;
	const char *key = s + 2, *sp;
	struct gw__ledger_rec *r;
	if (!db || l->n >= FLEDGER_RECS_MAX ||
	    !(sp = memchr(key, ' ', len - 2)))
		return;
	r = &l->rec[l->n];
	r->db = (enum store_db)(db - dbs);
	r->key = key;
	r->klen = (size_t)(sp - key);
	r->val = sp + 1;
	r->vlen = len - (size_t)(sp + 1 - s);
	if (r->db == STORE_EVENTS && r->klen == 16) {
		char hex[17];
		memcpy(hex, key, 16);
		hex[16] = '\0';
		if (proto_hex_decode(hex, l->keys[l->n], 8) == 0) {
			r->key = l->keys[l->n];
			r->klen = 8;
		}
	}
	l->n++;
}

/* The records in database order, stable within one (a decoded key stays
 * in keys[] at its line's index, so moving the records moves no key). */
static void fledger_sort(struct fledger *l)
{
	for (size_t i = 1; i < l->n; i++) {
		struct gw__ledger_rec r = l->rec[i];
		size_t j = i;
		for (; j > 0 && l->rec[j - 1].db > r.db; j--)
			l->rec[j] = l->rec[j - 1];
		l->rec[j] = r;
	}
}

static bool fledger_release_ok_id(const char *s)
{
	return !s[0] ||
	       (strlen(s) == PROTO_RELEASE_HEX_LEN &&
		strspn(s, "0123456789abcdef") == PROTO_RELEASE_HEX_LEN);
}

/* Its failed releases: valid ids, each once. */
static bool fledger_failed_ok(const struct gw_device *d)
{
	if (d->nfailed > GW_FAILED_MAX)
		return false;
	for (int i = 0; i < d->nfailed; i++) {
		if (!FLEDGER_TERMINATED(d->failed[i].release) ||
		    !d->failed[i].release[0] ||
		    !fledger_release_ok_id(d->failed[i].release))
			return false;
		for (int j = 0; j < i; j++)
			if (!strcmp(d->failed[i].release, d->failed[j].release))
				return false;
	}
	return true;
}

static bool fledger_device_ok(const struct gw_device *d)
{
	const int64_t *t = &d->timings.download_ms;
	for (int i = 0; i < 5; i++)
		if (t[i] < -1)
			return false;
	return FLEDGER_TERMINATED(d->id) && proto_id_valid(d->id) &&
	       FLEDGER_TERMINATED(d->product) &&
	       (!d->product[0] || proto_id_valid(d->product)) &&
	       FLEDGER_TERMINATED(d->version) &&
	       (!d->version[0] || !proto_version_parse(d->version, NULL)) &&
	       FLEDGER_TERMINATED(d->group) &&
	       (!d->group[0] || proto_id_valid(d->group)) &&
	       FLEDGER_TERMINATED(d->release) &&
	       fledger_release_ok_id(d->release) && fledger_failed_ok(d) &&
	       FLEDGER_TERMINATED(d->error) && (int)d->state >= 0 &&
	       (int)d->state < PROTO_ST__COUNT && d->acked <= d->frags &&
	       d->frags <= PROTO_FRAGS_MAX &&
	       d->frags_resent <= d->frags_sent && !d->online &&
	       d->offered_ms >= 0 && d->transferred_ms >= 0 &&
	       d->finished_ms >= 0 && d->seen_ms >= 0;
}

static bool fledger_failed_equal(const struct gw_device *a,
				 const struct gw_device *b)
{
	if (a->nfailed != b->nfailed)
		return false;
	for (int i = 0; i < a->nfailed; i++)
		if (strcmp(a->failed[i].release, b->failed[i].release) != 0 ||
		    a->failed[i].rolled_back != b->failed[i].rolled_back)
			return false;
	return true;
}

static bool fledger_device_equal(const struct gw_device *a,
				 const struct gw_device *b)
{
	return !strcmp(a->id, b->id) && !strcmp(a->product, b->product) &&
	       !strcmp(a->version, b->version) && !strcmp(a->group, b->group) &&
	       a->state == b->state && a->online == b->online &&
	       !strcmp(a->release, b->release) && fledger_failed_equal(a, b) &&
	       a->acked == b->acked && a->frags == b->frags &&
	       a->frags_sent == b->frags_sent &&
	       a->frags_resent == b->frags_resent &&
	       !strcmp(a->error, b->error) &&
	       !memcmp(&a->timings, &b->timings, sizeof(a->timings)) &&
	       a->offered_ms == b->offered_ms &&
	       a->transferred_ms == b->transferred_ms &&
	       a->finished_ms == b->finished_ms && a->seen_ms == b->seen_ms;
}

/* Its failed releases as the record's "failed_releases" has them (absent:
 * an older record, its "failed_release" is compared by the caller). */
static bool fledger_failed_as_recorded(const struct gw_device *d, json_t *a)
{
	json_t *e;
	size_t i;
	if (!a)
		return true;
	if (json_array_size(a) != (size_t)d->nfailed)
		return false;
	json_array_foreach(a, i, e)
	{
		const char *r =
		    json_string_value(json_object_get(e, "release"));
		const char *st = json_string_value(json_object_get(e, "state"));
		if (!r || !st || strcmp(r, d->failed[i].release) != 0 ||
		    strcmp(st, d->failed[i].rolled_back ? "rolled_back"
							: "failed") != 0)
			return false;
	}
	return true;
}

/* What fsck let through reads back as the record says. */
static bool fledger_as_recorded(const struct gw_device *d, const char *val,
				size_t vlen)
{
	json_t *o = json_loadb(val, vlen, 0, NULL);
	enum proto_state st;
	bool ok;
#define FL_I(k) json_integer_value(json_object_get(o, k))
#define FL_S(k) json_string_value(json_object_get(o, k))
	ok = o && d->acked == FL_I("acked") && d->frags == FL_I("fragments") &&
	     (json_int_t)d->frags_sent == FL_I("frags_sent") &&
	     (json_int_t)d->frags_resent == FL_I("frags_resent") &&
	     d->offered_ms == FL_I("offered_ms") &&
	     d->transferred_ms == FL_I("transferred_ms") &&
	     d->finished_ms == FL_I("finished_ms") &&
	     d->seen_ms == FL_I("seen_ms") && !strcmp(d->id, FL_S("device")) &&
	     !strcmp(d->product, FL_S("product")) &&
	     !strcmp(d->version, FL_S("version")) &&
	     !strcmp(d->release, FL_S("release")) &&
	     !strcmp(gw__failed_latest(d), FL_S("failed_release")) &&
	     proto_state_parse(FL_S("state"), &st) == 0 && st == d->state &&
	     fledger_failed_as_recorded(d,
					json_object_get(o, "failed_releases"));
#undef FL_I
#undef FL_S
	json_decref(o);
	return ok;
}

/* Read back one device record as the gateway does. */
static void fledger_device(const struct gw__ledger_rec *r, bool consistent)
{
	struct gw_device d, d2;
	char *out, *out2;
	memset(&d, 0, sizeof(d));
	memset(&d2, 0, sizeof(d2));
	if (gw__device_parse(r->val, r->vlen, &d) != 0) {
		if (consistent)
			abort();
		return;
	}
	if (!fledger_device_ok(&d) ||
	    (consistent && !fledger_as_recorded(&d, r->val, r->vlen)))
		abort();
	if ((out = gw__device_record(&d)) == NULL ||
	    gw__device_parse(out, strlen(out), &d2) != 0 ||
	    !fledger_device_equal(&d, &d2) ||
	    (out2 = gw__device_record(&d2)) == NULL || strcmp(out, out2) != 0)
		abort();
	free(out);
	free(out2);
}

static bool fledger_release_ok(const struct gw_release *r)
{
	return FLEDGER_TERMINATED(r->id) &&
	       strlen(r->id) == PROTO_RELEASE_HEX_LEN &&
	       fledger_release_ok_id(r->id) && r->manifest &&
	       strlen(r->manifest) == r->manifest_len &&
	       FLEDGER_TERMINATED(r->path) &&
	       FLEDGER_TERMINATED(r->target.group) &&
	       FLEDGER_TERMINATED(r->camp.pause_reason) &&
	       r->frag_size >= PROTO_FRAG_SIZE_MIN &&
	       r->frag_size <= PROTO_FRAG_SIZE_MAX && r->window > 0 &&
	       r->nfrags ==
		   (r->m.size + r->frag_size - 1) / r->frag_size + r->tfrags;
}

static void fledger_release_free(struct gw_release *r)
{
	free(r->manifest);
	proto_announce_free(&r->target);
	free(r);
}

/* Read back one release record as the gateway does (gw__release_parse):
 * what it accepts is in range and survives its own round trip; what fsck
 * calls consistent it accepts. */
static void fledger_release(const struct gw__ledger_rec *r, bool consistent)
{
	char err[160];
	struct gw_release *a = calloc(1, sizeof(*a)),
			  *b = calloc(1, sizeof(*b));
	char *out = NULL, *out2 = NULL;
	if (!a || !b)
		abort();
	if (gw__release_parse(r->val, r->vlen, a, err, sizeof(err)) != 0) {
		if (consistent)
			abort();
		goto done;
	}
	if (!fledger_release_ok(a) ||
	    !(out = gw__release_record(a, "rolling")) ||
	    gw__release_parse(out, strlen(out), b, err, sizeof(err)) != 0 ||
	    !(out2 = gw__release_record(b, "rolling")) ||
	    strcmp(out, out2) != 0)
		abort();
done:
	free(out);
	free(out2);
	fledger_release_free(a);
	fledger_release_free(b);
}

/* Read back one event as the gateway's dashboard does (gw__event_parse):
 * what it reads survives the round trip through gw__event_record(). */
static void fledger_event(const struct gw__ledger_rec *r)
{
	struct gw__event_rec a, b;
	char *out;
	if (gw__event_parse(r->val, r->vlen, &a) != 0)
		return;
	if (!a.event[0] || a.ts < 0 || !FLEDGER_TERMINATED(a.detail) ||
	    !(out = gw__event_record(a.ts, a.event, a.device, a.release,
				     a.detail)) ||
	    gw__event_parse(out, strlen(out), &b) != 0 ||
	    memcmp(&a, &b, sizeof(a)) != 0)
		abort();
	free(out);
}

/* status's table, on /dev/null (stdout is restored for the test runner);
 * narrow or wide as the input's length is even or odd (one table a run,
 * not both: printing is most of a run's time). */
static void fledger_status(const struct fledger *l, bool wide)
{
	static int devnull = -1;
	json_t *arr[3] = {json_array(), json_array(), json_array()};
	int saved;
	for (size_t i = 0; i < l->n; i++) {
		json_t *o;
		if (l->rec[i].db == STORE_META ||
		    !(o = json_loadb(l->rec[i].val, l->rec[i].vlen, 0, NULL)))
			continue;
		json_array_append_new(arr[l->rec[i].db], o);
	}
	if (devnull < 0)
		devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	if (devnull >= 0 && saved >= 0 && dup2(devnull, STDOUT_FILENO) >= 0) {
		gw__status_print(arr[0], arr[1], arr[2], wide);
		fflush(stdout);
		dup2(saved, STDOUT_FILENO);
	}
	if (saved >= 0)
		close(saved);
	for (int i = 0; i < 3; i++)
		json_decref(arr[i]);
}

static int fuzz_ledger_one(const uint8_t *data, size_t size)
{
	static struct fledger l;
	const char *s = (const char *)data, *end = s + size, *nl;
	l.n = 0;
	for (; s < end; s = nl + 1) {
		if (!(nl = memchr(s, '\n', (size_t)(end - s))))
			nl = end;
		fledger_line(&l, s, (size_t)(nl - s));
	}
	fledger_sort(&l);
	bool consistent = gw__fsck_records(l.rec, l.n, NULL) == 0;
	for (size_t i = 0; i < l.n; i++)
		if (l.rec[i].db == STORE_DEVICES)
			fledger_device(&l.rec[i], consistent);
		else if (l.rec[i].db == STORE_RELEASES)
			fledger_release(&l.rec[i], consistent);
		else if (l.rec[i].db == STORE_EVENTS)
			fledger_event(&l.rec[i]);
	fledger_status(&l, size % 2 == 1);
	return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_ledger_one(data, size);
}
#endif
