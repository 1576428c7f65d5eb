/* ota-gateway run: the command line around the gateway's lifecycle
 * (gw.c): its configuration keys, --check, the signals, the event loop. */
#include <mosquitto.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/certcheck.h"
#include "common/conf.h"
#include "common/confcheck.h"
#include "common/log.h"
#include "common/util.h"
#include "gateway/gw.h"

#define K(name, type, field, lo, hi, help)                                     \
	{                                                                      \
		name, type, offsetof(struct gw_config, field),                 \
		    sizeof(((struct gw_config *)0)->field), lo, hi, help       \
	}

static const struct conf_key gw_keys[] = {
    K("brokers", CONF_STR, brokers, 0, 0,
      "brokers to use, host[:port],... in order of preference; on a "
      "failure the next (overrides broker_host)"),
    K("broker_host", CONF_STR, broker_host, 0, 0,
      "MQTT broker host name (must match its certificate)"),
    K("broker_port", CONF_U32, broker_port, 1, 65535, "broker TLS port"),
    K("ca_file", CONF_STR, ca_file, 0, 0, "CA certificate (PEM)"),
    K("cert_file", CONF_STR, cert_file, 0, 0,
      "gateway client certificate (CN ota-gateway)"),
    K("key_file", CONF_STR, key_file, 0, 0, "gateway client key"),
    K("client_id", CONF_STR, client_id, 0, 0,
      "MQTT client id (the shipped broker config replaces it with the "
      "certificate's CN)"),
    K("publisher_key", CONF_STR, publisher_key, 0, 0,
      "publisher's Ed25519 public key (PEM), when no root_keys"),
    K("root_keys", CONF_STR, root_keys, 0, 0,
      "root Ed25519 public keys (PEM files, comma-separated) that sign "
      "keyset_file"),
    K("root_threshold", CONF_U32, root_threshold, 1, PROTO_ROOT_KEYS_MAX,
      "root keys that must sign a key set (default 1)"),
    K("keyset_file", CONF_STR, keyset_file, 0, 0,
      "key set: publisher keys per product (re-read on SIGHUP)"),
    K("db_dir", CONF_STR, db_dir, 0, 0, "LMDB ledger directory"),
    K("store_dir", CONF_STR, store_dir, 0, 0,
      "where verified packages are kept"),
    K("fragment_size", CONF_U32, fragment_size, PROTO_FRAG_SIZE_MIN,
      PROTO_FRAG_SIZE_MAX, "default fragment size in bytes"),
    K("window", CONF_U32, window, 1, PROTO_WINDOW_MAX,
      "default fragments in flight per device at 4 KiB fragments "
      "(smaller fragments: as many more as keep its bytes, up to 256)"),
    K("max_package_mb", CONF_U32, max_package_mb, 1, 1u << 20,
      "largest package accepted, MiB"),
    K("offer_retry_ms", CONF_U32, offer_retry_ms, 100, 3600000,
      "re-send an unanswered offer after this long (doubled per re-send, "
      "up to 60 s)"),
    K("log_level", CONF_STR, log_level, 0, 0, "error, warn, info or debug"),
    K("https_ca_file", CONF_STR, https_ca_file, 0, 0,
      "CA bundle for https:// package servers (default: system store)"),
    K("fetch_timeout_s", CONF_U32, fetch_timeout_s, 1, 86400,
      "longest a package download may take, seconds"),
    K("max_inflight_kb", CONF_U32, max_inflight_kb, 64, 4u << 20,
      "fragment KiB in flight over the whole fleet (broker queue cap)"),
    K("fetch_retries", CONF_U32, fetch_retries, 0, 20,
      "retries of a failed download, with doubling delays from 1 s"),
    K("group_fragments", CONF_BOOL, group_fragments, 0, 0,
      "publish each fragment once for all devices updating together"),
    K("encrypt_packages", CONF_BOOL, encrypt_packages, 0, 0,
      "encrypt releases by default (announcement \"encrypt\" overrides)"),
    K("device_cert_dir", CONF_STR, device_cert_dir, 0, 0,
      "device certificates <id>.crt, to wrap encrypted releases' keys"),
    K("mqtt_version", CONF_STR, mqtt_version, 0, 0,
      "5 (verdicts also to MQTT 5 response topics) or 3.1.1 (brokers "
      "without MQTT 5)"),
    K("file_dirs", CONF_STR, file_dirs, 0, 0,
      "directories file:// packages may come from, ':'-separated "
      "absolute paths (default none: file:// refused)"),
    K("pause_failure_min", CONF_U32, pause_failure_min, 1,
      PROTO_PAUSE_FAILURE_MIN_MAX,
      "failed devices before a campaign pauses itself (canary or "
      "failure rate)"),
    K("http_listen", CONF_STR, http_listen, 0, 0,
      "operator's HTTP API, dashboard and /metrics on IP:PORT "
      "(default off; without http_tls loopback only)"),
    K("http_tls", CONF_BOOL, http_tls, 0, 0,
      "serve HTTPS and require an operator's client certificate"),
    K("http_cert_file", CONF_STR, http_cert_file, 0, 0,
      "HTTPS server certificate (PEM)"),
    K("http_key_file", CONF_STR, http_key_file, 0, 0, "HTTPS server key"),
    K("http_client_ca", CONF_STR, http_client_ca, 0, 0,
      "CA of the operators' client certificates (default: ca_file)"),
    K("http_operators", CONF_STR, http_operators, 0, 0,
      "client certificate CNs allowed over HTTPS, comma-separated"),
    K("offer_rate", CONF_U32, offer_rate, 0, 1000000,
      "offers started per second at most (0: no limit)"),
    K("restart_rate", CONF_U32, restart_rate, 0, 1000000,
      "device reconnections per second after an update: offers spread "
      "restarts over devices / rate (0: no spread)"),
    K("hello_spread_s", CONF_U32, hello_spread_s, 0, 3600,
      "devices answer the gateway's hello within at least this many "
      "seconds"),
    K("delta_wait_s", CONF_U32, delta_wait_s, 0, 86400,
      "longest a device waits for its delta to be made, seconds (then "
      "it gets the compressed image)"),
    K("lease_s", CONF_U32, lease_s, 0, 3600,
      "active/standby pair: the leader lease on ota/gw/leader, seconds "
      "(0: no lease, this gateway always sends)"),
    K("standby", CONF_BOOL, standby, 0, 0,
      "start as the standby of an active gateway (needs lease_s)"),
#ifdef OTA_TEST_HOOKS
    /* Test builds only (make VARIANT=asan or VARIANT=hooks): a release
     * binary does not know this key and refuses it (common/conf.c). */
    K("test_hostile_delta", CONF_BOOL, test_hostile_delta, 0, 0,
      "TESTS ONLY: make deltas that rebuild a wrong first block"),
#endif
    {0}};

