/* What a package fetch may touch, and how much of the thread pool it may
 * hold: file:// sources are regular files below the configured
 * directories, checked before a byte is read; URLs are logged without
 * their secrets; pool work runs in lanes of bounded width. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "gateway/gw.h"

/* ------------------------------------------------------ redaction */

struct out {
	char *p;
	size_t n, len;
};

static void put(struct out *o, const char *s, size_t len)
{
	if (o->n == 0)
		return;
	size_t room = o->n - 1 - o->len;
	if (len > room)
		len = room;
	memcpy(o->p + o->len, s, len);
	o->len += len;
	o->p[o->len] = '\0';
}

/* scheme://[user[:pass]@]host[:port]/path[?k=v&...][#frag]: the userinfo
 * becomes "***", each query value "***" (presigned URLs carry their
 * signature there), the fragment is dropped. */
void gw__url_redact(const char *url, char *out, size_t n)
{
	struct out o = {out, n, 0};
	if (n)
		out[0] = '\0';
	const char *s = strstr(url, "://");
	s = s ? s + 3 : url;
	put(&o, url, (size_t)(s - url));
	size_t auth = strcspn(s, "/?#");
	const char *at = NULL;
	for (size_t i = 0; i < auth; i++)
		if (s[i] == '@')
			at = s + i;
	if (at) {
		put(&o, "***@", 4);
		auth -= (size_t)(at + 1 - s);
		s = at + 1;
	}
	size_t path = auth + strcspn(s + auth, "?#");
	put(&o, s, path);
	s += path;
	if (*s != '?')
		return;
	put(&o, "?", 1);
	s++;
	while (*s && *s != '#') {
		size_t key = strcspn(s, "=&#");
		put(&o, s, key);
		s += key;
		if (*s == '=') {
			put(&o, "=***", 4);
			s += strcspn(s, "&#");
		}
		if (*s == '&') {
			put(&o, "&", 1);
			s++;
		}
	}
}

/* ------------------------------------------------------ file:// */

static const char *file_kind(mode_t m)
{
	return S_ISFIFO(m)   ? "a FIFO"
	       : S_ISCHR(m)  ? "a character device"
	       : S_ISBLK(m)  ? "a block device"
	       : S_ISDIR(m)  ? "a directory"
	       : S_ISSOCK(m) ? "a socket"
			     : "not a regular file";
}

/* Is the resolved path below one of the ':'-separated directories? */
static bool file_allowed(const char *real, const char *dirs)
{
	char dir[PATH_MAX], rd[PATH_MAX];
	for (const char *s = dirs; *s;) {
		size_t len = strcspn(s, ":");
		if (len > 0 && len < sizeof(dir)) {
			memcpy(dir, s, len);
			dir[len] = '\0';
			if (realpath(dir, rd)) {
				size_t rl = strlen(rd);
				if (rl == 1 ||
				    (!strncmp(real, rd, rl) && real[rl] == '/'))
					return true;
			}
		}
		s += len;
		if (*s == ':')
			s++;
	}
	return false;
}

