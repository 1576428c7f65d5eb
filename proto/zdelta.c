/*
 * proto/zdelta.c: compressed and delta payloads (PROTOCOL.md 6.4).
 *
 * The payload is a sequence of zstd frames, each reconstructing a whole
 * number of blocks and decodable on its own: no prefix (`zstd`), or the
 * whole base image as a raw-content prefix (`delta`, the mechanism of
 * `zstd --patch-from`). The decoder's input is untrusted: it takes one
 * frame at a time into a buffer whose size the protocol bounds, checks
 * the frame header against the rules before it decodes anything, and
 * decodes in one shot into a buffer of the frame's (bounded) content
 * size, so zstd allocates no window of the size a frame asks for.
 */
#include <stdlib.h>
#include <string.h>

#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader, ZSTD_frameHeader */
#include <zstd.h>
#include <zstd_errors.h>

#include "proto/internal.h"

#define ZMAGIC 0xFD2FB528u

const char *proto_encoding_name(enum proto_encoding e)
{
	switch (e) {
	case PROTO_ENCODING_FULL:
		return "full";
	case PROTO_ENCODING_ZSTD:
		return "zstd";
	case PROTO_ENCODING_DELTA:
		return "delta";
	}
	return "?";
}

int proto_encoding_parse(const char *s, enum proto_encoding *e)
{
	for (int i = PROTO_ENCODING_FULL; i <= PROTO_ENCODING_DELTA; i++)
		if (strcmp(s, proto_encoding_name((enum proto_encoding)i)) ==
		    0) {
			*e = (enum proto_encoding)i;
			return 0;
		}
	return PROTO_EFIELD;
}

/* ------------------------------------------------------------- encode */

static unsigned log2_up(uint64_t n)
{
	unsigned l = 0;
	while (l < 63 && ((uint64_t)1 << l) < n)
		l++;
	return l;
}

static int zenc_params(ZSTD_CCtx *c, const uint8_t *base, size_t base_len,
		       size_t n, int level)
{
	size_t rc = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
	if (!ZSTD_isError(rc))
		rc = ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
	if (!ZSTD_isError(rc))
		rc = ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
	if (!ZSTD_isError(rc))
		rc = ZSTD_CCtx_setParameter(c, ZSTD_c_dictIDFlag, 0);
	if (base && !ZSTD_isError(rc)) {
		/* The window must reach from the frame's end back to the
		 * base's start (--patch-from does the same). */
		unsigned wl = log2_up((uint64_t)base_len + n);
		if (wl < ZSTD_WINDOWLOG_MIN)
			wl = ZSTD_WINDOWLOG_MIN;
		if (wl > ZSTD_WINDOWLOG_MAX_32)
			return -1;
		rc = ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, (int)wl);
		if (!ZSTD_isError(rc) && base_len >= (1u << 22))
			rc = ZSTD_CCtx_setParameter(
			    c, ZSTD_c_enableLongDistanceMatching, 1);
		if (!ZSTD_isError(rc))
			rc = ZSTD_CCtx_refPrefix(c, base, base_len);
	}
	return ZSTD_isError(rc) ? -1 : 0;
}

int proto_zenc_level(uint64_t bytes)
{
	return bytes < (4u << 20) ? 19 : bytes < (32u << 20) ? 6 : 3;
}

/* One frame of n bytes into dst (cap bytes): its length, or a zstd error
 * code. raw_lits: literals left uncompressed (ZSTD_ps_disable), which
 * changes the optimal parser's prices: against a base it then prefers
 * short matches to literals, and a rebuilt binary's shifted offsets cost
 * less (the nearby-commit pair of docs/BENCHMARKS.md: 10% smaller). An
 * experimental zstd parameter: a libzstd without it fails the call and
 * the caller keeps the frame made the usual way. */
