/* The device's update state machine: status, offers, fragments, acks and
 * power-cut-safe progress. */
#include "device-client/dev.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define ACK_DELAY_MS 20
#define STATUS_EVERY_MS 1000

static const char *st_name(enum proto_state s) { return proto_state_name(s); }

void dev__slot_path(const struct dev *d, char slot, const char *name,
		    char *out, size_t n)
{
	snprintf(out, n, "%s/slot-%c/%s", d->cfg.state_dir, slot, name);
}

static char inactive_slot(const struct dev *d)
{
	return d->p.slot == 'a' ? 'b' : 'a';
}

/* ------------------------------------------------------------ persist */

int dev__persist(struct dev *d)
{
	char path[PATH_MAX], err[512];
	char *s = dev__persist_json(&d->p);
	if (!s)
		return -1;
	util_path(path, sizeof(path), d->cfg.state_dir, "state.json");
	int rc = util_write_atomic(path, s, strlen(s), 0600, err, sizeof(err));
	if (rc != 0)
		log_warnx("device=%s cannot save progress: %s", d->cfg.id, err);
	free(s);
	return rc;
}

static int dev_load(struct dev *d, char *err, size_t errlen)
{
	char path[PATH_MAX], *buf = NULL;
	size_t len;
	util_path(path, sizeof(path), d->cfg.state_dir, "state.json");
	memset(&d->p, 0, sizeof(d->p));
	if (access(path, F_OK) != 0) {
		snprintf(d->p.version, sizeof(d->p.version), "%s",
			 d->cfg.version);
		snprintf(d->p.highest, sizeof(d->p.highest), "%s",
			 d->cfg.version);
		d->p.slot = 'a';
		d->p.phase = PROTO_ST_IDLE;
		return dev__persist(d);
	}
	if (util_read_file(path, 1 << 20, &buf, &len, err, errlen) != 0)
		return -1;
	char why[160];
	int rc = dev__persist_parse(buf, len, &d->p, why, sizeof(why));
	free(buf);
	if (rc != 0)
		snprintf(err, errlen, "%s is damaged (%s); move it away to "
				      "start from the configured version",
			 path, why);
	return rc;
}

int dev__load_manifest(struct dev *d, char *why, size_t n)
{
	char err[PROTO_ERROR_MAX + 1];
	if (!d->p.manifest ||
	    proto_manifest_decode(d->p.manifest, strlen(d->p.manifest), &d->m,
				  NULL) != 0) {
		snprintf(why, n, "saved manifest missing or unreadable");
		return -1;
	}
	/* No expiry check here: the offer was accepted before it expired. */
	if (trust_check(&d->trust, d->m.product, d->p.manifest,
			strlen(d->p.manifest), d->p.sig, 0, err,
			sizeof(err)) != 0) {
		snprintf(why, n, "saved manifest: %s", err);
		return -1;
	}
	return 0;
}

int64_t dev__now_s(const struct dev *d)
{
	int64_t now = util_wall_ms() / 1000 - d->cfg.test_clock_behind_s;
	return now > d->p.time_floor ? now : d->p.time_floor;
}

void dev__crash_point(const struct dev *d, const char *point)
{
	if (d->cfg.test_crash_at[0] && !strcmp(d->cfg.test_crash_at, point)) {
		log_warnx("device=%s test crash point '%s': SIGKILL", d->cfg.id,
			  point);
		fflush(NULL);
		raise(SIGKILL);
	}
}

/* ------------------------------------------------------------ status */

static void fill_timings(const struct dev_persist *p, struct proto_timings *t)
{
	*t = (struct proto_timings){-1, -1, -1, -1, -1};
	if (p->t_accept && p->t_downloaded)
		t->download_ms = p->t_downloaded - p->t_accept;
	if (p->t_downloaded && p->t_verified)
		t->verify_ms = p->t_verified - p->t_downloaded;
	if (p->t_verified && p->t_installed)
		t->install_ms = p->t_installed - p->t_verified;
	if (p->t_restart && p->t_up)
		t->restart_ms = p->t_up - p->t_restart;
	if (p->t_accept && p->t_up)
		t->total_ms = p->t_up - p->t_accept;
}

static void status_fill(const struct dev *d, struct proto_status *s,
			enum proto_state st)
{
	proto_status_init(s);
	snprintf(s->device, sizeof(s->device), "%s", d->cfg.id);
	snprintf(s->product, sizeof(s->product), "%s", d->cfg.product);
	snprintf(s->version, sizeof(s->version), "%s", d->p.version);
	snprintf(s->group, sizeof(s->group), "%s", d->cfg.group);
	s->state = st;
	s->ts = util_wall_ms();
	if (st == PROTO_ST_IDLE || st == PROTO_ST_OFFLINE)
		return;
	snprintf(s->release, sizeof(s->release), "%s", d->p.release);
	if (st == PROTO_ST_DOWNLOADING && d->p.fragments)
		s->progress = (double)d->cum /
			      (d->p.fragments + d->p.table_fragments);
	snprintf(s->error, sizeof(s->error), "%s", d->p.error);
	fill_timings(&d->p, &s->timings);
}

void dev__publish_status(struct dev *d)
{
	struct proto_status s;
	char *json = NULL;
	size_t len;
	if (!d->mq || !mq_connected(d->mq))
		return; /* on_connect publishes the current state */
	status_fill(d, &s, d->st);
	if (proto_status_encode(&s, &json, &len) != 0) {
		log_warnx("device=%s cannot encode status", d->cfg.id);
		return;
	}
	mq_publish(d->mq, d->topic_status, json, len, 1, true);
	d->last_status_ms = util_mono_ms();
	free(json);
}

void dev__set_state(struct dev *d, enum proto_state st, const char *error)
{
	if (error)
		snprintf(d->p.error, sizeof(d->p.error), "%s", error);
	else if (st != d->st)
		d->p.error[0] = '\0';
	if (st != d->st)
		log_info("device=%s state %s -> %s%s%s%s%s", d->cfg.id,
			 st_name(d->st), st_name(st),
			 d->p.release[0] && st != PROTO_ST_IDLE ? " release="
								 : "",
			 st != PROTO_ST_IDLE ? d->p.release : "",
			 error ? " error=" : "", error ? error : "");
	d->st = st;
	if (st != PROTO_ST_OFFLINE && d->p.phase != st) {
		d->p.phase = st;
		dev__persist(d);
	}
	dev__publish_status(d);
}

/* ------------------------------------------------------------ download */

#define TABLE_FILE "blocks.part" /* the block table, beside the slot */
/* Failed block checks allowed per update: more than the package has blocks
 * (plus a margin) means the data is being corrupted or forged for good. */
