#include "common/mq.h"

#include <errno.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"

#define MQ_BACKOFF_MIN_MS 250
#define MQ_BACKOFF_MAX_MS 8000
#define MQ_MISC_MS 500
#define MQ_CLOSE_WAIT_MS 2000 /* mq_close: longest wait for PUBACKs */

struct mq_poll {
	uv_poll_t h;
	struct mq *mq; /* NULL once detached */
};

struct mq {
	uv_loop_t *loop;
	struct mosquitto *mosq; /* made for brokers[mosq_idx] */
	struct mq_cbs cbs;
	void *ud;
	struct mq_broker *brokers;
	unsigned nbrokers;
	unsigned cur; /* the broker of the current or next attempt */
	int mosq_idx; /* the broker mosq was made for */
	bool was_up;  /* the last attempt on cur had connected once */
	char *host;   /* brokers[cur] */
	int port;
	char name[280]; /* "host:port" of cur, for mq_broker() */
	int keepalive;
	char *client_id;
	/* What mq__mosq_new needs again when it moves to another broker. */
	char *certfile, *keyfile, *will_topic, *session_file;
	void *will_payload;
	size_t will_len;
	int will_qos;
	bool will_retain, shared_tls;
	struct mq_poll *poll; /* the poll on the current socket, or NULL */
	uv_timer_t misc;      /* keepalive pings */
	uv_timer_t retry;     /* reconnect backoff */
	uint64_t rng;	      /* xorshift64: the backoff's jitter */
	bool connected;
	bool closing;
	bool renewing;	 /* disconnected on purpose to renew the will */
	bool renew_due;	 /* renew the will once nothing is in flight */
	bool close_due;	 /* mq_close: DISCONNECT once nothing is in flight */
	unsigned unsent; /* publishes not yet written (QoS 0) or acked (1) */
	unsigned fails;	 /* attempts in a row that ended before CONNACK */
	unsigned attempts, last_attempts; /* see mq_connect_attempts */
	uint64_t attempt_ms; /* when the current connection attempt began */
	int pending_closes;
	bool v5;
	char *cafile;
	char tls_err[256]; /* why the last TLS handshake failed, or "" */
	mq_on_message5_fn on_message5;
	unsigned long long bytes_out;
	void (*done)(void *ud);
};

static void mq__schedule_reconnect(struct mq *mq);
static void mq__update_poll(struct mq *mq);
static int mq__renew_now(struct mq *mq);
static void mq__finish_close(struct mq *mq);
static void mq__disconnect_now(struct mq *mq);
static void close_wait_cb(uv_timer_t *t);

static void mq__set_cur(struct mq *mq, unsigned i)
{
	mq->cur = i;
	mq->host = mq->brokers[i].host;
	mq->port = mq->brokers[i].port;
	snprintf(mq->name, sizeof(mq->name),
		 strchr(mq->host, ':') ? "[%s]:%d" : "%s:%d", mq->host,
		 mq->port);
}

/* After a failed attempt: the next broker of the list, if there is one
 * (a lost connection is first tried again where it was). */
static void mq__next_broker(struct mq *mq)
{
	if (mq->nbrokers < 2 || mq->closing)
		return;
	mq__set_cur(mq, (mq->cur + 1) % mq->nbrokers);
	log_info("mqtt id=%s: trying broker %s next", mq->client_id, mq->name);
}

/* xorshift64: the jitter only has to differ between clients. */
static uint64_t mq__rand(struct mq *mq)
{
	uint64_t x = mq->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	mq->rng = x;
	return x;
}

static void poll_close_cb(uv_handle_t *h) { free(h->data); }

static void mq__detach_poll(struct mq *mq)
{
	if (!mq->poll)
		return;
	mq->poll->mq = NULL;
	uv_close((uv_handle_t *)&mq->poll->h, poll_close_cb);
	mq->poll = NULL;
}

/* Say why connecting fails (TLS, refused, unreachable), without
 * flooding: the 1st, 2nd, 4th, 8th... failure in a row. A failed TLS
 * handshake is said as what it is, with the file to look at. */
