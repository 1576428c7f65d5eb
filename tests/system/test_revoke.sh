#!/usr/bin/env bash
# Certificate revocation (issue 12, point 5): certs/make-certs.sh --revoke CN adds the
# certificate to the CA's database and writes crl.pem anew; the shipped broker
# configuration reads it (crlfile) at start and on SIGHUP. A revoked device cannot connect,
# the others can and are updated; a revoked operator cannot announce. Also shows what a
# reload does to a revoked client that is already connected, and that a restart cuts it off.
# On main's broker configuration (no crlfile) the revoked device connects and this fails.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002 dev-003)
certs_make "${ids[@]}" --operator alice || { echo "Bail out! make-certs failed"; exit 1; }
check "make-certs wrote an empty CRL signed by the CA" \
    bash -c "openssl crl -in '$CERTS/crl.pem' -CAfile '$CERTS/ca.crt' -noout 2>&1 | grep -q 'verify OK' &&
             openssl crl -in '$CERTS/crl.pem' -noout -text | grep -q 'No Revoked Certificates'"
broker_start || { not_ok "broker starts with crlfile"; finish; }
check "gateway starts" gateway_start
for d in "${ids[@]}"; do device_start "$d" 1.0.0; done
check "three devices online" wait_until 15 "all_devices idle 1.0.0 ${ids[*]}"

# can_connect WHO: a full TLS connection and an acknowledged subscription (-E: then exit).
can_connect() { mq_sub_as "$1" 'ota/dev/+/status' 1 5 -E; }
refused() { ! can_connect "$1" 2>/dev/null; }

# dev-002's device is stopped; a session with its certificate stays open (a subscriber),
# to show what a reload does to a revoked client already connected.
stop dev-002
mq_sub_bg d2sess dev-002 ota/dev/dev-002/offer 1 600 || not_ok "a session with dev-002's certificate"

# A TLS session made with dev-002's certificate before its revocation (its ticket kept, as
# the fleet's clients keep theirs to resume after a restart): a resumed handshake sends
# and checks no certificate, so the broker must not accept it once the CRL is reloaded.
# sclient ARGS...: a TLS handshake as dev-002, no MQTT CONNECT (that would take over the
# client id dev-002 of the session below); prints what openssl saw.
sclient() {
    sleep 1.5 |
        timeout 10 openssl s_client -connect "127.0.0.1:$BROKER_PORT" -servername localhost \
            -CAfile "$CERTS/ca.crt" -cert "$CERTS/devices/dev-002.crt" \
            -key "$CERTS/devices/dev-002.key" -tls1_3 "$@" 2>&1
}
# The shipped broker keeps sessions itself (deploy/mosquitto/openssl.cnf: stateful
# tickets): its ticket only names a session in its cache (32 bytes) where a stateless one
# carries the whole session sealed, the client's certificate included (about 640 bytes).
# The session kept for after the reload is the newest, the one the resumed handshake gave.
# ticket_bytes FILE: the length of the ticket in a session saved by s_client -sess_out.
ticket_bytes() {
    openssl sess_id -in "$1" -noout -text |
        awk '/TLS session ticket:/ { on = 1; next }
             on && /^ *[0-9a-f]+ - / { h = $0; sub(/^ *[0-9a-f]+ - /, "", h)
                                       h = substr(h, 1, 47); n += gsub(/[0-9a-f][0-9a-f]/, "", h); next }
             { on = 0 } END { print n + 0 }'
}
sclient -sess_out "$T/d2.sess" >/dev/null
check "a TLS session with dev-002's certificate, resumable before the revocation" \
    bash -c "$(declare -f sclient); BROKER_PORT=$BROKER_PORT CERTS=$CERTS sclient -sess_in '$T/d2.sess' -sess_out '$T/d2b.sess' | grep -aq '^Reused'"
tb=$(ticket_bytes "$T/d2.sess")
check "  its ticket names a session the broker keeps ($tb bytes: stateful, openssl.cnf in effect)" \
    bash -c "[ '$tb' -gt 0 ] && [ '$tb' -le 64 ]"
