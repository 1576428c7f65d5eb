/* The gateway's clock, read in one place (gw.h): the test's clock (gw->clock_*) when
 * one is set, else the system's. */
#include "common/util.h"
#include "gateway/gw.h"

uint64_t gw__mono_ms(const struct gw *gw)
{
	return gw->clock_mono_ms ? gw->clock_mono_ms(gw->clock_ud)
				 : util_mono_ms();
}

int64_t gw__wall_ms(const struct gw *gw)
{
	return gw->clock_wall_ms ? gw->clock_wall_ms(gw->clock_ud)
				 : util_wall_ms();
}
