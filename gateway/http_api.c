/* What the HTTP side answers: Prometheus metrics, the JSON views of
 * campaigns, fleet, devices and events, and the per-release history the
 * dashboard's chart is drawn from. Pure reads of the gateway's memory, on
 * its loop thread; nothing here writes the ledger. */
#include <jansson.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/http.h"

void http__textf(struct http_text *t, const char *fmt, ...)
{
	va_list ap;
	if (t->oom)
		return;
	for (;;) {
		size_t room = t->cap - t->len;
		va_start(ap, fmt);
		int n = vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->oom = true;
			return;
		}
		if ((size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap * 2 : 4096;
		while (cap < t->len + (size_t)n + 1)
			cap *= 2;
		char *p = cap <= HTTP_TEXT_MAX ? realloc(t->p, cap) : NULL;
		if (!p) {
			t->oom = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
}

/* ------------------------------------------------------ histograms */

/* Upper bounds: 0.5 ms .. 60 s, for ticks, commits, fetches alike. */
const uint64_t gw__hist_le_us[GW_HIST_N] = {
    500,    1000,   2500,    5000,    10000,   25000,	 50000,	   100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000};

void gw__hist_add(struct gw_hist *h, uint64_t us)
{
	size_t i = 0;
	while (i < GW_HIST_N && us > gw__hist_le_us[i])
		i++;
	h->bucket[i]++;
	h->count++;
	h->sum_us += us;
}

static void hist_text(struct http_text *t, const char *name, const char *help,
		      const struct gw_hist *h)
{
	uint64_t cum = 0;
	http__textf(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (size_t i = 0; i < GW_HIST_N; i++) {
		cum += h->bucket[i];
		http__textf(t, "%s_bucket{le=\"%g\"} %llu\n", name,
			    (double)gw__hist_le_us[i] / 1e6,
			    (unsigned long long)cum);
	}
	http__textf(t,
		    "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n"
		    "%s_count %llu\n",
		    name, (unsigned long long)h->count, name,
		    (double)h->sum_us / 1e6, name,
		    (unsigned long long)h->count);
}

/* ------------------------------------------------------ history */

enum { K_OFFERED, K_COMMITTED, K_FAILED, K_ABORTED };

struct series {
	char id[PROTO_RELEASE_HEX_LEN + 1];
	int64_t *ts;
	uint8_t *kind;
	size_t n, cap;
	struct series *next;
};

struct http_history {
	json_t *ring[HTTP_EVENTS_MAX]; /* the newest events, oldest first */
	size_t head, n;
	uint64_t seq; /* events seen so far */
	struct series *series;
};

struct http_history *http__history_new(void)
{
	return calloc(1, sizeof(struct http_history));
}

void http__history_free(struct http_history *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++)
		json_decref(h->ring[(h->head + i) % HTTP_EVENTS_MAX]);
	for (struct series *s = h->series, *nx; s; s = nx) {
		nx = s->next;
		free(s->ts);
		free(s->kind);
		free(s);
	}
	free(h);
}

static struct series *series_get(struct http_history *h, const char *id,
				 bool create)
{
	for (struct series *s = h->series; s; s = s->next)
		if (!strcmp(s->id, id))
			return s;
	if (!create || strlen(id) > PROTO_RELEASE_HEX_LEN)
		return NULL;
	struct series *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->next = h->series;
	h->series = s;
	return s;
}

static void series_add(struct http_history *h, const char *release, int64_t ts,
		       int kind)
{
	struct series *s = series_get(h, release, true);
	if (!s)
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		int64_t *t = realloc(s->ts, cap * sizeof(*t));
		if (t)
			s->ts = t;
		uint8_t *k = t ? realloc(s->kind, cap) : NULL;
		if (!k)
			return; /* out of memory: the chart misses a point */
		s->kind = k;
		s->cap = cap;
	}
	s->ts[s->n] = ts;
	s->kind[s->n++] = (uint8_t)kind;
}

void http__history_add(struct http_history *h, int64_t ts, const char *event,
		       const char *device, const char *release,
		       const char *detail)
{
	json_t *o = json_pack("{s:I,s:I,s:s,s:s,s:s,s:s}", "seq",
			      (json_int_t)++h->seq, "ts", (json_int_t)ts,
			      "event", event, "device", device ? device : "",
			      "release", release ? release : "", "detail",
			      detail ? detail : "");
	if (o) {
		if (h->n == HTTP_EVENTS_MAX) {
			json_decref(h->ring[h->head]);
			h->ring[h->head] = o;
			h->head = (h->head + 1) % HTTP_EVENTS_MAX;
		} else {
			h->ring[(h->head + h->n++) % HTTP_EVENTS_MAX] = o;
		}
	}
	if (!device || !device[0] || !release || !release[0])
		return;
	int kind = !strcmp(event, "offered")	   ? K_OFFERED
		   : !strcmp(event, "committed")   ? K_COMMITTED
		   : !strcmp(event, "failed")	   ? K_FAILED
		   : !strcmp(event, "rolled_back") ? K_FAILED
		   : !strcmp(event, "aborted")	   ? K_ABORTED
						   : -1;
	if (kind >= 0)
		series_add(h, release, ts, kind);
}

static int history_load_cb(void *ud, const void *key, size_t klen,
			   const char *val, size_t vlen)
{
	(void)key;
	(void)klen;
	struct gw__event_rec e;
	if (gw__event_parse(val, vlen, &e) == 0)
		http__history_add(ud, e.ts, e.event, e.device, e.release,
				  e.detail);
	return 0;
}

int http__history_load(struct http_history *h, struct store *db)
{
	return store_foreach(db, STORE_EVENTS, history_load_cb, h);
}

char *http__events_json(struct http_history *h, const char *release,
			uint32_t limit)
{
	json_t *arr = json_array();
	for (size_t i = h->n; i > 0 && json_array_size(arr) < limit; i--) {
		json_t *o = h->ring[(h->head + i - 1) % HTTP_EVENTS_MAX];
		const char *r =
		    json_string_value(json_object_get(o, "release"));
		if (release[0] && (!r || strcmp(r, release) != 0))
			continue;
		json_array_append(arr, o);
	}
	json_t *top =
	    json_pack("{s:I,s:o}", "seq", (json_int_t)h->seq, "events", arr);
	char *s = top ? json_dumps(top, JSON_COMPACT) : NULL;
	json_decref(top);
	return s;
}

char *http__series_json(struct gw *gw, struct http_history *h,
			const char *release, uint32_t points)
{
	struct series *s = series_get(h, release, false);
	const struct gw_release *r = gw__release_find(gw, release);
	int64_t t0 = s && s->n ? s->ts[0] : gw__wall_ms(gw);
	int64_t t1 = s && s->n ? s->ts[s->n - 1] : t0;
	if (r && r->camp.active && gw__wall_ms(gw) > t1)
		t1 = gw__wall_ms(gw);
	if (points < 2)
		points = 2;
	int64_t step = (t1 - t0) / (points - 1);
	if (step < 1)
		step = 1;
	json_t *arr = json_array();
	long long c[4] = {0, 0, 0, 0};
	size_t i = 0;
	for (int64_t t = t0;; t += step) {
		if (t > t1)
			t = t1;
		while (s && i < s->n && s->ts[i] <= t)
			c[s->kind[i++]]++;
		long long busy = c[K_OFFERED] - c[K_COMMITTED] - c[K_FAILED] -
				 c[K_ABORTED];
		json_array_append_new(arr, json_pack("[I,I,I,I]", (json_int_t)t,
						     c[K_COMMITTED],
						     c[K_FAILED] + c[K_ABORTED],
						     busy > 0 ? busy : 0));
		if (t >= t1)
			break;
	}
	json_t *top = json_pack("{s:s,s:b,s:o}", "release", release, "known",
				r != NULL, "points", arr);
	char *out = top ? json_dumps(top, JSON_COMPACT) : NULL;
	json_decref(top);
	return out;
}

/* ------------------------------------------------------ campaigns */

struct target_ctx {
	const struct gw *gw;
	const struct gw_release *r;
	uint32_t n;
};

static void target_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct target_ctx *c = ud;
	const struct gw_device *d = *(struct gw_device *const *)node;
	/* Still to update, or taken this release (under way, committed,
	 * failed). */
	if (gw__release_targets(c->gw, c->r, d, 0) ||
	    !strcmp(d->release, c->r->id))
		c->n++;
}

static int newest_first(const void *a, const void *b)
{
	const struct gw_release *x = *(const struct gw_release *const *)a;
	const struct gw_release *y = *(const struct gw_release *const *)b;
	return x->created_ms < y->created_ms   ? 1
	       : x->created_ms > y->created_ms ? -1
					       : strcmp(x->id, y->id);
}

static json_t *campaign_json(struct gw *gw, const struct gw_release *r)
{
	struct target_ctx tc = {gw, r, 0};
	twalk_r(gw->devices, target_walk, &tc);
	return json_pack(
	    "{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
	    "s:I}",
	    "release", r->id, "product", r->m.product, "version", r->m.version,
	    "state", gw__campaign_state(r), "pause_reason",
	    r->camp.pause_reason, "group", r->target.group, "targets",
	    (json_int_t)tc.n, "started", (json_int_t)r->camp.started, "active",
	    (json_int_t)r->camp.active, "committed",
	    (json_int_t)r->camp.committed, "failed", (json_int_t)r->camp.failed,
	    "size", (json_int_t)r->m.size, "created_ms",
	    (json_int_t)r->created_ms, "fetch_ms", (json_int_t)r->fetch_ms,
	    "verify_ms", (json_int_t)r->verify_ms, "canary_quota",
	    (json_int_t)(r->camp.st == GW_CAMP_CANARY ? r->camp.canary_quota
						      : 0));
}

static json_t *campaigns_arr(struct gw *gw)
{
	size_t n = 0;
	for (struct gw_release *r = gw->releases; r; r = r->next)
		n++;
	json_t *arr = json_array();
	struct gw_release **v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return arr;
	n = 0;
	for (struct gw_release *r = gw->releases; r; r = r->next)
		v[n++] = r;
	qsort(v, n, sizeof(*v), newest_first);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, campaign_json(gw, v[i]));
	free(v);
	return arr;
}

