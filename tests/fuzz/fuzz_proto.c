/*
 * libFuzzer target for the proto/ message decoders. The first input byte,
 * modulo FPROTO__COUNT, picks the decoder; the rest is the message:
 *
 *   0 announcement  1 offer  2 status  3 manifest  4 rollout control
 *   5 fragment      6 ack    7 text helpers (version, id, state, hex)
 *   8 verdict
 *
 * tests/fuzz/make-seeds.sh writes the seeds with these same numbers; keep
 * the two in step. The round-trip property of proto/PROTOCOL.md section 1
 * is checked for every encoder/decoder pair: whatever decodes to m encodes,
 * decode(encode(m)) == m field by field (progress exactly, as it is
 * rounded to 6 decimal places on both sides), and encode(decode(encode(m)))
 * is byte for byte encode(m); the binary ack re-encodes to its input. A
 * broken invariant is reported with abort().
 *
 * fuzz-sources: proto/[a-z]*.c
 *
 * `make fuzz` builds and runs it (tests/fuzz/run.sh); test_fuzz_replay.c
 * includes this file with FUZZ_REPLAY defined and replays the corpus and
 * the crash files through fuzz_proto_one().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

enum fproto_sel {
	FPROTO_ANNOUNCE,
	FPROTO_OFFER,
	FPROTO_STATUS,
	FPROTO_MANIFEST,
	FPROTO_CONTROL,
	FPROTO_FRAG,
	FPROTO_ACK,
	FPROTO_TEXT,
	FPROTO_VERDICT,
	FPROTO_POLL,
	FPROTO__COUNT
};

/* The second encoding (of what the first one decoded to) must be byte for
 * byte the first: the encoders' output is canonical. Frees both. */
static void fproto_same_text(char *out, size_t olen, char *out2, size_t olen2)
{
	if (olen != olen2 || memcmp(out, out2, olen) != 0)
		abort();
	free(out);
	free(out2);
}

/* A fixed-size string field must be NUL-terminated inside its array. */
#define FPROTO_TERMINATED(arr) (memchr((arr), '\0', sizeof(arr)) != NULL)

static void fproto_announce(const char *buf, size_t len)
{
	struct proto_announce a;
	struct proto_err err;

	if (proto_announce_decode(buf, len, &a, &err) != 0)
		return;
	if (!FPROTO_TERMINATED(a.url) || !FPROTO_TERMINATED(a.group) ||
	    a.ndevices > PROTO_ANNOUNCE_DEVICES_MAX ||
	    (a.devices == NULL) != (a.ndevices == 0))
		abort();
	for (size_t i = 0; i < a.ndevices; i++)
		if (!proto_id_valid(a.devices[i]))
			abort();
	/* What decodes encodes again, and decodes again. */
	struct proto_announce b;
	char *out = NULL;
	size_t olen;
	if (proto_announce_encode(&a, &out, &olen) != 0 ||
	    proto_announce_decode(out, olen, &b, &err) != 0 ||
	    strcmp(a.url, b.url) != 0 || b.ndevices != a.ndevices ||
	    b.dry_run != a.dry_run || strcmp(a.reply, b.reply) != 0)
		abort();
	free(out);
	proto_announce_free(&b);
	proto_announce_free(&a);
}

static void fproto_verdict(const char *buf, size_t len)
{
	static struct proto_verdict v, v2;
	struct proto_err err;
	char *out = NULL;
	size_t olen;

	if (proto_verdict_decode(buf, len, &v, &err) != 0)
		return;
	if (!FPROTO_TERMINATED(v.reason) ||
	    v.ndevices > PROTO_VERDICT_DEVICES_MAX ||
	    proto_verdict_encode(&v, &out, &olen) != 0 ||
	    proto_verdict_decode(out, olen, &v2, &err) != 0 ||
	    memcmp(&v, &v2, sizeof(v)) != 0)
		abort();
	free(out);
}

