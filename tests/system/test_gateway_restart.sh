#!/usr/bin/env bash
# The gateway is SIGKILLed mid-campaign and started again: every transfer continues from
# what its device holds (none starts again from zero) and the ledger ends complete.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002 dev-003)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
for d in "${ids[@]}"; do device_start "$d" 1.0.0 --checkpoint-every 8; done
check "devices report idle" wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"

make_payload "$T/fw.bin" 1048576
pack sensor 1.5.0 "$T/fw.bin" "$T/pkg.ota"
announce sensor "file://$T/pkg.ota" ',"fragment_size":512,"window":2'
acked_all() {
    [ "$(gw_status_json | jq "[.devices[] | select(.acked >= $1)] | length")" = 3 ]
}
check "all three transfers are under way" wait_until 60 'acked_all 200'
kill -9 "$(pid_of gateway)"
stop gateway >/dev/null 2>&1
check "the ledger the SIGKILL left is consistent (fsck)" gw_fsck
mv "$T/gateway.log" "$T/gateway-1.log"
check "the gateway starts again on the same ledger" gateway_start
# 1 MiB in 512-byte fragments: 16 carry the block table (256 x 32 bytes), 2048 the payload.
for d in "${ids[@]}"; do
    check "$d's transfer continues from what it holds, not from 0" \
        wait_until 20 "grep -Eq 'device=$d release=[0-9a-f]+ accepted, sending from fragment [1-9][0-9]* of 2064' '$T/gateway.log'"
done
check "all devices end committed on 1.5.0" wait_until 120 "all_devices committed 1.5.0 ${ids[*]}"
for d in "${ids[@]}"; do
    check "$d's payload is exact" cmp -s "$T/fw.bin" "$T/dev/$d/active/payload"
done
check "every device record is complete (acked all, transferred, timings)" \
    test "$(gw_status_json | jq '[.devices[] | select(.acked == 2064 and .transferred_ms > 0
        and .finished_ms > 0 and .timings.total_ms > 0)] | length')" = 3
check "one release in the ledger, offered once per device" \
    test "$(gw_status_json | jq '"\(.releases | length) \([.events[] | select(.event == "offered")] | length)"')" = '"1 3"'
check "mdb_stat reads the ledger" mdb_stat -a "$T/gw-db"
check "the ledger is consistent (fsck)" gw_fsck
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
finish
