/* Verdicts: every announcement and control command is answered, on MQTT
 * (PROTOCOL.md section 5.5), in the log and in the event log. */
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

#define GROUPS_SHOWN 16

void gw__verdict_init(struct proto_verdict *v, const char *product,
		      const char *command)
{
	memset(v, 0, sizeof(*v));
	snprintf(v->product, sizeof(v->product), "%s", product);
	snprintf(v->command, sizeof(v->command), "%s", command);
	v->targets = -1;
}

static void publish_to(struct gw *gw, const char *topic, const char *json,
		       size_t len, bool retain, const struct gw_req *rq)
{
	if (mq_publish_corr(gw->mq, topic, json, len, 1, retain,
			    rq ? rq->corr : NULL, rq ? rq->corr_len : 0) != 0)
		log_warnx("verdict not published on %s (broker connection?)",
			  topic);
}

void gw__verdict_send(struct gw *gw, const struct gw_req *rq,
		      struct proto_verdict *v)
{
	char topic[512], detail[PROTO_REASON_MAX + 160];
	char *json = NULL;
	size_t len = 0;
	if (rq) {
		snprintf(v->request, sizeof(v->request), "%s", rq->reply);
		snprintf(v->operator_name, sizeof(v->operator_name), "%s",
			 rq->operator_name);
	}
	v->ts = gw__wall_ms(gw);
	if (!proto_id_valid(v->product))
		snprintf(v->product, sizeof(v->product), "invalid-product");
	log_info("verdict command=%s product=%s verdict=%s%s%s%s%s "
		 "targets=%lld request=%s operator=%s%s reason=\"%s\"",
		 v->command, v->product, proto_verdict_name(v->verdict),
		 v->release[0] ? " release=" : "", v->release,
		 v->version[0] ? " version=" : "", v->version,
		 (long long)v->targets, v->request[0] ? v->request : "-",
		 v->operator_name[0] ? v->operator_name : "-",
		 v->operator_name[0] ? " (claimed)" : "", v->reason);
	/* The broker does not tell the gateway who published: the operator
	 * name is what the request claims (PROTOCOL.md 5.5). */
	snprintf(detail, sizeof(detail), "%s %s%s%s%s: %s", v->command,
		 proto_verdict_name(v->verdict),
		 v->operator_name[0] ? " operator=" : "", v->operator_name,
		 v->operator_name[0] ? " (claimed)" : "",
		 v->reason[0] ? v->reason : v->version);
	gw__event(gw, NULL, v->release, "verdict", detail);
	if (proto_verdict_encode(v, &json, &len) != 0) {
		log_warnx("verdict for %s cannot be encoded", v->product);
		return;
	}
	if (!gw->mq || !gw__leader_sending(gw))
		goto out; /* a standby answers nothing (docs/FAILOVER.md) */
	size_t plen = (size_t)snprintf(topic, sizeof(topic), "ota/result/%s/",
				       v->product);
	/* Only a response topic under the product's result tree: the ACL
	 * lets the gateway write far more than operators may read. */
	if (rq && rq->resp_topic[0] &&
	    strncmp(rq->resp_topic, topic, plen) == 0 &&
	    !strpbrk(rq->resp_topic, "+#"))
		publish_to(gw, rq->resp_topic, json, len, false, rq);
	else if (v->request[0]) {
		snprintf(topic + plen, sizeof(topic) - plen, "req/%s",
			 v->request);
		publish_to(gw, topic, json, len, false, rq);
	}
	if (v->release[0]) {
		snprintf(topic + plen, sizeof(topic) - plen, "rel/%s",
			 v->release);
		publish_to(gw, topic, json, len, true, NULL);
	}
	snprintf(topic + plen, sizeof(topic) - plen, "last");
	publish_to(gw, topic, json, len, true, NULL);
out:
	free(json);
}

/* ------------------------------------------------------------ targets */

struct target_ctx {
	const struct gw *gw;
	const struct gw_release *r;
	struct proto_verdict *v;
	uint32_t nproduct;     /* known devices of the product */
	bool group_seen;       /* one of them reports the group */
	uint32_t listed_known; /* listed ids that are devices of it */
	const char *groups[GROUPS_SHOWN];
	size_t ngroups;
};

static void target_walk(const void *node, VISIT w, void *ud)
{
	if (w != postorder && w != leaf)
		return;
	struct target_ctx *c = ud;
	const struct gw_device *d = *(struct gw_device *const *)node;
	if (strcmp(d->product, c->r->m.product) != 0)
		return;
	c->nproduct++;
	if (c->r->target.group[0] && !strcmp(d->group, c->r->target.group))
		c->group_seen = true;
	bool seen = false;
	for (size_t i = 0; i < c->ngroups && !seen; i++)
		seen = !strcmp(c->groups[i], d->group);
	if (!seen && d->group[0] && c->ngroups < GROUPS_SHOWN)
		c->groups[c->ngroups++] = d->group;
	for (size_t i = 0; c->r->target.devices && i < c->r->target.ndevices;
	     i++)
		if (!strcmp(c->r->target.devices[i], d->id))
			c->listed_known++;
	/* Offline devices are targets too. */
	if (!gw__release_targets(c->gw, c->r, d, GW_TARGET_NOT_FAILED))
		return;
	if (c->v->ndevices < PROTO_VERDICT_DEVICES_MAX)
		snprintf(c->v->devices[c->v->ndevices++],
			 sizeof(c->v->devices[0]), "%s", d->id);
	c->v->targets++;
}

void gw__appendf(char *buf, size_t n, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;
	if (used + 1 >= n)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, n - used, fmt, ap);
	va_end(ap);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool gw__verdict_targets(struct gw *gw, const struct gw_release *r,
			 struct proto_verdict *v)
{
	struct target_ctx c = {.gw = gw, .r = r, .v = v};
	char list[320] = "";
	v->targets = 0;
	v->ndevices = 0;
	twalk_r(gw->devices, target_walk, &c);
	if (v->targets > 0)
		return false;
	if (c.nproduct == 0) {
		snprintf(v->reason, sizeof(v->reason),
			 "targets 0 devices now: no device of product '%s' "
			 "is known yet (each gets it when it reports)",
			 r->m.product);
		return false;
	}
	if (r->target.group[0] && !c.group_seen) {
		qsort(c.groups, c.ngroups, sizeof(c.groups[0]), cmp_str);
		for (size_t i = 0; i < c.ngroups; i++)
			gw__appendf(list, sizeof(list), "%s%s", i ? ", " : "",
				    c.groups[i]);
		snprintf(v->reason, sizeof(v->reason),
			 "targets 0 devices: no device reports group '%s'; "
			 "known groups: %s",
			 r->target.group, c.ngroups ? list : "(none)");
		return true;
	}
	if (r->target.devices && c.listed_known == 0) {
		snprintf(v->reason, sizeof(v->reason),
			 "targets 0 devices: none of the %zu listed devices "
			 "is a known device of product '%s'",
			 r->target.ndevices, r->m.product);
		return true;
	}
	snprintf(v->reason, sizeof(v->reason),
		 "targets 0 devices now: every device it names already runs "
		 "%s %s or newer, or failed it",
		 r->m.product, r->m.version);
	return false;
}
