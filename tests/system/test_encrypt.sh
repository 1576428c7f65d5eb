#!/usr/bin/env bash
# Confidential packages with group sending (proto/PROTOCOL.md section 6.3).
#   1. An encrypted release ("encrypt":true) to the sensor fleet with group sending: the
#      three devices whose certificates the gateway has commit the exact payload from one
#      group; one of them on a link that corrupts fragments rejects them (decryption fails)
#      and gets them again. A certificate of another product, reading the group topic as
#      the ACL allows every device to, captures only ciphertext: a 64-byte pattern of the
#      payload is absent (and present once the same is sent in clear, at the end).
#   2. dev-004, whose certificate is missing at the gateway, is not offered the release
#      (never in clear instead); dev-001's offer replayed to dev-004 is refused: the key in
#      it is wrapped for dev-001 alone.
#   3. encrypt_packages = true (and it needs device_cert_dir): encrypted by default. Power
#      cut: dev-003 is SIGKILLed mid-download of an encrypted release, the gateway is
#      restarted too; it resumes from its checkpoint (wrapped key kept with it, the same
#      content key at the gateway) and commits the exact payload.
#   4. The content key is in a 0600 file in the store, in no log, ledger or device state.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001 dev-002 dev-003 dev-004 meter-001
broker_start || { not_ok "broker starts"; finish; }
mkdir -p "$T/devcerts"
for d in dev-001 dev-002 dev-003 meter-001; do cp "$CERTS/devices/$d.crt" "$T/devcerts/"; done
GWFLAGS=(--device-cert-dir "$T/devcerts")
check "gateway starts" gateway_start "${GWFLAGS[@]}"
# Another product's device reads the group topic, as every device may (hex payloads).
mq_sub_bg cap meter-001 'ota/grp/+/frag' 1000000 300 -F 'MSG %t %x' ||
    not_ok "the meter device subscribes to the group topics"
device_start dev-001 1.0.0
device_start dev-002 1.0.0 --test-corrupt-percent 5 --test-seed 7
device_start dev-003 1.0.0 --checkpoint-every 16
device_start dev-004 1.0.0
check "four devices report idle 1.0.0" wait_until 15 'all_devices idle 1.0.0 dev-001 dev-002 dev-003 dev-004'

