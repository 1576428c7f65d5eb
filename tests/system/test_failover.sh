#!/usr/bin/env bash
# Several brokers (issue 16, point 3). The gateway and the devices take a list of brokers
# (--brokers A,B) and move to the next one when an attempt fails, with backoff. Two
# independent Mosquittos share no messages, so this is what failover means between them:
# everybody starts on A (first in every list); mid-transfer A dies (SIGKILL, as a cluster
# node or a primary would); each attempt on A is then refused, the next goes to B, and
# gateway and devices meet again there. On B nothing is retained yet: the devices publish
# their status on connect and answer the gateway's hello, and each says what it holds (an
# ack), so every transfer continues from there. Checked: all commit with the exact image,
# no device accepted the offer twice or received the release over again, and the gateway
# sent little more than the transfer's fragments.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

IDS=(dev-001 dev-002 dev-003)
certs_make "${IDS[@]}" || { echo "Bail out! make-certs failed"; exit 1; }
broker_start_as brokerA || { not_ok "broker A starts"; finish; }
broker_start_as brokerB || { not_ok "broker B starts"; finish; }
PA=$BROKER_PORT_brokerA
PB=$BROKER_PORT_brokerB
LIST="localhost:$PA,localhost:$PB"
BROKER_PORT=$PA # mq_pub_as and announce: on A, where everybody is
check "gateway starts with two brokers and connects to the first" \
    gateway_start --brokers "$LIST"
check "  on A" grep -q "mqtt connected broker=localhost:$PA id=" "$T/gateway.log"
for id in "${IDS[@]}"; do device_start "$id" 1.0.0 --brokers "$LIST" --checkpoint-every 16; done
check "three devices report idle (on A)" wait_until 20 "all_devices idle 1.0.0 ${IDS[*]}"

make_payload "$T/fw.bin" 1048576
pack sensor 2.0.0 "$T/fw.bin" "$T/pkg.ota"
# Small fragments and a window of 2: long enough to stop A in the middle.
check "announce 2.0.0 (1 MiB in 512-byte fragments)" \
    announce sensor "file://$T/pkg.ota" ',"fragment_size":512,"window":2'
under_way() {
    local id n
    for id in "${IDS[@]}"; do
        n=$(dev_field "$id" acked 2>/dev/null)
        [ "${n:-0}" -ge 200 ] 2>/dev/null || return 1
    done
}
check "every transfer is under way" wait_until 60 under_way
total=$(dev_field dev-001 fragments)
declare -A before=()
for id in "${IDS[@]}"; do before[$id]=$(dev_field "$id" acked); done
echo "# acked before the failover: ${before[*]} of $total"
kill -9 "$(pid_of brokerA)"
moved() {
    local name
    for name in gateway "${IDS[@]}"; do
        grep -q "mqtt connected broker=localhost:$PB id=" "$T/$name.log" || return 1
    done
}
check "broker A killed: the gateway and the three devices connect to B" wait_until 30 moved
check "  the gateway says hello on B" \
    bash -c "[ \$(grep -c 'hello sent' '$T/gateway.log') -ge 2 ]"
check "every device commits 2.0.0" wait_until 180 "all_devices committed 2.0.0 ${IDS[*]}"
for id in "${IDS[@]}"; do
    check "$id's installed payload is exact" cmp -s "$T/fw.bin" "$T/dev/$id/active/payload"
    check "  $id accepted the offer once (no new download on B)" \
        test "$(grep -c 'accepted release=' "$T/$id.log")" = 1
    sent=$(dev_field "$id" frags_sent)
    check "  the gateway sent $id $sent fragments for $total: no start over (< 1.25 x)" \
        test "$sent" -lt $((total * 5 / 4))
done
check "gateway and devices stop cleanly, no sanitizer reports" \
    stop_all_clean gateway "${IDS[@]}"
stop brokerB || true
finish
