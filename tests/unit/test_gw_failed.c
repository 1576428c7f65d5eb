/* The releases a device failed (gateway/failed.c), as the targeting rule
 * (gw__release_targets and gw__release_failed in gateway/catalog.c) and
 * the ledger's device record (gateway/ledger.c) use them: a device that
 * failed release A and then release B is offered neither again; a retry
 * forgets only its own release; the set is bounded; the ledger keeps every
 * entry and still reads a record of the older format, which had only the
 * last one in "failed_release". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/gw.h"

#define NREL (GW_FAILED_MAX + 2)

/* NREL releases of product sensor, 1.1.0, 1.2.0, ...; one device on
 * 1.0.0. */
struct world {
	struct gw gw;
	struct gw_release rel[NREL];
	struct gw_device d;
};

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	if (!w)
		return -1;
	for (int i = 0; i < NREL; i++) {
		struct gw_release *r = &w->rel[i];
		snprintf(r->id, sizeof(r->id), "%016x", 0xa0 + i);
		snprintf(r->m.product, sizeof(r->m.product), "sensor");
		snprintf(r->m.version, sizeof(r->m.version), "1.%d.0", i + 1);
		r->next = i + 1 < NREL ? &w->rel[i + 1] : NULL;
	}
	w->gw.releases = &w->rel[0];
	snprintf(w->d.id, sizeof(w->d.id), "dev-001");
	snprintf(w->d.product, sizeof(w->d.product), "sensor");
	snprintf(w->d.version, sizeof(w->d.version), "1.0.0");
	w->d.state = PROTO_ST_IDLE;
	w->d.timings = (struct proto_timings){-1, -1, -1, -1, -1};
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

static bool offered_now(struct world *w, int i)
{
	return gw__release_targets(&w->gw, &w->rel[i], &w->d,
				   GW_TARGET_NOT_FAILED);
}

/* d parsed from a ledger record. */
static void parse(struct gw_device *d, const char *rec)
{
	assert_int_equal(gw__device_parse(rec, strlen(rec), d), 0);
}

/* The bug this guards against: A failed, then B failed, and A was offered
 * again (the gateway kept only the last). Read from a ledger record with
 * both, as the gateway reads it on start. */
static void test_two_failed_releases_are_both_kept(void **state)
{
	struct world *w = *state;
	char rec[512];
	snprintf(rec, sizeof(rec),
		 "{\"device\":\"dev-001\",\"product\":\"sensor\","
		 "\"version\":\"1.0.0\",\"state\":\"failed\","
		 "\"release\":\"%s\",\"failed_release\":\"%s\","
		 "\"failed_releases\":[{\"release\":\"%s\",\"state\":"
		 "\"failed\"},{\"release\":\"%s\",\"state\":\"failed\"}]}",
		 w->rel[1].id, w->rel[1].id, w->rel[0].id, w->rel[1].id);
	parse(&w->d, rec);
	assert_false(offered_now(w, 0)); /* A: failed before B */
	assert_false(offered_now(w, 1)); /* B */
	assert_true(offered_now(w, 2));	 /* another release */
	/* Still a target (counted in its campaign), only not offered. */
	assert_true(gw__release_targets(&w->gw, &w->rel[0], &w->d, 0));
}

/* As the gateway records failures (gw.c's status_finished), and a retry
 * (campaign.c) forgets one. */
