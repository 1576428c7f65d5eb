/* The block assembler: fragments -> checked blocks -> the sink (blocks.h). */
#include "device-client/blocks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

/* Failed block checks allowed per update: more than the package has blocks
 * (plus a margin) means the data is being corrupted or forged for good. */
#define BAD_BLOCKS_MAX(k) ((k)->nblocks + 64)
#define TABLE_CACHE_MAX (64u << 10) /* tables up to this stay in memory */

int dev_blk_init(struct dev_blocks *k, const struct proto_manifest *m,
		 uint32_t fragment_size, uint32_t table_fragments,
		 uint32_t fragments, uint32_t window, uint32_t *bad)
{
	uint32_t fs = fragment_size, bs = m->block_size;
	k->m = m;
	k->fragment_size = fs;
	k->table_fragments = table_fragments;
	k->fragments = fragments;
	k->table_ok = false;
	k->table = NULL;
	k->nblocks = proto_block_count(m);
	k->bad = bad;
	k->table_fd = -1;
	/* Enough buffers for every block a window of fragments can touch
	 * (>= one fragment's worth plus two partial blocks), within 1 MiB
	 * or two blocks. */
	uint64_t span = (uint64_t)window * fs / bs + 2;
	uint64_t cap = ((1u << 20) > 2 * bs ? (1u << 20) : 2 * bs) / bs;
	k->nbufs = (uint32_t)(span < cap ? span : cap);
	if (k->nbufs < (uint64_t)fs / bs + 2)
		k->nbufs = fs / bs + 2;
	k->written = calloc(k->nblocks / 8 + 1, 1);
	k->bufs = calloc(k->nbufs, sizeof(*k->bufs));
	if (!k->written || !k->bufs) {
		dev_blk_free(k);
		return -1;
	}
	k->wprefix = 0;
	return 0;
}

void dev_blk_resume(struct dev_blocks *k, uint64_t wprefix)
{
	if (wprefix > k->nblocks)
		wprefix = k->nblocks;
	k->wprefix = wprefix;
	for (uint64_t b = 0; b < wprefix; b++)
		k->written[b >> 3] |= (uint8_t)(1u << (b & 7));
}

void dev_blk_free(struct dev_blocks *k)
{
	for (uint32_t i = 0; k->bufs && i < k->nbufs; i++)
		free(k->bufs[i].data);
	free(k->bufs);
	k->bufs = NULL;
	free(k->written);
	k->written = NULL;
	free(k->table);
	k->table = NULL;
	k->table_ok = false;
}

uint64_t dev_blk_covering(const struct proto_manifest *m, uint64_t bytes)
{
	if (bytes > m->size)
		bytes = m->size;
	return (bytes + m->block_size - 1) / m->block_size;
}

static bool is_written(const struct dev_blocks *k, uint64_t b)
{
	return k->written[b >> 3] & (1u << (b & 7));
}

bool dev_blk_all_written(const struct dev_blocks *k)
{
	return k->written && k->wprefix == k->nblocks;
}

uint32_t dev_blk_durable(const struct dev_blocks *k, uint32_t cum)
{
	uint32_t t = k->table_fragments;
	if (!k->table_ok)
		return cum < t ? cum : t;
	if (k->wprefix >= k->nblocks)
		return t + k->fragments;
	uint64_t f = k->wprefix * k->m->block_size / k->fragment_size;
	return t + (uint32_t)(f < k->fragments ? f : k->fragments);
}

bool dev_blk_table_check(struct dev_blocks *k)
{
	uint8_t md[PROTO_SHA256_LEN];
	uint64_t len = 0;
	char err[128];
	if (lseek(k->table_fd, 0, SEEK_SET) != 0 ||
	    util_sha256_fd(k->table_fd, md, &len, err, sizeof(err)) != 0 ||
	    len != k->nblocks * PROTO_SHA256_LEN ||
	    memcmp(md, k->m->blocks, sizeof(md)) != 0)
		return false;
	return true;
}

/* Make the table durable once (checkpoints no longer sync it), and keep
 * it in memory when small (packages up to 8 MiB). */
void dev_blk_table_ready(struct dev_blocks *k)
{
	size_t len = (size_t)k->nblocks * PROTO_SHA256_LEN;
	k->table_ok = true;
	if (fdatasync(k->table_fd) != 0)
		log_warn("%s fdatasync", k->who);
	if (len <= TABLE_CACHE_MAX && (k->table = malloc(len)) != NULL &&
	    pread(k->table_fd, k->table, len, 0) != (ssize_t)len) {
		free(k->table);
		k->table = NULL;
	}
}

/* Payload fragments (0-based) that hold bytes of block b. */
static void block_frags(const struct dev_blocks *k, uint64_t b, uint32_t *first,
			uint32_t *last)
{
	uint64_t off = b * k->m->block_size;
	*first = (uint32_t)(off / k->fragment_size);
	*last =
	    (uint32_t)((off + proto_block_len(k->m, b) - 1) / k->fragment_size);
}

