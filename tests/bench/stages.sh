#!/usr/bin/env bash
# Stage latencies of one update: one device, a 1 MiB package, RUNS runs (default 6), from
# the timestamps the system records itself (the gateway's release record and the device's
# reported timings), not from this script's stopwatch. Prints a Markdown table.
#   usage: tests/bench/stages.sh [BUILD_DIR]
. "$(dirname "$0")/env.sh"
RUNS=${RUNS:-6}
certs_make dev-001 >/dev/null || bench_die "make-certs failed"
broker_start >/dev/null || bench_die "the broker did not start"
gateway_start >/dev/null || bench_die "the gateway did not start"
device_start dev-001 1.0.0
wait_until 10 'all_devices idle 1.0.0 dev-001' || bench_die "dev-001 not idle"
make_payload "$T/fw.bin" 1048576
: >"$T/rows"
for ((i = 1; i <= RUNS; i++)); do
    pack sensor "1.$i.0" "$T/fw.bin" "$T/p$i.ota"
    announce sensor "file://$T/p$i.ota"
    wait_until 60 "all_devices committed 1.$i.0 dev-001" || bench_die "run $i: not committed in 60 s"
    gw_status_json | jq -r --arg v "1.$i.0" '
        (.releases[] | select(.version == $v)) as $r
        | (.devices[] | select(.device == "dev-001")) as $d
        | [$r.fetch_ms, $r.verify_ms, $d.timings.download_ms, $d.timings.verify_ms,
           $d.timings.install_ms, $d.timings.restart_ms, $d.timings.total_ms,
           ($d.finished_ms - $r.created_ms + $r.fetch_ms + $r.verify_ms)] | @tsv' >>"$T/rows"
done
[ "$(awk -F'\t' 'NF == 8' "$T/rows" | wc -l)" = "$RUNS" ] || bench_die "missing timings: $(cat "$T/rows")"
echo "| stage | mean | stdev |"
echo "| --- | --- | --- |"
awk -F'\t' '
    BEGIN { split("gateway fetch (file:// copy into the store)|gateway verification (signature + SHA-256)|transfer to the device (offer accepted -> last fragment)|device verification (image SHA-256)|device installation (slot write + switch)|device restart (re-exec -> up)|device total (offer accepted -> committed)|announcement -> committed (gateway clock)", name, "|") }
    { for (i = 1; i <= NF; i++) { s[i] += $i; q[i] += $i * $i } n++ }
    END { for (i = 1; i <= 8; i++) { m = s[i] / n; v = q[i] / n - m * m; if (v < 0) v = 0
          printf "| %s | %.1f ms | %.1f ms |\n", name[i], m, sqrt(v) } }' "$T/rows"
