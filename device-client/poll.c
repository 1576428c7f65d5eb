/* The gateway's hello and status poll (PROTOCOL.md 5.6): a device
 * publishes its status on every (re)connect, and again when the gateway
 * asks, so that the gateway learns every device's state on any broker,
 * without relying on retained messages reaching a wildcard subscription
 * (RabbitMQ delivers them only to exact-topic subscriptions, and keeps
 * them per cluster node). */
#include <string.h>

#include "common/log.h"
#include "device-client/dev.h"

uint32_t dev__rand_below(struct dev *d, uint32_t n)
{
	if (n == 0)
		return 0;
	if (d->jitter_rng == 0) {
		d->jitter_rng = uv_hrtime() ^ 0x9e3779b97f4a7c15ull;
		for (const char *p = d->cfg.id; *p; p++)
			d->jitter_rng = (d->jitter_rng ^ (uint8_t)*p) *
					0x100000001b3ull;
		d->jitter_rng |= 1;
	}
	d->jitter_rng ^= d->jitter_rng << 13;
	d->jitter_rng ^= d->jitter_rng >> 7;
	d->jitter_rng ^= d->jitter_rng << 17;
	return (uint32_t)(d->jitter_rng % n);
}

static void poll_timer_cb(uv_timer_t *t)
{
	struct dev *d = t->data;
	if (!d->stopping)
		dev__publish_status_now(d);
}

bool dev__poll_message(struct dev *d, const char *topic, const void *payload,
		       size_t len)
{
	char mine[PROTO_ID_MAX + 24];
	struct proto_poll p;
	struct proto_err perr = {{0}};
	snprintf(mine, sizeof(mine), PROTO_POLL_TOPIC_FMT, d->cfg.id);
	if (strcmp(topic, mine) != 0 && strcmp(topic, PROTO_HELLO_TOPIC) != 0)
		return false;
	if (proto_poll_decode(payload, len, &p, &perr) != 0) {
		d->stats.msgs_bad++;
		log_warnx("device=%s malformed poll on %s dropped: %s",
			  d->cfg.id, topic, perr.text);
		return true;
	}
	/* One answer pending at a time: an earlier one goes first. */
	if (d->stopping || uv_is_active((uv_handle_t *)&d->poll_timer))
		return true;
	uint32_t delay = dev__rand_below(d, p.spread_ms + 1);
	log_debug("device=%s %s: status again in %u ms", d->cfg.id, topic,
		  delay);
	uv_timer_start(&d->poll_timer, poll_timer_cb, delay, 0);
	return true;
}
