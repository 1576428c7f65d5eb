#!/usr/bin/env bash
# Device client peak RSS against package size: memory must not grow with the package.
#   usage: tests/bench/device_rss.sh [BUILD_DIR]   (prints a Markdown table)
#   env: DEVICE_RSS_MIB="1 16 64" (package sizes)
. "$(dirname "$0")/env.sh"
certs_make dev-001 >/dev/null || bench_die "make-certs failed"
broker_start >/dev/null || bench_die "the broker did not start"
gateway_start >/dev/null || bench_die "the gateway did not start"
echo "| package | fragments | download | device peak RSS |"
echo "| --- | --- | --- | --- |"
v=0
for mib in ${DEVICE_RSS_MIB:-1 16 64}; do
    v=$((v + 1))
    device_start dev-001 1.0.0 # a fresh process; its state dir keeps the version
    wait_until 10 '[ "$(dev_field dev-001 state)" = idle ] || [ "$(dev_field dev-001 state)" = committed ]' ||
        bench_die "dev-001 did not come up"
    make_payload "$T/fw.bin" $((mib << 20))
    pack sensor "2.$v.0" "$T/fw.bin" "$T/p.ota"
    announce sensor "file://$T/p.ota"
    wait_until 300 "all_devices committed 2.$v.0 dev-001" || bench_die "$mib MiB: not committed in 300 s"
    dl=$(dev_field dev-001 timings.download_ms)
    stop dev-001 >/dev/null
    # The last stats line is printed at stop, after the update (re-exec keeps the peak).
    rss=$(sed -n 's/.*peak_rss_kib=\([0-9]*\).*/\1/p' "$T/dev-001.log" | sort -n | tail -1)
    [ -n "$rss" ] && [ -n "$dl" ] || bench_die "$mib MiB: no peak_rss_kib or download time"
    printf '| %d MiB | %d | %d ms | %.1f MiB |\n' "$mib" $(((mib << 20) / 4096)) "$dl" \
        "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
    mv "$T/dev-001.log" "$T/dev-001-$mib.log"
done
