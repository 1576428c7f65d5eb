#!/usr/bin/env bash
# The gateway is SIGKILLed in the middle of a delta campaign and started again: each
# device's transfer goes on as the same delta (same base, same payload) from what the
# device holds, not as a full image and not from zero (PROTOCOL.md 6.4; the ledger keeps
# the delta's base), and every device commits the exact image.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002)
stat_of() { # stat_of LOG NAME: the "stats" value NAME= in a device log
    sed -n "s/.* stats .*[ ]$2=\([0-9]*\).*/\1/p" "$1" | tail -1
}

# 1.1.0: 1.5 MiB like firmware (half random, half text); 1.2.0: 32 KiB of new random
# bytes in each 256 KiB of it, so that every frame of the delta carries data and the
# delta is long enough (some 400 fragments of 512 bytes) to be cut in the middle.
{ make_payload /dev/stdout 786432
  for _ in $(seq 40); do cat "$OTA_ROOT/README.md" "$OTA_ROOT/proto/PROTOCOL.md"; done |
      head -c 786432; } >"$T/a.bin"
cp "$T/a.bin" "$T/b.bin"
for i in 0 1 2 3 4 5; do
    openssl enc -aes-128-ctr -nosalt -pass "pass:v120-$i" -pbkdf2 -in /dev/zero 2>/dev/null |
        head -c 32768 | dd of="$T/b.bin" bs=1024 seek=$((i * 256 + 100)) conv=notrunc 2>/dev/null
done

certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
for d in "${ids[@]}"; do device_start "$d" 1.0.0; done
check "devices report idle" wait_until 15 "all_devices idle 1.0.0 ${ids[*]}"
pack sensor 1.1.0 "$T/a.bin" "$T/a.ota"
announce sensor "file://$T/a.ota"
check "both commit 1.1.0 (the base)" wait_until 60 "all_devices committed 1.1.0 ${ids[*]}"
# Fresh device logs and counters for the delta, checkpoints every 8 fragments, and a
# 256 kbit/s link (tests/tools/linkemu) so that the gateway is killed mid-delta.
LE_PORT=$(free_port)
spawn linkemu "$BUILD/tools/linkemu" --listen "127.0.0.1:$LE_PORT" \
    --connect "127.0.0.1:$BROKER_PORT" --rate-kbit 256
check "the link emulator listens" wait_until 10 "grep -q 'info listening' '$T/linkemu.log'"
for d in "${ids[@]}"; do
    stop "$d" >/dev/null
    mv "$T/$d.log" "$T/$d-1.log"
    device_start "$d" 1.1.0 --checkpoint-every 8 --broker-port "$LE_PORT"
done
check "both are back on 1.1.0" wait_until 15 "all_devices committed 1.1.0 ${ids[*]}"

pack sensor 1.2.0 "$T/b.bin" "$T/b.ota"
announce sensor "file://$T/b.ota" ',"fragment_size":512,"window":2'
under_way() { # both take 1.2.0 as a delta and hold at least 40% of it
    [ "$(gw_status_json | jq '[.devices[] | select(.encoding == "delta" and
        .state == "downloading" and .fragments > 0 and .acked * 10 >= .fragments * 4)]
        | length')" = 2 ]
}
check "both transfers are under way as deltas" wait_until 90 under_way
frags=$(dev_field dev-001 fragments)
# dev-001 keeps running through the gateway's restart; dev-002 is killed with it and
# comes back from its checkpoint.
kill -9 "$(pid_of gateway)" "$(pid_of dev-002)"
stop gateway >/dev/null 2>&1
stop dev-002 >/dev/null 2>&1
held=()
for d in "${ids[@]}"; do
    held+=("$(dev_field "$d" acked)")
    echo "# $d held ${held[-1]} of $frags fragments when the gateway was killed"
done
check "the ledger the SIGKILL left is consistent (fsck)" gw_fsck
check "the ledger kept the delta's base" \
    test "$(dev_field dev-001 base)" = "$(sha256sum "$T/a.bin" | cut -c1-64)"
mv "$T/gateway.log" "$T/gateway-1.log"
mv "$T/dev-002.log" "$T/dev-002-2.log"
# A start that fails late (its HTTP address taken) on this ledger: the transfers
# are restored only once the gateway runs, so no reading back of the delta is left
# on the pool of a gateway that gave up (it was: a use after free under ASan).
HTTP_PORT=$(free_port)
python3 -c 'import socket,sys,time
s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); time.sleep(60)' \
    "$HTTP_PORT" &
