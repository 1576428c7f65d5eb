/* The transfer engine: offers, a sliding window per device with an RTT
 * estimate (RFC 6298), selective acknowledgements and retransmission. */
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
	uint64_t rto_orig; /* when the fragment it resent was first sent */
	double min_rtt;	   /* smallest RTT sample, 0 before the first */
	uint64_t inflight; /* bytes this transfer counts in gw->inflight */
	double srtt, rttvar, rto;
	bool have_rtt;
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
	uint64_t now = (uint64_t)(x->next - x->cum) * x->rel->frag_size;
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

void gw__xfer_free(struct gw *gw, struct gw_device *d)
{
	if (!d->x)
		return;
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
	struct proto_offer o = {.manifest = r->manifest,
				.manifest_len = r->manifest_len,
				.fragment_size = r->frag_size,
				.fragments = r->nfrags - r->tfrags,
				.table_fragments = r->tfrags,
				.window = r->window};
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

static void send_frag(struct gw *gw, struct gw_device *d, uint32_t i,
		      bool again)
{
	struct gw_xfer *x = d->x;
	struct gw_release *r = x->rel;
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
	memcpy(gw->fragbuf + PROTO_FRAG_HDR_LEN, src + off, len);
	if (mq_publish(gw->mq, x->frag_topic, gw->fragbuf,
		       PROTO_FRAG_HDR_LEN + len, 0, false) != 0)
		return; /* not connected: the RTO sends it again */
	x->sent_ms[i % RING] = util_mono_ms();
	x->retx[i % RING] = again;
	d->frags_sent++;
	gw->stats.frags_sent++;
	if (again) {
		d->frags_resent++;
		gw->stats.frags_resent++;
	}
}

/* A paused or aborted campaign sends nothing more. */
static bool halted(const struct gw_xfer *x)
{
	return x->rel->paused || x->rel->aborted;
}

static void pump(struct gw *gw, struct gw_device *d)
{
	struct gw_xfer *x = d->x;
	if (halted(x))
		return;
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
	if (x->st == XS_SENDING && a->cum > x->sent_max) {
		/* It claims fragments never sent (forged ones reached it, or
		 * it lies): count it, believe only what was sent. The device
		 * checks every block, so forged data cannot get further. */
		gw->stats.msgs_bad++;
		log_debug("device=%s ack beyond what was sent (cum=%u sent=%u)",
			  d->id, a->cum, x->sent_max);
		clamped = (struct proto_ack){.tag = a->tag, .cum = x->sent_max};
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
		log_info("device=%s release=%s accepted, sending from "
			 "fragment %u of %u",
			 d->id, r->id, a->cum, r->nfrags);
	} else if (a->cum < x->cum) {
		/* The device restarted and lost what it had not checkpointed:
		 * believe it, and send from there. */
		log_info("device=%s release=%s device holds %u, not %u: "
			 "resending from there",
			 d->id, r->id, a->cum, x->cum);
		reset_to(x, a->cum, now);
	}
	/* Mark what this ack newly covers. The RTT sample comes from the
	 * most recently sent of those (never from a resent one: Karn), so
	 * a fragment that waited behind a hole does not inflate the RTT. */
	uint64_t fresh = 0;
	bool advanced = a->cum > x->cum, spurious = false;
	for (uint32_t i = x->cum; i < a->cum; i++)
		if (mark(x, i) && !x->retx[i % RING]) {
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
	     i < end && i < x->sent_max; i++)
		if (is_acked(x, i) && !proto_ack_has(a, i)) {
			x->acked[i >> 3] &= (uint8_t)~(1u << (i & 7));
			x->retx[i % RING] = true; /* no RTT sample from it */
			x->sent_ms[i % RING] = 0; /* resend at once */
			gw->stats.frags_reneged++;
		}
	uint32_t highest = x->cum;
	for (uint32_t b = 0; b < (uint32_t)a->sack_len * 8; b++) {
		uint32_t i = a->cum + 1 + b;
		if (i >= x->sent_max)
			break;
		if (a->sack[b / 8] & (1u << (b % 8))) {
			if (mark(x, i) && !x->retx[i % RING]) {
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
	if (advanced && x->recover > x->cum)
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
	if (x->cum == r->nfrags) {
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
	pump(gw, d);
}

void gw__xfer_tick(struct gw *gw, struct gw_device *d, uint64_t now)
{
	struct gw_xfer *x = d->x;
	if (!d->online || halted(x))
		return; /* resumes with a new offer when it is back */
	if (x->st == XS_OFFERED) {
		if (now - x->offer_ms >= gw->cfg.offer_retry_ms)
			gw__xfer_offer(gw, d);
		return;
	}
	if (x->st != XS_SENDING)
		return;
	if (x->next > x->cum && (double)(now - x->progress_ms) >= x->rto) {
		/* Timeout: resend only the oldest fragment outstanding and back
		 * off (RFC 6298 5.4-5.5). Resending all of them would add a
		 * window to a queue that may only be slow; the acks decide. */
		x->rto_at = now;
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
