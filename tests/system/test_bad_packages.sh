#!/usr/bin/env bash
# Every kind of damaged or foreign package, announced to a running gateway: each is
# refused before a single fragment leaves, with its reason in the gateway's log and in
# the ledger's event log, and no device hears of it.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001 dev-002
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts (packages capped at 1 MiB)" gateway_start --max-package-mb 1
device_start dev-001 1.0.0
device_start dev-002 1.0.0
check "devices report idle" wait_until 15 'all_devices idle 1.0.0 dev-001 dev-002'
mq_sub_bg frags observer1 'ota/dev/+/frag' 1000000 600 -t 'ota/grp/+/frag' || not_ok "fragment counter subscribes"
mq_sub_bg offers observer2 'ota/dev/+/offer' 1000 600 || not_ok "offer counter subscribes"

make_payload "$T/fw.bin" 300000
pack sensor 1.1.0 "$T/fw.bin" "$T/good.ota"
mlen=$(od -An -tu4 -j8 -N4 "$T/good.ota" | tr -d ' ')
moff=16 soff=$((16 + mlen)) poff=$((16 + mlen + 64)) size=$(stat -c %s "$T/good.ota")

flip() { # flip FILE OFFSET: xor the byte at OFFSET with 0x01, in place
    local b
    b=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
    printf "\\x$(printf %02x $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
# 1. a payload byte changed
cp "$T/good.ota" "$T/payload-byte.ota" && flip "$T/payload-byte.ota" $((poff + 1000))
# 2. a manifest field changed (the version 1.1.0 -> 1.1.1, same length)
cp "$T/good.ota" "$T/manifest-field.ota"
off=$(grep -abo '"version":"1.1.0"' "$T/good.ota" | cut -d: -f1)
printf '1' | dd of="$T/manifest-field.ota" bs=1 seek=$((off + 15)) conv=notrunc status=none
# 3. signed with another key
"$GW" keygen --out "$T/other" >/dev/null
"$GW" pack --key "$T/other.key" --product sensor --version 1.1.0 --payload "$T/fw.bin" \
    --out "$T/wrong-key.ota" >/dev/null
# 4. the signature cut short (the file ends inside it)
head -c $((soff + 30)) "$T/good.ota" >"$T/sig-truncated.ota"
# 5. and 6. a payload longer and shorter than signed
{ cat "$T/good.ota"; printf 'x'; } >"$T/longer.ota"
head -c $((size - 1)) "$T/good.ota" >"$T/shorter.ota"
# 7. larger than the gateway's cap (2 MiB > 1 MiB)
make_payload "$T/big.bin" 2097152
pack sensor 1.2.0 "$T/big.bin" "$T/too-big.ota"
# 8. another product's package on this product's topic
pack other 1.1.0 "$T/fw.bin" "$T/other-product.ota"
# 9. a signed manifest whose block table does not match the payload (signed by the real
# key: only the table digest is wrong)
head -c "$mlen" <(tail -c +$((moff + 1)) "$T/good.ota") >"$T/m.json"
sed 's/"blocks":"\(.\)/"blocks":"0/' "$T/m.json" >"$T/m2.json"
[ "$(head -c 1 <(grep -o '"blocks":".' "$T/m.json" | tail -c 2))" = 0 ] &&
    sed -i 's/"blocks":"0/"blocks":"1/' "$T/m2.json"
openssl pkeyutl -sign -inkey "$CERTS/publisher.key" -rawin -in "$T/m2.json" -out "$T/m2.sig"
{ head -c 8 "$T/good.ota"; head -c 8 <(tail -c +9 "$T/good.ota"); cat "$T/m2.json" "$T/m2.sig" "$T/fw.bin"; } \
    >"$T/table-mismatch.ota"

cases=(
    "payload-byte|payload SHA-256 does not match the signed manifest"
    "manifest-field|signature does not verify with the configured publisher key"
    "wrong-key|signature does not verify with the configured publisher key"
    "sig-truncated|package truncated"
    "longer|payload is 1 byte longer than signed"
    "shorter|payload is 1 byte shorter than signed"
    "too-big|larger than the configured maximum of 1048576 bytes (max_package_mb): refused before copying"
    "other-product|package is for product 'other', announced on the topic of 'sensor'"
    "table-mismatch|block table of the payload does not match the signed manifest"
)
for c in "${cases[@]}"; do
    name=${c%%|*} why=${c#*|}
    case $name in
    too-big | other-product) ;; # well-formed: only the gateway's cap and topic refuse them
    *) check "$name: ota-gateway verify refuses it too" \
        bash -c "! '$GW' verify --pubkey '$CERTS/publisher.pub' '$T/$name.ota' >/dev/null 2>&1" ;;
    esac
    before=$(grep -c 'release REFUSED' "$T/gateway.log")
    announce sensor "file://$T/$name.ota"
    check "$name: refused by the gateway with the reason ($why)" \
        wait_until 15 "[ \$(grep -c 'release REFUSED' '$T/gateway.log') -gt $before ] &&
            grep 'release REFUSED' '$T/gateway.log' | tail -1 | grep -qF \"$why\""
done
events=$(gw_status_json | jq -r '[.events[] | select(.event == "release_refused")] | length')
check "every refusal is in the ledger's event log ($events of ${#cases[@]})" test "$events" -eq "${#cases[@]}"
check "the event log says why (one reason checked: the block table)" \
    sh -c "'$GW' status --db '$T/gw-db' --json --events 100 | jq -r '.events[].detail // empty' |
        grep -q 'block table of the payload does not match'"
sleep 1
check "no offer went out" test "$(mq_count offers)" = 0
check "no fragment went out" test "$(mq_count frags)" = 0
check "no release is in the ledger" test "$(gw_status_json | jq '.releases | length')" = 0
check "both devices still idle on 1.0.0" all_devices idle 1.0.0 dev-001 dev-002
# The good package, after all that: it goes through.
announce sensor "file://$T/good.ota"
check "and the intact package still installs" wait_until 60 'all_devices committed 1.1.0 dev-001 dev-002'
check "gateway and devices stop cleanly" stop_all_clean gateway dev-001 dev-002
finish
