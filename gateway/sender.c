/* The sender of proto/PROTOCOL.md section 9 as pure logic (see sender.h):
 * a window per device, group pacing, and what each ack and each timeout
 * sends. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/sender.h"

static const char *const snd_names[] = {"offered", "sending", "done"};
static const char *const grp_names[] = {"idle", "gathering", "sending"};

const char *gw_snd_state_name(enum gw_snd_state st)
{
	return (unsigned)st < 3 ? snd_names[st] : "?";
}

const char *gw_grp_state_name(enum gw_grp_state st)
{
	return (unsigned)st < 3 ? grp_names[st] : "?";
}

static bool is_acked(const struct gw_snd *s, uint32_t i)
{
	return s->acked[i >> 3] & (1u << (i & 7));
}

/* Set i's bit; true when it was not set before. */
static bool mark(struct gw_snd *s, uint32_t i)
{
	if (is_acked(s, i))
		return false;
	s->acked[i >> 3] |= (uint8_t)(1u << (i & 7));
	return true;
}

static void grp_set_state(struct gw_snd_fleet *f, struct gw_grp *g,
			  enum gw_grp_state st)
{
	enum gw_grp_state from = g->st;
	g->st = st;
	if (from != st && f && f->ops && f->ops->group_state)
		f->ops->group_state(f->ctx, g, from);
}

static void snd_set_state(struct gw_snd_fleet *f, struct gw_snd *s,
			  enum gw_snd_state st)
{
	enum gw_snd_state from = s->st;
	s->st = st;
	if (from != st && f && f->ops && f->ops->state)
		f->ops->state(f->ctx, s, from);
}

static void peak(struct gw_snd_fleet *f)
{
	if (f->inflight > f->st.inflight_peak)
		f->st.inflight_peak = f->inflight;
}

/* Bytes in flight, [cum, next) at most, counted against the fleet cap;
 * a member's are counted once for its group (grp_account). */
static void account(struct gw_snd_fleet *f, struct gw_snd *s)
{
	uint64_t now = s->member ? 0
				 : (uint64_t)(s->next - s->cum) *
				       s->grp->rel.frag_size;
	if (f) {
		f->inflight = f->inflight - s->inflight + now;
		peak(f);
	}
	s->inflight = now;
}

static void grp_account(struct gw_snd_fleet *f, struct gw_grp *g,
			uint32_t min_cum)
{
	uint64_t held = (uint64_t)(g->next - min_cum) * g->rel.frag_size;
	f->inflight = f->inflight - g->inflight + held;
	g->inflight = held;
	peak(f);
}

/* The device's word is the truth: it holds exactly [0, cum) now. */
static void reset_to(struct gw_snd *s, uint32_t cum, uint64_t now)
{
	memset(s->acked, 0, s->grp->rel.nfrags / 8 + 1);
	memset(s->acked, 0xff, cum / 8);
	for (uint32_t i = cum & ~7u; i < cum; i++)
		mark(s, i);
	s->cum = s->next = cum;
	s->recover = 0;
	if (s->sent_max < cum)
		s->sent_max = cum;
	s->progress_ms = now;
}

uint32_t gw_snd_default_window(uint32_t base, uint32_t frag_size)
{
	uint64_t w = ((uint64_t)base * 4096 + frag_size - 1) / frag_size;
	if (w < base)
		w = base;
	return w > PROTO_WINDOW_MAX ? PROTO_WINDOW_MAX : (uint32_t)w;
}

/* The window starts at no more than GW_SND_CWND_INIT fragments and grows
 * (by what each ack newly covers: doubling per round trip) while the RTT
 * stays flat (the latest sample: the smoothed one lags a doubling), up to
 * the offered window: a path that starts to queue
 * (NB-IoT at 512 B) stops it, a fast one (4G at 160 B) fills. */
static double cwnd_floor(const struct gw_snd *s)
{
	uint32_t w = s->grp->rel.window;
	return w < GW_SND_CWND_INIT ? w : GW_SND_CWND_INIT;
}

