/* ota-gateway status: read the ledger (LMDB, read-only) while the gateway
 * runs, and print releases and devices as a table or JSON. */
#include <fnmatch.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "common/conf.h"
#include "gateway/gw.h"

struct status_opts {
	char db[PATH_MAX];
	bool json;
	uint32_t events;
	uint32_t watch;
	bool wide;
	bool all;
	char state[32];
	char release[PROTO_RELEASE_HEX_LEN + 1];
	char group[PROTO_ID_MAX + 1];
	const char *pattern; /* device name pattern (fnmatch), or NULL */
	int rows, cols;	     /* 0: no limit */
};

static const struct conf_key status_keys[] = {
    {"db", CONF_STR, offsetof(struct status_opts, db), PATH_MAX, 0, 0,
     "ledger directory (the gateway's db_dir)"},
    {"json", CONF_BOOL, offsetof(struct status_opts, json), 0, 0, 0,
     "print one JSON object: releases, devices, events"},
    {"events", CONF_U32, offsetof(struct status_opts, events), 0, 0, 10000,
     "also print the last N events"},
    {"wide", CONF_BOOL, offsetof(struct status_opts, wide), 0, 0, 0,
     "devices with progress bar, bytes, transfer rate and last error"},
    {"watch", CONF_U32, offsetof(struct status_opts, watch), 0, 0, 3600,
     "redraw every N seconds until interrupted"},
    {"state", CONF_STR, offsetof(struct status_opts, state), 32, 0, 0,
     "only devices in this state (downloading, failed, aborted, ...)"},
    {"release", CONF_STR, offsetof(struct status_opts, release),
     PROTO_RELEASE_HEX_LEN + 1, 0, 0,
     "only devices whose state refers to this release (a prefix will do)"},
    {"group", CONF_STR, offsetof(struct status_opts, group), PROTO_ID_MAX + 1,
     0, 0, "only devices of this group"},
    {"all", CONF_BOOL, offsetof(struct status_opts, all), 0, 0, 0,
     "every device, even past the terminal's height"},
    {0}};

struct collect {
	json_t *arr;
};

