/* ota-gateway run: the event loop, MQTT routing and the device table. */
#include <jansson.h>
#include <mosquitto.h>
#include <search.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/certcheck.h"
#include "common/conf.h"
#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

#define TICK_MS 20

#define K(name, type, field, lo, hi, help)                                     \
	{name, type, offsetof(struct gw_config, field),                        \
	 sizeof(((struct gw_config *)0)->field), lo, hi, help}

static const struct conf_key gw_keys[] = {
    K("brokers", CONF_STR, brokers, 0, 0,
      "brokers to use, host[:port],... in order of preference; on a "
      "failure the next (overrides broker_host)"),
    K("broker_host", CONF_STR, broker_host, 0, 0,
      "MQTT broker host name (must match its certificate)"),
    K("broker_port", CONF_U32, broker_port, 1, 65535, "broker TLS port"),
    K("ca_file", CONF_STR, ca_file, 0, 0, "CA certificate (PEM)"),
    K("cert_file", CONF_STR, cert_file, 0, 0,
      "gateway client certificate (CN ota-gateway)"),
    K("key_file", CONF_STR, key_file, 0, 0, "gateway client key"),
    K("client_id", CONF_STR, client_id, 0, 0,
      "MQTT client id (the shipped broker config replaces it with the "
      "certificate's CN)"),
    K("publisher_key", CONF_STR, publisher_key, 0, 0,
      "publisher's Ed25519 public key (PEM), when no root_keys"),
    K("root_keys", CONF_STR, root_keys, 0, 0,
      "root Ed25519 public keys (PEM files, comma-separated) that sign "
      "keyset_file"),
    K("root_threshold", CONF_U32, root_threshold, 1, PROTO_ROOT_KEYS_MAX,
      "root keys that must sign a key set (default 1)"),
    K("keyset_file", CONF_STR, keyset_file, 0, 0,
      "key set: publisher keys per product (re-read on SIGHUP)"),
    K("db_dir", CONF_STR, db_dir, 0, 0, "LMDB ledger directory"),
    K("store_dir", CONF_STR, store_dir, 0, 0,
      "where verified packages are kept"),
    K("fragment_size", CONF_U32, fragment_size, PROTO_FRAG_SIZE_MIN,
      PROTO_FRAG_SIZE_MAX, "default fragment size in bytes"),
    K("window", CONF_U32, window, 1, PROTO_WINDOW_MAX,
      "default fragments in flight per device"),
    K("max_package_mb", CONF_U32, max_package_mb, 1, 1u << 20,
      "largest package accepted, MiB"),
    K("offer_retry_ms", CONF_U32, offer_retry_ms, 100, 3600000,
      "re-send an unanswered offer after this long (doubled per re-send, up to 60 s)"),
    K("log_level", CONF_STR, log_level, 0, 0, "error, warn, info or debug"),
    K("https_ca_file", CONF_STR, https_ca_file, 0, 0,
      "CA bundle for https:// package servers (default: system store)"),
    K("fetch_timeout_s", CONF_U32, fetch_timeout_s, 1, 86400,
      "longest a package download may take, seconds"),
    K("max_inflight_kb", CONF_U32, max_inflight_kb, 64, 4u << 20,
      "fragment KiB in flight over the whole fleet (broker queue cap)"),
    K("fetch_retries", CONF_U32, fetch_retries, 0, 20,
      "retries of a failed download, with doubling delays from 1 s"),
    K("group_fragments", CONF_BOOL, group_fragments, 0, 0,
      "publish each fragment once for all devices updating together"),
    K("encrypt_packages", CONF_BOOL, encrypt_packages, 0, 0,
      "encrypt releases by default (announcement \"encrypt\" overrides)"),
    K("device_cert_dir", CONF_STR, device_cert_dir, 0, 0,
      "device certificates <id>.crt, to wrap encrypted releases' keys"),
    K("mqtt_version", CONF_STR, mqtt_version, 0, 0,
      "5 (verdicts also to MQTT 5 response topics) or 3.1.1 (brokers "
      "without MQTT 5)"),
    K("file_dirs", CONF_STR, file_dirs, 0, 0,
      "directories file:// packages may come from, ':'-separated "
      "absolute paths (default none: file:// refused)"),
    K("pause_failure_min", CONF_U32, pause_failure_min, 1,
      PROTO_PAUSE_FAILURE_MIN_MAX,
      "failed devices before a campaign pauses itself (canary or "
      "failure rate)"),
    K("http_listen", CONF_STR, http_listen, 0, 0,
      "operator's HTTP API, dashboard and /metrics on IP:PORT "
      "(default off; without http_tls loopback only)"),
    K("http_tls", CONF_BOOL, http_tls, 0, 0,
      "serve HTTPS and require an operator's client certificate"),
    K("http_cert_file", CONF_STR, http_cert_file, 0, 0,
      "HTTPS server certificate (PEM)"),
    K("http_key_file", CONF_STR, http_key_file, 0, 0,
      "HTTPS server key"),
    K("http_client_ca", CONF_STR, http_client_ca, 0, 0,
      "CA of the operators' client certificates (default: ca_file)"),
    K("http_operators", CONF_STR, http_operators, 0, 0,
      "client certificate CNs allowed over HTTPS, comma-separated"),
    K("offer_rate", CONF_U32, offer_rate, 0, 1000000,
      "offers started per second at most (0: no limit)"),
    K("restart_rate", CONF_U32, restart_rate, 0, 1000000,
      "device reconnections per second after an update: offers spread "
      "restarts over devices / rate (0: no spread)"),
    K("hello_spread_s", CONF_U32, hello_spread_s, 0, 3600,
      "devices answer the gateway's hello within at least this many "
      "seconds"),
    {0}};

