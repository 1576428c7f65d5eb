/* The download session: from an accepted offer to every block in the
 * inactive slot. MQTT and the loop meet the receiver (rx.h) and the block
 * assembler (blocks.h) here; checked blocks go to the installer's slot
 * writer (the block sink), and a complete download to the installer.
 * Calls: dev.c -> here -> {rx.c, blocks.c, install.c, state.c}. */
#include "device-client/dev.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define STATUS_EVERY_MS 1000
/* PROTOCOL.md 5.3: `downloading` with its progress at most every 10 s. */
#define PROGRESS_EVERY_MS 10000
#define TABLE_FILE "blocks.part" /* the block table, beside the slot */

/* All fragments of the transfer: the block table's, then the payload's. */
static uint32_t nfrags(const struct dev *d)
{
	return d->p.table_fragments + d->p.fragments;
}

bool dev__download_open(const struct dev *d) { return d->rx.held != NULL; }

/* The session's counters join the device's (logged at stop). */
static void stats_fold(struct dev *d)
{
	struct dev_stats *s = &d->stats;
	s->frags_ok += d->rx.stats.frags_ok;
	s->frags_dup += d->rx.stats.frags_dup;
	s->frags_ahead += d->rx.stats.frags_ahead;
	s->frags_nobuf += d->blk.stats.frags_nobuf;
	s->blocks_evicted += d->blk.stats.blocks_evicted;
	s->blocks_ok += d->blk.stats.blocks_ok;
	s->blocks_bad += d->blk.stats.blocks_bad;
	s->tables_bad += d->blk.stats.tables_bad;
	memset(&d->rx.stats, 0, sizeof(d->rx.stats));
	memset(&d->blk.stats, 0, sizeof(d->blk.stats));
}

/* The encoded payload's decoder and its base mapping, if open. */
static void zdec_close(struct dev *d)
{
	if (d->zon) {
		log_info("%s decoder: %llu frames written, %llu dropped",
			 d->who, (unsigned long long)d->z.frames_ok,
			 (unsigned long long)d->z.frames_bad);
		dev_z_free(&d->z);
	}
	d->zon = false;
	if (d->base_map)
		munmap((void *)d->base_map, d->base_len);
	d->base_map = NULL;
	d->base_len = 0;
}

/* A delta's base: the active slot's image, mapped read-only (its pages
 * are the file's, not the process's). 0, or -1 with why. */
static int base_map(struct dev *d, char *why, size_t n)
{
	char path[PATH_MAX];
	dev__slot_path(d, d->p.slot, "payload", path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t len = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
	void *m = len > 0
		      ? mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, 0)
		      : MAP_FAILED;
	if (fd >= 0)
		close(fd);
	if (m == MAP_FAILED) {
		snprintf(why, n, "cannot map the base image %s: %s", path,
			 len < 0 ? strerror(errno) : "empty or unreadable");
		return -1;
	}
	d->base_map = m;
	d->base_len = (size_t)len;
	return 0;
}

/* The decoder of an encoded payload (6.4), from the checkpoint's frame. */
static int zdec_open(struct dev *d, const struct proto_offer *o)
{
	char why[PROTO_ERROR_MAX + 1];
	if (d->p.encoding == PROTO_ENCODING_FULL)
		return 0;
	if ((d->p.encoding == PROTO_ENCODING_DELTA &&
	     base_map(d, why, sizeof(why)) != 0) ||
	    dev_z_init(&d->z, &d->blk, &d->rx, d->base_map, d->base_len,
		       d->p.payload_size, o->window, d->p.zoff, d->p.zimg, why,
		       sizeof(why)) != 0) {
		zdec_close(d);
		dev__fail_update(d, why);
		return -1;
	}
	d->z.who = d->who;
	d->zon = true;
	return 0;
}

static void close_part(struct dev *d)
{
	stats_fold(d);
	dev__slot_close(d);
	if (d->table_fd >= 0)
		close(d->table_fd);
	d->table_fd = -1;
	dev_rx_free(&d->rx);
	dev_blk_free(&d->blk);
	zdec_close(d);
	uv_timer_stop(&d->ack_timer);
	uv_timer_stop(&d->status_timer);
}

static void unlink_table(struct dev *d)
{
	char path[PATH_MAX];
	dev__slot_path(d, dev__inactive_slot(d), TABLE_FILE, path,
		       sizeof(path));
	unlink(path);
}

/* Group fragments of the release being downloaded: from the offer's
 * "group" to the end of the download. */
