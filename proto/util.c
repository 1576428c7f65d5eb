/*
 * proto/util.c: error table, identifiers, versions, hex, state names.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proto/internal.h"

const char *proto_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
#define PROTO__ERR_CASE(name, val, text)                                       \
	case PROTO_##name:                                                     \
		return text;
		PROTO_ERRNO_MAP(PROTO__ERR_CASE)
#undef PROTO__ERR_CASE
	default:
		return "unknown error";
	}
}

int proto__err(struct proto_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	va_start(ap, fmt);
	if (vsnprintf(err->text, sizeof(err->text), fmt, ap) < 0)
		err->text[0] = '\0';
	va_end(ap);
	return code;
}

void proto__sanitize(char *dst, size_t cap, const char *src)
{
	size_t i;

	if (cap == 0)
		return;
	for (i = 0; i + 1 < cap && src[i] != '\0'; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[i] = '\0';
}

static bool id_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool proto_id_valid(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0')
		return false;
	for (i = 0; s[i] != '\0'; i++) {
		if (i >= PROTO_ID_MAX || !id_char((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* ------------------------------------------------------------ versions */

#define VERSION_PART_MAX 999999u
#define VERSION_PART_DIGITS 6

int proto_version_parse(const char *s, uint32_t parts[3])
{
	uint32_t v[3];
	size_t pos = 0;
	int p;

	if (s == NULL || strnlen(s, PROTO_VERSION_MAX + 1) > PROTO_VERSION_MAX)
		return PROTO_EVERSION;
	for (p = 0; p < 3; p++) {
		size_t start = pos;

		v[p] = 0;
		while (s[pos] >= '0' && s[pos] <= '9') {
			if (pos - start >= VERSION_PART_DIGITS)
				return PROTO_EVERSION;
			v[p] = v[p] * 10 + (uint32_t)(s[pos] - '0');
			pos++;
		}
		if (pos == start) /* empty part, sign, space, ... */
			return PROTO_EVERSION;
		if (s[start] == '0' && pos - start > 1) /* leading zero */
			return PROTO_EVERSION;
		if (p < 2) {
			if (s[pos] != '.')
				return PROTO_EVERSION;
			pos++;
		}
	}
	if (s[pos] != '\0')
		return PROTO_EVERSION;
	if (parts != NULL)
		memcpy(parts, v, sizeof(v));
	return 0;
}

int proto_version_cmp(const char *a, const char *b, int *res)
{
	uint32_t va[3], vb[3];
	int i, rc;

	if ((rc = proto_version_parse(a, va)) < 0)
		return rc;
	if ((rc = proto_version_parse(b, vb)) < 0)
		return rc;
	if (res == NULL)
		return 0;
	*res = 0;
	for (i = 0; i < 3; i++) {
		if (va[i] != vb[i]) {
			*res = va[i] < vb[i] ? -1 : 1;
			break;
		}
	}
	return 0;
}

/* ----------------------------------------------------------------- hex */

void proto_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int proto_hex_decode(const char *in, uint8_t *out, size_t outlen)
{
	size_t i;

	if (in == NULL)
		return PROTO_EMALFORMED;
	/* Validate everything before writing anything. */
	for (i = 0; i < 2 * outlen; i++) {
		if (hex_val(in[i]) < 0) /* also stops at the NUL */
			return PROTO_EMALFORMED;
	}
	if (in[2 * outlen] != '\0')
		return PROTO_EMALFORMED;
	for (i = 0; i < outlen; i++)
		out[i] =
		    (uint8_t)(hex_val(in[2 * i]) << 4 | hex_val(in[2 * i + 1]));
	return 0;
}

bool proto__release_hex_valid(const char *s)
{
	size_t i;

	for (i = 0; i < PROTO_RELEASE_HEX_LEN; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return s[PROTO_RELEASE_HEX_LEN] == '\0';
}

/* -------------------------------------------------------------- states */

static const char *const state_names[PROTO_ST__COUNT] = {
#define PROTO__STATE_NAME(name, text) [PROTO_ST_##name] = text,
    PROTO_STATE_MAP(PROTO__STATE_NAME)
#undef PROTO__STATE_NAME
};

const char *proto_state_name(enum proto_state s)
{
	if ((int)s < 0 || (int)s >= PROTO_ST__COUNT)
		return "?";
	return state_names[s];
}

int proto_state_parse(const char *s, enum proto_state *out)
{
	int i;

	if (s == NULL)
		return PROTO_EFIELD;
	for (i = 0; i < PROTO_ST__COUNT; i++) {
		if (strcmp(s, state_names[i]) == 0) {
			if (out != NULL)
				*out = (enum proto_state)i;
			return 0;
		}
	}
	return PROTO_EFIELD;
}
