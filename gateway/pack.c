/* ota-gateway keygen | pack | verify: the publisher's tools. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/trust.h"
#include "common/util.h"
#include "gateway/gw.h"

struct pack_opts {
	char out[PATH_MAX];
	char key[PATH_MAX];
	char pubkey[PATH_MAX];
	char root_keys[PATH_MAX];
	char keyset[PATH_MAX];
	uint32_t root_threshold;
	char product[PROTO_ID_MAX + 1];
	char version[PROTO_VERSION_MAX + 1];
	char payload[PATH_MAX];
	bool json;
	bool downgrade;
	char replaces[PROTO_VERSION_MAX + 1];
	uint32_t security_version;
	char expires[64];
	uint32_t block_size;
	bool no_compress;
};

#define K(name, type, field, help)                                             \
	{                                                                      \
		name, type, offsetof(struct pack_opts, field),                 \
		    sizeof(((struct pack_opts *)0)->field), 0, 0, help         \
	}
#define KR(name, type, field, lo, hi, help)                                    \
	{                                                                      \
		name, type, offsetof(struct pack_opts, field),                 \
		    sizeof(((struct pack_opts *)0)->field), lo, hi, help       \
	}

static const struct conf_key keygen_keys[] = {
    K("out", CONF_STR, out, "file prefix: writes PREFIX.key and PREFIX.pub"),
    {0}};
static const struct conf_key pack_keys[] = {
    K("publisher_key", CONF_STR, key, "publisher private key (PEM, mode 0600)"),
    {"key", CONF_ALIAS, 0, 0, 0, 0, "publisher_key"},
    K("product", CONF_STR, product, "product name, e.g. sensor"),
    K("version", CONF_STR, version, "version MAJOR.MINOR.PATCH"),
    K("payload", CONF_STR, payload, "the file to ship"),
    K("out", CONF_STR, out, "package file to write"),
    K("downgrade", CONF_BOOL, downgrade,
      "sign an explicit downgrade: may replace a newer version"),
    K("replaces", CONF_STR, replaces,
      "with --downgrade: the newest version it replaces (required)"),
    KR("security_version", CONF_U32, security_version, 0,
       PROTO_SECURITY_VERSION_MAX,
       "anti-rollback counter: devices never go below it (default 0)"),
    K("expires", CONF_STR, expires,
      "nobody installs it after: +30d, +12h, 2027-06-30, unix seconds"),
    KR("block_size", CONF_U32, block_size, PROTO_BLOCK_SIZE_MIN,
       PROTO_BLOCK_SIZE_MAX,
       "bytes per authenticated block (power of two, default 4096)"),
    K("no_compress", CONF_BOOL, no_compress,
      "signed: send the payload as is, never zstd (already compressed)"),
    {0}};
static const struct conf_key verify_keys[] = {
    K("publisher_key", CONF_STR, pubkey, "publisher public key (PEM)"),
    {"pubkey", CONF_ALIAS, 0, 0, 0, 0, "publisher_key"},
    K("root_keys", CONF_STR, root_keys,
      "or: root public keys (comma-separated) that signed --keyset"),
    KR("root_threshold", CONF_U32, root_threshold, 1, PROTO_ROOT_KEYS_MAX,
       "root signatures the key set needs (default 1)"),
    K("keyset", CONF_STR, keyset, "key set file (with --root-keys)"),
    K("json", CONF_BOOL, json, "print the manifest as JSON only"),
    {0}};

static int parse(int argc, char **argv, const struct conf_key *keys,
		 struct pack_opts *o, struct conf_cli *cli, const char *usage,
		 const char *example)
{
	char err[512];
	memset(o, 0, sizeof(*o));
	if (conf_from_argv(argc, argv, keys, o, cli, err, sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway %s: %s\n", argv[0], err);
		return 2;
	}
	if (cli->help) {
		printf("usage: ota-gateway %s\n\noptions:\n", usage);
		conf_print_help(keys);
		printf("\nexample:\n%s", example);
		return 1;
	}
	return 0;
}

int gw__cmd_keygen(int argc, char **argv)
{
	struct pack_opts o;
	struct conf_cli cli;
	int rc =
	    parse(argc, argv, keygen_keys, &o, &cli, "keygen --out PREFIX",
		  "  ota-gateway keygen --out /etc/ota/publisher\n"
		  "      (writes publisher.key, mode 0600, and publisher.pub;\n"
		  "       keep the .key offline, give the .pub to the gateway\n"
		  "       and every device)\n");
	if (rc)
		return rc == 1 ? 0 : rc;
	if (!o.out[0] && cli.nargs == 1)
		snprintf(o.out, sizeof(o.out), "%s", cli.args[0]);
	if (!o.out[0]) {
		fprintf(stderr,
			"ota-gateway keygen: --out PREFIX is required\n");
		return 2;
	}
	char priv[PATH_MAX + 8], pub[PATH_MAX + 8], err[512];
	snprintf(priv, sizeof(priv), "%s.key", o.out);
	snprintf(pub, sizeof(pub), "%s.pub", o.out);
	if (util_keygen(priv, pub, err, sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway keygen: %s\n", err);
		return 1;
	}
	printf("wrote %s (private, mode 0600) and %s (public)\n", priv, pub);
	return 0;
}

static int copy_fd(int in, FILE *out)
{
	char buf[1 << 16];
	for (;;) {
		ssize_t r = read(in, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		if (fwrite(buf, 1, (size_t)r, out) != (size_t)r)
			return -1;
	}
}

/* --downgrade/--replaces, --security-version, --expires into m. */
static int pack_rollback(const struct pack_opts *o, struct proto_manifest *m)
{
	char err[256];
	int c;
	if (o->downgrade != (o->replaces[0] != '\0')) {
		fprintf(stderr, "ota-gateway pack: %s\n",
			o->downgrade ? "--downgrade needs --replaces VERSION "
				       "(the newest version it replaces)"
				     : "--replaces goes with --downgrade");
		return -1;
	}
	if (o->downgrade &&
	    (proto_version_cmp(o->replaces, o->version, &c) != 0 || c <= 0)) {
		fprintf(stderr,
			"ota-gateway pack: --replaces %s must be a "
			"version newer than --version %s\n",
			o->replaces, o->version);
		return -1;
	}
	m->downgrade = o->downgrade;
	snprintf(m->replaces, sizeof(m->replaces), "%s", o->replaces);
	m->security_version = o->security_version;
	m->no_compress = o->no_compress;
	if (o->expires[0] && gw__parse_when(o->expires, m->created, &m->expires,
					    err, sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway pack: --expires: %s\n", err);
		return -1;
	}
	if (o->expires[0] && m->expires <= m->created) {
		fprintf(stderr,
			"ota-gateway pack: --expires %s is not in the "
			"future\n",
			o->expires);
		return -1;
	}
	return 0;
}

/* The options pack requires, and their form: 0, or 2 with the reason on
 * stderr. */
static int pack_check_opts(const struct pack_opts *o)
{
	uint32_t parts[3];
	const char *missing = !o->key[0]       ? "--publisher-key"
			      : !o->product[0] ? "--product"
			      : !o->version[0] ? "--version"
			      : !o->payload[0] ? "--payload"
			      : !o->out[0]     ? "--out"
					       : NULL;
	if (missing) {
		fprintf(stderr, "ota-gateway pack: %s is required\n", missing);
		return 2;
	}
	if (!proto_id_valid(o->product)) {
		fprintf(stderr,
			"ota-gateway pack: product '%s' must be 1-63 "
			"characters of A-Z a-z 0-9 _ -\n",
			o->product);
		return 2;
	}
	if (proto_version_parse(o->version, parts) != 0) {
		fprintf(stderr,
			"ota-gateway pack: version '%s' is not "
			"MAJOR.MINOR.PATCH\n",
			o->version);
		return 2;
	}
	return 0;
}

/* m's digest, size and block table, from the payload open on fd: 0, or 1
 * or 2 (a bad --block-size) with the reason on stderr. The block table
 * lets a device check every block before writing it; the manifest signs
 * the table's digest. */
static int pack_payload(const struct pack_opts *o, int fd,
			struct proto_manifest *m)
{
	char err[512] = "";
	if (util_sha256_fd(fd, m->sha256, &m->size, err, sizeof(err)) != 0 ||
	    m->size == 0) {
		fprintf(stderr, "ota-gateway pack: %s: %s\n", o->payload,
			m->size == 0 && !err[0] ? "payload is empty" : err);
		return 1;
	}
	m->block_size = o->block_size ? o->block_size
				      : PROTO_BLOCK_SIZE_DEFAULT;
	if (m->block_size & (m->block_size - 1)) {
		fprintf(stderr,
			"ota-gateway pack: --block-size %u is not a "
			"power of two\n",
			m->block_size);
		return 2;
	}
	void *pm = mmap(NULL, (size_t)m->size, PROT_READ, MAP_SHARED, fd, 0);
	if (pm == MAP_FAILED) {
		fprintf(stderr, "ota-gateway pack: %s: mmap: %s\n", o->payload,
			strerror(errno));
		return 1;
	}
	int brc = proto_block_count(m) > PROTO_BLOCKS_MAX
		      ? PROTO_ERANGE
		      : proto_block_table(m, pm, NULL, m->blocks);
	munmap(pm, (size_t)m->size);
	if (brc != 0) {
		fprintf(stderr,
			"ota-gateway pack: block table: %s (use a "
			"larger --block-size)\n",
			proto_strerror(brc));
		return 1;
	}
	return 0;
}

/* The package: header, manifest mj, its signature and the payload (fd),
 * written to o->out through a synced temporary file. 0, or 1 with the
 * reason on stderr. */
static int pack_write(const struct pack_opts *o, int fd, const char *mj,
		      size_t mlen, const uint8_t sig[PROTO_SIG_LEN])
{
	char tmp[PATH_MAX + 8];
	uint8_t hdr[PROTO_PKG_HDR_LEN];
	if (proto_pkg_header_encode(hdr, (uint32_t)mlen) != 0) {
		fprintf(stderr, "ota-gateway pack: signing failed\n");
		return 1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", o->out);
	FILE *out = fopen(tmp, "wb");
	if (!out) {
		fprintf(stderr, "ota-gateway pack: %s: %s\n", tmp,
			strerror(errno));
		return 1;
	}
	if (lseek(fd, 0, SEEK_SET) != 0 ||
	    fwrite(hdr, 1, sizeof(hdr), out) != sizeof(hdr) ||
	    fwrite(mj, 1, mlen, out) != mlen ||
	    fwrite(sig, 1, PROTO_SIG_LEN, out) != PROTO_SIG_LEN ||
	    copy_fd(fd, out) != 0 || fflush(out) != 0 ||
	    fsync(fileno(out)) != 0) {
		fprintf(stderr, "ota-gateway pack: writing %s: %s\n", tmp,
			strerror(errno));
		fclose(out);
		unlink(tmp);
		return 1;
	}
	fclose(out);
	if (rename(tmp, o->out) != 0) {
		fprintf(stderr, "ota-gateway pack: rename to %s: %s\n", o->out,
			strerror(errno));
		unlink(tmp);
		return 1;
	}
	return 0;
}

int gw__cmd_pack(int argc, char **argv)
{
	struct pack_opts o;
	struct conf_cli cli;
	char err[512] = "";
	int rc = parse(argc, argv, pack_keys, &o, &cli,
		       "pack --publisher-key KEY --product P --version V\n"
		       "                        --payload FILE --out PKG",
		       "  ota-gateway pack --publisher-key publisher.key "
		       "--product sensor \\\n"
		       "      --version 1.1.0 --payload firmware.bin "
		       "--out sensor-1.1.0.ota\n"
		       "  ota-gateway pack --publisher-key publisher.key "
		       "--product sensor \\\n"
		       "      --version 1.0.0 --payload firmware-1.0.0.bin "
		       "--downgrade \\\n"
		       "      --replaces 1.1.0 --expires +30d "
		       "--out sensor-back-to-1.0.0.ota\n");
	if (rc)
		return rc == 1 ? 0 : rc;
	if (pack_check_opts(&o) != 0)
		return 2;
	struct proto_manifest m = {.format = 1};
	uint8_t priv[PROTO_PRIVKEY_LEN];
	if (util_load_privkey(o.key, priv, err, sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway pack: %s\n", err);
		return 1;
	}
	snprintf(m.product, sizeof(m.product), "%s", o.product);
	snprintf(m.version, sizeof(m.version), "%s", o.version);
	m.created = (int64_t)time(NULL);
	int fd = -1;
	if (pack_rollback(&o, &m) != 0) {
		OPENSSL_cleanse(priv, sizeof(priv));
		return 2;
	}
	if ((fd = open(o.payload, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "ota-gateway pack: %s: %s\n", o.payload,
			strerror(errno));
		OPENSSL_cleanse(priv, sizeof(priv));
		return 1;
	}
	char *mj = NULL;
	size_t mlen = 0;
	uint8_t sig[PROTO_SIG_LEN];
	rc = pack_payload(&o, fd, &m);
	if (rc == 0 && (proto_manifest_encode(&m, &mj, &mlen) != 0 ||
			proto_sign(priv, mj, mlen, sig) != 0)) {
		fprintf(stderr, "ota-gateway pack: signing failed\n");
		rc = 1;
	}
	if (rc == 0)
		rc = pack_write(&o, fd, mj, mlen, sig);
	if (rc == 0) {
		char hex[65];
		proto_hex_encode(m.sha256, 32, hex);
		printf("wrote %s\n  product=%s version=%s size=%llu\n"
		       "  sha256=%s\n  blocks=%llu x %u bytes\n",
		       o.out, m.product, m.version, (unsigned long long)m.size,
		       hex, (unsigned long long)proto_block_count(&m),
		       m.block_size);
	}
	free(mj);
	close(fd);
	OPENSSL_cleanse(priv, sizeof(priv));
	return rc;
}

/* What verify prints of a package that passed: its manifest as JSON, or
 * its fields for a person. */
static void verify_print(const char *path, const struct proto_manifest *m,
			 bool json)
{
	char hex[65];
	proto_hex_encode(m->sha256, 32, hex);
	if (json) {
		char *mj = NULL;
		size_t mlen;
		if (proto_manifest_encode(m, &mj, &mlen) == 0)
			printf("%s\n", mj);
		free(mj);
		return;
	}
	printf("%s: OK (signature and digest verified)\n"
	       "  product  %s\n  version  %s%s%s%s\n  size     %llu\n"
	       "  sha256   %s\n  created  %lld\n",
	       path, m->product, m->version,
	       m->downgrade ? " (signed downgrade, replaces " : "", m->replaces,
	       m->downgrade ? ")" : "", (unsigned long long)m->size, hex,
	       (long long)m->created);
	if (m->security_version)
		printf("  security_version %u\n", m->security_version);
	if (m->no_compress)
		printf("  compress false (sent as is, never zstd)\n");
	if (m->expires)
		printf("  expires  %lld%s\n", (long long)m->expires,
		       (int64_t)time(NULL) >= m->expires ? " (EXPIRED)" : "");
	if (m->block_size)
		printf("  blocks   %llu x %u bytes (table verified)\n",
		       (unsigned long long)proto_block_count(m), m->block_size);
	else
		printf("  blocks   none (devices refuse it: re-pack it)\n");
}

int gw__cmd_verify(int argc, char **argv)
{
	struct pack_opts o;
	struct conf_cli cli;
	char err[512];
	int rc =
	    parse(argc, argv, verify_keys, &o, &cli,
		  "verify --publisher-key PUB [--json] PACKAGE",
		  "  ota-gateway verify --publisher-key publisher.pub "
		  "sensor-1.1.0.ota\n"
		  "  ota-gateway verify --publisher-key publisher.pub --json "
		  "sensor-1.1.0.ota |\n      jq .version\n");
	if (rc)
		return rc == 1 ? 0 : rc;
	if ((!o.pubkey[0] && !o.root_keys[0]) || cli.nargs != 1) {
		fprintf(stderr,
			"usage: ota-gateway verify --publisher-key PUB "
			"PACKAGE\n       ota-gateway verify --root-keys "
			"ROOT.pub --keyset KEYSET PACKAGE\n");
		return 2;
	}
	const char *path = cli.args[0];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "ota-gateway verify: %s: %s\n", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	size_t len = (size_t)st.st_size;
	void *map = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (len && map == MAP_FAILED) {
		fprintf(stderr, "ota-gateway verify: mmap %s: %s\n", path,
			strerror(errno));
		return 1;
	}
	struct trust tr;
	if (trust_load(&tr, o.pubkey, o.root_keys,
		       o.root_threshold ? o.root_threshold : 1, o.keyset, false,
		       (int64_t)time(NULL), err, sizeof(err)) != 0) {
		fprintf(stderr, "ota-gateway verify: %s\n", err);
		if (map)
			munmap(map, len);
		return 1;
	}
	struct proto_manifest m;
	struct proto_pkg_layout lay;
	struct proto_err perr = {{0}};
	struct proto_trust pt = trust_proto(&tr);
	uint8_t *table = NULL;
	rc = proto_pkg_check_trust(map, len, &pt, &m, &lay, &table, &perr);
	free(table);
	trust_free(&tr);
	if (map)
		munmap(map, len);
	if (rc != 0) {
		fprintf(stderr, "ota-gateway verify: %s: REFUSED: %s\n", path,
			perr.text[0] ? perr.text : proto_strerror(rc));
		return 1;
	}
	verify_print(path, &m, o.json);
	return 0;
}