static void cwnd_grow(struct gw_snd *s, uint32_t newly)
{
	double max = s->grp->rel.window;
	if (!s->have_rtt || s->cwnd >= max ||
	    s->last_rtt > 1.25 * s->min_rtt + GW_SND_FLAT_MS)
		return;
	s->cwnd = s->cwnd + newly > max ? max : s->cwnd + newly;
}

int gw_snd_init(struct gw_snd *s, struct gw_grp *g, void *ud)
{
	memset(s, 0, sizeof(*s));
	if (!(s->acked = calloc(g->rel.nfrags / 8 + 1, 1)))
		return -1;
	s->grp = g;
	s->ud = ud;
	s->rto = GW_SND_RTO_INIT_MS;
	s->cwnd = cwnd_floor(s);
	return 0;
}

void gw_grp_init(struct gw_grp *g, const struct gw_snd_rel *rel, void *ud)
{
	memset(g, 0, sizeof(*g));
	g->rel = *rel;
	g->ud = ud;
}

static void grp_reset(struct gw_snd_fleet *f, struct gw_grp *g)
{
	if (f)
		f->inflight -= g->inflight;
	g->inflight = 0;
	grp_set_state(f, g, GW_GRP_IDLE);
	g->next = 0;
	g->look_ms = 0;
}

void gw_grp_free(struct gw_snd_fleet *f, struct gw_grp *g)
{
	if (g->inflight && f)
		f->inflight -= g->inflight;
	free(g->members);
	g->members = NULL;
	g->nmembers = g->members_cap = 0;
}

/* s leaves its group (done, gone, reset or too slow); from here on its
 * own pump sends what the group would have. */
void gw_snd_leave(struct gw_snd_fleet *f, struct gw_snd *s, const char *why)
{
	struct gw_grp *g = s->grp;
	if (s->grp_offered && g->offered > 0)
		g->offered--;
	s->grp_offered = false;
	if (!s->member)
		return;
	s->member = s->holding = false;
	for (size_t i = 0; i < g->nmembers; i++)
		if (g->members[i] == s) {
			g->members[i] = g->members[--g->nmembers];
			break;
		}
	if (f && f->ops && f->ops->left)
		f->ops->left(f->ctx, s, why);
	if (g->nmembers == 0)
		grp_reset(f, g);
	account(f, s);
}

void gw_snd_free(struct gw_snd_fleet *f, struct gw_snd *s)
{
	gw_snd_leave(f, s, NULL);
	if (f)
		f->inflight -= s->inflight;
	s->inflight = 0;
	free(s->acked);
	s->acked = NULL;
}

bool gw_grp_open(const struct gw_grp *g)
{
	return g->st != GW_GRP_SENDING || g->next < g->rel.window / 2;
}

void gw_snd_offered(struct gw_snd_fleet *f, struct gw_snd *s, bool group,
		    uint64_t now)
{
	if (s->st == GW_SND_SENDING)
		gw_snd_leave(f, s, "offered again");
	if (group && !s->grp_offered) {
		s->grp_offered = s->grp_seen = true;
		s->grp->offered++;
	} else if (!group && s->grp_offered) {
		gw_snd_leave(f, s, NULL);
	}
	snd_set_state(f, s, GW_SND_OFFERED);
	s->offer_ms = now;
	s->offers++;
}

/* Book fragment i as sent to s now; resent: it had been sent before. */
static void sent(struct gw_snd_fleet *f, struct gw_snd *s, uint32_t i,
		 bool retx, bool resent, uint64_t now)
{
	if (s->next == s->cum && i == s->cum)
		s->progress_ms = now; /* nothing was outstanding: its timer
					 starts now, not at the last ack */
	s->sent_ms[i % GW_SND_RING] = now;
	s->retx[i % GW_SND_RING] = retx;
	s->seq[i % GW_SND_RING] = ++s->sends;
	s->sent++;
	if (resent) {
		s->resent++;
		f->st.frags_resent++;
	}
}