static char *dump(json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

char *http__campaigns_json(struct gw *gw)
{
	return dump(json_pack("{s:o}", "campaigns", campaigns_arr(gw)));
}

/* ------------------------------------------------------ fleet */

struct fleet_ctx {
	uint64_t state[PROTO_ST__COUNT];
	uint64_t online;
	json_t *versions; /* "product version" -> count */
};

static void fleet_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct fleet_ctx *c = ud;
	const struct gw_device *d = *(struct gw_device *const *)node;
	if ((unsigned)d->state < PROTO_ST__COUNT)
		c->state[d->state]++;
	if (d->online)
		c->online++;
	char k[PROTO_ID_MAX + PROTO_VERSION_MAX + 2];
	snprintf(k, sizeof(k), "%s %s", d->product[0] ? d->product : "?",
		 d->version[0] ? d->version : "?");
	json_t *n = json_object_get(c->versions, k);
	json_object_set_new(c->versions, k,
			    json_integer(n ? json_integer_value(n) + 1 : 1));
}

static json_t *fleet_obj(struct gw *gw)
{
	struct fleet_ctx c = {.versions = json_object()};
	twalk_r(gw->devices, fleet_walk, &c);
	json_t *st = json_object(), *ver = json_array();
	for (int i = 0; i < PROTO_ST__COUNT; i++)
		json_object_set_new(st, proto_state_name((enum proto_state)i),
				    json_integer((json_int_t)c.state[i]));
	const char *k;
	json_t *v;
	json_object_foreach(c.versions, k, v)
	{
		const char *sp = strchr(k, ' ');
		json_array_append_new(ver,
				      json_pack("{s:s%,s:s,s:O}", "product", k,
						(size_t)(sp - k), "version",
						sp + 1, "devices", v));
	}
	json_decref(c.versions);
	return json_pack("{s:I,s:I,s:o,s:o}", "devices",
			 (json_int_t)gw->ndevices, "online",
			 (json_int_t)c.online, "states", st, "versions", ver);
}

