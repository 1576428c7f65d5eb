/* The device: its lifecycle (init, start, stop, restart), its MQTT
 * connection and the update state machine's entry: offers. The top of
 * the device's calls: dev.c -> download.c -> {blocks.c -> rx.c,
 * install.c} -> state.c (dev.h says who owns what). */
#include "device-client/dev.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

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
		snprintf(why, n,
			 "security_version %u is below this device's "
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
		snprintf(why, n,
			 "version %s is not newer than the %s %s "
			 "(anti-rollback)",
			 m->version, run > 0 ? "highest installed" : "running",
			 run > 0 ? d->p.highest : d->p.version);
		return 1;
	}
	if (run >= 0) {
		snprintf(why, n,
			 "signed downgrade to %s is not older than the "
			 "running %s",
			 m->version, d->p.version);
		return 1;
	}
	if (proto_version_cmp(d->p.highest, m->replaces, &rep) != 0 ||
	    rep > 0) {
		snprintf(why, n,
			 "signed downgrade to %s replaces %s, but this "
			 "device has run %s since (anti-rollback)",
			 m->version, m->replaces, d->p.highest);
		return 1;
	}
	return 0;
}

/* A delta (PROTOCOL.md 6.4) only from the image this device runs. */
static int check_base(const struct dev *d, const struct proto_offer *o,
		      char *why, size_t n)
{
	char want[2 * PROTO_SHA256_LEN + 1], have[2 * PROTO_SHA256_LEN + 1];
	if (o->encoding != PROTO_ENCODING_DELTA)
		return 0;
	proto_hex_encode(o->base, PROTO_SHA256_LEN, want);
	proto_hex_encode(d->image, PROTO_SHA256_LEN, have);
	if (!d->has_image || memcmp(o->base, d->image, PROTO_SHA256_LEN) ||
	    strcmp(o->base_version, d->p.version)) {
		snprintf(why, n,
			 "delta from %s (image %.16s...) but this "
			 "device runs %s (image %.16s)",
			 o->base_version, want, d->p.version,
			 d->has_image ? have : "unknown");
		return -1;
	}
	return 0;
}

/* The offer sends the payload the download holds (same encoding, size
 * and base): otherwise a download restarts from zero (6.4). */