static size_t zenc_frame(ZSTD_CCtx *c, const uint8_t *base, size_t base_len,
			 const uint8_t *src, size_t n, int level, uint8_t *dst,
			 size_t cap, bool raw_lits)
{
	ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
	if (zenc_params(c, base, base_len, n, level) != 0)
		return (size_t)-1;
	if (raw_lits) {
		size_t rc =
		    ZSTD_CCtx_setParameter(c, ZSTD_c_literalCompressionMode,
					   ZSTD_ps_disable);
		if (ZSTD_isError(rc))
			return rc;
	}
	return ZSTD_compress2(c, dst, cap, src, n);
}

int proto_zenc(const uint8_t *img, uint64_t size, const uint8_t *base,
	       size_t base_len, uint32_t block_size, uint32_t frame_len,
	       int level, uint8_t **out, size_t *out_len, struct proto_err *err)
{
	if (size == 0 || block_size < PROTO_BLOCK_SIZE_MIN ||
	    block_size > PROTO_ZFRAME_MAX || (block_size & (block_size - 1)))
		return proto__err(err, PROTO_ERANGE, "bad image or block size");
	if (frame_len == 0)
		frame_len = PROTO_ZFRAME_MAX / block_size * block_size;
	if (frame_len % block_size || frame_len > PROTO_ZFRAME_MAX)
		return proto__err(err, PROTO_ERANGE,
				  "frame length %u is not a whole number of "
				  "%u-byte blocks up to %u",
				  frame_len, block_size, PROTO_ZFRAME_MAX);
	uint64_t nframes = (size + frame_len - 1) / frame_len;
	size_t fcap = ZSTD_compressBound(frame_len);
	size_t cap = (size_t)nframes * fcap;
	uint8_t *buf = malloc(cap), *alt = base ? malloc(fcap) : NULL;
	ZSTD_CCtx *c = ZSTD_createCCtx();
	if (!buf || !c || (base && !alt)) {
		free(buf);
		free(alt);
		ZSTD_freeCCtx(c);
		return proto__err(err, PROTO_ENOMEM, "out of memory");
	}
	size_t pos = 0;
	for (uint64_t off = 0; off < size; off += frame_len) {
		size_t n = size - off < frame_len ? (size_t)(size - off)
						  : frame_len;
		size_t rc = zenc_frame(c, base, base_len, img + off, n, level,
				       buf + pos, cap - pos, false);
		if (ZSTD_isError(rc)) {
			free(buf);
			free(alt);
			ZSTD_freeCCtx(c);
			return proto__err(err, PROTO_ECRYPTO,
					  "zstd: cannot compress the frame at "
					  "%llu: %s",
					  (unsigned long long)off,
					  ZSTD_getErrorName(rc));
		}
		/* A delta's frame: the smaller of the two ways. */
		size_t ra = alt ? zenc_frame(c, base, base_len, img + off, n,
					     level, alt, fcap, true)
				: (size_t)-1;
		if (!ZSTD_isError(ra) && ra < rc) {
			memcpy(buf + pos, alt, ra);
			rc = ra;
		}
		pos += rc;
	}
	free(alt);
	ZSTD_freeCCtx(c);
	*out = buf;
	*out_len = pos;
	return 0;
}

/* ------------------------------------------------------------- decode */

struct proto_zdec {
	ZSTD_DCtx *dctx;
	const uint8_t *base;
	size_t base_len;
	uint64_t size; /* image bytes */
	uint32_t block_size;
	uint64_t off; /* image offset of the frame being taken */
	uint8_t *in;  /* the frame's bytes so far */
	size_t in_len, in_cap;
	uint64_t content; /* its content size, once its header is read */
	size_t frame_cap; /* its bound, once its header is read */
	uint8_t *out;	  /* the decoded frame */
	size_t out_len;
	uint64_t out_off;
};