char *http__fleet_json(struct gw *gw) { return dump(fleet_obj(gw)); }

char *http__live_json(struct gw *gw, struct http_history *h)
{
	return dump(json_pack("{s:s,s:I,s:I,s:o,s:o}", "type", "live", "ts",
			      (json_int_t)gw__wall_ms(gw), "seq",
			      (json_int_t)h->seq, "fleet", fleet_obj(gw),
			      "campaigns", campaigns_arr(gw)));
}

/* ------------------------------------------------------ devices */

struct dev_ctx {
	const struct http_devq *q;
	uint64_t total;
	json_t *arr;
};

static json_t *timings_obj(const struct proto_timings *t)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I}", "download_ms",
			 (json_int_t)t->download_ms, "verify_ms",
			 (json_int_t)t->verify_ms, "install_ms",
			 (json_int_t)t->install_ms, "restart_ms",
			 (json_int_t)t->restart_ms, "total_ms",
			 (json_int_t)t->total_ms);
}

static bool dev_match(const struct http_devq *q, const struct gw_device *d)
{
	return (!q->state[0] ||
		!strcmp(q->state, proto_state_name(d->state))) &&
	       (!q->release[0] || !strcmp(q->release, d->release)) &&
	       (!q->group[0] || !strcmp(q->group, d->group)) &&
	       (!q->version[0] || !strcmp(q->version, d->version)) &&
	       (!q->name[0] || strstr(d->id, q->name));
}

