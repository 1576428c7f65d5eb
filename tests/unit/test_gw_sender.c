/*
 * Unit tests for gateway/sender.c, the transfer's sender as pure logic,
 * driven on a simulated clock through a simulated link (sim.h) with
 * seeded loss, delay and reordering.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/sender_vectors.h"
#include "tests/unit/sim.h"

#define PATTERNS 1000

struct totals {
	uint64_t sends, drops, extra, timeouts, repairs;
};

/* Every fragment held; each fragment sent at most once per copy lost,
 * plus the copies sent while one was still on its way, which only a
 * timeout may do (a fast repair needs 3 fragments sent after it held, and
 * one topic keeps its order). */
static void check_dev(const struct sim *s, int k, struct totals *t)
{
	const struct sim_dev *d = &s->dev[k];
	uint32_t n = s->grp.rel.nfrags, extra = 0;
	assert_int_equal(d->snd.st, GW_SND_DONE);
	assert_int_equal(d->cum, n);
	for (uint32_t i = 0; i < n; i++) {
		assert_true(d->sends[i] >= 1);
		assert_true(d->sends[i] <= d->drops[i] + 1 + d->extra[i]);
		extra += d->extra[i];
		t->sends += d->sends[i];
		t->drops += d->drops[i];
	}
	/* Without reordering an early copy comes only from a timeout, and
	 * each timeout (and the two its recovery may add per ack) at most
	 * once. */
	if (d->path.reorder == 0)
		assert_true(extra <= 3 * d->snd.timeouts);
	t->extra += extra;
	t->timeouts += d->snd.timeouts;
	t->repairs += d->snd.fast_repairs;
}

/* A sending transfer that is not complete always has something that will
 * send again: a fragment outstanding (its timeout fires), or, for a
 * member, its group's next fragment. Checked after every event. */
static void check_scheduled(struct sim *s)
{
	const struct gw_grp *g = &s->grp;
	for (int k = 0; k < s->ndev && !g->rel.halted; k++) {
		const struct gw_snd *x = &s->dev[k].snd;
		if (x->st != GW_SND_SENDING || x->cum >= g->rel.nfrags ||
		    x->next > x->cum)
			continue;
		assert_true(x->member);
		assert_true(g->st != GW_GRP_IDLE && g->next <= x->cum);
	}
}

/* 1000 random loss patterns on one device: sizes, windows, delays and
 * loss rates drawn from a fixed seed. */
static void test_random_loss_patterns(void **state)
{
	(void)state;
	struct totals t = {0};
	uint64_t losses_at_tail = 0;
	for (int p = 0; p < PATTERNS; p++) {
		struct sim *s = malloc(sizeof(*s));
		uint64_t seed = 0x1000 + (uint64_t)p;
		struct sim pick = {.rng = seed * 7919};
		uint32_t n = 20 + (uint32_t)(sim_rand(&pick) % 400);
		uint32_t w = 4u << (sim_rand(&pick) % 6); /* 4 .. 128 */
		sim_init(s, seed, n, w, 1);
		s->check = check_scheduled;
		s->dev[0].path = (struct sim_path){
		    .loss = 0.2 * sim_unit(&pick),
		    .delay_ms = 5 + (uint32_t)(sim_rand(&pick) % 150)};
		sim_offer(s, false);
		sim_run(s, 3600 * 1000);
		check_dev(s, 0, &t);
		/* A timeout is needed only where no 3 later fragments can
		 * reveal a loss: a lost repair, or one of the last few
		 * fragments. Bound: one per copy lost, plus a few. */
		uint64_t lost = 0;
		for (uint32_t i = 0; i < n; i++)
			lost += s->dev[0].drops[i];
		assert_true(s->dev[0].snd.timeouts <= lost);
		for (uint32_t i = n > 3 ? n - 3 : 0; i < n; i++)
			losses_at_tail += s->dev[0].drops[i];
		sim_free(s);
		free(s);
	}
	printf("# %d patterns: %llu sends, %llu lost, %llu early copies, "
	       "%llu fast repairs, %llu timeouts (%llu losses in the last 3)\n",
	       PATTERNS, (unsigned long long)t.sends,
	       (unsigned long long)t.drops, (unsigned long long)t.extra,
	       (unsigned long long)t.repairs, (unsigned long long)t.timeouts,
	       (unsigned long long)losses_at_tail);
	/* Most repairs are fast: timeouts are for the tail and lost repairs. */
	assert_true(t.repairs > 4 * t.timeouts);
}

