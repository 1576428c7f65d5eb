/* ota-device: the device client. */
#include <mosquitto.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <unistd.h>

#include "common/certcheck.h"
#include "common/conf.h"
#include "common/confcheck.h"
#include "common/log.h"
#include "common/trust.h"
#include "common/version.h"
#include "common/util.h"
#include "device-client/dev.h"
#include "device-client/fleet.h"

/* Settings of one device, and of a fleet of them (fleet mode). */
struct main_conf {
	struct dev_config dev;
	struct fleet_config fleet;
};

#define K(name, type, field, lo, hi, help)                                     \
	{                                                                      \
		name, type, offsetof(struct main_conf, field),                 \
		    sizeof(((struct main_conf *)0)->field), lo, hi, help       \
	}

static const struct conf_key dev_keys[] = {
    K("id", CONF_STR, dev.id, 0, 0, "device id (= certificate CN)"),
    K("product", CONF_STR, dev.product, 0, 0, "product this device runs"),
    K("firmware_version", CONF_STR, dev.version, 0, 0,
      "factory firmware version, used until the first update"),
    {"version", CONF_ALIAS, 0, 0, 1, 0, "firmware_version"},
    K("group", CONF_STR, dev.group, 0, 0, "rollout group (optional)"),
    K("brokers", CONF_STR, dev.brokers, 0, 0,
      "brokers to use, host[:port],... in order of preference; on a "
      "failure the next (overrides broker_host)"),
    K("broker_host", CONF_STR, dev.broker_host, 0, 0,
      "MQTT broker host (must match its certificate)"),
    K("broker_port", CONF_U32, dev.broker_port, 1, 65535, "broker TLS port"),
    K("ca_file", CONF_STR, dev.ca_file, 0, 0, "CA certificate (PEM)"),
    K("cert_file", CONF_STR, dev.cert_file, 0, 0, "this device's certificate"),
    K("key_file", CONF_STR, dev.key_file, 0, 0, "this device's private key"),
    K("keepalive_s", CONF_U32, dev.keepalive_s, 5, 65535,
      "MQTT keepalive: a silent link is noticed after about two"),
    K("publisher_key", CONF_STR, dev.publisher_key, 0, 0,
      "publisher's Ed25519 public key (PEM), when no root_keys"),
    K("root_keys", CONF_STR, dev.root_keys, 0, 0,
      "root Ed25519 public keys (PEM files, comma-separated): trust "
      "the publisher keys of the key sets they sign"),
    K("root_threshold", CONF_U32, dev.root_threshold, 1, PROTO_ROOT_KEYS_MAX,
      "root keys that must sign a key set (default 1)"),
    K("keyset_file", CONF_STR, dev.keyset_file, 0, 0,
      "factory key set (optional: newer ones come in offers)"),
    K("state_dir", CONF_STR, dev.state_dir, 0, 0,
      "slots, progress and state.json live here"),
    K("restart_command", CONF_STR, dev.restart_command, 0, 0,
      "run to restart into the new version (default: re-exec)"),
    K("health_command", CONF_STR, dev.health_command, 0, 0,
      "run after the restart; exit 0 = healthy, else roll back"),
    K("health_timeout_s", CONF_U32, dev.health_timeout_s, 1, 86400,
      "a health check running longer fails"),
    K("max_package_mb", CONF_U32, dev.max_package_mb, 1, 1u << 20,
      "largest package accepted, MiB"),
#ifdef OTA_TEST_HOOKS
    /* Test builds only (make VARIANT=asan or VARIANT=hooks): a release
     * binary does not know these keys and refuses them (common/conf.c). */
    K("test_drop_percent", CONF_U32, dev.test_drop_percent, 0, 100,
      "TESTS ONLY: drop this share of incoming fragments at random"),
    K("test_corrupt_percent", CONF_U32, dev.test_corrupt_percent, 0, 100,
      "TESTS ONLY: flip a byte in this share of arriving fragments"),
    K("test_crash_at", CONF_STR, dev.test_crash_at, 0, 0,
      "TESTS ONLY: SIGKILL itself at downloaded, table-removed, verify, "
      "verified, installing, switched, installed, committing or rollback"),
    K("test_clock_behind_s", CONF_U32, dev.test_clock_behind_s, 0, 0x7fffffffu,
      "TESTS ONLY: the clock used for expiry runs this far behind"),
    K("test_seed", CONF_U32, dev.test_seed, 0, 0xffffffffu,
      "TESTS ONLY: seed for test_drop_percent and test_corrupt_percent"),
#endif
    K("checkpoint_every", CONF_U32, dev.checkpoint_every, 1, 1u << 20,
      "fragments between progress saves"),
    K("log_level", CONF_STR, dev.log_level, 0, 0, "error, warn, info or debug"),
    K("fleet", CONF_U32, fleet.n, 0, 1000000,
      "simulate this many devices in one process (0: one device)"),
    K("fleet_prefix", CONF_STR, fleet.prefix, 0, 0,
      "fleet: device ids are this prefix and a number (default dev-)"),
    K("fleet_first", CONF_U32, fleet.first, 0, 1000000000,
      "fleet: number of the first device (default 1)"),
    K("fleet_cert_dir", CONF_STR, fleet.cert_dir, 0, 0,
      "fleet: directory of <id>.crt and <id>.key per device"),
    K("fleet_stagger_ms", CONF_U32, fleet.stagger_ms, 0, 60000,
      "fleet: delay between two devices' connections (default 2)"),
    {0}};

