/*
 * Internal contract of the gateway program (ota-gateway). Not a library:
 * the modules here share these structs; everything else is static.
 */
#ifndef OTA_GW_H
#define OTA_GW_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "common/mq.h"
#include "common/trust.h"
#include "gateway/sender.h"
#include "proto/proto.h"
#include "store/store.h"

struct gw_config {
	char brokers[1024]; /* "host[:port],...", "" = broker_host */
	char broker_host[256];
	uint32_t broker_port;
	char ca_file[PATH_MAX];
	char cert_file[PATH_MAX];
	char key_file[PATH_MAX];
	char client_id[64];
	char publisher_key[PATH_MAX]; /* Ed25519 public key (PEM) */
	char root_keys[PATH_MAX];     /* or: root keys (PEM, comma list) */
	uint32_t root_threshold;
	char keyset_file[PATH_MAX]; /* the key set they signed (SIGHUP) */
	char db_dir[PATH_MAX];
	char store_dir[PATH_MAX];
	uint32_t fragment_size;
	uint32_t window;
	uint32_t max_package_mb;
	uint32_t offer_retry_ms;
	char log_level[16];
	char https_ca_file[PATH_MAX]; /* "" = the system's CA store */
	uint32_t fetch_timeout_s;
	uint32_t fetch_retries;
	uint32_t max_inflight_kb; /* fragment bytes in flight, whole fleet */
	bool group_fragments;	  /* publish fragments once per group */
	/* file:// packages only from below these directories, ':'-separated
	 * absolute paths; "" = file:// refused */
	char file_dirs[4096];
	uint32_t pause_failure_min; /* failed devices before an auto-pause */
	bool encrypt_packages; /* releases encrypted unless announced not */
	char device_cert_dir[PATH_MAX]; /* <id>.crt: keys to wrap for */
	char mqtt_version[8];		/* "5" or "3.1.1" */
	/* The operator's HTTP side (http.c): off while http_listen is "". */
	char http_listen[80];	       /* "127.0.0.1:8080" */
	bool http_tls;		       /* HTTPS, client certificates required */
	char http_cert_file[PATH_MAX]; /* its server certificate */
	char http_key_file[PATH_MAX];
	char http_client_ca[PATH_MAX]; /* "" = ca_file, the fleet CA */
	char http_operators[256];      /* CNs allowed, comma list */
	/* Tests only: deltas are made from the image with its first byte
	 * changed (a faulty or hostile gateway); devices must refuse them. */
	bool test_hostile_delta;
	uint32_t delta_wait_s; /* a device waits this long for its delta */
	/* Pacing (pace.c): offers started per second (0 = unpaced), device
	 * reconnections per second after an update (sets the offers'
	 * restart_spread_ms; 0 = none), and the least spread of the
	 * answers to the hello the gateway sends on every connect. */
	uint32_t offer_rate;
	uint32_t restart_rate;
	uint32_t hello_spread_s;
	/* Active/standby pair (leader.c): the lease in seconds (0 = no
	 * lease, this gateway always sends) and whether to start as the
	 * standby. */
	uint32_t lease_s;
	bool standby;
};

/* Who asked for a command and where its verdict goes (verdict.c). */
struct gw_req {
	char product[PROTO_ID_MAX + 1];
	char command[16];
	char reply[PROTO_ID_MAX + 1];	      /* the request's "reply" id */
	char operator_name[PROTO_ID_MAX + 1]; /* claimed in the request */
	char resp_topic[256];		      /* MQTT 5 response topic */
	uint8_t corr[64];		      /* MQTT 5 correlation data */
	size_t corr_len;
};

/* A release's campaign (campaign.c owns it; others read it). One state
 * at a time, changed only by gw__campaign_set_state, which logs it;
 * finished is a fact beside it (every target done, until one more
 * starts). */
enum gw_camp_state {
	GW_CAMP_ROLLING, /* offered to every target, concurrency allowing */
	GW_CAMP_CANARY,	 /* only canary_quota devices may start */
	GW_CAMP_PAUSED,	 /* nothing new starts, nothing more is sent */
	GW_CAMP_ABORTED, /* ended for good: never offered again */
};
struct gw_campaign {
	enum gw_camp_state st;
	int64_t finished_ms; /* every target done (0: not, or not yet) */
	uint32_t canary_quota;
	uint64_t canary_cut; /* highest canary rank drawn */
	uint32_t fail_min;   /* failed devices before an automatic pause */
	uint32_t started, active, committed, failed;
	char pause_reason[160];
};

