#!/usr/bin/env bash
# Canaries an attacker cannot choose (docs/SECURITY.md, "denial of service by a device"):
# - the canary devices of a release are drawn by HMAC-SHA256(the gateway's canary key,
#   release id || device id), not by id: exactly the predicted devices are offered first,
#   the draw survives a gateway restart, and over two releases it is not the lowest ids;
# - with pause_failure_min 2 (the gateway's default) one failing canary does not pause the
#   rollout: another device is drawn in its place; a second failure does pause it;
# - fsck checks the key; a damaged one is replaced at start.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

N=20
certs_make --devices "$N"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start

fleet_start() {
    spawn fleet "$DEV" --fleet "$N" --fleet-cert-dir "$CERTS/devices" --product sensor \
        --version "$1" --broker-host localhost --broker-port "$BROKER_PORT" \
        --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --state-dir "$T/fleet"
}
fleet_ids=()
for ((i = 1; i <= N; i++)); do fleet_ids+=("$(printf 'dev-%03d' "$i")"); done
fleet_start 1.0.0
check "$N devices of a fleet online" wait_until 60 "all_devices idle 1.0.0 ${fleet_ids[*]}"

# The canary key, as the ledger holds it (meta canary_key: 64 hex digits).
canary_key() {
    mdb_dump -p -s meta "$T/gw-db" | awk 'prev == " canary_key" { print substr($0, 2) } { prev = $0 }'
}
key=$(canary_key)
check "the gateway made a canary key in its ledger ($key)" \
    bash -c "[[ '$key' =~ ^[0-9a-f]{64}$ ]]"

