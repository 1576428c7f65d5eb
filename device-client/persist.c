/* state.json <-> struct dev_persist: what the device writes before each step
 * of an update and reads back after a restart, a power cut or a damaged
 * disk. Pure: no I/O (dev.c reads and writes the file), so
 * tests/fuzz/fuzz_state.c can check the parser on anything. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device-client/dev.h"

char *dev__persist_json(const struct dev_persist *p)
{
	char sig[2 * PROTO_SIG_LEN + 1];
	char slot[2] = {p->slot, 0};
	proto_hex_encode(p->sig, PROTO_SIG_LEN, sig);
	json_t *o = json_pack(
	    "{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:s,s:I,s:I,s:I,"
	    "s:I,s:I,s:I,s:s,s:I}",
	    "version", p->version, "slot", slot, "phase",
	    proto_state_name(p->phase), "release", p->release, "manifest",
	    p->manifest ? p->manifest : "", "sig", sig, "fragment_size",
	    (json_int_t)p->fragment_size, "fragments", (json_int_t)p->fragments,
	    "window", (json_int_t)p->window, "held", (json_int_t)p->held,
	    "prev_version", p->prev_version, "error", p->error, "t_accept",
	    (json_int_t)p->t_accept, "t_downloaded",
	    (json_int_t)p->t_downloaded, "t_verified",
	    (json_int_t)p->t_verified, "t_installed",
	    (json_int_t)p->t_installed, "t_restart", (json_int_t)p->t_restart,
	    "t_up", (json_int_t)p->t_up, "refused", p->refused,
	    "table_fragments", (json_int_t)p->table_fragments);
	if (o &&
	    (json_object_set_new(o, "highest", json_string(p->highest)) ||
	     json_object_set_new(o, "security_floor",
				 json_integer(p->security_floor)) ||
	     json_object_set_new(o, "time_floor",
				 json_integer(p->time_floor)) ||
	     (p->gw_epoch &&
	      json_object_set_new(o, "gw_epoch", json_integer(p->gw_epoch))))) {
		json_decref(o);
		o = NULL;
	}
	if (o && p->enc) { /* wrapped: useless without this device's key */
		char epk[2 * PROTO_EC_PUB_LEN + 1];
		char key[2 * PROTO_ENC_WRAPPED_LEN + 1];
		proto_hex_encode(p->enc_epk, PROTO_EC_PUB_LEN, epk);
		proto_hex_encode(p->enc_key, PROTO_ENC_WRAPPED_LEN, key);
		if (json_object_set_new(o, "enc_epk", json_string(epk)) ||
		    json_object_set_new(o, "enc_key", json_string(key))) {
			json_decref(o);
			o = NULL;
		}
	}
	if (o && p->encoding != PROTO_ENCODING_FULL) { /* 6.4 */
		char base[2 * PROTO_SHA256_LEN + 1];
		proto_hex_encode(p->base, PROTO_SHA256_LEN, base);
		if (json_object_set_new(
			o, "encoding",
			json_string(proto_encoding_name(p->encoding))) ||
		    json_object_set_new(o, "payload_size",
					json_integer((json_int_t)
							 p->payload_size)) ||
		    json_object_set_new(o, "zoff",
					json_integer((json_int_t)p->zoff)) ||
		    json_object_set_new(o, "zimg",
					json_integer((json_int_t)p->zimg)) ||
		    (p->encoding == PROTO_ENCODING_DELTA &&
		     json_object_set_new(o, "base", json_string(base)))) {
			json_decref(o);
			o = NULL;
		}
	}
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	return s;
}

__attribute__((format(printf, 3, 4))) static int bad(char *why, size_t n,
						     const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	return -1;
}

/* Member k as a string that fits dst (cap bytes with the NUL); absent is
 * "" unless required. */
static int str_member(json_t *o, const char *k, bool required, char *dst,
		      size_t cap, char *why, size_t n)
{
	json_t *v = json_object_get(o, k);
	dst[0] = '\0';
	if (!v)
		return required ? bad(why, n, "'%s' is missing", k) : 0;
	if (!json_is_string(v) || json_string_length(v) >= cap)
		return bad(why, n, "'%s' is not a string of at most %zu bytes",
			   k, cap - 1);
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

/* Member k as an integer in 0..max; absent is 0. */
static int int_member(json_t *o, const char *k, int64_t max, int64_t *out,
		      char *why, size_t n)
{
	json_t *v = json_object_get(o, k);
	*out = 0;
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > max)
		return bad(why, n, "'%s' is not an integer in 0..%lld", k,
			   (long long)max);
	*out = json_integer_value(v);
	return 0;
}

