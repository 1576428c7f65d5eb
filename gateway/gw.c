/* The running gateway: its lifecycle (gw_init, gw_start, gw_stop,
 * gw_close), the device table loaded (devices.c), the ledger's commits,
 * the offers and MQTT routing.
 * The command line around it is run.c. */
#include <jansson.h>
#include <mosquitto.h>
#include <search.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/certcheck.h"
#include "common/conf.h"
#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

#define TICK_MS 20

/* ------------------------------------------------------ device table */

static int device_load_cb(void *ud, const void *key, size_t klen,
			  const char *val, size_t vlen)
{
	(void)key;
	(void)klen;
	struct gw *gw = ud;
	struct gw_device tmp = {0};
	if (gw__device_parse(val, vlen, &tmp) != 0) {
		log_warnx("ledger: skipping unreadable device record");
		return 0;
	}
	struct gw_device *d = gw__device_get(gw, tmp.id);
	if (!d)
		return -1;
	tmp.x = d->x;
	tmp.dirty = d->dirty;
	tmp.poll_ms = d->poll_ms;
	*d = tmp;
	return 0;
}

/* The commit runs in the thread pool: an fsync never stalls the loop, and
 * whatever the loop queues meanwhile goes into the next commit. */
static void commit_work(uv_work_t *req)
{
	struct gw *gw = req->data;
	gw->commit_rc = store_commit_batch(gw->db, gw->committing,
					   gw->commit_err,
					   sizeof(gw->commit_err));
}

/* A failed commit (a full disk, say) is kept and retried after a delay
 * that doubles from 100 ms to 5 s, and logged at the 1st, 2nd, 4th, 8th...
 * failure in a row: retrying at once spun the loop and wrote thousands of
 * lines a second. */
static void commit_done(uv_work_t *req, int status)
{
	struct gw *gw = req->data;
	if (status != 0 || gw->commit_rc != 0) {
		unsigned n = ++gw->commit_fails;
		uint64_t delay = n >= 7 ? 5000 : 100u << (n - 1);
		gw->commit_retry_ms = gw__mono_ms(gw) + delay;
		if ((n & (n - 1)) == 0)
			log_warnx("ledger: %s (failure %u in a row; retrying "
				  "in %llu ms, at most every 5 s)",
				  status ? "commit cancelled" : gw->commit_err,
				  n, (unsigned long long)delay);
		store_return_batch(gw->db, gw->committing);
	} else {
		if (gw->commit_fails)
			log_info("ledger: written again after %u failed "
				 "commits",
				 gw->commit_fails);
		gw->commit_fails = 0;
		gw->commit_retry_ms = 0;
		store_batch_free(gw->committing);
		gw__hist_add(&gw->stats.commit_hist,
			     uv_hrtime() / 1000 - gw->commit_start_us);
	}
	gw->committing = NULL;
}

static void queue_dirty(struct gw *gw)
{
	for (size_t i = 0; i < gw->ndirty; i++) {
		struct gw_device *d = gw->dirty[i];
		char *rec = gw__device_record(d);
		if (!rec || store_put(gw->db, STORE_DEVICES, d->id, rec,
				      strlen(rec)) != 0)
			log_warnx("ledger: cannot queue record of %s", d->id);
		free(rec);
		d->dirty = false;
	}
	gw->ndirty = 0;
}

/* Once per loop iteration: everything this tick changed, one commit. */
static void flush_cb(uv_check_t *h)
{
	struct gw *gw = h->data;
	/* Waiting to retry a failed commit: changed devices stay marked
	 * dirty, so each is queued once, with the retry, not every tick. */
	if (gw->commit_retry_ms && gw__mono_ms(gw) < gw->commit_retry_ms)
		return;
	queue_dirty(gw);
	if (gw->committing || store_pending(gw->db) == 0)
		return;
	gw->committing = store_take_batch(gw->db);
	if (!gw->committing)
		return;
	gw->commit.data = gw;
	gw->commit_start_us = uv_hrtime() / 1000;
	if (uv_queue_work(gw->loop, &gw->commit, commit_work, commit_done)) {
		store_return_batch(gw->db, gw->committing);
		gw->committing = NULL;
	}
}

