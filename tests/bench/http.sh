#!/usr/bin/env bash
# What the HTTP side costs: a rollout to N (default 1000) simulated devices with the
# gateway's HTTP side off, against the same with it on, a dashboard open in headless
# Chromium (live updates over the WebSocket, its device page and chart refreshed) and
# /metrics scraped every second. One broker and one fleet for all runs; the gateway is
# restarted with a fresh ledger for each; off and on alternate (HTTP_BENCH_PAIRS pairs, in the
# order off-on, on-off, ...) so that the machine's drift falls on both; the verdict is the
# median of the pairs' ratios. Measured per update: time from the announcement
# to the last device committed (ledger), and the gateway's CPU seconds (/proc) over it.
# Prints Markdown (a table and its caption).
#   usage: tests/bench/http.sh [BUILD_DIR]
#   env: HTTP_BENCH_N=1000  HTTP_BENCH_KIB=1024  HTTP_BENCH_PAIRS=3
. "$(dirname "$0")/env.sh"
N=${HTTP_BENCH_N:-1000}
KIB=${HTTP_BENCH_KIB:-1024}
PAIRS=${HTTP_BENCH_PAIRS:-3}
FRAG=65536
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || bench_die "$CHROMIUM is missing (deploy/deps.sh installs chromium)"
certs_make --devices "$N" >/dev/null || bench_die "make-certs failed"
broker_start >/dev/null || bench_die "the broker did not start"
bench_tmpfs
make_payload "$T/fw.bin" $((KIB * 1024))
HP=$(free_port)

# ready_at VERSION: devices the ledger has idle or committed at VERSION.
ready_at() {
    gw_json | jq --arg v "$1" '[.devices[] | select(.version == $v and
        (.state == "idle" or .state == "committed"))] | length'
}

# gw_up on|off: a gateway on a fresh ledger, with or without the HTTP side; waits until
# it knows all N devices idle (or committed) at the fleet's current version $CUR.
gw_up() {
    rm -rf "$T/gw-db" "$T/gw-store"
    if [ "$1" = on ]; then
        gateway_start --http-listen "127.0.0.1:$HP" >/dev/null || bench_die "the gateway did not start"
    else
        gateway_start >/dev/null || bench_die "the gateway did not start"
    fi
    wait_until 60 "[ \"\$(ready_at $CUR)\" = $N ]" ||
        bench_die "the new gateway does not see $N devices idle at $CUR: $(states)"
}

# dashboard_open: headless Chromium on the dashboard until dashboard_close; waits until
# the gateway counts it among the open dashboards.
dashboard_open() {
    mkdir -p "$T/chromium"
    spawn chromium "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update \
        --disable-sync --user-data-dir="$T/chromium" --remote-debugging-port=0 \
        "http://127.0.0.1:$HP/"
    wait_until 60 "curl -s 'http://127.0.0.1:$HP/metrics' | grep -q '^ota_gateway_dashboards_open [1-9]'" ||
        bench_die "the dashboard did not connect"
}

# scraper_start: GET /metrics once a second (as a Prometheus with scrape_interval 1s).
scraper_start() {
    spawn scraper bash -c "while :; do curl -s -o /dev/null 'http://127.0.0.1:$HP/metrics'; sleep 1; done"
}

# update VERSION: announce, wait for all N committed; sets U_MS and U_GCPU (ticks).
update() {
    local v=$1 gw cg t0 last
    gw=$(pid_of gateway)
    pack sensor "$v" "$T/fw.bin" "$T/p-$v.ota" || bench_die "pack failed"
    cg=$(cpu_ticks "$gw")
    t0=$(now_ms)
    announce sensor "file://$T/p-$v.ota" ",\"fragment_size\":$FRAG" ||
        bench_die "mosquitto_pub of the announcement failed"
    wait_fleet $((60 + N / 4)) committed "$v" "$N" ||
        bench_die "not all committed $v: $(states)"
    U_GCPU=$(($(cpu_ticks "$gw") - cg))
    last=$(gw_json | jq '[.devices[].finished_ms] | max')
    U_MS=$((last - t0))
    CUR=$v
}

CUR=1.0.0
gateway_start >/dev/null || bench_die "the gateway did not start"
spawn fleet "$DEV" --fleet "$N" --fleet-cert-dir "$CERTS/devices" --product sensor \
    --version "$CUR" --broker-host localhost --broker-port "$BROKER_PORT" \
    --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --state-dir "$SHM/fleet"
wait_fleet $((60 + N / 4)) idle "$CUR" "$N" || bench_die "$N devices not idle: $(states)"
stop gateway >/dev/null || true

: >"$T/rows"
ver=0
for ((i = 0; i < PAIRS; i++)); do
    order="off on"
    [ $((i % 2)) = 1 ] && order="on off"
    for side in $order; do
        gw_up "$side"
        if [ "$side" = on ]; then
            dashboard_open
            scraper_start
        fi
        ver=$((ver + 1))
        update "1.$ver.0"
        if [ "$side" = on ]; then
            stop scraper >/dev/null || true
            stop chromium >/dev/null || true
        fi
        echo "$side $U_MS $U_GCPU $i" >>"$T/rows"
        echo "bench http: $side 1.$ver.0: ${U_MS} ms, gateway CPU ${U_GCPU} ticks" >&2
        stop gateway >/dev/null || true
    done
done
stop fleet >/dev/null || true

[ -n "${HTTP_ROWS:-}" ] && cp "$T/rows" "$HTTP_ROWS"
awk -v hz="$CLK_TCK" -v n="$N" -v kib="$KIB" -v pairs="$PAIRS" '
    function median(a, k,    i, j, t) {
        for (i = 2; i <= k; i++)
            for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    { ms[$1] += $2; cpu[$1] += $3; runs[$1]++; pm[$4, $1] = $2; pc[$4, $1] = $3 }
    END {
        for (s in ms) { ms[s] /= runs[s]; cpu[s] /= runs[s] }
        for (p = 0; p < pairs; p++) { rt[p + 1] = pm[p, "on"] / pm[p, "off"]; rc[p + 1] = pc[p, "on"] / pc[p, "off"] }
        print "| HTTP side | update time (mean of " pairs ") | gateway CPU s (mean) |"
        print "| --- | --- | --- |"
        printf "| off | %.2f s | %.2f |\n", ms["off"] / 1000, cpu["off"] / hz
        printf "| on: dashboard open, /metrics every 1 s | %.2f s | %.2f |\n", ms["on"] / 1000, cpu["on"] / hz
        printf "| on / off, ratio of the means | %.3f | %.3f |\n", ms["on"] / ms["off"], cpu["on"] / cpu["off"]
        printf "| **on / off, median of the %d pairs'"'"' ratios** | **%.3f** | **%.3f** |\n", pairs, median(rt, pairs), median(rc, pairs)
    }' "$T/rows"
echo
echo "Each run: $N devices, $KIB KiB, fragments of 64 KiB; $PAIRS pairs, in the order off, on, then on, off"
echo "(so that a machine getting busier or quieter weighs on both sides); the verdict takes the median of"
echo "the pairs' ratios, which one disturbed pair cannot move."
echo "The individual runs (side, update ms, gateway CPU ticks at $CLK_TCK Hz, pair):"
echo
sed 's/^/    /' "$T/rows"
