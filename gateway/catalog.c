/* The catalogue of releases the gateway knows (gw->releases): one by id,
 * who a release is for, and the newest release of a product or for a device.
 * Each is written once, here; release.c adds and removes releases. */
#include <string.h>

#include "common/log.h"
#include "gateway/gw.h"

struct gw_release *gw__release_find(struct gw *gw, const char *id)
{
	for (struct gw_release *r = gw->releases; r; r = r->next)
		if (!strcmp(r->id, id))
			return r;
	return NULL;
}

bool gw__release_targets(const struct gw *gw, const struct gw_release *r,
			 const struct gw_device *d, unsigned how)
{
	int c, rep = 1;
	if (r->camp.st == GW_CAMP_ABORTED ||
	    ((how & GW_TARGET_ONLINE) && !d->online) ||
	    strcmp(d->product, r->m.product) != 0)
		return false;
	if (r->m.expires && gw__wall_ms(gw) / 1000 >= r->m.expires)
		return false;
	/* Newer than the device; or, for a signed downgrade, older and at
	 * most the version the downgrade replaces. */
	if (proto_version_cmp(d->version, r->m.version, &c) != 0 || c == 0 ||
	    (c > 0 && !r->m.downgrade) || (c < 0 && r->m.downgrade) ||
	    (r->m.downgrade &&
	     (proto_version_cmp(d->version, r->m.replaces, &rep) != 0 ||
	      rep > 0)))
		return false;
	if ((how & GW_TARGET_NOT_FAILED) && gw__failed_find(d, r->id))
		return false;
	if (r->target.group[0] && strcmp(r->target.group, d->group) != 0)
		return false;
	if (r->target.devices) {
		for (size_t i = 0; i < r->target.ndevices; i++)
			if (!strcmp(r->target.devices[i], d->id))
				return true;
		return false;
	}
	return true;
}

struct gw_release *gw__release_newest(struct gw *gw, const char *product,
				      const struct gw_device *d)
{
	struct gw_release *best = NULL;
	for (struct gw_release *r = gw->releases; r; r = r->next) {
		int c;
		if (d ? !gw__release_targets(gw, r, d, GW_TARGET_NOW)
		      : strcmp(r->m.product, product) != 0)
			continue;
		if (!best || (proto_version_cmp(r->m.version, best->m.version,
						&c) == 0 &&
			      c > 0))
			best = r;
	}
	return best;
}

void gw__release_failed(struct gw *gw, struct gw_device *d, const char *release,
			bool rolled_back)
{
	char dropped[PROTO_RELEASE_HEX_LEN + 1];
	if (!release[0])
		return;
	/* Full: first forget what is no longer for d at all. */
	if (d->nfailed >= GW_FAILED_MAX && !gw__failed_find(d, release))
		for (int i = d->nfailed - 1; i >= 0; i--) {
			const struct gw_release *r =
			    gw__release_find(gw, d->failed[i].release);
			if (!r || !gw__release_targets(gw, r, d, 0))
				gw__failed_forget(d, d->failed[i].release);
		}
	if (gw__failed_put(d, release, rolled_back, dropped))
		log_warnx("device=%s release=%s failed: it failed %d releases "
			  "that are still offered to it; forgetting the "
			  "oldest, %s, which may be offered to it again",
			  d->id, release, GW_FAILED_MAX, dropped);
}
