#include "store/store.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const db_names[STORE__NDB] = {"releases", "devices",
						 "events", "meta"};

struct store_op {
	enum store_db db;
	void *key;
	size_t klen;
	void *val;
	size_t vlen;
};

struct store_batch {
	struct store_op *ops;
	size_t nops, cap;
};

struct store {
	MDB_env *env;
	MDB_dbi dbi[STORE__NDB];
	bool readonly;
	uint64_t map_size, max_map;
	uint64_t next_seq;
	struct store_batch b; /* what is queued now */
};

const char *store_strerror(int code)
{
	switch (code) {
#define STORE__ERR_CASE(name, val, text)                                       \
	case STORE_##name:                                                     \
		return text;
		STORE_ERRNO_MAP(STORE__ERR_CASE)
#undef STORE__ERR_CASE
	}
	return "unknown error";
}

static int store__map_err(int rc)
{
	switch (rc) {
	case MDB_NOTFOUND:
		return STORE_ENOTFOUND;
	case MDB_MAP_FULL:
		return STORE_EMAPFULL;
	case ENOMEM:
		return STORE_ENOMEM;
	case EACCES:
		return STORE_EREADONLY;
	default:
		return STORE_EIO;
	}
}

static uint64_t be64_get(const void *p)
{
	const uint8_t *b = p;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | b[i];
	return v;
}

static void be64_put(uint8_t *b, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		b[i] = (uint8_t)v;
		v >>= 8;
	}
}

/* A data file of 0 bytes: LMDB created it and was stopped before it
 * wrote its first pages (a read-only open would try to write them). */
static bool store__never_written(const char *dir)
{
	char path[4096];
	struct stat st;
	int n = snprintf(path, sizeof(path), "%s/data.mdb", dir);
	return n > 0 && (size_t)n < sizeof(path) && stat(path, &st) == 0 &&
	       S_ISREG(st.st_mode) && st.st_size == 0;
}

int store_open(const char *dir, const struct store_opts *o, struct store **out,
	       char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return STORE_ENOMEM;
	}
	s->readonly = o->readonly;
	s->map_size = o->map_size ? o->map_size : (64u << 20);
	s->max_map = o->max_map ? o->max_map : (4ull << 30);
	if (s->max_map < s->map_size)
		s->max_map = s->map_size;
	if (!s->readonly && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
		free(s);
		return STORE_EIO;
	}
	int rc = mdb_env_create(&s->env);
	if (rc != 0)
		goto fail;
	mdb_env_set_maxdbs(s->env, STORE__NDB);
	if (!s->readonly)
		mdb_env_set_mapsize(s->env, (size_t)s->map_size);
	if (s->readonly && store__never_written(dir)) {
		rc = STORE_EEMPTY;
		goto fail_env;
	}
	rc = mdb_env_open(s->env, dir, s->readonly ? MDB_RDONLY : 0, 0600);
	if (rc != 0)
		goto fail_env;
	MDB_envinfo info;
	mdb_env_info(s->env, &info);
	s->map_size = info.me_mapsize;

	MDB_txn *txn;
	rc = mdb_txn_begin(s->env, NULL, s->readonly ? MDB_RDONLY : 0, &txn);
	if (rc != 0)
		goto fail_env;
	for (int i = 0; i < STORE__NDB; i++) {
		rc = mdb_dbi_open(txn, db_names[i],
				  s->readonly ? 0 : MDB_CREATE, &s->dbi[i]);
		if (rc != 0) {
			MDB_stat st;
			/* No database at all: the first commit never came. */
			if (rc == MDB_NOTFOUND && s->readonly &&
			    mdb_stat(txn, 0, &st) == 0 && st.ms_entries == 0)
				rc = STORE_EEMPTY;
			mdb_txn_abort(txn);
			goto fail_env;
		}
	}
	MDB_cursor *cur;
	MDB_val k, v;
	if (mdb_cursor_open(txn, s->dbi[STORE_EVENTS], &cur) == 0) {
		if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 &&
		    k.mv_size == 8)
			s->next_seq = be64_get(k.mv_data) + 1;
		mdb_cursor_close(cur);
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		goto fail_env;
	*out = s;
	return 0;

fail_env:
	mdb_env_close(s->env);
