/* Campaigns: which targeted devices may start now (concurrency limit,
 * canary stage), automatic pause on failures, and the operator's pause,
 * resume and abort on ota/ctl/<product>. */
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

#define AUTO_PAUSE_MIN_DONE 3 /* finished devices before rates count */

static const char *const camp_names[] = {"rolling", "canary", "paused",
					 "aborted"};

const char *gw__campaign_state(const struct gw_release *r)
{
	if (r->camp.st != GW_CAMP_ABORTED && r->camp.finished_ms)
		return "finished";
	return (unsigned)r->camp.st < 4 ? camp_names[r->camp.st] : "?";
}

void gw__campaign_set_state(struct gw_release *r, enum gw_camp_state st)
{
	if (r->camp.st == GW_CAMP_ABORTED)
		return; /* for good */
	if (r->camp.st != st)
		log_debug("release=%s campaign %s -> %s", r->id,
			  camp_names[r->camp.st], camp_names[st]);
	r->camp.st = st;
}

/* ------------------------------------------------------ canary draw */

#define CANARY_ANY UINT64_MAX /* cut when too few devices are known */

int gw__canary_key_load(struct gw *gw, char *err, size_t n)
{
	char *val = NULL, hex[2 * GW_CANARY_KEY_LEN + 1];
	size_t len = 0;
	int rc = store_get(gw->db, STORE_META, GW_CANARY_KEY_NAME, &val, &len);
	if (rc == 0 && gw__canary_key_parse(val, len, gw->canary_key) == 0) {
		free(val);
		return 0;
	}
	free(val);
	if (rc == 0)
		log_warnx("ledger: canary key damaged; making a new one "
			  "(canaries of running campaigns are drawn anew)");
	if (RAND_bytes(gw->canary_key, (int)sizeof(gw->canary_key)) != 1) {
		snprintf(err, n, "no random bytes for the canary key");
		return -1;
	}
	gw__canary_key_record(gw->canary_key, hex);
	if (store_put(gw->db, STORE_META, GW_CANARY_KEY_NAME, hex,
		      strlen(hex)) != 0 ||
	    store_commit(gw->db, err, n) != 0)
		return -1;
	log_info("ledger: made the gateway's canary key");
	return 0;
}

/* A device's place in a release's canary draw: the first 8 bytes of
 * HMAC-SHA256(canary key, release id || device id). Without the key
 * nobody can tell, or choose, who comes first. */
static uint64_t canary_rank(const struct gw *gw, const char *release,
			    const char *device)
{
	uint8_t mac[32];
	unsigned len = sizeof(mac);
	char msg[PROTO_RELEASE_HEX_LEN + PROTO_ID_MAX + 2];
	int m = snprintf(msg, sizeof(msg), "%s%s", release, device);
	uint64_t rank = 0;
	if (m < 0 ||
	    !HMAC(EVP_sha256(), gw->canary_key, (int)sizeof(gw->canary_key),
		  (const uint8_t *)msg, (size_t)m, mac, &len))
		return UINT64_MAX - 1; /* never drawn first */
	for (int i = 0; i < 8; i++)
		rank = rank << 8 | mac[i];
	return rank;
}

struct draw_ctx {
	struct gw *gw;
	struct gw_release *r;
	uint32_t targets, online;
	uint64_t *all, *on;		   /* ranks, NULL: count only */
	uint64_t above, next_all, next_on; /* the next ranks past `above` */
};

static void draw_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct draw_ctx *c = ud;
	const struct gw_device *d = *(struct gw_device *const *)node;
	/* Offline devices are targets too, and so are those that failed. */
	if (!gw__release_targets(c->gw, c->r, d, 0))
		return;
	uint64_t rank = 0;
	if (c->all || c->above != CANARY_ANY)
		rank = canary_rank(c->gw, c->r->id, d->id);
	if (c->all)
		c->all[c->targets] = rank;
	if (c->on && d->online)
		c->on[c->online] = rank;
	if (rank > c->above && rank < c->next_all)
		c->next_all = rank;
	if (rank > c->above && d->online && rank < c->next_on)
		c->next_on = rank;
	c->targets++;
	c->online += d->online;
}

static int rank_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The cut: the quota-th lowest rank among the online targets (among all
 * of them when fewer are online); CANARY_ANY when too few are known. */
