/* ota-device: the device client. */
#include <mosquitto.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/conf.h"
#include "common/log.h"
#include "device-client/dev.h"

#define K(name, type, field, lo, hi, help)                                     \
	{name, type, offsetof(struct dev_config, field),                       \
	 sizeof(((struct dev_config *)0)->field), lo, hi, help}

static const struct conf_key dev_keys[] = {
    K("id", CONF_STR, id, 0, 0, "device id (= certificate CN)"),
    K("product", CONF_STR, product, 0, 0, "product this device runs"),
    K("version", CONF_STR, version, 0, 0,
      "factory version, used until the first update"),
    K("group", CONF_STR, group, 0, 0, "rollout group (optional)"),
    K("broker_host", CONF_STR, broker_host, 0, 0,
      "MQTT broker host (must match its certificate)"),
    K("broker_port", CONF_U32, broker_port, 1, 65535, "broker TLS port"),
    K("ca_file", CONF_STR, ca_file, 0, 0, "CA certificate (PEM)"),
    K("cert_file", CONF_STR, cert_file, 0, 0, "this device's certificate"),
    K("key_file", CONF_STR, key_file, 0, 0, "this device's private key"),
    K("publisher_key", CONF_STR, publisher_key, 0, 0,
      "publisher's Ed25519 public key (PEM)"),
    K("state_dir", CONF_STR, state_dir, 0, 0,
      "slots, progress and state.json live here"),
    K("restart_command", CONF_STR, restart_command, 0, 0,
      "run to restart into the new version (default: re-exec)"),
    K("max_package_mb", CONF_U32, max_package_mb, 1, 1u << 20,
      "largest package accepted, MiB"),
    K("checkpoint_every", CONF_U32, checkpoint_every, 1, 1u << 20,
      "fragments between progress saves"),
    K("log_level", CONF_STR, log_level, 0, 0, "error, warn, info or debug"),
    {0}};

static void defaults(struct dev_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->version, sizeof(c->version), "0.0.0");
	snprintf(c->broker_host, sizeof(c->broker_host), "localhost");
	c->broker_port = 8883;
	snprintf(c->state_dir, sizeof(c->state_dir), "ota-device-state");
	c->max_package_mb = 512;
	c->checkpoint_every = 64;
	snprintf(c->log_level, sizeof(c->log_level), "info");
}

static int check(const struct dev_config *c, char *err, size_t n)
{
	uint32_t parts[3];
	enum log_level lvl;
	if (!proto_id_valid(c->id)) {
		snprintf(err, n, "key 'id': '%s' must be 1-63 characters of "
				 "A-Z a-z 0-9 . _ -", c->id);
		return -1;
	}
	if (!proto_id_valid(c->product)) {
		snprintf(err, n, "key 'product': '%s' must be 1-63 characters "
				 "of A-Z a-z 0-9 . _ -", c->product);
		return -1;
	}
	if (c->group[0] && !proto_id_valid(c->group)) {
		snprintf(err, n, "key 'group': '%s' is not a valid name",
			 c->group);
		return -1;
	}
	if (proto_version_parse(c->version, parts) != 0) {
		snprintf(err, n, "key 'version': '%s' is not MAJOR.MINOR.PATCH",
			 c->version);
		return -1;
	}
	const char *need = !c->ca_file[0]	  ? "ca_file"
			   : !c->cert_file[0]	  ? "cert_file"
			   : !c->key_file[0]	  ? "key_file"
			   : !c->publisher_key[0] ? "publisher_key"
						  : NULL;
	if (need) {
		snprintf(err, n, "key '%s' is required", need);
		return -1;
	}
	if (log_level_parse(c->log_level, &lvl) != 0) {
		snprintf(err, n, "key 'log_level': '%s' is not one of error, "
				 "warn, info, debug", c->log_level);
		return -1;
	}
	return 0;
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
	conf_print_help(dev_keys);
	printf("\nexample:\n  ota-device -c /etc/ota/device.conf\n"
	       "  ota-device --id dev-001 --product sensor --version 1.0.0 "
	       "\\\n      --ca-file ca.crt --cert-file dev-001.crt "
	       "--key-file dev-001.key \\\n      --publisher-key "
	       "publisher.pub --state-dir /var/lib/ota-device\n");
}

static void stopped(struct dev *d) { (void)d; }

struct signals {
	uv_signal_t intr, term;
	struct dev *d;
};

static void on_signal(uv_signal_t *s, int signum)
{
	struct signals *sg = s->data;
	log_info("device=%s signal %d: stopping", sg->d->cfg.id, signum);
	uv_close((uv_handle_t *)&sg->intr, NULL);
	uv_close((uv_handle_t *)&sg->term, NULL);
	dev_stop(sg->d, stopped);
}

int main(int argc, char **argv)
{
	struct dev_config cfg;
	struct conf_cli cli;
	char err[512];
	static struct dev d; /* large; one per process here */
	log_init("ota-device", LOG_LVL_INFO);
	defaults(&cfg);
	if (conf_from_argv(argc, argv, dev_keys, &cfg, &cli, err,
			   sizeof(err)) != 0) {
		fprintf(stderr, "ota-device: %s\n", err);
		return 2;
	}
	if (cli.help) {
		usage();
		return 0;
	}
	if (cli.nargs || check(&cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "ota-device: %s%s%s\n",
			cli.config ? cli.config : "",
			cli.config ? ": " : "",
			cli.nargs ? "unexpected argument" : err);
		return 2;
	}
	enum log_level lvl;
	log_level_parse(cfg.log_level, &lvl);
	log_set_level(lvl);
	if (cli.check) {
		printf("%s: configuration OK\n",
		       cli.config ? cli.config : "flags");
		return 0;
	}
	mosquitto_lib_init();
	uv_loop_t *loop = uv_default_loop();
	if (dev_init(&d, loop, &cfg, argv, err, sizeof(err)) != 0) {
		log_warnx("device=%s %s", cfg.id, err);
		return 1;
	}
	struct signals sg = {.d = &d};
	uv_signal_init(loop, &sg.intr);
	uv_signal_init(loop, &sg.term);
	sg.intr.data = sg.term.data = &sg;
	uv_signal_start(&sg.intr, on_signal, SIGINT);
	uv_signal_start(&sg.term, on_signal, SIGTERM);
	if (dev_start(&d) != 0)
		return 1;
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	mosquitto_lib_cleanup();
	return 0;
}