void dev__group_unsubscribe(struct dev *d)
{
	if (!d->topic_grp[0])
		return;
	mq_unsubscribe(d->mq, d->topic_grp);
	d->topic_grp[0] = '\0';
}

void dev__fail_update(struct dev *d, const char *why)
{
	dev__group_unsubscribe(d);
	close_part(d);
	dev__slot_remove(d);
	unlink_table(d);
	d->p.held = 0;
	dev__set_state(d, PROTO_ST_FAILED, why);
}

static void ack_timer_cb(uv_timer_t *t);

/* One timer serves the receiver: its delayed ack and its idle ack. */
static void rx_timer_arm(struct dev *d)
{
	uint64_t next = dev_rx_next(&d->rx), now = dev__mono_ms(d);
	if (next == UINT64_MAX) {
		uv_timer_stop(&d->ack_timer);
		return;
	}
	uv_timer_start(&d->ack_timer, ack_timer_cb, next > now ? next - now : 0,
		       0);
}

void dev__send_ack(struct dev *d)
{
	struct proto_ack a;
	uint8_t buf[PROTO_ACK_MAX_LEN];
	size_t len;
	if (!dev__download_open(d))
		return;
	if (d->rx.announce_cum > d->rx.cum) {
		/* Fragments given back before the sender saw them acknowledged
		 * (a failed table or block): say we held them, then that we do
		 * not, so that it resends them now (PROTOCOL.md 9). */
		struct proto_ack held = {.tag = d->tag,
					 .cum = d->rx.announce_cum};
		if (proto_ack_encode(&held, buf, sizeof(buf), &len) == 0 &&
		    mq_publish(d->mq, d->topic_ack, buf, len, 0, false) == 0)
			d->stats.acks_sent++;
	}
	dev_rx_ack(&d->rx, &a);
	a.tag = d->tag;
	if (proto_ack_encode(&a, buf, sizeof(buf), &len) == 0 &&
	    mq_publish(d->mq, d->topic_ack, buf, len, 0, false) == 0)
		d->stats.acks_sent++;
	rx_timer_arm(d);
}

static void ack_timer_cb(uv_timer_t *t)
{
	struct dev *d = t->data;
	if (d->st != PROTO_ST_DOWNLOADING || !dev__download_open(d))
		return;
	if (dev_rx_tick(&d->rx, dev__mono_ms(d)) & DEV_RX_ACK)
		dev__send_ack(d);
	else
		rx_timer_arm(d);
}

static void status_timer_cb(uv_timer_t *t)
{
	struct dev *d = t->data;
	/* On a slow uplink each status (QoS 1, ~300 bytes) delays the acks
	 * behind it. */
	if (d->st == PROTO_ST_DOWNLOADING &&
	    dev__mono_ms(d) - d->last_status_ms >= PROGRESS_EVERY_MS)
		dev__publish_status(d);
}

/* Make progress durable: data first, then the record that names it. */
static void checkpoint(struct dev *d)
{
	if (dev__slot_sync(d) != 0 || (d->table_fd >= 0 && !d->blk.table_ok &&
				       fdatasync(d->table_fd) != 0)) {
		log_warn("device=%s fdatasync", d->cfg.id);
		return;
	}
	if (d->zon && d->blk.table_ok) { /* the first unwritten frame */
		d->p.held = dev_z_durable(&d->z);
		d->p.zoff = d->z.zoff;
		d->p.zimg = d->z.zimg;
	} else {
		d->p.held = dev_blk_durable(&d->blk, d->rx.cum);
	}
	dev_rx_saved(&d->rx);
	dev__persist(d);
}

void dev__download_stop(struct dev *d)
{
	if (!dev__download_open(d))
		return;
	checkpoint(d);
	close_part(d);
}

/* Open (or reopen) the slot and the table file. 0, or -1 when the
 * update has failed. */