static void defaults(struct main_conf *mc)
{
	struct dev_config *c = &mc->dev;
	memset(mc, 0, sizeof(*mc));
	snprintf(c->version, sizeof(c->version), "0.0.0");
	snprintf(c->broker_host, sizeof(c->broker_host), "localhost");
	c->broker_port = 8883;
	c->keepalive_s = 30;
	c->root_threshold = 1;
	snprintf(c->state_dir, sizeof(c->state_dir), "ota-device-state");
	c->max_package_mb = 512;
	c->checkpoint_every = 64;
	c->health_timeout_s = 30;
	/* log_level "" = info, or warn in fleet mode (see check) */
	snprintf(mc->fleet.prefix, sizeof(mc->fleet.prefix), "dev-");
	mc->fleet.first = 1;
	mc->fleet.stagger_ms = 2;
}

/* Fleet mode: ids and certificates come from the fleet keys. */
static int check_fleet(const struct main_conf *mc, char *err, size_t n)
{
	const struct dev_config *c = &mc->dev;
	const char *extra = c->id[0]	      ? "id"
			    : c->cert_file[0] ? "cert_file"
			    : c->key_file[0]  ? "key_file"
					      : NULL;
	if (extra) {
		snprintf(err, n,
			 "key '%s' does not apply in fleet mode: ids "
			 "come from fleet_prefix, certificates from "
			 "fleet_cert_dir",
			 extra);
		return -1;
	}
	if (!proto_id_valid(mc->fleet.prefix)) {
		snprintf(err, n,
			 "key 'fleet_prefix': '%s' must be 1-63 "
			 "characters of A-Z a-z 0-9 _ -",
			 mc->fleet.prefix);
		return -1;
	}
	if (!mc->fleet.cert_dir[0]) {
		snprintf(err, n,
			 "key 'fleet_cert_dir' is required in fleet "
			 "mode");
		return -1;
	}
	return 0;
}

