/* The active/standby lease (docs/FAILOVER.md, PROTOCOL.md 5.7): which of
 * two gateways on one broker sends to devices. The broker carries it: a
 * retained record on ota/gw/leader that the active renews every
 * lease_s / 3 and a Last Will that says "gone" when it vanishes. Off
 * (gw->leader NULL, the gateway always sends, offers carry no epoch) while
 * lease_s is 0. */
#include <jansson.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/certcheck.h"
#include "common/log.h"
#include "gateway/gw.h"

#define LEADER_TOPIC "ota/gw/leader"
#define LEADER_EPOCH_KEY "leader_epoch"
#define LEADER_TICK_MS 200
#define RELEASE_TOPIC "ota/gw/release/" /* <product>/<release> */

enum leader_st {
	LD_LISTEN,  /* just started, may lead: is another gateway active? */
	LD_STANDBY, /* another one leads: wait for "gone" or silence */
	LD_CLAIM,   /* published our claim: does another claim beat it? */
	LD_ACTIVE,  /* ours: offers, fragments, polls, verdicts */
};

/* A release and a campaign state (a gw__campaign_state name). */
struct leader_pub {
	char id[PROTO_RELEASE_HEX_LEN + 1];
	const char *state;
};

struct gw_leader {
	enum leader_st st;
	char cn[PROTO_ID_MAX + 1]; /* our identity, the certificate's CN */
	uint32_t epoch;		   /* ours, while claiming or active */
	uint32_t seen;		   /* highest epoch seen (records, ledger) */
	char holder[PROTO_ID_MAX + 1]; /* who holds the highest record */
	uint32_t holder_epoch;
	bool holder_active;
	uint64_t heard_ms; /* the holder's record came then (or connect) */
	uint64_t since_ms; /* this state was entered then */
	uint64_t renew_ms; /* our last record */
	uint64_t lease_ms;
	bool fresh; /* promoted: offer to every device known on the connect */
	bool timer_on;
	uv_timer_t timer;
	/* The release records the active published, and in which state:
	 * one is published again when its campaign's state changes. */
	struct leader_pub *pubs;
	size_t npubs, pubs_cap;
	/* A standby: the state of a release learnt from a record, to take
	 * once its fetch and check have recorded it. */
	struct leader_pub pending[8];
	size_t npending;
};

static const char *const st_names[] = {"listening", "standby", "claiming",
				       "active"};

/* The record, encoded: {"gateway","epoch","state","ts"}. */
static char *record(struct gw *gw, const char *state, size_t *len)
{
	struct gw_leader *l = gw->leader;
	json_t *o = json_pack("{s:s,s:I,s:s,s:I}", "gateway", l->cn, "epoch",
			      (json_int_t)l->epoch, "state", state, "ts",
			      (json_int_t)gw__wall_ms(gw));
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	*len = s ? strlen(s) : 0;
	return s;
}

static void publish_record(struct gw *gw, const char *state)
{
	size_t len;
	char *s = record(gw, state, &len);
	if (!s || mq_publish(gw->mq, LEADER_TOPIC, s, len, 1, true) != 0)
		log_warnx("leader: record not published (broker connection?)");
	else
		gw->leader->renew_ms = gw__mono_ms(gw);
	free(s);
}

static void set_state(struct gw *gw, enum leader_st st, const char *why)
{
	struct gw_leader *l = gw->leader;
	if (l->st == st)
		return;
	log_info("leader: %s -> %s (epoch %u): %s", st_names[l->st],
		 st_names[st], l->epoch, why);
	l->st = st;
	l->since_ms = gw__mono_ms(gw);
	gw->sending = st == LD_ACTIVE;
	/* Only the holder's offers carry an epoch: one that lost a claim of
	 * the same epoch keeps none (it sends nothing anyway). */
	gw->epoch = st == LD_ACTIVE ? l->epoch : 0;
}

/* Kept in the ledger, so that a gateway whose broker lost the retained
 * record never claims an epoch its devices already saw. */
static void save_epoch(struct gw *gw, uint32_t epoch)
{
	char v[16];
	snprintf(v, sizeof(v), "%u", epoch);
	if (store_put(gw->db, STORE_META, LEADER_EPOCH_KEY, v, strlen(v)) != 0)
		log_warnx("leader: cannot queue epoch %u for the ledger",
			  epoch);
}

