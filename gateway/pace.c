/* Pacing and discovery (PROTOCOL.md 5.6 and 8): the gateway keeps a fleet
 * within what its broker takes, and learns every device's state on any
 * MQTT 3.1.1 broker.
 *  - Offers start at most offer_rate a second: each accepted offer brings
 *    a status and an ack back at once, and a fleet offered in the same
 *    second would overrun the broker's queue towards the gateway.
 *  - Offers carry restart_spread_ms, so that the devices of a campaign
 *    restart (and reconnect) over a window at restart_rate a second, not
 *    in the same second.
 *  - On every connect the gateway says hello on ota/hello: every device
 *    publishes its status again, spread over a window. A broker that
 *    delivers retained statuses only to exact-topic subscriptions
 *    (RabbitMQ), or keeps them per cluster node, still lets the gateway
 *    learn the whole fleet. A silent device is polled on its own exact
 *    topic, ota/dev/<id>/poll. */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "gateway/gw.h"

/* Held-back offers are looked for at most this often (a walk of the
 * whole device table). */
#define PACE_WALK_MS 100

bool gw__pace_offer(struct gw *gw)
{
	if (!gw->cfg.offer_rate)
		return true;
	if (gw->offer_tokens >= 1.0) {
		gw->offer_tokens -= 1.0;
		return true;
	}
	if (!gw->offers_waiting)
		gw->stats.offers_paced++;
	gw->offers_waiting = true;
	return false;
}

/* Re-offers back off: a fleet too busy to answer (a simulator's event
 * loop, a broker's full queues) is not sent the same offers again every
 * offer_retry_ms, each one more message to queue and one more signature
 * for the device to check. */
#define REOFFER_MAX_MS 60000

bool gw__pace_reoffer(struct gw *gw, uint32_t offers, uint64_t since_ms)
{
	unsigned shift = offers > 1 ? offers - 1 : 0;
	uint64_t wait = (uint64_t)gw->cfg.offer_retry_ms
			<< (shift < 8 ? shift : 8);
	if (wait > REOFFER_MAX_MS)
		wait = gw->cfg.offer_retry_ms > REOFFER_MAX_MS
			   ? gw->cfg.offer_retry_ms
			   : REOFFER_MAX_MS;
	if (since_ms < wait)
		return false;
	if (!gw->cfg.offer_rate)
		return true;
	if (gw->offer_tokens < 1.0)
		return false; /* the next tick refills */
	gw->offer_tokens -= 1.0;
	return true;
}

void gw__pace_tick(struct gw *gw, uint64_t now)
{
	if (!gw->cfg.offer_rate)
		return;
	/* A burst of at most a fifth of a second's offers. */
	double cap = gw->cfg.offer_rate / 5.0 < 1.0 ? 1.0
						    : gw->cfg.offer_rate / 5.0;
	if (gw->pace_ms && now > gw->pace_ms) {
		gw->offer_tokens += gw->cfg.offer_rate *
				    (double)(now - gw->pace_ms) / 1000.0;
		if (gw->offer_tokens > cap)
			gw->offer_tokens = cap;
	}
	gw->pace_ms = now;
	if (!gw->offers_waiting || gw->offer_tokens < 1.0 ||
	    now - gw->offers_walk_ms < PACE_WALK_MS)
		return;
	gw->offers_walk_ms = now;
	gw->offers_waiting = false;
	/* The walk holds back again what it still cannot offer. */
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		r->offers_held = false;
		for (struct gw_release *v = r->variants; v; v = v->next)
			v->offers_held = false;
	}
	gw__offers_due(gw);
}

uint32_t gw__restart_spread_ms(const struct gw *gw, const struct gw_release *r)
{
	if (r->target.restart_spread_set) /* the campaign's own */
		return r->target.restart_spread_s * 1000;
	if (!gw->cfg.restart_rate)
		return 0;
	/* The devices that may restart together: the campaign's
   * concurrency, or every device the gateway knows. */
	uint64_t n = gw->ndevices;
	if (r->target.concurrency && r->target.concurrency < n)
		n = r->target.concurrency;
	uint64_t ms = n * 1000 / gw->cfg.restart_rate;
	return ms > PROTO_SPREAD_MS_MAX ? PROTO_SPREAD_MS_MAX : (uint32_t)ms;
}

static int publish_poll(struct gw *gw, const char *topic, uint32_t spread_ms)
{
	struct proto_poll p = {.spread_ms = spread_ms};
	char *json = NULL;
	size_t len;
	if (proto_poll_encode(&p, &json, &len) != 0)
		return -1;
	int rc = mq_publish(gw->mq, topic, json, len, 1, false);
	free(json);
	return rc;
}

void gw__hello(struct gw *gw)
{
	/* At least hello_spread_s; more for a fleet the restart rate says
   * cannot report in that time. */
	uint64_t ms = (uint64_t)gw->cfg.hello_spread_s * 1000;
	if (gw->cfg.restart_rate &&
	    gw->ndevices * 1000 / gw->cfg.restart_rate > ms)
		ms = gw->ndevices * 1000 / gw->cfg.restart_rate;
	if (ms > PROTO_SPREAD_MS_MAX)
		ms = PROTO_SPREAD_MS_MAX;
	if (publish_poll(gw, PROTO_HELLO_TOPIC, (uint32_t)ms) != 0) {
		log_warnx("hello: cannot publish on %s", PROTO_HELLO_TOPIC);
		return;
	}
	gw->stats.hellos++;
	log_info("hello sent: every device reports its status within %llu ms "
		 "(devices known=%zu)",
		 (unsigned long long)ms, gw->ndevices);
}

int gw__poll_device(struct gw *gw, const char *id)
{
	char topic[PROTO_ID_MAX + 24];
	snprintf(topic, sizeof(topic), PROTO_POLL_TOPIC_FMT, id);
	return publish_poll(gw, topic, 0);
}
