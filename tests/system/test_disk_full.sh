#!/usr/bin/env bash
# Storage: a package larger than the free space is refused before the download; a disk
# that fills up during the download fails the update cleanly with the reason, and the
# running version is untouched. The device's state lives on a small tmpfs of its own.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001 dev-002
broker_start || { not_ok "broker starts"; finish; }
small_fs 3m "$T/small1" 3m "$T/small2" || { not_ok "mount tmpfs"; finish; }
check "gateway starts" gateway_start
spawn dev-001 "$DEV" --id dev-001 --product sensor --version 1.0.0 --broker-host localhost \
    --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt" \
    --cert-file "$CERTS/devices/dev-001.crt" --key-file "$CERTS/devices/dev-001.key" \
    --publisher-key "$CERTS/publisher.pub" --state-dir "$T/small1/state"
spawn dev-002 "$DEV" --id dev-002 --product sensor --version 1.0.0 --broker-host localhost \
    --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt" \
    --cert-file "$CERTS/devices/dev-002.crt" --key-file "$CERTS/devices/dev-002.key" \
    --publisher-key "$CERTS/publisher.pub" --state-dir "$T/small2/state"
check "devices online" wait_until 10 'all_devices idle 1.0.0 dev-001 dev-002'

# Too big to fit at all: refused before a byte is written.
make_payload "$T/big.bin" 8388608
pack sensor 2.0.0 "$T/big.bin" "$T/big.ota"
announce sensor "file://$T/big.ota" ',"devices":["dev-001"]'
check "a package larger than the free space is refused up front" \
    wait_until 20 '[ "$(dev_field dev-001 state)" = failed ]'
error_starts() { [[ "$(dev_field "$1" error)" == "$2"* ]]; }
error_has() { [[ "$(dev_field "$1" error)" == *"$2"* ]]; }
check "with the reason" error_starts dev-001 'not enough storage: '
check "and no fragment was written" \
    test "$(find "$T/small1/state" -name 'payload.part' -size +0 | wc -l)" = 0

# Fits the free-space check, then the disk fills up under it.
make_payload "$T/mid.bin" 1572864
pack sensor 2.1.0 "$T/mid.bin" "$T/mid.ota"
dd if=/dev/zero of="$T/small2/filler" bs=1k count=256 2>/dev/null # leaves ~2.7 MiB
announce sensor "file://$T/mid.ota" ',"devices":["dev-002"],"fragment_size":256,"window":1'
check "the download starts" wait_until 20 '[ "$(dev_field dev-002 acked)" -gt 10 ] 2>/dev/null'
dd if=/dev/zero of="$T/small2/filler2" bs=1k count=8192 2>/dev/null # the disk is full now
check "the update fails cleanly when the disk fills" \
    wait_until 30 '[ "$(dev_field dev-002 state)" = failed ]'
check "with the reason" error_has dev-002 'No space left on device'
check "the running version is untouched" \
    test "$(jq -r '"\(.version) \(.slot)"' "$T/small2/state/state.json")" = "1.0.0 a"
check "the partial download was removed" test ! -e "$T/small2/state/slot-b/payload.part"
rm -f "$T/small2/filler" "$T/small2/filler2"
check "both devices still report 1.0.0" \
    test "$(dev_field dev-001 version) $(dev_field dev-002 version)" = "1.0.0 1.0.0"
check "everything stops cleanly" stop_all_clean gateway dev-001 dev-002
check "the gateway's ledger is consistent (fsck)" gw_fsck
finish
