/*
 * libFuzzer target for the "key = value" configuration parser,
 * conf_load_file() in common/conf.h. The input is the whole file. It is
 * written to an anonymous memory file (memfd_create) and opened through
 * /proc/self/fd/N, so a run leaves nothing behind in /tmp even when it
 * crashes. The key table mixes the gateway's and the device's keys with
 * every type and some edge sizes and ranges.
 *
 * Invariants checked with abort(): every string field stays NUL-terminated
 * inside its array, every number within its key's range, and the error
 * text is set exactly when the load fails.
 *
 * fuzz-sources: common/conf.c
 *
 * `make fuzz` builds and runs it (tests/fuzz/run.sh); test_fuzz_replay.c
 * includes this file with FUZZ_REPLAY defined and calls fuzz_conf_one().
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/conf.h"

struct fconf {
	char broker_host[256];
	uint32_t broker_port;
	char ca_file[256];
	char id[64];
	char log_level[8];
	char one[1]; /* only "" fits */
	uint32_t fragment_size;
	uint32_t window;
	uint32_t any;  /* 0 .. UINT32_MAX */
	uint32_t zero; /* 0 .. 0 */
	bool verbose;
	bool json;
};

#define FCONF_K(n, type, field, lo, hi)                                        \
	{                                                                      \
		n, type, offsetof(struct fconf, field),                        \
		    sizeof(((struct fconf *)0)->field), lo, hi, n              \
	}

static const struct conf_key fconf_keys[] = {
    FCONF_K("broker_host", CONF_STR, broker_host, 0, 0),
    FCONF_K("broker_port", CONF_U32, broker_port, 1, 65535),
    FCONF_K("ca_file", CONF_STR, ca_file, 0, 0),
    FCONF_K("id", CONF_STR, id, 0, 0),
    FCONF_K("log_level", CONF_STR, log_level, 0, 0),
    FCONF_K("one", CONF_STR, one, 0, 0),
    FCONF_K("fragment_size", CONF_U32, fragment_size, 160, 65536),
    FCONF_K("window", CONF_U32, window, 1, 256),
    FCONF_K("any", CONF_U32, any, 0, UINT32_MAX),
    FCONF_K("zero", CONF_U32, zero, 0, 0),
    FCONF_K("verbose", CONF_BOOL, verbose, 0, 0),
    FCONF_K("json", CONF_BOOL, json, 0, 0),
    {0}};

#define FCONF_TERMINATED(arr) (memchr((arr), '\0', sizeof(arr)) != NULL)

/* The memory file, made on first use and kept for the process. */
static int fconf_file(char *path, size_t cap)
{
	static int fd = -1;

	if (fd < 0 && (fd = memfd_create("fuzz_conf", 0)) < 0)
		return -1;
	snprintf(path, cap, "/proc/self/fd/%d", fd);
	return fd;
}

static bool fconf_valid(const struct fconf *c)
{
	return FCONF_TERMINATED(c->broker_host) &&
	       FCONF_TERMINATED(c->ca_file) && FCONF_TERMINATED(c->id) &&
	       FCONF_TERMINATED(c->log_level) && c->one[0] == '\0' &&
	       c->broker_port >= 1 && c->broker_port <= 65535 &&
	       c->fragment_size >= 160 && c->fragment_size <= 65536 &&
	       c->window >= 1 && c->window <= 256 && c->zero == 0;
}

static int fuzz_conf_one(const uint8_t *data, size_t size)
{
	struct fconf c;
	char path[64], err[256];
	int fd, rc;

	if ((fd = fconf_file(path, sizeof(path))) < 0 || ftruncate(fd, 0) != 0)
		abort();
	if (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	memset(&c, 0, sizeof(c));
	snprintf(c.broker_host, sizeof(c.broker_host), "localhost");
	c.broker_port = 8883;
	c.fragment_size = 4096;
	c.window = 32;
	memset(err, 0, sizeof(err));
	rc = conf_load_file(path, fconf_keys, &c, err, sizeof(err));
	if (!fconf_valid(&c) || (rc == 0) != (err[0] == '\0') ||
	    !FCONF_TERMINATED(err))
		abort();
	return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_conf_one(data, size);
}
#endif