static void test_retry_forgets_only_its_release(void **state)
{
	struct world *w = *state;
	gw__release_failed(&w->gw, &w->d, w->rel[0].id, false);
	gw__release_failed(&w->gw, &w->d, w->rel[1].id, true);
	assert_int_equal(w->d.nfailed, 2);
	assert_string_equal(gw__failed_latest(&w->d), w->rel[1].id);
	assert_false(offered_now(w, 0));
	assert_false(offered_now(w, 1));
	assert_false(gw__failed_find(&w->d, w->rel[0].id)->rolled_back);
	assert_true(gw__failed_find(&w->d, w->rel[1].id)->rolled_back);

	assert_true(gw__failed_forget(&w->d, w->rel[0].id));
	assert_true(offered_now(w, 0));
	assert_false(offered_now(w, 1));
	assert_string_equal(gw__failed_latest(&w->d), w->rel[1].id);
	assert_false(gw__failed_forget(&w->d, w->rel[0].id));

	/* Failing the same release again keeps one entry, now the latest. */
	gw__release_failed(&w->gw, &w->d, w->rel[2].id, false);
	gw__release_failed(&w->gw, &w->d, w->rel[1].id, false);
	assert_int_equal(w->d.nfailed, 2);
	assert_string_equal(gw__failed_latest(&w->d), w->rel[1].id);
	assert_false(gw__failed_find(&w->d, w->rel[1].id)->rolled_back);
	assert_true(gw__failed_forget(&w->d, w->rel[1].id));
	assert_true(gw__failed_forget(&w->d, w->rel[2].id));
	assert_string_equal(gw__failed_latest(&w->d), "");
	assert_null(gw__failed_find(&w->d, ""));
}

/* Full: a release that no longer targets the device goes first; only when
 * every one still does, the oldest. */
static void test_bound_drops_what_no_longer_targets_first(void **state)
{
	struct world *w = *state;
	for (int i = 0; i < GW_FAILED_MAX; i++)
		gw__release_failed(&w->gw, &w->d, w->rel[i].id, false);
	assert_int_equal(w->d.nfailed, GW_FAILED_MAX);

	w->rel[3].camp.st = GW_CAMP_ABORTED; /* never offered again anyway */
	gw__release_failed(&w->gw, &w->d, w->rel[GW_FAILED_MAX].id, false);
	assert_int_equal(w->d.nfailed, GW_FAILED_MAX);
	assert_null(gw__failed_find(&w->d, w->rel[3].id));
	assert_non_null(gw__failed_find(&w->d, w->rel[0].id));
	assert_false(offered_now(w, 0));

	/* All still open for it: the oldest is dropped (and logged). */
	gw__release_failed(&w->gw, &w->d, w->rel[GW_FAILED_MAX + 1].id, true);
	assert_int_equal(w->d.nfailed, GW_FAILED_MAX);
	assert_null(gw__failed_find(&w->d, w->rel[0].id));
	assert_true(offered_now(w, 0));
	for (int i = 1; i < NREL; i++)
		assert_true((i == 3) == !gw__failed_find(&w->d, w->rel[i].id));
	assert_string_equal(gw__failed_latest(&w->d),
			    w->rel[GW_FAILED_MAX + 1].id);

	/* A device past a release's version: that one goes first. */
	snprintf(w->d.version, sizeof(w->d.version), "1.3.0");
	w->rel[3].camp.st = GW_CAMP_ROLLING;
	gw__release_failed(&w->gw, &w->d, w->rel[3].id, false);
	assert_null(gw__failed_find(&w->d, w->rel[1].id)); /* 1.2.0 */
	assert_null(gw__failed_find(&w->d, w->rel[2].id)); /* 1.3.0 */
	assert_non_null(gw__failed_find(&w->d, w->rel[4].id));
	assert_int_equal(w->d.nfailed, GW_FAILED_MAX - 1);
}

/* The record keeps every entry, oldest first, with how it failed, and
 * "failed_release" the latest; it reads back the same. */
static void test_ledger_round_trip(void **state)
{
	struct world *w = *state;
	struct gw_device *d2 = calloc(1, sizeof(*d2));
	char want[256];
	assert_non_null(d2);
	gw__failed_put(&w->d, w->rel[0].id, true, NULL);
	gw__failed_put(&w->d, w->rel[1].id, false, NULL);
	char *rec = gw__device_record(&w->d);
	assert_non_null(rec);
	snprintf(want, sizeof(want),
		 "\"failed_release\":\"%s\",\"failed_releases\":"
		 "[{\"release\":\"%s\",\"state\":\"rolled_back\"},"
		 "{\"release\":\"%s\",\"state\":\"failed\"}]",
		 w->rel[1].id, w->rel[0].id, w->rel[1].id);
	assert_non_null(strstr(rec, want));
	parse(d2, rec);
	assert_int_equal(d2->nfailed, 2);
	assert_string_equal(d2->failed[0].release, w->rel[0].id);
	assert_true(d2->failed[0].rolled_back);
	assert_string_equal(d2->failed[1].release, w->rel[1].id);
	assert_false(d2->failed[1].rolled_back);
	char *rec2 = gw__device_record(d2);
	assert_non_null(rec2);
	assert_string_equal(rec, rec2);
	free(rec);
	free(rec2);
	free(d2);
}

