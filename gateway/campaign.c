/* Campaigns: which targeted devices may start now (concurrency limit,
 * canary stage), automatic pause on failures, and the operator's pause,
 * resume and abort on ota/ctl/<product>. */
#include <search.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

#define AUTO_PAUSE_MIN_DONE 3 /* finished devices before rates count */

const char *gw__campaign_state(const struct gw_release *r)
{
	if (r->aborted)
		return "aborted";
	if (r->finished_ms)
		return "finished";
	if (r->paused)
		return "paused";
	if (r->canary)
		return "canary";
	return "rolling";
}

struct count_ctx {
	struct gw_release *r;
	uint32_t targets;
};

static void count_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct count_ctx *c = ud;
	const struct gw_device *d = *(struct gw_device *const *)node;
	struct gw_device tmp = *d;
	tmp.online = true; /* offline devices are targets too */
	tmp.failed_release[0] = '\0';
	if (gw__release_targets(c->r, &tmp))
		c->targets++;
}

void gw__campaign_init(struct gw *gw, struct gw_release *r)
{
	if (r->target.canary_percent == 0)
		return;
	struct count_ctx c = {r, 0};
	twalk_r(gw->devices, count_walk, &c);
	r->canary = true;
	r->canary_quota = (c.targets * r->target.canary_percent + 99) / 100;
	if (r->canary_quota == 0)
		r->canary_quota = 1;
	log_info("release=%s canary stage: %u of %u targeted devices first, "
		 "%u%% must commit",
		 r->id, r->canary_quota, c.targets,
		 r->target.canary_success_percent
		     ? r->target.canary_success_percent
		     : 100);
}

bool gw__campaign_admit(const struct gw_release *r)
{
	if (r->aborted || r->paused)
		return false;
	if (r->target.concurrency && r->active >= r->target.concurrency)
		return false;
	if (r->canary && r->started >= r->canary_quota)
		return false;
	return true;
}

void gw__campaign_started(struct gw *gw, struct gw_release *r)
{
	r->finished_ms = 0; /* a device that appeared later, a retry */
	r->started++;
	r->active++;
	gw__release_save(gw, r);
}

static void campaign_pause(struct gw *gw, struct gw_release *r,
			   const char *event, const char *why)
{
	r->paused = true;
	snprintf(r->pause_reason, sizeof(r->pause_reason), "%s", why);
	log_warnx("release=%s PAUSED: %s", r->id, why);
	gw__event(gw, NULL, r->id, event, why);
}

void gw__campaign_finished(struct gw *gw, struct gw_release *r, bool ok)
{
	char why[160];
	if (r->active)
		r->active--;
	if (ok)
		r->committed++;
	else
		r->failed++;
	uint32_t done = r->committed + r->failed;
	if (r->canary && !r->paused && done >= r->canary_quota) {
		uint32_t need = r->target.canary_success_percent
				    ? r->target.canary_success_percent
				    : 100;
		uint32_t got = r->committed * 100 / r->canary_quota;
		if (got >= need) {
			r->canary = false;
			log_info("release=%s canary passed (%u%% committed): "
				 "rolling out to the rest", r->id, got);
			gw__event(gw, NULL, r->id, "canary_passed", NULL);
		} else {
			snprintf(why, sizeof(why),
				 "canary: %u%% committed, %u%% required", got,
				 need);
			campaign_pause(gw, r, "canary_failed", why);
		}
	}
	uint32_t limit = r->target.pause_failure_percent;
	if (limit && !r->paused && done >= AUTO_PAUSE_MIN_DONE &&
	    r->failed * 100 > limit * done) {
		snprintf(why, sizeof(why),
			 "failure rate %u%% (%u of %u) above %u%%",
			 r->failed * 100 / done, r->failed, done, limit);
		campaign_pause(gw, r, "auto_paused", why);
	}
	gw__release_save(gw, r);
	gw__offer_due_all(gw); /* a slot or a stage may have opened */
	gw__campaign_check_done(gw, r);
}

struct done_ctx {
	const struct gw_release *r;
	bool pending;
};

static void done_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct done_ctx *c = ud;
	const struct gw_device *d = *(struct gw_device *const *)node;
	struct gw_device tmp = *d;
	tmp.online = true; /* an offline target is still to do */
	if (!c->pending && (d->x ? !strcmp(d->release, c->r->id)
				 : gw__release_targets(c->r, &tmp)))
		c->pending = true;
}