static int send_frag(struct gw_snd_fleet *f, struct gw_snd *s, uint32_t i,
		     bool retx, bool resent, uint64_t now)
{
	if (f->ops->send(f->ctx, s, i) != 0)
		return -1; /* not connected: the timeout sends it again */
	f->st.frags_sent++;
	sent(f, s, i, retx, resent, now);
	return 0;
}

void gw_snd_pump(struct gw_snd_fleet *f, struct gw_snd *s, uint64_t now)
{
	const struct gw_snd_rel *rel = &s->grp->rel;
	if (rel->halted || s->member || s->st != GW_SND_SENDING)
		return; /* a member's new fragments come from its group */
	uint32_t limit = s->cum + (uint32_t)s->cwnd;
	if (limit > rel->nfrags)
		limit = rel->nfrags;
	while (s->next < limit) {
		/* The fleet-wide cap keeps the broker's queues short; a device
		 * with nothing in flight may always send one fragment. */
		if (s->next > s->cum && f->inflight + rel->frag_size > f->cap)
			break;
		/* Below sent_max it went out before: the device restarted
		 * or was offered again and lost it, so it counts as resent
		 * (its RTT sample is still clean: the old copy is gone). */
		if (!is_acked(s, s->next))
			send_frag(f, s, s->next, false, s->next < s->sent_max,
				  now);
		s->next++;
		if (s->sent_max < s->next)
			s->sent_max = s->next;
		account(f, s);
	}
}

static void rtt_sample(struct gw_snd *s, double r)
{
	s->last_rtt = r;
	if (s->min_rtt == 0 || r < s->min_rtt)
		s->min_rtt = fmax(r, 1.0);
	if (!s->have_rtt) {
		s->srtt = r;
		s->rttvar = r / 2;
		s->have_rtt = true;
	} else {
		s->rttvar = 0.75 * s->rttvar + 0.25 * fabs(s->srtt - r);
		s->srtt = 0.875 * s->srtt + 0.125 * r;
	}
	s->rto = s->srtt + fmax(10.0, 4 * s->rttvar);
	s->rto = fmin(fmax(s->rto, GW_SND_RTO_MIN_MS), GW_SND_RTO_MAX_MS);
}

/* ------------------------------------------------------------ groups */

static void grp_join(struct gw_snd_fleet *f, struct gw_snd *s, uint64_t now)
{
	struct gw_grp *g = s->grp;
	if (!gw_grp_open(g))
		return; /* too late to catch up: on its own */
	if (g->nmembers == g->members_cap) {
		size_t cap = g->members_cap ? 2 * g->members_cap : 16;
		struct gw_snd **m = realloc(g->members, cap * sizeof(*m));
		if (!m)
			return; /* on its own, which works too */
		g->members = m;
		g->members_cap = cap;
	}
	g->members[g->nmembers++] = s;
	s->member = true;
	s->holding = false;
	s->held_ms = 0;
	if (g->st == GW_GRP_IDLE) {
		grp_set_state(f, g, GW_GRP_GATHER);
		g->since_ms = now;
		g->next = 0;
	}
	g->joined_ms = now;
	/* Joined late: what the group has published comes on its own. */
	for (uint32_t i = s->cum; i < g->next; i++) {
		send_frag(f, s, i, false, false, now);
		s->next = i + 1;
	}
	if (s->sent_max < s->next)
		s->sent_max = s->next;
	account(f, s);
}

/* From the RTT estimate, not the RTO: a stalled member's RTO backs off
 * up to a minute, and the group must not wait on it that long. */
static double eject_ms(const struct gw_snd *s)
{
	return fmax(GW_GRP_EJECT_MIN_MS, 4 * (s->srtt + 4 * s->rttvar));
}

/* Until every group offer is answered, or nearly all and the rest
 * stopped coming, or for GATHER_MAX_MS at most: a device that answers
 * late is caught up on its own, which costs what the group saves. */