struct gw_release {
	char id[PROTO_RELEASE_HEX_LEN + 1];
	uint32_t tag;
	struct proto_manifest m;
	char *manifest; /* signed bytes, NUL-terminated */
	size_t manifest_len;
	uint8_t sig[PROTO_SIG_LEN];
	char path[PATH_MAX]; /* content-addressed copy in store_dir */
	const uint8_t *map;  /* whole package file, read-only mmap */
	size_t map_len;
	uint64_t payload_off;
	/* The block table, kept in <store>/<id>.blocks too; it travels in
	 * fragments [0, tfrags), the payload in [tfrags, nfrags). */
	uint8_t *table;
	size_t table_len;
	uint32_t frag_size, nfrags, tfrags, window;
	struct proto_announce target; /* group / device list, rollout */
	int64_t created_ms;
	int64_t fetch_ms, verify_ms; /* gateway stages of this release */
	/* Confidential (enc.c): fragments sealed under ckey, which each
	 * offer carries wrapped for its device. Never logged. */
	bool encrypt;
	bool offers_held; /* the pacer holds back offers of it (pace.c) */
	uint8_t ckey[PROTO_ENC_KEY_LEN];
	struct proto_aead *aead; /* ckey, ready to seal */
	/* Sealed fragments, kept once sealed (xfer.c): the same bytes for
	 * every device and every resend. NULL when the release is too big
	 * for the gateway's cache (then each send seals again). */
	uint8_t **sealed;
	size_t sealed_bytes;
	struct gw_campaign camp; /* campaign.c's (a variant's is unused: its
				    root's counts) */
	/* Sending (xfer.c owns it): the transfers' shared state and the
	 * group, where devices that accept together get each fragment from
	 * one publish. NULL until a transfer of this release starts. */
	struct gw_xrel *xrel;
	/* Encoded payloads (delta.c, PROTOCOL.md 6.4). A release's payload
	 * fragments carry payload_len bytes: its image (m.size), or, in a
	 * variant, the image as zstd frames or as a delta from a base. A
	 * variant is a gw_release of its own for the transfer engine (its
	 * fragments, its group), made from its parent, whose campaign,
	 * manifest and table it shares (borrowed, not owned); it is not in
	 * gw->releases but in its parent's `variants`. */
	uint64_t payload_len;
	enum proto_encoding encoding;
	struct gw_release *parent, *variants;
	uint8_t base[PROTO_SHA256_LEN]; /* a delta's base image */
	char base_version[PROTO_VERSION_MAX + 1];
	int var_state;	      /* GW_VAR_PENDING, _READY, _FAILED */
	int64_t var_since_ms; /* the job was started then (monotonic) */
	uint64_t var_cpu_ms;  /* CPU time it took to make */
	struct gw_release *next;
};

enum { GW_VAR_PENDING, GW_VAR_READY, GW_VAR_FAILED };

struct gw_xfer;

/* Thread-pool work of package fetches goes through lanes: each runs at
 * most `max` jobs at once and queues the rest on the loop, so fetches can
 * never hold the whole pool (the ledger's commits and other releases'
 * checks always find a thread). */
struct gw_lane_item {
	uv_work_t req; /* req.data: the owner */
	uv_work_cb work;
	uv_after_work_cb done;
	struct gw_lane_item *next;
};
struct gw_lane {
	unsigned busy, max;
	struct gw_lane_item *head, *tail;
};

/* A release a device failed or rolled back from (failed.c). */
struct gw_failed {
	char release[PROTO_RELEASE_HEX_LEN + 1];
	bool rolled_back; /* else failed */
};
/* How many a device's record keeps: enough for every campaign that can be
 * open for it at once (failed.c says what happens past it). */
#define GW_FAILED_MAX 8

struct gw_device {
	char id[PROTO_ID_MAX + 1];
	char product[PROTO_ID_MAX + 1];
	char version[PROTO_VERSION_MAX + 1];
	char group[PROTO_ID_MAX + 1];
	enum proto_state state;
	bool online;
	char release[PROTO_RELEASE_HEX_LEN + 1]; /* last update's release */
	/* The releases it failed or rolled back from, oldest first: never
	 * offered to it again, unless a retry forgets one it failed. */
	struct gw_failed failed[GW_FAILED_MAX];
	uint8_t nfailed;
	uint32_t acked, frags;
	uint64_t frags_sent, frags_resent;
	char error[PROTO_ERROR_MAX + 1];
	struct proto_timings timings;
	int64_t offered_ms, transferred_ms, finished_ms, seen_ms;
	struct gw_xfer *x;
	bool dirty;
	int64_t poll_ms; /* its retained status was last asked for then */
	/* Its certificate, checked for an encrypted release (enc.c). */
	char enc_release[PROTO_RELEASE_HEX_LEN + 1];
	bool enc_ok;
	uint64_t enc_checked_ms;
	uint8_t enc_pub[PROTO_EC_PUB_LEN];
	/* Its status's "image": the delta base it runs (delta.c). */
	bool has_image;
	uint8_t image[PROTO_SHA256_LEN];
	/* How its last update travelled, and the bytes of fragments sent to
	 * it for that update (headers and resends included, group
	 * publishes counted once per member). */
	enum proto_encoding encoding;
	uint64_t wire_bytes;
	/* A delta's base image (the ledger keeps it: after a gateway
	 * restart the transfer goes on as the same delta, delta.c). */
	uint8_t xbase[PROTO_SHA256_LEN];
	/* Restored after a restart, its encoded payload still being read
	 * back or made: no transfer and no new offer until it is ready. */
	bool restore_wait;
	/* It failed an encoded payload of this release: full image only. */
	char nodelta_release[PROTO_RELEASE_HEX_LEN + 1];
};