static void fproto_offer(const char *buf, size_t len)
{
	struct proto_offer o, o2;
	struct proto_err err;
	char *out = NULL, *out2 = NULL;
	size_t olen, olen2;

	if (proto_offer_decode(buf, len, &o, &err) != 0)
		return;
	if (proto_offer_encode(&o, &out, &olen) != 0 ||
	    proto_offer_decode(out, olen, &o2, &err) != 0)
		abort();
	if (strcmp(o.release, o2.release) != 0 ||
	    o.manifest_len != o2.manifest_len ||
	    memcmp(o.manifest, o2.manifest, o.manifest_len) != 0 ||
	    memcmp(o.sig, o2.sig, sizeof(o.sig)) != 0 ||
	    o.fragment_size != o2.fragment_size ||
	    o.fragments != o2.fragments || o.window != o2.window ||
	    o.table_fragments != o2.table_fragments || o.group != o2.group ||
	    o.keyset_len != o2.keyset_len ||
	    (o.keyset && memcmp(o.keyset, o2.keyset, o.keyset_len) != 0))
		abort();
	if (proto_offer_encode(&o2, &out2, &olen2) != 0)
		abort();
	fproto_same_text(out, olen, out2, olen2);
	proto_offer_free(&o2);
	proto_offer_free(&o);
}

static bool fproto_timings_equal(const struct proto_timings *a,
				 const struct proto_timings *b)
{
	return a->download_ms == b->download_ms &&
	       a->verify_ms == b->verify_ms && a->install_ms == b->install_ms &&
	       a->restart_ms == b->restart_ms && a->total_ms == b->total_ms;
}

static void fproto_status(const char *buf, size_t len)
{
	struct proto_status s, s2;
	struct proto_err err;
	char *out = NULL, *out2 = NULL;
	size_t olen, olen2;

	if (proto_status_decode(buf, len, &s, &err) != 0)
		return;
	if (proto_status_encode(&s, &out, &olen) != 0 ||
	    proto_status_decode(out, olen, &s2, &err) != 0)
		abort();
	if (strcmp(s.device, s2.device) != 0 ||
	    strcmp(s.product, s2.product) != 0 ||
	    strcmp(s.version, s2.version) != 0 ||
	    strcmp(s.group, s2.group) != 0 || s.state != s2.state ||
	    strcmp(s.release, s2.release) != 0 ||
	    strcmp(s.error, s2.error) != 0 || s.ts != s2.ts ||
	    !fproto_timings_equal(&s.timings, &s2.timings) ||
	    (s.progress < 0) != (s2.progress < 0) ||
	    (s.progress >= 0 && s.progress != s2.progress))
		abort();
	/* progress carries 6 decimal places: rounding it again to the nearest
	 * multiple of 10^-6 changes nothing (p * 10^6 itself need not be an
	 * integer in binary floating point: 0.000123 * 10^6 is not) */
	if (s.progress >= 0 &&
	    (double)(int64_t)(s.progress * PROTO_PROGRESS_SCALE + 0.5) /
		    PROTO_PROGRESS_SCALE !=
		s.progress)
		abort();
	if (proto_status_encode(&s2, &out2, &olen2) != 0)
		abort();
	fproto_same_text(out, olen, out2, olen2);
}

static void fproto_manifest(const char *buf, size_t len)
{
	struct proto_manifest m, m2;
	struct proto_err err;
	char *out = NULL, *out2 = NULL;
	size_t olen, olen2;

	if (proto_manifest_decode(buf, len, &m, &err) != 0)
		return;
	if (proto_manifest_encode(&m, &out, &olen) != 0 ||
	    proto_manifest_decode(out, olen, &m2, &err) != 0)
		abort();
	if (m.format != m2.format || strcmp(m.product, m2.product) != 0 ||
	    strcmp(m.version, m2.version) != 0 || m.size != m2.size ||
	    memcmp(m.sha256, m2.sha256, sizeof(m.sha256)) != 0 ||
	    m.created != m2.created || m.downgrade != m2.downgrade ||
	    strcmp(m.replaces, m2.replaces) != 0 ||
	    m.security_version != m2.security_version ||
	    m.expires != m2.expires || m.block_size != m2.block_size ||
	    memcmp(m.blocks, m2.blocks, sizeof(m.blocks)) != 0)
		abort();
	if (proto_manifest_encode(&m2, &out2, &olen2) != 0)
		abort();
	fproto_same_text(out, olen, out2, olen2);
}

static void fproto_control(const char *buf, size_t len)
{
	struct proto_control c, c2;
	struct proto_err err;
	char *out = NULL, *out2 = NULL;
	size_t olen, olen2;

	if (proto_control_decode(buf, len, &c, &err) != 0)
		return;
	if (proto_control_encode(&c, &out, &olen) != 0 ||
	    proto_control_decode(out, olen, &c2, &err) != 0)
		abort();
	if (c.action != c2.action || strcmp(c.release, c2.release) != 0 ||
	    strcmp(proto_action_name(c.action), "?") == 0)
		abort();
	if (proto_control_encode(&c2, &out2, &olen2) != 0)
		abort();
	fproto_same_text(out, olen, out2, olen2);
}