/* Drop block b's fragments: they are asked for again. */
static void unhold_block(struct dev_blocks *k, uint64_t b)
{
	uint32_t first, last, t = k->table_fragments;
	block_frags(k, b, &first, &last);
	dev_rx_unhold(k->rx, t + first, t + last);
}

/* Check block b (its bytes at data) against its table entry. 1: it
 * matches; 0: it does not (counted and logged; the caller drops its
 * fragments); -1: too many failures, the update must fail. */
static int block_check(struct dev_blocks *k, uint64_t b, const uint8_t *data,
		       char *why, size_t n)
{
	uint8_t want[PROTO_SHA256_LEN], got[PROTO_SHA256_LEN];
	bool have = true;
	if (k->table)
		memcpy(want, k->table + b * PROTO_SHA256_LEN, sizeof(want));
	else
		have = pread(k->table_fd, want, sizeof(want),
			     (off_t)(b * PROTO_SHA256_LEN)) == sizeof(want);
	if (have && proto_sha256(data, proto_block_len(k->m, b), got) == 0 &&
	    memcmp(want, got, sizeof(got)) == 0)
		return 1;
	uint32_t first, last, t = k->table_fragments;
	block_frags(k, b, &first, &last);
	k->stats.blocks_bad++;
	log_warnx("%s block %llu of %llu does not match the signed block "
		  "table: dropped, fragments %u-%u asked for again",
		  k->who, (unsigned long long)b, (unsigned long long)k->nblocks,
		  t + first, t + last);
	if (++*k->bad > BAD_BLOCKS_MAX(k)) {
		snprintf(why, n,
			 "%u blocks failed their digest check: the "
			 "data is being corrupted or forged",
			 *k->bad);
		return -1;
	}
	return 0;
}

static int sink_put(struct dev_blocks *k, uint64_t b, uint64_t n,
		    const uint8_t *buf, uint64_t base, char *why, size_t wn);

int dev_blk_put(struct dev_blocks *k, uint64_t b, const uint8_t *data,
		size_t len, uint64_t *bad, char *why, size_t n)
{
	uint32_t bs = k->m->block_size;
	uint64_t nb = (len + bs - 1) / bs;
	if (!k->table_ok || b + nb > k->nblocks) {
		snprintf(why, n, "blocks %llu.. are not in the image",
			 (unsigned long long)b);
		return -1;
	}
	for (uint64_t i = 0; i < nb; i++) {
		uint8_t want[PROTO_SHA256_LEN], got[PROTO_SHA256_LEN];
		bool have = true;
		if (k->table)
			memcpy(want, k->table + (b + i) * PROTO_SHA256_LEN,
			       sizeof(want));
		else
			have = pread(k->table_fd, want, sizeof(want),
				     (off_t)((b + i) * PROTO_SHA256_LEN)) ==
			       sizeof(want);
		if (!have ||
		    proto_sha256(data + i * bs, proto_block_len(k->m, b + i),
				 got) != 0 ||
		    memcmp(want, got, sizeof(got)) != 0) {
			k->stats.blocks_bad++;
			*bad = b + i;
			return 0;
		}
	}
	return sink_put(k, b, nb, data, b * bs, why, n) == 0 ? 1 : -1;
}

/* Give n checked blocks from b on to the sink in one call; their bytes
 * are in buf, which holds the payload from offset base on. 0, or -1:
 * the update must fail. */
static int sink_put(struct dev_blocks *k, uint64_t b, uint64_t n,
		    const uint8_t *buf, uint64_t base, char *why, size_t wn)
{
	if (n == 0)
		return 0;
	uint64_t off = b * k->m->block_size;
	size_t len = (size_t)((b + n - 1) * k->m->block_size +
			      proto_block_len(k->m, b + n - 1) - off);
	if (k->sink.write(k->sink.ctx, off, buf + (off - base), len, why, wn) !=
	    0)
		return -1;
	for (uint64_t i = b; i < b + n; i++)
		k->written[i >> 3] |= (uint8_t)(1u << (i & 7));
	k->stats.blocks_ok += n;
	while (k->wprefix < k->nblocks && is_written(k, k->wprefix))
		k->wprefix++;
	return 0;
}

/* The part of block b in [off, end) goes to its buffer, bufs[b % nbufs].
 * That buffer may hold another block: a higher one gives way (its
 * fragments are asked for again), so the lowest blocks always progress;
 * a lower one keeps it, and the fragment is not taken. 1 or 0. */
static int buffer_part(struct dev_blocks *k, uint64_t b, const uint8_t *data,
		       uint64_t off, uint64_t end)
{
	uint32_t bs = k->m->block_size;
	uint64_t lo = b * bs, hi = lo + proto_block_len(k->m, b);
	struct dev_blockbuf *u = &k->bufs[b % k->nbufs];
	if (u->live && u->block < b) {
		k->stats.frags_nobuf++;
		return 0;
	}
	if (u->live && u->block > b) {
		k->stats.blocks_evicted++;
		unhold_block(k, u->block);
	}
	if (!u->data && !(u->data = malloc(bs))) {
		k->stats.frags_nobuf++;
		return 0;
	}
	u->block = b;
	u->live = true;
	if (lo < off)
		lo = off;
	if (hi > end)
		hi = end;
	memcpy(u->data + (lo - b * bs), data + (lo - off), hi - lo);
	return 1;
}

