/* ota-gateway ctl: pause, resume or abort a rollout from the command line.
 * It publishes the same message an operator would with mosquitto_pub, on
 * ota/ctl/<product>, with the operator's certificate, and waits for the
 * broker's acknowledgement. */
#include <limits.h>
#include <mosquitto.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/conf.h"
#include "common/util.h"
#include "gateway/gw.h"

struct ctl_opts {
	char product[PROTO_ID_MAX + 1];
	char release[PROTO_RELEASE_HEX_LEN + 1];
	char broker_host[256];
	uint32_t broker_port;
	char ca_file[PATH_MAX];
	char cert_file[PATH_MAX];
	char key_file[PATH_MAX];
	uint32_t timeout_s;
};

#define K(name, type, field, lo, hi, help)                                     \
	{name, type, offsetof(struct ctl_opts, field),                         \
	 sizeof(((struct ctl_opts *)0)->field), lo, hi, help}

static const struct conf_key ctl_keys[] = {
    K("product", CONF_STR, product, 0, 0, "product whose rollout to control"),
    K("release", CONF_STR, release, 0, 0,
      "release id (default: the product's newest)"),
    K("broker_host", CONF_STR, broker_host, 0, 0, "broker host"),
    K("broker_port", CONF_U32, broker_port, 1, 65535, "broker TLS port"),
    K("ca_file", CONF_STR, ca_file, 0, 0, "CA certificate (PEM)"),
    K("cert_file", CONF_STR, cert_file, 0, 0,
      "operator certificate (CN ota-operator or ota-operator-NAME)"),
    K("key_file", CONF_STR, key_file, 0, 0, "operator key (mode 0600)"),
    K("timeout_s", CONF_U32, timeout_s, 1, 600,
      "give up after this many seconds"),
    {0}};

struct ctl_state {
	int connack; /* -1 until the CONNACK */
	bool published;
};

static void on_connect(struct mosquitto *m, void *ud, int rc)
{
	(void)m;
	((struct ctl_state *)ud)->connack = rc;
}

static void on_publish(struct mosquitto *m, void *ud, int mid)
{
	(void)m;
	(void)mid;
	((struct ctl_state *)ud)->published = true;
}

static void usage(void)
{
	printf("usage: ota-gateway ctl pause|resume|abort --product P "
	       "[--release ID]\n"
	       "                          [connection options]\n\n"
	       "Publishes {\"action\":...} on ota/ctl/<product> with the "
	       "operator's certificate.\n\noptions:\n");
	conf_print_help(ctl_keys);
	printf("\nexamples:\n  ota-gateway ctl pause --product sensor "
	       "--broker-host broker \\\n"
	       "      --broker-port 8883 --ca-file ca.crt "
	       "--cert-file operator.crt \\\n"
	       "      --key-file operator.key\n"
	       "  ota-gateway ctl abort --product sensor --release "
	       "eb66cecd2c30a94e -c ctl.conf\n");
}

int gw__cmd_ctl(int argc, char **argv)
{
	struct ctl_opts o = {.broker_host = "localhost",
			     .broker_port = 8883,
			     .timeout_s = 10};
	struct conf_cli cli;
	char err[512], topic[PROTO_ID_MAX + 16];
	if (conf_from_argv(argc, argv, ctl_keys, &o, &cli, err,
			   sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway ctl: %s\n", err);
		return 2;
	}
	if (cli.help) {
		usage();
		return 0;
	}
	struct proto_control c = {0};
	const char *act = cli.nargs == 1 ? cli.args[0] : "";
	if (!strcmp(act, "pause"))
		c.action = PROTO_ACT_PAUSE;
	else if (!strcmp(act, "resume"))
		c.action = PROTO_ACT_RESUME;
	else if (!strcmp(act, "abort"))
		c.action = PROTO_ACT_ABORT;
	else {
		fprintf(stderr, "ota-gateway ctl: say pause, resume or abort "
				"(see --help)\n");
		return 2;
	}
	const char *need = !proto_id_valid(o.product) ? "--product"
			   : !o.ca_file[0]	     ? "--ca-file"
			   : !o.cert_file[0]	     ? "--cert-file"
			   : !o.key_file[0]	     ? "--key-file"
						     : NULL;
	if (need) {
		fprintf(stderr, "ota-gateway ctl: %s is required\n", need);
		return 2;
	}
	if (util_key_private("key_file", o.key_file, err, sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway ctl: %s\n", err);
		return 2;
	}
	snprintf(c.release, sizeof(c.release), "%s", o.release);
	char *json = NULL;
	size_t len = 0;
	if (proto_control_encode(&c, &json, &len) != 0) {
		fprintf(stderr, "ota-gateway ctl: release '%s' is not 16 "
				"lowercase hex digits\n", o.release);
		return 2;
	}
	snprintf(topic, sizeof(topic), "ota/ctl/%s", o.product);

	int rc = 1;
	struct ctl_state st = {.connack = -1};
	mosquitto_lib_init();
	struct mosquitto *m = mosquitto_new(NULL, true, &st);
	if (!m)
		goto out;
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
	mosquitto_connect_callback_set(m, on_connect);
	mosquitto_publish_callback_set(m, on_publish);
	int mrc = mosquitto_tls_set(m, o.ca_file, NULL, o.cert_file,
				    o.key_file, NULL);
	if (mrc == MOSQ_ERR_SUCCESS)
		mrc = mosquitto_tls_opts_set(m, 1, "tlsv1.2", NULL);
	if (mrc == MOSQ_ERR_SUCCESS)
		mrc = mosquitto_connect(m, o.broker_host, (int)o.broker_port, 30);
	if (mrc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "ota-gateway ctl: %s:%u: %s\n", o.broker_host,
			o.broker_port,
			mrc == MOSQ_ERR_ERRNO ? "connection failed"
					      : mosquitto_strerror(mrc));
		goto out_m;
	}
	mosquitto_publish(m, NULL, topic, (int)len, json, 1, false);
	for (uint32_t i = 0; i < o.timeout_s * 10 && !st.published; i++) {
		if (mosquitto_loop(m, 100, 1) != MOSQ_ERR_SUCCESS)
			break;
		if (st.connack > 0)
			break;
	}
	if (st.connack > 0)
		fprintf(stderr, "ota-gateway ctl: broker refused: %s\n",
			mosquitto_connack_string(st.connack));
	else if (!st.published)
		fprintf(stderr, "ota-gateway ctl: no acknowledgement from "
				"the broker in %u s\n", o.timeout_s);
	else {
		printf("%s %s%s%s: sent on %s\n", act, o.product,
		       o.release[0] ? " release " : "", o.release, topic);
		rc = 0;
	}
	mosquitto_disconnect(m);
	mosquitto_loop(m, 100, 1);
out_m:
	mosquitto_destroy(m);
out:
	mosquitto_lib_cleanup();
	free(json);
	return rc;
}