void gw_config_defaults(struct gw_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->broker_host, sizeof(c->broker_host), "localhost");
	c->broker_port = 8883;
	snprintf(c->client_id, sizeof(c->client_id), "ota-gateway");
	snprintf(c->db_dir, sizeof(c->db_dir), "ota-gateway-db");
	snprintf(c->store_dir, sizeof(c->store_dir), "ota-gateway-store");
	c->fragment_size = 4096;
	c->window = 32;
	c->max_package_mb = 512;
	c->offer_retry_ms = 5000;
	c->fetch_timeout_s = 600;
	c->fetch_retries = 3;
	c->max_inflight_kb = 16384;
	c->delta_wait_s = 60;
	c->offer_rate = 2000;
	c->restart_rate = 500;
	c->hello_spread_s = 5;
	c->group_fragments = true;
	c->root_threshold = 1;
	snprintf(c->mqtt_version, sizeof(c->mqtt_version), "5");
	c->pause_failure_min = 2;
	snprintf(c->http_operators, sizeof(c->http_operators), "ota-operator");
	snprintf(c->log_level, sizeof(c->log_level), "info");
}

static int gw_config_check(const struct gw_config *c, char *err, size_t n)
{
	struct confcheck_client cc = {.ca_file = c->ca_file,
				      .cert_file = c->cert_file,
				      .key_file = c->key_file,
				      .publisher_key = c->publisher_key,
				      .root_keys = c->root_keys,
				      .log_level = c->log_level,
				      .brokers = c->brokers};
	if (confcheck_client(&cc, err, n) != 0)
		return -1;
	if (strcmp(c->mqtt_version, "5") != 0 &&
	    strcmp(c->mqtt_version, "3.1.1") != 0) {
		snprintf(err, n, "key 'mqtt_version': '%s' is not 5 or 3.1.1",
			 c->mqtt_version);
		return -1;
	}
	if (c->encrypt_packages && !c->device_cert_dir[0]) {
		snprintf(err, n,
			 "key 'encrypt_packages' needs "
			 "'device_cert_dir' (the devices' certificates)");
		return -1;
	}
	struct stat st;
	if (c->device_cert_dir[0] &&
	    (stat(c->device_cert_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
		snprintf(err, n, "key 'device_cert_dir': %s is not a directory",
			 c->device_cert_dir);
		return -1;
	}
	for (const char *d = c->file_dirs; *d;) {
		size_t len = strcspn(d, ":");
		if (len > 0 && d[0] != '/') {
			snprintf(err, n,
				 "key 'file_dirs': '%.*s' is not an "
				 "absolute path",
				 (int)len, d);
			return -1;
		}
		d += len;
		if (*d == ':')
			d++;
	}
	const char *files[] = {c->ca_file, c->cert_file, c->key_file};
	for (size_t i = 0; i < 3; i++) {
		FILE *f = fopen(files[i], "r");
		if (!f) {
			snprintf(err, n, "cannot read %s", files[i]);
			return -1;
		}
		fclose(f);
	}
	if (util_key_private("key_file", c->key_file, err, n) != 0 ||
	    gw__leader_check(c, err, n) != 0)
		return -1;
	return gw__http_check(c, err, n);
}

/* What run time would trip over: the TLS files (key matches, the CA
 * verifies the certificate, valid now, and with --check its CN is
 * ota-gateway, the name the broker's ACL gives the gateway's rights) and,
 * with all, the ledger and store directories. Returns the problems. */
static int check_files(const struct gw_config *c, const char *prefix, bool all)
{
	struct certcheck_problems p = {0, prefix};
	char err[512], cn[PROTO_ID_MAX + 1];
	/* A gateway of an active/standby pair may be ota-gateway-<name>
	 * (make-certs --gateway NAME: the same rights). */
	const char *want = "ota-gateway";
	if (c->lease_s &&
	    certcheck_cn(c->cert_file, cn, sizeof(cn), err, sizeof(err)) == 0 &&
	    strncmp(cn, "ota-gateway-", 12) == 0)
		want = cn;
	struct certcheck cc = {
	    c->ca_file,	       "ca_file",
	    c->cert_file,      "cert_file",
	    c->key_file,       "key_file",
	    all ? want : NULL, "the gateway's identity (deploy/mosquitto/acl)"};
	certcheck_run(&cc, certcheck_print_problem, &p);
	if (!all)
		return p.n;
	if (certcheck_dir_writable(c->db_dir, err, sizeof(err)) != 0)
		certcheck_print_problem(&p, "db_dir", err);
	if (certcheck_dir_writable(c->store_dir, err, sizeof(err)) != 0)
		certcheck_print_problem(&p, "store_dir", err);
	return p.n;
}

static void usage(void)
{
	struct gw_config dflt;
	gw_config_defaults(&dflt);
	printf("usage: ota-gateway run [-c FILE] [--check] [--key value ...]\n"
	       "\nEvery configuration key can also be given as a flag and "
	       "overrides the file.\n\noptions:\n"
	       "  -c, --config FILE              configuration file\n"
	       "  --check                        validate the configuration "
	       "and exit\n");
	conf_print_help_defaults(gw_keys, &dflt);
	printf("\nexample:\n  ota-gateway run -c /etc/ota/gateway.conf "
	       "--log-level debug\n");
}

/* SIGINT/SIGTERM stop the gateway, SIGHUP reloads its key set. The
 * handlers stay until the gateway has stopped: a second signal while it
 * stops is not the default action (death). */
struct run_signals {
	uv_signal_t intr, term, hup;
	struct gw *gw;
};

static void signals_close(struct gw *gw)
{
	struct run_signals *sg = gw->ud;
	uv_close((uv_handle_t *)&sg->intr, NULL);
	uv_close((uv_handle_t *)&sg->term, NULL);
	uv_close((uv_handle_t *)&sg->hup, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct run_signals *sg = s->data;
	if (signum == SIGHUP) {
		gw__keyset_reload(sg->gw);
		return;
	}
	if (sg->gw->stopping)
		return;
	log_info("signal %d: stopping", signum);
	gw_stop(sg->gw, signals_close);
}

static void signals_start(uv_loop_t *loop, struct run_signals *sg)
{
	uv_signal_init(loop, &sg->intr);
	uv_signal_init(loop, &sg->term);
	uv_signal_init(loop, &sg->hup);
	sg->intr.data = sg->term.data = sg->hup.data = sg;
	uv_signal_start(&sg->intr, on_signal, SIGINT);
	uv_signal_start(&sg->term, on_signal, SIGTERM);
	uv_signal_start(&sg->hup, on_signal, SIGHUP);
}

/* Every handle still open on the loop, for the line that says so. */
static void open_handle(uv_handle_t *h, void *ud)
{
	(void)ud;
	log_warnx("event loop: %s handle still open at exit%s",
		  uv_handle_type_name(uv_handle_get_type(h)),
		  uv_is_closing(h) ? " (closing)" : "");
}

/* Close the loop; a handle left open is a leak, and said so. */
static int loop_close(uv_loop_t *loop)
{
	int rc = uv_loop_close(loop);
	if (rc != 0) {
		log_warnx("event loop not closed: %s", uv_strerror(rc));
		uv_walk(loop, open_handle, NULL);
	}
	return rc;
}

/* Parse and check the configuration. 0: run it; 1: exit with *code. */
static int run_config(int argc, char **argv, struct gw_config *c, int *code)
{
	struct conf_cli cli;
	struct trust t;
	char err[512];
	const char *src;
	gw_config_defaults(c);
	*code = 2;
	if (conf_from_argv(argc, argv, gw_keys, c, &cli, err, sizeof(err))) {
		fprintf(stderr, "ota-gateway run: %s\n", err);
		return 1;
	}
	src = cli.config ? cli.config : "flags";
	if (cli.help) {
		usage();
		*code = 0;
		return 1;
	}
	if (cli.nargs) {
		fprintf(stderr, "ota-gateway run: unexpected argument '%s'\n",
			cli.args[0]);
		return 1;
	}
	if (gw_config_check(c, err, sizeof(err)) != 0 ||
	    trust_load(&t, c->publisher_key, c->root_keys, c->root_threshold,
		       c->keyset_file, false, util_wall_ms() / 1000, err,
		       sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway run: %s: %s\n", src, err);
		return 1;
	}
	trust_free(&t);
	if (cli.check) {
		int n = check_files(c, "ota-gateway run --check: ", true);
		if (n)
			fprintf(stderr, "%s: %d problem%s\n", src, n,
				n == 1 ? "" : "s");
		else
			printf("%s: configuration OK\n", src);
		*code = n ? 2 : 0;
		return 1;
	}
	/* A permanent misconfiguration stops here, with its cause, rather
	 * than as TLS handshakes retried forever. */
	return check_files(c, "ota-gateway run: cannot start: ", false) ? 1 : 0;
}

int gw__cmd_run(int argc, char **argv)
{
	static struct gw gw; /* large */
	struct gw_config cfg;
	struct run_signals sg = {.gw = &gw};
	char err[512];
	int code;
	if (run_config(argc, argv, &cfg, &code) != 0)
		return code;
	enum log_level lvl;
	log_level_parse(cfg.log_level, &lvl);
	log_set_level(lvl);
	/* The pool must have room beside the lanes (one copy, one check,
	 * one payload encoding): the ledger's commits run there too. */
	const char *tp = getenv("UV_THREADPOOL_SIZE");
	if (!tp || strtoul(tp, NULL, 10) < 5)
		setenv("UV_THREADPOOL_SIZE", "5", 1);
	mosquitto_lib_init();
	uv_loop_t *loop = uv_default_loop();
	int rc = 1;
	if (gw_init(&gw, loop, &cfg, err, sizeof(err)) != 0) {
		log_warnx("%s", err);
		uv_run(loop, UV_RUN_DEFAULT); /* what it opened, closed */
		goto out;
	}
	gw.ud = &sg;
	signals_start(loop, &sg);
	if (gw_start(&gw) != 0)
		log_warnx("mqtt: cannot start connecting (retrying)");
	uv_run(loop, UV_RUN_DEFAULT);
	if (gw_close(&gw) == GW_CLOSE_STUCK) {
		fflush(NULL);
		_exit(0);
	}
	rc = 0;
out:
	if (loop_close(loop) != 0)
		rc = 1;
	mosquitto_lib_cleanup();
	return rc;
}
