/*
 * Unit tests for store/: the LMDB ledger. Each test gets a fresh directory
 * from mkdtemp(); the database lives in its "db" subdirectory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/fixture.h"

#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"

static int setup(void **state) { return fx_setup_named(state, "db"); }
static int teardown(void **state) { return fx_teardown(state); }

static struct store *open_rw(const char *dir, uint64_t map, uint64_t max)
{
	struct store_opts o = {.map_size = map, .max_map = max};
	struct store *s = NULL;
	char err[256] = "";
	int rc = store_open(dir, &o, &s, err, sizeof(err));
	if (rc != 0)
		print_error("store_open %s: %d %s\n", dir, rc, err);
	assert_int_equal(rc, 0);
	assert_non_null(s);
	return s;
}

static struct store *open_ro(const char *dir)
{
	struct store_opts o = {.readonly = true};
	struct store *s = NULL;
	char err[256] = "";
	int rc = store_open(dir, &o, &s, err, sizeof(err));
	if (rc != 0)
		print_error("store_open ro %s: %d %s\n", dir, rc, err);
	assert_int_equal(rc, 0);
	assert_non_null(s);
	return s;
}

static void put_str(struct store *s, enum store_db db, const char *k,
		    const char *v)
{
	assert_int_equal(store_put(s, db, k, v, strlen(v)), 0);
}

static void commit_ok(struct store *s)
{
	char err[256] = "";
	int rc = store_commit(s, err, sizeof(err));
	if (rc != 0)
		print_error("store_commit: %d %s\n", rc, err);
	assert_int_equal(rc, 0);
	assert_int_equal(store_pending(s), 0);
}

/* Asserts the committed value of key is exactly want. */
static void get_is(struct store *s, enum store_db db, const char *k,
		   const char *want)
{
	char *v = NULL;
	size_t len = 0;
	assert_int_equal(store_get(s, db, k, &v, &len), 0);
	assert_non_null(v);
	assert_int_equal(len, strlen(want));
	assert_string_equal(v, want);
	free(v);
}

static void get_missing(struct store *s, enum store_db db, const char *k)
{
	char *v = NULL;
	size_t len = 0;
	assert_int_equal(store_get(s, db, k, &v, &len), STORE_ENOTFOUND);
	assert_null(v);
}

/* Events collected by a walk: sequence numbers and values. */
struct evlist {
	size_t n;
	uint64_t seq[64];
	char val[64][64];
	size_t bad_keys;
};

static int ev_cb(void *ud, const void *key, size_t klen, const char *val,
		 size_t vlen)
{
	struct evlist *l = ud;
	if (klen != 8 || l->n >= 64 || vlen >= sizeof(l->val[0])) {
		l->bad_keys++;
		return 0;
	}
	const uint8_t *b = key;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | b[i];
	l->seq[l->n] = v;
	memcpy(l->val[l->n], val, vlen);
	l->val[l->n][vlen] = '\0';
	l->n++;
	return 0;
}

static int count_cb(void *ud, const void *key, size_t klen, const char *val,
		    size_t vlen)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	(*(size_t *)ud)++;
	return 0;
}

static int stop_cb(void *ud, const void *key, size_t klen, const char *val,
		   size_t vlen)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	(*(size_t *)ud)++;
	return 42;
}

/* ------------------------------------------------------------------ tests */

