/* The transfer engine: offers, a sliding window per device with an RTT
 * estimate (RFC 6298), selective acknowledgements and retransmission;
 * group sending, where devices that accept a release together get each
 * fragment from one publish and only their repairs one by one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

#define RTO_INIT_MS 1000.0
#define RTO_MIN_MS 200.0
#define RTO_MAX_MS 60000.0
#define DUPTHRESH 3
#define RING PROTO_WINDOW_MAX /* in-flight indices are < cum + window */
#define GATHER_QUIET_MS 300.0 /* a group starts when 95% joined and no more */
#define GATHER_MAX_MS 5000.0  /* for this long, or this long after the first */
#define EJECT_MIN_MS 3000.0 /* a member may hold its group back this long */

enum { GRP_IDLE, GRP_GATHER, GRP_SENDING };

enum xfer_state { XS_OFFERED, XS_SENDING, XS_DONE };
static const char *const xs_names[] = {"offered", "sending", "done"};

struct gw_xfer {
	struct gw_release *rel;
	enum xfer_state st;
	uint32_t cum;  /* every fragment below is held by the device */
	uint32_t next; /* first fragment not sent (since the last reset) */
	uint32_t sent_max; /* first fragment never sent at all */
	uint8_t *acked; /* bitmap, one bit per fragment */
	uint64_t sent_ms[RING];
	bool retx[RING];
	uint64_t offer_ms, progress_ms;
	uint32_t offers;  /* offers sent since the last accept */
	uint32_t recover; /* after a timeout: its [cum, recover) are suspect */
	uint64_t rto_at;  /* when that timeout fired */
	uint8_t frto;	  /* 1: the first ack after it decides nothing */
	uint64_t rto_orig; /* when the fragment it resent was first sent */
	double min_rtt;	   /* smallest RTT sample, 0 before the first */
	uint64_t inflight; /* bytes this transfer counts in gw->inflight */
	double srtt, rttvar, rto;
	bool have_rtt;
	bool grp_offered; /* the offer it has not answered named the group */
	bool grp_seen;	  /* an offer named the group: it may hold group
			     fragments its own pump has not sent yet */
	bool member;	  /* in its release's group */
	bool enc_wrapped; /* the release's key wrapped for this device: */
	uint8_t enc_epk[PROTO_EC_PUB_LEN];
	uint8_t enc_key[PROTO_ENC_WRAPPED_LEN];
	char frag_topic[PROTO_ID_MAX + 16];
};

static bool is_acked(const struct gw_xfer *x, uint32_t i)
{
	return x->acked[i >> 3] & (1u << (i & 7));
}

static void set_acked(struct gw_xfer *x, uint32_t i)
{
	x->acked[i >> 3] |= (uint8_t)(1u << (i & 7));
}

/* Set i's bit; true when it was not set before. */
static bool mark(struct gw_xfer *x, uint32_t i)
{
	if (is_acked(x, i))
		return false;
	set_acked(x, i);
	return true;
}

/* Bytes in flight: [cum, next) at most, counted against the fleet cap. */
static void account(struct gw *gw, struct gw_xfer *x)
{
	/* A member's window is counted once for the group, in group_pump. */
	uint64_t now = x->member ? 0
				 : (uint64_t)(x->next - x->cum) *
				       x->rel->frag_size;
	gw->inflight = gw->inflight - x->inflight + now;
	x->inflight = now;
	if (gw->inflight > gw->stats.inflight_peak)
		gw->stats.inflight_peak = gw->inflight;
}

/* The device's word is the truth: it holds exactly [0, cum) now. */
static void reset_to(struct gw_xfer *x, uint32_t cum, uint64_t now)
{
	uint32_t n = x->rel->nfrags;
	memset(x->acked, 0, n / 8 + 1);
	memset(x->acked, 0xff, cum / 8);
	for (uint32_t i = cum & ~7u; i < cum; i++)
		set_acked(x, i);
	x->cum = x->next = cum;
	x->recover = 0;
	if (x->sent_max < cum)
		x->sent_max = cum;
	x->progress_ms = now;
}

