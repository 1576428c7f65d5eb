/* Releases: fetch the announced package, verify it off the loop, keep a
 * content-addressed copy, record it, and hand it to the transfer engine. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

struct fetch_job {
	struct gw_lane_item li; /* li.req.data: this job */
	struct gw *gw;
	char product[PROTO_ID_MAX + 1];
	struct proto_announce a;
	struct gw_req rq; /* who asked; where the verdict goes */
	char url_log[2 * PROTO_URL_MAX + 8]; /* a.url without its secrets */
	/* inputs, copied so the worker touches nothing of the loop's */
	uint8_t pubkey[PROTO_PUBKEY_LEN];
	struct proto_keyset ks; /* a copy: SIGHUP may replace the loop's */
	struct proto_trust trust;
	uint64_t max_size;
	char store_dir[PATH_MAX];
	char file_dirs[sizeof(((struct gw_config *)0)->file_dirs)];
	const atomic_bool *cancel;
	uint64_t deadline; /* monotonic ms: a copy ends by then */
	/* outputs */
	int rc;
	char err[320];
	struct proto_manifest m;
	struct proto_pkg_layout lay;
	char *manifest;
	size_t manifest_len;
	uint8_t sig[PROTO_SIG_LEN];
	uint8_t *table; /* block table, checked against the manifest */
	char id[PROTO_RELEASE_HEX_LEN + 1];
	char path[PATH_MAX];
	/* the download's temporary file in the store */
	char tmp[PATH_MAX];
	int tmpfd;
	struct gw_https *https;
	/* stage times, monotonic ms: announced, fetched, verified */
	uint64_t t_announce, t_fetched, t_verified;
};

static void table_path(char *out, size_t n, const char *store_dir,
		       const char *id)
{
	snprintf(out, n, "%s/%s.blocks", store_dir, id);
}

static int table_save(const char *store_dir, const char *id,
		      const uint8_t *table, size_t len, char *err, size_t n)
{
	char path[PATH_MAX], why[256];
	table_path(path, sizeof(path), store_dir, id);
	if (util_write_atomic(path, table, len, 0644, why, sizeof(why)) != 0) {
		snprintf(err, n, "cannot store the block table: %s", why);
		return -1;
	}
	return 0;
}

/* Thread pool: check the downloaded copy completely, keep it under its
 * content address (the release id). The copy, not the source, is what is
 * verified, so a source changed afterwards cannot slip in. */
static void verify_work(uv_work_t *req)
{
	struct fetch_job *j = req->data;
	struct stat st;
	void *map = MAP_FAILED;
	int rc = -1;
	j->rc = -1;
	if (!j->t_fetched)
		j->t_fetched = util_mono_ms();
	if (j->err[0])
		goto fail_tmp; /* the copy already failed */
	if (fsync(j->tmpfd) != 0) {
		snprintf(j->err, sizeof(j->err), "fsync: %s", strerror(errno));
		goto fail_tmp;
	}
	if (fstat(j->tmpfd, &st) == 0 && st.st_size > 0)
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED,
			   j->tmpfd, 0);
	if (map == MAP_FAILED) {
		snprintf(j->err, sizeof(j->err), "package is empty");
		goto fail_tmp;
	}
	struct proto_err perr = {{0}};
	rc = proto_pkg_check_trust(map, (size_t)st.st_size, &j->trust, &j->m,
				   &j->lay, &j->table, &perr);
	if (rc != 0) {
		snprintf(j->err, sizeof(j->err), "%s",
			 perr.text[0] ? perr.text : proto_strerror(rc));
		goto fail_map;
	}
	if (j->m.block_size == 0) {
		snprintf(j->err, sizeof(j->err),
			 "package has no block table (made by an older "
			 "pack): re-pack it with ota-gateway pack");
		goto fail_map;
	}
	if (strcmp(j->m.product, j->product) != 0) {
		snprintf(j->err, sizeof(j->err),
			 "package is for product '%s', announced on the "
			 "topic of '%s'",
			 j->m.product, j->product);
		goto fail_map;
	}
	const uint8_t *base = map;
	j->manifest_len = j->lay.manifest_len;
	j->manifest = malloc(j->manifest_len + 1);
	if (!j->manifest) {
		snprintf(j->err, sizeof(j->err), "out of memory");
		goto fail_map;
	}
	memcpy(j->manifest, base + j->lay.manifest_off, j->manifest_len);
	j->manifest[j->manifest_len] = '\0';
	memcpy(j->sig, base + j->lay.sig_off, PROTO_SIG_LEN);
	uint8_t rid[PROTO_RELEASE_ID_LEN];
	proto_release_id(j->manifest, j->manifest_len, rid);
	proto_hex_encode(rid, sizeof(rid), j->id);
	munmap(map, (size_t)st.st_size);
	if (table_save(j->store_dir, j->id, j->table,
		       (size_t)proto_block_count(&j->m) * PROTO_SHA256_LEN,
		       j->err, sizeof(j->err)) != 0)
		goto fail_tmp;
	snprintf(j->path, sizeof(j->path), "%s/%s.ota", j->store_dir, j->id);
	if (rename(j->tmp, j->path) != 0) {
		snprintf(j->err, sizeof(j->err), "rename into store: %s",
			 strerror(errno));
		goto fail_tmp;
	}
	util_fsync_dir_of(j->path);
	j->tmp[0] = '\0';
	j->t_verified = util_mono_ms();
	j->rc = 0;
	return;
