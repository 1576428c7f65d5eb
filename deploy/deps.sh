#!/bin/sh
# deps.sh: make sure the Debian 12 packages this project needs are installed.
# Quiet when nothing is missing. As root it installs what is missing; otherwise it prints
# the command to run and exits 1. Run by `make deps` (and so by `make test`).
#
# `sh deploy/deps.sh bench` also makes sure of what only `make bench` needs (gnuplot for
# the plots in docs/, perf for the profile). `sh deploy/deps.sh fuzz`: what only
# `make fuzz` / `make fuzz-long` need (clang and its libFuzzer runtime).
#
# Installing mosquitto may try to start the system broker on port 1883; that is harmless:
# the tests start their own broker on random free ports (TLS only) and never use 1883.
set -eu

BUILD="gcc make pkg-config libmosquitto-dev libssl-dev libuv1-dev libjansson-dev
       liblmdb-dev libcurl4-openssl-dev libcmocka-dev libwebsockets-dev libzstd-dev"
# libwebsockets-evlib-uv: lws 4.1 loads its libuv support from this plugin at run time.
# python3-prometheus-client: test_http parses /metrics with Prometheus' own parser.
# rabbitmq-server: tests/system/test_rabbitmq.sh runs the system on a 3-node RabbitMQ
# cluster (3.10, with its MQTT plugin); like mosquitto, the package's own service is never
# used (the tests start their nodes on loopback with deploy/rabbitmq's configuration).
# clang-format (14): `make check-format`, which `make test` runs first.
# python3-paho-mqtt, python3-cryptography: tests/peer/peer_device.py, the second device
# written from proto/PROTOCOL.md alone (test_peer.sh).
RUN="mosquitto mosquitto-clients openssl jq lmdb-utils procps iproute2 coreutils docker-compose
     libwebsockets-evlib-uv curl python3 python3-prometheus-client rabbitmq-server clang-format
     python3-paho-mqtt python3-cryptography"
# tests/system/test_compose.sh starts deploy/docker-compose.yml with podman (no Docker
# engine here): podman-compose, runc (crun refuses hybrid cgroups), netavark + aardvark-dns
# (the compose network and its service names), iptables (published ports), debootstrap
# (the debian:12 base images, from the apt mirror).
COMPOSE="podman podman-compose runc netavark aardvark-dns iptables debootstrap"
# The dashboard's browser test (tests/system/test_dashboard.sh) drives Debian's Chromium.
# Where it cannot be installed that test is skipped with the reason, so a failure to
# install it is reported but not fatal.
BROWSER="chromium"
BENCH=
# bsdiff and xdelta3: the delta benchmark (tests/bench/delta.sh) compares ours with them.
[ "${1:-}" = bench ] && BENCH="gnuplot-nox linux-perf bsdiff xdelta3"
[ "${1:-}" = fuzz ] && BENCH="clang libclang-rt-14-dev"

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}
missing=
for p in $BUILD $RUN $COMPOSE $BENCH; do
    installed "$p" || missing="$missing $p"
done
browser_missing=
for p in $BROWSER; do
    installed "$p" || browser_missing="$browser_missing $p"
done
if [ -n "$browser_missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        # shellcheck disable=SC2086  # word splitting of the list is wanted
        { apt-get update -q && apt-get install -y -q --no-install-recommends $browser_missing; } ||
            echo "deps:$browser_missing could not be installed: the browser test will be skipped" >&2
    else
        echo "deps: for the browser test: sudo apt-get install -y$browser_missing" >&2
    fi
fi
[ -z "$missing" ] && exit 0

echo "deps: missing Debian packages:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086  # word splitting of the list is wanted
    apt-get install -y -q --no-install-recommends $missing
    # The package's own broker (if it started) listens on 1883 without TLS: not ours.
    exit 0
fi
echo "deps: install them with:" >&2
echo "  sudo apt-get install -y --no-install-recommends$missing" >&2
exit 1