static bool same_payload(const struct dev *d, const struct proto_offer *o)
{
	return d->p.encoding == o->encoding &&
	       (o->encoding == PROTO_ENCODING_FULL ||
		d->p.payload_size == o->payload_size) &&
	       (o->encoding != PROTO_ENCODING_DELTA ||
		!memcmp(d->p.base, o->base, PROTO_SHA256_LEN));
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
		snprintf(why, n,
			 "offer names release %s but the manifest is "
			 "release %s",
			 o->release, hex);
		return -1;
	}
	if (strcmp(m->product, d->cfg.product) != 0) {
		snprintf(why, n,
			 "package is for product '%s', this device "
			 "is '%s'",
			 m->product, d->cfg.product);
		return -1;
	}
	if (m->expires && dev__now_s(d) >= m->expires) {
		snprintf(why, n, "package expired at %lld (now %lld%s)",
			 (long long)m->expires, (long long)dev__now_s(d),
			 dev__wall_ms(d) / 1000 - d->cfg.test_clock_behind_s <
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
		snprintf(why, n,
			 "package of %llu bytes exceeds this device's "
			 "limit of %u MiB",
			 (unsigned long long)m->size, d->cfg.max_package_mb);
		return -1;
	}
	if (m->block_size == 0) {
		snprintf(why, n,
			 "package has no block table: the publisher "
			 "must re-pack it with a current ota-gateway");
		return -1;
	}
	if (o->table_fragments != proto_table_fragments(m, o->fragment_size)) {
		snprintf(why, n,
			 "offer has %u block table fragments, the "
			 "manifest needs %u",
			 o->table_fragments,
			 proto_table_fragments(m, o->fragment_size));
		return -1;
	}
	uint64_t psize = o->encoding == PROTO_ENCODING_FULL ? m->size
							    : o->payload_size;
	if ((uint64_t)o->fragments !=
	    (psize + o->fragment_size - 1) / o->fragment_size) {
		snprintf(why, n,
			 "offer has %u fragments of %u bytes for %llu "
			 "bytes",
			 o->fragments, o->fragment_size,
			 (unsigned long long)psize);
		return -1;
	}
	if (check_base(d, o, why, n) != 0)
		return -1;
	struct statvfs vfs;
	if (statvfs(d->cfg.state_dir, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < m->size + (1u << 20)) {
		snprintf(why, n,
			 "not enough storage: %llu bytes free, "
			 "package needs %llu",
			 (unsigned long long)vfs.f_bavail * vfs.f_frsize,
			 (unsigned long long)m->size);
		return -1;
	}
	return 0;
}

/* An offer that needs no check: of the release rolled back here, of the
 * committed one, of the one being downloaded, or while busy. True when
 * it was answered (or ignored) here. */
static bool offer_answered(struct dev *d, const struct proto_offer *o)
{
	char why[PROTO_ERROR_MAX + 1];
	bool same = !strcmp(o->release, d->p.release);
	const char *ignored = NULL;
	if (!strcmp(o->release, d->p.refused))
		ignored = "it was rolled back here";
	else if (same && d->st == PROTO_ST_COMMITTED) {
		/* PROTOCOL.md 8 step 5: the release it runs. No check (its
		 * `failed` would cover the retained `committed`): say again
		 * where it is, for a gateway that lost track. */
		ignored = "already committed";
		dev__publish_status(d);
	} else if (same && d->st == PROTO_ST_DOWNLOADING &&
		   dev__download_open(d) && same_payload(d, o)) {
		/* A gateway that lost its content key sends a new one. */
		if (d->enc && o->enc_alg[0] &&
		    memcmp(o->enc_epk, d->p.enc_epk, PROTO_EC_PUB_LEN) != 0 &&
		    dev__enc_accept(d, o, why, sizeof(why)) != 0)
			log_warnx("device=%s new key of %s ignored: %s",
				  d->cfg.id, o->release, why);
		d->restart_spread_ms = o->restart_spread_ms;
		if (dev__download_all_in(d))
			dev__download_complete(d);
		else
			dev__send_ack(d); /* the gateway lost track */
		return true;
	} else if (d->busy ||
		   (d->st != PROTO_ST_IDLE && d->st != PROTO_ST_COMMITTED &&
		    d->st != PROTO_ST_FAILED && d->st != PROTO_ST_ROLLED_BACK &&
		    d->st != PROTO_ST_DOWNLOADING))
		ignored = "busy";
	if (!ignored)
		return false;
	d->stats.msgs_stale++;
	log_info("device=%s offer of %s ignored: %s (%s, version %s)",
		 d->cfg.id, o->release, ignored, proto_state_name(d->st),
		 d->p.version);
	return true;
}

/* Accept a checked offer: resume when it is the release our checkpoint
 * names, else start from 0; subscribe to its group; the first ack. */
static void offer_accept(struct dev *d, const struct proto_offer *o,
			 const struct proto_manifest *m)
{
	bool resume = !strcmp(o->release, d->p.release) && d->p.held > 0 &&
		      d->p.manifest && !strcmp(d->p.manifest, o->manifest) &&
		      d->p.fragment_size == o->fragment_size &&
		      d->p.table_fragments == o->table_fragments &&
		      same_payload(d, o);
	free(d->p.manifest);
	d->p.manifest = strdup(o->manifest);
	memcpy(d->p.sig, o->sig, PROTO_SIG_LEN);
	snprintf(d->p.release, sizeof(d->p.release), "%s", o->release);
	d->p.fragment_size = o->fragment_size;
	d->p.fragments = o->fragments;
	d->p.table_fragments = o->table_fragments;
	d->p.window = o->window;
	d->restart_spread_ms = o->restart_spread_ms;
	d->p.encoding = o->encoding;
	d->p.payload_size = o->payload_size;
	memcpy(d->p.base, o->base, sizeof(d->p.base));
	if (!resume) {
		d->p.zoff = d->p.zimg = 0;
		d->p.held = 0;
		d->bad_blocks = 0;
		d->p.t_accept = dev__wall_ms(d);
		d->p.t_downloaded = d->p.t_verified = d->p.t_installed = 0;
		d->p.t_restart = d->p.t_up = 0;
	}
	d->m = *m;
	if (m->created > d->p.time_floor)
		d->p.time_floor = m->created;
	uint8_t rid[PROTO_RELEASE_ID_LEN];
	proto_hex_decode(o->release, rid, sizeof(rid));
	d->tag = proto_release_tag(rid);
	if (dev__download_begin(d, o, resume) != 0)
		return;
	log_info("device=%s accepted release=%s version=%s size=%llu "
		 "fragments=%u+%u resume_from=%u encoding=%s%s%s",
		 d->cfg.id, o->release, m->version, (unsigned long long)m->size,
		 o->table_fragments, o->fragments, d->rx.cum,
		 proto_encoding_name(o->encoding),
		 o->encoding == PROTO_ENCODING_DELTA ? " base=" : "",
		 o->encoding == PROTO_ENCODING_DELTA ? o->base_version : "");
	dev__group_unsubscribe(d);
	if (o->group) {
		/* PROTOCOL.md 5.2: before the accepting ack, no wait for the
		 * SUBACK: the broker handles our SUBSCRIBE first. */
		proto_group_topic(o->release, o->encoding, o->base,
				  d->topic_grp, sizeof(d->topic_grp));
		if (mq_subscribe(d->mq, d->topic_grp, 0) != 0)
			d->topic_grp[0] = '\0';
	}
	/* PROTOCOL.md 8 step 6: the ack first, the gateway starts on it; on
	 * a 20 kbit/s uplink the status (~300 bytes) would delay it. */
	dev__send_ack(d);
	dev__set_state(d, PROTO_ST_DOWNLOADING, NULL);
	dev__persist(d);
}

/* PROTOCOL.md 5.2: an offer of a gateway older than the newest leader
 * seen (a replaced active that does not know it yet) is ignored; a newer
 * epoch is kept before anything else is done with the offer. */
static bool offer_stale(struct dev *d, const struct proto_offer *o)
{
	if (o->epoch < d->p.gw_epoch) {
		d->stats.msgs_stale++;
		log_info("device=%s offer of %s ignored: stale gateway epoch "
			 "%u (seen %u)",
			 d->cfg.id, o->release, o->epoch, d->p.gw_epoch);
		return true;
	}
	if (o->epoch > d->p.gw_epoch) {
		log_info("device=%s gateway epoch %u (was %u)", d->cfg.id,
			 o->epoch, d->p.gw_epoch);
		d->p.gw_epoch = o->epoch;
		dev__persist(d);
	}
	return false;
}

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
	if (offer_stale(d, &o))
		goto out;
	if (offer_answered(d, &o))
		goto out;
	int rc = check_offer(d, &o, &m, why, sizeof(why));
	if (rc == 0 && dev__enc_accept(d, &o, why, sizeof(why)) != 0)
		rc = -1; /* encrypted, and not for this device */
	if (rc > 0) {
		log_info("device=%s offer of %s ignored: %s", d->cfg.id,
			 o.release, why);
	} else if (rc < 0) {
		log_warnx("device=%s offer of %s REFUSED: %s", d->cfg.id,
			  o.release, why);
		snprintf(d->p.release, sizeof(d->p.release), "%s", o.release);
		d->p.t_accept = 0;
		dev__fail_update(d, why);
	} else
		offer_accept(d, &o, &m);
out:
	proto_offer_free(&o);
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
		dev__on_frag(d, payload, len,
			     d->topic_grp[0] && !strcmp(topic, d->topic_grp));
	else if (!strcmp(leaf, "/offer"))
		on_offer(d, payload, len);
	else if (!dev__poll_message(d, topic, payload, len))
		d->stats.msgs_bad++;
}

