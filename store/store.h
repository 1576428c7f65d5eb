/*
 * store: the gateway's ledger in LMDB.
 *
 * Named databases: releases (release id -> JSON), devices (device id ->
 * JSON), events (64-bit big-endian sequence -> JSON) and meta.
 *
 * Writes are batched: store_put()/store_event() copy into an in-memory
 * batch and store_commit() writes the whole batch in one transaction (the
 * gateway commits once per loop iteration, so acknowledgement rate is not
 * bounded by fsync rate). When the map is full, the commit grows the map
 * (up to max_map) and replays the batch; if it still does not fit, the
 * batch is kept and STORE_EMAPFULL returned, so nothing is half-written.
 * Reads see committed data only. Another process may open the same
 * directory read-only at the same time (ota-gateway status).
 */
#ifndef OTA_STORE_H
#define OTA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_ERRNO_MAP(X)                                                     \
	X(ENOTFOUND, -1, "not found")                                          \
	X(EMAPFULL, -2, "database map is full")                                \
	X(EIO, -3, "database I/O error")                                       \
	X(ENOMEM, -4, "out of memory")                                         \
	X(EREADONLY, -5, "database opened read-only")                          \
	X(EINVAL, -6, "invalid argument")                                      \
	X(EEMPTY, -7, "empty ledger: nothing committed yet")

enum store_errno {
#define STORE__ERR_ENUM(name, val, text) STORE_##name = (val),
	STORE_ERRNO_MAP(STORE__ERR_ENUM)
#undef STORE__ERR_ENUM
};
const char *store_strerror(int code);

enum store_db {
	STORE_RELEASES,
	STORE_DEVICES,
	STORE_EVENTS,
	STORE_META,
	STORE__NDB
};

struct store;

struct store_opts {
	bool readonly;
	uint64_t map_size; /* initial; 0 -> 64 MiB */
	uint64_t max_map;  /* growth limit; 0 -> 4 GiB */
};

/* Creates the directory (mode 0700) unless read-only. err gets detail.
 * Read-only, a ledger a gateway created but was stopped (killed) before
 * its first commit (an empty data file, or none of the databases yet)
 * returns STORE_EEMPTY: it holds nothing, consistently. */
int store_open(const char *dir, const struct store_opts *o, struct store **out,
	       char *err, size_t errlen);
/* Commits nothing: call store_commit() first to keep the batch. */
void store_close(struct store *s);

/* Queue a write (copies key and value); a later put of the same key in
 * the same batch wins. */
int store_put(struct store *s, enum store_db db, const char *key,
	      const void *val, size_t len);
/* Queue an event; its key is the next sequence number. */
int store_event(struct store *s, const char *json);
/* Write the batch in one transaction. 0 when it was empty. */
int store_commit(struct store *s, char *err, size_t errlen);
size_t store_pending(const struct store *s);

/*
 * The same commit, split so that it can run on another thread while the
 * owner goes on queueing the next batch: store_take_batch() moves the
 * pending batch out (NULL when there is none); store_commit_batch() writes
 * it in one transaction (from any one thread at a time; the store must not
 * be closed meanwhile); on failure store_return_batch() puts it back in
 * front of whatever was queued since, so nothing is lost or reordered;
 * otherwise store_batch_free().
 */
struct store_batch;
struct store_batch *store_take_batch(struct store *s);
int store_commit_batch(struct store *s, struct store_batch *b, char *err,
		       size_t errlen);
void store_return_batch(struct store *s, struct store_batch *b);
void store_batch_free(struct store_batch *b);

/* Read a committed value: *out is new (NUL-terminated), caller frees. */
int store_get(struct store *s, enum store_db db, const char *key, char **out,
	      size_t *len);

/* Call cb for each committed record in key order; a non-zero return from
 * cb stops the walk and is returned. Key and value are borrowed. For the
 * events db, key is the 8-byte sequence. */
typedef int (*store_walk_cb)(void *ud, const void *key, size_t klen,
			     const char *val, size_t vlen);
int store_foreach(struct store *s, enum store_db db, store_walk_cb cb,
		  void *ud);
/* Every committed record of every database (releases, devices, events,
 * meta, in that order, each in key order) from one read transaction: a
 * consistent snapshot even while another process writes. A non-zero
 * return from cb stops the walk and is returned; an LMDB error (a damaged
 * file, say) returns STORE_EIO with its text in err. Key and value are
 * borrowed. */
typedef int (*store_snap_cb)(void *ud, enum store_db db, const void *key,
			     size_t klen, const char *val, size_t vlen);
int store_walk_snapshot(struct store *s, store_snap_cb cb, void *ud, char *err,
			size_t errlen);
/* The name of a database ("releases", ...). */
const char *store_db_name(enum store_db db);
/* The last `n` events, oldest first. */
int store_foreach_last_events(struct store *s, size_t n, store_walk_cb cb,
			      void *ud);

uint64_t store_map_size(const struct store *s);

#endif
