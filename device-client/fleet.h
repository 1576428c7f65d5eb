/*
 * Fleet mode of ota-device: N simulated devices in one process, on one
 * loop, each a struct dev running exactly the code a single device runs,
 * with its own id, certificate and state directory. For load tests.
 */
#ifndef OTA_FLEET_H
#define OTA_FLEET_H

#include <limits.h>
#include <stdint.h>
#include <uv.h>

#include "device-client/dev.h"

struct fleet_config {
	uint32_t n;		       /* devices; 0 = single device */
	char prefix[PROTO_ID_MAX + 1]; /* ids: prefix + zero-padded number */
	uint32_t first;		       /* number of the first device */
	char cert_dir[PATH_MAX];       /* holds <id>.crt and <id>.key */
	uint32_t stagger_ms;	       /* between two connection starts */
};

struct fleet;

/*
 * Make the fleet: raise RLIMIT_NOFILE, find every device's certificate,
 * dev_init every device (state in base->state_dir/<id>). base is copied;
 * its id, cert_file, key_file and state_dir are replaced per device.
 * argv is borrowed (kept for the devices). On error, err says why.
 */
int fleet_new(uv_loop_t *loop, const struct fleet_config *fc,
	      const struct dev_config *base, char **argv, struct fleet **out,
	      char *err, size_t errlen);
/* Start the devices' connections, staggered; summary every 5 s. */
int fleet_start(struct fleet *f);
/* Stop every device (each publishes offline); the loop then ends. */
void fleet_stop(struct fleet *f);
/* After the loop has ended: the final summary line, then free. */
void fleet_free(struct fleet *f);

#endif
