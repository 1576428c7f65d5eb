#!/bin/sh
# images.sh: the images deploy/docker-compose.yml starts from, made locally, for a host
# with podman but no image registry (only Debian's archive). Run as root from anywhere:
#
#   sh deploy/podman/images.sh            # prints OTA_BROKER_IMAGE=... on its last line
#
# 1. debian:12 and debian:12-slim (the FROM lines of deploy/Dockerfile):
#    `debootstrap --variant=minbase bookworm` from the mirror apt uses (the first URIs: /
#    deb line of /etc/apt/sources.list*, or $OTA_DEBIAN_MIRROR), with the same apt sources
#    as Debian's official image (bookworm, bookworm-updates, bookworm-security), imported
#    with `podman import`. One root filesystem serves as both tags.
# 2. ota-mosquitto:2, a stand-in for the official eclipse-mosquitto:2 built from Debian's
#    mosquitto and mosquitto-clients packages (deploy/podman/mosquitto.Containerfile):
#    start the stack with OTA_BROKER_IMAGE=ota-mosquitto:2.
#
# Cached: each image is also tagged with a hash of its recipe (this script, the mirror, the
# Containerfile), localhost/ota-debian:12-HASH and localhost/ota-mosquitto:2-HASH; an
# image whose tag exists is not made again, so a second run takes a second. Change a recipe
# and it is rebuilt. OTA_IMAGES_REBUILD=1 rebuilds anyway (e.g. for Debian's updates).
# Concurrent runs wait for each other (flock on /run/lock/ota-podman-images.lock).
# Variables: CONTAINERS_CONF (see containers.conf here), OTA_DEBIAN_MIRROR,
# OTA_DEBIAN_SECURITY (default: the host's security URI, or deb.debian.org).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SUITE=bookworm
say() { echo "images: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and podman import need it)"
for c in podman debootstrap sha256sum flock; do
    command -v "$c" >/dev/null || die "$c is not installed (sh deploy/deps.sh)"
done

# apt_uri security|main: the first URI of the host's apt sources for that archive.
apt_uri() {
    {
        # deb822 (*.sources): URIs: lines; one-line format: deb [opts] URI SUITE ...
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs: *//p' | tr ' ' '\n'
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) .*/\2/p'
    } | grep -E '^https?://' | if [ "$1" = security ]; then grep -- '-security'; else
        grep -v -- '-security'; fi | head -n 1
}
MIRROR=${OTA_DEBIAN_MIRROR:-$(apt_uri main)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${OTA_DEBIAN_SECURITY:-$(apt_uri security)}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

exists() { podman image exists "$1"; }

mkdir -p /run/lock
exec 9>/run/lock/ota-podman-images.lock
flock -w 1800 9 || die "another images.sh has held the lock for 30 minutes"

# --- debian:12, debian:12-slim ---------------------------------------------------------------
BASE_HASH=$( { cat "$0"; echo "$MIRROR $SECURITY $SUITE"; } | sha256sum | cut -c1-12)
BASE=localhost/ota-debian:12-$BASE_HASH
if [ "${OTA_IMAGES_REBUILD:-0}" = 1 ] || ! exists "$BASE"; then
    say "debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)"
    ROOTFS=$(mktemp -d /var/tmp/ota-rootfs.XXXXXX)
    trap 'rm -rf "$ROOTFS"' EXIT
    debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
        tail -n 20 "$ROOTFS.log" >&2
        rm -f "$ROOTFS.log"
        die "debootstrap failed (log above)"
    }
    rm -f "$ROOTFS.log"
    # The official image's sources, with this host's mirrors; no package lists or caches.
    rm -f "$ROOTFS/etc/apt/sources.list"
    cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # As in the official image (debuerreotype): apt keeps no caches, no translations.
    cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Apt::AutoRemove::SuggestsImportant "false";
EOF
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
        "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/log/*.log
    tar --numeric-owner -C "$ROOTFS" -c . |
        podman import --change 'CMD ["bash"]' - "$BASE" >/dev/null ||
        die "podman import failed"
    rm -rf "$ROOTFS"
    trap - EXIT
fi
# Re-tagged every run: another recipe's run may have moved the tags.
podman tag "$BASE" debian:12 debian:12-slim

# --- the Mosquitto stand-in --------------------------------------------------------------------
CF=$HERE/mosquitto.Containerfile
MQ_HASH=$( { echo "$BASE_HASH"; cat "$CF"; } | sha256sum | cut -c1-12)
MQ=localhost/ota-mosquitto:2-$MQ_HASH
if [ "${OTA_IMAGES_REBUILD:-0}" = 1 ] || ! exists "$MQ"; then
    say "building $MQ from $CF"
    # --network host: the build's apt-get reaches the mirror as the host does.
    podman build --network host --from "$BASE" -f "$CF" -t "$MQ" "$HERE" >&2 ||
        die "podman build of the Mosquitto stand-in failed"
fi
podman tag "$MQ" ota-mosquitto:2
say "debian:12, debian:12-slim = $BASE; ota-mosquitto:2 = $MQ"
echo "OTA_BROKER_IMAGE=$MQ"