/* "" or 16 lower-case hex digits. */
static bool release_ok(const char *s)
{
	return !s[0] ||
	       (strlen(s) == PROTO_RELEASE_HEX_LEN &&
		strspn(s, "0123456789abcdef") == PROTO_RELEASE_HEX_LEN);
}

static int strings(json_t *o, struct dev_persist *p, char *why, size_t n)
{
	char slot[2], phase[16], sig[2 * PROTO_SIG_LEN + 1];
	if (str_member(o, "version", true, p->version, sizeof(p->version), why,
		       n) ||
	    str_member(o, "slot", true, slot, sizeof(slot), why, n) ||
	    str_member(o, "phase", true, phase, sizeof(phase), why, n) ||
	    str_member(o, "release", true, p->release, sizeof(p->release), why,
		       n) ||
	    str_member(o, "sig", true, sig, sizeof(sig), why, n) ||
	    str_member(o, "prev_version", false, p->prev_version,
		       sizeof(p->prev_version), why, n) ||
	    str_member(o, "error", false, p->error, sizeof(p->error), why, n) ||
	    str_member(o, "refused", false, p->refused, sizeof(p->refused), why,
		       n) ||
	    str_member(o, "highest", false, p->highest, sizeof(p->highest), why,
		       n))
		return -1;
	/* Absent in a state.json written before the anti-rollback marks:
	 * the running version is the highest known. */
	if (!p->highest[0])
		snprintf(p->highest, sizeof(p->highest), "%s", p->version);
	if (proto_version_parse(p->highest, NULL) != 0)
		return bad(why, n, "'highest' is not a version");
	if (proto_version_parse(p->version, NULL) != 0)
		return bad(why, n, "'version' is not a version");
	if (p->prev_version[0] && proto_version_parse(p->prev_version, NULL))
		return bad(why, n, "'prev_version' is not a version");
	if (strcmp(slot, "a") && strcmp(slot, "b"))
		return bad(why, n, "'slot' is not \"a\" or \"b\"");
	p->slot = slot[0];
	if (proto_state_parse(phase, &p->phase) != 0)
		return bad(why, n, "'phase' is not a state");
	if (!release_ok(p->release) || !release_ok(p->refused))
		return bad(why, n,
			   "'release' or 'refused' is not a release id");
	if (sig[0] && proto_hex_decode(sig, p->sig, PROTO_SIG_LEN) != 0)
		return bad(why, n, "'sig' is not %d hex digits",
			   2 * PROTO_SIG_LEN);
	json_t *man = json_object_get(o, "manifest");
	if (!json_is_string(man) ||
	    strlen(json_string_value(man)) != json_string_length(man) ||
	    json_string_length(man) > PROTO_MANIFEST_MAX)
		return bad(why, n,
			   "'manifest' is not a string of at most %d "
			   "bytes",
			   PROTO_MANIFEST_MAX);
	return 0;
}

static int numbers(json_t *o, struct dev_persist *p, char *why, size_t n)
{
	int64_t v[13];
	static const char *const k[] = {
	    "fragment_size", "fragments", "window",	  "table_fragments",
	    "held",	     "t_accept",  "t_downloaded", "t_verified",
	    "t_installed",   "t_restart", "t_up",	  "time_floor",
	    "security_floor"};
	for (size_t i = 0; i < 13; i++)
		if (int_member(o, k[i],
			       i < 5	 ? UINT32_MAX
			       : i == 12 ? PROTO_SECURITY_VERSION_MAX
					 : INT64_MAX,
			       &v[i], why, n) != 0)
			return -1;
	int64_t epoch;
	if (int_member(o, "gw_epoch", UINT32_MAX, &epoch, why, n) != 0)
		return -1;
	p->gw_epoch = (uint32_t)epoch;
	p->time_floor = v[11];
	p->security_floor = (uint32_t)v[12];
	p->fragment_size = (uint32_t)v[0];
	p->fragments = (uint32_t)v[1];
	p->window = (uint32_t)v[2];
	p->table_fragments = (uint32_t)v[3];
	p->held = (uint32_t)v[4];
	p->t_accept = v[5];
	p->t_downloaded = v[6];
	p->t_verified = v[7];
	p->t_installed = v[8];
	p->t_restart = v[9];
	p->t_up = v[10];
	/* a checkpoint names fragments of this transfer only */
	if ((uint64_t)p->held > (uint64_t)p->fragments + p->table_fragments)
		return bad(why, n,
			   "'held' %u is more than the %u + %u "
			   "fragments",
			   p->held, p->table_fragments, p->fragments);
	return 0;
}

