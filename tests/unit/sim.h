/* A simulated link and receiver for gateway/sender.c's tests: fragments
 * and acks are events on a simulated clock, each with its delay, loss and
 * (with jitter) reordering, drawn from a seeded generator. The receiver
 * acks as the C device does (proto/PROTOCOL.md section 9): at once on a
 * gap, a duplicate or completion, every max(1, window/4) fragments, and
 * 20 ms after the first fragment left unacknowledged; it repeats its ack after
 * 2 s of silence. */
#ifndef OTA_TEST_SIM_H
#define OTA_TEST_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/sender.h"

#define SIM_DEV_MAX 8
#define SIM_EV_MAX 65536
#define SIM_FRAGS_MAX 4096

enum sim_ev_kind { EV_FRAG, EV_ACK, EV_DELACK, EV_REPEAT };

struct sim_ev {
	uint64_t at;
	uint64_t order; /* ties: first scheduled first */
	enum sim_ev_kind kind;
	int dev;
	uint32_t index;	      /* EV_FRAG */
	struct proto_ack ack; /* EV_ACK */
	uint32_t gen;	      /* EV_DELACK / EV_REPEAT: current only */
};

struct sim_path {
	double loss;	      /* of fragments, 0 .. 1 */
	double ack_loss;      /* of acks */
	uint32_t delay_ms;    /* one way */
	uint32_t jitter_ms;   /* added, uniform 0 .. jitter (one topic: FIFO) */
	double reorder;	      /* a fragment arrives after the next 2 */
	double frag_ms;	      /* a bottleneck: each fragment takes this long */
	int64_t drop_index;   /* >= 0: lose the first drop_copies copies */
	uint32_t drop_copies; /* of this fragment (and no others) */
	/* A burst (a busy client whose broker queue overflowed): every copy
	 * of a fragment >= burst_from sent before burst_until_ms is lost. */
	uint32_t burst_from;
	uint64_t burst_until_ms;
};

struct sim_dev {
	struct gw_snd snd;
	struct sim_path path;
	uint8_t held[SIM_FRAGS_MAX / 8];
	uint32_t cum, unacked;
	uint64_t last_at;    /* the last fragment's arrival (FIFO) */
	double link_free;    /* the bottleneck is busy until then */
	int64_t late;	     /* a fragment held back, or -1 */
	uint32_t late_after; /* ... until this many more have left */
	uint32_t delack_gen, repeat_gen;
	bool delack_armed; /* 20 ms after the first unacked, as the C device */
	uint64_t done_ms;  /* every fragment held then (0: not yet) */
	uint64_t last_rx_ms;
	/* per fragment: copies sent, lost on the way, and how many copies
	 * were sent while an earlier one was still to arrive */
	uint16_t sends[SIM_FRAGS_MAX], drops[SIM_FRAGS_MAX];
	uint16_t flying[SIM_FRAGS_MAX], extra[SIM_FRAGS_MAX];
};

struct sim {
	uint64_t now, order;
	uint64_t rng;
	struct gw_snd_fleet fleet;
	struct gw_grp grp;
	struct sim_dev dev[SIM_DEV_MAX];
	int ndev;
	struct sim_ev *ev; /* binary heap */
	size_t nev;
	uint32_t group_sends;
	/* Called after every event and tick of sim_run (optional): the
	 * tests' invariants. */
	void (*check)(struct sim *s);
};

