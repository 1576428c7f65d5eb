/*
 * The decoder of an encoded payload (PROTOCOL.md 6.4): zstd frames, or a
 * delta from the image in the active slot, between the receiver and the
 * installer.
 *
 *   receiver (rx.h) --payload fragments, any order--> decoder (this)
 *   --in order--> proto_zdec (one frame at a time) --reconstructed
 *   blocks--> assembler (dev_blk_put: each checked against the signed
 *   table, then the block sink, i.e. the installer's slot writer)
 *
 * The block table still travels in the table fragments and goes through
 * the assembler as for a full image. Payload fragments that arrive ahead
 * of the decoder wait in a ring of at most DEV_Z_RING_MAX bytes (a
 * window's worth or less); one beyond it is not taken (asked for again).
 *
 * A frame that does not decode, or reconstructs a block that fails its
 * check, is dropped whole: none of its blocks is written, its fragments
 * (and those waiting in the ring) are given back to the receiver, and
 * decoding restarts at the frame's first byte. A frame that fails twice
 * with the very same bytes was sent that way (a wrong or hostile delta,
 * not a damaged fragment): the update fails with an error naming it.
 *
 * Memory: the ring, plus proto_zdec's bound (one frame in, one out),
 * whatever the payload says. The base is borrowed (a read-only mapping).
 */
#ifndef OTA_DEV_ZRX_H
#define OTA_DEV_ZRX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device-client/blocks.h"
#include "device-client/rx.h"
#include "proto/proto.h"

#define DEV_Z_RING_MAX (2u << 20)

struct dev_z {
	struct proto_zdec *z;
	struct dev_blocks *blk; /* borrowed: table, sink */
	struct dev_rx *rx;	/* borrowed: fragments given back */
	uint32_t t, fs;		/* table fragments, fragment size */
	uint32_t nfrags;	/* payload fragments */
	uint64_t payload_size;
	uint8_t *ring;	    /* slots x fs bytes */
	uint32_t *ring_idx; /* transfer index held in the slot, or UINT32_MAX */
	uint32_t *ring_len;
	uint32_t slots;
	uint32_t next; /* transfer index of the next fragment to feed */
	uint32_t skip; /* bytes of it before the frame being decoded */
	uint64_t zoff; /* payload offset of the first unwritten frame */
	uint64_t zimg; /* its image offset */
	bool fail_set; /* the last failed frame: where, and its bytes */
	uint64_t fail_off;
	uint8_t fail_md[PROTO_SHA256_LEN];
	uint64_t frames_ok, frames_bad;
	const char *who; /* log prefix */
};

/* Decode payload_size bytes of payload from (zoff, zimg) on: a fresh
 * download (0, 0) or a resumed one (the checkpoint's). base: the delta's
 * base (NULL for zstd). 0, or -1 with why. */
int dev_z_init(struct dev_z *zz, struct dev_blocks *blk, struct dev_rx *rx,
	       const uint8_t *base, size_t base_len, uint64_t payload_size,
	       uint32_t window, uint64_t zoff, uint64_t zimg, char *why,
	       size_t n);
void dev_z_free(struct dev_z *zz);
/* The transfer index decoding resumes at (fragments before it held). */
uint32_t dev_z_first(const struct dev_z *zz);
/* Take payload fragment `index` (not held). 1 taken (hold it), 0 not. */
int dev_z_take(struct dev_z *zz, uint32_t index, const uint8_t *data,
	       size_t len);
/* Feed what is in order to the decoder (once the table is checked) and
 * write what it reconstructs. 0, or -1: the update must fail (why). */
int dev_z_pump(struct dev_z *zz, char *why, size_t n);
/* Transfer fragments that are durable once the slot is synced. */
uint32_t dev_z_durable(const struct dev_z *zz);

#endif