fail_map:
	munmap(map, (size_t)st.st_size);
fail_tmp:
	unlink(j->tmp);
	j->tmp[0] = '\0';
	free(j->table);
	j->table = NULL;
}

/* Thread pool, file://: copy the source into the store (verify_work
 * checks the copy next, in its own lane). Nothing is read before the
 * source is known to be a regular file below file_dirs, of an accepted
 * size. */
static void copy_work(uv_work_t *req)
{
	struct fetch_job *j = req->data;
	uint64_t size;
	int src;
	if (gw__file_open(j->a.url, j->file_dirs, j->max_size, &src, &size,
			  j->err, sizeof(j->err)) != 0)
		return;
	gw__file_copy(src, j->tmpfd, size, j->cancel, j->deadline, j->err,
		      sizeof(j->err));
	close(src);
}

static int release_map(struct gw_release *r, char *err, size_t n)
{
	int fd = open(r->path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, n, "%s: %s", r->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((uint64_t)st.st_size != r->payload_off + r->m.size) {
		snprintf(err, n, "%s: size %lld, expected %llu", r->path,
			 (long long)st.st_size,
			 (unsigned long long)(r->payload_off + r->m.size));
		close(fd);
		return -1;
	}
	void *map =
	    mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		snprintf(err, n, "mmap %s: %s", r->path, strerror(errno));
		return -1;
	}
	r->map = map;
	r->map_len = (size_t)st.st_size;
	return 0;
}

static void release_free(struct gw_release *r)
{
	gw__variants_free(r);
	OPENSSL_cleanse(r->ckey, sizeof(r->ckey));
	proto_aead_free(r->aead);
	for (uint32_t i = 0; r->sealed && i < r->nfrags; i++)
		free(r->sealed[i]);
	free(r->sealed);
	if (r->map)
		munmap((void *)r->map, r->map_len);
	free(r->table);
	gw__xfer_release_free(NULL, r);
	free(r->manifest);
	proto_announce_free(&r->target);
	free(r);
}

void gw__releases_free(struct gw *gw)
{
	while (gw->releases) {
		struct gw_release *r = gw->releases;
		gw->releases = r->next;
		release_free(r);
	}
}

/* Is there already a release of this product at this version or newer? */
static const struct gw_release *newer_or_equal(struct gw *gw,
					       const struct proto_manifest *m)
{
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		int c;
		if (!strcmp(r->m.product, m->product) &&
		    proto_version_cmp(r->m.version, m->version, &c) == 0 &&
		    c >= 0)
			return r;
	}
	return NULL;
}

/* A signed downgrade supersedes the newer releases of its product: they
 * are retired for good, or devices would be upgraded straight back. */
static void retire_newer(struct gw *gw, const struct gw_release *dg)
{
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		int c;
		if (strcmp(r->m.product, dg->m.product) != 0 ||
		    r->camp.st == GW_CAMP_ABORTED ||
		    proto_version_cmp(r->m.version, dg->m.version, &c) != 0 ||
		    c <= 0)
			continue;
		char why[160];
		snprintf(why, sizeof(why),
			 "superseded by the signed downgrade to %s (release %s)",
			 dg->m.version, dg->id);
		gw__campaign_abort(gw, r, why);
	}
}

