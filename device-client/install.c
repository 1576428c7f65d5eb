/* The installer: the inactive slot's writer (the block sink of the
 * download), then verify the image, install it, switch slots atomically,
 * restart, and commit or roll back. Calls go down to state.c only; the
 * restart itself is dev.c's (the d->restart hook). */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "device-client/dev.h"

static char other(char slot) { return slot == 'a' ? 'b' : 'a'; }

/* ------------------------------------------------------------ the slot */

static void part_path(const struct dev *d, char *out, size_t n)
{
	dev__slot_path(d, other(d->p.slot), "payload.part", out, n);
}

int dev__slot_open(struct dev *d)
{
	char part[PATH_MAX];
	part_path(d, part, sizeof(part));
	if (d->part_fd < 0)
		d->part_fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	return d->part_fd < 0 ? -1 : 0;
}

void dev__slot_close(struct dev *d)
{
	if (d->part_fd >= 0)
		close(d->part_fd);
	d->part_fd = -1;
}

void dev__slot_remove(struct dev *d)
{
	char part[PATH_MAX];
	part_path(d, part, sizeof(part));
	unlink(part);
}

int dev__slot_sync(struct dev *d)
{
	return d->part_fd >= 0 ? fdatasync(d->part_fd) : 0;
}

uint64_t dev__slot_size(struct dev *d)
{
	struct stat st;
	return fstat(d->part_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int dev__slot_truncate(struct dev *d) { return ftruncate(d->part_fd, 0); }

/* The block sink (blocks.h): checked payload bytes into the slot. */
int dev__slot_write(void *ctx, uint64_t off, const uint8_t *data, size_t len,
		    char *why, size_t n)
{
	struct dev *d = ctx;
	ssize_t w = pwrite(d->part_fd, data, len, (off_t)off);
	if (w == (ssize_t)len)
		return 0;
	snprintf(why, n, "writing the inactive slot failed: %s",
		 w < 0 ? strerror(errno) : "short write");
	return -1;
}

/* ------------------------------------------------------------ install */

/* Which file holds the new image: the download, or (after an interrupted
 * install) the renamed payload. */
static void image_path(const struct dev *d, char *out, size_t n)
{
	dev__slot_path(d, other(d->p.slot), "payload.part", out, n);
	if (access(out, F_OK) != 0)
		dev__slot_path(d, other(d->p.slot), "payload", out, n);
}

/* Thread pool: SHA-256 of the image, streamed (memory stays flat). */
static void verify_work(uv_work_t *req)
{
	struct dev *d = req->data;
	char path[PATH_MAX], err[128];
	uint8_t md[PROTO_SHA256_LEN];
	uint64_t total = 0;
	dev__crash_point(d, "verify");
	image_path(d, path, sizeof(path));
	d->work_rc = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(d->work_err, sizeof(d->work_err), "image missing: %s",
			 strerror(errno));
		return;
	}
	int rc = util_sha256_fd(fd, md, &total, err, sizeof(err));
	close(fd);
	if (rc != 0)
		snprintf(d->work_err, sizeof(d->work_err), "reading image: %s",
			 err);
	else if (total != d->m.size)
		snprintf(d->work_err, sizeof(d->work_err),
			 "image is %llu bytes, manifest says %llu",
			 (unsigned long long)total,
			 (unsigned long long)d->m.size);
	else if (memcmp(md, d->m.sha256, PROTO_SHA256_LEN) != 0)
		snprintf(d->work_err, sizeof(d->work_err),
			 "image SHA-256 does not match the signed manifest");
	else
		d->work_rc = 0;
}

static int switch_active(struct dev *d, char slot, char *err, size_t n)
{
	char link[PATH_MAX], tmp[PATH_MAX], target[8];
	util_path(link, sizeof(link), d->cfg.state_dir, "active");
	util_path(tmp, sizeof(tmp), d->cfg.state_dir, "active.tmp");
	snprintf(target, sizeof(target), "slot-%c", slot);
	unlink(tmp);
	if (symlink(target, tmp) != 0 || rename(tmp, link) != 0 ||
	    util_fsync_dir_of(link) != 0) {
		snprintf(err, n, "switching the active slot: %s",
			 strerror(errno));
		return -1;
	}
	return 0;
}

/* Undo an install: the previous slot (still holding the running
 * version) becomes active again. Called while p.slot is the new slot.
 * The record goes first: state.json names the old slot (rolled_back)
 * before the link moves back, and a cut between the two is mended at the
 * next start (dev__reconcile_active): never a record of the new version
 * while the old one runs. */
static void rollback(struct dev *d, const char *why)
{
	char err[256];
	d->p.slot = other(d->p.slot);
	snprintf(d->p.refused, sizeof(d->p.refused), "%s", d->p.release);
	snprintf(d->p.error, sizeof(d->p.error), "%s", why);
	d->p.phase = PROTO_ST_ROLLED_BACK;
	dev__persist(d);
	dev__crash_point(d, "rollback");
	if (switch_active(d, d->p.slot, err, sizeof(err)) != 0)
		log_warnx("device=%s rollback: %s", d->cfg.id, err);
	log_warnx("device=%s rolled back to %s (slot %c): %s", d->cfg.id,
		  d->p.version, d->p.slot, why);
	dev__image_load(d); /* the delta base it reports (6.4) */
	dev__set_state(d, PROTO_ST_ROLLED_BACK, why);
}

/* At start: the `active` link must name state.json's slot, the record of
 * what runs. They differ only after a cut inside a switch: in an install
 * (phase installing, which is done again from the start) or in a rollback
 * (state.json names the old slot already): then the link follows the
 * record. No link is the factory state: slot a. */
void dev__reconcile_active(struct dev *d)
{
	char link[PATH_MAX], target[16], want[8], err[256];
	if (d->p.phase == PROTO_ST_INSTALLING)
		return;
	util_path(link, sizeof(link), d->cfg.state_dir, "active");
	snprintf(want, sizeof(want), "slot-%c", d->p.slot);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0 && errno == ENOENT && d->p.slot == 'a')
		return;
	if (n >= 0) {
		target[n] = '\0';
		if (!strcmp(target, want))
			return;
	}
	log_warnx("device=%s the active link names %s, state.json %s: "
		  "switching it to %s",
		  d->cfg.id, n >= 0 ? target : "nothing", want, want);
	if (switch_active(d, d->p.slot, err, sizeof(err)) != 0)
		log_warnx("device=%s %s", d->cfg.id, err);
}

