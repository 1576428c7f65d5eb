#!/usr/bin/env bash
# Disk full on the gateway. Its package store and its ledger each live on a small tmpfs
# of their own.
# Store: a package that does not fit is refused with the reason (log and event log), its
# partial copy is removed, and the gateway goes on serving the release under way and the
# next one that fits.
# Ledger: with the ledger's file system full, commits fail with the reason and are kept
# (nothing half-written: fsck finds the on-disk ledger consistent meanwhile), the gateway
# keeps serving devices from memory without flooding its log, and once space is freed
# the ledger catches up by itself and is consistent.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001 dev-002
broker_start || { not_ok "broker starts"; finish; }
small_fs 3m "$T/gw-store" 1m "$T/gw-db" || { not_ok "mount tmpfs"; finish; }
check "gateway starts with its store and ledger on small file systems" gateway_start
device_start dev-001 1.0.0
device_start dev-002 1.0.0 --product meter
check "devices online" wait_until 10 'all_devices idle 1.0.0 dev-001 dev-002'
events_of() { gw_status_json | jq -r ".events[] | select(.event == \"$1\") | .detail"; }

# --- the package store fills up -------------------------------------------------------------
make_payload "$T/s11.bin" 1048576
pack sensor 1.1.0 "$T/s11.bin" "$T/s11.ota"
announce sensor "file://$T/s11.ota" ',"fragment_size":1024,"window":2'
check "sensor 1.1.0 (1 MiB) is stored and dev-001's transfer starts" \
    wait_until 20 '[ "$(dev_field dev-001 acked)" -gt 10 ] 2>/dev/null'
used_before=$(df --output=used -k "$T/gw-store" | tail -n 1)
make_payload "$T/m11.bin" 4194304
pack meter 1.1.0 "$T/m11.bin" "$T/m11.ota"
announce meter "file://$T/m11.ota"
check "meter 1.1.0 (4 MiB, more than the store holds) is refused" \
    wait_until 20 "grep -q 'release REFUSED product=meter' '$T/gateway.log'"
check "  with the reason in the log" \
    grep -q 'release REFUSED product=meter .*reason="write to store: No space left on device"' "$T/gateway.log"
check "  and in the event log" \
    wait_until 5 '[ "$(events_of release_refused)" = "write to store: No space left on device" ]'
check "  its partial copy is removed (no temporary file, the space is free again)" \
    test -z "$(find "$T/gw-store" -name '.fetch-*')" -a \
    "$(df --output=used -k "$T/gw-store" | tail -n 1)" -le $((used_before + 64))
check "  no release was recorded for it" \
    test "$(gw_status_json | jq '[.releases[] | select(.product == "meter")] | length')" = 0
check "dev-002 was offered nothing" test "$(dev_field dev-002 state)" = idle
check "the gateway is still running" alive gateway
check "the transfer under way completes: dev-001 commits sensor 1.1.0" \
    wait_until 60 'all_devices committed 1.1.0 dev-001'
check "  with the exact payload" cmp -s "$T/s11.bin" "$T/dev/dev-001/active/payload"
make_payload "$T/m12.bin" 524288
pack meter 1.2.0 "$T/m12.bin" "$T/m12.ota"
announce meter "file://$T/m12.ota"
check "a meter release that fits is served: dev-002 commits meter 1.2.0" \
    wait_until 60 'all_devices committed 1.2.0 dev-002'
check "  with the exact payload" cmp -s "$T/m12.bin" "$T/dev/dev-002/active/payload"
for f in "$T"/gw-store/*.ota; do
    check "stored package ${f##*/} is intact" \
        bash -c "cmp -s '$f' '$T/s11.ota' || cmp -s '$f' '$T/m12.ota'"
done
check "the ledger is consistent (fsck)" gw_fsck

# --- the ledger's file system fills up ------------------------------------------------------
# On a fresh ledger (a new 1 MiB file system, the gateway restarted on it), which has
# few free pages of its own to reuse: the big release record below must grow the file.
check "the gateway stops cleanly" stop_all_clean gateway
umount "$T/gw-db" && mount -t tmpfs -o size=1m tmpfs "$T/gw-db" || { not_ok "remount tmpfs"; finish; }
mv "$T/gateway.log" "$T/gateway-1.log"
check "the gateway starts on a fresh ledger" gateway_start
check "  and learns the devices from their statuses" \
    wait_until 10 'all_devices committed 1.1.0 dev-001 && all_devices committed 1.2.0 dev-002'
dd if=/dev/zero of="$T/gw-db/filler" bs=4k 2>/dev/null
check "the ledger's file system is full" test "$(df --output=avail -k "$T/gw-db" | tail -n 1 | tr -d " ")" = 0
free_kib=$(($(mdb_stat -f "$T/gw-db" | sed -n 's/^ *Free pages: //p') * 4))
ledger_before=$(gw_status_json | jq -c '[.releases | length, ([.events[]] | length)]')
# A release whose record needs new pages: its device list names 4096 devices (~270 KB),
# more than the ledger has free inside its file.
pad=$(printf 'x%.0s' {1..58})
targets=$(printf '"dev-001"'; for ((i = 2; i <= 4096; i++)); do printf ',"%s-%04d"' "$pad" "$i"; done)
check "the record will not fit the ledger's free pages ($free_kib KiB)" test "$free_kib" -lt 200
make_payload "$T/s12.bin" 262144
pack sensor 1.2.0 "$T/s12.bin" "$T/s12.ota"
# (~270 KB: from a file, as one argument may not exceed 128 KiB)
echo "{\"url\":\"file://$T/s12.ota\",\"devices\":[$targets]}" >"$T/announce.json"
check "the operator announces sensor 1.2.0 for 4096 devices" \
    mq_pubf_as operator ota/release/sensor "$T/announce.json" -q 1
check "the ledger commit fails with the reason, and keeps the batch" \
    wait_until 20 "grep -Eq 'ledger: LMDB commit of [0-9]+ records: (No space left on device|Input/output error).*the batch is kept' '$T/gateway.log'"
check "the gateway keeps serving from memory: dev-001 commits sensor 1.2.0" \
    wait_until 60 '[ "$(jq -r .version "$T/dev/dev-001/state.json")" = 1.2.0 ] &&
        [ "$(jq -r .phase "$T/dev/dev-001/state.json")" = committed ]'
check "  with the exact payload" cmp -s "$T/s12.bin" "$T/dev/dev-001/active/payload"
sleep 3 # a few seconds of a full disk, to see what the log makes of it
check "the gateway is still running" alive gateway
check "status still reads the ledger, as last committed (nothing of 1.2.0 half-written)" \
    test "$(gw_status_json | jq -c '[.releases | length, ([.events[]] | length)]')" = "$ledger_before"
check "the on-disk ledger is consistent while commits fail (fsck)" gw_fsck
warns=$(grep -c 'ledger: ' "$T/gateway.log")
echo "# ledger warnings while the disk was full: $warns"
check "commit failures are retried and logged at a bounded rate (<= 10 lines, saw $warns)" \
    test "$warns" -le 10
rm -f "$T/gw-db/filler"
check "once space is freed the ledger catches up: sensor 1.2.0 recorded, dev-001 committed on it" \
    wait_until 40 'all_devices committed 1.2.0 dev-001'
check "  and the log says the ledger is written again" grep -q 'ledger: written again' "$T/gateway.log"
check "the ledger is consistent (fsck)" gw_fsck
check "everything stops cleanly" stop_all_clean gateway dev-001 dev-002
check "the ledger is consistent after the stop (fsck)" gw_fsck
check "mdb_stat reads it" mdb_stat -a "$T/gw-db"
finish
