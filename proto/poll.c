/* proto/poll.c: the gateway's hello and status poll (PROTOCOL.md 5.6). */
#include <jansson.h>
#include <string.h>

#include "proto/internal.h"
#include "proto/proto.h"

#define POLL_JSON_MAX 1024

int proto_poll_encode(const struct proto_poll *p, char **out, size_t *len)
{
	json_t *o;
	int rc;

	*out = NULL;
	if (len)
		*len = 0;
	if (p->spread_ms > PROTO_SPREAD_MS_MAX)
		return PROTO_ERANGE;
	if ((o = json_object()) == NULL)
		return PROTO_ENOMEM;
	rc = proto__json_set(o, "spread_ms", json_integer(p->spread_ms));
	if (rc == 0)
		rc = proto__json_dump(o, out, len);
	json_decref(o);
	return rc;
}

int proto_poll_decode(const char *buf, size_t len, struct proto_poll *p,
		      struct proto_err *err)
{
	json_t *root;
	int64_t v;
	int rc;

	memset(p, 0, sizeof(*p));
	if (len == 0)
		return 0;
	rc = proto__json_parse(buf, len, POLL_JSON_MAX, &root, err);
	if (rc < 0)
		return rc;
	rc = proto__json_int(root, "spread_ms", false, 0, PROTO_SPREAD_MS_MAX,
			     &v, NULL, err);
	if (rc == 0)
		p->spread_ms = (uint32_t)v;
	json_decref(root);
	return rc;
}