#define BAD_BLOCKS_MAX(d) ((d)->nblocks + 64)

/* All fragments of the transfer: the block table's, then the payload's. */
static uint32_t nfrags(const struct dev *d)
{
	return d->p.table_fragments + d->p.fragments;
}

static void close_part(struct dev *d)
{
	if (d->part_fd >= 0)
		close(d->part_fd);
	if (d->table_fd >= 0)
		close(d->table_fd);
	d->part_fd = d->table_fd = -1;
	free(d->held);
	d->held = NULL;
	for (uint32_t i = 0; d->bufs && i < d->nbufs; i++)
		free(d->bufs[i].data);
	free(d->bufs);
	d->bufs = NULL;
	free(d->written);
	d->written = NULL;
	free(d->table);
	d->table = NULL;
	d->table_ok = false;
	uv_timer_stop(&d->ack_timer);
	uv_timer_stop(&d->status_timer);
}

static void unlink_part(struct dev *d, const char *name)
{
	char path[PATH_MAX];
	dev__slot_path(d, inactive_slot(d), name, path, sizeof(path));
	unlink(path);
}

/* Group fragments of the release being downloaded: from the offer's
 * "group" to the end of the download. */
static void group_unsubscribe(struct dev *d)
{
	if (!d->topic_grp[0])
		return;
	mq_unsubscribe(d->mq, d->topic_grp);
	d->topic_grp[0] = '\0';
}

static void fail_update(struct dev *d, const char *why)
{
	group_unsubscribe(d);
	close_part(d);
	unlink_part(d, "payload.part");
	unlink_part(d, TABLE_FILE);
	d->p.held = 0;
	dev__set_state(d, PROTO_ST_FAILED, why);
}

static bool is_held(const struct dev *d, uint32_t i)
{
	return d->held[i >> 3] & (1u << (i & 7));
}

static bool is_written(const struct dev *d, uint64_t b)
{
	return d->written[b >> 3] & (1u << (b & 7));
}

static void send_ack(struct dev *d)
{
	struct proto_ack a = {.tag = d->tag, .cum = d->cum};
	uint32_t n = nfrags(d);
	for (uint32_t b = 0; b < PROTO_SACK_MAX * 8; b++) {
		uint32_t i = d->cum + 1 + b;
		if (i >= n)
			break;
		if (is_held(d, i)) {
			a.sack[b / 8] |= (uint8_t)(1u << (b % 8));
			a.sack_len = (uint8_t)(b / 8 + 1);
		}
	}
	uint8_t buf[PROTO_ACK_MAX_LEN];
	size_t len;
	if (proto_ack_encode(&a, buf, sizeof(buf), &len) == 0 &&
	    mq_publish(d->mq, d->topic_ack, buf, len, 0, false) == 0)
		d->stats.acks_sent++;
	d->unacked = 0;
	uv_timer_stop(&d->ack_timer);
}

static void ack_timer_cb(uv_timer_t *t)
{
	struct dev *d = t->data;
	if (d->st == PROTO_ST_DOWNLOADING && d->unacked)
		send_ack(d);
}

#define IDLE_ACK_MIN_MS 2000
#define IDLE_ACK_MAX_MS 60000

static void status_timer_cb(uv_timer_t *t)
{
	struct dev *d = t->data;
	if (d->st != PROTO_ST_DOWNLOADING)
		return;
	dev__publish_status(d);
	/* Fragments stopped coming: our last ack (QoS 0) may be lost, so
	 * say again where we are, backing off while nothing happens. */
	uint64_t now = util_mono_ms();
	if (d->held && mq_connected(d->mq) &&
	    now - d->last_rx_ms >= d->idle_ack_ms) {
		send_ack(d);
		d->last_rx_ms = now;
		d->idle_ack_ms = d->idle_ack_ms * 2 > IDLE_ACK_MAX_MS
				     ? IDLE_ACK_MAX_MS
				     : d->idle_ack_ms * 2;
	}
}

/* How many leading fragments are on disk: table fragments as they are
 * written, payload fragments only once every block they touch has passed
 * its check and is in the slot. */
static uint32_t durable(const struct dev *d)
{
	uint32_t t = d->p.table_fragments;
	if (!d->table_ok)
		return d->cum < t ? d->cum : t;
	if (d->wprefix >= d->nblocks)
		return nfrags(d);
	uint64_t k = d->wprefix * d->m.block_size / d->p.fragment_size;
	return t + (uint32_t)(k < d->p.fragments ? k : d->p.fragments);
}

/* Make progress durable: data first, then the record that names it. */
static void checkpoint(struct dev *d)
{
	if ((d->part_fd >= 0 && fdatasync(d->part_fd) != 0) ||
	    (d->table_fd >= 0 && !d->table_ok &&
	     fdatasync(d->table_fd) != 0)) {
		log_warn("device=%s fdatasync", d->cfg.id);
		return;
	}
	d->p.held = durable(d);
	d->since_ckpt = 0;
	dev__persist(d);
}

#define TABLE_CACHE_MAX (64u << 10) /* tables up to this stay in memory */

/* The table has been checked: make it durable once (checkpoints no longer
 * sync it), and keep it in memory when small (packages up to 8 MiB). */
static void table_ready(struct dev *d)
{
	size_t len = (size_t)d->nblocks * PROTO_SHA256_LEN;
	d->table_ok = true;
	if (fdatasync(d->table_fd) != 0)
		log_warn("device=%s fdatasync", d->cfg.id);
	if (len <= TABLE_CACHE_MAX && (d->table = malloc(len)) != NULL &&
	    pread(d->table_fd, d->table, len, 0) != (ssize_t)len) {
		free(d->table);
		d->table = NULL;
	}
}

/* The table is complete: does it hash to what the manifest signed? */
static bool table_check(struct dev *d)
{
	uint8_t md[PROTO_SHA256_LEN];
	uint64_t len = 0;
	char err[128];
	if (lseek(d->table_fd, 0, SEEK_SET) != 0 ||
	    util_sha256_fd(d->table_fd, md, &len, err, sizeof(err)) != 0 ||
	    len != d->nblocks * PROTO_SHA256_LEN ||
	    memcmp(md, d->m.blocks, sizeof(md)) != 0)
		return false;
	return true;
}

/* Open (or reopen) the slot and the table file; false on failure (the
 * update has been failed). */