static int open_parts(struct dev *d)
{
	char tab[PATH_MAX];
	dev__slot_path(d, dev__inactive_slot(d), TABLE_FILE, tab, sizeof(tab));
	if (d->table_fd < 0)
		d->table_fd = open(tab, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (dev__slot_open(d) != 0 || d->table_fd < 0) {
		dev__fail_update(d, "cannot open the inactive slot for "
				    "writing");
		return -1;
	}
	return 0;
}

/* The receiver and the assembler for this offer, wired together. */
static int session_init(struct dev *d, const struct proto_offer *o)
{
	uint32_t n = d->p.table_fragments + o->fragments;
	if (dev_blk_init(&d->blk, &d->m, o->fragment_size, d->p.table_fragments,
			 o->fragments, o->window, &d->bad_blocks) != 0 ||
	    dev_rx_init(&d->rx, n, o->window, d->cfg.checkpoint_every, 0,
			dev__mono_ms(d)) != 0) {
		dev__fail_update(d, "out of memory");
		return -1;
	}
	snprintf(d->who, sizeof(d->who), "device=%s release=%s", d->cfg.id,
		 d->p.release);
	d->blk.table_fd = d->table_fd;
	d->blk.sink = (struct dev_blk_sink){d, dev__slot_write};
	d->blk.rx = &d->rx;
	d->blk.who = d->who;
	return 0;
}

/* How much of the checkpoint is still there: the slot must hold the
 * blocks it names, the table must still match. */
static uint32_t resume_point(struct dev *d, uint32_t h, uint64_t *wp)
{
	uint32_t t = d->p.table_fragments;
	uint64_t pay = h > t ? (uint64_t)(h - t) * d->p.fragment_size : 0;
	*wp = dev_blk_covering(&d->m, pay);
	if (d->p.encoding != PROTO_ENCODING_FULL) {
		/* An encoded payload resumes at its first unwritten frame:
		 * the blocks before it are written, the fragment that holds
		 * its first byte is the first not held (6.4). */
		*wp = dev_blk_covering(&d->m, h >= t ? d->p.zimg : 0);
		if (h >= t && h > 0)
			h = t + (uint32_t)(d->p.zoff / d->p.fragment_size);
	}
	uint64_t need = *wp * d->m.block_size;
	if (need > d->m.size)
		need = d->m.size;
	if (h > 0 && dev__slot_size(d) < need)
		h = 0;
	if (h >= t && h > 0 && !dev_blk_table_check(&d->blk)) {
		log_warnx("device=%s saved block table damaged: starting over",
			  d->cfg.id);
		h = 0;
	}
	if (h == 0)
		*wp = 0;
	if (h < t) /* no frame written yet */
		d->p.zoff = d->p.zimg = 0;
	return h;
}

int dev__download_begin(struct dev *d, const struct proto_offer *o, bool resume)
{
	close_part(d);
	uint32_t t = d->p.table_fragments;
	uint64_t wp;
	if (open_parts(d) != 0 || session_init(d, o) != 0)
		return -1;
	uint32_t h = resume_point(d, resume ? d->p.held : 0, &wp);
	if (h == 0 &&
	    (dev__slot_truncate(d) != 0 || ftruncate(d->table_fd, 0) != 0)) {
		dev__fail_update(d, "cannot truncate the inactive slot");
		return -1;
	}
	d->p.held = h;
	dev_blk_resume(&d->blk, wp);
	if (h >= t && h > 0)
		dev_blk_table_ready(&d->blk);
	if (zdec_open(d, o) != 0)
		return -1;
	for (uint32_t i = 0; i < h; i++)
		dev_rx_hold(&d->rx, i);
	d->rx.stats.frags_ok = 0;
	d->rx.unacked = 0;
	rx_timer_arm(d);
	uv_timer_start(&d->status_timer, status_timer_cb, STATUS_EVERY_MS,
		       STATUS_EVERY_MS);
	return 0;
}

/* Every fragment is in the slot: close the download and record that it is
 * complete (phase `verifying`) before the block table is removed, so that
 * no cut loses it. A cut before the record resumes with every fragment
 * held and comes here again (resume_download); a cut after it verifies
 * the image at the next start. */
static void download_closed(struct dev *d)
{
	close_part(d);
	d->p.t_downloaded = dev__wall_ms(d);
	d->p.phase = PROTO_ST_VERIFYING;
	dev__persist(d);
	unlink_table(d);
	dev__crash_point(d, "table-removed");
}

bool dev__download_all_in(const struct dev *d)
{
	return dev_rx_all_held(&d->rx) && dev_blk_all_written(&d->blk);
}

void dev__download_complete(struct dev *d)
{
	dev__send_ack(d);
	dev__group_unsubscribe(d);
	checkpoint(d);
	dev__crash_point(d, "downloaded");
	stats_fold(d);
	log_info("device=%s release=%s download complete (%u fragments, "
		 "%llu duplicates, %llu blocks checked, %llu refused)",
		 d->cfg.id, d->p.release, nfrags(d),
		 (unsigned long long)d->stats.frags_dup,
		 (unsigned long long)d->stats.blocks_ok,
		 (unsigned long long)d->stats.blocks_bad);
	download_closed(d);
	dev__verify_start(d);
}

/* Fault injection (tests only): a reproducible coin per fragment. */
static bool test_coin(struct dev *d, uint32_t percent)
{
	if (d->rng == 0) {
		d->rng = 0x9e3779b97f4a7c15ull ^ d->cfg.test_seed;
		for (const char *p = d->cfg.id; *p; p++)
			d->rng = (d->rng ^ (uint8_t)*p) * 0x100000001b3ull;
		if (d->rng == 0)
			d->rng = 1;
	}
	d->rng ^= d->rng << 13;
	d->rng ^= d->rng >> 7;
	d->rng ^= d->rng << 17;
	return d->rng % 100 < percent;
}

/* Fault injection (tests only): a copy of f's data with one byte
 * flipped, which f then points at; the caller frees it. */
static uint8_t *test_corrupt(struct dev *d, struct proto_frag *f)
{
	uint8_t *c;
	if (!d->cfg.test_corrupt_percent ||
	    !test_coin(d, d->cfg.test_corrupt_percent) ||
	    (c = malloc(f->len)) == NULL)
		return NULL;
	memcpy(c, f->data, f->len);
	/* Anywhere in it: a damaged fragment sent again is damaged
	 * elsewhere, if at all (a frame that fails twice with the same
	 * bytes is taken as sent that way, PROTOCOL.md 6.4). */
	c[d->rng % f->len] ^= 0x5a;
	f->data = c;
	d->stats.frags_corrupted_test++;
	return c;
}

/* An encrypted fragment: decrypted and authenticated before anything
 * else sees it. One that fails is dropped like a lost one (the next ack
 * asks for it again) and counts with the failed block checks. 0, or -1
 * (dropped; the update may have failed). */
static int frag_decrypt(struct dev *d, const void *msg, struct proto_frag *f)
{
	int rc = dev__enc_open(d, msg, f);
	if (rc == 0)
		return 0;
	d->stats.frags_unauth++;
	if (d->stats.frags_unauth <= 10 || d->stats.frags_unauth % 100 == 0)
		log_warnx("device=%s release=%s fragment %u failed decryption "
			  "(%s, %llu so far): dropped, asked for again",
			  d->cfg.id, d->p.release, f->index, proto_strerror(rc),
			  (unsigned long long)d->stats.frags_unauth);
	if (rc == PROTO_EAUTH && ++d->bad_blocks > d->blk.nblocks + 64)
		dev__fail_update(d, "fragments keep failing decryption: the "
				    "data is being corrupted or forged");
	return -1;
}

/* Does fragment f belong to this transfer, with the length its index
 * needs (the last of the table and of the payload may be short)? */
static bool frag_fits(const struct dev *d, const struct proto_frag *f)
{
	uint32_t t = d->p.table_fragments, fs = d->p.fragment_size;
	if (f->index >= nfrags(d))
		return false;
	uint64_t end = f->index < t ? d->blk.nblocks * PROTO_SHA256_LEN
		       : d->zon	    ? d->p.payload_size
				    : d->m.size;
	uint64_t off = (uint64_t)(f->index < t ? f->index : f->index - t) * fs;
	size_t want = off + fs > end ? (size_t)(end - off) : fs;
	if (d->enc)
		want += PROTO_ENC_TAG_LEN; /* sealed: data, then its tag */
	return f->len == want;
}

/* A fragment the receiver does not hold: to the assembler, then held.
 * The receiver's decision; *stop when there is nothing more to do (the
 * update failed, or the fragment was dropped without a word). */
static unsigned frag_new(struct dev *d, const void *msg, struct proto_frag *f,
			 uint64_t now, bool *stop)
{
	char why[PROTO_ERROR_MAX + 1];
	*stop = true;
	if (d->enc && frag_decrypt(d, msg, f) != 0)
		return 0; /* not authentic: not held, so asked for again */
	/* An encoded payload's fragments go to its decoder, the table's
	 * to the assembler (6.4). */
	bool z = d->zon && f->index >= d->p.table_fragments;
	int rc = z ? dev_z_take(&d->z, f->index, f->data, f->len)
		   : dev_blk_take(&d->blk, f->index, f->data, f->len, why,
				  sizeof(why));
	if (rc == 0) {
		*stop = false;
		return dev_rx_refused(&d->rx); /* say what we lack at once */
	}
	if (rc > 0) {
		dev_rx_hold(&d->rx, f->index);
		rc = z ? 0
		       : dev_blk_held(&d->blk, f->index, f->len, why,
				      sizeof(why));
		if (rc == 0 && d->zon)
			rc = dev_z_pump(&d->z, why, sizeof(why));
	}
	if (rc < 0) {
		log_warnx("device=%s %s", d->cfg.id, why);
		dev__fail_update(d, why);
		return 0;
	}
	*stop = false;
	return dev_rx_decide(&d->rx, now);
}

/* Do what the receiver decided. */
static void rx_act(struct dev *d, unsigned act)
{
	if ((act & DEV_RX_COMPLETE) && dev__download_all_in(d)) {
		dev__download_complete(d);
		return;
	}
	if (act & DEV_RX_COMPLETE)
		act |= DEV_RX_ACK;
	if (act & DEV_RX_CHECKPOINT)
		checkpoint(d);
	if (act & DEV_RX_ACK)
		dev__send_ack(d);
	else
		rx_timer_arm(d);
}

/* A fragment of the download under way (else stale: another release's,
 * or one that came after the download ended). */
static bool frag_current(const struct dev *d, const struct proto_frag *f)
{
	return d->st == PROTO_ST_DOWNLOADING && dev__download_open(d) &&
	       f->tag == d->tag;
}

void dev__on_frag(struct dev *d, const void *payload, size_t len,
		  bool from_group)
{
	struct proto_frag f;
	if (proto_frag_decode(payload, len, &f) != 0) {
		d->stats.msgs_bad++;
		return;
	}
	if (d->cfg.test_drop_percent &&
	    test_coin(d, d->cfg.test_drop_percent)) {
		d->stats.frags_dropped_test++;
		if (frag_current(d, &f) && frag_fits(d, &f) &&
		    dev_rx_classify(&d->rx, f.index, from_group) == DEV_RX_NEW)
			d->stats.frags_lost_test++;
		return;
	}
	if (!frag_current(d, &f)) {
		d->stats.msgs_stale++;
		return;
	}
	if (!frag_fits(d, &f)) {
		d->stats.msgs_bad++;
		log_debug("device=%s fragment %u of %u with %zu bytes dropped",
			  d->cfg.id, f.index, nfrags(d), f.len);
		return;
	}
	uint64_t now = dev__mono_ms(d);
	enum dev_rx_kind k = dev_rx_arrive(&d->rx, f.index, from_group, now);
	if (k != DEV_RX_NEW && k != DEV_RX_DUP) {
		rx_timer_arm(d); /* quietly: the group ran ahead of us */
		return;
	}
	uint8_t *corrupt = test_corrupt(d, &f);
	bool stop = false;
	unsigned act = k == DEV_RX_DUP ? dev_rx_decide(&d->rx, now)
				       : frag_new(d, payload, &f, now, &stop);
	if (!stop)
		rx_act(d, act);
	free(corrupt);
}

/* After a power cut mid-download: reopen the slot at the checkpoint;
 * the first ack after connecting tells the gateway. */
void dev__resume_download(struct dev *d)
{
	char why[PROTO_ERROR_MAX + 1];
	uint8_t rid[PROTO_RELEASE_ID_LEN];
	if (dev__load_manifest(d, why, sizeof(why)) != 0 ||
	    proto_hex_decode(d->p.release, rid, sizeof(rid)) != 0 ||
	    d->p.fragment_size < PROTO_FRAG_SIZE_MIN ||
	    (uint64_t)d->p.fragments !=
		((d->p.encoding ? d->p.payload_size : d->m.size) +
		 d->p.fragment_size - 1) /
		    d->p.fragment_size ||
	    d->m.block_size == 0 ||
	    d->p.table_fragments !=
		proto_table_fragments(&d->m, d->p.fragment_size) ||
	    dev__enc_resume(d, why, sizeof(why)) != 0) {
		log_warnx("device=%s saved download unusable; waiting for a "
			  "new offer",
			  d->cfg.id);
		d->st = d->p.phase = PROTO_ST_IDLE;
		d->p.held = 0;
		return;
	}
	d->tag = proto_release_tag(rid);
	struct proto_offer o = {.fragment_size = d->p.fragment_size,
				.fragments = d->p.fragments,
				.table_fragments = d->p.table_fragments,
				.window = d->p.window,
				.encoding = d->p.encoding,
				.payload_size = d->p.payload_size};
	if (dev__download_begin(d, &o, true) != 0)
		return;
	log_info("device=%s resuming release=%s from fragment %u of %u",
		 d->cfg.id, d->p.release, d->rx.cum, nfrags(d));
	if (dev__download_all_in(d)) { /* cut after the last checkpoint */
		download_closed(d);
		d->st = PROTO_ST_VERIFYING; /* dev_start verifies it */
	}
}