static uint64_t canary_draw(struct gw *gw, struct gw_release *r,
			    uint32_t targets)
{
	struct draw_ctx c = {gw, r, 0, 0, NULL, NULL, CANARY_ANY, 0, 0};
	uint64_t cut = CANARY_ANY;
	c.all = calloc(targets + 1, sizeof(*c.all));
	c.on = calloc(targets + 1, sizeof(*c.on));
	if (c.all && c.on && targets >= r->camp.canary_quota) {
		twalk_r(gw->devices, draw_walk, &c);
		qsort(c.all, c.targets, sizeof(*c.all), rank_cmp);
		qsort(c.on, c.online, sizeof(*c.on), rank_cmp);
		cut = c.online >= r->camp.canary_quota
			  ? c.on[r->camp.canary_quota - 1]
			  : c.all[r->camp.canary_quota - 1];
	}
	free(c.all);
	free(c.on);
	return cut;
}

/* A canary failed before pause_failure_min: one more device is drawn
 * in its place, the next rank (online first). */
static void canary_redraw(struct gw *gw, struct gw_release *r)
{
	if (r->camp.canary_cut == CANARY_ANY)
		return;
	struct draw_ctx c = {
	    gw,		r,	   0, 0, NULL, NULL, r->camp.canary_cut,
	    CANARY_ANY, CANARY_ANY};
	twalk_r(gw->devices, draw_walk, &c);
	uint64_t next = c.next_on != CANARY_ANY ? c.next_on : c.next_all;
	if (next != CANARY_ANY)
		r->camp.canary_cut = next;
}

static uint32_t fail_min(const struct gw *gw, const struct gw_release *r)
{
	return r->camp.fail_min ? r->camp.fail_min : gw->cfg.pause_failure_min;
}

void gw__campaign_init(struct gw *gw, struct gw_release *r)
{
	r->camp.fail_min = r->target.pause_failure_min
			       ? r->target.pause_failure_min
			       : gw->cfg.pause_failure_min;
	if (r->target.canary_percent == 0)
		return;
	struct draw_ctx c = {gw, r, 0, 0, NULL, NULL, CANARY_ANY, 0, 0};
	twalk_r(gw->devices, draw_walk, &c); /* count */
	uint32_t targets = c.targets;
	gw__campaign_set_state(r, GW_CAMP_CANARY);
	r->camp.canary_quota = (targets * r->target.canary_percent + 99) / 100;
	if (r->camp.canary_quota == 0)
		r->camp.canary_quota = 1;
	r->camp.canary_cut = canary_draw(gw, r, targets);
	log_info("release=%s canary stage: %u of %u targeted devices first "
		 "(drawn by the canary key%s), %u%% must commit",
		 r->id, r->camp.canary_quota, targets,
		 r->camp.canary_cut == CANARY_ANY
		     ? "; too few known: the first "
		       "to come"
		     : "",
		 r->target.canary_success_percent
		     ? r->target.canary_success_percent
		     : 100);
}

bool gw__campaign_admit(struct gw *gw, const struct gw_release *r,
			const struct gw_device *d)
{
	if (gw__campaign_halted(r))
		return false;
	if (r->target.concurrency && r->camp.active >= r->target.concurrency)
		return false;
	if (r->camp.st != GW_CAMP_CANARY)
		return true;
	/* A failure below the minimum does not count: its replacement may
	 * start too. */
	uint32_t replaced = r->camp.failed < fail_min(gw, r) ? r->camp.failed
							     : 0;
	if (r->camp.started >= r->camp.canary_quota + replaced)
		return false;
	return r->camp.canary_cut == CANARY_ANY ||
	       canary_rank(gw, r->id, d->id) <= r->camp.canary_cut;
}

void gw__campaign_started(struct gw *gw, struct gw_release *r)
{
	r->camp.finished_ms = 0; /* a device that appeared later, a retry */
	r->camp.started++;
	r->camp.active++;
	gw__release_save(gw, r);
}

void gw__campaign_restored(struct gw_release *r) { r->camp.active++; }

static void campaign_pause(struct gw *gw, struct gw_release *r,
			   const char *event, const char *why)
{
	if (r->camp.st == GW_CAMP_ABORTED)
		return;
	gw__campaign_set_state(r, GW_CAMP_PAUSED);
	snprintf(r->camp.pause_reason, sizeof(r->camp.pause_reason), "%s", why);
	log_warnx("release=%s PAUSED: %s", r->id, why);
	gw__event(gw, NULL, r->id, event, why);
}

/* One more canary finished: pass, pause, draw a replacement, or wait.
 * Failures below pause_failure_min are replaced, not judged: one device
 * cannot pause a rollout by itself. */
