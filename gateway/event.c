/* The event log: one record per event (ledger.c's format) queued for the
 * next commit, and passed on to whoever listens (gw->on_event: the dashboard). */
#include <stdlib.h>

#include "common/log.h"
#include "gateway/gw.h"

void gw__event(struct gw *gw, const char *device, const char *release,
	       const char *event, const char *detail)
{
	int64_t ts = gw__wall_ms(gw);
	char *s = gw__event_record(ts, event, device, release, detail);
	if (!s || store_event(gw->db, s) != 0)
		log_warnx("ledger: cannot queue event %s", event);
	else if (gw->on_event)
		gw->on_event(gw, ts, event, device, release, detail);
	free(s);
}