static void test_strerror(void **state)
{
	(void)state;
#define CHECK_TEXT(name, val, text)                                            \
	assert_int_equal(STORE_##name, val);                                   \
	assert_string_equal(store_strerror(val), text);
	STORE_ERRNO_MAP(CHECK_TEXT)
#undef CHECK_TEXT
	assert_string_equal(store_strerror(-999), "unknown error");
}

static void test_open_creates_dir_0700(void **state)
{
	struct fx *f = *state;
	struct store *s = open_rw(f->path, 0, 0);
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(store_pending(s), 0);
	/* Default map: 64 MiB. */
	assert_int_equal(store_map_size(s), 64u << 20);
	/* An empty commit is a no-op. */
	commit_ok(s);
	store_close(s);
}

static void test_put_commit_get(void **state)
{
	struct fx *f = *state;
	struct store *s = open_rw(f->path, 0, 0);
	put_str(s, STORE_RELEASES, "r1", "{\"version\":\"1.0.0\"}");
	put_str(s, STORE_DEVICES, "dev-001", "{\"state\":\"idle\"}");
	assert_int_equal(store_put(s, STORE_META, "empty", "", 0), 0);
	assert_int_equal(store_pending(s), 3);
	commit_ok(s);
	get_is(s, STORE_RELEASES, "r1", "{\"version\":\"1.0.0\"}");
	get_is(s, STORE_DEVICES, "dev-001", "{\"state\":\"idle\"}");
	get_is(s, STORE_META, "empty", "");
	/* The databases are separate namespaces. */
	get_missing(s, STORE_DEVICES, "r1");
	get_missing(s, STORE_RELEASES, "dev-001");
	get_missing(s, STORE_RELEASES, "r2");
	/* Binary values with NUL bytes are kept whole. */
	static const char bin[5] = {'a', 0, 'b', 0, 'c'};
	assert_int_equal(store_put(s, STORE_META, "bin", bin, sizeof(bin)), 0);
	commit_ok(s);
	char *v = NULL;
	size_t len = 0;
	assert_int_equal(store_get(s, STORE_META, "bin", &v, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(v, bin, 5);
	assert_int_equal(v[5], '\0');
	free(v);
	store_close(s);

	/* Committed data survives close and reopen. */
	s = open_rw(f->path, 0, 0);
	get_is(s, STORE_RELEASES, "r1", "{\"version\":\"1.0.0\"}");
	get_is(s, STORE_DEVICES, "dev-001", "{\"state\":\"idle\"}");
	size_t n = 0;
	assert_int_equal(store_foreach(s, STORE_DEVICES, count_cb, &n), 0);
	assert_int_equal(n, 1);
	store_close(s);
}

/* A batch taken out and committed apart (as the gateway does from its
 * thread pool) lands whole; one that fails is returned in front of what
 * was queued since, so order and content survive. */
static void test_take_commit_return(void **state)
{
	struct fx *f = *state;
	struct store *s = open_rw(f->path, 0, 0);
	char err[256];
	assert_null(store_take_batch(s));
	put_str(s, STORE_DEVICES, "d1", "v1");
	struct store_batch *b = store_take_batch(s);
	assert_non_null(b);
	assert_int_equal(store_pending(s), 0);
	put_str(s, STORE_DEVICES, "d1", "v2"); /* queued while b commits */
	assert_int_equal(store_commit_batch(s, b, err, sizeof(err)), 0);
	store_batch_free(b);
	get_is(s, STORE_DEVICES, "d1", "v1");
	commit_ok(s);
	get_is(s, STORE_DEVICES, "d1", "v2");
	/* A returned batch goes first: the newer value still wins. */
	put_str(s, STORE_DEVICES, "d2", "old");
	b = store_take_batch(s);
	put_str(s, STORE_DEVICES, "d2", "new");
	store_return_batch(s, b);
	assert_int_equal(store_pending(s), 2);
	commit_ok(s);
	get_is(s, STORE_DEVICES, "d2", "new");
	/* Returned with nothing queued since (a failed commit on an idle
	 * gateway): it is simply pending again. */
	put_str(s, STORE_DEVICES, "d3", "three");
	b = store_take_batch(s);
	assert_int_equal(store_pending(s), 0);
	store_return_batch(s, b);
	assert_int_equal(store_pending(s), 1);
	commit_ok(s);
	get_is(s, STORE_DEVICES, "d3", "three");
	store_close(s);
}

static void test_uncommitted_not_visible(void **state)
{
	struct fx *f = *state;
	struct store *s = open_rw(f->path, 0, 0);
	put_str(s, STORE_DEVICES, "d1", "old");
	commit_ok(s);
	put_str(s, STORE_DEVICES, "d1", "new");
	put_str(s, STORE_DEVICES, "d2", "two");
	assert_int_equal(store_pending(s), 2);
	get_is(s, STORE_DEVICES, "d1", "old");
	get_missing(s, STORE_DEVICES, "d2");
	size_t n = 0;
	assert_int_equal(store_foreach(s, STORE_DEVICES, count_cb, &n), 0);
	assert_int_equal(n, 1);
	/* Closing without a commit drops the batch. */
	store_close(s);
	s = open_rw(f->path, 0, 0);
	assert_int_equal(store_pending(s), 0);
	get_is(s, STORE_DEVICES, "d1", "old");
	get_missing(s, STORE_DEVICES, "d2");
	store_close(s);
}

static void test_later_put_wins(void **state)
{
	struct fx *f = *state;
	struct store *s = open_rw(f->path, 0, 0);
	put_str(s, STORE_DEVICES, "d1", "first");
	put_str(s, STORE_DEVICES, "d1", "second, longer value");
	put_str(s, STORE_DEVICES, "d1", "third");
	put_str(s, STORE_RELEASES, "d1", "release");
	commit_ok(s);
	get_is(s, STORE_DEVICES, "d1", "third");
	get_is(s, STORE_RELEASES, "d1", "release");
	size_t n = 0;
	assert_int_equal(store_foreach(s, STORE_DEVICES, count_cb, &n), 0);
	assert_int_equal(n, 1);
	store_close(s);
}

static int concat_cb(void *ud, const void *key, size_t klen, const char *val,
		     size_t vlen)
{
	char *out = ud;
	size_t n = strlen(out);
	(void)key;
	(void)klen;
	if (n + vlen < 16) {
		memcpy(out + n, val, vlen);
		out[n + vlen] = '\0';
	}
	return 0;
}

static void test_foreach_order_and_stop(void **state)
{
	struct fx *f = *state;
	struct store *s = open_rw(f->path, 0, 0);
	put_str(s, STORE_DEVICES, "c", "3");
	put_str(s, STORE_DEVICES, "a", "1");
	put_str(s, STORE_DEVICES, "b", "2");
	commit_ok(s);
	/* Key order, not insertion order. */
	char order[16] = "";
	assert_int_equal(store_foreach(s, STORE_DEVICES, concat_cb, order), 0);
	assert_string_equal(order, "123");
	/* A non-zero return stops the walk and is returned. */
	size_t n = 0;
	assert_int_equal(store_foreach(s, STORE_DEVICES, stop_cb, &n), 42);
	assert_int_equal(n, 1);
	/* An empty db: no calls. */
	n = 0;
	assert_int_equal(store_foreach(s, STORE_META, count_cb, &n), 0);
	assert_int_equal(n, 0);
	store_close(s);
}

/* store_walk_snapshot: "db:value" of every record, in db then key order. */
struct snap_log {
	char buf[128];
	int stop_after; /* 0: never */
	int calls;
};

static int snap_cb(void *ud, enum store_db db, const void *key, size_t klen,
		   const char *val, size_t vlen)
{
	struct snap_log *l = ud;
	size_t n = strlen(l->buf);
	(void)key;
	(void)klen;
	snprintf(l->buf + n, sizeof(l->buf) - n, "%s:%.*s ", store_db_name(db),
		 (int)vlen, val);
	return (++l->calls == l->stop_after) ? 7 : 0;
}

static void test_walk_snapshot(void **state)
{
	struct fx *f = *state;
	struct store *s = open_rw(f->path, 0, 0);
	char err[128] = "";
	put_str(s, STORE_META, "m", "M");
	put_str(s, STORE_DEVICES, "b", "D2");
	put_str(s, STORE_DEVICES, "a", "D1");
	put_str(s, STORE_RELEASES, "r", "R");
	assert_int_equal(store_event(s, "E0"), 0);
	assert_int_equal(store_event(s, "E1"), 0);
	commit_ok(s);
	put_str(s, STORE_DEVICES, "c", "uncommitted");
	struct snap_log l = {.buf = ""};
	struct store *ro = open_ro(f->path);
	assert_int_equal(store_walk_snapshot(ro, snap_cb, &l, err, sizeof(err)),
			 0);
	assert_string_equal(l.buf, "releases:R devices:D1 devices:D2 "
				   "events:E0 events:E1 meta:M ");
	/* A non-zero return stops the walk, across databases too. */
	l = (struct snap_log){.buf = "", .stop_after = 4};
	assert_int_equal(store_walk_snapshot(ro, snap_cb, &l, err, sizeof(err)),
			 7);
	assert_string_equal(l.buf,
			    "releases:R devices:D1 devices:D2 events:E0 ");
	assert_string_equal(store_db_name(STORE_META), "meta");
	assert_string_equal(store_db_name((enum store_db)99), "?");
	store_close(ro);
	store_close(s);
}

static void test_events_sequence(void **state)
{
	struct fx *f = *state;
	struct store *s = open_rw(f->path, 0, 0);
	char buf[32];
	for (int i = 0; i < 5; i++) {
		snprintf(buf, sizeof(buf), "{\"n\":%d}", i);
		assert_int_equal(store_event(s, buf), 0);
	}
	assert_int_equal(store_pending(s), 5);

	/* Not committed yet: nothing to see. */
	struct evlist l = {0};
	assert_int_equal(store_foreach_last_events(s, 10, ev_cb, &l), 0);
	assert_int_equal(l.n, 0);
	commit_ok(s);

	memset(&l, 0, sizeof(l));
	assert_int_equal(store_foreach_last_events(s, 3, ev_cb, &l), 0);
	assert_int_equal(l.bad_keys, 0);
	assert_int_equal(l.n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(l.seq[i], 2 + i);
		snprintf(buf, sizeof(buf), "{\"n\":%zu}", 2 + i);
		assert_string_equal(l.val[i], buf);
	}
	/* More than there are: all of them, oldest first. */
	memset(&l, 0, sizeof(l));
	assert_int_equal(store_foreach_last_events(s, 100, ev_cb, &l), 0);
	assert_int_equal(l.n, 5);
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(l.seq[i], i);
	/* Zero: none. */
	memset(&l, 0, sizeof(l));
	assert_int_equal(store_foreach_last_events(s, 0, ev_cb, &l), 0);
	assert_int_equal(l.n, 0);
	store_close(s);

	/* Reopen: the sequence continues, nothing is overwritten. */
	s = open_rw(f->path, 0, 0);
	assert_int_equal(store_event(s, "{\"n\":5}"), 0);
	assert_int_equal(store_event(s, "{\"n\":6}"), 0);
	commit_ok(s);
	memset(&l, 0, sizeof(l));
	assert_int_equal(store_foreach_last_events(s, 4, ev_cb, &l), 0);
	assert_int_equal(l.n, 4);
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(l.seq[i], 3 + i);
		snprintf(buf, sizeof(buf), "{\"n\":%zu}", 3 + i);
		assert_string_equal(l.val[i], buf);
	}
	memset(&l, 0, sizeof(l));
	assert_int_equal(store_foreach(s, STORE_EVENTS, ev_cb, &l), 0);
	assert_int_equal(l.n, 7);
	for (size_t i = 0; i < 7; i++) {
		assert_int_equal(l.seq[i], i);
		snprintf(buf, sizeof(buf), "{\"n\":%zu}", i);
		assert_string_equal(l.val[i], buf);
	}
	/* A walk stopped by the callback returns its value. */
	size_t n = 0;
	assert_int_equal(store_foreach_last_events(s, 3, stop_cb, &n), 42);
	assert_int_equal(n, 1);
	store_close(s);
}

/* Run in a child process: a read-only open while the writer has the
 * environment open (LMDB wants one env per process). Returns a code
 * telling which step failed, 0 when all held. */
static int ro_child(const char *dir)
{
	struct store_opts o = {.readonly = true};
	struct store *s = NULL;
	char err[256] = "", *v = NULL;
	size_t len = 0;
	if (store_open(dir, &o, &s, err, sizeof(err)) != 0)
		return 10;
	if (store_get(s, STORE_DEVICES, "d1", &v, &len) != 0 ||
	    strcmp(v, "committed") != 0)
		return 11;
	free(v);
	v = NULL;
	if (store_get(s, STORE_DEVICES, "d2", &v, &len) != STORE_ENOTFOUND)
		return 12;
	if (store_put(s, STORE_DEVICES, "d3", "x", 1) != STORE_EREADONLY)
		return 13;
	if (store_event(s, "{}") != STORE_EREADONLY)
		return 14;
	if (store_pending(s) != 0)
		return 15;
	struct evlist l = {0};
	if (store_foreach_last_events(s, 10, ev_cb, &l) != 0 || l.n != 1 ||
	    strcmp(l.val[0], "{\"e\":1}") != 0)
		return 16;
	store_close(s);
	return 0;
}

static void test_readonly(void **state)
{
	struct fx *f = *state;
	struct store *w = open_rw(f->path, 0, 0);
	put_str(w, STORE_DEVICES, "d1", "committed");
	assert_int_equal(store_event(w, "{\"e\":1}"), 0);
	commit_ok(w);
	put_str(w, STORE_DEVICES, "d2", "pending");

	/* Another process, while the writer is open. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(ro_child(f->path));
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	store_close(w);

	/* The same in this process, after the writer closed. */
	struct store *r = open_ro(f->path);
	get_is(r, STORE_DEVICES, "d1", "committed");
	get_missing(r, STORE_DEVICES, "d2");
	assert_int_equal(store_put(r, STORE_DEVICES, "d3", "x", 1),
			 STORE_EREADONLY);
	assert_int_equal(store_event(r, "{}"), STORE_EREADONLY);
	assert_int_equal(store_pending(r), 0);
	char err[256] = "";
	assert_int_equal(store_commit(r, err, sizeof(err)), 0);
	store_close(r);
}

static void test_readonly_missing_dir(void **state)
{
	struct fx *f = *state;
	struct store_opts o = {.readonly = true};
	struct store *s = NULL;
	char err[256] = "";
	char missing[128];
	snprintf(missing, sizeof(missing), "%s/nonexistent", f->root);
	int rc = store_open(missing, &o, &s, err, sizeof(err));
	assert_true(rc < 0);
	assert_null(s);
	assert_non_null(strstr(err, missing));
	assert_non_null(strstr(err, "No such file"));
	/* Read-only does not create it. */
	struct stat st;
	assert_int_equal(stat(missing, &st), -1);
}

/* A gateway killed before its first commit leaves an empty data file, or
 * LMDB's first pages without any database: read-only, that is an empty
 * ledger (STORE_EEMPTY), not an unreadable one. */
static void test_readonly_empty_ledger(void **state)
{
	struct fx *f = *state;
	struct store_opts o = {.readonly = true};
	struct store *s = NULL;
	char err[256] = "", data[256];
	MDB_env *env;
	assert_int_equal(mkdir(f->path, 0700), 0);
	snprintf(data, sizeof(data), "%s/data.mdb", f->path);
	int fd = open(data, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(store_open(f->path, &o, &s, err, sizeof(err)),
			 STORE_EEMPTY);
	assert_null(s);
	assert_non_null(strstr(err, "nothing committed yet"));
	/* LMDB's first pages, none of the ledger's databases. */
	assert_int_equal(unlink(data), 0);
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, f->path, 0, 0600), 0);
	mdb_env_close(env);
	err[0] = '\0';
	assert_int_equal(store_open(f->path, &o, &s, err, sizeof(err)),
			 STORE_EEMPTY);
	assert_null(s);
	/* Once the gateway has opened it, it is a ledger (with no records). */
	store_close(open_rw(f->path, 0, 0));
	store_close(open_ro(f->path));
}

static void test_invalid_args(void **state)
{
	struct fx *f = *state;
	struct store *s = open_rw(f->path, 0, 0);
	char key512[513], *v = NULL;
	size_t len = 0, n = 0;
	memset(key512, 'k', 512);
	key512[512] = '\0';
	assert_int_equal(store_put(s, STORE__NDB, "k", "v", 1), STORE_EINVAL);
	assert_int_equal(store_put(s, (enum store_db) - 1, "k", "v", 1),
			 STORE_EINVAL);
	assert_int_equal(store_put(s, STORE_DEVICES, "", "v", 1), STORE_EINVAL);
	assert_int_equal(store_put(s, STORE_DEVICES, key512, "v", 1),
			 STORE_EINVAL);
	assert_int_equal(store_pending(s), 0);
	/* 511 bytes is LMDB's default key limit: accepted. */
	key512[511] = '\0';
	assert_int_equal(store_put(s, STORE_DEVICES, key512, "v", 1), 0);
	commit_ok(s);
	get_is(s, STORE_DEVICES, key512, "v");
	assert_int_equal(store_get(s, STORE__NDB, "k", &v, &len), STORE_EINVAL);
	assert_int_equal(store_foreach(s, STORE__NDB, count_cb, &n),
			 STORE_EINVAL);
	assert_int_equal(n, 0);
	store_close(s);
}

#define TINY_MAP (64u << 10)
#define NBIG 120

static void put_big_batch(struct store *s, const char *prefix)
{
	char key[32], val[1024];
	for (int i = 0; i < NBIG; i++) {
		snprintf(key, sizeof(key), "%s-%03d", prefix, i);
		memset(val, 'a' + i % 26, sizeof(val));
		assert_int_equal(store_put(s, STORE_RELEASES, key, val,
					   sizeof(val)),
				 0);
	}
}

static void test_map_grows(void **state)
{
	struct fx *f = *state;
	struct store *s = open_rw(f->path, TINY_MAP, 16u << 20);
	assert_int_equal(store_map_size(s), TINY_MAP);
	put_str(s, STORE_DEVICES, "before", "intact");
	commit_ok(s);
	/* ~120 KiB of values: more than the 64 KiB map holds. */
	put_big_batch(s, "big");
	assert_int_equal(store_pending(s), NBIG);
	commit_ok(s);
	assert_true(store_map_size(s) > TINY_MAP);
	assert_true(store_map_size(s) <= (16u << 20));
	size_t n = 0;
	assert_int_equal(store_foreach(s, STORE_RELEASES, count_cb, &n), 0);
	assert_int_equal(n, NBIG);
	char *v = NULL;
	size_t len = 0;
	assert_int_equal(store_get(s, STORE_RELEASES, "big-119", &v, &len), 0);
	assert_int_equal(len, 1024);
	assert_int_equal(v[0], 'a' + 119 % 26);
	free(v);
	get_is(s, STORE_DEVICES, "before", "intact");
	store_close(s);

	/* Reopening with the tiny map again still reads it all. */
	s = open_rw(f->path, TINY_MAP, 16u << 20);
	n = 0;
	assert_int_equal(store_foreach(s, STORE_RELEASES, count_cb, &n), 0);
	assert_int_equal(n, NBIG);
	get_is(s, STORE_DEVICES, "before", "intact");
	store_close(s);
}

static void test_map_full_keeps_batch(void **state)
{
	struct fx *f = *state;
	struct store *s = open_rw(f->path, TINY_MAP, TINY_MAP);
	put_str(s, STORE_DEVICES, "before", "intact");
	assert_int_equal(store_event(s, "{\"e\":0}"), 0);
	commit_ok(s);

	/* One batch: an overwrite of "before", an event, then too much. */
	put_str(s, STORE_DEVICES, "before", "overwritten");
	assert_int_equal(store_event(s, "{\"e\":1}"), 0);
	put_big_batch(s, "big");
	size_t pending = store_pending(s);
	assert_int_equal(pending, NBIG + 2);

	char err[256] = "";
	assert_int_equal(store_commit(s, err, sizeof(err)), STORE_EMAPFULL);
	assert_non_null(strstr(err, "the batch is kept"));
	assert_int_equal(store_pending(s), pending);
	assert_int_equal(store_map_size(s), TINY_MAP);

	/* All or nothing: none of the batch is visible. */
	get_is(s, STORE_DEVICES, "before", "intact");
	get_missing(s, STORE_RELEASES, "big-000");
	size_t n = 0;
	assert_int_equal(store_foreach(s, STORE_RELEASES, count_cb, &n), 0);
	assert_int_equal(n, 0);
	struct evlist l = {0};
	assert_int_equal(store_foreach_last_events(s, 10, ev_cb, &l), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.val[0], "{\"e\":0}");

	/* Trying again fails the same way and still keeps the batch. */
	err[0] = '\0';
	assert_int_equal(store_commit(s, err, sizeof(err)), STORE_EMAPFULL);
	assert_non_null(strstr(err, "the batch is kept"));
	assert_int_equal(store_pending(s), pending);
	store_close(s);

	/* Reopen: earlier data intact, nothing of the batch. */
	s = open_rw(f->path, 0, 0);
	get_is(s, STORE_DEVICES, "before", "intact");
	get_missing(s, STORE_RELEASES, "big-000");
	get_missing(s, STORE_RELEASES, "big-119");
	memset(&l, 0, sizeof(l));
	assert_int_equal(store_foreach(s, STORE_EVENTS, ev_cb, &l), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.seq[0], 0);
	/* And with room, the same writes now succeed. */
	put_big_batch(s, "big");
	commit_ok(s);
	n = 0;
	assert_int_equal(store_foreach(s, STORE_RELEASES, count_cb, &n), 0);
	assert_int_equal(n, NBIG);
	store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_strerror),
	    cmocka_unit_test_setup_teardown(test_open_creates_dir_0700, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_put_commit_get, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_take_commit_return, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_uncommitted_not_visible, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_later_put_wins, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_foreach_order_and_stop, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_events_sequence, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_walk_snapshot, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_readonly_missing_dir, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_readonly_empty_ledger, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_args, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_map_grows, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_map_full_keeps_batch, setup,
					    teardown),
	};

	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
