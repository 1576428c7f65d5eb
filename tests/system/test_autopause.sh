#!/usr/bin/env bash
# A campaign pauses itself when too many devices fail, before the rest are touched;
# the CLI can abort it, after which nothing more is offered.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002 dev-003 dev-004 dev-005)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
# The first three (offered first: concurrency 1, in id order) cannot restart.
for d in dev-001 dev-002 dev-003; do device_start "$d" 1.0.0 --restart-command false; done
for d in dev-004 dev-005; do device_start "$d" 1.0.0; done
check "devices online" wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"
make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota" ',"concurrency":1,"pause_failure_percent":50'
check "three devices roll back" \
    wait_until 30 "all_devices rolled_back 1.0.0 dev-001 dev-002 dev-003"
check "the campaign paused itself on the failure rate" \
    wait_until 10 "'$GW' status --db '$T/gw-db' | grep -q 'paused: failure rate 100% (3 of 3) above 50%'"
sleep 1
check "the other two were never offered it" all_devices idle 1.0.0 dev-004 dev-005
check "ota-gateway ctl abort" "$GW" ctl abort --product sensor --broker-host localhost \
    --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/operator.crt" \
    --key-file "$CERTS/operator.key"
check "the release is aborted" \
    wait_until 10 "'$GW' status --db '$T/gw-db' | grep -q ' aborted '"
check "resume after abort is refused: ctl exits 1 with the gateway's reason" \
    bash -c "! '$GW' ctl resume --product sensor --broker-host localhost --broker-port $BROKER_PORT \
        --ca-file '$CERTS/ca.crt' --cert-file '$CERTS/operator.crt' --key-file '$CERTS/operator.key' \
        2>'$T/resume.err' && grep -q 'release was aborted (aborted by the operator); publish a new release instead' '$T/resume.err'"
check "and still nothing reaches the rest" all_devices idle 1.0.0 dev-004 dev-005
check "ctl with a device's certificate is refused by the broker (ACL): exit 1, not authorised" \
    bash -c "! '$GW' ctl resume --product sensor --broker-host localhost --broker-port $BROKER_PORT \
        --ca-file '$CERTS/ca.crt' --cert-file '$CERTS/devices/dev-004.crt' \
        --key-file '$CERTS/devices/dev-004.key' 2>'$T/acl.err' && grep -q 'not authorised' '$T/acl.err' &&
        sleep 1 && [ \$(grep -c 'verdict command=resume' '$T/gateway.log') = 1 ]"
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
finish
