/*
 * Internal contract of the device client (ota-device). One struct dev is
 * one device: its configuration, MQTT connection, state directory and
 * update state machine. Nothing is global, so one process can run many.
 *
 * The files, and the one direction of their calls (no file calls a file
 * above it; the installer's restart goes up through the d->restart hook):
 *
 *   main.c, fleet.c     programs: one device, or a simulated fleet
 *   dev.c               lifecycle, MQTT, offers (the state machine's entry)
 *   download.c          the download session: fragments, acks, checkpoints
 *     blocks.c (blocks.h) the block assembler: fragments -> checked blocks
 *                       -> the block sink (the installer's slot writer)
 *     rx.c  (rx.h)      the receiver: hold / ack / checkpoint decisions,
 *                       pure, the clock passed in; calls nothing
 *     zrx.c (zrx.h)     an encoded payload's decoder: fragments in
 *                       order -> zstd frames -> blocks to the assembler
 *   install.c           the installer: slot writer, verify, install,
 *                       restart, commit, roll back
 *   enc.c               encrypted releases' content key
 *   state.c             clock, state.json, status, the state setter
 *   persist.c           state.json <-> struct dev_persist (pure)
 */
#ifndef OTA_DEV_H
#define OTA_DEV_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/mq.h"
#include "common/trust.h"
#include "device-client/blocks.h"
#include "device-client/rx.h"
#include "device-client/zrx.h"
#include "proto/proto.h"

struct dev_config {
	char id[PROTO_ID_MAX + 1];
	char product[PROTO_ID_MAX + 1];
	char version[PROTO_VERSION_MAX + 1]; /* factory version */
	char group[PROTO_ID_MAX + 1];
	char brokers[1024]; /* "host[:port],...", "" = broker_host */
	char broker_host[256];
	uint32_t broker_port;
	char ca_file[PATH_MAX];
	char cert_file[PATH_MAX];
	char key_file[PATH_MAX];
	uint32_t keepalive_s; /* MQTT keepalive */
	char publisher_key[PATH_MAX];
	/* Root keys (comma-separated PEM files) and how many must sign a key
	 * set; the factory key set (optional: key sets also come in offers
	 * and are kept in state_dir/keyset.json). */
	char root_keys[PATH_MAX];
	uint32_t root_threshold;
	char keyset_file[PATH_MAX];
	char state_dir[PATH_MAX];
	char restart_command[1024]; /* "" = re-execute the client */
	char health_command[1024];  /* "" = up means healthy */
	uint32_t health_timeout_s;
	/* With no restart_command: restart in this process (dev_stop, then
	 * dev_init + dev_start on the same struct dev) instead of
	 * re-executing it. Set by fleet mode; not a configuration key. */
	bool restart_inproc;
	uint32_t max_package_mb;
	uint32_t checkpoint_every; /* fragments between progress saves */
	char log_level[16];
	/* Fault injection for tests only: drop this share of the fragments
	 * that arrive, at random (seeded by test_seed and the device id). */
	uint32_t test_drop_percent;
	/* ... and flip a byte in this share of them (a corrupting link). */
	uint32_t test_corrupt_percent;
	uint32_t test_seed;
	/* ... and SIGKILL itself at this named point of the update (see
	 * dev__crash_point): a power cut exactly there. */
	char test_crash_at[32];
	/* ... and a wall clock this many seconds behind, for the expiry
	 * checks only (a device whose clock cannot be trusted). */
	uint32_t test_clock_behind_s;
};

