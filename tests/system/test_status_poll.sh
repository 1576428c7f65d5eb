#!/usr/bin/env bash
# Statuses the broker dropped on their way to the gateway are asked for again. Mosquitto
# drops QoS 1 messages beyond a client's queue ("Outgoing messages are being dropped"), as
# happens when thousands of devices report at once; here the broker's limits are cut to
# one message in flight and one queued, and the gateway is frozen while the device
# finishes. The device's final status is lost on the way, but it is retained at the
# broker: after 10 s without a word from a device in an update, the gateway subscribes to
# that device's status topic once more and the ledger catches up.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001
BROKER_SED='s/^max_queued_messages .*/max_queued_messages 1\nmax_inflight_messages 1/' \
    broker_start || { not_ok "broker starts"; finish; }
check "the broker runs with one message in flight and one queued per client" \
    grep -q '^max_inflight_messages 1$' "$T/mosquitto.conf"
# MQTT 3.1.1: for an MQTT 5 client the broker bounds what is in flight by the client's
# receive maximum, not by max_inflight_messages, and would not drop anything here.
check "gateway starts and connects" gateway_start --log-level debug --mqtt-version 3.1.1
# The restart command holds the device in "restarting" for 3 s: time to freeze the gateway.
device_start dev-001 1.0.0 --restart-command 'sleep 3'
check "dev-001 reports idle" wait_until 15 'all_devices idle 1.0.0 dev-001'
make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota"
check "dev-001 is restarting" wait_until 30 '[ "$(dev_field dev-001 state)" = restarting ]'
kill -STOP "$(pid_of gateway)"
# Fill what the broker holds for the frozen gateway (one in flight, one queued), so that
# what the device says next is dropped.
for i in 1 2 3; do mq_pub_as operator ota/ctl/nothing '{"action":"pause"}' -q 1 || true; done
check "meanwhile dev-001 commits (its own state says so)" \
    wait_until 20 "grep -q '\"phase\":\"committed\"' '$T/dev/dev-001/state.json'"
sleep 1
kill -CONT "$(pid_of gateway)"
check "the broker dropped messages for the gateway" \
    wait_until 5 "grep -q 'Outgoing messages are being dropped for client ota-gateway' '$T/broker.log'"
check "the ledger catches up: dev-001 committed 1.1.0" \
    wait_until 30 'all_devices committed 1.1.0 dev-001'
check "because the gateway asked for the status again" \
    grep -q 'device=dev-001 silent for .* its status asked for again' "$T/gateway.log"
check "dev-001's payload is the new one" cmp -s "$T/fw.bin" "$T/dev/dev-001/active/payload"
check "everything stops cleanly" stop_all_clean dev-001 gateway
finish
