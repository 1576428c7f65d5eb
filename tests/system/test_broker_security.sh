#!/bin/bash
# The broker's transport security and ACL (deploy/mosquitto), against a real Mosquitto:
# who may connect (fleet CA only, client certificate required, TLS >= 1.2, no plain TCP)
# and what each identity may read and write. Every negative check has a positive control
# in the same run: the same message reaches an authorised subscriber, so "nothing
# arrived" means "refused", not "the test was too quick".
#
# OTA_BROKER=rabbitmq runs the same checks against RabbitMQ (deploy/rabbitmq, one node; `make
# test-rabbitmq`) with the expectations RabbitMQ has where it differs (docs/SECURITY.md,
# "RabbitMQ"): a denied publish or subscription closes the client's connection instead of
# being dropped or filtered, a subscription is checked against its filter (a device's "#"
# or an operator's ota/dev/# is refused as a whole), and MQTT 5 is not spoken at all.
# shellcheck disable=SC2317  # helpers are called through check
. "$OTA_ROOT/tests/system/lib.sh"

certs_make dev-001 dev-002 --rogue --expired || { echo "Bail out! make-certs failed"; exit 1; }
broker_start || { not_ok "broker starts"; finish; }
ok "broker starts with the deployment's template and ACL (port $BROKER_PORT)"
RMQ=0
BLOG=$T/broker.log
if [ "${OTA_BROKER:-mosquitto}" = rabbitmq ]; then
    RMQ=1
    BLOG=$T/rabbit1.log
fi
# rmq_sub_refused WHO FILTER KEY: (RabbitMQ) WHO's subscription to FILTER gets no SUBACK and
# the broker logs the refusal of the routing key pattern KEY for WHO's CN.
rmq_sub_refused() {
    local cn
    mq_sub_as "$1" "$2" 1 3 -d >"$T/subref.out" 2>&1
    cn=$(sed -n 's/.*-i \([^ ]*\).*/\1/p' <<<"${_MQ_ARGS[*]}")
    ! grep -q 'received SUBACK' "$T/subref.out" &&
        grep -q -F "access to topic '$3' in exchange 'amq.topic' in vhost '/' refused for user '$cn'" "$BLOG"
}

N=$$-$RANDOM    # nonce: this run's payloads cannot be confused with anything else

# connects WHO: WHO's TLS connection and a subscription to its own offer topic succeed.
connects() {
    mq_sub_as "$1" "ota/dev/${2:-dev-001}/offer" 1 5 -E
}
refused() {
    local rc=0
    connects "$@" >"$T/refused.out" 2>&1 || rc=$?
    # 27 would mean "connected, then timed out": not a refusal.
    [ "$rc" != 0 ] && [ "$rc" != 27 ]
}
# tls_handshake VERSION: openssl s_client with a valid device certificate; prints the
# negotiated protocol. SECLEVEL=0 so that the client itself is willing to speak TLS 1.0/1.1
# and any refusal comes from the broker.
tls_handshake() {
    echo | timeout 10 openssl s_client -connect "127.0.0.1:$BROKER_PORT" "-$1" \
        -cipher 'DEFAULT@SECLEVEL=0' -CAfile "$CERTS/ca.crt" \
        -cert "$CERTS/devices/dev-001.crt" -key "$CERTS/devices/dev-001.key" \
        >"$T/s_client-$1.out" 2>&1
}

# --- who may connect -----------------------------------------------------------------------
check "a device with its own certificate connects" connects dev-001
check "the gateway and the operator connect" \
    eval 'connects gateway && mq_sub_as operator ota/dev/dev-001/status 1 5 -E'
check "a device certificate from another CA cannot connect" refused "$CERTS/rogue/dev-001"
ROGUE_LOG='certificate verify failed'
[ "$RMQ" = 0 ] || ROGUE_LOG='SERVER ALERT: Fatal - Unknown CA'
if grep -q "$ROGUE_LOG" "$BLOG"; then
    ok "the broker logs the rogue certificate as '$ROGUE_LOG'"
else
    not_ok "the broker logs the rogue certificate as '$ROGUE_LOG'"
