/*
 * linkemu: a TCP proxy that behaves like a slow, far link (there is no kernel
 * netem on the test machines). One libuv loop, no threads.
 *
 * For every accepted client it opens a connection to the target and relays
 * bytes both ways: client->server is "up", server->client is "down". Each
 * direction of each connection has a FIFO of chunks (at most --mtu bytes),
 * each stamped with its delivery time
 *
 *     link_free = max(now, link_free) + size*8/rate;  at = link_free + delay
 *
 * so chunks queue behind each other as at a bottleneck link. With --shared
 * all connections share one link_free per direction (a cell), otherwise each
 * connection has its own. A timer per direction fires at the head's time and
 * the chunk is written with uv_write. Connection setup costs one RTT as on a
 * real link: the target is connected one one-way delay after the accept, the
 * client is read from two one-way delays after it. More than --queue-kb bytes
 * queued in a direction stop reading from its source until a quarter drains.
 *
 * Cuts reset every connection (SO_LINGER 0, the peers see ECONNRESET): once
 * after --cut-after-s, every --cut-every-s for --cut-for-s (new connections
 * are reset at once meanwhile), and on SIGUSR1. SIGINT/SIGTERM shut down
 * cleanly: a summary line on stderr, --stats FILE as JSON, exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/log.h"

#define READ_BUF_SIZE 65536
#define NS_PER_MS 1000000ULL
#define NS_PER_S 1000000000ULL
#define STATS_EVERY_MS 5000

enum dir_idx { UP, DOWN };
static const char *const dir_names[] = {"up", "down"};

struct opts {
	struct sockaddr_storage listen_addr;
	struct sockaddr_storage connect_addr;
	const char *listen_str;
	const char *connect_str;
	uint64_t delay_ns;   /* one way */
	double rate_kbit[2]; /* 0: unlimited */
	size_t mtu;
	size_t queue_hi;    /* stop reading above this many queued bytes */
	size_t queue_lo;    /* resume below this */
	double cut_after_s; /* 0: never */
	double cut_every_s; /* 0: never */
	double cut_for_s;
	bool shared;
	bool verbose;
	const char *stats_path;
};

struct counters {
	uint64_t bytes_read[2];	     /* from the source */
	uint64_t bytes_delivered[2]; /* written to the destination */
	uint64_t bytes_dropped[2];   /* queued when a cut or reset hit */
	uint64_t connections;	     /* accepted and relayed */
	uint64_t refused;	     /* accepted during a cut and reset */
	uint64_t connect_failures;   /* target unreachable */
	uint64_t cuts;		     /* cut events (timer or SIGUSR1) */
	uint64_t connections_cut;    /* connections reset by cuts */
	uint64_t backpressure_stops; /* reads stopped on a full queue */
};

struct conn;
struct emu;

/* One chunk on its way. len 0 marks the source's EOF (shutdown on delivery). */
struct chunk {
	struct chunk *next;
	struct conn *conn;
	enum dir_idx dir;
	uint64_t at_ns;
	size_t len;
	uv_write_t req;
	char data[];
};

struct dir {
	uv_stream_t *src;
	uv_stream_t *dst;
	struct chunk *head, *tail; /* owned: not yet delivered */
	size_t pending;		   /* bytes queued plus bytes being written */
	uint64_t link_free_ns;	   /* per-connection link (without --shared) */
	uint64_t delivered;	   /* bytes this connection delivered */
	uv_timer_t timer;
	uv_shutdown_t shutdown_req;
	bool may_read; /* setup done and source not at EOF */
	bool reading;
	bool eof_queued;
	bool shut_done;
};

struct conn {
	struct emu *emu;
	struct conn *prev, *next;
	uint64_t id;
	uint64_t accepted_ns;
	uv_tcp_t client;
	uv_tcp_t server;
	uv_timer_t setup_timer;
	uv_connect_t connect_req;
	struct dir d[2];
	bool connected;
	bool closing;
	int open_handles;
};

struct emu {
	uv_loop_t *loop;
	struct opts o;
	uv_tcp_t listener;
	uv_signal_t sig_int, sig_term, sig_usr1;
	uv_timer_t stats_timer, cut_once_timer, cut_every_timer, restore_timer;
	uint64_t shared_free_ns[2];
	struct conn *conns;
	uint64_t next_id;
	uint64_t started_ns;
	bool refusing;
	bool stopping;
	struct counters n;
	char rbuf[READ_BUF_SIZE]; /* reads are copied into chunks at once */
};