static void xfer_set_state(struct gw_device *d, enum xfer_state st)
{
	if (d->x->st != st)
		log_debug("device=%s release=%s transfer %s -> %s", d->id,
			  d->x->rel->id, xs_names[d->x->st], xs_names[st]);
	d->x->st = st;
}

static void group_reset(struct gw *gw, struct gw_release *r)
{
	if (gw)
		gw->inflight -= r->grp_inflight;
	r->grp_inflight = 0;
	r->grp_state = GRP_IDLE;
	r->grp_next = 0;
	r->grp_blocked_ms = 0;
}

/* d leaves its group (done, gone, reset or too slow); from here on its
 * own pump sends what the group would have. */
static void group_leave(struct gw *gw, struct gw_device *d, const char *why)
{
	struct gw_xfer *x = d->x;
	struct gw_release *r = x->rel;
	if (x->grp_offered && r->grp_offered > 0)
		r->grp_offered--;
	x->grp_offered = false;
	if (!x->member)
		return;
	x->member = false;
	if (r->grp_blocker == d) {
		r->grp_blocker = NULL;
		r->grp_blocked_acc = 0;
		r->grp_blocked_ms = 0;
	}
	for (size_t i = 0; i < r->nmembers; i++)
		if (r->members[i] == d) {
			r->members[i] = r->members[--r->nmembers];
			break;
		}
	if (why)
		log_info("device=%s release=%s left the group at fragment "
			 "%u of %u: %s",
			 d->id, r->id, x->cum, r->nfrags, why);
	if (r->nmembers == 0)
		group_reset(gw, r);
	if (gw)
		account(gw, x);
}

void gw__xfer_offline(struct gw *gw, struct gw_device *d)
{
	if (d->x)
		group_leave(gw, d, "offline");
}

void gw__xfer_free(struct gw *gw, struct gw_device *d)
{
	if (!d->x)
		return;
	group_leave(gw, d, NULL);
	if (gw)
		gw->inflight -= d->x->inflight;
	free(d->x->acked);
	free(d->x);
	d->x = NULL;
}