static bool gathered(const struct gw_grp *g, uint64_t now)
{
	bool most = g->offered * 20 <= g->nmembers;
	if ((double)(now - g->since_ms) >= GW_GRP_GATHER_MAX_MS)
		return true;
	/* Every offer made so far answered is not the whole group while
	 * the pacer holds more back: a fleet answering its first wave of
	 * offers within 100 ms sent the rest of the wave alone (358 of
	 * 1000 devices: 6,086 more publishes for the broker). For a second
	 * at most: a group of 8,000 (the whole wave of 10,000 devices)
	 * swamped broker, fleets and gateway with its fan-out at once. */
	if (g->rel.offers_held &&
	    (double)(now - g->since_ms) < GW_GRP_GATHER_HELD_MS)
		return false;
	return g->offered == 0 ||
	       (most && (double)(now - g->joined_ms) >= GW_GRP_GATHER_QUIET_MS);
}

/* Charge the time since the last look to the members that held the group
 * back then, and find who holds it now: a member at the lowest cum while
 * another member could take more. The count is cumulative (it never
 * resets while the member stays): a lossy member holds the group a little
 * at each hole, never long at once. Returns one member past its allowance
 * (to be ejected), or NULL. */
static struct gw_snd *grp_holds(struct gw_grp *g, uint32_t min_cum,
				uint32_t max_cum, uint32_t limit, uint64_t now)
{
	struct gw_snd *out = NULL;
	bool blocked = g->next >= limit && g->next < g->rel.nfrags &&
		       max_cum + g->rel.window > g->next;
	for (size_t k = 0; k < g->nmembers; k++) {
		struct gw_snd *s = g->members[k];
		if (s->holding && g->look_ms)
			s->held_ms += now - g->look_ms;
		s->holding = blocked && s->cum == min_cum;
		if (s->holding && !out && (double)s->held_ms >= eject_ms(s))
			out = s;
	}
	g->look_ms = now;
	return out;
}

static void grp_publish(struct gw_snd_fleet *f, struct gw_grp *g,
			uint32_t min_cum, uint32_t limit, uint64_t now)
{
	while (g->next < limit) {
		uint32_t i = g->next;
		if (i > min_cum && f->inflight + g->rel.frag_size > f->cap)
			break;
		if (f->ops->group_send(f->ctx, g, i) != 0)
			break; /* not connected: the members' timeouts repair */
		f->st.frags_sent++;
		f->st.frags_grouped++;
		for (size_t k = 0; k < g->nmembers; k++) {
			struct gw_snd *s = g->members[k];
			if (s->next > i || is_acked(s, i))
				continue;
			sent(f, s, i, false, false, now);
			s->next = i + 1;
			if (s->sent_max < s->next)
				s->sent_max = s->next;
		}
		g->next = i + 1;
		if (g->max < g->next)
			g->max = g->next;
		grp_account(f, g, min_cum);
	}
	grp_account(f, g, min_cum); /* acks may have shrunk it */
}

/* Publish what the group's slowest member has room for; a member that
 * holds the group back too long, all told, leaves it and goes on alone. */
void gw_grp_pump(struct gw_snd_fleet *f, struct gw_grp *g, uint64_t now)
{
	if (g->st == GW_GRP_GATHER) {
		if (!gathered(g, now))
			return;
		if (g->nmembers == 1) {
			/* A group of one saves nothing: on its own. */
			struct gw_snd *s = g->members[0];
			gw_snd_leave(f, s, NULL);
			gw_snd_pump(f, s, now);
			return;
		}
		grp_set_state(f, g, GW_GRP_SENDING);
		g->progress_ms = now;
		g->look_ms = 0;
	}
	for (;;) {
		if (g->st != GW_GRP_SENDING || g->nmembers == 0 ||
		    g->rel.halted)
			return;
		uint32_t min_cum = UINT32_MAX, max_cum = 0;
		for (size_t k = 0; k < g->nmembers; k++) {
			uint32_t c = g->members[k]->cum;
			min_cum = c < min_cum ? c : min_cum;
			max_cum = c > max_cum ? c : max_cum;
		}
		uint32_t limit = min_cum + g->rel.window;
		if (limit > g->rel.nfrags)
			limit = g->rel.nfrags;
		struct gw_snd *slow =
		    grp_holds(g, min_cum, max_cum, limit, now);
		if (!slow) {
			grp_publish(f, g, min_cum, limit, now);
			return;
		}
		f->st.ejected++;
		gw_snd_leave(f, slow, "too slow for the group");
		gw_snd_pump(f, slow, now);
	}
}

