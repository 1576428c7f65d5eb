#!/usr/bin/env bash
# Anti-rollback: an older version is never installed, unless the publisher signed an
# explicit downgrade; then it goes out, supersedes the newer release (no upgrade back),
# and a forged "downgrade" flag breaks the signature. Also mix-and-match attempts.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
for d in "${ids[@]}"; do device_start "$d" 1.0.0; done
check "devices online" wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"
make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/p110.ota"
announce sensor "file://$T/p110.ota"
check "devices reach 1.1.0" wait_until 30 "all_devices committed 1.1.0 ${ids[*]}"

# An older version, not signed as a downgrade: the gateway ignores it ...
pack sensor 1.0.5 "$T/fw.bin" "$T/p105.ota"
announce sensor "file://$T/p105.ota"
check "an unsigned downgrade is ignored by the gateway" \
    wait_until 10 "grep -q 'release sensor 1.0.5 ignored: 1.1.0 is already released' '$T/gateway.log'"
# ... and a device refuses it even when offered directly (a compromised gateway).
"$GW" verify --pubkey "$CERTS/publisher.pub" --json "$T/p105.ota" >/dev/null
man=$(dd if="$T/p105.ota" bs=1 skip=16 count=$(( $(od -An -tu4 -j8 -N4 "$T/p105.ota") )) 2>/dev/null)
sig=$(dd if="$T/p105.ota" bs=1 skip=$((16 + ${#man})) count=64 2>/dev/null | od -An -tx1 | tr -d ' \n')
rel=$(printf '%s' "$man" | openssl dgst -sha256 -binary | head -c 8 | od -An -tx1 | tr -d ' \n')
offer=$(jq -nc --arg r "$rel" --arg m "$man" --arg s "$sig" \
    '{release:$r, manifest:$m, sig:$s, fragment_size:4096, fragments:16, window:8}')
mq_pub_as injector ota/dev/dev-001/offer "$offer" -q 1
check "a device refuses an older version offered directly (anti-rollback)" \
    wait_until 10 "grep -q 'offer of $rel ignored: version 1.0.5 is not newer than the running 1.1.0 (anti-rollback)' '$T/dev-001.log'"

# Flipping the flag inside a signed manifest breaks the signature.
forged=$(printf '%s' "$man" | sed 's/}$/,"downgrade":true,"replaces":"1.1.0"}/')
offer=$(jq -nc --arg r "$rel" --arg m "$forged" --arg s "$sig" \
    '{release:$r, manifest:$m, sig:$s, fragment_size:4096, fragments:16, window:8}')
mq_pub_as injector ota/dev/dev-001/offer "$offer" -q 1
check "a downgrade flag added to a signed manifest fails its signature" \
    wait_until 10 "grep -q 'REFUSED: manifest signature does not verify' '$T/dev-001.log'"

# Mix-and-match: a package announced for another product; an offer whose release id is
# not the hash of its manifest.
mq_pub_as operator ota/release/other "{\"url\":\"file://$T/p110.ota\"}" -q 1
check "a package announced on another product's topic is refused" \
    wait_until 10 "grep -q \"package is for product 'sensor', announced on the topic of 'other'\" '$T/gateway.log'"
offer=$(jq -nc --arg m "$man" --arg s "$sig" \
    '{release:"0123456789abcdef", manifest:$m, sig:$s, fragment_size:4096, fragments:16, window:8}')
mq_pub_as injector ota/dev/dev-002/offer "$offer" -q 1
check "an offer whose release id does not match its manifest is refused" \
    wait_until 10 "grep -q 'REFUSED: offer names release 0123456789abcdef but the manifest is release' '$T/dev-002.log'"

# Signed by the publisher as an explicit downgrade: it goes out.
"$GW" pack --key "$CERTS/publisher.key" --product sensor --version 1.0.1 --downgrade --replaces 1.1.0 \
    --payload "$T/fw.bin" --out "$T/p101.ota" >/dev/null
check "verify shows the signed downgrade" \
    bash -c "'$GW' verify --pubkey '$CERTS/publisher.pub' '$T/p101.ota' | grep -q '1.0.1 (signed downgrade, replaces 1.1.0)'"
announce sensor "file://$T/p101.ota"
check "a signed downgrade reaches every device" \
    wait_until 30 "all_devices committed 1.0.1 ${ids[*]}"
check "the newer release is retired" \
    wait_until 10 "'$GW' status --db '$T/gw-db' | grep -q 'aborted: superseded by the signed downgrade to 1.0.1'"
sleep 2
check "and does not upgrade the devices back" all_devices committed 1.0.1 "${ids[@]}"
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
finish