/* A newer normal release retires every signed downgrade of its product:
 * devices that took the downgrade move on to it and never back. */
static void retire_downgrades(struct gw *gw, const struct gw_release *nr)
{
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		int c;
		if (strcmp(r->m.product, nr->m.product) != 0 ||
		    r->camp.st == GW_CAMP_ABORTED || !r->m.downgrade ||
		    proto_version_cmp(r->m.version, nr->m.version, &c) != 0 ||
		    c >= 0)
			continue;
		char why[160];
		snprintf(why, sizeof(why),
			 "superseded by the newer release %s (release %s)",
			 nr->m.version, nr->id);
		gw__campaign_abort(gw, r, why);
	}
}

/* Expired packages, and downgrades that a newer release has overtaken:
 * refused with the reason (true), never announced. */
static bool refuse_stale(struct gw *gw, const struct fetch_job *j, char *why,
			 size_t whylen)
{
	why[0] = '\0';
	int64_t now = gw__wall_ms(gw) / 1000;
	if (j->m.expires && now >= j->m.expires)
		snprintf(why, whylen, "package expired at %lld (now %lld)",
			 (long long)j->m.expires, (long long)now);
	for (struct gw_release *r = gw->releases;
	     !why[0] && j->m.downgrade && r; r = r->next) {
		int c;
		if (!strcmp(r->m.product, j->m.product) && !r->m.downgrade &&
		    proto_version_cmp(r->m.version, j->m.replaces, &c) == 0 &&
		    c > 0)
			snprintf(why, whylen,
				 "signed downgrade to %s replaces %s, but %s "
				 "(release %s) is newer: a stale downgrade",
				 j->m.version, j->m.replaces, r->m.version,
				 r->id);
	}
	if (!why[0])
		return false;
	gw->stats.releases_refused++;
	log_warnx("release REFUSED product=%s version=%s release=%s "
		  "reason=\"%s\"",
		  j->m.product, j->m.version, j->id, why);
	gw__event(gw, NULL, j->id, "release_refused", why);
	return true;
}

static void release_add(struct gw *gw, struct gw_release *r)
{
	r->next = gw->releases;
	gw->releases = r;
}

/* The verdict on an announcement, with the job's request. */
static void announce_verdict(struct gw *gw, const struct fetch_job *j,
			     struct proto_verdict *v)
{
	if (j->id[0] && !v->release[0])
		snprintf(v->release, sizeof(v->release), "%s", j->id);
	if (j->m.version[0] && !v->version[0])
		snprintf(v->version, sizeof(v->version), "%s", j->m.version);
	gw__verdict_send(gw, &j->rq, v);
}

/* A package stored for nothing (a dry run, a refusal after the copy):
 * removed again, unless a release of that id is on record. */
static void unstore(struct gw *gw, const struct fetch_job *j)
{
	char path[PATH_MAX];
	if (!j->path[0] || gw__release_find(gw, j->id))
		return;
	unlink(j->path);
	table_path(path, sizeof(path), gw->cfg.store_dir, j->id);
	unlink(path);
}

