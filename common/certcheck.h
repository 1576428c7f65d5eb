/*
 * certcheck: what a TLS client's files must satisfy before it connects,
 * checked up front so that a misconfiguration is named (file, config key,
 * reason) instead of showing up as a failed handshake retried forever.
 */
#ifndef OTA_CERTCHECK_H
#define OTA_CERTCHECK_H

#include <stdbool.h>
#include <stddef.h>

struct certcheck {
	/* The files and the config keys they came from (for the messages). */
	const char *ca_file, *ca_key;
	const char *cert_file, *cert_key;
	const char *key_file, *key_key;
	/* The CN the certificate must carry ("" or NULL: any), and the key
	 * that configured it (e.g. "id" for a device). */
	const char *expect_cn, *expect_key;
};

/* Called once per problem: `key` is the config key to fix, `msg` says
 * what is wrong (starting with the file). Both borrowed for the call. */
typedef void (*certcheck_problem_fn)(void *ud, const char *key,
				     const char *msg);

/* Load the CA, the certificate and the private key; check that the key
 * matches the certificate, the CA verifies it, it is valid now, and its
 * CN is expect_cn. Returns the number of problems found (0: all good). */
int certcheck_run(const struct certcheck *c, certcheck_problem_fn fn, void *ud);

/* The subject CN of a PEM certificate into cn[n]. 0, or -1 with err. */
int certcheck_cn(const char *cert_file, char *cn, size_t n, char *err,
		 size_t errlen);

/* Is dir a directory we may create files in (made if missing)? 0, or -1
 * with the reason in err. */
int certcheck_dir_writable(const char *dir, char *err, size_t errlen);

/* A certcheck_problem_fn that prints "<prefix><key>: <msg>" on stderr and
 * counts: pass a struct certcheck_problems as ud. */
struct certcheck_problems {
	int n;
	const char *prefix;
};
void certcheck_print_problem(void *ud, const char *key, const char *msg);

#endif
