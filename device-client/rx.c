/* The receiver's decisions (PROTOCOL.md 9.2): pure, see rx.h. */
#include "device-client/rx.h"

#include <stdlib.h>
#include <string.h>

int dev_rx_init(struct dev_rx *rx, uint32_t n, uint32_t window,
		uint32_t ckpt_every, uint32_t prefix, uint64_t now)
{
	memset(rx, 0, sizeof(*rx));
	rx->held = calloc((size_t)n / 8 + 1, 1);
	if (!rx->held)
		return -1;
	rx->n = n;
	rx->window = window ? window : 1;
	rx->ckpt_every = ckpt_every ? ckpt_every : 1;
	if (prefix > n)
		prefix = n;
	for (uint32_t i = 0; i < prefix; i++)
		rx->held[i >> 3] |= (uint8_t)(1u << (i & 7));
	rx->cum = prefix;
	rx->last_rx = now;
	rx->idle_gap = DEV_RX_IDLE_ACK_MIN_MS;
	return 0;
}

void dev_rx_free(struct dev_rx *rx)
{
	free(rx->held);
	rx->held = NULL;
	rx->n = 0;
}

bool dev_rx_is_held(const struct dev_rx *rx, uint32_t i)
{
	return i < rx->n && (rx->held[i >> 3] & (1u << (i & 7)));
}

bool dev_rx_all_held(const struct dev_rx *rx)
{
	return rx->held && rx->cum == rx->n;
}

enum dev_rx_kind dev_rx_classify(const struct dev_rx *rx, uint32_t index,
				 bool from_group)
{
	if (index >= rx->n)
		return DEV_RX_RANGE;
	/* The group went on without us (we left it): the gateway sends
	 * this on our own topic when our window gets there. */
	if (from_group && index >= rx->cum + rx->window)
		return DEV_RX_AHEAD;
	return dev_rx_is_held(rx, index) ? DEV_RX_DUP : DEV_RX_NEW;
}

enum dev_rx_kind dev_rx_arrive(struct dev_rx *rx, uint32_t index,
			       bool from_group, uint64_t now)
{
	rx->last_rx = now;
	rx->idle_gap = DEV_RX_IDLE_ACK_MIN_MS;
	rx->a_index = index;
	rx->a_before = rx->cum;
	rx->a_group = from_group;
	rx->a_dropped = false;
	rx->a_kind = dev_rx_classify(rx, index, from_group);
	if (rx->a_kind == DEV_RX_AHEAD)
		rx->stats.frags_ahead++;
	else if (rx->a_kind == DEV_RX_DUP) {
		rx->stats.frags_dup++;
		rx->unacked++;
	}
	return rx->a_kind;
}

void dev_rx_hold(struct dev_rx *rx, uint32_t index)
{
	if (index >= rx->n || dev_rx_is_held(rx, index))
		return;
	rx->held[index >> 3] |= (uint8_t)(1u << (index & 7));
	rx->stats.frags_ok++;
	rx->unacked++;
	while (rx->cum < rx->n && dev_rx_is_held(rx, rx->cum))
		rx->cum++;
}

unsigned dev_rx_refused(struct dev_rx *rx)
{
	rx->stats.frags_refused++;
	return DEV_RX_ACK;
}

void dev_rx_unhold(struct dev_rx *rx, uint32_t first, uint32_t last)
{
	if (first >= rx->n)
		return;
	if (last >= rx->n)
		last = rx->n - 1;
	for (uint32_t k = first; k <= last; k++)
		rx->held[k >> 3] &= (uint8_t) ~(1u << (k & 7));
	/* Held up to cum but not yet acknowledged that far: the sender takes
	 * them for lost in flight, not given back, and would wait for its
	 * timeouts; the next ack first names them (PROTOCOL.md 9). */
	/* (At most n - 1: an ack of every fragment ends the transfer.) */
	uint32_t said = rx->cum < rx->n ? rx->cum : rx->n - 1;
	if (said > first && said > rx->acked_cum && said > rx->announce_cum)
		rx->announce_cum = said;
	if (rx->cum > first)
		rx->cum = first;
	rx->a_dropped = true;
}