fail:
	if (rc == STORE_EEMPTY) {
		snprintf(err, errlen, "LMDB %s: %s", dir, store_strerror(rc));
		free(s);
		return rc;
	}
	snprintf(err, errlen, "LMDB %s: %s%s", dir, mdb_strerror(rc),
		 (s->readonly && rc == ENOENT) ? " (no gateway database here)"
					       : "");
	free(s);
	return store__map_err(rc);
}

static void batch_clear(struct store_batch *b)
{
	for (size_t i = 0; i < b->nops; i++) {
		free(b->ops[i].key);
		free(b->ops[i].val);
	}
	b->nops = 0;
}

void store_batch_free(struct store_batch *b)
{
	if (!b)
		return;
	batch_clear(b);
	free(b->ops);
	free(b);
}

void store_close(struct store *s)
{
	if (!s)
		return;
	batch_clear(&s->b);
	free(s->b.ops);
	mdb_env_close(s->env);
	free(s);
}

static int store__queue(struct store *s, enum store_db db, const void *key,
			size_t klen, const void *val, size_t vlen)
{
	if (s->readonly)
		return STORE_EREADONLY;
	if ((unsigned)db >= STORE__NDB || klen == 0 || klen > 511)
		return STORE_EINVAL;
	struct store_batch *b = &s->b;
	if (b->nops == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 64;
		struct store_op *n = realloc(b->ops, ncap * sizeof(*n));
		if (!n)
			return STORE_ENOMEM;
		b->ops = n;
		b->cap = ncap;
	}
	struct store_op *op = &b->ops[b->nops];
	op->key = malloc(klen);
	op->val = malloc(vlen ? vlen : 1);
	if (!op->key || !op->val) {
		free(op->key);
		free(op->val);
		return STORE_ENOMEM;
	}
	memcpy(op->key, key, klen);
	if (vlen)
		memcpy(op->val, val, vlen);
	op->db = db;
	op->klen = klen;
	op->vlen = vlen;
	b->nops++;
	return 0;
}

int store_put(struct store *s, enum store_db db, const char *key,
	      const void *val, size_t len)
{
	return store__queue(s, db, key, strlen(key), val, len);
}

int store_event(struct store *s, const char *json)
{
	uint8_t k[8];
	be64_put(k, s->next_seq);
	int rc = store__queue(s, STORE_EVENTS, k, 8, json, strlen(json));
	if (rc == 0)
		s->next_seq++;
	return rc;
}

size_t store_pending(const struct store *s) { return s->b.nops; }

static int store__apply(struct store *s, const struct store_batch *b)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < b->nops; i++) {
		struct store_op *op = &b->ops[i];
		MDB_val k = {op->klen, op->key}, v = {op->vlen, op->val};
		rc = mdb_put(txn, s->dbi[op->db], &k, &v, 0);
		if (rc != 0) {
			mdb_txn_abort(txn);
			return rc;
		}
	}
	return mdb_txn_commit(txn);
}

int store_commit_batch(struct store *s, struct store_batch *b, char *err,
		       size_t errlen)
{
	int rc = store__apply(s, b);
	while (rc == MDB_MAP_FULL && s->map_size < s->max_map) {
		uint64_t n = s->map_size * 2;
		if (n > s->max_map)
			n = s->max_map;
		/* No write transaction is open now: safe to grow. */
		int r2 = mdb_env_set_mapsize(s->env, (size_t)n);
		if (r2 != 0) {
			rc = r2;
			break;
		}
		s->map_size = n;
		rc = store__apply(s, b);
	}
	if (rc != 0) {
		snprintf(err, errlen,
			 "LMDB commit of %zu records: %s (map %llu MiB, "
			 "limit %llu MiB); the batch is kept",
			 b->nops, mdb_strerror(rc),
			 (unsigned long long)(s->map_size >> 20),
			 (unsigned long long)(s->max_map >> 20));
		return store__map_err(rc);
	}
	return 0;
}

struct store_batch *store_take_batch(struct store *s)
{
	if (s->b.nops == 0)
		return NULL;
	struct store_batch *b = malloc(sizeof(*b));
	if (!b)
		return NULL;
	*b = s->b;
	memset(&s->b, 0, sizeof(s->b));
	return b;
}

