/*
 * libFuzzer target for the package file: the whole input is one package,
 * given to proto_pkg_header_decode() and to proto_pkg_check() with a fixed
 * publisher key (RFC 8032 section 7.1, TEST 1; tests/fuzz/make-seeds.sh
 * signs its seed packages with the matching private key, so mutations of
 * the payload get past the signature to the size and digest checks).
 *
 * Invariants checked with abort(): a header that decodes gives the layout
 * 16 / 16+manifest_len / +64; a package that checks has exactly
 * manifest.size payload bytes and the same layout as its header.
 *
 * fuzz-sources: proto/[a-z]*.c
 *
 * `make fuzz` builds and runs it (tests/fuzz/run.sh); test_fuzz_replay.c
 * includes this file with FUZZ_REPLAY defined and calls fuzz_pkg_one().
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "proto/proto.h"

static const uint8_t fpkg_pub[PROTO_PUBKEY_LEN] = {
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe,
    0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6,
    0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a};

static int fuzz_pkg_one(const uint8_t *data, size_t size)
{
	struct proto_pkg_layout hl, cl;
	struct proto_manifest m;
	struct proto_err err;
	bool header_ok;

	header_ok = proto_pkg_header_decode(data, size, &hl, &err) == 0;
	if (header_ok &&
	    (hl.manifest_len < 1 || hl.manifest_len > PROTO_MANIFEST_MAX ||
	     hl.manifest_off != PROTO_PKG_HDR_LEN ||
	     hl.sig_off != hl.manifest_off + hl.manifest_len ||
	     hl.payload_off != hl.sig_off + PROTO_SIG_LEN))
		abort();
	if (proto_pkg_check(data, size, fpkg_pub, &m, &cl, &err) != 0)
		return 0;
	if (!header_ok || cl.manifest_len != hl.manifest_len ||
	    cl.manifest_off != hl.manifest_off || cl.sig_off != hl.sig_off ||
	    cl.payload_off != hl.payload_off || cl.payload_off > size ||
	    m.size != size - cl.payload_off)
		abort();
	return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_pkg_one(data, size);
}
#endif