static void conn_close(struct conn *c, bool reset);
static void dir_deliver(struct conn *c, enum dir_idx i);
static void dir_read_start(struct conn *c, enum dir_idx i);

/* --- command line -------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: linkemu --listen ADDR:PORT --connect ADDR:PORT [options]\n"
	    "A TCP proxy that emulates a slow, far link: one-way delay, bandwidth,\n"
	    "cuts. client->server is \"up\", server->client is \"down\".\n"
	    "\n"
	    "  --listen ADDR:PORT      accept clients here (IPv4, or [IPv6]:PORT)\n"
	    "  --connect ADDR:PORT     relay each client to this target\n"
	    "  --delay-ms D            one-way delay each way (default 0)\n"
	    "  --rtt-ms R              round-trip time: delay R/2 each way\n"
	    "  --rate-kbit K           bandwidth both ways, kbit/s (0: unlimited)\n"
	    "  --up-rate-kbit K        bandwidth client->server (overrides --rate-kbit)\n"
	    "  --down-rate-kbit K      bandwidth server->client (overrides --rate-kbit)\n"
	    "  --shared                all connections share one link per direction\n"
	    "                          (default: each connection has its own)\n"
	    "  --mtu N                 split data into chunks of at most N bytes\n"
	    "                          (64..65536, default 1500)\n"
	    "  --queue-kb N            stop reading a source while more than N KiB are\n"
	    "                          queued in its direction (default 4096)\n"
	    "  --cut-after-s S         reset every connection once, S s after start\n"
	    "  --cut-every-s A         every A s reset every connection and refuse new\n"
	    "  --cut-for-s B             ones for B s (B < A; both flags together)\n"
	    "  --stats FILE            write the counters as JSON to FILE at exit\n"
	    "  --verbose               log connections and counters every 5 s\n"
	    "  --help                  this text\n"
	    "Signals: SIGUSR1 resets every connection now; SIGINT/SIGTERM print a\n"
	    "summary and exit 0.\n"
	    "\n"
	    "example (LTE-M-like link in front of a broker on 8883):\n"
	    "  linkemu --listen 127.0.0.1:18883 --connect 127.0.0.1:8883 \\\n"
	    "          --rtt-ms 200 --rate-kbit 300 --stats /tmp/link.json\n");
}

static int parse_double(const char *flag, const char *s, double min, double max,
			double *out)
{
	char *end = NULL;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min ||
	    v > max) {
		fprintf(
		    stderr,
		    "linkemu: %s: expected a number from %g to %g, got '%s'\n",
		    flag, min, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

/* "1.2.3.4:80" or "[::1]:80" into addr. */
static int parse_addr(const char *flag, const char *s,
		      struct sockaddr_storage *addr)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	const char *h = s;
	size_t hlen;
	char *end = NULL;
	long port;
	int rc;

	if (colon == NULL)
		goto bad;
	hlen = (size_t)(colon - s);
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
		h = s + 1;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		goto bad;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno != 0 || end == colon + 1 || *end != '\0' || port < 0 ||
	    port > 65535)
		goto bad;
	memset(addr, 0, sizeof(*addr));
	if (h != s)
		rc = uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)addr);
	else
		rc = uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr);
	if (rc != 0)
		goto bad;
	return 0;
bad:
	fprintf(stderr,
		"linkemu: %s: expected ADDR:PORT (1.2.3.4:80 or [::1]:80), "
		"got '%s'\n",
		flag, s);
	return -1;
}

/* The command line as given; parse_args validates it into struct opts. -1: not given. */
struct raw_opts {
	double delay_ms, rtt_ms, rate, up, down, mtu, queue_kb;
	double cut_after_s, cut_every_s, cut_for_s;
};

/* Numeric flags: each one a field of struct raw_opts and its range. */
static const struct num_flag {
	const char *name;
	size_t off;
	double min, max;
} num_flags[] = {
    {"delay-ms", offsetof(struct raw_opts, delay_ms), 0, 600000},
    {"rtt-ms", offsetof(struct raw_opts, rtt_ms), 0, 1200000},
    {"rate-kbit", offsetof(struct raw_opts, rate), 0, 1e8},
    {"up-rate-kbit", offsetof(struct raw_opts, up), 0, 1e8},
    {"down-rate-kbit", offsetof(struct raw_opts, down), 0, 1e8},
    {"mtu", offsetof(struct raw_opts, mtu), 64, 65536},
    {"queue-kb", offsetof(struct raw_opts, queue_kb), 16, 1048576},
    {"cut-after-s", offsetof(struct raw_opts, cut_after_s), 0.001, 1e6},
    {"cut-every-s", offsetof(struct raw_opts, cut_every_s), 0.01, 1e6},
    {"cut-for-s", offsetof(struct raw_opts, cut_for_s), 0.001, 1e6},
};
#define N_NUM_FLAGS (sizeof(num_flags) / sizeof(num_flags[0]))

