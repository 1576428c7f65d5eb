#!/usr/bin/env bash
# Systematic crashes of the gateway (issue 18): every state-changing file-system call the
# gateway makes in its ledger (LMDB: the data and meta page writes and syncs of each
# commit) and its package store (the verified copy of the package, its block table) is
# recorded during an announcement, its verification and a campaign to two devices; then,
# for each call, the same is run again on a fresh ledger and store and the gateway is
# SIGKILLed (its process group) right before that call, and again right after it. After
# each cut `ota-gateway fsck` must find the ledger and store consistent; the gateway is
# started again on them and the campaign must finish (both devices committed on 1.1.0
# with the exact payload), and fsck must be clean again.
#
# An announcement is only kept once its package is verified and recorded (the
# `release_verified` commit): a cut before that loses it, as the README says, and the
# operator announces again; the test does the same when the restarted gateway's ledger
# holds no release.
#
# Mechanism: the LD_PRELOAD interposer tests/tools/preload/crashpoint.c (see
# test_crashpoints.sh for why it, and not strace's injection): LMDB is a shared library,
# so its pwrite/pwritev/fdatasync calls are seen as the gateway's own. The number of LMDB
# commits depends on timing (one per loop tick with something to write), so a run may have
# fewer calls than the recorded one: a cut that is never reached is counted and reported,
# not a violation. The package store's temporary copy is created by mkstemp, inside libc,
# where the interposer does not see it: its first write is the first call seen.
#
# Scope: OTA_CRASHPOINTS=full (make crashpoints) cuts before and after every recorded
# call; otherwise (make test) a fixed sample of OTA_CRASHPOINTS_SAMPLE cuts (default 6).
# OTA_CRASHPOINTS_CUTS='12 before;30 after' runs just those cuts.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

SCOPE=${OTA_CRASHPOINTS:-sample}
SAMPLE=${OTA_CRASHPOINTS_SAMPLE:-6}
PRE=$BUILD/tools/crashpoint.so
[ -f "$PRE" ] || { not_ok "the interposer $PRE is built (make all-tests)"; finish; }
ASAN_LIB=$(ldd "$GW" | awk '/libasan/ { print $3; exit }')
PRELOAD="${ASAN_LIB:+$ASAN_LIB }$PRE"
START=$SECONDS
ids=(dev-001 dev-002)

certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"

# gw_cp [VAR=VALUE...]: the gateway on the ledger $T/gw-db and store $T/gw-store, with the
# interposer's settings under LD_PRELOAD when given.
gw_cp() {
    mkdir -p "$T/gw-db" "$T/gw-store"
    spawn gateway env "$@" "$GW" run --broker-host localhost --broker-port "$BROKER_PORT" \
        --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/gateway.crt" \
        --key-file "$CERTS/gateway.key" --publisher-key "$CERTS/publisher.pub" \
        --db-dir "$T/gw-db" --store-dir "$T/gw-store" --file-dirs "$T"
}
gw_fsck_store() { # a cut before LMDB made its data file leaves no ledger to check
    if [ ! -e "$T/gw-db/data.mdb" ]; then echo "no ledger yet" >"$T/fsck.out"; return 0; fi
    "$GW" fsck --db "$T/gw-db" --publisher-key "$CERTS/publisher.pub" >"$T/fsck.out" 2>&1
}
# fresh_devices: both devices from the factory state, online before the gateway starts.
fresh_devices() {
    local d
    for d in "${ids[@]}"; do
        alive "$d" && stop "$d" >/dev/null 2>&1
        rm -rf "${T:?}/dev/$d"
        device_start "$d" 1.0.0 --checkpoint-every 8
    done
    for d in "${ids[@]}"; do
        wait_until 10 "grep -q 'mqtt connected' '$T/$d.log'" || return 1
    done
}
campaign() { # announce once the gateway is connected
    wait_until 10 "grep -q 'mqtt connected' '$T/gateway.log' || ! alive gateway" || return 1
    alive gateway && announce sensor "file://$T/p.ota" ',"fragment_size":4096,"window":8'
}
done_ok() { all_devices committed 1.1.0 "${ids[@]}"; }

# Record: one announcement, verification and campaign, every call listed.
fresh_devices
gw_cp OTA_CP_DIRS="$T/gw-db:$T/gw-store" OTA_CP_EXE=ota-gateway OTA_CP_LOG="$T/rec.calls" \
    LD_PRELOAD="$PRELOAD"
