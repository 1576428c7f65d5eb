/* ota-gateway announce / ctl: the operator's commands, answered.
 * Each publishes the same message an operator could with mosquitto_pub
 * (ota/release/<product> or ota/ctl/<product>), with the operator's
 * certificate and a request id, then waits for the gateway's verdict on
 * ota/result/<product>/req/<id> (PROTOCOL.md section 5.5). With MQTT 5 the
 * request also carries that topic as its response topic and the id as
 * correlation data, and a broker's refusal of the publish is reported. */
#include <fcntl.h>
#include <limits.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/certcheck.h"
#include "common/mq.h"
#include "common/util.h"
#include "common/conf.h"
#include "common/util.h"
#include "gateway/gw.h"

struct conn_opts {
	char brokers[1024]; /* "" = broker_host:broker_port */
	char broker_host[256];
	uint32_t broker_port;
	char ca_file[PATH_MAX];
	char cert_file[PATH_MAX];
	char key_file[PATH_MAX];
	uint32_t timeout_s;
	char mqtt_version[8];
	bool json;
};

struct ctl_opts {
	char product[PROTO_ID_MAX + 1];
	char release[PROTO_RELEASE_HEX_LEN + 1];
	struct conn_opts c;
};

struct ann_opts {
	char product[PROTO_ID_MAX + 1];
	char url[PROTO_URL_MAX + 1];
	char group[PROTO_ID_MAX + 1];
	char devices[8192];
	uint32_t fragment_size, window, concurrency;
	uint32_t canary_percent, canary_success_percent, pause_failure_percent;
	char restart_spread_s[16]; /* "" = the gateway's */
	bool dry_run;
	struct conn_opts c;
};

#define CONN_KEYS(S)                                                            \
	{"brokers",                                                             \
	 CONF_STR,                                                              \
	 offsetof(S, c.brokers),                                                \
	 1024,                                                                  \
	 0,                                                                     \
	 0,                                                                     \
	 "brokers to try in turn, host[:port],... (overrides broker_host)"},    \
	    {"broker_host", CONF_STR, offsetof(S, c.broker_host), 256, 0, 0,    \
	     "broker host"},                                                    \
	    {"broker_port", CONF_U32,	      offsetof(S, c.broker_port), 0, 1, \
	     65535,	    "broker TLS port"},                                 \
	    {"ca_file", CONF_STR, offsetof(S, c.ca_file), PATH_MAX,             \
	     0,		0,	  "CA certificate (PEM)"},                      \
	    {"cert_file",                                                       \
	     CONF_STR,                                                          \
	     offsetof(S, c.cert_file),                                          \
	     PATH_MAX,                                                          \
	     0,                                                                 \
	     0,                                                                 \
	     "operator certificate (CN ota-operator or ota-operator-NAME)"},    \
	    {"key_file", CONF_STR, offsetof(S, c.key_file),   PATH_MAX,         \
	     0,		 0,	   "operator key (mode 0600)"},                 \
	    {"timeout_s", CONF_U32, offsetof(S, c.timeout_s),	     0,         \
	     1,		  600,	    "wait this long for the verdict"},          \
	    {"mqtt_version",                                                    \
	     CONF_STR,                                                          \
	     offsetof(S, c.mqtt_version),                                       \
	     8,                                                                 \
	     0,                                                                 \
	     0,                                                                 \
	     "5 or 3.1.1 (3.1.1: a broker's refusal goes unreported)"},         \
	{                                                                       \
		"json", CONF_BOOL, offsetof(S, c.json), 0, 0, 0,                \
		    "print the verdict as JSON"                                 \
	}

static const struct conf_key ctl_keys[] = {
    {"product", CONF_STR, offsetof(struct ctl_opts, product), PROTO_ID_MAX + 1,
     0, 0, "product whose rollout to control"},
    {"release", CONF_STR, offsetof(struct ctl_opts, release),
     PROTO_RELEASE_HEX_LEN + 1, 0, 0,
     "release id (default: the product's newest)"},
    CONN_KEYS(struct ctl_opts),
    {0}};

#define A(name, type, field, size, lo, hi, help)                               \
	{                                                                      \
		name, type, offsetof(struct ann_opts, field), size, lo, hi,    \
		    help                                                       \
	}