/* A Prometheus histogram of durations (http.c): bucket i counts the
 * observations <= gw__hist_le_us[i]; the last bucket is +Inf. */
#define GW_HIST_N 16
struct gw_hist {
	uint64_t bucket[GW_HIST_N + 1];
	uint64_t count, sum_us;
};
extern const uint64_t gw__hist_le_us[GW_HIST_N];
void gw__hist_add(struct gw_hist *h, uint64_t us);

struct gw_stats {
	uint64_t msgs_bad;   /* undecodable */
	uint64_t msgs_stale; /* valid but not for any live session */
	uint64_t acks;
	uint64_t releases_refused;
	uint64_t stall_max_ms;	    /* worst lateness of the loop's tick */
	uint64_t drop_log_ms;	    /* last "dropped" log line (rate limit) */
	uint64_t drop_unlogged;	    /* dropped since then without a line */
	uint64_t status_polls;	    /* retained statuses asked for again */
	uint64_t hellos;	    /* hellos sent (one per connect) */
	uint64_t offers_paced;	    /* offers held back by offer_rate */
	struct gw_hist commit_hist; /* ledger commit, queued to done */
	struct gw_hist stall_hist;  /* lateness of the loop's tick */
};

struct gw {
	uv_loop_t *loop;
	struct gw_config cfg;
	struct trust trust; /* who may sign manifests */
	struct mq *mq;
	struct store *db;
	void *devices; /* tsearch tree of struct gw_device * */
	size_t ndevices;
	struct gw_device **dirty;
	size_t ndirty, dirty_cap;
	struct gw_release *releases;
	uv_timer_t tick;
	uint64_t last_tick_ms;
	uv_check_t flush;
	uv_work_t commit; /* the ledger commit running in the thread pool */
	struct store_batch *committing;
	int commit_rc;
	char commit_err[256];
	unsigned commit_fails;	  /* failed commits in a row */
	uint64_t commit_retry_ms; /* after a failure: no commit before this */
	uint8_t *fragbuf; /* PROTO_FRAG_HDR_LEN + PROTO_FRAG_SIZE_MAX + tag */
	void *enc_ca;	  /* X509_STORE * of device_cert_dir's CA, enc.c */
	struct gw_stats stats;
	int fetches;		    /* package jobs under way */
	struct gw_lane copy_lane;   /* file:// copies into the store */
	struct gw_lane verify_lane; /* package checks */
	struct gw_lane delta_lane;  /* compressed and delta payloads */
	atomic_bool fetch_cancel;   /* set at stop: copies end early */
	uv_timer_t stop_timer;	    /* stop without waiting for a stuck read */
	uint8_t canary_key[32];	    /* ledger meta canary_key */
	int lock_fds[2];	    /* flock'ed files in db_dir, store_dir */
	int poll_budget;	    /* status polls left in this tick */
	struct gw_snd_fleet fleet; /* every transfer: bytes in flight, counts */
	double offer_tokens;	   /* offers that may start now (pace.c) */
	bool offers_waiting;	   /* an offer was held back by offer_rate */
	uint64_t offers_walk_ms;   /* the last walk for held-back offers */
	uint64_t pace_ms;	   /* offer_tokens were refilled then */
	uint64_t sealed_bytes;	   /* sealed fragments cached, all releases */
	void *curlm;		   /* CURLM *, see https.c */
	struct gw_https *downloads; /* under way, see https.c */
	uv_timer_t curl_timer;
	bool stopping;
	uint64_t commit_start_us; /* the running commit was queued then */
	struct gw_http *http;	  /* NULL while the HTTP side is off */
	/* Told every event gw__event() records (strings borrowed): set by
	 * the HTTP side for the dashboard; NULL: nobody listens. */
	void (*on_event)(struct gw *gw, int64_t ts, const char *event,
			 const char *device, const char *release,
			 const char *detail);
	/* gw.c's gw__offer_due_all, set by gw_init: how a lower module
	 * (campaign, release, delta, pace) says that offers may be due. */
	void (*offer_due_all)(struct gw *gw);
	void (*on_stopped)(struct gw *gw); /* see gw_stop */
	void *ud;			   /* the caller's, untouched */
	/* The clock (gw__mono_ms, gw__wall_ms): NULL, the system's; a test
	 * sets its own before gw_init. */
	uint64_t (*clock_mono_ms)(void *ud);
	int64_t (*clock_wall_ms)(void *ud);
	void *clock_ud;
	struct gw_leader *leader; /* leader.c; NULL while lease_s is 0 */
	/* Kept by leader.c for the modules that send (gw__leader_sending,
	 * gw__leader_epoch): data, not a call, so that they need not call
	 * the module that calls them. */
	bool sending;	/* no lease, or this gateway holds it */
	uint32_t epoch; /* the epoch claimed last (0 without a lease) */
};

