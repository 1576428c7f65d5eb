#!/usr/bin/env bash
# Keys that can change (TUF's root role, reduced): an offline root key signs the key set,
# the publisher keys allowed per product. Devices trust the root, not one publisher key;
# the gateway's key set travels to them in every offer. Rotating the publisher key on a
# running fleet touches no device file; a package signed by the revoked key is refused by
# the gateway and by a device offered it anyway (with the old key set replayed beside it);
# a key set the root did not sign is refused by both.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002)
certs_make "${ids[@]}"
K=$T/keys
mkdir -p "$K"
"$GW" keygen --out "$K/root" >/dev/null
"$GW" keygen --out "$K/rogue-root" >/dev/null
"$GW" keygen --out "$K/publisher2" >/dev/null
check "the root signs key set 1: publisher.pub for sensor" \
    "$GW" keyset --root-key "$K/root.key" --version 1 --expires +30d \
    --publishers "sensor=$CERTS/publisher.pub" --out "$T/keyset.json"
cp "$T/keyset.json" "$K/keyset-1.json"

broker_start || { not_ok "broker starts"; finish; }
check "gateway starts with the root key and key set 1" \
    gateway_start --root-keys "$K/root.pub" --keyset-file "$T/keyset.json"
for d in "${ids[@]}"; do device_start "$d" 1.0.0 --root-keys "$K/root.pub"; done
check "devices online (trusting the root key: their publisher_key is not used)" \
    wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"
check "each says its publisher_key is not used" \
    grep -q 'publisher_key is not used: root_keys is set' "$T/dev-001.log"
make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/p110.ota"
announce sensor "file://$T/p110.ota"
check "a release signed by the publisher key of key set 1 is installed" \
    wait_until 30 "all_devices committed 1.1.0 ${ids[*]}"
check "each device learnt key set 1 from its offer" \
    grep -q 'key set version 1 trusted' "$T/dev-001.log"
sums_before=$(md5sum < "$T/dev/dev-002/keyset.json")
check "fsck verifies the ledger's manifests with the root and key set 1" \
    "$GW" fsck --db "$T/gw-db" --root-keys "$K/root.pub" --keyset "$K/keyset-1.json"

# Rotation: key set 2 lists publisher2 only; publisher.key is revoked.
"$GW" keyset --root-key "$K/root.key" --version 2 \
    --publishers "sensor=$K/publisher2.pub" --out "$T/keyset.json" >/dev/null
kill -HUP "$(pid_of gateway)"
check "SIGHUP: the gateway takes key set 2" \
    wait_until 10 "grep -q 'key set updated: version 2, 1 publisher keys' '$T/gateway.log'"
check "and retires the release signed by the revoked key" \
    wait_until 10 "grep -q 'its publisher key is no longer trusted' '$T/gateway.log'"
check "fsck with key set 2 names that release's signature as no longer trusted" \
    bash -c "'$GW' fsck --db '$T/gw-db' --root-keys '$K/root.pub' --keyset '$T/keyset.json' |
        grep -q 'does not verify with any publisher key of key set version 2'"
"$GW" pack --key "$K/publisher2.key" --product sensor --version 1.2.0 \
    --payload "$T/fw.bin" --out "$T/p120.ota" >/dev/null
announce sensor "file://$T/p120.ota"
check "a release signed by the new key reaches every device, no device file touched" \
    wait_until 30 "all_devices committed 1.2.0 ${ids[*]}"
check "the devices now keep key set 2" \
    bash -c "grep -q '\\\\\"version\\\\\":2' '$T/dev/dev-002/keyset.json' &&
        [ \"\$(md5sum < '$T/dev/dev-002/keyset.json')\" != '$sums_before' ]"

pack sensor 1.3.0 "$T/fw.bin" "$T/p130.ota"
check "verify with the root and key set 2 accepts the new key's package" \
    "$GW" verify --root-keys "$K/root.pub" --keyset "$T/keyset.json" "$T/p120.ota"
check "and refuses the revoked key's" \
    bash -c "! '$GW' verify --root-keys '$K/root.pub' --keyset '$T/keyset.json' '$T/p130.ota' 2>&1 |
        grep -q 'OK' && '$GW' verify --root-keys '$K/root.pub' --keyset '$T/keyset.json' \
        '$T/p130.ota' 2>&1 | grep -q 'REFUSED: signature does not verify with any publisher key'"
announce sensor "file://$T/p130.ota"
check "the gateway refuses a package signed by the revoked key" \
    wait_until 15 "grep -q \"release REFUSED product=sensor .*signature does not verify with any publisher key the key set (version 2) allows for product 'sensor'\" '$T/gateway.log'"

# A compromised gateway offers the revoked key's package with the old key set beside it.
stop dev-001
mv "$T/dev-001.log" "$T/dev-001-1.log"
device_start dev-001 1.0.0 --root-keys "$K/root.pub"
check "dev-001 restarts on 1.2.0 (its key set 2 kept across the restart)" \
    wait_until 10 "all_devices committed 1.2.0 dev-001"
mq_pub_as injector ota/dev/dev-001/offer "$(offer_json "$T/p130.ota" 16 "$K/keyset-1.json")" -q 1
check "a device refuses the revoked key's package, even beside the old key set" \
    wait_until 10 "grep -q \"REFUSED: manifest signature does not verify with any publisher key of key set version 2 for product 'sensor'\" '$T/dev-001.log'"

# A key set the root did not sign.
"$GW" keyset --root-key "$K/rogue-root.key" --version 3 \
    --publishers "sensor=$CERTS/publisher.pub" --out "$T/rogue.json" >/dev/null
cp "$T/rogue.json" "$T/keyset.json"
kill -HUP "$(pid_of gateway)"
check "the gateway refuses a key set its root did not sign, and keeps version 2" \
    wait_until 10 "grep -q 'key set .* REFUSED, keeping version 2: key set version 3 is signed by 0 of the 1 trusted root keys' '$T/gateway.log'"
mq_pub_as injector ota/dev/dev-002/offer "$(offer_json "$T/p130.ota" 16 "$T/rogue.json")" -q 1
check "so does a device offered it" \
    wait_until 10 "grep -q 'key set in offer refused: key set version 3 is signed by 0 of the 1 trusted root keys' '$T/dev-002.log'"
check "and the package that came with it" \
    wait_until 10 "grep -q 'REFUSED: manifest signature does not verify with any publisher key of key set version 2' '$T/dev-002.log'"
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
finish
