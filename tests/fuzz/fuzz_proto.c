/*
 * libFuzzer target for every proto/ decoder. The first input byte picks
 * the decoder; the rest is the message. Not built by `make`; run it with:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *       -o build/fuzz_proto tests/fuzz/fuzz_proto.c proto/[a-z]*.c \
 *       -ljansson -lcrypto
 *   build/fuzz_proto -max_len=4096 -max_total_time=60 CORPUS_DIR
 *
 * A crash it finds becomes a regression file under tests/vectors/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_json(uint8_t kind, const char *buf, size_t len)
{
	struct proto_announce a;
	struct proto_offer o;
	struct proto_status s;
	struct proto_manifest m;
	struct proto_err err;
	char *out = NULL;
	size_t olen;

	switch (kind) {
	case 0:
		if (proto_announce_decode(buf, len, &a, &err) == 0)
			proto_announce_free(&a);
		break;
	case 1:
		if (proto_offer_decode(buf, len, &o, &err) == 0) {
			/* whatever decodes must encode again */
			if (proto_offer_encode(&o, &out, &olen) != 0)
				abort();
			proto_offer_free(&o);
		}
		break;
	case 2:
		if (proto_status_decode(buf, len, &s, &err) == 0 &&
		    proto_status_encode(&s, &out, &olen) != 0)
			abort();
		break;
	default:
		if (proto_manifest_decode(buf, len, &m, &err) == 0 &&
		    proto_manifest_encode(&m, &out, &olen) != 0)
			abort();
		break;
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t pub[PROTO_PUBKEY_LEN] = {0};
	struct proto_pkg_layout lay;
	struct proto_manifest m;
	struct proto_frag f;
	struct proto_ack k;
	uint8_t buf[PROTO_ACK_MAX_LEN];
	size_t len;
	char *z;
	uint32_t parts[3];
	int res;

	if (size == 0)
		return 0;
	switch (data[0] % 7) {
	case 0:
	case 1:
	case 2:
	case 3:
		fuzz_json(data[0] % 7, (const char *)data + 1, size - 1);
		break;
	case 4:
		(void)proto_frag_decode(data + 1, size - 1, &f);
		if (proto_ack_decode(data + 1, size - 1, &k) == 0) {
			if (proto_ack_encode(&k, buf, sizeof(buf), &len) != 0 ||
			    len != size - 1 || memcmp(buf, data + 1, len) != 0)
				abort();
			(void)proto_ack_has(&k, k.cum + 7);
		}
		break;
	case 5:
		(void)proto_pkg_check(data + 1, size - 1, pub, &m, &lay, NULL);
		break;
	default:
		if ((z = malloc(size)) == NULL)
			return 0;
		memcpy(z, data + 1, size - 1);
		z[size - 1] = '\0';
		(void)proto_version_parse(z, parts);
		(void)proto_version_cmp(z, "1.0.0", &res);
		(void)proto_id_valid(z);
		(void)proto_state_parse(z, NULL);
		free(z);
		break;
	}
	return 0;
}
