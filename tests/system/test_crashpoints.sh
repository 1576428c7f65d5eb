#!/usr/bin/env bash
# Systematic power cuts on the device (issue 18), in the spirit of MCUboot's simulator (a
# reset at every flash operation): every state-changing file-system call the device makes
# in its state directory during one full update that commits (health check passes) and one
# that rolls back (health check fails) is recorded; then, for each call, the same update
# is run again on a fresh device and the power is cut (SIGKILL of the device's process
# group) right before that call, and again right after it. After each cut the device must
# have a runnable version whose image is exact and state.json agreeing with the `active`
# link; started again it must finish the update (committed 1.1.0 / rolled_back 1.0.0),
# report the version its active slot holds, and not restart the download from zero once a
# checkpoint named fragments.
#
# Mechanism: an LD_PRELOAD interposer (tests/tools/preload/crashpoint.c, built as
# BUILD/tools/crashpoint.so) that counts the calls (open with O_CREAT/O_TRUNC, write,
# pwrite, writev, fsync, fdatasync, ftruncate, rename, unlink, symlink, mkdir...) on paths
# under the state directory and kills the process group at the Nth, before or after it.
# Chosen over strace's syscall injection because strace (a) counts per thread and per
# syscall, while the device writes from its loop and its thread pool and the cut point is
# "the Nth call of the whole sequence"; (b) can only kill on syscall entry, so "right
# after" a call cannot be expressed; (c) cannot tell a write to state.json from one to the
# TLS socket or the log; and over a build-time hook because it needs no change to the
# programs. The interposer carries its count across the device's re-execution (execv) and
# only counts in ota-device (not in the health check's shell).
#
# Scope: OTA_CRASHPOINTS=full (make crashpoints) cuts before and after every recorded
# call; otherwise (make test) a fixed sample of OTA_CRASHPOINTS_SAMPLE cuts (default 8)
# spread evenly over both updates, which keeps this test under a minute on a quiet machine.
# OTA_CRASHPOINTS_CUTS='commit 54 before;rollback 80 after' runs just those cuts (to
# reproduce one).
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

SCOPE=${OTA_CRASHPOINTS:-sample}
SAMPLE=${OTA_CRASHPOINTS_SAMPLE:-8}
PRE=$BUILD/tools/crashpoint.so
[ -f "$PRE" ] || { not_ok "the interposer $PRE is built (make all-tests)"; finish; }
# A sanitized build needs its runtime first in the preload list.
ASAN_LIB=$(ldd "$DEV" | awk '/libasan/ { print $3; exit }')
PRELOAD="${ASAN_LIB:+$ASAN_LIB }$PRE"
START=$SECONDS

certs_make rec-commit rec-rollback
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
# 64 KiB in 16 KiB blocks and 4 KiB fragments (1 table fragment + 16 payload fragments),
# a checkpoint every 8 fragments: every kind of step of an update, in few calls.
make_payload "$T/fw.bin" 65536
"$GW" pack --key "$CERTS/publisher.key" --product sensor --version 1.1.0 \
    --payload "$T/fw.bin" --out "$T/p.ota" --block-size 16384 >/dev/null
announce sensor "file://$T/p.ota" ',"fragment_size":4096,"window":8'
check "the gateway holds the release" \
    wait_until 20 "grep -q 'release=.* verified' '$T/gateway.log'"

# cp_dev ID SCENARIO [VAR=VALUE...]: a fresh device; commit: its health check passes,
# rollback: it fails. With VAR=VALUE (the interposer's settings) under LD_PRELOAD.
cp_dev() {
    local id=$1 scen=$2 hc=true
    shift 2
    [ "$scen" = rollback ] && hc='exit 1'
    mkdir -p "$T/dev/$id"
    spawn "$id" env "$@" "$DEV" --id "$id" --product sensor --version 1.0.0 \
        --broker-host localhost --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt" \
        --cert-file "$CERTS/devices/$id.crt" --key-file "$CERTS/devices/$id.key" \
        --publisher-key "$CERTS/publisher.pub" --state-dir "$T/dev/$id" \
        --checkpoint-every 8 --health-command "$hc"
}
final_of() { [ "$1" = commit ] && echo "committed 1.1.0" || echo "rolled_back 1.0.0"; }