static inline uint64_t sim_rand(struct sim *s)
{
	/* splitmix64: a fixed seed gives a fixed run */
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline double sim_unit(struct sim *s)
{
	return (double)(sim_rand(s) >> 11) / 9007199254740992.0;
}

static inline bool ev_before(const struct sim_ev *a, const struct sim_ev *b)
{
	return a->at < b->at || (a->at == b->at && a->order < b->order);
}

static inline void sim_push(struct sim *s, struct sim_ev e)
{
	if (s->nev == SIM_EV_MAX)
		abort();
	e.order = s->order++;
	size_t i = s->nev++;
	while (i > 0 && ev_before(&e, &s->ev[(i - 1) / 2])) {
		s->ev[i] = s->ev[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->ev[i] = e;
}

static inline struct sim_ev sim_pop(struct sim *s)
{
	struct sim_ev top = s->ev[0], last = s->ev[--s->nev];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->nev)
			break;
		if (c + 1 < s->nev && ev_before(&s->ev[c + 1], &s->ev[c]))
			c++;
		if (!ev_before(&s->ev[c], &last))
			break;
		s->ev[i] = s->ev[c];
		i = c;
	}
	s->ev[i] = last;
	return top;
}

static inline int sim_dev_of(struct sim *s, struct gw_snd *snd)
{
	return (int)((struct sim_dev *)(void *)snd - s->dev);
}

/* One copy of fragment i leaves for device k now. */
static inline void sim_transmit(struct sim *s, int k, uint32_t i)
{
	struct sim_dev *d = &s->dev[k];
	bool held = d->held[i >> 3] & (1u << (i & 7));
	if (d->flying[i] > 0 || held)
		d->extra[i]++; /* held, or an earlier copy still to arrive */
	d->sends[i]++;
	bool lost = d->path.drop_copies ? (int64_t)i == d->path.drop_index &&
					      d->sends[i] <= d->path.drop_copies
					: sim_unit(s) < d->path.loss;
	lost |= s->now < d->path.burst_until_ms && i >= d->path.burst_from;
	if (lost) {
		d->drops[i]++;
		return;
	}
	d->flying[i]++;
	uint64_t j = d->path.jitter_ms ? sim_rand(s) % (d->path.jitter_ms + 1)
				       : 0;
	double start = d->link_free > (double)s->now ? d->link_free
						     : (double)s->now;
	d->link_free = start + d->path.frag_ms;
	uint64_t at = (uint64_t)d->link_free + d->path.delay_ms + j;
	if (at < d->last_at)
		at = d->last_at; /* one connection keeps the order */
	d->last_at = at;
	if (d->late < 0 && sim_unit(s) < d->path.reorder) {
		d->late = i; /* overtaken by the next two */
		d->late_after = 2;
		return;
	}
	sim_push(s, (struct sim_ev){.at = at,
				    .kind = EV_FRAG,
				    .dev = k,
				    .index = i});
	if (d->late >= 0 && --d->late_after == 0) {
		sim_push(s, (struct sim_ev){.at = at,
					    .kind = EV_FRAG,
					    .dev = k,
					    .index = (uint32_t)d->late});
		d->late = -1;
	}
}

static inline int sim_send(void *ctx, struct gw_snd *snd, uint32_t i)
{
	struct sim *s = ctx;
	sim_transmit(s, sim_dev_of(s, snd), i);
	return 0;
}

static inline int sim_group_send(void *ctx, struct gw_grp *g, uint32_t i)
{
	struct sim *s = ctx;
	s->group_sends++;
	for (size_t k = 0; k < g->nmembers; k++)
		sim_transmit(s, sim_dev_of(s, g->members[k]), i);
	return 0;
}

static const struct gw_snd_ops sim_ops = {.send = sim_send,
					  .group_send = sim_group_send};

static inline void sim_init(struct sim *s, uint64_t seed, uint32_t nfrags,
			    uint32_t window, int ndev)
{
	memset(s, 0, sizeof(*s));
	s->rng = seed;
	s->ev = calloc(SIM_EV_MAX, sizeof(*s->ev));
	s->fleet = (struct gw_snd_fleet){.ops = &sim_ops,
					 .ctx = s,
					 .cap = UINT64_MAX / 2};
	struct gw_snd_rel rel = {.tag = 0x5eed,
				 .nfrags = nfrags,
				 .window = window,
				 .frag_size = 1024};
	gw_grp_init(&s->grp, &rel, NULL);
	s->ndev = ndev;
	for (int k = 0; k < ndev; k++)
		s->dev[k].late = -1;
	for (int k = 0; k < ndev; k++)
		if (gw_snd_init(&s->dev[k].snd, &s->grp, &s->dev[k]) != 0)
			abort();
}

static inline void sim_free(struct sim *s)
{
	for (int k = 0; k < s->ndev; k++)
		gw_snd_free(&s->fleet, &s->dev[k].snd);
	gw_grp_free(&s->fleet, &s->grp);
	free(s->ev);
}

static inline void sim_ack_now(struct sim *s, int k)
{
	struct sim_dev *d = &s->dev[k];
	struct proto_ack a = {.tag = s->grp.rel.tag, .cum = d->cum};
	uint32_t top = 0;
	for (uint32_t b = 0; b < PROTO_SACK_MAX * 8; b++) {
		uint32_t i = d->cum + 1 + b;
		if (i < s->grp.rel.nfrags &&
		    (d->held[i >> 3] & (1u << (i & 7)))) {
			a.sack[b / 8] |= (uint8_t)(1u << (b % 8));
			top = b / 8 + 1;
		}
	}
	a.sack_len = (uint8_t)top;
	d->unacked = 0;
	d->delack_gen++;
	d->delack_armed = false;
	d->repeat_gen++;
	sim_push(s, (struct sim_ev){.at = s->now + 2000,
				    .kind = EV_REPEAT,
				    .dev = k,
				    .gen = d->repeat_gen});
	if (sim_unit(s) < d->path.ack_loss)
		return;
	sim_push(s, (struct sim_ev){.at = s->now + d->path.delay_ms,
				    .kind = EV_ACK,
				    .dev = k,
				    .ack = a});
}

static inline void sim_rx(struct sim *s, int k, uint32_t i)
{
	struct sim_dev *d = &s->dev[k];
	uint32_t n = s->grp.rel.nfrags, w = s->grp.rel.window;
	d->flying[i]--;
	d->last_rx_ms = s->now;
	if (d->done_ms) {
		sim_ack_now(s, k); /* its last ack was lost */
		return;
	}
	bool dup = d->held[i >> 3] & (1u << (i & 7));
	bool gap = i != d->cum;
	if (!dup) {
		d->held[i >> 3] |= (uint8_t)(1u << (i & 7));
		while (d->cum < n &&
		       (d->held[d->cum >> 3] & (1u << (d->cum & 7))))
			d->cum++;
		d->unacked++;
	}
	if (d->cum == n)
		d->done_ms = s->now;
	if (dup || gap || d->cum == n || d->unacked >= (w / 4 ? w / 4 : 1) ||
	    d->cum < i) {
		sim_ack_now(s, k);
		return;
	}
	if (d->delack_armed)
		return;
	d->delack_armed = true;
	sim_push(s, (struct sim_ev){.at = s->now + 20,
				    .kind = EV_DELACK,
				    .dev = k,
				    .gen = ++d->delack_gen});
}

/* The devices accept at t=0 (offer now, answered one RTT later). */
static inline void sim_offer(struct sim *s, bool group)
{
	for (int k = 0; k < s->ndev; k++) {
		gw_snd_offered(&s->fleet, &s->dev[k].snd, group, s->now);
		sim_push(s, (struct sim_ev){.at = s->now +
						  2 * s->dev[k].path.delay_ms,
					    .kind = EV_ACK,
					    .dev = k,
					    .ack = {.tag = s->grp.rel.tag}});
	}
}

static inline bool sim_all_done(const struct sim *s)
{
	for (int k = 0; k < s->ndev; k++)
		if (s->dev[k].snd.st != GW_SND_DONE)
			return false;
	return true;
}

/* Run until every transfer is done or the clock reaches `until`; the
 * sender ticks every 20 ms as the gateway does. */
static inline void sim_run(struct sim *s, uint64_t until)
{
	uint64_t next_tick = s->now;
	while (!sim_all_done(s) && s->now < until) {
		if (s->nev == 0 || s->ev[0].at >= next_tick) {
			s->now = next_tick;
			next_tick += 20;
			for (int k = 0; k < s->ndev; k++)
				gw_snd_tick(&s->fleet, &s->dev[k].snd, s->now);
			if (s->grp.st != GW_GRP_IDLE)
				gw_grp_pump(&s->fleet, &s->grp, s->now);
			if (s->check)
				s->check(s);
			continue;
		}
		struct sim_ev e = sim_pop(s);
		s->now = e.at;
		struct sim_dev *d = &s->dev[e.dev];
		struct gw_snd_ack_info in;
		switch (e.kind) {
		case EV_FRAG:
			sim_rx(s, e.dev, e.index);
			break;
		case EV_ACK:
			gw_snd_on_ack(&s->fleet, &d->snd, &e.ack, s->now, &in);
			break;
		case EV_DELACK:
			if (e.gen == d->delack_gen && d->unacked)
				sim_ack_now(s, e.dev);
			break;
		case EV_REPEAT:
			if (e.gen == d->repeat_gen && !d->done_ms &&
			    s->now - d->last_rx_ms >= 2000)
				sim_ack_now(s, e.dev);
			break;
		}
		if (s->check)
			s->check(s);
	}
}

#endif
