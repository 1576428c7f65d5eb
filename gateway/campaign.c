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

void gw__control(struct gw *gw, const char *product, const void *payload,
		 size_t len)
{
	struct proto_control c;
	struct proto_err perr = {{0}};
	if (len == 0)
		return;
	if (!proto_id_valid(product) ||
	    proto_control_decode(payload, len, &c, &perr) != 0) {
		gw->stats.msgs_bad++;
		log_warnx("control for %s refused: %s", product,
			  perr.text[0] ? perr.text : "bad product");
		return;
	}
	struct gw_release *r = c.release[0] ? gw__release_find(gw, c.release)
					    : newest_of(gw, product);
	if (!r || strcmp(r->m.product, product) != 0) {
		log_warnx("control %s for %s: no such release %s",
			  proto_action_name(c.action), product,
			  c.release[0] ? c.release : "(none yet)");
		return;
	}
	if (r->aborted) {
		log_warnx("control %s: release=%s was aborted; publish a new "
			  "release instead", proto_action_name(c.action), r->id);
		return;
	}
	switch (c.action) {
	case PROTO_ACT_PAUSE:
		campaign_pause(gw, r, "paused", "paused by the operator");
		break;
	case PROTO_ACT_RESUME:
		/* Resuming also overrides a failed canary. */
		r->paused = false;
		r->canary = false;
		r->pause_reason[0] = '\0';
		log_info("release=%s resumed by the operator", r->id);
		gw__event(gw, NULL, r->id, "resumed", NULL);
		break;
	case PROTO_ACT_ABORT:
		gw__campaign_abort(gw, r, "aborted by the operator");
		break;
	}
	gw__release_save(gw, r);
	if (c.action == PROTO_ACT_RESUME)
		gw__offer_due_all(gw);
}
