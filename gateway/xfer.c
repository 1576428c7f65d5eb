/* Transfers on the broker: offers, and the sender of sender.c wired to
 * MQTT (fragments to ota/dev/<id>/frag, a group's to its group topic) and
 * to the gateway's devices, ledger and event log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

/* A release's sending state: its group and the group's topic. */
struct gw_xrel {
	struct gw_grp grp; /* first: a struct gw_grp * is a gw_xrel * */
	char topic[PROTO_GROUP_TOPIC_MAX + 2 * PROTO_SHA256_LEN];
};

struct gw_xfer {
	struct gw_release *rel;
	struct gw_snd snd;
	uint64_t sent_base, resent_base; /* the device's counts at the start */
	bool enc_wrapped; /* the release's key wrapped for this device: */
	uint8_t enc_epk[PROTO_EC_PUB_LEN];
	uint8_t enc_key[PROTO_ENC_WRAPPED_LEN];
	char frag_topic[PROTO_ID_MAX + 16];
};

static int ops_send(void *ctx, struct gw_snd *s, uint32_t i);
static int ops_group_send(void *ctx, struct gw_grp *g, uint32_t i);
static void ops_left(void *ctx, struct gw_snd *s, const char *why);
static void ops_state(void *ctx, struct gw_snd *s, enum gw_snd_state from);
static void ops_group_state(void *ctx, struct gw_grp *g,
			    enum gw_grp_state from);

static const struct gw_snd_ops xfer_ops = {
    .send = ops_send,
    .group_send = ops_group_send,
    .left = ops_left,
    .state = ops_state,
    .group_state = ops_group_state,
};

/* The fleet's sender state, wired to this gateway. */
static struct gw_snd_fleet *fleet(struct gw *gw)
{
	gw->fleet.ops = &xfer_ops;
	gw->fleet.ctx = gw;
	gw->fleet.cap = (uint64_t)gw->cfg.max_inflight_kb << 10;
	return &gw->fleet;
}

/* r's group, told whether the campaign (its root's, for a variant of
 * delta.c) sends now. */
static struct gw_grp *rel_grp(struct gw_release *r)
{
	r->xrel->grp.rel.halted = gw__campaign_halted(gw__rel_root(r));
	r->xrel->grp.rel.offers_held = r->offers_held;
	return &r->xrel->grp;
}

/* The device's counts: what it had before this transfer, and this one's. */
static void sync_counts(struct gw_device *d)
{
	d->frags_sent = d->x->sent_base + d->x->snd.sent;
	d->frags_resent = d->x->resent_base + d->x->snd.resent;
}

static void ops_left(void *ctx, struct gw_snd *s, const char *why)
{
	(void)ctx;
	struct gw_device *d = s->ud;
	if (why)
		log_info("device=%s release=%s left the group at fragment "
			 "%u of %u (held it back %llu ms in all): %s",
			 d->id, d->x->rel->id, s->cum, s->grp->rel.nfrags,
			 (unsigned long long)s->held_ms, why);
}

static void ops_state(void *ctx, struct gw_snd *s, enum gw_snd_state from)
{
	(void)ctx;
	struct gw_device *d = s->ud;
	log_debug("device=%s release=%s transfer %s -> %s", d->id,
		  d->x->rel->id, gw_snd_state_name(from),
		  gw_snd_state_name(s->st));
}

static void ops_group_state(void *ctx, struct gw_grp *g, enum gw_grp_state from)
{
	(void)ctx;
	struct gw_release *r = g->ud;
	if (g->st == GW_GRP_SENDING)
		log_info("release=%s group of %zu devices: sending", r->id,
			 g->nmembers);
	else
		log_debug("release=%s group %s -> %s", r->id,
			  gw_grp_state_name(from), gw_grp_state_name(g->st));
}

void gw__xfer_release_free(struct gw *gw, struct gw_release *r)
{
	if (!r->xrel)
		return;
	gw_grp_free(gw ? fleet(gw) : NULL, &r->xrel->grp);
	free(r->xrel);
	r->xrel = NULL;
}

struct gw_release *gw__xfer_rel(const struct gw_device *d) { return d->x->rel; }

void gw__xfer_offline(struct gw *gw, struct gw_device *d)
{
	if (d->x)
		gw_snd_leave(fleet(gw), &d->x->snd, "offline");
}

void gw__xfer_free(struct gw *gw, struct gw_device *d)
{
	if (!d->x)
		return;
	sync_counts(d);
	gw_snd_free(gw ? fleet(gw) : NULL, &d->x->snd);
	free(d->x);
	d->x = NULL;
}

