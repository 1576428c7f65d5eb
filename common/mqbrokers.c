/* Broker lists, "host[:port],host[:port],..." (mq_opts.brokers, and the
 * brokers key of every program): parsed and checked here, used by mq.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mq.h"

/* One "host", "host:port", "[v6]" or "[v6]:port" of len bytes. */
static int broker_parse_one(const char *item, size_t len, int defport,
			    struct mq_broker *b, char *why, size_t n)
{
	const char *host = item, *port = NULL, *end = item + len;
	size_t hlen = len;
	if (len && item[0] == '[') {
		const char *rb = memchr(item, ']', len);
		if (!rb) {
			snprintf(why, n, "no ']' after the IPv6 address");
			return -1;
		}
		host = item + 1;
		hlen = (size_t)(rb - host);
		if (rb + 1 < end && rb[1] != ':') {
			snprintf(why, n, "':PORT' or nothing after ']'");
			return -1;
		}
		port = rb + 1 < end ? rb + 2 : NULL;
	} else {
		const char *c = memchr(item, ':', len);
		if (c && memchr(c + 1, ':', (size_t)(end - c - 1))) {
			snprintf(why, n,
				 "an IPv6 address goes in brackets "
				 "([::1]:8883)");
			return -1;
		}
		if (c) {
			hlen = (size_t)(c - item);
			port = c + 1;
		}
	}
	if (hlen == 0 || hlen > 253) {
		snprintf(why, n, "host name: 1 to 253 characters");
		return -1;
	}
	for (size_t i = 0; i < hlen; i++)
		if (host[i] <= ' ' || host[i] == '/' ||
		    (unsigned char)host[i] > 126) {
			snprintf(why, n,
				 "host name: no spaces, '/' or "
				 "control characters");
			return -1;
		}
	b->port = defport;
	if (port) {
		char num[8];
		size_t pl = (size_t)(end - port);
		char *e;
		if (pl == 0 || pl >= sizeof(num) ||
		    strspn(port, "0123456789") < pl) {
			snprintf(why, n, "port: a number 1 to 65535");
			return -1;
		}
		memcpy(num, port, pl);
		num[pl] = '\0';
		unsigned long v = strtoul(num, &e, 10);
		if (*e || v < 1 || v > 65535) {
			snprintf(why, n, "port: a number 1 to 65535");
			return -1;
		}
		b->port = (int)v;
	}
	b->host = strndup(host, hlen);
	if (!b->host) {
		snprintf(why, n, "out of memory");
		return -1;
	}
	return 0;
}

void mq__brokers_free(struct mq_broker *b, unsigned n)
{
	for (unsigned i = 0; b && i < n; i++)
		free(b[i].host);
	free(b);
}

/* "a:1, b ,[::1]:2" -> *out (new, *n entries). */
int mq__brokers_parse(const char *list, int defport, struct mq_broker **out,
		      unsigned *n, char *err, size_t errlen)
{
	struct mq_broker *b = calloc(MQ_BROKERS_MAX, sizeof(*b));
	unsigned k = 0;
	const char *p = list;
	char why[128];
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (;;) {
		const char *comma = strchr(p, ',');
		const char *e = comma ? comma : p + strlen(p);
		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (k == MQ_BROKERS_MAX) {
			snprintf(err, errlen, "brokers: more than %d",
				 MQ_BROKERS_MAX);
			goto fail;
		}
		if (broker_parse_one(p, (size_t)(e - p), defport, &b[k], why,
				     sizeof(why)) != 0) {
			snprintf(err, errlen, "brokers: item %u '%.*s': %s",
				 k + 1, (int)(e - p), p, why);
			goto fail;
		}
		k++;
		if (!comma)
			break;
		p = comma + 1;
	}
	*out = b;
	*n = k;
	return 0;
fail:
	mq__brokers_free(b, k);
	return -1;
}

int mq_brokers_check(const char *list, unsigned *n, char *err, size_t errlen)
{
	struct mq_broker *b;
	unsigned k;
	if (mq__brokers_parse(list, 8883, &b, &k, err, errlen) != 0)
		return -1;
	mq__brokers_free(b, k);
	if (n)
		*n = k;
	return 0;
}

int mq_brokers_get(const char *list, int defport, unsigned i, char *host,
		   size_t hostcap, int *port, char *err, size_t errlen)
{
	struct mq_broker *b;
	unsigned k;
	int rc = -1;
	if (mq__brokers_parse(list, defport, &b, &k, err, errlen) != 0)
		return -1;
	if (i < k &&
	    (size_t)snprintf(host, hostcap, "%s", b[i].host) < hostcap) {
		*port = b[i].port;
		rc = 0;
	} else {
		snprintf(err, errlen, "no broker %u", i + 1);
	}
	mq__brokers_free(b, k);
	return rc;
}