/* gw.c: the gateway's lifecycle, libuv-style (as the device's dev_init,
 * dev_start, dev_stop), so a gateway and devices can share one loop in
 * one process. The caller owns the loop (and calls mosquitto_lib_init
 * once, and sets UV_THREADPOOL_SIZE to 4 or more before the loop's first
 * thread-pool job).
 * gw_init: everything that can fail (trust, locked directories, ledger
 * loaded, the broker connection made but not started, the HTTP side);
 *   cfg is copied. -1 with err: undone, but handles it had opened close
 *   on the loop's next run (run it before closing the loop).
 * gw_start: connect and serve.
 * gw_stop: stop fetches and transfers, close the connection and every
 *   handle; on_stopped(gw) (may be NULL) runs once the connection is
 *   closed; the gateway's handles are closed when the loop next runs out.
 * gw_close: after the loop ran out: the last commit, then everything
 *   freed; GW_CLOSE_STUCK when a package read is stuck in a worker: the
 *   ledger is written and closed, the rest must be left to the process's
 *   exit (_exit). */
#define GW_CLOSE_STUCK 1
/* run.c: every key at its default (what `ota-gateway run --help` shows). */
void gw_config_defaults(struct gw_config *c);
int gw_init(struct gw *gw, uv_loop_t *loop, const struct gw_config *cfg,
	    char *err, size_t n);
int gw_start(struct gw *gw);
void gw_stop(struct gw *gw, void (*on_stopped)(struct gw *gw));
int gw_close(struct gw *gw);
/* clock.c: the gateway's clock, read in one place: monotonic ms (intervals,
 * timeouts, the ticks) and wall ms (the ledger's and the API's times,
 * expiry). Only durations of real work measured across threads (a
 * package's fetch and check, a commit, a copy's deadline) use the
 * system's monotonic clock directly. */
uint64_t gw__mono_ms(const struct gw *gw);
int64_t gw__wall_ms(const struct gw *gw);

/* devices.c: the device table. find: NULL if unknown; get: made (offline)
 * if unknown, NULL only when out of memory. dirty: d is written to the
 * ledger with the next commit. */
struct gw_device *gw__device_find(struct gw *gw, const char *id);
struct gw_device *gw__device_get(struct gw *gw, const char *id);
void gw__device_dirty(struct gw *gw, struct gw_device *d);
/* event.c: record an event in the ledger's event log (and tell on_event). */
void gw__event(struct gw *gw, const char *device, const char *release,
	       const char *event, const char *detail);
/* gw.c: offer the newest targeting release to every idle device due one. */
void gw__offer_due_all(struct gw *gw);
/* What a module below gw.c calls instead (through gw->offer_due_all). */
static inline void gw__offers_due(struct gw *gw)
{
	if (gw->offer_due_all)
		gw->offer_due_all(gw);
}

/* pace.c: the broker's limits respected (PROTOCOL.md 5.6 and 8). */
/* An offer may start now (a token of offer_rate is taken), or it is
 * held back and gw__pace_tick tries again. */
bool gw__pace_offer(struct gw *gw);
/* An unanswered offer (sent `offers` times, the last `since_ms` ago) is
 * due again: offer_retry_ms doubled per offer sent, at most 60 s, and a
 * token of offer_rate. */
bool gw__pace_reoffer(struct gw *gw, uint32_t offers, uint64_t since_ms);
/* Each tick: refill offer tokens, and walk for held-back offers. */
void gw__pace_tick(struct gw *gw, uint64_t now);
/* restart_spread_ms for the offers of release r. */
uint32_t gw__restart_spread_ms(const struct gw *gw, const struct gw_release *r);
/* On every connect: ask every device for its status (ota/hello). */
void gw__hello(struct gw *gw);
/* Ask one device for its status again (ota/dev/<id>/poll). */
int gw__poll_device(struct gw *gw, const char *id);

