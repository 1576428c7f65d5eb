#!/usr/bin/env bash
# --check that checks, and errors a person can act on (issue 13, points 6 and 7):
# `ota-gateway run --check` and `ota-device --check` load the certificate, key and CA (key
# matches, CA verifies, not expired, CN = the configured identity), the publisher keys and
# the directories, and print every problem with its config key; what --check refuses, run
# refuses at once with the same words instead of retrying TLS handshakes forever; a TLS
# failure at run time says what failed and which file or name to look at.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001 dev-002 --rogue --expired
# fails_with PATTERN CMD...: CMD exits 2 by itself within 10 s, stderr matches PATTERN.
fails_with() {
    local pat=$1 rc=0
    shift
    timeout 10 "$@" >"$T/cmd.out" 2>"$T/cmd.err" </dev/null || rc=$?
    sed 's/^/#   /' "$T/cmd.out" "$T/cmd.err"
    echo "# (exit status $rc)"
    [ "$rc" = 2 ] && ! grep -qE 'Sanitizer|runtime error:' "$T/cmd.err" && grep -qE -- "$pat" "$T/cmd.err"
}
GWC=(--broker-host localhost --broker-port 1 --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/gateway.crt"
    --key-file "$CERTS/gateway.key" --publisher-key "$CERTS/publisher.pub" --db-dir "$T/gw-db"
    --store-dir "$T/gw-store")
DEVC=(--id dev-001 --product sensor --firmware-version 1.0.0 --broker-host localhost --broker-port 1
    --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/devices/dev-001.crt"
    --key-file "$CERTS/devices/dev-001.key" --publisher-key "$CERTS/publisher.pub"
    --state-dir "$T/dev-001")

check "run --check accepts a good configuration" bash -c "'$GW' run ${GWC[*]} --check | grep -q 'configuration OK'"
check "run --check: a key that does not match the certificate, named by key_file" \
    fails_with "key_file: $CERTS/devices/dev-001.key: private key does not match certificate $CERTS/gateway.crt" \
    "$GW" run "${GWC[@]}" --key-file "$CERTS/devices/dev-001.key" --check
check "run --check: a certificate the CA does not verify, named by cert_file" \
    fails_with "cert_file: $CERTS/rogue/dev-001.crt: not accepted with CA $CERTS/ca.crt" \
    "$GW" run "${GWC[@]}" --cert-file "$CERTS/rogue/dev-001.crt" --key-file "$CERTS/rogue/dev-001.key" --check
check "run --check: an expired certificate" \
    fails_with "cert_file: .*expired/dev-001.crt: not accepted with CA .*: certificate has expired" \
    "$GW" run "${GWC[@]}" --cert-file "$CERTS/expired/dev-001.crt" --key-file "$CERTS/expired/dev-001.key" --check
check "run --check: a certificate that is not the gateway's (CN)" \
    fails_with "certificate is for CN 'ota-operator', but the gateway's identity .* is 'ota-gateway'" \
    "$GW" run "${GWC[@]}" --cert-file "$CERTS/operator.crt" --key-file "$CERTS/operator.key" --check
touch "$T/a-file"
check "run --check: a ledger directory that cannot be made, named by db_dir" \
    fails_with "db_dir: .*a-file/db" "$GW" run "${GWC[@]}" --db-dir "$T/a-file/db" --check
check "run --check reports every problem, not only the first" \
    bash -c "'$GW' run ${GWC[*]} --key-file '$CERTS/devices/dev-001.key' --store-dir '$T/a-file/s' --check 2>&1 | grep -q '2 problems'"
check "run with a key that does not match exits at once (2) with the same reason, no retrying" \
    fails_with "cannot start: key_file: .*does not match" "$GW" run "${GWC[@]}" --key-file "$CERTS/devices/dev-001.key"
check "run with a missing key file exits at once naming it" \
    fails_with "$T/nope.key" "$GW" run "${GWC[@]}" --key-file "$T/nope.key"

check "ota-device --check accepts a good configuration" bash -c "'$DEV' ${DEVC[*]} --check | grep -q 'configuration OK'"
check "ota-device --check: --id differs from the certificate's CN" \
    fails_with "id: .*dev-001.crt: certificate is for CN 'dev-001', but id is 'dev-002'" \
    "$DEV" "${DEVC[@]}" --id dev-002 --check
check "ota-device --check: a publisher key that is not one" \
    fails_with "publisher_key: " "$DEV" "${DEVC[@]}" --publisher-key "$CERTS/ca.crt" --check