# predicted RELEASE COUNT: the COUNT devices of lowest HMAC rank, sorted by id.
predicted() {
    local id
    for id in "${fleet_ids[@]}"; do
        printf '%s %s\n' "$(printf '%s%s' "$1" "$id" |
            openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" | awk '{ print substr($NF, 1, 16) }')" "$id"
    done | sort | head -n "$2" | awk '{ print $2 }' | sort | tr '\n' ' '
}
# canaries RELEASE: the devices offered RELEASE before its canary passed, sorted by id.
canaries() {
    gw_status_json | jq -r --arg r "$1" '
        [.events[] | select(.release == $r)] as $ev
        | ([$ev | to_entries[] | select(.value.event == "canary_passed") | .key][0] // 1e9) as $p
        | [$ev | to_entries[] | select(.key < $p and .value.event == "offered") | .value.device]
        | sort | join(" ")' | tr -d '\n'
    echo " "
}
release_of() {
    gw_status_json | jq -r --arg v "$1" '.releases[] | select(.version == $v) | .release'
}
make_payload "$T/fw.bin" 16384

# --- 1. the draw, across a gateway restart -------------------------------------------------
# The fleet goes offline; 1.1.0 is announced (10%: 2 canaries of 20); the gateway restarts;
# the fleet comes back: only the 2 drawn devices may start first.
stop fleet
check "the fleet is offline" wait_until 20 "all_devices offline 1.0.0 ${fleet_ids[*]}"
pack sensor 1.1.0 "$T/fw.bin" "$T/p110.ota"
announce sensor "file://$T/p110.ota" ',"canary_percent":10'
check "the release is recorded" wait_until 20 '[ -n "$(release_of 1.1.0)" ]'
r1=$(release_of 1.1.0)
check "the gateway draws 2 of the $N targeted devices" \
    grep -q "release=$r1 canary stage: 2 of $N targeted devices first (drawn by the canary key)" \
    "$T/gateway.log"
stop gateway
check "gateway starts again" gateway_start
check "the canary key survives the restart" test "$(canary_key)" = "$key"
fleet_start 1.0.0
check "the canary passes" \
    wait_until 60 "[ \"\$(gw_status_json | jq --arg r $r1 '[.events[] | select(.release == \$r and .event == \"canary_passed\")] | length')\" = 1 ]"
c1=$(canaries "$r1")
p1=$(predicted "$r1" 2)
check "the canaries of 1.1.0 are the devices the key draws ($c1= $p1)" test "$c1" = "$p1"
check "then the whole fleet commits 1.1.0" wait_until 90 "all_devices committed 1.1.0 ${fleet_ids[*]}"

# --- 2. a second release, fleet online -----------------------------------------------------
pack sensor 1.2.0 "$T/fw.bin" "$T/p120.ota"
announce sensor "file://$T/p120.ota" ',"canary_percent":10'
check "1.2.0 is recorded" wait_until 20 '[ -n "$(release_of 1.2.0)" ]'
r2=$(release_of 1.2.0)
check "the whole fleet commits 1.2.0" wait_until 90 "all_devices committed 1.2.0 ${fleet_ids[*]}"
c2=$(canaries "$r2")
p2=$(predicted "$r2" 2)
check "the canaries of 1.2.0 are the devices the key draws ($c2= $p2)" test "$c2" = "$p2"
lowest="dev-001 dev-002 "
check "the lowest ids are not every release's canaries ($c1/ $c2)" \
    test "$c1$c2" != "$lowest$lowest"
stop fleet

# --- 3. pause_failure_min ------------------------------------------------------------------
# Five devices whose restart command fails while $T/fail1 or $T/fail2 can still be made
# (each once, for whoever comes first): with $T/fail2 made beforehand, exactly one device
# fails 1.3.0; then none made, two fail 1.4.0.
ids=(dev-001 dev-002 dev-003 dev-004 dev-005)
fail_cmd="mkdir '$T/fail1' 2>/dev/null && exit 1; mkdir '$T/fail2' 2>/dev/null && exit 1; exit 0"
for d in "${ids[@]}"; do device_start "$d" 1.2.0 --restart-command "$fail_cmd"; done
check "five devices online" wait_until 20 "all_devices idle 1.2.0 ${ids[*]}"
mkdir "$T/fail2"
pack sensor 1.3.0 "$T/fw.bin" "$T/p130.ota"
announce sensor "file://$T/p130.ota" ',"canary_percent":20,"devices":["dev-001","dev-002","dev-003","dev-004","dev-005"]'
check "the first canary fails its restart and rolls back" wait_until 30 '[ -d "$T/fail1" ]'
r3=$(release_of 1.3.0)
count_ev() { gw_status_json | jq --arg r "$1" --arg e "$2" '[.events[] | select(.release == $r and .event == $e)] | length'; }
check "one failed canary does not pause the rollout: another is drawn, the canary passes" \
    wait_until 30 '[ "$(count_ev "$r3" canary_passed)" = 1 ]'
failed=$(gw_status_json | jq -r '[.devices[] | select(.state == "rolled_back") | .device] | join(" ")')
rest=$(printf '%s\n' "${ids[@]}" | grep -v -x "$failed" | tr '\n' ' ')
check "the other four commit 1.3.0 ($rest; $failed rolled back)" \
    wait_until 60 "all_devices committed 1.3.0 $rest"
check "the campaign never paused" \
    test "$(count_ev "$r3" canary_failed)$(count_ev "$r3" auto_paused)" = 00
check "the gateway logged the replacement" \
    grep -q "release=$r3 canary device failed (1 of 2 failures before a pause): one more drawn" \
    "$T/gateway.log"

rmdir "$T/fail1" "$T/fail2"
pack sensor 1.4.0 "$T/fw.bin" "$T/p140.ota"
announce sensor "file://$T/p140.ota" ',"canary_percent":20,"devices":["dev-001","dev-002","dev-003","dev-004","dev-005"]'
check "1.4.0 is recorded" wait_until 20 '[ -n "$(release_of 1.4.0)" ]'
r4=$(release_of 1.4.0)
check "two failed canaries pause it" wait_until 120 '[ "$(count_ev "$r4" canary_failed)" = 1 ]'
check "status gives the reason" \
    bash -c "'$GW' status --db '$T/gw-db' | grep -q 'paused: canary: 0% committed, 100% required (2 failed)'"
sleep 1
check "and only those two were offered 1.4.0" test "$(count_ev "$r4" offered)" = 2
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"

# --- 4. a damaged canary key ---------------------------------------------------------------
printf 'canary_key\nnot-a-key\n' | mdb_load -T -s meta "$T/gw-db"
rc=0
gw_fsck >"$T/fsck.out" 2>&1 || rc=$?
check "fsck names a damaged canary key (exit $rc)" \
    bash -c "[ $rc = 1 ] && grep -q 'canary_key is not 64 lower-case hex digits' '$T/fsck.out'"
check "the gateway starts with it" gateway_start
check "and makes a new key, saying so" grep -q "canary key damaged; making a new one" "$T/gateway.log"
check "fsck is clean again" gw_fsck
check "the new key is another" bash -c "[ '$(canary_key)' != '$key' ]"
finish
