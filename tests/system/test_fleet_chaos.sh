#!/usr/bin/env bash
# Chaos under load: 1000 devices take one release while 5% of them are killed (SIGKILL,
# a power cut) at random moments of the campaign and started again. 950 run in one fleet
# process (ota-device --fleet); the 50 that are killed are real processes of their own,
# each with its own state directory, so a kill is a real one: whatever the device had
# not checkpointed is lost, and it must resume from its checkpoint. All 1000 must end
# committed with the exact payload, the ledger consistent (fsck).
# The 50 reach the broker through the link emulator, a shared 1.5 Mbit/s link with
# 100 ms RTT (constrained devices), so each one's download takes seconds and a kill at a
# random moment usually strikes it mid-download rather than after it committed.
# Bounded: a 32 KiB package in 8 fragments (window 1: the 50 share the link evenly), device state on a tmpfs (fsync would
# dominate on a disk), the ledger polled once a second (status of 1000 devices is not free).
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

if [ "$(id -u)" != 0 ]; then
    echo "not ok - needs root to mount a tmpfs for the devices' state (CI runs as root)"
    exit 1
fi
N=1000
NKILL=$((N * 5 / 100))
NFLEET=$((N - NKILL))
RANDOM=6006 # fixed seed: the same victims, order and delays every run
t0=$(now_ms)

certs_make --devices "$N"
broker_start || { not_ok "broker starts"; finish; }
mkdir -p "$T/state"
mount -t tmpfs -o size=512m tmpfs "$T/state" || { not_ok "mount tmpfs"; finish; }
trap 'umount -l "$T/state" 2>/dev/null; cleanup' EXIT
check "gateway starts" gateway_start
LE_PORT=$(free_port)
spawn link "$BUILD/tools/linkemu" --listen "127.0.0.1:$LE_PORT" --connect "127.0.0.1:$BROKER_PORT" \
    --rtt-ms 100 --rate-kbit 1500 --shared
check "the link emulator for the 50 runs" wait_until 10 "grep -q 'info listening' '$T/link.log'"
spawn fleet "$DEV" --fleet "$NFLEET" --fleet-cert-dir "$CERTS/devices" --product sensor \
    --version 1.0.0 --broker-host localhost --broker-port "$BROKER_PORT" \
    --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --state-dir "$T/state"
singles=()
for ((i = NFLEET + 1; i <= N; i++)); do singles+=("$(printf 'dev-%04d' "$i")"); done
single_start() {
    spawn "$1" "$DEV" --id "$1" --product sensor --version 1.0.0 \
        --broker-host localhost --broker-port "$LE_PORT" --ca-file "$CERTS/ca.crt" \
        --cert-file "$CERTS/devices/$1.crt" --key-file "$CERTS/devices/$1.key" \
        --publisher-key "$CERTS/publisher.pub" --state-dir "$T/state/$1" --checkpoint-every 2
}
for id in "${singles[@]}"; do single_start "$id"; done

# slowly SECS 'COND': wait_until, polling once a second.
slowly() {
    local end=$((SECONDS + $1))
    while ! eval "$2"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 1
    done
}
count_at() {
    gw_status_json | jq --arg s "$1" --arg v "$2" '[.devices[] | select(.state == $s and .version == $v)] | length'
}
check "all $N devices report idle 1.0.0" slowly 90 '[ "$(count_at idle 1.0.0)" = "$N" ]'
t_idle=$(now_ms)

make_payload "$T/fw.bin" 32768
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
check "one announcement" announce sensor "file://$T/p.ota" ',"fragment_size":4096,"window":1'
t_announce=$(now_ms)