static void gw_config_defaults(struct gw_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->broker_host, sizeof(c->broker_host), "localhost");
	c->broker_port = 8883;
	snprintf(c->client_id, sizeof(c->client_id), "ota-gateway");
	snprintf(c->db_dir, sizeof(c->db_dir), "ota-gateway-db");
	snprintf(c->store_dir, sizeof(c->store_dir), "ota-gateway-store");
	c->fragment_size = 4096;
	c->window = 32;
	c->max_package_mb = 512;
	c->offer_retry_ms = 5000;
	c->fetch_timeout_s = 600;
	c->fetch_retries = 3;
	c->max_inflight_kb = 16384;
	c->group_fragments = true;
	c->root_threshold = 1;
	snprintf(c->mqtt_version, sizeof(c->mqtt_version), "5");
	c->pause_failure_min = 2;
	c->offer_rate = 2000;
	c->restart_rate = 500;
	c->hello_spread_s = 5;
	snprintf(c->http_operators, sizeof(c->http_operators), "ota-operator");
	snprintf(c->log_level, sizeof(c->log_level), "info");
}

static int gw_config_check(const struct gw_config *c, char *err, size_t n)
{
	enum log_level lvl;
	const char *need = !c->ca_file[0]	  ? "ca_file"
			   : !c->cert_file[0]	  ? "cert_file"
			   : !c->key_file[0]	  ? "key_file"
			   : !c->publisher_key[0] && !c->root_keys[0]
			       ? "publisher_key (or root_keys)"
			       : NULL;
	if (need) {
		snprintf(err, n, "key '%s' is required", need);
		return -1;
	}
	if (strcmp(c->mqtt_version, "5") != 0 &&
	    strcmp(c->mqtt_version, "3.1.1") != 0) {
		snprintf(err, n, "key 'mqtt_version': '%s' is not 5 or 3.1.1",
			 c->mqtt_version);
		return -1;
	}
	if (log_level_parse(c->log_level, &lvl) != 0) {
		snprintf(err, n, "key 'log_level': '%s' is not one of error, "
				 "warn, info, debug", c->log_level);
		return -1;
	}
	if (c->brokers[0] && mq_brokers_check(c->brokers, NULL, err, n) != 0)
		return -1;
	if (c->encrypt_packages && !c->device_cert_dir[0]) {
		snprintf(err, n, "key 'encrypt_packages' needs "
				 "'device_cert_dir' (the devices' certificates)");
		return -1;
	}
	struct stat st;
	if (c->device_cert_dir[0] &&
	    (stat(c->device_cert_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
		snprintf(err, n, "key 'device_cert_dir': %s is not a directory",
			 c->device_cert_dir);
		return -1;
	}
	for (const char *d = c->file_dirs; *d;) {
		size_t len = strcspn(d, ":");
		if (len > 0 && d[0] != '/') {
			snprintf(err, n, "key 'file_dirs': '%.*s' is not an "
					 "absolute path",
				 (int)len, d);
			return -1;
		}
		d += len;
		if (*d == ':')
			d++;
	}
	const char *files[] = {c->ca_file, c->cert_file, c->key_file};
	for (size_t i = 0; i < 3; i++) {
		FILE *f = fopen(files[i], "r");
		if (!f) {
			snprintf(err, n, "cannot read %s", files[i]);
			return -1;
		}
		fclose(f);
	}
	if (util_key_private("key_file", c->key_file, err, n) != 0)
		return -1;
	return gw__http_check(c, err, n);
}

/* ------------------------------------------------------ device table */

static int dev_cmp(const void *a, const void *b)
{
	return strcmp(((const struct gw_device *)a)->id,
		      ((const struct gw_device *)b)->id);
}

static struct gw_device *gw_device_find(struct gw *gw, const char *id)
{
	struct gw_device key;
	snprintf(key.id, sizeof(key.id), "%s", id);
	void *p = tfind(&key, &gw->devices, dev_cmp);
	return p ? *(struct gw_device **)p : NULL;
}

static struct gw_device *gw_device_get(struct gw *gw, const char *id)
{
	struct gw_device *d = gw_device_find(gw, id);
	if (d)
		return d;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	snprintf(d->id, sizeof(d->id), "%s", id);
	d->state = PROTO_ST_OFFLINE;
	d->timings = (struct proto_timings){-1, -1, -1, -1, -1};
	if (!tsearch(d, &gw->devices, dev_cmp)) {
		free(d);
		return NULL;
	}
	gw->ndevices++;
	return d;
}

void gw__device_dirty(struct gw *gw, struct gw_device *d)
{
	if (d->dirty)
		return;
	if (gw->ndirty == gw->dirty_cap) {
		size_t n = gw->dirty_cap ? gw->dirty_cap * 2 : 64;
		struct gw_device **p = realloc(gw->dirty, n * sizeof(*p));
		if (!p) {
			log_warnx("out of memory marking device %s", d->id);
			return;
		}
		gw->dirty = p;
		gw->dirty_cap = n;
	}
	gw->dirty[gw->ndirty++] = d;
	d->dirty = true;
}

static int device_load_cb(void *ud, const void *key, size_t klen,
			  const char *val, size_t vlen)
{
	(void)key;
	(void)klen;
	struct gw *gw = ud;
	struct gw_device tmp = {0};
	if (gw__device_parse(val, vlen, &tmp) != 0) {
		log_warnx("ledger: skipping unreadable device record");
		return 0;
	}
	struct gw_device *d = gw_device_get(gw, tmp.id);
	if (!d)
		return -1;
	tmp.x = d->x;
	tmp.dirty = d->dirty;
	tmp.poll_ms = d->poll_ms;
	*d = tmp;
	return 0;
}

void gw__event(struct gw *gw, const char *device, const char *release,
	       const char *event, const char *detail)
{
	json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s}", "ts",
			      (json_int_t)util_wall_ms(), "event", event,
			      "device", device ? device : "", "release",
			      release ? release : "", "detail",
			      detail ? detail : "");
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	if (!s || store_event(gw->db, s) != 0)
		log_warnx("ledger: cannot queue event %s", event);
	else if (gw->http)
		gw__http_event(gw, (int64_t)json_integer_value(json_object_get(
				       o, "ts")),
			       event, device, release, detail);
	free(s);
	json_decref(o);
}

