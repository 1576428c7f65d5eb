#!/usr/bin/env bash
# A damaged state.json after a power cut: the checkpoint `held` names more fragments
# than the transfer has, while the slot file is full size and the block table intact.
# The device refuses the file with a clear error naming the member, instead of marking
# fragments past the end of its bitmap (a heap overflow before fuzz_state found it);
# with the file moved away it starts again from its configured version.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
device_start dev-001 1.0.0 --checkpoint-every 16
check "device reports idle" wait_until 10 'all_devices idle 1.0.0 dev-001'

make_payload "$T/fw.bin" 1048576
pack sensor 2.0.0 "$T/fw.bin" "$T/pkg.ota"
announce sensor "file://$T/pkg.ota" ',"fragment_size":512,"window":2'
check "the download is under way" \
    wait_until 30 '[ "$(jq -r .held "$T/dev/dev-001/state.json")" -ge 32 ] 2>/dev/null'
kill -9 "$(pid_of dev-001)"
stop gateway || true
S=$T/dev/dev-001/state.json
total=$(jq -r '.fragments + .table_fragments' "$S")
jq -c --argjson h $((total + 100000)) '.held = $h' "$S" >"$T/state.new" && mv "$T/state.new" "$S"
truncate -s 1048576 "$T/dev/dev-001/slot-b/payload.part"
mv "$T/dev-001.log" "$T/dev-001-before.log"

device_start dev-001 1.0.0 --checkpoint-every 16
check "the device stops at once" wait_until 20 '! kill -0 "$(pid_of dev-001)" 2>/dev/null'
check "with an error naming the damaged member" \
    grep -q "state.json is damaged ('held' $((total + 100000)) is more than the" "$T/dev-001.log"
check "and no sanitizer report" bash -c "! grep -q 'Sanitizer\|runtime error:' '$T/dev-001.log'"
stop dev-001 || true

mv "$S" "$T/state.damaged"
mv "$T/dev-001.log" "$T/dev-001-damaged.log"
device_start dev-001 1.0.0
check "with the file moved away it starts on its configured version" \
    wait_until 20 '[ "$(jq -r .version "$S" 2>/dev/null) $(jq -r .phase "$S" 2>/dev/null)" = "1.0.0 idle" ]'
check "device stops cleanly" stop_all_clean dev-001
finish
