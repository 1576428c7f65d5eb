#!/usr/bin/env bash
# The broker is not there when the devices start, and it is killed and restarted in the
# middle of a transfer: clients keep retrying with backoff, reconnect by themselves, and
# the transfer completes exactly.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
broker_stop
broker_again() {
    broker_spawn broker "$T/mosquitto.conf"
    wait_until 10 "port_listening $BROKER_PORT"
}
for d in "${ids[@]}"; do device_start "$d" 1.0.0 --checkpoint-every 16; done
sleep 2
check "devices started without a broker say why they cannot connect" \
    grep -q 'connection failed: refused or closed before CONNACK' "$T/dev-001.log"
check "the broker comes up" broker_again
check "gateway starts" gateway_start
check "the devices connect by themselves" wait_until 20 "all_devices idle 1.0.0 ${ids[*]}"

make_payload "$T/fw.bin" 1048576
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota" ',"fragment_size":512,"window":2'
check "the transfer is under way" \
    wait_until 30 '[ "$(dev_field dev-001 acked)" -gt 100 ] && [ "$(dev_field dev-002 acked)" -gt 100 ]'
kill -9 "$(pid_of broker)"
stop broker >/dev/null 2>&1
mv "$T/broker.log" "$T/broker-1.log"
sleep 3
check "the broker restarts" broker_again
check "gateway and devices reconnect" \
    wait_until 30 "[ \$(grep -c 'mqtt connected' '$T/gateway.log') -ge 2 ] &&
        [ \$(grep -c 'mqtt connected' '$T/dev-001.log') -ge 2 ] &&
        [ \$(grep -c 'mqtt connected' '$T/dev-002.log') -ge 2 ]"
check "the transfers complete" wait_until 90 "all_devices committed 1.1.0 ${ids[*]}"
for d in "${ids[@]}"; do
    check "$d: exact payload" cmp -s "$T/fw.bin" "$T/dev/$d/active/payload"
done
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
finish