static void claim(struct gw *gw, const char *why)
{
	struct gw_leader *l = gw->leader;
	if (l->seen == UINT32_MAX) {
		log_warnx("leader: epoch exhausted; cannot claim");
		return;
	}
	l->epoch = ++l->seen;
	save_epoch(gw, l->epoch);
	set_state(gw, LD_CLAIM, why);
	publish_record(gw, "active");
}

static void drop_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct gw_device *d = *(struct gw_device *const *)node;
	if (d->x)
		gw__xfer_free(ud, d);
}

/* Replaced (a record of a higher epoch): stop sending at once. The
 * transfers' state stays in the ledger; the devices keep what they hold. */
static void demote(struct gw *gw, const char *holder, uint32_t epoch)
{
	char why[160];
	snprintf(why, sizeof(why), "%s holds epoch %u", holder, epoch);
	twalk_r(gw->devices, drop_walk, gw);
	mq_unsubscribe(gw->mq, "ota/dev/+/ack");
	for (struct gw_release *r = gw->releases; r; r = r->next)
		r->camp.active = 0; /* no transfer is under way here now */
	gw__event(gw, NULL, NULL, "leader_standby", why);
	set_state(gw, LD_STANDBY, why);
}

/* Ours now: the Will that says we are gone (a reconnect: a will is set
 * at connect), then, on that connect, the record, the hello that asks
 * every device where it is, and the offers (gw.c's on_connect). */
static void promote(struct gw *gw)
{
	struct gw_leader *l = gw->leader;
	char detail[64];
	size_t len;
	set_state(gw, LD_ACTIVE, "no other claim");
	l->fresh = true;
	snprintf(detail, sizeof(detail), "epoch %u", l->epoch);
	gw__event(gw, NULL, NULL, "leader_active", detail);
	char *s = record(gw, "gone", &len);
	if (!s || mq_renew_will(gw->mq, LEADER_TOPIC, s, len, 1, true) != 0) {
		log_warnx("leader: no last will set; a standby takes over "
			  "only after lease_s of silence");
		mq_subscribe(gw->mq, "ota/dev/+/ack", 0);
		gw__leader_connected(gw);
		gw__hello(gw);
	}
	free(s);
}

/* ---------------------------------------------- release records */

/* {"gateway","epoch","release","state","announce":{...}}: the release's
 * announcement as the active accepted it (without the request's reply,
 * operator or dry_run) and its campaign's state. */
static char *release_record(struct gw *gw, const struct gw_release *r,
			    const char *state)
{
	struct proto_announce a = r->target;
	char *ann = NULL, *s = NULL;
	size_t alen;
	a.reply[0] = a.operator_name[0] = '\0';
	a.dry_run = false;
	if (proto_announce_encode(&a, &ann, &alen) != 0)
		return NULL;
	json_t *aj = json_loadb(ann, alen, 0, NULL);
	json_t *o = aj ? json_pack("{s:s,s:I,s:s,s:s,s:o}", "gateway",
				   gw->leader->cn, "epoch",
				   (json_int_t)gw->leader->epoch, "release",
				   r->id, "state", state, "announce", aj)
		       : NULL;
	if (o)
		s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	free(ann);
	return s;
}

/* The slot of release id, the i-th of gw->releases: kept in the list's
 * order, so that each tick's walk finds each at once. */
static struct leader_pub *pub_slot(struct gw_leader *l, size_t i,
				   const char *id)
{
	if (i < l->npubs && !strcmp(l->pubs[i].id, id))
		return &l->pubs[i];
	size_t k = i < l->npubs ? i : l->npubs;
	while (k < l->npubs && strcmp(l->pubs[k].id, id) != 0)
		k++;
	if (k == l->npubs) {
		if (l->npubs == l->pubs_cap) {
			size_t n = l->pubs_cap ? l->pubs_cap * 2 : 16;
			struct leader_pub *p = realloc(l->pubs, n * sizeof(*p));
			if (!p)
				return NULL;
			l->pubs = p;
			l->pubs_cap = n;
		}
		snprintf(l->pubs[k].id, sizeof(l->pubs[k].id), "%s", id);
		l->pubs[k].state = NULL;
		l->npubs++;
	}
	if (i < l->npubs && k != i) {
		struct leader_pub t = l->pubs[i];
		l->pubs[i] = l->pubs[k];
		l->pubs[k] = t;
	}
	return &l->pubs[i < l->npubs ? i : k];
}

