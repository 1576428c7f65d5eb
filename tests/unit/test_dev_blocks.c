/*
 * The device's block assembler (device-client/blocks.h) with the real
 * receiver and a real table file: fragments that straddle blocks, several
 * blocks in one fragment, a fragment shared with a neighbour block that
 * failed its check, a table that fails, any arrival order (PROTOCOL.md 8
 * step 7). The block sink here is memory: each block must reach it
 * exactly once, with the exact bytes.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "device-client/blocks.h"
#include "fixture.h"

#define BS 512 /* block size: the smallest the spec allows */

struct bench {
	struct proto_manifest m;
	uint8_t *payload, *table, *image;
	unsigned *writes; /* per block, how often it reached the sink */
	uint32_t fs, t, f, n, bad;
	struct dev_rx rx;
	struct dev_blocks k;
	int fd;
};

static int sink_write(void *ctx, uint64_t off, const uint8_t *data, size_t len,
		      char *why, size_t n)
{
	struct bench *b = ctx;
	(void)why;
	(void)n;
	assert_int_equal(off % BS, 0);
	assert_true(off + len <= b->m.size);
	/* whole blocks only: the end is a block boundary or the end */
	assert_true((off + len) % BS == 0 || off + len == b->m.size);
	memcpy(b->image + off, data, len);
	for (uint64_t x = off / BS; x * BS < off + len; x++)
		b->writes[x]++;
	return 0;
}

/* A payload of size bytes, its table and manifest, the transfer in
 * fragments of fs bytes; the table file in the fixture's directory. */
