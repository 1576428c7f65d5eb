#!/usr/bin/env bash
# Rollout control: targeting by group and by id, concurrency limit, canary stage with
# automatic pause, operator pause / resume / abort on ota/ctl/<product>, and a device that
# was offline when the release appeared getting it when it comes back.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002 dev-003 dev-004 dev-005 dev-006)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
for d in dev-001 dev-002 dev-003; do device_start "$d" 1.0.0 --group east; done
for d in dev-004 dev-005; do device_start "$d" 1.0.0 --group west; done
check "five devices online" wait_until 10 "all_devices idle 1.0.0 dev-001 dev-002 dev-003 dev-004 dev-005"
make_payload "$T/fw.bin" 65536
events() { gw_status_json | jq -r "[.events[] | select($1)] | length"; }
count_event() { events ".event == \"$1\""; }
ctl() { mq_pub_as operator ota/ctl/sensor "$1" -q 1; }

# Targeting: a group, then one device by id.
pack sensor 1.1.0 "$T/fw.bin" "$T/p110.ota"
announce sensor "file://$T/p110.ota" ',"group":"east","concurrency":1'
check "group east gets 1.1.0" wait_until 30 "all_devices committed 1.1.0 dev-001 dev-002 dev-003"
check "group west does not" all_devices idle 1.0.0 dev-004 dev-005
order=$(gw_status_json | jq -r '[.events[] | select(.event == "offered" or .event == "committed") | .event] | join(",")')
check "concurrency 1: each offer waits for the previous commit ($order)" \
    test "$order" = "offered,committed,offered,committed,offered,committed"
pack sensor 1.1.1 "$T/fw.bin" "$T/p111.ota"
announce sensor "file://$T/p111.ota" ',"devices":["dev-004"]'
check "an explicit id list reaches dev-004" wait_until 30 "all_devices committed 1.1.1 dev-004"
sleep 0.5
check "and only dev-004" all_devices committed 1.1.0 dev-001 dev-002 dev-003

# Canary: the canary (drawn at random, see test_canary.sh) fails its restart, and with
# "pause_failure_min":1 that one failure pauses the campaign. Every east device gets a
# restart command that fails only the first time any of them runs it.
for d in dev-001 dev-002 dev-003; do
    stop "$d"
    device_start "$d" 1.1.0 --group east --restart-command "! mkdir '$T/canary-failed' 2>/dev/null"
done
wait_until 10 "all_devices committed 1.1.0 dev-001 dev-002 dev-003" # retained statuses are back
pack sensor 1.2.0 "$T/fw.bin" "$T/p120.ota"
announce sensor "file://$T/p120.ota" \
    ',"group":"east","canary_percent":20,"canary_success_percent":100,"pause_failure_min":1'
rolled_back() { gw_status_json | jq -r '[.devices[] | select(.state == "rolled_back") | .device] | join(" ")'; }
check "the canary device rolls back" wait_until 30 '[ -n "$(rolled_back)" ]'
canary=$(rolled_back)
check "the campaign pauses itself: canary failed" wait_until 10 '[ "$(count_event canary_failed)" = 1 ]'
sleep 1
check "no other device was offered 1.2.0" \
    test "$(events '.event == "offered" and .detail == "1.2.0"')" = 1
check "status shows the release paused with the reason" \
    bash -c "'$GW' status --db '$T/gw-db' | grep -q 'paused: canary: 0% committed, 100% required (1 failed)'"
ctl '{"action":"resume"}'
rest=$(printf '%s\n' dev-001 dev-002 dev-003 | grep -v -x "$canary" | tr '\n' ' ')
check "after the operator resumes, the rest of the group commits ($rest)" \
    wait_until 30 "all_devices committed 1.2.0 $rest"
check "the failed canary ($canary) is not offered the same release again" \
    test "$(dev_field "$canary" state) $(dev_field "$canary" version)" = "rolled_back 1.1.0"

# Pause and abort a slow transfer (small fragments, window 1).
make_payload "$T/big.bin" 1048576
pack sensor 1.3.0 "$T/big.bin" "$T/p130.ota"
announce sensor "file://$T/p130.ota" ',"devices":["dev-005"],"fragment_size":256,"window":1'
check "the slow transfer starts" wait_until 20 '[ "$(dev_field dev-005 acked)" -gt 50 ] 2>/dev/null'
ctl '{"action":"pause"}'
sleep 0.5
a1=$(dev_field dev-005 acked)
sleep 1.5
a2=$(dev_field dev-005 acked)
check "pause stops the transfer ($a1 -> $a2 fragments)" test "$a1" = "$a2"
check "ota-gateway ctl resume (the CLI) is acknowledged by the broker" \
    "$GW" ctl resume --product sensor --broker-host localhost --broker-port "$BROKER_PORT" \
    --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/operator.crt" --key-file "$CERTS/operator.key"
check "resume continues it" wait_until 10 "[ \"\$(dev_field dev-005 acked)\" -gt $a2 ]"
ctl '{"action":"abort"}'
check "abort ends it with a reason in the ledger" \
    wait_until 10 '[ "$(dev_field dev-005 error)" = "update aborted by the operator" ]'
a3=$(dev_field dev-005 acked)
sleep 1.5
check "and nothing more is sent" test "$(dev_field dev-005 acked)" = "$a3"
check "dev-005 still runs 1.0.0" test "$(dev_field dev-005 version)" = 1.0.0

# An announcement of an older version than one already released changes nothing.
pack sensor 1.0.5 "$T/fw.bin" "$T/p105.ota"
announce sensor "file://$T/p105.ota"
check "an older release is ignored" \
    wait_until 10 "grep -q 'release sensor 1.0.5 ignored: 1.3.0 is already released' '$T/gateway.log'"
check "and offered to nobody" test "$(events '.event == "offered" and .detail == "1.0.5"')" = 0

# A device that was offline when 1.2.0 appeared gets it when it comes back.
device_start dev-006 1.0.0 --group east
check "a device that was offline gets the release when it appears" \
    wait_until 30 "all_devices committed 1.2.0 dev-006"
check "everything stops cleanly" stop_all_clean gateway dev-001 dev-002 dev-003 dev-004 dev-005 dev-006
finish