/* getopt_long values: 0..N_NUM_FLAGS-1 are num_flags[], then these. */
enum {
	OPT_LISTEN = 256,
	OPT_CONNECT,
	OPT_SHARED,
	OPT_STATS,
	OPT_VERBOSE,
	OPT_HELP,
};

static const struct option other_flags[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"connect", required_argument, NULL, OPT_CONNECT},
    {"shared", no_argument, NULL, OPT_SHARED},
    {"stats", required_argument, NULL, OPT_STATS},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"help", no_argument, NULL, OPT_HELP},
};
#define N_OTHER_FLAGS (sizeof(other_flags) / sizeof(other_flags[0]))

/* Cross-flag checks and units: raw into o. */
static int finish_opts(const struct raw_opts *r, struct opts *o)
{
	if (o->listen_str == NULL || o->connect_str == NULL) {
		fprintf(
		    stderr,
		    "linkemu: --listen and --connect are required (see --help)\n");
		return -1;
	}
	if (r->delay_ms >= 0 && r->rtt_ms >= 0) {
		fprintf(stderr,
			"linkemu: give --delay-ms or --rtt-ms, not both\n");
		return -1;
	}
	if ((r->cut_every_s >= 0) != (r->cut_for_s >= 0)) {
		fprintf(stderr,
			"linkemu: --cut-every-s and --cut-for-s go together\n");
		return -1;
	}
	if (r->cut_every_s >= 0 && r->cut_for_s >= r->cut_every_s) {
		fprintf(
		    stderr,
		    "linkemu: --cut-for-s (%g) must be shorter than --cut-every-s (%g)\n",
		    r->cut_for_s, r->cut_every_s);
		return -1;
	}
	if (r->rtt_ms >= 0)
		o->delay_ns =
		    (uint64_t)llround(r->rtt_ms * (double)NS_PER_MS / 2);
	else if (r->delay_ms >= 0)
		o->delay_ns =
		    (uint64_t)llround(r->delay_ms * (double)NS_PER_MS);
	o->rate_kbit[UP] = r->up >= 0 ? r->up : r->rate >= 0 ? r->rate : 0;
	o->rate_kbit[DOWN] = r->down >= 0   ? r->down
			     : r->rate >= 0 ? r->rate
					    : 0;
	o->mtu = r->mtu >= 0 ? (size_t)llround(r->mtu) : 1500;
	o->queue_hi = (size_t)((r->queue_kb >= 0 ? r->queue_kb : 4096) * 1024);
	o->queue_lo = o->queue_hi / 4;
	o->cut_after_s = r->cut_after_s > 0 ? r->cut_after_s : 0;
	o->cut_every_s = r->cut_every_s > 0 ? r->cut_every_s : 0;
	o->cut_for_s = r->cut_for_s > 0 ? r->cut_for_s : 0;
	return 0;
}

/* One non-numeric flag. 0: go on; 1: --help shown; -1: bad. */
static int other_flag(int ch, struct opts *o)
{
	switch (ch) {
	case OPT_LISTEN:
		o->listen_str = optarg;
		return parse_addr("--listen", optarg, &o->listen_addr);
	case OPT_CONNECT:
		o->connect_str = optarg;
		return parse_addr("--connect", optarg, &o->connect_addr);
	case OPT_SHARED:
		o->shared = true;
		return 0;
	case OPT_STATS:
		o->stats_path = optarg;
		return 0;
	case OPT_VERBOSE:
		o->verbose = true;
		return 0;
	case OPT_HELP:
		usage(stdout);
		return 1;
	default:
		return -1;
	}
}