/* What survives a restart or a power cut: state_dir/state.json. */
struct dev_persist {
	char version[PROTO_VERSION_MAX + 1]; /* running version */
	char slot;			     /* active slot, 'a' or 'b' */
	enum proto_state phase;
	char release[PROTO_RELEASE_HEX_LEN + 1];
	char refused[PROTO_RELEASE_HEX_LEN + 1]; /* rolled back: never again */
	char *manifest; /* signed manifest of the update in progress */
	uint8_t sig[PROTO_SIG_LEN];
	uint32_t fragment_size, fragments, window;
	uint32_t table_fragments; /* block table: fragments [0, this) */
	uint32_t held; /* fragments [0, held) are on disk (fsynced) */
	char prev_version[PROTO_VERSION_MAX + 1];
	/* Anti-rollback, kept across updates: the highest version ever
	 * committed, the highest security_version committed, and the newest
	 * `created` time seen in an accepted manifest (a lower bound on the
	 * time for a device whose clock cannot be trusted). */
	char highest[PROTO_VERSION_MAX + 1];
	uint32_t security_floor;
	int64_t time_floor;
	char error[PROTO_ERROR_MAX + 1];
	/* Encrypted release: the offer's wrapped content key (never the
	 * key itself), so that a resumed download can decrypt. */
	bool enc;
	uint8_t enc_epk[PROTO_EC_PUB_LEN];
	uint8_t enc_key[PROTO_ENC_WRAPPED_LEN];
	/* An encoded payload (PROTOCOL.md 6.4): its encoding and size, a
	 * delta's base, and the decoder's checkpoint: the payload offset of
	 * the first frame not yet written (zoff) and its image offset. */
	enum proto_encoding encoding;
	uint64_t payload_size;
	uint8_t base[PROTO_SHA256_LEN];
	uint64_t zoff, zimg;
	/* wall-clock ms stamps for the stage timings (0 = not yet) */
	int64_t t_accept, t_downloaded, t_verified, t_installed, t_restart,
	    t_up; /* The highest gateway leader epoch seen in an offer (PROTOCOL.md
	 * 5.2): offers with a lower one are ignored. Kept across updates. */
	uint32_t gw_epoch;
};

/* persist.c, no I/O. The state.json text of p: new, NULL when out of
 * memory. Parse: 0 and *p filled (p->manifest new, NULL when ""), or -1
 * with the reason in why and *p untouched; anything out of its range or
 * inconsistent (held beyond the transfer's fragments) is refused. */
char *dev__persist_json(const struct dev_persist *p);
int dev__persist_parse(const char *buf, size_t len, struct dev_persist *p,
		       char *why, size_t n);

/* Counters of this process (a download's join them when it closes). */
struct dev_stats {
	uint64_t frags_ok, frags_dup, msgs_bad, msgs_stale, acks_sent;
	uint64_t frags_ahead; /* beyond the window (a group's, not ours) */
	uint64_t frags_dropped_test, frags_corrupted_test;
	/* dropped (test) that this transfer would have taken: losses to
	 * repair, not duplicates, a group's fragments beyond our window or
	 * fragments of no transfer of ours */
	uint64_t frags_lost_test;
	uint64_t frags_nobuf;	 /* no block buffer free: dropped, resent */
	uint64_t blocks_evicted; /* gave its buffer to a lower block */
	uint64_t blocks_ok;	 /* checked against the table and written */
	uint64_t blocks_bad;	 /* failed the check: dropped, re-requested */
	uint64_t tables_bad;	 /* block tables that failed the manifest */
	uint64_t frags_unauth;	 /* encrypted, failed authentication */
};

