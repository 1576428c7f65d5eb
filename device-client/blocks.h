/*
 * The block assembler: the transfer's bytes -> blocks checked against the
 * signed block table (PROTOCOL.md 4.4) -> the block sink.
 *
 *   receiver (rx.h) --indexes--> assembler (this) --checked blocks-->
 *   block sink (struct dev_blk_sink; today the installer's slot writer,
 *   dev__slot_sink in install.c)
 *
 * The download (download.c) hands each fragment the receiver calls NEW
 * to dev_blk_take; the table fragments go to the table file, payload
 * bytes are copied into block buffers. Once the receiver holds the
 * fragment, dev_blk_held checks what became complete (the table, then
 * any block whose fragments are all held) and gives each block that
 * matches its table entry to the sink, exactly once. A block that fails
 * its check is dropped: its fragments, including one it shares with a
 * neighbour block, are given back to the receiver (dev_rx_unhold) and
 * asked for again; the neighbour keeps the bytes it has.
 *
 * THE BLOCK SINK CONTRACT (what a decoder between this and the
 * installer must honour): write(ctx, off, data, len) receives the
 * payload bytes [off, off + len), always whole consecutive blocks that
 * passed their check, each block once, in any block order (lowest
 * blocks first in practice, but a later block may come before an
 * earlier one). data is borrowed for the call. It returns 0, or -1 with
 * a reason in why (the update then fails). After a restart the sink's
 * blocks [0, wprefix) are taken as written (the checkpoint says so).
 *
 * Calls go one way: download -> assembler -> {receiver, sink}. The
 * assembler reads the table file it is given; it logs a refused block
 * (with the `who` prefix) and never fails the update itself: a -1 says
 * why, the download fails it.
 */
#ifndef OTA_DEV_BLOCKS_H
#define OTA_DEV_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device-client/rx.h"
#include "proto/proto.h"

struct dev_blk_sink {
	void *ctx;
	int (*write)(void *ctx, uint64_t off, const uint8_t *data, size_t len,
		     char *why, size_t n);
};

struct dev_blk_stats {
	uint64_t frags_nobuf;	 /* no block buffer free: dropped, resent */
	uint64_t blocks_evicted; /* gave its buffer to a lower block */
	uint64_t blocks_ok;	 /* checked against the table and written */
	uint64_t blocks_bad;	 /* failed the check: dropped, re-requested */
	uint64_t tables_bad;	 /* block tables that failed the manifest */
};

/* A block being assembled in memory until it can be checked. */
struct dev_blockbuf {
	uint64_t block; /* which block, while live */
	bool live;	/* assembling `block` (data is kept for reuse) */
	uint8_t *data;	/* block_size bytes, allocated on first use */
};

struct dev_blocks {
	const struct proto_manifest *m; /* borrowed, for the whole download */
	uint32_t fragment_size, table_fragments, fragments;
	int table_fd;	  /* borrowed: the table file, beside the slot */
	bool table_ok;	  /* complete and matching the manifest */
	uint8_t *table;	  /* the checked table, in memory when small */
	uint64_t nblocks; /* blocks in the payload */
	uint64_t wprefix; /* blocks [0, wprefix) are in the sink */
	uint8_t *written; /* bitmap, one bit per block in the sink */
	struct dev_blockbuf *bufs;
	uint32_t nbufs;
	uint32_t *bad; /* failed checks in this update: the caller's */
	struct dev_blk_sink sink;
	struct dev_rx *rx; /* borrowed: gives fragments back to it */
	const char *who;   /* log prefix, e.g. "device=d1 release=..." */
	struct dev_blk_stats stats;
};

/* Set up for the offer (fragment_size, window, fragment counts); *bad
 * counts the failed checks of this update (kept by the caller across
 * restarts of the download). The caller then sets table_fd, sink, rx and
 * who. 0, or -1 when out of memory (k is then empty). */
int dev_blk_init(struct dev_blocks *k, const struct proto_manifest *m,
		 uint32_t fragment_size, uint32_t table_fragments,
		 uint32_t fragments, uint32_t window, uint32_t *bad);
/* A resumed download: blocks [0, wprefix) are in the sink already. */
void dev_blk_resume(struct dev_blocks *k, uint64_t wprefix);
void dev_blk_free(struct dev_blocks *k);

/* The payload blocks that hold the bytes of `bytes` payload bytes. */
uint64_t dev_blk_covering(const struct proto_manifest *m, uint64_t bytes);

/* Does the table file hash to what the manifest signed? */
bool dev_blk_table_check(struct dev_blocks *k);
/* The table has been checked (now or before a restart): use it. */
void dev_blk_table_ready(struct dev_blocks *k);

/* Take the bytes of transfer fragment `index` (not held yet). 1: taken
 * (hold it); 0: not taken (a block failed, or no buffer now); -1: the
 * update must fail (why). */
int dev_blk_take(struct dev_blocks *k, uint32_t index, const uint8_t *data,
		 size_t len, char *why, size_t n);
/* Fragment `index` is now held: check what it completed. 0, or -1: the
 * update must fail (why). */
int dev_blk_held(struct dev_blocks *k, uint32_t index, size_t len, char *why,
		 size_t n);

/* Blocks rebuilt elsewhere (a decoded frame, PROTOCOL.md 6.4): len bytes
 * of payload from block b on, whole blocks or up to the image's end. All
 * are checked against the table first; only when every one matches are
 * they given to the sink. 1: written; 0: block *bad failed (counted,
 * nothing written); -1: the sink failed (why). */
int dev_blk_put(struct dev_blocks *k, uint64_t b, const uint8_t *data,
		size_t len, uint64_t *bad, char *why, size_t n);

/* Leading transfer fragments that are durable (given cum, the
 * receiver's): table fragments as written, payload fragments once every
 * block they touch is in the sink. */
uint32_t dev_blk_durable(const struct dev_blocks *k, uint32_t cum);
/* Every block is in the sink. */
bool dev_blk_all_written(const struct dev_blocks *k);

#endif
