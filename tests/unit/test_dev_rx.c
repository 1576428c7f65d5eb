/*
 * The device's receiver (device-client/rx.h, PROTOCOL.md 9.2) driven with
 * a simulated clock: its rules one by one, 1000 random links (loss,
 * reordering, duplicates, delay, lost acks; fixed seeds) each ending with
 * every fragment held exactly once, and the conformance vectors of
 * tests/vectors/rx (format in tests/vectors/README.md).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "device-client/rx.h"

/* ------------------------------------------------------------ helpers */

/* One fragment through the receiver as the download does it (the
 * assembler takes everything unless refuse). The actions. */
static unsigned arrive(struct dev_rx *rx, uint32_t i, bool group, uint64_t now,
		       enum dev_rx_kind *kind)
{
	enum dev_rx_kind k = dev_rx_arrive(rx, i, group, now);
	if (kind)
		*kind = k;
	if (k == DEV_RX_DUP)
		return dev_rx_decide(rx, now);
	if (k != DEV_RX_NEW)
		return 0;
	dev_rx_hold(rx, i);
	return dev_rx_decide(rx, now);
}

static void check_ack_matches(struct dev_rx *rx)
{
	struct proto_ack a;
	dev_rx_ack(rx, &a);
	for (uint32_t i = 0; i < a.cum; i++)
		assert_true(dev_rx_is_held(rx, i));
	if (a.cum < rx->n)
		assert_false(dev_rx_is_held(rx, a.cum));
	for (uint32_t i = a.cum + 1; i < rx->n && i <= a.cum + 256; i++)
		assert_int_equal(proto_ack_has(&a, i), dev_rx_is_held(rx, i));
	assert_int_equal(rx->unacked, 0);
}

/* ------------------------------------------------------------ rules */

static void test_in_order_acks_every_quarter_window(void **state)
{
	(void)state;
	struct dev_rx rx;
	assert_int_equal(dev_rx_init(&rx, 100, 16, 1000, 0, 0), 0);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(arrive(&rx, i, false, i, NULL), 0);
	/* the 4th of a window of 16 is acked */
	assert_int_equal(arrive(&rx, 3, false, 3, NULL), DEV_RX_ACK);
	check_ack_matches(&rx);
	dev_rx_free(&rx);
}

static void test_delayed_ack_20ms(void **state)
{
	(void)state;
	struct dev_rx rx;
	assert_int_equal(dev_rx_init(&rx, 100, 32, 1000, 0, 1000), 0);
	assert_int_equal(arrive(&rx, 0, false, 1000, NULL), 0);
	assert_int_equal(arrive(&rx, 1, false, 1010, NULL), 0);
	/* due 20 ms after the oldest unacknowledged, not the newest */
	assert_int_equal(dev_rx_next(&rx), 1020);
	assert_int_equal(dev_rx_tick(&rx, 1019), 0);
	assert_int_equal(dev_rx_tick(&rx, 1020), DEV_RX_ACK);
	check_ack_matches(&rx);
	/* nothing unacknowledged: next is the idle ack, 2 s after 1010 */
	assert_int_equal(dev_rx_next(&rx), 1010 + DEV_RX_IDLE_ACK_MIN_MS);
	dev_rx_free(&rx);
}

static void test_gap_and_hole_filled_ack_at_once(void **state)
{
	(void)state;
	struct dev_rx rx;
	assert_int_equal(dev_rx_init(&rx, 100, 64, 1000, 0, 0), 0);
	assert_int_equal(arrive(&rx, 0, false, 0, NULL), 0);
	/* 1 lost: 2, 3, 4 are each a gap (not the cumulative position) */
	for (uint32_t i = 2; i <= 4; i++) {
		assert_int_equal(arrive(&rx, i, false, i, NULL), DEV_RX_ACK);
		check_ack_matches(&rx);
	}
	/* 1 fills the hole: cum jumps from 1 to 5, acked at once */
	assert_int_equal(arrive(&rx, 1, false, 9, NULL), DEV_RX_ACK);
	assert_int_equal(rx.cum, 5);
	check_ack_matches(&rx);
	/* in order again: delayed */
	assert_int_equal(arrive(&rx, 5, false, 10, NULL), 0);
	dev_rx_free(&rx);
}