struct dev {
	uv_loop_t *loop;
	struct dev_config cfg;
	char **argv;	    /* for re-execution */
	struct trust trust; /* who may sign manifests */
	struct mq *mq;
	char topic_status[PROTO_ID_MAX + 24];
	char topic_ack[PROTO_ID_MAX + 24];
	char topic_grp[PROTO_GROUP_TOPIC_MAX + 20]; /* "" = not subscribed */
	struct dev_persist p;
	enum proto_state st;
	/* download session (download.c), open while rx.held is set */
	struct proto_manifest m;
	uint32_t tag;
	struct dev_rx rx;      /* which fragments are held; acks */
	struct dev_blocks blk; /* fragments -> checked blocks -> the slot */
	/* An encoded payload's decoder (zrx.h), between the receiver and
	 * the assembler, with its base: the active slot's image, mapped
	 * read-only while it decodes. */
	bool zon;
	struct dev_z z;
	const uint8_t *base_map;
	size_t base_len;
	/* The image in the active slot: its SHA-256 (status "image"), when
	 * the slot holds one. */
	bool has_image;
	uint8_t image[PROTO_SHA256_LEN];
	char who[PROTO_ID_MAX + PROTO_RELEASE_HEX_LEN + 32]; /* log prefix */
	int part_fd;	     /* the inactive slot's payload.part (install.c) */
	int table_fd;	     /* the block table, beside the slot */
	uint32_t bad_blocks; /* in this update, across restarts of it */
	/* Encrypted release (enc.c): the content key, in memory only. */
	bool enc;
	struct proto_aead *aead; /* the content key, ready to open */
	bool ec_loaded;		 /* the device's own key, from key_file */
	uint8_t ec_priv[PROTO_EC_PRIV_LEN];
	uint8_t ec_pub[PROTO_EC_PUB_LEN];
	uint8_t *encbuf; /* a decrypted fragment */
	size_t encbuf_cap;
	uv_timer_t ack_timer;
	uv_timer_t status_timer;
	uv_timer_t hold_timer; /* a transient state not yet published */
	uint64_t last_status_ms;
	struct dev_stats stats;
	uint64_t rng; /* xorshift state for test_drop_percent */
	bool busy;    /* a job is in the thread pool */
	bool stopping;
	uv_work_t work;
	int work_rc;
	char work_err[PROTO_ERROR_MAX + 1];
	uv_process_t proc;
	uv_process_t health_proc;
	uv_timer_t health_timer; /* also: the spread before a restart */
	bool health_running, health_timed_out;
	uv_timer_t poll_timer;	    /* answers a hello or poll (poll.c) */
	uint32_t restart_spread_ms; /* from the offer being installed */
	uint64_t jitter_rng;	    /* xorshift state for dev__rand_below */
	void (*on_stopped)(struct dev *d);
	/* How the installer restarts the device (set by dev_init: stop, then
	 * re-exec or start again in process). */
	void (*restart)(struct dev *d);
	int pending_closes; /* timers dev_stop is still closing */
};

/* dev.c */
int dev_init(struct dev *d, uv_loop_t *loop, const struct dev_config *cfg,
	     char **argv, char *err, size_t errlen);
int dev_start(struct dev *d);
/* Stop: publish offline (unless restarting), close the MQTT connection
 * without its Last Will, close every handle, then call on_stopped(d) from
 * the last close callback (d may be re-initialised there). Calling it
 * again while stopping only replaces on_stopped. */
void dev_stop(struct dev *d, void (*on_stopped)(struct dev *d));

/* download.c */
bool dev__download_open(const struct dev *d);
/* Open (or resume from the checkpoint) the download of the offer (its
 * manifest already in d->m). 0, or -1 when the update has failed. */
int dev__download_begin(struct dev *d, const struct proto_offer *o,
			bool resume);
/* After a restart in phase downloading. */
void dev__resume_download(struct dev *d);
/* A fragment message (payload borrowed for the call). */
void dev__on_frag(struct dev *d, const void *payload, size_t len,
		  bool from_group);
void dev__send_ack(struct dev *d);
bool dev__download_all_in(const struct dev *d);
void dev__download_complete(struct dev *d);
/* Checkpoint and close the download, if one is open. */
void dev__download_stop(struct dev *d);
void dev__group_unsubscribe(struct dev *d);
/* Close the download, remove its files, publish `failed` with why. */
void dev__fail_update(struct dev *d, const char *why);

/* state.c */
/* The device's clocks, read nowhere else: monotonic (the loop's time)
 * and wall (Unix ms, for stamps). */