static int collect_cb(void *ud, const void *key, size_t klen, const char *val,
		      size_t vlen)
{
	(void)key;
	(void)klen;
	struct collect *c = ud;
	json_t *o = json_loadb(val, vlen, 0, NULL);
	if (o)
		json_array_append_new(c->arr, o);
	return 0;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static long long jint(json_t *o, const char *k, long long dflt)
{
	json_t *v = json_object_get(o, k);
	return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

/* A device's acknowledged and total fragments, 0 <= acked <= n: a damaged
 * record shows as 0% or 100%, never as an overflow. */
static void frags_of(json_t *o, long long *acked, long long *n)
{
	*n = jint(o, "fragments", 0);
	*acked = jint(o, "acked", 0);
	if (*n < 0 || *n > PROTO_FRAGS_MAX)
		*n = 0;
	if (*acked < 0)
		*acked = 0;
	if (*acked > *n)
		*acked = *n;
}

static void fmt_ms(char *buf, size_t n, json_t *t, const char *k)
{
	long long v = jint(t, k, -1);
	if (v < 0)
		snprintf(buf, n, "-");
	else if (v < 1000)
		snprintf(buf, n, "%lldms", v);
	else if (v < 100000)
		snprintf(buf, n, "%.2fs", (double)v / 1000.0);
	else
		snprintf(buf, n, "%llds", v / 1000);
}

static void fmt_bytes(char *buf, size_t n, double b)
{
	const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

/* Release id -> its record, or NULL. */
static json_t *release_of(json_t *rels, const char *id)
{
	size_t i;
	json_t *r;
	if (!id[0])
		return NULL;
	json_array_foreach(rels, i,
			   r) if (!strcmp(jstr(r, "release"), id)) return r;
	return NULL;
}

/* What a device row shows as its state: a download the gateway aborted
 * is "aborted", not a stale "downloading 67%". */
static const char *shown_state(json_t *rels, json_t *d)
{
	const char *st = jstr(d, "state");
	json_t *r = release_of(rels, jstr(d, "release"));
	const char *cst = jstr(json_object_get(r, "campaign"), "state");
	if (!strcmp(st, "downloading") && !strcmp(cst, "aborted"))
		return "aborted";
	return st;
}

static bool under_way(const char *st)
{
	return !strcmp(st, "downloading") || !strcmp(st, "verifying") ||
	       !strcmp(st, "installing") || !strcmp(st, "restarting");
}

/* Does the device pass --state, --release, --group and the pattern? */
static bool dev_selected(const struct status_opts *o, json_t *rels, json_t *d)
{
	if (o->state[0] && strcmp(shown_state(rels, d), o->state) != 0)
		return false;
	if (o->release[0] &&
	    strncmp(jstr(d, "release"), o->release, strlen(o->release)) != 0)
		return false;
	if (o->group[0] && strcmp(jstr(d, "group"), o->group) != 0)
		return false;
	return !o->pattern || fnmatch(o->pattern, jstr(d, "device"), 0) == 0;
}

static int cmp_created_desc(const void *a, const void *b)
{
	long long x = jint(*(json_t *const *)a, "created_ms", 0);
	long long y = jint(*(json_t *const *)b, "created_ms", 0);
	return x < y ? 1 : x > y ? -1 : 0;
}

/* Sort a JSON array in place with cmp over its elements. */
static void sort_array(json_t *arr, int (*cmp)(const void *, const void *))
{
	size_t n = json_array_size(arr), i;
	json_t **v = n ? calloc(n, sizeof(*v)) : NULL;
	if (!v)
		return;
	for (i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(arr, i));
	qsort(v, n, sizeof(*v), cmp);
	json_array_clear(arr);
	for (i = 0; i < n; i++)
		json_array_append_new(arr, v[i]);
	free(v);
}

/* Print at most cols columns of a line (0: no limit). */
__attribute__((format(printf, 2, 3))) static void line(int cols,
						       const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (cols > 0 && (int)strlen(buf) > cols)
		buf[cols] = '\0';
	printf("%s\n", buf);
}

static void fmt_when(char *buf, size_t n, long long ms)
{
	time_t sec = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&sec, &tm);
	strftime(buf, n, "%m-%d %H:%M:%S", &tm);
}

/* One line per campaign, newest first, at most max of them. */
static int print_campaigns(const struct status_opts *o, json_t *rels, int max)
{
	size_t i;
	json_t *r;
	int used = 1;
	line(o->cols, "CAMPAIGNS%-7s %-10s %-8s %-8s %5s %5s %4s %6s  %s", "",
	     "PRODUCT", "VERSION", "STATE", "START", "OK", "FAIL", "ACTIVE",
	     "SINCE / ENDED (UTC)");
	json_array_foreach(rels, i, r)
	{
		if (max > 0 && used >= max) {
			line(o->cols,
			     "  ... and %zu older releases (--json "
			     "lists them)",
			     json_array_size(rels) - i);
			return used + 1;
		}
		json_t *c = json_object_get(r, "campaign");
		const char *st = jstr(c, "state");
		char when[32], end[48] = "";
		fmt_when(when, sizeof(when), jint(r, "created_ms", 0));
		if (jint(c, "finished_ms", 0)) {
			char e[32];
			fmt_when(e, sizeof(e), jint(c, "finished_ms", 0));
			snprintf(end, sizeof(end), " .. %s", e);
		}
		line(o->cols,
		     "%-16s %-10s %-8s %-8s %5lld %5lld %4lld %6lld  %s%s",
		     jstr(r, "release"), jstr(r, "product"), jstr(r, "version"),
		     st[0] ? st : "rolling", jint(c, "started", 0),
		     jint(c, "committed", 0), jint(c, "failed", 0),
		     jint(c, "active", 0), when, end);
		used++;
		if (jstr(c, "pause_reason")[0]) {
			line(o->cols, "  %s: %s: %s", jstr(r, "release"),
			     st[0] ? st : "paused", jstr(c, "pause_reason"));
			used++;
		}
	}
	return used;
}

/* Per-state counts of the selected devices, into counts (an object). */
static void count_states(const struct status_opts *o, json_t *rels,
			 json_t *devs, json_t *counts)
{
	size_t i;
	json_t *d;
	json_array_foreach(devs, i, d)
	{
		if (!dev_selected(o, rels, d))
			continue;
		const char *st = shown_state(rels, d);
		json_object_set_new(counts, st,
				    json_integer(jint(counts, st, 0) + 1));
	}
}

/* "50: 3 downloading, 47 committed" */
static void counts_text(json_t *counts, char *buf, size_t n)
{
	const char *k;
	json_t *v;
	long long total = 0;
	const char *sep = ": ";
	json_object_foreach(counts, k, v) total += json_integer_value(v);
	snprintf(buf, n, "%lld", total);
	json_object_foreach(counts, k, v)
	{
		size_t used = strlen(buf);
		snprintf(buf + used, n - used, "%s%lld %s", sep,
			 (long long)json_integer_value(v), k);
		sep = ", ";
	}
}

static void device_row(const struct status_opts *o, json_t *rels, json_t *d)
{
	long long acked, n;
	const char *st = shown_state(rels, d);
	frags_of(d, &acked, &n);
	char rel[9];
	snprintf(rel, sizeof(rel), "%s", jstr(d, "release"));
	if (o->wide) {
		double fs = (double)jint(release_of(rels, jstr(d, "release")),
					 "fragment_size", 0);
		long long now = (long long)time(NULL) * 1000;
		char bar[28] = "-", bytes[24] = "-", rate[24] = "-";
		if (n > 0) {
			int fill = (int)(20 * acked / n);
			for (int k = 0; k < 20; k++)
				bar[k] = k < fill ? '#' : '.';
			snprintf(bar + 20, sizeof(bar) - 20, " %3lld%%",
				 100 * acked / n);
			fmt_bytes(bytes, sizeof(bytes), (double)acked * fs);
			long long t0 = jint(d, "offered_ms", 0);
			long long t1 = jint(d, "transferred_ms", 0);
			/* A rate only while it transfers, or for a finished
			 * transfer: never a stale one. */
			if (!t1 && under_way(st))
				t1 = now;
			if (t0 && t1 > t0) {
				fmt_bytes(rate, sizeof(rate) - 2,
					  (double)acked * fs * 1000.0 /
					      ((double)t1 - (double)t0));
				strncat(rate, "/s",
					sizeof(rate) - strlen(rate) - 1);
			}
		}
		line(o->cols, "%-12s %-8s %-11s %-8s %-27s %10s %11s  %s",
		     jstr(d, "device"), jstr(d, "version"), st, rel, bar, bytes,
		     rate, jstr(d, "error"));
		return;
	}
	char done[8] = "-", t[5][16];
	if (n > 0)
		snprintf(done, sizeof(done), "%lld%%", 100 * acked / n);
	json_t *tm = json_object_get(d, "timings");
	fmt_ms(t[0], 16, tm, "download_ms");
	fmt_ms(t[1], 16, tm, "verify_ms");
	fmt_ms(t[2], 16, tm, "install_ms");
	fmt_ms(t[3], 16, tm, "restart_ms");
	fmt_ms(t[4], 16, tm, "total_ms");
	/* How the update travelled and its bytes on the wire (6.4). */
	char wire[16] = "-";
	if (jint(d, "wire_bytes", 0) > 0)
		fmt_bytes(wire, sizeof(wire), (double)jint(d, "wire_bytes", 0));
	const char *enc = jstr(d, "encoding");
	line(o->cols,
	     "%-10s %-8s %-11s %-8s %4s %5lld %7s %6s %7s %7s %6s %-5s %9s",
	     jstr(d, "device"), jstr(d, "version"), st, rel, done,
	     jint(d, "frags_resent", 0), t[0], t[1], t[2], t[3], t[4],
	     rel[0] && strcmp(rel, "-") && enc[0] ? enc : "-", wire);
	if (jstr(d, "error")[0])
		line(o->cols, "  %s: error: %s", jstr(d, "device"),
		     jstr(d, "error"));
}

/* Devices under way first, then the rest, as many as fit in `room`
 * lines (0: all); the rest summarised in one line. */
static void print_devices(const struct status_opts *o, json_t *rels,
			  json_t *devs, int room)
{
	size_t i;
	json_t *d, *rest = json_object();
	int shown = 0, left = 0;
	if (o->wide)
		line(o->cols, "%-12s %-8s %-11s %-8s %-27s %10s %11s  %s",
		     "DEVICE", "VERSION", "STATE", "RELEASE", "PROGRESS",
		     "BYTES", "RATE", "LAST ERROR");
	else
		line(o->cols,
		     "%-10s %-8s %-11s %-8s %4s %5s %7s %6s %7s %7s "
		     "%6s %-5s %9s",
		     "DEVICE", "VERSION", "STATE", "RELEASE", "DONE", "RESNT",
		     "DOWNLD", "VERIFY", "INSTALL", "RESTART", "TOTAL", "SENT",
		     "WIRE");
	for (int pass = 0; pass < 2; pass++) {
		json_array_foreach(devs, i, d)
		{
			if (!dev_selected(o, rels, d))
				continue;
			const char *st = shown_state(rels, d);
			if (under_way(st) != (pass == 0))
				continue;
			int need = 1 + (!o->wide && jstr(d, "error")[0]);
			if (room > 0 && shown + need > room - 1) {
				json_object_set_new(rest, st,
						    json_integer(jint(rest, st,
								      0) +
								 1));
				left++;
				continue;
			}
			device_row(o, rels, d);
			shown += need;
		}
	}
	if (left) {
		char buf[512];
		counts_text(rest, buf, sizeof(buf));
		line(o->cols,
		     "... %d more not shown (%s); see --all, --state, "
		     "--release, --group, a name pattern",
		     left, strchr(buf, ':') ? strchr(buf, ':') + 2 : buf);
	}
	json_decref(rest);
}

static void print_events(const struct status_opts *o, json_t *events)
{
	size_t i;
	json_t *e;
	line(o->cols, "EVENTS");
	json_array_foreach(events, i, e)
	{
		long long ts = jint(e, "ts", 0);
		char when[32];
		fmt_when(when, sizeof(when), ts);
		line(o->cols, "%s.%03lld %-16s %-12s %-16s %s", when, ts % 1000,
		     jstr(e, "event"), jstr(e, "device"), jstr(e, "release"),
		     jstr(e, "detail"));
	}
}

static void print_table(const struct status_opts *o, json_t *rels, json_t *devs,
			json_t *events)
{
	int rows = o->all ? 0 : o->rows;
	int ev = json_array_size(events) ? 1 + (int)json_array_size(events) : 0;
	/* Campaigns get at most a third of the screen, devices the rest. */
	int used = print_campaigns(o, rels, rows > 0 ? rows / 3 : 0);
	json_t *counts = json_object();
	char buf[512];
	count_states(o, rels, devs, counts);
	counts_text(counts, buf, sizeof(buf));
	line(o->cols, "DEVICES %s", buf);
	json_decref(counts);
	used += 1 + (o->watch ? 1 : 0);
	int room = rows > 0 ? rows - used - ev - 1 : 0;
	print_devices(o, rels, devs, rows > 0 ? (room > 2 ? room : 2) : 0);
	if (ev)
		print_events(o, events);
}

/* The table as `status` prints it, every device, no terminal limits
 * (fuzz_ledger drives it with damaged records). */
void gw__status_print(json_t *rels, json_t *devs, json_t *events, bool wide)
{
	struct status_opts o = {.wide = wide};
	print_table(&o, rels, devs, events);
}

static void print_json(const struct status_opts *o, json_t *rels, json_t *devs,
		       json_t *evs)
{
	size_t i;
	json_t *r, *d, *sel = json_array(), *counts = json_object();
	/* Drop the bulky signed manifest from the release listing. */
	json_array_foreach(rels, i, r) json_object_del(r, "manifest");
	json_array_foreach(devs, i, d)
	{
		if (!dev_selected(o, rels, d))
			continue;
		json_object_set_new(d, "shown_state",
				    json_string(shown_state(rels, d)));
		json_array_append(sel, d);
	}
	count_states(o, rels, devs, counts);
	json_t *all = json_pack("{s:O,s:o,s:O,s:o}", "releases", rels,
				"devices", sel, "events", evs, "counts",
				counts);
	char *s = json_dumps(all, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	printf("%s\n", s ? s : "{}");
	free(s);
	json_decref(all);
}

static int status_once(const struct status_opts *op)
{
	struct status_opts o = *op;
	char err[512];
	struct store *db;
	struct store_opts so = {.readonly = true};
	/* An empty ledger (a gateway killed before its first commit) lists
	 * nothing. */
	int rc = store_open(o.db, &so, &db, err, sizeof(err));
	if (rc != 0 && rc != STORE_EEMPTY) {
		fprintf(stderr, "ota-gateway status: %s\n", err);
		return 1;
	}
	struct collect rels = {json_array()}, devs = {json_array()},
		       evs = {json_array()};
	if (rc == 0) {
		rc = store_foreach(db, STORE_RELEASES, collect_cb, &rels);
		if (rc == 0)
			rc =
			    store_foreach(db, STORE_DEVICES, collect_cb, &devs);
		if (rc == 0 && o.events)
			rc = store_foreach_last_events(db, o.events, collect_cb,
						       &evs);
		store_close(db);
	} else {
		rc = 0;
	}
	if (rc != 0) {
		fprintf(stderr, "ota-gateway status: reading %s: %s\n", o.db,
			store_strerror(rc));
		rc = 1;
		goto out;
	}
	sort_array(rels.arr, cmp_created_desc);
	if (o.json)
		print_json(&o, rels.arr, devs.arr, evs.arr);
	else
		print_table(&o, rels.arr, devs.arr, evs.arr);
out:
	json_decref(rels.arr);
	json_decref(devs.arr);
	json_decref(evs.arr);
	return rc;
}

/* The terminal's size: $LINES / $COLUMNS, else the tty's, else none. */
static void term_size(struct status_opts *o)
{
	struct winsize ws;
	const char *l = getenv("LINES"), *c = getenv("COLUMNS");
	bool tty = isatty(STDOUT_FILENO) &&
		   ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0;
	o->rows = l && *l ? (int)strtol(l, NULL, 10) : tty ? ws.ws_row : 0;
	o->cols = c && *c ? (int)strtol(c, NULL, 10) : tty ? ws.ws_col : 0;
	if (o->rows < 0)
		o->rows = 0;
	if (o->cols < 0)
		o->cols = 0;
}

int gw__cmd_status(int argc, char **argv)
{
	struct status_opts o = {.db = "ota-gateway-db"};
	struct conf_cli cli;
	char err[512];
	if (conf_from_argv(argc, argv, status_keys, &o, &cli, err,
			   sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway status: %s\n", err);
		return 2;
	}
	if (cli.help) {
		printf("usage: ota-gateway status [--db DIR] [--json] [--wide] "
		       "[--events N]\n"
		       "         [--watch SECS] [--state S] [--release ID] "
		       "[--group G] [--all]\n         [PATTERN]\n\n"
		       "One line per campaign (newest first) and the device "
		       "count per state, then\nthe devices: those under way "
		       "first, as many as fit the terminal ($LINES,\n$COLUMNS "
		       "or the tty's size), the rest summarised. PATTERN "
		       "selects devices by\nname (shell pattern, e.g. "
		       "'dev-0*').\n\noptions:\n");
		struct status_opts d = {.db = "ota-gateway-db"};
		conf_print_help_defaults(status_keys, &d);
		printf("\nRESNT and the JSON's frags_sent and frags_resent count "
		       "fragments sent, best\neffort: they are saved with the "
		       "ledger's batched commits, so what a killed\ngateway "
		       "sent since its last commit is not counted (a lower "
		       "bound of the\ntraffic). DONE (acked) is what devices "
		       "confirmed; it holds across crashes.\nSENT is how the "
		       "update travelled (full, zstd: compressed, delta: from "
		       "the image\nthe device ran) and WIRE its fragment bytes "
		       "(the JSON's encoding and\nwire_bytes), as best effort "
		       "as RESNT.\n");
		printf("\nexamples:\n  ota-gateway status --db "
		       "/var/lib/ota-gateway/db --events 20\n"
		       "  ota-gateway status --db /var/lib/ota-gateway/db "
		       "--wide --watch 1\n"
		       "  ota-gateway status --db /var/lib/ota-gateway/db "
		       "--state failed 'dev-1*'\n"
		       "  ota-gateway status --db /var/lib/ota-gateway/db --json "
		       "| jq '.devices[0]'\n");
		return 0;
	}
	if (cli.nargs > 1) {
		fprintf(stderr,
			"ota-gateway status: one name pattern at most\n");
		return 2;
	}
	o.pattern = cli.nargs ? cli.args[0] : NULL;
	term_size(&o);
	if (!o.watch)
		return status_once(&o);
	for (;;) {
		/* JSON: one document per refresh, nothing else. */
		if (!o.json) {
			if (isatty(STDOUT_FILENO))
				printf("\033[H\033[2J");
			time_t now = time(NULL);
			printf("ota-gateway status --db %s   %s", o.db,
			       ctime(&now));
		}
		int rc = status_once(&o);
		fflush(stdout);
		if (rc != 0)
			return rc;
		sleep(o.watch);
	}
}
