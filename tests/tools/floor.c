/*
 * floor: the broker's own fan-out floor, for make bench. One publisher sends
 * BYTES in messages of MSG_SIZE to N subscribers that only count what they
 * receive; all of them are mutual-TLS clients of the broker, on one libuv
 * loop (common/mq.c), as a fleet process runs its devices. Whatever an OTA
 * transfer of BYTES to N devices costs beyond this is ours, not the broker's.
 *
 *   1. connect: N subscribers (one every --stagger-ms, as ota-device --fleet
 *      does) and the publisher; each subscriber subscribes to TOPIC/#.
 *   2. probe: the publisher sends a 1-byte TOPIC/probe every 100 ms until
 *      every subscriber got one (so every subscription is in place).
 *   3. send: the publisher hands every TOPIC/data message to libmosquitto at
 *      once (QoS --qos); the clock stops when the last subscriber holds BYTES.
 *
 * Prints one line on stdout:
 *   floor subscribers=N bytes=B msg_size=S messages=M connect_ms=C fanout_ms=F
 *         cpu_ms=U
 * (connect_ms: start -> all connected; fanout_ms: first data publish -> last
 * byte at the last subscriber; cpu_ms: this process's user+system CPU during
 * the send.) With --cpu-pid PID (the broker) it adds pid_cpu_ms, that
 * process's CPU during the send, from /proc/PID/stat. Exits 0, or 1 with a
 * reason on stderr (timeout, a subscriber lost its connection while the data
 * flowed), 2 on a bad command line.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "common/log.h"
#include "common/mq.h"

#define PROBE_EVERY_MS 100
#define TOPIC_MAX 200
#define NS_PER_MS 1000000ULL

struct opts {
	const char *host, *cafile, *pub_cert, *pub_key, *sub_cert, *sub_key;
	const char *sub_dir;
	const char *topic;
	unsigned long port, subscribers, bytes, msg_size, stagger_ms, qos;
	unsigned long timeout_s, cpu_pid;
};

struct sub {
	struct flr *f;
	struct mq *mq;
	char *cert, *key; /* from --sub-cert-dir, or NULL */
	uint64_t bytes;
	bool connected, probed, done;
};

enum phase { PH_CONNECT, PH_PROBE, PH_SEND, PH_END };

struct flr {
	uv_loop_t *loop;
	struct opts o;
	struct sub *subs;
	struct mq *pub;
	bool pub_connected;
	uint32_t n_started, n_connected, n_probed, n_done, n_closed;
	uint32_t lost; /* subscriber connections lost after connecting */
	enum phase phase;
	uint64_t t0_ns, t_conn_ns, t_send_ns, t_done_ns, t_stagger_ns;
	uint64_t cpu_us;
	long long pid_cpu_ticks; /* of --cpu-pid during the send; -1: none */
	uv_timer_t stagger, probe, deadline;
	uv_signal_t sig_int, sig_term;
	char t_probe[TOPIC_MAX], t_data[TOPIC_MAX], t_sub[TOPIC_MAX];
	int status;
};

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: floor --host H --port P --cafile CA --pub-cert C --pub-key K\n"
	    "             (--sub-cert C --sub-key K | --sub-cert-dir DIR)\n"
	    "             --subscribers N --bytes B\n"
	    "             --msg-size S [--topic T] [--qos 0|1] [--stagger-ms 2]\n"
	    "             [--timeout-s 300] [--cpu-pid PID]\n"
	    "The broker's fan-out floor: one publisher sends B bytes in messages\n"
	    "of S bytes on T/data to N subscribers of T/# that count them.\n"
	    "All connections are mutual TLS; T defaults to ota/release/bench-floor\n"
	    "(the operator may write it, the gateway's identity may read it).\n"
	    "A broker that makes the certificate's CN the client id (the shipped\n"
	    "configuration) lets one certificate hold one connection: give each\n"
	    "subscriber its own with --sub-cert-dir DIR (the first N *.crt in\n"
	    "name order, each with its .key; the ACL must let them read T/#).\n"
	    "example: floor --host localhost --port 8883 --cafile ca.crt \\\n"
	    "  --pub-cert operator.crt --pub-key operator.key --sub-cert gateway.crt \\\n"
	    "  --sub-key gateway.key --subscribers 1000 --bytes 1048576 --msg-size 65536\n");
}