/* 0: run; 1: --help shown; -1: bad command line (message printed). */
static int parse_args(int argc, char **argv, struct opts *o)
{
	struct option longopts[N_NUM_FLAGS + N_OTHER_FLAGS + 1];
	struct raw_opts r;
	char flag[32];
	size_t i;
	int ch, rc;

	memset(o, 0, sizeof(*o));
	memset(longopts, 0, sizeof(longopts));
	for (i = 0; i < N_NUM_FLAGS; i++) {
		longopts[i].name = num_flags[i].name;
		longopts[i].has_arg = required_argument;
		longopts[i].val = (int)i;
		*(double *)((char *)&r + num_flags[i].off) = -1;
	}
	memcpy(&longopts[N_NUM_FLAGS], other_flags, sizeof(other_flags));
	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		if (ch == ':' || ch == '?') {
			snprintf(flag, sizeof(flag), "%s", argv[optind - 1]);
			if (ch == ':')
				fprintf(
				    stderr,
				    "linkemu: %s needs a value (see --help)\n",
				    flag);
			else if (optopt != 0)
				fprintf(
				    stderr,
				    "linkemu: %s takes no value (see --help)\n",
				    flag);
			else
				fprintf(
				    stderr,
				    "linkemu: unknown option '%s' (see --help)\n",
				    flag);
			return -1;
		}
		if (ch >= 0 && (size_t)ch < N_NUM_FLAGS) {
			const struct num_flag *f = &num_flags[ch];

			snprintf(flag, sizeof(flag), "--%s", f->name);
			if (parse_double(flag, optarg, f->min, f->max,
					 (double *)((char *)&r + f->off)) != 0)
				return -1;
			continue;
		}
		rc = other_flag(ch, o);
		if (rc != 0)
			return rc;
	}
	if (optind < argc) {
		fprintf(stderr,
			"linkemu: unexpected argument '%s' (see --help)\n",
			argv[optind]);
		return -1;
	}
	return finish_opts(&r, o);
}

/* --- timing -------------------------------------------------------------------------- */

/* Serialization time of n bytes at rate kbit/s. */
static uint64_t tx_ns(double rate_kbit, size_t n)
{
	if (rate_kbit <= 0)
		return 0;
	return (uint64_t)llround((double)n * 8.0 * 1e6 / rate_kbit);
}

/* The delivery time of n bytes entering direction i of c now. */
static uint64_t stamp(struct conn *c, enum dir_idx i, size_t n, uint64_t now)
{
	struct emu *e = c->emu;
	uint64_t *free_ns = e->o.shared ? &e->shared_free_ns[i]
					: &c->d[i].link_free_ns;
	uint64_t start = *free_ns > now ? *free_ns : now;

	*free_ns = start + tx_ns(e->o.rate_kbit[i], n);
	return *free_ns + e->o.delay_ns;
}

static void arm_timer(uv_timer_t *t, uint64_t at_ns, uv_timer_cb cb)
{
	uint64_t now = uv_hrtime();
	uint64_t ms = at_ns > now ? (at_ns - now + NS_PER_MS - 1) / NS_PER_MS
				  : 0;

	uv_timer_start(t, cb, ms, 0);
}

static uint64_t secs_ms(double s) { return (uint64_t)llround(s * 1000.0); }

/* --- relaying ------------------------------------------------------------------------ */

static void on_close(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct chunk *ch, *next;

	if (--c->open_handles > 0)
		return;
	for (int i = 0; i < 2; i++) {
		for (ch = c->d[i].head; ch != NULL; ch = next) {
			next = ch->next;
			free(ch);
		}
	}
	free(c);
}

static void close_stream(uv_tcp_t *t, bool reset)
{
	/* A reset is refused while a shutdown is under way: close normally then. */
	if (reset && uv_tcp_close_reset(t, on_close) == 0)
		return;
	uv_close((uv_handle_t *)t, on_close);
}

static void conn_close(struct conn *c, bool reset)
{
	struct emu *e = c->emu;

	if (c->closing)
		return;
	c->closing = true;
	for (int i = 0; i < 2; i++) {
		for (struct chunk *ch = c->d[i].head; ch != NULL; ch = ch->next)
			e->n.bytes_dropped[i] += ch->len;
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		e->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	log_debug("close conn=%" PRIu64 " reset=%d up_bytes=%" PRIu64
		  " down_bytes=%" PRIu64,
		  c->id, reset, c->d[UP].delivered, c->d[DOWN].delivered);
	close_stream(&c->client, reset);
	close_stream(&c->server, reset && c->connected);
	uv_close((uv_handle_t *)&c->setup_timer, on_close);
	uv_close((uv_handle_t *)&c->d[UP].timer, on_close);
	uv_close((uv_handle_t *)&c->d[DOWN].timer, on_close);
}

static void on_write(uv_write_t *req, int status)
{
	struct chunk *ch = req->data;
	struct conn *c = ch->conn;
	enum dir_idx i = ch->dir;
	struct dir *d = &c->d[i];
	struct emu *e = c->emu;

	d->pending -= ch->len;
	if (status == 0) {
		e->n.bytes_delivered[i] += ch->len;
		d->delivered += ch->len;
	} else
		e->n.bytes_dropped[i] += ch->len;
	free(ch);
	if (c->closing)
		return;
	if (status < 0) {
		log_debug("write conn=%" PRIu64 " dir=%s: %s", c->id,
			  dir_names[i], uv_strerror(status));
		conn_close(c, true);
		return;
	}
	if (d->may_read && !d->reading && d->pending < e->o.queue_lo)
		dir_read_start(c, i);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c, true);
		return;
	}
	c->d[req == &c->d[UP].shutdown_req ? UP : DOWN].shut_done = true;
	if (c->d[UP].shut_done && c->d[DOWN].shut_done)
		conn_close(c, false);
}

