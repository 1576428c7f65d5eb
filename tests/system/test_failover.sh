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
FLEET=(fl-001 fl-002 fl-003) # one ota-device --fleet 3 process
certs_make "${IDS[@]}" || { echo "Bail out! make-certs failed"; exit 1; }
certs_make --devices 3 --prefix fl- || { echo "Bail out! make-certs failed"; exit 1; }
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
spawn fleet "$DEV" --fleet 3 --fleet-prefix fl- --fleet-cert-dir "$CERTS/devices" \
    --product sensor --version 1.0.0 --brokers "$LIST" --ca-file "$CERTS/ca.crt" \
    --publisher-key "$CERTS/publisher.pub" --state-dir "$T/fleet" --checkpoint-every 16 \
    --log-level info
check "three devices and a fleet of three report idle (on A)" \
    wait_until 30 "all_devices idle 1.0.0 ${IDS[*]} ${FLEET[*]}"

make_payload "$T/fw.bin" 1048576
pack sensor 2.0.0 "$T/fw.bin" "$T/pkg.ota"
# Small fragments and a window of 2: long enough to stop A in the middle.
check "announce 2.0.0 (1 MiB in 512-byte fragments)" \
    announce sensor "file://$T/pkg.ota" ',"fragment_size":512,"window":2'
under_way() {
    local id n
    for id in "${IDS[@]}" "${FLEET[@]}"; do
        n=$(dev_field "$id" acked 2>/dev/null)
        [ "${n:-0}" -ge 200 ] 2>/dev/null || return 1
    done
}
check "every transfer is under way" wait_until 60 under_way
total=$(dev_field dev-001 fragments)
declare -A before=()
for id in "${IDS[@]}" "${FLEET[@]}"; do before[$id]=$(dev_field "$id" acked); done
echo "# acked before the failover: ${before[*]} of $total"
kill -9 "$(pid_of brokerA)"
moved() {
    local name
    for name in gateway "${IDS[@]}"; do
        grep -q "mqtt connected broker=localhost:$PB id=" "$T/$name.log" || return 1
    done
    [ "$(grep -a -o "mqtt connected broker=localhost:$PB id=fl-00[1-3]" "$T/fleet.log" |
        sort -u | wc -l)" = 3 ]
}
check "broker A killed: the gateway, the devices and the fleet's connect to B" wait_until 30 moved
check "  the gateway says hello on B" \
    bash -c "[ \$(grep -c 'hello sent' '$T/gateway.log') -ge 2 ]"
check "every device commits 2.0.0" \
    wait_until 180 "all_devices committed 2.0.0 ${IDS[*]} ${FLEET[*]}"
for id in "${IDS[@]}"; do
    check "$id's installed payload is exact" cmp -s "$T/fw.bin" "$T/dev/$id/active/payload"
    check "  $id accepted the offer once (no new download on B)" \
        test "$(grep -c 'accepted release=' "$T/$id.log")" = 1
done
for id in "${IDS[@]}" "${FLEET[@]}"; do
    sent=$(dev_field "$id" frags_sent)
    check "the gateway sent $id $sent fragments for $total: no start over (< 1.25 x)" \
        test "$sent" -lt $((total * 5 / 4))
done
for id in "${FLEET[@]}"; do
    check "fleet device $id's payload is exact, accepted once" \
        bash -c "cmp -s '$T/fw.bin' '$T/fleet/$id/active/payload' &&
            [ \$(grep -c 'device=$id accepted release=' '$T/fleet.log') = 1 ]"
done
# The operator's tools take the list too: A is dead, B answers.
check "ota-gateway announce --dry-run with --brokers A,B: A refused, the verdict through B" \
    "$GW" announce --dry-run --product sensor --url "file://$T/pkg.ota" --brokers "$LIST" \
    --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/operator.crt" \
    --key-file "$CERTS/operator.key" --timeout-s 20
check "gateway and devices stop cleanly, no sanitizer reports" \
    stop_all_clean gateway fleet "${IDS[@]}"
stop brokerB || true
finish