static void mq__connect_failed(struct mq *mq, const char *why)
{
	char tls[400];
	if (mq->tls_err[0]) {
		snprintf(tls, sizeof(tls), "TLS handshake failed: %s",
			 mq->tls_err);
		why = tls;
	}
	mq->fails++;
	if ((mq->fails & (mq->fails - 1)) == 0)
		log_warnx("mqtt %s:%d id=%s: connection failed: %s (%u in a "
			  "row; retrying)",
			  mq->host, mq->port, mq->client_id, why, mq->fails);
	mq->tls_err[0] = '\0';
	mq__next_broker(mq);
}

static void retry_cb(uv_timer_t *t);

static void mq__lost(struct mq *mq, const char *why)
{
	bool was = mq->connected;
	/* A clean session: the next connect carries the will set last. */
	mq->unsent = 0;
	mq->renew_due = false;
	if (mq->renewing && !mq->closing) {
		/* Our own clean DISCONNECT (mq_renew_will): connect again at
		 * once with the new will, without a word to the owner. */
		mq->renewing = false;
		mq->connected = false;
		mq__detach_poll(mq);
		log_info("mqtt id=%s: reconnecting with a new last will",
			 mq->client_id);
		uv_timer_stop(&mq->retry);
		uv_timer_start(&mq->retry, retry_cb, 0, 0);
		return;
	}
	if (!was && !mq->closing)
		mq__connect_failed(mq, why);
	mq->connected = false;
	mq__detach_poll(mq);
	if (mq->closing) {
		mq__finish_close(mq);
		return;
	}
	if (mq->cbs.on_disconnect && was)
		mq->cbs.on_disconnect(mq, mq->ud, why);
	mq__schedule_reconnect(mq);
}

/* A QoS 0 publish written, or a QoS 1 one acknowledged. */
static void on_publish_cb(struct mosquitto *m, void *ud, int mid)
{
	(void)m;
	(void)mid;
	struct mq *mq = ud;
	if (mq->unsent > 0)
		mq->unsent--;
	if (mq->unsent == 0 && mq->close_due) {
		/* Not from inside libmosquitto's callback, where DISCONNECT
		 * would only be queued until the next writable event (on a
		 * busy loop after the flush timeout: closed without it, and
		 * the broker sends the will): at once, from the loop. */
		mq->close_due = false;
		uv_timer_stop(&mq->retry);
		uv_timer_start(&mq->retry, close_wait_cb, 0, 0);
	} else if (mq->unsent == 0 && mq->renew_due)
		mq__renew_now(mq);
}

static void on_connect_cb(struct mosquitto *m, void *ud, int rc)
{
	struct mq *mq = ud;
	if (rc != 0) {
		log_warnx("mqtt connect refused by %s:%d: %s", mq->host,
			  mq->port, mosquitto_connack_string(rc));
		return; /* the broker closes; on_disconnect follows */
	}
	mq->connected = true;
	mq->fails = 0;
	mq->last_attempts = mq->attempts;
	mq->attempts = 0;
	SSL *ssl = mosquitto_ssl_get(m);
	log_info("mqtt connected broker=%s id=%s attempts=%u tls=%s", mq->name,
		 mq->client_id, mq->last_attempts,
		 !ssl			   ? "none"
		 : SSL_session_reused(ssl) ? "resumed"
					   : "full");
	if (mq->cbs.on_connect)
		mq->cbs.on_connect(mq, mq->ud);
}

static void on_disconnect_cb(struct mosquitto *m, void *ud, int rc)
{
	(void)m;
	struct mq *mq = ud;
	/* The library has closed the socket already: drop our poll on it.
	 * libmosquitto 2.0.11 calls its own keepalive timeout "Unknown
	 * error.": say what it is, it is how a silent link shows. */
	mq__lost(mq, rc == 0			? "disconnected"
		     : rc == MOSQ_ERR_KEEPALIVE ? "keepalive timeout (no "
						  "answer to a ping)"
						: mosquitto_strerror(rc));
}