/* ------------------------------------------------------------- acks */

/* What an ack newly covers gives the RTT sample: the most recently sent
 * of those fragments (never a resent one: Karn), so that a fragment that
 * waited behind a hole does not inflate the RTT. */
struct sample {
	uint64_t fresh; /* when the newest clean one was sent, 0: none */
	bool spurious;	/* one sent before the last timeout got through */
	uint32_t newly; /* fragments it newly covers */
};

static void cover(struct gw_snd *s, uint32_t i, struct sample *smp)
{
	if (!mark(s, i))
		return;
	smp->newly++;
	if (i >= s->next || s->retx[i % GW_SND_RING])
		return;
	uint64_t t = s->sent_ms[i % GW_SND_RING];
	if (t > smp->fresh)
		smp->fresh = t;
	smp->spurious |= t < s->rto_at;
}

/* The device accepted the offer (or resumed): it holds [0, cum). */
static void accept(struct gw_snd_fleet *f, struct gw_snd *s, uint32_t cum,
		   uint64_t now)
{
	reset_to(s, cum, now);
	snd_set_state(f, s, GW_SND_SENDING);
	/* The offer and its answer crossed the same path as the fragments
	 * will: the first RTT sample, so that the first timeout is not a
	 * guess (only from an offer sent once). */
	if (s->offers == 1)
		rtt_sample(s, (double)(now - s->offer_ms));
	s->offers = 0;
	bool grp = s->grp_offered;
	gw_snd_leave(f, s, NULL); /* the offer is answered */
	if (grp && cum == 0)
		grp_join(f, s, now);
}

/* Mark what the ack says is held; returns the highest fragment it names
 * (its cum when none above). */
static uint32_t take_ack(struct gw_snd_fleet *f, struct gw_snd *s,
			 const struct proto_ack *a, uint32_t bound,
			 struct sample *smp, bool *advanced)
{
	for (uint32_t i = s->cum; i < a->cum; i++)
		cover(s, i, smp);
	*advanced = a->cum > s->cum;
	if (*advanced) {
		s->cum = a->cum;
		if (s->next < s->cum) /* it held more than was resent since a
					 reset: no need to send that again */
			s->next = s->cum;
	}
	/* The ack describes [cum, cum + 1 + 8 x sack_len) exactly: a
	 * fragment there that we took as held but the ack does not name
	 * was dropped by the device (it belonged to a block that failed
	 * its check): send it again, at once. */
	for (uint32_t i = s->cum, end = a->cum + 1 + 8u * a->sack_len;
	     i < end && i < bound; i++)
		if (is_acked(s, i) && !proto_ack_has(a, i)) {
			s->acked[i >> 3] &= (uint8_t) ~(1u << (i & 7));
			s->retx[i % GW_SND_RING] = true; /* no RTT sample */
			s->seq[i % GW_SND_RING] = 0;
			f->st.frags_reneged++;
		}
	uint32_t highest = s->cum;
	for (uint32_t b = 0; b < (uint32_t)a->sack_len * 8; b++) {
		uint32_t i = a->cum + 1 + b;
		if (i >= bound)
			break;
		if (a->sack[b / 8] & (1u << (b % 8))) {
			cover(s, i, smp);
			highest = i;
		}
	}
	return highest;
}

/* Was the last timeout spurious? Then stop resending what is merely
 * queued; and take the RTT sample, if the ack gave a clean one. */
