#!/usr/bin/env bash
# A second gateway for failover (issue 16, point 6; docs/FAILOVER.md). Gateway A (CN
# ota-gateway) and gateway B (CN ota-gateway-b, make-certs --gateway b), each with its own
# ledger and package store, on one Mosquitto, with a lease of LEASE seconds on the retained
# ota/gw/leader. A takes the lease and updates four devices. B, the standby, started only
# once the update is under way, sends nothing but builds its own ledger: the statuses the
# devices publish, and the release from A's retained record of it on
# ota/gw/release/<product>/<release> (B fetches and verifies the package itself), paused as
# the operator had paused it before B started; the resume reaches both. Mid-transfer A is killed (SIGKILL): its Last Will says "gone", B claims epoch 2,
# waits LEASE/3 for a better claim and takes over. Checked: the takeover within the bound,
# every device commits the exact image without starting over (one accepted offer each, B
# sends only what the device lacks), B's ledger shows all committed and passes fsck, A
# started again stays standby (it sees B's higher epoch), and a device ignores an offer of
# the stale epoch 1 (fencing: the epoch it saw is kept in its state directory). On RabbitMQ
# (OTA_BROKER=rabbitmq), which delivers retained messages only to exact-topic subscriptions,
# B starts before the announcement: it learns the release and the pause as they happen
# (the lease's topic is exact, so the lease works there as on Mosquitto). Last, a
# third gateway's record of epoch 3 (a gateway B never heard of, as after a partition):
# B, active, stands down at once; when that gateway stays silent for lease_s, A and B both
# claim epoch 4 and exactly one of them wins.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

IDS=(dev-001 dev-002 dev-003 dev-004)
LEASE=6
RABBIT=0
[ "${OTA_BROKER:-mosquitto}" != rabbitmq ] || RABBIT=1
certs_make "${IDS[@]}" --gateway b --gateway c || { echo "Bail out! make-certs failed"; exit 1; }
broker_start || { not_ok "broker starts"; finish; }