/* leader.c: the active/standby lease on ota/gw/leader (PROTOCOL.md 5.7,
 * docs/FAILOVER.md). init after the ledger is open (reads the identity
 * and the highest epoch kept; no handle); start with gw_start; connected
 * from on_connect; stop before the connection
 * closes (a clean stop says "gone"); close with the other handles; free
 * last. */
struct gw_leader;
/* The lease_s and standby keys: 0, or -1 with err naming the key. */
int gw__leader_check(const struct gw_config *c, char *err, size_t n);
int gw__leader_init(struct gw *gw, char *err, size_t n);
void gw__leader_start(struct gw *gw);
void gw__leader_connected(struct gw *gw);
/* A message on ota/gw/... (the lease, the active's release records). */
void gw__leader_message(struct gw *gw, const char *topic, const void *payload,
			size_t len);
void gw__leader_stop(struct gw *gw);
void gw__leader_close(struct gw *gw);
void gw__leader_free(struct gw *gw);
/* May this gateway send to devices (no lease, or it holds it)? A standby
 * sends nothing: no offer, fragment, hello, poll or verdict. */
static inline bool gw__leader_sending(const struct gw *gw)
{
	return gw->sending;
}
/* The epoch its offers carry (0 without a lease). */
static inline uint32_t gw__leader_epoch(const struct gw *gw)
{
	return gw->epoch;
}

/* catalog.c: the releases the gateway knows */
struct gw_release *gw__release_find(struct gw *gw, const char *id);
/* Is d a target of r: r neither aborted nor expired, d of its product on
 * a version r updates (newer; a signed downgrade: older and at most the
 * version it replaces), in its group or device list. With
 * GW_TARGET_ONLINE d must also be online; with GW_TARGET_NOT_FAILED it
 * must not have failed r before (GW_TARGET_NOW: both, would r go to d
 * now). The one place that says who a release is for. */
#define GW_TARGET_ONLINE 1u
#define GW_TARGET_NOT_FAILED 2u
#define GW_TARGET_NOW (GW_TARGET_ONLINE | GW_TARGET_NOT_FAILED)
bool gw__release_targets(const struct gw *gw, const struct gw_release *r,
			 const struct gw_device *d, unsigned how);
/* The newest release (by version) of product; with d (then product is
 * d's), the newest that targets d now. NULL when there is none. */
struct gw_release *gw__release_newest(struct gw *gw, const char *product,
				      const struct gw_device *d);
/* d's last update ended without a commit (rolled_back: it rolled back):
 * release goes into d->failed, so it is not offered to d again. With
 * d->failed full, first forgets the releases that no longer target d
 * (aborted, expired, removed, a version d is past), then the oldest
 * (logged). */
void gw__release_failed(struct gw *gw, struct gw_device *d, const char *release,
			bool rolled_back);

/* release.c: fetch, verify, store, record */
/* rq: the transport's part of the request (response topic, correlation
 * data), or NULL. */
void gw__announce(struct gw *gw, const char *product, const void *payload,
		  size_t len, const struct gw_req *rq);
int gw__releases_load(struct gw *gw);
void gw__releases_free(struct gw *gw);
/* SIGHUP: read keyset_file again; retire releases it no longer trusts. */
void gw__keyset_reload(struct gw *gw);

/* delta.c: compressed and delta variants of a release (PROTOCOL.md 6.4) */
/* The release object to send r to d as: a delta from d's image, r as
 * zstd, or r itself; NULL = d waits (its variant is being made, for at
 * most cfg.delta_wait_s). Starts the job that makes a missing variant. */
struct gw_release *gw__variant_pick(struct gw *gw, struct gw_release *r,
				    const struct gw_device *d);
/* After a gateway restart: the payload d's transfer of r was sending (its
 * encoding, its base in d->xbase), to go on from what d holds; NULL while
 * it is being read back or made (then gw->offer_due_all is called);
 * r itself when it cannot be had (no base package any more, failed). */
struct gw_release *gw__variant_restore(struct gw *gw, struct gw_release *r,
				       const struct gw_device *d);
void gw__variants_free(struct gw_release *r);

/* fetch.c: what a fetch may touch, and the lanes */
/* url with its userinfo and query values replaced by "***", for logs and
 * the event log. */