/* The offer's "enc" member: the content key wrapped for this device
 * alone (once per transfer: offers sent again carry the same). -1: no
 * offer now (never the release in clear); tried again later. */
static int offer_enc(struct gw *gw, struct gw_device *d, struct proto_offer *o)
{
	struct gw_xfer *x = d->x;
	if (!x->rel->encrypt)
		return 0;
	if (!x->enc_wrapped) {
		if (gw__enc_offer(gw, d, x->rel, o) != 0)
			return -1;
		memcpy(x->enc_epk, o->enc_epk, sizeof(x->enc_epk));
		memcpy(x->enc_key, o->enc_key, sizeof(x->enc_key));
		x->enc_wrapped = true;
	}
	snprintf(o->enc_alg, sizeof(o->enc_alg), "%s", PROTO_ENC_ALG);
	memcpy(o->enc_epk, x->enc_epk, sizeof(o->enc_epk));
	memcpy(o->enc_key, x->enc_key, sizeof(o->enc_key));
	return 0;
}

void gw__xfer_offer(struct gw *gw, struct gw_device *d)
{
	/* A standby sends nothing (PROTOCOL.md 5.7): a transfer restored
	 * from its ledger is offered by the tick once it holds the lease. */
	if (!gw__leader_sending(gw))
		return;
	struct gw_xfer *x = d->x;
	struct gw_release *r = x->rel;
	struct proto_offer o = {
	    .keyset = gw->trust.env_json,
	    .keyset_len = gw->trust.env_len,
	    .manifest = r->manifest,
	    .manifest_len = r->manifest_len,
	    .fragment_size = r->frag_size,
	    .fragments = r->nfrags - r->tfrags,
	    .table_fragments = r->tfrags,
	    .window = r->window,
	    .restart_spread_ms = gw__restart_spread_ms(gw, gw__rel_root(r)),
	    .epoch = gw__leader_epoch(gw)};
	uint64_t now = gw__mono_ms(gw);
	if (offer_enc(gw, d, &o) != 0) {
		x->snd.offer_ms = now;
		return;
	}
	/* A fresh transfer may join the release's group while it gathers,
	 * or early enough to be caught up within one window. A device that
	 * is back (it holds part already) is served on its own. */
	o.group = gw->cfg.group_fragments && d->acked == 0 &&
		  gw_grp_open(rel_grp(r));
	gw_snd_offered(fleet(gw), &x->snd, o.group, now);
	memcpy(o.release, r->id, sizeof(o.release));
	memcpy(o.sig, r->sig, PROTO_SIG_LEN);
	/* An encoded payload (delta.c, PROTOCOL.md 6.4). */
	o.encoding = r->encoding;
	if (r->encoding != PROTO_ENCODING_FULL)
		o.payload_size = r->payload_len;
	memcpy(o.base, r->base, sizeof(o.base));
	memcpy(o.base_version, r->base_version, sizeof(o.base_version));
	char *json = NULL, topic[PROTO_ID_MAX + 16];
	size_t len;
	if (proto_offer_encode(&o, &json, &len) != 0) {
		log_warnx("device=%s: cannot encode offer", d->id);
		return;
	}
	snprintf(topic, sizeof(topic), "ota/dev/%s/offer", d->id);
	if (mq_publish(gw->mq, topic, json, len, 1, false) == 0)
		log_info("device=%s release=%s version=%s offered", d->id,
			 r->id, r->m.version);
	free(json);
}

static int xrel_make(struct gw_release *r)
{
	if (r->xrel)
		return 0;
	struct gw_xrel *xr = calloc(1, sizeof(*xr));
	if (!xr)
		return -1;
	struct gw_snd_rel rel = {.tag = r->tag,
				 .nfrags = r->nfrags,
				 .window = r->window,
				 .frag_size = r->frag_size};
	gw_grp_init(&xr->grp, &rel, r);
	/* One stream per payload (PROTOCOL.md 6.4): a variant's its own. */
	proto_group_topic(r->id, r->encoding, r->base, xr->topic,
			  sizeof(xr->topic));
	r->xrel = xr;
	return 0;
}

static int xfer_alloc(struct gw_device *d, struct gw_release *r)
{
	struct gw_xfer *x = calloc(1, sizeof(*x));
	if (!x || xrel_make(r) != 0 ||
	    gw_snd_init(&x->snd, &r->xrel->grp, d) != 0) {
		free(x);
		log_warnx("device=%s: out of memory for a transfer", d->id);
		return -1;
	}
	x->rel = r;
	x->sent_base = d->frags_sent;
	x->resent_base = d->frags_resent;
	snprintf(x->frag_topic, sizeof(x->frag_topic), "ota/dev/%s/frag",
		 d->id);
	d->x = x;
	return 0;
}