static void bench_init(struct bench *b, void **state, uint64_t size,
		       uint32_t fs)
{
	struct fx *fx = *state;
	uint64_t seed = 0x243f6a8885a308d3ull;
	memset(b, 0, sizeof(*b));
	b->m.size = size;
	b->m.block_size = BS;
	uint64_t nb = proto_block_count(&b->m);
	b->payload = malloc(size);
	b->image = calloc(1, size);
	b->table = malloc(nb * PROTO_SHA256_LEN);
	b->writes = calloc(nb, sizeof(*b->writes));
	assert_non_null(b->payload);
	for (uint64_t i = 0; i < size; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		b->payload[i] = (uint8_t)seed;
	}
	for (uint64_t x = 0; x < nb; x++)
		proto_sha256(b->payload + x * BS, proto_block_len(&b->m, x),
			     b->table + x * PROTO_SHA256_LEN);
	proto_sha256(b->table, nb * PROTO_SHA256_LEN, b->m.blocks);
	b->fs = fs;
	b->t = proto_table_fragments(&b->m, fs);
	b->f = (uint32_t)((size + fs - 1) / fs);
	b->n = b->t + b->f;
	b->fd = open(fx->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(b->fd >= 0);
	assert_int_equal(dev_rx_init(&b->rx, b->n, 64, 1000, 0, 0), 0);
	assert_int_equal(dev_blk_init(&b->k, &b->m, fs, b->t, b->f, 64,
				      &b->bad),
			 0);
	b->k.table_fd = b->fd;
	b->k.sink = (struct dev_blk_sink){b, sink_write};
	b->k.rx = &b->rx;
	b->k.who = "test";
}

static void bench_free(struct bench *b)
{
	dev_blk_free(&b->k);
	dev_rx_free(&b->rx);
	close(b->fd);
	free(b->payload);
	free(b->image);
	free(b->table);
	free(b->writes);
}

/* The bytes of transfer fragment i (table first), as the gateway sends. */
static const uint8_t *frag_bytes(const struct bench *b, uint32_t i, size_t *len)
{
	uint64_t nb = proto_block_count(&b->m), end, off;
	const uint8_t *src;
	if (i < b->t) {
		src = b->table;
		end = nb * PROTO_SHA256_LEN;
		off = (uint64_t)i * b->fs;
	} else {
		src = b->payload;
		end = b->m.size;
		off = (uint64_t)(i - b->t) * b->fs;
	}
	*len = (size_t)(off + b->fs > end ? end - off : b->fs);
	return src + off;
}

/* Fragment i arrives (with a byte flipped at `flip` when >= 0), through
 * the receiver and the assembler as download.c does it. 1 held, 0 not. */
static int deliver(struct bench *b, uint32_t i, long flip)
{
	char why[256];
	size_t len;
	const uint8_t *src = frag_bytes(b, i, &len);
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	memcpy(buf, src, len);
	if (flip >= 0)
		buf[flip] ^= 0x5a;
	int held = 0;
	if (dev_rx_arrive(&b->rx, i, false, 0) == DEV_RX_NEW) {
		int rc = dev_blk_take(&b->k, i, buf, len, why, sizeof(why));
		assert_true(rc >= 0);
		if (rc == 1) {
			dev_rx_hold(&b->rx, i);
			assert_int_equal(dev_blk_held(&b->k, i, len, why,
						      sizeof(why)),
					 0);
			held = dev_rx_is_held(&b->rx, i);
		}
		dev_rx_decide(&b->rx, 0);
	}
	free(buf);
	return held;
}

static void assert_done(struct bench *b)
{
	uint64_t nb = proto_block_count(&b->m);
	assert_true(dev_rx_all_held(&b->rx));
	assert_true(dev_blk_all_written(&b->k));
	for (uint64_t x = 0; x < nb; x++)
		assert_int_equal(b->writes[x], 1);
	assert_memory_equal(b->image, b->payload, b->m.size);
	assert_int_equal(dev_blk_durable(&b->k, b->rx.cum), b->n);
}

static int setup(void **state) { return fx_setup_named(state, "blocks.part"); }

/* 700-byte fragments over 512-byte blocks: most fragments straddle two
 * blocks, and every block spans two fragments. */
static void test_straddling_in_order(void **state)
{
	struct bench b;
	bench_init(&b, state, 20000, 700);
	for (uint32_t i = 0; i < b.n; i++)
		assert_int_equal(deliver(&b, i, -1), 1);
	assert_done(&b);
	assert_int_equal(b.k.stats.blocks_ok, proto_block_count(&b.m));
	bench_free(&b);
}

/* 2048-byte fragments: four whole blocks each, checked and written as
 * the fragment arrives, in one sink call; the last block is short. */
static void test_several_blocks_per_fragment(void **state)
{
	struct bench b;
	bench_init(&b, state, 10000, 2048);
	for (uint32_t i = 0; i < b.n; i++)
		assert_int_equal(deliver(&b, i, -1), 1);
	assert_done(&b);
	bench_free(&b);
}

/* Any order, the payload before the table: blocks wait in their buffers
 * until the table is checked. Fixed seeds. */
static void test_any_order(void **state)
{
	for (uint64_t seed = 1; seed <= 50; seed++) {
		struct bench b;
		uint64_t s = seed * 0x9e3779b97f4a7c15ull;
		bench_init(&b, state, 9000 + seed * 37,
			   300 + (uint32_t)seed * 7);
		uint32_t *order = malloc(b.n * sizeof(*order));
		assert_non_null(order);
		for (uint32_t i = 0; i < b.n; i++)
			order[b.n - 1 - i] = i; /* table last */
		for (uint32_t i = b.n - 1; i > 0 && seed % 2; i--) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			uint32_t j = (uint32_t)(s % (i + 1)), x = order[i];
			order[i] = order[j];
			order[j] = x;
		}
		/* until everything is in: a fragment refused for want of a
		 * buffer, or given back, comes again */
		for (int round = 0; !dev_rx_all_held(&b.rx); round++) {
			assert_true(round < 50);
			for (uint32_t i = 0; i < b.n; i++)
				deliver(&b, order[i], -1);
		}
		assert_done(&b);
		free(order);
		bench_free(&b);
	}
}