/* The commit runs in the thread pool: an fsync never stalls the loop, and
 * whatever the loop queues meanwhile goes into the next commit. */
static void commit_work(uv_work_t *req)
{
	struct gw *gw = req->data;
	gw->commit_rc = store_commit_batch(gw->db, gw->committing,
					   gw->commit_err,
					   sizeof(gw->commit_err));
}

/* A failed commit (a full disk, say) is kept and retried after a delay
 * that doubles from 100 ms to 5 s, and logged at the 1st, 2nd, 4th, 8th...
 * failure in a row: retrying at once spun the loop and wrote thousands of
 * lines a second. */
static void commit_done(uv_work_t *req, int status)
{
	struct gw *gw = req->data;
	if (status != 0 || gw->commit_rc != 0) {
		unsigned n = ++gw->commit_fails;
		uint64_t delay = n >= 7 ? 5000 : 100u << (n - 1);
		gw->commit_retry_ms = util_mono_ms() + delay;
		if ((n & (n - 1)) == 0)
			log_warnx("ledger: %s (failure %u in a row; retrying "
				  "in %llu ms, at most every 5 s)",
				  status ? "commit cancelled" : gw->commit_err,
				  n, (unsigned long long)delay);
		store_return_batch(gw->db, gw->committing);
	} else {
		if (gw->commit_fails)
			log_info("ledger: written again after %u failed "
				 "commits", gw->commit_fails);
		gw->commit_fails = 0;
		gw->commit_retry_ms = 0;
		store_batch_free(gw->committing);
		gw__hist_add(&gw->stats.commit_hist,
			     uv_hrtime() / 1000 - gw->commit_start_us);
	}
	gw->committing = NULL;
}

static void queue_dirty(struct gw *gw)
{
	for (size_t i = 0; i < gw->ndirty; i++) {
		struct gw_device *d = gw->dirty[i];
		char *rec = gw__device_record(d);
		if (!rec || store_put(gw->db, STORE_DEVICES, d->id, rec,
				      strlen(rec)) != 0)
			log_warnx("ledger: cannot queue record of %s", d->id);
		free(rec);
		d->dirty = false;
	}
	gw->ndirty = 0;
}

/* Once per loop iteration: everything this tick changed, one commit. */
static void flush_cb(uv_check_t *h)
{
	struct gw *gw = h->data;
	/* Waiting to retry a failed commit: changed devices stay marked
	 * dirty, so each is queued once, with the retry, not every tick. */
	if (gw->commit_retry_ms && util_mono_ms() < gw->commit_retry_ms)
		return;
	queue_dirty(gw);
	if (gw->committing || store_pending(gw->db) == 0)
		return;
	gw->committing = store_take_batch(gw->db);
	if (!gw->committing)
		return;
	gw->commit.data = gw;
	gw->commit_start_us = uv_hrtime() / 1000;
	if (uv_queue_work(gw->loop, &gw->commit, commit_work, commit_done)) {
		store_return_batch(gw->db, gw->committing);
		gw->committing = NULL;
	}
}

