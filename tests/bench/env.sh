# shellcheck shell=bash
# Sourced by each benchmark script: the repo root, the build directory (the script's first
# argument, default build/), and the system-test harness (temp dir, broker, programs).
set -u
OTA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-$OTA_ROOT/build}" && pwd)
export OTA_ROOT BUILD
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"
