# shellcheck shell=bash
# torture.sh: the power-cut driver of test_torture.sh (a full update) and
# test_torture_delta.sh (a delta update). Source after lib.sh and ota.sh:
#   . "$OTA_ROOT/tests/system/torture.sh"
#
#   torture_start           fixed seed, broker, gateway, dev-001 on 1.0.0 (checkpoint every
#                           $CKPT fragments, a 1 s health check), online
#   dev [POINT]             start dev-001 again, with the crash point POINT armed when given
#   torture_cuts MIN SPAN   the cuts: $KILLS in all, first at random moments of the download
#                           (MIN to MIN+SPAN ms apart), then each named point of SEQ; after each
#                           cut the test's own runnable() must hold (else $bad counts it).
#                           Sets kills, bad and phases ("POINT(phase at the cut) ...")
#   torture_check_cuts      the checks: runnable after every cut, every stage cut
#   torture_per_cut         "SENT EXTRA CUTS PER_CUT": the device's frags_sent, those beyond
#                           $TOTAL, the cuts during the download, EXTRA per such cut

KILLS=${KILLS:-30}
# shellcheck disable=SC2034 # the tests that source this use WINDOW
WINDOW=4
CKPT=16

torture_start() {
    RANDOM=4242 # fixed seed
    certs_make dev-001
    broker_start || { not_ok "broker starts"; finish; }
    check "gateway starts" gateway_start
    dev
    check "device online" wait_until 10 'all_devices idle 1.0.0 dev-001'
}

# dev [POINT]: start the device, with a crash point armed when given (tests only).
dev() {
    device_start dev-001 1.0.0 --checkpoint-every $CKPT --health-command 'sleep 1' \
        ${1:+--test-crash-at "$1"}
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

# torture_cuts MIN SPAN: the random cuts MIN to MIN+SPAN ms apart, then the sequence.
torture_cuts() {
    local point i
    # The random cuts (the last one restarts the device with the first crash point
    # armed)...
    while [ "$kills" -lt $((KILLS - ${#SEQ[@]})) ]; do
        sleep "$(printf '0.%03d' $((RANDOM % $2 + $1)))"
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
}

torture_check_cuts() {
    check "a runnable version after every one of $kills cuts" test "$bad" = 0
    check "the cuts hit the download, verify, install, switch, restart, health check and commit" \
        bash -c "echo '$phases' | grep -qw downloading && echo '$phases' | grep -q 'verify(verifying)' &&
            echo '$phases' | grep -q 'verified(verifying)' && echo '$phases' | grep -q 'installing(installing)' &&
            echo '$phases' | grep -q 'switched(installing)' && echo '$phases' | grep -q 'installed(restarting)' &&
            echo '$phases' | grep -qw restarting && echo '$phases' | grep -q 'committing(restarting)'"
}

# Only cuts during the download cost fragments: count per download cut.
torture_per_cut() {
    local sent extra dl
    sent=$(dev_field dev-001 frags_sent)
    extra=$((sent - TOTAL))
    dl=$(echo "$phases" | grep -o 'downloading(' | wc -l)
    echo "$sent $extra $dl $(awk -v e="$extra" -v k="$dl" 'BEGIN { printf "%.1f", k ? e / k : 0 }')"
}