static void on_dir_timer(uv_timer_t *t)
{
	struct conn *c = t->data;

	dir_deliver(c, t == &c->d[UP].timer ? UP : DOWN);
}

/* Write every chunk of direction i that is due; arm the timer for the next. */
static void dir_deliver(struct conn *c, enum dir_idx i)
{
	struct dir *d = &c->d[i];
	uint64_t now = uv_hrtime();
	struct chunk *ch;
	uv_buf_t buf;
	int rc;

	while ((ch = d->head) != NULL && ch->at_ns <= now) {
		d->head = ch->next;
		if (d->head == NULL)
			d->tail = NULL;
		if (ch->len == 0) {
			free(ch);
			d->shutdown_req.data = c;
			rc = uv_shutdown(&d->shutdown_req, d->dst, on_shutdown);
			if (rc != 0) {
				conn_close(c, true);
				return;
			}
			continue;
		}
		ch->req.data = ch;
		buf = uv_buf_init(ch->data, (unsigned int)ch->len);
		rc = uv_write(&ch->req, d->dst, &buf, 1, on_write);
		if (rc != 0) {
			d->pending -= ch->len;
			c->emu->n.bytes_dropped[i] += ch->len;
			free(ch);
			conn_close(c, true);
			return;
		}
	}
	if (d->head != NULL)
		arm_timer(&d->timer, d->head->at_ns, on_dir_timer);
}