static void test_duplicates(void **state)
{
	(void)state;
	struct dev_rx rx;
	enum dev_rx_kind k;
	assert_int_equal(dev_rx_init(&rx, 100, 64, 1000, 0, 0), 0);
	assert_int_equal(arrive(&rx, 0, false, 0, NULL), 0);
	check_ack_matches(&rx);
	/* own topic: the sender resent it, so our ack was lost: at once */
	assert_int_equal(arrive(&rx, 0, false, 1, &k), DEV_RX_ACK);
	assert_int_equal(k, DEV_RX_DUP);
	check_ack_matches(&rx);
	/* group topic: another member's repair: the delayed rule */
	assert_int_equal(arrive(&rx, 0, true, 2, &k), 0);
	assert_int_equal(k, DEV_RX_DUP);
	assert_int_equal(dev_rx_next(&rx), 2 + DEV_RX_ACK_DELAY_MS);
	assert_int_equal(rx.stats.frags_dup, 2);
	assert_int_equal(rx.stats.frags_ok, 1);
	dev_rx_free(&rx);
}

static void test_group_ahead_and_range(void **state)
{
	(void)state;
	struct dev_rx rx;
	enum dev_rx_kind k;
	assert_int_equal(dev_rx_init(&rx, 100, 8, 1000, 0, 0), 0);
	assert_int_equal(arrive(&rx, 8, true, 0, &k), 0);
	assert_int_equal(k, DEV_RX_AHEAD);
	assert_false(dev_rx_is_held(&rx, 8));
	/* the same index on our own topic is taken */
	assert_int_equal(arrive(&rx, 8, false, 1, &k), DEV_RX_ACK);
	assert_int_equal(k, DEV_RX_NEW);
	assert_int_equal(arrive(&rx, 100, false, 2, &k), 0);
	assert_int_equal(k, DEV_RX_RANGE);
	dev_rx_free(&rx);
}

/* dev_rx_classify says what dev_rx_arrive will make of a fragment and
 * changes nothing (the test-only loss counts with it: a dropped
 * fragment is a loss to repair only if the receiver would have taken
 * it). Random arrivals, own topic and group, in and beyond the window,
 * duplicates and indexes beyond the transfer. */
static void test_classify_agrees_with_arrive(void **state)
{
	(void)state;
	struct dev_rx rx;
	unsigned seed = 11;
	unsigned seen[DEV_RX_RANGE + 1] = {0};
	assert_int_equal(dev_rx_init(&rx, 200, 16, 1000, 0, 0), 0);
	uint8_t held[(200 + 7) / 8];
	for (uint64_t now = 0; now < 3000 && !dev_rx_all_held(&rx); now++) {
		seed = seed * 1103515245u + 12345u;
		uint32_t i = rx.cum + (seed >> 8) % 40; /* some beyond n */
		bool group = (seed >> 20) & 1;
		struct dev_rx before = rx;
		memcpy(held, rx.held, sizeof(held));
		enum dev_rx_kind c = dev_rx_classify(&rx, i, group);
		assert_memory_equal(&before, &rx, sizeof(rx));
		assert_memory_equal(held, rx.held, sizeof(held));
		enum dev_rx_kind k;
		arrive(&rx, i, group, now, &k);
		assert_int_equal(c, k);
		seen[k]++;
	}
	for (int k = DEV_RX_NEW; k <= DEV_RX_RANGE; k++)
		assert_true(seen[k] > 0); /* every kind was met */
	dev_rx_free(&rx);
}