static void on_connect(struct mq *mq, void *ud)
{
	struct dev *d = ud;
	char offer[PROTO_ID_MAX + 24], poll[PROTO_ID_MAX + 24];
	char frag[PROTO_ID_MAX + 24], hello[] = PROTO_HELLO_TOPIC;
	snprintf(offer, sizeof(offer), "ota/dev/%s/offer", d->cfg.id);
	snprintf(poll, sizeof(poll), PROTO_POLL_TOPIC_FMT, d->cfg.id);
	snprintf(frag, sizeof(frag), "ota/dev/%s/frag", d->cfg.id);
	/* PROTOCOL.md 3: one SUBSCRIBE per QoS. A clean session forgets
	 * subscriptions: a group member whose connection dropped (or whose
	 * broker restarted) subscribes again, before it says where it is. */
	char *q1[] = {offer, poll, hello};
	char *q0[] = {frag, d->topic_grp};
	bool grp = d->topic_grp[0] && d->st == PROTO_ST_DOWNLOADING;
	mq_subscribe_many(mq, q1, 3, 1);
	mq_subscribe_many(mq, q0, grp ? 2 : 1, 0);
	dev__publish_status_now(d); /* PROTOCOL.md 8 step 1: every connect */
	if (d->st == PROTO_ST_DOWNLOADING && dev__download_open(d)) {
		/* PROTOCOL.md 7: downloading, then what we hold. */
		dev_rx_link_up(&d->rx, dev__mono_ms(d));
		dev__send_ack(d);
	} /* resume: tell the gateway what we hold */
}

static void on_disconnect(struct mq *mq, void *ud, const char *why)
{
	(void)mq;
	struct dev *d = ud;
	if (!d->stopping)
		log_warnx("device=%s connection lost: %s (reconnecting)",
			  d->cfg.id, why);
}

