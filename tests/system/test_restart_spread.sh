#!/usr/bin/env bash
# No restart storm (issue 16, point 1): the gateway paces its offers (offer_rate) and its
# offers carry restart_spread_ms = devices / restart_rate; each device restarts at a random
# time within it, so a fleet updated together reconnects over the window, not in one
# second. Here 40 simulated devices, offer_rate 20/s (40 offers over ~2 s) and restart_rate
# 5/s (an 8 s spread).
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

N=40
certs_make --devices "$N" >/dev/null || { echo "Bail out! make-certs failed"; exit 1; }
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts (offer_rate 20, restart_rate 5)" \
    gateway_start --offer-rate 20 --restart-rate 5
spawn fleet "$DEV" --fleet "$N" --fleet-cert-dir "$CERTS/devices" --product sensor \
    --version 1.0.0 --broker-host localhost --broker-port "$BROKER_PORT" \
    --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --state-dir "$T/fleet" \
    --log-level info
count_at() {
    gw_status_json | jq --arg s "$1" --arg v "$2" \
        '[.devices[] | select(.state == $s and .version == $v)] | length'
}
check "all $N devices idle 1.0.0" wait_until 60 "[ \"\$(count_at idle 1.0.0)\" = $N ]"
make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
mq_sub_bg offers observer1 'ota/dev/+/offer' 1000 120 -v || not_ok "an observer subscribes"
check "announce 1.1.0" announce sensor "file://$T/p.ota"
check "all $N devices commit 1.1.0, in the ledger" \
    wait_until 120 "[ \"\$(count_at committed 1.1.0)\" = $N ]"

# ms "HH:MM:SS.mmm" -> milliseconds of the day.
ms_of() { awk -F'[:.]' '{ print (($1 * 60 + $2) * 60 + $3) * 1000 + $4 }'; }
first_offer=$(grep -a ' offered$' "$T/gateway.log" | head -n 1 | cut -d' ' -f1 | ms_of)
last_offer=$(grep -a ' offered$' "$T/gateway.log" | tail -n 1 | cut -d' ' -f1 | ms_of)
echo "# first offers to last: $((last_offer - first_offer)) ms"
check "offers are paced: the first $N offers span more than 1.2 s (20/s, bursts of 4)" \
    test $((last_offer - first_offer)) -gt 1200
check "every offer names restart_spread_ms 8000 (40 devices / 5 per s)" \
    test "$(mq_msgs offers | grep -c '"restart_spread_ms":8000')" -ge "$N"
waits=$(grep -a -o 'restarting in [0-9]* ms (spread 8000 ms)' "$T/fleet.log" | awk '{ print $3 }')
n_w=$(wc -w <<<"$waits")
lo=$(tr ' ' '\n' <<<"$waits" | sort -n | head -n 1)
hi=$(tr ' ' '\n' <<<"$waits" | sort -n | tail -n 1)
echo "# $n_w devices waited $lo .. $hi ms before restarting"
check "  each device waited a random time below 8000 ms before its restart" \
    test "$n_w" -ge $((N - 1)) -a "${hi:-99999}" -lt 8000
check "  spread over the window (longest - shortest wait > 4000 ms), not in step" \
    test $((${hi:-0} - ${lo:-0})) -gt 4000
# Reconnections after the update, per second, from the devices' own log (milliseconds:
# on a fast machine the fleet's first connections and its first restarts share a second,
# which the broker's log, in whole seconds, cannot tell apart).
since=$(grep -a 'restarting in' "$T/fleet.log" | head -n 1 | cut -d' ' -f1 | ms_of)
per_s=$(grep -a ' mqtt connected .* id=dev-' "$T/fleet.log" | cut -d' ' -f1 | ms_of |
    awk -v s="${since:-0}" '$1 >= s { n[int($1 / 1000)]++ } END { for (k in n) if (n[k] > p) p = n[k]; print p + 0 }')
echo "# busiest second of reconnections: $per_s of $N"
check "  no second saw more than half the fleet reconnect" test "$per_s" -le $((N / 2))
check "  every device reconnected at its first attempt" \
    wait_until 10 "grep -a ' ota-device fleet summary ' '$T/fleet.log' | tail -n 1 | grep -q 'connected=$N .*connect_attempts_max=1 '"
# The operator sets the spread of a campaign in its announcement: restart_spread_s.
pack sensor 1.2.0 "$T/fw.bin" "$T/p2.ota"
check "announce 1.2.0 with \"restart_spread_s\":1" \
    announce sensor "file://$T/p2.ota" ',"restart_spread_s":1'
check "all $N devices commit 1.2.0" wait_until 120 "[ \"\$(count_at committed 1.2.0)\" = $N ]"
check "  its offers carry restart_spread_ms 1000, the campaign's own" \
    test "$(mq_msgs offers | grep -c '"restart_spread_ms":1000[,}]')" -ge "$N"
check "  and the devices waited below 1000 ms" \
    bash -c "[ \$(grep -a -c 'restarting in [0-9]* ms (spread 1000 ms)' '$T/fleet.log') -ge $((N - 1)) ]"
check "gateway and fleet stop cleanly, no sanitizer reports" stop_all_clean gateway fleet
finish