/* The active, each tick: a retained record per release whose state
 * changed since it was last published (all of them after each connect),
 * so that a standby learns a release it missed (started later, or away)
 * and its state. */
static void publish_releases(struct gw *gw)
{
	char topic[sizeof(RELEASE_TOPIC) + PROTO_ID_MAX + 24];
	size_t i = 0;
	for (struct gw_release *r = gw->releases; r; r = r->next, i++) {
		const char *st = gw__campaign_state(r);
		struct leader_pub *p = pub_slot(gw->leader, i, r->id);
		if (!p || p->state == st)
			continue;
		char *s = release_record(gw, r, st);
		snprintf(topic, sizeof(topic), RELEASE_TOPIC "%s/%s",
			 r->m.product, r->id);
		if (!s)
			log_warnx("leader: no record for release %s", r->id);
		if (!s || mq_publish(gw->mq, topic, s, strlen(s), 1, true) == 0)
			p->state = st; /* not again until it changes */
		free(s);
	}
}

/* A known release takes the state of the active's record. */
static void take_state(struct gw *gw, struct gw_release *r, const char *st)
{
	struct proto_verdict v;
	const char *mine = gw__campaign_state(r);
	if (!strcmp(st, mine) || !strcmp(mine, "aborted"))
		return;
	if (!strcmp(st, "paused"))
		gw__ctl_pause(gw, r->m.product, r->id, &v);
	else if (!strcmp(st, "aborted"))
		gw__ctl_abort(gw, r->m.product, r->id, &v);
	else if (!strcmp(st, "rolling") && !strcmp(mine, "paused"))
		gw__ctl_resume(gw, r->m.product, r->id, &v);
	else
		return;
	log_info("leader: release %s: %s -> %s, as the active's record says",
		 r->id, mine, st);
}

/* A standby applies a record: an unknown release is announced to itself
 * (fetched and verified here, as any announcement), a known one takes
 * the record's state (paused, aborted, rolling again). */
static void apply_release(struct gw *gw, const char *product, const json_t *o)
{
	const char *id = json_string_value(json_object_get(o, "release"));
	const char *st = json_string_value(json_object_get(o, "state"));
	json_t *ann = json_object_get(o, "announce");
	if (!id || !st || !json_is_object(ann)) {
		gw->stats.msgs_bad++;
		log_warnx("leader: malformed release record for %s", product);
		return;
	}
	struct gw_release *r = gw__release_find(gw, id);
	if (r) {
		take_state(gw, r, st);
		return;
	}
	if (!strcmp(st, "aborted") || !strcmp(st, "finished"))
		return;
	char *s = json_dumps(ann, JSON_COMPACT);
	log_info("leader: release %s of %s learnt from the active's record", id,
		 product);
	if (s)
		gw__announce(gw, product, s, strlen(s), NULL);
	free(s);
	struct gw_leader *l = gw->leader;
	if (!strcmp(st, "paused") && l->npending < 8) {
		/* Taken once the announcement is recorded (timer_cb). */
		snprintf(l->pending[l->npending].id, sizeof(l->pending[0].id),
			 "%s", id);
		l->pending[l->npending++].state = "paused";
	}
}

/* Pending states of releases now recorded. */
static void take_pending(struct gw *gw)
{
	struct gw_leader *l = gw->leader;
	for (size_t i = 0; i < l->npending;) {
		struct gw_release *r = gw__release_find(gw, l->pending[i].id);
		if (!r) {
			i++;
			continue;
		}
		take_state(gw, r, l->pending[i].state);
		l->pending[i] = l->pending[--l->npending];
	}
}

static void release_message(struct gw *gw, const char *topic,
			    const void *payload, size_t len)
{
	char product[PROTO_ID_MAX + 1];
	const char *s = topic + strlen(RELEASE_TOPIC), *slash = strchr(s, '/');
	if (len == 0 || gw->leader->st == LD_ACTIVE)
		return;
	if (!slash || (size_t)(slash - s) >= sizeof(product)) {
		gw->stats.msgs_bad++;
		return;
	}
	memcpy(product, s, (size_t)(slash - s));
	product[slash - s] = '\0';
	json_t *o = json_loadb(payload, len, 0, NULL);
	const char *who = json_string_value(json_object_get(o, "gateway"));
	if (!proto_id_valid(product) || !json_is_object(o) || !who) {
		gw->stats.msgs_bad++;
		log_warnx("leader: malformed release record on %s", topic);
	} else if (strcmp(who, gw->leader->cn) != 0) {
		apply_release(gw, product, o);
	}
	json_decref(o);
}

