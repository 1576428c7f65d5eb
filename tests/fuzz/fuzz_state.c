/*
 * libFuzzer target for the device's state.json as it is read back after a
 * restart, a power cut or a damaged disk: dev__persist_parse() in
 * device-client/persist.c (dev.c's dev_load reads the file and calls it).
 * The input is the whole file.
 *
 * Invariants checked with abort(): what the parser accepts is in range
 * (versions parse, slot 'a' or 'b', release and refused "" or a release id,
 * the checkpoint `held` within the transfer's table + payload fragments,
 * which dev.c's download_begin() relies on when it marks [0, held) in a
 * bitmap of that many fragments, timestamps >= 0), and the round trip of
 * proto/PROTOCOL.md section 1 holds: the text dev__persist_json() writes for
 * it parses back to the same struct, and writing that again gives the same
 * bytes.
 *
 * fuzz-sources: device-client/persist.c proto/[a-z]*.c
 *
 * `make fuzz` builds and runs it (tests/fuzz/run.sh); test_fuzz_replay.c
 * includes this file with FUZZ_REPLAY defined and calls fuzz_state_one().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "device-client/dev.h"

#define FSTATE_TERMINATED(arr) (memchr((arr), '\0', sizeof(arr)) != NULL)

static bool fstate_release_ok(const char *s)
{
	return !s[0] ||
	       (strlen(s) == PROTO_RELEASE_HEX_LEN &&
		strspn(s, "0123456789abcdef") == PROTO_RELEASE_HEX_LEN);
}

static bool fstate_valid(const struct dev_persist *p)
{
	return FSTATE_TERMINATED(p->version) &&
	       proto_version_parse(p->version, NULL) == 0 &&
	       (p->slot == 'a' || p->slot == 'b') && (int)p->phase >= 0 &&
	       (int)p->phase < PROTO_ST__COUNT &&
	       FSTATE_TERMINATED(p->release) && fstate_release_ok(p->release) &&
	       FSTATE_TERMINATED(p->refused) && fstate_release_ok(p->refused) &&
	       FSTATE_TERMINATED(p->prev_version) &&
	       (!p->prev_version[0] ||
		proto_version_parse(p->prev_version, NULL) == 0) &&
	       FSTATE_TERMINATED(p->error) &&
	       (p->manifest == NULL ||
		(p->manifest[0] &&
		 strlen(p->manifest) <= PROTO_MANIFEST_MAX)) &&
	       (uint64_t)p->held <=
		   (uint64_t)p->fragments + p->table_fragments &&
	       p->t_accept >= 0 && p->t_downloaded >= 0 && p->t_verified >= 0 &&
	       p->t_installed >= 0 && p->t_restart >= 0 && p->t_up >= 0;
}

static bool fstate_equal(const struct dev_persist *a,
			 const struct dev_persist *b)
{
	return !strcmp(a->version, b->version) && a->slot == b->slot &&
	       a->phase == b->phase && !strcmp(a->release, b->release) &&
	       !strcmp(a->refused, b->refused) &&
	       (a->manifest == NULL) == (b->manifest == NULL) &&
	       (a->manifest == NULL || !strcmp(a->manifest, b->manifest)) &&
	       !memcmp(a->sig, b->sig, sizeof(a->sig)) &&
	       a->fragment_size == b->fragment_size &&
	       a->fragments == b->fragments && a->window == b->window &&
	       a->table_fragments == b->table_fragments && a->held == b->held &&
	       !strcmp(a->prev_version, b->prev_version) &&
	       !strcmp(a->error, b->error) && a->t_accept == b->t_accept &&
	       a->t_downloaded == b->t_downloaded &&
	       a->t_verified == b->t_verified &&
	       a->t_installed == b->t_installed &&
	       a->t_restart == b->t_restart && a->t_up == b->t_up &&
	       a->gw_epoch == b->gw_epoch;
}

static int fuzz_state_one(const uint8_t *data, size_t size)
{
	struct dev_persist p, p2;
	char why[160], *out, *out2;

	memset(&p, 0x5a, sizeof(p));
	memset(&p2, 0x5a, sizeof(p2));
	if (dev__persist_parse((const char *)data, size, &p, why,
			       sizeof(why)) != 0) {
		if (!FSTATE_TERMINATED(why) || !why[0])
			abort(); /* a refusal always says why */
		return 0;
	}
	if (!fstate_valid(&p))
		abort();
	if ((out = dev__persist_json(&p)) == NULL)
		abort();
	if (dev__persist_parse(out, strlen(out), &p2, why, sizeof(why)) != 0 ||
	    !fstate_equal(&p, &p2))
		abort();
	if ((out2 = dev__persist_json(&p2)) == NULL || strcmp(out, out2) != 0)
		abort();
	free(out);
	free(out2);
	free(p.manifest);
	free(p2.manifest);
	return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_state_one(data, size);
}
#endif
