/*
 * The receiver: which fragments of a transfer are held, when to
 * acknowledge, when to save progress (PROTOCOL.md 9.2 "The receiver").
 *
 * Pure logic over fragment indexes: no MQTT, no libuv, no files, no
 * bytes. The clock is passed in (milliseconds, any monotonic origin), so
 * tests/unit/test_dev_rx.c and the vectors in tests/vectors/rx drive it
 * with a simulated one.
 *
 * Where it sits: the download (download.c) gives it every arriving
 * fragment's index. For a new one it asks the block assembler (blocks.h)
 * to take the bytes; only a fragment the assembler took is held
 * (dev_rx_hold). The assembler may later give fragments back
 * (dev_rx_unhold: a block failed its check). dev_rx_decide then says
 * what the download must do: ack now, save a checkpoint, finish. The
 * receiver calls nothing: every call goes download -> receiver.
 *
 * One call sequence per arriving fragment:
 *   k = dev_rx_arrive(rx, index, from_group, now);
 *   NEW: the assembler takes it? dev_rx_hold(rx, index) : dev_rx_refused(rx)
 *   (the assembler may call dev_rx_unhold)
 *   act = dev_rx_decide(rx, now);  (for NEW and DUP)
 * and on a timer at dev_rx_next(rx): act = dev_rx_tick(rx, now).
 */
#ifndef OTA_DEV_RX_H
#define OTA_DEV_RX_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/proto.h"

/* PROTOCOL.md 9.2: the delayed ack, and the repeated ack while nothing
 * arrives (doubling from MIN to MAX). */
#define DEV_RX_ACK_DELAY_MS 20
#define DEV_RX_IDLE_ACK_MIN_MS 2000
#define DEV_RX_IDLE_ACK_MAX_MS 60000

enum dev_rx_kind {
	DEV_RX_NEW,   /* not held yet: offer it to the assembler */
	DEV_RX_DUP,   /* held already */
	DEV_RX_AHEAD, /* a group's fragment beyond our window: ignored */
	DEV_RX_RANGE, /* index beyond the transfer: ignored */
};

/* What the caller must do, as bits of dev_rx_decide / dev_rx_tick. */
#define DEV_RX_ACK 1u	     /* send an ack now (dev_rx_ack) */
#define DEV_RX_CHECKPOINT 2u /* make progress durable (dev_rx_saved) */
#define DEV_RX_COMPLETE 4u   /* every fragment is held */

struct dev_rx_stats {
	uint64_t frags_ok, frags_dup, frags_ahead, frags_refused, acks;
};

struct dev_rx {
	uint32_t n;	     /* fragments in the transfer (table + payload) */
	uint32_t window;     /* the offer's window */
	uint32_t ckpt_every; /* cumulative fragments between checkpoints */
	uint8_t *held;	     /* bitmap, n bits; owned */
	uint32_t cum;	     /* fragments [0, cum) are held */
	uint32_t unacked;    /* arrivals since the last ack */
	uint32_t since_ckpt; /* cum's advance since the last checkpoint */
	bool ack_armed;	     /* a delayed ack is due at ack_due */
	uint64_t ack_due;
	uint64_t last_rx;  /* last arrival (or idle ack) */
	uint64_t idle_gap; /* repeat the ack after this much silence */
	/* the arrival being handled */
	uint32_t a_index, a_before;
	enum dev_rx_kind a_kind;
	bool a_group, a_dropped;
	/* PROTOCOL.md 9, giving fragments back: cum as the last ack said it
	 * (acked_cum), and the cum to announce before the ack that gives
	 * back fragments the sender never saw acknowledged (0: none). */
	uint32_t acked_cum, announce_cum;
	struct dev_rx_stats stats;
};

/* Fragments [0, prefix) are held already (a resumed download). window
 * and ckpt_every of 0 are taken as 1. 0, or -1 when out of memory (rx
 * is then empty; dev_rx_free is still safe). */
int dev_rx_init(struct dev_rx *rx, uint32_t n, uint32_t window,
		uint32_t ckpt_every, uint32_t prefix, uint64_t now);
void dev_rx_free(struct dev_rx *rx);

bool dev_rx_is_held(const struct dev_rx *rx, uint32_t i);
bool dev_rx_all_held(const struct dev_rx *rx);

/* What dev_rx_arrive would make of this fragment, changing nothing. */
enum dev_rx_kind dev_rx_classify(const struct dev_rx *rx, uint32_t index,
				 bool from_group);
/* A fragment of this transfer arrived (its tag and length are checked
 * by the caller). Any arrival ends the silence of the idle ack. */
enum dev_rx_kind dev_rx_arrive(struct dev_rx *rx, uint32_t index,
			       bool from_group, uint64_t now);
/* The NEW fragment of the current arrival was taken: it is held. */
void dev_rx_hold(struct dev_rx *rx, uint32_t index);
/* The NEW fragment was not taken (no buffer, or its block failed): it
 * stays missing; returns DEV_RX_ACK (say what we lack at once). */
unsigned dev_rx_refused(struct dev_rx *rx);
/* Give fragments [first, last] back (their block failed its check, or
 * lost its buffer): they are asked for again. */
void dev_rx_unhold(struct dev_rx *rx, uint32_t first, uint32_t last);
/* After a NEW fragment was held, or a DUP arrived: what to do. */
unsigned dev_rx_decide(struct dev_rx *rx, uint64_t now);

/* The connection (re)started: the idle ack counts its silence from now,
 * from the shortest gap again (the caller acks at once anyway). */
void dev_rx_link_up(struct dev_rx *rx, uint64_t now);

/* When dev_rx_tick next has something to do (UINT64_MAX: never). */
uint64_t dev_rx_next(const struct dev_rx *rx);
/* The delayed ack or the idle ack is due: DEV_RX_ACK, else 0. */
unsigned dev_rx_tick(struct dev_rx *rx, uint64_t now);

/* Fill the ack (cum and selective bits; the caller sets the tag) and
 * count it as sent: nothing is unacknowledged after it. */
void dev_rx_ack(struct dev_rx *rx, struct proto_ack *a);
/* A checkpoint was written. */
void dev_rx_saved(struct dev_rx *rx);

#endif