/* In order and no hole filled: ack every window/4 fragments, else at
 * most DEV_RX_ACK_DELAY_MS after the oldest unacknowledged one. */
static unsigned delayed(struct dev_rx *rx, uint64_t now)
{
	uint32_t every = rx->window / 4 ? rx->window / 4 : 1;
	if (rx->unacked >= every)
		return DEV_RX_ACK;
	if (!rx->ack_armed) {
		rx->ack_armed = true;
		rx->ack_due = now + DEV_RX_ACK_DELAY_MS;
	}
	return 0;
}

unsigned dev_rx_decide(struct dev_rx *rx, uint64_t now)
{
	if (rx->a_kind == DEV_RX_DUP) {
		if (dev_rx_all_held(rx))
			return DEV_RX_COMPLETE;
		/* On our own topic the sender resent it because it thinks we
		 * lack it: our ack was lost, so say it again at once. On the
		 * group topic it is another member's repair: nothing to say. */
		return rx->a_group ? delayed(rx, now) : DEV_RX_ACK;
	}
	if (rx->a_kind != DEV_RX_NEW)
		return 0;
	uint32_t before = rx->a_before;
	if (rx->a_dropped || rx->cum < before)
		return DEV_RX_ACK; /* we gave fragments back: say which */
	rx->since_ckpt += rx->cum - before;
	if (rx->cum == rx->n)
		return DEV_RX_COMPLETE;
	unsigned act = rx->since_ckpt >= rx->ckpt_every ? DEV_RX_CHECKPOINT : 0;
	/* A gap (the fragment is not the cumulative position `before`) or
	 * a hole filled (cum moved past fragments held before it): the
	 * sender must learn of the loss, or of the repair, at once. */
	if (rx->a_index != before || rx->cum - before > 1)
		return act | DEV_RX_ACK;
	return act | delayed(rx, now);
}

void dev_rx_link_up(struct dev_rx *rx, uint64_t now)
{
	/* Without this, the silence of a long disconnection (when the
	 * repeated acks could not be sent) would leave the next one up to
	 * 60 s away after the ack of the reconnection, and that one may be
	 * lost too. */
	rx->last_rx = now;
	rx->idle_gap = DEV_RX_IDLE_ACK_MIN_MS;
}

uint64_t dev_rx_next(const struct dev_rx *rx)
{
	if (!rx->held)
		return UINT64_MAX;
	uint64_t idle = rx->last_rx + rx->idle_gap;
	return rx->ack_armed && rx->ack_due < idle ? rx->ack_due : idle;
}

unsigned dev_rx_tick(struct dev_rx *rx, uint64_t now)
{
	unsigned act = 0;
	if (!rx->held)
		return 0;
	if (rx->ack_armed && now >= rx->ack_due) {
		rx->ack_armed = false;
		if (rx->unacked)
			act = DEV_RX_ACK;
	}
	if (now - rx->last_rx >= rx->idle_gap) {
		/* Nothing came: our last ack (QoS 0) may be lost. */
		act = DEV_RX_ACK;
		rx->last_rx = now;
		rx->idle_gap = rx->idle_gap * 2 > DEV_RX_IDLE_ACK_MAX_MS
				   ? DEV_RX_IDLE_ACK_MAX_MS
				   : rx->idle_gap * 2;
	}
	return act;
}

void dev_rx_ack(struct dev_rx *rx, struct proto_ack *a)
{
	memset(a, 0, sizeof(*a));
	a->cum = rx->cum;
	for (uint32_t b = 0; b < PROTO_SACK_MAX * 8; b++) {
		uint32_t i = rx->cum + 1 + b;
		if (i >= rx->n)
			break;
		if (dev_rx_is_held(rx, i)) {
			a->sack[b / 8] |= (uint8_t)(1u << (b % 8));
			a->sack_len = (uint8_t)(b / 8 + 1);
		}
	}
	rx->unacked = 0;
	rx->ack_armed = false;
	rx->acked_cum = rx->cum;
	rx->announce_cum = 0;
	rx->stats.acks++;
}

void dev_rx_saved(struct dev_rx *rx) { rx->since_ckpt = 0; }