fi
check "an expired device certificate (from the fleet CA) cannot connect" \
    refused "$CERTS/expired/dev-001"
check "a client without a certificate cannot connect" refused none
plain_refused() {
    local rc=0
    mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t ota/dev/dev-001/offer -E -W 5 \
        >"$T/plain.out" 2>&1 || rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 27 ]
}
check "plain TCP (no TLS) is refused" plain_refused

check "control: TLS 1.2 handshake succeeds" tls_handshake tls1_2
check "TLS 1.3 is accepted too (tls_version is a minimum)" tls_handshake tls1_3
# Not "mosquitto_sub --tls-version tlsv1.1": in libmosquitto 2.0.11 that is a minimum too,
# and the client happily negotiates TLS 1.3. openssl s_client -tls1_1 offers only TLS 1.1.
tls11_refused() {
    ! tls_handshake tls1_1 && grep -q -i 'alert protocol version' "$T/s_client-tls1_1.out"
}
check "TLS 1.1 is refused by the broker (protocol version alert)" tls11_refused
tls10_refused() {
    ! tls_handshake tls1 && grep -q -i 'alert protocol version' "$T/s_client-tls1.out"
}
check "TLS 1.0 is refused by the broker (protocol version alert)" tls10_refused

# --- a device publishes its status, the gateway receives it ----------------------------
mq_sub_bg gw-status gateway 'ota/dev/+/status' 1 20 || not_ok "gateway subscribes to status"
mq_pub_as dev-001 ota/dev/dev-001/status "{\"state\":\"idle\",\"n\":\"$N\"}" -q 1
check "a device publishes its own status and the gateway receives it" \
    wait_until 5 "mq_msgs gw-status | grep -qx 'ota/dev/dev-001/status {\"state\":\"idle\",\"n\":\"$N\"}'"

# Since the broker makes the certificate's CN the client id (use_username_as_clientid), two
# clients with one certificate cannot be connected at once: the second throws the first
# off. So below, whoever publishes is never also subscribed at that moment, and what the
# broker accepted is watched by an observer (a test-only identity that reads ota/#).

# --- who may write an offer -------------------------------------------------------------
mq_sub_bg obs-offer observer1 'ota/dev/+/offer' 10 20 || not_ok "an observer subscribes to offers"
# Forgeries first (QoS 1: the broker has handled them when mosquitto_pub returns) ...
mq_pub_as operator ota/dev/dev-001/offer "forged-offer-op-$N" -q 1
mq_pub_as dev-002 ota/dev/dev-001/offer "forged-offer-d2-$N" -q 1
mq_pub_as dev-001 ota/dev/dev-001/offer "self-offer-$N" -q 1
# ... then the real thing.
mq_pub_as gateway ota/dev/dev-001/offer "offer0-$N" -q 1
if [ "$RMQ" = 1 ]; then
    # RabbitMQ ends the connection of a client that publishes where it may not.
    n=$(grep -c 'is closing due to an authorization failure' "$BLOG")
    check "RabbitMQ closes the connection of each forger (3 of $n logged)" test "$n" -ge 3
    check "and logs the refused topic and user" \
        grep -q -F "access to topic 'ota.dev.dev-001.offer' in exchange 'amq.topic' in vhost '/' refused for user 'dev-002'" "$BLOG"
fi
check "control: the gateway's offer is accepted" \
    wait_until 5 "mq_msgs obs-offer | grep -qx 'ota/dev/dev-001/offer offer0-$N'"
sleep 0.3
if [ "$(mq_msgs obs-offer)" = "ota/dev/dev-001/offer offer0-$N" ]; then
    ok "offers forged by the operator, another device or the device itself are dropped"
else
    not_ok "offers forged by the operator, another device or the device itself are dropped"
    mq_msgs obs-offer | sed 's/^/#   got: /'
fi
stop obs-offer

# --- a device cannot read another device's topics --------------------------------------
mq_sub_bg d1 dev-001 ota/dev/dev-001/offer 10 20 -t ota/dev/dev-001/frag ||
    not_ok "dev-001 subscribes to its offer and frag"