void gw__url_redact(const char *url, char *out, size_t n);
/* Open a file:// url for reading: an absolute path below one of dirs
 * (':'-separated; both sides resolved with realpath), a regular file of
 * 1 .. max bytes (checked with fstat before any byte is read; FIFOs and
 * devices are refused without blocking). The fd is new; *size its size. */
int gw__file_open(const char *url, const char *dirs, uint64_t max, int *fd,
		  uint64_t *size, char *err, size_t n);
/* Copy size bytes of src into dst; stops when *cancel is set, past
 * deadline (monotonic ms) or if src is not size bytes long. */
int gw__file_copy(int src, int dst, uint64_t size, const atomic_bool *cancel,
		  uint64_t deadline, char *err, size_t n);
void gw__lane_submit(struct gw *gw, struct gw_lane *l, struct gw_lane_item *it,
		     uv_work_cb work, uv_after_work_cb done);
/* The first thing a lane job's done callback calls: starts the next. */
void gw__lane_finished(struct gw *gw, struct gw_lane *l);
/* At stop: every queued job's done runs now with UV_ECANCELED. */
void gw__lanes_cancel(struct gw *gw);
bool gw__lanes_busy(const struct gw *gw);
/* Remove the temporary files of fetches a killed gateway left in
 * store_dir; returns how many, or -1. */
int gw__fetch_sweep(const char *store_dir, char *err, size_t n);
/* Take the exclusive locks of db_dir and store_dir (a second gateway on
 * the same ledger or store is refused: err names the holder's pid). */
int gw__lock_dirs(struct gw *gw, char *err, size_t n);
void gw__unlock_dirs(struct gw *gw);
/* All of it at start: make the directories, lock them, sweep the store,
 * open the ledger and load its canary key. */
int gw__open_dirs(struct gw *gw, char *err, size_t n);

/* https.c: downloads through libcurl's multi interface on the loop */
struct gw_https;
int gw__https_init(struct gw *gw);
void gw__https_close(struct gw *gw);
/* Download url into fd (at most max bytes, else refused), retrying with
 * backoff; done(ud, 0 or -1, reason) runs on the loop exactly once. */
struct gw_https *gw__https_get(struct gw *gw, const char *url, int fd,
			       uint64_t max,
			       void (*done)(void *ud, int rc, const char *err),
			       void *ud);

/* http.c: the operator's HTTP API, dashboard and metrics, served by
 * libwebsockets on gw->loop. Off (and nothing is opened) while
 * cfg.http_listen is "". check: the http_* keys, err names the key. */
struct gw_http;
int gw__http_check(const struct gw_config *c, char *err, size_t n);
/* Before uv_run; reads the event log once for the dashboard's charts. */
int gw__http_init(struct gw *gw, char *err, size_t n);
/* Starts closing its handles; the loop finishes the job. */
void gw__http_close(struct gw *gw);
/* After uv_run() returned: frees what is left. */
void gw__http_free(struct gw *gw);

/* campaign.c: who may start now, staged rollout, pause/resume/abort */
/* The per-gateway canary key from the ledger, made on first start. */
int gw__canary_key_load(struct gw *gw, char *err, size_t n);
void gw__campaign_init(struct gw *gw, struct gw_release *r);
bool gw__campaign_admit(struct gw *gw, const struct gw_release *r,
			const struct gw_device *d);
void gw__campaign_started(struct gw *gw, struct gw_release *r);
/* A transfer of r restored after a gateway restart is under way. */
void gw__campaign_restored(struct gw_release *r);
void gw__campaign_finished(struct gw *gw, struct gw_release *r, bool ok);
/* End every unfinished transfer of r for good; r is never offered again. */
void gw__campaign_abort(struct gw *gw, struct gw_release *r, const char *why);
void gw__control(struct gw *gw, const char *product, const void *payload,
		 size_t len, const struct gw_req *rq);
/* The operator's commands, one function each, for MQTT and HTTP alike:
 * they act on `release` ("" = the product's newest) and fill v with the
 * verdict (command, product, verdict, release, version, reason). Then
 * gw__verdict_send(gw, rq or NULL, v) logs it, records it in the event log
 * and publishes it; proto_verdict_encode(v) is the answer's JSON. */
void gw__ctl_pause(struct gw *gw, const char *product, const char *release,
		   struct proto_verdict *v);
void gw__ctl_resume(struct gw *gw, const char *product, const char *release,
		    struct proto_verdict *v);
void gw__ctl_abort(struct gw *gw, const char *product, const char *release,
		   struct proto_verdict *v);
/* Offer the release again to the devices that failed it (not to those
 * that rolled back: they refuse it by design). */
void gw__ctl_retry(struct gw *gw, const char *product, const char *release,
		   struct proto_verdict *v);
