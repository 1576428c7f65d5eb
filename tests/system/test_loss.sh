#!/usr/bin/env bash
# Loss never stalls a transfer: devices that drop 10% of the fragments at random (a
# test-only fault option, fixed seed) all complete, and the fragments sent again stay
# close to the fragments lost.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002 dev-003)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start ${GW_FLAGS:-}
for d in "${ids[@]}"; do device_start "$d" 1.0.0 --test-drop-percent 10 --test-seed 7; done
check "devices online" wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"
make_payload "$T/fw.bin" 1048576
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota" ',"fragment_size":1024,"window":32'
check "every device completes despite 10% loss" \
    wait_until 120 "all_devices committed 1.1.0 ${ids[*]}"
for d in "${ids[@]}"; do
    check "$d: exact payload" cmp -s "$T/fw.bin" "$T/dev/$d/active/payload"
done
resent=$(gw_status_json | jq '[.devices[].frags_resent] | add')
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
dropped=0
for d in "${ids[@]}"; do
    n=$(sed -n 's/.*stats frags_ok=[0-9]* dup=[0-9]* dropped_test=\([0-9]*\).*/\1/p' "$T/$d.log" |
        awk '{ s += $1 } END { print s + 0 }')
    dropped=$((dropped + n))
done
ratio=$(awk -v r="$resent" -v d="$dropped" 'BEGIN { printf "%.2f", d ? r / d : 0 }')
echo "# 3 x 1024 fragments, 10% dropped: dropped=$dropped resent=$resent ratio=$ratio"
check "fragments were really dropped (about 10% of 3072 and their resends)" \
    test "$dropped" -ge 250
check "resent / lost = $ratio stays close to 1 (at most 1.5)" \
    awk -v r="$ratio" 'BEGIN { exit !(r >= 1.0 && r <= 1.5) }'
finish