/* libmosquitto's own errors (TLS verification, for one) say what is wrong. */
static void on_log_cb(struct mosquitto *m, void *ud, int level, const char *str)
{
	struct mq *mq = ud;
	if (!(level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING)))
		return;
	/* TLS handshake failures: kept, said once per failed connection
	 * (rate limited) by mq__connect_failed, naming the file. The host
	 * is checked by libmosquitto ("host name verification failed") or,
	 * with shared_tls, by OpenSSL (a verify result of its own). */
	SSL *ssl = mosquitto_ssl_get(m);
	if (strstr(str, "host name verification failed") ||
	    (strstr(str, "certificate verify failed") && ssl &&
	     SSL_get_verify_result(ssl) == X509_V_ERR_HOSTNAME_MISMATCH)) {
		snprintf(mq->tls_err, sizeof(mq->tls_err),
			 "the broker's certificate does not name host '%s' "
			 "(connect by a name in its subjectAltName)",
			 mq->host);
		return;
	}
	if (strstr(str, "certificate verify failed") ||
	    strstr(str, "OpenSSL Error")) {
		if (!mq->tls_err[0])
			snprintf(mq->tls_err, sizeof(mq->tls_err),
				 "ca_file %s: %s",
				 mq->cafile ? mq->cafile : "?",
				 strstr(str, "certificate verify failed")
				     ? "does not verify the broker's "
				       "certificate (another CA?)"
				     : str);
		return;
	}
	log_warnx("mqtt id=%s: %s", mq->client_id, str);
}

static void on_message_cb(struct mosquitto *m, void *ud,
			  const struct mosquitto_message *msg)
{
	(void)m;
	struct mq *mq = ud;
	if (mq->v5 && mq->on_message5)
		return; /* on_message5_cb has it */
	if (mq->cbs.on_message && msg->payloadlen >= 0)
		mq->cbs.on_message(mq, mq->ud, msg->topic, msg->payload,
				   (size_t)msg->payloadlen);
}

static void on_message5_cb(struct mosquitto *m, void *ud,
			   const struct mosquitto_message *msg,
			   const mosquitto_property *props)
{
	(void)m;
	struct mq *mq = ud;
	char *rt = NULL;
	void *corr = NULL;
	uint16_t clen = 0;
	if (!mq->on_message5 || msg->payloadlen < 0)
		return;
	mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &rt,
				       false);
	mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr,
				       &clen, false);
	mq->on_message5(mq, mq->ud, msg->topic, msg->payload,
			(size_t)msg->payloadlen, rt, corr, clen);
	free(rt);
	free(corr);
}

/* Why a connect failed: the socket's own error (libuv reports any
 * POLLERR as "bad file descriptor"), else what the poll said. */
static const char *mq__connect_error(struct mq *mq, int status)
{
	int err = 0;
	socklen_t len = sizeof(err);
	int fd = mosquitto_socket(mq->mosq);
	if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
	    err)
		return strerror(err);
	return status < 0 ? uv_strerror(status)
			  : "refused or closed before CONNACK";
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct mq_poll *p = h->data;
	struct mq *mq = p->mq;
	if (!mq)
		return;
	int rc = MOSQ_ERR_SUCCESS;
	if (!mq->connected && (status < 0 || (events & UV_DISCONNECT))) {
		/* The connect itself failed (refused, reset during TLS):
		 * libmosquitto would keep retrying the handshake on a dead
		 * socket, so drop it and reconnect with backoff. */
		mq__lost(mq, mq__connect_error(mq, status));
		return;
	}
	if (status < 0) {
		/* Let the library find the error on a read. */
		events |= UV_READABLE;
	}
	/* Writable before CONNACK can be the TLS handshake's turn to write:
	 * the first SSL_connect met a TCP connect still under way (any link
	 * but loopback, or a SYN the broker's full accept queue dropped).
	 * mosquitto_loop_write does nothing while the handshake is on (the
	 * library's own loop calls its TLS step there); mosquitto_loop_read
	 * takes the handshake on. Without it the attempt hung until its
	 * timeout, and every attempt on a real link the same way. */
	if (!mq->connected && (events & UV_WRITABLE))
		events |= UV_READABLE;
	if (events & UV_READABLE)
		rc = mosquitto_loop_read(mq->mosq, 1);
	/* A callback may have detached this poll (disconnect). */
	if (p->mq && rc == MOSQ_ERR_SUCCESS && (events & UV_WRITABLE))
		rc = mosquitto_loop_write(mq->mosq, 1);
	if (!p->mq)
		return; /* on_disconnect ran: the poll is gone already */
	if (rc != MOSQ_ERR_SUCCESS) {
		/* Not every failure reaches on_disconnect: a refused or failed
		 * asynchronous connect (TCP or TLS) only returns an error and
		 * leaves the socket open. Drop the poll and reconnect; the
		 * reconnect closes the old socket. */
		mq__lost(mq, rc == MOSQ_ERR_ERRNO ? strerror(errno)
						  : mosquitto_strerror(rc));
		return;
	}
	mq__update_poll(mq);
}

