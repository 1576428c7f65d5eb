/*
 * Unit tests for proto/: binary fragment and acknowledgement messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/proto.h"

static void test_frag_header_layout(void **state)
{
	static const uint8_t want[8] = {0x11, 0x01, 0x02, 0x03,
					0x04, 0x0c, 0x0b, 0x0a};
	static const uint8_t want_max[8] = {0x11, 0xef, 0xbe, 0xad,
					    0xde, 0xff, 0xff, 0xff};
	uint8_t hdr[PROTO_FRAG_HDR_LEN];

	(void)state;
	assert_int_equal(PROTO_FRAG_HDR_LEN, 8);
	assert_int_equal(proto_frag_header_encode(hdr, 0x04030201u, 0x0a0b0cu),
			 0);
	assert_memory_equal(hdr, want, 8);
	assert_int_equal(proto_frag_header_encode(hdr, 0xdeadbeefu,
						  (1u << 24) - 1),
			 0);
	assert_memory_equal(hdr, want_max, 8);
	memset(hdr, 0x77, sizeof(hdr));
	assert_int_equal(proto_frag_header_encode(hdr, 1, 1u << 24),
			 PROTO_ERANGE);
	assert_int_equal(proto_frag_header_encode(hdr, 1, UINT32_MAX),
			 PROTO_ERANGE);
	assert_int_equal(hdr[0], 0x77); /* untouched */
}

static void test_frag_decode(void **state)
{
	static const uint8_t msg[] = {0x11, 0x78, 0x56, 0x34, 0x12, 0x03,
				      0x02, 0x01, 'a',	'b',  'c'};
	struct proto_frag f;

	(void)state;
	assert_int_equal(proto_frag_decode(msg, sizeof(msg), &f), 0);
	assert_int_equal(f.tag, 0x12345678u);
	assert_int_equal(f.index, 0x010203u);
	assert_ptr_equal(f.data, msg + 8);
	assert_int_equal(f.len, 3);
	assert_memory_equal(f.data, "abc", 3);

	assert_int_equal(proto_frag_decode(msg, 9, &f), 0);
	assert_int_equal(f.len, 1);
	/* header only, truncated header, empty */
	assert_int_equal(proto_frag_decode(msg, 8, &f), PROTO_ETRUNC);
	assert_int_equal(proto_frag_decode(msg, 7, &f), PROTO_ETRUNC);
	assert_int_equal(proto_frag_decode(msg, 1, &f), PROTO_ETRUNC);
	assert_int_equal(proto_frag_decode(msg, 0, &f), PROTO_ETRUNC);
	assert_int_equal(proto_frag_decode(NULL, 0, &f), PROTO_ETRUNC);
}

static void test_frag_decode_type(void **state)
{
	uint8_t msg[] = {0x12, 0, 0, 0, 0, 0, 0, 0, 'x'};
	struct proto_frag f;

	(void)state;
	assert_int_equal(proto_frag_decode(msg, sizeof(msg), &f), PROTO_ETYPE);
	msg[0] = 0x10;
	assert_int_equal(proto_frag_decode(msg, sizeof(msg), &f), PROTO_ETYPE);
	msg[0] = '{';
	assert_int_equal(proto_frag_decode(msg, sizeof(msg), &f), PROTO_ETYPE);
	msg[0] = 0x11;
	assert_int_equal(proto_frag_decode(msg, sizeof(msg), &f), 0);
}

static void test_frag_sizes(void **state)
{
	/* 65552: the largest encrypted fragment (65536 + a 16-byte tag). */
	static const size_t sizes[] = {1, 159, 160, 4096, 65535, 65536, 65552};
	uint8_t *buf;
	struct proto_frag f;
	size_t i;

	(void)state;
	buf = calloc(1, 8 + 65553);
	assert_non_null(buf);
	assert_int_equal(proto_frag_header_encode(buf, 7, 9), 0);
	for (i = 0; i < sizeof(sizes) / sizeof(*sizes); i++) {
		assert_int_equal(proto_frag_decode(buf, 8 + sizes[i], &f), 0);
		assert_int_equal(f.len, sizes[i]);
		assert_int_equal(f.tag, 7);
		assert_int_equal(f.index, 9);
	}
	assert_int_equal(proto_frag_decode(buf, 8 + 65553, &f), PROTO_ERANGE);
	free(buf);
}

