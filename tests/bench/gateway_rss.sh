#!/usr/bin/env bash
# Gateway memory per connected device: RSS of ota-gateway with N simulated devices
# (one ota-device --fleet process) idle, and while a 64 KiB release streams to all.
#   usage: tests/bench/gateway_rss.sh [BUILD_DIR]   env: SIZES="100 1000"
. "$(dirname "$0")/env.sh"
SIZES=${SIZES:-100 1000}
max=0
for n in $SIZES; do [ "$n" -gt "$max" ] && max=$n; done
certs_make --devices "$max" >/dev/null
broker_start >/dev/null || exit 1
make_payload "$T/fw.bin" 65536
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
echo "| devices | gateway RSS, idle | per device | RSS while transferring | per device |"
echo "| --- | --- | --- | --- | --- |"
for n in $SIZES; do
    rm -rf "$T/gw-db" "$T/gw-store" "$T/fleet"
    gateway_start >/dev/null || exit 1
    gw=$(pid_of gateway)
    base=$(rss_kib "$gw")
    spawn fleet "$DEV" --fleet "$n" --fleet-cert-dir "$CERTS/devices" --product sensor \
        --version 1.0.0 --broker-host localhost --broker-port "$BROKER_PORT" \
        --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --state-dir "$T/fleet"
    wait_until 120 "[ \"\$(gw_status_json | jq '[.devices[] | select(.state == \"idle\")] | length')\" = $n ]"
    idle=$(rss_kib "$gw")
    pack sensor "1.$n.0" "$T/fw.bin" "$T/p.ota"
    announce sensor "file://$T/p.ota"
    peak=$idle
    for ((i = 0; i < 600; i++)); do
        r=$(rss_kib "$gw")
        [ "$r" -gt "$peak" ] && peak=$r
        [ "$(gw_status_json | jq '[.devices[] | select(.state == "committed")] | length')" = "$n" ] && break
        sleep 0.5
    done
    printf '| %d | %.1f MiB | %.1f KiB | %.1f MiB | %.1f KiB |\n' "$n" \
        "$(awk -v k="$idle" 'BEGIN { print k / 1024 }')" \
        "$(awk -v a="$idle" -v b="$base" -v n="$n" 'BEGIN { print (a - b) / n }')" \
        "$(awk -v k="$peak" 'BEGIN { print k / 1024 }')" \
        "$(awk -v a="$peak" -v b="$base" -v n="$n" 'BEGIN { print (a - b) / n }')"
    stop fleet >/dev/null
    stop gateway >/dev/null
done