/* Is every target of r done? Then it is finished (and saved as such). */
void gw__campaign_check_done(struct gw *gw, struct gw_release *r);
void gw__release_save(struct gw *gw, struct gw_release *r);
/* The state's name, or "finished" once every target is done. */
const char *gw__campaign_state(const struct gw_release *r);
/* The one way a campaign changes state (logged). */
void gw__campaign_set_state(struct gw_release *r, enum gw_camp_state st);
/* Paused or aborted: nothing new is sent. */
static inline bool gw__campaign_halted(const struct gw_release *r)
{
	return r->camp.st == GW_CAMP_PAUSED || r->camp.st == GW_CAMP_ABORTED;
}

/* verdict.c: answers to the operator's commands */
/* Start a verdict for command `command` of rq's product. */
void gw__verdict_init(struct proto_verdict *v, const char *product,
		      const char *command);
/* Log it, record it in the event log and publish it: to the request's
 * MQTT 5 response topic (if under ota/result/<product>/) or else to
 * ota/result/<product>/req/<reply>, and retained to
 * ota/result/<product>/rel/<release> and ota/result/<product>/last. */
void gw__verdict_send(struct gw *gw, const struct gw_req *rq,
		      struct proto_verdict *v);
/* Which known devices r targets now (offline ones too): count, the
 * first PROTO_VERDICT_DEVICES_MAX, and, when none, why, into v->reason.
 * Returns true when r's group or device list matches no known device of
 * its product (a typo, most likely). */
bool gw__verdict_targets(struct gw *gw, const struct gw_release *r,
			 struct proto_verdict *v);

/* Append to the NUL-terminated text in buf[n], truncating. */
__attribute__((format(printf, 3, 4))) void gw__appendf(char *buf, size_t n,
						       const char *fmt, ...);

/* xfer.c: offers and the windowed transfer */
/* xfer.c calls nothing of gw.c, campaign.c or delta.c: what the ledger and
 * the event log must record comes back to the caller. */
/* The release object d's transfer sends (a variant, delta.c). */
struct gw_release *gw__xfer_rel(const struct gw_device *d);
/* d starts r (and is offered it); 0, or -1 when out of memory. */
int gw__xfer_start(struct gw *gw, struct gw_device *d, struct gw_release *r);
/* After a restart: d's transfer of r waits for d. 0 or -1. */
int gw__xfer_restore(struct gw_device *d, struct gw_release *r);
void gw__xfer_offer(struct gw *gw, struct gw_device *d);
enum gw_xfer_ack {
	GW_XFER_ACK_NOTHING,  /* nothing to record */
	GW_XFER_ACK_PROGRESS, /* d->acked moved: d's record is dirty */
	GW_XFER_ACK_DONE,     /* every fragment held: record "transferred" */
};
enum gw_xfer_ack gw__xfer_on_ack(struct gw *gw, struct gw_device *d,
				 const struct proto_ack *a);
void gw__xfer_tick(struct gw *gw, struct gw_device *d, uint64_t now);
void gw__xfer_free(struct gw *gw, struct gw_device *d);
/* The device went offline: it leaves its group, if any. */
void gw__xfer_offline(struct gw *gw, struct gw_device *d);
/* Group sending of every release: start, pace, drop a member too slow. */
void gw__group_tick(struct gw *gw, uint64_t now);
/* What xfer.c keeps of r (its group); before r is freed. */
void gw__xfer_release_free(struct gw *gw, struct gw_release *r);
/* The release whose campaign r belongs to (r itself, or its parent). */
struct gw_release *gw__rel_root(struct gw_release *r);
/* Bytes of fragment i of r on the wire (header, data, tag). */
uint64_t gw__frag_wire_len(const struct gw_release *r, uint32_t i);

/* enc.c: confidential packages */
int gw__enc_init(struct gw *gw, char *err, size_t n);
void gw__enc_close(struct gw *gw);
/* r->ckey: fresh (a new release: a new random key, stored) or the stored
 * one (from the ledger; a new one if it is lost or readable by others). */
int gw__enc_release_key(struct gw *gw, struct gw_release *r, bool fresh,
			char *err, size_t n);
/* May encrypted release r be offered to d (its certificate is there and
 * valid)? Logs and records why not, once per device and release. */
bool gw__enc_may_offer(struct gw *gw, struct gw_device *d,
		       const struct gw_release *r);
/* Fill o's "enc" member: the content key wrapped for d. 0 or -1. */
int gw__enc_offer(struct gw *gw, struct gw_device *d,
		  const struct gw_release *r, struct proto_offer *o);

/* keyset.c: the root's tool */
/* "+30d", "+12h", "+15m", "+90s", "2027-06-30", "2027-06-30T12:00:00Z" or
 * unix seconds, relative to now. 0 or -1 with the reason. */