static void judge(struct gw_snd_fleet *f, struct gw_snd *s, struct sample *smp,
		  uint64_t now)
{
	/* A fragment sent once, before the timeout, got through after it:
	 * the path was slow, not lossy (F-RTO, RFC 5682). Only that is
	 * evidence. (An answer to the resend that came sooner than the
	 * smallest RTT seen is not: that RTT may date from a busy receiver,
	 * and the path be faster now. Taking such an answer for the
	 * original's ended the recovery of a tail lost whole and fed the
	 * lost original's age into the RTT; every later fragment came from a
	 * resend, so no clean sample ever corrected the smallest RTT: one
	 * fragment per RTO, grown to 60 s, in the 10,000-device benchmark.) */
	if (s->recover > s->cum && smp->spurious) {
		s->recover = 0;
		f->st.rto_spurious++;
	}
	/* Without a clean sample the timeout's backoff stays (Karn). */
	if (smp->fresh)
		rtt_sample(s, (double)(now - smp->fresh));
}

/* Fast repair: a hole is resent once the device holds DUPTHRESH
 * fragments sent after the hole's last send. The first repair needs no
 * more than that (the loss is proven; the order of one topic is kept), and
 * a second waits for three sent after the first: once per round trip. */
static void fast_repair(struct gw_snd_fleet *f, struct gw_snd *s,
			uint32_t highest, uint64_t now)
{
	uint32_t top[GW_SND_DUPTHRESH] = {0}; /* highest seqs held, sorted */
	for (uint32_t i = s->cum + 1; i <= highest && i < s->next; i++) {
		uint32_t q = s->seq[i % GW_SND_RING];
		if (!is_acked(s, i) || q <= top[GW_SND_DUPTHRESH - 1])
			continue;
		int k = GW_SND_DUPTHRESH - 1;
		for (; k > 0 && top[k - 1] < q; k--)
			top[k] = top[k - 1];
		top[k] = q;
	}
	uint32_t third = top[GW_SND_DUPTHRESH - 1];
	for (uint32_t i = s->cum; i < highest && i < s->next && third; i++)
		if (!is_acked(s, i) && s->seq[i % GW_SND_RING] < third &&
		    send_frag(f, s, i, true, true, now) == 0) {
			s->fast_repairs++;
			f->st.fast_repairs++;
			/* The timer of the oldest fragment runs from its last
			 * send: the repair needs one RTT, not an RTO race. */
			if (i == s->cum)
				s->progress_ms = now;
		}
}

/* After a real timeout, each ack that brings progress sends two more of
 * the fragments outstanding then (TCP's slow start after a timeout):
 * losses at the tail, which no later fragment reveals, are repaired in a
 * few round trips, not one timeout each. Returns true when this ack only
 * starts F-RTO's wait for the next one. */
static bool recovery(struct gw_snd_fleet *f, struct gw_snd *s, bool advanced,
		     uint64_t now)
{
	if (!advanced || s->recover <= s->cum)
		return false;
	if (s->frto == 1) {
		s->frto = 2; /* F-RTO: this ack may answer the resend; the
				next one tells a loss from a slow path */
		return true;
	}
	for (uint32_t i = s->cum, n = 0; i < s->recover && n < 2; i++)
		if (!is_acked(s, i) &&
		    s->sent_ms[i % GW_SND_RING] < s->rto_at) {
			send_frag(f, s, i, true, true, now);
			n++;
		}
	return false;
}