static void dev_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct dev_ctx *c = ud;
	const struct gw_device *d = *(struct gw_device *const *)node;
	if (!dev_match(c->q, d))
		return;
	uint64_t i = c->total++;
	if (i < c->q->offset || i >= (uint64_t)c->q->offset + c->q->limit)
		return;
	/* How its last update travelled and its bytes on the wire (6.4), as
	 * in the ledger; "" while it has had none. */
	const char *enc = d->release[0] ? proto_encoding_name(d->encoding) : "";
	json_array_append_new(
	    c->arr,
	    json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:s,s:o,s:I,s:I,s:I,s:I,"
		      "s:s,s:o,s:I,s:I,s:I,s:I,s:s,s:I}",
		      "device", d->id, "product", d->product, "version",
		      d->version, "group", d->group, "state",
		      proto_state_name(d->state), "online", d->online,
		      "release", d->release, "failed_release",
		      gw__failed_latest(d), "failed_releases",
		      gw__failed_json(d), "acked", (json_int_t)d->acked,
		      "fragments", (json_int_t)d->frags, "frags_sent",
		      (json_int_t)d->frags_sent, "frags_resent",
		      (json_int_t)d->frags_resent, "error", d->error, "timings",
		      timings_obj(&d->timings), "offered_ms",
		      (json_int_t)d->offered_ms, "transferred_ms",
		      (json_int_t)d->transferred_ms, "finished_ms",
		      (json_int_t)d->finished_ms, "seen_ms",
		      (json_int_t)d->seen_ms, "encoding", enc, "wire_bytes",
		      (json_int_t)d->wire_bytes));
}

char *http__devices_json(struct gw *gw, const struct http_devq *q)
{
	struct dev_ctx c = {q, 0, json_array()};
	twalk_r(gw->devices, dev_walk, &c);
	return dump(json_pack("{s:I,s:I,s:I,s:o}", "total", (json_int_t)c.total,
			      "offset", (json_int_t)q->offset, "limit",
			      (json_int_t)q->limit, "devices", c.arr));
}

/* ------------------------------------------------------ metrics */

/* Label values here are ids and versions (proto_id_valid), but escape
 * them as the text format says all the same. */
static const char *lbl(const char *s, char *buf, size_t n)
{
	size_t o = 0;
	for (; *s && o + 3 < n; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			buf[o++] = '\\';
			buf[o++] = *s == '\n' ? 'n' : *s;
		} else {
			buf[o++] = *s;
		}
	}
	buf[o] = '\0';
	return buf;
}