static void cmd_closed(uv_handle_t *h) { (void)h; }

static void cmd_exit(uv_process_t *p, int64_t status, int sig)
{
	struct dev *d = p->data;
	uv_close((uv_handle_t *)p, cmd_closed);
	d->busy = false;
	if (status == 0 && sig == 0) {
		dev__resume_after_restart(d);
		return;
	}
	char why[PROTO_ERROR_MAX + 1];
	snprintf(why, sizeof(why), "restart command failed (exit %lld%s%s)",
		 (long long)status, sig ? ", signal " : "",
		 sig ? strsignal(sig) : "");
	rollback(d, why);
}

static void restart_now(struct dev *d)
{
	if (!d->cfg.restart_command[0]) {
		d->restart(d); /* dev.c: re-exec, or start again in process */
		return;
	}
	char *args[] = {"/bin/sh", "-c", d->cfg.restart_command, NULL};
	uv_process_options_t po = {.file = "/bin/sh",
				   .args = args,
				   .exit_cb = cmd_exit};
	d->proc.data = d;
	int rc = uv_spawn(d->loop, &d->proc, &po);
	if (rc != 0) {
		char why[PROTO_ERROR_MAX + 1];
		snprintf(why, sizeof(why), "cannot run restart command: %s",
			 uv_strerror(rc));
		rollback(d, why);
		return;
	}
	d->busy = true;
}

static void restart_spread_cb(uv_timer_t *t)
{
	struct dev *d = t->data;
	if (!d->stopping)
		restart_now(d);
}

/* Restart into the new version, after a random wait within the offer's
 * restart_spread_ms (PROTOCOL.md 8, step 10): a fleet updated together
 * reconnects over that window, not in the same second. A cut during the
 * wait restarts at the next start (phase `restarting` is saved). */
static void restart_step(struct dev *d)
{
	d->p.t_restart = dev__wall_ms(d);
	dev__set_state(d, PROTO_ST_RESTARTING, NULL);
	dev__persist(d);
	dev__crash_point(d, "installed");
	uint32_t wait = dev__rand_below(d, d->restart_spread_ms);
	if (wait == 0) {
		restart_now(d);
		return;
	}
	log_info("device=%s restarting in %u ms (spread %u ms)", d->cfg.id,
		 wait, d->restart_spread_ms);
	/* The health check's timer: no check runs before the restart. */
	uv_timer_start(&d->health_timer, restart_spread_cb, wait, 0);
}

