/*
 * Compressed and delta variants of a release (PROTOCOL.md 6.4).
 *
 * A variant is the release's image encoded for the wire: zstd frames
 * (`zstd`), or zstd frames with a base image as prefix (`delta`, from a
 * version devices report running). Each is made once, in the thread pool
 * (its own lane, so package checks never queue behind it), kept in the
 * store as <id>.zst or <id>.<base sha256>.delta, and then served like
 * any release by the transfer engine: a variant is a gw_release of its
 * own (its fragments, its group topic) hanging off the release whose
 * campaign it belongs to. The gateway signs nothing: a device checks every
 * block the variant reconstructs against the publisher's table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

#define VAR_CACHE_MAX ((size_t)1 << 31)
/* Image bytes per frame: a power cut costs at most one frame's fragments
 * again (6.4), and 256 KiB frames compress within a few per cent of 1 MiB
 * ones (every frame of a delta sees the whole base anyway). */
#define FRAME_LEN (256u << 10)

struct var_job {
	struct gw_lane_item li; /* li.req.data: this job */
	struct gw *gw;
	struct gw_release *v;
	/* inputs: read-only mappings of the packages, alive as long as
	 * their releases (the gateway stops only once its lanes are idle) */
	const uint8_t *img, *base;
	uint64_t size;
	size_t base_len;
	uint32_t block_size;
	int level;
	bool hostile;	     /* tests only: test_hostile_delta */
	char path[PATH_MAX]; /* the store's copy */
	/* outputs */
	uint8_t *out;
	size_t out_len;
	bool cached; /* read back from the store, not made */
	int rc;
	char err[256];
	uint64_t cpu_ms;
};

static void var_free(struct gw_release *v)
{
	gw__xfer_release_free(NULL, v);
	free((void *)v->map);
	free(v);
}

void gw__variants_free(struct gw_release *r)
{
	while (r->variants) {
		struct gw_release *v = r->variants;
		r->variants = v->next;
		var_free(v);
	}
}

static uint64_t thread_cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Thread pool: the store's copy when there is one, else make it. */
static void var_work(uv_work_t *req)
{
	struct var_job *j = req->data;
	uint64_t t0 = thread_cpu_ms();
	char *buf = NULL;
	size_t len = 0;
	char why[256];
	if (util_read_file(j->path, VAR_CACHE_MAX, &buf, &len, why,
			   sizeof(why)) == 0 &&
	    len > 0) {
		j->out = (uint8_t *)buf;
		j->out_len = len;
		j->cached = true;
		j->rc = 0;
		return;
	}
	free(buf);
	struct proto_err err = {{0}};
	uint8_t *bad = NULL;
	if (j->hostile && (bad = malloc((size_t)j->size)) != NULL) {
		memcpy(bad, j->img, (size_t)j->size);
		bad[0] ^= 0xff; /* tests only: a wrong first block */
	}
	uint32_t flen = j->block_size < FRAME_LEN ? FRAME_LEN : 0;
	j->rc = proto_zenc(bad ? bad : j->img, j->size, j->base, j->base_len,
			   j->block_size, flen, j->level, &j->out, &j->out_len,
			   &err);
	free(bad);
	j->cpu_ms = thread_cpu_ms() - t0;
	if (j->rc != 0) {
		snprintf(j->err, sizeof(j->err), "%s", err.text);
		return;
	}
	if (util_write_atomic(j->path, j->out, j->out_len, 0644, why,
			      sizeof(why)) != 0)
		log_warnx("cannot keep %s in the store: %s", j->path, why);
}