int gw__parse_when(const char *s, int64_t now, int64_t *out, char *err,
		   size_t n);

/* failed.c: the releases a device failed (d->failed), pure */
/* Its entry for release, NULL when it did not fail it (or a retry forgot
 * it). Borrowed: valid until d->failed changes. */
const struct gw_failed *gw__failed_find(const struct gw_device *d,
					const char *release);
/* d failed (or rolled back from) release: its entry goes last, the newest
 * (one already there moves). When all GW_FAILED_MAX are taken the oldest
 * is dropped: true, with its id in dropped (NULL: not wanted). */
bool gw__failed_put(struct gw_device *d, const char *release, bool rolled_back,
		    char *dropped);
/* A retry: forget release (false when it was not there). */
bool gw__failed_forget(struct gw_device *d, const char *release);
/* The release it failed last, "" when none. Borrowed, as find. */
const char *gw__failed_latest(const struct gw_device *d);

/* ledger.c: every record format of the ledger, written and read back
 * there only. Records are new JSON text (free()), NULL when out of memory.
 *
 * Device: parse returns -1 when the record names no valid device id;
 * otherwise 0 and every member of d it stores is set (a member that is
 * missing, of the wrong type or out of range reads as empty, 0 or -1;
 * acked <= frags, frags_resent <= frags_sent), online false, the rest of d
 * untouched. */
char *gw__device_record(const struct gw_device *d);
int gw__device_parse(const char *val, size_t vlen, struct gw_device *d);
/* d->failed as the record's "failed_releases" array (new; NULL when out
 * of memory). */
struct json_t;
struct json_t *gw__failed_json(const struct gw_device *d);
/* Release and its campaign (campaign_state: gw__campaign_state(r)). Parse
 * sets what the record stores: the manifest (new, decoded into r->m, its
 * signature NOT checked), path, target, fragment layout (checked against
 * the manifest), stage times, the campaign; -1 with err when the record
 * cannot be used. On either return r may own r->manifest and
 * r->target.devices (freed with r). */
char *gw__release_record(const struct gw_release *r,
			 const char *campaign_state);
int gw__release_parse(const char *val, size_t vlen, struct gw_release *r,
		      char *err, size_t n);
/* One event of the log (device, release, detail: NULL reads as ""). Parse:
 * -1 when it names no event; a member missing, of the wrong type or too
 * long reads as "" (ts: 0). */
struct gw__event_rec {
	int64_t ts;
	char event[64];
	char device[PROTO_ID_MAX + 1];
	char release[PROTO_RELEASE_HEX_LEN + 1];
	char detail[1024];
};
char *gw__event_record(int64_t ts, const char *event, const char *device,
		       const char *release, const char *detail);
int gw__event_parse(const char *val, size_t vlen, struct gw__event_rec *e);
/* Meta: the canary key, at key GW_CANARY_KEY_NAME, as 64 lower-case hex
 * digits. Parse: 0, or -1 when the value is not that. */
#define GW_CANARY_KEY_NAME "canary_key"
#define GW_CANARY_KEY_LEN 32
void gw__canary_key_record(const uint8_t key[GW_CANARY_KEY_LEN],
			   char hex[2 * GW_CANARY_KEY_LEN + 1]);
int gw__canary_key_parse(const char *val, size_t vlen,
			 uint8_t key[GW_CANARY_KEY_LEN]);

/* commands */

/* fsck.c: the checks of `ota-gateway fsck` over records given in walk
 * order (releases, devices, events, meta; each in key order), packages not
 * looked at. Problem lines go to out (NULL: none); returns how many. */
struct gw__ledger_rec {
	enum store_db db;
	const void *key;
	size_t klen;
	const char *val;
	size_t vlen;
};
uint64_t gw__fsck_records(const struct gw__ledger_rec *recs, size_t n,
			  FILE *out);
/* status.c: the table of `ota-gateway status` on stdout, from the records
 * (JSON arrays of what the ledger holds; any JSON in them is shown as
 * well as it can be). */
struct json_t;
void gw__status_print(struct json_t *rels, struct json_t *devs,
		      struct json_t *events, bool wide);

int gw__cmd_keygen(int argc, char **argv);
int gw__cmd_pack(int argc, char **argv);
int gw__cmd_verify(int argc, char **argv);
int gw__cmd_run(int argc, char **argv);
int gw__cmd_status(int argc, char **argv);
int gw__cmd_ctl(int argc, char **argv);
int gw__cmd_announce(int argc, char **argv);
int gw__cmd_fsck(int argc, char **argv);
int gw__cmd_keyset(int argc, char **argv);

#endif
