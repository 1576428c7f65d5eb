#!/usr/bin/env bash
# Rollback protection that holds against replayed signed packages (PROTOCOL.md
# "Rollback protection", docs/SECURITY.md):
# - the flap: 1.1.0, a signed downgrade to 1.0.7 (replaces 1.1.0), then a normal 1.2.0:
#   every device ends on 1.2.0 and installs nothing more (before: endless switching);
# - the replay: a gateway with an empty ledger announces the old downgrade again, and a
#   holder of the gateway's certificate offers it directly: no device goes back;
# - the security counter: a package below the highest security_version a device has
#   committed is refused, newer version or not;
# - a power cut (SIGKILL) in the middle of the downgrade and of the upgrade still ends there.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002 dev-003)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
for d in "${ids[@]}"; do device_start "$d" 1.0.0; done
check "devices online" wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"

make_payload "$T/fw110.bin" 65536
make_payload "$T/fw107.bin" 65537
make_payload "$T/fw120.bin" 70000
pack sensor 1.1.0 "$T/fw110.bin" "$T/p110.ota"
check "pack refuses a downgrade that does not say what it replaces" \
    bash -c "! '$GW' pack --key '$CERTS/publisher.key' --product sensor --version 1.0.7 \
        --downgrade --payload '$T/fw107.bin' --out '$T/x.ota' 2>'$T/pack.err' &&
        grep -q 'needs --replaces' '$T/pack.err'"
"$GW" pack --key "$CERTS/publisher.key" --product sensor --version 1.0.7 --downgrade \
    --replaces 1.1.0 --payload "$T/fw107.bin" --out "$T/p107.ota" >/dev/null
pack sensor 1.2.0 "$T/fw120.bin" "$T/p120.ota"

# commits NAME: how many times the device committed a version (its log survives re-exec).
commits() { grep -c ': committed$' "$T/$1.log" 2>/dev/null || true; }
# restart_cut ID POINT: restart the device so that it cuts its own power at POINT.
restart_cut() {
    stop "$1" >/dev/null 2>&1
    cat "$T/$1.log" >>"$T/$1.all.log"
    device_start "$1" 1.0.0 --test-crash-at "$2"
}
# restart_plain ID: after the cut, start it again as it was.
restart_plain() {
    wait_until 30 "! alive $1" || return 1
    cat "$T/$1.log" >>"$T/$1.all.log"
    device_start "$1" 1.0.0
}

announce sensor "file://$T/p110.ota"
check "1.1.0 reaches every device" wait_until 30 "all_devices committed 1.1.0 ${ids[*]}"

# The downgrade, with dev-003 cut right after its slot switch.
restart_cut dev-003 switched
check "dev-003 back online (it will cut its power after the switch)" \
    wait_until 10 "all_devices committed 1.1.0 dev-003"
announce sensor "file://$T/p107.ota"
check "dev-003 cut its power in the middle of the downgrade" restart_plain dev-003
check "the signed downgrade reaches every device, dev-003 too" \
    wait_until 40 "all_devices committed 1.0.7 ${ids[*]}"

# The upgrade, with dev-002 cut right after it verified the image.
restart_cut dev-002 verified
check "dev-002 back online on 1.0.7" wait_until 10 "all_devices committed 1.0.7 dev-002"
announce sensor "file://$T/p120.ota"
check "dev-002 cut its power in the middle of the upgrade" restart_plain dev-002
check "1.2.0 reaches every device" wait_until 40 "all_devices committed 1.2.0 ${ids[*]}"
check "the gateway retired the downgrade when 1.2.0 came" \
    grep -q 'superseded by the newer release 1.2.0' "$T/gateway.log"
declare -A before
for d in "${ids[@]}"; do before[$d]=$(commits "$d"); done
sleep 8
flaps=0
for d in "${ids[@]}"; do [ "$(commits "$d")" = "${before[$d]}" ] || flaps=1; done
check "no device installs anything more in 8 s (no flapping)" test "$flaps" = 0
check "every device is still on 1.2.0" all_devices committed 1.2.0 "${ids[@]}"
check "each device's images are exact" \
    bash -c "for d in ${ids[*]}; do cmp -s '$T/fw120.bin' '$T/dev/'\$d/active/payload || exit 1; done"
check "state.json keeps the highest version committed" \
    test "$(jq -r .highest "$T/dev/dev-001/state.json")" = 1.2.0

# The replay: a gateway with an empty ledger is handed the old downgrade.
stop gateway
rm -rf "$T/gw-db" "$T/gw-store"
mv "$T/gateway.log" "$T/gateway-1.log"
check "a gateway with an empty ledger starts" gateway_start
check "it learns the devices on 1.2.0" wait_until 15 "all_devices committed 1.2.0 ${ids[*]}"
announce sensor "file://$T/p107.ota"
check "it verifies the old downgrade package" \
    wait_until 15 "grep -q 'version=1.0.7 .*verified and stored' '$T/gateway.log'"
sleep 3
check "and offers it to no device: each ran 1.2.0, newer than what it replaces" \
    bash -c "! grep -q 'version=1.0.7 offered' '$T/gateway.log'"

# A holder of the gateway's certificate offers it directly (no ledger in the way).
mq_pub_as injector ota/dev/dev-001/offer "$(offer_json "$T/p107.ota" 17)" -q 1
check "a device refuses the replayed downgrade offered directly" \
    wait_until 10 "grep -q 'signed downgrade to 1.0.7 replaces 1.1.0, but this device has run 1.2.0 since (anti-rollback)' '$T/dev-001.log'"
mq_pub_as injector ota/dev/dev-001/offer "$(offer_json "$T/p110.ota" 16)" -q 1
check "and the release it left for a newer one" \
    wait_until 10 "grep -q 'version 1.1.0 is not newer than the running 1.2.0 (anti-rollback)' '$T/dev-001.log'"

# The security counter: 1.3.0 raises it to 5; a newer 1.4.0 signed with 4 is refused.
"$GW" pack --key "$CERTS/publisher.key" --product sensor --version 1.3.0 \
    --security-version 5 --payload "$T/fw110.bin" --out "$T/p130.ota" >/dev/null
"$GW" pack --key "$CERTS/publisher.key" --product sensor --version 1.4.0 \
    --security-version 4 --payload "$T/fw110.bin" --out "$T/p140.ota" >/dev/null
announce sensor "file://$T/p130.ota"
check "1.3.0 (security_version 5) reaches every device" \
    wait_until 40 "all_devices committed 1.3.0 ${ids[*]}"
check "state.json keeps the security floor" \
    test "$(jq -r .security_floor "$T/dev/dev-002/state.json")" = 5
mq_pub_as injector ota/dev/dev-002/offer "$(offer_json "$T/p140.ota" 16)" -q 1
check "a newer version below the security floor is refused" \
    wait_until 10 "grep -q 'security_version 4 is below this device.s 5 (anti-rollback)' '$T/dev-002.log'"
check "every device is still on 1.3.0" all_devices committed 1.3.0 "${ids[@]}"
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
finish