static const struct conf_key ann_keys[] = {
    A("product", CONF_STR, product, PROTO_ID_MAX + 1, 0, 0, "product"),
    A("url", CONF_STR, url, PROTO_URL_MAX + 1, 0, 0,
      "package URL the gateway fetches (file:// or https://)"),
    A("group", CONF_STR, group, PROTO_ID_MAX + 1, 0, 0,
      "only devices that report this group"),
    A("devices", CONF_STR, devices, 8192, 0, 0,
      "only these device ids (comma-separated)"),
    A("fragment_size", CONF_U32, fragment_size, 0, PROTO_FRAG_SIZE_MIN,
      PROTO_FRAG_SIZE_MAX, "bytes per fragment (default: the gateway's)"),
    A("window", CONF_U32, window, 0, 1, PROTO_WINDOW_MAX,
      "fragments in flight per device (default: the gateway's)"),
    A("concurrency", CONF_U32, concurrency, 0, 1, 1000000,
      "at most this many devices transferring at once"),
    A("canary_percent", CONF_U32, canary_percent, 0, 1, 100,
      "this share of the targets goes first"),
    A("canary_success_percent", CONF_U32, canary_success_percent, 0, 1, 100,
      "share of the canaries that must commit (default 100)"),
    A("pause_failure_percent", CONF_U32, pause_failure_percent, 0, 1, 100,
      "pause by itself above this failure rate"),
    A("restart_spread_s", CONF_STR, restart_spread_s, 16, 0, 0,
      "devices restart at random within this many seconds after "
      "installing, 0..3600 (default: the gateway's, from restart_rate)"),
    A("dry_run", CONF_BOOL, dry_run, 0, 0, 0,
      "only ask which devices it would target; start nothing"),
    CONN_KEYS(struct ann_opts),
    {0}};

static void conn_defaults(struct conn_opts *c)
{
	snprintf(c->broker_host, sizeof(c->broker_host), "localhost");
	c->broker_port = 8883;
	c->timeout_s = 30;
	snprintf(c->mqtt_version, sizeof(c->mqtt_version), "5");
}

/* ------------------------------------------------------------ client */

struct client {
	const struct conn_opts *o;
	const char *prog;
	char reply_topic[256];
	char req[PROTO_ID_MAX + 1];
	int connack; /* -1 until CONNACK */
	bool subacked, sub_denied;
	int puback;    /* -1 until PUBACK: its reason code */
	char *verdict; /* the reply's payload, new */
	size_t verdict_len;
};

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags,
		       const mosquitto_property *p)
{
	(void)m, (void)flags, (void)p;
	((struct client *)ud)->connack = rc;
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n,
			 const int *granted, const mosquitto_property *p)
{
	(void)m, (void)mid, (void)p;
	struct client *c = ud;
	c->subacked = true;
	c->sub_denied = n < 1 || granted[0] >= 0x80;
}

static void on_publish(struct mosquitto *m, void *ud, int mid, int reason,
		       const mosquitto_property *p)
{
	(void)m, (void)mid, (void)p;
	((struct client *)ud)->puback = reason;
}

static void on_message(struct mosquitto *m, void *ud,
		       const struct mosquitto_message *msg,
		       const mosquitto_property *p)
{
	(void)m, (void)p;
	struct client *c = ud;
	if (c->verdict || strcmp(msg->topic, c->reply_topic) != 0 ||
	    msg->payloadlen <= 0)
		return;
	c->verdict = malloc((size_t)msg->payloadlen + 1);
	if (!c->verdict)
		return;
	memcpy(c->verdict, msg->payload, (size_t)msg->payloadlen);
	c->verdict[msg->payloadlen] = '\0';
	c->verdict_len = (size_t)msg->payloadlen;
}

/* Run the loop until *done or the deadline; false on a lost connection. */
static bool run_until(struct mosquitto *m, const bool *done, uint64_t until)
{
	while (!*done && util_mono_ms() < until)
		if (mosquitto_loop(m, 100, 1) != MOSQ_ERR_SUCCESS)
			return false;
	return *done;
}

static void make_request_id(char *out, size_t n)
{
	uint8_t r[8];
	char hex[17];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (uint8_t)(util_mono_ms() >> (i * 3));
	proto_hex_encode(r, sizeof(r), hex);
	snprintf(out, n, "req-%s", hex);
}