# gw NAME CERT KEY DB [FLAGS...]: a gateway of the pair, as process NAME.
gw() {
    local name=$1 cert=$2 key=$3 db=$4
    shift 4
    # RabbitMQ 3.10 speaks only MQTT 3.1.1 (the gateway's default is 5).
    [ "$RABBIT" = 0 ] || set -- --mqtt-version 3.1.1 "$@"
    spawn "$name" "$GW" run --broker-host localhost --broker-port "$BROKER_PORT" \
        --ca-file "$CERTS/ca.crt" --cert-file "$cert" --key-file "$key" \
        --publisher-key "$CERTS/publisher.pub" --db-dir "$T/$db-db" --store-dir "$T/$db-store" \
        --file-dirs "$T" --lease-s "$LEASE" --hello-spread-s 1 "$@"
    wait_until 10 "grep -q 'mqtt connected' '$T/$name.log' || ! alive $name" && alive "$name"
}
gw_a() { gw "$1" "$CERTS/gateway.crt" "$CERTS/gateway.key" gwA "${@:2}"; }
gw_b() {
    gw gwB "$CERTS/gateways/b.crt" "$CERTS/gateways/b.key" gwB --client-id ota-gateway-b \
        --standby
}
# in_ledger DB STATE VERSION ID...: each ID is STATE at VERSION in ledger DB.
in_ledger() {
    local db=$1 state=$2 version=$3 id json
    shift 3
    json=$("$GW" status --db "$T/$db-db" --json 2>/dev/null) || return 1
    for id in "$@"; do
        [ "$(jq -r --arg id "$id" '.devices[] | select(.device == $id) |
            "\(.state) \(.version)"' <<<"$json")" = "$state $version" ] || return 1
    done
}
field() { # field DB ID FIELD
    "$GW" status --db "$T/$1-db" --json 2>/dev/null |
        jq -r --arg id "$2" ".devices[] | select(.device == \$id) | .$3"
}

# The keys: standby needs a lease; --check takes ota-gateway-<name> for a gateway of a pair.
B_TLS=(--ca-file "$CERTS/ca.crt" --cert-file "$CERTS/gateways/b.crt"
    --key-file "$CERTS/gateways/b.key" --publisher-key "$CERTS/publisher.pub")
refused() { # refused MESSAGE FLAGS...: exit status 2, MESSAGE said, no ledger made
    local want=$1 out rc=0
    shift
    out=$("$GW" run "${B_TLS[@]}" --db-dir "$T/x-db" --store-dir "$T/x-store" "$@" 2>&1) || rc=$?
    [ "$rc" = 2 ] && grep -qF "$want" <<<"$out" && [ ! -e "$T/x-db" ]
}
check "standby without lease_s is refused before anything is made, naming the key" \
    refused "key 'standby' needs 'lease_s'" --standby
check "  and a lease of 2 s" refused "key 'lease_s': 2 is not 0" --lease-s 2
check "run --check takes CN ota-gateway-b for a gateway with a lease" \
    "$GW" run --check "${B_TLS[@]}" --lease-s "$LEASE" --standby --db-dir "$T/x-db" \
    --store-dir "$T/x-store"
rm -rf "$T/x-db" "$T/x-store"

check "gateway A starts (may lead) and takes the lease: epoch 1" gw_a gwA
check "  A is active" wait_until 10 "grep -q 'leader: claiming -> active (epoch 1)' '$T/gwA.log'"
b_starts() {
    check "gateway B starts as the standby" gw_b
    check "  B sees A active, epoch 1" \
        wait_until 10 "grep -q 'leader: ota-gateway active epoch 1' '$T/gwB.log'"
}
[ "$RABBIT" = 0 ] || b_starts
for id in "${IDS[@]}"; do device_start "$id" 1.0.0 --checkpoint-every 16; done
check "four devices idle 1.0.0 in A's ledger" wait_until 30 "in_ledger gwA idle 1.0.0 ${IDS[*]}"

make_payload "$T/fw.bin" 1048576
pack sensor 2.0.0 "$T/fw.bin" "$T/pkg.ota"
# Small fragments and a window of 2: long enough to kill A in the middle.
check "announce 2.0.0 (1 MiB in 512-byte fragments)" \
    announce sensor "file://$T/pkg.ota" ',"fragment_size":512,"window":2'
check "  A offers it" wait_until 20 "grep -q 'offered' '$T/gwA.log'"
ctl() { mq_pub_as operator ota/ctl/sensor "$1" -q 1; }
ctl '{"action":"pause"}'
check "the operator pauses the campaign: A pauses" \
    wait_until 10 "grep -q 'verdict command=pause product=sensor verdict=accepted' '$T/gwA.log'"
if [ "$RABBIT" = 0 ]; then
    b_starts
    check "  B learns the release from A's retained record" \
        wait_until 10 "grep -q 'leader: release [0-9a-f]* of sensor learnt from the active' '$T/gwB.log'"
fi
check "  B verifies it itself, answering nothing (the verdict is A's)" \
    wait_until 20 "grep -q 'verdict command=announce product=sensor verdict=accepted' '$T/gwB.log'"
if [ "$RABBIT" = 0 ]; then
    check "  and that it is paused (the record's state)" \
        wait_until 10 "grep -q 'leader: release [0-9a-f]*: rolling -> paused, as the active' '$T/gwB.log'"
else
    check "  and pauses it (the command reaches both)" \
        wait_until 10 "grep -q 'verdict command=pause product=sensor verdict=accepted' '$T/gwB.log'"
fi
ctl '{"action":"resume"}'
check "the operator resumes it: A and B (the command reaches both) resume" \
    wait_until 10 "grep -q 'verdict command=resume product=sensor verdict=accepted' '$T/gwA.log' &&
        grep -q 'verdict command=resume product=sensor verdict=accepted' '$T/gwB.log'"
check "  B's ledger has the four devices downloading" \
    wait_until 20 "in_ledger gwB downloading 1.0.0 ${IDS[*]}"
under_way() {
    local id n
    for id in "${IDS[@]}"; do
        n=$(field gwA "$id" acked 2>/dev/null)
        [ "${n:-0}" -ge 200 ] 2>/dev/null || return 1
    done
}
check "every transfer is under way (200 fragments acked)" wait_until 60 under_way
total=$(field gwA dev-001 fragments)
check "  and none has finished" bash -c "! grep -q 'download complete' '$T'/dev-*.log"
check "  B sent nothing to a device (no offer, no fragment)" \
    bash -c "! grep -q 'offered\|hello sent' '$T/gwB.log'"
declare -A before=()
for id in "${IDS[@]}"; do before[$id]=$(field gwA "$id" acked); done
echo "# acked before A dies: ${before[*]} of $total"

t0=${EPOCHREALTIME/./}
kill -9 "$(pid_of gwA)"
check "A killed: B takes over within lease_s + 2 s" \
    wait_until $((LEASE + 2)) "grep -q 'leader: claiming -> active (epoch 2)' '$T/gwB.log'"
t1=${EPOCHREALTIME/./}
echo "# takeover: $(((t1 - t0) / 1000)) ms after the SIGKILL (lease $LEASE s)"
check "  on A's Last Will (\"gone\"), not on silence" \
    grep -q 'standby -> claiming (epoch 2): the active gateway is gone' "$T/gwB.log"
check "every device commits 2.0.0 (B's ledger)" \
    wait_until 120 "in_ledger gwB committed 2.0.0 ${IDS[*]}"
for id in "${IDS[@]}"; do
    check "$id's installed payload is exact" cmp -s "$T/fw.bin" "$T/dev/$id/active/payload"
    check "  $id accepted an offer once: it continued, no start over" \
        test "$(grep -c 'accepted release=' "$T/$id.log")" = 1
    dups=$(sed -n 's/.*download complete ([0-9]* fragments, \([0-9]*\) duplicates.*/\1/p' \
        "$T/$id.log")
    sent=$(field gwB "$id" frags_sent)
    echo "# $id: ${before[$id]} acked from A; B sent $sent of $total; $dups duplicates"
    check "  B sent $id less than what it lacked + 25 % of the release, $dups duplicates" \
        test "$sent" -lt $((total - before[$id] + total / 4)) -a "${dups:-99999}" -lt $((total / 4))
    check "  $id keeps epoch 2 in its state directory" \
        test "$(jq -r .gw_epoch "$T/dev/$id/state.json")" = 2
done
check "B's ledger passes fsck" \
    "$GW" fsck --db "$T/gwB-db" --publisher-key "$CERTS/publisher.pub"
check "  and its event log records the takeover" \
    bash -c "'$GW' status --db '$T/gwB-db' --json --events 1000 |
        jq -e '[.events[] | select(.event == \"leader_active\")] | length == 1' >/dev/null"

check "A started again" gw_a gwA2
check "  stays standby: B holds epoch 2" \
    wait_until 10 "grep -q 'leader: listening -> standby (epoch 0): another gateway is active' \
        '$T/gwA2.log'"
sleep $((LEASE / 3 + 1))
check "  and has not claimed (sends nothing)" \
    bash -c "! grep -q 'claiming\|offered\|hello sent' '$T/gwA2.log'"

# Fencing: an offer of epoch 1 (a replaced active that does not know it yet), sent with a
# third gateway's certificate: the device ignores it, whatever it offers.
make_payload "$T/fw3.bin" 20000
pack sensor 3.0.0 "$T/fw3.bin" "$T/pkg3.ota"
offer_json "$T/pkg3.ota" 5 | jq -c '. + {epoch: 1}' >"$T/stale.json"
check "an offer of 3.0.0 with the stale epoch 1 to dev-001" \
    mq_pubf_as "$CERTS/gateways/c" ota/dev/dev-001/offer "$T/stale.json" -q 1
check "  is ignored: dev-001 saw epoch 2" \
    wait_until 10 "grep -q 'offer of .* ignored: stale gateway epoch 1 (seen 2)' '$T/dev-001.log'"
check "  dev-001 stays committed on 2.0.0" \
    bash -c "! grep -q 'accepted release=.*version=3.0.0' '$T/dev-001.log'"

mq_pub_as "$CERTS/gateways/c" ota/gw/leader \
    '{"gateway":"ota-gateway-c","epoch":3,"state":"active","ts":1}' -q 1
check "a record of epoch 3 from ota-gateway-c: B, active, stands down at once" \
    wait_until 5 "grep -q 'leader: active -> standby (epoch 2): ota-gateway-c holds epoch 3' \
        '$T/gwB.log'"
won() { # exactly one of A and B active on epoch 4, the other standby
    local a b
    a=$(grep -c 'claiming -> active (epoch 4)' "$T/gwA2.log")
    b=$(grep -c 'claiming -> active (epoch 4)' "$T/gwB.log")
    [ $((a + b)) = 1 ]
}
check "  it stays silent: after lease_s A and B claim epoch 4, one wins" \
    wait_until $((LEASE + LEASE / 3 + 3)) won
sleep 1
check "  and only one (the other stays standby)" won
check "gateways and devices stop cleanly, no sanitizer reports" \
    stop_all_clean gwA2 gwB "${IDS[@]}"
finish
