/* The TLS contexts of mq.c's clients with shared_tls: one per broker host
 * and set of files (CA, certificate, key), made once and reused by every
 * client with the same ones (a simulated fleet's in-process restarts),
 * until mq_tls_cache_clear. */
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mq.h"

struct tls_ent {
	char *key; /* host NUL ca NUL cert NUL keyfile, as one string */
	size_t keylen;
	SSL_CTX *ctx;
	struct tls_sess *sess;
};
static struct tls_ent *tls_cache;
static size_t tls_n, tls_cap;

/* The newest TLS session the broker gave a context's client (its
 * ticket), offered again at the next connect: an in-process restart
 * reconnects with an abbreviated handshake, no certificates sent or
 * checked and no signature, where the broker's CPU for a full mutual-TLS
 * handshake was the largest part of what an update cost it (docs/
 * BENCHMARKS.md). A broker that does not accept it (restarted, reloaded:
 * Mosquitto makes its TLS context anew on SIGHUP, new ticket keys and an
 * empty session cache, so a certificate revoked since is checked against
 * the CRL again) makes a full handshake. */
struct tls_sess {
	SSL_SESSION *s;
	char *file; /* mq_opts.session_file, or NULL */
	char *host; /* the context's broker host, with file */
};
static int tls_sess_idx = -1; /* SSL_CTX ex data: its struct tls_sess */
static unsigned long tls_full, tls_resumed; /* handshakes done, by kind */

void mq_tls_handshakes(unsigned long *full, unsigned long *resumed)
{
	*full = tls_full;
	*resumed = tls_resumed;
}

/* The session into its file, replaced whole (a copy cut short by a power
 * cut is never read: at worst the next connect is a full handshake). */
static void tls_sess_save(const struct tls_sess *ts)
{
	char tmp[4200];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", ts->file) >= (int)sizeof(tmp))
		return;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	/* A leftover copy keeps its mode through O_CREAT: the session's
	 * secret is for the device's user only, whatever was there. */
	FILE *f = fd >= 0 && fchmod(fd, 0600) == 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		log_warnx("TLS session: cannot write %s", tmp);
		return;
	}
	int ok = PEM_write_SSL_SESSION(f, ts->s) == 1;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, ts->file) != 0) {
		log_warnx("TLS session: cannot save it in %s", ts->file);
		unlink(tmp);
	}
}

/* The session a previous process saved, if it is for this broker host
 * and still resumable; anything else is ignored (a full handshake). */
static void tls_sess_load(struct tls_sess *ts)
{
	FILE *f = fopen(ts->file, "r");
	if (!f)
		return;
	SSL_SESSION *s = PEM_read_SSL_SESSION(f, NULL, NULL, NULL);
	fclose(f);
	ERR_clear_error();
	const char *h = s ? SSL_SESSION_get0_hostname(s) : NULL;
	if (!s || !h || strcmp(h, ts->host) != 0 ||
	    !SSL_SESSION_is_resumable(s)) {
		log_info("TLS session in %s: %s, not offered", ts->file,
			 !s ? "unreadable" : "for another broker or expired");
		SSL_SESSION_free(s);
		return;
	}
	ts->s = s;
}

static int tls_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_sess *ts =
	    SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_sess_idx);
	if (!ts)
		return 0;
	SSL_SESSION_free(ts->s);
	ts->s = sess;
	/* The broker host it is for, with it in the file (Mosquitto does
	 * not acknowledge SNI, so OpenSSL records none). */
	if (ts->file && SSL_SESSION_set1_hostname(sess, ts->host) == 1)
		tls_sess_save(ts);
	return 1; /* the reference is ours */
}

/* Before the ClientHello is made: libmosquitto creates the SSL and starts
 * the handshake in one call, so this is the one place to offer it. */
static void tls_info_cb(const SSL *ssl, int where, int ret)
{
	(void)ret;
	if ((where & SSL_CB_HANDSHAKE_DONE) && !SSL_is_server(ssl)) {
		if (SSL_session_reused((SSL *)ssl))
			tls_resumed++;
		else
			tls_full++;
		return;
	}
	if (!(where & SSL_CB_HANDSHAKE_START) || SSL_is_server(ssl) ||
	    !SSL_in_before(ssl) || SSL_get_session(ssl))
		return;
	struct tls_sess *ts =
	    SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_sess_idx);
	if (ts && ts->s && SSL_SESSION_is_resumable(ts->s))
		SSL_set_session((SSL *)ssl, ts->s); /* ours, not the caller's */
}