/* Build the release from a verified job; NULL with the reason. */
static struct gw_release *release_new(struct gw *gw, struct fetch_job *j,
				      char *err, size_t n)
{
	struct gw_release *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, n, "out of memory");
		return NULL;
	}
	memcpy(r->id, j->id, sizeof(r->id));
	uint8_t rid[PROTO_RELEASE_ID_LEN];
	proto_hex_decode(r->id, rid, sizeof(rid));
	r->tag = proto_release_tag(rid);
	r->m = j->m;
	r->payload_len = r->m.size;
	r->manifest = j->manifest;
	r->manifest_len = j->manifest_len;
	j->manifest = NULL;
	memcpy(r->sig, j->sig, PROTO_SIG_LEN);
	snprintf(r->path, sizeof(r->path), "%s", j->path);
	r->payload_off = j->lay.payload_off;
	r->frag_size = j->a.fragment_size ? j->a.fragment_size
					  : gw->cfg.fragment_size;
	r->window = j->a.window
			? j->a.window
			: gw_snd_default_window(gw->cfg.window, r->frag_size);
	r->table = j->table;
	r->table_len = (size_t)proto_block_count(&r->m) * PROTO_SHA256_LEN;
	j->table = NULL;
	r->tfrags = proto_table_fragments(&r->m, r->frag_size);
	uint64_t nf = (r->m.size + r->frag_size - 1) / r->frag_size + r->tfrags;
	r->target = j->a;
	memset(&j->a, 0, sizeof(j->a));
	if (nf > PROTO_FRAGS_MAX) {
		snprintf(err, n,
			 "%llu fragments of %u bytes is more than %u; "
			 "use larger fragments",
			 (unsigned long long)nf, r->frag_size, PROTO_FRAGS_MAX);
		release_free(r);
		return NULL;
	}
	r->nfrags = (uint32_t)nf;
	r->created_ms = gw__wall_ms(gw);
	r->fetch_ms = (int64_t)(j->t_fetched - j->t_announce);
	r->verify_ms = (int64_t)(j->t_verified - j->t_fetched);
	r->encrypt = r->target.encrypt_set ? r->target.encrypt
					   : gw->cfg.encrypt_packages;
	return r;
}

/* Known, stale or older: the verdict (true), or false to go on. */
static bool announce_settled(struct gw *gw, struct fetch_job *j,
			     struct proto_verdict *v)
{
	struct gw_release *known = gw__release_find(gw, j->id);
	if (known) {
		log_info("release=%s already known: announcement ignored",
			 j->id);
		v->verdict = known->camp.st == GW_CAMP_ABORTED
				 ? PROTO_VERDICT_REFUSED
				 : PROTO_VERDICT_KNOWN;
		if (known->camp.st == GW_CAMP_ABORTED)
			snprintf(v->reason, sizeof(v->reason),
				 "release was aborted (%s); publish a new "
				 "release instead",
				 known->camp.pause_reason);
		else {
			gw__verdict_targets(gw, known, v);
			gw__appendf(v->reason, sizeof(v->reason),
				    "%salready announced: campaign %s, nothing "
				    "changed",
				    v->reason[0] ? "; " : "",
				    gw__campaign_state(known));
		}
		return true;
	}
	if (refuse_stale(gw, j, v->reason, sizeof(v->reason))) {
		v->verdict = PROTO_VERDICT_REFUSED;
		return true;
	}
	const struct gw_release *newer =
	    j->m.downgrade ? NULL : newer_or_equal(gw, &j->m);
	if (newer) {
		log_info("release %s %s ignored: %s is already released "
			 "(release=%s)",
			 j->m.product, j->m.version, newer->m.version,
			 newer->id);
		gw__event(gw, NULL, j->id, "release_ignored",
			  "older or equal version");
		v->verdict = PROTO_VERDICT_REFUSED;
		snprintf(v->reason, sizeof(v->reason),
			 "%s is already released (release %s): devices never "
			 "go back unless the publisher signs a downgrade",
			 newer->m.version, newer->id);
		return true;
	}
	return false;
}

