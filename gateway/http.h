/*
 * Internal contract of the gateway's HTTP side: http.c (the libwebsockets
 * server, routing, WebSocket, operator commands), http_api.c (what it
 * answers: metrics, JSON views, the event history) and http_web.c (the
 * dashboard's files, embedded at build time). Everything runs on the
 * gateway's loop thread.
 */
#ifndef OTA_GW_HTTP_H
#define OTA_GW_HTTP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/gw.h"

/* A growing text buffer with a maximum size; oom is sticky. */
#define HTTP_TEXT_MAX (64u << 20)
struct http_text {
	char *p;
	size_t len, cap;
	bool oom;
};
void http__textf(struct http_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The event history the dashboard draws (new in http__history_new, owned
 * by the HTTP side): the last HTTP_EVENTS_MAX ledger events, and per
 * release the times devices were offered it and finished. */
#define HTTP_EVENTS_MAX 2000
struct http_history;
struct http_history *http__history_new(void);
void http__history_free(struct http_history *h);
/* Read the whole event log of the ledger (at start, before the loop). */
int http__history_load(struct http_history *h, struct store *db);
void http__history_add(struct http_history *h, int64_t ts, const char *event,
		       const char *device, const char *release,
		       const char *detail);

/* Filters of GET /api/devices ("" = any). */
struct http_devq {
	char state[24], release[PROTO_RELEASE_HEX_LEN + 1];
	char group[PROTO_ID_MAX + 1], version[PROTO_VERSION_MAX + 1];
	char name[PROTO_ID_MAX + 1]; /* part of the device id */
	uint32_t offset, limit;
};
#define HTTP_DEVICES_LIMIT 500

/* Each returns a new NUL-terminated body (caller frees) or NULL when out
 * of memory. */
/* metrics: live_clients is the number of open dashboards (http.c's). */
char *http__metrics(struct gw *gw, unsigned live_clients, size_t *len);
char *http__campaigns_json(struct gw *gw);
char *http__fleet_json(struct gw *gw);
char *http__devices_json(struct gw *gw, const struct http_devq *q);
char *http__events_json(struct http_history *h, const char *release,
			uint32_t limit);
/* Committed / failed / in progress against time, at most `points`. */
char *http__series_json(struct gw *gw, struct http_history *h,
			const char *release, uint32_t points);
/* What the WebSocket pushes: fleet and campaigns, and the newest event
 * sequence number (so the page knows when to fetch more). */
char *http__live_json(struct gw *gw, struct http_history *h);

/* http_web.c: the dashboard's files. */
struct http_file {
	const char *path, *ctype;
	const unsigned char *data;
	size_t len;
};
const struct http_file *http__web_find(const char *path);

#endif