check "ota-device --check: a state directory that cannot be made" \
    fails_with "state_dir: .*a-file/st" "$DEV" "${DEVC[@]}" --state-dir "$T/a-file/st" --check
check "ota-device --check: a key from another device" \
    fails_with "key_file: .*dev-002.key: private key does not match" \
    "$DEV" "${DEVC[@]}" --key-file "$CERTS/devices/dev-002.key" --check
check "ota-device whose --id differs from its certificate's CN says so at start and exits" \
    fails_with "cannot start: id: .*certificate is for CN 'dev-001', but id is 'dev-002'" \
    "$DEV" "${DEVC[@]}" --id dev-002
check "ota-device with a missing certificate exits at once naming it" \
    fails_with "cert_file: $T/nope.crt: No such file" "$DEV" "${DEVC[@]}" --cert-file "$T/nope.crt"

# Ids safe on every broker (PROTOCOL.md section 2): no '.', which RabbitMQ's MQTT plugin
# turns into a topic level. Refused by the device, by make-certs and by the gateway's CLI.
check "ota-device refuses an id with a '.'" \
    fails_with "key 'id': 'dot.dev' must be 1-63 characters of A-Z a-z 0-9 _ -" \
    "$DEV" "${DEVC[@]}" --id dot.dev --check
check "make-certs.sh refuses a device id with a '.'" \
    bash -c "! sh '$OTA_ROOT/certs/make-certs.sh' '$T/dotcerts' dot.dev 2>'$T/mc.err' &&
        grep -q \"invalid device id 'dot.dev'\" '$T/mc.err' && [ ! -e '$T/dotcerts/devices/dot.dev.crt' ]"
check "ota-gateway announce refuses a device id with a '.'" \
    bash -c "'$GW' announce --product sensor --url file:///x --devices dev-001,dot.dev --ca-file '$CERTS/ca.crt' \
        --cert-file '$CERTS/operator.crt' --key-file '$CERTS/operator.key' 2>&1 |
        grep -q \"'dot.dev' is not a device id\""
# Broker lists (brokers = host[:port],...): checked like every key.
check "ota-device --check accepts a list of brokers" \
    bash -c "'$DEV' ${DEVC[*]} --brokers 'localhost:1, 127.0.0.1:2,[::1]' --check | grep -q 'configuration OK'"
check "ota-device --check: a broker list item that is not host[:port]" \
    fails_with "brokers: item 2 'localhost:99999': port: a number 1 to 65535" \
    "$DEV" "${DEVC[@]}" --brokers 'localhost:1,localhost:99999' --check
check "run --check: an IPv6 broker without brackets" \
    fails_with "brokers: item 1 '::1:8883': an IPv6 address goes in brackets" \
    "$GW" run "${GWC[@]}" --brokers '::1:8883' --check
check "ota-gateway ctl: an empty broker in the list" \
    fails_with "brokers: item 2 '': host name" "$GW" ctl pause --product sensor \
    --release 0123456789abcdef --brokers 'localhost,' --ca-file "$CERTS/ca.crt" \
    --cert-file "$CERTS/operator.crt" --key-file "$CERTS/operator.key"

# A TLS failure at run time (the broker's certificate does not name the host we connect
# to): said as such, with what to fix, and not once per attempt.
BROKER_SED='s/^listener \([0-9]*\) 127.0.0.1$/listener \1 127.0.0.2/' broker_start ||
    { not_ok "broker starts on 127.0.0.2"; finish; }
spawn d1 "$DEV" "${DEVC[@]}" --broker-host 127.0.0.2 --broker-port "$BROKER_PORT"
check "a TLS failure names the reason and the host" \
    wait_until 10 "grep -q \"connection failed: TLS handshake failed: the broker's certificate does not name host '127.0.0.2'\" '$T/d1.log'"
sleep 2
check "  not 'bad file descriptor', and not a line per attempt" \
    bash -c "! grep -qi 'bad file descriptor\|OpenSSL Error' '$T/d1.log' && [ \$(grep -c 'TLS handshake failed' '$T/d1.log') -le 4 ]"
stop d1
spawn d2 "$DEV" "${DEVC[@]}" --broker-host 127.0.0.2 --broker-port "$BROKER_PORT" \
    --state-dir "$T/dev-001b" --ca-file "$CERTS/rogue/ca.crt" --cert-file "$CERTS/rogue/dev-001.crt" \
    --key-file "$CERTS/rogue/dev-001.key"
check "a broker certificate our CA does not sign: the ca_file is named" \
    wait_until 10 "grep -q 'TLS handshake failed: ca_file $CERTS/rogue/ca.crt' '$T/d2.log'"
finish