/* Delay that varies (on one connection: the order stays) and fragments
 * overtaken by the next two (less than the 3 that prove a loss): every
 * fragment arrives, and copies sent early stay rare. */
static void test_reordering(void **state)
{
	(void)state;
	struct totals t = {0};
	for (int p = 0; p < 200; p++) {
		struct sim *s = malloc(sizeof(*s));
		sim_init(s, 0x2000 + (uint64_t)p, 300, 32, 1);
		s->check = check_scheduled;
		s->dev[0].path = (struct sim_path){.loss = 0.03,
						   .delay_ms = 20,
						   .jitter_ms = 30,
						   .reorder = 0.05};
		sim_offer(s, false);
		sim_run(s, 3600 * 1000);
		check_dev(s, 0, &t);
		sim_free(s);
		free(s);
	}
	printf("# reordering: %llu sends, %llu lost, %llu early copies\n",
	       (unsigned long long)t.sends, (unsigned long long)t.drops,
	       (unsigned long long)t.extra);
	assert_true(t.extra * 20 < t.sends);
}

/* Lost acks: the receiver's repeat and later acks carry the same truth. */
static void test_ack_loss(void **state)
{
	(void)state;
	struct totals t = {0};
	for (int p = 0; p < 200; p++) {
		struct sim *s = malloc(sizeof(*s));
		sim_init(s, 0x3000 + (uint64_t)p, 200, 16, 1);
		s->check = check_scheduled;
		s->dev[0].path = (struct sim_path){.loss = 0.05,
						   .ack_loss = 0.1,
						   .delay_ms = 30};
		sim_offer(s, false);
		sim_run(s, 3600 * 1000);
		assert_int_equal(s->dev[0].snd.st, GW_SND_DONE);
		assert_int_equal(s->dev[0].cum, 200);
		t.timeouts += s->dev[0].snd.timeouts;
		sim_free(s);
		free(s);
	}
}

/* Point 3 of issue 14: the first repair of a hole goes at the ack that
 * shows 3 fragments sent after it held, not one smoothed RTT after its
 * send. One loss in the middle of a transfer costs no timeout and about
 * one RTT; a repair that is lost too goes again at the timeout, which
 * runs from the repair (not from the last progress, which raced it). */
static uint64_t one_hole(uint32_t copies_lost, uint64_t *repairs,
			 uint64_t *timeouts, uint16_t *sends)
{
	struct sim *s = malloc(sizeof(*s));
	sim_init(s, 0x4000, 400, 32, 1);
	s->check = check_scheduled;
	s->dev[0].path = (struct sim_path){.delay_ms = 50,
					   .drop_index = 300,
					   .drop_copies = copies_lost};
	sim_offer(s, false);
	sim_run(s, 3600 * 1000);
	assert_int_equal(s->dev[0].snd.st, GW_SND_DONE);
	uint64_t done = s->dev[0].done_ms;
	*repairs = s->dev[0].snd.fast_repairs;
	*timeouts = s->dev[0].snd.timeouts;
	*sends = s->dev[0].sends[300];
	sim_free(s);
	free(s);
	return done;
}

static void test_fast_repair(void **state)
{
	(void)state;
	uint64_t r0, r1, r2, t0, t1, t2;
	uint16_t n0, n1, n2;
	uint64_t clean = one_hole(0, &r0, &t0, &n0);
	uint64_t once = one_hole(1, &r1, &t1, &n1);
	uint64_t twice = one_hole(2, &r2, &t2, &n2);
	printf("# 400 fragments, RTT 100 ms: clean %llu ms, one loss %llu ms, "
	       "its repair lost too %llu ms\n",
	       (unsigned long long)clean, (unsigned long long)once,
	       (unsigned long long)twice);
	assert_int_equal(r0, 0);
	assert_int_equal(t0, 0);
	assert_int_equal(n0, 1);
	assert_int_equal(r1, 1);
	assert_int_equal(t1, 0);
	assert_int_equal(n1, 2);
	assert_true(once <= clean + 100 + 40);
	/* The hole is at cum, so the window is full behind it: nothing is
	 * sent after the repair that could prove it lost, and the timeout
	 * (which runs from the repair) sends it a third time. */
	assert_int_equal(r2, 1);
	assert_int_equal(t2, 1);
	assert_int_equal(n2, 3);
	assert_true(twice >= once + 100 && twice <= once + 200 + 40);
}

