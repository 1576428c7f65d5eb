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

KILLS=${KILLS:-30}
WINDOW=4
CKPT=16
FPB=16        # fragments per 4 KiB block at 256 bytes
TOTAL=33024   # 8 MiB in 256-byte fragments: 256 carry the block table, 32768 the payload
RANDOM=4242 # fixed seed
certs_make dev-001
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
# dev [POINT]: start the device, with a crash point armed when given (tests only).
dev() {
    device_start dev-001 1.0.0 --checkpoint-every $CKPT --health-command 'sleep 1' \
        ${1:+--test-crash-at "$1"}
}
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
# The 13 cuts after the download, in order, each point twice (a cut brings the device
# back to the same stage, so it can be cut there again), but `installed` (the restart
# step itself: after it the device comes back in the health check). A named point is a power
# cut exactly there: the device kills itself (test_crash_at, tests only); @health is the
# health check (a 1 s command) killed from outside.
SEQ=(verify verify verified verified installing installing switched switched
    installed @health @health committing committing)
seq_i=0
next_arm() { # the crash point the next started device carries, if any
    local p=${SEQ[$seq_i]:-}
    case $p in @* | "") ;; *) echo "$p" ;; esac
}
# after_cut WHAT: count the cut, check the device is runnable, start it again.
after_cut() {
    local st
    st=$(phase)
    kills=$((kills + 1))
    phases="$phases $1($st)"
    runnable || { bad=$((bad + 1)); echo "# not runnable after cut $kills at $1 (phase $st)"; }
    mv "$T/dev-001.log" "$T/dev-001-cut$kills.log"
    dev "$(next_arm)"
}
cut() { # from outside, now
    local st
    st=$(phase)
    kill -9 "$(pid_of dev-001)" 2>/dev/null
    stop dev-001 >/dev/null 2>&1
    after_cut "$st"
}
# 17 cuts at random moments of the download (the last one restarts the device with the
# first crash point armed)...
while [ "$kills" -lt $((KILLS - ${#SEQ[@]})) ]; do
    sleep "$(printf '0.%03d' $((RANDOM % 400 + 50)))"
    case $(phase) in idle | downloading) cut ;; *) break ;; esac
done
# ... then the sequence.
while [ "$seq_i" -lt "${#SEQ[@]}" ]; do
    point=${SEQ[$seq_i]}
    seq_i=$((seq_i + 1))
    if [ "$point" = @health ]; then
        for ((i = 0; i < 500; i++)); do
            [ "$(phase)" = restarting ] && grep -q "state=restarting starting" "$T/dev-001.log" && break
            sleep 0.02
        done
        sleep 0.2
        cut
        continue
    fi
    if ! wait_until 60 "! alive dev-001"; then
        echo "# crash point $point never reached"
        bad=$((bad + 1))
    fi
    stop dev-001 >/dev/null 2>&1
    grep -q "test crash point '$point': SIGKILL" "$T/dev-001.log" || {
        echo "# crash point $point not hit"
        bad=$((bad + 1))
    }
    after_cut "$point"
done
echo "# $kills kills, phases at the cuts:$phases"
check "a runnable version after every one of $kills cuts" test "$bad" = 0
check "the cuts hit the download, verify, install, switch, restart, health check and commit" \
    bash -c "echo '$phases' | grep -qw downloading && echo '$phases' | grep -q 'verify(verifying)' &&
        echo '$phases' | grep -q 'verified(verifying)' && echo '$phases' | grep -q 'installing(installing)' &&
        echo '$phases' | grep -q 'switched(installing)' && echo '$phases' | grep -q 'installed(restarting)' &&
        echo '$phases' | grep -qw restarting && echo '$phases' | grep -q 'committing(restarting)'"
check "it ends committed on 1.1.0" wait_until 60 'all_devices committed 1.1.0 dev-001'
check "with the exact payload" cmp -s "$T/fw.bin" "$T/dev/dev-001/active/payload"
sent=$(dev_field dev-001 frags_sent)
extra=$((sent - TOTAL))
# Only cuts during the download cost fragments: count per download cut.
dl=$(echo "$phases" | grep -o 'downloading(' | wc -l)
per=$(awk -v e="$extra" -v k="$dl" 'BEGIN { printf "%.1f", k ? e / k : 0 }')
bound=$((WINDOW + CKPT + FPB))
echo "# fragments sent: $sent for $TOTAL; $extra again over $dl download cuts = $per per cut (bound $bound)"
check "the transfer is $TOTAL fragments" test "$(jq -r '.fragments + .table_fragments' "$T/dev/dev-001/state.json")" = "$TOTAL"
check "resent per download cut ($per) within one window + one checkpoint interval + one block ($bound)" \
    awk -v p="$per" -v b=$bound 'BEGIN { exit !(p <= b) }'
check "device and gateway stop cleanly" stop_all_clean gateway dev-001
check "the gateway's ledger is consistent (fsck)" gw_fsck
finish