static void fetch_done(uv_work_t *req, int status)
{
	struct fetch_job *j = req->data;
	struct gw *gw = j->gw;
	struct proto_verdict v;
	char err[320];
	gw__lane_finished(gw, &gw->verify_lane);
	gw->fetches--;
	close(j->tmpfd);
	gw__verdict_init(&v, j->product, "announce");
	v.verdict = PROTO_VERDICT_REFUSED;
	if (status != 0 || j->rc != 0) {
		if (j->tmp[0])
			unlink(j->tmp); /* cancelled before its check */
		if (status != 0 && !j->err[0])
			snprintf(j->err, sizeof(j->err),
				 "cancelled: the gateway is stopping");
		gw->stats.releases_refused++;
		log_warnx("release REFUSED product=%s url=%s reason=\"%s\"",
			  j->product, j->url_log, j->err);
		gw__event(gw, NULL, NULL, "release_refused", j->err);
		snprintf(v.reason, sizeof(v.reason), "%s", j->err);
		goto out_verdict;
	}
	if (announce_settled(gw, j, &v))
		goto out_verdict;
	bool dry = j->a.dry_run;
	struct gw_release *r = release_new(gw, j, err, sizeof(err));
	if (!r ||
	    (!dry && (release_map(r, err, sizeof(err)) != 0 ||
		      (r->encrypt && gw__enc_release_key(gw, r, true, err,
							 sizeof(err)) != 0)))) {
		log_warnx("release=%s refused: %s", j->id, err);
		snprintf(v.reason, sizeof(v.reason), "%s", err);
		if (r)
			release_free(r);
		unstore(gw, j);
		goto out_verdict;
	}
	bool typo = gw__verdict_targets(gw, r, &v);
	if (dry || typo) {
		/* Nothing is recorded: a corrected announcement of the same
		 * package is a new one, not "already known". */
		v.verdict = dry ? PROTO_VERDICT_DRY_RUN : PROTO_VERDICT_REFUSED;
		if (dry)
			gw__appendf(v.reason, sizeof(v.reason),
				    "%sdry run: nothing was started",
				    v.reason[0] ? "; " : "");
		release_free(r);
		unstore(gw, j);
		goto out_verdict;
	}
	if (r->m.downgrade)
		retire_newer(gw, r);
	else
		retire_downgrades(gw, r);
	gw__campaign_init(gw, r);
	gw__release_save(gw, r);
	release_add(gw, r);
	log_info("release=%s product=%s version=%s size=%llu fragments=%u "
		 "fragment_size=%u window=%u%s verified and stored",
		 r->id, r->m.product, r->m.version,
		 (unsigned long long)r->m.size, r->nfrags, r->frag_size,
		 r->window, r->encrypt ? " encrypted" : "");
	gw__event(gw, NULL, r->id, "release_verified", r->m.version);
	v.verdict = PROTO_VERDICT_ACCEPTED;
	gw__offers_due(gw);
out_verdict:
	announce_verdict(gw, j, &v);
	proto_announce_free(&j->a);
	free(j->manifest);
	free(j->table);
	free(j);
}

/* The https download ended (on the loop): verify it in the pool. */
static void https_done(void *ud, int rc, const char *err)
{
	struct fetch_job *j = ud;
	j->https = NULL;
	j->t_fetched = util_mono_ms();
	if (rc != 0) {
		char why[sizeof(j->err)];
		snprintf(why, sizeof(why), "%s", err);
		snprintf(j->err, sizeof(j->err), "download failed: %s", why);
	}
	gw__lane_submit(j->gw, &j->gw->verify_lane, &j->li, verify_work,
			fetch_done);
}

/* The file:// copy ended (on the loop): verify it in the next lane. */
static void copy_done(uv_work_t *req, int status)
{
	struct fetch_job *j = req->data;
	gw__lane_finished(j->gw, &j->gw->copy_lane);
	j->t_fetched = util_mono_ms();
	if (status != 0 && !j->err[0])
		snprintf(j->err, sizeof(j->err),
			 "cancelled: the gateway is stopping");
	gw__lane_submit(j->gw, &j->gw->verify_lane, &j->li, verify_work,
			fetch_done);
}

/* Refused before any job exists. */
static void announce_refused(struct gw *gw, const char *product,
			     const struct gw_req *rq, const char *why)
{
	struct proto_verdict v;
	gw__verdict_init(&v, product, "announce");
	v.verdict = PROTO_VERDICT_REFUSED;
	snprintf(v.reason, sizeof(v.reason), "%s", why);
	gw__verdict_send(gw, rq, &v);
}