/* A payload fragment (k-th, 0-based): a block wholly inside it is
 * checked and written at once (once the table is checked); runs of such
 * blocks go to the sink in one call. The parts of blocks it shares with
 * other fragments are buffered. 1: taken; 0: not; -1: failed. */
static int take_payload(struct dev_blocks *k, uint32_t kth, const uint8_t *data,
			size_t len, char *why, size_t n)
{
	uint32_t bs = k->m->block_size;
	uint64_t off = (uint64_t)kth * k->fragment_size, end = off + len;
	uint64_t run = 0, run_b = 0; /* checked blocks not yet written */
	int rc = 1;
	for (uint64_t b = off / bs; rc == 1 && b * bs < end; b++) {
		uint64_t lo = b * bs, hi = lo + proto_block_len(k->m, b);
		struct dev_blockbuf *u = &k->bufs[b % k->nbufs];
		bool whole = k->table_ok && lo >= off && hi <= end;
		if (!is_written(k, b) && whole) {
			if (u->live && u->block == b)
				u->live = false;
			rc = block_check(k, b, data + (lo - off), why, n);
			if (rc == 1 && run++ == 0)
				run_b = b;
			continue; /* a bad block (0): the fragment is refused */
		}
		if (sink_put(k, run_b, run, data, off, why, n) != 0)
			return -1;
		run = 0;
		if (!is_written(k, b))
			rc = buffer_part(k, b, data, off, end);
	}
	/* The good blocks before a bad one are kept. */
	if (sink_put(k, run_b, run, data, off, why, n) != 0)
		return -1;
	return rc;
}

int dev_blk_take(struct dev_blocks *k, uint32_t index, const uint8_t *data,
		 size_t len, char *why, size_t n)
{
	uint32_t t = k->table_fragments;
	if (index >= t)
		return take_payload(k, index - t, data, len, why, n);
	/* The table goes to its own file: checked whole, once complete. */
	off_t off = (off_t)index * k->fragment_size;
	ssize_t w = pwrite(k->table_fd, data, len, off);
	if (w != (ssize_t)len) {
		snprintf(why, n, "writing the block table failed: %s",
			 w < 0 ? strerror(errno) : "short write");
		return -1;
	}
	return 1;
}

/* Check block b once all its fragments are held: into the sink when it
 * matches the table, else its fragments are given back. 0 or -1. */
static int block_try(struct dev_blocks *k, uint64_t b, char *why, size_t n)
{
	uint32_t first, last, t = k->table_fragments;
	if (!k->table_ok || is_written(k, b))
		return 0;
	block_frags(k, b, &first, &last);
	for (uint32_t f = first; f <= last; f++)
		if (!dev_rx_is_held(k->rx, t + f))
			return 0;
	struct dev_blockbuf *u = &k->bufs[b % k->nbufs];
	if (!u->live || u->block != b) { /* cannot happen; recover anyway */
		unhold_block(k, b);
		return 0;
	}
	int rc = block_check(k, b, u->data, why, n);
	if (rc < 0)
		return -1;
	u->live = false;
	if (rc == 0) {
		unhold_block(k, b);
		return 0;
	}
	return sink_put(k, b, 1, u->data, b * k->m->block_size, why, n);
}

/* The last table fragment is in: check the table, then every block that
 * was waiting for it. A table that fails is dropped whole. */
static int table_complete(struct dev_blocks *k, char *why, size_t n)
{
	if (!dev_blk_table_check(k)) {
		k->stats.tables_bad++;
		log_warnx("%s block table does not match the signed manifest: "
			  "asked for again",
			  k->who);
		if (++*k->bad > BAD_BLOCKS_MAX(k)) {
			snprintf(why, n,
				 "the block table keeps failing its "
				 "check: the data is being corrupted "
				 "or forged");
			return -1;
		}
		if (k->table_fragments)
			dev_rx_unhold(k->rx, 0, k->table_fragments - 1);
		return 0;
	}
	dev_blk_table_ready(k);
	for (uint32_t i = 0; i < k->nbufs; i++)
		if (k->bufs[i].live &&
		    block_try(k, k->bufs[i].block, why, n) < 0)
			return -1;
	return 0;
}

int dev_blk_held(struct dev_blocks *k, uint32_t index, size_t len, char *why,
		 size_t n)
{
	uint32_t t = k->table_fragments;
	if (!k->table_ok && k->rx->cum >= t && table_complete(k, why, n) < 0)
		return -1;
	if (index < t)
		return 0;
	uint64_t first = (uint64_t)(index - t) * k->fragment_size;
	uint64_t b0 = first / k->m->block_size;
	uint64_t b1 = (first + len - 1) / k->m->block_size;
	for (uint64_t b = b0; b <= b1; b++)
		if (block_try(k, b, why, n) < 0)
			return -1;
	return 0;
}