if [ "$RMQ" = 1 ]; then
    # RabbitMQ checks the filter itself: the spying subscriptions are refused as a whole
    # (and the connection closed); dev-002 then subscribes to its own offer only.
    check "dev-002's subscription to ota/dev/dev-001/# is refused" \
        rmq_sub_refused dev-002 'ota/dev/dev-001/#' 'ota.dev.dev-001.#'
    check "dev-002's subscription to # is refused" rmq_sub_refused dev-002 '#' '#'
    mq_sub_bg d2 dev-002 'ota/dev/dev-002/offer' 10 20 || not_ok "dev-002 subscribes to its offer"
else
    mq_sub_bg d2 dev-002 'ota/dev/dev-001/#' 10 20 -t '#' ||
        not_ok "dev-002 connects to spy on ota/dev/dev-001/# and #"
fi
mq_pub_as gateway ota/dev/dev-001/offer "offer-$N" -q 1
mq_pub_as gateway ota/dev/dev-001/frag "frag-$N" -q 1
mq_pub_as gateway ota/dev/dev-002/offer "offer2-$N" -q 1
check "control: dev-001 receives the gateway's offer and fragment" \
    wait_until 5 "mq_msgs d1 | grep -qx 'ota/dev/dev-001/offer offer-$N' &&
                  mq_msgs d1 | grep -qx 'ota/dev/dev-001/frag frag-$N'"
check "control: dev-002 receives its own offer" \
    wait_until 5 "mq_msgs d2 | grep -qx 'ota/dev/dev-002/offer offer2-$N'"
sleep 0.3
if mq_msgs d2 | grep -q 'dev-001'; then
    not_ok "dev-002 receives nothing of dev-001"
    mq_msgs d2 | sed 's/^/#   got: /'
else
    ok "dev-002 receives nothing of dev-001"
fi
stop d1; stop d2

# --- a device cannot write where it should not -----------------------------------------
mq_sub_bg obs-all observer1 'ota/#' 20 20 || not_ok "an observer subscribes to ota/#"
mq_pub_as dev-002 ota/dev/dev-001/status "forged-status-$N" -q 1
mq_pub_as dev-002 ota/dev/dev-001/ack "forged-ack-$N" -q 1
# use_identity_as_username: a username in CONNECT does not change who the client is.
mq_pub_as dev-002 ota/dev/dev-001/status "forged-user-$N" -q 1 -u dev-001 -i dev-001
mq_pub_as dev-001 ota/release/prod-a "forged-release-$N" -q 1
mq_pub_as dev-001 ota/ctl/abort "forged-ctl-$N" -q 1
mq_pub_as gateway ota/release/prod-a "gw-release-$N" -q 1
# Controls: the same topics written by those allowed to.
mq_pub_as dev-001 ota/dev/dev-001/status "status-$N" -q 1
mq_pub_as dev-001 ota/dev/dev-001/ack "ack-$N" -q 1
mq_pub_as operator ota/release/prod-a "release-$N" -q 1
mq_pub_as operator ota/ctl/abort "ctl-$N" -q 1
check "control: status, ack, release and ctl from their owners are accepted" \
    wait_until 5 "[ \"\$(mq_msgs obs-all | grep -c -E ' (status|ack|release|ctl)-$N\$')\" = 4 ]"
sleep 0.3
for what in "status:dev-002 publishing on ota/dev/dev-001/status" \
            "ack:dev-002 publishing on ota/dev/dev-001/ack" \
            "user:dev-002 claiming username dev-001 in CONNECT" \
            "release:a device publishing on ota/release/prod-a" \
            "ctl:a device publishing on ota/ctl/abort"; do
    key=${what%%:*}
    if mq_msgs obs-all | grep -q "forged-$key-$N"; then
        not_ok "${what#*:} is dropped by the broker"
    else
        ok "${what#*:} is dropped by the broker"
    fi
done
v5_denied() {
    mq_pub_as dev-002 ota/dev/dev-001/status "forged-v5-$N" -q 1 -V 5 -d 2>&1 |
        grep -q 'PUBACK.*RC:135'
}
v5_refused() {
    ! mq_pub_as dev-001 ota/dev/dev-001/status "v5-$N" -q 1 -V 5 >"$T/v5.out" 2>&1
}
if [ "$RMQ" = 0 ]; then
    check "with MQTT 5 a denied QoS 1 publish gets PUBACK reason 135 (not authorised)" v5_denied
