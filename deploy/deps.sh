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
       liblmdb-dev libcurl4-openssl-dev libcmocka-dev"
RUN="mosquitto mosquitto-clients openssl jq lmdb-utils procps iproute2 coreutils docker-compose"
BENCH=
[ "${1:-}" = bench ] && BENCH="gnuplot-nox linux-perf"
[ "${1:-}" = fuzz ] && BENCH="clang libclang-rt-14-dev"

missing=
for p in $BUILD $RUN $BENCH; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing="$missing $p"
done
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
