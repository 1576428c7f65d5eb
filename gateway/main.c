/* ota-gateway: sign packages, run the gateway, show its ledger. */
#include <mosquitto.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/version.h"
#include "gateway/gw.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *what;
} commands[] = {
    {"run", gw__cmd_run, "run the gateway (MQTT, fetch, verify, stream)"},
    {"status", gw__cmd_status, "print devices and releases from the ledger"},
    {"fsck", gw__cmd_fsck, "check the ledger's records and references"},
    {"announce", gw__cmd_announce,
     "announce a release and print the gateway's verdict"},
    {"ctl", gw__cmd_ctl, "pause, resume, abort or retry a rollout"},
    {"keygen", gw__cmd_keygen, "make an Ed25519 key pair (publisher, root)"},
    {"keyset", gw__cmd_keyset, "sign the set of trusted publisher keys"},
    {"pack", gw__cmd_pack, "sign a payload into a package file"},
    {"verify", gw__cmd_verify, "check a package and print its manifest"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ota-gateway COMMAND [options]   (COMMAND --help "
		   "for its options)\n       ota-gateway --version\n\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].what);
	fprintf(f,
		"\nexamples:\n"
		"  ota-gateway keygen --out publisher\n"
		"  ota-gateway pack --publisher-key publisher.key "
		"--product sensor \\\n"
		"      --version 1.1.0 --payload firmware.bin "
		"--out sensor-1.1.0.ota\n"
		"  ota-gateway verify --publisher-key publisher.pub "
		"sensor-1.1.0.ota\n"
		"  ota-gateway run -c gateway.conf\n"
		"  ota-gateway status --db /var/lib/ota-gateway/db --wide\n"
		"  ota-gateway fsck --db /var/lib/ota-gateway/db\n"
		"  ota-gateway ctl pause --product sensor --ca-file ca.crt "
		"\\\n      --cert-file operator.crt --key-file operator.key\n");
}

int main(int argc, char **argv)
{
	log_init("ota-gateway", LOG_LVL_INFO);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("ota-gateway %s\n", OTA_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "ota-gateway: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
