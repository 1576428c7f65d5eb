#!/usr/bin/env bash
# Authentication before the write. The signed manifest commits to a table of 4 KiB block
# digests; the table travels first and every block is checked against it before it
# touches the slot. A corrupted or forged block is dropped, asked for again and counted,
# never written; a package without a table is refused by the gateway and by the device.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

stat_of() { # stat_of LOG NAME: the largest "stats" value NAME= in a device log
    sed -n "s/.* stats .*[ ]$2=\([0-9]*\).*/\1/p" "$1" | sort -n | tail -1
}

certs_make dev-001 dev-002 dev-003 dev-004
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start

# --- 1. A corrupting link: 5% of the fragments arrive with one byte flipped. Three
# fragment sizes: smaller than a block and not dividing it (1000 B: blocks span
# fragment boundaries), equal to it, and larger (16 KiB: four blocks per fragment).
device_start dev-001 1.0.0 --test-corrupt-percent 5 --test-seed 11
device_start dev-002 1.0.0 --test-corrupt-percent 5 --test-seed 12
device_start dev-003 1.0.0 --test-corrupt-percent 5 --test-seed 13
check "devices report idle" wait_until 15 'all_devices idle 1.0.0 dev-001 dev-002 dev-003'
make_payload "$T/fw.bin" 1048576
pack sensor 2.0.0 "$T/fw.bin" "$T/pkg.ota"
check "pack signs a table of 256 blocks of 4096 bytes" \
    sh -c "'$GW' verify --pubkey '$CERTS/publisher.pub' '$T/pkg.ota' | grep -q 'blocks   256 x 4096 bytes (table verified)'"
announce sensor "file://$T/pkg.ota" ',"fragment_size":1000,"window":32,"devices":["dev-001"]'
check "dev-001 (1000-byte fragments) ends committed on 2.0.0" \
    wait_until 60 'all_devices committed 2.0.0 dev-001'
pack sensor 2.0.1 "$T/fw.bin" "$T/pkg2.ota"
announce sensor "file://$T/pkg2.ota" ',"fragment_size":4096,"window":16,"devices":["dev-002"]'
pack sensor 2.0.2 "$T/fw.bin" "$T/pkg3.ota"
announce sensor "file://$T/pkg3.ota" ',"fragment_size":16384,"window":8,"devices":["dev-003"]'
check "dev-002 (4 KiB fragments) ends committed on 2.0.1" \
    wait_until 60 'all_devices committed 2.0.1 dev-002'
check "dev-003 (16 KiB fragments) ends committed on 2.0.2" \
    wait_until 60 'all_devices committed 2.0.2 dev-003'
for d in dev-001 dev-002 dev-003; do
    check "$d holds the exact payload" cmp -s "$T/fw.bin" "$T/dev/$d/active/payload"
done
check "the devices stop cleanly" stop_all_clean dev-001 dev-002 dev-003
for d in dev-001 dev-002 dev-003; do
    bad=$(stat_of "$T/$d.log" blocks_bad) good=$(stat_of "$T/$d.log" blocks_ok)
    corrupted=$(stat_of "$T/$d.log" corrupted_test) tables=$(stat_of "$T/$d.log" tables_bad)
    echo "# $d: corrupted fragments=$corrupted, blocks refused=$bad, tables refused=$tables, blocks written=$good"
    check "$d: corrupted fragments were caught ($corrupted corrupted, $bad blocks + $tables tables refused)" \
        test "${corrupted:-0}" -gt 0 -a "$((${bad:-0} + ${tables:-0}))" -gt 0
    # Each of the 256 blocks went into the slot exactly once: none of the refused ones.
    check "$d: every block was written once, after its check ($good of 256)" test "${good:-0}" -eq 256
    check "$d: refusals are logged with the block and the fragments asked for again" \
        sh -c "[ \$(grep -c 'does not match the signed block table: dropped' '$T/$d.log') -eq ${bad:-0} ]"
done
reneged_devs=$(gw_status_json | jq '[.devices[] | select(.device=="dev-001" or .device=="dev-002" or .device=="dev-003") | .frags_resent] | add')
check "the gateway sent the refused fragments again ($reneged_devs resent)" test "$reneged_devs" -gt 0

# --- 2. Forged fragments on the wire: dev-004 sits behind a link with a 60 ms round trip
# and downloads stop-and-wait (512-byte fragments, window 1). Fragments with the right
# release tag and an index a few ahead of the device, but forged bytes, are published on
# its topic with a credential that may publish there, so they arrive before the genuine
# ones. The device keeps what arrives first: the forged bytes are held, found out at the
# block check, dropped and fetched again; none is ever written to the slot.
LE_PORT=$(free_port)
spawn linkemu "$BUILD/tools/linkemu" --listen "127.0.0.1:$LE_PORT" \
    --connect "127.0.0.1:$BROKER_PORT" --rtt-ms 60