void store_return_batch(struct store *s, struct store_batch *b)
{
	/* b goes first: it was queued before anything now in s->b. */
	size_t n = b->nops + s->b.nops;
	struct store_op *ops = realloc(b->ops, (n ? n : 1) * sizeof(*ops));
	if (!ops) {
		/* Out of memory merging: keep the older batch; the newer
		 * records are lost (the caller logs the commit failure). */
		batch_clear(&s->b);
		free(s->b.ops);
		s->b = *b;
		free(b);
		return;
	}
	if (s->b.nops) /* s->b.ops may be NULL: nothing queued since */
		memcpy(ops + b->nops, s->b.ops, s->b.nops * sizeof(*ops));
	free(s->b.ops);
	s->b.ops = ops;
	s->b.nops = n;
	s->b.cap = n ? n : 1;
	free(b);
}

int store_commit(struct store *s, char *err, size_t errlen)
{
	if (s->b.nops == 0)
		return 0;
	int rc = store_commit_batch(s, &s->b, err, errlen);
	if (rc == 0)
		batch_clear(&s->b);
	return rc;
}

int store_get(struct store *s, enum store_db db, const char *key, char **out,
	      size_t *len)
{
	if ((unsigned)db >= STORE__NDB)
		return STORE_EINVAL;
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return store__map_err(rc);
	MDB_val k = {strlen(key), (void *)key}, v;
	rc = mdb_get(txn, s->dbi[db], &k, &v);
	if (rc == 0) {
		char *buf = malloc(v.mv_size + 1);
		if (!buf) {
			rc = ENOMEM;
		} else {
			memcpy(buf, v.mv_data, v.mv_size);
			buf[v.mv_size] = '\0';
			*out = buf;
			*len = v.mv_size;
		}
	}
	mdb_txn_abort(txn);
	return rc ? store__map_err(rc) : 0;
}

static int store__walk(struct store *s, enum store_db db, MDB_val *start,
		       store_walk_cb cb, void *ud)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return store__map_err(rc);
	rc = mdb_cursor_open(txn, s->dbi[db], &cur);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return store__map_err(rc);
	}
	MDB_val k, v;
	int ret = 0;
	if (start)
		k = *start;
	rc = mdb_cursor_get(cur, &k, &v, start ? MDB_SET_RANGE : MDB_FIRST);
	while (rc == 0) {
		ret = cb(ud, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
		if (ret != 0)
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (ret != 0)
		return ret;
	return (rc == 0 || rc == MDB_NOTFOUND) ? 0 : store__map_err(rc);
}

int store_foreach(struct store *s, enum store_db db, store_walk_cb cb, void *ud)
{
	if ((unsigned)db >= STORE__NDB)
		return STORE_EINVAL;
	return store__walk(s, db, NULL, cb, ud);
}

const char *store_db_name(enum store_db db)
{
	return (unsigned)db < STORE__NDB ? db_names[db] : "?";
}

int store_walk_snapshot(struct store *s, store_snap_cb cb, void *ud, char *err,
			size_t errlen)
{
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int ret = 0, rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		goto fail;
	for (int db = 0; db < STORE__NDB && ret == 0; db++) {
		rc = mdb_cursor_open(txn, s->dbi[db], &cur);
		if (rc != 0)
			goto fail_txn;
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (rc == 0) {
			ret = cb(ud, (enum store_db)db, k.mv_data, k.mv_size,
				 v.mv_data, v.mv_size);
			if (ret != 0)
				break;
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
		cur = NULL;
		if (ret == 0 && rc != MDB_NOTFOUND)
			goto fail_txn;
	}
	mdb_txn_abort(txn);
	return ret;

fail_txn:
	mdb_txn_abort(txn);
fail:
	snprintf(err, errlen, "LMDB: %s", mdb_strerror(rc));
	return store__map_err(rc);
}

int store_foreach_last_events(struct store *s, size_t n, store_walk_cb cb,
			      void *ud)
{
	/* Find the last key in a fresh read, so a reader process sees the
	 * writer's newest events. */
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t last = 0;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return store__map_err(rc);
	if (mdb_cursor_open(txn, s->dbi[STORE_EVENTS], &cur) == 0) {
		if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 &&
		    k.mv_size == 8)
			last = be64_get(k.mv_data) + 1;
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
	uint8_t sk[8];
	be64_put(sk, last > n ? last - n : 0);
	MDB_val start = {8, sk};
	return store__walk(s, STORE_EVENTS, &start, cb, ud);
}

uint64_t store_map_size(const struct store *s) { return s->map_size; }