int proto_zdec_new(const uint8_t *base, size_t base_len, uint64_t image_size,
		   uint32_t block_size, uint64_t image_off,
		   struct proto_zdec **out, struct proto_err *err)
{
	if (image_size == 0 || block_size < PROTO_BLOCK_SIZE_MIN ||
	    block_size > PROTO_BLOCK_SIZE_MAX ||
	    (block_size & (block_size - 1)) || image_off % block_size ||
	    image_off > image_size)
		return proto__err(err, PROTO_ERANGE,
				  "bad image size, block size or offset");
	struct proto_zdec *z = calloc(1, sizeof(*z));
	if (!z)
		return proto__err(err, PROTO_ENOMEM, "out of memory");
	z->in_cap = ZSTD_compressBound(PROTO_ZFRAME_MAX);
	z->dctx = ZSTD_createDCtx();
	z->in = malloc(z->in_cap);
	z->out = malloc(PROTO_ZFRAME_MAX);
	if (!z->dctx || !z->in || !z->out) {
		proto_zdec_free(z);
		return proto__err(err, PROTO_ENOMEM, "out of memory");
	}
	z->base = base;
	z->base_len = base ? base_len : 0;
	z->size = image_size;
	z->block_size = block_size;
	z->off = image_off;
	*out = z;
	return 0;
}

void proto_zdec_free(struct proto_zdec *z)
{
	if (!z)
		return;
	ZSTD_freeDCtx(z->dctx);
	free(z->in);
	free(z->out);
	free(z);
}

void proto_zdec_restart(struct proto_zdec *z, uint64_t image_off)
{
	z->off = image_off;
	z->in_len = 0;
	z->content = 0;
	z->frame_cap = 0;
	z->out_len = 0;
}

uint64_t proto_zdec_image_off(const struct proto_zdec *z) { return z->off; }

size_t proto_zdec_pending(const struct proto_zdec *z) { return z->in_len; }

void proto_zdec_input(const struct proto_zdec *z, const uint8_t **data,
		      size_t *len)
{
	*data = z->in;
	*len = z->in_len;
}

void proto_zdec_frame(const struct proto_zdec *z, uint64_t *image_off,
		      const uint8_t **data, size_t *len)
{
	*image_off = z->out_off;
	*data = z->out;
	*len = z->out_len;
}

/* The frame header, once enough bytes are in: the rules of 6.4 that can
 * be checked before decoding. 0 = need more, 1 = checked, < 0 error. */
static int zdec_header(struct proto_zdec *z, struct proto_err *err)
{
	if (z->in_len < 4)
		return 0;
	uint32_t magic = (uint32_t)z->in[0] | (uint32_t)z->in[1] << 8 |
			 (uint32_t)z->in[2] << 16 | (uint32_t)z->in[3] << 24;
	if (magic != ZMAGIC)
		return proto__err(err, PROTO_EMALFORMED,
				  "frame at image offset %llu: not a zstd frame "
				  "(magic %08x)",
				  (unsigned long long)z->off, magic);
	ZSTD_frameHeader fh;
	size_t rc = ZSTD_getFrameHeader(&fh, z->in, z->in_len);
	if (ZSTD_isError(rc))
		return proto__err(err, PROTO_EMALFORMED,
				  "frame at image offset %llu: bad header: %s",
				  (unsigned long long)z->off,
				  ZSTD_getErrorName(rc));
	if (rc > 0)
		return 0; /* header incomplete */
	uint64_t left = z->size - z->off;
	uint64_t want = left < PROTO_ZFRAME_MAX ? left : PROTO_ZFRAME_MAX;
	if (fh.frameType != ZSTD_frame || fh.dictID != 0 ||
	    fh.frameContentSize == ZSTD_CONTENTSIZE_UNKNOWN ||
	    fh.frameContentSize == 0 || fh.frameContentSize > want ||
	    (fh.frameContentSize != left &&
	     fh.frameContentSize % z->block_size))
		return proto__err(
		    err, PROTO_ERANGE,
		    "frame at image offset %llu: content of %llu bytes "
		    "(dictionary %u) is not 1..%llu bytes of whole blocks",
		    (unsigned long long)z->off,
		    fh.frameContentSize == ZSTD_CONTENTSIZE_UNKNOWN
			? 0ull
			: (unsigned long long)fh.frameContentSize,
		    fh.dictID, (unsigned long long)want);
	z->content = fh.frameContentSize;
	z->frame_cap = ZSTD_compressBound((size_t)z->content);
	return 1;
}

