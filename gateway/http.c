/*
 * The operator's HTTP side: a JSON API, the dashboard, live updates over a
 * WebSocket and Prometheus metrics, served on the gateway's own libuv loop.
 *
 * Library: libwebsockets (Debian 12: 4.1.6, built with LWS_WITH_LIBUV and
 * the libuv event library as a plugin, libwebsockets-evlib-uv). It joins an
 * existing uv loop ("foreign loop": info.foreign_loops with
 * LWS_SERVER_OPTION_LIBUV) and closes its handles on that loop, does HTTP/1.1,
 * WebSocket and TLS with client-certificate checks through OpenSSL, which the
 * gateway links already, and is a maintained C library with one small API.
 * libh2o (Debian 12: 2.2.5, also on libuv) is a fine HTTP/2 server but its
 * library API is not stable (h2o marks libh2o as evolving; Debian ships a
 * 2017 release), it has no WebSocket server of its own beyond an old
 * wslay-based helper, and its TLS setup is the application's job: more code
 * here for what lws gives. So: libwebsockets.
 *
 * Off unless http_listen is set. Without http_tls it listens on a loopback
 * address only (checked at start and by --check), and checks Host and
 * Origin so that another web page cannot drive it (DNS rebinding, CSRF).
 * With http_tls every connection must present a client certificate from
 * http_client_ca (default: the fleet CA) whose CN is one of http_operators.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/http.h"

#define HTTP_CHUNK 16384
#define LIVE_MS 1000

struct gw_http {
	struct gw *gw;
	struct lws_context *ctx;
	struct http_history *hist;
	uv_timer_t live;	 /* pushes the live view to WebSocket clients */
	unsigned char *live_buf; /* LWS_PRE + live_len */
	size_t live_len;
	uint64_t live_gen;
	unsigned nws;
	bool tls, closing;
	unsigned char wbuf[LWS_PRE + HTTP_CHUNK];
};

/* Per HTTP connection: the response being written. */
struct pss {
	char *body; /* owned, or NULL when cbody is an embedded file */
	const unsigned char *cbody;
	size_t len, off;
	char path[192];
	bool post_pending;
	size_t body_seen;
	char operator[80];
};

/* Per WebSocket connection. */
struct wss {
	uint64_t gen;
};

/* ------------------------------------------------------ config */

/* "IP:PORT", "[IPv6]:PORT" or "localhost:PORT"; sa: the socket address. */
static int parse_listen(const char *s, char *ip, size_t ipn, int *port,
			bool *loopback, struct sockaddr_storage *sa,
			socklen_t *salen, char *err, size_t n)
{
	const char *colon = strrchr(s, ':'), *h = s, *he = colon;
	if (!colon) {
		snprintf(err, n, "key 'http_listen': '%s' is not IP:PORT", s);
		return -1;
	}
	if (*s == '[') {
		h = s + 1;
		he = colon > s && colon[-1] == ']' ? colon - 1 : NULL;
	}
	char *end;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (!he || he == h || (size_t)(he - h) >= ipn || !colon[1] || *end ||
	    p == 0 || p > 65535) {
		snprintf(err, n,
			 "key 'http_listen': '%s' is not IP:PORT "
			 "(port 1-65535)",
			 s);
		return -1;
	}
	snprintf(ip, ipn, "%.*s", (int)(he - h), h);
	if (!strcmp(ip, "localhost"))
		snprintf(ip, ipn, "127.0.0.1");
	struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
	memset(sa, 0, sizeof(*sa));
	if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)p);
		*salen = sizeof(*a4);
		*loopback = ((const unsigned char *)&a4->sin_addr)[0] == 127;
	} else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)p);
		*salen = sizeof(*a6);
		*loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
	} else {
		snprintf(err, n, "key 'http_listen': '%s' is not an IP address",
			 ip);
		return -1;
	}
	*port = (int)p;
	return 0;
}

static int readable(const char *key, const char *path, char *err, size_t n)
{
	FILE *f = path[0] ? fopen(path, "r") : NULL;
	if (!f) {
		snprintf(err, n, "key '%s': %s", key,
			 path[0] ? "cannot read the file"
				 : "is required "
				   "with http_tls");
		return -1;
	}
	fclose(f);
	return 0;
}

