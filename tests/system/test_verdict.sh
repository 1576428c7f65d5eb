#!/usr/bin/env bash
# Every command gets a verdict (issue 13, point 2): `ota-gateway announce` and `ctl` wait for
# the gateway's answer and exit non-zero on a refusal, a broker's "not authorised" or no
# answer; a dry run targets without starting; a group that matches no device is refused with
# the known groups; plain mosquitto_pub still works and its verdict is kept, retained, on
# ota/result/<product>/last; only the operator may read verdicts; MQTT 3.1.1 clients and a
# 3.1.1 gateway get verdicts through the request's "reply" id.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001 dev-002 dev-003
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
for d in dev-001 dev-002; do device_start "$d" 1.0.0 --group east; done
device_start dev-003 1.0.0 --group west
check "three devices online" wait_until 10 "all_devices idle 1.0.0 dev-001 dev-002 dev-003"
make_payload "$T/fw.bin" 20000
pack sensor 1.1.0 "$T/fw.bin" "$T/p110.ota"

CONN=(--broker-host localhost --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt"
    --cert-file "$CERTS/operator.crt" --key-file "$CERTS/operator.key" --timeout-s 20)
# run_cmd CMD...: stdout+stderr in $T/out, exit status in $T/rc.
run_cmd() {
    local rc=0
    "$@" >"$T/out" 2>&1 || rc=$?
    echo "$rc" >"$T/rc"
    sed 's/^/#   /' "$T/out"
}
rc() { cat "$T/rc"; }
out_has() { grep -qE -- "$1" "$T/out"; }
releases() { gw_status_json | jq '.releases | length'; }

run_cmd "$GW" announce --product sensor --url "file://$T/p110.ota" --group east --dry-run "${CONN[@]}"
check "announce --dry-run exits 0" test "$(rc)" = 0
check "and says which devices it would target" \
    bash -c "grep -q 'announce sensor 1.1.0: dry run' '$T/out' && grep -q 'targets 2 devices: dev-001, dev-002' '$T/out'"
check "and starts nothing: no release in the ledger" test "$(releases)" = 0

run_cmd "$GW" announce --product sensor --url "file://$T/p110.ota" --group est "${CONN[@]}"
check "a group that matches no device is refused (exit 1)" test "$(rc)" = 1
check "with the known groups" out_has "targets 0 devices: no device reports group 'est'; known groups: east, west"
check "and nothing is recorded" test "$(releases)" = 0

run_cmd "$GW" announce --product sensor --url "file://$T/p110.ota" --group east "${CONN[@]}"
check "the corrected announcement is accepted (exit 0)" test "$(rc)" = 0
check "with release, version and targets" out_has 'announce sensor 1.1.0: accepted \(release [0-9a-f]{16}\)'
check "targets 2 devices: dev-001, dev-002" out_has 'targets 2 devices: dev-001, dev-002'
check "group east commits" wait_until 30 "all_devices committed 1.1.0 dev-001 dev-002"

run_cmd "$GW" announce --product sensor --url "file://$T/p110.ota" --group east "${CONN[@]}"
check "announcing it again: already known (exit 0)" bash -c "[ $(rc) = 0 ] && grep -q 'announce sensor 1.1.0: known' '$T/out'"

run_cmd "$GW" announce --product sensor --url "file://$T/missing.ota" "${CONN[@]}"
check "a URL to a missing file is refused (exit 1) with the reason" \
    bash -c "[ $(rc) = 1 ] && grep -q 'cannot open $T/missing.ota' '$T/out'"

run_cmd "$GW" announce --product sensor --url "file://$T/p110.ota" --broker-host localhost \
    --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/devices/dev-001.crt" \
    --key-file "$CERTS/devices/dev-001.key" --timeout-s 5
check "a certificate that may not announce: exit 1" test "$(rc)" = 1
check "the broker's 'not authorised' is reported with the certificate used" \
    out_has "refused the publish on ota/release/sensor: not authorised \(certificate .*dev-001.crt, CN 'dev-001'\)"

run_cmd "$GW" ctl pause --product nosuch "${CONN[@]}"
check "ctl pause of a product that does not exist: exit 1, 'no such product'" \
    bash -c "[ $(rc) = 1 ] && grep -q 'no such product' '$T/out'"

pack sensor 1.2.0 "$T/fw.bin" "$T/p120.ota"
run_cmd "$GW" announce --product sensor --url "file://$T/p120.ota" --devices dev-003 "${CONN[@]}"
check "announce 1.2.0 to dev-003" test "$(rc)" = 0
wait_until 30 "all_devices committed 1.2.0 dev-003"
run_cmd "$GW" ctl abort --product sensor "${CONN[@]}"
check "ctl abort: exit 0" test "$(rc)" = 0
run_cmd "$GW" ctl resume --product sensor "${CONN[@]}"
check "ctl resume of an aborted release: exit 1, 'release was aborted'" \
    bash -c "[ $(rc) = 1 ] && grep -q 'release was aborted' '$T/out'"

# Plain mosquitto_pub, no reply id: the verdict is logged, in the event log, and retained.
mq_pub_as operator ota/release/sensor '{"url":"file:///x.ota","gruop":"east"}' -q 1
check "a JSON typo published with mosquitto_pub: the retained verdict says why" \
    wait_until 10 "mq_sub_as operator ota/result/sensor/last 1 3 | jq -e '.verdict == \"refused\" and (.reason | test(\"unknown field .gruop.\"))' >/dev/null"
check "and the gateway's log says so" grep -q 'verdict command=announce product=sensor verdict=refused' "$T/gateway.log"
rel=$(gw_status_json | jq -r '.releases[] | select(.version == "1.1.0") | .release')
rel_verdict() { mq_sub_as operator "ota/result/sensor/rel/$rel" 1 3 | jq -e --arg r "$rel" '.release == $r' >/dev/null; }
check "each release's verdict is retained on ota/result/sensor/rel/<id>" rel_verdict
rc=0
mq_sub_as dev-001 'ota/result/#' 1 2 >/dev/null 2>&1 || rc=$?
check "a device cannot read verdicts (ACL): it gets nothing" test "$rc" = 27

check "the event log records each verdict and the claimed operator" \
    test "$(gw_status_json | jq '[.events[] | select(.event == "verdict" and (.detail | test("operator=ota-operator \\(claimed\\)")))] | length')" -ge 6

run_cmd "$GW" ctl pause --product sensor --release "$rel" --mqtt-version 3.1.1 "${CONN[@]}"
check "an MQTT 3.1.1 client gets its verdict through the reply id" \
    bash -c "[ $(rc) = 0 ] && grep -q 'pause sensor 1.1.0: ' '$T/out'"

stop gateway
check "a gateway speaking MQTT 3.1.1 (RabbitMQ) starts" gateway_start --mqtt-version 3.1.1
run_cmd "$GW" ctl resume --product sensor --release "$rel" "${CONN[@]}"
check "and answers an MQTT 5 client through the reply id" \
    bash -c "[ $(rc) = 0 ] && grep -q 'resume sensor 1.1.0: ' '$T/out'"
check "the ledger is consistent (fsck)" gw_fsck
check "everything stops cleanly" stop_all_clean gateway dev-001 dev-002 dev-003
finish