/* At exit: what is still queued, committed here and now. */
static void flush_final(struct gw *gw)
{
	char err[256];
	queue_dirty(gw);
	if (store_commit(gw->db, err, sizeof(err)) != 0)
		log_warnx("ledger: final commit: %s", err);
}

/* ------------------------------------------------------ messages */

/* "ota/dev/<id>/<leaf>" -> id (in buf) and leaf; false if not that. */
static bool parse_dev_topic(const char *topic, char *id, size_t idlen,
			    const char **leaf)
{
	if (strncmp(topic, "ota/dev/", 8) != 0)
		return false;
	const char *s = topic + 8, *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= idlen)
		return false;
	memcpy(id, s, (size_t)(slash - s));
	id[slash - s] = '\0';
	*leaf = slash + 1;
	return proto_id_valid(id);
}

/* May d take an offer now, and of which release: online, no transfer
 * here, in a state that takes one, the newest release that targets it
 * (gw__release_newest), encrypted only to a device whose certificate the
 * gateway has, and admitted by that release's campaign (pause,
 * concurrency, canary). The one place that decides; NULL: none. */
static struct gw_release *offer_due(struct gw *gw, struct gw_device *d)
{
	if (!d->online || d->x || d->restore_wait || !gw__leader_sending(gw))
		return NULL;
	/* A device still "downloading" with no transfer here holds a partial
	 * download of an aborted or forgotten release: a newer offer
	 * replaces it. */
	if (d->state != PROTO_ST_IDLE && d->state != PROTO_ST_COMMITTED &&
	    d->state != PROTO_ST_FAILED && d->state != PROTO_ST_ROLLED_BACK &&
	    d->state != PROTO_ST_DOWNLOADING)
		return NULL;
	struct gw_release *r = gw__release_newest(gw, d->product, d);
	if (!r || (r->encrypt && !gw__enc_may_offer(gw, d, r)) ||
	    !gw__campaign_admit(gw, r, d))
		return NULL;
	return r;
}

static void gw_offer_if_due(struct gw *gw, struct gw_device *d)
{
	struct gw_release *r = offer_due(gw, d);
	if (!r)
		return;
	/* A delta from the image it runs, the compressed image or the
	 * image; NULL: its payload is being made, it waits (delta.c). */
	struct gw_release *v = gw__variant_pick(gw, r, d);
	if (!v)
		return;
	if (!gw__pace_offer(gw)) {
		v->offers_held = true; /* its group waits for it (pace.c) */
		return;
	}
	gw__campaign_started(gw, r);
	d->wire_bytes = 0;
	if (gw__xfer_start(gw, d, v) != 0)
		return;
	gw__device_dirty(gw, d);
	gw__event(gw, d->id, r->id, "offered", r->m.version);
}

static void offer_walk(const void *node, VISIT v, void *ud)
{
	if (v == postorder || v == leaf)
		gw_offer_if_due(ud, *(struct gw_device *const *)node);
}

void gw__offer_due_all(struct gw *gw) { twalk_r(gw->devices, offer_walk, gw); }

/* A transfer that was under way when the gateway stopped goes on with
 * the payload it was sending (a delta stays the same delta, so the device
 * keeps what it holds); one whose payload is still being read back or
 * made waits (restore_wait) and is not offered anything else meanwhile.
 * full: give up waiting, the full image. */
static void restore_one(struct gw *gw, struct gw_device *d, bool full)
{
	struct gw_release *r = gw__release_find(gw, d->release);
	d->restore_wait = d->restore_wait && r; /* a release since retired */
	if (!r)
		return;
	struct gw_release *v = full ? r : gw__variant_restore(gw, r, d);
	bool waited = d->restore_wait;
	d->restore_wait = v == NULL;
	if (!waited)
		gw__campaign_restored(r);
	if (!v || gw__xfer_restore(d, v) != 0)
		return;
	d->frags = v->nfrags;
	/* What it goes on with (the full image when the payload could not
	 * be had): the ledger says so, and a later restart restores that. */
	if (d->encoding != v->encoding ||
	    memcmp(d->xbase, v->base, sizeof(d->xbase))) {
		d->encoding = v->encoding;
		memcpy(d->xbase, v->base, sizeof(d->xbase));
		gw__device_dirty(gw, d);
	}
	/* Heard from while it waited. Not when its status ended the wait
	 * (full): on_status decides then, as for any transfer. */
	if (waited && !full && d->online)
		gw__xfer_offer(gw, d);
}