/* A device that restarts and lost what it held: the fragments sent again
 * count as resent, not as new sends. */
static void test_restart_counts_resent(void **state)
{
	(void)state;
	struct sim *s = malloc(sizeof(*s));
	sim_init(s, 0x6000, 100, 16, 1);
	s->check = check_scheduled;
	s->dev[0].path = (struct sim_path){.delay_ms = 10};
	sim_offer(s, false);
	sim_run(s, 150);
	uint32_t had = s->dev[0].cum;
	assert_true(had >= 20);
	assert_int_equal(s->dev[0].snd.resent, 0);
	/* It comes back holding 8: its first ack says so. */
	struct sim_dev *d = &s->dev[0];
	s->nev = 0;
	memset(d->held, 0, sizeof(d->held));
	memset(d->held, 0xff, 1);
	memset(d->flying, 0, sizeof(d->flying));
	d->cum = 8;
	struct proto_ack a = {.tag = s->grp.rel.tag, .cum = 8};
	struct gw_snd_ack_info in;
	uint32_t sent_max = d->snd.sent_max;
	assert_int_equal(gw_snd_on_ack(&s->fleet, &d->snd, &a, s->now, &in),
			 GW_SND_ACK_OK);
	assert_true(in.restarted);
	assert_int_equal(in.was, had);
	sim_run(s, 3600 * 1000);
	assert_int_equal(d->snd.st, GW_SND_DONE);
	/* [8, sent_max) went out again, counted as such. */
	assert_true(d->snd.resent >= sent_max - 8);
	assert_int_equal(d->snd.sent - d->snd.resent, 100);
	sim_free(s);
	free(s);
}

/* Issue point 4 of section 9: a member that holds its group back a little
 * at each of its holes is ejected when that adds up to 3 s, and the
 * healthy members finish about as soon as a group without it. */
static uint64_t group_run(uint64_t seed, double lossy, uint64_t *ejected,
			  uint64_t *lossy_done)
{
	struct sim *s = malloc(sizeof(*s));
	sim_init(s, seed, 3000, 32, 4);
	s->check = check_scheduled;
	for (int k = 0; k < 4; k++)
		s->dev[k].path = (struct sim_path){.delay_ms = 25};
	s->dev[3].path.loss = lossy;
	s->dev[3].path.delay_ms = 30;
	sim_offer(s, true);
	sim_run(s, 3600 * 1000);
	uint64_t last = 0;
	for (int k = 0; k < 3; k++) {
		assert_int_equal(s->dev[k].snd.st, GW_SND_DONE);
		if (s->dev[k].done_ms > last)
			last = s->dev[k].done_ms;
	}
	assert_int_equal(s->dev[3].snd.st, GW_SND_DONE);
	*ejected = s->fleet.st.ejected;
	*lossy_done = s->dev[3].done_ms;
	assert_true(s->group_sends >= 3000);
	sim_free(s);
	free(s);
	return last;
}

static void test_group_ejects_lossy_member(void **state)
{
	(void)state;
	uint64_t ej0, ej1, d0, d1;
	uint64_t clean = group_run(0x7000, 0, &ej0, &d0);
	uint64_t lossy = group_run(0x7000, 0.04, &ej1, &d1);
	printf("# group of 4, 3000 fragments: healthy members done at %llu ms, "
	       "%llu ms with one member losing 4%% (ejected: %llu)\n",
	       (unsigned long long)clean, (unsigned long long)lossy,
	       (unsigned long long)ej1);
	assert_int_equal(ej0, 0);
	assert_int_equal(ej1, 1);
	/* It holds the group back 3 s in all at most, then goes alone. */
	assert_true(lossy <= clean + 3000 + 500);
}

/* A group of n devices offered together, every offer accepted (cum 0)
 * by hand at t=10, nothing pumped yet; held: the pacer holds offers of
 * the release back. */
static struct sim *grp_accepted(uint32_t tag, uint32_t nfrags, uint32_t window,
				int n, bool held)
{
	struct sim *s = malloc(sizeof(*s));
	sim_init(s, tag, nfrags, window, n);
	s->grp.rel.offers_held = held;
	sim_offer(s, true);
	s->nev = 0;
	s->now = 10;
	struct gw_snd_ack_info in;
	for (int k = 0; k < n; k++) {
		struct proto_ack a = {.tag = s->grp.rel.tag};
		gw_snd_on_ack(&s->fleet, &s->dev[k].snd, &a, s->now, &in);
	}
	return s;
}