/* Only when nothing is under way: the walk is over every device. */
void gw__campaign_check_done(struct gw *gw, struct gw_release *r)
{
	if (r->aborted || r->finished_ms || r->active || r->started == 0)
		return;
	struct done_ctx c = {r, false};
	twalk_r(gw->devices, done_walk, &c);
	if (c.pending)
		return;
	r->finished_ms = util_wall_ms();
	char why[96];
	snprintf(why, sizeof(why), "%u committed, %u failed", r->committed,
		 r->failed);
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
	if (!d->x || strcmp(d->release, c->r->id) != 0)
		return;
	snprintf(d->error, sizeof(d->error), "update %s", c->why);
	d->finished_ms = util_wall_ms();
	gw__event(c->gw, d->id, c->r->id, "aborted", NULL);
	gw__device_dirty(c->gw, d);
	gw__xfer_free(c->gw, d);
}

void gw__campaign_abort(struct gw *gw, struct gw_release *r, const char *why)
{
	r->aborted = true;
	snprintf(r->pause_reason, sizeof(r->pause_reason), "%s", why);
	struct abort_ctx ac = {gw, r, why};
	twalk_r(gw->devices, abort_walk, &ac);
	r->active = 0;
	log_warnx("release=%s ABORTED: %s", r->id, why);
	gw__event(gw, NULL, r->id, "release_aborted", why);
	gw__release_save(gw, r);
}

static struct gw_release *newest_of(struct gw *gw, const char *product)
{
	struct gw_release *best = NULL;
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		int c;
		if (strcmp(r->m.product, product) != 0)
			continue;
		if (!best || (proto_version_cmp(r->m.version, best->m.version,
						&c) == 0 && c > 0))
			best = r;
	}
	return best;
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
				   : newest_of(gw, product);
	if (!r || strcmp(r->m.product, product) != 0) {
		snprintf(v->reason, sizeof(v->reason),
			 "no such release: %s is not a release of '%s'",
			 release, product);
		return NULL;
	}
	snprintf(v->release, sizeof(v->release), "%s", r->id);
	snprintf(v->version, sizeof(v->version), "%s", r->m.version);
	if (r->aborted) {
		snprintf(v->reason, sizeof(v->reason),
			 "release was aborted (%s); publish a new release "
			 "instead",
			 r->pause_reason);
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
	if (r->paused) {
		v->verdict = PROTO_VERDICT_KNOWN;
		snprintf(v->reason, sizeof(v->reason), "already paused: %s",
			 r->pause_reason);
		return;
	}
	campaign_pause(gw, r, "paused", "paused by the operator");
	snprintf(v->reason, sizeof(v->reason),
		 "paused (%u devices keep their place)", r->active);
	gw__release_save(gw, r);
}

void gw__ctl_resume(struct gw *gw, const char *product, const char *release,
		    struct proto_verdict *v)
{
	gw__verdict_init(v, product, "resume");
	struct gw_release *r = ctl_release(gw, product, release, v);
	if (!r)
		return;
	if (!r->paused && !r->canary) {
		v->verdict = PROTO_VERDICT_KNOWN;
		snprintf(v->reason, sizeof(v->reason), "not paused: %s",
			 gw__campaign_state(r));
		return;
	}
	/* Resuming also overrides a failed canary. */
	r->paused = false;
	r->canary = false;
	r->pause_reason[0] = '\0';
	log_info("release=%s resumed by the operator", r->id);
	gw__event(gw, NULL, r->id, "resumed", NULL);
	gw__release_save(gw, r);
	gw__offer_due_all(gw);
	snprintf(v->reason, sizeof(v->reason), "resumed: %u devices under way",
		 r->active);
}

void gw__ctl_abort(struct gw *gw, const char *product, const char *release,
		   struct proto_verdict *v)
{
	gw__verdict_init(v, product, "abort");
	struct gw_release *r = ctl_release(gw, product, release, v);
	if (!r)
		return;
	uint32_t active = r->active;
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
	if (strcmp(d->failed_release, c->r->id) != 0)
		return;
	if (d->state == PROTO_ST_ROLLED_BACK) {
		c->rolled++;
		gw__appendf(c->rolled_list, sizeof(c->rolled_list), "%s%s",
			    c->rolled > 1 ? ", " : "", d->id);
		return;
	}
	d->failed_release[0] = '\0';
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
	snprintf(v->reason, sizeof(v->reason), "%u failed device%s offered "
		 "it again", c.retried, c.retried == 1 ? "" : "s");
	if (c.rolled)
		gw__appendf(v->reason, sizeof(v->reason),
			    "; %u rolled back (%s): a device refuses a release "
			    "it rolled back from, by design",
			    c.rolled, c.rolled_list);
	if (c.retried == 0)
		return;
	/* The counters count attempts: the failure stays counted. */
	r->finished_ms = 0;
	gw__release_save(gw, r);
	gw__offer_due_all(gw);
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