static void var_done(uv_work_t *req, int status)
{
	struct var_job *j = req->data;
	struct gw *gw = j->gw;
	struct gw_release *v = j->v, *r = v->parent;
	char detail[160];
	gw__lane_finished(gw, &gw->delta_lane);
	v->var_cpu_ms = j->cpu_ms;
	if (status != 0 || j->rc != 0) {
		v->var_state = GW_VAR_FAILED;
		log_warnx("release=%s %s payload not made: %s", r->id,
			  proto_encoding_name(v->encoding),
			  status ? "cancelled" : j->err);
		free(j->out);
		goto out;
	}
	uint64_t nf = (j->out_len + v->frag_size - 1) / v->frag_size;
	v->map = j->out;
	v->map_len = j->out_len;
	v->payload_off = 0;
	v->payload_len = j->out_len;
	v->nfrags = (uint32_t)(nf + v->tfrags);
	/* Worth it only when smaller than the image. */
	v->var_state = j->out_len < r->m.size &&
			       nf + v->tfrags <= PROTO_FRAGS_MAX
			   ? GW_VAR_READY
			   : GW_VAR_FAILED;
	snprintf(detail, sizeof(detail), "%s%s%s %zu bytes, %.1f%% of %llu%s",
		 proto_encoding_name(v->encoding),
		 v->encoding == PROTO_ENCODING_DELTA ? " from " : "",
		 v->base_version, j->out_len,
		 100.0 * (double)j->out_len / (double)r->m.size,
		 (unsigned long long)r->m.size,
		 v->var_state == GW_VAR_READY ? "" : ": not smaller, unused");
	log_info("release=%s %s (%s, %llu ms CPU)", r->id, detail,
		 j->cached ? "from the store" : "made",
		 (unsigned long long)j->cpu_ms);
	gw__event(gw, NULL, r->id, "payload_ready", detail);
out:
	free(j);
	if (!gw->stopping)
		gw__offers_due(gw); /* transfers and devices waiting for it */
}

/* A new variant of r, its job queued. NULL when out of memory. */
static struct gw_release *var_start(struct gw *gw, struct gw_release *r,
				    enum proto_encoding enc,
				    const struct gw_release *base)
{
	struct gw_release *v = calloc(1, sizeof(*v));
	struct var_job *j = calloc(1, sizeof(*j));
	if (!v || !j) {
		free(v);
		free(j);
		return NULL;
	}
	memcpy(v->id, r->id, sizeof(v->id));
	v->tag = r->tag;
	v->m = r->m;
	v->manifest = r->manifest; /* borrowed, as the table */
	v->manifest_len = r->manifest_len;
	memcpy(v->sig, r->sig, sizeof(v->sig));
	v->table = r->table;
	v->table_len = r->table_len;
	v->frag_size = r->frag_size;
	v->tfrags = r->tfrags;
	v->window = r->window;
	v->encoding = enc;
	v->parent = r;
	v->var_state = GW_VAR_PENDING;
	v->var_since_ms = (int64_t)util_mono_ms();
	char hex[2 * PROTO_SHA256_LEN + 1] = "";
	if (base) {
		memcpy(v->base, base->m.sha256, sizeof(v->base));
		memcpy(v->base_version, base->m.version,
		       sizeof(v->base_version));
		proto_hex_encode(v->base, PROTO_SHA256_LEN, hex);
	}
	/* Its own group topic (6.4, xfer.c makes it): one stream per
	 * payload. */
	v->next = r->variants;
	r->variants = v;
	j->gw = gw;
	j->v = v;
	j->li.req.data = j;
	j->img = r->map + r->payload_off;
	j->size = r->m.size;
	j->block_size = r->m.block_size;
	j->level = proto_zenc_level(r->m.size + (base ? base->m.size : 0));
	if (base) {
		j->hostile = gw->cfg.test_hostile_delta;
		j->base = base->map + base->payload_off;
		j->base_len = (size_t)base->m.size;
		snprintf(j->path, sizeof(j->path), "%s/%s.%s.delta",
			 gw->cfg.store_dir, r->id, hex);
	} else {
		snprintf(j->path, sizeof(j->path), "%s/%s.zst",
			 gw->cfg.store_dir, r->id);
	}
	log_info("release=%s making its %s payload%s%s", r->id,
		 proto_encoding_name(enc), base ? " from " : "",
		 base ? base->m.version : "");
	gw__lane_submit(gw, &gw->delta_lane, &j->li, var_work, var_done);
	return v;
}