check "  the session the resumed handshake gave is saved" test -s "$T/d2b.sess"

check "make-certs --revoke dev-002 --revoke ota-operator-alice" \
    certs_make --revoke dev-002 --revoke ota-operator-alice
check "  the CRL lists both serials" \
    bash -c "[ \"\$(openssl crl -in '$CERTS/crl.pem' -noout -text | grep -c 'Serial Number')\" = 2 ]"
check "  revoking again is a no-op that says so" \
    bash -c "bash '$OTA_ROOT/certs/make-certs.sh' '$CERTS' --revoke dev-002 | grep -q 'already revoked'"
check "  revoking an unknown id fails" \
    bash -c "! bash '$OTA_ROOT/certs/make-certs.sh' '$CERTS' -q --revoke dev-999 2>/dev/null"

check "the broker reloads (SIGHUP)" broker_reload
check "after the reload a new connection with dev-002's certificate is refused" refused dev-002
resumed=$(sclient -sess_in "$T/d2b.sess")
check "  and its TLS session made before is not resumed (the reload made a new TLS context)" \
    bash -c "! grep -aq '^Reused' <<<\"\$1\" && grep -aq 'certificate revoked' <<<\"\$1\"" _ "$resumed"
# The device itself keeps its session in its state directory across a re-exec
# (common/mqtls.c): started again after the reload, it offers the session it saved before
# the revocation, and is refused all the same.
check "dev-002's device had saved a TLS session before the revocation" \
    test -s "$T/dev/dev-002/tls-session.pem"
mv "$T/dev-002.log" "$T/dev-002-first.log"
device_start dev-002 1.0.0
check "  started again after the reload with it, the device is refused" \
    wait_until 15 "grep -q 'connection failed' '$T/dev-002.log'"
check "  and does not connect" bash -c "! grep -q 'mqtt connected' '$T/dev-002.log'"
stop dev-002
check "  the broker logs it as 'certificate verify failed'" \
    bash -c "tail -n 5 '$T/broker.log' | grep -q 'certificate verify failed'"
check "the revoked operator alice cannot connect" refused operator-alice
check "the default operator still can" can_connect operator
# A reload does not end connections already open (mosquitto checks a certificate during
# the handshake only): documented, the remedy is a restart.
check "a reload leaves the revoked certificate's open session alone" \
    eval 'alive d2sess && [ "$(grep -c "received CONNACK" "$T/d2sess.log")" = 1 ]'

# A restart cuts it off for good; everyone else comes back by themselves.
broker_stop
broker_spawn broker "$T/mosquitto.conf"
check "the broker restarts on the same port" wait_until 10 "port_listening $BROKER_PORT"
check "dev-001, dev-003 and the gateway reconnect" \
    wait_until 30 "[ \"\$(grep -c 'mqtt connected' '$T/dev-001.log')\" -ge 2 ] &&
                   [ \"\$(grep -c 'mqtt connected' '$T/dev-003.log')\" -ge 2 ] &&
                   [ \"\$(grep -c 'mqtt connected' '$T/gateway.log')\" -ge 2 ]"
check "the revoked session is not back" \
    eval '! alive d2sess || [ "$(grep -c "received CONNACK" "$T/d2sess.log")" = 1 ]'
mv "$T/dev-002.log" "$T/dev-002-before.log"
device_start dev-002 1.0.0
check "the device dev-002 started again is refused: it keeps retrying" \
    wait_until 15 "grep -q 'connection failed' '$T/dev-002.log'"
check "  and never connects" bash -c "! grep -q 'mqtt connected' '$T/dev-002.log'"

make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/p110.ota"
announce sensor "file://$T/p110.ota"
check "the release reaches dev-001 and dev-003" \
    wait_until 30 "all_devices committed 1.1.0 dev-001 dev-003"
check "dev-002 stays on 1.0.0, unreachable" \
    test "$(jq -r .version "$T/dev/dev-002/state.json" 2>/dev/null || echo 1.0.0)" = 1.0.0

check "gateway and devices stop cleanly" stop_all_clean gateway "${ids[@]}"
finish