else
    check "RabbitMQ 3.10 does not speak MQTT 5: even an allowed publish is refused" v5_refused
fi
if mq_msgs obs-all | grep -q "gw-release-$N"; then
    not_ok "the gateway cannot publish releases (read-only on ota/release/#)"
else
    ok "the gateway cannot publish releases (read-only on ota/release/#)"
fi
stop obs-all

# --- a device cannot read releases; the operator sees status only ----------------------
# (Publishers here are other identities than the subscribers: a named operator announces,
# dev-001 reports, the test injector sends a fragment.)
certs_make --operator alice || not_ok "make-certs --operator alice"
broker_reload || not_ok "the broker reloads (the ACL now has a block for ota-operator-alice)"
if [ "$RMQ" = 1 ]; then
    check "a device's subscription to ota/release/# is refused" \
        rmq_sub_refused dev-002 'ota/release/#' 'ota.release.#'
    check "the operator's subscription to ota/dev/# is refused" \
        rmq_sub_refused operator 'ota/dev/#' 'ota.dev.#'
    check "the operator's subscription to ota/dev/+/ack is refused" \
        rmq_sub_refused operator 'ota/dev/+/ack' 'ota.dev.*.ack'
    mq_sub_bg d2-rel dev-002 'ota/dev/dev-002/offer' 10 20 || not_ok "dev-002 subscribes"
    mq_sub_bg op-dev operator 'ota/dev/+/status' 10 20 || not_ok "operator subscribes to statuses"
else
    mq_sub_bg d2-rel dev-002 'ota/release/#' 10 20 || not_ok "dev-002 subscribes to releases"
    mq_sub_bg op-dev operator 'ota/dev/#' 10 20 || not_ok "operator subscribes to ota/dev/#"
fi
mq_sub_bg gw-rel gateway 'ota/release/#' 10 20 || not_ok "gateway subscribes to releases"
mq_pub_as operator-alice ota/release/prod-b "release-b-$N" -q 1
mq_pub_as dev-001 ota/dev/dev-001/ack "ack-b-$N" -q 1
mq_pub_as injector ota/dev/dev-001/frag "frag-b-$N" -q 1
mq_pub_as dev-001 ota/dev/dev-001/status "status-b-$N" -q 1
check "control: the gateway receives the (named) operator's release" \
    wait_until 5 "mq_msgs gw-rel | grep -qx 'ota/release/prod-b release-b-$N'"
check "control: the operator receives device status" \
    wait_until 5 "mq_msgs op-dev | grep -qx 'ota/dev/dev-001/status status-b-$N'"
sleep 0.3
if [ "$(mq_count d2-rel)" = 0 ]; then
    ok "a device receives nothing the operator publishes"
else
    not_ok "a device receives nothing the operator publishes"
fi
if mq_msgs op-dev | grep -q -E "(ack|frag)-b-$N"; then
    not_ok "the operator gets no acks or fragments"
else
    ok "the operator gets no acks or fragments"
fi

# --- oversized packets ----------------------------------------------------------------
head -c 1100000 /dev/zero >"$T/big.bin"
head -c 70000 /dev/zero >"$T/frag64k.bin"
mq_sub_bg d1-big dev-001 ota/dev/dev-001/frag 10 20 || not_ok "dev-001 subscribes for sizes"
mq_pubf_as gateway ota/dev/dev-001/frag "$T/big.bin" -q 1 >/dev/null 2>&1
mq_pubf_as gateway ota/dev/dev-001/frag "$T/frag64k.bin" -q 1
check "control: a 64 KiB fragment (plus header) passes max_packet_size" \
    wait_until 5 "[ \"\$(mq_count d1-big)\" -ge 1 ]"
sleep 0.3
OVERSIZE='oversize packet'
[ "$RMQ" = 0 ] || OVERSIZE='larger than configured max size'
check "a packet over max_packet_size (1 MiB) is not delivered" \
    eval '[ "$(mq_count d1-big)" = 1 ] && grep -q "$OVERSIZE" "$BLOG"'

finish
