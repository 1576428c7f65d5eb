#!/usr/bin/env bash
# End to end over mutual TLS: one signed release, published with mosquitto_pub,
# reaches three devices; a forged package reaches none.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make --rogue dev-001 dev-002 dev-003 dev-004
broker_start || { not_ok "broker starts"; finish; }
mq_sub_bg frags observer1 'ota/dev/+/frag' 100000 120 -t 'ota/grp/+/frag'
check "gateway starts and connects" gateway_start
for d in dev-001 dev-002 dev-003; do device_start "$d" 1.0.0; done
check "three devices report idle 1.0.0" \
    wait_until 10 'all_devices idle 1.0.0 dev-001 dev-002 dev-003'
# A world-readable leftover where dev-001 writes its next TLS session: the session must
# still end up readable by the device's user only (checked after the update).
install -m 644 /dev/null "$T/dev/dev-001/tls-session.pem.tmp"

make_payload "$T/fw-1.1.0.bin" 300000
pack sensor 1.1.0 "$T/fw-1.1.0.bin" "$T/sensor-1.1.0.ota"
check "one mosquitto_pub of the release" announce sensor "file://$T/sensor-1.1.0.ota"
check "all three devices reach committed 1.1.0" \
    wait_until 30 'all_devices committed 1.1.0 dev-001 dev-002 dev-003'
for d in dev-001 dev-002 dev-003; do
    check "$d's installed payload is identical to the original" \
        cmp -s "$T/fw-1.1.0.bin" "$T/dev/$d/active/payload"
done
# A device re-executes into the new version; its TLS session waits in its state directory
# (common/mqtls.c), so the reconnection is an abbreviated handshake, no certificate checked.
check "dev-001 re-executed after installing" grep -aq "restarting (re-exec)" "$T/dev-001.log"
check "and its reconnection resumed the TLS session it had saved" \
    bash -c "sed -n '/restarting (re-exec)/,\$p' '$T/dev-001.log' | grep -aq 'mqtt connected .* tls=resumed'"
check "the saved session is readable by the device's user only" \
    test "$(stat -c %a "$T/dev/dev-001/tls-session.pem")" = 600
check "the ledger holds stage timings for every device" \
    test "$(gw_status_json | jq '[.devices[] | select(.timings.total_ms > 0 and .timings.download_ms >= 0
        and .timings.verify_ms >= 0 and .timings.install_ms >= 0 and .timings.restart_ms >= 0)] | length')" = 3
status=$(mq_sub_as operator ota/dev/dev-002/status 1 5)
check "retained status of dev-002 says committed 1.1.0 with its release" \
    test "$(jq -r '"\(.state) \(.version) \(.release | length)"' <<<"$status")" = "committed 1.1.0 16"
nfrags_before=$(mq_count frags)
# 300000 bytes: 74 payload fragments of 4 KiB + 1 of the block table. The three devices
# accept together: one group, so each fragment crosses from the gateway about once, not
# once per device (3 x 75).
echo "# fragments published: $nfrags_before for 3 devices x 75"
check "fragments went over the broker" test "$nfrags_before" -ge 75
check "each about once for the three devices (group), not once each" test "$nfrags_before" -lt 150

# A forged package: the right size and signature, one payload byte flipped.
make_payload "$T/fw-1.2.0.bin" 300000
pack sensor 1.2.0 "$T/fw-1.2.0.bin" "$T/good-1.2.0.ota"
cp "$T/good-1.2.0.ota" "$T/bad-1.2.0.ota"
size=$(stat -c %s "$T/bad-1.2.0.ota")
printf '\x5a' | dd of="$T/bad-1.2.0.ota" bs=1 seek=$((size - 1000)) conv=notrunc 2>/dev/null
cmp -s "$T/good-1.2.0.ota" "$T/bad-1.2.0.ota" && not_ok "the byte was flipped"
check "ota-gateway verify refuses the flipped byte" \
    bash -c "! '$GW' verify --pubkey '$CERTS/publisher.pub' '$T/bad-1.2.0.ota' 2>'$T/verify.err'"
check "and says why (digest)" grep -qi "sha-256\|digest" "$T/verify.err"
announce sensor "file://$T/bad-1.2.0.ota"
check "the gateway refuses it with a clear reason" \
    wait_until 10 "grep -q 'release REFUSED.*SHA-256' '$T/gateway.log'"
check "the refusal is in the ledger's event log" \
    test "$(gw_status_json | jq '[.events[] | select(.event == "release_refused")] | length')" = 1
sleep 1
check "no device received a fragment of it" test "$(mq_count frags)" = "$nfrags_before"
check "every device still runs 1.1.0, committed" all_devices committed 1.1.0 dev-001 dev-002 dev-003
check "no offer of anything after 1.1.0 went out" \
    test "$(gw_status_json | jq '[.events[] | select(.event == "offered")] | length')" = 3

# Replaying the 1.1.0 announcement changes nothing.
announce sensor "file://$T/sensor-1.1.0.ota"
check "a replayed announcement is recognised" \
    wait_until 10 "grep -q 'already known' '$T/gateway.log'"
check "and offers nothing" \
    test "$(gw_status_json | jq '[.events[] | select(.event == "offered")] | length')" = 3

# A device whose certificate comes from another CA never gets in.
spawn rogue "$DEV" --id dev-004 --product sensor --version 1.0.0 --broker-host localhost \
    --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/rogue/dev-001.crt" \
    --key-file "$CERTS/rogue/dev-001.key" --publisher-key "$CERTS/publisher.pub" \
    --state-dir "$T/dev/rogue"
sleep 2
check "a device with another CA's certificate cannot connect" \
    bash -c "! grep -q 'mqtt connected' '$T/rogue.log'"
check "and the gateway never hears of it" test "$(dev_field dev-004 state)" = ""

# Last Will: a device that dies is marked offline.
kill -9 "$(pid_of dev-003)"
check "a killed device is marked offline by its Last Will" \
    wait_until 60 '[ "$(dev_field dev-003 state)" = offline ]'
check "gateway and devices stop cleanly, no sanitizer reports" \
    stop_all_clean gateway dev-001 dev-002
finish