check "the link emulator listens" wait_until 10 "grep -q 'info listening' '$T/linkemu.log'"
device_start dev-004 1.0.0 --broker-port "$LE_PORT"
check "dev-004 reports idle (through the link)" wait_until 15 'all_devices idle 1.0.0 dev-004'
make_payload "$T/small.bin" 65536
pack sensor 3.0.0 "$T/small.bin" "$T/pkg4.ota"
announce sensor "file://$T/pkg4.ota" ',"fragment_size":512,"window":1,"devices":["dev-004"]'
check "dev-004 starts downloading" wait_until 20 '[ "$(dev_field dev-004 acked)" -ge 8 ] 2>/dev/null'
rel=$(dev_field dev-004 release)
tag=$(printf '%s' "$rel" | cut -c1-8) # release id bytes 0..3 = the tag, little-endian on the wire
head -c 512 /dev/zero | tr '\0' 'F' >"$T/junk"
forged=0
for round in 1 2 3 4 5 6 7 8; do
    i=$(($(dev_field dev-004 acked) + 6))
    [ "$i" -lt 125 ] || break
    { printf '\x11'
      printf "\\x${tag:0:2}\\x${tag:2:2}\\x${tag:4:2}\\x${tag:6:2}"
      printf "\\x$(printf %02x $((i & 255)))\\x$(printf %02x $(((i >> 8) & 255)))\\x00"
      cat "$T/junk"; } >"$T/forged"
    mq_pubf_as injector "ota/dev/dev-004/frag" "$T/forged" -q 0 && forged=$((forged + 1))
    sleep 0.4
done
check "dev-004 ends committed on 3.0.0 despite the forgeries" \
    wait_until 60 'all_devices committed 3.0.0 dev-004'
check "dev-004 holds the exact payload" cmp -s "$T/small.bin" "$T/dev/dev-004/active/payload"
check "dev-004 stops cleanly" stop_all_clean dev-004
bad=$(stat_of "$T/dev-004.log" blocks_bad) good=$(stat_of "$T/dev-004.log" blocks_ok)
echo "# dev-004: forged fragments published=$forged, blocks refused=$bad, blocks written=$good"
check "forged blocks were refused ($bad of $forged forgeries) and never written: 16 blocks written once ($good)" \
    test "${bad:-0}" -ge 1 -a "${good:-0}" -eq 16
stop linkemu >/dev/null || true

# --- 3. No table, no update. A package signed with the right key but without a block
# table (as an older packer made them): the gateway refuses it, and a device offered
# its manifest directly refuses it too.
printf '%s' "{\"format\":1,\"product\":\"sensor\",\"version\":\"9.0.0\",\"size\":1048576,\"sha256\":\"$(sha256sum "$T/fw.bin" | cut -c1-64)\",\"created\":1700000000}" >"$T/old.json"
openssl pkeyutl -sign -inkey "$CERTS/publisher.key" -rawin -in "$T/old.json" -out "$T/old.sig"
mlen=$(stat -c %s "$T/old.json")
{ printf 'OTAPKG01'
  printf "\\x$(printf %02x $((mlen & 255)))\\x$(printf %02x $((mlen >> 8)))\\x00\\x00"
  printf '\x40\x00\x00\x00'
  cat "$T/old.json" "$T/old.sig" "$T/fw.bin"; } >"$T/old.ota"
check "ota-gateway verify reports the missing table" \
    sh -c "'$GW' verify --pubkey '$CERTS/publisher.pub' '$T/old.ota' | grep -q 'blocks   none'"
announce sensor "file://$T/old.ota"
check "the gateway refuses a package without a block table" \
    wait_until 10 "grep -q 'release REFUSED.*package has no block table' '$T/gateway.log'"
check "and records why in the event log" \
    sh -c "'$GW' status --db '$T/gw-db' --json --events 50 | grep -q 'package has no block table'"
device_start dev-001 2.0.0 --test-corrupt-percent 0
check "dev-001 is back, committed on 2.0.0" wait_until 15 'all_devices committed 2.0.0 dev-001'
rid=$(sha256sum "$T/old.json" | cut -c1-16)
jq -cn --rawfile m "$T/old.json" --arg r "$rid" --arg s "$(od -An -tx1 -v "$T/old.sig" | tr -d ' \n')" \
    '{release:$r, manifest:$m, sig:$s, fragment_size:4096, fragments:256, window:8}' >"$T/offer.json"
mq_pubf_as injector "ota/dev/dev-001/offer" "$T/offer.json" -q 1
check "the device refuses a signed manifest without a block table" \
    wait_until 10 "grep -q 'REFUSED: package has no block table' '$T/dev-001.log'"
check "and stays on 2.0.0" test "$(jq -r .version "$T/dev/dev-001/state.json")" = 2.0.0
check "gateway and device stop cleanly" stop_all_clean gateway dev-001
finish
