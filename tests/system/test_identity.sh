#!/usr/bin/env bash
# Identity = certificate (issue 12, point 1). With the shipped broker configuration the
# client id is the certificate's CN (use_username_as_clientid), so a stolen device key can
# no longer take over another client's session:
#   1. dev-004's certificate connecting with the client id dev-002, ota-gateway or
#      ota-operator: the broker names the connection dev-004, and the victims (a running
#      device, the running gateway, an operator session) are never disconnected;
#   2. a takeover loop against the gateway while five releases are announced and six
#      `ota-gateway ctl` commands are sent: every one takes effect;
#   3. the same after a broker reload (SIGHUP);
#   4. roles: a named operator (make-certs.sh --operator) announces and controls; the
#      monitor (CN ota-monitor) reads statuses, releases and control, and writes nothing.
# On the configuration of main before this change (no use_username_as_clientid) parts 1-3
# fail: the broker logs "Client ... already connected, closing old connection" and
# announcements and ctl commands are lost while the gateway reconnects.
#
# OTA_BROKER=rabbitmq (make test-rabbitmq): RabbitMQ 3.10 cannot make the client id the
# certificate's CN, so part 1 checks what it does instead: each victim IS thrown off
# ("duplicate id") and reconnects, and the attacker gains nothing (it keeps dev-004's
# permissions). Parts 2 and 3 (the loop, which would keep the gateway off the broker) are
# skipped there; part 4 subscribes the monitor only to what it may read (RabbitMQ refuses
# its "ota/#" as a whole). docs/SECURITY.md, "RabbitMQ".
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001 dev-002 dev-004 --operator alice --monitor wall || { echo "Bail out! make-certs failed"; exit 1; }
broker_start || { not_ok "broker starts"; finish; }
RMQ=0
[ "${OTA_BROKER:-mosquitto}" != rabbitmq ] || RMQ=1
check "gateway starts" gateway_start
device_start dev-002 1.0.0
check "dev-002 online" wait_until 10 "all_devices idle 1.0.0 dev-002"
# The operator's session: a subscriber with the operator's certificate (client id
# ota-operator), as a dashboard or a long-running operator tool would be.
mq_sub_bg opsess operator 'ota/dev/+/status' 100000 600 || not_ok "an operator session connects"

# connected_once NAME: NAME's log shows exactly one connection.
connected_once() {
    local n
    case $1 in
    opsess) n=$(grep -c 'sending CONNECT' "$T/opsess.log") ;;
    *) n=$(grep -c 'mqtt connected' "$T/$1.log") ;;
    esac
    [ "$n" = 1 ] || { echo "$1 connected $n times"; return 1; }
    ! grep -q 'connection lost' "$T/$1.log" || { grep 'connection lost' "$T/$1.log"; return 1; }
}
# attack ID: dev-004's certificate connects with client id ID and publishes on its own
# status topic (which the ACL allows it); the connection must be accepted as dev-004.
attack() {
    mq_pub_as dev-004 ota/dev/dev-004/status '{"x":1}' -q 1 -i "$1"
}
no_takeover_in_broker_log() {
    ! grep -E 'already connected, closing old connection' "$T/broker.log"
}

# --- 1. one takeover attempt per victim ------------------------------------------------
if [ "$RMQ" = 1 ]; then
    # The attacker's CONNECT may itself be refused (CONNACK 3 where RabbitMQ would have to
    # delete the victim's subscription queue, which dev-004 may not): the victim is thrown
    # off before that.
    for victim in dev-002 ota-gateway ota-operator; do
        attack "$victim" >>"$T/attack.out" 2>&1 || true
    done
    sleep 1
    n=$(grep -c -E "with duplicate id '(dev-002|ota-gateway|ota-operator)'" "$T/rabbit1.log")
    check "RabbitMQ throws each victim off ($n of 3: the client id is not bound to the CN)" \
        test "$n" -ge 3
    reconnected() { [ "$(grep -c 'mqtt connected' "$T/$1.log")" -ge 2 ]; }
    check "the device and the gateway reconnect" \
        wait_until 20 'reconnected dev-002 && reconnected gateway'
    check "dev-002 is back in the ledger, idle" wait_until 10 "all_devices idle 1.0.0 dev-002"
    # With its victim's client id the attacker still has only dev-004's permissions.
    check "dev-004's certificate with client id dev-002 cannot publish dev-002's status" \
        eval '! mq_pub_as dev-004 ota/dev/dev-002/status "{\"state\":\"failed\"}" -q 1 -i dev-002'
    check "nor read the gateway's topics with client id ota-gateway" \
        eval '! mq_sub_as dev-004 "ota/dev/+/status" 1 3 -i ota-gateway -E'
    sleep 0.5
    check "dev-002 is still idle in the ledger" all_devices idle 1.0.0 dev-002
    stop opsess
    skip "parts 2 and 3: a takeover loop against the gateway" \
        "RabbitMQ 3.10 lets any certificate take a client id (docs/SECURITY.md, RabbitMQ)"
