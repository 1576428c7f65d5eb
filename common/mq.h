/*
 * mq: one MQTT client connection (libmosquitto) driven by a libuv loop.
 *
 * libmosquitto runs in external-loop mode: its socket sits on a uv_poll_t
 * (UV_READABLE always, UV_WRITABLE while mosquitto_want_write()), and a
 * timer calls mosquitto_loop_misc() for keepalives. The connection is made
 * asynchronously and re-made whenever it is lost, with exponential backoff
 * and full jitter (a random delay in [0, min(cap, base * 2^failures)]), so
 * a fleet that lost its broker does not come back in step. Given a list of
 * brokers, a failed attempt moves to the next one in the list (a lost
 * connection is tried once more where it was first). on_connect runs
 * after every successful (re)connect, so subscribe there.
 */
#ifndef OTA_MQ_H
#define OTA_MQ_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct mq;

/* Most brokers in a list ("host:port,host:port,..."). */
#define MQ_BROKERS_MAX 16

struct mq_opts {
	const char *host;
	int port;
	/* Optional: "host[:port],host[:port],..." (a port left out is
	 * `port`; an IPv6 address in brackets). When set and not empty it
	 * replaces host. */
	const char *brokers;
	const char *cafile;   /* CA that signed the broker's certificate */
	const char *certfile; /* our certificate (CN = our identity) */
	const char *keyfile;
	const char *client_id;
	int keepalive; /* seconds; 0 -> 30 */
	/* Last Will (optional): published by the broker if we vanish. */
	const char *will_topic;
	const void *will_payload;
	size_t will_len;
	int will_qos;
	bool will_retain;
	/* Load the CA, certificate and key once per process and reuse the TLS
	 * context for every client with the same files (a simulated fleet's
	 * in-process restarts). The broker's certificate and host name are
	 * checked as without it. */
	bool shared_tls;
	/* With shared_tls: keep the TLS session the broker gives in this file
	 * (mode 0600, replaced whole), and offer it at the first connect of
	 * the next process: a device that re-executes after an update
	 * reconnects with an abbreviated handshake. NULL: in memory only. It
	 * holds the session's secret: keep it where the key file is. */
	const char *session_file;
	/* 5 = speak MQTT 5 (response topic and correlation data reach
	 * on_message5); anything else = MQTT 3.1.1. */
	int protocol;
};

struct mq_cbs {
	void (*on_connect)(struct mq *mq, void *ud);
	void (*on_disconnect)(struct mq *mq, void *ud, const char *why);
	/* topic and payload are borrowed: valid only during the call. */
	void (*on_message)(struct mq *mq, void *ud, const char *topic,
			   const void *payload, size_t len);
};

/* MQTT 5 connections only: called instead of on_message, with the
 * message's response topic and correlation data (NULL / 0 when absent).
 * All borrowed, valid only during the call. */
typedef void (*mq_on_message5_fn)(struct mq *mq, void *ud, const char *topic,
				  const void *payload, size_t len,
				  const char *response_topic, const void *corr,
				  size_t corr_len);
void mq_set_on_message5(struct mq *mq, mq_on_message5_fn fn);

/* Check a broker list as mq_opts.brokers takes it: 0, or -1 with err
 * ("brokers: item 2 '...': ..."). n gets the number of brokers. */
int mq_brokers_check(const char *list, unsigned *n, char *err, size_t errlen);
/* The i-th broker of list (a port left out is defport): 0, or -1 when
 * there is none (past the end, or list is invalid: see err). */
int mq_brokers_get(const char *list, int defport, unsigned i, char *host,
		   size_t hostcap, int *port, char *err, size_t errlen);

/* Internal to common/ (mq.c, mqbrokers.c): one broker of a list. */
struct mq_broker {
	char *host; /* new */
	int port;
};
/* list -> *out (new array of *n, each host new; free with
 * mq__brokers_free), a port left out being defport; -1 with err. */
int mq__brokers_parse(const char *list, int defport, struct mq_broker **out,
		      unsigned *n, char *err, size_t errlen);
void mq__brokers_free(struct mq_broker *b, unsigned n);
/* Internal to common/ (mq.c, mqtls.c): the shared TLS context (an
 * SSL_CTX) for o's host and files, made on first use; owned by the cache
 * (mq_tls_cache_clear). NULL with err. */
struct ssl_ctx_st *mq__tls_ctx_get(const struct mq_opts *o, char *err,
				   size_t errlen);

/* Strings in opts are copied. Call mosquitto_lib_init() once before. */
int mq_new(uv_loop_t *loop, const struct mq_opts *opts,
	   const struct mq_cbs *cbs, void *ud, struct mq **out, char *err,
	   size_t errlen);
/* Start connecting (and keep reconnecting until mq_close). */
int mq_start(struct mq *mq);
/* Copies payload. Returns 0 or -1 (not connected / library error). */
int mq_publish(struct mq *mq, const char *topic, const void *payload,
	       size_t len, int qos, bool retain);
/* mq_publish with MQTT 5 correlation data (ignored on MQTT 3.1.1). */
int mq_publish_corr(struct mq *mq, const char *topic, const void *payload,
		    size_t len, int qos, bool retain, const void *corr,
		    size_t corr_len);
int mq_subscribe(struct mq *mq, const char *topic, int qos);
/* One SUBSCRIBE for N topic filters at one QoS: one packet and one SUBACK
 * for the broker to handle instead of N of each. */
int mq_subscribe_many(struct mq *mq, char *const *topics, int n, int qos);
int mq_unsubscribe(struct mq *mq, const char *topic);
/* Replace the Last Will. A will is fixed at connect, so a connected
 * client disconnects cleanly (the broker discards the old will unsent),
 * once every publish so far is written (QoS 0) or acknowledged (QoS 1),
 * and connects again at once with the new one; on_disconnect is not
 * called, on_connect is. Copies payload. 0, or -1 (library error). */
int mq_renew_will(struct mq *mq, const char *topic, const void *payload,
		  size_t len, int qos, bool retain);
/* TLS handshakes of shared_tls clients so far: full ones, and resumed
 * ones (the session the broker gave at the previous connect). */
void mq_tls_handshakes(unsigned long *full, unsigned long *resumed);
/* Free the TLS contexts kept for shared_tls (at exit, all clients gone). */
void mq_tls_cache_clear(void);
bool mq_connected(const struct mq *mq);
/* Connection attempts the last successful connection took (1 = at the
 * first try; 0 = not connected yet), and the broker in use ("host:port",
 * borrowed, valid until the next attempt). */
unsigned mq_connect_attempts(const struct mq *mq);
const char *mq_broker(const struct mq *mq);
/* Bytes and messages we handed to the library since start (for stats). */
unsigned long long mq_bytes_out(const struct mq *mq);
/* Disconnect cleanly (the will is not sent), close every handle, free mq
 * once the last close callback ran, then call done(ud) if given. */
void mq_close(struct mq *mq, void (*done)(void *ud));

#endif
