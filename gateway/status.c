/* ota-gateway status: read the ledger (LMDB, read-only) while the gateway
 * runs, and print releases and devices as a table or JSON. */
#include <jansson.h>
#include <limits.h>
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
    {0}};

struct collect {
	json_t *arr;
};

static int collect_cb(void *ud, const void *key, size_t klen,
		      const char *val, size_t vlen)
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

/* Release id -> fragment size, for bytes and rates. */
static long long frag_size_of(json_t *rels, const char *id)
{
	size_t i;
	json_t *r;
	json_array_foreach(rels, i, r) if (!strcmp(jstr(r, "release"), id))
	    return jint(r, "fragment_size", 0);
	return 0;
}

static void print_wide(json_t *rels, json_t *devs)
{
	size_t i;
	json_t *o;
	long long now = (long long)time(NULL) * 1000;
	printf("\nDEVICES\n%-12s %-8s %-11s %-27s %10s %11s  %s\n", "DEVICE",
	       "VERSION", "STATE", "PROGRESS", "BYTES", "RATE", "LAST ERROR");
	json_array_foreach(devs, i, o)
	{
		long long acked, n;
		double fs = (double)frag_size_of(rels, jstr(o, "release"));
		frags_of(o, &acked, &n);
		char bar[28] = "-", bytes[24] = "-", rate[24] = "-";
		if (n > 0) {
			int fill = (int)(20 * acked / n);
			for (int k = 0; k < 20; k++)
				bar[k] = k < fill ? '#' : '.';
			snprintf(bar + 20, sizeof(bar) - 20, " %3lld%%",
				 100 * acked / n);
			fmt_bytes(bytes, sizeof(bytes), (double)acked * fs);
			long long t0 = jint(o, "offered_ms", 0);
			long long t1 = jint(o, "transferred_ms", 0);
			if (!t1)
				t1 = now;
			if (t0 && t1 > t0) {
				fmt_bytes(rate, sizeof(rate) - 2,
					  (double)acked * fs * 1000.0 /
					      ((double)t1 - (double)t0));
				strncat(rate, "/s", sizeof(rate) - strlen(rate) - 1);
			}
		}
		printf("%-12s %-8s %-11s %-27s %10s %11s  %s\n",
		       jstr(o, "device"), jstr(o, "version"), jstr(o, "state"),
		       bar, bytes, rate, jstr(o, "error"));
	}
}

static void print_devices(json_t *devs)
{
	size_t i;
	json_t *o;
	/* 80 columns: DONE is acknowledged fragments, RESNT fragments sent
	 * again; the stage timings are the device's own measurements. */
	printf("\nDEVICES\n%-10s %-8s %-11s %4s %5s %7s %6s %7s %7s %6s\n",
	       "DEVICE", "VERSION", "STATE", "DONE", "RESNT", "DOWNLD",
	       "VERIFY", "INSTALL", "RESTART", "TOTAL");
	json_array_foreach(devs, i, o)
	{
		long long acked, n;
		char done[8] = "-", t[5][16];
		frags_of(o, &acked, &n);
		if (n > 0)
			snprintf(done, sizeof(done), "%lld%%", 100 * acked / n);
		json_t *tm = json_object_get(o, "timings");
		fmt_ms(t[0], 16, tm, "download_ms");
		fmt_ms(t[1], 16, tm, "verify_ms");
		fmt_ms(t[2], 16, tm, "install_ms");
		fmt_ms(t[3], 16, tm, "restart_ms");
		fmt_ms(t[4], 16, tm, "total_ms");
		printf("%-10s %-8s %-11s %4s %5lld %7s %6s %7s %7s %6s\n",
		       jstr(o, "device"), jstr(o, "version"), jstr(o, "state"),
		       done, jint(o, "frags_resent", 0), t[0], t[1], t[2], t[3],
		       t[4]);
		if (jstr(o, "error")[0])
			printf("  %s: error: %s\n", jstr(o, "device"),
			       jstr(o, "error"));
	}
}