/* The hold counter is cumulative: short holds add up (the old counter
 * restarted whenever another member was slowest for a moment). */
static void test_group_hold_cumulative(void **state)
{
	(void)state;
	struct sim *s = grp_accepted(0x8000, 1000, 8, 3, false);
	struct gw_snd_ack_info in;
	gw_grp_pump(&s->fleet, &s->grp, s->now);
	assert_int_equal(s->grp.st, GW_GRP_SENDING);
	assert_int_equal(s->grp.next, 8);
	/* Members 0 and 1 take turns at being ahead; 2 always lags: it is
	 * charged every time, while 0 and 1 are charged nothing. */
	uint32_t c2 = 0;
	for (int round = 0; round < 40; round++) {
		s->now += 100;
		struct proto_ack a0 = {.tag = s->grp.rel.tag,
				       .cum = s->grp.next};
		gw_snd_on_ack(&s->fleet, &s->dev[round % 2].snd, &a0, s->now,
			      &in);
		gw_grp_pump(&s->fleet, &s->grp, s->now);
		if (!s->dev[2].snd.member)
			break;
		s->now += 1;
		struct proto_ack a2 = {.tag = s->grp.rel.tag, .cum = ++c2};
		gw_snd_on_ack(&s->fleet, &s->dev[2].snd, &a2, s->now, &in);
		struct proto_ack a1 = {.tag = s->grp.rel.tag,
				       .cum = s->dev[(round + 1) % 2].snd.next};
		gw_snd_on_ack(&s->fleet, &s->dev[(round + 1) % 2].snd, &a1,
			      s->now, &in);
	}
	assert_false(s->dev[2].snd.member);
	assert_true(s->dev[0].snd.member);
	assert_true(s->dev[1].snd.member);
	assert_int_equal(s->fleet.st.ejected, 1);
	sim_free(s);
	free(s);
}

/* Every offer made so far answered is not the whole group while the
 * caller's pacing holds more offers back: the group gathers on, up to
 * GW_GRP_GATHER_HELD_MS, and starts once the held offers are made. */
static void test_group_waits_for_held_offers(void **state)
{
	(void)state;
	for (int late = 0; late < 2; late++) {
		struct sim *s = grp_accepted(0x8100, 64, 8, 3, true);
		/* All three answered: without held offers it would send. */
		for (s->now = 10; s->now < 10 + GW_GRP_GATHER_HELD_MS - 20;
		     s->now += 20) {
			gw_grp_pump(&s->fleet, &s->grp, s->now);
			assert_int_equal(s->grp.st, GW_GRP_GATHER);
			assert_int_equal(s->grp.next, 0);
		}
		if (late) {
			/* Held for good: it goes GW_GRP_GATHER_HELD_MS after
			 * the first joined (at 10 ms). */
			s->now = 10 + (uint64_t)GW_GRP_GATHER_HELD_MS - 1;
			gw_grp_pump(&s->fleet, &s->grp, s->now);
			assert_int_equal(s->grp.st, GW_GRP_GATHER);
			s->now = 10 + (uint64_t)GW_GRP_GATHER_HELD_MS;
		} else {
			s->grp.rel.offers_held = false; /* made */
		}
		gw_grp_pump(&s->fleet, &s->grp, s->now);
		assert_int_equal(s->grp.st, GW_GRP_SENDING);
		assert_int_equal(s->grp.next, 8);
		assert_int_equal(s->grp.nmembers, 3);
		sim_free(s);
		free(s);
	}
}

/* A member's RTO comes from its offer (here 10 ms: the floor, 200 ms);
 * a group's silence shorter than GW_GRP_QUIET_MIN_MS (a gateway loop busy
 * with a large group's acks) times no member out; longer, it does. */
