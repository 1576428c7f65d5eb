#!/usr/bin/env bash
# A fleet update without a restart storm (issue 16, points 1 and 5): N simulated devices in
# several ota-device --fleet processes (each device holds ~4 file descriptors; the hard
# limit here is 20000) take a 64 KiB release. Measured per N:
#   - fleet time: the announcement to the last fleet process reporting all its devices
#     committed (their own state, their summary line every 5 s);
#   - ledger convergence: from then to the gateway's ledger showing all N committed (the
#     target: within 30 s);
#   - CPU seconds (utime + stime) of broker and gateway over the update, and their peak RSS
#     (VmHWM, reset at the announcement);
#   - reconnections after the update: from the broker's log ("New client connected"), the
#     busiest second and the seconds they spread over; and from the fleets, the most
#     connection attempts any device's post-restart connection took (target: at most 3).
# The gateway runs with its defaults: offers paced at offer_rate (2000/s), restarts spread at
# restart_rate (500 reconnections/s: N / 500 seconds).
#   usage: tests/bench/scale.sh [BUILD_DIR]
#   env: SCALE_SIZES="1000 5000 10000"  FLEET_MAX_PER_PROC=2500  GW_FLAGS (extra gateway flags)
#        SCALE_CERTS: a make-certs.sh directory to start from (10,000 device certificates
#        take many minutes to make; make-certs keeps what exists and adds what is missing);
#        SCALE_CERT_DEVICES: how many it holds (their ids' width), default the largest N
. "$(dirname "$0")/env.sh"
SIZES=${SCALE_SIZES:-1000 5000 10000}
# shellcheck disable=SC2086  # the sizes, split
max=$(bench_max $SIZES)
t=$SECONDS
if [ -n "${SCALE_CERTS:-}" ]; then cp -a "$SCALE_CERTS" "$CERTS" || bench_die "cannot copy $SCALE_CERTS"; fi
certs_make --devices "${SCALE_CERT_DEVICES:-$max}" >/dev/null || bench_die "make-certs failed"
echo "scale: $max certificates in $((SECONDS - t)) s" >&2
broker_start >/dev/null || bench_die "the broker did not start"
BROKER=$(pid_of broker)
bench_tmpfs
make_payload "$T/fw.bin" 65536

# reconnects T0: "peak_per_s seconds total" of device connections the broker logged at or
# after T0 (unix seconds).
reconnects() {
    local since
    since=$(date -u -d "@$1" +%Y-%m-%dT%H:%M:%S)
    grep -a 'New client connected from .* as dev-' "$T/broker.log" |
        awk -v s="$since" '{ t = substr($1, 1, 19) } t >= s { n[t]++; tot++ }
            END { for (k in n) { if (n[k] > p) p = n[k]; secs++ } printf "%d %d %d\n", p, secs, tot }'
}

echo "| devices | fleet processes | fleet time (ledger's last commit) | ledger all committed | CPU s: broker / gateway | peak RSS: broker / gateway | reconnections: busiest second / over / total | most attempts after restart |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
ver=0
for n in $SIZES; do
    ver=$((ver + 1))
    rm -rf "$T/gw-db" "$T/gw-store" "$SHM"/fleet*
    gateway_start ${GW_FLAGS:-} >/dev/null || bench_die "the gateway did not start"
    gw=$(pid_of gateway)
    fleet_up "$n"
    sleep 2
    pack sensor "1.$ver.0" "$T/fw.bin" "$T/p.ota" || bench_die "pack failed"
    hwm_reset "$BROKER"
    hwm_reset "$gw"
    cb=$(cpu_ticks "$BROKER")
    cg=$(cpu_ticks "$gw")
    t0=$(now_ms)
    t0s=$((t0 / 1000))
    announce sensor "file://$T/p.ota" || bench_die "announce failed"
    done_ok=0
    for ((i = 0; i < 4 * (120 + n / 20); i++)); do
        if [ "$(fleet_field "$procs" committed)" = "$n" ]; then
            done_ok=1
            break
        fi
        sleep 0.25
    done
    t_fleet=$(now_ms)
    [ "$done_ok" = 1 ] || bench_die "$n devices: the fleets say only $(fleet_field "$procs" committed) committed"
    wait_until 60 "[ \"\$(log_count committed 1.$ver.0)\" -ge $n ]" || true
    wait_until 30 "[ \"\$(count_at committed 1.$ver.0)\" = $n ]" || true
    t_led=$(now_ms)
    ledger=$(count_at committed "1.$ver.0")
    last=$(gw_json | jq '[.devices[].finished_ms] | max')
    bcpu=$(($(cpu_ticks "$BROKER") - cb))
    gcpu=$(($(cpu_ticks "$gw") - cg))
    bhwm=$(hwm_kib "$BROKER")
    ghwm=$(hwm_kib "$gw")
    # The attempts figure of a summary line in which every device is connected again.
    wait_until 15 "[ \"\$(fleet_field $procs connected)\" = $n ]" || true
    att=$(fleet_field "$procs" connect_attempts_max)
    over=$(fleet_field "$procs" connect_attempts_over3)
    read -r peak secs tot <<<"$(reconnects "$t0s")"
    led="$ledger of $n, $(ms_s $((t_led - t_fleet))) after the fleets"
    [ "$ledger" = "$n" ] || led="**$led**"
    echo "| $n | $procs | $(ms_s $((t_fleet - t0))) ($(ms_s $((last - t0)))) | $led | $(ticks_s "$bcpu") / $(ticks_s "$gcpu") | $(mib "$bhwm") / $(mib "$ghwm") | $peak/s / $secs s / $tot | $att ($over devices over 3) |"
    for ((p = 0; p < procs; p++)); do
        stop "fleet$p" >/dev/null || true
        mv "$T/fleet$p.log" "$T/fleet$p-$n.log"
    done
    stop gateway >/dev/null || true
    mv "$T/gateway.log" "$T/gateway-$n.log"
done
echo
echo "Command: \`tests/bench/scale.sh\` (SCALE_SIZES=\"$SIZES\", FLEET_MAX_PER_PROC=${FLEET_MAX_PER_PROC:-2500}${GW_FLAGS:+, GW_FLAGS=\"$GW_FLAGS\"})."
