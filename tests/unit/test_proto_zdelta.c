/*
 * Unit tests for proto/zdelta.c: compressed and delta payloads
 * (PROTOCOL.md 6.4). Images are made from a fixed seed: a "firmware" of
 * repeating records with pseudo-random fields, and a next version with a
 * few edits, an insertion and a deletion, as a rebuilt binary has.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "proto/proto.h"

#define BS 4096u

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

static uint8_t *firmware(size_t n)
{
	uint8_t *b = malloc(n);
	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (i % 64 < 16)
			   ? (uint8_t)(rnd() & 0xff)
			   : (uint8_t)("call reg, imm; ret; nop"[i % 23]);
	return b;
}

/* base with edits: 20 changed bytes, 300 inserted at 1/3, 200 deleted at
 * 2/3. *n is the new length. */
static uint8_t *next_version(const uint8_t *base, size_t bn, size_t *n)
{
	uint8_t *b = malloc(bn + 300);
	assert_non_null(b);
	size_t ins = bn / 3, del = 2 * bn / 3, o = 0;
	memcpy(b, base, ins);
	o = ins;
	for (int i = 0; i < 300; i++)
		b[o++] = (uint8_t)rnd();
	memcpy(b + o, base + ins, del - ins);
	o += del - ins;
	memcpy(b + o, base + del + 200, bn - del - 200);
	o += bn - del - 200;
	for (int i = 0; i < 20; i++)
		b[rnd() % o] ^= 0x5a;
	*n = o;
	return b;
}

/* Decode `enc` pushed in pieces of `piece` bytes; the image into *img. */
static int decode_all(const uint8_t *base, size_t bn, const uint8_t *enc,
		      size_t elen, uint64_t size, size_t piece, uint8_t *img,
		      struct proto_err *err)
{
	struct proto_zdec *z;
	assert_int_equal(proto_zdec_new(base, bn, size, BS, 0, &z, err), 0);
	int rc = 0;
	for (size_t off = 0; off < elen && rc >= 0;) {
		size_t n = elen - off < piece ? elen - off : piece, used;
		const uint8_t *p = enc + off;
		off += n;
		while ((rc = proto_zdec_push(z, p, n, &used, err)) == 1) {
			uint64_t at;
			const uint8_t *d;
			size_t len;
			proto_zdec_frame(z, &at, &d, &len);
			assert_true(at % BS == 0);
			assert_true(len % BS == 0 || at + len == size);
			memcpy(img + at, d, len);
			p += used;
			n -= used;
		}
	}
	if (rc >= 0 && proto_zdec_image_off(z) != size)
		rc = -100;
	proto_zdec_free(z);
	return rc;
}

static void test_zstd_roundtrip(void **state)
{
	(void)state;
	size_t n = 3 * PROTO_ZFRAME_MAX + 5000; /* 4 frames, last partial */
	uint8_t *img = firmware(n), *enc, *out = malloc(n);
	size_t elen;
	struct proto_err err = {{0}};
	assert_int_equal(proto_zenc(img, n, NULL, 0, BS, 0, 3, &enc, &elen,
				    &err),
			 0);
	assert_true(elen < n / 2);
	size_t pieces[] = {160, 4096, 65536, 1};
	for (size_t i = 0; i < 4; i++) {
		memset(out, 0, n);
		assert_int_equal(decode_all(NULL, 0, enc, elen, n, pieces[i],
					    out, &err),
				 0);
		assert_memory_equal(out, img, n);
	}
	free(img);
	free(enc);
	free(out);
}

static void test_delta_roundtrip(void **state)
{
	(void)state;
	size_t bn = 2 * PROTO_ZFRAME_MAX + 12345, n;
	uint8_t *base = firmware(bn), *img = next_version(base, bn, &n);
	uint8_t *enc, *zenc, *out = calloc(1, n);
	size_t elen, zlen;
	struct proto_err err = {{0}};
	assert_int_equal(proto_zenc(img, n, base, bn, BS, 0, 19, &enc, &elen,
				    &err),
			 0);
	assert_int_equal(proto_zenc(img, n, NULL, 0, BS, 0, 19, &zenc, &zlen,
				    &err),
			 0);
	/* The delta is a small fraction of the image and of its zstd. */
	assert_true(elen * 20 < n);
	assert_true(elen * 5 < zlen);
	assert_int_equal(decode_all(base, bn, enc, elen, n, 4096, out, &err),
			 0);
	assert_memory_equal(out, img, n);
	/* Another base: refused (the frame checksum), or not the image. */
	base[bn / 2] ^= 1;
	memset(out, 0, n);
	int rc = decode_all(base, bn, enc, elen, n, 4096, out, &err);
	assert_true(rc < 0 || memcmp(out, img, n) != 0);
	/* No base at all: refused. */
	assert_true(decode_all(NULL, 0, enc, elen, n, 4096, out, &err) < 0);
	assert_non_null(strstr(err.text, "does not decode"));
	free(base);
	free(img);
	free(enc);
	free(zenc);
	free(out);
}

/* The usual way's delta of img against base, frame by frame as proto_zenc
 * cuts it: zstd level 19, literals compressed as zstd chooses. */