int gw__file_open(const char *url, const char *dirs, uint64_t max, int *fd,
		  uint64_t *size, char *err, size_t n)
{
	const char *path = url + 7; /* after file:// */
	char real[PATH_MAX];
	struct stat st;
	*fd = -1;
	if (path[0] != '/') {
		snprintf(err, n,
			 "file:// URL must name an absolute path "
			 "(file:///dir/package.ota)");
		return -1;
	}
	if (!dirs[0]) {
		snprintf(err, n,
			 "file:// packages are not allowed here: "
			 "file_dirs names no directory");
		return -1;
	}
	if (!realpath(path, real)) {
		snprintf(err, n, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (!file_allowed(real, dirs)) {
		snprintf(err, n,
			 "%s is outside the directories allowed for file:// "
			 "packages (file_dirs = %s)",
			 real, dirs);
		return -1;
	}
	/* O_NONBLOCK: opening a FIFO or a device must not wait for anyone;
	 * fstat then refuses whatever is not a regular file. */
	int f = open(real,
		     O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (f < 0) {
		snprintf(err, n, "cannot open %s: %s", real, strerror(errno));
		return -1;
	}
	if (fstat(f, &st) != 0) {
		snprintf(err, n, "fstat %s: %s", real, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, n,
			 "%s is %s, not a regular file: refused "
			 "before reading",
			 real, file_kind(st.st_mode));
		goto fail;
	}
	if (st.st_size <= 0) {
		snprintf(err, n, "package is empty");
		goto fail;
	}
	if ((uint64_t)st.st_size > max) {
		snprintf(err, n,
			 "%s is %llu bytes, larger than the configured maximum "
			 "of %llu bytes (max_package_mb): refused before "
			 "copying",
			 real, (unsigned long long)st.st_size,
			 (unsigned long long)max);
		goto fail;
	}
	*fd = f;
	*size = (uint64_t)st.st_size;
	return 0;
fail:
	close(f);
	return -1;
}

int gw__file_copy(int src, int dst, uint64_t size, const atomic_bool *cancel,
		  uint64_t deadline, char *err, size_t n)
{
	static const size_t bufsz = 1 << 16;
	char *buf = malloc(bufsz);
	uint64_t total = 0;
	int rc = -1;
	if (!buf) {
		snprintf(err, n, "out of memory");
		return -1;
	}
	while (total < size) {
		if (atomic_load(cancel)) {
			snprintf(err, n, "the gateway is stopping");
			goto out;
		}
		if (util_mono_ms() > deadline) {
			snprintf(err, n,
				 "copy not done after fetch_timeout_s "
				 "(%llu of %llu bytes)",
				 (unsigned long long)total,
				 (unsigned long long)size);
			goto out;
		}
		size_t want = size - total < bufsz ? (size_t)(size - total)
						   : bufsz;
		ssize_t r = read(src, buf, want);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0) {
			snprintf(err, n, "read: %s", strerror(errno));
			goto out;
		}
		if (r == 0) {
			snprintf(err, n,
				 "file shrank while it was copied (%llu "
				 "of %llu bytes)",
				 (unsigned long long)total,
				 (unsigned long long)size);
			goto out;
		}
		if (util_write_all(dst, buf, (size_t)r) != 0) {
			snprintf(err, n, "write to store: %s", strerror(errno));
			goto out;
		}
		total += (uint64_t)r;
	}
	rc = 0;
out:
	free(buf);
	return rc;
}

/* ------------------------------------------------------ lanes */

static void lane_start(struct gw *gw, struct gw_lane *l)
{
	while (l->head && l->busy < l->max) {
		struct gw_lane_item *it = l->head;
		l->head = it->next;
		if (!l->head)
			l->tail = NULL;
		it->next = NULL;
		l->busy++;
		if (uv_queue_work(gw->loop, &it->req, it->work, it->done) != 0)
			it->done(&it->req, UV_ECANCELED); /* frees the slot */
	}
}

void gw__lane_submit(struct gw *gw, struct gw_lane *l, struct gw_lane_item *it,
		     uv_work_cb work, uv_after_work_cb done)
{
	it->work = work;
	it->done = done;
	it->next = NULL;
	if (gw->stopping) {
		l->busy++;
		done(&it->req, UV_ECANCELED);
		return;
	}
	if (l->tail)
		l->tail->next = it;
	else
		l->head = it;
	l->tail = it;
	lane_start(gw, l);
}

bool gw__lanes_busy(const struct gw *gw)
{
	return gw->copy_lane.busy || gw->verify_lane.busy ||
	       gw->delta_lane.busy;
}

void gw__lane_finished(struct gw *gw, struct gw_lane *l)
{
	if (l->busy)
		l->busy--;
	if (!gw->stopping) {
		lane_start(gw, l);
		return;
	}
	/* Stopping: once nothing runs, the stop timer may go. */
	if (!gw__lanes_busy(gw) &&
	    !uv_is_closing((uv_handle_t *)&gw->stop_timer))
		uv_close((uv_handle_t *)&gw->stop_timer, NULL);
}

static void lane_cancel(struct gw_lane *l)
{
	while (l->head) {
		struct gw_lane_item *it = l->head;
		l->head = it->next;
		if (!l->head)
			l->tail = NULL;
		l->busy++;
		it->done(&it->req, UV_ECANCELED);
	}
}

void gw__lanes_cancel(struct gw *gw)
{
	lane_cancel(&gw->copy_lane);
	lane_cancel(&gw->verify_lane);
	lane_cancel(&gw->delta_lane);
}
