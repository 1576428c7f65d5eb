/* The bottom of the device: its clock, its record (state.json), its
 * status messages and the one state setter. Everything above calls down
 * to here; this calls nothing of download.c, install.c or dev.c. */
#include "device-client/dev.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

/* ------------------------------------------------------------ clock */

/* The device's two clocks, each read here only. Monotonic: the loop's
 * time (cached per loop turn, as every timer sees it). Wall: Unix ms,
 * for the stamps in statuses and state.json. */
uint64_t dev__mono_ms(const struct dev *d) { return uv_now(d->loop); }

int64_t dev__wall_ms(const struct dev *d)
{
	(void)d;
	return util_wall_ms();
}

int64_t dev__now_s(const struct dev *d)
{
	int64_t now = dev__wall_ms(d) / 1000 - d->cfg.test_clock_behind_s;
	return now > d->p.time_floor ? now : d->p.time_floor;
}

/* ------------------------------------------------------------ record */

void dev__slot_path(const struct dev *d, char slot, const char *name, char *out,
		    size_t n)
{
	snprintf(out, n, "%s/slot-%c/%s", d->cfg.state_dir, slot, name);
}

char dev__inactive_slot(const struct dev *d)
{
	return d->p.slot == 'a' ? 'b' : 'a';
}

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

int dev__load(struct dev *d, char *err, size_t errlen)
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
		snprintf(err, errlen,
			 "%s is damaged (%s); move it away to "
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

void dev__image_load(struct dev *d)
{
	char path[PATH_MAX], err[128];
	uint64_t size = 0;
	dev__slot_path(d, d->p.slot, "payload", path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	d->has_image = fd >= 0 &&
		       util_sha256_fd(fd, d->image, &size, err, sizeof(err)) ==
			   0 &&
		       size > 0;
	if (fd >= 0)
		close(fd);
}

void dev__status_fill(const struct dev *d, struct proto_status *s,
		      enum proto_state st)
{
	proto_status_init(s);
	snprintf(s->device, sizeof(s->device), "%s", d->cfg.id);
	snprintf(s->product, sizeof(s->product), "%s", d->cfg.product);
	snprintf(s->version, sizeof(s->version), "%s", d->p.version);
	snprintf(s->group, sizeof(s->group), "%s", d->cfg.group);
	s->state = st;
	s->ts = dev__wall_ms(d);
	s->has_image = d->has_image; /* a delta base (PROTOCOL.md 6.4) */
	memcpy(s->image, d->image, sizeof(s->image));
	if (st == PROTO_ST_IDLE || st == PROTO_ST_OFFLINE)
		return;
	snprintf(s->release, sizeof(s->release), "%s", d->p.release);
	/* PROTOCOL.md 5.3: progress counts the table's fragments too. */
	if (st == PROTO_ST_DOWNLOADING && d->p.fragments) {
		uint32_t cum = d->rx.held ? d->rx.cum : d->p.held;
		s->progress = (double)cum /
			      (d->p.fragments + d->p.table_fragments);
	}
	snprintf(s->error, sizeof(s->error), "%s", d->p.error);
	fill_timings(&d->p, &s->timings);
}

/* PROTOCOL.md 5.3: a transient state goes out once it has lasted this
 * long; one the device leaves sooner is told by the next status and by
 * the stage timings of `committed`. */
#define STATUS_HOLD_MS 1000

static bool transient(enum proto_state st)
{
	return st == PROTO_ST_VERIFYING || st == PROTO_ST_INSTALLING ||
	       st == PROTO_ST_RESTARTING;
}

static void hold_cb(uv_timer_t *t)
{
	struct dev *d = t->data;
	if (!d->stopping)
		dev__publish_status_now(d);
}

/* The status of the current state, held while it is transient: on a
 * 20 kbit/s uplink verifying, installing and restarting (~300 bytes
 * each, QoS 1) delayed the `committed` that follows them by ~0.4 s. */
void dev__publish_status(struct dev *d)
{
	if (transient(d->st) && d->mq && mq_connected(d->mq)) {
		if (!uv_is_active((uv_handle_t *)&d->hold_timer))
			uv_timer_start(&d->hold_timer, hold_cb, STATUS_HOLD_MS,
				       0);
		return;
	}
	dev__publish_status_now(d);
}

/* A held status goes out now (the device is about to go down). */
void dev__status_flush(struct dev *d)
{
	if (uv_is_active((uv_handle_t *)&d->hold_timer))
		dev__publish_status_now(d);
}

void dev__publish_status_now(struct dev *d)
{
	struct proto_status s;
	char *json = NULL;
	size_t len;
	uv_timer_stop(&d->hold_timer);
	if (!d->mq || !mq_connected(d->mq))
		return; /* on_connect publishes the current state */
	dev__status_fill(d, &s, d->st);
	if (proto_status_encode(&s, &json, &len) != 0) {
		log_warnx("device=%s cannot encode status", d->cfg.id);
		return;
	}
	mq_publish(d->mq, d->topic_status, json, len, 1, true);
	d->last_status_ms = dev__mono_ms(d);
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
			 proto_state_name(d->st), proto_state_name(st),
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

/* ------------------------------------------------------------ will */

int dev__will(const struct dev *d, char **json, size_t *len)
{
	struct proto_status s;
	dev__status_fill(d, &s, PROTO_ST_OFFLINE);
	return proto_status_encode(&s, json, len);
}

void dev__will_renew(struct dev *d)
{
	char *will = NULL;
	size_t len;
	if (!d->mq)
		return; /* dev_start sets the will from the record */
	if (dev__will(d, &will, &len) != 0 ||
	    mq_renew_will(d->mq, d->topic_status, will, len, 1, true) != 0)
		log_warnx("device=%s cannot renew the last will: it names "
			  "the version of the connect until the next one",
			  d->cfg.id);
	free(will);
}