#define COUNTER(name, help, v)                                                 \
	http__textf(t,                                                         \
		    "# HELP " name " " help "\n# TYPE " name " counter\n" name \
		    " %llu\n",                                                 \
		    (unsigned long long)(v))
#define GAUGE(name, help, fmt, v)                                              \
	http__textf(t,                                                         \
		    "# HELP " name " " help "\n# TYPE " name " gauge\n" name   \
		    " " fmt "\n",                                              \
		    v)

static void metrics_devices(struct gw *gw, struct http_text *t)
{
	struct fleet_ctx c = {.versions = json_object()};
	char a[160], b[160];
	twalk_r(gw->devices, fleet_walk, &c);
	http__textf(t, "# HELP ota_gateway_devices Devices the gateway knows, "
		       "by state.\n# TYPE ota_gateway_devices gauge\n");
	for (int i = 0; i < PROTO_ST__COUNT; i++)
		http__textf(t, "ota_gateway_devices{state=\"%s\"} %llu\n",
			    proto_state_name((enum proto_state)i),
			    (unsigned long long)c.state[i]);
	GAUGE("ota_gateway_devices_online", "Devices online now.", "%llu",
	      (unsigned long long)c.online);
	http__textf(t, "# HELP ota_gateway_devices_version Devices by "
		       "product and version.\n"
		       "# TYPE ota_gateway_devices_version gauge\n");
	const char *k;
	json_t *v;
	json_object_foreach(c.versions, k, v)
	{
		const char *sp = strchr(k, ' ');
		char prod[PROTO_ID_MAX + 1];
		snprintf(prod, sizeof(prod), "%.*s", (int)(sp - k), k);
		http__textf(t,
			    "ota_gateway_devices_version{product=\"%s\","
			    "version=\"%s\"} %lld\n",
			    lbl(prod, a, sizeof(a)), lbl(sp + 1, b, sizeof(b)),
			    (long long)json_integer_value(v));
	}
	json_decref(c.versions);
}

static void metrics_campaigns(struct gw *gw, struct http_text *t)
{
	const char *names[8] = {"canary", "rolling", "paused", "aborted",
				"finished"};
	uint64_t count[8] = {0};
	size_t nn = 5;
	char a[160], b[160];
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		const char *st = gw__campaign_state(r);
		size_t i = 0;
		while (i < nn && strcmp(names[i], st) != 0)
			i++;
		if (i == nn && nn < 8)
			names[nn++] = st;
		if (i < nn)
			count[i]++;
	}
	http__textf(t, "# HELP ota_gateway_campaigns Campaigns (releases) by "
		       "state.\n# TYPE ota_gateway_campaigns gauge\n");
	for (size_t i = 0; i < nn; i++)
		http__textf(t, "ota_gateway_campaigns{state=\"%s\"} %llu\n",
			    names[i], (unsigned long long)count[i]);
	http__textf(t, "# HELP ota_gateway_campaign_paused 1 while the "
		       "campaign is paused (by the operator, a failed canary "
		       "or the failure rate).\n"
		       "# TYPE ota_gateway_campaign_paused gauge\n");
	for (struct gw_release *r = gw->releases; r; r = r->next)
		http__textf(t,
			    "ota_gateway_campaign_paused{release=\"%s\","
			    "product=\"%s\",version=\"%s\"} %d\n",
			    r->id, lbl(r->m.product, a, sizeof(a)),
			    lbl(r->m.version, b, sizeof(b)),
			    r->camp.st == GW_CAMP_PAUSED);
	http__textf(t, "# HELP ota_gateway_campaign_devices Devices of a "
		       "campaign by outcome.\n"
		       "# TYPE ota_gateway_campaign_devices gauge\n");
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		const char *o[] = {"started", "active", "committed", "failed"};
		uint32_t v[] = {r->camp.started, r->camp.active,
				r->camp.committed, r->camp.failed};
		for (size_t i = 0; i < 4; i++)
			http__textf(t,
				    "ota_gateway_campaign_devices{release="
				    "\"%s\",product=\"%s\",version=\"%s\","
				    "outcome=\"%s\"} %u\n",
				    r->id, lbl(r->m.product, a, sizeof(a)),
				    lbl(r->m.version, b, sizeof(b)), o[i],
				    v[i]);
	}
}

