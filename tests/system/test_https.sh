#!/usr/bin/env bash
# Packages over https:// through libcurl on the gateway's loop: a good download, and
# redirects (https only), refusals for a missing file, a server that never answers, a package over the size cap, an endless body and a server
# the gateway does not trust; a server that is down at first is retried with backoff.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make --rogue dev-001 dev-002
broker_start || { not_ok "broker starts"; finish; }
mkdir -p "$T/www"
ln -s /dev/zero "$T/www/endless.ota"
https_start() { # NAME PORT CERT KEY
    cd "$T/www" || return 1
    spawn "$1" openssl s_server -WWW -quiet -accept "127.0.0.1:$2" -cert "$3" -key "$4"
    cd - >/dev/null || return 1
    wait_until 10 "port_listening $2"
}
WEB=$(free_port)
check "an https server with a certificate from the fleet CA" \
    https_start web "$WEB" "$CERTS/broker.crt" "$CERTS/broker.key"
check "gateway starts (https_ca_file = fleet CA, 1 MiB cap, 3 retries)" \
    gateway_start --https-ca-file "$CERTS/ca.crt" --max-package-mb 1 --fetch-retries 3
for d in dev-001 dev-002; do device_start "$d" 1.0.0; done
check "devices online" wait_until 10 'all_devices idle 1.0.0 dev-001 dev-002'

make_payload "$T/fw.bin" 262144
pack sensor 1.1.0 "$T/fw.bin" "$T/www/sensor-1.1.0.ota"
announce sensor "https://localhost:$WEB/sensor-1.1.0.ota"
check "a release fetched over https reaches both devices" \
    wait_until 30 'all_devices committed 1.1.0 dev-001 dev-002'
check "with the exact payload" cmp -s "$T/fw.bin" "$T/dev/dev-002/active/payload"
check "the gateway logged the fetch" grep -q "fetched https://localhost:$WEB/sensor-1.1.0.ota: " "$T/gateway.log"

refused() { grep -c 'release REFUSED' "$T/gateway.log"; }
n=$(refused)
announce sensor "https://localhost:$WEB/missing.ota"
# openssl s_server answers a missing file with "200 ok" and an error text.
check "a missing file is refused: what came back is not a package" \
    wait_until 10 "[ \$(refused) -gt $n ] && grep -q 'missing.ota reason=\"not an OTA package' '$T/gateway.log'"
DOWN=$(free_port)
n=$(refused)
announce sensor "https://localhost:$DOWN/never.ota"
check "a server that never answers is given up after 1 + 3 tries (1, 2, 4 s apart)" \
    wait_until 20 "[ \$(refused) -gt $n ] && grep -q 'never.ota failed after 4 tries' '$T/gateway.log'"

make_payload "$T/big.bin" 2097152
pack sensor 1.2.0 "$T/big.bin" "$T/www/big.ota"
n=$(refused)
announce sensor "https://localhost:$WEB/big.ota"
check "a package over the size cap is cut off and refused" \
    wait_until 20 "[ \$(refused) -gt $n ] && grep -q 'big.ota.*larger than the configured maximum of 1048576' '$T/gateway.log'"
n=$(refused)
announce sensor "https://localhost:$WEB/endless.ota"
check "an endless download is cut off at the cap" \
    wait_until 20 "[ \$(refused) -gt $n ] && grep -q 'endless.ota.*larger than the configured maximum' '$T/gateway.log'"
check "no partial download is left in the store" \
    test "$(find "$T/gw-store" -name '.fetch-*' | wc -l)" = 0

EVIL=$(free_port)
https_start evil "$EVIL" "$CERTS/rogue/dev-001.crt" "$CERTS/rogue/dev-001.key"
cp "$T/www/sensor-1.1.0.ota" "$T/www/evil.ota"
n=$(refused)
announce sensor "https://localhost:$EVIL/evil.ota"
check "a server whose certificate the gateway does not trust is refused" \
    wait_until 10 "[ \$(refused) -gt $n ] && grep -qi 'evil.ota.*certificate' '$T/gateway.log'"

LATE=$(free_port)
pack sensor 1.3.0 "$T/fw.bin" "$T/www/late.ota"
announce sensor "https://localhost:$LATE/late.ota"
sleep 1.5
check "a server that is down at first is retried with backoff" \
    grep -q "late.ota failed (.*); retry 1 of 3 in 1000 ms" "$T/gateway.log"
https_start late "$LATE" "$CERTS/broker.crt" "$CERTS/broker.key"
check "and the release goes out once it is up" \
    wait_until 30 'all_devices committed 1.3.0 dev-001 dev-002'
# Redirects: followed over https, refused towards plain http.
RED=$(free_port)
mkdir -p "$T/www-redirect"
pack sensor 1.4.0 "$T/fw.bin" "$T/www/sensor-1.4.0.ota"
printf 'HTTP/1.0 302 Found\r\nLocation: https://localhost:%s/sensor-1.4.0.ota\r\n\r\n' \
    "$WEB" >"$T/www-redirect/moved.ota"
printf 'HTTP/1.0 302 Found\r\nLocation: http://localhost:%s/sensor-1.4.0.ota\r\n\r\n' \
    "$WEB" >"$T/www-redirect/downgrade.ota"
cd "$T/www-redirect" || exit 1
spawn redirect openssl s_server -HTTP -quiet -accept "127.0.0.1:$RED" \
    -cert "$CERTS/broker.crt" -key "$CERTS/broker.key"
cd - >/dev/null || exit 1
wait_until 10 "port_listening $RED"
n=$(refused)
announce sensor "https://localhost:$RED/downgrade.ota"
check "a redirect to plain http:// is refused" \
    wait_until 10 "[ \$(refused) -gt $n ] && grep -qi 'downgrade.ota.*http' '$T/gateway.log'"
announce sensor "https://localhost:$RED/moved.ota"
check "an https redirect is followed and the release goes out" \
    wait_until 30 'all_devices committed 1.4.0 dev-001 dev-002'
check "the gateway's loop kept serving: everything stops cleanly" \
    stop_all_clean gateway dev-001 dev-002
finish