static void restore_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct gw_device *d = *(struct gw_device *const *)node;
	if (d->release[0] && d->finished_ms == 0 && !d->x && !d->restore_wait)
		restore_one(ud, d, false);
}

static void restore_waiting_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct gw_device *d = *(struct gw_device *const *)node;
	if (d->restore_wait)
		restore_one(ud, d, false);
}

/* gw->offer_due_all, what a module below gw.c calls when something a
 * device may wait for is ready (a variant made, a campaign resumed, the
 * lease won): restored transfers waiting for their payload go on, then
 * every idle device due an offer gets it. */
static void offers_due(struct gw *gw)
{
	twalk_r(gw->devices, restore_waiting_walk, gw);
	gw__offer_due_all(gw);
}

/* Input a device should never send is dropped and counted; the line that
 * says so is rate limited to one a second (PROTOCOL.md section 10), so a
 * device cannot flood the gateway's log with it. */
__attribute__((format(printf, 2, 3))) static void log_dropped(struct gw *gw,
							      const char *fmt,
							      ...)
{
	char msg[512];
	va_list ap;
	uint64_t now = gw__mono_ms(gw);
	if (gw->stats.drop_log_ms && now - gw->stats.drop_log_ms < 1000) {
		gw->stats.drop_unlogged++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warnx("%s (bad_msgs=%llu stale_msgs=%llu; %llu more dropped "
		  "without a line since the last one)",
		  msg, (unsigned long long)gw->stats.msgs_bad,
		  (unsigned long long)gw->stats.msgs_stale,
		  (unsigned long long)gw->stats.drop_unlogged);
	gw->stats.drop_log_ms = now;
	gw->stats.drop_unlogged = 0;
}

/* The device's last status of its transfer: committed, failed or rolled
 * back (committed on another version than the release's is rolled
 * back). The transfer ends, the campaign counts it. */
static void status_finished(struct gw *gw, struct gw_device *d,
			    struct proto_status *st)
{
	struct gw_release *rel = gw__release_find(gw, d->release);
	d->timings = st->timings;
	d->finished_ms = gw__wall_ms(gw);
	snprintf(d->error, sizeof(d->error), "%s", st->error);
	if (st->state == PROTO_ST_COMMITTED && rel &&
	    strcmp(st->version, rel->m.version) != 0) {
		/* Up again, but not on the new version. */
		st->state = d->state = PROTO_ST_ROLLED_BACK;
		snprintf(d->error, sizeof(d->error),
			 "came up on version %s, not %s", st->version,
			 rel->m.version);
		snprintf(st->error, sizeof(st->error), "%s", d->error);
		log_warnx("device=%s release=%s rolled back: %s", d->id,
			  rel->id, d->error);
	}
	if (st->state != PROTO_ST_COMMITTED)
		gw__release_failed(gw, d, st->release,
				   st->state == PROTO_ST_ROLLED_BACK);
	gw__event(gw, d->id, st->release, proto_state_name(st->state),
		  st->error[0] ? st->error : st->version);
	gw__xfer_free(gw, d);
	if (rel)
		gw__campaign_finished(gw, rel, st->state == PROTO_ST_COMMITTED);
}

/* d failed an encoded payload (a delta that does not rebuild the signed
 * image, a corrupt one): the same campaign slot goes on with the full
 * image (full: the release's; enc: the payload d failed), and this
 * release is never sent to d encoded again (6.4). */
static void encoded_failed(struct gw *gw, struct gw_device *d,
			   struct gw_release *full, enum proto_encoding enc,
			   const char *error)
{
	log_warnx("device=%s release=%s failed its %s payload (%s): offering "
		  "the full image",
		  d->id, full->id, proto_encoding_name(enc), error);
	gw__event(gw, d->id, full->id, "encoded_failed", error);
	snprintf(d->nodelta_release, sizeof(d->nodelta_release), "%s",
		 full->id);
	gw__xfer_free(gw, d);
	if (gw__xfer_start(gw, d, full) == 0)
		gw__device_dirty(gw, d);
}

static void on_status(struct gw *gw, const char *id, const void *payload,
		      size_t len)
{
	struct proto_status st;
	struct proto_err perr = {{0}};
	if (len == 0)
		return; /* a cleared retained status */
	if (proto_status_decode(payload, len, &st, &perr) != 0 ||
	    strcmp(st.device, id) != 0) {
		gw->stats.msgs_bad++;
		log_dropped(gw, "device=%s bad status dropped: %s", id,
			    perr.text[0] ? perr.text : "device id mismatch");
		return;
	}
	struct gw_device *d = gw__device_get(gw, id);
	if (!d)
		return;
	/* During a transfer, a status naming a release this gateway never
	 * had belongs to no session: it must not end, restart or re-offer
	 * the transfer, nor overwrite the record. (Without a transfer it is
	 * still how a gateway with a new ledger learns a device's version.) */
	if (d->x && st.release[0] && !gw__release_find(gw, st.release)) {
		gw->stats.msgs_stale++;
		log_dropped(gw,
			    "device=%s status for unknown release %s dropped",
			    id, st.release);
		return;
	}
	bool was_online = d->online;
	enum proto_state prev = d->state;
	d->online = st.state != PROTO_ST_OFFLINE;
	d->seen_ms = gw__wall_ms(gw);
	if (d->online) {
		snprintf(d->product, sizeof(d->product), "%s", st.product);
		snprintf(d->version, sizeof(d->version), "%s", st.version);
		snprintf(d->group, sizeof(d->group), "%s", st.group);
		d->has_image = st.has_image;
		memcpy(d->image, st.image, sizeof(d->image));
	}
	d->state = st.state;
	if (st.state != prev || d->online != was_online)
		log_info("device=%s state=%s version=%s%s%s", id,
			 proto_state_name(st.state), st.version,
			 st.error[0] ? " error=" : "", st.error);
	gw__device_dirty(gw, d);

	/* Waiting for its restored payload, it no longer downloads it (it
	 * ended or dropped the download): the transfer's end or a new offer
	 * is decided as for any transfer, on the full image. */
	if (d->restore_wait && d->online &&
	    (st.state != PROTO_ST_DOWNLOADING ||
	     strcmp(st.release, d->release))) {
		enum proto_encoding enc = d->encoding;
		bool enc_failed = st.state == PROTO_ST_FAILED &&
				  !strcmp(st.release, d->release) &&
				  enc != PROTO_ENCODING_FULL;
		restore_one(gw, d, true);
		if (enc_failed && d->x) {
			/* It failed the encoded payload it was restored to
			 * (the restore went on with the full image). */
			encoded_failed(gw, d, gw__xfer_rel(d), enc, st.error);
			return;
		}
	}
	bool mine = d->x && strcmp(st.release, d->release) == 0;
	if (st.state == PROTO_ST_OFFLINE) {
		if (d->x)
			gw__xfer_offline(gw, d);
		return; /* transfer pauses; resumes on return */
	}
	if (mine && st.state == PROTO_ST_FAILED && gw__xfer_rel(d)->parent) {
		encoded_failed(gw, d, gw__xfer_rel(d)->parent,
			       gw__xfer_rel(d)->encoding, st.error);
		return;
	}
	if (mine &&
	    (st.state == PROTO_ST_COMMITTED || st.state == PROTO_ST_FAILED ||
	     st.state == PROTO_ST_ROLLED_BACK)) {
		status_finished(gw, d, &st);
		return;
	}
	if (d->x && (!was_online || st.state == PROTO_ST_IDLE ||
		     (st.state != PROTO_ST_DOWNLOADING && !mine))) {
		/* Back after a disconnect: offer again; the device answers
		 * with what it already holds. */
		gw__xfer_offer(gw, d);
		return;
	}
	gw_offer_if_due(gw, d);
}

static void on_ack(struct gw *gw, const char *id, const void *payload,
		   size_t len)
{
	struct proto_ack a;
	if (proto_ack_decode(payload, len, &a) != 0) {
		gw->stats.msgs_bad++;
		log_debug("device=%s undecodable ack dropped", id);
		return;
	}
	struct gw_device *d = gw__device_find(gw, id);
	if (!d || !d->x) {
		gw->stats.msgs_stale++;
		return;
	}
	gw->stats.acks++;
	/* Heard from: a downloading device's statuses come only every 10 s
	 * (PROTOCOL.md 5.3), its acks all the time; no status poll for it. */
	d->seen_ms = gw__wall_ms(gw);
	enum gw_xfer_ack rc = gw__xfer_on_ack(gw, d, &a);
	if (rc != GW_XFER_ACK_NOTHING)
		gw__device_dirty(gw, d);
	if (rc == GW_XFER_ACK_DONE)
		gw__event(gw, d->id, d->release, "transferred", NULL);
}

static void route(struct gw *gw, const char *topic, const void *payload,
		  size_t len, const struct gw_req *rq)
{
	char id[PROTO_ID_MAX + 1];
	const char *leaf;
	if (strncmp(topic, "ota/release/", 12) == 0) {
		gw__announce(gw, topic + 12, payload, len, rq);
	} else if (strncmp(topic, "ota/ctl/", 8) == 0) {
		gw__control(gw, topic + 8, payload, len, rq);
	} else if (strncmp(topic, "ota/gw/", 7) == 0) {
		gw__leader_message(gw, topic, payload, len);
	} else if (parse_dev_topic(topic, id, sizeof(id), &leaf)) {
		if (!strcmp(leaf, "status"))
			on_status(gw, id, payload, len);
		else if (!strcmp(leaf, "ack"))
			on_ack(gw, id, payload, len);
	} else {
		gw->stats.msgs_bad++;
	}
}

static void on_message(struct mq *mq, void *ud, const char *topic,
		       const void *payload, size_t len)
{
	(void)mq;
	route(ud, topic, payload, len, NULL);
}

/* MQTT 5: a command may name where its verdict goes. */
static void on_message5(struct mq *mq, void *ud, const char *topic,
			const void *payload, size_t len, const char *resp,
			const void *corr, size_t corr_len)
{
	(void)mq;
	struct gw_req rq = {0};
	if (!resp && !corr) {
		route(ud, topic, payload, len, NULL);
		return;
	}
	if (resp)
		snprintf(rq.resp_topic, sizeof(rq.resp_topic), "%s", resp);
	if (corr && corr_len <= sizeof(rq.corr)) {
		memcpy(rq.corr, corr, corr_len);
		rq.corr_len = corr_len;
	}
	route(ud, topic, payload, len, &rq);
}

static void on_connect(struct mq *mq, void *ud)
{
	mq_subscribe(mq, "ota/release/+", 1);
	mq_subscribe(mq, "ota/ctl/+", 1);
	mq_subscribe(mq, "ota/dev/+/status", 1);
	if (gw__leader_sending(ud)) /* a standby has no transfer */
		mq_subscribe(mq, "ota/dev/+/ack", 0);
	gw__leader_connected(ud);
	/* After the subscriptions: the answers find them. */
	if (gw__leader_sending(ud))
		gw__hello(ud);
}

static void on_disconnect(struct mq *mq, void *ud, const char *why)
{
	(void)mq;
	(void)ud;
	log_warnx("mqtt connection lost: %s (reconnecting)", why);
}

/* A device in an update that has not been heard from for this long may
 * have had statuses dropped on their way here (the broker drops what
 * overflows a client's queue, and a fleet reporting at once can do that):
 * ask the broker for its retained status again. */
#define STATUS_POLL_MS 10000
#define STATUS_POLLS_PER_TICK 20

static void status_poll(struct gw *gw, struct gw_device *d)
{
	int64_t now = gw__wall_ms(gw);
	/* Silent since the offer too: on a 2 s RTT link a device idle for
	 * 10 s answers an offer in ~2.5 s, and a poll sent meanwhile brought
	 * its retained `idle` back, which offered it again (~1 KB). */
	if (!d->online || gw->poll_budget <= 0 ||
	    now - d->seen_ms < STATUS_POLL_MS ||
	    now - d->offered_ms < STATUS_POLL_MS ||
	    now - d->poll_ms < STATUS_POLL_MS)
		return;
	char topic[PROTO_ID_MAX + 24];
	snprintf(topic, sizeof(topic), "ota/dev/%s/status", d->id);
	/* The device answers a poll on its exact topic (any broker); and
	 * subscribing again delivers the retained status (its Last Will,
	 * when it is gone) where the broker has it. The wildcard
	 * subscription stays, so the exact one goes at once. */
	if (gw__poll_device(gw, d->id) != 0 ||
	    mq_subscribe(gw->mq, topic, 1) != 0)
		return;
	mq_unsubscribe(gw->mq, topic);
	d->poll_ms = now;
	gw->poll_budget--;
	gw->stats.status_polls++;
	log_debug("device=%s silent for %lld ms: its status asked for again",
		  d->id, (long long)(now - d->seen_ms));
}

static void tick_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct gw *gw = ud;
	struct gw_device *d = *(struct gw_device *const *)node;
	if (d->x) {
		gw__xfer_tick(gw, d, gw__mono_ms(gw));
		status_poll(gw, d);
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct gw *gw = t->data;
	/* How late is this tick? That is how long the loop was stuck. */
	uint64_t now = gw__mono_ms(gw);
	if (gw->last_tick_ms)
		gw__hist_add(&gw->stats.stall_hist,
			     now - gw->last_tick_ms > TICK_MS
				 ? (now - gw->last_tick_ms - TICK_MS) * 1000
				 : 0);
	if (gw->last_tick_ms && now - gw->last_tick_ms > TICK_MS) {
		uint64_t late = now - gw->last_tick_ms - TICK_MS;
		if (late > gw->stats.stall_max_ms) {
			gw->stats.stall_max_ms = late;
			if (late >= 100)
				log_warnx("event loop stalled for %llu ms",
					  (unsigned long long)late);
		}
	}
	gw->last_tick_ms = now;
	if (mq_connected(gw->mq) && gw__leader_sending(gw)) {
		gw->poll_budget = STATUS_POLLS_PER_TICK;
		twalk_r(gw->devices, tick_walk, gw);
		gw__group_tick(gw, now);
		gw__pace_tick(gw, now);
	}
}

static void closed_cb(uv_handle_t *h) { (void)h; }

static void mq_closed(void *ud)
{
	struct gw *gw = ud;
	gw->mq = NULL;
	uv_close((uv_handle_t *)&gw->tick, closed_cb);
	uv_close((uv_handle_t *)&gw->flush, closed_cb);
	gw__leader_close(gw);
	gw__https_close(gw);
	gw__http_close(gw);
	if (!gw__lanes_busy(gw) &&
	    !uv_is_closing((uv_handle_t *)&gw->stop_timer))
		uv_close((uv_handle_t *)&gw->stop_timer, closed_cb);
	if (gw->on_stopped)
		gw->on_stopped(gw);
}

/* A package read stuck in the kernel (a hung network file system) cannot
 * be interrupted: after this long the gateway stops without it. */
#define STOP_WAIT_MS 5000

static void stop_timer_cb(uv_timer_t *t)
{
	struct gw *gw = t->data;
	log_warnx("stopping: %u package fetch(es) still stuck after %d ms; "
		  "not waiting for them",
		  gw->copy_lane.busy + gw->verify_lane.busy, STOP_WAIT_MS);
	uv_stop(gw->loop);
}

void gw_stop(struct gw *gw, void (*on_stopped)(struct gw *gw))
{
	gw->on_stopped = on_stopped;
	if (gw->stopping)
		return;
	gw->stopping = true;
	atomic_store(&gw->fetch_cancel, true); /* copies end at once */
	uv_timer_start(&gw->stop_timer, stop_timer_cb, STOP_WAIT_MS, 0);
	uv_unref((uv_handle_t *)&gw->stop_timer);
	gw__lanes_cancel(gw); /* queued fetches are refused */
	gw__leader_stop(gw);
	mq_close(gw->mq, mq_closed);
}

static void free_device(void *p)
{
	struct gw_device *d = p;
	gw__xfer_free(NULL, d);
	free(d);
}

/* The ledger into memory: devices and releases. */
static int load_ledger(struct gw *gw, char *err, size_t n)
{
	if (store_foreach(gw->db, STORE_DEVICES, device_load_cb, gw) != 0 ||
	    gw__releases_load(gw) != 0) {
		snprintf(err, n, "ledger %s could not be read", gw->cfg.db_dir);
		return -1;
	}
	return 0;
}

/* The transfers and campaigns that were under way when the gateway
 * stopped. In gw_start, not gw_init: restoring a delta may queue its
 * reading back on the pool, which a failed gw_init could not wait for. */
static void restore_transfers(struct gw *gw)
{
	twalk_r(gw->devices, restore_walk, gw);
	for (struct gw_release *r = gw->releases; r; r = r->next)
		gw__campaign_check_done(gw, r);
}

/* The broker connection (not started). */
static int connection_new(struct gw *gw, char *err, size_t n)
{
	struct mq_opts mo = {
	    .host = gw->cfg.broker_host,
	    .port = (int)gw->cfg.broker_port,
	    .brokers = gw->cfg.brokers,
	    .cafile = gw->cfg.ca_file,
	    .certfile = gw->cfg.cert_file,
	    .keyfile = gw->cfg.key_file,
	    .client_id = gw->cfg.client_id,
	    .keepalive = 30,
	    .protocol = strcmp(gw->cfg.mqtt_version, "5") == 0 ? 5 : 4,
	};
	struct mq_cbs cbs = {on_connect, on_disconnect, on_message};
	if (mq_new(gw->loop, &mo, &cbs, gw, &gw->mq, err, n) != 0)
		return -1;
	mq_set_on_message5(gw->mq, on_message5);
	return 0;
}

/* What gw_init made that lives outside the loop's handles. */
static void free_state(struct gw *gw)
{
	tdestroy(gw->devices, free_device);
	gw->devices = NULL;
	gw__releases_free(gw);
	gw__leader_free(gw);
	gw__enc_close(gw);
	free(gw->fragbuf);
	free(gw->dirty);
	store_close(gw->db);
	trust_free(&gw->trust);
	gw__unlock_dirs(gw);
}

int gw_init(struct gw *gw, uv_loop_t *loop, const struct gw_config *cfg,
	    char *err, size_t n)
{
	/* The clock a test set is kept. */
	uint64_t (*mono)(void *) = gw->clock_mono_ms;
	int64_t (*wall)(void *) = gw->clock_wall_ms;
	void *clock_ud = gw->clock_ud;
	memset(gw, 0, sizeof(*gw));
	gw->clock_mono_ms = mono;
	gw->clock_wall_ms = wall;
	gw->clock_ud = clock_ud;
	gw->cfg = *cfg;
	gw->loop = loop;
	gw->offer_due_all = offers_due;
	gw->sending = true; /* until a lease says otherwise (leader.c) */
	gw->copy_lane.max = 1;
	gw->delta_lane.max = 1;
	gw->verify_lane.max = 1;
	gw->lock_fds[0] = gw->lock_fds[1] = -1;
	/* The HTTP side's files first: libwebsockets, failing on them late,
	 * leaves its handles half-closed on the loop. */
	if (gw__http_check(cfg, err, n) != 0)
		return -1;
	if (trust_load(&gw->trust, cfg->publisher_key, cfg->root_keys,
		       cfg->root_threshold, cfg->keyset_file, false,
		       gw__wall_ms(gw) / 1000, err, n) != 0)
		return -1;
	if (cfg->root_keys[0] && cfg->publisher_key[0])
		log_warnx("publisher_key %s is not used: root_keys is set, "
			  "so key set %llu says who may sign",
			  cfg->publisher_key,
			  (unsigned long long)gw->trust.env.ks.version);
	if (gw__open_dirs(gw, err, n) != 0)
		goto fail;
	gw->fragbuf = malloc(PROTO_FRAG_HDR_LEN + PROTO_FRAG_SIZE_MAX +
			     PROTO_ENC_TAG_LEN);
	if (!gw->fragbuf) {
		snprintf(err, n, "out of memory");
		goto fail;
	}
	if (gw__enc_init(gw, err, n) != 0 || load_ledger(gw, err, n) != 0 ||
	    gw__leader_init(gw, err, n) != 0)
		goto fail;
	if (gw__https_init(gw) != 0) {
		snprintf(err, n, "libcurl initialisation failed");
		goto fail;
	}
	/* Last, the two that hold handles (closed on the loop's next run
	 * when what follows them fails): the connection before the HTTP
	 * side, which only fails out of memory once its files are checked. */
	if (connection_new(gw, err, n) != 0)
		goto fail_https;
	if (gw__http_init(gw, err, n) != 0)
		goto fail_mq;
	uv_timer_init(loop, &gw->tick);
	gw->tick.data = gw;
	uv_check_init(loop, &gw->flush);
	gw->flush.data = gw;
	uv_timer_init(loop, &gw->stop_timer);
	gw->stop_timer.data = gw;
	return 0;
fail_mq:
	mq_close(gw->mq, NULL);
	gw->mq = NULL;
fail_https:
	gw__https_close(gw);
fail:
	free_state(gw);
	return -1;
}

int gw_start(struct gw *gw)
{
	uv_timer_start(&gw->tick, tick_cb, TICK_MS, TICK_MS);
	uv_check_start(&gw->flush, flush_cb);
	uv_unref((uv_handle_t *)&gw->flush);
	restore_transfers(gw);
	gw__leader_start(gw);
	log_info("gateway up: broker=%s db=%s store=%s devices=%zu",
		 mq_broker(gw->mq), gw->cfg.db_dir, gw->cfg.store_dir,
		 gw->ndevices);
	return mq_start(gw->mq);
}

static void log_stats(const struct gw *gw)
{
	const struct gw_stats *s = &gw->stats;
	const struct gw_snd_stats *f = &gw->fleet.st;
	log_info("gateway stopped: frags_sent=%llu resent=%llu reneged=%llu "
		 "grouped=%llu timeouts=%llu spurious=%llu status_polls=%llu "
		 "acks=%llu bad_msgs=%llu stale_msgs=%llu inflight_peak=%llu "
		 "loop_stall_max_ms=%llu",
		 (unsigned long long)f->frags_sent,
		 (unsigned long long)f->frags_resent,
		 (unsigned long long)f->frags_reneged,
		 (unsigned long long)f->frags_grouped,
		 (unsigned long long)f->rto_fired,
		 (unsigned long long)f->rto_spurious,
		 (unsigned long long)s->status_polls,
		 (unsigned long long)s->acks, (unsigned long long)s->msgs_bad,
		 (unsigned long long)s->msgs_stale,
		 (unsigned long long)f->inflight_peak,
		 (unsigned long long)s->stall_max_ms);
}

int gw_close(struct gw *gw)
{
	bool stuck = gw__lanes_busy(gw);
	while (gw->committing)
		uv_run(gw->loop, UV_RUN_ONCE);
	if (!stuck)
		gw__http_free(gw);
	flush_final(gw);
	log_stats(gw);
	if (stuck) {
		/* A worker is blocked in a read that holds its job: the
		 * ledger is written and closed, the rest is the process's. */
		store_close(gw->db);
		gw->db = NULL;
		return GW_CLOSE_STUCK;
	}
	free_state(gw);
	return 0;
}