/* ---------------------------------------------- the lease */

/* Does a record (who, epoch) beat ours: a higher epoch, or the same one
 * from a CN that sorts first (two claims at once: one wins). */
static bool beats(const struct gw_leader *l, const char *who, uint32_t epoch)
{
	return epoch > l->epoch ||
	       (epoch == l->epoch && strcmp(who, l->cn) < 0);
}

static int parse(const void *payload, size_t len, char *who, size_t n,
		 uint32_t *epoch, bool *active)
{
	json_t *o = json_loadb(payload, len, 0, NULL);
	json_t *g = json_object_get(o, "gateway"),
	       *e = json_object_get(o, "epoch");
	json_t *s = json_object_get(o, "state");
	int rc = -1;
	if (json_is_string(g) && json_string_length(g) < n &&
	    json_is_integer(e) && json_integer_value(e) >= 0 &&
	    json_integer_value(e) <= UINT32_MAX && json_is_string(s) &&
	    (!strcmp(json_string_value(s), "active") ||
	     !strcmp(json_string_value(s), "gone"))) {
		snprintf(who, n, "%s", json_string_value(g));
		*epoch = (uint32_t)json_integer_value(e);
		*active = !strcmp(json_string_value(s), "active");
		rc = 0;
	}
	json_decref(o);
	return rc;
}

void gw__leader_message(struct gw *gw, const char *topic, const void *payload,
			size_t len)
{
	struct gw_leader *l = gw->leader;
	char who[PROTO_ID_MAX + 1];
	uint32_t epoch;
	bool active;
	if (!l)
		return;
	if (!strncmp(topic, RELEASE_TOPIC, strlen(RELEASE_TOPIC))) {
		release_message(gw, topic, payload, len);
		return;
	}
	if (strcmp(topic, LEADER_TOPIC) != 0 || len == 0)
		return;
	if (parse(payload, len, who, sizeof(who), &epoch, &active) != 0) {
		gw->stats.msgs_bad++;
		log_warnx("leader: malformed record on %s dropped",
			  LEADER_TOPIC);
		return;
	}
	if (epoch > l->seen) {
		l->seen = epoch;
		save_epoch(gw, epoch);
	}
	if (!strcmp(who, l->cn))
		return; /* our own, retained or echoed */
	if (epoch < l->holder_epoch)
		return; /* an older gateway's record (its Will, say) */
	if (epoch != l->holder_epoch || active != l->holder_active ||
	    strcmp(who, l->holder) != 0) /* not each renewal */
		log_info("leader: %s %s epoch %u", who,
			 active ? "active" : "gone", epoch);
	l->holder_active = active;
	snprintf(l->holder, sizeof(l->holder), "%s", who);
	l->holder_epoch = epoch;
	l->heard_ms = gw__mono_ms(gw);
	if (!active) {
		if (l->st == LD_STANDBY || l->st == LD_LISTEN)
			claim(gw, "the active gateway is gone");
		return;
	}
	if (l->st == LD_LISTEN)
		set_state(gw, LD_STANDBY, "another gateway is active");
	else if (l->st == LD_CLAIM && beats(l, who, epoch))
		set_state(gw, LD_STANDBY, "another claim wins");
	else if (l->st == LD_ACTIVE && beats(l, who, epoch))
		demote(gw, who, epoch);
}

static void timer_cb(uv_timer_t *t)
{
	struct gw *gw = t->data;
	struct gw_leader *l = gw->leader;
	uint64_t now = gw__mono_ms(gw);
	if (!mq_connected(gw->mq))
		return;
	if (l->npending && l->st != LD_ACTIVE)
		take_pending(gw);
	switch (l->st) {
	case LD_LISTEN:
		if (now - l->since_ms >= l->lease_ms / 3)
			claim(gw, "no active gateway heard");
		break;
	case LD_STANDBY:
		if (now - l->heard_ms >= l->lease_ms)
			claim(gw, "the active gateway's lease ran out");
		break;
	case LD_CLAIM:
		if (now - l->since_ms >= l->lease_ms / 3)
			promote(gw);
		break;
	case LD_ACTIVE:
		if (now - l->renew_ms >= l->lease_ms / 3)
			publish_record(gw, "active");
		publish_releases(gw);
		break;
	}
}