# --- the kills ------------------------------------------------------------------------------
# Each of the 50 once, in a random order, 0.02 .. 0.12 s apart, whatever it is doing;
# started again at once. Where each kill struck is read from its state.json afterwards.
order=("${singles[@]}")
for ((i = ${#order[@]} - 1; i > 0; i--)); do
    j=$((RANDOM % (i + 1)))
    tmp=${order[i]} order[i]=${order[j]} order[j]=$tmp
done
kills=0 mid=0 phases=""
declare -A held_at_kill=()
for id in "${order[@]}"; do
    sleep "$(printf '0.%03d' $((RANDOM % 100 + 20)))"
    kill -KILL "$(pid_of "$id")" 2>/dev/null
    stop "$id" >/dev/null 2>&1
    kills=$((kills + 1))
    st=$(jq -r '"\(.phase) \(.held // 0)"' "$T/state/$id/state.json" 2>/dev/null || echo "none 0")
    phases="$phases ${st% *}"
    if [ "${st% *}" = downloading ] && [ "${st#* }" -gt 0 ]; then
        mid=$((mid + 1))
        held_at_kill[$id]=${st#* }
    fi
    mv "$T/$id.log" "$T/$id-killed.log"
    single_start "$id"
done
t_kills=$(now_ms)
summary=$(tr ' ' '\n' <<<"$phases" | sed '/^$/d' | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}')
echo "# $kills kills in $((t_kills - t_announce)) ms after the announcement; phases at the kills: ${summary%, }"
check "$NKILL devices (5%) were each killed once during the campaign" test "$kills" = "$NKILL"
check "the kills struck mid-download (held > 0) at least 10 times ($mid)" test "$mid" -ge 10

devices_committed() {
    [ "$(grep -l '"version":"1.1.0",.*"phase":"committed"' "$T"/state/dev-*/state.json | wc -l)" = "$N" ]
}
check "all $N devices commit 1.1.0 (their own state says so)" slowly 90 devices_committed
t_done=$(now_ms)
check "the ledger shows all $N committed 1.1.0" slowly 30 '[ "$(count_at committed 1.1.0)" = "$N" ]'
bad=0
for id in "${singles[@]}"; do cmp -s "$T/fw.bin" "$T/state/$id/active/payload" || bad=$((bad + 1)); done
check "each killed device's installed payload is exact" test "$bad" = 0
for i in 1 317 634 950; do
    id=$(printf 'dev-%04d' "$i")
    check "$id's (fleet) installed payload is exact" cmp -s "$T/fw.bin" "$T/state/$id/active/payload"
done
# A device killed mid-download starts again from its checkpoint, and the gateway sends
# from there: no fragment it had checkpointed is sent again.
resumed=0
for id in "${!held_at_kill[@]}"; do
    h=${held_at_kill[$id]}
    # The restarted device reopens its slot at the checkpoint, and the gateway (told by
    # its first ack) sends from there: an accept from fragment >= h > 0 is a resume.
    if grep -qE "resuming release=[0-9a-f]+ from fragment $h of [0-9]+" "$T/$id.log" &&
        grep -oE "device=$id release=[0-9a-f]+ accepted, sending from fragment [0-9]+" "$T/gateway.log" |
        awk -v h="$h" '{ if ($NF + 0 >= h) found = 1 } END { exit !found }'; then
        resumed=$((resumed + 1))
    else
        echo "# $id: killed holding $h fragments, no resume from there in its log"
    fi
done
check "every device killed mid-download resumed from its checkpoint ($resumed of $mid)" test "$resumed" = "$mid"
check "nothing failed or rolled back" \
    test "$(gw_status_json | jq '[.devices[] | select(.state == "failed" or .state == "rolled_back")] | length')" = 0
check "the fleet process was never touched: still the same process" alive fleet
sent=$(gw_status_json | jq '[.devices[].frags_sent] | add')
need=$(gw_status_json | jq '[.devices[].fragments] | add')
echo "# fragments sent: $sent for $need ($((sent - need)) again)"
echo "# $N devices: idle $((t_idle - t0)) ms after the start (certificates included);" \
    "announce -> all committed $((t_done - t_announce)) ms"
check "the ledger is consistent (fsck)" gw_fsck
# Stop the 50 and the fleet at once (TERM to each), give the fleet time to say goodbye
# for its 950 devices, then collect every exit status.
for id in "${singles[@]}" fleet; do kill -TERM -- "-$(pid_of "$id")" 2>/dev/null; done
wait_until 30 '! alive fleet' || echo "# the fleet did not stop within 30 s"
check "every device process stops cleanly, no sanitizer reports" stop_all_clean fleet "${singles[@]}"
check "the link emulator stops cleanly" stop_all_clean link
check "the gateway stops cleanly" stop_all_clean gateway
check "mdb_stat reads the ledger" mdb_stat -a "$T/gw-db"
echo "# whole test: $(($(now_ms) - t0)) ms"
finish