static void canary_verdict(struct gw *gw, struct gw_release *r, bool ok)
{
	char why[160];
	uint32_t min = fail_min(gw, r),
		 done = r->camp.committed + r->camp.failed;
	uint32_t need = r->target.canary_success_percent
			    ? r->target.canary_success_percent
			    : 100;
	if (r->camp.failed < min) {
		if (!ok) {
			canary_redraw(gw, r);
			log_info("release=%s canary device failed (%u of %u "
				 "failures before a pause): one more drawn",
				 r->id, r->camp.failed, min);
		}
		if (r->camp.committed < r->camp.canary_quota)
			return;
		gw__campaign_set_state(r, GW_CAMP_ROLLING);
		log_info("release=%s canary passed (%u committed, %u failed, "
			 "fewer than %u): rolling out to the rest",
			 r->id, r->camp.committed, r->camp.failed, min);
		gw__event(gw, NULL, r->id, "canary_passed", NULL);
		return;
	}
	if (done < r->camp.canary_quota)
		return;
	uint32_t got = r->camp.committed * 100 / done;
	if (got >= need) {
		gw__campaign_set_state(r, GW_CAMP_ROLLING);
		log_info("release=%s canary passed (%u%% committed): "
			 "rolling out to the rest",
			 r->id, got);
		gw__event(gw, NULL, r->id, "canary_passed", NULL);
		return;
	}
	snprintf(why, sizeof(why),
		 "canary: %u%% committed, %u%% required (%u failed)", got, need,
		 r->camp.failed);
	campaign_pause(gw, r, "canary_failed", why);
}

void gw__campaign_finished(struct gw *gw, struct gw_release *r, bool ok)
{
	char why[160];
	if (r->camp.active)
		r->camp.active--;
	if (ok)
		r->camp.committed++;
	else
		r->camp.failed++;
	uint32_t done = r->camp.committed + r->camp.failed;
	if (r->camp.st == GW_CAMP_CANARY)
		canary_verdict(gw, r, ok);
	uint32_t limit = r->target.pause_failure_percent;
	if (limit && r->camp.st != GW_CAMP_PAUSED &&
	    done >= AUTO_PAUSE_MIN_DONE && r->camp.failed >= fail_min(gw, r) &&
	    r->camp.failed * 100 > limit * done) {
		snprintf(why, sizeof(why),
			 "failure rate %u%% (%u of %u) above %u%%",
			 r->camp.failed * 100 / done, r->camp.failed, done,
			 limit);
		campaign_pause(gw, r, "auto_paused", why);
	}
	gw__release_save(gw, r);
	gw__offers_due(gw); /* a slot or a stage may have opened */
	gw__campaign_check_done(gw, r);
}

struct done_ctx {
	const struct gw *gw;
	const struct gw_release *r;
	bool pending;
};

static void done_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct done_ctx *c = ud;
	const struct gw_device *d = *(struct gw_device *const *)node;
	/* An offline target is still to do. */
	if (!c->pending &&
	    (d->x ? !strcmp(d->release, c->r->id)
		  : gw__release_targets(c->gw, c->r, d, GW_TARGET_NOT_FAILED)))
		c->pending = true;
}

/* Only when nothing is under way: the walk is over every device. */
void gw__campaign_check_done(struct gw *gw, struct gw_release *r)
{
	if (r->camp.st == GW_CAMP_ABORTED || r->camp.finished_ms ||
	    r->camp.active || r->camp.started == 0)
		return;
	struct done_ctx c = {gw, r, false};
	twalk_r(gw->devices, done_walk, &c);
	if (c.pending)
		return;
	r->camp.finished_ms = gw__wall_ms(gw);
	char why[96];
	snprintf(why, sizeof(why), "%u committed, %u failed", r->camp.committed,
		 r->camp.failed);
	log_info("release=%s campaign finished: %s", r->id, why);
	gw__event(gw, NULL, r->id, "finished", why);
	gw__release_save(gw, r);
}

/* ------------------------------------------------------ operator */

struct abort_ctx {
	struct gw *gw;
	struct gw_release *r;
	const char *why;
};

static void abort_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct abort_ctx *c = ud;
	struct gw_device *d = *(struct gw_device *const *)node;
	if ((!d->x && !d->restore_wait) || strcmp(d->release, c->r->id) != 0)
		return;
	d->restore_wait = false; /* its restored payload is not needed */
	snprintf(d->error, sizeof(d->error), "update %s", c->why);
	d->finished_ms = gw__wall_ms(c->gw);
	gw__event(c->gw, d->id, c->r->id, "aborted", NULL);
	gw__device_dirty(c->gw, d);
	gw__xfer_free(c->gw, d);
}