static uint64_t cpu_us_self(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* utime + stime of pid in clock ticks, or -1. The fields after the command
 * name, which may hold spaces and ')', start after its last ')'. */
static long long pid_cpu_ticks(unsigned long pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%lu/stat", pid);
	FILE *fp = fopen(path, "r");
	if (!fp)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt
	 * cmajflt utime stime */
	if (!p || sscanf(p + 1,
			 " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
			 "%*u %llu %llu",
			 &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

static double ms_between(uint64_t a_ns, uint64_t b_ns)
{
	return (double)(b_ns - a_ns) / (double)NS_PER_MS;
}

static void close_all(struct flr *f);

static void finish(struct flr *f, int status)
{
	if (f->phase == PH_END)
		return;
	f->phase = PH_END;
	f->status = status;
	close_all(f);
}

static void report_progress(const struct flr *f, FILE *out)
{
	fprintf(out,
		"floor: started=%" PRIu32 " connected=%" PRIu32 "/%lu "
		"probed=%" PRIu32 " done=%" PRIu32 " lost=%" PRIu32 "\n",
		f->n_started, f->n_connected, f->o.subscribers, f->n_probed,
		f->n_done, f->lost);
}

static void send_all(struct flr *f)
{
	uint8_t *buf = malloc(f->o.msg_size);
	if (!buf) {
		fprintf(stderr, "floor: out of memory\n");
		finish(f, 1);
		return;
	}
	for (size_t i = 0; i < f->o.msg_size; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	f->phase = PH_SEND;
	f->cpu_us = cpu_us_self();
	if (f->o.cpu_pid)
		f->pid_cpu_ticks = pid_cpu_ticks(f->o.cpu_pid);
	f->t_send_ns = uv_hrtime();
	for (unsigned long off = 0; off < f->o.bytes; off += f->o.msg_size) {
		size_t len = f->o.msg_size;
		if (off + len > f->o.bytes)
			len = f->o.bytes - off;
		if (mq_publish(f->pub, f->t_data, buf, len, (int)f->o.qos,
			       false) != 0) {
			fprintf(stderr, "floor: publish failed\n");
			free(buf);
			finish(f, 1);
			return;
		}
	}
	free(buf);
}

static void probe_cb(uv_timer_t *t)
{
	struct flr *f = t->data;
	if (f->phase != PH_PROBE)
		return;
	if (f->n_probed == f->o.subscribers) {
		uv_timer_stop(&f->probe);
		send_all(f);
		return;
	}
	mq_publish(f->pub, f->t_probe, "p", 1, 0, false);
}

static void maybe_probe(struct flr *f)
{
	if (f->phase != PH_CONNECT || !f->pub_connected ||
	    f->n_connected < f->o.subscribers)
		return;
	f->phase = PH_PROBE;
	f->t_conn_ns = uv_hrtime();
	uv_timer_start(&f->probe, probe_cb, 0, PROBE_EVERY_MS);
}

static void sub_connect(struct mq *mq, void *ud)
{
	struct sub *s = ud;
	struct flr *f = s->f;
	if (f->phase == PH_END)
		return;
	mq_subscribe(mq, f->t_sub, (int)f->o.qos);
	if (!s->connected) {
		s->connected = true;
		f->n_connected++;
	}
	maybe_probe(f);
}

static void sub_disconnect(struct mq *mq, void *ud, const char *why)
{
	(void)mq;
	struct sub *s = ud;
	struct flr *f = s->f;
	if (f->phase == PH_END)
		return;
	f->lost++;
	if (f->phase == PH_SEND && !s->done) {
		/* QoS 0 data sent while it was away is gone: no floor. */
		fprintf(stderr,
			"floor: subscriber %td lost its connection during the "
			"send (%s)\n",
			s - f->subs, why);
		finish(f, 1);
	}
}

static void sub_message(struct mq *mq, void *ud, const char *topic,
			const void *payload, size_t len)
{
	(void)mq;
	(void)payload;
	struct sub *s = ud;
	struct flr *f = s->f;
	if (strcmp(topic, f->t_probe) == 0) {
		if (!s->probed) {
			s->probed = true;
			f->n_probed++;
		}
		return;
	}
	if (strcmp(topic, f->t_data) != 0 || s->done)
		return;
	s->bytes += len;
	if (s->bytes < f->o.bytes)
		return;
	s->done = true;
	if (++f->n_done < f->o.subscribers)
		return;
	f->t_done_ns = uv_hrtime();
	f->cpu_us = cpu_us_self() - f->cpu_us;
	char pid_cpu[64] = "";
	long long ticks = f->o.cpu_pid ? pid_cpu_ticks(f->o.cpu_pid) : -1;
	if (ticks >= 0 && f->pid_cpu_ticks >= 0)
		snprintf(pid_cpu, sizeof(pid_cpu), " pid_cpu_ms=%.0f",
			 (double)(ticks - f->pid_cpu_ticks) * 1000.0 /
			     (double)sysconf(_SC_CLK_TCK));
	printf("floor subscribers=%lu bytes=%lu msg_size=%lu messages=%lu "
	       "connect_ms=%.0f fanout_ms=%.1f cpu_ms=%.0f%s\n",
	       f->o.subscribers, f->o.bytes, f->o.msg_size,
	       (f->o.bytes + f->o.msg_size - 1) / f->o.msg_size,
	       ms_between(f->t0_ns, f->t_conn_ns),
	       ms_between(f->t_send_ns, f->t_done_ns),
	       (double)f->cpu_us / 1000.0, pid_cpu);
	fflush(stdout);
	finish(f, 0);
}

static void pub_connect(struct mq *mq, void *ud)
{
	(void)mq;
	struct flr *f = ud;
	f->pub_connected = true;
	maybe_probe(f);
}

static void pub_disconnect(struct mq *mq, void *ud, const char *why)
{
	(void)mq;
	struct flr *f = ud;
	f->pub_connected = false;
	if (f->phase == PH_PROBE || f->phase == PH_SEND) {
		fprintf(stderr,
			"floor: the publisher lost its connection (%s)\n", why);
		finish(f, 1);
	}
}

static int new_client(struct flr *f, const char *id, const char *cert,
		      const char *key, const struct mq_cbs *cbs, void *ud,
		      struct mq **out)
{
	char err[512];
	struct mq_opts mo = {.host = f->o.host,
			     .port = (int)f->o.port,
			     .cafile = f->o.cafile,
			     .certfile = cert,
			     .keyfile = key,
			     .client_id = id,
			     .keepalive = 60};
	if (mq_new(f->loop, &mo, cbs, ud, out, err, sizeof(err)) != 0) {
		fprintf(stderr, "floor: client %s: %s\n", id, err);
		return -1;
	}
	return mq_start(*out);
}

/* One subscriber every stagger_ms, catching up when the loop was late. */
static void stagger_cb(uv_timer_t *t)
{
	static const struct mq_cbs cbs = {.on_connect = sub_connect,
					  .on_disconnect = sub_disconnect,
					  .on_message = sub_message};
	struct flr *f = t->data;
	uint64_t due = f->o.subscribers;
	if (f->o.stagger_ms)
		due = (uv_hrtime() - f->t_stagger_ns) /
			  (f->o.stagger_ms * NS_PER_MS) +
		      1;
	while (f->phase == PH_CONNECT && f->n_started < f->o.subscribers &&
	       f->n_started < due) {
		struct sub *s = &f->subs[f->n_started];
		char id[48];
		snprintf(id, sizeof(id), "bench-floor-%d-%" PRIu32,
			 (int)uv_os_getpid(), f->n_started);
		s->f = f;
		if (new_client(f, id, s->cert ? s->cert : f->o.sub_cert,
			       s->key ? s->key : f->o.sub_key, &cbs, s,
			       &s->mq) != 0) {
			finish(f, 1);
			return;
		}
		f->n_started++;
	}
	if (f->n_started == f->o.subscribers)
		uv_timer_stop(&f->stagger);
}

static void deadline_cb(uv_timer_t *t)
{
	struct flr *f = t->data;
	fprintf(stderr, "floor: not done after %lu s (phase %d)\n",
		f->o.timeout_s, (int)f->phase);
	report_progress(f, stderr);
	finish(f, 1);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct flr *f = s->data;
	fprintf(stderr, "floor: stopped by signal %d\n", signum);
	report_progress(f, stderr);
	finish(f, 1);
}

static void closed_one(void *ud)
{
	struct flr *f = ud;
	f->n_closed++;
}

static void close_all(struct flr *f)
{
	uv_timer_stop(&f->stagger);
	uv_timer_stop(&f->probe);
	uv_timer_stop(&f->deadline);
	uv_close((uv_handle_t *)&f->stagger, NULL);
	uv_close((uv_handle_t *)&f->probe, NULL);
	uv_close((uv_handle_t *)&f->deadline, NULL);
	uv_close((uv_handle_t *)&f->sig_int, NULL);
	uv_close((uv_handle_t *)&f->sig_term, NULL);
	for (uint32_t i = 0; i < f->n_started; i++)
		mq_close(f->subs[i].mq, NULL);
	if (f->pub)
		mq_close(f->pub, closed_one);
}

/* --- command line ----------------------------------------------------------------- */

static int parse_ulong(const char *flag, const char *s, unsigned long min,
		       unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
		fprintf(stderr, "floor: %s: '%s' is not a number in %lu..%lu\n",
			flag, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

enum {
	O_HOST = 1,
	O_PORT,
	O_CA,
	O_PCERT,
	O_PKEY,
	O_SCERT,
	O_SKEY,
	O_SDIR,
	O_SUBS,
	O_BYTES,
	O_MSG,
	O_TOPIC,
	O_QOS,
	O_STAGGER,
	O_TIMEOUT,
	O_CPUPID,
	O_HELP
};

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
	    {"host", required_argument, NULL, O_HOST},
	    {"port", required_argument, NULL, O_PORT},
	    {"cafile", required_argument, NULL, O_CA},
	    {"pub-cert", required_argument, NULL, O_PCERT},
	    {"pub-key", required_argument, NULL, O_PKEY},
	    {"sub-cert", required_argument, NULL, O_SCERT},
	    {"sub-key", required_argument, NULL, O_SKEY},
	    {"sub-cert-dir", required_argument, NULL, O_SDIR},
	    {"subscribers", required_argument, NULL, O_SUBS},
	    {"bytes", required_argument, NULL, O_BYTES},
	    {"msg-size", required_argument, NULL, O_MSG},
	    {"topic", required_argument, NULL, O_TOPIC},
	    {"qos", required_argument, NULL, O_QOS},
	    {"stagger-ms", required_argument, NULL, O_STAGGER},
	    {"timeout-s", required_argument, NULL, O_TIMEOUT},
	    {"cpu-pid", required_argument, NULL, O_CPUPID},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0}};
	int ch, li = 0, rc = 0;
	char flag[32];
	*o = (struct opts){.topic = "ota/release/bench-floor",
			   .stagger_ms = 2,
			   .timeout_s = 300};
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":", lo, &li)) != -1 && rc == 0) {
		if (ch > 0 && ch <= O_HELP)
			snprintf(flag, sizeof(flag), "--%s", lo[li].name);
		else
			snprintf(flag, sizeof(flag), "%s", argv[optind - 1]);
		switch (ch) {
		case O_HOST:
			o->host = optarg;
			break;
		case O_CA:
			o->cafile = optarg;
			break;
		case O_PCERT:
			o->pub_cert = optarg;
			break;
		case O_PKEY:
			o->pub_key = optarg;
			break;
		case O_SCERT:
			o->sub_cert = optarg;
			break;
		case O_SKEY:
			o->sub_key = optarg;
			break;
		case O_SDIR:
			o->sub_dir = optarg;
			break;
		case O_TOPIC:
			o->topic = optarg;
			break;
		case O_PORT:
			rc = parse_ulong(flag, optarg, 1, 65535, &o->port);
			break;
		case O_SUBS:
			rc = parse_ulong(flag, optarg, 1, 100000,
					 &o->subscribers);
			break;
		case O_BYTES:
			rc = parse_ulong(flag, optarg, 1, 1UL << 30, &o->bytes);
			break;
		case O_MSG:
			rc = parse_ulong(flag, optarg, 2, 1UL << 20,
					 &o->msg_size);
			break;
		case O_QOS:
			rc = parse_ulong(flag, optarg, 0, 1, &o->qos);
			break;
		case O_STAGGER:
			rc =
			    parse_ulong(flag, optarg, 0, 60000, &o->stagger_ms);
			break;
		case O_TIMEOUT:
			rc = parse_ulong(flag, optarg, 1, 86400, &o->timeout_s);
			break;
		case O_CPUPID:
			rc = parse_ulong(flag, optarg, 1, INT32_MAX,
					 &o->cpu_pid);
			break;
		case O_HELP:
			usage(stdout);
			return 1;
		case ':':
			fprintf(stderr, "floor: %s needs a value\n", flag);
			return -1;
		default:
			fprintf(stderr,
				"floor: unknown option '%s' (see --help)\n",
				flag);
			return -1;
		}
	}
	if (rc != 0)
		return -1;
	if (optind < argc) {
		fprintf(stderr, "floor: unexpected argument '%s'\n",
			argv[optind]);
		return -1;
	}
	if (!o->host || !o->port || !o->cafile || !o->pub_cert || !o->pub_key ||
	    (!o->sub_dir && (!o->sub_cert || !o->sub_key)) || !o->subscribers ||
	    !o->bytes || !o->msg_size) {
		fprintf(stderr, "floor: --host, --port, --cafile, --pub-cert, "
				"--pub-key, --sub-cert and --sub-key (or "
				"--sub-cert-dir), --subscribers, --bytes and "
				"--msg-size are required (see --help)\n");
		return -1;
	}
	if (strlen(o->topic) + 8 > TOPIC_MAX) {
		fprintf(stderr, "floor: --topic is too long\n");
		return -1;
	}
	return 0;
}

static int is_crt(const struct dirent *e)
{
	size_t n = strlen(e->d_name);
	return n > 4 && strcmp(e->d_name + n - 4, ".crt") == 0;
}

/* --sub-cert-dir: subscriber i gets the i-th DIR/NAME.crt (name order) and
 * DIR/NAME.key. */
static int sub_certs(struct flr *f)
{
	struct dirent **list = NULL;
	int n = scandir(f->o.sub_dir, &list, is_crt, alphasort), rc = -1;
	if (n < 0) {
		fprintf(stderr, "floor: %s: %s\n", f->o.sub_dir,
			strerror(errno));
		return -1;
	}
	if ((unsigned long)n < f->o.subscribers) {
		fprintf(stderr, "floor: %s has %d certificates, %lu needed\n",
			f->o.sub_dir, n, f->o.subscribers);
		goto out;
	}
	for (unsigned long i = 0; i < f->o.subscribers; i++) {
		char path[PATH_MAX];
		size_t len = strlen(list[i]->d_name) - 4;
		int w = snprintf(path, sizeof(path), "%s/%.*s.key",
				 f->o.sub_dir, (int)len, list[i]->d_name);
		if (w < 0 || (size_t)w >= sizeof(path))
			goto out;
		f->subs[i].key = strdup(path);
		memcpy(path + w - 4, ".crt", 4);
		f->subs[i].cert = strdup(path);
		if (!f->subs[i].key || !f->subs[i].cert)
			goto out;
	}
	rc = 0;
out:
	for (int i = 0; i < n; i++)
		free(list[i]);
	free(list);
	return rc;
}

static void sub_certs_free(struct flr *f)
{
	for (unsigned long i = 0; f->subs && i < f->o.subscribers; i++) {
		free(f->subs[i].cert);
		free(f->subs[i].key);
	}
}

/* Each client holds a socket and libmosquitto's socket pair. */
static int raise_nofile(unsigned long n)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < n * 3 + 64) {
		fprintf(stderr,
			"floor: %lu subscribers need about %lu file descriptors, "
			"the limit is %llu\n",
			n, n * 3 + 64, (unsigned long long)rl.rlim_cur);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct mq_cbs pub_cbs = {.on_connect = pub_connect,
					      .on_disconnect = pub_disconnect};
	struct flr f = {0};
	uv_loop_t loop;
	char id[48];
	int rc = parse_args(argc, argv, &f.o);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (raise_nofile(f.o.subscribers) != 0)
		return 1;
	log_init("floor", LOG_LVL_WARN);
	signal(SIGPIPE, SIG_IGN);
	snprintf(f.t_probe, sizeof(f.t_probe), "%s/probe", f.o.topic);
	snprintf(f.t_data, sizeof(f.t_data), "%s/data", f.o.topic);
	snprintf(f.t_sub, sizeof(f.t_sub), "%s/#", f.o.topic);
	f.subs = calloc(f.o.subscribers, sizeof(*f.subs));
	if (f.subs && f.o.sub_dir && sub_certs(&f) != 0) {
		sub_certs_free(&f);
		free(f.subs);
		return 1;
	}
	if (!f.subs || uv_loop_init(&loop) != 0) {
		fprintf(stderr, "floor: out of memory\n");
		sub_certs_free(&f);
		free(f.subs);
		return 1;
	}
	mosquitto_lib_init();
	f.loop = &loop;
	f.status = 1;
	uv_timer_init(&loop, &f.stagger);
	uv_timer_init(&loop, &f.probe);
	uv_timer_init(&loop, &f.deadline);
	uv_signal_init(&loop, &f.sig_int);
	uv_signal_init(&loop, &f.sig_term);
	f.stagger.data = f.probe.data = f.deadline.data = &f;
	f.sig_int.data = f.sig_term.data = &f;
	uv_signal_start(&f.sig_int, on_signal, SIGINT);
	uv_signal_start(&f.sig_term, on_signal, SIGTERM);
	uv_timer_start(&f.deadline, deadline_cb, f.o.timeout_s * 1000, 0);
	f.t0_ns = f.t_stagger_ns = uv_hrtime();
	snprintf(id, sizeof(id), "bench-floor-%d-pub", (int)uv_os_getpid());
	if (new_client(&f, id, f.o.pub_cert, f.o.pub_key, &pub_cbs, &f,
		       &f.pub) != 0) {
		f.pub = NULL;
		finish(&f, 1);
	} else {
		uv_timer_start(&f.stagger, stagger_cb, 0,
			       f.o.stagger_ms ? f.o.stagger_ms : 1);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		fprintf(stderr, "floor: event loop closed with handles open\n");
	mosquitto_lib_cleanup();
	sub_certs_free(&f);
	free(f.subs);
	return f.status;
}
