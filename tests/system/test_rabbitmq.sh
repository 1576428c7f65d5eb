#!/bin/bash
# ota-test-timeout: 600
# ota-test-broker: rabbitmq
# The system on RabbitMQ (issue 16, point 4): a real 3-node RabbitMQ 3.10 cluster on
# loopback (tests/system/rabbit.sh: distinct node names, ports and data directories, one
# private epmd; started here, stopped at the end) with deploy/rabbitmq/rabbitmq.conf.in and
# the users and topic permissions deploy/rabbitmq/definitions.sh writes from the
# certificates. The gateway connects to node 1 and six devices are spread over the three
# nodes; a release reaches all of them through the cluster. Node 3 is then stopped in the
# middle of a 4 MiB transfer to its devices (behind a 2 Mbit/s linkemu): they move to node 2,
# the next broker of their lists, continue from what they hold and commit; node 3 then starts
# again and rejoins. Before that, what the deployment
# promises about identity: no guest or password login, a certificate of the fleet CA
# without a user is refused, the client's permissions are those of its certificate's CN.
# (The full broker security checks run against RabbitMQ too: OTA_BROKER=rabbitmq
# test_broker_security.sh and test_identity.sh, both run by `make test-rabbitmq`.)
# shellcheck disable=SC2317,SC2016  # helpers are called through check; conditions are eval'd later
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"
OTA_BROKER=rabbitmq
. "$OTA_ROOT/tests/system/rabbit.sh"

DEVS=(dev-001 dev-002 dev-003 dev-004 dev-005 dev-006)
certs_make "${DEVS[@]}" || { echo "Bail out! make-certs failed"; exit 1; }
t0=$SECONDS
rabbit_start 3 || { not_ok "a 3-node RabbitMQ cluster starts"; finish; }
ok "a 3-node RabbitMQ cluster starts on loopback ($((SECONDS - t0)) s; MQTT ports ${RMQ_PORT[*]})"
running=$(rabbitmqctl_on 1 cluster_status --formatter json | jq -r '.running_nodes | length')
check "all three nodes run in one cluster ($running)" test "$running" = 3

# --- the deployment's definitions ---------------------------------------------------------
users=$(rabbitmqctl_on 2 list_users --formatter json | jq -r '.[].user' | sort | tr '\n' ' ')
echo "# users: $users"
check "no guest user (the definitions replace the default data)" \
    bash -c "! grep -qw guest <<<'$users'"