void gw__campaign_abort(struct gw *gw, struct gw_release *r, const char *why)
{
	gw__campaign_set_state(r, GW_CAMP_ABORTED);
	snprintf(r->camp.pause_reason, sizeof(r->camp.pause_reason), "%s", why);
	struct abort_ctx ac = {gw, r, why};
	twalk_r(gw->devices, abort_walk, &ac);
	r->camp.active = 0;
	log_warnx("release=%s ABORTED: %s", r->id, why);
	gw__event(gw, NULL, r->id, "release_aborted", why);
	gw__release_save(gw, r);
}

/* The release a command names (or the product's newest), or NULL with
 * the refusal in v. Aborted releases are refused too. */
static struct gw_release *ctl_release(struct gw *gw, const char *product,
				      const char *release,
				      struct proto_verdict *v)
{
	v->verdict = PROTO_VERDICT_REFUSED;
	bool any = false;
	for (struct gw_release *r = gw->releases; r && !any; r = r->next)
		any = !strcmp(r->m.product, product);
	if (!any) {
		snprintf(v->reason, sizeof(v->reason),
			 "no such product: no release of '%s' is known",
			 product);
		return NULL;
	}
	struct gw_release *r = release && release[0]
				   ? gw__release_find(gw, release)
				   : gw__release_newest(gw, product, NULL);
	if (!r || strcmp(r->m.product, product) != 0) {
		snprintf(v->reason, sizeof(v->reason),
			 "no such release: %s is not a release of '%s'",
			 release, product);
		return NULL;
	}
	snprintf(v->release, sizeof(v->release), "%s", r->id);
	snprintf(v->version, sizeof(v->version), "%s", r->m.version);
	if (r->camp.st == GW_CAMP_ABORTED) {
		snprintf(v->reason, sizeof(v->reason),
			 "release was aborted (%s); publish a new release "
			 "instead",
			 r->camp.pause_reason);
		return NULL;
	}
	v->verdict = PROTO_VERDICT_ACCEPTED;
	return r;
}

void gw__ctl_pause(struct gw *gw, const char *product, const char *release,
		   struct proto_verdict *v)
{
	gw__verdict_init(v, product, "pause");
	struct gw_release *r = ctl_release(gw, product, release, v);
	if (!r)
		return;
	if (r->camp.st == GW_CAMP_PAUSED) {
		v->verdict = PROTO_VERDICT_KNOWN;
		snprintf(v->reason, sizeof(v->reason), "already paused: %s",
			 r->camp.pause_reason);
		return;
	}
	campaign_pause(gw, r, "paused", "paused by the operator");
	snprintf(v->reason, sizeof(v->reason),
		 "paused (%u devices keep their place)", r->camp.active);
	gw__release_save(gw, r);
}

void gw__ctl_resume(struct gw *gw, const char *product, const char *release,
		    struct proto_verdict *v)
{
	gw__verdict_init(v, product, "resume");
	struct gw_release *r = ctl_release(gw, product, release, v);
	if (!r)
		return;
	if (r->camp.st == GW_CAMP_ROLLING) {
		v->verdict = PROTO_VERDICT_KNOWN;
		snprintf(v->reason, sizeof(v->reason), "not paused: %s",
			 gw__campaign_state(r));
		return;
	}
	/* Resuming also overrides a failed canary. */
	gw__campaign_set_state(r, GW_CAMP_ROLLING);
	r->camp.pause_reason[0] = '\0';
	log_info("release=%s resumed by the operator", r->id);
	gw__event(gw, NULL, r->id, "resumed", NULL);
	gw__release_save(gw, r);
	gw__offers_due(gw);
	snprintf(v->reason, sizeof(v->reason), "resumed: %u devices under way",
		 r->camp.active);
}

void gw__ctl_abort(struct gw *gw, const char *product, const char *release,
		   struct proto_verdict *v)
{
	gw__verdict_init(v, product, "abort");
	struct gw_release *r = ctl_release(gw, product, release, v);
	if (!r)
		return;
	uint32_t active = r->camp.active;
	gw__campaign_abort(gw, r, "aborted by the operator");
	snprintf(v->reason, sizeof(v->reason),
		 "aborted: %u transfers ended; never offered again", active);
}