int gw__http_check(const struct gw_config *c, char *err, size_t n)
{
	char ip[64];
	int port;
	bool lo;
	struct sockaddr_storage sa;
	socklen_t salen;
	if (!c->http_listen[0])
		return 0;
	if (parse_listen(c->http_listen, ip, sizeof(ip), &port, &lo, &sa,
			 &salen, err, n))
		return -1;
	if (!c->http_tls && !lo) {
		snprintf(err, n,
			 "key 'http_listen': %s is not a loopback address; "
			 "without http_tls the HTTP side listens on loopback "
			 "only (set http_tls, http_cert_file and http_key_file "
			 "to serve it to the network)",
			 ip);
		return -1;
	}
	if (!c->http_tls)
		return 0;
	if (readable("http_cert_file", c->http_cert_file, err, n) ||
	    readable("http_key_file", c->http_key_file, err, n) ||
	    readable("http_client_ca",
		     c->http_client_ca[0] ? c->http_client_ca : c->ca_file, err,
		     n))
		return -1;
	if (!c->http_operators[0]) {
		snprintf(err, n,
			 "key 'http_operators': no operator could "
			 "connect (give client certificate CNs)");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------ checks */

static bool cn_allowed(const char *list, const char *cn)
{
	size_t l = strlen(cn);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t k = e ? (size_t)(e - p) : strlen(p);
		while (k && *p == ' ')
			p++, k--;
		while (k && p[k - 1] == ' ')
			k--;
		if (k == l && !memcmp(p, cn, l))
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

/* Who is asking: over TLS the client certificate's CN, which must be an
 * operator's; on loopback "loopback". false: refuse (why in err). */
static bool who(struct gw_http *h, struct lws *wsi, char *op, size_t opn,
		const char **err)
{
	if (!h->tls) {
		snprintf(op, opn, "loopback");
		return true;
	}
	union {
		union lws_tls_cert_info_results r;
		char pad[sizeof(union lws_tls_cert_info_results) + 80];
	} u;
	if (lws_tls_peer_cert_info(wsi, LWS_TLS_CERT_INFO_COMMON_NAME, &u.r,
				   80) != 0) {
		*err = "a client certificate is required";
		return false;
	}
	snprintf(op, opn, "%.*s", u.r.ns.len, u.r.ns.name);
	if (!cn_allowed(h->gw->cfg.http_operators, op)) {
		*err = "this certificate is not an operator's (http_operators)";
		return false;
	}
	return true;
}

static bool loopback_host(const char *host)
{
	char ip[64];
	const char *end = host[0] == '[' ? strchr(host, ']')
					 : strchr(host, ':');
	size_t n = end ? (size_t)(end - host) + (host[0] == '[') : strlen(host);
	snprintf(ip, sizeof(ip), "%.*s", (int)n, host);
	if (!strcmp(ip, "localhost") || !strcmp(ip, "[::1]"))
		return true;
	unsigned char a[4];
	return inet_pton(AF_INET, ip, a) == 1 && a[0] == 127;
}

/* Without TLS: only a page served from a loopback address may talk to it
 * (Host), and a browser's request must come from that same page (Origin). */
static bool same_origin(struct gw_http *h, struct lws *wsi, const char **err)
{
	char host[128] = "", origin[160] = "";
	if (lws_hdr_copy(wsi, host, sizeof(host), WSI_TOKEN_HOST) < 0)
		host[0] = '\0';
	if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) < 0)
		origin[0] = '\0';
	if (!h->tls && host[0] && !loopback_host(host)) {
		*err = "Host is not a loopback address";
		return false;
	}
	if (origin[0]) {
		const char *o = strstr(origin, "://");
		if (!o || strcmp(o + 3, host) != 0) {
			*err = "cross-origin request refused";
			return false;
		}
	}
	return true;
}

/* ------------------------------------------------------ responses */

static int respond(struct lws *wsi, struct pss *p, unsigned status,
		   const char *ctype, char *body, const unsigned char *cbody,
		   size_t len)
{
	unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *q = start,
					   *end = hdr + sizeof(hdr) - 1;
	free(p->body);
	p->body = body;
	p->cbody = body ? (const unsigned char *)body : cbody;
	p->len = len;
	p->off = 0;
	if (lws_add_http_common_headers(wsi, status, ctype, len, &q, end) ||
	    lws_add_http_header_by_name(wsi,
					(const unsigned char *)"cache-control:",
					(const unsigned char *)"no-store", 8,
					&q, end) ||
	    lws_finalize_write_http_header(wsi, start, &q, end))
		return 1;
	lws_callback_on_writable(wsi);
	return 0;
}

static int respond_json(struct lws *wsi, struct pss *p, unsigned status,
			char *body)
{
	if (!body)
		return respond(wsi, p, 500, "application/json", NULL,
			       (const unsigned char *)"{\"error\":\"out of "
						      "memory\"}",
			       25);
	return respond(wsi, p, status, "application/json", body, NULL,
		       strlen(body));
}

static int respond_error(struct lws *wsi, struct pss *p, unsigned status,
			 const char *why)
{
	json_t *o = json_pack("{s:s}", "error", why);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return respond_json(wsi, p, status, s);
}

static int write_more(struct gw_http *h, struct lws *wsi, struct pss *p)
{
	if (!p->cbody)
		return 0;
	size_t n = p->len - p->off;
	if (n > HTTP_CHUNK)
		n = HTTP_CHUNK;
	bool final = p->off + n == p->len;
	memcpy(h->wbuf + LWS_PRE, p->cbody + p->off, n);
	if (lws_write(wsi, h->wbuf + LWS_PRE, n,
		      final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
		return -1;
	p->off += n;
	if (!final) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	free(p->body);
	p->body = NULL;
	p->cbody = NULL;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ------------------------------------------------------ commands */

/*
 * Adapter to the gateway's control code: the one place the HTTP side
 * changes a campaign. It calls the command functions `ota-gateway ctl`
 * reaches over MQTT (gw__ctl_*) and publishes their verdict the same way.
 * Returns the HTTP status; *out is the verdict.
 */
static unsigned http_command(struct gw *gw, const char *product,
			     const char *release, const char *action,
			     const char *op, json_t **out)
{
	struct proto_control c = {0};
	const char *why = NULL, *verdict = "refused";
	char reason[PROTO_REASON_MAX + 1];
	unsigned status = 409;
	struct gw_release *r = NULL;
	bool retry = !strcmp(action, "retry");
	if (!strcmp(action, "pause"))
		c.action = PROTO_ACT_PAUSE;
	else if (!strcmp(action, "resume"))
		c.action = PROTO_ACT_RESUME;
	else if (!strcmp(action, "abort"))
		c.action = PROTO_ACT_ABORT;
	else if (!retry) {
		why = "unknown action (pause, resume, abort, retry)";
		status = 400;
		goto done;
	}
	r = release ? gw__release_find(gw, release)
		    : gw__release_newest(gw, product, NULL);
	if (!r) {
		why = release ? "no such release" : "no such product";
		status = 404;
		goto done;
	}
	if (r->camp.st == GW_CAMP_ABORTED) {
		why = "release was aborted; publish a new release instead";
		goto done;
	}
	if ((c.action == PROTO_ACT_PAUSE && r->camp.st == GW_CAMP_PAUSED) ||
	    (c.action == PROTO_ACT_RESUME && r->camp.st == GW_CAMP_ROLLING)) {
		verdict = "already";
		why = r->camp.st == GW_CAMP_PAUSED ? "already paused"
						   : "not paused";
		status = 200;
		goto done;
	}
	/* The same command functions as MQTT's ota/ctl: one verdict. */
	struct proto_verdict pv;
	gw__verdict_init(&pv, r->m.product, action);
	snprintf(pv.operator_name, sizeof(pv.operator_name), "%s", op);
	if (retry)
		gw__ctl_retry(gw, r->m.product, r->id, &pv);
	else if (c.action == PROTO_ACT_PAUSE)
		gw__ctl_pause(gw, r->m.product, r->id, &pv);
	else if (c.action == PROTO_ACT_RESUME)
		gw__ctl_resume(gw, r->m.product, r->id, &pv);
	else
		gw__ctl_abort(gw, r->m.product, r->id, &pv);
	gw__verdict_send(gw, NULL, &pv);
	bool ok = pv.verdict == PROTO_VERDICT_ACCEPTED ||
		  pv.verdict == PROTO_VERDICT_KNOWN;
	verdict = ok ? "accepted" : "refused";
	status = ok ? 200 : 409;
	if (!ok || pv.reason[0]) {
		snprintf(reason, sizeof(reason), "%s", pv.reason);
		why = reason;
	}
	char detail[160];
	snprintf(detail, sizeof(detail), "%s by %s over http", action, op);
	gw__event(gw, NULL, r->id, "operator_command", detail);
done:
	log_info("http: operator=%s %s %s: %s%s%s", op, action,
		 r	   ? r->id
		 : release ? release
			   : product,
		 verdict, why ? ": " : "", why ? why : "");
	*out = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "verdict", verdict,
			 "action", action, "release", r ? r->id : "", "product",
			 r	   ? r->m.product
			 : product ? product
				   : "",
			 "version", r ? r->m.version : "", "state",
			 r ? gw__campaign_state(r) : "", "reason",
			 why ? why : "");
	return status;
}

/* POST /api/campaigns/<release>/<action>, /api/products/<p>/<action> */
static int route_post(struct gw_http *h, struct lws *wsi, struct pss *p)
{
	char kind[16], id[PROTO_ID_MAX + 1], action[16];
	if (sscanf(p->path, "/api/%15[a-z]/%63[A-Za-z0-9._-]/%15[a-z]", kind,
		   id, action) != 3 ||
	    (strcmp(kind, "campaigns") && strcmp(kind, "products")))
		return respond_error(wsi, p, 404, "no such endpoint");
	bool by_release = !strcmp(kind, "campaigns");
	json_t *v = NULL;
	unsigned st = http_command(h->gw, by_release ? NULL : id,
				   by_release ? id : NULL, action,
				   p->operator, & v);
	char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
	json_decref(v);
	return respond_json(wsi, p, st, s);
}

/* ------------------------------------------------------ GET */

static void arg(struct lws *wsi, const char *name, char *out, size_t n)
{
	char buf[160];
	const char *v = lws_get_urlarg_by_name(wsi, name, buf, sizeof(buf));
	snprintf(out, n, "%s", v ? v : "");
}

static uint32_t arg_u32(struct lws *wsi, const char *name, uint32_t dflt,
			uint32_t max)
{
	char buf[24], *end;
	arg(wsi, name, buf, sizeof(buf));
	unsigned long v = strtoul(buf, &end, 10);
	if (!buf[0] || *end)
		return dflt;
	return v > max ? max : (uint32_t)v;
}

static int route_get(struct gw_http *h, struct lws *wsi, struct pss *p)
{
	struct gw *gw = h->gw;
	const char *path = p->path;
	char rel[PROTO_RELEASE_HEX_LEN + 1];
	if (!strcmp(path, "/metrics")) {
		size_t len = 0;
		char *m = http__metrics(gw, h->nws, &len);
		if (!m)
			return respond_error(wsi, p, 500, "out of memory");
		return respond(wsi, p, 200, "text/plain; version=0.0.4", m,
			       NULL, len);
	}
	if (!strcmp(path, "/api/campaigns"))
		return respond_json(wsi, p, 200, http__campaigns_json(gw));
	if (!strcmp(path, "/api/fleet"))
		return respond_json(wsi, p, 200, http__fleet_json(gw));
	if (!strcmp(path, "/api/devices")) {
		struct http_devq q;
		arg(wsi, "state=", q.state, sizeof(q.state));
		arg(wsi, "release=", q.release, sizeof(q.release));
		arg(wsi, "group=", q.group, sizeof(q.group));
		arg(wsi, "version=", q.version, sizeof(q.version));
		arg(wsi, "name=", q.name, sizeof(q.name));
		q.offset = arg_u32(wsi, "offset=", 0, UINT32_MAX);
		q.limit = arg_u32(wsi, "limit=", 50, HTTP_DEVICES_LIMIT);
		return respond_json(wsi, p, 200, http__devices_json(gw, &q));
	}
	if (!strcmp(path, "/api/events")) {
		arg(wsi, "release=", rel, sizeof(rel));
		return respond_json(wsi, p, 200,
				    http__events_json(h->hist, rel,
						      arg_u32(wsi,
							      "limit=", 100,
							      HTTP_EVENTS_MAX)));
	}
	if (sscanf(path, "/api/campaigns/%16[0-9a-f]/series", rel) == 1 &&
	    strlen(path) == strlen("/api/campaigns//series") + strlen(rel))
		return respond_json(wsi, p, 200,
				    http__series_json(gw, h->hist, rel,
						      arg_u32(wsi, "points=",
							      120, 1000)));
	const struct http_file *f =
	    http__web_find(!strcmp(path, "/") ? "/index.html" : path);
	if (f)
		return respond(wsi, p, 200, f->ctype, NULL, f->data, f->len);
	return respond_error(wsi, p, 404, "not found");
}

static int on_http(struct gw_http *h, struct lws *wsi, struct pss *p,
		   const char *in)
{
	const char *why = NULL;
	snprintf(p->path, sizeof(p->path), "%s", in ? in : "");
	p->post_pending = false;
	p->body_seen = 0;
	bool post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
	bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
	if (!who(h, wsi, p->operator, sizeof(p->operator), &why))
		return respond_error(wsi, p, 403, why);
	if (!same_origin(h, wsi, &why))
		return respond_error(wsi, p, 403, why);
	if (get)
		return route_get(h, wsi, p);
	if (!post)
		return respond_error(wsi, p, 405, "GET or POST only");
	char cl[24] = "";
	if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) >
		0 &&
	    strcmp(cl, "0") != 0) {
		p->post_pending = true; /* answer once the body is in */
		return 0;
	}
	return route_post(h, wsi, p);
}

static int http_cb(struct lws *wsi, enum lws_callback_reasons reason,
		   void *user, void *in, size_t len)
{
	struct pss *p = user;
	struct gw_http *h = lws_context_user(lws_get_context(wsi));
	switch (reason) {
	case LWS_CALLBACK_HTTP:
		return on_http(h, wsi, p, in);
	case LWS_CALLBACK_HTTP_BODY:
		p->body_seen += len; /* commands take no body: ignored */
		return p->body_seen > 4096 ? -1 : 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (!p->post_pending)
			return 0;
		p->post_pending = false;
		return route_post(h, wsi, p);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return write_more(h, wsi, p);
	case LWS_CALLBACK_CLOSED_HTTP:
		if (p) {
			free(p->body);
			p->body = NULL;
			p->cbody = NULL;
		}
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

/* ------------------------------------------------------ live */

static int live_cb(struct lws *wsi, enum lws_callback_reasons reason,
		   void *user, void *in, size_t len)
{
	struct wss *w = user;
	struct gw_http *h = lws_context_user(lws_get_context(wsi));
	const char *why = NULL;
	char op[80];
	(void)in;
	(void)len;
	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		if (!who(h, wsi, op, sizeof(op), &why) ||
		    !same_origin(h, wsi, &why)) {
			log_warnx("http: live updates refused: %s", why);
			return -1;
		}
		return 0;
	case LWS_CALLBACK_ESTABLISHED:
		h->nws++;
		w->gen = 0;
		if (h->live_buf)
			lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (!h->live_buf || w->gen == h->live_gen)
			return 0;
		w->gen = h->live_gen;
		return lws_write(wsi, h->live_buf + LWS_PRE, h->live_len,
				 LWS_WRITE_TEXT) < (int)h->live_len
			   ? -1
			   : 0;
	case LWS_CALLBACK_CLOSED:
		if (h->nws)
			h->nws--;
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols protocols[] = {
    {"http", http_cb, sizeof(struct pss), 0, 0, NULL, 0},
    {"ota-live", live_cb, sizeof(struct wss), 1024, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

/* Once a second, while a dashboard is open: the live view, built once
 * and sent to each. */
static void live_tick(uv_timer_t *t)
{
	struct gw_http *h = t->data;
	if (!h->nws || !h->ctx)
		return;
	char *s = http__live_json(h->gw, h->hist);
	size_t n = s ? strlen(s) : 0;
	unsigned char *b = s ? malloc(LWS_PRE + n) : NULL;
	if (b) {
		memcpy(b + LWS_PRE, s, n);
		free(h->live_buf);
		h->live_buf = b;
		h->live_len = n;
		h->live_gen++;
		lws_callback_on_writable_all_protocol(h->ctx, &protocols[1]);
	}
	free(s);
}

/* ------------------------------------------------------ life */

static void lws_log(int level, const char *line)
{
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (level & LLL_ERR)
		log_warnx("http: lws: %.*s", (int)n, line);
	else
		log_debug("http: lws: %.*s", (int)n, line);
}

static void http_event(struct gw *gw, int64_t ts, const char *event,
		       const char *device, const char *release,
		       const char *detail)
{
	if (gw->http)
		http__history_add(gw->http->hist, ts, event, device, release,
				  detail);
}

static void http_free(struct gw_http *h)
{
	http__history_free(h->hist);
	free(h->live_buf);
	free(h);
}

static void live_closed(uv_handle_t *t) { (void)t; }

void gw__http_close(struct gw *gw)
{
	struct gw_http *h = gw->http;
	if (!h || h->closing)
		return;
	h->closing = true;
	uv_timer_stop(&h->live);
	if (h->ctx)
		lws_context_destroy(h->ctx);
	uv_close((uv_handle_t *)&h->live, live_closed);
}

/* On a foreign loop lws_context_destroy() only starts closing: lws's
 * handles close on the loop, and once the loop has run out (uv_run
 * returned) a second call frees the context (lws' own foreign-loop
 * example does the same). */
void gw__http_free(struct gw *gw)
{
	struct gw_http *h = gw->http;
	if (!h)
		return;
	if (h->ctx)
		lws_context_destroy(h->ctx);
	gw->http = NULL;
	gw->on_event = NULL;
	http_free(h);
}

/* Can ip:port be bound? libwebsockets 4.1 on a foreign loop returns a
 * context whose vhost failed to bind (it logs the error and serves
 * nothing), so the address is tried first and the vhost checked after. */
static int addr_bindable(const struct sockaddr_storage *sa, socklen_t salen,
			 const char *where, char *err, size_t n)
{
	int one = 1, fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	int rc = bind(fd, (const struct sockaddr *)sa, salen);
	int e = errno;
	close(fd);
	if (rc != 0) {
		snprintf(err, n, "cannot serve on %s: %s", where, strerror(e));
		return -1;
	}
	return 0;
}

static int http_start(struct gw_http *h, char *err, size_t n)
{
	const struct gw_config *c = &h->gw->cfg;
	struct lws_context_creation_info info;
	char ip[64];
	int port;
	bool lo;
	struct sockaddr_storage sa;
	socklen_t salen;
	void *loops[1] = {h->gw->loop};
	if (parse_listen(c->http_listen, ip, sizeof(ip), &port, &lo, &sa,
			 &salen, err, n) ||
	    addr_bindable(&sa, salen, c->http_listen, err, n))
		return -1;
	memset(&info, 0, sizeof(info));
	info.port = port;
	info.iface = ip;
	info.protocols = protocols;
	info.gid = info.uid = -1;
	info.user = h;
	info.pcontext = &h->ctx;
	info.foreign_loops = loops;
	info.alpn = "http/1.1";
	info.timeout_secs = 20;
	info.options =
	    LWS_SERVER_OPTION_LIBUV |
	    LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
	    LWS_SERVER_OPTION_VALIDATE_UTF8;
	if (!strchr(ip, ':'))
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	if (c->http_tls) {
		info.options |=
		    LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
		    LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
		info.ssl_cert_filepath = c->http_cert_file;
		info.ssl_private_key_filepath = c->http_key_file;
		info.ssl_ca_filepath = c->http_client_ca[0] ? c->http_client_ca
							    : c->ca_file;
	}
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
	h->ctx = lws_create_context(&info);
	if (h->ctx && !lws_get_vhost_by_name(h->ctx, "default")) {
		/* Taken between the check and the bind: the half-made
		 * context is left (closing it needs the loop to run), and
		 * the gateway does not start. */
		h->ctx = NULL;
	}
	if (!h->ctx) {
		snprintf(err, n,
			 "cannot serve on %s (address in use? see the "
			 "lines above)",
			 c->http_listen);
		return -1;
	}
	log_info("http: serving the API, dashboard and /metrics on %s://%s "
		 "(libwebsockets %s on the gateway's loop%s)",
		 c->http_tls ? "https" : "http", c->http_listen,
		 lws_get_library_version(),
		 c->http_tls ? "; operator client certificates required" : "");
	return 0;
}

int gw__http_init(struct gw *gw, char *err, size_t n)
{
	if (!gw->cfg.http_listen[0])
		return 0;
	struct gw_http *h = calloc(1, sizeof(*h));
	if (!h || !(h->hist = http__history_new())) {
		free(h);
		snprintf(err, n, "out of memory");
		return -1;
	}
	h->gw = gw;
	h->tls = gw->cfg.http_tls;
	if (http__history_load(h->hist, gw->db) != 0)
		log_warnx("http: the event log could not be read: the "
			  "dashboard's charts start empty");
	if (http_start(h, err, n) != 0) {
		http_free(h);
		return -1;
	}
	uv_timer_init(gw->loop, &h->live);
	h->live.data = h;
	uv_timer_start(&h->live, live_tick, LIVE_MS, LIVE_MS);
	gw->http = h;
	gw->on_event = http_event;
	return 0;
}
