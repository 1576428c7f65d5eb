/*
 * libFuzzer target for compressed and delta payloads (proto/zdelta.c,
 * PROTOCOL.md 6.4): the decoder a device runs on untrusted bytes. The
 * first input byte, modulo FDELTA__COUNT, picks what the rest is:
 *
 *   0 an encoded payload without a base (`zstd`), after a 4-byte header:
 *     image size (u24 LE, 1 .. 2^24-1) and a piece size byte (the
 *     payload is pushed in pieces of 1 + byte * 64 bytes, as fragments
 *     would bring it). Whatever comes out must keep the rules: frames at
 *     block boundaries, whole blocks but the image's last, never past the
 *     image, at most PROTO_ZFRAME_MAX each, offsets going only up;
 *   1 the same with a fixed 64 KiB base (`delta`);
 *   2 an image (the rest, up to 20000 bytes): encoded as a delta from the
 *     fixed base and decoded again, it must come back byte for byte.
 *
 * Block size 512, so that small inputs make whole blocks. Seeds:
 * tests/fuzz/corpus/fuzz_delta/ (make-seeds.sh, with the zstd tool).
 * Build and run with `sh tests/fuzz/run.sh 60 fuzz_delta`. With
 * FUZZ_REPLAY defined only fuzz_delta_one() is compiled.
 *
 * fuzz-sources: proto/[a-z]*.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

enum fdelta_sel { FDELTA_ZSTD, FDELTA_DELTA, FDELTA_ROUND, FDELTA__COUNT };

#define FDELTA_BS 512u
#define FDELTA_BASE_LEN 65536u

/* The fixed base: text-like, compressible, the same on every run (the
 * seeds were made against it: make-seeds.sh writes the same bytes). */
static const uint8_t *fdelta_base(void)
{
	static uint8_t base[FDELTA_BASE_LEN];
	static int made;
	if (!made) {
		for (uint32_t i = 0; i < FDELTA_BASE_LEN; i++)
			base[i] = (uint8_t)('a' + (i * 7 + i / 251) % 26);
		made = 1;
	}
	return base;
}

static void fdelta_decode(const uint8_t *base, size_t base_len,
			  const uint8_t *p, size_t len)
{
	if (len < 4)
		return;
	uint64_t size = p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
	size_t piece = 1 + (size_t)p[3] * 64;
	struct proto_zdec *z;
	struct proto_err err;
	if (size == 0 ||
	    proto_zdec_new(base, base_len, size, FDELTA_BS, 0, &z, &err) != 0)
		return;
	uint64_t next = 0;
	p += 4;
	len -= 4;
	int rc = 0;
	while (len > 0 && rc >= 0) {
		size_t n = len < piece ? len : piece, used;
		const uint8_t *q = p;
		p += n;
		len -= n;
		while ((rc = proto_zdec_push(z, q, n, &used, &err)) == 1) {
			uint64_t at;
			const uint8_t *d;
			size_t dl;
			proto_zdec_frame(z, &at, &d, &dl);
			if (at != next || at % FDELTA_BS || dl == 0 ||
			    dl > PROTO_ZFRAME_MAX || at + dl > size ||
			    (dl % FDELTA_BS && at + dl != size) ||
			    proto_zdec_image_off(z) != at + dl)
				abort();
			next = at + dl;
			q += used;
			n -= used;
		}
		if (used > n)
			abort();
	}
	if (rc < 0 && strlen(err.text) == 0)
		abort(); /* every refusal says why */
	proto_zdec_free(z);
}

static void fdelta_round(const uint8_t *p, size_t len)
{
	if (len == 0 || len > 20000)
		return;
	uint8_t *enc = NULL, *out = malloc(len);
	size_t elen;
	struct proto_err err;
	struct proto_zdec *z;
	if (!out ||
	    proto_zenc(p, len, fdelta_base(), FDELTA_BASE_LEN, FDELTA_BS,
		       4 * FDELTA_BS, 1, &enc, &elen, &err) != 0 ||
	    proto_zdec_new(fdelta_base(), FDELTA_BASE_LEN, len, FDELTA_BS, 0,
			   &z, &err) != 0)
		abort();
	size_t used, off = 0;
	int rc;
	while ((rc = proto_zdec_push(z, enc + off, elen - off, &used, &err)) ==
	       1) {
		uint64_t at;
		const uint8_t *d;
		size_t dl;
		proto_zdec_frame(z, &at, &d, &dl);
		memcpy(out + at, d, dl);
		off += used;
	}
	if (rc != 0 || proto_zdec_image_off(z) != len ||
	    memcmp(out, p, len) != 0)
		abort();
	proto_zdec_free(z);
	free(enc);
	free(out);
}

int fuzz_delta_one(const uint8_t *data, size_t size);

int fuzz_delta_one(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch ((enum fdelta_sel)(data[0] % FDELTA__COUNT)) {
	case FDELTA_ZSTD:
		fdelta_decode(NULL, 0, data + 1, size - 1);
		break;
	case FDELTA_DELTA:
		fdelta_decode(fdelta_base(), FDELTA_BASE_LEN, data + 1,
			      size - 1);
		break;
	case FDELTA_ROUND:
	case FDELTA__COUNT:
		fdelta_round(data + 1, size - 1);
		break;
	}
	return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_delta_one(data, size);
}
#endif
