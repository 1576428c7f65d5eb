/* The device table: every device the gateway has heard of, by id (a tsearch
 * tree in gw->devices), and the list of those changed since the last commit
 * (gw.c writes them to the ledger once per loop iteration). */
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "gateway/gw.h"

static int dev_cmp(const void *a, const void *b)
{
	return strcmp(((const struct gw_device *)a)->id,
		      ((const struct gw_device *)b)->id);
}

struct gw_device *gw__device_find(struct gw *gw, const char *id)
{
	struct gw_device key;
	snprintf(key.id, sizeof(key.id), "%s", id);
	void *p = tfind(&key, &gw->devices, dev_cmp);
	return p ? *(struct gw_device **)p : NULL;
}

struct gw_device *gw__device_get(struct gw *gw, const char *id)
{
	struct gw_device *d = gw__device_find(gw, id);
	if (d)
		return d;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	snprintf(d->id, sizeof(d->id), "%s", id);
	d->state = PROTO_ST_OFFLINE;
	d->timings = (struct proto_timings){-1, -1, -1, -1, -1};
	if (!tsearch(d, &gw->devices, dev_cmp)) {
		free(d);
		return NULL;
	}
	gw->ndevices++;
	return d;
}

void gw__device_dirty(struct gw *gw, struct gw_device *d)
{
	if (d->dirty)
		return;
	if (gw->ndirty == gw->dirty_cap) {
		size_t n = gw->dirty_cap ? gw->dirty_cap * 2 : 64;
		struct gw_device **p = realloc(gw->dirty, n * sizeof(*p));
		if (!p) {
			log_warnx("out of memory marking device %s", d->id);
			return;
		}
		gw->dirty = p;
		gw->dirty_cap = n;
	}
	gw->dirty[gw->ndirty++] = d;
	d->dirty = true;
}