static int check(struct main_conf *mc, char *err, size_t n)
{
	struct dev_config *c = &mc->dev;
	bool fleet = mc->fleet.n > 0;
	uint32_t parts[3];
	if (!c->log_level[0])
		snprintf(c->log_level, sizeof(c->log_level), "%s",
			 fleet ? "warn" : "info");
	if (fleet ? check_fleet(mc, err, n) != 0 : !proto_id_valid(c->id)) {
		if (!fleet)
			snprintf(err, n,
				 "key 'id': '%s' must be 1-63 "
				 "characters of A-Z a-z 0-9 _ -",
				 c->id);
		return -1;
	}
	if (!proto_id_valid(c->product)) {
		snprintf(err, n,
			 "key 'product': '%s' must be 1-63 characters "
			 "of A-Z a-z 0-9 . _ -",
			 c->product);
		return -1;
	}
	if (c->group[0] && !proto_id_valid(c->group)) {
		snprintf(err, n, "key 'group': '%s' is not a valid name",
			 c->group);
		return -1;
	}
	if (proto_version_parse(c->version, parts) != 0) {
		snprintf(err, n,
			 "key 'firmware_version': '%s' is not "
			 "MAJOR.MINOR.PATCH",
			 c->version);
		return -1;
	}
	/* A fleet's certificates and keys are per device (fleet_cert_dir). */
	struct confcheck_client cc = {.ca_file = c->ca_file,
				      .cert_file = fleet ? NULL : c->cert_file,
				      .key_file = fleet ? NULL : c->key_file,
				      .publisher_key = c->publisher_key,
				      .root_keys = c->root_keys,
				      .log_level = c->log_level,
				      .brokers = c->brokers};
	if (confcheck_client(&cc, err, n) != 0)
		return -1;
	return fleet ? util_key_dir_private("fleet_cert_dir key",
					    mc->fleet.cert_dir, err, n)
		     : util_key_private("key_file", c->key_file, err, n);
}

static void usage(void)
{
	printf("usage: ota-device [-c FILE] [--check] [--key value ...]\n\n"
	       "Connects to the broker with its own certificate, reports its "
	       "status, and\ninstalls signed updates offered by the "
	       "gateway.\n\noptions:\n"
	       "  -c, --config FILE              configuration file\n"
	       "  --check                        validate the configuration "
	       "and exit\n");
	static struct main_conf dflt;
	defaults(&dflt);
	conf_print_help_defaults(dev_keys, &dflt);
	printf("  --version                      print the program's version "
	       "and exit\n                                 (--version VALUE: "
	       "old name of\n                                 "
	       "--firmware-version)\n");
	printf("\nexample:\n  ota-device -c /etc/ota/device.conf\n"
	       "  ota-device --id dev-001 --product sensor --firmware-version "
	       "1.0.0 "
	       "\\\n      --ca-file ca.crt --cert-file dev-001.crt "
	       "--key-file dev-001.key \\\n      --publisher-key "
	       "publisher.pub --state-dir /var/lib/ota-device\n"
	       "  ota-device --fleet 500 --fleet-cert-dir pki/devices "
	       "--product sensor \\\n      --firmware-version 1.0.0 "
	       "--ca-file ca.crt "
	       "--publisher-key publisher.pub \\\n      --state-dir "
	       "/tmp/fleet     (500 devices: state in /tmp/fleet/dev-001 "
	       "...)\n");
}

/* What run time would trip over, checked now: the certificate, key and
 * CA (matching, valid, CN = id), the publisher keys, the state directory.
 * Every problem is printed with its key; returns how many. */
static int check_files(const struct main_conf *mc, const char *prefix, bool all)
{
	const struct dev_config *c = &mc->dev;
	struct certcheck_problems p = {0, prefix};
	char err[512];
	struct certcheck cc = {c->ca_file,  "ca_file",	 c->cert_file,
			       "cert_file", c->key_file, "key_file",
			       c->id,	    "id"};
	if (!mc->fleet.n)
		certcheck_run(&cc, certcheck_print_problem, &p);
	if (!all)
		return p.n;
	struct trust t;
	if (trust_load(&t, c->publisher_key, c->root_keys, c->root_threshold,
		       c->keyset_file, true, 0, err, sizeof(err)) != 0)
		certcheck_print_problem(&p,
					c->root_keys[0] ? "root_keys"
							: "publisher_key",
					err);
	else
		trust_free(&t);
	if (certcheck_dir_writable(c->state_dir, err, sizeof(err)) != 0)
		certcheck_print_problem(&p, "state_dir", err);
	return p.n;
}

/* "--version" alone prints ours; "--version X" is the old firmware key. */
static bool wants_version(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--version") &&
		    (i + 1 >= argc || argv[i + 1][0] == '-'))
			return true;
	return false;
}

static void stopped(struct dev *d) { (void)d; }