/* An encrypted download's wrapped key (PROTOCOL.md 6.3): both members or
 * neither. */
static int enc_members(json_t *o, struct dev_persist *p, char *why, size_t n)
{
	const char *epk = json_string_value(json_object_get(o, "enc_epk"));
	const char *key = json_string_value(json_object_get(o, "enc_key"));
	if (!json_object_get(o, "enc_epk") && !json_object_get(o, "enc_key"))
		return 0;
	if (!epk || !key ||
	    proto_hex_decode(epk, p->enc_epk, PROTO_EC_PUB_LEN) != 0 ||
	    proto_hex_decode(key, p->enc_key, PROTO_ENC_WRAPPED_LEN) != 0)
		return bad(why, n,
			   "'enc_epk' and 'enc_key' are not %d and %d "
			   "hex digits",
			   2 * PROTO_EC_PUB_LEN, 2 * PROTO_ENC_WRAPPED_LEN);
	p->enc = true;
	return 0;
}

/* An encoded download (PROTOCOL.md 6.4): its encoding, payload size,
 * base and the decoder's checkpoint, consistent with each other. */
static int coding_members(json_t *o, struct dev_persist *p, char *why, size_t n)
{
	const char *e = json_string_value(json_object_get(o, "encoding"));
	int64_t ps, zo, zi;
	if (!json_object_get(o, "encoding"))
		return 0;
	if (!e || proto_encoding_parse(e, &p->encoding) != 0 ||
	    p->encoding == PROTO_ENCODING_FULL)
		return bad(why, n, "'encoding' is not zstd or delta");
	if (int_member(o, "payload_size", (int64_t)1 << 40, &ps, why, n) ||
	    int_member(o, "zoff", (int64_t)1 << 40, &zo, why, n) ||
	    int_member(o, "zimg", (int64_t)1 << 40, &zi, why, n))
		return -1;
	if (ps == 0 || zo > ps)
		return bad(why, n, "'zoff' %lld is beyond 'payload_size' %lld",
			   (long long)zo, (long long)ps);
	p->payload_size = (uint64_t)ps;
	p->zoff = (uint64_t)zo;
	p->zimg = (uint64_t)zi;
	const char *b = json_string_value(json_object_get(o, "base"));
	if ((p->encoding == PROTO_ENCODING_DELTA) !=
		(json_object_get(o, "base") != NULL) ||
	    (b && proto_hex_decode(b, p->base, PROTO_SHA256_LEN) != 0))
		return bad(why, n,
			   "'base' is not %d hex digits, or not with a "
			   "delta",
			   2 * PROTO_SHA256_LEN);
	return 0;
}

int dev__persist_parse(const char *buf, size_t len, struct dev_persist *p,
		       char *why, size_t n)
{
	struct dev_persist tmp;
	json_error_t je;
	memset(&tmp, 0, sizeof(tmp));
	json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	int rc = -1;
	if (!o)
		bad(why, n, "not JSON: %s", je.text);
	else if (!json_is_object(o))
		bad(why, n, "not a JSON object");
	else if (strings(o, &tmp, why, n) == 0 &&
		 numbers(o, &tmp, why, n) == 0 &&
		 enc_members(o, &tmp, why, n) == 0 &&
		 coding_members(o, &tmp, why, n) == 0)
		rc = 0;
	if (rc == 0) {
		const char *man =
		    json_string_value(json_object_get(o, "manifest"));
		if (man[0] && !(tmp.manifest = strdup(man)))
			rc = bad(why, n, "out of memory");
	}
	json_decref(o);
	if (rc == 0)
		*p = tmp;
	return rc;
}