static void test_unhold_and_refused_ack_at_once(void **state)
{
	(void)state;
	struct dev_rx rx;
	assert_int_equal(dev_rx_init(&rx, 100, 64, 1000, 0, 0), 0);
	for (uint32_t i = 0; i < 10; i++)
		arrive(&rx, i, false, i, NULL);
	check_ack_matches(&rx);
	/* fragment 10 completes a block that fails: 6..10 given back */
	assert_int_equal(dev_rx_arrive(&rx, 10, false, 20), DEV_RX_NEW);
	dev_rx_hold(&rx, 10);
	dev_rx_unhold(&rx, 6, 10);
	assert_int_equal(dev_rx_decide(&rx, 20), DEV_RX_ACK);
	assert_int_equal(rx.cum, 6);
	check_ack_matches(&rx);
	/* no buffer for 6: refused, said at once */
	assert_int_equal(dev_rx_arrive(&rx, 6, false, 21), DEV_RX_NEW);
	assert_int_equal(dev_rx_refused(&rx), DEV_RX_ACK);
	assert_false(dev_rx_is_held(&rx, 6));
	dev_rx_free(&rx);
}

static void test_checkpoint_every(void **state)
{
	(void)state;
	struct dev_rx rx;
	unsigned ckpts = 0;
	assert_int_equal(dev_rx_init(&rx, 100, 8, 10, 0, 0), 0);
	for (uint32_t i = 0; i < 99; i++) {
		unsigned act = arrive(&rx, i, false, i, NULL);
		if (act & DEV_RX_CHECKPOINT) {
			assert_int_equal((i + 1) % 10, 0);
			dev_rx_saved(&rx);
			ckpts++;
		}
		if (act & DEV_RX_ACK)
			check_ack_matches(&rx);
	}
	assert_int_equal(ckpts, 9);
	assert_int_equal(arrive(&rx, 99, false, 99, NULL), DEV_RX_COMPLETE);
	dev_rx_free(&rx);
}

static void test_idle_ack_backoff(void **state)
{
	(void)state;
	struct dev_rx rx;
	uint64_t t = 5000, want = DEV_RX_IDLE_ACK_MIN_MS;
	assert_int_equal(dev_rx_init(&rx, 100, 8, 10, 40, t), 0);
	assert_int_equal(rx.cum, 40); /* a resumed download */
	for (int k = 0; k < 8; k++) {
		uint64_t next = dev_rx_next(&rx);
		assert_int_equal(next - t, want);
		assert_int_equal(dev_rx_tick(&rx, next - 1), 0);
		assert_int_equal(dev_rx_tick(&rx, next), DEV_RX_ACK);
		check_ack_matches(&rx);
		t = next;
		want = want * 2 > DEV_RX_IDLE_ACK_MAX_MS
			   ? DEV_RX_IDLE_ACK_MAX_MS
			   : want * 2;
	}
	assert_int_equal(want, DEV_RX_IDLE_ACK_MAX_MS);
	/* a fragment ends the silence: back to 2 s */
	arrive(&rx, 40, false, t + 1, NULL);
	assert_int_equal(rx.idle_gap, DEV_RX_IDLE_ACK_MIN_MS);
	dev_rx_free(&rx);
}

/* A long disconnection consumes the idle acks' backoff; the connection
 * coming back starts it over, so the next repeat is 2 s away, not 60. */
static void test_link_up_restarts_idle_ack(void **state)
{
	(void)state;
	struct dev_rx rx;
	uint64_t t = 0;
	assert_int_equal(dev_rx_init(&rx, 100, 8, 10, 3, t), 0);
	for (int k = 0; k < 7; k++) {
		t = dev_rx_next(&rx);
		assert_int_equal(dev_rx_tick(&rx, t), DEV_RX_ACK);
	}
	assert_int_equal(dev_rx_next(&rx) - t, DEV_RX_IDLE_ACK_MAX_MS);
	dev_rx_link_up(&rx, t + 100);
	assert_int_equal(dev_rx_next(&rx), t + 100 + DEV_RX_IDLE_ACK_MIN_MS);
	dev_rx_free(&rx);
}