/* SIGINT/SIGTERM stop the device, or every device of the fleet. */
struct signals {
	uv_signal_t intr, term;
	struct dev *d;
	struct fleet *f;
};

static void on_signal(uv_signal_t *s, int signum)
{
	struct signals *sg = s->data;
	if (sg->d)
		log_info("device=%s signal %d: stopping", sg->d->cfg.id,
			 signum);
	else
		log_info("fleet: signal %d: stopping", signum);
	uv_close((uv_handle_t *)&sg->intr, NULL);
	uv_close((uv_handle_t *)&sg->term, NULL);
	if (sg->d)
		dev_stop(sg->d, stopped);
	else
		fleet_stop(sg->f);
}

static void signals_start(uv_loop_t *loop, struct signals *sg)
{
	uv_signal_init(loop, &sg->intr);
	uv_signal_init(loop, &sg->term);
	sg->intr.data = sg->term.data = sg;
	uv_signal_start(&sg->intr, on_signal, SIGINT);
	uv_signal_start(&sg->term, on_signal, SIGTERM);
}

static int run_device(uv_loop_t *loop, const struct dev_config *cfg,
		      char **argv)
{
	static struct dev d; /* large; one per process here */
	char err[512];
	if (dev_init(&d, loop, cfg, argv, err, sizeof(err)) != 0) {
		log_warnx("device=%s %s", cfg->id, err);
		return 1;
	}
	struct signals sg = {.d = &d};
	signals_start(loop, &sg);
	if (dev_start(&d) != 0)
		return 1;
	uv_run(loop, UV_RUN_DEFAULT);
	return 0;
}

static int run_fleet(uv_loop_t *loop, const struct main_conf *mc, char **argv)
{
	struct fleet *f;
	char err[1024];
	if (fleet_new(loop, &mc->fleet, &mc->dev, argv, &f, err, sizeof(err)) !=
	    0) {
		log_warnx("fleet: %s", err);
		return 1;
	}
	struct signals sg = {.f = f};
	signals_start(loop, &sg);
	fleet_start(f);
	uv_run(loop, UV_RUN_DEFAULT);
	fleet_free(f);
	return 0;
}

int main(int argc, char **argv)
{
	static struct main_conf mc; /* large */
	struct conf_cli cli;
	char err[512];
	log_init("ota-device", LOG_LVL_INFO);
	if (wants_version(argc, argv)) {
		printf("ota-device %s\n", OTA_VERSION);
		return 0;
	}
	defaults(&mc);
	if (conf_from_argv(argc, argv, dev_keys, &mc, &cli, err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "ota-device: %s\n", err);
		return 2;
	}
	if (cli.help) {
		usage();
		return 0;
	}
	if (cli.nargs || check(&mc, err, sizeof(err)) != 0) {
		fprintf(stderr, "ota-device: %s%s%s\n",
			cli.config ? cli.config : "", cli.config ? ": " : "",
			cli.nargs ? "unexpected argument" : err);
		return 2;
	}
	enum log_level lvl;
	log_level_parse(mc.dev.log_level, &lvl);
	log_set_level(lvl);
	if (cli.check) {
		int n = check_files(&mc, "ota-device --check: ", true);
		if (n) {
			fprintf(stderr, "%s: %d problem%s\n",
				cli.config ? cli.config : "flags", n,
				n == 1 ? "" : "s");
			return 2;
		}
		printf("%s: configuration OK\n",
		       cli.config ? cli.config : "flags");
		return 0;
	}
	/* A permanent misconfiguration stops here, with its cause, rather
	 * than as TLS handshakes retried forever. */
	if (!mc.fleet.n &&
	    check_files(&mc, "ota-device: cannot start: ", false) != 0)
		return 2;
	mosquitto_lib_init();
	uv_loop_t *loop = uv_default_loop();
	int rc = mc.fleet.n ? run_fleet(loop, &mc, argv)
			    : run_device(loop, &mc.dev, argv);
	if (uv_loop_close(loop) != 0) { /* a handle left open: a leak */
		log_warnx("event loop not closed: a handle is still open");
		rc = 1;
	}
	mq_tls_cache_clear();
	mosquitto_lib_cleanup();
	return rc;
}