/* A fragment shared by blocks 1 and 2, corrupted in block 1's part:
 * block 1 fails and drops every fragment carrying its bytes, the shared
 * one too; block 2 keeps the bytes it took and is checked on its own.
 * When the fragment comes again, both end in the sink once each. */
static void test_shared_fragment_of_a_failed_block(void **state)
{
	struct bench b;
	bench_init(&b, state, 4096, 700);
	/* payload fragment 1 carries bytes 700..1399: block 1 (512..1023)
	 * and block 2 (1024..1535) */
	uint32_t shared = b.t + 1;
	for (uint32_t i = 0; i < b.n; i++)
		deliver(&b, i, i == shared ? 100 : -1); /* byte 800: block 1 */
	assert_int_equal(b.k.stats.blocks_bad, 1);
	assert_int_equal(b.bad, 1);
	assert_false(dev_rx_is_held(&b.rx, shared));
	assert_false(dev_rx_is_held(&b.rx, b.t + 0)); /* block 1's first */
	assert_int_equal(b.writes[1], 0);
	assert_int_equal(b.rx.cum, b.t + 0);
	/* the fragments of block 1 come again */
	assert_int_equal(deliver(&b, b.t + 0, -1), 1);
	assert_int_equal(deliver(&b, shared, -1), 1);
	assert_done(&b);
	bench_free(&b);
}

/* A table fragment that is wrong: the whole table is dropped and asked
 * for again; no payload block reaches the sink before the table checks. */
static void test_bad_table(void **state)
{
	struct bench b;
	bench_init(&b, state, 40000, 1024); /* 79 blocks: a 3-fragment table */
	assert_true(b.t >= 2);
	for (uint32_t i = b.t; i < b.n; i++)
		deliver(&b, i, -1);
	for (uint32_t x = 0; x < proto_block_count(&b.m); x++)
		assert_int_equal(b.writes[x], 0);
	for (uint32_t i = 0; i < b.t; i++)
		deliver(&b, i, i == 1 ? 3 : -1);
	assert_int_equal(b.k.stats.tables_bad, 1);
	assert_int_equal(b.rx.cum, 0);
	assert_false(dev_blk_all_written(&b.k));
	for (uint32_t i = 0; i < b.t; i++)
		assert_int_equal(deliver(&b, i, -1), 1);
	for (int round = 0; !dev_rx_all_held(&b.rx); round++) {
		assert_true(round < 10);
		for (uint32_t i = 0; i < b.n; i++)
			deliver(&b, i, -1);
	}
	assert_done(&b);
	bench_free(&b);
}

/* The checkpoint names only what is durable: the table fragments before
 * the table checks; after it, the fragments wholly inside the leading
 * run of blocks in the sink (PROTOCOL.md 8 step 7). */
static void test_durable(void **state)
{
	struct bench b;
	bench_init(&b, state, 20000, 700);
	deliver(&b, 0, -1);
	assert_int_equal(b.t, 2);
	assert_int_equal(dev_blk_durable(&b.k, b.rx.cum), 1);
	for (uint32_t i = 1; i < b.t; i++)
		deliver(&b, i, -1);
	assert_int_equal(dev_blk_durable(&b.k, b.rx.cum), b.t);
	/* payload fragments 0..4: bytes 0..3499, blocks 0..5 complete
	 * (0..3071); block 6 (3072..3583) lacks fragment 5 */
	for (uint32_t i = 0; i < 5; i++)
		deliver(&b, b.t + i, -1);
	assert_int_equal(b.k.wprefix, 6);
	assert_int_equal(dev_blk_durable(&b.k, b.rx.cum), b.t + 6 * BS / 700);
	bench_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_straddling_in_order, setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_several_blocks_per_fragment,
					    setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_any_order, setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(
		test_shared_fragment_of_a_failed_block, setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_table, setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_durable, setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
