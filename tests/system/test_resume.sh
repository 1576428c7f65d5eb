#!/usr/bin/env bash
# Power cut mid-download: the device is SIGKILLed, started again, and resumes from its
# last checkpoint instead of fragment 0; the installed image is exact.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
device_start dev-001 1.0.0 --checkpoint-every 16
check "device reports idle" wait_until 10 'all_devices idle 1.0.0 dev-001'

make_payload "$T/fw.bin" 1048576
pack sensor 2.0.0 "$T/fw.bin" "$T/pkg.ota"
# Small fragments and a window of 2 keep the transfer long enough to cut it.
announce sensor "file://$T/pkg.ota" ',"fragment_size":512,"window":2'
check "the download is under way" \
    wait_until 30 '[ "$(dev_field dev-001 acked)" -ge 300 ] 2>/dev/null'
kill -9 "$(pid_of dev-001)"
held=$(jq -r .held "$T/dev/dev-001/state.json")
# 2048 payload fragments, after the 16 that carry the block table (256 x 32 bytes).
total=$(jq -r '.fragments + .table_fragments' "$T/dev/dev-001/state.json")
check "the transfer is 16 table + 2048 payload fragments ($total)" test "$total" -eq 2064
check "a checkpoint survived the power cut (held=$held)" test "$held" -ge 16
mv "$T/dev-001.log" "$T/dev-001-before.log"
device_start dev-001 1.0.0 --checkpoint-every 16
check "the device resumes from its checkpoint, not from 0" \
    wait_until 10 "grep -q 'resuming release=.* from fragment $held of $total' '$T/dev-001.log'"
check "it ends committed on 2.0.0" wait_until 90 'all_devices committed 2.0.0 dev-001'
check "with the exact payload" cmp -s "$T/fw.bin" "$T/dev/dev-001/active/payload"
sent=$(dev_field dev-001 frags_sent)
check "fragments sent in all: $sent, at most $total + what was unconfirmed at the cut" \
    test "$sent" -le $((total + $(dev_field dev-001 acked) - held + 64))
# What the device lost at the cut went again: counted as resent, so that the first sends
# are the fragments, once each.
resent=$(dev_field dev-001 frags_resent)
echo "# sent $sent, of which resent $resent, for $total fragments"
check "what went again after the restart counts as resent ($sent - $resent <= $total)" \
    test $((sent - resent)) -le "$total" -a "$resent" -ge 1
check "gateway and device stop cleanly" stop_all_clean gateway dev-001
finish