static void install(struct dev *d)
{
	char part[PATH_MAX], payload[PATH_MAX], verfile[PATH_MAX];
	char err[256];
	char slot = other(d->p.slot);
	dev__set_state(d, PROTO_ST_INSTALLING, NULL);
	dev__slot_path(d, slot, "payload.part", part, sizeof(part));
	dev__slot_path(d, slot, "payload", payload, sizeof(payload));
	dev__slot_path(d, slot, "version", verfile, sizeof(verfile));
	if (access(part, F_OK) == 0 && rename(part, payload) != 0) {
		snprintf(err, sizeof(err), "installing into slot %c: %s", slot,
			 strerror(errno));
		dev__set_state(d, PROTO_ST_FAILED, err);
		return;
	}
	dev__crash_point(d, "installing");
	if (util_write_atomic(verfile, d->m.version, strlen(d->m.version), 0600,
			      err, sizeof(err)) != 0 ||
	    switch_active(d, slot, err, sizeof(err)) != 0) {
		dev__set_state(d, PROTO_ST_FAILED, err);
		return;
	}
	/* A cut here: the symlink names the new slot, state.json still the
	 * old one in `installing`; the next start verifies the new slot's
	 * image and installs it again (each step is idempotent). */
	dev__crash_point(d, "switched");
	/* The new slot is active; the old one is kept for rollback. Slot and
	 * phase change in one atomic write: a cut can never leave the new
	 * slot recorded with the phase still `installing` (whose restart
	 * would look for the image in the other slot). */
	snprintf(d->p.prev_version, sizeof(d->p.prev_version), "%s",
		 d->p.version);
	d->p.slot = slot;
	d->p.t_installed = dev__wall_ms(d);
	log_info("device=%s installed %s into slot %c", d->cfg.id, d->m.version,
		 slot);
	restart_step(d);
}

static void verify_done(uv_work_t *req, int status)
{
	struct dev *d = req->data;
	d->busy = false;
	if (d->stopping)
		return;
	if (status != 0 || d->work_rc != 0) {
		char part[PATH_MAX];
		log_warnx("device=%s release=%s image REFUSED: %s", d->cfg.id,
			  d->p.release, d->work_err);
		image_path(d, part, sizeof(part));
		d->p.held = 0;
		dev__set_state(d, PROTO_ST_FAILED, d->work_err);
		dev__reconcile_active(d); /* an install cut after its switch */
		unlink(part);
		return;
	}
	d->p.t_verified = dev__wall_ms(d);
	log_info("device=%s release=%s image verified", d->cfg.id,
		 d->p.release);
	dev__crash_point(d, "verified");
	install(d);
}

void dev__verify_start(struct dev *d)
{
	char why[PROTO_ERROR_MAX + 1];
	if (dev__load_manifest(d, why, sizeof(why)) != 0) {
		dev__set_state(d, PROTO_ST_FAILED, why);
		return;
	}
	dev__set_state(d, PROTO_ST_VERIFYING, NULL);
	d->busy = true;
	d->work.data = d;
	if (uv_queue_work(d->loop, &d->work, verify_work, verify_done) != 0) {
		d->busy = false;
		dev__set_state(d, PROTO_ST_FAILED, "cannot start verification");
	}
}

static void commit(struct dev *d)
{
	int c;
	snprintf(d->p.version, sizeof(d->p.version), "%s", d->m.version);
	/* The anti-rollback marks move with the commit, in the same write. */
	if (proto_version_cmp(d->m.version, d->p.highest, &c) != 0 || c > 0)
		snprintf(d->p.highest, sizeof(d->p.highest), "%s",
			 d->m.version);
	if (d->m.security_version > d->p.security_floor)
		d->p.security_floor = d->m.security_version;
	d->p.t_up = dev__wall_ms(d);
	d->p.held = 0;
	dev__crash_point(d, "committing");
	log_info("device=%s up on version %s (slot %c): committed", d->cfg.id,
		 d->p.version, d->p.slot);
	/* Its image is the one it verified: the delta base it reports. */
	d->has_image = true;
	memcpy(d->image, d->m.sha256, sizeof(d->image));
	dev__set_state(d, PROTO_ST_COMMITTED, NULL);
	dev__persist(d);
	/* The will still names the version of the connect (a restart
	 * command or a health check kept the connection): renew it. */
	dev__will_renew(d);
}

static void health_timeout(uv_timer_t *t)
{
	struct dev *d = t->data;
	d->health_timed_out = true;
	uv_process_kill(&d->health_proc, SIGKILL);
}

/* The health check's stderr goes to this file; its last line is kept in
 * the device's error text when the check fails. */
static void health_err_path(const struct dev *d, char *out, size_t n)
{
	snprintf(out, n, "%s/health.stderr", d->cfg.state_dir);
}