static void test_ack_layout(void **state)
{
	static const uint8_t want[] = {0x12, 0xef, 0xbe, 0xad, 0xde, 0x02,
				       0x01, 0x00, 0x02, 0x05, 0x80};
	static const uint8_t want_plain[] = {0x12, 0x01, 0x00, 0x00, 0x00,
					     0x00, 0x00, 0x00, 0x00};
	struct proto_ack a;
	uint8_t buf[PROTO_ACK_MAX_LEN];
	size_t len = 0;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.tag = 0xdeadbeefu;
	a.cum = 0x000102u;
	a.sack_len = 2;
	a.sack[0] = 0x05;
	a.sack[1] = 0x80;
	a.sack[2] = 0xff; /* beyond sack_len: not sent */
	assert_int_equal(proto_ack_encode(&a, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));

	/* the "accept, start from 0" ack */
	memset(&a, 0, sizeof(a));
	a.tag = 1;
	assert_int_equal(proto_ack_encode(&a, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 9);
	assert_memory_equal(buf, want_plain, 9);
}

static void test_ack_encode_limits(void **state)
{
	struct proto_ack a;
	uint8_t buf[PROTO_ACK_MAX_LEN];
	size_t len = 0;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.sack_len = 32;
	memset(a.sack, 0xff, sizeof(a.sack));
	a.cum = (1u << 24) - 1;
	assert_int_equal(proto_ack_encode(&a, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 41);
	assert_int_equal(buf[5], 0xff);
	assert_int_equal(buf[7], 0xff);
	assert_int_equal(buf[8], 32);
	/* capacity one byte short */
	assert_int_equal(proto_ack_encode(&a, buf, 40, &len), PROTO_EBUF);
	a.cum = 1u << 24;
	assert_int_equal(proto_ack_encode(&a, buf, sizeof(buf), &len),
			 PROTO_ERANGE);
	a.cum = 0;
	a.sack_len = 33;
	assert_int_equal(proto_ack_encode(&a, buf, sizeof(buf), &len),
			 PROTO_ERANGE);
	a.sack_len = 0;
	assert_int_equal(proto_ack_encode(&a, buf, 8, &len), PROTO_EBUF);
	assert_int_equal(proto_ack_encode(&a, buf, 9, &len), 0);
}

static void test_ack_decode(void **state)
{
	uint8_t msg[PROTO_ACK_MAX_LEN + 1];
	struct proto_ack a, b;
	size_t len;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.tag = 0x01020304u;
	a.cum = 77;
	a.sack_len = 32;
	for (len = 0; len < 32; len++)
		a.sack[len] = (uint8_t)(len * 37 + 1);
	assert_int_equal(proto_ack_encode(&a, msg, sizeof(msg), &len), 0);
	memset(&b, 0xaa, sizeof(b));
	assert_int_equal(proto_ack_decode(msg, len, &b), 0);
	assert_int_equal(b.tag, a.tag);
	assert_int_equal(b.cum, a.cum);
	assert_int_equal(b.sack_len, 32);
	assert_memory_equal(b.sack, a.sack, 32);

	/* truncated by one byte, one byte too many */
	assert_int_equal(proto_ack_decode(msg, len - 1, &b), PROTO_ETRUNC);
	msg[len] = 0;
	assert_int_equal(proto_ack_decode(msg, len + 1, &b), PROTO_EMALFORMED);
	/* sack_len 33 */
	msg[8] = 33;
	assert_int_equal(proto_ack_decode(msg, 9 + 33, &b), PROTO_ERANGE);
	msg[8] = 255;
	assert_int_equal(proto_ack_decode(msg, 9 + 32, &b), PROTO_ERANGE);
	/* short header, wrong type */
	msg[8] = 0;
	assert_int_equal(proto_ack_decode(msg, 9, &b), 0);
	assert_int_equal(b.sack_len, 0);
	assert_int_equal(b.sack[0], 0); /* cleared */
	assert_int_equal(proto_ack_decode(msg, 8, &b), PROTO_ETRUNC);
	assert_int_equal(proto_ack_decode(msg, 0, &b), PROTO_ETRUNC);
	msg[0] = PROTO_MSG_FRAG;
	assert_int_equal(proto_ack_decode(msg, 9, &b), PROTO_ETYPE);
}

static void test_ack_has(void **state)
{
	struct proto_ack a;
	uint32_t i;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.cum = 10;
	a.sack_len = 2;
	a.sack[0] = 0x01; /* fragment 11 */
	a.sack[1] = 0x82; /* fragments 10+1+9 = 20 and 10+1+15 = 26 */
	for (i = 0; i < 10; i++)
		assert_true(proto_ack_has(&a, i));
	assert_false(proto_ack_has(&a, 10)); /* cum itself is missing */
	assert_true(proto_ack_has(&a, 11));
	assert_false(proto_ack_has(&a, 12));
	assert_false(proto_ack_has(&a, 19));
	assert_true(proto_ack_has(&a, 20));
	assert_false(proto_ack_has(&a, 21));
	assert_true(proto_ack_has(&a, 26));
	assert_false(proto_ack_has(&a, 27)); /* past the bitmap */
	a.sack[2] = 0xff;		     /* beyond sack_len: ignored */
	assert_false(proto_ack_has(&a, 27));
	assert_false(proto_ack_has(&a, UINT32_MAX));

	memset(&a, 0, sizeof(a));
	assert_false(proto_ack_has(&a, 0));
	assert_false(proto_ack_has(&a, 1));

	a.cum = (1u << 24) - 1;
	a.sack_len = 32;
	memset(a.sack, 0xff, 32);
	assert_true(proto_ack_has(&a, (1u << 24) - 2));
	assert_false(proto_ack_has(&a, (1u << 24) - 1));
	assert_true(proto_ack_has(&a, (1u << 24) - 1 + 256));
	assert_false(proto_ack_has(&a, (1u << 24) - 1 + 257));
}

/* The examples printed in proto/PROTOCOL.md section 6. */
static void test_protocol_md_examples(void **state)
{
	static const uint8_t ack[] = {0x12, 0xeb, 0x66, 0xce, 0xcd,
				      0x05, 0x00, 0x00, 0x01, 0x0b};
	static const uint8_t frag_hdr[] = {0x11, 0xeb, 0x66, 0xce,
					   0xcd, 0x05, 0x00, 0x00};
	uint8_t hdr[PROTO_FRAG_HDR_LEN];
	struct proto_ack a;

	(void)state;
	assert_int_equal(proto_frag_header_encode(hdr, 0xcdce66ebu, 5), 0);
	assert_memory_equal(hdr, frag_hdr, sizeof(frag_hdr));
	assert_int_equal(proto_ack_decode(ack, sizeof(ack), &a), 0);
	assert_int_equal(a.tag, 0xcdce66ebu);
	assert_int_equal(a.cum, 5);
	assert_true(proto_ack_has(&a, 4));
	assert_false(proto_ack_has(&a, 5));
	assert_true(proto_ack_has(&a, 6));
	assert_true(proto_ack_has(&a, 7));
	assert_false(proto_ack_has(&a, 8));
	assert_true(proto_ack_has(&a, 9));
	assert_false(proto_ack_has(&a, 10));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frag_header_layout),
	    cmocka_unit_test(test_frag_decode),
	    cmocka_unit_test(test_frag_decode_type),
	    cmocka_unit_test(test_frag_sizes),
	    cmocka_unit_test(test_ack_layout),
	    cmocka_unit_test(test_ack_encode_limits),
	    cmocka_unit_test(test_ack_decode),
	    cmocka_unit_test(test_ack_has),
	    cmocka_unit_test(test_protocol_md_examples),
	};

	return cmocka_run_group_tests_name("proto_wire", tests, NULL, NULL);
}
