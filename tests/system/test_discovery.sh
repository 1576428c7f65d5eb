#!/usr/bin/env bash
# Broker-independent discovery (issue 16, point 2). RabbitMQ delivers retained messages only
# to exact-topic subscriptions (and keeps them per cluster node), so a gateway must not need
# the retained statuses to reach its wildcard subscription ota/dev/+/status. Here the
# retained statuses are cleared before the gateway starts, which leaves the gateway exactly
# what such a broker would give it: nothing. It learns every device anyway, because on
# connecting it says hello (ota/hello) and each device answers with its status, at a random
# time within the spread the hello names. A silent device is polled on its own exact topic
# ota/dev/<id>/poll. And the ACL: only the gateway writes the hello, a device reads only its
# own poll topic.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

IDS=(dev-001 dev-002 dev-003 dev-004)
# dev-005 only lends its certificate to a client that is not the device (publishing as a
# running device would throw it off: the CN is the client id).
certs_make "${IDS[@]}" dev-005 || { echo "Bail out! make-certs failed"; exit 1; }
broker_start || { not_ok "broker starts"; finish; }
for id in "${IDS[@]}"; do device_start "$id" 1.0.0; done
check "four devices publish their (retained) status" \
    wait_until 20 "[ \"\$(mq_sub_as observer1 'ota/dev/+/status' 4 3 | grep -c '\"state\":\"idle\"')\" = 4 ]"
for id in "${IDS[@]}"; do mq_pubf_as injector "ota/dev/$id/status" /dev/null -r -q 1; done
nothing_retained() {
    local rc=0
    mq_sub_as observer1 'ota/dev/+/status' 1 2 >/dev/null || rc=$?
    [ "$rc" = 27 ]
}
check "their retained statuses are cleared (what a wildcard gets on RabbitMQ)" nothing_retained

mq_sub_bg hello observer2 ota/hello 10 120 -v || not_ok "an observer subscribes to ota/hello"
check "a gateway started now, on an empty ledger" gateway_start --hello-spread-s 3
check "  says hello once, naming the spread" \
    wait_until 10 "grep -q 'ota/hello {\"spread_ms\":3000}' '$T/hello.log'"
check "the ledger learns all four devices, idle 1.0.0, from their answers" \
    wait_until 15 "all_devices idle 1.0.0 ${IDS[*]}"
spread_out() {
    [ "$(gw_status_json | jq '[.devices[].seen_ms / 100 | floor] | unique | length')" -gt 1 ]
}
check "  the answers are spread: not all four in the same 100 ms" spread_out
mq_pub_as dev-005 ota/hello '{"spread_ms":0}' -q 1
sleep 2
check "a device cannot say hello to the fleet (ACL: only the gateway writes ota/hello)" \
    test "$(mq_count hello)" = 1
check "the gateway stops cleanly" stop_all_clean gateway

# A poll on a device's exact topic (the gateway's certificate, now free): that device
# answers at once, and no other. -R: live statuses only, not the retained ones.
mq_sub_bg answers observer3 'ota/dev/+/status' 10 60 -v -R || not_ok "an observer subscribes"
check "a status poll on ota/dev/dev-002/poll, as the gateway" \
    mq_pub_as gateway ota/dev/dev-002/poll '{"spread_ms":0}' -q 1
check "  dev-002 answers with its status" \
    wait_until 5 "mq_msgs answers | grep -q '^ota/dev/dev-002/status .*\"state\":\"idle\"'"
sleep 1
check "  and no other device does" test "$(mq_count answers)" = 1
mq_pub_as dev-005 ota/dev/dev-002/poll '{}' -q 1
mq_pub_as gateway ota/dev/dev-001/poll 'not json' -q 1
sleep 2
check "a device cannot poll another (ACL), and a malformed poll is dropped" \
    test "$(mq_count answers)" = 1
check "  and counted" grep -q 'dev-001 malformed poll on ota/dev/dev-001/poll dropped' "$T/dev-001.log"
check "the devices stop cleanly, no sanitizer reports" stop_all_clean "${IDS[@]}"
finish