HOLDER=$!
wait_until 5 "ss -ltn | grep -q '127.0.0.1:$HTTP_PORT '"
"$GW" run --broker-host localhost --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt" \
    --cert-file "$CERTS/gateway.crt" --key-file "$CERTS/gateway.key" \
    --publisher-key "$CERTS/publisher.pub" --db-dir "$T/gw-db" --store-dir "$T/gw-store" \
    --file-dirs "$T" --http-listen "127.0.0.1:$HTTP_PORT" >"$T/gateway-http.log" 2>&1
http_rc=$?
kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
check "a start that fails late (HTTP address taken) exits 1 with the reason" \
    eval '[ $http_rc = 1 ] && grep -q "cannot serve on 127.0.0.1:$HTTP_PORT: Address already in use" "$T/gateway-http.log"'
check "  and leaves no sanitizer report" \
    eval '! grep -q "Sanitizer" "$T/gateway-http.log"'
check "  and the ledger as it was (fsck)" gw_fsck
check "the gateway starts again on the same ledger" gateway_start
device_start dev-002 1.1.0 --checkpoint-every 8 --broker-port "$LE_PORT"
for d in "${ids[@]}"; do
    check "$d's transfer is restored as the delta ($frags fragments)" \
        wait_until 20 "grep -Eq 'device=$d release=[0-9a-f]+ transfer restored at [1-9][0-9]*/$frags,' '$T/gateway.log'"
    check "$d's transfer continues from what it holds, not from 0" \
        wait_until 30 "grep -Eq 'device=$d release=[0-9a-f]+ accepted, sending from fragment [1-9][0-9]* of $frags\$' '$T/gateway.log'"
done
check "dev-002 resumed the delta from its checkpoint (a fragment > 0 of $frags)" \
    grep -Eq "resuming release=[0-9a-f]+ from fragment [1-9][0-9]* of $frags\$" "$T/dev-002.log"
check "both commit 1.2.0" wait_until 120 "all_devices committed 1.2.0 ${ids[*]}"
for d in "${ids[@]}"; do
    check "$d holds the exact image" cmp -s "$T/b.bin" "$T/dev/$d/active/payload"
    check "$d's last update travelled as a delta" test "$(dev_field "$d" encoding)" = delta
done
check "the restarted gateway read the delta back from its store, not made again" \
    grep -q 'delta from 1.1.0 .*(from the store' "$T/gateway.log"
accepts=$(cat "$T/dev-001.log" "$T/dev-002-2.log" "$T/dev-002.log" |
    grep 'accepted release=.* version=1.2.0 ' || true)
check "the devices accepted 1.2.0 only as the delta from 1.1.0, each time" \
    bash -c "[ -n '$accepts' ] && ! grep -v 'encoding=delta base=1.1.0' <<<'$accepts' | grep -q ."
i=0
for d in "${ids[@]}"; do
    # After the restart: what the device did not hold, a frame at most again (a resume
    # restarts at its frame; 6 frames) and a window; starting over would be all $frags.
    sent=$(sed -n "s/.*device=$d release=.* all $frags fragments acknowledged (sent=\([0-9]*\) resent=\([0-9]*\).*/\1 \2/p" \
        "$T/gateway.log" | tail -1)
    n=$(( ${sent% *} + ${sent#* } ))
    left=$((frags - held[i]))
    echo "# $d: held ${held[i]} of $frags at the kill; $n fragments sent after the restart"
    check "$d did not start over ($n sent after the restart; $left were missing)" \
        test "$n" -gt 0 -a "$n" -le $((left + frags / 6 + 16))
    i=$((i + 1))
done
dup=$(sed -n 's/.*download complete ([0-9]* fragments, \([0-9]*\) duplicates.*/\1/p' "$T/dev-001.log")
# Only what was in flight when the gateway died can come twice (the new gateway's
# first send and the device's first ack cross).
check "dev-001 (kept running) took almost nothing twice (${dup:-?} duplicates)" \
    test "${dup:-99}" -le 16
check "the ledger is consistent (fsck)" gw_fsck
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
finish
