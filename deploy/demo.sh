#!/usr/bin/env bash
# make demo: a real broker (mutual TLS), the gateway and 5 devices on loopback; one signed
# release published with mosquitto_pub; live progress; a per-device table with stage timings.
# Exits 0 only if every device committed the new version. Everything it starts, it stops.
#   usage: deploy/demo.sh [BUILD_DIR]     env: DEVICES=5 SIZE=1048576 KEEP=1 (keep files)
set -u
OTA_ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$OTA_ROOT/build}" && pwd)
export OTA_ROOT BUILD
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"
N=${DEVICES:-5}
SIZE=${SIZE:-1048576}
ids=()
for ((i = 1; i <= N; i++)); do ids+=("$(printf 'dev-%03d' "$i")"); done

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
[ -t 1 ] || say() { printf '==> %s\n' "$*"; }
die() {
    echo "demo: $*" >&2
    echo "demo: logs are in $T (kept)" >&2
    KEEP=1
    exit 1
}

say "certificates: CA, broker, gateway, operator, $N devices, publisher key"
certs_make --devices "$N" >/dev/null || die "making certificates failed"
say "broker: mosquitto, TLS 1.2+, client certificates required, per-device ACL"
broker_start || die "the broker did not start"
echo "    listening on 127.0.0.1:$BROKER_PORT"
say "gateway: ota-gateway run (ledger in $T/gw-db)"
gateway_start || die "the gateway did not start (see $T/gateway.log)"
say "devices: ${ids[*]} at version 1.0.0"
for id in "${ids[@]}"; do device_start "$id" 1.0.0 || die "device $id did not start"; done
wait_until 15 "all_devices idle 1.0.0 ${ids[*]}" || die "devices did not come online"

say "release: sign a $((SIZE / 1024)) KiB payload as sensor 1.1.0"
make_payload "$T/firmware.bin" "$SIZE"
"$GW" pack --key "$CERTS/publisher.key" --product sensor --version 1.1.0 \
    --payload "$T/firmware.bin" --out "$T/sensor-1.1.0.ota" | sed 's/^/    /'
say "publish it, as an operator would:"
echo "    mosquitto_pub -h 127.0.0.1 -p $BROKER_PORT --cafile ca.crt --cert operator.crt \\"
echo "      --key operator.key -q 1 -t ota/release/sensor \\"
echo "      -m '{\"url\":\"file://$T/sensor-1.1.0.ota\"}'"
start=$(date +%s.%N)
announce sensor "file://$T/sensor-1.1.0.ota" || die "mosquitto_pub failed"

# Live progress, from the gateway's own ledger (a second reader of its LMDB).
bar() {
    local pct=$1 w=20 fill
    fill=$((pct * w / 100))
    printf '%s%s' "$(printf '%*s' "$fill" '' | tr ' ' '#')" "$(printf '%*s' $((w - fill)) '' | tr ' ' '.')"
}
lines=0
deadline=$((SECONDS + 90))
while :; do
    json=$(gw_status_json) || json='{"devices":[]}'
    rows=$(jq -r '.devices[] | "\(.device) \(.state) \(.version) \(if .fragments > 0 then (.acked * 100 / .fragments | floor) else 0 end)"' <<<"$json")
    done_n=$(jq '[.devices[] | select(.state == "committed" and .version == "1.1.0")] | length' <<<"$json")
    if [ -t 1 ]; then
        [ "$lines" -gt 0 ] && printf '\033[%dA' "$lines"
        lines=0
        while read -r id st ver pct; do
            [ -n "$id" ] || continue
            printf '    %-8s %-12s %-6s [%s] %3d%%\033[K\n' "$id" "$st" "$ver" "$(bar "$pct")" "$pct"
            lines=$((lines + 1))
        done <<<"$rows"
    else
        printf '    %5.1fs: %s/%s committed\n' "$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')" "$done_n" "$N"
    fi
    [ "$done_n" = "$N" ] && break
    [ "$SECONDS" -ge "$deadline" ] && break
    sleep 0.3
done
elapsed=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')

say "result (ota-gateway status --db ...):"
"$GW" status --db "$T/gw-db" | sed -n '/^DEVICES/,$p'
same=0
for id in "${ids[@]}"; do cmp -s "$T/firmware.bin" "$T/dev/$id/active/payload" && same=$((same + 1)); done
say "stopping broker, gateway and devices"
stop_all_clean gateway "${ids[@]}" >/dev/null || true
broker_stop
if [ "$done_n" = "$N" ] && [ "$same" = "$N" ]; then
    printf 'VERDICT: PASS - %d/%d devices committed 1.1.0 in %.1f s, payload identical on all\n' \
        "$N" "$N" "$elapsed"
    exit 0
fi
printf 'VERDICT: FAIL - %d/%d committed, %d/%d payloads identical (logs kept in %s)\n' \
    "$done_n" "$N" "$same" "$N" "$T"
KEEP=1
exit 1
