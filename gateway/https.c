/* https:// downloads with libcurl's multi-socket interface on the
 * gateway's own libuv loop: no thread for I/O. Redirects are followed
 * (https only), sizes are capped, stalls and slow links time out, and a
 * failed download is retried with backoff. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

#define RETRY_BASE_MS 1000

struct gw_https {
	struct gw *gw;
	CURL *easy;
	char *url;
	char *url_log; /* url without its secrets: for the log */
	int fd;
	uint64_t max, got;
	bool too_big;
	unsigned tries;
	uv_timer_t retry;
	char errbuf[CURL_ERROR_SIZE];
	void (*done)(void *ud, int rc, const char *err);
	void *ud;
	struct gw_https *next; /* gw->downloads */
};

struct curl_sock {
	uv_poll_t poll;
	curl_socket_t fd;
	struct gw *gw;
};

static void check_done(struct gw *gw);
static void finish(struct gw_https *h, int rc, const char *err);

static void sock_closed(uv_handle_t *h) { free(h->data); }

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct curl_sock *cs = h->data;
	int flags = 0, running;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	struct gw *gw = cs->gw;
	curl_multi_socket_action(gw->curlm, cs->fd, flags, &running);
	check_done(gw);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
		     void *socketp)
{
	(void)easy;
	struct gw *gw = userp;
	struct curl_sock *cs = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (cs) {
			uv_poll_stop(&cs->poll);
			uv_close((uv_handle_t *)&cs->poll, sock_closed);
			curl_multi_assign(gw->curlm, s, NULL);
		}
		return 0;
	}
	if (!cs) {
		cs = calloc(1, sizeof(*cs));
		if (!cs || uv_poll_init_socket(gw->loop, &cs->poll, s) != 0) {
			free(cs);
			return -1;
		}
		cs->fd = s;
		cs->gw = gw;
		cs->poll.data = cs;
		curl_multi_assign(gw->curlm, s, cs);
	}
	int ev = 0;
	if (what & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&cs->poll, ev, poll_cb);
	return 0;
}

static void timer_cb(uv_timer_t *t)
{
	struct gw *gw = t->data;
	int running;
	curl_multi_socket_action(gw->curlm, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(gw);
}

static int timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct gw *gw = userp;
	if (timeout_ms < 0)
		uv_timer_stop(&gw->curl_timer);
	else
		uv_timer_start(&gw->curl_timer, timer_cb, (uint64_t)timeout_ms,
			       0);
	return 0;
}

int gw__https_init(struct gw *gw)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	gw->curlm = curl_multi_init();
	if (!gw->curlm) {
		curl_global_cleanup();
		return -1;
	}
	uv_timer_init(gw->loop, &gw->curl_timer);
	gw->curl_timer.data = gw;
	curl_multi_setopt(gw->curlm, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(gw->curlm, CURLMOPT_SOCKETDATA, gw);
	curl_multi_setopt(gw->curlm, CURLMOPT_TIMERFUNCTION, timer_fn);
	curl_multi_setopt(gw->curlm, CURLMOPT_TIMERDATA, gw);
	return 0;
}

void gw__https_close(struct gw *gw)
{
	if (!gw->curlm)
		return;
	/* Downloads still running end now, refused, so nothing is left
	 * half-written in the store and the loop can finish. */
	while (gw->downloads) {
		struct gw_https *h = gw->downloads;
		uv_timer_stop(&h->retry);
		if (h->easy) {
			curl_multi_remove_handle(gw->curlm, h->easy);
			curl_easy_cleanup(h->easy);
			h->easy = NULL;
		}
		finish(h, -1, "the gateway is stopping");
	}
	uv_close((uv_handle_t *)&gw->curl_timer, NULL);
	curl_multi_cleanup(gw->curlm);
	gw->curlm = NULL;
	curl_global_cleanup();
}

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
	struct gw_https *h = ud;
	size_t len = size * n;
	if (h->got + len > h->max) {
		h->too_big = true;
		return 0; /* curl stops: CURLE_WRITE_ERROR */
	}
	if (util_write_all(h->fd, p, len) != 0) {
		snprintf(h->errbuf, sizeof(h->errbuf),
			 "writing to the store: %s", strerror(errno));
		return 0;
	}
	h->got += len;
	return len;
}

static void https_free(struct gw_https *h)
{
	free(h->url_log);
	free(h->url);
	free(h);
}

static void retry_closed(uv_handle_t *t) { https_free(t->data); }

