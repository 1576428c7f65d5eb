#include "common/certcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

#define CC_MSG_MAX 1024

static void ssl_reason(char *buf, size_t n)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	snprintf(buf, n, "%s", r ? r : "not PEM or unreadable");
	ERR_clear_error();
}

/* The file opened, or NULL with "FILE: reason" reported under key. */
static FILE *open_pem(const char *path, const char *key,
		      certcheck_problem_fn fn, void *ud)
{
	char msg[CC_MSG_MAX];
	FILE *f = path && path[0] ? fopen(path, "r") : NULL;
	if (!f) {
		snprintf(msg, sizeof(msg), "%s: %s",
			 path && path[0] ? path : "(not set)",
			 path && path[0] ? strerror(errno) : "no file given");
		fn(ud, key, msg);
	}
	return f;
}

static X509 *load_cert(const char *path, const char *key,
		       certcheck_problem_fn fn, void *ud)
{
	char msg[CC_MSG_MAX], why[128];
	FILE *f = open_pem(path, key, fn, ud);
	if (!f)
		return NULL;
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x) {
		ssl_reason(why, sizeof(why));
		snprintf(msg, sizeof(msg), "%s: not a PEM certificate (%s)",
			 path, why);
		fn(ud, key, msg);
	}
	return x;
}

int certcheck_cn(const char *cert_file, char *cn, size_t n, char *err,
		 size_t errlen)
{
	FILE *f = fopen(cert_file, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", cert_file, strerror(errno));
		return -1;
	}
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	int len = x ? X509_NAME_get_text_by_NID(X509_get_subject_name(x),
						NID_commonName, cn, (int)n)
		    : -1;
	X509_free(x);
	ERR_clear_error();
	if (len < 0) {
		snprintf(err, errlen, "%s: %s", cert_file,
			 x ? "no CN in the subject" : "not a PEM certificate");
		return -1;
	}
	return 0;
}

/* CA verifies the certificate; it is valid now; its CN is the one. */
static int check_cert(const struct certcheck *c, X509 *ca, X509 *x,
		      certcheck_problem_fn fn, void *ud)
{
	char msg[CC_MSG_MAX], cn[256] = "";
	int problems = 0;
	if (ca) {
		X509_STORE *st = X509_STORE_new();
		X509_STORE_CTX *ctx = X509_STORE_CTX_new();
		int ok = st && ctx &&
				 X509_STORE_load_locations(st, c->ca_file,
							   NULL) == 1 &&
				 X509_STORE_CTX_init(ctx, st, x, NULL) == 1
			     ? X509_verify_cert(ctx)
			     : -1;
		if (ok != 1) {
			int e = ctx ? X509_STORE_CTX_get_error(ctx) : 0;
			snprintf(msg, sizeof(msg),
				 "%s: not accepted with CA %s: %s",
				 c->cert_file, c->ca_file,
				 X509_verify_cert_error_string(e));
			fn(ud, c->cert_key, msg);
			problems++;
		}
		X509_STORE_CTX_free(ctx);
		X509_STORE_free(st);
	} else {
		/* Without a CA, still say when it has expired. */
		if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
			snprintf(msg, sizeof(msg),
				 "%s: certificate has expired", c->cert_file);
			fn(ud, c->cert_key, msg);
			problems++;
		}
	}
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
				  sizeof(cn));
	if (c->expect_cn && c->expect_cn[0] && strcmp(cn, c->expect_cn) != 0) {
		snprintf(msg, sizeof(msg),
			 "%s: certificate is for CN '%s', but %s is '%s' (the "
			 "broker knows this client by its CN)",
			 c->cert_file, cn, c->expect_key, c->expect_cn);
		fn(ud, c->expect_key, msg);
		problems++;
	}
	ERR_clear_error();
	return problems;
}

static int check_key(const struct certcheck *c, X509 *x,
		     certcheck_problem_fn fn, void *ud)
{
	char msg[CC_MSG_MAX], why[128];
	FILE *f = open_pem(c->key_file, c->key_key, fn, ud);
	if (!f)
		return 1;
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	int problems = 0;
	if (!k) {
		ssl_reason(why, sizeof(why));
		snprintf(msg, sizeof(msg), "%s: not a PEM private key (%s)",
			 c->key_file, why);
		fn(ud, c->key_key, msg);
		problems++;
	} else if (x && X509_check_private_key(x, k) != 1) {
		snprintf(msg, sizeof(msg),
			 "%s: private key does not match certificate %s",
			 c->key_file, c->cert_file);
		fn(ud, c->key_key, msg);
		problems++;
	}
	EVP_PKEY_free(k);
	ERR_clear_error();
	return problems;
}

int certcheck_run(const struct certcheck *c, certcheck_problem_fn fn, void *ud)
{
	int problems = 0;
	X509 *ca = load_cert(c->ca_file, c->ca_key, fn, ud);
	X509 *x = load_cert(c->cert_file, c->cert_key, fn, ud);
	if (!ca)
		problems++;
	if (!x)
		problems++;
	if (x)
		problems += check_cert(c, ca, x, fn, ud);
	problems += check_key(c, x, fn, ud);
	X509_free(ca);
	X509_free(x);
	return problems;
}

int certcheck_dir_writable(const char *dir, char *err, size_t errlen)
{
	char why[256], probe[4096];
	if (util_mkdirs(dir, 0700, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	if (snprintf(probe, sizeof(probe), "%s/.ota-check-XXXXXX", dir) >=
	    (int)sizeof(probe)) {
		snprintf(err, errlen, "%s: path too long", dir);
		return -1;
	}
	int fd = mkstemp(probe);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot create a file: %s", dir,
			 strerror(errno));
		return -1;
	}
	close(fd);
	unlink(probe);
	return 0;
}

void certcheck_print_problem(void *ud, const char *key, const char *msg)
{
	struct certcheck_problems *p = ud;
	p->n++;
	fprintf(stderr, "%s%s: %s\n", p->prefix, key, msg);
}
