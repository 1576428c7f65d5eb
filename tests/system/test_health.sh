#!/usr/bin/env bash
# After the restart a health check decides: pass -> committed; fail or time out -> the
# previous slot is active again, rolled_back with the reason, and that release is refused.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002 dev-003)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
# The check sees the new version and its slot: it passes only if the payload is there.
device_start dev-001 1.0.0 --health-command 'test "$OTA_VERSION" = 1.1.0 && test -s "$OTA_SLOT_DIR/payload"'
device_start dev-002 1.0.0 --health-command 'echo unhealthy >&2; exit 3'
device_start dev-003 1.0.0 --health-command 'sleep 30' --health-timeout-s 1
check "devices online" wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"
make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota"
check "a passing health check commits" wait_until 30 "all_devices committed 1.1.0 dev-001"
check "a failing one rolls back to 1.0.0" wait_until 30 "all_devices rolled_back 1.0.0 dev-002"
check "with the reason" test "$(dev_field dev-002 error)" = "health check failed (exit 3)"
check "a hanging one is stopped after its timeout and rolls back" \
    wait_until 30 "all_devices rolled_back 1.0.0 dev-003"
check "with the reason" test "$(dev_field dev-003 error)" = "health check timed out after 1 s"
for d in dev-002 dev-003; do
    check "$d's active slot is the old one again" \
        test "$(readlink "$T/dev/$d/active")" = slot-a
done
check "dev-001 runs the new slot" test "$(readlink "$T/dev/dev-001/active")" = slot-b
# The rolled-back release is refused on the device itself, whatever the gateway does.
rel=$(jq -r .refused "$T/dev/dev-002/state.json")
offer=$(jq -nc --arg r "$rel" --rawfile m <(jq -j .manifest "$T/dev/dev-002/state.json") \
    --arg s "$(jq -r .sig "$T/dev/dev-002/state.json")" \
    '{release:$r, manifest:$m, sig:$s, fragment_size:4096, fragments:16, window:8}')
mq_pub_as injector ota/dev/dev-002/offer "$offer" -q 1
check "an offer of the rolled-back release is refused by the device" \
    wait_until 10 "grep -q 'offer of $rel ignored: it was rolled back here' '$T/dev-002.log'"
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
finish