void gw__announce(struct gw *gw, const char *product, const void *payload,
		  size_t len, const struct gw_req *rq)
{
	char why[PROTO_REASON_MAX + 1];
	if (len == 0)
		return; /* a cleared retained announcement */
	if (!proto_id_valid(product)) {
		gw->stats.msgs_bad++;
		log_warnx("announcement on an invalid product topic dropped");
		return;
	}
	struct fetch_job *j = calloc(1, sizeof(*j));
	if (!j)
		return;
	if (rq)
		j->rq = *rq;
	snprintf(j->rq.product, sizeof(j->rq.product), "%s", product);
	struct proto_err perr = {{0}};
	if (proto_announce_decode(payload, len, &j->a, &perr) != 0) {
		gw->stats.msgs_bad++;
		log_warnx("announcement for %s refused: %s", product,
			  perr.text[0] ? perr.text : "malformed");
		gw__event(gw, NULL, NULL, "announce_refused", perr.text);
		snprintf(why, sizeof(why), "malformed announcement: %s",
			 perr.text[0] ? perr.text : "malformed");
		announce_refused(gw, product, &j->rq, why);
		free(j);
		return;
	}
	if (j->a.encrypt_set && j->a.encrypt && !gw->cfg.device_cert_dir[0]) {
		/* Refused, never sent in clear instead. */
		log_warnx("announcement for %s refused: it asks for encryption "
			  "and no device_cert_dir is configured",
			  product);
		gw__event(gw, NULL, NULL, "announce_refused",
			  "encryption asked for without device_cert_dir");
		proto_announce_free(&j->a);
		free(j);
		return;
	}
	snprintf(j->rq.reply, sizeof(j->rq.reply), "%s", j->a.reply);
	snprintf(j->rq.operator_name, sizeof(j->rq.operator_name), "%s",
		 j->a.operator_name);
	j->gw = gw;
	snprintf(j->product, sizeof(j->product), "%s", product);
	memcpy(j->pubkey, gw->trust.pub, sizeof(j->pubkey));
	j->trust.pub = gw->trust.have_pub ? j->pubkey : NULL;
	if (gw->trust.have_ks) {
		j->ks = gw->trust.env.ks;
		j->trust.ks = &j->ks;
	}
	j->max_size = (uint64_t)gw->cfg.max_package_mb << 20;
	snprintf(j->store_dir, sizeof(j->store_dir), "%s", gw->cfg.store_dir);
	memcpy(j->file_dirs, gw->cfg.file_dirs, sizeof(j->file_dirs));
	j->cancel = &gw->fetch_cancel;
	gw__url_redact(j->a.url, j->url_log, sizeof(j->url_log));
	j->li.req.data = j;
	if (snprintf(j->tmp, sizeof(j->tmp), "%s/.fetch-XXXXXX",
		     j->store_dir) >= (int)sizeof(j->tmp) ||
	    (j->tmpfd = mkostemp(j->tmp, O_CLOEXEC)) < 0) {
		snprintf(why, sizeof(why), "cannot create a file in %s: %s",
			 j->store_dir, strerror(errno));
		log_warnx("announcement for %s: %s", product, why);
		gw__event(gw, NULL, NULL, "release_refused",
			  "cannot create a file in the store");
		announce_refused(gw, product, &j->rq, why);
		proto_announce_free(&j->a);
		free(j);
		return;
	}
	j->t_announce = util_mono_ms();
	j->deadline = j->t_announce + (uint64_t)gw->cfg.fetch_timeout_s * 1000;
	log_info("announcement product=%s url=%s: fetching", product,
		 j->url_log);
	gw->fetches++;
	if (strncmp(j->a.url, "https://", 8) == 0) {
		j->https = gw__https_get(gw, j->a.url, j->tmpfd, j->max_size,
					 https_done, j);
		if (j->https)
			return;
		snprintf(j->err, sizeof(j->err), "cannot start the download");
		https_done(j, -1, j->err);
		return;
	}
	gw__lane_submit(gw, &gw->copy_lane, &j->li, copy_work, copy_done);
}

/* ------------------------------------------------- reload on start */

/* The stored block table, checked against the signed manifest; rebuilt
 * from the package (and stored again) when missing or damaged. */
static int table_load(struct gw *gw, struct gw_release *r, char *err, size_t n)
{
	char path[PATH_MAX], why[256];
	uint8_t root[PROTO_SHA256_LEN];
	size_t want = (size_t)proto_block_count(&r->m) * PROTO_SHA256_LEN, len;
	char *buf = NULL;
	table_path(path, sizeof(path), gw->cfg.store_dir, r->id);
	if (util_read_file(path, want, &buf, &len, why, sizeof(why)) == 0 &&
	    len == want && proto_sha256(buf, len, root) == 0 &&
	    !memcmp(root, r->m.blocks, sizeof(root))) {
		r->table = (uint8_t *)buf;
		r->table_len = len;
		return 0;
	}
	free(buf);
	log_warnx("release=%s block table %s missing or damaged: rebuilding "
		  "it from the package",
		  r->id, path);
	if ((r->table = malloc(want)) == NULL ||
	    proto_block_table(&r->m, r->map + r->payload_off, r->table, root) !=
		0 ||
	    memcmp(root, r->m.blocks, sizeof(root)) != 0) {
		snprintf(err, n,
			 "stored package does not match its block "
			 "table");
		return -1;
	}
	r->table_len = want;
	if (table_save(gw->cfg.store_dir, r->id, r->table, want, why,
		       sizeof(why)) != 0)
		log_warnx("release=%s %s", r->id, why);
	return 0;
}