uint64_t dev__mono_ms(const struct dev *d);
int64_t dev__wall_ms(const struct dev *d);
/* Unix seconds, never below the newest manifest's `created` seen. */
int64_t dev__now_s(const struct dev *d);
/* Read state.json into d->p (a new one when absent). */
int dev__load(struct dev *d, char *err, size_t errlen);
int dev__persist(struct dev *d);
void dev__set_state(struct dev *d, enum proto_state st, const char *error);
void dev__status_fill(const struct dev *d, struct proto_status *s,
		      enum proto_state st);
void dev__publish_status(struct dev *d);
void dev__publish_status_now(struct dev *d);
void dev__status_flush(struct dev *d);
/* Decode the persisted manifest into d->m, checking its signature again. */
int dev__load_manifest(struct dev *d, char *why, size_t n);
void dev__slot_path(const struct dev *d, char slot, const char *name, char *out,
		    size_t n);
char dev__inactive_slot(const struct dev *d);
/* The active slot's image: its SHA-256 into d->image (has_image false
 * when the slot holds none, e.g. a factory device). */
void dev__image_load(struct dev *d);

/* The Last Will (PROTOCOL.md 3): the offline status of the version
 * running now; *json new. dev__will_renew: after the running version
 * changed on a live connection, reconnect with the new will. */
int dev__will(const struct dev *d, char **json, size_t *len);
void dev__will_renew(struct dev *d);

/* Tests only: a power cut at the named point when test_crash_at names
 * it (downloaded, table-removed, verify, verified, installing, switched,
 * installed, committing, rollback). */
void dev__crash_point(const struct dev *d, const char *point);

/* enc.c: encrypted releases (PROTOCOL.md 6.3) */
/* Take the offer's "enc" (or its absence): unwrap the content key with
 * the device's own key. -1 with why: the offer must be refused. */
int dev__enc_accept(struct dev *d, const struct proto_offer *o, char *why,
		    size_t n);
/* After a restart: unwrap the key saved with the checkpoint. */
int dev__enc_resume(struct dev *d, char *why, size_t n);
/* Decrypt and authenticate fragment f (msg: its whole message) in place
 * of its data: f then points at the plaintext. 0, PROTO_EAUTH, ... */
int dev__enc_open(struct dev *d, const void *msg, struct proto_frag *f);
void dev__enc_free(struct dev *d);

/* install.c: the slot writer, verify, install, restart, commit */
/* The inactive slot's payload.part, in d->part_fd: open (kept as it
 * is), close, remove, sync, size, truncate. */
int dev__slot_open(struct dev *d);
void dev__slot_close(struct dev *d);
void dev__slot_remove(struct dev *d);
int dev__slot_sync(struct dev *d);
uint64_t dev__slot_size(struct dev *d);
int dev__slot_truncate(struct dev *d);
/* The block sink (blocks.h) over the slot: ctx is the struct dev. */
int dev__slot_write(void *ctx, uint64_t off, const uint8_t *data, size_t len,
		    char *why, size_t n);
/* poll.c: the gateway's hello (ota/hello) and status poll
 * (ota/dev/<id>/poll), answered with the status after a random delay
 * within the spread they name (PROTOCOL.md 5.6). */
/* true when topic is a hello or poll (handled or dropped as malformed). */
bool dev__poll_message(struct dev *d, const char *topic, const void *payload,
		       size_t len);
/* A uniformly random number in [0, n) (0 when n is 0). */
uint32_t dev__rand_below(struct dev *d, uint32_t n);

/* install.c: verify, install, restart, commit */
void dev__verify_start(struct dev *d);
void dev__resume_after_restart(struct dev *d);
/* At start: point the `active` link at state.json's slot when a cut left
 * them apart (not in phase installing, whose install is done again). */
void dev__reconcile_active(struct dev *d);

#endif
