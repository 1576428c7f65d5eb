#!/usr/bin/env bash
# Flow control: a fleet-wide cap on bytes in flight is respected and never stalls a
# transfer; windows and fragment sizes from the announcement are used.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002 dev-003 dev-004)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts with a 64 KiB fleet-wide cap" gateway_start --max-inflight-kb 64
for d in "${ids[@]}"; do device_start "$d" 1.0.0; done
check "devices online" wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"
make_payload "$T/fw.bin" 1048576
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
# Each window alone (64 x 4 KiB) is four times the fleet's cap.
announce sensor "file://$T/p.ota" ',"fragment_size":4096,"window":64'
check "every device completes under the cap" wait_until 60 "all_devices committed 1.1.0 ${ids[*]}"
for d in "${ids[@]}"; do
    check "$d: exact payload" cmp -s "$T/fw.bin" "$T/dev/$d/active/payload"
done
# 256 payload fragments after the 2 that carry the block table (256 blocks x 32 bytes).
check "the release used the announced window and fragment size" \
    test "$(gw_status_json | jq -r '.releases[0] | "\(.window) \(.fragment_size) \(.fragments) \(.table_fragments)"')" = "64 4096 258 2"
stop_all_clean gateway "${ids[@]}" >/dev/null
peak=$(sed -n 's/.*inflight_peak=\([0-9]*\).*/\1/p' "$T/gateway.log")
echo "# peak bytes in flight: $peak (cap 65536 + one fragment per device)"
check "bytes in flight never passed the cap (+1 fragment per device)" \
    test "${peak:-999999999}" -le $((65536 + 4 * 4096))
check "nothing was resent" test "$(gw_status_json | jq '[.devices[].frags_resent] | add')" = 0
finish