static bool open_parts(struct dev *d, bool truncate)
{
	char part[PATH_MAX], tab[PATH_MAX];
	int fl = O_RDWR | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0);
	dev__slot_path(d, inactive_slot(d), "payload.part", part, sizeof(part));
	dev__slot_path(d, inactive_slot(d), TABLE_FILE, tab, sizeof(tab));
	if (d->part_fd < 0)
		d->part_fd = open(part, fl, 0600);
	if (d->table_fd < 0)
		d->table_fd = open(tab, fl, 0600);
	if (d->part_fd < 0 || d->table_fd < 0) {
		fail_update(d, "cannot open the inactive slot for writing");
		return false;
	}
	return true;
}

/* Open (or resume) the download of the offered release. */
static int download_begin(struct dev *d, const struct proto_offer *o,
			  bool resume)
{
	close_part(d);
	uint32_t h = resume ? d->p.held : 0, t = d->p.table_fragments;
	uint32_t fs = o->fragment_size, bs = d->m.block_size;
	if (!open_parts(d, false))
		return -1;
	d->nblocks = proto_block_count(&d->m);
	/* What the checkpoint names must still be there. */
	struct stat st;
	uint64_t pay = h > t ? (uint64_t)(h - t) * fs : 0;
	if (pay > d->m.size)
		pay = d->m.size;
	uint64_t wp = (pay + bs - 1) / bs; /* blocks holding those bytes */
	if (h > 0 && (fstat(d->part_fd, &st) != 0 ||
		      (uint64_t)st.st_size < (wp * bs < d->m.size ? wp * bs
								  : d->m.size)))
		h = 0;
	if (h >= t && h > 0 && !table_check(d)) {
		log_warnx("device=%s saved block table damaged: starting over",
			  d->cfg.id);
		h = 0;
	}
	if (h == 0) {
		wp = 0;
		if (ftruncate(d->part_fd, 0) != 0 ||
		    ftruncate(d->table_fd, 0) != 0) {
			fail_update(d, "cannot truncate the inactive slot");
			return -1;
		}
	}
	d->p.held = h;
	if (h >= t && h > 0)
		table_ready(d);
	/* Enough buffers for every block a window of fragments can touch
	 * (>= one fragment's worth plus two partial blocks), within 1 MiB
	 * or two blocks. */
	uint64_t span = (uint64_t)o->window * fs / bs + 2;
	uint64_t cap = ((1u << 20) > 2 * bs ? (1u << 20) : 2 * bs) / bs;
	d->nbufs = (uint32_t)(span < cap ? span : cap);
	if (d->nbufs < (uint64_t)fs / bs + 2)
		d->nbufs = fs / bs + 2;
	d->held = calloc(nfrags(d) / 8 + 1, 1);
	d->written = calloc(d->nblocks / 8 + 1, 1);
	d->bufs = calloc(d->nbufs, sizeof(*d->bufs));
	if (!d->held || !d->written || !d->bufs) {
		fail_update(d, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < h; i++)
		d->held[i >> 3] |= (uint8_t)(1u << (i & 7));
	d->wprefix = wp;
	for (uint64_t b = 0; b < wp; b++)
		d->written[b >> 3] |= (uint8_t)(1u << (b & 7));
	d->cum = h;
	d->unacked = d->since_ckpt = 0;
	d->last_rx_ms = util_mono_ms();
	d->idle_ack_ms = IDLE_ACK_MIN_MS;
	uv_timer_start(&d->status_timer, status_timer_cb, STATUS_EVERY_MS,
		       STATUS_EVERY_MS);
	return 0;
}

/* A key set carried by the offer: adopt it when it is newer and signed by
 * our root; keep it in state_dir so a restart still trusts it. */
static void offer_keyset(struct dev *d, const struct proto_offer *o)
{
	char why[256], path[PATH_MAX];
	if (!o->keyset || !d->trust.have_root)
		return;
	int rc = trust_update(&d->trust, o->keyset, o->keyset_len,
			      dev__now_s(d), why, sizeof(why));
	if (rc < 0) {
		log_warnx("device=%s key set in offer refused: %s", d->cfg.id,
			  why);
		return;
	}
	if (rc == 0)
		return;
	util_path(path, sizeof(path), d->cfg.state_dir, "keyset.json");
	if (util_write_atomic(path, o->keyset, o->keyset_len, 0600, why,
			      sizeof(why)) != 0)
		log_warnx("device=%s cannot keep the key set: %s", d->cfg.id,
			  why);
	log_info("device=%s key set version %llu trusted (%u publisher "
		 "keys)",
		 d->cfg.id, (unsigned long long)d->trust.env.ks.version,
		 d->trust.env.ks.npub);
}

/* Anti-rollback (PROTOCOL.md "Rollback protection"): 0 may install, 1
 * not (why says which rule). */
static int rollback_rules(const struct dev *d, const struct proto_manifest *m,
			  char *why, size_t n)
{
	int run, hi, rep = 0;
	if (m->security_version < d->p.security_floor) {
		snprintf(why, n, "security_version %u is below this device's "
				 "%u (anti-rollback)",
			 m->security_version, d->p.security_floor);
		return 1;
	}
	if (proto_version_cmp(m->version, d->p.version, &run) != 0 ||
	    proto_version_cmp(m->version, d->p.highest, &hi) != 0)
		run = 0;
	if (!m->downgrade) {
		if (run > 0 && hi > 0)
			return 0;
		snprintf(why, n, "version %s is not newer than the %s %s "
				 "(anti-rollback)", m->version,
			 run > 0 ? "highest installed" : "running",
			 run > 0 ? d->p.highest : d->p.version);
		return 1;
	}
	if (run >= 0) {
		snprintf(why, n, "signed downgrade to %s is not older than the "
				 "running %s", m->version, d->p.version);
		return 1;
	}
	if (proto_version_cmp(d->p.highest, m->replaces, &rep) != 0 ||
	    rep > 0) {
		snprintf(why, n, "signed downgrade to %s replaces %s, but this "
				 "device has run %s since (anti-rollback)",
			 m->version, m->replaces, d->p.highest);
		return 1;
	}
	return 0;
}

static int check_offer(struct dev *d, const struct proto_offer *o,
		       struct proto_manifest *m, char *why, size_t n)
{
	struct proto_err perr = {{0}};
	uint8_t rid[PROTO_RELEASE_ID_LEN];
	char hex[PROTO_RELEASE_HEX_LEN + 1], err[PROTO_ERROR_MAX + 1];
	offer_keyset(d, o);
	if (proto_manifest_decode(o->manifest, o->manifest_len, m, &perr)) {
		snprintf(why, n, "manifest unreadable: %s", perr.text);
		return -1;
	}
	if (trust_check(&d->trust, m->product, o->manifest, o->manifest_len,
			o->sig, dev__now_s(d), err, sizeof(err)) != 0) {
		snprintf(why, n, "%s", err);
		return -1;
	}
	proto_release_id(o->manifest, o->manifest_len, rid);
	proto_hex_encode(rid, sizeof(rid), hex);
	if (strcmp(hex, o->release) != 0) {
		snprintf(why, n, "offer names release %s but the manifest is "
				 "release %s", o->release, hex);
		return -1;
	}
	if (strcmp(m->product, d->cfg.product) != 0) {
		snprintf(why, n, "package is for product '%s', this device "
				 "is '%s'", m->product, d->cfg.product);
		return -1;
	}
	if (m->expires && dev__now_s(d) >= m->expires) {
		snprintf(why, n, "package expired at %lld (now %lld%s)",
			 (long long)m->expires, (long long)dev__now_s(d),
			 util_wall_ms() / 1000 - d->cfg.test_clock_behind_s <
				 d->p.time_floor
			     ? ", from the newest manifest seen: the clock is "
			       "behind"
			     : "");
		return 1;
	}
	if (rollback_rules(d, m, why, n) != 0)
		return 1;
	if (m->downgrade)
		log_warnx("device=%s accepting a signed downgrade %s -> %s "
			  "(replaces %s)",
			  d->cfg.id, d->p.version, m->version, m->replaces);
	if (m->size > (uint64_t)d->cfg.max_package_mb << 20) {
		snprintf(why, n, "package of %llu bytes exceeds this device's "
				 "limit of %u MiB",
			 (unsigned long long)m->size, d->cfg.max_package_mb);
		return -1;
	}
	if (m->block_size == 0) {
		snprintf(why, n, "package has no block table: the publisher "
				 "must re-pack it with a current ota-gateway");
		return -1;
	}
	if (o->table_fragments !=
	    proto_table_fragments(m, o->fragment_size)) {
		snprintf(why, n, "offer has %u block table fragments, the "
				 "manifest needs %u", o->table_fragments,
			 proto_table_fragments(m, o->fragment_size));
		return -1;
	}
	if ((uint64_t)o->fragments !=
	    (m->size + o->fragment_size - 1) / o->fragment_size) {
		snprintf(why, n, "offer has %u fragments of %u bytes for %llu "
				 "bytes", o->fragments, o->fragment_size,
			 (unsigned long long)m->size);
		return -1;
	}
	struct statvfs vfs;
	if (statvfs(d->cfg.state_dir, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < m->size + (1u << 20)) {
		snprintf(why, n, "not enough storage: %llu bytes free, "
				 "package needs %llu",
			 (unsigned long long)vfs.f_bavail * vfs.f_frsize,
			 (unsigned long long)m->size);
		return -1;
	}
	return 0;
}

static bool download_all_in(const struct dev *d);
static void download_complete(struct dev *d);

static void on_offer(struct dev *d, const void *payload, size_t len)
{
	struct proto_offer o;
	struct proto_err perr = {{0}};
	struct proto_manifest m;
	char why[PROTO_ERROR_MAX + 1];
	if (proto_offer_decode(payload, len, &o, &perr) != 0) {
		d->stats.msgs_bad++;
		log_warnx("device=%s malformed offer dropped: %s", d->cfg.id,
			  perr.text);
		return;
	}
	if (!strcmp(o.release, d->p.refused)) {
		d->stats.msgs_stale++;
		log_info("device=%s offer of %s ignored: it was rolled back "
			 "here", d->cfg.id, o.release);
		goto out;
	}
	bool same = !strcmp(o.release, d->p.release);
	if (same && d->st == PROTO_ST_DOWNLOADING && d->held) {
		/* A gateway that lost its content key sends a new one. */
		if (d->enc && o.enc_alg[0] &&
		    memcmp(o.enc_epk, d->p.enc_epk, PROTO_EC_PUB_LEN) != 0 &&
		    dev__enc_accept(d, &o, why, sizeof(why)) != 0)
			log_warnx("device=%s new key of %s ignored: %s",
				  d->cfg.id, o.release, why);
		d->restart_spread_ms = o.restart_spread_ms;
		if (download_all_in(d))
			download_complete(d);
		else
			send_ack(d); /* the gateway lost track: say where we are */
		goto out;
	}
	if (d->busy || (d->st != PROTO_ST_IDLE &&
			d->st != PROTO_ST_COMMITTED &&
			d->st != PROTO_ST_FAILED &&
			d->st != PROTO_ST_ROLLED_BACK &&
			d->st != PROTO_ST_DOWNLOADING)) {
		d->stats.msgs_stale++;
		log_info("device=%s offer of %s ignored while %s", d->cfg.id,
			 o.release, st_name(d->st));
		goto out;
	}
	int rc = check_offer(d, &o, &m, why, sizeof(why));
	if (rc == 0 && dev__enc_accept(d, &o, why, sizeof(why)) != 0)
		rc = -1; /* encrypted, and not for this device */
	if (rc > 0) {
		log_info("device=%s offer of %s ignored: %s", d->cfg.id,
			 o.release, why);
		goto out;
	}
	if (rc < 0) {
		log_warnx("device=%s offer of %s REFUSED: %s", d->cfg.id,
			  o.release, why);
		snprintf(d->p.release, sizeof(d->p.release), "%s", o.release);
		d->p.t_accept = 0;
		fail_update(d, why);
		goto out;
	}
	/* Accept. Resume when this is the release our checkpoint names. */
	bool resume = same && d->p.held > 0 && d->p.manifest &&
		      !strcmp(d->p.manifest, o.manifest) &&
		      d->p.fragment_size == o.fragment_size &&
		      d->p.table_fragments == o.table_fragments;
	free(d->p.manifest);
	d->p.manifest = strdup(o.manifest);
	memcpy(d->p.sig, o.sig, PROTO_SIG_LEN);
	snprintf(d->p.release, sizeof(d->p.release), "%s", o.release);
	d->p.fragment_size = o.fragment_size;
	d->p.fragments = o.fragments;
	d->p.table_fragments = o.table_fragments;
	d->p.window = o.window;
	d->restart_spread_ms = o.restart_spread_ms;
	if (!resume) {
		d->p.held = 0;
		d->bad_blocks = 0;
		d->p.t_accept = util_wall_ms();
		d->p.t_downloaded = d->p.t_verified = d->p.t_installed = 0;
		d->p.t_restart = d->p.t_up = 0;
	}
	d->m = m;
	if (m.created > d->p.time_floor)
		d->p.time_floor = m.created;
	uint8_t rid[PROTO_RELEASE_ID_LEN];
	proto_hex_decode(o.release, rid, sizeof(rid));
	d->tag = proto_release_tag(rid);
	if (download_begin(d, &o, resume) != 0)
		goto out;
	log_info("device=%s accepted release=%s version=%s size=%llu "
		 "fragments=%u+%u resume_from=%u",
		 d->cfg.id, o.release, m.version, (unsigned long long)m.size,
		 o.table_fragments, o.fragments, d->cum);
	dev__set_state(d, PROTO_ST_DOWNLOADING, NULL);
	dev__persist(d);
	group_unsubscribe(d);
	if (o.group) {
		/* Before the accept: the broker handles our SUBSCRIBE before
		 * the ack behind it, so the group's first fragment finds us. */
		snprintf(d->topic_grp, sizeof(d->topic_grp),
			 PROTO_GROUP_TOPIC_FMT, o.release);
		if (mq_subscribe(d->mq, d->topic_grp, 0) != 0)
			d->topic_grp[0] = '\0';
	}
	send_ack(d);
out:
	proto_offer_free(&o);
}

/* Every fragment is in the slot: close the download and record that it is
 * complete (phase `verifying`) before the block table is removed, so that
 * no cut loses it. A cut before the record resumes with every fragment
 * held and comes here again (resume_download); a cut after it verifies
 * the image at the next start. */
static void download_closed(struct dev *d)
{
	close_part(d);
	d->p.t_downloaded = util_wall_ms();
	d->p.phase = PROTO_ST_VERIFYING;
	dev__persist(d);
	unlink_part(d, TABLE_FILE);
	dev__crash_point(d, "table-removed");
}

static bool download_all_in(const struct dev *d)
{
	return d->held && d->cum == nfrags(d) && d->wprefix == d->nblocks;
}

static void download_complete(struct dev *d)
{
	send_ack(d);
	group_unsubscribe(d);
	checkpoint(d);
	dev__crash_point(d, "downloaded");
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

static void set_held(struct dev *d, uint32_t i, bool on)
{
	if (on)
		d->held[i >> 3] |= (uint8_t)(1u << (i & 7));
	else
		d->held[i >> 3] &= (uint8_t)~(1u << (i & 7));
}

/* Payload fragments (0-based) that hold bytes of block b. */
static void block_frags(const struct dev *d, uint64_t b, uint32_t *first,
			uint32_t *last)
{
	uint64_t off = b * d->m.block_size;
	*first = (uint32_t)(off / d->p.fragment_size);
	*last = (uint32_t)((off + proto_block_len(&d->m, b) - 1) /
			   d->p.fragment_size);
}

/* Drop block b's fragments: they are asked for again. */
static void unhold_block(struct dev *d, uint64_t b)
{
	uint32_t first, last, t = d->p.table_fragments;
	block_frags(d, b, &first, &last);
	for (uint32_t k = first; k <= last; k++)
		set_held(d, t + k, false);
	if (d->cum > t + first)
		d->cum = t + first;
}

/* Check block b (its bytes at data) against its table entry (from the
 * table in memory when it is small, else from the table file). 1: it
 * matches; 0: it does not (counted and logged; the caller drops its
 * fragments); -1: too many failures, the update has failed. */
static int block_check(struct dev *d, uint64_t b, const uint8_t *data)
{
	uint8_t want[PROTO_SHA256_LEN], got[PROTO_SHA256_LEN];
	bool have = true;
	if (d->table)
		memcpy(want, d->table + b * PROTO_SHA256_LEN, sizeof(want));
	else
		have = pread(d->table_fd, want, sizeof(want),
			     (off_t)(b * PROTO_SHA256_LEN)) == sizeof(want);
	if (have && proto_sha256(data, proto_block_len(&d->m, b), got) == 0 &&
	    memcmp(want, got, sizeof(got)) == 0)
		return 1;
	uint32_t first, last, t = d->p.table_fragments;
	block_frags(d, b, &first, &last);
	d->stats.blocks_bad++;
	log_warnx("device=%s release=%s block %llu of %llu does not match the "
		  "signed block table: dropped, fragments %u-%u asked for again",
		  d->cfg.id, d->p.release, (unsigned long long)b,
		  (unsigned long long)d->nblocks, t + first, t + last);
	if (++d->bad_blocks > BAD_BLOCKS_MAX(d)) {
		char why[PROTO_ERROR_MAX + 1];
		snprintf(why, sizeof(why),
			 "%u blocks failed their digest check: the data is "
			 "being corrupted or forged",
			 d->bad_blocks);
		fail_update(d, why);
		return -1;
	}
	return 0;
}

/* Write n checked blocks from b on (their bytes at data) to the slot in
 * one write. 0, or -1 when the update has failed. */
static int slot_write(struct dev *d, uint64_t b, uint64_t n,
		      const uint8_t *data)
{
	if (n == 0)
		return 0;
	uint64_t off = b * d->m.block_size;
	size_t len = (size_t)((b + n - 1) * d->m.block_size +
			      proto_block_len(&d->m, b + n - 1) - off);
	ssize_t w = pwrite(d->part_fd, data, len, (off_t)off);
	if (w != (ssize_t)len) {
		char why[PROTO_ERROR_MAX + 1];
		snprintf(why, sizeof(why), "writing the inactive slot failed: %s",
			 w < 0 ? strerror(errno) : "short write");
		log_warnx("device=%s %s", d->cfg.id, why);
		fail_update(d, why);
		return -1;
	}
	for (uint64_t i = b; i < b + n; i++)
		d->written[i >> 3] |= (uint8_t)(1u << (i & 7));
	d->stats.blocks_ok += n;
	while (d->wprefix < d->nblocks && is_written(d, d->wprefix))
		d->wprefix++;
	return 0;
}

/* Check block b and, when it matches, write it. 1: written; 0: it did
 * not match; -1: the update has failed. */
static int block_put(struct dev *d, uint64_t b, const uint8_t *data)
{
	int rc = block_check(d, b, data);
	if (rc <= 0)
		return rc;
	return slot_write(d, b, 1, data) < 0 ? -1 : 1;
}

/* Take a payload fragment. A block wholly inside it is checked and
 * written at once (once the table is checked); the parts of blocks it
 * shares with other fragments are copied into the block's buffer,
 * bufs[b % nbufs]. That buffer may hold another block: a higher one gives
 * way (its fragments are asked for again), so the lowest blocks always
 * progress; a lower one keeps it, and this fragment is dropped to come
 * again later. 1: held; 0: dropped; -1: the update has failed. */
static int take_frag(struct dev *d, uint32_t k, const uint8_t *data,
		     size_t len)
{
	uint32_t bs = d->m.block_size;
	uint64_t off = (uint64_t)k * d->p.fragment_size, end = off + len;
	uint64_t run = 0, run_b = 0; /* checked blocks not yet written */
#define FLUSH()                                                                \
	do {                                                                   \
		if (slot_write(d, run_b, run, data + (run_b * bs - off)) < 0)  \
			return -1;                                             \
		run = 0;                                                       \
	} while (0)
	for (uint64_t b = off / bs; b * bs < end; b++) {
		if (is_written(d, b)) {
			FLUSH();
			continue;
		}
		uint64_t lo = b * bs, hi = lo + proto_block_len(&d->m, b);
		struct dev_blockbuf *u = &d->bufs[b % d->nbufs];
		if (d->table_ok && lo >= off && hi <= end) {
			if (u->live && u->block == b)
				u->live = false;
			int rc = block_check(d, b, data + (lo - off));
			if (rc <= 0) {
				if (rc == 0)
					FLUSH(); /* keep the good ones */
				return rc; /* a bad block: drop it all */
			}
			if (run == 0)
				run_b = b;
			run++;
			continue;
		}
		FLUSH();
		if (u->live && u->block < b) {
			d->stats.frags_nobuf++;
			return 0;
		}
		if (u->live && u->block > b) {
			d->stats.blocks_evicted++;
			unhold_block(d, u->block);
		}
		if (!u->data && !(u->data = malloc(bs))) {
			d->stats.frags_nobuf++;
			return 0;
		}
		u->block = b;
		u->live = true;
		if (lo < off)
			lo = off;
		if (hi > end)
			hi = end;
		memcpy(u->data + (lo - b * bs), data + (lo - off), hi - lo);
	}
	FLUSH();
	return 1;
#undef FLUSH
}

/* Check block b once all its fragments are held: into the slot when it
 * matches the table, else its fragments are dropped and asked for again.
 * Returns -1 when the update has failed (and d->held is gone). */
static int block_try(struct dev *d, uint64_t b)
{
	uint32_t first, last, t = d->p.table_fragments;
	if (!d->table_ok || is_written(d, b))
		return 0;
	block_frags(d, b, &first, &last);
	for (uint32_t k = first; k <= last; k++)
		if (!is_held(d, t + k))
			return 0;
	struct dev_blockbuf *u = &d->bufs[b % d->nbufs];
	if (!u->live || u->block != b) { /* cannot happen; recover anyway */
		unhold_block(d, b);
		return 0;
	}
	int rc = block_put(d, b, u->data);
	if (rc < 0)
		return -1;
	u->live = false;
	if (rc == 0)
		unhold_block(d, b);
	return 0;
}

/* The last table fragment is in: check the table, then every block that
 * was waiting for it. */
static int table_complete(struct dev *d)
{
	uint32_t t = d->p.table_fragments;
	if (!table_check(d)) {
		d->stats.tables_bad++;
		log_warnx("device=%s release=%s block table does not match "
			  "the signed manifest: asked for again",
			  d->cfg.id, d->p.release);
		if (++d->bad_blocks > BAD_BLOCKS_MAX(d)) {
			fail_update(d, "the block table keeps failing its "
				       "check: the data is being corrupted "
				       "or forged");
			return -1;
		}
		for (uint32_t i = 0; i < t; i++)
			set_held(d, i, false);
		d->cum = 0;
		return 0;
	}
	table_ready(d);
	for (uint32_t i = 0; i < d->nbufs; i++)
		if (d->bufs[i].live && block_try(d, d->bufs[i].block) < 0)
			return -1;
	return 0;
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
	if (rc == PROTO_EAUTH && ++d->bad_blocks > BAD_BLOCKS_MAX(d))
		fail_update(d, "fragments keep failing decryption: the data "
			       "is being corrupted or forged");
	return -1;
}

static void on_frag(struct dev *d, const void *payload, size_t len,
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
		return;
	}
	if (d->st != PROTO_ST_DOWNLOADING || !d->held || f.tag != d->tag) {
		d->stats.msgs_stale++;
		return;
	}
	d->last_rx_ms = util_mono_ms();
	d->idle_ack_ms = IDLE_ACK_MIN_MS;
	uint32_t n = nfrags(d), t = d->p.table_fragments;
	uint32_t fs = d->p.fragment_size;
	uint64_t end = f.index < t ? d->nblocks * PROTO_SHA256_LEN : d->m.size;
	uint64_t off = (uint64_t)(f.index < t ? f.index : f.index - t) * fs;
	size_t want = off + fs > end ? (size_t)(end - off) : fs;
	if (d->enc)
		want += PROTO_ENC_TAG_LEN; /* sealed: data, then its tag */
	if (f.index >= n || f.len != want) {
		d->stats.msgs_bad++;
		log_debug("device=%s fragment %u of %u with %zu bytes dropped",
			  d->cfg.id, f.index, n, f.len);
		return;
	}
	if (from_group && f.index >= d->cum + d->p.window) {
		/* A group's fragment that ran ahead of us (we left the group,
		 * which went on without us): dropped quietly, without an ack;
		 * the gateway sends it on our own topic when our window gets
		 * there. */
		d->stats.frags_ahead++;
		return;
	}
	uint8_t *corrupt = NULL;
	if (d->cfg.test_corrupt_percent &&
	    test_coin(d, d->cfg.test_corrupt_percent) &&
	    (corrupt = malloc(f.len)) != NULL) {
		memcpy(corrupt, f.data, f.len);
		corrupt[f.len / 2] ^= 0x5a;
		f.data = corrupt;
		d->stats.frags_corrupted_test++;
	}
	if (is_held(d, f.index)) {
		d->stats.frags_dup++;
		d->unacked++;
		if (download_all_in(d)) {
			download_complete(d);
			goto out;
		}
		goto ack;
	}
	if (d->enc && frag_decrypt(d, payload, &f) != 0)
		goto out; /* not authentic: not held, so asked for again */
	if (f.index < t) {
		/* The table goes to its own file: checked whole, below. */
		ssize_t w = pwrite(d->table_fd, f.data, f.len, (off_t)off);
		if (w != (ssize_t)f.len) {
			char why[PROTO_ERROR_MAX + 1];
			snprintf(why, sizeof(why),
				 "writing the block table failed: %s",
				 w < 0 ? strerror(errno) : "short write");
			log_warnx("device=%s %s", d->cfg.id, why);
			fail_update(d, why);
			goto out;
		}
	} else {
		int rc = take_frag(d, f.index - t, f.data, f.len);
		if (rc < 0)
			goto out; /* the update failed */
		if (rc == 0) { /* a bad block, or no room now: not held */
			send_ack(d);
			goto out;
		}
	}
	set_held(d, f.index, true);
	d->stats.frags_ok++;
	d->unacked++;
	uint32_t before = d->cum;
	uint64_t bad = d->stats.blocks_bad + d->stats.tables_bad +
		       d->stats.blocks_evicted;
	while (d->cum < n && is_held(d, d->cum))
		d->cum++;
	if (!d->table_ok && d->cum >= t && table_complete(d) < 0)
		goto out;
	if (f.index >= t) {
		uint32_t first = f.index - t;
		uint64_t b0 = (uint64_t)first * fs / d->m.block_size;
		uint64_t b1 = ((uint64_t)first * fs + f.len - 1) /
			      d->m.block_size;
		for (uint64_t b = b0; b <= b1; b++)
			if (block_try(d, b) < 0)
				goto out;
	}
	if (d->stats.blocks_bad + d->stats.tables_bad +
		d->stats.blocks_evicted !=
	    bad) {
		send_ack(d); /* we dropped fragments: say which at once */
		goto out;
	}
	if (d->cum < before) {
		send_ack(d);
		goto out;
	}
	d->since_ckpt += d->cum - before;
	if (d->cum == n && d->wprefix == d->nblocks) {
		download_complete(d);
		goto out;
	}
	if (d->since_ckpt >= d->cfg.checkpoint_every)
		checkpoint(d);
	if (f.index != before) {
		send_ack(d); /* out of order: tell the gap at once */
		goto out;
	}
ack:;
	uint32_t every = d->p.window / 4 ? d->p.window / 4 : 1;
	if (d->unacked >= every)
		send_ack(d);
	else if (!uv_is_active((uv_handle_t *)&d->ack_timer))
		uv_timer_start(&d->ack_timer, ack_timer_cb, ACK_DELAY_MS, 0);
out:
	free(corrupt);
}

/* ------------------------------------------------------------ MQTT */

static void on_message(struct mq *mq, void *ud, const char *topic,
		       const void *payload, size_t len)
{
	(void)mq;
	struct dev *d = ud;
	const char *leaf = strrchr(topic, '/');
	if (!leaf) {
		d->stats.msgs_bad++;
		return;
	}
	if (!strcmp(leaf, "/frag"))
		on_frag(d, payload, len,
			d->topic_grp[0] && !strcmp(topic, d->topic_grp));
	else if (!strcmp(leaf, "/offer"))
		on_offer(d, payload, len);
	else if (!dev__poll_message(d, topic, payload, len))
		d->stats.msgs_bad++;
}

static void on_connect(struct mq *mq, void *ud)
{
	struct dev *d = ud;
	char t[PROTO_ID_MAX + 24];
	snprintf(t, sizeof(t), "ota/dev/%s/offer", d->cfg.id);
	mq_subscribe(mq, t, 1);
	snprintf(t, sizeof(t), "ota/dev/%s/frag", d->cfg.id);
	mq_subscribe(mq, t, 0);
	dev__poll_subscribe(d);
	/* A clean session forgets subscriptions: a group member whose
	 * connection dropped (or whose broker restarted) subscribes again,
	 * before it says where it is. */
	if (d->topic_grp[0] && d->st == PROTO_ST_DOWNLOADING)
		mq_subscribe(mq, d->topic_grp, 0);
	dev__publish_status(d);
	if (d->st == PROTO_ST_DOWNLOADING && d->held)
		send_ack(d); /* resume: tell the gateway what we hold */
}

static void on_disconnect(struct mq *mq, void *ud, const char *why)
{
	(void)mq;
	struct dev *d = ud;
	if (!d->stopping)
		log_warnx("device=%s connection lost: %s (reconnecting)",
			  d->cfg.id, why);
}

/* The newest key set this device accepted from an offer, if any. It was
 * checked against the root chain when it arrived; the device's own state
 * directory is trusted as state.json is (a damaged copy is set aside). */
static void trust_restore(struct dev *d)
{
	char path[PATH_MAX], why[256], *json = NULL;
	size_t len;
	if (!d->trust.have_root)
		return;
	util_path(path, sizeof(path), d->cfg.state_dir, "keyset.json");
	if (access(path, F_OK) != 0)
		return;
	if (util_read_file(path, PROTO_KEYSET_MAX, &json, &len, why,
			   sizeof(why)) != 0 ||
	    trust_restore_saved(&d->trust, json, len, why, sizeof(why)) < 0)
		log_warnx("device=%s %s: %s: using the configured trust until "
			  "an offer brings a key set",
			  d->cfg.id, path, why);
	free(json);
}

int dev_init(struct dev *d, uv_loop_t *loop, const struct dev_config *cfg,
	     char **argv, char *err, size_t errlen)
{
	memset(d, 0, sizeof(*d));
	d->loop = loop;
	d->cfg = *cfg;
	d->argv = argv;
	d->part_fd = d->table_fd = -1;
	char path[PATH_MAX];
	if (trust_load(&d->trust, cfg->publisher_key, cfg->root_keys,
		       cfg->root_threshold, cfg->keyset_file, true, 0, err,
		       errlen) != 0)
		return -1;
	for (const char *sub = "a"; *sub; sub = (*sub == 'a') ? "b" : "") {
		snprintf(path, sizeof(path), "%s/slot-%s", cfg->state_dir, sub);
		if (util_mkdirs(path, 0700, err, errlen) != 0)
			goto fail;
	}
	if (dev_load(d, err, errlen) != 0)
		goto fail;
	trust_restore(d);
	if (cfg->root_keys[0] && cfg->publisher_key[0] && !cfg->restart_inproc)
		log_warnx("device=%s publisher_key is not used: root_keys is "
			  "set, so key sets say who may sign",
			  cfg->id);
	d->st = PROTO_ST_IDLE;
	snprintf(d->topic_status, sizeof(d->topic_status), "ota/dev/%s/status",
		 cfg->id);
	snprintf(d->topic_ack, sizeof(d->topic_ack), "ota/dev/%s/ack", cfg->id);
	uv_timer_init(loop, &d->ack_timer);
	uv_timer_init(loop, &d->status_timer);
	uv_timer_init(loop, &d->health_timer);
	uv_timer_init(loop, &d->poll_timer);
	d->ack_timer.data = d->status_timer.data = d->health_timer.data = d;
	d->poll_timer.data = d;
	return 0;
fail:
	trust_free(&d->trust);
	free(d->p.manifest);
	d->p.manifest = NULL;
	return -1;
}

static void resume_download(struct dev *d)
{
	char why[PROTO_ERROR_MAX + 1];
	uint8_t rid[PROTO_RELEASE_ID_LEN];
	if (dev__load_manifest(d, why, sizeof(why)) != 0 ||
	    proto_hex_decode(d->p.release, rid, sizeof(rid)) != 0 ||
	    d->p.fragment_size < PROTO_FRAG_SIZE_MIN ||
	    (uint64_t)d->p.fragments !=
		(d->m.size + d->p.fragment_size - 1) / d->p.fragment_size ||
	    d->m.block_size == 0 ||
	    d->p.table_fragments !=
		proto_table_fragments(&d->m, d->p.fragment_size) ||
	    dev__enc_resume(d, why, sizeof(why)) != 0) {
		log_warnx("device=%s saved download unusable; waiting for a "
			  "new offer", d->cfg.id);
		d->st = d->p.phase = PROTO_ST_IDLE;
		d->p.held = 0;
		return;
	}
	d->tag = proto_release_tag(rid);
	struct proto_offer o = {.fragment_size = d->p.fragment_size,
				.fragments = d->p.fragments,
				.table_fragments = d->p.table_fragments,
				.window = d->p.window};
	if (download_begin(d, &o, true) != 0)
		return;
	log_info("device=%s resuming release=%s from fragment %u of %u",
		 d->cfg.id, d->p.release, d->cum, nfrags(d));
	if (download_all_in(d)) { /* cut after the last checkpoint */
		download_closed(d);
		d->st = PROTO_ST_VERIFYING; /* dev_start verifies it */
	}
}

int dev_start(struct dev *d)
{
	char err[512];
	struct proto_status s;
	char *will = NULL;
	size_t wlen = 0;
	/* Where did the last run stop? Continue from there. */
	dev__reconcile_active(d);
	switch (d->p.phase) {
	case PROTO_ST_RESTARTING:
		dev__resume_after_restart(d);
		break;
	case PROTO_ST_DOWNLOADING:
		/* Power cut mid-download: reopen the slot at the checkpoint;
		 * the first ack after connecting tells the gateway. */
		d->st = PROTO_ST_DOWNLOADING;
		resume_download(d);
		break;
	case PROTO_ST_VERIFYING:
	case PROTO_ST_INSTALLING:
		d->st = d->p.phase;
		break;
	default:
		d->st = d->p.phase == PROTO_ST_OFFLINE ? PROTO_ST_IDLE
						       : d->p.phase;
	}
	status_fill(d, &s, PROTO_ST_OFFLINE);
	if (proto_status_encode(&s, &will, &wlen) != 0)
		return -1;
	struct mq_opts mo = {
	    .host = d->cfg.broker_host,
	    .port = (int)d->cfg.broker_port,
	    .brokers = d->cfg.brokers,
	    .cafile = d->cfg.ca_file,
	    .certfile = d->cfg.cert_file,
	    .keyfile = d->cfg.key_file,
	    .client_id = d->cfg.id,
	    .keepalive = (int)d->cfg.keepalive_s,
	    .will_topic = d->topic_status,
	    .will_payload = will,
	    .will_len = wlen,
	    .will_qos = 1,
	    .will_retain = true,
	    .shared_tls = d->cfg.restart_inproc, /* fleet mode */
	};
	struct mq_cbs cbs = {on_connect, on_disconnect, on_message};
	int rc = mq_new(d->loop, &mo, &cbs, d, &d->mq, err, sizeof(err));
	free(will);
	if (rc != 0) {
		log_warnx("device=%s %s", d->cfg.id, err);
		return -1;
	}
	log_info("device=%s product=%s version=%s slot=%c state=%s starting",
		 d->cfg.id, d->cfg.product, d->p.version, d->p.slot,
		 st_name(d->st));
	if (d->st == PROTO_ST_VERIFYING || d->st == PROTO_ST_INSTALLING)
		dev__verify_start(d); /* interrupted: check the image again */
	return mq_start(d->mq);
}

/* libuv runs close callbacks in no promised order: only the last one may
 * hand the device back (on_stopped may re-initialise both timers). */
static void timer_closed(uv_handle_t *h)
{
	struct dev *d = h->data;
	if (--d->pending_closes == 0 && d->on_stopped)
		d->on_stopped(d);
}

static void mq_stopped(void *ud)
{
	struct dev *d = ud;
	d->mq = NULL;
	d->pending_closes = 4;
	uv_close((uv_handle_t *)&d->ack_timer, timer_closed);
	uv_close((uv_handle_t *)&d->status_timer, timer_closed);
	uv_close((uv_handle_t *)&d->health_timer, timer_closed);
	uv_close((uv_handle_t *)&d->poll_timer, timer_closed);
}

void dev_stop(struct dev *d, void (*on_stopped)(struct dev *d))
{
	if (d->stopping) { /* on its way down already (e.g. a restart) */
		d->on_stopped = on_stopped;
		return;
	}
	d->stopping = true;
	d->on_stopped = on_stopped;
	if (d->health_running) /* its exit is ignored: we are stopping */
		uv_process_kill(&d->health_proc, SIGKILL);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	log_info("device=%s stats frags_ok=%llu dup=%llu dropped_test=%llu "
		 "corrupted_test=%llu nobuf=%llu ahead=%llu evicted=%llu "
		 "blocks_ok=%llu "
		 "blocks_bad=%llu "
		 "tables_bad=%llu unauth=%llu bad=%llu stale=%llu acks=%llu "
		 "peak_rss_kib=%ld",
		 d->cfg.id, (unsigned long long)d->stats.frags_ok,
		 (unsigned long long)d->stats.frags_dup,
		 (unsigned long long)d->stats.frags_dropped_test,
		 (unsigned long long)d->stats.frags_corrupted_test,
		 (unsigned long long)d->stats.frags_nobuf,
		 (unsigned long long)d->stats.frags_ahead,
		 (unsigned long long)d->stats.blocks_evicted,
		 (unsigned long long)d->stats.blocks_ok,
		 (unsigned long long)d->stats.blocks_bad,
		 (unsigned long long)d->stats.tables_bad,
		 (unsigned long long)d->stats.frags_unauth,
		 (unsigned long long)d->stats.msgs_bad,
		 (unsigned long long)d->stats.msgs_stale,
		 (unsigned long long)d->stats.acks_sent, ru.ru_maxrss);
	if (d->held) {
		checkpoint(d);
		close_part(d);
	}
	free(d->p.manifest);
	d->p.manifest = NULL;
	dev__enc_free(d);
	trust_free(&d->trust);
	if (d->mq && d->st != PROTO_ST_RESTARTING && mq_connected(d->mq)) {
		/* A clean stop sends no Last Will: say it ourselves. */
		enum proto_state st = d->st;
		d->st = PROTO_ST_OFFLINE;
		dev__publish_status(d);
		d->st = st;
	}
	if (d->mq)
		mq_close(d->mq, mq_stopped);
	else
		mq_stopped(d);
}
