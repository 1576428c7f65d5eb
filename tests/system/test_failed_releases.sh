#!/usr/bin/env bash
# The gateway remembers every release a device failed, not only the last one:
# - dev-001 fails (its size limit) release A (1.1.0), then fails B (1.2.0) while A's
#   campaign is still rolling (dev-003, also a target, is offline): A is not offered to it
#   again, nor B, across a device reconnect
#   and a gateway restart (the ledger keeps both); before the fix the gateway offered A and
#   B to it in turn, thousands of times;
# - dev-002 rolls back (its restart fails) from A, then from B: it is not offered A again
#   either (the device itself remembers only the last release it rolled back from);
# - the HTTP API shows them (failed_releases, and failed_release: the latest);
# - `ctl retry` of A forgets only A, and only for dev-001 (dev-002 refuses a release it
#   rolled back from, by design): dev-001 commits A; B is still not offered to it until a
#   retry of B.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001 dev-002 dev-003
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
# dev-003: known to the gateway, then offline, so A's campaign stays open.
device_start dev-003 1.0.0
check "dev-003 seen" wait_until 20 "all_devices idle 1.0.0 dev-003"
stop dev-003
check "and gone offline" wait_until 20 "all_devices offline 1.0.0 dev-003"
device_start dev-001 1.0.0 --max-package-mb 1
device_start dev-002 1.0.0 --restart-command false
check "two devices online" wait_until 20 "all_devices idle 1.0.0 dev-001 dev-002"
CONN=(--broker-host localhost --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt"
    --cert-file "$CERTS/operator.crt" --key-file "$CERTS/operator.key" --timeout-s 20)
rel_of() { gw_status_json | jq -r --arg v "$1" '.releases[] | select(.version == $v) | .release'; }
camp() { gw_status_json | jq -r --arg v "$1" ".releases[] | select(.version == \$v) | .campaign.$2"; }
# offers DEVICE RELEASE: how many times the gateway offered RELEASE to DEVICE.
offers() {
    gw_status_json | jq --arg d "$1" --arg r "$2" \
        '[.events[] | select(.device == $d and .release == $r and .event == "offered")] | length'
}
# failed DEVICE: its failed releases as the ledger holds them, "RELEASE:STATE ...".
failed() { dev_field "$1" 'failed_releases | map("\(.release):\(.state)") | join(" ")'; }

make_payload "$T/fw.bin" 1572864 # over dev-001's 1 MiB limit
pack sensor 1.1.0 "$T/fw.bin" "$T/p110.ota"
pack sensor 1.2.0 "$T/fw.bin" "$T/p120.ota"
check "announce A (1.1.0)" "$GW" announce --product sensor --url "file://$T/p110.ota" \
    --devices dev-001,dev-002,dev-003 "${CONN[@]}"
A=$(rel_of 1.1.0)
check "dev-001 fails A, dev-002 rolls back from it" \
    wait_until 60 '[ "$(dev_field dev-001 state) $(dev_field dev-002 state)" = "failed rolled_back" ]'
check "A's campaign is still rolling (dev-003 to do)" test "$(camp 1.1.0 state)" = rolling
check "announce B (1.2.0) while it is" "$GW" announce --product sensor \
    --url "file://$T/p120.ota" --devices dev-001,dev-002 "${CONN[@]}"
B=$(rel_of 1.2.0)
check "dev-001 fails B, dev-002 rolls back from it" \
    wait_until 60 "[ \"\$(dev_field dev-001 release) \$(dev_field dev-002 release)\" = '$B $B' ] &&
        [ \"\$(dev_field dev-001 state) \$(dev_field dev-002 state)\" = 'failed rolled_back' ]"
check "the ledger keeps both failures of dev-001, oldest first" \
    test "$(failed dev-001)" = "$A:failed $B:failed"
check "and both of dev-002" test "$(failed dev-002)" = "$A:rolled_back $B:rolled_back"
check "failed_release is still the latest one" \
    test "$(dev_field dev-001 failed_release) $(dev_field dev-002 failed_release)" = "$B $B"
sleep 2
check "A is not offered to either device again (dev-001: $(offers dev-001 "$A"), dev-002: $(offers dev-002 "$A"))" \
    test "$(offers dev-001 "$A") $(offers dev-002 "$A")" = "1 1"

# Both come back without their faults, and the gateway restarts: still nothing is offered.
stop dev-001
stop dev-002
stop gateway
HP=$(free_port)
check "gateway starts again (with its HTTP API)" gateway_start --http-listen "127.0.0.1:$HP"
api_failed() {
    curl -s "http://127.0.0.1:$HP/api/devices?name=$1" |
        jq -r '.devices[0] | "\(.failed_release) \(.failed_releases | map("\(.release):\(.state)") | join(" "))"'
}
check "/api/devices gives the latest and every failed release" \
    wait_until 10 "[ \"\$(api_failed dev-002)\" = '$B $A:rolled_back $B:rolled_back' ]"
device_start dev-001 1.0.0
device_start dev-002 1.0.0
check "both back, on 1.0.0" wait_until 20 "all_devices failed 1.0.0 dev-001 && all_devices rolled_back 1.0.0 dev-002"
sleep 2
check "after the restart neither A nor B is offered again" \
    test "$(offers dev-001 "$A") $(offers dev-002 "$A") $(offers dev-001 "$B") $(offers dev-002 "$B")" = "1 1 1 1"
check "A's campaign is still rolling" test "$(camp 1.1.0 state)" = rolling

"$GW" ctl retry --product sensor --release "$A" "${CONN[@]}" >"$T/retry.out" 2>&1
rc=$?
sed 's/^/#   /' "$T/retry.out"
check "ctl retry of A: accepted (exit 0), for dev-001 only" \
    bash -c "[ $rc = 0 ] && grep -q 'targets 1 device: dev-001' '$T/retry.out'"
check "  and says dev-002 refuses it by design" \
    grep -q '1 rolled back (dev-002): a device refuses a release it rolled back from, by design' "$T/retry.out"
check "dev-001 commits A" wait_until 60 "all_devices committed 1.1.0 dev-001"
check "the retry forgot only A" test "$(failed dev-001)" = "$B:failed"
sleep 2
check "B is still not offered to dev-001 ($(offers dev-001 "$B") offers)" test "$(offers dev-001 "$B")" = 1
check "nor A to dev-002 ($(offers dev-002 "$A") offers)" test "$(offers dev-002 "$A")" = 1
check "ctl retry of B" "$GW" ctl retry --product sensor --release "$B" "${CONN[@]}"
check "dev-001 commits B" wait_until 60 "all_devices committed 1.2.0 dev-001"
check "it has no failed release left" \
    test "$(failed dev-001)|$(dev_field dev-001 failed_release)" = "|"
check "the ledger is consistent (fsck)" gw_fsck
check "everything stops cleanly" stop_all_clean gateway dev-001 dev-002
finish