# The version the active slot holds: slot-a without a version file is the factory 1.0.0.
active_slot() { readlink "$T/dev/$1/active" 2>/dev/null || echo slot-a; }
slot_version() {
    local f=$T/dev/$1/$2/version
    if [ -e "$f" ]; then cat "$f"; elif [ "$2" = slot-a ]; then echo 1.0.0; else echo none; fi
}

# disk_ok ID [cut]: after a cut or at the end, print what is wrong (nothing when all is
# well).
disk_ok() {
    local id=$1 S=$T/dev/$1 act ph slot ver want
    act=$(active_slot "$id")
    case $act in
    slot-a) [ ! -e "$S/slot-a/version" ] || echo "slot-a holds a version file" ;;
    slot-b)
        [ "$(cat "$S/slot-b/version" 2>/dev/null)" = 1.1.0 ] || echo "active slot-b has no 1.1.0 version file"
        cmp -s "$T/fw.bin" "$S/slot-b/payload" || echo "active slot-b's image is not exact" ;;
    *) echo "active link names '$act'" ;;
    esac
    if [ ! -e "$S/state.json" ]; then
        [ "$act" = slot-a ] || echo "no state.json but active is $act"
        return 0
    fi
    jq -e . "$S/state.json" >/dev/null 2>&1 || { echo "state.json is damaged"; return 0; }
    ph=$(jq -r .phase "$S/state.json")
    slot=$(jq -r .slot "$S/state.json")
    ver=$(jq -r .version "$S/state.json")
    # Installing: the switch is done again at the next start, the link may name either.
    # Rolled back, right after a cut: state.json names the old slot before the link moves
    # back (two files cannot change at once); the next start points the link there
    # (checked at the end).
    [ "$ph" = installing ] && return 0
    [ "$ph" = rolled_back ] && [ "${2:-}" = cut ] && return 0
    [ "slot-$slot" = "$act" ] || echo "state.json names slot $slot ($ph), active is $act"
    # Restarting: the new version is on trial in the active slot, not yet the record.
    want=$ver
    [ "$ph" = restarting ] && want=1.1.0
    [ "$(slot_version "$id" "$act")" = "$want" ] ||
        echo "state.json says $ver ($ph), the active $act holds $(slot_version "$id" "$act")"
}

# Record one update of each kind: the list of calls, one per line "N kind path".
declare -A NCALLS=()
for scen in commit rollback; do
    id=rec-$scen
    cp_dev "$id" "$scen" OTA_CP_DIRS="$T/dev/$id" OTA_CP_EXE=ota-device \
        OTA_CP_LOG="$T/$id.calls" LD_PRELOAD="$PRELOAD"
    check "recorded update ($scen) finishes" \
        wait_until 60 "all_devices $(final_of $scen) $id"
    sleep 0.3
    kill -KILL -- "-$(pid_of "$id")" 2>/dev/null
    stop "$id" >/dev/null 2>&1
    NCALLS[$scen]=$(wc -l <"$T/$id.calls")
    sed -e "s|$T/dev/$id/||" -e "s|$T/dev/$id\$|STATE|" "$T/$id.calls" >"$T/$scen.rec"
    echo "# $scen: ${NCALLS[$scen]} state-changing calls: $(awk '{ print $2 }' "$T/$scen.rec" |
        sort | uniq -c | awk '{ printf "%s %s, ", $1, $2 }')"
done

# The cuts: "SCENARIO N before|after" per line.
: >"$T/cuts"
for scen in commit rollback; do
    n=${NCALLS[$scen]}
    for ((i = 1; i <= n; i++)); do
        echo "$scen $i before" >>"$T/cuts"
        echo "$scen $i after" >>"$T/cuts"
    done
done
total=$(wc -l <"$T/cuts")
if [ -n "${OTA_CRASHPOINTS_CUTS:-}" ]; then
    SCOPE=chosen
    tr ';' '\n' <<<"$OTA_CRASHPOINTS_CUTS" >"$T/cuts"
