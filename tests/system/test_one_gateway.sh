#!/usr/bin/env bash
# One gateway per ledger (and per store): a second `ota-gateway run` on the same db_dir or
# store_dir exits at once, status 1, naming the running one's pid; the readers (status,
# fsck) still work while the gateway runs; the first gateway carries on, the ledger stays
# consistent.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001
broker_start || { not_ok "broker starts"; finish; }
check "the first gateway starts" gateway_start
gw1=$(pid_of gateway)
device_start dev-001 1.0.0
check "device online" wait_until 10 "all_devices idle 1.0.0 dev-001"
check "the lock file in db_dir holds its pid" test "$(cat "$T/gw-db/ota-gateway.lock")" = "$gw1"

# second NAME DB STORE: another gateway on those directories, as process NAME.
second() {
    spawn "$1" "$GW" run --broker-host localhost --broker-port "$BROKER_PORT" \
        --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/gateway.crt" \
        --key-file "$CERTS/gateway.key" --publisher-key "$CERTS/publisher.pub" \
        --db-dir "$2" --store-dir "$3" --file-dirs "$T"
}
exit_status() {
    local rc=0
    stop "$1" || rc=$?
    echo "$rc"
}

second gw2 "$T/gw-db" "$T/gw-store"
check "a second gateway on the same ledger exits at once" wait_until 5 '! alive gw2'
check "with status 1" test "$(exit_status gw2)" = 1
check "naming the running gateway's pid" \
    grep -q "db_dir $T/gw-db is in use by another ota-gateway (pid $gw1, lock $T/gw-db/ota-gateway.lock): one gateway per db_dir" \
    "$T/gw2.log"
check "and it never connected" bash -c "! grep -q 'mqtt connected' '$T/gw2.log'"

second gw3 "$T/gw-db-2" "$T/gw-store"
check "a second gateway on the same store (another ledger) exits at once" wait_until 5 '! alive gw3'
check "with status 1" test "$(exit_status gw3)" = 1
check "naming the store and the pid" \
    grep -q "store_dir $T/gw-store is in use by another ota-gateway (pid $gw1" "$T/gw3.log"

check "status reads the ledger while the gateway runs" \
    bash -c "'$GW' status --db '$T/gw-db' | grep -q dev-001"
check "fsck too, and finds it consistent" gw_fsck

make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota"
check "the first gateway carries on: the device commits 1.1.0" \
    wait_until 30 "all_devices committed 1.1.0 dev-001"
check "one gateway handled it" test "$(grep -c 'verified and stored' "$T/gateway.log")" = 1
check "fsck: the ledger is consistent" gw_fsck
check "everything stops cleanly" stop_all_clean gateway dev-001

second gw4 "$T/gw-db" "$T/gw-store"
check "once the first has stopped, another may take the ledger" \
    wait_until 10 "grep -q 'mqtt connected' '$T/gw4.log'"
check "everything stops cleanly" stop_all_clean gw4
finish