/* At exit: what is still queued, committed here and now. */
static void flush_final(struct gw *gw)
{
	char err[256];
	queue_dirty(gw);
	if (store_commit(gw->db, err, sizeof(err)) != 0)
		log_warnx("ledger: final commit: %s", err);
}

/* ------------------------------------------------------ messages */

/* "ota/dev/<id>/<leaf>" -> id (in buf) and leaf; false if not that. */
static bool parse_dev_topic(const char *topic, char *id, size_t idlen,
			    const char **leaf)
{
	if (strncmp(topic, "ota/dev/", 8) != 0)
		return false;
	const char *s = topic + 8, *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= idlen)
		return false;
	memcpy(id, s, (size_t)(slash - s));
	id[slash - s] = '\0';
	*leaf = slash + 1;
	return proto_id_valid(id);
}

static void gw_offer_if_due(struct gw *gw, struct gw_device *d)
{
	if (!d->online || d->x)
		return;
	/* A device still "downloading" with no transfer here holds a partial
	 * download of an aborted or forgotten release: a newer offer
	 * replaces it. */
	if (d->state != PROTO_ST_IDLE && d->state != PROTO_ST_COMMITTED &&
	    d->state != PROTO_ST_FAILED && d->state != PROTO_ST_ROLLED_BACK &&
	    d->state != PROTO_ST_DOWNLOADING)
		return;
	struct gw_release *best = NULL;
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		if (!gw__release_targets(r, d))
			continue;
		int c;
		if (!best || (proto_version_cmp(r->m.version, best->m.version,
						&c) == 0 && c > 0))
			best = r;
	}
	/* Encrypted: only to a device whose certificate the gateway has. */
	if (best && best->encrypt && !gw__enc_may_offer(gw, d, best))
		return;
	if (best && gw__campaign_admit(gw, best, d) && gw__pace_offer(gw)) {
		gw__campaign_started(gw, best);
		gw__xfer_start(gw, d, best);
	}
}

static void offer_walk(const void *node, VISIT v, void *ud)
{
	if (v == postorder || v == leaf)
		gw_offer_if_due(ud, *(struct gw_device *const *)node);
}

void gw__offer_due_all(struct gw *gw) { twalk_r(gw->devices, offer_walk, gw); }

/* Transfers that were under way when the gateway stopped. */
static void restore_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct gw *gw = ud;
	struct gw_device *d = *(struct gw_device *const *)node;
	if (!d->release[0] || d->finished_ms != 0 || d->x)
		return;
	struct gw_release *r = gw__release_find(gw, d->release);
	if (r)
		gw__xfer_restore(gw, d, r);
}

/* Input a device should never send is dropped and counted; the line that
 * says so is rate limited to one a second (PROTOCOL.md section 10), so a
 * device cannot flood the gateway's log with it. */