enum gw_snd_ack_rc gw_snd_on_ack(struct gw_snd_fleet *f, struct gw_snd *s,
				 const struct proto_ack *a, uint64_t now,
				 struct gw_snd_ack_info *info)
{
	const struct gw_snd_rel *rel = &s->grp->rel;
	memset(info, 0, sizeof(*info));
	if (a->tag != rel->tag || s->st == GW_SND_DONE)
		return GW_SND_ACK_STALE;
	if (a->cum > rel->nfrags)
		return GW_SND_ACK_BAD;
	/* What it may hold: what was sent to it, or to its group. */
	uint32_t bound = s->sent_max;
	if (s->grp_seen && s->grp->max > bound)
		bound = s->grp->max;
	struct proto_ack clamped;
	if (s->st == GW_SND_SENDING && a->cum > bound) {
		/* Fragments never sent (forged ones reached it, or it
		 * lies): believe only what was sent. */
		info->clamped = true;
		clamped = (struct proto_ack){.tag = a->tag, .cum = bound};
		a = &clamped;
	}
	if (s->st == GW_SND_OFFERED) {
		info->accepted = true;
		accept(f, s, a->cum, now);
	} else if (a->cum < s->cum) {
		/* It restarted and lost what it had not checkpointed. */
		info->restarted = true;
		info->was = s->cum;
		gw_snd_leave(f, s, "it restarted");
		reset_to(s, a->cum, now);
	}
	struct sample smp = {0, false, 0};
	uint32_t highest = take_ack(f, s, a, bound, &smp, &info->progress);
	if (info->progress)
		s->progress_ms = now;
	judge(f, s, &smp, now);
	cwnd_grow(s, smp.newly);
	fast_repair(f, s, highest, now);
	bool wait = recovery(f, s, info->progress, now);
	account(f, s);
	if (highest > s->cum && s->sent_max < highest + 1)
		s->sent_max = highest + 1; /* it held group fragments */
	if (s->sent_max < s->cum)
		s->sent_max = s->cum;
	if (s->cum == rel->nfrags) {
		gw_snd_leave(f, s, NULL);
		snd_set_state(f, s, GW_SND_DONE);
		info->done = true;
		return GW_SND_ACK_OK;
	}
	uint32_t sends = s->sends;
	if (s->member && info->progress) {
		s->grp->progress_ms = now;
		/* A group that published everything has nothing to send
		 * on an ack: a pump (a walk of all members) on each member's
		 * ack was quadratic, seconds of the gateway's loop for a
		 * group of 8,000 (its stalls timed members out). The tick
		 * still pumps it (the fleet cap's count, every 20 ms). */
		if (s->grp->next < rel->nfrags)
			gw_grp_pump(f, s->grp, now);
	}
	gw_snd_pump(f, s, now);
	/* F-RTO's next ack must come from fragments sent now for the first
	 * time (RFC 5682 2.1 step 2b). With none (the window, the end of the
	 * transfer, a group that published all) it would come only if the
	 * suspects were merely slow: when they were lost, nothing more would
	 * be sent until the next timeout. So the recovery goes on at once.
	 * (The pumps send below sent_max only after a reset, which ended
	 * the recovery: what they sent here is new.) */
	if (wait && s->sends == sends)
		recovery(f, s, true, now);
	return GW_SND_ACK_OK;
}

bool gw_snd_tick(struct gw_snd_fleet *f, struct gw_snd *s, uint64_t now)
{
	if (s->grp->rel.halted || s->st != GW_SND_SENDING)
		return false;
	/* A member's fragments wait for the broker to fan them out to the
	 * whole group, which its offer's RTT did not see: while other
	 * members' acks come in, its silence is that queue, not a loss.
	 * The group's silence counts only past GW_GRP_QUIET_MIN_MS: a
	 * member's RTO comes from its offer (tens of ms), and a gateway
	 * loop busy for longer with a large group's acks looked like
	 * silence; every member timed out at once, and the resends fed the
	 * next stall (10,000 devices: 131,758 fragments resent). */
	if (s->member && (double)(now - s->grp->progress_ms) <
			     fmax(s->rto, GW_GRP_QUIET_MIN_MS))
		return false; /* (a member has nothing of its own to pump) */
	bool fired = false;
	if (s->next > s->cum && (double)(now - s->progress_ms) >= s->rto) {
		/* Timeout: resend only the oldest fragment outstanding and
		 * back off (RFC 6298 5.4-5.5). Resending all of them would
		 * add a window to a queue that may only be slow. A timeout
		 * within a recovery proves the losses: repair at the next
		 * ack; otherwise wait for one more (F-RTO). */
		s->rto_at = now;
		s->frto = s->recover > s->cum ? 2 : 1;
		s->recover = s->next;
		send_frag(f, s, s->cum, true, true, now);
		f->st.rto_fired++;
		s->timeouts++;
		s->rto = fmin(s->rto * 2, GW_SND_RTO_MAX_MS);
		s->cwnd = fmax(cwnd_floor(s), s->cwnd / 2);
		s->progress_ms = now;
		fired = true;
	}
	gw_snd_pump(f, s, now);
	return fired;
}