# A payload with a known 64-byte pattern at several places.
PAT=OTA-CONFIDENTIAL-PATTERN-0123456789abcdefghijklmnopqrstuvwxyzEND
PATHEX=$(printf '%s' "$PAT" | od -An -tx1 | tr -d ' \n')
check "the pattern is 64 bytes" test ${#PATHEX} = 128
with_pattern() { # FILE BYTES
    make_payload "$1" "$2"
    for off in 4096 300000 $(($2 - 64)); do
        printf '%s' "$PAT" | dd of="$1" bs=1 seek="$off" conv=notrunc status=none
    done
}
with_pattern "$T/fw.bin" 1048576
pack sensor 1.1.0 "$T/fw.bin" "$T/sensor-1.1.0.ota"
check "an encrypted release is announced" announce sensor "file://$T/sensor-1.1.0.ota" ',"encrypt":true'
check "the gateway stores it encrypted" \
    wait_until 20 "grep -q 'release=.* verified and stored' '$T/gateway.log'"
grep -q 'window=32 encrypted verified' "$T/gateway.log" || not_ok "the release is marked encrypted"
check "a group of three sends it" wait_until 20 "grep -q 'group of 3 devices: sending' '$T/gateway.log'"
check "dev-001, dev-002 and dev-003 commit 1.1.0" \
    wait_until 60 'all_devices committed 1.1.0 dev-001 dev-002 dev-003'
for d in dev-001 dev-002 dev-003; do
    check "$d's installed payload is identical" cmp -s "$T/fw.bin" "$T/dev/$d/active/payload"
done
REL=$(dev_field dev-001 release)
check "dev-002's corrupted fragments failed decryption and were asked for again" \
    grep -q "device=dev-002 release=$REL fragment .* failed decryption" "$T/dev-002.log"
grep -q 'does not match the signed block table' "$T/dev-002.log" &&
    not_ok "no corrupted fragment got as far as a block check"

# --- what another product's device captured
ncap=$(mq_count cap)
check "the meter device captured the group's fragments ($ncap >= 200)" test "$ncap" -ge 200
mq_msgs cap | awk '{ print $2 }' >"$T/cap.hex"
check "the captured bytes do not contain the payload's pattern" \
    bash -c "! grep -q '$PATHEX' '$T/cap.hex'"
# A full fragment on the wire: 8-byte header, 4096 sealed bytes, 16-byte tag.
full=$(awk '{ print length($2) / 2 }' <(mq_msgs cap) | sort -n | tail -1)
check "a full captured fragment is 8 + 4096 + 16 bytes ($full)" test "$full" = 4120

# --- 2. no certificate, no offer; another device's offer is useless
check "dev-004 (no certificate at the gateway) is not offered the release" \
    grep -q "device=dev-004 release=$REL is encrypted and not offered to it: no certificate" "$T/gateway.log"
grep -q "device=dev-004 release=$REL .*offered$" "$T/gateway.log" && not_ok "dev-004 got an offer"
check "dev-004 still runs 1.0.0, idle" all_devices idle 1.0.0 dev-004
nev=$(gw_status_json | jq '[.events[] | select(.event == "not_offered" and .device == "dev-004")] | length')
check "the gateway's event log says why ($nev event)" test "${nev:-0}" -ge 1
# dev-001's own offer, rebuilt from what it saved, replayed to dev-004.
offer=$(jq -c '{release, manifest, sig, fragment_size, fragments, window, table_fragments,
    enc: {alg: "aes-256-gcm+p256-hkdf-sha256", epk: .enc_epk, key: .enc_key}}' \
    "$T/dev/dev-001/state.json")
mq_pub_as injector ota/dev/dev-004/offer "$offer" -q 1
check "dev-004 refuses dev-001's offer: the key is not wrapped for it" \
    wait_until 10 "grep -q 'offer of $REL REFUSED: cannot unwrap the release.s content key with this device.s key: it was not wrapped for this device' '$T/dev-004.log'"
check "dev-004 wrote nothing of it" test ! -s "$T/dev/dev-004/slot-b/payload.part"

# --- 3. encrypt_packages = true makes encryption the default; power cut mid-download,
# gateway restarted too
check "encrypt_packages without device_cert_dir is refused at start" \
    bash -c "! '$GW' run --ca-file '$CERTS/ca.crt' --cert-file '$CERTS/gateway.crt' \
        --key-file '$CERTS/gateway.key' --publisher-key '$CERTS/publisher.pub' \
        --encrypt-packages true --check >'$T/chk.out' 2>&1 && grep -q \"needs 'device_cert_dir'\" '$T/chk.out'"
stop gateway >/dev/null
mv "$T/gateway.log" "$T/gateway-1.log"
GWFLAGS+=(--encrypt-packages true)
check "the gateway restarts with encrypt_packages = true" gateway_start "${GWFLAGS[@]}"
with_pattern "$T/fw2.bin" 1048576
pack sensor 1.2.0 "$T/fw2.bin" "$T/sensor-1.2.0.ota"
announce sensor "file://$T/sensor-1.2.0.ota" ',"devices":["dev-003"],"fragment_size":512,"window":2'
check "an announcement without \"encrypt\" is encrypted by default" \
    wait_until 20 "grep -q 'fragment_size=512 window=2 encrypted verified' '$T/gateway.log'"
check "dev-003's download of 1.2.0 is under way" \
    wait_until 30 '[ "$(dev_field dev-003 release)" != "$REL" ] && [ "$(dev_field dev-003 acked)" -ge 300 ] 2>/dev/null'
REL2=$(dev_field dev-003 release)
kill -9 "$(pid_of dev-003)"
held=$(jq -r .held "$T/dev/dev-003/state.json")
check "a checkpoint survived the power cut (held=$held)" test "$held" -ge 16
check "the checkpoint keeps the wrapped key" test "$(jq -r '.enc_key | length' "$T/dev/dev-003/state.json")" = 96
stop gateway >/dev/null
mv "$T/gateway.log" "$T/gateway-2.log"
check "the gateway restarts" gateway_start "${GWFLAGS[@]}"
mv "$T/dev-003.log" "$T/dev-003-before.log"
device_start dev-003 1.1.0 --checkpoint-every 16
check "dev-003 resumes from its checkpoint" \
    wait_until 10 "grep -q 'resuming release=$REL2 from fragment $held of' '$T/dev-003.log'"
check "dev-003 commits 1.2.0" wait_until 90 'all_devices committed 1.2.0 dev-003'
check "with the exact payload" cmp -s "$T/fw2.bin" "$T/dev/dev-003/active/payload"
grep -q 'content key unusable' "$T/gateway.log" && not_ok "the gateway kept the content key across its restart"

# --- 4. where the content key is, and is not
for r in "$REL" "$REL2"; do
    kf=$T/gw-store/$r.key
    check "release $r's content key is a 0600 file of 32 bytes" \
        test "$(stat -c '%a %s' "$kf")" = "600 32"
    khex=$(od -An -tx1 "$kf" | tr -d ' \n')
    leak=$(grep -l -i -r "$khex" "$T"/*.log "$T/dev" "$T/gw-db" 2>/dev/null; "$GW" status --db "$T/gw-db" --json --events 1000 | grep -c -i "$khex")
    check "release $r's content key is in no log, device state or ledger" test "$leak" = 0
done

# --- the control: the same pattern sent in clear is seen by the meter device
with_pattern "$T/fw3.bin" 65536
pack sensor 1.3.0 "$T/fw3.bin" "$T/sensor-1.3.0.ota"
announce sensor "file://$T/sensor-1.3.0.ota" ',"encrypt":false,"devices":["dev-001","dev-002"]'
check "dev-001 and dev-002 commit 1.3.0 sent in clear" \
    wait_until 60 'all_devices committed 1.3.0 dev-001 dev-002'
check "in clear, the meter device's capture holds the pattern (the check above can fail)" \
    bash -c "mq_msgs() { sed -n 's/^MSG //p' '$T/cap.log'; }; mq_msgs | grep -q '$PATHEX'"
check "every device stops cleanly" stop_all_clean gateway dev-001 dev-002 dev-003 dev-004
finish