/* The gateway's hello and poll (PROTOCOL.md 5.6): decode, and a round
 * trip that must give the same spread. */
static void fproto_poll(const char *buf, size_t len)
{
	struct proto_poll p, p2;
	struct proto_err err;
	char *out = NULL;
	size_t olen;

	if (proto_poll_decode(buf, len, &p, &err) != 0)
		return;
	if (p.spread_ms > PROTO_SPREAD_MS_MAX ||
	    proto_poll_encode(&p, &out, &olen) != 0 ||
	    proto_poll_decode(out, olen, &p2, &err) != 0 ||
	    p2.spread_ms != p.spread_ms)
		abort();
	free(out);
}

static void fproto_frag(const uint8_t *buf, size_t len)
{
	struct proto_frag f;
	uint8_t hdr[PROTO_FRAG_HDR_LEN];

	if (proto_frag_decode(buf, len, &f) != 0)
		return;
	/* the data is the rest of the buffer, after the header */
	if (len < PROTO_FRAG_HDR_LEN || f.data != buf + PROTO_FRAG_HDR_LEN ||
	    f.len != len - PROTO_FRAG_HDR_LEN ||
	    proto_frag_header_encode(hdr, f.tag, f.index) != 0 ||
	    memcmp(hdr, buf, sizeof(hdr)) != 0)
		abort();
}

static void fproto_ack(const uint8_t *buf, size_t len)
{
	struct proto_ack k;
	uint8_t out[PROTO_ACK_MAX_LEN];
	size_t olen;

	if (proto_ack_decode(buf, len, &k) != 0)
		return;
	if (proto_ack_encode(&k, out, sizeof(out), &olen) != 0 || olen != len ||
	    memcmp(out, buf, len) != 0)
		abort();
	/* everything below cum is held, cum itself never is */
	if ((k.cum > 0 && !proto_ack_has(&k, k.cum - 1)) ||
	    proto_ack_has(&k, k.cum))
		abort();
	(void)proto_ack_has(&k, k.cum + 7);
	(void)proto_ack_has(&k, UINT32_MAX);
}

static void fproto_text(const uint8_t *buf, size_t len)
{
	uint32_t parts[3];
	uint8_t bin[PROTO_SHA256_LEN];
	enum proto_state st;
	char *z;
	int res;

	if ((z = malloc(len + 1)) == NULL)
		return;
	memcpy(z, buf, len);
	z[len] = '\0';
	if (proto_version_parse(z, parts) == 0 &&
	    (proto_version_cmp(z, z, &res) != 0 || res != 0))
		abort();
	(void)proto_version_cmp(z, "1.0.0", &res);
	(void)proto_id_valid(z);
	if (proto_state_parse(z, &st) == 0 &&
	    strcmp(proto_state_name(st), z) != 0)
		abort();
	(void)proto_hex_decode(z, bin, sizeof(bin));
	free(z);
}

static int fuzz_proto_one(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data + 1;

	if (size == 0)
		return 0;
	switch ((enum fproto_sel)(data[0] % FPROTO__COUNT)) {
	case FPROTO_ANNOUNCE:
		fproto_announce(text, size - 1);
		break;
	case FPROTO_OFFER:
		fproto_offer(text, size - 1);
		break;
	case FPROTO_STATUS:
		fproto_status(text, size - 1);
		break;
	case FPROTO_MANIFEST:
		fproto_manifest(text, size - 1);
		break;
	case FPROTO_CONTROL:
		fproto_control(text, size - 1);
		break;
	case FPROTO_FRAG:
		fproto_frag(data + 1, size - 1);
		break;
	case FPROTO_ACK:
		fproto_ack(data + 1, size - 1);
		break;
	case FPROTO_VERDICT:
		fproto_verdict(text, size - 1);
		break;
	case FPROTO_POLL:
		fproto_poll(text, size - 1);
		break;
	case FPROTO_TEXT:
	case FPROTO__COUNT:
		fproto_text(data + 1, size - 1);
		break;
	}
	return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_proto_one(data, size);
}
#endif