void gw__xfer_offer(struct gw *gw, struct gw_device *d)
{
	struct gw_xfer *x = d->x;
	struct gw_release *r = x->rel;
	struct proto_offer o = {.keyset = gw->trust.env_json,
				.keyset_len = gw->trust.env_len,
				.manifest = r->manifest,
				.manifest_len = r->manifest_len,
				.fragment_size = r->frag_size,
				.fragments = r->nfrags - r->tfrags,
				.table_fragments = r->tfrags,
				.window = r->window,
				.restart_spread_ms =
				    gw__restart_spread_ms(gw, r)};
	/* Encrypted: the content key wrapped for this device alone (once
	 * per transfer: offers sent again carry the same), or no offer at
	 * all (never the release in clear); tried again later. */
	if (r->encrypt && !x->enc_wrapped) {
		if (gw__enc_offer(gw, d, r, &o) != 0) {
			x->offer_ms = util_mono_ms();
			return;
		}
		memcpy(x->enc_epk, o.enc_epk, sizeof(x->enc_epk));
		memcpy(x->enc_key, o.enc_key, sizeof(x->enc_key));
		x->enc_wrapped = true;
	}
	if (r->encrypt) {
		snprintf(o.enc_alg, sizeof(o.enc_alg), "%s", PROTO_ENC_ALG);
		memcpy(o.enc_epk, x->enc_epk, sizeof(o.enc_epk));
		memcpy(o.enc_key, x->enc_key, sizeof(o.enc_key));
	}
	/* A fresh transfer may join the release's group while it gathers,
	 * or early enough to be caught up within one window. A device that
	 * is back (it holds part already) is served on its own. */
	if (x->st == XS_SENDING)
		group_leave(gw, d, "offered again");
	o.group = gw->cfg.group_fragments && d->acked == 0 &&
		  (r->grp_state != GRP_SENDING || r->grp_next < r->window / 2);
	if (o.group && !x->grp_offered) {
		x->grp_offered = x->grp_seen = true;
		r->grp_offered++;
	} else if (!o.group && x->grp_offered) {
		group_leave(gw, d, NULL);
	}
	memcpy(o.release, r->id, sizeof(o.release));
	memcpy(o.sig, r->sig, PROTO_SIG_LEN);
	char *json = NULL, topic[PROTO_ID_MAX + 16];
	size_t len;
	xfer_set_state(d, XS_OFFERED);
	x->offer_ms = util_mono_ms();
	x->offers++;
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

static int xfer_alloc(struct gw_device *d, struct gw_release *r)
{
	struct gw_xfer *x = calloc(1, sizeof(*x));
	if (!x || !(x->acked = calloc(r->nfrags / 8 + 1, 1))) {
		free(x);
		log_warnx("device=%s: out of memory for a transfer", d->id);
		return -1;
	}
	x->rel = r;
	x->rto = RTO_INIT_MS;
	snprintf(x->frag_topic, sizeof(x->frag_topic), "ota/dev/%s/frag",
		 d->id);
	d->x = x;
	return 0;
}

void gw__xfer_start(struct gw *gw, struct gw_device *d, struct gw_release *r)
{
	if (xfer_alloc(d, r) != 0)
		return;
	snprintf(d->release, sizeof(d->release), "%s", r->id);
	d->acked = 0;
	d->frags = r->nfrags;
	d->frags_sent = d->frags_resent = 0;
	d->error[0] = '\0';
	d->timings = (struct proto_timings){-1, -1, -1, -1, -1};
	d->offered_ms = util_wall_ms();
	d->transferred_ms = d->finished_ms = 0;
	gw__device_dirty(gw, d);
	gw__event(gw, d->id, r->id, "offered", r->m.version);
	gw__xfer_offer(gw, d);
}

void gw__xfer_restore(struct gw *gw, struct gw_device *d, struct gw_release *r)
{
	(void)gw;
	/* After a gateway restart: the transfer waits for the device to be
	 * heard from, then is offered again; the device's first ack says
	 * what it holds, so nothing it has is sent twice. */
	if (xfer_alloc(d, r) == 0 && ++r->active)
		log_info("device=%s release=%s transfer restored at %u/%u, "
			 "waiting for the device",
			 d->id, r->id, d->acked, r->nfrags);
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
		end = r->m.size;
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

/* Book fragment i as sent to d now. */
static void sent(struct gw *gw, struct gw_device *d, uint32_t i, bool again,
		 uint64_t now)
{
	struct gw_xfer *x = d->x;
	if (x->next == x->cum && i == x->cum)
		x->progress_ms = now; /* nothing was outstanding: its timer
					 starts now, not at the last ack */
	x->sent_ms[i % RING] = now;
	x->retx[i % RING] = again;
	d->frags_sent++;
	if (again) {
		d->frags_resent++;
		gw->stats.frags_resent++;
	}
}

static void send_frag(struct gw *gw, struct gw_device *d, uint32_t i,
		      bool again)
{
	struct gw_xfer *x = d->x;
	size_t len = frag_fill(gw, x->rel, i);
	if (len == 0 ||
	    mq_publish(gw->mq, x->frag_topic, gw->fragbuf, len, 0, false) != 0)
		return; /* not connected: the RTO sends it again */
	gw->stats.frags_sent++;
	sent(gw, d, i, again, util_mono_ms());
}

/* A paused or aborted campaign sends nothing more. */
static bool halted(const struct gw_xfer *x)
{
	return x->rel->paused || x->rel->aborted;
}

static void pump(struct gw *gw, struct gw_device *d)
{
	struct gw_xfer *x = d->x;
	if (halted(x) || x->member)
		return; /* a member's new fragments come from its group */
	uint32_t limit = x->cum + x->rel->window;
	uint64_t cap = (uint64_t)gw->cfg.max_inflight_kb << 10;
	if (limit > x->rel->nfrags)
		limit = x->rel->nfrags;
	while (x->next < limit) {
		/* The fleet-wide cap keeps the broker's queues short; a device
		 * with nothing in flight may always send one fragment. */
		if (x->next > x->cum &&
		    gw->inflight + x->rel->frag_size > cap)
			break;
		if (!is_acked(x, x->next))
			send_frag(gw, d, x->next, false);
		x->next++;
		if (x->sent_max < x->next)
			x->sent_max = x->next;
		account(gw, x);
	}
}

static void rtt_sample(struct gw_xfer *x, double r)
{
	if (x->min_rtt == 0 || r < x->min_rtt)
		x->min_rtt = fmax(r, 1.0);
	if (!x->have_rtt) {
		x->srtt = r;
		x->rttvar = r / 2;
		x->have_rtt = true;
	} else {
		x->rttvar = 0.75 * x->rttvar + 0.25 * fabs(x->srtt - r);
		x->srtt = 0.875 * x->srtt + 0.125 * r;
	}
	x->rto = x->srtt + fmax(10.0, 4 * x->rttvar);
	x->rto = fmin(fmax(x->rto, RTO_MIN_MS), RTO_MAX_MS);
}

/* ------------------------------------------------------------ groups */

static void group_join(struct gw *gw, struct gw_device *d, uint64_t now)
{
	struct gw_xfer *x = d->x;
	struct gw_release *r = x->rel;
	if (r->grp_state == GRP_SENDING && r->grp_next >= r->window / 2)
		return; /* too late to catch up: on its own */
	if (r->nmembers == r->members_cap) {
		size_t cap = r->members_cap ? 2 * r->members_cap : 16;
		struct gw_device **m = realloc(r->members, cap * sizeof(*m));
		if (!m)
			return; /* on its own, which works too */
		r->members = m;
		r->members_cap = cap;
	}
	r->members[r->nmembers++] = d;
	x->member = true;
	if (r->grp_state == GRP_IDLE) {
		snprintf(r->grp_topic, sizeof(r->grp_topic),
			 PROTO_GROUP_TOPIC_FMT, r->id);
		r->grp_state = GRP_GATHER;
		r->grp_since_ms = now;
		r->grp_next = 0;
	}
	r->grp_joined_ms = now;
	/* Joined late: what the group has published comes on its own. */
	for (uint32_t i = x->cum; i < r->grp_next; i++) {
		send_frag(gw, d, i, false);
		x->next = i + 1;
	}
	if (x->sent_max < x->next)
		x->sent_max = x->next;
	account(gw, x);
}

/* From the RTT estimate, not the RTO: a stalled member's RTO backs off
 * up to a minute, and the group must not wait on it that long. */
static double eject_ms(const struct gw_xfer *x)
{
	return fmax(EJECT_MIN_MS, 4 * (x->srtt + 4 * x->rttvar));
}

/* The group's fragments in flight, [min_cum, grp_next), counted once in
 * the fleet-wide figure (account() counts a member's as nothing). */
static void group_account(struct gw *gw, struct gw_release *r,
			  uint32_t min_cum)
{
	uint64_t held = (uint64_t)(r->grp_next - min_cum) * r->frag_size;
	gw->inflight = gw->inflight - r->grp_inflight + held;
	r->grp_inflight = held;
	if (gw->inflight > gw->stats.inflight_peak)
		gw->stats.inflight_peak = gw->inflight;
}

/* Publish what the group's slowest member has room for; a member that
 * holds the group back too long leaves it and goes on by itself. */
static void group_pump(struct gw *gw, struct gw_release *r, uint64_t now)
{
	if (r->grp_state == GRP_GATHER) {
		/* Until every group offer is answered, or nearly all and the
		 * rest stopped coming, or for GATHER_MAX_MS at most: a
		 * device that answers late is caught up on its own, which
		 * costs what the group saves. */
		bool most = r->grp_offered * 20 <= r->nmembers;
		if (r->grp_offered > 0 &&
		    (!most ||
		     (double)(now - r->grp_joined_ms) < GATHER_QUIET_MS) &&
		    (double)(now - r->grp_since_ms) < GATHER_MAX_MS)
			return;
		if (r->nmembers == 1) {
			/* A group of one saves nothing, and its topic is
			 * longer than most devices' own: that device goes on
			 * by itself. */
			struct gw_device *d = r->members[0];
			group_leave(gw, d, NULL);
			pump(gw, d);
			return;
		}
		r->grp_state = GRP_SENDING;
		r->grp_progress_ms = now;
		log_info("release=%s group of %zu devices: sending", r->id,
			 r->nmembers);
	}
	if (r->grp_state != GRP_SENDING || r->nmembers == 0 || r->paused ||
	    r->aborted)
		return;
	struct gw_device *slow = NULL;
	uint32_t min_cum = UINT32_MAX;
	for (size_t k = 0; k < r->nmembers; k++)
		if (r->members[k]->x->cum < min_cum) {
			min_cum = r->members[k]->x->cum;
			slow = r->members[k];
		}
	uint64_t cap = (uint64_t)gw->cfg.max_inflight_kb << 10;
	uint32_t limit = min_cum + r->window;
	if (limit > r->nfrags)
		limit = r->nfrags;
	/* How long has the same member held the group back, all told? A
	 * member that stalls, or is much slower than the rest, leaves
	 * after EJECT_MIN_MS of it; a fleet that is just busy has a
	 * different slowest member from one moment to the next. */
	bool blocked = r->grp_next >= limit && r->grp_next < r->nfrags;
	if (r->grp_blocked_ms)
		r->grp_blocked_acc += now - r->grp_blocked_ms;
	r->grp_blocked_ms = blocked ? now : 0;
	if (blocked && slow != r->grp_blocker) {
		r->grp_blocker = slow;
		r->grp_blocked_acc = 0;
	}
	if (blocked && (double)r->grp_blocked_acc >= eject_ms(slow->x)) {
		group_leave(gw, slow, "too slow for the group");
		pump(gw, slow);
		group_pump(gw, r, now);
		return;
	}
	while (r->grp_next < limit) {
		uint32_t i = r->grp_next;
		if (i > min_cum && gw->inflight + r->frag_size > cap)
			break;
		size_t len = frag_fill(gw, r, i);
		if (len == 0 || mq_publish(gw->mq, r->grp_topic, gw->fragbuf,
					   len, 0, false) != 0)
			break; /* not connected: the members' RTOs repair */
		gw->stats.frags_sent++;
		gw->stats.frags_grouped++;
		for (size_t k = 0; k < r->nmembers; k++) {
			struct gw_device *d = r->members[k];
			struct gw_xfer *x = d->x;
			if (x->next > i || is_acked(x, i))
				continue;
			sent(gw, d, i, false, now);
			x->next = i + 1;
			if (x->sent_max < x->next)
				x->sent_max = x->next;
		}
		r->grp_next = i + 1;
		if (r->grp_max < r->grp_next)
			r->grp_max = r->grp_next;
		group_account(gw, r, min_cum);
	}
	group_account(gw, r, min_cum); /* acks may have shrunk it */
}

void gw__group_tick(struct gw *gw, uint64_t now)
{
	for (struct gw_release *r = gw->releases; r; r = r->next)
		if (r->grp_state != GRP_IDLE)
			group_pump(gw, r, now);
}

void gw__xfer_on_ack(struct gw *gw, struct gw_device *d,
		     const struct proto_ack *a)
{
	struct gw_xfer *x = d->x;
	struct gw_release *r = x->rel;
	uint64_t now = util_mono_ms();
	if (a->tag != r->tag || x->st == XS_DONE) {
		gw->stats.msgs_stale++;
		return;
	}
	if (a->cum > r->nfrags) {
		gw->stats.msgs_bad++;
		return;
	}
	struct proto_ack clamped;
	uint32_t bound = x->sent_max; /* what it may hold: sent to it */
	if (x->grp_seen && r->grp_max > bound)
		bound = r->grp_max;
	if (x->st == XS_SENDING && a->cum > bound) {
		/* It claims fragments never sent (forged ones reached it, or
		 * it lies): count it, believe only what was sent. The device
		 * checks every block, so forged data cannot get further. */
		gw->stats.msgs_bad++;
		log_debug("device=%s ack beyond what was sent (cum=%u sent=%u)",
			  d->id, a->cum, bound);
		clamped = (struct proto_ack){.tag = a->tag, .cum = bound};
		a = &clamped;
	}
	if (x->st == XS_OFFERED) {
		/* The device accepted (or resumed): it holds [0, cum). */
		reset_to(x, a->cum, now);
		xfer_set_state(d, XS_SENDING);
		/* The offer and its answer crossed the same path as the
		 * fragments will: the first RTT sample, so that the first
		 * timeout is not a guess (only from an offer sent once). */
		if (x->offers == 1)
			rtt_sample(x, (double)(now - x->offer_ms));
		x->offers = 0;
		x->recover = 0;
		bool grp = x->grp_offered;
		group_leave(gw, d, NULL); /* the offer is answered */
		log_info("device=%s release=%s accepted, sending from "
			 "fragment %u of %u",
			 d->id, r->id, a->cum, r->nfrags);
		if (grp && a->cum == 0)
			group_join(gw, d, now);
	} else if (a->cum < x->cum) {
		/* The device restarted and lost what it had not checkpointed:
		 * believe it, and send from there. */
		log_info("device=%s release=%s device holds %u, not %u: "
			 "resending from there",
			 d->id, r->id, a->cum, x->cum);
		group_leave(gw, d, "it restarted");
		reset_to(x, a->cum, now);
	}
	/* Mark what this ack newly covers. The RTT sample comes from the
	 * most recently sent of those (never from a resent one: Karn), so
	 * a fragment that waited behind a hole does not inflate the RTT. */
	uint64_t fresh = 0;
	bool advanced = a->cum > x->cum, spurious = false;
	for (uint32_t i = x->cum; i < a->cum; i++)
		if (mark(x, i) && i < x->next && !x->retx[i % RING]) {
			if (x->sent_ms[i % RING] > fresh)
				fresh = x->sent_ms[i % RING];
			spurious |= x->sent_ms[i % RING] < x->rto_at;
		}
	if (advanced) {
		x->cum = a->cum;
		x->progress_ms = now;
		if (x->next < x->cum) /* it held more than we resent since a
					 reset: no need to send that again */
			x->next = x->cum;
	}
	/* The ack describes [cum, cum + 1 + 8 x sack_len) exactly: a
	 * fragment there that we took as held but the ack does not name
	 * was dropped by the device (it belonged to a block that failed
	 * its digest check): send it again. */
	for (uint32_t i = x->cum, end = a->cum + 1 + 8u * a->sack_len;
	     i < end && i < bound; i++)
		if (is_acked(x, i) && !proto_ack_has(a, i)) {
			x->acked[i >> 3] &= (uint8_t)~(1u << (i & 7));
			x->retx[i % RING] = true; /* no RTT sample from it */
			x->sent_ms[i % RING] = 0; /* resend at once */
			gw->stats.frags_reneged++;
		}
	uint32_t highest = x->cum;
	for (uint32_t b = 0; b < (uint32_t)a->sack_len * 8; b++) {
		uint32_t i = a->cum + 1 + b;
		if (i >= bound)
			break;
		if (a->sack[b / 8] & (1u << (b % 8))) {
			if (mark(x, i) && i < x->next && !x->retx[i % RING]) {
				if (x->sent_ms[i % RING] > fresh)
					fresh = x->sent_ms[i % RING];
				spurious |= x->sent_ms[i % RING] < x->rto_at;
			}
			highest = i;
		}
	}
	/* The fragment the timeout resent is acknowledged sooner than any
	 * round trip could bring the answer to the resend: the answer was
	 * to the original, which was only slow (Eifel, RFC 3522). Its age
	 * is a true RTT sample, so that the next fragment does not time
	 * out the same way. */
	if (x->recover && advanced && x->rto_orig && x->min_rtt > 0 &&
	    (double)(now - x->rto_at) < x->min_rtt) {
		spurious = true;
		fresh = 0;
		rtt_sample(x, (double)(now - x->rto_orig));
		x->rto_orig = 0;
	}
	if (x->recover > x->cum && spurious) {
		/* A fragment sent once, before the timeout, got through
		 * after it: the path was slow, not lossy (F-RTO, RFC 5682).
		 * Stop resending what is merely queued. */
		log_debug("device=%s spurious timeout", d->id);
		x->recover = 0;
		gw->stats.rto_spurious++;
	}
	/* Without a clean sample the timeout's backoff stays (Karn). */
	if (fresh)
		rtt_sample(x, (double)(now - fresh));
	/* Holes with DUPTHRESH later fragments held: resend now rather than
	 * wait for the timeout, unless sent again within one SRTT. */
	double guard = x->have_rtt ? x->srtt : RTO_MIN_MS;
	for (uint32_t i = x->cum; i + DUPTHRESH <= highest && i < x->next; i++)
		if (!is_acked(x, i) &&
		    (double)(now - x->sent_ms[i % RING]) >= guard)
			send_frag(gw, d, i, true);
	/* After a real timeout, each ack that brings progress sends two more
	 * of the fragments that were outstanding then (TCP's slow start
	 * after a timeout): losses at the tail, which no later fragment
	 * reveals, are repaired in a few round trips, not one RTO each. */
	if (advanced && x->recover > x->cum && x->frto == 1)
		x->frto = 2; /* F-RTO: this ack may answer the resend; the
				next one tells a loss from a slow path */
	else if (advanced && x->recover > x->cum)
		for (uint32_t i = x->cum, n = 0; i < x->recover && n < 2; i++)
			if (!is_acked(x, i) && x->sent_ms[i % RING] < x->rto_at) {
				send_frag(gw, d, i, true);
				n++;
			}
	account(gw, x);
	if (d->acked != x->cum) {
		d->acked = x->cum;
		gw__device_dirty(gw, d);
	}
	if (highest > x->cum && x->sent_max < highest + 1)
		x->sent_max = highest + 1; /* it held group fragments */
	if (x->sent_max < x->cum)
		x->sent_max = x->cum;
	if (x->cum == r->nfrags) {
		group_leave(gw, d, NULL);
		xfer_set_state(d, XS_DONE);
		d->transferred_ms = util_wall_ms();
		log_info("device=%s release=%s all %u fragments acknowledged "
			 "(sent=%llu resent=%llu)",
			 d->id, r->id, r->nfrags,
			 (unsigned long long)d->frags_sent,
			 (unsigned long long)d->frags_resent);
		gw__event(gw, d->id, r->id, "transferred", NULL);
		return;
	}
	if (x->member && advanced) {
		r->grp_progress_ms = now;
		group_pump(gw, r, now);
	}
	pump(gw, d);
}

void gw__xfer_tick(struct gw *gw, struct gw_device *d, uint64_t now)
{
	struct gw_xfer *x = d->x;
	if (!d->online || halted(x))
		return; /* resumes with a new offer when it is back */
	if (x->st == XS_OFFERED) {
		if (gw__pace_reoffer(gw, x->offers, now - x->offer_ms))
			gw__xfer_offer(gw, d);
		return;
	}
	if (x->st != XS_SENDING)
		return;
	/* A member's fragments wait for the broker to fan them out to the
	 * whole group, which its offer's RTT did not see: while other
	 * members' acks come in, its silence is that queue, not a loss. */
	if (x->member && (double)(now - x->rel->grp_progress_ms) < x->rto)
		return; /* (a member has nothing of its own to pump) */
	if (x->next > x->cum && (double)(now - x->progress_ms) >= x->rto) {
		/* Timeout: resend only the oldest fragment outstanding and back
		 * off (RFC 6298 5.4-5.5). Resending all of them would add a
		 * window to a queue that may only be slow; the acks decide. */
		x->rto_at = now;
		/* A timeout within a recovery proves the losses: repair at
		 * the next ack. Otherwise wait for one more (F-RTO). */
		x->frto = x->recover > x->cum ? 2 : 1;
		x->recover = x->next;
		x->rto_orig = x->retx[x->cum % RING] ? 0 : x->sent_ms[x->cum % RING];
		send_frag(gw, d, x->cum, true);
		gw->stats.rto_fired++;
		log_debug("device=%s rto=%.0fms resent fragment %u", d->id,
			  x->rto, x->cum);
		x->rto = fmin(x->rto * 2, RTO_MAX_MS);
		x->progress_ms = now;
	}
	pump(gw, d);
}