/* ------------------------------------------------------------ a link */

/* xorshift64: fixed seeds, the same run everywhere */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static bool coin(uint64_t *s, unsigned percent)
{
	return rnd(s) % 100 < percent;
}

#define EV_MAX 8192

struct ev {
	uint64_t t;
	bool is_ack;
	uint32_t index; /* a fragment */
	struct proto_ack ack;
};

struct link {
	struct ev ev[EV_MAX];
	int n;
	uint64_t seed;
	unsigned loss, dup, ack_loss, jitter;
};

static void push(struct link *l, const struct ev *e)
{
	assert_true(l->n < EV_MAX);
	l->ev[l->n++] = *e;
}

static int pop_min(struct link *l, uint64_t until)
{
	int best = -1;
	for (int i = 0; i < l->n; i++)
		if (l->ev[i].t <= until &&
		    (best < 0 || l->ev[i].t < l->ev[best].t))
			best = i;
	return best;
}

/* A sender that repeats, every 200 ms, whatever in its window the last
 * ack does not name: crude on purpose (many duplicates), so that every
 * receiver rule is exercised. */
struct sender {
	uint32_t n, window, cum;
	struct proto_ack last;
	uint64_t *sent_at;
};

static void send_frag(struct link *l, uint32_t i, uint64_t now)
{
	if (coin(&l->seed, l->loss))
		return;
	struct ev e = {.t = now + 10 + rnd(&l->seed) % (l->jitter + 1),
		       .index = i};
	push(l, &e);
	if (coin(&l->seed, l->dup)) {
		e.t += 1 + rnd(&l->seed) % 30;
		push(l, &e);
	}
}

static void sender_pump(struct sender *s, struct link *l, uint64_t now)
{
	for (uint32_t i = s->cum; i < s->n && i < s->cum + s->window; i++) {
		if (i != s->cum && s->last.cum == s->cum &&
		    proto_ack_has(&s->last, i))
			continue;
		if (s->sent_at[i] && now - s->sent_at[i] < 200)
			continue;
		s->sent_at[i] = now;
		send_frag(l, i, now);
	}
}

struct tally {
	unsigned holds_total, acks, ckpts, completes;
	uint64_t end_t;
};