/* A record written before "failed_releases": its one "failed_release",
 * rolled back when its state says so. */
static void test_ledger_reads_the_older_format(void **state)
{
	struct world *w = *state;
	static const struct {
		const char *state, *failed;
		int n;
		bool rolled_back;
	} v[] = {
	    {"rolled_back", "00000000000000a0", 1, true},
	    {"failed", "00000000000000a0", 1, false},
	    {"committed", "", 0, false},
	    {"failed", "not-a-release-id", 0, false},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char rec[256];
		snprintf(rec, sizeof(rec),
			 "{\"device\":\"dev-001\",\"product\":\"sensor\","
			 "\"version\":\"1.0.0\",\"state\":\"%s\","
			 "\"failed_release\":\"%s\"}",
			 v[i].state, v[i].failed);
		gw__failed_put(&w->d, w->rel[5].id, false, NULL); /* stale */
		parse(&w->d, rec);
		assert_int_equal(w->d.nfailed, v[i].n);
		assert_null(gw__failed_find(&w->d, w->rel[5].id));
		if (v[i].n) {
			assert_string_equal(w->d.failed[0].release,
					    v[i].failed);
			assert_int_equal(w->d.failed[0].rolled_back,
					 v[i].rolled_back);
			assert_false(offered_now(w, 0));
		} else
			assert_true(offered_now(w, 0));
	}
}

/* Entries that are not {"release": ID, "state": "failed"|"rolled_back"}
 * are skipped; a release named twice is kept once (the later); past
 * GW_FAILED_MAX, the newest are kept. The array wins over the older
 * member. */
static void test_ledger_skips_bad_entries(void **state)
{
	struct world *w = *state;
	char rec[2048];
	size_t n = (size_t)snprintf(
	    rec, sizeof(rec),
	    "{\"device\":\"dev-001\",\"failed_release\":\"%s\","
	    "\"failed_releases\":[{\"release\":\"%s\",\"state\":\"failed\"},"
	    "{\"release\":\"%s\",\"state\":\"committed\"},"
	    "{\"release\":\"%s\"},\"%s\",{\"release\":\"ABC\",\"state\":"
	    "\"failed\"},{\"release\":\"%s\",\"state\":\"rolled_back\"}]}",
	    w->rel[4].id, w->rel[0].id, w->rel[1].id, w->rel[2].id,
	    w->rel[3].id, w->rel[0].id);
	assert_true(n < sizeof(rec));
	parse(&w->d, rec);
	assert_int_equal(w->d.nfailed, 1);
	assert_string_equal(w->d.failed[0].release, w->rel[0].id);
	assert_true(w->d.failed[0].rolled_back);

	n = (size_t)snprintf(rec, sizeof(rec),
			     "{\"device\":\"dev-001\",\"failed_releases\":[");
	for (int i = 0; i < NREL; i++)
		n += (size_t)snprintf(rec + n, sizeof(rec) - n,
				      "%s{\"release\":\"%s\",\"state\":"
				      "\"failed\"}",
				      i ? "," : "", w->rel[i].id);
	n += (size_t)snprintf(rec + n, sizeof(rec) - n, "]}");
	assert_true(n < sizeof(rec));
	parse(&w->d, rec);
	assert_int_equal(w->d.nfailed, GW_FAILED_MAX);
	assert_string_equal(w->d.failed[0].release, w->rel[2].id);
	assert_string_equal(gw__failed_latest(&w->d), w->rel[NREL - 1].id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_two_failed_releases_are_both_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retry_forgets_only_its_release,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_bound_drops_what_no_longer_targets_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ledger_round_trip, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_ledger_reads_the_older_format,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ledger_skips_bad_entries,
					    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