/* Queue len bytes (0: EOF) read from direction i's source. */
static int dir_enqueue(struct conn *c, enum dir_idx i, const char *data,
		       size_t len)
{
	struct dir *d = &c->d[i];
	struct emu *e = c->emu;
	uint64_t now = uv_hrtime();
	bool was_empty = d->head == NULL;
	size_t off = 0;

	do {
		size_t n = len - off < e->o.mtu ? len - off : e->o.mtu;
		struct chunk *ch = malloc(sizeof(*ch) + n);

		if (ch == NULL)
			return -1;
		ch->next = NULL;
		ch->conn = c;
		ch->dir = i;
		ch->len = n;
		ch->at_ns = stamp(c, i, n, now);
		if (n > 0)
			memcpy(ch->data, data + off, n);
		if (d->tail != NULL)
			d->tail->next = ch;
		else
			d->head = ch;
		d->tail = ch;
		d->pending += n;
		off += n;
	} while (off < len);
	if (was_empty)
		dir_deliver(c, i);
	return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)suggested;
	*buf = uv_buf_init(c->emu->rbuf, sizeof(c->emu->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	enum dir_idx i = s == (uv_stream_t *)&c->client ? UP : DOWN;
	struct dir *d = &c->d[i];
	struct emu *e = c->emu;

	if (c->closing || nread == 0)
		return;
	if (nread == UV_EOF) {
		uv_read_stop(s);
		d->reading = false;
		d->may_read = false;
		d->eof_queued = true;
		log_debug("eof conn=%" PRIu64 " dir=%s", c->id, dir_names[i]);
		if (dir_enqueue(c, i, NULL, 0) != 0)
			conn_close(c, true);
		return;
	}
	if (nread < 0) {
		log_debug("read conn=%" PRIu64 " dir=%s: %s", c->id,
			  dir_names[i], uv_strerror((int)nread));
		conn_close(c, true);
		return;
	}
	e->n.bytes_read[i] += (uint64_t)nread;
	if (dir_enqueue(c, i, buf->base, (size_t)nread) != 0) {
		log_warnx("out of memory conn=%" PRIu64, c->id);
		conn_close(c, true);
		return;
	}
	if (!c->closing && d->reading && d->pending > e->o.queue_hi) {
		uv_read_stop(s);
		d->reading = false;
		e->n.backpressure_stops++;
	}
}

static void dir_read_start(struct conn *c, enum dir_idx i)
{
	struct dir *d = &c->d[i];
	int rc;

	if (d->reading || !d->may_read)
		return;
	rc = uv_read_start(d->src, on_alloc, on_read);
	if (rc != 0) {
		log_warnx("read conn=%" PRIu64 ": %s", c->id, uv_strerror(rc));
		conn_close(c, true);
		return;
	}
	d->reading = true;
}

/* The client's SYN-ACK has come back: read from it (one RTT after accept). */
static void on_client_ready(uv_timer_t *t)
{
	struct conn *c = t->data;

	c->d[UP].may_read = true;
	dir_read_start(c, UP);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	struct emu *e = c->emu;
	uint64_t ready = c->accepted_ns + 2 * e->o.delay_ns;

	if (c->closing)
		return;
	if (status < 0) {
		e->n.connect_failures++;
		log_warnx("connect %s conn=%" PRIu64 ": %s", e->o.connect_str,
			  c->id, uv_strerror(status));
		conn_close(c, true);
		return;
	}
	c->connected = true;
	uv_tcp_nodelay(&c->server, 1);
	c->d[DOWN].may_read = true;
	dir_read_start(c, DOWN);
	if (!c->closing)
		arm_timer(&c->setup_timer, ready, on_client_ready);
}

/* The client's SYN reaches the target (one one-way delay after accept). */
static void on_setup_timer(uv_timer_t *t)
{
	struct conn *c = t->data;
	int rc;

	c->connect_req.data = c;
	rc = uv_tcp_connect(&c->connect_req, &c->server,
			    (const struct sockaddr *)&c->emu->o.connect_addr,
			    on_connect);
	if (rc != 0) {
		c->emu->n.connect_failures++;
		log_warnx("connect %s: %s", c->emu->o.connect_str,
			  uv_strerror(rc));
		conn_close(c, true);
	}
}

static void on_refused_close(uv_handle_t *h) { free(h); }

static void refuse(struct emu *e, uv_stream_t *server)
{
	uv_tcp_t *t = malloc(sizeof(*t));

	if (t == NULL || uv_tcp_init(e->loop, t) != 0) {
		free(t);
		return;
	}
	if (uv_accept(server, (uv_stream_t *)t) == 0)
		e->n.refused++;
	if (uv_tcp_close_reset(t, on_refused_close) != 0)
		uv_close((uv_handle_t *)t, on_refused_close);
}

static void on_accept(uv_stream_t *server, int status)
{
	struct emu *e = server->data;
	struct conn *c;

	if (status < 0) {
		log_warnx("accept: %s", uv_strerror(status));
		return;
	}
	if (e->refusing || e->stopping) {
		refuse(e, server);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		log_warnx("accept: out of memory");
		refuse(e, server);
		return;
	}
	c->emu = e;
	c->id = ++e->next_id;
	c->accepted_ns = uv_hrtime();
	/* Handles are initialised first so that conn_close can close all five. */
	uv_tcp_init(e->loop, &c->client);
	uv_tcp_init(e->loop, &c->server);
	uv_timer_init(e->loop, &c->setup_timer);
	uv_timer_init(e->loop, &c->d[UP].timer);
	uv_timer_init(e->loop, &c->d[DOWN].timer);
	c->open_handles = 5;
	c->client.data = c->server.data = c->setup_timer.data = c;
	c->d[UP].timer.data = c->d[DOWN].timer.data = c;
	c->d[UP].src = c->d[DOWN].dst = (uv_stream_t *)&c->client;
	c->d[UP].dst = c->d[DOWN].src = (uv_stream_t *)&c->server;
	c->next = e->conns;
	if (e->conns != NULL)
		e->conns->prev = c;
	e->conns = c;
	if (uv_accept(server, (uv_stream_t *)&c->client) != 0) {
		conn_close(c, false);
		return;
	}
	e->n.connections++;
	uv_tcp_nodelay(&c->client, 1);
	log_debug("accept conn=%" PRIu64, c->id);
	arm_timer(&c->setup_timer, c->accepted_ns + e->o.delay_ns,
		  on_setup_timer);
}

/* --- cuts, counters, signals --------------------------------------------------------- */

static void cut_all(struct emu *e, const char *why)
{
	uint64_t n = 0;

	e->n.cuts++;
	while (e->conns != NULL) {
		conn_close(e->conns, true);
		n++;
	}
	e->n.connections_cut += n;
	log_info("cut reason=%s connections=%" PRIu64, why, n);
}

static void on_cut_once(uv_timer_t *t) { cut_all(t->data, "cut-after"); }

static void on_restore(uv_timer_t *t)
{
	struct emu *e = t->data;

	e->refusing = false;
	log_info("link restored");
}

static void on_cut_every(uv_timer_t *t)
{
	struct emu *e = t->data;

	cut_all(e, "cut-every");
	e->refusing = true;
	uv_timer_start(&e->restore_timer, on_restore, secs_ms(e->o.cut_for_s),
		       0);
}

static void log_counters(struct emu *e, const char *what)
{
	double secs = (double)(uv_hrtime() - e->started_ns) / (double)NS_PER_S;
	uint64_t active = 0;

	for (struct conn *c = e->conns; c != NULL; c = c->next)
		active++;
	log_info("%s secs=%.1f up_bytes=%" PRIu64 " down_bytes=%" PRIu64
		 " connections=%" PRIu64 " active=%" PRIu64 " refused=%" PRIu64
		 " connect_failures=%" PRIu64 " cuts=%" PRIu64
		 " connections_cut=%" PRIu64 " dropped_bytes=%" PRIu64,
		 what, secs, e->n.bytes_delivered[UP],
		 e->n.bytes_delivered[DOWN], e->n.connections, active,
		 e->n.refused, e->n.connect_failures, e->n.cuts,
		 e->n.connections_cut,
		 e->n.bytes_dropped[UP] + e->n.bytes_dropped[DOWN]);
}

static void on_stats_timer(uv_timer_t *t) { log_counters(t->data, "stats"); }

static void on_usr1(uv_signal_t *s, int signum)
{
	(void)signum;
	cut_all(s->data, "SIGUSR1");
}

static void on_stop(uv_signal_t *s, int signum)
{
	struct emu *e = s->data;

	if (e->stopping)
		return;
	e->stopping = true;
	log_info("stopping on %s", signum == SIGINT ? "SIGINT" : "SIGTERM");
	log_counters(e, "summary");
	while (e->conns != NULL)
		conn_close(e->conns, true);
	uv_close((uv_handle_t *)&e->listener, NULL);
	uv_close((uv_handle_t *)&e->sig_int, NULL);
	uv_close((uv_handle_t *)&e->sig_term, NULL);
	uv_close((uv_handle_t *)&e->sig_usr1, NULL);
	uv_close((uv_handle_t *)&e->stats_timer, NULL);
	uv_close((uv_handle_t *)&e->cut_once_timer, NULL);
	uv_close((uv_handle_t *)&e->cut_every_timer, NULL);
	uv_close((uv_handle_t *)&e->restore_timer, NULL);
}

static int write_stats(const struct emu *e, double secs)
{
	json_t *j;
	int rc = -1;

	/* Flat keys, one per line: easy to read from a shell script. */
	j = json_pack("{s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:f,"
		      " s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:b, s:f}",
		      "up_bytes", (json_int_t)e->n.bytes_delivered[UP],
		      "up_bytes_read", (json_int_t)e->n.bytes_read[UP],
		      "up_bytes_dropped", (json_int_t)e->n.bytes_dropped[UP],
		      "up_rate_kbit", e->o.rate_kbit[UP], "down_bytes",
		      (json_int_t)e->n.bytes_delivered[DOWN], "down_bytes_read",
		      (json_int_t)e->n.bytes_read[DOWN], "down_bytes_dropped",
		      (json_int_t)e->n.bytes_dropped[DOWN], "down_rate_kbit",
		      e->o.rate_kbit[DOWN], "connections",
		      (json_int_t)e->n.connections, "refused",
		      (json_int_t)e->n.refused, "connect_failures",
		      (json_int_t)e->n.connect_failures, "cuts",
		      (json_int_t)e->n.cuts, "connections_cut",
		      (json_int_t)e->n.connections_cut, "backpressure_stops",
		      (json_int_t)e->n.backpressure_stops, "delay_ms",
		      (double)e->o.delay_ns / (double)NS_PER_MS, "mtu",
		      (json_int_t)e->o.mtu, "shared", e->o.shared, "secs",
		      secs);
	if (j == NULL) {
		log_warnx("stats: cannot build the JSON object");
		return -1;
	}
	if (json_dump_file(j, e->o.stats_path, JSON_INDENT(2)) != 0) {
		log_warn("stats: cannot write %s", e->o.stats_path);
		goto cleanup_json;
	}
	rc = 0;
cleanup_json:
	json_decref(j);
	return rc;
}

/* --- main ---------------------------------------------------------------------------- */

static int emu_start(struct emu *e)
{
	int rc;
	struct sockaddr_storage bound;
	int blen = sizeof(bound);
	char host[64] = "?";
	int port = 0;

	e->started_ns = uv_hrtime();
	uv_tcp_init(e->loop, &e->listener);
	uv_signal_init(e->loop, &e->sig_int);
	uv_signal_init(e->loop, &e->sig_term);
	uv_signal_init(e->loop, &e->sig_usr1);
	uv_timer_init(e->loop, &e->stats_timer);
	uv_timer_init(e->loop, &e->cut_once_timer);
	uv_timer_init(e->loop, &e->cut_every_timer);
	uv_timer_init(e->loop, &e->restore_timer);
	e->listener.data = e->sig_int.data = e->sig_term.data =
	    e->sig_usr1.data = e;
	e->stats_timer.data = e->cut_once_timer.data = e;
	e->cut_every_timer.data = e->restore_timer.data = e;

	uv_signal_start(&e->sig_int, on_stop, SIGINT);
	uv_signal_start(&e->sig_term, on_stop, SIGTERM);
	uv_signal_start(&e->sig_usr1, on_usr1, SIGUSR1);
	rc = uv_tcp_bind(&e->listener,
			 (const struct sockaddr *)&e->o.listen_addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&e->listener, SOMAXCONN,
			       on_accept);
	if (rc != 0) {
		log_warnx("listen %s: %s", e->o.listen_str, uv_strerror(rc));
		return -1;
	}
	if (uv_tcp_getsockname(&e->listener, (struct sockaddr *)&bound,
			       &blen) == 0) {
		if (bound.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&bound, host,
				    sizeof(host));
			port =
			    ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
		} else {
			uv_ip4_name((struct sockaddr_in *)&bound, host,
				    sizeof(host));
			port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
		}
	}
	if (e->o.verbose)
		uv_timer_start(&e->stats_timer, on_stats_timer, STATS_EVERY_MS,
			       STATS_EVERY_MS);
	if (e->o.cut_after_s > 0)
		uv_timer_start(&e->cut_once_timer, on_cut_once,
			       secs_ms(e->o.cut_after_s), 0);
	if (e->o.cut_every_s > 0)
		uv_timer_start(&e->cut_every_timer, on_cut_every,
			       secs_ms(e->o.cut_every_s),
			       secs_ms(e->o.cut_every_s));
	log_info("listening addr=%s port=%d connect=%s delay_ms=%.1f up_kbit=%g "
		 "down_kbit=%g shared=%d mtu=%zu",
		 host, port, e->o.connect_str,
		 (double)e->o.delay_ns / (double)NS_PER_MS, e->o.rate_kbit[UP],
		 e->o.rate_kbit[DOWN], e->o.shared, e->o.mtu);
	return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int main(int argc, char **argv)
{
	struct emu *e;
	uv_loop_t loop;
	int rc, status = 1;

	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		fprintf(stderr, "linkemu: out of memory\n");
		return 1;
	}
	rc = parse_args(argc, argv, &e->o);
	if (rc != 0) {
		status = rc > 0 ? 0 : 2;
		goto cleanup_emu;
	}
	log_init("linkemu", e->o.verbose ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	signal(SIGPIPE, SIG_IGN);
	if (uv_loop_init(&loop) != 0) {
		log_warnx("cannot start the event loop");
		goto cleanup_emu;
	}
	e->loop = &loop;
	if (emu_start(e) != 0) {
		/* Run the loop once more so the handles opened so far close. */
		e->stopping = true;
		uv_walk(&loop, close_walk, NULL);
		uv_run(&loop, UV_RUN_DEFAULT);
		goto cleanup_loop;
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	status = 0;
	if (e->o.stats_path != NULL &&
	    write_stats(e, (double)(uv_hrtime() - e->started_ns) /
			       (double)NS_PER_S) != 0)
		status = 1;
cleanup_loop:
	if (uv_loop_close(&loop) != 0)
		log_warnx("event loop closed with handles still open");
cleanup_emu:
	free(e);
	return status;
}
