#!/usr/bin/env bash
# Gateway memory per connected device: RSS of ota-gateway with N simulated devices
# (ota-device --fleet processes; more than one beyond FLEET_MAX_PER_PROC devices, since
# each device holds ~4 file descriptors and the hard limit here is 20000) idle, and at its
# peak while a 64 KiB release streams to all of them. The devices' state is on tmpfs.
#   usage: tests/bench/gateway_rss.sh [BUILD_DIR]   env: SIZES="100 1000 5000"  GW_RSS_FLAGS (extra gateway flags)
. "$(dirname "$0")/env.sh"
SIZES=${SIZES:-100 1000 5000}
# shellcheck disable=SC2086  # the sizes, split
max=$(bench_max $SIZES)
t=$SECONDS
certs_make --devices "$max" >/dev/null || bench_die "make-certs failed"
echo "gateway_rss: $max certificates in $((SECONDS - t)) s" >&2
broker_start >/dev/null || bench_die "the broker did not start"
bench_tmpfs
make_payload "$T/fw.bin" 65536
echo "| devices | fleet processes | gateway RSS, idle | per device | RSS while transferring | per device | broker RSS, idle | ledger shows committed |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for n in $SIZES; do
    rm -rf "$T/gw-db" "$T/gw-store" "$SHM"/fleet*
    gateway_start ${GW_RSS_FLAGS:-} >/dev/null || bench_die "the gateway did not start"
    gw=$(pid_of gateway)
    base=$(rss_kib "$gw")
    fleet_up "$n"
    t=$SECONDS
    sleep 1 # let the gateway settle after the last status
    idle=$(rss_kib "$gw")
    bidle=$(rss_kib "$(pid_of broker)")
    pack sensor "1.$n.0" "$T/fw.bin" "$T/p.ota" || bench_die "pack failed"
    drops0=$(grep -a -c "Outgoing messages are being dropped for client ota-gateway" "$T/broker.log")
    announce sensor "file://$T/p.ota" || bench_die "announce failed"
    peak=$idle
    # Done when every fleet process says all its devices committed (their own truth: at
    # 5000 devices the broker may drop statuses on their way to the gateway, see the
    # "ledger" column).
    done_ok=0
    for ((i = 0; i < 4 * (60 + n / 10); i++)); do
        r=$(rss_kib "$gw")
        [ "$r" -gt "$peak" ] && peak=$r
        if [ $((i % 4)) = 0 ] && [ "$(fleet_field "$procs" committed)" = "$n" ]; then
            done_ok=1
            break
        fi
        sleep 0.25
    done
    [ "$done_ok" = 1 ] || bench_die "$n devices: the fleets say only $(fleet_field "$procs" committed) committed"
    echo "gateway_rss: $n devices committed in $((SECONDS - t)) s" >&2
    # VmHWM catches a peak between two samples.
    hwm=$(hwm_kib "$gw")
    [ "$hwm" -gt "$peak" ] && peak=$hwm
    # Give the gateway's ledger time to hear the last statuses: those the broker dropped
    # come back when the gateway asks for a silent device's retained status (after 10 s).
    t_led=$SECONDS
    wait_until 60 "[ \"\$(count_at committed 1.$n.0)\" = $n ]" || true
    ledger=$(count_at committed "1.$n.0")
    led_s=$((SECONDS - t_led))
    dropped=$(($(grep -a -c "Outgoing messages are being dropped for client ota-gateway" "$T/broker.log") - drops0))
    note=""
    [ "$dropped" -gt 0 ] && note=" (broker: \"Outgoing messages are being dropped for client ota-gateway\")"
    printf '| %d | %d | %.1f MiB | %.1f KiB | %.1f MiB | %.1f KiB | %.1f MiB | %s |\n' "$n" "$procs" \
        "$(awk -v k="$idle" 'BEGIN { print k / 1024 }')" \
        "$(awk -v a="$idle" -v b="$base" -v n="$n" 'BEGIN { print (a - b) / n }')" \
        "$(awk -v k="$peak" 'BEGIN { print k / 1024 }')" \
        "$(awk -v a="$peak" -v b="$base" -v n="$n" 'BEGIN { print (a - b) / n }')" \
        "$(awk -v k="$bidle" 'BEGIN { print k / 1024 }')" "$ledger of $n, ${led_s} s after the fleets$note"
    for ((p = 0; p < procs; p++)); do stop "fleet$p" >/dev/null || true; done
    stop gateway >/dev/null || true
    mv "$T/gateway.log" "$T/gateway-$n.log"
done