static void exec_self(struct dev *d)
{
	log_info("device=%s restarting (re-exec)", d->cfg.id);
	fflush(NULL);
	execv("/proc/self/exe", d->argv);
	log_warn("device=%s re-exec failed; continuing in place", d->cfg.id);
	dev__resume_after_restart(d);
}

/* What a re-exec does, without leaving the process: the connection is
 * closed (no Last Will), and the same struct dev starts again from its
 * state directory. Called from dev_stop's last close callback. */
static void restart_inproc(struct dev *d)
{
	struct dev_config cfg = d->cfg;
	uv_loop_t *loop = d->loop;
	char **argv = d->argv;
	char err[512];
	log_info("device=%s restarting (in process)", cfg.id);
	if (dev_init(d, loop, &cfg, argv, err, sizeof(err)) != 0) {
		log_warnx("device=%s restart failed, device stays down: %s",
			  cfg.id, err);
		d->stopping = true; /* nothing left to stop */
		return;
	}
	if (dev_start(d) != 0)
		log_warnx("device=%s restart failed to connect", cfg.id);
}

/* The installer's restart (d->restart): stop, then start again. */
static void restart(struct dev *d)
{
	dev_stop(d, d->cfg.restart_inproc ? restart_inproc : exec_self);
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
	d->restart = restart;
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
	if (dev__load(d, err, errlen) != 0)
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
	uv_timer_init(loop, &d->hold_timer);
	uv_timer_init(loop, &d->health_timer);
	uv_timer_init(loop, &d->poll_timer);
	d->ack_timer.data = d->status_timer.data = d->health_timer.data = d;
	d->hold_timer.data = d;
	d->poll_timer.data = d;
	return 0;
fail:
	trust_free(&d->trust);
	free(d->p.manifest);
	d->p.manifest = NULL;
	return -1;
}

int dev_start(struct dev *d)
{
	char err[512];
	char *will = NULL;
	size_t wlen = 0;
	/* Where did the last run stop? Continue from there. */
	dev__reconcile_active(d);
	dev__image_load(d);
	switch (d->p.phase) {
	case PROTO_ST_RESTARTING:
		dev__resume_after_restart(d);
		break;
	case PROTO_ST_DOWNLOADING:
		/* Power cut mid-download: reopen the slot at the checkpoint;
		 * the first ack after connecting tells the gateway. */
		d->st = PROTO_ST_DOWNLOADING;
		dev__resume_download(d);
		break;
	case PROTO_ST_VERIFYING:
	case PROTO_ST_INSTALLING:
		d->st = d->p.phase;
		break;
	default:
		d->st = d->p.phase == PROTO_ST_OFFLINE ? PROTO_ST_IDLE
						       : d->p.phase;
	}
	if (dev__will(d, &will, &wlen) != 0)
		return -1;
	/* The TLS session survives a re-exec in the state directory (a
	 * fleet's in-process restart keeps it in memory): the reconnection
	 * after an update is an abbreviated handshake (PROTOCOL.md 3). */
	char sess[PATH_MAX];
	util_path(sess, sizeof(sess), d->cfg.state_dir, "tls-session.pem");
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
	    .shared_tls = true,
	    .session_file = d->cfg.restart_inproc ? NULL : sess,
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
		 proto_state_name(d->st));
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
	d->pending_closes = 5;
	uv_close((uv_handle_t *)&d->ack_timer, timer_closed);
	uv_close((uv_handle_t *)&d->status_timer, timer_closed);
	uv_close((uv_handle_t *)&d->hold_timer, timer_closed);
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
	dev__download_stop(d); /* a checkpoint; its counters join d->stats */
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	log_info("device=%s stats frags_ok=%llu dup=%llu dropped_test=%llu "
		 "lost_test=%llu corrupted_test=%llu "
		 "nobuf=%llu ahead=%llu evicted=%llu "
		 "blocks_ok=%llu "
		 "blocks_bad=%llu "
		 "tables_bad=%llu unauth=%llu bad=%llu stale=%llu acks=%llu "
		 "peak_rss_kib=%ld",
		 d->cfg.id, (unsigned long long)d->stats.frags_ok,
		 (unsigned long long)d->stats.frags_dup,
		 (unsigned long long)d->stats.frags_dropped_test,
		 (unsigned long long)d->stats.frags_lost_test,
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
	free(d->p.manifest);
	d->p.manifest = NULL;
	dev__enc_free(d);
	trust_free(&d->trust);
	dev__status_flush(d); /* a held `restarting`: it goes down now */
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