/* The whole frame is in: decode it in one shot. */
static int zdec_decode(struct proto_zdec *z, size_t flen, struct proto_err *err)
{
	size_t rc = ZSTD_DCtx_reset(z->dctx, ZSTD_reset_session_and_parameters);
	if (!ZSTD_isError(rc) && z->base)
		rc = ZSTD_DCtx_refPrefix(z->dctx, z->base, z->base_len);
	if (!ZSTD_isError(rc))
		rc = ZSTD_decompressDCtx(z->dctx, z->out, (size_t)z->content,
					 z->in, flen);
	if (ZSTD_isError(rc) || rc != z->content)
		return proto__err(err, PROTO_EMALFORMED,
				  "frame at image offset %llu does not decode: "
				  "%s",
				  (unsigned long long)z->off,
				  ZSTD_isError(rc) ? ZSTD_getErrorName(rc)
						   : "short output");
	z->out_len = (size_t)z->content;
	z->out_off = z->off;
	z->off += z->content;
	z->content = 0;
	z->frame_cap = 0;
	return 1;
}

/* Take up to `upto` bytes of the frame into z->in; how many were taken. */
static size_t zdec_take(struct proto_zdec *z, size_t upto, const uint8_t *data,
			size_t len)
{
	if (z->in_len >= upto)
		return 0;
	size_t n = upto - z->in_len < len ? upto - z->in_len : len;
	memcpy(z->in + z->in_len, data, n);
	z->in_len += n;
	return n;
}

int proto_zdec_push(struct proto_zdec *z, const uint8_t *data, size_t len,
		    size_t *used, struct proto_err *err)
{
	*used = 0;
	if (z->off >= z->size)
		return len || z->in_len
			   ? proto__err(err, PROTO_ESIZE,
					"%zu bytes after the image's last "
					"frame",
					len + z->in_len)
			   : 0;
	/* Before its header is read, a frame takes at most a header's
	 * worth; then at most its bound. */
	if (!z->frame_cap) {
		*used += zdec_take(z, ZSTD_FRAMEHEADERSIZE_MAX, data, len);
		int rc = zdec_header(z, err);
		if (rc <= 0)
			return rc;
	}
	*used += zdec_take(z, z->frame_cap, data + *used, len - *used);
	size_t flen = ZSTD_findFrameCompressedSize(z->in, z->in_len);
	if (ZSTD_isError(flen)) {
		if (ZSTD_getErrorCode(flen) != ZSTD_error_srcSize_wrong)
			return proto__err(err, PROTO_EMALFORMED,
					  "frame at image offset %llu: %s",
					  (unsigned long long)z->off,
					  ZSTD_getErrorName(flen));
		if (z->in_len < z->frame_cap)
			return 0; /* more to come */
	}
	if (ZSTD_isError(flen) || flen > z->frame_cap)
		return proto__err(err, PROTO_ERANGE,
				  "frame at image offset %llu is longer than "
				  "its bound of %zu bytes",
				  (unsigned long long)z->off, z->frame_cap);
	int rc = zdec_decode(z, flen, err);
	if (rc == 1 && z->in_len > flen) {
		/* Bytes of the next frame, taken with this one: kept. */
		memmove(z->in, z->in + flen, z->in_len - flen);
		z->in_len -= flen;
	} else if (rc == 1) {
		z->in_len = 0;
	}
	return rc;
}