static int print_verdict(const struct client *c)
{
	struct proto_verdict v;
	struct proto_err perr = {{0}};
	if (proto_verdict_decode(c->verdict, c->verdict_len, &v, &perr) != 0) {
		fprintf(stderr, "%s: unreadable verdict from the gateway: %s\n",
			c->prog, perr.text);
		return 1;
	}
	if (c->o->json) {
		printf("%s\n", c->verdict);
	} else {
		printf("%s %s%s%s: %s%s%s%s\n", v.command, v.product,
		       v.version[0] ? " " : "", v.version,
		       v.verdict == PROTO_VERDICT_DRY_RUN
			   ? "dry run"
			   : proto_verdict_name(v.verdict),
		       v.release[0] ? " (release " : "", v.release,
		       v.release[0] ? ")" : "");
		if (v.targets >= 0) {
			printf("  targets %lld device%s", (long long)v.targets,
			       v.targets == 1 ? "" : "s");
			for (uint32_t i = 0; i < v.ndevices; i++)
				printf("%s%s", i ? ", " : ": ", v.devices[i]);
			printf("%s\n",
			       v.targets > (int64_t)v.ndevices ? ", ..." : "");
		}
		if (v.reason[0])
			printf("  %s\n", v.reason);
	}
	if (v.verdict == PROTO_VERDICT_REFUSED) {
		fprintf(stderr, "%s: refused by the gateway: %s\n", c->prog,
			v.reason);
		return 1;
	}
	return 0;
}

static void describe_cert(const struct conn_opts *o, char *buf, size_t n)
{
	char cn[128], err[256];
	if (certcheck_cn(o->cert_file, cn, sizeof(cn), err, sizeof(err)) == 0)
		snprintf(buf, n, "certificate %s, CN '%s'", o->cert_file, cn);
	else
		snprintf(buf, n, "certificate %s", o->cert_file);
}

/* Connect to the first broker of the list that answers with a CONNACK
 * (each gets at most 10 s of the time left). */
static int client_connect(struct client *c, struct mosquitto *m,
			  const char *who, uint64_t until)
{
	const struct conn_opts *o = c->o;
	char host[256], err[256];
	int port = (int)o->broker_port;
	for (unsigned i = 0;; i++) {
		if (!o->brokers[0]) {
			if (i > 0)
				return 1;
			snprintf(host, sizeof(host), "%s", o->broker_host);
		} else if (mq_brokers_get(o->brokers, (int)o->broker_port, i,
					  host, sizeof(host), &port, err,
					  sizeof(err)) != 0) {
			if (i == 0)
				fprintf(stderr, "%s: %s\n", c->prog, err);
			return 1;
		}
		c->connack = -1;
		int mrc = mosquitto_connect(m, host, port, 30);
		if (mrc != MOSQ_ERR_SUCCESS) {
			fprintf(stderr, "%s: %s:%d: %s (%s)\n", c->prog, host,
				port,
				mrc == MOSQ_ERR_ERRNO ? "connection failed"
						      : mosquitto_strerror(mrc),
				who);
			continue;
		}
		uint64_t stop = util_mono_ms() + 10000;
		if (stop > until)
			stop = until;
		while (c->connack < 0 && util_mono_ms() < stop &&
		       mosquitto_loop(m, 100, 1) == MOSQ_ERR_SUCCESS)
			;
		if (c->connack == 0)
			return 0;
		fprintf(stderr,
			"%s: broker %s:%d refused the connection: %s "
			"(%s)\n",
			c->prog, host, port,
			c->connack < 0 ? "no CONNACK"
				       : mosquitto_reason_string(c->connack),
			who);
		if (util_mono_ms() >= until)
			return 1;
	}
}