campaign
check "the recorded campaign finishes" wait_until 60 done_ok
sleep 0.5
kill -KILL -- "-$(pid_of gateway)" 2>/dev/null
stop gateway >/dev/null 2>&1
check "the recorded ledger is consistent (fsck)" gw_fsck_store
n=$(wc -l <"$T/rec.calls")
sed -e "s|$T/||" "$T/rec.calls" >"$T/rec"
echo "# $n state-changing calls: $(awk '{ print $2 }' "$T/rec" | sort | uniq -c |
    awk '{ printf "%s %s, ", $1, $2 }')"

: >"$T/cuts"
for ((i = 1; i <= n; i++)); do echo "$i before" >>"$T/cuts"; echo "$i after" >>"$T/cuts"; done
total=$(wc -l <"$T/cuts")
if [ -n "${OTA_CRASHPOINTS_CUTS:-}" ]; then
    SCOPE=chosen
    tr ';' '\n' <<<"$OTA_CRASHPOINTS_CUTS" >"$T/cuts"
elif [ "$SCOPE" != full ]; then
    awk -v t="$total" -v s="$SAMPLE" '{ l[NR] = $0 }
        END { for (k = 0; k < s && k < t; k++) print l[int((k + 0.5) * t / s) + 1] }' \
        "$T/cuts" >"$T/cuts.s"
    mv "$T/cuts.s" "$T/cuts"
fi
ncuts=$(wc -l <"$T/cuts")

bad=0 unreached=0 reannounced=0 k=0
violation() { bad=$((bad + 1)); echo "# VIOLATION $*" | tee -a "$T/violations"; }
while read -r i when; do
    k=$((k + 1))
    alive gateway && stop gateway >/dev/null 2>&1
    rm -rf "${T:?}/gw-db" "${T:?}/gw-store"
    for f in gateway dev-001 dev-002; do [ -f "$T/$f.log" ] && mv "$T/$f.log" "$T/$f-run$k.log"; done
    fresh_devices || { violation "run $k: devices did not connect"; continue; }
    gw_cp OTA_CP_DIRS="$T/gw-db:$T/gw-store" OTA_CP_EXE=ota-gateway \
        OTA_CP_LOG="$T/run$k.calls" OTA_CP_AT="$i" OTA_CP_WHEN="$when" LD_PRELOAD="$PRELOAD"
    campaign
    wait_until 60 "! alive gateway || done_ok"
    if alive gateway; then
        unreached=$((unreached + 1))
        echo "# $when call $i: not reached (this run made $(wc -l <"$T/run$k.calls") calls)"
        continue
    fi
    stop gateway >/dev/null 2>&1
    cut=$(sed -n "s|^cut $i $when ||p" "$T/run$k.calls" | sed "s|$T/||")
    what="$when call $i (${cut:-?}; recorded: $(sed -n "${i}p" "$T/rec" | cut -d' ' -f2-))"
    gw_fsck_store || violation "$what: fsck after the cut: $(grep -v '^ok' "$T/fsck.out" | head -3)"
    mv "$T/gateway.log" "$T/gateway-cut$k.log"
    gw_cp
    wait_until 10 "grep -q 'mqtt connected' '$T/gateway.log' || ! alive gateway"
    if [ "$("$GW" status --db "$T/gw-db" --json 2>/dev/null | jq '.releases | length')" = 0 ]; then
        reannounced=$((reannounced + 1))
        campaign
    fi
    wait_until 90 done_ok || violation "$what: the campaign does not finish after the restart"
    for d in "${ids[@]}"; do
        cmp -s "$T/fw.bin" "$T/dev/$d/active/payload" || violation "$what: $d's payload is not exact"
    done
    gw_fsck_store || violation "$what: fsck at the end: $(grep -v '^ok' "$T/fsck.out" | head -3)"
done <"$T/cuts"

secs=$((SECONDS - START))
echo "# gateway crash points: $ncuts cuts ($SCOPE) of $total (before and after each of $n calls); $unreached not reached; $reannounced announcements lost and made again; $bad violations; $secs s"
check "$ncuts gateway crashes at recorded calls ($SCOPE of $total), 0 violations" test "$bad" = 0
check "at least half of them were reached" test $((2 * (ncuts - unreached))) -ge "$ncuts"
finish
