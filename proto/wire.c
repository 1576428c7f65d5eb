/*
 * proto/wire.c: the binary data messages (fragment, acknowledgement).
 */
#include <string.h>

#include "proto/internal.h"

#define INDEX_LIMIT (1u << 24)

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put_le24(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint32_t get_le24(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

int proto_frag_header_encode(uint8_t hdr[PROTO_FRAG_HDR_LEN], uint32_t tag,
			     uint32_t index)
{
	if (index >= INDEX_LIMIT)
		return PROTO_ERANGE;
	hdr[0] = PROTO_MSG_FRAG;
	put_le32(hdr + 1, tag);
	put_le24(hdr + 5, index);
	return 0;
}

int proto_frag_decode(const void *buf, size_t len, struct proto_frag *f)
{
	const uint8_t *p = buf;

	if (p == NULL || len < 1)
		return PROTO_ETRUNC;
	if (p[0] != PROTO_MSG_FRAG)
		return PROTO_ETYPE;
	if (len < PROTO_FRAG_HDR_LEN + 1) /* header and at least one byte */
		return PROTO_ETRUNC;
	/* Encrypted fragments carry a 16-byte tag after the data. */
	if (len - PROTO_FRAG_HDR_LEN > PROTO_FRAG_SIZE_MAX + PROTO_ENC_TAG_LEN)
		return PROTO_ERANGE;
	f->tag = get_le32(p + 1);
	f->index = get_le24(p + 5);
	f->data = p + PROTO_FRAG_HDR_LEN;
	f->len = len - PROTO_FRAG_HDR_LEN;
	return 0;
}

int proto_ack_encode(const struct proto_ack *a, uint8_t *buf, size_t cap,
		     size_t *len)
{
	size_t n;

	if (a->cum >= INDEX_LIMIT || a->sack_len > PROTO_SACK_MAX)
		return PROTO_ERANGE;
	n = 9 + (size_t)a->sack_len;
	if (buf == NULL || cap < n)
		return PROTO_EBUF;
	buf[0] = PROTO_MSG_ACK;
	put_le32(buf + 1, a->tag);
	put_le24(buf + 5, a->cum);
	buf[8] = a->sack_len;
	memcpy(buf + 9, a->sack, a->sack_len);
	if (len != NULL)
		*len = n;
	return 0;
}

int proto_ack_decode(const void *buf, size_t len, struct proto_ack *a)
{
	const uint8_t *p = buf;
	uint8_t sack_len;

	if (p == NULL || len < 1)
		return PROTO_ETRUNC;
	if (p[0] != PROTO_MSG_ACK)
		return PROTO_ETYPE;
	if (len < 9)
		return PROTO_ETRUNC;
	sack_len = p[8];
	if (sack_len > PROTO_SACK_MAX)
		return PROTO_ERANGE;
	if (len < 9 + (size_t)sack_len)
		return PROTO_ETRUNC;
	if (len > 9 + (size_t)sack_len)
		return PROTO_EMALFORMED;
	memset(a, 0, sizeof(*a));
	a->tag = get_le32(p + 1);
	a->cum = get_le24(p + 5);
	a->sack_len = sack_len;
	memcpy(a->sack, p + 9, sack_len);
	return 0;
}

bool proto_ack_has(const struct proto_ack *a, uint32_t index)
{
	uint32_t bit;

	if (index < a->cum)
		return true;
	if (index == a->cum)
		return false;
	bit = index - a->cum - 1;
	if (a->sack_len > PROTO_SACK_MAX || bit >= (uint32_t)a->sack_len * 8)
		return false;
	return (a->sack[bit / 8] >> (bit % 8)) & 1;
}