static size_t plain_delta_len(const uint8_t *base, size_t bn,
			      const uint8_t *img, size_t n)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	size_t cap = ZSTD_compressBound(PROTO_ZFRAME_MAX), total = 0;
	uint8_t *dst = malloc(cap);
	assert_non_null(c);
	assert_non_null(dst);
	for (size_t off = 0; off < n; off += PROTO_ZFRAME_MAX) {
		size_t len = n - off < PROTO_ZFRAME_MAX ? n - off
							: PROTO_ZFRAME_MAX;
		unsigned wl = 10;
		while (((size_t)1 << wl) < bn + len)
			wl++;
		ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
		ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 19);
		ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
		ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, (int)wl);
		ZSTD_CCtx_refPrefix(c, base, bn);
		size_t rc = ZSTD_compress2(c, dst, cap, img + off, len);
		assert_false(ZSTD_isError(rc));
		total += rc;
	}
	free(dst);
	ZSTD_freeCCtx(c);
	return total;
}

/* A rebuilt binary: one byte in every few dozen moved by 16 (shifted
 * offsets). Each frame goes the smaller of two ways (its literals
 * compressed or left raw, zenc_frame): never larger than the usual delta,
 * and here (as on the real nearby-commit binaries of docs/BENCHMARKS.md)
 * smaller; the unchanged decoder rebuilds it. */
static void test_delta_relinked(void **state)
{
	(void)state;
	size_t bn = PROTO_ZFRAME_MAX + 300000, n = bn;
	uint8_t *base = firmware(bn), *img = malloc(n), *enc;
	uint8_t *out = calloc(1, n);
	assert_non_null(img);
	memcpy(img, base, n);
	for (size_t i = 0; i < n; i += 1 + rnd() % 72)
		img[i] = (uint8_t)(img[i] + 16);
	size_t elen, plain = plain_delta_len(base, bn, img, n);
	struct proto_err err = {{0}};
	assert_int_equal(proto_zenc(img, n, base, bn, BS, 0, 19, &enc, &elen,
				    &err),
			 0);
	printf("# relinked: %zu bytes, the usual way %zu\n", elen, plain);
	assert_true(elen < plain);
	assert_int_equal(decode_all(base, bn, enc, elen, n, 4096, out, &err),
			 0);
	assert_memory_equal(out, img, n);
	free(base);
	free(img);
	free(enc);
	free(out);
}

/* A corrupted byte fails its frame; restarting there with good bytes
 * decodes the rest, and a decoder started at a frame (a resume) too. */
static void test_restart_and_resume(void **state)
{
	(void)state;
	size_t n = 3 * PROTO_ZFRAME_MAX;
	uint8_t *img = firmware(n), *enc, *bad;
	size_t elen, used, f1;
	struct proto_err err = {{0}};
	assert_int_equal(proto_zenc(img, n, NULL, 0, BS, 0, 3, &enc, &elen,
				    &err),
			 0);
	f1 = ZSTD_findFrameCompressedSize(enc, elen);
	assert_false(ZSTD_isError(f1));
	bad = malloc(elen);
	memcpy(bad, enc, elen);
	bad[f1 + 100] ^= 0x40;
	struct proto_zdec *z;
	assert_int_equal(proto_zdec_new(NULL, 0, n, BS, 0, &z, &err), 0);
	assert_int_equal(proto_zdec_push(z, bad, f1, &used, &err), 1);
	assert_int_equal(used, f1);
	int rc;
	size_t off = f1;
	while ((rc = proto_zdec_push(z, bad + off, 4096, &used, &err)) == 0)
		off += used;
	assert_true(rc < 0);
	proto_zdec_restart(z, PROTO_ZFRAME_MAX);
	off = f1;
	int frames = 0;
	while (off < elen || rc == 1) {
		size_t k = elen - off < 4096 ? elen - off : 4096;
		rc = proto_zdec_push(z, enc + off, k, &used, &err);
		assert_true(rc >= 0);
		off += used;
		if (rc == 1) {
			uint64_t at;
			const uint8_t *d;
			size_t len;
			proto_zdec_frame(z, &at, &d, &len);
			assert_memory_equal(d, img + at, len);
			frames++;
		}
	}
	assert_int_equal(frames, 2);
	assert_int_equal(proto_zdec_image_off(z), n);
	/* Anything after the last frame is refused. */
	assert_int_equal(proto_zdec_push(z, enc, 1, &used, &err), PROTO_ESIZE);
	proto_zdec_free(z);
	/* Resume: a new decoder at the second frame. */
	uint8_t *out = calloc(1, n);
	assert_int_equal(proto_zdec_new(NULL, 0, n, BS, PROTO_ZFRAME_MAX, &z,
					&err),
			 0);
	rc = proto_zdec_push(z, enc + f1, elen - f1, &used, &err);
	assert_int_equal(rc, 1);
	free(out);
	proto_zdec_free(z);
	/* A resume offset that is not a block boundary is refused. */
	assert_int_equal(proto_zdec_new(NULL, 0, n, BS, 100, &z, &err),
			 PROTO_ERANGE);
	free(img);
	free(enc);
	free(bad);
}