/* Checks every decision against the spec's rules while it runs. */
static void run_link(uint64_t seed, struct tally *ty)
{
	struct link *l = calloc(1, sizeof(*l));
	struct dev_rx rx;
	struct sender s = {0};
	assert_non_null(l);
	l->seed = seed * 0x9e3779b97f4a7c15ull + 1;
	s.n = 20 + rnd(&l->seed) % 300;
	s.window = 1 + rnd(&l->seed) % 64;
	l->loss = rnd(&l->seed) % 31;
	l->dup = rnd(&l->seed) % 11;
	l->ack_loss = rnd(&l->seed) % 21;
	l->jitter = rnd(&l->seed) % 60; /* reordering */
	uint32_t every = 1 + rnd(&l->seed) % 50;
	s.sent_at = calloc(s.n, sizeof(*s.sent_at));
	unsigned *holds = calloc(s.n, sizeof(*holds));
	assert_non_null(s.sent_at);
	assert_non_null(holds);
	assert_int_equal(dev_rx_init(&rx, s.n, s.window, every, 0, 0), 0);
	uint64_t now = 0, oldest_unacked = 0;
	uint32_t ckpt_cum = 0;
	bool done = false;
	sender_pump(&s, l, now);
	for (int steps = 0; !done && steps < 200000; steps++) {
		uint64_t tick_at = dev_rx_next(&rx);
		uint64_t pump_at = now + 50;
		int i = pop_min(l, tick_at < pump_at ? tick_at : pump_at);
		unsigned act = 0;
		if (i < 0) { /* the receiver's timer or the sender's */
			now = tick_at < pump_at ? tick_at : pump_at;
			if (now == tick_at)
				act = dev_rx_tick(&rx, now);
			else
				sender_pump(&s, l, now);
		} else {
			struct ev e = l->ev[i];
			l->ev[i] = l->ev[--l->n];
			now = e.t;
			if (e.is_ack) {
				if (e.ack.cum >= s.cum) {
					s.cum = e.ack.cum;
					s.last = e.ack;
				}
				sender_pump(&s, l, now);
				continue;
			}
			uint32_t before = rx.cum, unacked = rx.unacked;
			enum dev_rx_kind k =
			    dev_rx_arrive(&rx, e.index, false, now);
			if (k == DEV_RX_NEW) {
				dev_rx_hold(&rx, e.index);
				holds[e.index]++;
			}
			act = dev_rx_decide(&rx, now);
			if (unacked == 0 && rx.unacked)
				oldest_unacked = now;
			/* the spec's immediate acks */
			if (k == DEV_RX_DUP ||
			    (k == DEV_RX_NEW &&
			     (e.index != before || rx.cum - before > 1)))
				assert_true(act &
					    (DEV_RX_ACK | DEV_RX_COMPLETE));
			if (act & DEV_RX_CHECKPOINT) {
				assert_true(rx.cum - ckpt_cum >= every);
				ckpt_cum = rx.cum;
				dev_rx_saved(&rx);
				ty->ckpts++;
			} else if (!(act & DEV_RX_COMPLETE))
				assert_true(rx.cum - ckpt_cum < every);
		}
		/* no fragment waits more than the delay for its ack */
		if (rx.unacked && !(act & DEV_RX_ACK))
			assert_true(now <=
				    oldest_unacked + DEV_RX_ACK_DELAY_MS);
		if (act & DEV_RX_COMPLETE) {
			ty->completes++;
			done = true;
			act |= DEV_RX_ACK;
		}
		if (act & DEV_RX_ACK) {
			struct ev a = {.is_ack = true};
			dev_rx_ack(&rx, &a.ack);
			assert_int_equal(a.ack.cum, rx.cum);
			ty->acks++;
			a.t = now + 10 + rnd(&l->seed) % (l->jitter + 1);
			if (!coin(&l->seed, l->ack_loss))
				push(l, &a);
		}
	}
	assert_true(done);
	assert_true(dev_rx_all_held(&rx));
	for (uint32_t k = 0; k < s.n; k++)
		assert_int_equal(holds[k], 1); /* each held exactly once */
	ty->holds_total += s.n;
	ty->end_t += now;
	dev_rx_free(&rx);
	free(holds);
	free(s.sent_at);
	free(l);
}

static void test_1000_random_links(void **state)
{
	(void)state;
	struct tally ty = {0};
	for (uint64_t seed = 1; seed <= 1000; seed++)
		run_link(seed, &ty);
	assert_int_equal(ty.completes, 1000);
	print_message("# 1000 links: %u fragments held once each, %u acks, "
		      "%u checkpoints\n",
		      ty.holds_total, ty.acks, ty.ckpts);
}

/* ------------------------------------------------------------ vectors */

static const char *vectors_dir(void)
{
	const char *d = getenv("OTA_VECTORS");
	return d != NULL && d[0] != '\0' ? d : "tests/vectors";
}

/* The next space-separated word of *p into w (at most n-1 bytes). */
static bool word(const char **p, char *w, size_t n)
{
	const char *s = *p + strspn(*p, " \t");
	size_t len = strcspn(s, " \t\r\n");
	if (len == 0 || len >= n)
		return false;
	memcpy(w, s, len);
	w[len] = '\0';
	*p = s + len;
	return true;
}

static uint64_t num(const char *s, const char *where)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || (*end && *end != '-' && *end != ',' && *end != '+'))
		fail_msg("%s: '%s' is not a number", where, s);
	return v;
}

/* "ack=<cum>" or "ack=<cum>+<i>,<i>...": the ack the receiver must send,
 * checked against what dev_rx_ack fills. */