else
# (Mosquitto: parts 1 to 3, not indented.)
for victim in dev-002 ota-gateway ota-operator; do
    check "dev-004's certificate connects with client id $victim" attack "$victim"
done
sleep 1
n=$(grep -c "as dev-004 (p2, c1, k60, u'dev-004')" "$T/broker.log")
check "the broker names each of those connections dev-004 ($n of 3)" test "$n" = 3
check "the broker disconnected nobody in favour of them" no_takeover_in_broker_log
check "the device dev-002 stayed connected" connected_once dev-002
check "the gateway stayed connected" connected_once gateway
check "the operator session stayed connected" eval 'alive opsess && connected_once opsess'

# --- 2. a takeover loop against the gateway while the operator works ----------------------
# (The operator session ends here: the announcements below use the same certificate, and
# two clients with one certificate do throw each other off, by design.)
stop opsess
# Five products, one release each, announced with the default operator certificate; six
# control commands with ota-gateway ctl and the named operator alice's certificate.
products=(p1 p2 p3 p4 p5)
make_payload "$T/fw.bin" 8192
for p in "${products[@]}"; do pack "$p" 1.0.0 "$T/fw.bin" "$T/$p.ota"; done
loop() {
    local n=0
    while [ ! -e "$T/loop.stop" ]; do
        mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$CERTS/ca.crt" \
            --cert "$CERTS/devices/dev-004.crt" --key "$CERTS/devices/dev-004.key" \
            -i ota-gateway -t ota/dev/dev-004/status -m '{"x":2}' -q 1 2>/dev/null
        n=$((n + 1))
        echo "$n" >"$T/loop.count"
    done
}
loop &
LOOP_PID=$!
_LIB_ALL+=("$LOOP_PID")
sleep 1
ctl() {
    "$GW" ctl "$1" --product "$2" --broker-host localhost --broker-port "$BROKER_PORT" \
        --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/operators/alice.crt" \
        --key-file "$CERTS/operators/alice.key"
}
events() { gw_status_json | jq -r "[.events[] | select($1)] | length"; }
sent=0
for p in "${products[@]}"; do
    announce "$p" "file://$T/$p.ota" && sent=$((sent + 1))
    sleep 0.3
done
check "five announcements acknowledged by the broker ($sent)" test "$sent" = 5
check "all five releases verified by the gateway" \
    wait_until 20 '[ "$(events ".event == \"release_verified\"")" = 5 ]'
acked=0
for c in "pause p1" "pause p2" "resume p1" "pause p3" "abort p4" "pause p5"; do
    # shellcheck disable=SC2086  # "action product"
    ctl $c >>"$T/ctl.out" 2>&1 && acked=$((acked + 1))
    sleep 0.3
done
check "six ctl commands acknowledged by the broker ($acked)" test "$acked" = 6
check "every one took effect: 4 paused, 1 resumed, 1 aborted" \
    wait_until 10 '[ "$(events ".event == \"paused\"")/$(events ".event == \"resumed\"")/$(events ".event == \"release_aborted\"")" = 4/1/1 ]'
touch "$T/loop.stop"
wait "$LOOP_PID" 2>/dev/null
tries=$(cat "$T/loop.count" 2>/dev/null || echo 0)
echo "# takeover loop: $tries connections with client id ota-gateway"
check "the loop ran (>= 10 connections: $tries)" test "$tries" -ge 10
states=$(gw_status_json | jq -r '[.releases[] | "\(.product):\(.campaign.state)"] | sort | join(" ")')
echo "# campaign states: $states"
check "the gateway was never disconnected by the loop" connected_once gateway
check "the broker disconnected nobody in favour of the loop" no_takeover_in_broker_log