static int tls_resume_setup(SSL_CTX *ctx, const struct mq_opts *o,
			    struct tls_sess **out)
{
	if (tls_sess_idx < 0)
		tls_sess_idx =
		    SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	struct tls_sess *ts = calloc(1, sizeof(*ts));
	if (!ts)
		return -1;
	if (o->session_file) {
		ts->file = strdup(o->session_file);
		ts->host = strdup(o->host);
	}
	if (tls_sess_idx < 0 || (o->session_file && (!ts->file || !ts->host)) ||
	    SSL_CTX_set_ex_data(ctx, tls_sess_idx, ts) != 1) {
		free(ts->file);
		free(ts->host);
		free(ts);
		return -1;
	}
	if (ts->file)
		tls_sess_load(ts);
	SSL_CTX_set_session_cache_mode(ctx,
				       SSL_SESS_CACHE_CLIENT |
					   SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, tls_new_session_cb);
	SSL_CTX_set_info_callback(ctx, tls_info_cb);
	*out = ts;
	return 0;
}

static void tls_errstr(char *err, size_t errlen, const char *what,
		       const char *file)
{
	char buf[256] = "";
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, errlen, "TLS setup: %s %s: %s", what, file,
		 buf[0] ? buf : "failed");
}

static int tls_verify_cb(int ok, X509_STORE_CTX *x)
{
	if (!ok)
		log_warnx(
		    "TLS: certificate verify failed: %s (depth %d)",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)),
		    X509_STORE_CTX_get_error_depth(x));
	return ok;
}

/* What mosquitto_tls_set and mosquitto_tls_opts_set(1, "tlsv1.2") give a
 * client, built once: the CA, our certificate and key, verification of
 * the broker's certificate and of its host name. */
static SSL_CTX *tls_ctx_new(const struct mq_opts *o, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		tls_errstr(err, errlen, "context", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_load_verify_locations(ctx, o->cafile, NULL) != 1) {
		tls_errstr(err, errlen, "CA file", o->cafile);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, o->certfile) != 1) {
		tls_errstr(err, errlen, "certificate", o->certfile);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, o->keyfile, SSL_FILETYPE_PEM) !=
		1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		tls_errstr(err, errlen, "key", o->keyfile);
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_verify_cb);
	if (X509_VERIFY_PARAM_set1_host(SSL_CTX_get0_param(ctx), o->host, 0) !=
	    1) {
		tls_errstr(err, errlen, "host name", o->host);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *mq__tls_ctx_get(const struct mq_opts *o, char *err, size_t errlen)
{
	char key[5 * 4096 + 5];
	int n = snprintf(key, sizeof(key), "%s%c%s%c%s%c%s%c%s", o->host, 0,
			 o->cafile, 0, o->certfile, 0, o->keyfile, 0,
			 o->session_file ? o->session_file : "");
	if (n < 0 || (size_t)n >= sizeof(key)) {
		snprintf(err, errlen, "TLS setup: file names too long");
		return NULL;
	}
	for (size_t i = 0; i < tls_n; i++)
		if (tls_cache[i].keylen == (size_t)n &&
		    !memcmp(tls_cache[i].key, key, (size_t)n))
			return tls_cache[i].ctx;
	if (tls_n == tls_cap) {
		size_t cap = tls_cap ? 2 * tls_cap : 64;
		struct tls_ent *c = realloc(tls_cache, cap * sizeof(*c));
		if (!c) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		tls_cache = c;
		tls_cap = cap;
	}
	SSL_CTX *ctx = tls_ctx_new(o, err, errlen);
	struct tls_sess *ts = NULL;
	char *k = ctx ? malloc((size_t)n) : NULL;
	if (!k || tls_resume_setup(ctx, o, &ts) != 0) {
		if (ctx)
			snprintf(err, errlen, "out of memory");
		free(k);
		SSL_CTX_free(ctx);
		return NULL;
	}
	memcpy(k, key, (size_t)n);
	tls_cache[tls_n++] = (struct tls_ent){k, (size_t)n, ctx, ts};
	return ctx;
}

void mq_tls_cache_clear(void)
{
	for (size_t i = 0; i < tls_n; i++) {
		free(tls_cache[i].key);
		SSL_CTX_free(tls_cache[i].ctx);
		SSL_SESSION_free(tls_cache[i].sess->s); /* every entry has one */
		free(tls_cache[i].sess->file);
		free(tls_cache[i].sess->host);
		free(tls_cache[i].sess);
	}
	free(tls_cache);
	tls_cache = NULL;
	tls_n = tls_cap = 0;
}
