#!/usr/bin/env bash
# The operator's HTTP side (gateway/http.c): off by default; on loopback without TLS
# (anything else refused by --check); /metrics parsed by Prometheus' own parser and checked
# against the ledger; the JSON API with filters and paging; pause/resume/abort answered with
# a verdict and seen in the ledger; another web page cannot drive it; over HTTPS only an
# operator's client certificate from the fleet CA gets in.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001 dev-002 dev-003 dev-004
HP=$(free_port)
H=http://127.0.0.1:$HP

gw_check() {
    "$GW" run --check --broker-host localhost --broker-port 1 --ca-file "$CERTS/ca.crt" \
        --cert-file "$CERTS/gateway.crt" --key-file "$CERTS/gateway.key" \
        --publisher-key "$CERTS/publisher.pub" "$@" >"$T/gwcheck.out" 2>&1
}
check "--check accepts http_listen on loopback" gw_check --http-listen "127.0.0.1:$HP"
gw_check --http-listen "0.0.0.0:$HP"
rc=$?
check "--check refuses a non-loopback http_listen without TLS (exit 2)" test "$rc" = 2
check "... and says why, naming the key" grep -q "key 'http_listen': 0.0.0.0 is not a loopback address" "$T/gwcheck.out"
gw_check --http-listen "localhost"
check "--check refuses an http_listen without a port" \
    grep -q "key 'http_listen': 'localhost' is not IP:PORT" "$T/gwcheck.out"
gw_check --http-listen "0.0.0.0:$HP" --http-tls
check "--check: http_tls needs http_cert_file" grep -q "key 'http_cert_file': is required with http_tls" "$T/gwcheck.out"
check "--check accepts 0.0.0.0 with TLS and a server certificate" gw_check \
    --http-listen "0.0.0.0:$HP" --http-tls --http-cert-file "$CERTS/broker.crt" \
    --http-key-file "$CERTS/broker.key"

broker_start || { not_ok "broker starts"; finish; }
check "a gateway without http_listen starts" gateway_start
check "... and serves no HTTP (off by default)" bash -c "! grep -q 'http: serving' '$T/gateway.log'"
stop gateway >/dev/null

check "the gateway starts with http_listen on loopback" gateway_start --http-listen "127.0.0.1:$HP"
# (gateway.log holds the first gateway's lines too: wait for this one's.)
check "it says where it serves" \
    wait_until 10 "grep -q 'http: serving the API, dashboard and /metrics on http://127.0.0.1:$HP' '$T/gateway.log'"
for id in dev-001 dev-002 dev-003 dev-004; do device_start "$id" 1.0.0; done
check "four devices idle at 1.0.0" wait_until 30 'all_devices idle 1.0.0 dev-001 dev-002 dev-003 dev-004'
# dev-004 goes offline: a target still to do, so the campaign stays open (not finished)
# for the commands below.
stop dev-004 >/dev/null
check "dev-004 is offline" wait_until 10 'all_devices offline 1.0.0 dev-004'
make_payload "$T/fw.bin" 20000
pack sensor 1.1.0 "$T/fw.bin" "$T/sensor-1.1.0.ota"
check "announce 1.1.0" announce sensor "file://$T/sensor-1.1.0.ota"
check "all three commit 1.1.0" wait_until 60 'all_devices committed 1.1.0 dev-001 dev-002 dev-003'
REL=$(gw_status_json | jq -r '.releases[0].release')

curl -s "$H/metrics" >"$T/metrics.txt"
gw_status_json >"$T/status.json"
check "/metrics parses with prometheus_client and matches the ledger" \
    /usr/bin/python3 "$OTA_ROOT/tests/system/check_metrics.py" "$T/metrics.txt" "$T/status.json"
check "/metrics is served as Prometheus text 0.0.4" \
    bash -c "curl -s -o /dev/null -w '%{content_type}' '$H/metrics' | grep -q 'text/plain; version=0.0.4'"

j() { curl -s "$H$1"; }
check "/api/campaigns: the release with 3 committed of 4 targets (dev-004 offline)" \
    test "$(j /api/campaigns | jq -r --arg r "$REL" '.campaigns[] | select(.release == $r) | "\(.state) \(.committed) \(.targets)"')" = "rolling 3 4"
check "/api/fleet: 3 committed, all on sensor 1.1.0" \
    test "$(j /api/fleet | jq -r '"\(.states.committed) \(.versions[0].product) \(.versions[0].version) \(.versions[0].devices)"')" = "3 sensor 1.1.0 3"
check "/api/devices pages: limit 2 gives 2 of 3" \
    test "$(j '/api/devices?state=committed&limit=2' | jq -r '"\(.total) \(.devices | length) \(.devices[0].device)"')" = "3 2 dev-001"
check "/api/devices offset 2 gives the third" \
    test "$(j '/api/devices?state=committed&limit=2&offset=2' | jq -r '.devices[].device')" = dev-003
check "/api/devices filters by name and release, with stage timings" \
    test "$(j "/api/devices?name=002&release=$REL" | jq -r '"\(.total) \(.devices[0].device) \(.devices[0].timings.total_ms > 0)"')" = "1 dev-002 true"
check "/api/devices filter with no match: 0" test "$(j '/api/devices?state=failed' | jq .total)" = 0
# How each update travelled and its bytes on the wire, as the ledger has them (20000
# random bytes do not compress: full; the fragments, headers included, are more).
api_enc=$(j '/api/devices?state=committed' | jq -c '[.devices[] | [.device, .encoding, .wire_bytes]]')
led_enc=$(gw_status_json | jq -c '[.devices[] | select(.state == "committed") | [.device, .encoding, .wire_bytes]]')
echo "# /api/devices: $api_enc"
check "/api/devices shows each device's encoding and wire bytes, as the ledger" \
    test "$api_enc" = "$led_enc"