# --- 3. the binding survives a broker reload -----------------------------------------------
check "the broker reloads (SIGHUP)" broker_reload
check "dev-004's certificate connects with client id ota-gateway after the reload" \
    attack ota-gateway
sleep 1
check "the gateway still stayed connected" connected_once gateway
check "and the broker named that connection dev-004 too" \
    test "$(grep -c "as dev-004 (p2, c1, k60, u'dev-004')" "$T/broker.log")" -ge $((3 + tries))

fi

# --- 4. roles -------------------------------------------------------------------------------
# The named monitor ota-monitor-wall reads; the default monitor ota-monitor tries to write
# (one certificate cannot do both at once: the second connection would end the first).
mq_sub_bg obs observer1 'ota/#' 1000 60 || not_ok "an observer subscribes to ota/#"
if [ "$RMQ" = 1 ]; then
    mon_refused() {
        mq_sub_as monitor-wall 'ota/#' 1 3 -d >"$T/mon-all.out" 2>&1
        ! grep -q 'received SUBACK' "$T/mon-all.out"
    }
    check "RabbitMQ refuses the monitor's subscription to ota/#" mon_refused
    mq_sub_bg mon monitor-wall 'ota/dev/+/status' 1000 60 -t 'ota/release/+' -t 'ota/ctl/+' ||
        not_ok "the monitor (wall) subscribes to statuses, releases and control"
else
    mq_sub_bg mon monitor-wall 'ota/#' 1000 60 || not_ok "the monitor (wall) subscribes to ota/#"
fi
mq_pub_as monitor ota/release/p1 'mon-release' -q 1
mq_pub_as monitor ota/ctl/p1 '{"action":"abort"}' -q 1
mq_pub_as monitor ota/dev/dev-001/status 'mon-status' -q 1
mq_pub_as monitor ota/dev/ota-monitor/status 'mon-own-status' -q 1
mq_pub_as monitor ota/dev/ota-monitor/ack 'mon-own-ack' -q 1
mq_pub_as operator-alice ota/dev/ota-operator-alice/status 'alice-own-status' -q 1
mq_pub_as operator ota/dev/ota-operator/status 'op-own-status' -q 1
# Controls: what the monitor may read, written by those allowed to.
mq_pub_as dev-001 ota/dev/dev-001/status 'dev-status' -q 1
mq_pub_as dev-001 ota/dev/dev-001/ack 'dev-ack' -q 1
mq_pub_as operator-alice ota/release/p9 'alice-release' -q 1
mq_pub_as operator-alice ota/ctl/p9 'alice-ctl' -q 1
mq_pub_as injector ota/dev/dev-001/offer 'inj-offer' -q 1
check "control: the observer sees the device's, alice's and the injector's messages" \
    wait_until 5 '[ "$(mq_msgs obs | grep -c -E " (dev-status|dev-ack|alice-release|alice-ctl|inj-offer)$")" = 5 ]'
sleep 0.3
check "a (named) monitor reads statuses, releases and control" \
    bash -c "[ \"\$(grep -c -E '^MSG [^ ]+ (dev-status|alice-release|alice-ctl)$' '$T/mon.log')\" = 3 ]"
check "the monitor reads no acks or offers" \
    bash -c "! grep -E '^MSG [^ ]+ (dev-ack|inj-offer)$' '$T/mon.log'"
check "the monitor writes nothing (release, control, a device's status, its own device topics)" \
    bash -c "! grep -E '^MSG [^ ]+ (mon-|\\{\"action\":\"abort\"\\})' '$T/obs.log'"
check "an operator cannot pose as a device named after it" \
    bash -c "! grep -E '^MSG [^ ]+ (alice-own-status|op-own-status)$' '$T/obs.log'"
no_service_devices() {
    ! gw_status_json | jq -e '.devices[] | select(.device | startswith("ota-"))'
}
check "the gateway took no status from a service identity" no_service_devices

check "gateway and device stop cleanly" stop_all_clean gateway dev-002
finish