static void finish(struct gw_https *h, int rc, const char *err)
{
	struct gw_https **pp = (struct gw_https **)&h->gw->downloads;
	while (*pp && *pp != h)
		pp = &(*pp)->next;
	if (*pp)
		*pp = h->next;
	h->done(h->ud, rc, err);
	uv_close((uv_handle_t *)&h->retry, retry_closed);
}

static int start(struct gw_https *h)
{
	struct gw *gw = h->gw;
	CURL *e = curl_easy_init();
	if (!e)
		return -1;
	h->easy = e;
	h->got = 0;
	h->too_big = false;
	h->errbuf[0] = '\0';
	if (ftruncate(h->fd, 0) != 0 || lseek(h->fd, 0, SEEK_SET) != 0)
		return -1;
	curl_easy_setopt(e, CURLOPT_URL, h->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, h);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)gw->cfg.fetch_timeout_s);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 512L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->max);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "ota-gateway/1");
	if (gw->cfg.https_ca_file[0])
		curl_easy_setopt(e, CURLOPT_CAINFO, gw->cfg.https_ca_file);
	if (curl_multi_add_handle(gw->curlm, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		h->easy = NULL;
		return -1;
	}
	return 0;
}

static void retry_cb(uv_timer_t *t)
{
	struct gw_https *h = t->data;
	if (start(h) != 0)
		finish(h, -1, "cannot restart the download");
}

/* Errors that another try cannot fix. */
static bool permanent(CURLcode rc, long http, bool too_big)
{
	return too_big || rc == CURLE_FILESIZE_EXCEEDED ||
	       rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT ||
	       rc == CURLE_PEER_FAILED_VERIFICATION ||
	       rc == CURLE_SSL_CACERT_BADFILE ||
	       rc == CURLE_TOO_MANY_REDIRECTS ||
	       (http >= 400 && http < 500 && http != 408 && http != 429);
}

static void check_done(struct gw *gw)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(gw->curlm, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *e = msg->easy_handle;
		CURLcode rc = msg->data.result;
		struct gw_https *h;
		long http = 0;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&h);
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http);
		curl_multi_remove_handle(gw->curlm, e);
		curl_easy_cleanup(e);
		h->easy = NULL;
		if (rc == CURLE_OK) {
			log_info("fetched %s: %llu bytes", h->url_log,
				 (unsigned long long)h->got);
			finish(h, 0, NULL);
			continue;
		}
		char why[CURL_ERROR_SIZE + 64];
		if (h->too_big || rc == CURLE_FILESIZE_EXCEEDED)
			snprintf(why, sizeof(why),
				 "package larger than the configured maximum "
				 "of %llu bytes",
				 (unsigned long long)h->max);
		else
			snprintf(why, sizeof(why), "%s",
				 h->errbuf[0] ? h->errbuf
					      : curl_easy_strerror(rc));
		h->tries++;
		if (permanent(rc, http, h->too_big) ||
		    h->tries > gw->cfg.fetch_retries) {
			log_warnx("fetch %s failed after %u tries: %s",
				  h->url_log, h->tries, why);
			finish(h, -1, why);
			continue;
		}
		uint64_t delay = (uint64_t)RETRY_BASE_MS << (h->tries - 1);
		log_warnx("fetch %s failed (%s); retry %u of %u in %llu ms",
			  h->url_log, why, h->tries, gw->cfg.fetch_retries,
			  (unsigned long long)delay);
		uv_timer_start(&h->retry, retry_cb, delay, 0);
	}
}

struct gw_https *gw__https_get(struct gw *gw, const char *url, int fd,
			       uint64_t max,
			       void (*done)(void *ud, int rc, const char *err),
			       void *ud)
{
	if (!gw->curlm)
		return NULL;
	struct gw_https *h = calloc(1, sizeof(*h));
	size_t n = 2 * strlen(url) + 8; /* "***" may be longer */
	if (!h || !(h->url = strdup(url)) || !(h->url_log = malloc(n))) {
		if (h)
			free(h->url);
		free(h);
		return NULL;
	}
	gw__url_redact(url, h->url_log, n);
	h->gw = gw;
	h->fd = fd;
	h->max = max;
	h->done = done;
	h->ud = ud;
	uv_timer_init(gw->loop, &h->retry);
	h->retry.data = h;
	if (start(h) != 0) {
		uv_close((uv_handle_t *)&h->retry, retry_closed);
		return NULL;
	}
	h->next = gw->downloads;
	gw->downloads = h;
	return h;
}
