#!/usr/bin/env bash
# Power-cut torture: a device is SIGKILLed 30 times (fixed seed): at 17 random moments of
# the download, then at every named point of verify, install, slot switch, restart,
# health check and commit, and started again each time. It
# must always have a runnable version, end committed on the new one with the exact
# payload, and each cut may cost at most one window plus one checkpoint interval of
# fragments sent again, plus the fragments of the one block still being assembled (only
# blocks that passed their digest check are ever on disk).
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"
. "$OTA_ROOT/tests/system/torture.sh"

FPB=16      # fragments per 4 KiB block at 256 bytes
TOTAL=33024 # 8 MiB in 256-byte fragments: 256 carry the block table, 32768 the payload
torture_start
make_payload "$T/fw.bin" 8388608
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota" ",\"fragment_size\":256,\"window\":$WINDOW"

# Runnable: the active slot is the factory slot (slot-a, 1.0.0, as shipped) or a slot
# whose version file and payload are complete for the version it names.
runnable() {
    local slot
    slot=$(readlink "$T/dev/dev-001/active" 2>/dev/null) || slot=slot-a
    case $slot in
    slot-a) [ ! -e "$T/dev/dev-001/slot-a/version" ] || cmp -s "$T/fw.bin" "$T/dev/dev-001/slot-a/payload" ;;
    slot-b) [ "$(cat "$T/dev/dev-001/slot-b/version")" = 1.1.0 ] && cmp -s "$T/fw.bin" "$T/dev/dev-001/slot-b/payload" ;;
    *) return 1 ;;
    esac
}
torture_cuts 50 400
torture_check_cuts
check "it ends committed on 1.1.0" wait_until 60 'all_devices committed 1.1.0 dev-001'
check "with the exact payload" cmp -s "$T/fw.bin" "$T/dev/dev-001/active/payload"
read -r sent extra dl per <<<"$(torture_per_cut)"
bound=$((WINDOW + CKPT + FPB))
echo "# fragments sent: $sent for $TOTAL; $extra again over $dl download cuts = $per per cut (bound $bound)"
check "the transfer is $TOTAL fragments" test "$(jq -r '.fragments + .table_fragments' "$T/dev/dev-001/state.json")" = "$TOTAL"
check "resent per download cut ($per) within one window + one checkpoint interval + one block ($bound)" \
    awk -v p="$per" -v b=$bound 'BEGIN { exit !(p <= b) }'
check "device and gateway stop cleanly" stop_all_clean gateway dev-001
check "the gateway's ledger is consistent (fsck)" gw_fsck
finish