static void test_group_quiet_floor(void **state)
{
	(void)state;
	struct sim *s = grp_accepted(0x8200, 64, 8, 3, false);
	gw_grp_pump(&s->fleet, &s->grp, s->now);
	assert_int_equal(s->grp.st, GW_GRP_SENDING);
	assert_true(s->dev[0].snd.rto < GW_GRP_QUIET_MIN_MS / 2);
	uint64_t quiet = s->grp.progress_ms;
	for (s->now = quiet; s->now < quiet + GW_GRP_QUIET_MIN_MS; s->now += 20)
		for (int k = 0; k < 3; k++)
			assert_false(gw_snd_tick(&s->fleet, &s->dev[k].snd,
						 s->now));
	assert_int_equal(s->fleet.st.rto_fired, 0);
	s->now = quiet + (uint64_t)GW_GRP_QUIET_MIN_MS;
	for (int k = 0; k < 3; k++)
		assert_true(gw_snd_tick(&s->fleet, &s->dev[k].snd, s->now));
	assert_int_equal(s->fleet.st.rto_fired, 3);
	sim_free(s);
	free(s);
}

/* The window grows from 32 fragments to the offered 256 while the RTT
 * stays flat (a fast path), and stops where a bottleneck starts to queue:
 * 1000 fragments over a 30 ms path take a few round trips, not 31. */
static uint64_t windowed(double frag_ms, double *cwnd)
{
	struct sim *s = malloc(sizeof(*s));
	sim_init(s, 0x9000, 1000, 256, 1);
	s->check = check_scheduled;
	s->dev[0].path = (struct sim_path){.delay_ms = 15, .frag_ms = frag_ms};
	assert_true(s->dev[0].snd.cwnd == 32);
	sim_offer(s, false);
	sim_run(s, 3600 * 1000);
	assert_int_equal(s->dev[0].snd.st, GW_SND_DONE);
	*cwnd = s->dev[0].snd.cwnd;
	uint64_t t = s->dev[0].done_ms;
	sim_free(s);
	free(s);
	return t;
}

static void test_window_grows(void **state)
{
	(void)state;
	double fast_cwnd, slow_cwnd;
	uint64_t fast = windowed(0, &fast_cwnd);
	uint64_t slow = windowed(1.0, &slow_cwnd);
	printf("# 1000 fragments, RTT 30 ms: %llu ms (window %.0f); at 1 "
	       "fragment/ms: %llu ms (window %.0f)\n",
	       (unsigned long long)fast, fast_cwnd, (unsigned long long)slow,
	       slow_cwnd);
	assert_true(fast_cwnd == 256);
	assert_true(fast < 10 * 30); /* fixed at 32: 31 round trips */
	/* 1 fragment/ms and 30 ms: the path holds about 30 fragments; a
	 * window much beyond only queues. */
	assert_true(slow_cwnd < 128);
	assert_true(slow < 1000 + 10 * 30);
}

/* The stall of the 10,000-device benchmark (dev-06303..06323, 17
 * fragments, window 32): a device whose first answers came while its
 * fleet process was busy (RTT 3 s: the smallest RTT it ever measured),
 * that then lost every fragment but the first (the broker dropped its
 * queue), and whose path is fast again. The first timeout resent one
 * fragment, answered in 20 ms, sooner than the smallest RTT: the sender
 * took that for the answer to the original (only slow), ended the
 * recovery and took the lost original's age as an RTT sample. Every
 * fragment after that came from a resend (no clean sample: Karn), so the
 * smallest RTT stayed 3 s, every timeout was judged the same way, and
 * the RTO grew to 60 s: one fragment a minute (845 s for the 17). Now it
 * is done a few round trips after its first timeout, however it got
 * there: */
enum busy_how {
	BUSY_ALONE,  /* offered without the group */
	BUSY_MEMBER, /* the group waited for its answer */
	BUSY_LATE,   /* the benchmark's: offered the group, which started
			before its answer; it joined at fragment 4 (caught up
			on its own topic), then the group published the rest */
};

/* Until fast_ms the device is busy (its RTT 3 s; 820 ms when it joins
 * late, as the initial RTO of 1 s must not fire before fragment 0's ack:
 * then it gave no sample, and the bad judgement needs one) and loses
 * every copy of fragments 1 and up. */