int gw__xfer_start(struct gw *gw, struct gw_device *d, struct gw_release *r)
{
	d->frags_sent = d->frags_resent = 0;
	if (xfer_alloc(d, r) != 0)
		return -1;
	snprintf(d->release, sizeof(d->release), "%s", r->id);
	d->encoding = r->encoding;
	memcpy(d->xbase, r->base, sizeof(d->xbase));
	d->acked = 0;
	d->frags = r->nfrags;
	d->error[0] = '\0';
	d->timings = (struct proto_timings){-1, -1, -1, -1, -1};
	d->offered_ms = gw__wall_ms(gw);
	d->transferred_ms = d->finished_ms = 0;
	gw__xfer_offer(gw, d);
	return 0;
}

int gw__xfer_restore(struct gw_device *d, struct gw_release *r)
{
	/* After a gateway restart: the transfer waits for the device to be
	 * heard from, then is offered again; the device's first ack says
	 * what it holds, so nothing it has is sent twice. */
	if (xfer_alloc(d, r) != 0)
		return -1;
	log_info("device=%s release=%s transfer restored at %u/%u, "
		 "waiting for the device",
		 d->id, r->id, d->acked, r->nfrags);
	return 0;
}

#define SEALED_CACHE_MAX (64u << 20) /* sealed fragments kept, all releases */

/* Keep fragment i as sealed in gw->fragbuf (len bytes of data), when the
 * release fits in what is left of the cache. */
static void sealed_keep(struct gw *gw, struct gw_release *r, uint32_t i,
			size_t len)
{
	uint64_t whole = r->m.size + r->table_len +
			 (uint64_t)r->nfrags * PROTO_ENC_TAG_LEN;
	if (!r->sealed && gw->sealed_bytes + whole <= SEALED_CACHE_MAX) {
		r->sealed = calloc(r->nfrags, sizeof(*r->sealed));
		if (r->sealed)
			gw->sealed_bytes += whole; /* reserved whole */
	}
	if (r->sealed && !r->sealed[i] && (r->sealed[i] = malloc(len)))
		memcpy(r->sealed[i], gw->fragbuf + PROTO_FRAG_HDR_LEN, len);
}

/* Fragment i of r into gw->fragbuf; its length (0: none, not sent). */
static size_t frag_fill(struct gw *gw, struct gw_release *r, uint32_t i)
{
	/* [0, tfrags): the block table; then the payload. */
	const uint8_t *src = r->table;
	uint64_t end = r->table_len, off = (uint64_t)i * r->frag_size;
	if (i >= r->tfrags) {
		src = r->map + r->payload_off;
		end = r->payload_len;
		off = (uint64_t)(i - r->tfrags) * r->frag_size;
	}
	size_t len = r->frag_size;
	if (off + len > end)
		len = (size_t)(end - off);
	proto_frag_header_encode(gw->fragbuf, r->tag, i);
	if (!r->encrypt) {
		memcpy(gw->fragbuf + PROTO_FRAG_HDR_LEN, src + off, len);
		return PROTO_FRAG_HDR_LEN + len;
	}
	/* Sealed once: a group's fragment is one publish for every member,
	 * and the nonce makes a fragment's ciphertext the same whoever gets
	 * it and however often, so it is kept and reused. */
	len += PROTO_ENC_TAG_LEN;
	if (r->sealed && r->sealed[i]) {
		memcpy(gw->fragbuf + PROTO_FRAG_HDR_LEN, r->sealed[i], len);
		return PROTO_FRAG_HDR_LEN + len;
	}
	if (proto_frag_seal(r->aead, gw->fragbuf, r->frag_size, src + off,
			    len - PROTO_ENC_TAG_LEN,
			    gw->fragbuf + PROTO_FRAG_HDR_LEN) != 0) {
		log_warnx("release=%s cannot encrypt fragment %u", r->id, i);
		return 0;
	}
	sealed_keep(gw, r, i, len);
	return PROTO_FRAG_HDR_LEN + len;
}

static int ops_send(void *ctx, struct gw_snd *s, uint32_t i)
{
	struct gw *gw = ctx;
	struct gw_device *d = s->ud;
	size_t len = frag_fill(gw, d->x->rel, i);
	if (len == 0)
		return -1;
	d->wire_bytes += gw__frag_wire_len(d->x->rel, i);
	return mq_publish(gw->mq, d->x->frag_topic, gw->fragbuf, len, 0, false);
}

