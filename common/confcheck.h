/* confcheck: the configuration keys ota-gateway and ota-device share, checked
 * once for both (at start and by --check), before anything is opened. */
#ifndef OTA_CONFCHECK_H
#define OTA_CONFCHECK_H

#include <stddef.h>

/* The values of the shared keys (borrowed strings, "" when not given). */
struct confcheck_client {
	const char *ca_file;
	const char *cert_file; /* NULL: not required here (a fleet has one */
	const char *key_file;  /* certificate and key per device) */
	const char *publisher_key, *root_keys;
	const char *log_level;
	const char *brokers;
};

/* ca_file, cert_file and key_file given, and publisher_key or root_keys;
 * log_level one of error, warn, info, debug; brokers (when given) a list
 * mq_brokers_check takes. 0, or -1 with err naming the first key at fault
 * (in that order). */
int confcheck_client(const struct confcheck_client *c, char *err, size_t n);

#endif
