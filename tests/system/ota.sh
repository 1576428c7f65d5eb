# shellcheck shell=bash
# ota.sh: start the project's own programs inside a system test. Source after lib.sh:
#   . "$OTA_ROOT/tests/system/lib.sh"; . "$OTA_ROOT/tests/system/ota.sh"
#
#   gateway_start [FLAGS...]          ota-gateway run as "gateway" (db $T/gw-db, store $T/gw-store,
#                                     file:// packages from below $T: --file-dirs "$T")
#   device_start ID VERSION [FLAGS...] ota-device as "ID" (state $T/dev/ID, product sensor)
#   make_payload FILE BYTES            deterministic pseudo-random payload (fixed seed)
#   pack PRODUCT VERSION PAYLOAD OUT   sign with the test publisher key
#   announce PRODUCT URL [JSON-EXTRA]  mosquitto_pub as the operator on ota/release/PRODUCT
#   gw_status_json                     ota-gateway status --json
#   dev_field ID FIELD                 a field of a device's ledger record (jq)
#   all_devices STATE VERSION ID...    true when each ID is STATE at VERSION in the ledger
#   gw_fsck                            ota-gateway fsck of the ledger (signatures checked too)

GW=$BUILD/ota-gateway
DEV=$BUILD/ota-device

gateway_start() {
    # RabbitMQ 3.10 speaks only MQTT 3.1.1 (the gateway's default is 5).
    [ "${OTA_BROKER:-mosquitto}" != rabbitmq ] || set -- --mqtt-version 3.1.1 "$@"
    spawn gateway "$GW" run --broker-host localhost --broker-port "$BROKER_PORT" \
        --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/gateway.crt" \
        --key-file "$CERTS/gateway.key" --publisher-key "$CERTS/publisher.pub" \
        --db-dir "$T/gw-db" --store-dir "$T/gw-store" --file-dirs "$T" "$@"
    wait_until 10 "grep -q 'mqtt connected' '$T/gateway.log' || ! alive gateway" &&
        alive gateway
}

device_start() {
    local id=$1 version=$2
    shift 2
    spawn "$id" "$DEV" --id "$id" --product sensor --firmware-version "$version" \
        --broker-host localhost --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt" \
        --cert-file "$CERTS/devices/$id.crt" --key-file "$CERTS/devices/$id.key" \
        --publisher-key "$CERTS/publisher.pub" --state-dir "$T/dev/$id" "$@"
}

make_payload() {
    # A fixed seed: the same bytes every run.
    openssl enc -aes-128-ctr -nosalt -pass pass:ota-test-seed -pbkdf2 -in /dev/zero 2>/dev/null |
        head -c "$2" >"$1"
}

pack() {
    "$GW" pack --key "$CERTS/publisher.key" --product "$1" --version "$2" \
        --payload "$3" --out "$4" >/dev/null
}

announce() {
    local product=$1 url=$2 extra=${3:-}
    mq_pub_as operator "ota/release/$product" "{\"url\":\"$url\"$extra}" -q 1
}

gw_status_json() {
    "$GW" status --db "$T/gw-db" --json --events 1000 2>/dev/null
}

dev_field() {
    gw_status_json | jq -r --arg id "$1" ".devices[] | select(.device == \$id) | .$2"
}

all_devices() {
    local state=$1 version=$2 id json
    shift 2
    json=$(gw_status_json) || return 1
    for id in "$@"; do
        [ "$(jq -r --arg id "$id" '.devices[] | select(.device == $id) | "\(.state) \(.version)"' \
            <<<"$json")" = "$state $version" ] || return 1
    done
}

gw_fsck() {
    "$GW" fsck --db "$T/gw-db" --publisher-key "$CERTS/publisher.pub"
}

# stop_all_clean NAME...: stop each program (SIGTERM) and check that it exited 0 and that
# no sanitizer (ASan, LSan, UBSan) reported anything in its log.
stop_all_clean() {
    local name rc bad=0
    for name in "$@"; do
        stop "$name"
        rc=$?
        if [ "$rc" != 0 ]; then
            echo "# $name exited with status $rc"
            bad=1
        fi
        if grep -q 'Sanitizer\|runtime error:' "$T/$name.log"; then
            echo "# $name: sanitizer report in its log"
            bad=1
        fi
    done
    return $bad
}

# offer_json PKG FRAGMENTS [KEYSET_FILE]: the offer a gateway would send for package PKG
# (4 KiB fragments, window 8, one block-table fragment), with the key set envelope of
# KEYSET_FILE when given: for tests that play a compromised gateway (mq_pub_as injector).
offer_json() {
    local pkg=$1 man sig rel ks=
    man=$(dd if="$pkg" bs=1 skip=16 count=$(($(od -An -tu4 -j8 -N4 "$pkg"))) 2>/dev/null)
    sig=$(dd if="$pkg" bs=1 skip=$((16 + ${#man})) count=64 2>/dev/null | od -An -tx1 | tr -d ' \n')
    rel=$(printf '%s' "$man" | openssl dgst -sha256 -binary | head -c 8 | od -An -tx1 | tr -d ' \n')
    [ -n "${3:-}" ] && ks=$(cat "$3")
    jq -nc --arg r "$rel" --arg m "$man" --arg s "$sig" --argjson n "$2" --arg k "$ks" \
        '{release:$r, manifest:$m, sig:$s, fragment_size:4096, fragments:$n, window:8,
          table_fragments:1} + (if $k == "" then {} else {keyset:$k} end)'
}