elif [ "$SCOPE" != full ]; then
    # Evenly spread over both updates, a fixed offset so each run cuts the same points.
    awk -v t="$total" -v s="$SAMPLE" 'BEGIN { srand(18) } { l[NR] = $0 }
        END { for (k = 0; k < s && k < t; k++) print l[int((k + 0.5) * t / s) + 1] }' \
        "$T/cuts" >"$T/cuts.s"
    mv "$T/cuts.s" "$T/cuts"
fi
ncuts=$(wc -l <"$T/cuts")
ids=()
for ((k = 1; k <= ncuts; k++)); do ids+=("cp$k"); done
certs_make "${ids[@]}"

bad=0 shifted=0 k=0
violation() { bad=$((bad + 1)); echo "# VIOLATION $*" | tee -a "$T/violations"; }
while read -r scen i when; do
    k=$((k + 1))
    id=cp$k
    S=$T/dev/$id
    cp_dev "$id" "$scen" OTA_CP_DIRS="$S" OTA_CP_EXE=ota-device OTA_CP_LOG="$T/$id.calls" \
        OTA_CP_AT="$i" OTA_CP_WHEN="$when" LD_PRELOAD="$PRELOAD"
    if ! wait_until 60 "! alive $id"; then
        violation "$scen $when call $i: never reached (the update did not get there in 60 s)"
        stop "$id" >/dev/null 2>&1
        continue
    fi
    stop "$id" >/dev/null 2>&1
    cut=$(sed -n "s|^cut $i $when ||p" "$T/$id.calls" | sed -e "s|$S/||" -e "s|$S\$|STATE|")
    want=$(sed -n "${i}p" "$T/$scen.rec" | cut -d' ' -f2-)
    if [ -z "$cut" ]; then
        violation "$scen $when call $i ($want): the device died before it"
        continue
    fi
    [ "$cut" = "$want" ] || { shifted=$((shifted + 1)); echo "# $scen call $i: cut at '$cut', recorded '$want'"; }
    what="$scen $when call $i ($cut)"
    probs=$(disk_ok "$id" cut)
    [ -z "$probs" ] || violation "$what, after the cut: $probs"
    held=$(jq -r '.held // 0' "$S/state.json" 2>/dev/null || echo 0)
    phase=$(jq -r '.phase // "none"' "$S/state.json" 2>/dev/null || echo none)
    mv "$T/$id.log" "$T/$id-cut.log"
    cp_dev "$id" "$scen"
    if ! wait_until 60 "all_devices $(final_of "$scen") $id"; then
        violation "$what: after the restart the update does not finish ($(dev_field "$id" state) $(dev_field "$id" version))"
        stop "$id" >/dev/null 2>&1
        continue
    fi
    probs=$(disk_ok "$id")
    [ -z "$probs" ] || violation "$what, at the end: $probs"
    ph=$(jq -r .phase "$S/state.json")
    [ "$ph $(jq -r .version "$S/state.json")" = "$(final_of "$scen")" ] ||
        violation "$what: state.json ends $ph, not $(final_of "$scen")"
    rep=$(dev_field "$id" version)
    [ "$rep" = "$(slot_version "$id" "$(active_slot "$id")")" ] ||
        violation "$what: reports $rep, the active slot holds $(slot_version "$id" "$(active_slot "$id")")"
    if [ "$phase" = downloading ] && [ "$held" -gt 0 ] &&
        ! grep -q "resuming release=.* from fragment $held of" "$T/$id.log"; then
        violation "$what: held $held at the cut, did not resume from there"
    fi
    case $phase in none | idle) ;; downloading) [ "$held" -gt 0 ] || phase=none ;& *)
        if [ "$phase" != none ] && grep -q 'starting over\|resume_from=0' "$T/$id.log"; then
            violation "$what: the download started over from zero (cut in $phase, held $held)"
        fi ;;
    esac
    stop "$id" >/dev/null 2>&1
done <"$T/cuts"

secs=$((SECONDS - START))
echo "# crash points: $ncuts cuts ($SCOPE) of $total (before and after each of ${NCALLS[commit]} + ${NCALLS[rollback]} calls: an update that commits, one that rolls back); $shifted at a call other than the recorded one; $bad violations; $secs s"
check "$ncuts power cuts at recorded calls ($SCOPE of $total), 0 violations" test "$bad" = 0
check "the gateway's ledger is consistent (fsck)" gw_fsck
finish