static void busy_start(struct sim *s, enum busy_how how, uint64_t fast_ms)
{
	struct sim_dev *d = &s->dev[s->ndev - 1];
	for (int k = 0; k < s->ndev - 1; k++)
		s->dev[k].path = (struct sim_path){.delay_ms = 100};
	d->path = (struct sim_path){.delay_ms = how == BUSY_LATE ? 400 : 1500,
				    .burst_from = 1,
				    .burst_until_ms = fast_ms};
	if (how != BUSY_LATE) {
		sim_offer(s, how == BUSY_MEMBER);
		return;
	}
	s->fleet.cap = 4 * 1024; /* the transfers before it fill the cap */
	for (int k = 0; k < s->ndev; k++)
		gw_snd_offered(&s->fleet, &s->dev[k].snd, true, 0);
	for (int k = 0; k < s->ndev; k++)
		sim_push(s, (struct sim_ev){.at = k < s->ndev - 1 ? 200 : 5400,
					    .kind = EV_ACK,
					    .dev = k,
					    .ack = {.tag = s->grp.rel.tag}});
	sim_run(s, 5000);
	gw_snd_offered(&s->fleet, &d->snd, true, s->now); /* again */
	sim_run(s, 5500); /* the group started at 5.2 s; it answered */
	assert_int_equal(s->grp.st, GW_GRP_SENDING);
	assert_true(d->snd.member);
	assert_int_equal(d->snd.next, 4);
	s->fleet.cap = UINT64_MAX / 2; /* they are done */
	sim_run(s, 5600);
	assert_int_equal(s->grp.next, 17);
}

static uint64_t busy_then_lost(enum busy_how how, uint64_t *timeouts)
{
	struct sim *s = malloc(sizeof(*s));
	int n = how == BUSY_ALONE ? 1 : 4; /* it is the last */
	uint64_t fast_ms = how == BUSY_LATE ? 6300 : 6100;
	sim_init(s, 0xa000, 17, 32, n);
	s->check = check_scheduled;
	struct sim_dev *d = &s->dev[n - 1];
	busy_start(s, how, fast_ms);
	sim_run(s, fast_ms); /* its ack of fragment 0 came back */
	assert_int_equal(d->snd.st, GW_SND_SENDING);
	assert_int_equal(d->snd.cum, 1);
	assert_int_equal(d->snd.next, 17);
	assert_true(d->snd.min_rtt >= 800); /* 20 ms from now on */
	d->path.delay_ms = 10; /* the fleet process keeps up again */
	sim_run(s, 3600 * 1000);
	for (int k = 0; k < n; k++)
		assert_int_equal(s->dev[k].snd.st, GW_SND_DONE);
	assert_int_equal(d->cum, 17);
	/* Its first timeout fires about 9 s (3 RTTs) after its last
	 * progress; the repair then takes a few 20 ms round trips (and a
	 * second timeout at most), not one timeout a fragment. */
	assert_true(d->done_ms < fast_ms + 2 * 9100);
	assert_true(d->snd.timeouts <= 2);
	*timeouts = d->snd.timeouts;
	uint64_t done = d->done_ms;
	sim_free(s);
	free(s);
	return done;
}

static void test_busy_then_lost_finishes(void **state)
{
	(void)state;
	static const char *const how[] = {"alone", "member", "late member"};
	for (int h = BUSY_ALONE; h <= BUSY_LATE; h++) {
		uint64_t t, done = busy_then_lost((enum busy_how)h, &t);
		printf("# busy, then 16 of 17 fragments lost, then RTT 20 "
		       "ms: %s done at %llu ms (%llu timeouts)\n",
		       how[h], (unsigned long long)done, (unsigned long long)t);
	}
}

/* tests/vectors/sender: given these acks and this clock, this send. */
static void test_vectors(void **state)
{
	(void)state;
	const char *env = getenv("OTA_VECTORS");
	char dir[4096];
	int failed;
	snprintf(dir, sizeof(dir), "%s/sender",
		 env && *env ? env : "tests/vectors");
	int n = vec_run_dir(dir, &failed);
	if (n < 0)
		fail_msg("cannot open %s (set OTA_VECTORS or run from the "
			 "repository root)",
			 dir);
	printf("# %d sender vectors, %d failed\n", n, failed);
	assert_true(n >= 6);
	assert_int_equal(failed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors),
	    cmocka_unit_test(test_window_grows),
	    cmocka_unit_test(test_random_loss_patterns),
	    cmocka_unit_test(test_reordering),
	    cmocka_unit_test(test_ack_loss),
	    cmocka_unit_test(test_fast_repair),
	    cmocka_unit_test(test_restart_counts_resent),
	    cmocka_unit_test(test_group_ejects_lossy_member),
	    cmocka_unit_test(test_group_hold_cumulative),
	    cmocka_unit_test(test_group_waits_for_held_offers),
	    cmocka_unit_test(test_group_quiet_floor),
	    cmocka_unit_test(test_busy_then_lost_finishes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
