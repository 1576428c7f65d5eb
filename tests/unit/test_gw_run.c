/* The gateway's lifecycle (gw_init, gw_start, gw_stop, gw_close in
 * gateway/gw.c) with devices (dev_init, dev_start, dev_stop) on one loop
 * in one process: real ledgers and stores in a temporary directory, a real
 * PKI (certs/make-certs.sh), and a broker address nobody listens on (the
 * programs keep retrying it, as they would a broker that is down). Each
 * test ends with uv_loop_close() == 0: nothing was left open; ASan's leak
 * check sees what was left allocated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mosquitto.h>

#include "device-client/dev.h"
#include "gateway/gw.h"
#include "tests/unit/fixture.h"

static char pki[128]; /* made once for the whole file */
static char pki_root[64];

static int group_setup(void **state)
{
	(void)state;
	const char *vec = getenv("OTA_VECTORS"); /* <root>/tests/vectors */
	char root[PATH_MAX] = ".", cmd[PATH_MAX + 256];
	if (vec && strlen(vec) < sizeof(root))
		snprintf(root, sizeof(root), "%s/../..", vec);
	snprintf(pki_root, sizeof(pki_root), "/tmp/ota-unit-pki.XXXXXX");
	if (!mkdtemp(pki_root))
		return -1;
	snprintf(pki, sizeof(pki), "%s/pki", pki_root);
	snprintf(cmd, sizeof(cmd),
		 "bash %s/certs/make-certs.sh %s dev-1 dev-2 >/dev/null 2>&1",
		 root, pki);
	return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	nftw(pki_root, fx__rm, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static int setup(void **state) { return fx_setup_named(state, "x"); }

/* A broker port nothing listens on. */
#define NO_BROKER 1

static void gw_cfg(struct gw_config *c, const char *dir, const char *name)
{
	gw_config_defaults(c);
	snprintf(c->broker_host, sizeof(c->broker_host), "127.0.0.1");
	c->broker_port = NO_BROKER;
	snprintf(c->ca_file, sizeof(c->ca_file), "%s/ca.crt", pki);
	snprintf(c->cert_file, sizeof(c->cert_file), "%s/gateway.crt", pki);
	snprintf(c->key_file, sizeof(c->key_file), "%s/gateway.key", pki);
	snprintf(c->publisher_key, sizeof(c->publisher_key), "%s/publisher.pub",
		 pki);
	snprintf(c->db_dir, sizeof(c->db_dir), "%s/%s-db", dir, name);
	snprintf(c->store_dir, sizeof(c->store_dir), "%s/%s-store", dir, name);
}

static void dev_cfg(struct dev_config *c, const char *dir, const char *id)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", id);
	snprintf(c->product, sizeof(c->product), "sensor");
	snprintf(c->version, sizeof(c->version), "1.0.0");
	snprintf(c->broker_host, sizeof(c->broker_host), "127.0.0.1");
	c->broker_port = NO_BROKER;
	c->keepalive_s = 30;
	c->root_threshold = 1;
	c->max_package_mb = 16;
	c->checkpoint_every = 64;
	c->health_timeout_s = 30;
	snprintf(c->ca_file, sizeof(c->ca_file), "%s/ca.crt", pki);
	snprintf(c->cert_file, sizeof(c->cert_file), "%s/devices/%s.crt", pki,
		 id);
	snprintf(c->key_file, sizeof(c->key_file), "%s/devices/%s.key", pki,
		 id);
	snprintf(c->publisher_key, sizeof(c->publisher_key), "%s/publisher.pub",
		 pki);
	snprintf(c->state_dir, sizeof(c->state_dir), "%s/%s", dir, id);
}

/* Everyone on the loop, stopped by one timer. */
struct world {
	struct gw *gw;
	struct dev *dev[2];
	size_t ndev;
	uv_timer_t stop;
	int gw_stopped, devs_stopped;
};

static void gw_stopped(struct gw *gw)
{
	((struct world *)gw->ud)->gw_stopped++;
}

static struct world *the_world;
static void dev_stopped(struct dev *d)
{
	(void)d;
	the_world->devs_stopped++;
}

static void stop_all(uv_timer_t *t)
{
	struct world *w = t->data;
	uv_close((uv_handle_t *)t, NULL);
	gw_stop(w->gw, gw_stopped);
	for (size_t i = 0; i < w->ndev; i++)
		dev_stop(w->dev[i], dev_stopped);
}

static char *argv0[] = {"test_gw_run", NULL};

/* A gateway and two devices share one loop; the loop runs until all
 * three are stopped, and closes with nothing left open. */
static void test_gateway_and_devices_one_loop(void **state)
{
	struct fx *f = *state;
	static struct gw gw;
	static struct dev d1, d2;
	struct gw_config gc;
	struct dev_config dc;
	struct world w = {&gw, {&d1, &d2}, 2, .gw_stopped = 0};
	char err[512] = "";
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	the_world = &w;
	gw_cfg(&gc, f->root, "gw");
	assert_int_equal(gw_init(&gw, &loop, &gc, err, sizeof(err)), 0);
	gw.ud = &w;
	dev_cfg(&dc, f->root, "dev-1");
	assert_int_equal(dev_init(&d1, &loop, &dc, argv0, err, sizeof(err)), 0);
	dev_cfg(&dc, f->root, "dev-2");
	assert_int_equal(dev_init(&d2, &loop, &dc, argv0, err, sizeof(err)), 0);
	assert_int_equal(gw_start(&gw), 0);
	assert_int_equal(dev_start(&d1), 0);
	assert_int_equal(dev_start(&d2), 0);
	uv_timer_init(&loop, &w.stop);
	w.stop.data = &w;
	uv_timer_start(&w.stop, stop_all, 300, 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(w.gw_stopped, 1);
	assert_int_equal(w.devs_stopped, 2);
	assert_true(gw.last_tick_ms > 0); /* its tick ran on the shared loop */
	assert_int_equal(gw_close(&gw), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	/* Closed means unlocked: the same directories take a new gateway. */
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(gw_init(&gw, &loop, &gc, err, sizeof(err)), 0);
	gw_stop(&gw, NULL);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(gw_close(&gw), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A second gateway on the same ledger fails to init, says why, and
 * leaves nothing behind; the first is untouched. */
static void test_init_failure_leaves_nothing(void **state)
{
	struct fx *f = *state;
	/* One struct per init: a failed one may still have handles closing
	 * until the loop runs. */
	static struct gw a, b, c, d;
	struct gw_config gc;
	char err[512] = "";
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	gw_cfg(&gc, f->root, "gw");
	assert_int_equal(gw_init(&a, &loop, &gc, err, sizeof(err)), 0);
	assert_int_equal(gw_init(&b, &loop, &gc, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "db_dir"));
	/* A certificate that is not there: the connection cannot be made;
	 * what was opened before it is undone. */
	gw_cfg(&gc, f->root, "other");
	snprintf(gc.cert_file, sizeof(gc.cert_file), "%s/missing.crt", f->root);
	err[0] = '\0';
	assert_int_equal(gw_init(&c, &loop, &gc, err, sizeof(err)), -1);
	assert_true(err[0] != '\0');
	/* The HTTPS side's files are checked before anything is opened. */
	gw_cfg(&gc, f->root, "third");
	snprintf(gc.http_listen, sizeof(gc.http_listen), "127.0.0.1:18089");
	gc.http_tls = true;
	snprintf(gc.http_cert_file, sizeof(gc.http_cert_file), "%s/missing.crt",
		 f->root);
	snprintf(gc.http_key_file, sizeof(gc.http_key_file), "%s/missing.key",
		 f->root);
	err[0] = '\0';
	assert_int_equal(gw_init(&d, &loop, &gc, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "http_cert_file"));
	assert_int_equal(gw_start(&a), 0);
	gw_stop(&a, NULL);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(gw_close(&a), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A test's clock replaces the system's: the event log's timestamps are
 * the clock's. */
static int64_t fake_wall(void *ud) { return *(int64_t *)ud; }
static uint64_t fake_mono(void *ud) { return (uint64_t) * (int64_t *)ud; }

struct last_event {
	char text[256];
};

static int event_cb(void *ud, const void *key, size_t klen, const char *val,
		    size_t vlen)
{
	(void)key;
	(void)klen;
	struct last_event *e = ud;
	snprintf(e->text, sizeof(e->text), "%.*s", (int)vlen, val);
	return 0;
}

static void test_clock_is_replaceable(void **state)
{
	struct fx *f = *state;
	static struct gw gw;
	struct gw_config gc;
	char err[512] = "";
	int64_t now = 1700000000123;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	gw_cfg(&gc, f->root, "gw");
	gw.clock_wall_ms = fake_wall;
	gw.clock_mono_ms = fake_mono;
	gw.clock_ud = &now;
	assert_int_equal(gw_init(&gw, &loop, &gc, err, sizeof(err)), 0);
	assert_int_equal(gw__wall_ms(&gw), now);
	assert_int_equal(gw__mono_ms(&gw), (uint64_t)now);
	now += 5000;
	assert_int_equal(gw__wall_ms(&gw), 1700000005123);
	gw__event(&gw, "dev-1", NULL, "test_clock", "from the fake clock");
	gw_stop(&gw, NULL);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(gw_close(&gw), 0); /* commits the event */
	assert_int_equal(uv_loop_close(&loop), 0);

	struct store *db;
	struct store_opts so = {.readonly = true};
	struct last_event e = {""};
	assert_int_equal(store_open(gc.db_dir, &so, &db, err, sizeof(err)), 0);
	assert_int_equal(store_foreach(db, STORE_EVENTS, event_cb, &e), 0);
	store_close(db);
	assert_non_null(strstr(e.text, "\"ts\":1700000005123"));
	assert_non_null(strstr(e.text, "\"event\":\"test_clock\""));
}

int main(void)
{
	setenv("UV_THREADPOOL_SIZE", "4", 1);
	mosquitto_lib_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_gateway_and_devices_one_loop,
					    setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_init_failure_leaves_nothing,
					    setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_clock_is_replaceable, setup,
					    fx_teardown),
	};
	int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
	mosquitto_lib_cleanup();
	return rc;
}
