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
# dropped: every fragment the devices threw away (the coin falls on whatever arrives);
# lost: those their transfer would have taken, the losses the gateway must repair (not a
# duplicate, nor a group's fragment beyond a device's window: those it ignores anyway).
dropped=0
lost=0
for d in "${ids[@]}"; do
    for k in dropped_test lost_test; do
        n=$(grep -o "stats frags_ok=.* $k=[0-9]*" "$T/$d.log" | sed "s/.* $k=//" |
            awk '{ s += $1 } END { print s + 0 }')
        if [ "$k" = dropped_test ]; then dropped=$((dropped + n)); else lost=$((lost + n)); fi
    done
done
ratio=$(awk -v r="$resent" -v d="$lost" 'BEGIN { printf "%.2f", d ? r / d : 0 }')
echo "# 3 x 1024 fragments, 10% dropped: dropped=$dropped lost=$lost resent=$resent ratio=$ratio"
check "fragments were really dropped (about 10% of 3072 and their resends)" \
    test "$lost" -ge 250
check "  every one counted as lost was dropped ($lost of $dropped)" test "$lost" -le "$dropped"
check "resent / lost = $ratio stays close to 1 (at most 1.5)" \
    awk -v r="$ratio" 'BEGIN { exit !(r >= 1.0 && r <= 1.5) }'
finish