static void check_ack(struct dev_rx *rx, const char *spec, const char *where)
{
	struct proto_ack a;
	dev_rx_ack(rx, &a);
	const char *p = spec + 4;
	uint32_t cum = (uint32_t)num(p, where);
	if (a.cum != cum)
		fail_msg("%s: ack cum %u, expected %u", where, a.cum, cum);
	uint8_t want[PROTO_SACK_MAX] = {0};
	p = strchr(p, '+');
	while (p && *p) {
		uint32_t i = (uint32_t)num(p + 1, where);
		if (i <= cum || i > cum + 8 * PROTO_SACK_MAX)
			fail_msg("%s: sack index %u out of range", where, i);
		want[(i - cum - 1) / 8] |= (uint8_t)(1u << ((i - cum - 1) % 8));
		p = strchr(p + 1, ',');
	}
	if (memcmp(want, a.sack, sizeof(want)) != 0)
		fail_msg("%s: ack sack bits differ from %s", where, spec);
}

/* One event line: "<ms> frag <i> [group] [refuse] [unhold=<a>-<b>]" or
 * "<ms> tick"; then "->" and what must happen. */
static void run_event(struct dev_rx *rx, const char *line, const char *where)
{
	static const char *kinds[] = {"new", "dup", "ahead", "range"};
	char w[64], ev[16];
	const char *p = line;
	unsigned act = 0;
	if (!word(&p, w, sizeof(w)) || !word(&p, ev, sizeof(ev)))
		fail_msg("%s: want '<ms> frag|tick ...'", where);
	uint64_t now = num(w, where);
	const char *kind = NULL;
	if (!strcmp(ev, "frag")) {
		bool group = false, refuse = false;
		uint32_t ua = 0, ub = 0, i;
		bool unhold = false;
		if (!word(&p, w, sizeof(w)))
			fail_msg("%s: frag without an index", where);
		i = (uint32_t)num(w, where);
		while (word(&p, w, sizeof(w)) && strcmp(w, "->")) {
			if (!strcmp(w, "group"))
				group = true;
			else if (!strcmp(w, "refuse"))
				refuse = true;
			else if (!strncmp(w, "unhold=", 7)) {
				unhold = true;
				ua = (uint32_t)num(w + 7, where);
				ub = (uint32_t)num(strchr(w, '-') + 1, where);
			} else
				fail_msg("%s: unknown word '%s'", where, w);
		}
		enum dev_rx_kind k = dev_rx_arrive(rx, i, group, now);
		kind = kinds[k];
		if (k == DEV_RX_NEW && refuse)
			act = dev_rx_refused(rx);
		else if (k == DEV_RX_NEW || k == DEV_RX_DUP) {
			if (k == DEV_RX_NEW)
				dev_rx_hold(rx, i);
			if (unhold)
				dev_rx_unhold(rx, ua, ub);
			act = dev_rx_decide(rx, now);
		}
	} else if (!strcmp(ev, "link")) {
		if (!word(&p, w, sizeof(w)) || strcmp(w, "->"))
			fail_msg("%s: link takes no arguments", where);
		dev_rx_link_up(rx, now); /* the caller acks: section 7 */
	} else if (!strcmp(ev, "tick")) {
		if (!word(&p, w, sizeof(w)) || strcmp(w, "->"))
			fail_msg("%s: tick takes no arguments", where);
		act = dev_rx_tick(rx, now);
	} else
		fail_msg("%s: unknown event '%s'", where, ev);
	bool said_ack = false, said_ckpt = false, said_done = false;
	while (word(&p, w, sizeof(w))) {
		if (kind && !strcmp(w, kind)) {
			kind = NULL;
		} else if (!strncmp(w, "ack=", 4)) {
			if (!(act & DEV_RX_ACK))
				fail_msg("%s: no ack, expected %s", where, w);
			check_ack(rx, w, where);
			said_ack = true;
		} else if (!strcmp(w, "checkpoint")) {
			said_ckpt = true;
			dev_rx_saved(rx);
		} else if (!strcmp(w, "complete")) {
			said_done = true;
		} else if (strcmp(w, "none") != 0)
			fail_msg("%s: unexpected '%s'", where, w);
	}
	if (kind)
		fail_msg("%s: the fragment was '%s'", where, kind);
	if ((act & DEV_RX_ACK) && !said_ack)
		fail_msg("%s: an ack was sent, none expected", where);
	if (!!(act & DEV_RX_CHECKPOINT) != said_ckpt)
		fail_msg("%s: checkpoint %s", where,
			 said_ckpt ? "expected, not asked"
				   : "asked, not expected");
	if (!!(act & DEV_RX_COMPLETE) != said_done)
		fail_msg("%s: complete %s", where,
			 said_done ? "expected" : "not expected");
}

