/* The directories a running gateway owns: one gateway per ledger and per
 * store (flock on a lock file that holds the owner's pid), what a killed
 * one left in the store, and opening the ledger. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

#define LOCK_NAME "ota-gateway.lock"

static int lock_one(const char *dir, const char *key, int *fdp, char *err,
		    size_t n)
{
	char path[PATH_MAX], buf[32];
	*fdp = -1;
	if (snprintf(path, sizeof(path), "%s/%s", dir, LOCK_NAME) >=
	    (int)sizeof(path)) {
		snprintf(err, n, "%s %s: path too long", key, dir);
		return -1;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, n, "%s: cannot open the lock file %s: %s", key,
			 path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		ssize_t r = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[r > 0 ? r : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			snprintf(err, n,
				 "%s %s is in use by another ota-gateway (pid "
				 "%s, lock %s): one gateway per %s; stop that "
				 "one first",
				 key, dir, buf[0] ? buf : "unknown", path, key);
		else
			snprintf(err, n, "%s: cannot lock %s: %s", key, path,
				 strerror(e));
		close(fd);
		return -1;
	}
	int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len)
		log_warn("%s: cannot write the pid into %s", key, path);
	*fdp = fd;
	return 0;
}

int gw__lock_dirs(struct gw *gw, char *err, size_t n)
{
	gw->lock_fds[0] = gw->lock_fds[1] = -1;
	if (lock_one(gw->cfg.db_dir, "db_dir", &gw->lock_fds[0], err, n) != 0)
		return -1;
	char a[PATH_MAX], b[PATH_MAX];
	if (realpath(gw->cfg.db_dir, a) && realpath(gw->cfg.store_dir, b) &&
	    !strcmp(a, b))
		return 0; /* one directory: one lock */
	if (lock_one(gw->cfg.store_dir, "store_dir", &gw->lock_fds[1], err,
		     n) != 0) {
		gw__unlock_dirs(gw);
		return -1;
	}
	return 0;
}

void gw__unlock_dirs(struct gw *gw)
{
	for (int i = 0; i < 2; i++) {
		if (gw->lock_fds[i] >= 0)
			close(gw->lock_fds[i]); /* releases the flock */
		gw->lock_fds[i] = -1;
	}
}

int gw__fetch_sweep(const char *store_dir, char *err, size_t n)
{
	DIR *d = opendir(store_dir);
	struct dirent *e;
	int count = 0;
	if (!d) {
		snprintf(err, n, "%s: %s", store_dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, ".fetch-", 7) != 0)
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0)
			count++;
		else
			log_warn("cannot remove %s/%s", store_dir, e->d_name);
	}
	closedir(d);
	return count;
}

/* Lock the ledger and the store (one gateway each), clear what a killed
 * gateway left, open the ledger and its canary key. */
int gw__open_dirs(struct gw *gw, char *err, size_t n)
{
	struct store_opts so = {0};
	int swept;
	if (util_mkdirs(gw->cfg.store_dir, 0700, err, n) != 0 ||
	    util_mkdirs(gw->cfg.db_dir, 0700, err, n) != 0 ||
	    gw__lock_dirs(gw, err, n) != 0)
		return -1;
	if ((swept = gw__fetch_sweep(gw->cfg.store_dir, err, n)) < 0)
		goto fail;
	if (swept > 0)
		log_info("store %s: removed %d temporary file(s) of fetches "
			 "a stopped gateway left",
			 gw->cfg.store_dir, swept);
	if (store_open(gw->cfg.db_dir, &so, &gw->db, err, n) != 0)
		goto fail;
	if (gw__canary_key_load(gw, err, n) != 0) {
		store_close(gw->db);
		gw->db = NULL;
		goto fail;
	}
	return 0;
fail:
	gw__unlock_dirs(gw);
	return -1;
}
