#!/usr/bin/env bash
# The gateway's event loop while it verifies a 256 MiB package: worst stall of its 20 ms
# tick, with and without the big verify running beside a live transfer, in one run.
#   usage: tests/bench/loop_stall.sh [BUILD_DIR]   (prints a Markdown table row per case)
. "$(dirname "$0")/env.sh"
BIG_MB=${BIG_MB:-256}

certs_make dev-001 dev-002 >/dev/null || bench_die "make-certs failed"
broker_start >/dev/null || bench_die "the broker did not start"
make_payload "$T/fw.bin" 4194304
make_payload "$T/big.bin" $((BIG_MB << 20))
"$GW" pack --key "$CERTS/publisher.key" --product big --version 1.0.0 \
    --payload "$T/big.bin" --out "$T/big.ota" >/dev/null

run_case() { # NAME WITH_BIG VERSION
    rm -rf "$T/gw-db" "$T/gw-store" "$T/dev"
    gateway_start >/dev/null || bench_die "the gateway did not start"
    device_start dev-001 1.0.0
    device_start dev-002 1.0.0
    wait_until 10 'all_devices idle 1.0.0 dev-001 dev-002' || bench_die "devices not idle"
    pack sensor "$3" "$T/fw.bin" "$T/p.ota"
    announce sensor "file://$T/p.ota" ',"fragment_size":1024,"window":4'
    wait_until 10 '[ "$(dev_field dev-001 acked)" -gt 100 ] 2>/dev/null'
    local t0=$SECONDS
    if [ "$2" = 1 ]; then
        announce big "file://$T/big.ota"
        wait_until 120 "grep -q 'release=.* product=big .*verified and stored' '$T/gateway.log'" ||
            bench_die "the ${BIG_MB} MiB package was not verified in 120 s"
    fi
    wait_until 120 'all_devices committed '"$3"' dev-001 dev-002' ||
        bench_die "$1: devices not committed $3 in 120 s"
    local acks
    acks=$(gw_status_json | jq '[.devices[].acked] | add')
    stop gateway >/dev/null; stop dev-001 >/dev/null; stop dev-002 >/dev/null
    local stall
    stall=$(sed -n 's/.*loop_stall_max_ms=\([0-9]*\).*/\1/p' "$T/gateway.log")
    local verify=""
    [ "$2" = 1 ] && verify=$(grep -c "product=big .*verified and stored" "$T/gateway.log")
    [ -n "$stall" ] && [ -n "$acks" ] || bench_die "$1: no loop_stall_max_ms in the gateway's log"
    printf '| %s | %s | %s ms | %s |\n' "$1" "$acks" "$stall" "${verify:+verified}"
    mv "$T/gateway.log" "$T/gateway-$1.log"
}
echo "| case | fragments acknowledged | worst loop stall | ${BIG_MB} MiB package |"
echo "| --- | --- | --- | --- |"
run_case "transfer alone" 0 1.1.0
run_case "transfer + ${BIG_MB} MiB fetch and verify" 1 1.1.0
