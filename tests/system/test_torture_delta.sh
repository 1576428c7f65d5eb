#!/usr/bin/env bash
# ota-test-timeout: 900
# Power-cut torture on a delta update (proto/PROTOCOL.md 6.4): test_torture.sh's 30 cuts
# (fixed seed: 17 at random moments of the download, then every named point of verify,
# install, slot switch, restart, health check and commit), while the device rebuilds an
# 4 MiB image from a delta against the image it runs, read from its active slot. It must
# always have a runnable version, end committed with the exact image, and each cut may
# cost at most one window, one checkpoint interval and the frame being decoded (a resume
# restarts at the first frame not written: fragments sent again).
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"
. "$OTA_ROOT/tests/system/torture.sh"

torture_start
# The base, 1.1.0, taken whole; then 1.2.0: every other 64 KiB of it new, the rest as in
# 1.1.0 (so the delta is about half the image and every frame as big as the next).
make_payload "$T/base.bin" 4194304
pack sensor 1.1.0 "$T/base.bin" "$T/base.ota"
announce sensor "file://$T/base.ota"
check "the base 1.1.0 is committed" wait_until 120 'all_devices committed 1.1.0 dev-001'
openssl enc -aes-128-ctr -nosalt -pass pass:torture-delta -pbkdf2 -in /dev/zero 2>/dev/null |
    head -c 4194304 >"$T/new.bin"
for ((i = 0; i < 64; i += 2)); do
    dd if="$T/base.bin" of="$T/new.bin" bs=65536 skip=$i seek=$i count=1 conv=notrunc 2>/dev/null
done
mv "$T/new.bin" "$T/fw.bin"
OLD=$(readlink "$T/dev/dev-001/active") # the slot holding 1.1.0, the delta's base
pack sensor 1.2.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota" ",\"fragment_size\":256,\"window\":$WINDOW"
check "1.2.0 is offered as a delta" \
    wait_until 60 "grep -q 'device=dev-001 accepted release=.*encoding=delta base=1.1.0' '$T/dev-001.log'"

# Runnable: the active slot holds 1.1.0 (the base, complete) or 1.2.0 (complete).
runnable() {
    local slot
    slot=$(readlink "$T/dev/dev-001/active" 2>/dev/null) || return 1
    case $(cat "$T/dev/dev-001/$slot/version" 2>/dev/null) in
    1.1.0) cmp -s "$T/base.bin" "$T/dev/dev-001/$slot/payload" ;;
    1.2.0) cmp -s "$T/fw.bin" "$T/dev/dev-001/$slot/payload" ;;
    *) return 1 ;;
    esac
}
# 30-180 ms apart: on a fast machine a resumed download ends within a few tenths of a
# second, and the 17 random cuts must all fall into it (a slow one gets them sooner).
torture_cuts 30 150
torture_check_cuts
check "it ends committed on 1.2.0" wait_until 60 'all_devices committed 1.2.0 dev-001'
check "with the exact image" cmp -s "$T/fw.bin" "$T/dev/dev-001/active/payload"
check "the base's slot still holds 1.1.0 (read, never written)" cmp -s "$T/base.bin" "$T/dev/dev-001/$OLD/payload"
check "the update travelled as a delta" test "$(dev_field dev-001 encoding)" = delta
TOTAL=$(dev_field dev-001 fragments)
read -r sent extra dl per <<<"$(torture_per_cut)"
# A frame rebuilds 256 KiB (64 blocks); 16 frames of about the same size here, after 128
# table fragments.
frame=$(((TOTAL - 128) / 16 + 1))
bound=$((WINDOW + CKPT + frame))
echo "# fragments sent: $sent for $TOTAL; $extra again over $dl download cuts = $per per cut (bound $bound: a frame is about $frame fragments)"
check "the delta is about half the image ($TOTAL fragments of 256 bytes for 4 MiB)" \
    test "$TOTAL" -lt 10000 -a "$TOTAL" -gt 6000
check "resent per download cut ($per) within one window + one checkpoint interval + one frame ($bound)" \
    awk -v p="$per" -v b=$bound 'BEGIN { exit !(p <= b) }'
check "at least 30 cuts ($kills)" test "$kills" -ge 30
check "device and gateway stop cleanly" stop_all_clean gateway dev-001
check "the gateway's ledger is consistent (fsck)" gw_fsck
finish