void gw__status_print(json_t *rels, json_t *devs, json_t *events, bool wide)
{
	size_t i;
	json_t *o;
	printf("RELEASES\n%-16s %-10s %-8s %9s %-7s %5s %5s %4s %6s\n",
	       "RELEASE", "PRODUCT", "VERSION", "SIZE", "STATE", "START", "OK",
	       "FAIL", "ACTIVE");
	json_array_foreach(rels, i, o)
	{
		json_t *c = json_object_get(o, "campaign");
		const char *st = jstr(c, "state");
		printf("%-16s %-10s %-8s %9lld %-7s %5lld %5lld %4lld %6lld\n",
		       jstr(o, "release"), jstr(o, "product"),
		       jstr(o, "version"), jint(o, "size", 0),
		       st[0] ? st : "rolling", jint(c, "started", 0),
		       jint(c, "committed", 0), jint(c, "failed", 0),
		       jint(c, "active", 0));
		if (jstr(c, "pause_reason")[0])
			printf("  %s: %s: %s\n", jstr(o, "release"),
			       st[0] ? st : "paused", jstr(c, "pause_reason"));
	}
	if (wide)
		print_wide(rels, devs);
	else
		print_devices(devs);
	if (json_array_size(events)) {
		printf("\nEVENTS\n");
		json_array_foreach(events, i, o)
		{
			long long ts = jint(o, "ts", 0);
			time_t sec = (time_t)(ts / 1000);
			struct tm tm;
			char when[32];
			gmtime_r(&sec, &tm);
			strftime(when, sizeof(when), "%m-%d %H:%M:%S", &tm);
			printf("%s.%03lld %-16s %-12s %-16s %s\n", when,
			       ts % 1000,
			       jstr(o, "event"), jstr(o, "device"),
			       jstr(o, "release"), jstr(o, "detail"));
		}
	}
}

static int status_once(const struct status_opts *op)
{
	struct status_opts o = *op;
	char err[512];
	struct store *db;
	struct store_opts so = {.readonly = true};
	if (store_open(o.db, &so, &db, err, sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway status: %s\n", err);
		return 1;
	}
	struct collect rels = {json_array()}, devs = {json_array()},
		       evs = {json_array()};
	int rc = store_foreach(db, STORE_RELEASES, collect_cb, &rels);
	if (rc == 0)
		rc = store_foreach(db, STORE_DEVICES, collect_cb, &devs);
	if (rc == 0 && o.events)
		rc = store_foreach_last_events(db, o.events, collect_cb, &evs);
	store_close(db);
	if (rc != 0) {
		fprintf(stderr, "ota-gateway status: reading %s: %s\n", o.db,
			store_strerror(rc));
		rc = 1;
		goto out;
	}
	if (o.json) {
		/* Drop the bulky signed manifest from the release listing. */
		size_t i;
		json_t *r;
		json_array_foreach(rels.arr, i, r) json_object_del(r, "manifest");
		json_t *all = json_pack("{s:O,s:O,s:O}", "releases", rels.arr,
					"devices", devs.arr, "events", evs.arr);
		char *s = json_dumps(all, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(all);
	} else {
		gw__status_print(rels.arr, devs.arr, evs.arr, o.wide);
	}
out:
	json_decref(rels.arr);
	json_decref(devs.arr);
	json_decref(evs.arr);
	return rc;
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
		       "                          [--watch SECS]\n\noptions:\n");
		conf_print_help(status_keys);
		printf("\nexamples:\n  ota-gateway status --db "
		       "/var/lib/ota-gateway/db --events 20\n"
		       "  ota-gateway status --db /var/lib/ota-gateway/db "
		       "--wide --watch 1\n"
		       "  ota-gateway status --db /var/lib/ota-gateway/db --json "
		       "| jq '.devices[0]'\n");
		return 0;
	}
	if (!o.watch)
		return status_once(&o);
	for (;;) {
		if (isatty(STDOUT_FILENO))
			printf("\033[H\033[2J");
		time_t now = time(NULL);
		printf("ota-gateway status --db %s   %s", o.db, ctime(&now));
		int rc = status_once(&o);
		fflush(stdout);
		if (rc != 0)
			return rc;
		sleep(o.watch);
	}
}