static struct gw_release *var_find(struct gw_release *r,
				   enum proto_encoding enc, const uint8_t *base)
{
	for (struct gw_release *v = r->variants; v; v = v->next)
		if (v->encoding == enc &&
		    (!base || !memcmp(v->base, base, PROTO_SHA256_LEN)))
			return v;
	return NULL;
}

/* The package of the image d reports running, when the gateway has it. */
static struct gw_release *base_of(struct gw *gw, const struct gw_release *r,
				  const struct gw_device *d)
{
	if (!d->has_image)
		return NULL;
	for (struct gw_release *b = gw->releases; b; b = b->next)
		if (b != r && b->map && !b->encrypt &&
		    !strcmp(b->m.product, r->m.product) &&
		    !strcmp(b->m.version, d->version) &&
		    !memcmp(b->m.sha256, d->image, PROTO_SHA256_LEN))
			return b;
	return NULL;
}

/* v when ready; NULL when pending (wait: *wait set) or unusable. */
static struct gw_release *var_state(const struct gw *gw, struct gw_release *v,
				    bool *wait)
{
	if (!v || v->var_state == GW_VAR_FAILED)
		return NULL;
	if (v->var_state == GW_VAR_READY)
		return v;
	if ((int64_t)util_mono_ms() - v->var_since_ms <
	    (int64_t)gw->cfg.delta_wait_s * 1000)
		*wait = true;
	return NULL;
}

struct gw_release *gw__variant_pick(struct gw *gw, struct gw_release *r,
				    const struct gw_device *d)
{
	bool wait = false;
	/* Encrypted releases travel as they are: each payload would need a
	 * content key of its own (a nonce names only tag and index). */
	if (r->encrypt || !r->map || !strcmp(d->nodelta_release, r->id))
		return r;
	struct gw_release *dv, *zv;
	const struct gw_release *b = r->target.no_delta ? NULL
							: base_of(gw, r, d);
	/* A delta when there is one, else the compressed image, else the
	 * image; waiting (bounded) for what is being made (6.4). */
	if (b) {
		dv = var_find(r, PROTO_ENCODING_DELTA, b->m.sha256);
		if (!dv)
			dv = var_start(gw, r, PROTO_ENCODING_DELTA, b);
		if ((dv = var_state(gw, dv, &wait)) || wait)
			return dv;
	}
	if (!r->m.no_compress) {
		zv = var_find(r, PROTO_ENCODING_ZSTD, NULL);
		if (!zv)
			zv = var_start(gw, r, PROTO_ENCODING_ZSTD, NULL);
		if ((zv = var_state(gw, zv, &wait)) || wait)
			return zv;
	}
	return r;
}

struct gw_release *gw__variant_restore(struct gw *gw, struct gw_release *r,
				       const struct gw_device *d)
{
	if (d->encoding == PROTO_ENCODING_FULL || r->encrypt || !r->map ||
	    !strcmp(d->nodelta_release, r->id))
		return r;
	const struct gw_release *b = NULL;
	if (d->encoding == PROTO_ENCODING_DELTA) {
		/* The same base image, whichever version names it now. */
		for (b = gw->releases; b; b = b->next)
			if (b != r && b->map && !b->encrypt &&
			    !memcmp(b->m.sha256, d->xbase, PROTO_SHA256_LEN))
				break;
		if (!b)
			return r;
	}
	struct gw_release *v = var_find(r, d->encoding, b ? b->m.sha256 : NULL);
	if (!v && !(v = var_start(gw, r, d->encoding, b)))
		return r;
	if (v->var_state == GW_VAR_PENDING)
		return NULL;
	return v->var_state == GW_VAR_READY ? v : r;
}
