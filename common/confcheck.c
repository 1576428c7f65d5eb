/* confcheck.c: the configuration keys both programs share (confcheck.h). */
#include "common/confcheck.h"

#include <stdio.h>

#include "common/log.h"
#include "common/mq.h"

int confcheck_client(const struct confcheck_client *c, char *err, size_t n)
{
	enum log_level lvl;
	const char *need = !c->ca_file[0]		      ? "ca_file"
			   : c->cert_file && !c->cert_file[0] ? "cert_file"
			   : c->key_file && !c->key_file[0]   ? "key_file"
			   : !c->publisher_key[0] && !c->root_keys[0]
			       ? "publisher_key (or root_keys)"
			       : NULL;
	if (need) {
		snprintf(err, n, "key '%s' is required", need);
		return -1;
	}
	if (log_level_parse(c->log_level, &lvl) != 0) {
		snprintf(err, n,
			 "key 'log_level': '%s' is not one of error, "
			 "warn, info, debug",
			 c->log_level);
		return -1;
	}
	if (c->brokers[0] && mq_brokers_check(c->brokers, NULL, err, n) != 0)
		return -1;
	return 0;
}
