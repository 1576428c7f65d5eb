#!/usr/bin/env bash
# Freeze attacks: a signed expiry in the manifest (pack --expires). The gateway refuses an
# expired package at the announcement and stops offering a release once it expires; a
# device refuses an expired package offered directly. A device whose clock is behind uses
# the newest `created` time of a manifest it accepted as the earliest "now" (documented in
# PROTOCOL.md): a package that expired before that is refused; one that expired after it
# but before the true time is not detected (shown, so nobody relies on it).
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001 dev-002 dev-003
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
device_start dev-001 1.0.0
device_start dev-002 1.0.0 --test-clock-behind-s 100000000
check "devices online" wait_until 10 "all_devices idle 1.0.0 dev-001 dev-002"

make_payload "$T/fw.bin" 65536
key=$CERTS/publisher.key
# Expires 3 s after it is made: expired by the time it is used below.
"$GW" pack --key "$key" --product sensor --version 1.5.0 --expires +3s \
    --payload "$T/fw.bin" --out "$T/p150.ota" >/dev/null
check "pack refuses an expiry that is not in the future" \
    bash -c "! '$GW' pack --key '$key' --product sensor --version 1.5.0 --expires 2020-01-01 \
        --payload '$T/fw.bin' --out '$T/x.ota' 2>/dev/null"
check "verify shows the expiry" \
    bash -c "'$GW' verify --pubkey '$CERTS/publisher.pub' '$T/p150.ota' | grep -q '^  expires  [0-9]'"
sleep 4

announce sensor "file://$T/p150.ota"
check "the gateway refuses an expired package, with the reason" \
    wait_until 15 "grep -q 'release REFUSED product=sensor version=1.5.0 .*reason=\"package expired at' '$T/gateway.log'"
check "and says so in the event log" \
    bash -c "'$GW' status --db '$T/gw-db' --events 20 | grep -q 'package expired at'"

mq_pub_as injector ota/dev/dev-001/offer "$(offer_json "$T/p150.ota" 16)" -q 1
check "a device refuses an expired package offered directly" \
    wait_until 10 "grep -q 'offer of .* ignored: package expired at' '$T/dev-001.log'"

# A clock far behind: it has seen nothing newer, so the expired package is not detected.
mq_pub_as injector ota/dev/dev-002/offer "$(offer_json "$T/p150.ota" 16)" -q 1
check "a device with a clock behind and no newer manifest seen cannot tell (documented)" \
    wait_until 10 "grep -q 'accepted release=.* version=1.5.0' '$T/dev-002.log'"
stop dev-002
rm -rf "$T/dev/dev-002"
mv "$T/dev-002.log" "$T/dev-002-1.log"
device_start dev-002 1.0.0 --test-clock-behind-s 100000000
check "dev-002 starts afresh" wait_until 10 "all_devices idle 1.0.0 dev-002"

# A release made after 1.5.0 expired: accepting it moves dev-002's "now" past that expiry.
pack sensor 1.1.0 "$T/fw.bin" "$T/p110.ota"
announce sensor "file://$T/p110.ota"
check "both devices take 1.1.0 (no expiry)" \
    wait_until 30 "all_devices committed 1.1.0 dev-001 dev-002"
check "dev-002 keeps the newest manifest time as its time floor" \
    test "$(jq -r .time_floor "$T/dev/dev-002/state.json")" -gt 1000000000
mq_pub_as injector ota/dev/dev-002/offer "$(offer_json "$T/p150.ota" 16)" -q 1
check "then a device with a clock behind refuses what expired before that time" \
    wait_until 10 "grep -q 'ignored: package expired at .* from the newest manifest seen: the clock is behind' '$T/dev-002.log'"

# A release that expires during its campaign is not offered to a device that comes later.
"$GW" pack --key "$key" --product sensor --version 1.2.0 --expires +8s \
    --payload "$T/fw.bin" --out "$T/p120.ota" >/dev/null
announce sensor "file://$T/p120.ota"
check "a release that has not expired yet is rolled out" \
    wait_until 30 "all_devices committed 1.2.0 dev-001 dev-002"
sleep 8
device_start dev-003 1.0.0
check "a device that comes after 1.2.0 expired gets the newest valid release, 1.1.0" \
    wait_until 30 "all_devices committed 1.1.0 dev-003"
sleep 2
check "and is never offered the expired 1.2.0" \
    bash -c "! grep -q 'device=dev-003 release=.* version=1.2.0 offered' '$T/gateway.log'"
check "everything stops cleanly" stop_all_clean gateway dev-001 dev-002 dev-003
finish