/* The release's signature, against the publisher keys trusted now. */
static int release_check_sig(struct gw *gw, const struct gw_release *r,
			     char *err, size_t n)
{
	return trust_check(&gw->trust, r->m.product, r->manifest,
			   r->manifest_len, r->sig, 0, err, n);
}

/* What the record does not hold: its tag, the package mapped, the block
 * table, the content key of an encrypted release. */
static int release_attach(struct gw *gw, struct gw_release *r, char *err,
			  size_t n)
{
	uint8_t rid[PROTO_RELEASE_ID_LEN];
	proto_hex_decode(r->id, rid, sizeof(rid));
	r->tag = proto_release_tag(rid);
	r->payload_len = r->m.size; /* the image; variants are made again */
	if (release_map(r, err, n) != 0 || table_load(gw, r, err, n) != 0)
		return -1;
	return r->encrypt ? gw__enc_release_key(gw, r, false, err, n) : 0;
}

/* One release record: parsed (ledger.c), its signature checked, its
 * package and table attached; an unusable one is logged and skipped. */
static int release_load_cb(void *ud, const void *key, size_t klen,
			   const char *val, size_t vlen)
{
	struct gw *gw = ud;
	char err[320];
	struct gw_release *r = calloc(1, sizeof(*r));
	if (!r)
		return -1;
	if (gw__release_parse(val, vlen, r, err, sizeof(err)) != 0 ||
	    release_check_sig(gw, r, err, sizeof(err)) != 0 ||
	    release_attach(gw, r, err, sizeof(err)) != 0) {
		log_warnx("ledger: release record %.*s unusable, skipped: %s",
			  (int)(klen < 64 ? klen : 64), (const char *)key, err);
		release_free(r);
		return 0;
	}
	release_add(gw, r);
	return 0;
}

int gw__releases_load(struct gw *gw)
{
	return store_foreach(gw->db, STORE_RELEASES, release_load_cb, gw);
}

/* ------------------------------------------------------ key set reload */

void gw__keyset_reload(struct gw *gw)
{
	char why[320], *json = NULL;
	size_t len;
	if (!gw->cfg.keyset_file[0]) {
		log_info("SIGHUP: no keyset_file configured, nothing to reload");
		return;
	}
	if (util_read_file(gw->cfg.keyset_file, PROTO_KEYSET_MAX, &json, &len,
			   why, sizeof(why)) != 0) {
		log_warnx("SIGHUP: key set not reloaded: %s", why);
		return;
	}
	int rc = trust_update(&gw->trust, json, len, gw__wall_ms(gw) / 1000,
			      why, sizeof(why));
	free(json);
	if (rc <= 0) {
		if (rc < 0)
			log_warnx("SIGHUP: key set %s REFUSED, keeping version "
				  "%llu: %s",
				  gw->cfg.keyset_file,
				  (unsigned long long)gw->trust.env.ks.version,
				  why);
		else
			log_info("SIGHUP: key set %s is not newer than version "
				 "%llu: unchanged",
				 gw->cfg.keyset_file,
				 (unsigned long long)gw->trust.env.ks.version);
		if (rc < 0)
			gw__event(gw, NULL, NULL, "keyset_refused", why);
		return;
	}
	snprintf(why, sizeof(why), "version %llu, %u publisher keys",
		 (unsigned long long)gw->trust.env.ks.version,
		 gw->trust.env.ks.npub);
	log_info("key set updated: %s", why);
	gw__event(gw, NULL, NULL, "keyset_updated", why);
	/* A release signed by a key the new set no longer lists is retired. */
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		if (r->camp.st == GW_CAMP_ABORTED ||
		    trust_check(&gw->trust, r->m.product, r->manifest,
				r->manifest_len, r->sig, 0, why,
				sizeof(why)) == 0)
			continue;
		gw__campaign_abort(gw, r,
				   "its publisher key is no longer "
				   "trusted (key set updated)");
	}
}