check "... here the full image, 20000 bytes and their fragment headers each" \
    test "$(jq '[.[] | select(.[1] == "full" and .[2] > 20000)] | length' <<<"$api_enc")" = 3
check "/api/devices: a device with no update names no encoding" \
    test "$(j '/api/devices?name=004' | jq -r '"\(.devices[0].encoding)|\(.devices[0].wire_bytes)"')" = "|0"
check "/api/events has the three commits of the release" \
    test "$(j "/api/events?release=$REL" | jq '[.events[] | select(.event == "committed")] | length')" = 3
check "the chart's series ends at 3 committed, 0 failed, 0 in progress" \
    test "$(j "/api/campaigns/$REL/series?points=20" | jq -c '.points[-1][1:]')" = "[3,0,0]"
check "the dashboard page is served" bash -c "curl -s '$H/' | grep -q '<title>ota gateway</title>'"
check "... with its script and style" bash -c "curl -sf '$H/app.js' >/dev/null && curl -sf '$H/style.css' >/dev/null"
check "an unknown path is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "$H/nope")" = 404

# post ACTION TARGET: the verdict's "verdict state reason" and the HTTP status.
post() {
    curl -s -w ' %{http_code}' -X POST -H 'Content-Type: application/json' -d '{}' \
        "$H/api/$2/$1" | sed 's/\(.*\) \([0-9]*\)$/\2 \1/' |
        { read -r code body; echo "$code $(jq -r '"\(.verdict) \(.state) \(.reason)"' <<<"$body")"; }
}
camp_state() { gw_status_json | jq -r --arg r "$REL" '.releases[] | select(.release == $r) | .campaign.state'; }
check "pause: accepted, paused" test "$(post pause "campaigns/$REL")" = "200 accepted paused paused (0 devices keep their place)"
check "... and the ledger says paused" wait_until 5 '[ "$(camp_state)" = paused ]'
check "pause again: already" test "$(post pause "campaigns/$REL")" = "200 already paused already paused"
check "the paused campaign shows in /metrics" \
    bash -c "curl -s '$H/metrics' | grep -q 'ota_gateway_campaign_paused{release=\"$REL\",product=\"sensor\",version=\"1.1.0\"} 1'"
check "resume by product (the newest release): accepted" test "$(post resume products/sensor)" = "200 accepted rolling resumed: 0 devices under way"
check "... and the ledger says rolling" wait_until 5 '[ "$(camp_state)" = rolling ]'
check "a release that does not exist: 404 refused" \
    test "$(post pause campaigns/0123456789abcdef)" = "404 refused  no such release"
check "a product that does not exist: 404 no such product" \
    test "$(post pause products/nosuch)" = "404 refused  no such product"
check "an unknown action: 400" test "$(post explode "campaigns/$REL" | cut -d' ' -f1-2)" = "400 refused"
check "retry with no failed device: 409 refused" test "$(post retry "campaigns/$REL" | cut -d' ' -f1-2)" = "409 refused"
check "the event log names the operator command" \
    wait_until 5 "gw_status_json | jq -e '[.events[] | select(.event == \"operator_command\" and .detail == \"pause by loopback over http\")] | length == 1' >/dev/null"

check "a cross-origin POST is refused (403)" \
    test "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Origin: http://evil.example' -d '{}' "$H/api/campaigns/$REL/abort")" = 403
check "a request for another host name is refused (DNS rebinding, 403)" \
    test "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: evil.example' "$H/api/fleet")" = 403
check "GET only reads: PUT is 405" test "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$H/api/fleet")" = 405
check "abort: accepted" test "$(post abort "campaigns/$REL" | cut -d' ' -f1-3)" = "200 accepted aborted"
check "resume after abort: 409 refused, release was aborted" \
    test "$(post resume "campaigns/$REL")" = "409 refused aborted release was aborted; publish a new release instead"
check "the gateway stops cleanly with the HTTP side on" stop_all_clean gateway
check "fsck: the ledger is consistent after the HTTP commands" gw_fsck

# HTTPS: client certificates from the fleet CA, operators only.
check "the gateway starts with HTTPS" gateway_start --http-listen "127.0.0.1:$HP" --http-tls \
    --http-cert-file "$CERTS/broker.crt" --http-key-file "$CERTS/broker.key"
check "it serves HTTPS" wait_until 10 "grep -q 'on https://127.0.0.1:$HP' '$T/gateway.log'"
S=https://localhost:$HP
check "the operator's certificate gets the API" \
    test "$(curl -s --cacert "$CERTS/ca.crt" --cert "$CERTS/operator.crt" --key "$CERTS/operator.key" "$S/api/fleet" | jq .devices)" = 4
check "the operator's certificate may pause" \
    test "$(curl -s --cacert "$CERTS/ca.crt" --cert "$CERTS/operator.crt" --key "$CERTS/operator.key" -X POST -d '{}' "$S/api/products/sensor/pause" | jq -r .reason)" = "release was aborted; publish a new release instead"
check "without a client certificate: no connection" \
    bash -c "! curl -s --cacert '$CERTS/ca.crt' '$S/api/fleet'"
check "a device's certificate (same CA, not an operator): 403" \
    test "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CERTS/ca.crt" --cert "$CERTS/devices/dev-001.crt" --key "$CERTS/devices/dev-001.key" "$S/api/fleet")" = 403
check "plain HTTP on the HTTPS port gets nothing" \
    bash -c "! curl -s -m 5 'http://127.0.0.1:$HP/api/fleet' | grep -q devices"
check "the gateway stops cleanly (HTTPS)" stop_all_clean gateway
for id in dev-001 dev-002 dev-003; do stop "$id" >/dev/null; done
finish
