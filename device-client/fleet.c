/* Fleet mode: N struct dev on one loop, their connections staggered, and a
 * summary line every 5 s: devices per state, connections, memory. */
#include "device-client/fleet.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define SUMMARY_EVERY_MS 5000
#define WATCH_EVERY_MS 100
/* libmosquitto holds a socket and a socket pair per client; the device
 * holds its download file while it downloads. */
#define FDS_PER_DEVICE 4
#define FDS_RESERVE 64 /* certificates, state files, thread pool, stdio */
#define ID_WIDTH_MAX 10

struct fleet {
	uv_loop_t *loop;
	struct fleet_config fc;
	struct dev *devs;   /* fc.n of them */
	uint32_t n_init;    /* devs[0, n_init) went through dev_init */
	uint32_t n_started; /* devs[0, n_started) went through dev_start */
	uint32_t n_start_failed;
	uint64_t start_ns, start_max_ns; /* time spent in dev_start */
	uint64_t t0_ms;			 /* fleet_start */
	uint64_t all_connected_ms;	 /* since t0; 0 = not yet */
	long base_rss_kib; /* peak RSS before the devices existed */
	uv_timer_t stagger, watch, summary;
	bool stopping;
};

/* Fleet lines are the point of a load test: printed whatever log_level
 * says, in the log's own format. */
__attribute__((format(printf, 1, 2))) static void report(const char *fmt, ...)
{
	char msg[1024], when[32];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ld ota-device fleet %s\n", when,
		ts.tv_nsec / 1000000, msg);
}