struct retry_ctx {
	struct gw *gw;
	struct gw_release *r;
	struct proto_verdict *v;
	uint32_t retried, rolled;
	char rolled_list[160];
};

static void retry_walk(const void *node, VISIT w, void *ud)
{
	if (w != postorder && w != leaf)
		return;
	struct retry_ctx *c = ud;
	struct gw_device *d = *(struct gw_device *const *)node;
	const struct gw_failed *f = gw__failed_find(d, c->r->id);
	if (!f)
		return;
	if (f->rolled_back) {
		c->rolled++;
		gw__appendf(c->rolled_list, sizeof(c->rolled_list), "%s%s",
			    c->rolled > 1 ? ", " : "", d->id);
		return;
	}
	gw__failed_forget(d, c->r->id);
	gw__device_dirty(c->gw, d);
	gw__event(c->gw, d->id, c->r->id, "retry", NULL);
	if (c->v->ndevices < PROTO_VERDICT_DEVICES_MAX)
		snprintf(c->v->devices[c->v->ndevices++],
			 sizeof(c->v->devices[0]), "%s", d->id);
	c->retried++;
}

void gw__ctl_retry(struct gw *gw, const char *product, const char *release,
		   struct proto_verdict *v)
{
	gw__verdict_init(v, product, "retry");
	struct gw_release *r = ctl_release(gw, product, release, v);
	if (!r)
		return;
	struct retry_ctx c = {.gw = gw, .r = r, .v = v};
	twalk_r(gw->devices, retry_walk, &c);
	v->targets = c.retried;
	if (c.retried == 0)
		v->verdict = PROTO_VERDICT_REFUSED;
	snprintf(v->reason, sizeof(v->reason),
		 "%u failed device%s offered "
		 "it again",
		 c.retried, c.retried == 1 ? "" : "s");
	if (c.rolled)
		gw__appendf(v->reason, sizeof(v->reason),
			    "; %u rolled back (%s): a device refuses a release "
			    "it rolled back from, by design",
			    c.rolled, c.rolled_list);
	if (c.retried == 0)
		return;
	/* The counters count attempts: the failure stays counted. */
	r->camp.finished_ms = 0;
	gw__release_save(gw, r);
	gw__offers_due(gw);
}

static void ctl_run(struct gw *gw, const char *product,
		    const struct proto_control *c, struct proto_verdict *v)
{
	switch (c->action) {
	case PROTO_ACT_PAUSE:
		gw__ctl_pause(gw, product, c->release, v);
		break;
	case PROTO_ACT_RESUME:
		gw__ctl_resume(gw, product, c->release, v);
		break;
	case PROTO_ACT_ABORT:
		gw__ctl_abort(gw, product, c->release, v);
		break;
	case PROTO_ACT_RETRY:
		gw__ctl_retry(gw, product, c->release, v);
		break;
	}
}

void gw__control(struct gw *gw, const char *product, const void *payload,
		 size_t len, const struct gw_req *rq_in)
{
	struct proto_control c;
	struct proto_err perr = {{0}};
	struct proto_verdict v;
	struct gw_req rq = {0};
	if (len == 0)
		return;
	if (rq_in)
		rq = *rq_in;
	snprintf(rq.product, sizeof(rq.product), "%s", product);
	if (!proto_id_valid(product) ||
	    proto_control_decode(payload, len, &c, &perr) != 0) {
		gw->stats.msgs_bad++;
		log_warnx("control for %s refused: %s", product,
			  perr.text[0] ? perr.text : "bad product");
		gw__verdict_init(&v, product, "control");
		v.verdict = PROTO_VERDICT_REFUSED;
		snprintf(v.reason, sizeof(v.reason), "malformed command: %s",
			 perr.text[0] ? perr.text : "bad product");
		if (proto_id_valid(product))
			gw__verdict_send(gw, &rq, &v);
		return;
	}
	snprintf(rq.reply, sizeof(rq.reply), "%s", c.reply);
	snprintf(rq.operator_name, sizeof(rq.operator_name), "%s",
		 c.operator_name);
	ctl_run(gw, product, &c, &v);
	gw__verdict_send(gw, &rq, &v);
}

void gw__release_save(struct gw *gw, struct gw_release *r)
{
	char *rec = gw__release_record(r, gw__campaign_state(r));
	if (!rec ||
	    store_put(gw->db, STORE_RELEASES, r->id, rec, strlen(rec)) != 0)
		log_warnx("ledger: cannot queue release %s", r->id);
	free(rec);
}