/* mosquitto_want_write, but during the TLS handshake only when OpenSSL
 * waits to write: libmosquitto keeps its want_write from an SSL_connect
 * that could not write until its next write of a packet, and polling for
 * writable meanwhile spins the loop. */
static bool mq__want_write(struct mq *mq)
{
	if (!mq->connected) {
		SSL *ssl = mosquitto_ssl_get(mq->mosq);
		if (ssl && !SSL_is_init_finished(ssl))
			return SSL_want_write(ssl);
	}
	return mosquitto_want_write(mq->mosq);
}

static void mq__update_poll(struct mq *mq)
{
	int fd = mosquitto_socket(mq->mosq);
	if (fd < 0) {
		if (mq->poll)
			mq__lost(mq, "socket closed");
		return;
	}
	if (!mq->poll) {
		struct mq_poll *p = calloc(1, sizeof(*p));
		if (!p) {
			log_warnx("mqtt: out of memory for poll handle");
			return;
		}
		if (uv_poll_init_socket(mq->loop, &p->h, fd) != 0) {
			free(p);
			log_warnx("mqtt: cannot poll socket %d", fd);
			return;
		}
		p->h.data = p;
		p->mq = mq;
		mq->poll = p;
	}
	int ev = UV_READABLE | UV_DISCONNECT;
	if (mq__want_write(mq))
		ev |= UV_WRITABLE;
	uv_poll_start(&mq->poll->h, ev, poll_cb);
}

#define MQ_CONNECT_TIMEOUT_MS 15000

/* How long an attempt may wait for its CONNACK: 15 s, doubled for each
 * attempt in a row that failed, up to 60 s. A broker too busy to finish
 * handshakes in 15 s is not helped by clients that give up and start a
 * new handshake (its work on the old one lost): a fleet would retry its
 * way into congestion collapse. */
static uint64_t mq__connect_timeout_ms(const struct mq *mq)
{
	unsigned shift = mq->fails < 2 ? mq->fails : 2;
	return (uint64_t)MQ_CONNECT_TIMEOUT_MS << shift;
}

/* An attempt the broker's host holds may wait up to this long in all. */
#define MQ_CONNECT_HELD_MAX_MS 120000

/* Does the broker's host hold this attempt: TCP established and all we
 * sent acknowledged by its kernel? Then the connection sits in the
 * broker's accept queue or in its loop, behind other handshakes, and will
 * be served in turn; leaving throws that place away and the broker's work
 * on it with it. An attempt that is not held (SYN unanswered; or data
 * unacknowledged: a full accept queue dropped it) is in no queue. */
static bool mq__attempt_held(struct mq *mq)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int fd = mosquitto_socket(mq->mosq);
	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return false;
	return ti.tcpi_state == TCP_ESTABLISHED && ti.tcpi_unacked == 0;
}

/* Before CONNACK: an attempt fails once it has waited its timeout and is
 * not held, or has waited MQ_CONNECT_HELD_MAX_MS. */
static void mq__check_attempt(struct mq *mq)
{
	uint64_t waited = uv_now(mq->loop) - mq->attempt_ms;
	uint64_t limit = mq__connect_timeout_ms(mq);
	char why[80];
	if (waited <= limit)
		return;
	if (waited <= MQ_CONNECT_HELD_MAX_MS && mq__attempt_held(mq))
		return;
	if (waited > MQ_CONNECT_HELD_MAX_MS)
		snprintf(why, sizeof(why),
			 "no CONNACK within %d s (held by the broker's host)",
			 MQ_CONNECT_HELD_MAX_MS / 1000);
	else
		snprintf(why, sizeof(why), "no CONNACK within %llu s",
			 (unsigned long long)limit / 1000);
	mq__lost(mq, why);
}