static int ops_group_send(void *ctx, struct gw_grp *g, uint32_t i)
{
	struct gw *gw = ctx;
	struct gw_release *r = g->ud;
	size_t len = frag_fill(gw, r, i);
	if (len == 0)
		return -1;
	/* The broker delivers the one publish to every member. */
	for (size_t k = 0; k < g->nmembers; k++)
		((struct gw_device *)g->members[k]->ud)->wire_bytes +=
		    gw__frag_wire_len(r, i);
	return mq_publish(gw->mq, r->xrel->topic, gw->fragbuf, len, 0, false);
}

void gw__group_tick(struct gw *gw, uint64_t now)
{
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		if (r->xrel && r->xrel->grp.st != GW_GRP_IDLE)
			gw_grp_pump(fleet(gw), rel_grp(r), now);
		for (struct gw_release *v = r->variants; v; v = v->next)
			if (v->xrel && v->xrel->grp.st != GW_GRP_IDLE)
				gw_grp_pump(fleet(gw), rel_grp(v), now);
	}
}

/* What an ack did, for the log; what the caller records. */
static enum gw_xfer_ack ack_report(struct gw *gw, struct gw_device *d,
				   const struct proto_ack *a,
				   const struct gw_snd_ack_info *in)
{
	struct gw_xfer *x = d->x;
	struct gw_release *r = x->rel;
	enum gw_xfer_ack rc = GW_XFER_ACK_NOTHING;
	if (in->clamped) {
		gw->stats.msgs_bad++;
		log_debug("device=%s ack beyond what was sent (cum=%u sent=%u)",
			  d->id, a->cum, x->snd.sent_max);
	}
	if (in->accepted)
		log_info("device=%s release=%s accepted, sending from "
			 "fragment %u of %u",
			 d->id, r->id, a->cum, r->nfrags);
	if (in->restarted)
		log_info("device=%s release=%s device holds %u, not %u: "
			 "resending from there",
			 d->id, r->id, a->cum, in->was);
	sync_counts(d);
	if (d->acked != x->snd.cum) {
		d->acked = x->snd.cum;
		rc = GW_XFER_ACK_PROGRESS;
	}
	if (!in->done)
		return rc;
	d->transferred_ms = gw__wall_ms(gw);
	log_info("device=%s release=%s all %u fragments acknowledged "
		 "(sent=%llu resent=%llu fast_repairs=%llu timeouts=%llu "
		 "held_group_ms=%llu)",
		 d->id, r->id, r->nfrags, (unsigned long long)x->snd.sent,
		 (unsigned long long)x->snd.resent,
		 (unsigned long long)x->snd.fast_repairs,
		 (unsigned long long)x->snd.timeouts,
		 (unsigned long long)x->snd.held_ms);
	return GW_XFER_ACK_DONE;
}

enum gw_xfer_ack gw__xfer_on_ack(struct gw *gw, struct gw_device *d,
				 const struct proto_ack *a)
{
	struct gw_xfer *x = d->x;
	struct gw_snd_ack_info in;
	rel_grp(x->rel);
	switch (gw_snd_on_ack(fleet(gw), &x->snd, a, gw__mono_ms(gw), &in)) {
	case GW_SND_ACK_STALE:
		gw->stats.msgs_stale++;
		break;
	case GW_SND_ACK_BAD:
		gw->stats.msgs_bad++;
		break;
	case GW_SND_ACK_OK:
		return ack_report(gw, d, a, &in);
	}
	return GW_XFER_ACK_NOTHING;
}

void gw__xfer_tick(struct gw *gw, struct gw_device *d, uint64_t now)
{
	struct gw_xfer *x = d->x;
	struct gw_grp *g = rel_grp(x->rel);
	if (!d->online || g->rel.halted)
		return; /* resumes with a new offer when it is back */
	if (x->snd.st == GW_SND_OFFERED) {
		if (gw__pace_reoffer(gw, x->snd.offers, now - x->snd.offer_ms))
			gw__xfer_offer(gw, d);
		return;
	}
	if (gw_snd_tick(fleet(gw), &x->snd, now))
		log_debug("device=%s rto=%.0fms resent fragment %u", d->id,
			  x->snd.rto, x->snd.cum);
	sync_counts(d);
}

struct gw_release *gw__rel_root(struct gw_release *r)
{
	return r->parent ? r->parent : r;
}

uint64_t gw__frag_wire_len(const struct gw_release *r, uint32_t i)
{
	uint64_t off, end;
	if (i < r->tfrags) {
		off = (uint64_t)i * r->frag_size;
		end = r->table_len;
	} else {
		off = (uint64_t)(i - r->tfrags) * r->frag_size;
		end = r->payload_len;
	}
	uint64_t len = end - off < r->frag_size ? end - off : r->frag_size;
	return PROTO_FRAG_HDR_LEN + len + (r->encrypt ? PROTO_ENC_TAG_LEN : 0);
}