__attribute__((format(printf, 2, 3))) static void log_dropped(struct gw *gw,
							       const char *fmt,
							       ...)
{
	char msg[512];
	va_list ap;
	uint64_t now = util_mono_ms();
	if (gw->stats.drop_log_ms && now - gw->stats.drop_log_ms < 1000) {
		gw->stats.drop_unlogged++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warnx("%s (bad_msgs=%llu stale_msgs=%llu; %llu more dropped "
		  "without a line since the last one)",
		  msg, (unsigned long long)gw->stats.msgs_bad,
		  (unsigned long long)gw->stats.msgs_stale,
		  (unsigned long long)gw->stats.drop_unlogged);
	gw->stats.drop_log_ms = now;
	gw->stats.drop_unlogged = 0;
}

static void on_status(struct gw *gw, const char *id, const void *payload,
		      size_t len)
{
	struct proto_status st;
	struct proto_err perr = {{0}};
	if (len == 0)
		return; /* a cleared retained status */
	if (proto_status_decode(payload, len, &st, &perr) != 0 ||
	    strcmp(st.device, id) != 0) {
		gw->stats.msgs_bad++;
		log_dropped(gw, "device=%s bad status dropped: %s", id,
			    perr.text[0] ? perr.text : "device id mismatch");
		return;
	}
	struct gw_device *d = gw_device_get(gw, id);
	if (!d)
		return;
	/* During a transfer, a status naming a release this gateway never
	 * had belongs to no session: it must not end, restart or re-offer
	 * the transfer, nor overwrite the record. (Without a transfer it is
	 * still how a gateway with a new ledger learns a device's version.) */
	if (d->x && st.release[0] && !gw__release_find(gw, st.release)) {
		gw->stats.msgs_stale++;
		log_dropped(gw, "device=%s status for unknown release %s dropped",
			    id, st.release);
		return;
	}
	bool was_online = d->online;
	enum proto_state prev = d->state;
	d->online = st.state != PROTO_ST_OFFLINE;
	d->seen_ms = util_wall_ms();
	if (d->online) {
		snprintf(d->product, sizeof(d->product), "%s", st.product);
		snprintf(d->version, sizeof(d->version), "%s", st.version);
		snprintf(d->group, sizeof(d->group), "%s", st.group);
	}
	d->state = st.state;
	if (st.state != prev || d->online != was_online)
		log_info("device=%s state=%s version=%s%s%s", id,
			 proto_state_name(st.state), st.version,
			 st.error[0] ? " error=" : "", st.error);
	gw__device_dirty(gw, d);

	bool mine = d->x && strcmp(st.release, d->release) == 0;
	if (st.state == PROTO_ST_OFFLINE) {
		if (d->x)
			gw__xfer_offline(gw, d);
		return; /* transfer pauses; resumes on return */
	}
	if (mine && (st.state == PROTO_ST_COMMITTED ||
		     st.state == PROTO_ST_FAILED ||
		     st.state == PROTO_ST_ROLLED_BACK)) {
		struct gw_release *rel = gw__release_find(gw, d->release);
		d->timings = st.timings;
		d->finished_ms = util_wall_ms();
		snprintf(d->error, sizeof(d->error), "%s", st.error);
		if (st.state == PROTO_ST_COMMITTED && rel &&
		    strcmp(st.version, rel->m.version) != 0) {
			/* Up again, but not on the new version. */
			st.state = d->state = PROTO_ST_ROLLED_BACK;
			snprintf(d->error, sizeof(d->error),
				 "came up on version %s, not %s", st.version,
				 rel->m.version);
			snprintf(st.error, sizeof(st.error), "%s", d->error);
			log_warnx("device=%s release=%s rolled back: %s", id,
				  rel->id, d->error);
		}
		if (st.state != PROTO_ST_COMMITTED)
			snprintf(d->failed_release, sizeof(d->failed_release),
				 "%s", st.release);
		gw__event(gw, id, st.release, proto_state_name(st.state),
			  st.error[0] ? st.error : st.version);
		gw__xfer_free(gw, d);
		if (rel)
			gw__campaign_finished(gw, rel,
					      st.state == PROTO_ST_COMMITTED);
		return;
	}
	if (d->x && (!was_online || st.state == PROTO_ST_IDLE ||
		     (st.state != PROTO_ST_DOWNLOADING && !mine))) {
		/* Back after a disconnect: offer again; the device answers
		 * with what it already holds. */
		gw__xfer_offer(gw, d);
		return;
	}
	gw_offer_if_due(gw, d);
}

static void on_ack(struct gw *gw, const char *id, const void *payload,
		   size_t len)
{
	struct proto_ack a;
	if (proto_ack_decode(payload, len, &a) != 0) {
		gw->stats.msgs_bad++;
		log_debug("device=%s undecodable ack dropped", id);
		return;
	}
	struct gw_device *d = gw_device_find(gw, id);
	if (!d || !d->x) {
		gw->stats.msgs_stale++;
		return;
	}
	gw->stats.acks++;
	gw__xfer_on_ack(gw, d, &a);
}

static void route(struct gw *gw, const char *topic, const void *payload,
		  size_t len, const struct gw_req *rq)
{
	char id[PROTO_ID_MAX + 1];
	const char *leaf;
	if (strncmp(topic, "ota/release/", 12) == 0) {
		gw__announce(gw, topic + 12, payload, len, rq);
	} else if (strncmp(topic, "ota/ctl/", 8) == 0) {
		gw__control(gw, topic + 8, payload, len, rq);
	} else if (parse_dev_topic(topic, id, sizeof(id), &leaf)) {
		if (!strcmp(leaf, "status"))
			on_status(gw, id, payload, len);
		else if (!strcmp(leaf, "ack"))
			on_ack(gw, id, payload, len);
	} else {
		gw->stats.msgs_bad++;
	}
}

static void on_message(struct mq *mq, void *ud, const char *topic,
		       const void *payload, size_t len)
{
	(void)mq;
	route(ud, topic, payload, len, NULL);
}

/* MQTT 5: a command may name where its verdict goes. */
static void on_message5(struct mq *mq, void *ud, const char *topic,
			const void *payload, size_t len, const char *resp,
			const void *corr, size_t corr_len)
{
	(void)mq;
	struct gw_req rq = {0};
	if (!resp && !corr) {
		route(ud, topic, payload, len, NULL);
		return;
	}
	if (resp)
		snprintf(rq.resp_topic, sizeof(rq.resp_topic), "%s", resp);
	if (corr && corr_len <= sizeof(rq.corr)) {
		memcpy(rq.corr, corr, corr_len);
		rq.corr_len = corr_len;
	}
	route(ud, topic, payload, len, &rq);
}

static void on_connect(struct mq *mq, void *ud)
{
	mq_subscribe(mq, "ota/release/+", 1);
	mq_subscribe(mq, "ota/ctl/+", 1);
	mq_subscribe(mq, "ota/dev/+/status", 1);
	mq_subscribe(mq, "ota/dev/+/ack", 0);
	/* After the subscriptions: the answers find them. */
	gw__hello(ud);
}

static void on_disconnect(struct mq *mq, void *ud, const char *why)
{
	(void)mq;
	(void)ud;
	log_warnx("mqtt connection lost: %s (reconnecting)", why);
}

/* A device in an update that has not been heard from for this long may
 * have had statuses dropped on their way here (the broker drops what
 * overflows a client's queue, and a fleet reporting at once can do that):
 * ask the broker for its retained status again. */
#define STATUS_POLL_MS 10000
#define STATUS_POLLS_PER_TICK 20

static void status_poll(struct gw *gw, struct gw_device *d)
{
	int64_t now = util_wall_ms();
	if (!d->online || gw->poll_budget <= 0 ||
	    now - d->seen_ms < STATUS_POLL_MS || now - d->poll_ms < STATUS_POLL_MS)
		return;
	char topic[PROTO_ID_MAX + 24];
	snprintf(topic, sizeof(topic), "ota/dev/%s/status", d->id);
	/* The device answers a poll on its exact topic (any broker); and
	 * subscribing again delivers the retained status (its Last Will,
	 * when it is gone) where the broker has it. The wildcard
	 * subscription stays, so the exact one goes at once. */
	if (gw__poll_device(gw, d->id) != 0 ||
	    mq_subscribe(gw->mq, topic, 1) != 0)
		return;
	mq_unsubscribe(gw->mq, topic);
	d->poll_ms = now;
	gw->poll_budget--;
	gw->stats.status_polls++;
	log_debug("device=%s silent for %lld ms: its status asked for again",
		  d->id, (long long)(now - d->seen_ms));
}

static void tick_walk(const void *node, VISIT v, void *ud)
{
	if (v != postorder && v != leaf)
		return;
	struct gw *gw = ud;
	struct gw_device *d = *(struct gw_device *const *)node;
	if (d->x) {
		gw__xfer_tick(gw, d, util_mono_ms());
		status_poll(gw, d);
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct gw *gw = t->data;
	/* How late is this tick? That is how long the loop was stuck. */
	uint64_t now = util_mono_ms();
	if (gw->last_tick_ms)
		gw__hist_add(&gw->stats.stall_hist,
			     now - gw->last_tick_ms > TICK_MS
				 ? (now - gw->last_tick_ms - TICK_MS) * 1000
				 : 0);
	if (gw->last_tick_ms && now - gw->last_tick_ms > TICK_MS) {
		uint64_t late = now - gw->last_tick_ms - TICK_MS;
		if (late > gw->stats.stall_max_ms) {
			gw->stats.stall_max_ms = late;
			if (late >= 100)
				log_warnx("event loop stalled for %llu ms",
					  (unsigned long long)late);
		}
	}
	gw->last_tick_ms = now;
	if (mq_connected(gw->mq)) {
		gw->poll_budget = STATUS_POLLS_PER_TICK;
		twalk_r(gw->devices, tick_walk, gw);
		gw__group_tick(gw, now);
		gw__pace_tick(gw, now);
	}
}

static void closed_cb(uv_handle_t *h) { (void)h; }

static void mq_closed(void *ud)
{
	struct gw *gw = ud;
	uv_close((uv_handle_t *)&gw->tick, closed_cb);
	uv_close((uv_handle_t *)&gw->flush, closed_cb);
	uv_close((uv_handle_t *)&gw->sigint, closed_cb);
	uv_close((uv_handle_t *)&gw->sigterm, closed_cb);
	uv_close((uv_handle_t *)&gw->sighup, closed_cb);
	gw__https_close(gw);
	gw__http_close(gw);
	if (!gw__lanes_busy(gw) &&
	    !uv_is_closing((uv_handle_t *)&gw->stop_timer))
		uv_close((uv_handle_t *)&gw->stop_timer, closed_cb);
}

/* A package read stuck in the kernel (a hung network file system) cannot
 * be interrupted: after this long the gateway stops without it. */
#define STOP_WAIT_MS 5000

static void stop_timer_cb(uv_timer_t *t)
{
	struct gw *gw = t->data;
	log_warnx("stopping: %u package fetch(es) still stuck after %d ms; "
		  "not waiting for them",
		  gw->copy_lane.busy + gw->verify_lane.busy, STOP_WAIT_MS);
	uv_stop(gw->loop);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	struct gw *gw = s->data;
	if (signum == SIGHUP) {
		gw__keyset_reload(gw);
		return;
	}
	if (gw->stopping)
		return;
	gw->stopping = true;
	log_info("signal %d: stopping", signum);
	atomic_store(&gw->fetch_cancel, true); /* copies end at once */
	uv_timer_start(&gw->stop_timer, stop_timer_cb, STOP_WAIT_MS, 0);
	uv_unref((uv_handle_t *)&gw->stop_timer);
	gw__lanes_cancel(gw); /* queued fetches are refused */
	mq_close(gw->mq, mq_closed);
}

static void free_device(void *p)
{
	struct gw_device *d = p;
	gw__xfer_free(NULL, d);
	free(d);
}


/* What run time would trip over: the TLS files (key matches, the CA
 * verifies the certificate, valid now, and with --check its CN is
 * ota-gateway, the name the broker's ACL gives the gateway's rights) and,
 * with all, the ledger and store directories. Returns the problems. */
static int check_files(const struct gw_config *c, const char *prefix,
		       bool all)
{
	struct certcheck_problems p = {0, prefix};
	char err[512];
	struct certcheck cc = {c->ca_file,	  "ca_file",
			       c->cert_file,	  "cert_file",
			       c->key_file,	  "key_file",
			       all ? "ota-gateway" : NULL,
			       "the gateway's identity (deploy/mosquitto/acl)"};
	certcheck_run(&cc, certcheck_print_problem, &p);
	if (!all)
		return p.n;
	if (certcheck_dir_writable(c->db_dir, err, sizeof(err)) != 0)
		certcheck_print_problem(&p, "db_dir", err);
	if (certcheck_dir_writable(c->store_dir, err, sizeof(err)) != 0)
		certcheck_print_problem(&p, "store_dir", err);
	return p.n;
}

static void usage(void)
{
	struct gw_config dflt;
	gw_config_defaults(&dflt);
	printf("usage: ota-gateway run [-c FILE] [--check] [--key value ...]\n"
	       "\nEvery configuration key can also be given as a flag and "
	       "overrides the file.\n\noptions:\n"
	       "  -c, --config FILE              configuration file\n"
	       "  --check                        validate the configuration "
	       "and exit\n");
	conf_print_help_defaults(gw_keys, &dflt);
	printf("\nexample:\n  ota-gateway run -c /etc/ota/gateway.conf "
	       "--log-level debug\n");
}

int gw__cmd_run(int argc, char **argv)
{
	struct gw gw;
	struct conf_cli cli;
	char err[512];
	int rc = 1;
	memset(&gw, 0, sizeof(gw));
	gw_config_defaults(&gw.cfg);
	if (conf_from_argv(argc, argv, gw_keys, &gw.cfg, &cli, err,
			   sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway run: %s\n", err);
		return 2;
	}
	if (cli.help) {
		usage();
		return 0;
	}
	if (cli.nargs) {
		fprintf(stderr, "ota-gateway run: unexpected argument '%s'\n",
			cli.args[0]);
		return 2;
	}
	if (gw_config_check(&gw.cfg, err, sizeof(err)) != 0 ||
	    trust_load(&gw.trust, gw.cfg.publisher_key, gw.cfg.root_keys,
		       gw.cfg.root_threshold, gw.cfg.keyset_file, false,
		       util_wall_ms() / 1000, err, sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway run: %s%s: %s\n",
			cli.config ? cli.config : "flags",
			cli.config ? "" : "", err);
		return 2;
	}
	if (cli.check) {
		int n = check_files(&gw.cfg, "ota-gateway run --check: ", true);
		trust_free(&gw.trust);
		if (n) {
			fprintf(stderr, "%s: %d problem%s\n",
				cli.config ? cli.config : "flags", n,
				n == 1 ? "" : "s");
			return 2;
		}
		printf("%s: configuration OK\n",
		       cli.config ? cli.config : "flags");
		return 0;
	}
	/* A permanent misconfiguration stops here, with its cause, rather
	 * than as TLS handshakes retried forever. */
	if (check_files(&gw.cfg, "ota-gateway run: cannot start: ", false)) {
		trust_free(&gw.trust);
		return 2;
	}
	enum log_level lvl;
	log_level_parse(gw.cfg.log_level, &lvl);
	log_set_level(lvl);
	if (gw.cfg.root_keys[0] && gw.cfg.publisher_key[0])
		log_warnx("publisher_key %s is not used: root_keys is set, "
			  "so key set %llu says who may sign",
			  gw.cfg.publisher_key,
			  (unsigned long long)gw.trust.env.ks.version);

	if (gw__open_dirs(&gw, err, sizeof(err)) != 0) {
		log_warnx("%s", err);
		trust_free(&gw.trust);
		return 1;
	}
	gw.fragbuf = malloc(PROTO_FRAG_HDR_LEN + PROTO_FRAG_SIZE_MAX +
			    PROTO_ENC_TAG_LEN);
	if (!gw.fragbuf)
		goto out_db;
	if (gw__enc_init(&gw, err, sizeof(err)) != 0) {
		log_warnx("%s", err);
		goto out_buf;
	}
	/* The pool must have room beside the fetch lanes (one copy, one
	 * check): the ledger's commits run there too. */
	const char *tp = getenv("UV_THREADPOOL_SIZE");
	if (!tp || strtoul(tp, NULL, 10) < 4)
		setenv("UV_THREADPOOL_SIZE", "4", 1);
	gw.copy_lane.max = 1;
	gw.verify_lane.max = 1;
	gw.loop = uv_default_loop();
	if (store_foreach(gw.db, STORE_DEVICES, device_load_cb, &gw) != 0 ||
	    gw__releases_load(&gw) != 0) {
		log_warnx("ledger %s could not be read", gw.cfg.db_dir);
		goto out_buf;
	}
	twalk_r(gw.devices, restore_walk, &gw);
	for (struct gw_release *r = gw.releases; r; r = r->next)
		gw__campaign_check_done(&gw, r);
	mosquitto_lib_init();
	struct mq_opts mo = {
	    .host = gw.cfg.broker_host,
	    .port = (int)gw.cfg.broker_port,
	    .brokers = gw.cfg.brokers,
	    .cafile = gw.cfg.ca_file,
	    .certfile = gw.cfg.cert_file,
	    .keyfile = gw.cfg.key_file,
	    .client_id = gw.cfg.client_id,
	    .keepalive = 30,
	    .protocol = strcmp(gw.cfg.mqtt_version, "5") == 0 ? 5 : 4,
	};
	struct mq_cbs cbs = {on_connect, on_disconnect, on_message};
	if (mq_new(gw.loop, &mo, &cbs, &gw, &gw.mq, err, sizeof(err)) != 0) {
		log_warnx("%s", err);
		goto out_lib;
	}
	mq_set_on_message5(gw.mq, on_message5);
	if (gw__https_init(&gw) != 0) {
		log_warnx("libcurl initialisation failed");
		goto out_lib;
	}
	if (gw__http_init(&gw, err, sizeof(err)) != 0) {
		log_warnx("http: %s", err);
		goto out_lib;
	}
	uv_timer_init(gw.loop, &gw.tick);
	gw.tick.data = &gw;
	uv_timer_start(&gw.tick, tick_cb, TICK_MS, TICK_MS);
	uv_check_init(gw.loop, &gw.flush);
	gw.flush.data = &gw;
	uv_check_start(&gw.flush, flush_cb);
	uv_unref((uv_handle_t *)&gw.flush);
	uv_timer_init(gw.loop, &gw.stop_timer);
	gw.stop_timer.data = &gw;
	uv_signal_init(gw.loop, &gw.sigint);
	uv_signal_init(gw.loop, &gw.sigterm);
	uv_signal_init(gw.loop, &gw.sighup);
	gw.sigint.data = gw.sigterm.data = gw.sighup.data = &gw;
	uv_signal_start(&gw.sigint, signal_cb, SIGINT);
	uv_signal_start(&gw.sigterm, signal_cb, SIGTERM);
	uv_signal_start(&gw.sighup, signal_cb, SIGHUP);
	log_info("gateway up: broker=%s db=%s store=%s devices=%zu",
		 mq_broker(gw.mq), gw.cfg.db_dir,
		 gw.cfg.store_dir, gw.ndevices);
	mq_start(gw.mq);
	uv_run(gw.loop, UV_RUN_DEFAULT);
	bool stuck = gw__lanes_busy(&gw);
	while (gw.committing)
		uv_run(gw.loop, UV_RUN_ONCE);
	if (!stuck)
		gw__http_free(&gw);
	flush_final(&gw);
	log_info("gateway stopped: frags_sent=%llu resent=%llu reneged=%llu "
		 "grouped=%llu timeouts=%llu spurious=%llu status_polls=%llu "
		 "acks=%llu bad_msgs=%llu stale_msgs=%llu inflight_peak=%llu "
		 "loop_stall_max_ms=%llu",
		 (unsigned long long)gw.stats.frags_sent,
		 (unsigned long long)gw.stats.frags_resent,
		 (unsigned long long)gw.stats.frags_reneged,
		 (unsigned long long)gw.stats.frags_grouped,
		 (unsigned long long)gw.stats.rto_fired,
		 (unsigned long long)gw.stats.rto_spurious,
		 (unsigned long long)gw.stats.status_polls,
		 (unsigned long long)gw.stats.acks,
		 (unsigned long long)gw.stats.msgs_bad,
		 (unsigned long long)gw.stats.msgs_stale,
		 (unsigned long long)gw.stats.inflight_peak,
		 (unsigned long long)gw.stats.stall_max_ms);
	rc = 0;
	if (stuck) {
		/* A worker is blocked in a read that holds its job: the
		 * ledger is written, the process ends without waiting. */
		store_close(gw.db);
		fflush(NULL);
		_exit(0);
	}
	uv_loop_close(gw.loop);
out_lib:
	mosquitto_lib_cleanup();
	tdestroy(gw.devices, free_device);
	gw__releases_free(&gw);
out_buf:
	gw__enc_close(&gw);
	free(gw.fragbuf);
	free(gw.dirty);
out_db:
	store_close(gw.db);
	trust_free(&gw.trust);
	gw__unlock_dirs(&gw);
	return rc;
}