/* ": <last non-empty line of the check's stderr>" into buf, or "". */
static void health_last_line(const struct dev *d, char *buf, size_t n)
{
	char path[PATH_MAX], tail[512];
	buf[0] = '\0';
	health_err_path(d, path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from =
	    end > (off_t)sizeof(tail) - 1 ? end - (off_t)sizeof(tail) + 1 : 0;
	ssize_t got = end > 0 ? pread(fd, tail, (size_t)(end - from), from) : 0;
	close(fd);
	if (got <= 0)
		return;
	tail[got] = '\0';
	while (got > 0 && (tail[got - 1] == '\n' || tail[got - 1] == '\r' ||
			   tail[got - 1] == ' '))
		tail[--got] = '\0';
	char *line = strrchr(tail, '\n');
	line = line ? line + 1 : tail;
	for (char *c = line; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	if (*line)
		snprintf(buf, n, ": %s", line);
}

static void health_exit(uv_process_t *p, int64_t status, int sig)
{
	struct dev *d = p->data;
	char why[PROTO_ERROR_MAX + 1];
	uv_timer_stop(&d->health_timer);
	uv_close((uv_handle_t *)p, NULL);
	d->health_running = false;
	d->busy = false;
	if (d->stopping)
		return; /* checked again on the next start */
	if (d->health_timed_out) {
		snprintf(why, sizeof(why), "health check timed out after %u s",
			 d->cfg.health_timeout_s);
	} else if (status != 0 || sig != 0) {
		char last[200];
		health_last_line(d, last, sizeof(last));
		snprintf(why, sizeof(why),
			 "health check failed (exit %lld%s%s)%s",
			 (long long)status, sig ? ", signal " : "",
			 sig ? strsignal(sig) : "", last);
	} else {
		log_info("device=%s health check passed", d->cfg.id);
		commit(d);
		return;
	}
	rollback(d, why);
}

/* Run the operator's health check for the new version, with a timeout. */
static void health_check(struct dev *d)
{
	char slotdir[PATH_MAX], env_ver[64], env_slot[PATH_MAX + 16];
	snprintf(slotdir, sizeof(slotdir), "%s/slot-%c", d->cfg.state_dir,
		 d->p.slot);
	snprintf(env_ver, sizeof(env_ver), "OTA_VERSION=%s", d->m.version);
	snprintf(env_slot, sizeof(env_slot), "OTA_SLOT_DIR=%s", slotdir);
	char *args[] = {"/bin/sh", "-c", d->cfg.health_command, NULL};
	char *env[] = {env_ver, env_slot, "PATH=/usr/local/bin:/usr/bin:/bin",
		       NULL};
	char errpath[PATH_MAX];
	health_err_path(d, errpath, sizeof(errpath));
	int errfd =
	    open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	uv_stdio_container_t stdio[3] = {
	    {.flags = UV_IGNORE},
	    {.flags = UV_IGNORE},
	    {.flags = errfd >= 0 ? UV_INHERIT_FD : UV_IGNORE,
	     .data.fd = errfd}};
	uv_process_options_t po = {.file = "/bin/sh",
				   .args = args,
				   .env = env,
				   .exit_cb = health_exit,
				   .stdio_count = 3,
				   .stdio = stdio};
	d->health_proc.data = d;
	d->health_timed_out = false;
	int rc = uv_spawn(d->loop, &d->health_proc, &po);
	if (errfd >= 0)
		close(errfd);
	if (rc != 0) {
		char why[PROTO_ERROR_MAX + 1];
		snprintf(why, sizeof(why), "cannot run the health check: %s",
			 uv_strerror(rc));
		rollback(d, why);
		return;
	}
	d->health_running = true;
	d->busy = true;
	uv_timer_start(&d->health_timer, health_timeout,
		       (uint64_t)d->cfg.health_timeout_s * 1000, 0);
}

void dev__resume_after_restart(struct dev *d)
{
	char why[PROTO_ERROR_MAX + 1], verfile[PATH_MAX], *ver = NULL;
	size_t len;
	if (dev__load_manifest(d, why, sizeof(why)) != 0) {
		rollback(d, why);
		return;
	}
	/* The slot must hold the version we installed into it. */
	dev__slot_path(d, d->p.slot, "version", verfile, sizeof(verfile));
	if (util_read_file(verfile, 64, &ver, &len, why, sizeof(why)) != 0 ||
	    strcmp(ver, d->m.version) != 0) {
		free(ver);
		rollback(d, "installed slot does not hold the new version");
		return;
	}
	free(ver);
	if (d->cfg.health_command[0]) {
		d->st = PROTO_ST_RESTARTING;
		health_check(d);
		return;
	}
	commit(d);
}