/* Connect, subscribe to the reply topic, publish, wait for the verdict. */
static int client_run(struct client *c, struct mosquitto *m, const char *topic,
		      const char *json, size_t len)
{
	const struct conn_opts *o = c->o;
	bool v5 = strcmp(o->mqtt_version, "5") == 0, got = false, ok;
	char who[PATH_MAX + 160];
	uint64_t until = util_mono_ms() + (uint64_t)o->timeout_s * 1000;
	describe_cert(o, who, sizeof(who));
	if (client_connect(c, m, who, until) != 0)
		return 1;
	mosquitto_subscribe(m, NULL, c->reply_topic, 1);
	if (!run_until(m, &c->subacked, until) || c->sub_denied) {
		fprintf(stderr, "%s: cannot subscribe to %s (%s)\n", c->prog,
			c->reply_topic, who);
		return 1;
	}
	mosquitto_property *props = NULL;
	if (v5) {
		mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC,
					      c->reply_topic);
		mosquitto_property_add_binary(&props,
					      MQTT_PROP_CORRELATION_DATA,
					      c->req, (uint16_t)strlen(c->req));
	}
	mosquitto_publish_v5(m, NULL, topic, (int)len, json, 1, false, props);
	mosquitto_property_free_all(&props);
	bool acked = false;
	while (!acked && util_mono_ms() < until &&
	       mosquitto_loop(m, 100, 1) == MOSQ_ERR_SUCCESS)
		acked = c->puback >= 0;
	if (acked && c->puback >= 0x80) {
		fprintf(stderr,
			"%s: the broker refused the publish on %s: %s "
			"(%s)\n",
			c->prog, topic,
			c->puback == MQTT_RC_NOT_AUTHORIZED
			    ? "not authorised"
			    : mosquitto_reason_string(c->puback),
			who);
		return 1;
	}
	while (!got && util_mono_ms() < until &&
	       (ok = mosquitto_loop(m, 100, 1) == MOSQ_ERR_SUCCESS))
		got = c->verdict != NULL;
	if (!got) {
		fprintf(stderr,
			"%s: no verdict from the gateway within %u s "
			"on %s (%s; is the gateway running%s?)\n",
			c->prog, o->timeout_s, c->reply_topic,
			acked ? "the broker took the request"
			      : "the broker did not acknowledge the request",
			v5 ? ""
			   : ", and may this certificate publish there: "
			     "MQTT 3.1.1 brokers drop a refused publish "
			     "without a word");
		return 1;
	}
	return print_verdict(c);
}

static int client_send(const struct conn_opts *o, const char *prog,
		       const char *product, const char *kind, const char *req,
		       const char *json, size_t len)
{
	struct client c = {.o = o, .prog = prog, .connack = -1, .puback = -1};
	char topic[PROTO_ID_MAX + 16];
	snprintf(topic, sizeof(topic), "ota/%s/%s", kind, product);
	snprintf(c.req, sizeof(c.req), "%s", req);
	snprintf(c.reply_topic, sizeof(c.reply_topic), "ota/result/%s/req/%s",
		 product, req);
	int rc = 1;
	mosquitto_lib_init();
	struct mosquitto *m = mosquitto_new(NULL, true, &c);
	if (!m)
		goto out;
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION,
			     strcmp(o->mqtt_version, "5") == 0
				 ? MQTT_PROTOCOL_V5
				 : MQTT_PROTOCOL_V311);
	mosquitto_connect_v5_callback_set(m, on_connect);
	mosquitto_subscribe_v5_callback_set(m, on_subscribe);
	mosquitto_publish_v5_callback_set(m, on_publish);
	mosquitto_message_v5_callback_set(m, on_message);
	int mrc = mosquitto_tls_set(m, o->ca_file, NULL, o->cert_file,
				    o->key_file, NULL);
	if (mrc == MOSQ_ERR_SUCCESS)
		mrc = mosquitto_tls_opts_set(m, 1, "tlsv1.2", NULL);
	if (mrc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "%s: TLS setup (ca %s, cert %s, key %s): %s\n",
			prog, o->ca_file, o->cert_file, o->key_file,
			mosquitto_strerror(mrc));
		goto out_m;
	}
	rc = client_run(&c, m, topic, json, len);
	mosquitto_disconnect(m);
	mosquitto_loop(m, 100, 1);
out_m:
	mosquitto_destroy(m);
out:
	mosquitto_lib_cleanup();
	free(c.verdict);
	return rc;
}

