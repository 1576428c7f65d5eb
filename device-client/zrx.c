/* The decoder of an encoded payload: fragments -> frames -> checked
 * blocks (zrx.h, PROTOCOL.md 6.4). */
#include "device-client/zrx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define NONE UINT32_MAX

int dev_z_init(struct dev_z *zz, struct dev_blocks *blk, struct dev_rx *rx,
	       const uint8_t *base, size_t base_len, uint64_t payload_size,
	       uint32_t window, uint64_t zoff, uint64_t zimg, char *why,
	       size_t n)
{
	struct proto_err err = {{0}};
	memset(zz, 0, sizeof(*zz));
	zz->blk = blk;
	zz->rx = rx;
	zz->t = blk->table_fragments;
	zz->fs = blk->fragment_size;
	zz->nfrags = blk->fragments;
	zz->payload_size = payload_size;
	if (zoff > payload_size ||
	    (uint64_t)zz->t + zoff / zz->fs > (uint64_t)zz->t + zz->nfrags) {
		snprintf(why, n, "checkpoint beyond the payload");
		return -1;
	}
	zz->slots = DEV_Z_RING_MAX / zz->fs;
	if (zz->slots > window)
		zz->slots = window;
	if (zz->slots == 0)
		zz->slots = 1;
	zz->ring = malloc((size_t)zz->slots * zz->fs);
	zz->ring_idx = malloc(zz->slots * sizeof(*zz->ring_idx));
	zz->ring_len = calloc(zz->slots, sizeof(*zz->ring_len));
	if (!zz->ring || !zz->ring_idx || !zz->ring_len) {
		dev_z_free(zz);
		snprintf(why, n, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < zz->slots; i++)
		zz->ring_idx[i] = NONE;
	if (proto_zdec_new(base, base_len, blk->m->size, blk->m->block_size,
			   zimg, &zz->z, &err) != 0) {
		dev_z_free(zz);
		snprintf(why, n, "encoded payload: %s", err.text);
		return -1;
	}
	zz->zoff = zoff;
	zz->zimg = zimg;
	zz->next = zz->t + (uint32_t)(zoff / zz->fs);
	zz->skip = (uint32_t)(zoff % zz->fs);
	return 0;
}

void dev_z_free(struct dev_z *zz)
{
	proto_zdec_free(zz->z);
	free(zz->ring);
	free(zz->ring_idx);
	free(zz->ring_len);
	zz->z = NULL;
	zz->ring = NULL;
	zz->ring_idx = zz->ring_len = NULL;
}

uint32_t dev_z_first(const struct dev_z *zz) { return zz->next; }

int dev_z_take(struct dev_z *zz, uint32_t index, const uint8_t *data,
	       size_t len)
{
	if (index < zz->next || index - zz->next >= zz->slots || len > zz->fs)
		return 0;
	uint32_t s = index % zz->slots;
	if (zz->ring_idx[s] != NONE && zz->ring_idx[s] != index)
		return 0;
	memcpy(zz->ring + (size_t)s * zz->fs, data, len);
	zz->ring_idx[s] = index;
	zz->ring_len[s] = (uint32_t)len;
	return 1;
}

uint32_t dev_z_durable(const struct dev_z *zz)
{
	if (zz->zoff >= zz->payload_size)
		return zz->t + zz->nfrags;
	return zz->t + (uint32_t)(zz->zoff / zz->fs);
}

/* The frame failed (what: why, md: its bytes' digest). Drop it and what
 * waits behind it, and start again at its first byte; or fail the update
 * when it failed before with the same bytes. 0, or -1 (why). */
static int frame_failed(struct dev_z *zz, const char *what,
			const uint8_t md[PROTO_SHA256_LEN], char *why, size_t n)
{
	zz->frames_bad++;
	if (zz->fail_set && zz->fail_off == zz->zoff &&
	    !memcmp(zz->fail_md, md, PROTO_SHA256_LEN)) {
		snprintf(why, n,
			 "encoded payload frame at payload offset %llu "
			 "(image offset %llu) %s, twice with the same "
			 "bytes: the payload is wrong, not damaged",
			 (unsigned long long)zz->zoff,
			 (unsigned long long)zz->zimg, what);
		return -1;
	}
	zz->fail_set = true;
	zz->fail_off = zz->zoff;
	memcpy(zz->fail_md, md, PROTO_SHA256_LEN);
	uint32_t first = zz->t + (uint32_t)(zz->zoff / zz->fs);
	log_warnx("%s frame at payload offset %llu (image offset %llu) %s: "
		  "dropped, nothing of it written, fragments %u.. asked for "
		  "again",
		  zz->who, (unsigned long long)zz->zoff,
		  (unsigned long long)zz->zimg, what, first);
	if (++*zz->blk->bad > zz->blk->nblocks + 64) {
		snprintf(why, n,
			 "%u frames or blocks failed their checks: the "
			 "data is being corrupted or forged",
			 *zz->blk->bad);
		return -1;
	}
	for (uint32_t i = 0; i < zz->slots; i++)
		zz->ring_idx[i] = NONE;
	dev_rx_unhold(zz->rx, first, zz->t + zz->nfrags - 1);
	zz->next = first;
	zz->skip = (uint32_t)(zz->zoff % zz->fs);
	proto_zdec_restart(zz->z, zz->zimg);
	return 0;
}

/* A frame was decoded: its blocks, checked, to the sink. 1 written, 0
 * dropped (frame_failed), -1 the update fails. */
static int frame_write(struct dev_z *zz, char *why, size_t n)
{
	uint64_t at, bad = 0;
	const uint8_t *data;
	size_t len;
	char what[96];
	uint8_t md[PROTO_SHA256_LEN];
	proto_zdec_frame(zz->z, &at, &data, &len);
	int rc = dev_blk_put(zz->blk, at / zz->blk->m->block_size, data, len,
			     &bad, why, n);
	if (rc != 0)
		return rc;
	snprintf(what, sizeof(what),
		 "rebuilds block %llu, which does not match the signed block "
		 "table",
		 (unsigned long long)bad);
	if (proto_sha256(data, len, md) != 0)
		memset(md, 0, sizeof(md));
	return frame_failed(zz, what, md, why, n) < 0 ? -1 : 0;
}

/* Feed the fragment in slot s from zz->skip on. 1: consumed whole; 0: a
 * frame was dropped (decoding restarts); -1: the update fails. */
static int feed(struct dev_z *zz, uint32_t s, char *why, size_t n)
{
	struct proto_err err = {{0}};
	const uint8_t *p = zz->ring + (size_t)s * zz->fs + zz->skip;
	size_t len = zz->ring_len[s] - zz->skip, pos = zz->skip, used;
	int rc;
	while ((rc = proto_zdec_push(zz->z, p, len, &used, &err)) == 1) {
		p += used;
		len -= used;
		pos += used;
		int w = frame_write(zz, why, n);
		if (w <= 0)
			return w;
		zz->frames_ok++;
		zz->fail_set = false;
		zz->zoff = (uint64_t)(zz->next - zz->t) * zz->fs + pos -
			   proto_zdec_pending(zz->z);
		zz->zimg = proto_zdec_image_off(zz->z);
	}
	if (rc == 0)
		return 1;
	const uint8_t *in;
	size_t inlen;
	uint8_t md[PROTO_SHA256_LEN];
	char what[200];
	proto_zdec_input(zz->z, &in, &inlen);
	if (proto_sha256(in, inlen, md) != 0)
		memset(md, 0, sizeof(md));
	snprintf(what, sizeof(what), "is refused: %s", err.text);
	return frame_failed(zz, what, md, why, n) < 0 ? -1 : 0;
}

int dev_z_pump(struct dev_z *zz, char *why, size_t n)
{
	if (!zz->blk->table_ok)
		return 0; /* blocks cannot be checked yet */
	while (zz->next < zz->t + zz->nfrags) {
		uint32_t s = zz->next % zz->slots;
		if (zz->ring_idx[s] != zz->next)
			return 0; /* not here yet */
		int rc = feed(zz, s, why, n);
		if (rc <= 0)
			return rc;
		zz->ring_idx[s] = NONE;
		zz->next++;
		zz->skip = 0;
	}
	/* All fed: the decoder must have rebuilt the whole image. */
	if (proto_zdec_image_off(zz->z) != zz->blk->m->size) {
		snprintf(why, n,
			 "encoded payload ends after %llu of %llu image "
			 "bytes",
			 (unsigned long long)proto_zdec_image_off(zz->z),
			 (unsigned long long)zz->blk->m->size);
		return -1;
	}
	return 0;
}