void gw__leader_connected(struct gw *gw)
{
	struct gw_leader *l = gw->leader;
	if (!l)
		return;
	mq_subscribe(gw->mq, LEADER_TOPIC, 1);
	mq_subscribe(gw->mq, RELEASE_TOPIC "+/+", 1);
	l->npubs = 0; /* every release record again on this connection */
	uint64_t now = gw__mono_ms(gw);
	/* Silence is counted from here: a record may take a while. */
	l->heard_ms = now;
	if (l->st == LD_LISTEN)
		l->since_ms = now;
	if (l->st != LD_ACTIVE)
		return;
	publish_record(gw, "active");
	publish_releases(gw);
	if (l->fresh) {
		/* The devices this standby already knows are offered now;
		 * the others when they answer the hello. Each answers an
		 * offer of the release it holds part of with its position. */
		l->fresh = false;
		gw__offers_due(gw);
	}
}

int gw__leader_check(const struct gw_config *c, char *err, size_t n)
{
	if (c->lease_s == 0 && c->standby) {
		snprintf(err, n,
			 "key 'standby' needs 'lease_s' (3 or more "
			 "seconds, the same on both gateways)");
		return -1;
	}
	if (c->lease_s == 1 || c->lease_s == 2) {
		snprintf(err, n,
			 "key 'lease_s': %u is not 0 (no standby) or 3..3600",
			 c->lease_s);
		return -1;
	}
	return 0;
}

int gw__leader_init(struct gw *gw, char *err, size_t n)
{
	const struct gw_config *c = &gw->cfg;
	if (gw__leader_check(c, err, n) != 0)
		return -1;
	if (c->lease_s == 0)
		return 0;
	struct gw_leader *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, n, "out of memory");
		return -1;
	}
	char cerr[256];
	if (!c->cert_file[0] || certcheck_cn(c->cert_file, l->cn, sizeof(l->cn),
					     cerr, sizeof(cerr)) != 0)
		snprintf(l->cn, sizeof(l->cn), "%s", c->client_id);
	char *val = NULL;
	size_t len = 0;
	if (store_get(gw->db, STORE_META, LEADER_EPOCH_KEY, &val, &len) == 0) {
		char *end;
		unsigned long long e = strtoull(val, &end, 10);
		if (end != val && *end == '\0' && e <= UINT32_MAX)
			l->seen = (uint32_t)e;
		else
			log_warnx("ledger: leader_epoch '%s' unreadable", val);
	}
	free(val);
	l->lease_ms = (uint64_t)c->lease_s * 1000;
	l->st = c->standby ? LD_STANDBY : LD_LISTEN;
	gw->leader = l;
	gw->sending = false;
	log_info("leader: %s as %s, lease %u s, highest epoch seen %u",
		 c->standby ? "standby" : "may lead", l->cn, c->lease_s,
		 l->seen);
	return 0;
}

void gw__leader_start(struct gw *gw)
{
	struct gw_leader *l = gw->leader;
	if (!l)
		return;
	uv_timer_init(gw->loop, &l->timer);
	l->timer.data = gw;
	l->timer_on = true;
	l->heard_ms = l->since_ms = gw__mono_ms(gw);
	uv_timer_start(&l->timer, timer_cb, LEADER_TICK_MS, LEADER_TICK_MS);
}

/* A clean stop says so at once: the standby need not wait for silence. */
void gw__leader_stop(struct gw *gw)
{
	struct gw_leader *l = gw->leader;
	if (l && l->st == LD_ACTIVE && mq_connected(gw->mq))
		publish_record(gw, "gone");
}

static void timer_closed(uv_handle_t *h) { (void)h; }

void gw__leader_close(struct gw *gw)
{
	struct gw_leader *l = gw->leader;
	if (l && l->timer_on) {
		l->timer_on = false;
		uv_close((uv_handle_t *)&l->timer, timer_closed);
	}
}

void gw__leader_free(struct gw *gw)
{
	if (gw->leader)
		free(gw->leader->pubs);
	free(gw->leader);
	gw->leader = NULL;
}