static void misc_cb(uv_timer_t *t)
{
	struct mq *mq = t->data;
	if (mosquitto_socket(mq->mosq) < 0)
		return;
	if (!mq->connected) {
		/* Not libmosquitto's keepalive check yet: it counts from the
		 * connect and would end a held attempt after keepalive s. */
		if (mq->poll && !mq->closing)
			mq__check_attempt(mq);
		if (mq->poll)
			mq__update_poll(mq);
		return;
	}
	mosquitto_loop_misc(mq->mosq);
	if (mq->poll)
		mq__update_poll(mq);
}

static int mq__mosq_new(struct mq *mq, char *err, size_t errlen);

static void mq__try_connect(struct mq *mq)
{
	char err[512];
	mq->attempt_ms = uv_now(mq->loop);
	mq->attempts++;
	/* Another broker: a client made for it (its TLS context names its
	 * host). The old one goes, with whatever socket it still had. */
	if (mq->mosq_idx != (int)mq->cur &&
	    mq__mosq_new(mq, err, sizeof(err)) != 0) {
		mq__connect_failed(mq, err);
		mq__schedule_reconnect(mq);
		return;
	}
	int rc = mosquitto_connect_async(mq->mosq, mq->host, mq->port,
					 mq->keepalive);
	if (rc != MOSQ_ERR_SUCCESS) {
		mq__connect_failed(mq, rc == MOSQ_ERR_ERRNO
					   ? strerror(errno)
					   : mosquitto_strerror(rc));
		mq__schedule_reconnect(mq);
		return;
	}
	mq__update_poll(mq);
}

static void retry_cb(uv_timer_t *t)
{
	struct mq *mq = t->data;
	if (!mq->closing)
		mq__try_connect(mq);
}

/* Exponential backoff with full jitter: a random delay in [0, min(cap,
 * base * 2^fails)]. A fleet that lost its broker (or restarted at once)
 * spreads its attempts over the whole interval instead of returning in
 * step, and each failure in a row doubles the interval. */
static void mq__schedule_reconnect(struct mq *mq)
{
	if (mq->closing || uv_is_active((uv_handle_t *)&mq->retry))
		return;
	unsigned shift = mq->fails < 8 ? mq->fails : 8;
	uint64_t cap = (uint64_t)MQ_BACKOFF_MIN_MS << shift;
	if (cap > MQ_BACKOFF_MAX_MS)
		cap = MQ_BACKOFF_MAX_MS;
	uv_timer_start(&mq->retry, retry_cb, mq__rand(mq) % (cap + 1), 0);
}

/* ------------------------------------------------------------- client */

/* The libmosquitto client for brokers[cur]: made at mq_new, and again
 * whenever the connection moves to another broker (with shared_tls the
 * TLS context names the broker's host). On failure the old one stays. */
