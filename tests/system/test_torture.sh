#!/usr/bin/env bash
# Power-cut torture: a device is SIGKILLed at 30 random moments (fixed seed) spread over
# download, verify, install, restart and health check, and started again each time. It
# must always have a runnable version, end committed on the new one with the exact
# payload, and each cut may cost at most one window plus one checkpoint interval of
# fragments sent again, plus the fragments of the one block still being assembled (only
# blocks that passed their digest check are ever on disk).
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

KILLS=${KILLS:-30}
WINDOW=4
CKPT=16
FPB=16        # fragments per 4 KiB block at 256 bytes
TOTAL=33024   # 8 MiB in 256-byte fragments: 256 carry the block table, 32768 the payload
RANDOM=4242 # fixed seed
certs_make dev-001
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
dev() { device_start dev-001 1.0.0 --checkpoint-every $CKPT --health-command 'sleep 1'; }
dev
check "device online" wait_until 10 'all_devices idle 1.0.0 dev-001'
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
bad=0 kills=0 phases=""
phase() { jq -r .phase "$T/dev/dev-001/state.json" 2>/dev/null; }
cut() {
    local st
    st=$(phase)
    kill -9 "$(pid_of dev-001)" 2>/dev/null
    stop dev-001 >/dev/null 2>&1
    kills=$((kills + 1))
    phases="$phases $st"
    runnable || { bad=$((bad + 1)); echo "# not runnable after cut $kills (phase $st)"; }
    mv "$T/dev-001.log" "$T/dev-001-cut$kills.log"
    dev
}
# Two thirds of the cuts at random moments of the download...
while [ "$kills" -lt $((KILLS * 2 / 3)) ]; do
    sleep "$(printf '0.%03d' $((RANDOM % 400 + 50)))"
    case $(phase) in idle | downloading) cut ;; *) break ;; esac
done
# ... the rest as soon as the device is seen verifying, installing or restarting (a crash
# there brings it back to the same stage, so each stage can be cut again).
while [ "$kills" -lt "$KILLS" ]; do
    for ((i = 0; i < 1200; i++)); do
        st=$(phase)
        case $st in verifying | installing | restarting | committed) break ;; esac
        sleep 0.02
    done
    [ "$st" = committed ] && break
    sleep "$(printf '0.%03d' $((RANDOM % 60)))"
    [ "$(phase)" = committed ] && break
    cut
done
echo "# $kills kills, phases at the cuts:$phases"
check "a runnable version after every one of $kills cuts" test "$bad" = 0
check "the cuts hit the download and the restart (health check)" \
    bash -c "echo '$phases' | grep -qw downloading && echo '$phases' | grep -qw restarting"
check "it ends committed on 1.1.0" wait_until 60 'all_devices committed 1.1.0 dev-001'
check "with the exact payload" cmp -s "$T/fw.bin" "$T/dev/dev-001/active/payload"
sent=$(dev_field dev-001 frags_sent)
extra=$((sent - TOTAL))
per=$(awk -v e="$extra" -v k="$kills" 'BEGIN { printf "%.1f", k ? e / k : 0 }')
bound=$((WINDOW + CKPT + FPB))
echo "# fragments sent: $sent for $TOTAL; $extra again over $kills cuts = $per per cut (bound $bound)"
check "the transfer is $TOTAL fragments" test "$(jq -r '.fragments + .table_fragments' "$T/dev/dev-001/state.json")" = "$TOTAL"
check "resent per cut ($per) within one window + one checkpoint interval + one block ($bound)" \
    awk -v p="$per" -v b=$bound 'BEGIN { exit !(p <= b) }'
check "device and gateway stop cleanly" stop_all_clean gateway dev-001
finish
