/* The releases each device failed or rolled back from (d->failed, oldest
 * first): the targeting rule (catalog.c) never offers one of them to it
 * again, a retry (campaign.c) forgets one it failed, the ledger keeps them
 * (ledger.c). A device rolls back from, or fails, one release after the
 * other while several campaigns are open: keeping only the last one would
 * offer it the earlier ones again.
 *
 * Bounded: at most GW_FAILED_MAX per device. Past that the oldest is
 * dropped (catalog.c's gw__release_failed first drops those that no longer
 * target the device), so only a device that failed more than GW_FAILED_MAX
 * releases all still open for it can be offered the oldest again.
 *
 * Pure (no gateway state): the ledger's reader uses it too. */
#include <stdio.h>
#include <string.h>

#include "gateway/gw.h"

static int failed_index(const struct gw_device *d, const char *release)
{
	for (int i = 0; i < d->nfailed; i++)
		if (!strcmp(d->failed[i].release, release))
			return i;
	return -1;
}

const struct gw_failed *gw__failed_find(const struct gw_device *d,
					const char *release)
{
	int i = release[0] ? failed_index(d, release) : -1;
	return i < 0 ? NULL : &d->failed[i];
}

/* Entry i goes, the later ones move up. */
static void failed_remove(struct gw_device *d, int i)
{
	memmove(&d->failed[i], &d->failed[i + 1],
		(size_t)(d->nfailed - i - 1) * sizeof(d->failed[0]));
	d->nfailed--;
}

bool gw__failed_put(struct gw_device *d, const char *release, bool rolled_back,
		    char *dropped)
{
	bool full = false;
	int i = failed_index(d, release);
	if (i >= 0)
		failed_remove(d, i);
	else if (d->nfailed >= GW_FAILED_MAX) {
		full = true;
		if (dropped)
			memcpy(dropped, d->failed[0].release,
			       sizeof(d->failed[0].release));
		failed_remove(d, 0);
	}
	struct gw_failed *f = &d->failed[d->nfailed++];
	snprintf(f->release, sizeof(f->release), "%s", release);
	f->rolled_back = rolled_back;
	return full;
}

bool gw__failed_forget(struct gw_device *d, const char *release)
{
	int i = failed_index(d, release);
	if (i < 0)
		return false;
	failed_remove(d, i);
	return true;
}

const char *gw__failed_latest(const struct gw_device *d)
{
	return d->nfailed ? d->failed[d->nfailed - 1].release : "";
}