check "one user per certificate, on every node" \
    test "$(wc -w <<<"$users")" = $((${#DEVS[@]} + 3 + 4))
pw_login() { rabbitmqctl_on 1 authenticate_user "$1" "$2" >/dev/null 2>&1; }
check "no user logs in with a password (empty, or the user's name)" \
    eval '! pw_login dev-001 "" && ! pw_login ota-gateway "" && ! pw_login ota-gateway ota-gateway'
# A certificate the fleet CA signed for a CN the definitions do not know.
certs_make dev-999 || not_ok "make-certs dev-999"
refused_unknown() {
    local rc=0
    mq_sub_as dev-999 ota/dev/dev-999/offer 1 5 -E >"$T/unknown.out" 2>&1 || rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 27 ]
}
check "a fleet certificate without a user (dev-999) is refused" refused_unknown
check "the broker says why (login failed for dev-999)" \
    grep -q "login failed for user 'dev-999'" "$T/rabbit1.log"
pw_refused() {
    ! mq_pub_as dev-001 ota/dev/dev-001/status x -q 1 -u ota-gateway -P '' \
        >"$T/pw.out" 2>&1
}
check "a username and (empty) password in CONNECT log nobody in" pw_refused

# --- what RabbitMQ does with retained messages (why discovery must not rely on them) ----------
# A retained status published through node 2 reaches a subscription of exactly its topic on
# node 2, but neither a wildcard subscription (RabbitMQ delivers retained messages only to
# exact-topic subscriptions) nor an exact one on node 1 (each node keeps its own retained
# store). Mosquitto delivers it in all three cases.
BROKER_PORT=${RMQ_PORT[2]} mq_pub_as dev-006 ota/dev/dev-006/status '{"retained":1}' -q 1 -r
retained_on() { # NODE FILTER: the retained message arrives within 3 s
    BROKER_PORT=${RMQ_PORT[$1]} mq_sub_as monitor "$2" 1 3 >"$T/retained.out" 2>&1
}
check "a retained status reaches an exact subscription on the same node" \
    retained_on 2 ota/dev/dev-006/status
check "RabbitMQ: not a wildcard subscription (ota/dev/+/status) on that node" \
    eval '! retained_on 2 "ota/dev/+/status"'
check "RabbitMQ: not an exact subscription on another node" \
    eval '! retained_on 1 ota/dev/dev-006/status'

# --- an update through the cluster -----------------------------------------------------------
check "gateway starts on node 1 (MQTT 3.1.1)" gateway_start
# Node 3's devices reach it through a 2 Mbit/s link (tests/tools/linkemu), so that a 4 MiB
# transfer to them lasts long enough to stop the node in the middle of it (below).
LINK3_PORT=$(free_port)
spawn link3 "$BUILD/tools/linkemu" --listen "127.0.0.1:$LINK3_PORT" \
    --connect "127.0.0.1:${RMQ_PORT[3]}" --down-rate-kbit 2000
check "a 2 Mbit/s link to node 3 listens" \
    wait_until 10 "grep -q 'info listening' '$T/link3.log' && alive link3"
for i in "${!DEVS[@]}"; do
    k=$((i % 3 + 1))
    port=${RMQ_PORT[$k]}
    if [ "$k" = 3 ]; then
        BROKER_PORT=$LINK3_PORT device_start "${DEVS[$i]}" 1.0.0 \
            --brokers "localhost:$LINK3_PORT,localhost:${RMQ_PORT[2]}"
    else
        BROKER_PORT=$port device_start "${DEVS[$i]}" 1.0.0
    fi
done
check "six devices on three nodes report idle 1.0.0 to the gateway on node 1" \
    wait_until 30 "all_devices idle 1.0.0 ${DEVS[*]}"
for k in 1 2 3; do
    rabbit_clients "$k" >"$T/clients-$k.txt"
done
on_node() { grep -qx "$1" "$T/clients-$2.txt"; }
check "the devices are connected to the nodes they were given" \
    eval 'on_node dev-001 1 && on_node dev-002 2 && on_node dev-003 3 && on_node ota-gateway 1'
make_payload "$T/fw.bin" 300000
pack sensor 1.1.0 "$T/fw.bin" "$T/sensor-1.1.0.ota"
check "the operator announces the release (on node 1)" announce sensor "file://$T/sensor-1.1.0.ota"
check "all six devices, on three nodes, commit 1.1.0" \
    wait_until 90 "all_devices committed 1.1.0 ${DEVS[*]}"
for d in dev-001 dev-002 dev-003; do
    check "$d's installed payload is the release's" cmp -s "$T/fw.bin" "$T/dev/$d/active/payload"
done
check "the ledger is consistent" gw_fsck

# --- a node stops mid-transfer ------------------------------------------------------------------
# Node 3 (dev-003, dev-006, each given the list "node 3, then node 2") is stopped while its
# devices download a 4 MiB release (the whole image: 64 fragments of 64 KiB, 4 in flight):
# they move to node 2 (issue 16 point 3), continue from what they hold, and commit while node 3
# is still down; node 3 then starts again and rejoins the cluster.
make_payload "$T/fw2.bin" 4194304
pack sensor 1.2.0 "$T/fw2.bin" "$T/sensor-1.2.0.ota"
announce sensor "file://$T/sensor-1.2.0.ota" ',"fragment_size":65536,"window":4,"delta":false'
acked() { dev_field "$1" acked; }
check "dev-003 and dev-006 are downloading 1.2.0 (at least 16 of 64 fragments acknowledged)" \
    wait_until 90 '[ "$(acked dev-003)" -ge 16 ] && [ "$(acked dev-006)" -ge 16 ] &&
        [ "$(dev_field dev-003 state)" = downloading ] && [ "$(dev_field dev-006 state)" = downloading ]'
declare -A AT_STOP=([dev-003]=$(acked dev-003) [dev-006]=$(acked dev-006))
echo "# node 3 stops with dev-003 at ${AT_STOP[dev-003]} and dev-006 at ${AT_STOP[dev-006]} of 64 fragments acknowledged"
rabbit_stop 3
check "dev-003 notices that its node is gone" \
    wait_until 30 "grep -q 'connection lost' '$T/dev-003.log'"
moved() { rabbit_clients 2 >"$T/clients-2.txt" && on_node dev-003 2 && on_node dev-006 2; }
check "dev-003 and dev-006 move to node 2, the next broker of their lists" wait_until 60 moved
check "all six devices commit 1.2.0 (node 3 still down)" \
    wait_until 180 "all_devices committed 1.2.0 ${DEVS[*]}"
for d in dev-003 dev-006; do
    check "$d's installed payload is the release's" cmp -s "$T/fw2.bin" "$T/dev/$d/active/payload"
    # Starting over is a download of 1.2.0 begun again from fragment 0: the device logs each
    # download it begins, with the fragment it resumes from. Its duplicates are not the
    # measure: they follow what was in flight to it, on the group's stream and its own, when
    # it moved (1 in one run with 25 held at the stop, 25 in another with 17), and are shown.
    starts=$(grep -c 'accepted release=[0-9a-f]* version=1\.2\.0 .* resume_from=0 ' "$T/$d.log")
    resumes=$(grep -o 'accepted release=[0-9a-f]* version=1\.2\.0 .* resume_from=[1-9][0-9]* ' \
        "$T/$d.log" | sed 's/.*resume_from=\([0-9]*\) /\1/' | paste -sd, -)
    dups=$(sed -n 's/.*release=[0-9a-f]* download complete ([0-9]* fragments, \([0-9]*\) duplicates.*/\1/p' \
        "$T/$d.log" | tail -1)
    echo "# $d: ${AT_STOP[$d]} held at the stop; offers taken from a fragment > 0: ${resumes:-none}; ${dups:-?} duplicates in all"
    check "$d continued from what it held (its download of 1.2.0 began at fragment 0 once: $starts)" \
        test "$starts" = 1
done
check "node 3 starts again and rejoins the cluster" rabbit_node_start 3
running=$(rabbitmqctl_on 1 cluster_status --formatter json | jq -r '.running_nodes | length')
check "all three nodes run in one cluster again ($running)" test "$running" = 3

check "gateway and devices stop cleanly" stop_all_clean gateway "${DEVS[@]}"

# --- the deployment's compose file (no container engine needed) ------------------------------
compose_ok() {
    bash "$OTA_ROOT/deploy/rabbitmq/definitions.sh" "$CERTS" -o "$T/defs.json" &&
        echo cookie >"$T/cookie" &&
        OTA_PKI=$CERTS OTA_RABBIT_DEFS=$T/defs.json OTA_RABBIT_COOKIE=$T/cookie \
            docker-compose -f "$OTA_ROOT/deploy/rabbitmq/docker-compose.yml" config >"$T/compose.out" &&
        [ "$(grep -c -E '^  rmq[123]:$' "$T/compose.out")" = 3 ] &&
        grep -q "$CERTS/broker.key:/ota/pki/broker.key:ro" "$T/compose.out"
}
check "deploy/rabbitmq/docker-compose.yml is valid: three nodes, the PKI mounted read-only" compose_ok
bad_cn() {
    mkdir -p "$T/badpki/devices" && cp "$CERTS/ca.crt" "$T/badpki/" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
            -subj "/CN=dot.dev" -keyout "$T/badpki/devices/dot.dev.key" \
            -out "$T/badpki/devices/dot.dev.crt" 2>/dev/null &&
        ! bash "$OTA_ROOT/deploy/rabbitmq/definitions.sh" "$T/badpki" >/dev/null 2>"$T/badcn.err" &&
        grep -q "CN 'dot.dev' has characters" "$T/badcn.err"
}
check "definitions.sh refuses a CN with '.' (a routing-key separator on RabbitMQ)" bad_cn
finish