/* Push a crafted frame whole; the return code. */
static int push_one(const uint8_t *f, size_t len, uint64_t size,
		    struct proto_err *err)
{
	struct proto_zdec *z;
	size_t used;
	assert_int_equal(proto_zdec_new(NULL, 0, size, BS, 0, &z, err), 0);
	int rc = proto_zdec_push(z, f, len, &used, err);
	proto_zdec_free(z);
	return rc;
}

static size_t zframe(const uint8_t *src, size_t n, int content_size,
		     uint8_t *out, size_t cap)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, content_size);
	size_t r = ZSTD_compress2(c, out, cap, src, n);
	ZSTD_freeCCtx(c);
	assert_false(ZSTD_isError(r));
	return r;
}

static void test_hostile_frames(void **state)
{
	(void)state;
	struct proto_err err = {{0}};
	uint8_t src[3 * BS], f[3 * BS + 512];
	memset(src, 'a', sizeof(src));
	size_t n;
	/* No content size in the header: refused before decoding. */
	n = zframe(src, BS, 0, f, sizeof(f));
	assert_int_equal(push_one(f, n, BS, &err), PROTO_ERANGE);
	/* Content that is not whole blocks, and not the image's end. */
	n = zframe(src, BS + 1, 1, f, sizeof(f));
	assert_int_equal(push_one(f, n, 3 * BS, &err), PROTO_ERANGE);
	/* ... but at the image's end it is fine. */
	assert_int_equal(push_one(f, n, BS + 1, &err), 1);
	/* Content beyond the image. */
	n = zframe(src, 2 * BS, 1, f, sizeof(f));
	assert_int_equal(push_one(f, n, BS, &err), PROTO_ERANGE);
	/* A header claiming 2 MiB (more than a frame may hold): refused by
	 * its header, nothing allocated for it. */
	const uint8_t big[] = {0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0x00,
			       0x00, 0x20, 0x00, 0x01, 0x00, 0x00};
	assert_int_equal(push_one(big, sizeof(big), 1u << 30, &err),
			 PROTO_ERANGE);
	assert_non_null(strstr(err.text, "whole blocks"));
	/* A dictionary id. */
	const uint8_t dict[] = {0x28, 0xb5, 0x2f, 0xfd, 0x61, 0x05,
				0x00, 0x0f, 0x01, 0x00, 0x00};
	assert_int_equal(push_one(dict, sizeof(dict), BS, &err), PROTO_ERANGE);
	/* A skippable frame, and bytes that are no frame at all. */
	const uint8_t skip[] = {0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0};
	assert_int_equal(push_one(skip, sizeof(skip), BS, &err),
			 PROTO_EMALFORMED);
	assert_int_equal(push_one((const uint8_t *)"hello, world", 12, BS,
				  &err),
			 PROTO_EMALFORMED);
	/* Content of one block in raw blocks longer than its bound: the
	 * decoder stops taking at the bound. */
	uint8_t lng[6 + 3 + BS + 3 + 200] = {0x28, 0xb5, 0x2f, 0xfd,
					     0x60, 0x00, 0x0f};
	size_t o = 7;
	lng[o++] = 0x00; /* raw, not last, 4096: 4096 << 3 */
	lng[o++] = 0x80;
	lng[o++] = 0x00;
	o += BS;
	uint32_t h = (200u << 3) | 1;
	lng[o++] = (uint8_t)h;
	lng[o++] = (uint8_t)(h >> 8);
	lng[o++] = (uint8_t)(h >> 16);
	o += 200;
	assert_int_equal(push_one(lng, o, BS, &err), PROTO_ERANGE);
	assert_non_null(strstr(err.text, "bound"));
	/* A truncated frame only asks for more. */
	n = zframe(src, BS, 1, f, sizeof(f));
	assert_int_equal(push_one(f, n - 1, BS, &err), 0);
}

static void test_encode_args(void **state)
{
	(void)state;
	uint8_t img[BS] = {1}, *out;
	size_t len;
	struct proto_err err = {{0}};
	assert_int_equal(proto_zenc(img, BS, NULL, 0, BS, BS + 1, 3, &out, &len,
				    &err),
			 PROTO_ERANGE);
	assert_int_equal(proto_zenc(img, 0, NULL, 0, BS, 0, 3, &out, &len,
				    &err),
			 PROTO_ERANGE);
	enum proto_encoding e;
	assert_int_equal(proto_encoding_parse("delta", &e), 0);
	assert_int_equal(e, PROTO_ENCODING_DELTA);
	assert_int_equal(proto_encoding_parse("Delta", &e), PROTO_EFIELD);
	assert_string_equal(proto_encoding_name(PROTO_ENCODING_ZSTD), "zstd");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_zstd_roundtrip),
	    cmocka_unit_test(test_delta_roundtrip),
	    cmocka_unit_test(test_delta_relinked),
	    cmocka_unit_test(test_restart_and_resume),
	    cmocka_unit_test(test_hostile_frames),
	    cmocka_unit_test(test_encode_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