/* Fetch and verify durations of the releases this gateway holds (they
 * are kept in the ledger, so the figures survive a restart). */
static void metrics_releases(struct gw *gw, struct http_text *t)
{
	struct gw_hist f = {{0}, 0, 0}, v = {{0}, 0, 0};
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		if (r->fetch_ms >= 0)
			gw__hist_add(&f, (uint64_t)r->fetch_ms * 1000);
		if (r->verify_ms >= 0)
			gw__hist_add(&v, (uint64_t)r->verify_ms * 1000);
	}
	hist_text(t, "ota_gateway_release_fetch_seconds",
		  "Announcement to package downloaded, per release held.", &f);
	hist_text(t, "ota_gateway_release_verify_seconds",
		  "Package downloaded to verified and stored, per release "
		  "held.",
		  &v);
}

char *http__metrics(struct gw *gw, unsigned live_clients, size_t *len)
{
	struct http_text tx = {0}, *t = &tx;
	const struct gw_stats *s = &gw->stats;
	metrics_devices(gw, t);
	metrics_campaigns(gw, t);
	COUNTER("ota_gateway_fragments_sent_total",
		"Fragments published (first sends and resends).",
		gw->fleet.st.frags_sent);
	COUNTER("ota_gateway_fragments_resent_total",
		"Fragments published again.", gw->fleet.st.frags_resent);
	COUNTER("ota_gateway_fragments_grouped_total",
		"Of the fragments sent: published once for a group.",
		gw->fleet.st.frags_grouped);
	COUNTER("ota_gateway_fragments_reneged_total",
		"Fragments acknowledged, then dropped by a block check.",
		gw->fleet.st.frags_reneged);
	COUNTER("ota_gateway_acks_total", "Acknowledgements received.",
		s->acks);
	COUNTER("ota_gateway_retransmit_timeouts_total",
		"Retransmission timeouts.", gw->fleet.st.rto_fired);
	COUNTER("ota_gateway_messages_bad_total",
		"Messages dropped as undecodable.", s->msgs_bad);
	COUNTER("ota_gateway_messages_stale_total",
		"Valid messages for no live session, dropped.", s->msgs_stale);
	COUNTER("ota_gateway_status_polls_total",
		"Retained statuses asked for again.", s->status_polls);
	COUNTER("ota_gateway_releases_refused_total", "Announcements refused.",
		s->releases_refused);
	GAUGE("ota_gateway_inflight_bytes",
	      "Fragment bytes sent and not yet acknowledged.", "%llu",
	      (unsigned long long)gw->fleet.inflight);
	GAUGE("ota_gateway_inflight_peak_bytes",
	      "Most fragment bytes in flight at once.", "%llu",
	      (unsigned long long)gw->fleet.st.inflight_peak);
	GAUGE("ota_gateway_loop_stall_max_seconds",
	      "Worst lateness of the event loop's 20 ms tick.", "%.3f",
	      (double)s->stall_max_ms / 1000.0);
	hist_text(t, "ota_gateway_loop_stall_seconds",
		  "Lateness of each tick of the event loop.", &s->stall_hist);
	hist_text(t, "ota_gateway_ledger_commit_seconds",
		  "Ledger commit: queued to the thread pool until done.",
		  &s->commit_hist);
	GAUGE("ota_gateway_ledger_commit_failures",
	      "Ledger commits failed in a row now.", "%u", gw->commit_fails);
	metrics_releases(gw, t);
	GAUGE("ota_gateway_dashboards_open",
	      "Dashboards receiving live updates (WebSocket clients).", "%u",
	      live_clients);
	GAUGE("ota_gateway_mqtt_connected", "1 while connected to the broker.",
	      "%d", mq_connected(gw->mq) ? 1 : 0);
	if (t->oom) {
		free(t->p);
		return NULL;
	}
	*len = t->len;
	return t->p;
}
