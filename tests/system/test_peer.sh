#!/usr/bin/env bash
# Peer interop (issue 14): tests/peer/peer_device.py, a device written from
# proto/PROTOCOL.md alone in Python, against the real gateway, broker and C devices.
#   1. A release to a group of the Python device and two C devices: all commit the exact
#      payload, and the Python device reports the states and timings of PROTOCOL.md 5.3.
#   2. 3% of fragments lost: the Python device finishes in a time comparable to a C device
#      losing as much (same package, one after the other on the same machine).
#   3. SIGKILL of the Python device mid-transfer: it resumes from its checkpoint, not 0.
#   4. A forged offer (another key's signature; a changed manifest) is refused by it.
#   5. An encrypted release to a group of it and a C device: it unwraps the key, decrypts.
# And its receiver passes the conformance vectors tests/vectors/rx (tests/peer/rx_vectors.py),
# its block assembler a randomised check of PROTOCOL.md 8 step 7 (assembler_check.py).
# ota-test-timeout: 240
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

PY=/usr/bin/python3 # Debian's, with python3-paho-mqtt and python3-cryptography
peer_start() {
    local id=$1 version=$2
    shift 2
    spawn "$id" "$PY" "$OTA_ROOT/tests/peer/peer_device.py" --id "$id" --product sensor \
        --firmware-version "$version" --broker-host localhost --broker-port "$BROKER_PORT" \
        --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/devices/$id.crt" \
        --key-file "$CERTS/devices/$id.key" --publisher-key "$CERTS/publisher.pub" \
        --state-dir "$T/dev/$id" "$@"
}
# retained ID: the device's retained status.
retained() { mq_sub_as monitor "ota/dev/$1/status" 1 5; }
# until_committed ID VERSION: seconds (0.1 s steps) until the ledger has ID committed.
until_committed() {
    local t0=$EPOCHREALTIME
    wait_until 90 "all_devices committed $2 $1" || { echo 999; return; }
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

check "the Python receiver makes the decisions of tests/vectors/rx (PROTOCOL.md 9)" \
    "$PY" "$OTA_ROOT/tests/peer/rx_vectors.py" "$OTA_ROOT/tests/vectors/rx"
check "its block assembler: 300 random geometries, orders and corruptions end exact" \
    "$PY" "$OTA_ROOT/tests/peer/assembler_check.py"

certs_make dev-001 dev-002 dev-003 py-001 py-002 py-003
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
device_start dev-001 1.0.0
device_start dev-002 1.0.0
peer_start py-001 1.0.0
check "two C devices and the Python device report idle 1.0.0" \
    wait_until 20 'all_devices idle 1.0.0 dev-001 dev-002 py-001'

# --- 1. A group of three: 1 MiB in 4 KiB fragments (256 payload + 8 table fragments).
make_payload "$T/fw1.bin" 1048576
pack sensor 1.1.0 "$T/fw1.bin" "$T/p1.ota"
announce sensor "file://$T/p1.ota" ',"devices":["dev-001","dev-002","py-001"]'
check "the three form one group" wait_until 20 "grep -q 'group of 3 devices: sending' '$T/gateway.log'"
check "all three commit 1.1.0" wait_until 60 'all_devices committed 1.1.0 dev-001 dev-002 py-001'
for d in dev-001 dev-002 py-001; do
    check "$d's installed payload is exact" cmp -s "$T/fw1.bin" "$T/dev/$d/active/payload"
done
st=$(retained py-001)
echo "# py-001: $st"
check "py-001's retained status is committed 1.1.0 with every timing" \
    jq -e '.state == "committed" and .version == "1.1.0" and
           (.timings | has("download_ms") and has("verify_ms") and has("install_ms") and
            has("restart_ms") and has("total_ms"))' <<<"$st"
check "py-001 went through downloading, verifying, installing, restarting" \
    grep -q 'status restarting' "$T/py-001.log"

# --- 2. 3% loss: a C device, then the Python device, the same 1 MiB in 1 KiB fragments.
device_start dev-003 1.0.0 --test-drop-percent 3 --test-seed 7
peer_start py-002 1.0.0 --drop-percent 3 --seed 7
check "the lossy pair reports idle" wait_until 20 'all_devices idle 1.0.0 dev-003 py-002'
make_payload "$T/fw2.bin" 1048576
pack sensor 1.2.0 "$T/fw2.bin" "$T/p2.ota"
pack sensor 1.2.1 "$T/fw2.bin" "$T/p3.ota"
announce sensor "file://$T/p2.ota" ',"devices":["dev-003"],"fragment_size":1024,"window":32'
c_s=$(until_committed dev-003 1.2.0)
announce sensor "file://$T/p3.ota" ',"devices":["py-002"],"fragment_size":1024,"window":32'
py_s=$(until_committed py-002 1.2.1)
c_rs=$(dev_field dev-003 frags_resent) py_rs=$(dev_field py-002 frags_resent)
py_drop=$(grep -o 'dropped_test=[0-9]*' "$T/py-002.log" | tail -1)
c_dl=$(retained dev-003 | jq .timings.download_ms) py_dl=$(retained py-002 | jq .timings.download_ms)
echo "# 3% loss, 1032 fragments, announce to committed: C device ${c_s} s (download_ms $c_dl," \
    "resent $c_rs), Python ${py_s} s (download_ms $py_dl, resent $py_rs, $py_drop)"
check "the C device commits with 3% loss" test "$c_s" != 999
check "the Python device commits with 3% loss" test "$py_s" != 999
check "the Python device takes at most 3x + 2 s the C device's time (${py_s} s vs ${c_s} s)" \
    awk -v p="$py_s" -v c="$c_s" 'BEGIN { exit !(p <= 3 * c + 2) }'
check "its download takes at most 3x + 1 s the C device's (${py_dl} ms vs ${c_dl} ms)" \
    awk -v p="$py_dl" -v c="$c_dl" 'BEGIN { exit !(p <= 3 * c + 1000) }'
check "py-002 never fired its will (no offline status: its restart disconnected cleanly)" \
    sh -c "! grep -q 'device=py-002 state=offline' '$T/gateway.log'"
check "py-002's payload is exact" cmp -s "$T/fw2.bin" "$T/dev/py-002/active/payload"
check "the gateway resent about what was lost to py-002 ($py_rs)" test "$py_rs" -le 200

# --- 3. SIGKILL mid-transfer, then resume from the checkpoint.
peer_start py-003 1.0.0 --checkpoint-every 16
check "py-003 reports idle" wait_until 20 'all_devices idle 1.0.0 py-003'
make_payload "$T/fw4.bin" 524288
pack sensor 1.3.0 "$T/fw4.bin" "$T/p4.ota"
# 1000 B fragments (they straddle the 4 KiB blocks: the checkpoint rule of PROTOCOL.md 8
# step 7 at its hardest) and a window of 1 keep the transfer long enough to cut it.
announce sensor "file://$T/p4.ota" ',"devices":["py-003"],"fragment_size":1000,"window":1'
check "the download is under way" wait_until 30 '[ "$(dev_field py-003 acked)" -ge 100 ] 2>/dev/null'
kill -9 "$(pid_of py-003)"
held=$(jq -r .dl.held "$T/dev/py-003/state.json")
total=530 # 5 table (128 blocks x 32 B) + 525 payload fragments
check "a checkpoint survived the SIGKILL (held=$held)" test "$held" -ge 16
mv "$T/py-003.log" "$T/py-003-before.log"
peer_start py-003 1.0.0 --checkpoint-every 16
check "py-003 resumes from its checkpoint, not from 0" \
    wait_until 10 "grep -q 'resuming release=.* from fragment $held of $total' '$T/py-003.log'"
check "py-003 commits 1.3.0" wait_until 90 'all_devices committed 1.3.0 py-003'
check "with the exact payload" cmp -s "$T/fw4.bin" "$T/dev/py-003/active/payload"
sent=$(dev_field py-003 frags_sent)
check "fragments sent in all: $sent, at most $total + what was unconfirmed at the cut" \
    test "$sent" -le $((total + $(dev_field py-003 acked) - held + 64))

# --- 4. Offers the rules of PROTOCOL.md 4.5 and 8 step 5 settle without a download: the
# committed release again (its `committed` is published again, never `failed`) and an
# older, validly signed release (ignored: nothing published).
n=$(grep -c 'status committed' "$T/py-003.log")
mq_pub_as injector ota/dev/py-003/offer "$(offer_json "$T/p4.ota" 128)" -q 1
check "a re-offer of the committed release publishes committed again" \
    wait_until 10 "[ \"\$(grep -c 'status committed' '$T/py-003.log')\" -gt $n ]"
mq_pub_as injector ota/dev/py-003/offer "$(offer_json "$T/p1.ota" 256)" -q 1
check "an older release is ignored, not reported" \
    wait_until 10 "grep -q 'offer ignored: version 1.1.0 is not newer than 1.3.0' '$T/py-003.log'"
check "py-003's retained status is still committed 1.3.0" \
    test "$(retained py-003 | jq -r '.state + " " + .version')" = "committed 1.3.0"

# --- 4b. Forged offers, as a compromised gateway would send them (the real one refuses
# such packages before offering them).
"$GW" keygen --out "$T/other" >/dev/null
"$GW" pack --key "$T/other.key" --product sensor --version 1.4.0 --payload "$T/fw4.bin" \
    --out "$T/forged.ota" >/dev/null
mq_pub_as injector ota/dev/py-003/offer "$(offer_json "$T/forged.ota" 128)" -q 1
check "an offer signed by another key is refused with a failed status" \
    wait_until 10 "retained py-003 | jq -e '.state == \"failed\" and (.error | test(\"signature\"))'"
pack sensor 1.4.0 "$T/fw4.bin" "$T/good.ota"
off=$(grep -abo '"version":"1.4.0"' "$T/good.ota" | cut -d: -f1)
cp "$T/good.ota" "$T/changed.ota"
printf '5' | dd of="$T/changed.ota" bs=1 seek=$((off + 15)) conv=notrunc status=none
mq_pub_as injector ota/dev/py-003/offer "$(offer_json "$T/changed.ota" 128)" -q 1
check "an offer whose manifest was changed after signing is refused" \
    wait_until 10 "[ \"\$(grep -c 'status failed .*signature does not verify' '$T/py-003.log')\" = 2 ]"
check "py-003 still runs 1.3.0 and wrote nothing of them" \
    test "$(jq -r '.version + " " + (has("dl") | tostring)' "$T/dev/py-003/state.json")" = "1.3.0 false"

# --- 5. An encrypted release (PROTOCOL.md 6.3) to a group of the Python and a C device.
stop gateway >/dev/null
cp "$T/gateway.log" "$T/gateway-1.log"
check "gateway restarts with the devices' certificates" gateway_start --device-cert-dir "$CERTS/devices"
check "py-001 and dev-001 report committed 1.1.0 to it" \
    wait_until 20 'all_devices committed 1.1.0 dev-001 py-001'
make_payload "$T/fw5.bin" 200000
pack sensor 1.5.0 "$T/fw5.bin" "$T/p5.ota"
announce sensor "file://$T/p5.ota" ',"devices":["dev-001","py-001"],"encrypt":true'
check "both commit the encrypted 1.5.0" wait_until 60 'all_devices committed 1.5.0 dev-001 py-001'
check "py-001 took it encrypted" grep -q 'accepted release=.* version=1.5.0 encrypted' "$T/py-001.log"
check "py-001 decrypted the exact payload" cmp -s "$T/fw5.bin" "$T/dev/py-001/active/payload"
check "dev-001 too" cmp -s "$T/fw5.bin" "$T/dev/dev-001/active/payload"
check "everything stops cleanly" stop_all_clean gateway dev-001 dev-002 dev-003 py-001 py-002 py-003
finish