/* Files present and the version known: 0, or 2 with the message. */
static int conn_check(const struct conn_opts *o, const char *prog,
		      const char *product)
{
	const char *need = !proto_id_valid(product) ? "--product"
			   : !o->ca_file[0]	    ? "--ca-file"
			   : !o->cert_file[0]	    ? "--cert-file"
			   : !o->key_file[0]	    ? "--key-file"
						    : NULL;
	if (need) {
		fprintf(stderr, "%s: %s is required%s\n", prog, need,
			!strcmp(need, "--product") && product[0]
			    ? " (a valid product name)"
			    : "");
		return 2;
	}
	char err[512];
	if (util_key_private("key_file", o->key_file, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 2;
	}
	if (strcmp(o->mqtt_version, "5") && strcmp(o->mqtt_version, "3.1.1")) {
		fprintf(stderr, "%s: --mqtt-version: '%s' is not 5 or 3.1.1\n",
			prog, o->mqtt_version);
		return 2;
	}
	if (o->brokers[0] &&
	    mq_brokers_check(o->brokers, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: --%s\n", prog, err);
		return 2;
	}
	return 0;
}

/* The claimed operator: the CN of the certificate used. */
static void operator_of(const struct conn_opts *o, char *out, size_t n)
{
	char err[256];
	if (certcheck_cn(o->cert_file, out, n, err, sizeof(err)) != 0 ||
	    !proto_id_valid(out))
		out[0] = '\0';
}

static void ctl_usage(void)
{
	printf("usage: ota-gateway ctl pause|resume|abort|retry --product P "
	       "[--release ID]\n"
	       "                          [connection options]\n\n"
	       "Publishes {\"action\":...} on ota/ctl/<product> with the "
	       "operator's certificate\nand waits for the gateway's verdict. "
	       "Exit status: 0 accepted (or nothing to\nchange), 1 refused, "
	       "not authorised or no answer, 2 usage.\n\noptions:\n");
	struct ctl_opts d = {0};
	conn_defaults(&d.c);
	conf_print_help_defaults(ctl_keys, &d);
	printf("\nexamples:\n  ota-gateway ctl pause --product sensor "
	       "--broker-host broker \\\n"
	       "      --broker-port 8883 --ca-file ca.crt "
	       "--cert-file operator.crt \\\n"
	       "      --key-file operator.key\n"
	       "  ota-gateway ctl retry --product sensor --release "
	       "eb66cecd2c30a94e -c ctl.conf\n");
}

int gw__cmd_ctl(int argc, char **argv)
{
	struct ctl_opts o = {0};
	struct conf_cli cli;
	char err[512], *json = NULL;
	size_t len = 0;
	conn_defaults(&o.c);
	if (conf_from_argv(argc, argv, ctl_keys, &o, &cli, err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "ota-gateway ctl: %s\n", err);
		return 2;
	}
	if (cli.help) {
		ctl_usage();
		return 0;
	}
	struct proto_control c = {0};
	const char *act = cli.nargs == 1 ? cli.args[0] : "";
	bool known = false;
	for (int i = PROTO_ACT_PAUSE; i <= PROTO_ACT_RETRY && !known; i++)
		if (!strcmp(act, proto_action_name((enum proto_action)i))) {
			c.action = (enum proto_action)i;
			known = true;
		}
	if (!known) {
		fprintf(stderr, "ota-gateway ctl: say pause, resume, abort or "
				"retry (see --help)\n");
		return 2;
	}
	int rc = conn_check(&o.c, "ota-gateway ctl", o.product);
	if (rc)
		return rc;
	snprintf(c.release, sizeof(c.release), "%s", o.release);
	make_request_id(c.reply, sizeof(c.reply));
	operator_of(&o.c, c.operator_name, sizeof(c.operator_name));
	if (proto_control_encode(&c, &json, &len) != 0) {
		fprintf(stderr,
			"ota-gateway ctl: release '%s' is not 16 "
			"lowercase hex digits\n",
			o.release);
		return 2;
	}
	rc = client_send(&o.c, "ota-gateway ctl", o.product, "ctl", c.reply,
			 json, len);
	free(json);
	return rc;
}

/* "a,b,c" -> the announcement's device list (new strings). */
static int split_devices(char *list, struct proto_announce *a, const char **bad)
{
	size_t n = 1;
	for (const char *p = list; *p; p++)
		n += *p == ',';
	a->devices = calloc(n, sizeof(char *));
	if (!a->devices)
		return -1;
	char *save = NULL;
	for (char *t = strtok_r(list, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		if (!proto_id_valid(t)) {
			*bad = t;
			return -1;
		}
		a->devices[a->ndevices++] = strdup(t);
	}
	return a->ndevices ? 0 : -1;
}

static void ann_usage(void)
{
	printf("usage: ota-gateway announce --product P --url URL [--group G] "
	       "[--devices a,b]\n"
	       "                   [--canary-percent N ...] [--dry-run] "
	       "[connection options]\n\n"
	       "Publishes the announcement on ota/release/<product> with the "
	       "operator's\ncertificate and prints the gateway's verdict: the "
	       "release, how many devices it\ntargets now and which. --dry-run "
	       "only asks which it would target. Exit status:\n0 accepted (or "
	       "already known), 1 refused, not authorised or no answer, 2 "
	       "usage.\n\noptions:\n");
	static struct ann_opts d;
	conn_defaults(&d.c);
	conf_print_help_defaults(ann_keys, &d);
	printf("\nexample:\n  ota-gateway announce --product sensor --url "
	       "file:///srv/ota/sensor-1.1.0.ota\\\n"
	       "      --group east --canary-percent 10 --ca-file pki/ca.crt "
	       "\\\n      --cert-file pki/operator.crt --key-file "
	       "pki/operator.key\n");
}

int gw__cmd_announce(int argc, char **argv)
{
	struct ann_opts *o = calloc(1, sizeof(*o));
	struct proto_announce a = {0};
	struct conf_cli cli;
	char err[512], *json = NULL;
	size_t len = 0;
	int rc = 2;
	if (!o)
		return 1;
	conn_defaults(&o->c);
	if (conf_from_argv(argc, argv, ann_keys, o, &cli, err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "ota-gateway announce: %s\n", err);
		goto out;
	}
	if (cli.help) {
		ann_usage();
		rc = 0;
		goto out;
	}
	if ((rc = conn_check(&o->c, "ota-gateway announce", o->product)) != 0)
		goto out;
	rc = 2;
	snprintf(a.url, sizeof(a.url), "%s", o->url);
	snprintf(a.group, sizeof(a.group), "%s", o->group);
	const char *bad = NULL;
	if (o->devices[0] && split_devices(o->devices, &a, &bad) != 0) {
		if (bad)
			fprintf(stderr,
				"ota-gateway announce: --devices: '%s' "
				"is not a device id (1..%d of "
				"[A-Za-z0-9_-])\n",
				bad, PROTO_ID_MAX);
		else
			fprintf(stderr, "ota-gateway announce: --devices: a "
					"comma-separated list of device ids\n");
		goto out;
	}
	a.fragment_size = o->fragment_size;
	a.window = o->window;
	a.concurrency = o->concurrency;
	a.canary_percent = o->canary_percent;
	a.canary_success_percent = o->canary_success_percent;
	a.pause_failure_percent = o->pause_failure_percent;
	if (o->restart_spread_s[0]) {
		char *e;
		unsigned long v = strtoul(o->restart_spread_s, &e, 10);
		if (*e || o->restart_spread_s[0] == '-' ||
		    v > PROTO_SPREAD_MS_MAX / 1000) {
			fprintf(stderr,
				"ota-gateway announce: "
				"--restart-spread-s: '%s' is not "
				"0..%u\n",
				o->restart_spread_s,
				PROTO_SPREAD_MS_MAX / 1000);
			goto out;
		}
		a.restart_spread_s = (uint32_t)v;
		a.restart_spread_set = true;
	}
	a.dry_run = o->dry_run;
	make_request_id(a.reply, sizeof(a.reply));
	operator_of(&o->c, a.operator_name, sizeof(a.operator_name));
	if (proto_announce_encode(&a, &json, &len) != 0) {
		fprintf(stderr,
			"ota-gateway announce: --url must be a "
			"file:// or https:// URL%s\n",
			a.group[0] && !proto_id_valid(a.group)
			    ? ", --group a valid group name"
			    : "");
		goto out;
	}
	rc = client_send(&o->c, "ota-gateway announce", o->product, "release",
			 a.reply, json, len);
out:
	proto_announce_free(&a);
	free(json);
	free(o);
	return rc;
}
