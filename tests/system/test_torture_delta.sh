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

KILLS=${KILLS:-30}
WINDOW=4
CKPT=16
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
    # 30-180 ms apart: on a fast machine a resumed download ends within a few tenths of a
    # second, and the 17 cuts must all fall into it (a slow one gets them sooner).
    sleep "$(printf '0.%03d' $((RANDOM % 150 + 30)))"
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
check "it ends committed on 1.2.0" wait_until 60 'all_devices committed 1.2.0 dev-001'
check "with the exact image" cmp -s "$T/fw.bin" "$T/dev/dev-001/active/payload"
check "the base's slot still holds 1.1.0 (read, never written)" cmp -s "$T/base.bin" "$T/dev/dev-001/$OLD/payload"
check "the update travelled as a delta" test "$(dev_field dev-001 encoding)" = delta
sent=$(dev_field dev-001 frags_sent)
TOTAL=$(dev_field dev-001 fragments)
extra=$((sent - TOTAL))
# Only cuts during the download cost fragments: count per download cut. A frame rebuilds
# 256 KiB (64 blocks); 16 frames of about the same size here, after 128 table fragments.
dl=$(echo "$phases" | grep -o 'downloading(' | wc -l)
per=$(awk -v e="$extra" -v k="$dl" 'BEGIN { printf "%.1f", k ? e / k : 0 }')
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