static int mq__mosq_new(struct mq *mq, char *err, size_t errlen)
{
	struct mosquitto *m = mosquitto_new(mq->client_id, true, mq);
	int rc;
	if (!m) {
		snprintf(err, errlen, "mosquitto_new: %s", strerror(errno));
		return -1;
	}
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION,
			     mq->v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
	mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
	if (mq->shared_tls) {
		struct mq_opts o = {.host = mq->host,
				    .cafile = mq->cafile,
				    .certfile = mq->certfile,
				    .keyfile = mq->keyfile,
				    .session_file = mq->session_file};
		/* libmosquitto takes its own reference. */
		SSL_CTX *ctx = mq__tls_ctx_get(&o, err, errlen);
		if (!ctx)
			goto fail;
		/* Without defaults: libmosquitto uses the context as it is,
		 * and loads nothing itself. */
		rc = mosquitto_int_option(m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
		if (rc == MOSQ_ERR_SUCCESS)
			rc = mosquitto_void_option(m, MOSQ_OPT_SSL_CTX, ctx);
		if (rc != MOSQ_ERR_SUCCESS) {
			snprintf(err, errlen, "TLS context: %s",
				 mosquitto_strerror(rc));
			goto fail;
		}
	} else {
		rc = mosquitto_tls_set(m, mq->cafile, NULL, mq->certfile,
				       mq->keyfile, NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			snprintf(err, errlen,
				 "TLS setup (ca=%s cert=%s key=%s): %s",
				 mq->cafile, mq->certfile, mq->keyfile,
				 mosquitto_strerror(rc));
			goto fail;
		}
		/* Verify the broker's certificate and host name; TLS 1.2 at
		 * least. */
		rc = mosquitto_tls_opts_set(m, 1, "tlsv1.2", NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			snprintf(err, errlen, "TLS options: %s",
				 mosquitto_strerror(rc));
			goto fail;
		}
	}
	if (mq->will_topic) {
		rc = mosquitto_will_set(m, mq->will_topic, (int)mq->will_len,
					mq->will_payload, mq->will_qos,
					mq->will_retain);
		if (rc != MOSQ_ERR_SUCCESS) {
			snprintf(err, errlen, "last will: %s",
				 mosquitto_strerror(rc));
			goto fail;
		}
	}
	mosquitto_connect_callback_set(m, on_connect_cb);
	mosquitto_disconnect_callback_set(m, on_disconnect_cb);
	mosquitto_publish_callback_set(m, on_publish_cb);
	mosquitto_message_callback_set(m, on_message_cb);
	if (mq->v5)
		mosquitto_message_v5_callback_set(m, on_message5_cb);
	mosquitto_log_callback_set(m, on_log_cb);
	if (mq->mosq)
		mosquitto_destroy(mq->mosq);
	mq->mosq = m;
	mq->mosq_idx = (int)mq->cur;
	return 0;
fail:
	mosquitto_destroy(m);
	return -1;
}

static void mq__free(struct mq *mq)
{
	if (mq->mosq)
		mosquitto_destroy(mq->mosq);
	mq__brokers_free(mq->brokers, mq->nbrokers);
	free(mq->client_id);
	free(mq->cafile);
	free(mq->certfile);
	free(mq->keyfile);
	free(mq->session_file);
	free(mq->will_topic);
	free(mq->will_payload);
	free(mq);
}

static int mq__copy_opts(struct mq *mq, const struct mq_opts *o)
{
	mq->client_id = strdup(o->client_id);
	mq->cafile = strdup(o->cafile ? o->cafile : "");
	mq->certfile = o->certfile ? strdup(o->certfile) : NULL;
	mq->keyfile = o->keyfile ? strdup(o->keyfile) : NULL;
	mq->session_file = o->session_file ? strdup(o->session_file) : NULL;
	if (!mq->client_id || !mq->cafile || (o->certfile && !mq->certfile) ||
	    (o->keyfile && !mq->keyfile) ||
	    (o->session_file && !mq->session_file))
		return -1;
	if (!o->will_topic)
		return 0;
	mq->will_topic = strdup(o->will_topic);
	mq->will_payload = malloc(o->will_len ? o->will_len : 1);
	if (!mq->will_topic || !mq->will_payload)
		return -1;
	if (o->will_len)
		memcpy(mq->will_payload, o->will_payload, o->will_len);
	mq->will_len = o->will_len;
	mq->will_qos = o->will_qos;
	mq->will_retain = o->will_retain;
	return 0;
}

int mq_new(uv_loop_t *loop, const struct mq_opts *o, const struct mq_cbs *cbs,
	   void *ud, struct mq **out, char *err, size_t errlen)
{
	struct mq *mq = calloc(1, sizeof(*mq));
	if (!mq) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	mq->loop = loop;
	mq->cbs = *cbs;
	mq->ud = ud;
	mq->mosq_idx = -1;
	mq->keepalive = o->keepalive > 0 ? o->keepalive : 30;
	mq->v5 = o->protocol == 5;
	mq->shared_tls = o->shared_tls;
	if (mq__copy_opts(mq, o) != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (o->brokers && o->brokers[0]) {
		if (mq__brokers_parse(o->brokers, o->port, &mq->brokers,
				      &mq->nbrokers, err, errlen) != 0)
			goto fail;
	} else {
		mq->brokers = calloc(1, sizeof(*mq->brokers));
		if (!mq->brokers ||
		    !(mq->brokers[0].host = strdup(o->host ? o->host : ""))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		mq->brokers[0].port = o->port;
		mq->nbrokers = 1;
	}
	/* Each client its own jitter (FNV-1a of its id, and the time). The
	 * list is an order of preference: the first broker first. */
	uint64_t h = 14695981039346656037ull;
	for (const char *c = mq->client_id; *c; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211ull;
	mq->rng = (h ^ uv_hrtime()) | 1;
	mq__set_cur(mq, 0);
	if (mq__mosq_new(mq, err, errlen) != 0)
		goto fail;
	uv_timer_init(loop, &mq->misc);
	uv_timer_init(loop, &mq->retry);
	mq->misc.data = mq;
	mq->retry.data = mq;
	*out = mq;
	return 0;
fail:
	mq__free(mq);
	return -1;
}

int mq_start(struct mq *mq)
{
	uv_timer_start(&mq->misc, misc_cb, MQ_MISC_MS, MQ_MISC_MS);
	mq__try_connect(mq);
	return 0;
}

int mq_publish(struct mq *mq, const char *topic, const void *payload,
	       size_t len, int qos, bool retain)
{
	if (!mq->connected)
		return -1;
	/* Counted first: a QoS 0 publish may be written, and on_publish_cb
	 * called, before mosquitto_publish returns. */
	mq->unsent++;
	int rc = mosquitto_publish(mq->mosq, NULL, topic, (int)len, payload,
				   qos, retain);
	if (rc != MOSQ_ERR_SUCCESS) {
		mq->unsent--;
		log_debug("publish %s: %s", topic, mosquitto_strerror(rc));
		return -1;
	}
	mq->bytes_out += len;
	mq__update_poll(mq);
	return 0;
}

int mq_publish_corr(struct mq *mq, const char *topic, const void *payload,
		    size_t len, int qos, bool retain, const void *corr,
		    size_t corr_len)
{
	mosquitto_property *props = NULL;
	if (!mq->v5 || !corr || corr_len == 0 || corr_len > 65535)
		return mq_publish(mq, topic, payload, len, qos, retain);
	if (!mq->connected)
		return -1;
	if (mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA,
					  corr, (uint16_t)corr_len) !=
	    MOSQ_ERR_SUCCESS)
		return -1;
	mq->unsent++; /* first: see mq_publish */
	int rc = mosquitto_publish_v5(mq->mosq, NULL, topic, (int)len, payload,
				      qos, retain, props);
	mosquitto_property_free_all(&props);
	if (rc != MOSQ_ERR_SUCCESS) {
		mq->unsent--;
		log_debug("publish %s: %s", topic, mosquitto_strerror(rc));
		return -1;
	}
	mq->bytes_out += len;
	mq__update_poll(mq);
	return 0;
}

int mq_subscribe(struct mq *mq, const char *topic, int qos)
{
	int rc = mosquitto_subscribe(mq->mosq, NULL, topic, qos);
	if (rc != MOSQ_ERR_SUCCESS) {
		log_warnx("subscribe %s: %s", topic, mosquitto_strerror(rc));
		return -1;
	}
	mq__update_poll(mq);
	return 0;
}

int mq_subscribe_many(struct mq *mq, char *const *topics, int n, int qos)
{
	int rc = mosquitto_subscribe_multiple(mq->mosq, NULL, n, topics, qos, 0,
					      NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		log_warnx("subscribe %s and %d more: %s", topics[0], n - 1,
			  mosquitto_strerror(rc));
		return -1;
	}
	mq__update_poll(mq);
	return 0;
}

int mq_unsubscribe(struct mq *mq, const char *topic)
{
	int rc = mosquitto_unsubscribe(mq->mosq, NULL, topic);
	if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) {
		log_warnx("unsubscribe %s: %s", topic, mosquitto_strerror(rc));
		return -1;
	}
	mq__update_poll(mq);
	return 0;
}

void mq_set_on_message5(struct mq *mq, mq_on_message5_fn fn)
{
	mq->on_message5 = fn;
}

bool mq_connected(const struct mq *mq) { return mq->connected; }

unsigned mq_connect_attempts(const struct mq *mq) { return mq->last_attempts; }

const char *mq_broker(const struct mq *mq) { return mq->name; }

unsigned long long mq_bytes_out(const struct mq *mq) { return mq->bytes_out; }

static void mq__close_cb(uv_handle_t *h)
{
	struct mq *mq = h->data;
	if (--mq->pending_closes > 0)
		return;
	void (*done)(void *) = mq->done;
	void *ud = mq->ud;
	mq__free(mq);
	if (done)
		done(ud);
}

static void mq__finish_close(struct mq *mq)
{
	if (mq->pending_closes > 0)
		return; /* already finishing */
	mq->connected = false;
	mq__detach_poll(mq);
	mq->pending_closes = 2;
	uv_close((uv_handle_t *)&mq->misc, mq__close_cb);
	uv_close((uv_handle_t *)&mq->retry, mq__close_cb);
}

static void close_timeout_cb(uv_timer_t *t)
{
	struct mq *mq = t->data;
	log_debug("mqtt: DISCONNECT not flushed in time, closing anyway");
	mq__finish_close(mq);
}

/* The clean DISCONNECT of a will renewal, once nothing is in flight. */
static int mq__renew_now(struct mq *mq)
{
	mq->renew_due = false;
	if (!mq->connected || mq->closing || mq->renewing)
		return 0; /* the next connect carries it */
	/* Set first: the library may write DISCONNECT and report the
	 * disconnect (mq__lost, which reconnects) before it returns. */
	mq->renewing = true;
	if (mosquitto_disconnect(mq->mosq) != MOSQ_ERR_SUCCESS) {
		mq->renewing = false;
		return -1;
	}
	if (mq->renewing)
		mq__update_poll(mq); /* DISCONNECT not written yet: flush */
	return 0;
}

int mq_renew_will(struct mq *mq, const char *topic, const void *payload,
		  size_t len, int qos, bool retain)
{
	int rc =
	    mosquitto_will_set(mq->mosq, topic, (int)len, payload, qos, retain);
	if (rc != MOSQ_ERR_SUCCESS) {
		log_warnx("mqtt id=%s: last will: %s", mq->client_id,
			  mosquitto_strerror(rc));
		return -1;
	}
	/* PROTOCOL.md 3: after the PUBACKs of what we published (the last
	 * statuses): a DISCONNECT with a PUBACK unread resets the
	 * connection, and the broker drops what it had not read yet. */
	if (mq->connected && mq->unsent > 0) {
		mq->renew_due = true;
		return 0;
	}
	return mq__renew_now(mq);
}

/* The clean DISCONNECT of mq_close, once nothing is in flight. */
static void mq__disconnect_now(struct mq *mq)
{
	mq->close_due = false;
	uv_timer_stop(&mq->retry);
	if (mq->connected &&
	    mosquitto_disconnect(mq->mosq) == MOSQ_ERR_SUCCESS) {
		/* Keep polling until the library has written DISCONNECT and
		 * reports the disconnect (or a second has passed): closing
		 * the socket earlier would make the broker send our will. */
		mq__update_poll(mq);
		uv_timer_start(&mq->retry, close_timeout_cb, 1000, 0);
		return;
	}
	mq__finish_close(mq);
}

static void close_wait_cb(uv_timer_t *t)
{
	struct mq *mq = t->data;
	if (mq->unsent > 0)
		log_debug("mqtt id=%s: %u publishes still unacknowledged, "
			  "disconnecting anyway",
			  mq->client_id, mq->unsent);
	mq__disconnect_now(mq);
}

void mq_close(struct mq *mq, void (*done)(void *ud))
{
	mq->closing = true;
	mq->done = done;
	mq->renew_due = false;
	uv_timer_stop(&mq->retry);
	if (mq->connected && mq->unsent > 0) {
		/* PROTOCOL.md 3: DISCONNECT after the PUBACKs of our last
		 * statuses. The library closes its socket as soon as it has
		 * written DISCONNECT: a PUBACK still unread there resets the
		 * connection, and the broker drops what it had not read (the
		 * status, the DISCONNECT) and sends our will (a `restarting`
		 * lost, an `offline` in its place: 150 of 1000 restarts in
		 * the fleet benchmark). */
		mq->close_due = true;
		uv_timer_start(&mq->retry, close_wait_cb, MQ_CLOSE_WAIT_MS, 0);
		return;
	}
	mq__disconnect_now(mq);
}