static long peak_rss_kib(void)
{
	struct rusage ru;
	return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

static long rss_kib(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = 0;
	fclose(f);
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* "connected=.. idle=.. downloading=.. ... rss_kib=.. peak_rss_kib=..
 * per_device_kib=..": the line a load test reads. */
static void summary_line(struct fleet *f, const char *what)
{
	uint32_t count[PROTO_ST__COUNT] = {0}, connected = 0;
	/* Connection attempts the devices' current connections took: after
	 * an update, each committed device's first connection since its
	 * restart (a restart makes a new client). */
	unsigned att_max = 0, att_over3 = 0;
	char states[512];
	size_t len = 0;
	for (uint32_t i = 0; i < f->n_init; i++) {
		const struct dev *d = &f->devs[i];
		if (d->st < PROTO_ST__COUNT)
			count[d->st]++;
		if (d->mq && mq_connected(d->mq)) {
			unsigned a = mq_connect_attempts(d->mq);
			connected++;
			att_max = a > att_max ? a : att_max;
			att_over3 += a > 3;
		}
	}
	states[0] = '\0';
	for (int s = 0; s < PROTO_ST__COUNT && len < sizeof(states); s++) {
		int w = snprintf(states + len, sizeof(states) - len, " %s=%u",
				 proto_state_name((enum proto_state)s),
				 count[s]);
		if (w > 0)
			len += (size_t)w;
	}
	long peak = peak_rss_kib();
	long per = f->fc.n ? (peak - f->base_rss_kib) / (long)f->fc.n : 0;
	unsigned long full, resumed;
	mq_tls_handshakes(&full, &resumed);
	report("%s devices=%u started=%u connected=%u%s rss_kib=%ld "
	       "peak_rss_kib=%ld per_device_kib=%ld connect_attempts_max=%u "
	       "connect_attempts_over3=%u tls_full=%lu tls_resumed=%lu",
	       what, f->fc.n, f->n_started, connected, states, rss_kib(), peak,
	       per, att_max, att_over3, full, resumed);
}

static void summary_cb(uv_timer_t *t) { summary_line(t->data, "summary"); }

static void watch_cb(uv_timer_t *t)
{
	struct fleet *f = t->data;
	if (f->n_started < f->fc.n)
		return;
	for (uint32_t i = 0; i < f->fc.n; i++)
		if (!f->devs[i].mq || !mq_connected(f->devs[i].mq))
			return;
	f->all_connected_ms = util_mono_ms() - f->t0_ms;
	if (f->all_connected_ms == 0)
		f->all_connected_ms = 1;
	report("all_connected devices=%u connect_ms=%llu", f->fc.n,
	       (unsigned long long)f->all_connected_ms);
	uv_timer_stop(&f->watch);
}

/* Start every device that is due: one each stagger_ms since fleet_start,
 * catching up when the loop was late. */
static void stagger_cb(uv_timer_t *h)
{
	struct fleet *f = h->data;
	uint64_t due = f->fc.n;
	if (f->fc.stagger_ms)
		due = (util_mono_ms() - f->t0_ms) / f->fc.stagger_ms + 1;
	while (f->n_started < f->fc.n && f->n_started < due) {
		struct dev *d = &f->devs[f->n_started++];
		uint64_t t = uv_hrtime();
		if (dev_start(d) != 0)
			f->n_start_failed++; /* dev_start said why */
		t = uv_hrtime() - t;
		f->start_ns += t;
		if (t > f->start_max_ns)
			f->start_max_ns = t;
	}
	if (f->n_started == f->fc.n) {
		uv_timer_stop(&f->stagger);
		/* dev_start blocks the loop (TLS context, files): show how
		 * long, since it bounds how fast a fleet can connect. */
		report("started devices=%u failed=%u start_ms=%llu "
		       "dev_start_avg_us=%llu dev_start_max_us=%llu",
		       f->fc.n, f->n_start_failed,
		       (unsigned long long)(util_mono_ms() - f->t0_ms),
		       (unsigned long long)(f->start_ns / f->fc.n / 1000),
		       (unsigned long long)(f->start_max_ns / 1000));
	}
}

/* Each device has a socket and libmosquitto's socket pair: raise the soft
 * limit to the hard one, and refuse a fleet that cannot fit. */
static int raise_nofile(uint32_t n, char *err, size_t errlen)
{
	struct rlimit rl;
	unsigned long long need = (unsigned long long)n * FDS_PER_DEVICE +
				  FDS_RESERVE;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		snprintf(err, errlen, "getrlimit(RLIMIT_NOFILE) failed");
		return -1;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		snprintf(err, errlen,
			 "a fleet of %u devices needs about %llu file "
			 "descriptors (%d per device), but the limit is %llu: "
			 "raise the hard limit (ulimit -Hn, LimitNOFILE=) or "
			 "run fewer devices",
			 n, need, FDS_PER_DEVICE,
			 (unsigned long long)rl.rlim_cur);
		return -1;
	}
	return 0;
}

static int make_id(const struct fleet_config *fc, uint32_t num, int width,
		   char *id, size_t n)
{
	int w = snprintf(id, n, "%s%0*u", fc->prefix, width, num);
	return w > 0 && (size_t)w < n && proto_id_valid(id) ? 0 : -1;
}

static int cert_paths(const struct fleet_config *fc, const char *id, char *crt,
		      char *key, size_t n)
{
	char name[PROTO_ID_MAX + 8];
	snprintf(name, sizeof(name), "%s.crt", id);
	if (util_path(crt, n, fc->cert_dir, name) != 0)
		return -1;
	snprintf(name, sizeof(name), "%s.key", id);
	return util_path(key, n, fc->cert_dir, name);
}

/* The width of the number in the ids, as certs/make-certs.sh --devices
 * chose it (3 digits, more for bigger fleets): the smallest width, from
 * what the last number needs, for which the first certificate exists. */
static int id_width(const struct fleet_config *fc, char *err, size_t errlen)
{
	char id[PROTO_ID_MAX + 1], crt[PATH_MAX], key[PATH_MAX];
	char want[PATH_MAX] = "";
	uint64_t last = (uint64_t)fc->first + fc->n - 1;
	int w = 1;
	for (uint64_t v = last; v >= 10; v /= 10)
		w++;
	for (w = w < 3 ? 3 : w; w <= ID_WIDTH_MAX; w++) {
		if (make_id(fc, fc->first, w, id, sizeof(id)) != 0 ||
		    cert_paths(fc, id, crt, key, sizeof(crt)) != 0)
			break;
		if (!want[0])
			snprintf(want, sizeof(want), "%s", crt);
		if (access(crt, R_OK) == 0)
			return w;
	}
	snprintf(err, errlen,
		 "key 'fleet_cert_dir': no certificate for the first device "
		 "(looked for %s; certs/make-certs.sh DIR --devices N makes "
		 "DIR/devices/%s001.crt ...)",
		 want[0] ? want : fc->cert_dir, fc->prefix);
	return -1;
}

static int init_device(struct fleet *f, uint32_t i, int width,
		       const struct dev_config *base, char **argv, char *err,
		       size_t errlen)
{
	struct dev_config c = *base;
	char why[512];
	if (make_id(&f->fc, f->fc.first + i, width, c.id, sizeof(c.id)) != 0) {
		snprintf(err, errlen, "device number %u makes an invalid id",
			 f->fc.first + i);
		return -1;
	}
	if (cert_paths(&f->fc, c.id, c.cert_file, c.key_file,
		       sizeof(c.cert_file)) != 0 ||
	    util_path(c.state_dir, sizeof(c.state_dir), base->state_dir,
		      c.id) != 0) {
		snprintf(err, errlen, "device %s: path too long", c.id);
		return -1;
	}
	if (access(c.cert_file, R_OK) != 0 || access(c.key_file, R_OK) != 0) {
		snprintf(err, errlen, "device %s: %s or its .key is missing",
			 c.id, c.cert_file);
		return -1;
	}
	c.restart_inproc = !c.restart_command[0];
	if (dev_init(&f->devs[i], f->loop, &c, argv, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "device %s: %s", c.id, why);
		return -1;
	}
	f->n_init++;
	return 0;
}

static void dev_stopped(struct dev *d) { (void)d; }

int fleet_new(uv_loop_t *loop, const struct fleet_config *fc,
	      const struct dev_config *base, char **argv, struct fleet **out,
	      char *err, size_t errlen)
{
	if (raise_nofile(fc->n, err, errlen) != 0)
		return -1;
	struct fleet *f = calloc(1, sizeof(*f));
	if (!f || !(f->devs = calloc(fc->n, sizeof(*f->devs)))) {
		free(f);
		snprintf(err, errlen, "out of memory for %u devices", fc->n);
		return -1;
	}
	f->loop = loop;
	f->fc = *fc;
	f->base_rss_kib = peak_rss_kib();
	int width = id_width(fc, err, errlen);
	if (width < 0)
		goto fail_devs;
	for (uint32_t i = 0; i < fc->n; i++)
		if (init_device(f, i, width, base, argv, err, errlen) != 0)
			goto fail_devs;
	uv_timer_init(loop, &f->stagger);
	uv_timer_init(loop, &f->watch);
	uv_timer_init(loop, &f->summary);
	f->stagger.data = f->watch.data = f->summary.data = f;
	*out = f;
	return 0;

fail_devs:
	/* Close what dev_init opened, so that nothing leaks. */
	for (uint32_t i = 0; i < f->n_init; i++)
		dev_stop(&f->devs[i], dev_stopped);
	uv_run(loop, UV_RUN_DEFAULT);
	free(f->devs);
	free(f);
	return -1;
}

int fleet_start(struct fleet *f)
{
	char first[PROTO_ID_MAX + 1], last[PROTO_ID_MAX + 1];
	snprintf(first, sizeof(first), "%s", f->devs[0].cfg.id);
	snprintf(last, sizeof(last), "%s", f->devs[f->fc.n - 1].cfg.id);
	report("starting devices=%u ids=%s..%s stagger_ms=%u state_dir=%s",
	       f->fc.n, first, last, f->fc.stagger_ms,
	       f->devs[0].cfg.state_dir);
	uv_update_time(f->loop);
	f->t0_ms = util_mono_ms();
	uv_timer_start(&f->stagger, stagger_cb, 0,
		       f->fc.stagger_ms ? f->fc.stagger_ms : 1);
	uv_timer_start(&f->watch, watch_cb, WATCH_EVERY_MS, WATCH_EVERY_MS);
	uv_timer_start(&f->summary, summary_cb, SUMMARY_EVERY_MS,
		       SUMMARY_EVERY_MS);
	return 0;
}

void fleet_stop(struct fleet *f)
{
	if (f->stopping)
		return;
	f->stopping = true;
	summary_line(f, "stopping");
	uv_close((uv_handle_t *)&f->stagger, NULL);
	uv_close((uv_handle_t *)&f->watch, NULL);
	uv_close((uv_handle_t *)&f->summary, NULL);
	/* A device still restarting stays down: dev_stop only takes over
	 * the end of its stop. */
	for (uint32_t i = 0; i < f->n_init; i++)
		dev_stop(&f->devs[i], dev_stopped);
}

void fleet_free(struct fleet *f)
{
	if (!f)
		return;
	if (f->all_connected_ms)
		report("connect_ms=%llu",
		       (unsigned long long)f->all_connected_ms);
	summary_line(f, "stopped");
	free(f->devs);
	free(f);
}