/* "transfer n=<N> window=<W> checkpoint=<C> [held=<H>] [start=<ms>]" */
static void run_header(struct dev_rx *rx, const char *line, const char *where)
{
	uint64_t n = 0, wnd = 0, c = 0, h = 0, start = 0;
	char w[64];
	const char *p = line;
	word(&p, w, sizeof(w));
	while (word(&p, w, sizeof(w))) {
		uint64_t *v = !strncmp(w, "n=", 2)	       ? &n
			      : !strncmp(w, "window=", 7)      ? &wnd
			      : !strncmp(w, "checkpoint=", 11) ? &c
			      : !strncmp(w, "held=", 5)	       ? &h
			      : !strncmp(w, "start=", 6)       ? &start
							       : NULL;
		if (!v)
			fail_msg("%s: unknown setting '%s'", where, w);
		*v = num(strchr(w, '=') + 1, where);
	}
	if (n == 0 || wnd == 0 || c == 0)
		fail_msg("%s: transfer needs n, window and checkpoint", where);
	assert_int_equal(dev_rx_init(rx, (uint32_t)n, (uint32_t)wnd,
				     (uint32_t)c, (uint32_t)h, start),
			 0);
}

static void run_vector(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512], where[600];
	struct dev_rx rx = {0};
	bool started = false;
	int lineno = 0;
	if (!f)
		fail_msg("cannot open %s", path);
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		if (line[strspn(line, " \t\r\n")] == '\0')
			continue;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (!strncmp(line, "transfer", 8)) {
			dev_rx_free(&rx);
			run_header(&rx, line, where);
			started = true;
		} else if (!started)
			fail_msg("%s: the first line must be 'transfer'",
				 where);
		else
			run_event(&rx, line, where);
	}
	fclose(f);
	dev_rx_free(&rx);
	if (!started)
		fail_msg("%s: empty", path);
}

static void test_rx_vectors(void **state)
{
	(void)state;
	char dir[512], path[1024];
	int n = 0;
	snprintf(dir, sizeof(dir), "%s/rx", vectors_dir());
	DIR *d = opendir(dir);
	if (!d)
		fail_msg("cannot open %s", dir);
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		size_t len = strlen(e->d_name);
		if (len < 4 || strcmp(e->d_name + len - 3, ".rx") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		run_vector(path);
		n++;
	}
	closedir(d);
	assert_true(n >= 5);
	print_message("# %d receiver vectors\n", n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_in_order_acks_every_quarter_window),
	    cmocka_unit_test(test_delayed_ack_20ms),
	    cmocka_unit_test(test_gap_and_hole_filled_ack_at_once),
	    cmocka_unit_test(test_duplicates),
	    cmocka_unit_test(test_group_ahead_and_range),
	    cmocka_unit_test(test_classify_agrees_with_arrive),
	    cmocka_unit_test(test_unhold_and_refused_ack_at_once),
	    cmocka_unit_test(test_checkpoint_every),
	    cmocka_unit_test(test_idle_ack_backoff),
	    cmocka_unit_test(test_link_up_restarts_idle_ack),
	    cmocka_unit_test(test_1000_random_links),
	    cmocka_unit_test(test_rx_vectors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
