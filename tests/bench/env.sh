# shellcheck shell=bash
# Sourced by each benchmark script: the repo root, the build directory (the script's first
# argument, default build/), the system-test harness (temp dir, broker, programs) and the
# helpers below. Benchmarks fail loudly: bench_die says what went wrong and exits 1, so
# run.sh never writes a half-empty table.
set -u
OTA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-$OTA_ROOT/build}" && pwd)
export OTA_ROOT BUILD
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

# Benchmarks measure the image sent whole unless they ask for deltas (BENCH_DELTA=1, as
# tests/bench/delta.sh does): their payloads come from one fixed seed, so every version
# after the first would otherwise go as a delta of a few bytes.
announce() {
    local extra=${3:-}
    [ "${BENCH_DELTA:-0}" = 1 ] || extra="$extra,\"delta\":false"
    mq_pub_as operator "ota/release/$1" "{\"url\":\"$2\"$extra}" -q 1
}
TOOLS=$BUILD/tools
BENCH_NAME=$(basename "$0" .sh)

# bench_die MESSAGE: the reason on stderr (with the tail of the logs), exit 1.
bench_die() {
    local f
    echo "bench $BENCH_NAME: FAILED: $*" >&2
    for f in "$T"/*.log; do
        [ -f "$f" ] || continue
        echo "--- ${f##*/} (last 8 lines)" >&2
        tail -n 8 "$f" >&2
    done
    exit 1
}

# bench_need_tool NAME: build/<variant>/tools/NAME exists.
bench_need_tool() {
    [ -x "$TOOLS/$1" ] || bench_die "$TOOLS/$1 is missing (make bench builds it)"
}

# cpu_ticks PID: user + system CPU of PID in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the command name, which may hold spaces).
cpu_ticks() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return 1; }
    s=${s##*) }
    # shellcheck disable=SC2086  # split the fields
    set -- $s
    echo $((${12} + ${13}))
}
CLK_TCK=$(getconf CLK_TCK)

# ticks_s TICKS: seconds with one decimal.
ticks_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz }'; }

# hwm_kib PID: peak resident set (VmHWM); hwm_reset PID starts a new peak (clear_refs 5,
# our own processes only).
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
hwm_reset() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }

# mib KIB: "12.3 MiB".
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

# ms_s MS: "4.2 ms", "420 ms", "1.23 s", "12.3 s".
ms_s() {
    awk -v m="$1" 'BEGIN { s = m / 1000
        if (m < 10) printf "%.1f ms", m; else if (m < 1000) printf "%.0f ms", m
        else if (s < 10) printf "%.2f s", s; else printf "%.1f s", s }'
}

# gw_json: the ledger as JSON, without the event log (fast enough to poll a big fleet).
gw_json() {
    "$GW" status --db "$T/gw-db" --json 2>/dev/null
}

# count_at STATE VERSION: devices the ledger has at STATE and VERSION.
count_at() {
    gw_json | jq --arg s "$1" --arg v "$2" \
        '[.devices[] | select(.state == $s and .version == $v)] | length'
}

# log_count STATE VERSION: devices the gateway's log saw reach STATE at VERSION. Cheap to
# poll while a big fleet runs (a status --json of 1000 devices costs a good share of a
# core every 0.1 s); the ledger stays the authority for every figure.
log_count() {
    grep -a -o "device=[^ ]* state=$1 version=$2\$" "$T/gateway.log" 2>/dev/null | sort -u | wc -l
}

# wait_fleet SECS STATE VERSION N: the gateway's log shows N devices at STATE and VERSION,
# then its ledger does too (0), or not within SECS (1).
wait_fleet() {
    wait_until "$1" "[ \"\$(log_count $2 $3)\" -ge $4 ]" &&
        wait_until 10 "[ \"\$(count_at $2 $3)\" = $4 ]"
}

# states: "committed=998 downloading=2" from the ledger (for failure messages).
states() {
    gw_json | jq -r '[.devices[] | "\(.state)@\(.version)"] | group_by(.) |
        map("\(.[0])=\(length)") | join(" ")'
}

# bench_tmpfs: sets SHM to a fresh directory on /dev/shm for simulated devices' state,
# removed on exit with the test's other files (1000 simulated devices share one disk and
# one event loop here, where a real fleet has a flash chip each). Not in a subshell.
SHM=
bench_tmpfs() {
    [ -n "$SHM" ] && return 0
    SHM=$(mktemp -d /dev/shm/ota-bench.XXXXXX) || bench_die "cannot create a directory in /dev/shm"
}
_bench_cleanup() {
    [ -n "$SHM" ] && rm -rf "$SHM"
    cleanup
}
trap _bench_cleanup EXIT

# bench_max N...: the largest N.
bench_max() {
    local n max=0
    for n in "$@"; do [ "$n" -gt "$max" ] && max=$n; done
    echo "$max"
}

# fleet_up N: N simulated devices on 1.0.0 (product sensor), certificates from
# make-certs --devices, in as few ota-device --fleet processes fleet0, fleet1... as hold at
# most FLEET_MAX_PER_PROC (default 2500: each device holds ~4 file descriptors, the hard
# limit here is 20000), their state on $SHM (bench_tmpfs first); then until the ledger
# shows them all idle. Sets procs (the number of processes). Not in a subshell.
procs=0
fleet_up() {
    local n=$1 per=${FLEET_MAX_PER_PROC:-2500} p first count t=$SECONDS
    procs=$(((n + per - 1) / per))
    for ((p = 0; p < procs; p++)); do
        first=$((p * n / procs + 1))
        count=$(((p + 1) * n / procs - p * n / procs))
        spawn "fleet$p" "$DEV" --fleet "$count" --fleet-first "$first" \
            --fleet-cert-dir "$CERTS/devices" --product sensor --version 1.0.0 \
            --broker-host localhost --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt" \
            --publisher-key "$CERTS/publisher.pub" --state-dir "$SHM/fleet$p"
    done
    wait_fleet $((60 + n / 20)) idle 1.0.0 "$n" ||
        bench_die "$n devices not idle after $((60 + n / 20)) s: $(states)"
    echo "$BENCH_NAME: $n devices idle in $((SECONDS - t)) s" >&2
}

# fleet_field PROCS FIELD: FIELD summed (or, for *_max, the largest) over the latest
# summary line (one every 5 s) of each of the PROCS fleet processes.
fleet_field() {
    local p sum=0 c
    for ((p = 0; p < $1; p++)); do
        c=$(grep -a ' ota-device fleet summary ' "$T/fleet$p.log" 2>/dev/null | tail -n 1 |
            grep -o " $2=[0-9]*" | cut -d= -f2)
        case $2 in
        *_max) [ "${c:-0}" -gt "$sum" ] && sum=${c:-0} ;;
        *) sum=$((sum + ${c:-0})) ;;
        esac
    done
    echo "$sum"
}
