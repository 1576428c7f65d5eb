#!/usr/bin/env bash
# The same update on Mosquitto, on one RabbitMQ node and on a 3-node RabbitMQ cluster
# (deploy/rabbitmq, tests/system/rabbit.sh): N simulated devices (one ota-device --fleet
# process per broker node, the devices split evenly, each process on its own node), the
# gateway on node 1, one release of PKG KiB. Per broker: the time from the announcement to
# the last device committed (the ledger's finished_ms), the time for the fleets to connect,
# CPU seconds of the broker (all nodes), the gateway and the devices, and the broker's
# peak RSS (all nodes). Everything speaks MQTT 3.1.1 (RabbitMQ 3.10 has no MQTT 5), so the
# Mosquitto row is comparable to the others, not to docs/BENCHMARKS.md's fleet table.
# Prints Markdown.
#   usage: tests/bench/rabbitmq.sh [BUILD_DIR]
#   env: RMQ_BENCH_N=1000 RMQ_BENCH_PKG_KIB=64 RMQ_BENCH_BROKERS="mosquitto rabbitmq:1 rabbitmq:3"
#        RMQ_BENCH_STAGGER_MS=2 (each fleet's delay between two connections: fleet_stagger_ms)
. "$(dirname "$0")/env.sh"
. "$OTA_ROOT/tests/system/rabbit.sh"
N=${RMQ_BENCH_N:-1000}
KIB=${RMQ_BENCH_PKG_KIB:-64}
BROKERS=${RMQ_BENCH_BROKERS:-mosquitto rabbitmq:1 rabbitmq:3}
STAGGER=${RMQ_BENCH_STAGGER_MS:-2}
certs_make --devices "$N" >/dev/null || bench_die "make-certs failed"
bench_tmpfs
make_payload "$T/fw.bin" $((KIB * 1024))

# broker_pids: the pids whose CPU and memory are the broker's.
broker_pids() {
    local k
    if [ "$OTA_BROKER" = mosquitto ]; then pid_of broker; return; fi
    for k in "${!RMQ_NODE[@]}"; do rabbit_beam_pid "$k"; done
}
sum_ticks() { local p s=0; for p in "$@"; do s=$((s + $(cpu_ticks "$p"))); done; echo "$s"; }
sum_hwm() { local p s=0; for p in "$@"; do s=$((s + $(hwm_kib "$p"))); done; echo "$s"; }

# run_one BROKER NODES VERSION: one row into $T/rows.
run_one() {
    local b=$1 nodes=$2 v=$3 k per first t0 last conn=0 c bp fps=() cb cg cf limit=$((60 + N / 2))
    export OTA_BROKER=$b
    if [ "$b" = mosquitto ]; then
        broker_start >/dev/null || bench_die "mosquitto did not start"
        RMQ_PORT=([1]="$BROKER_PORT")
    else
        rabbit_start "$nodes" || bench_die "RabbitMQ ($nodes nodes) did not start"
    fi
    rm -rf "$T/gw-db" "$T/gw-store" "$SHM/fleet"
    gateway_start --mqtt-version 3.1.1 >/dev/null || bench_die "the gateway did not start"
    per=$((N / nodes))
    for ((k = 1; k <= nodes; k++)); do
        first=$(((k - 1) * per + 1))
        [ "$k" = "$nodes" ] && per=$((N - first + 1))
        spawn "fleet$k" "$DEV" --fleet "$per" --fleet-first "$first" --fleet-stagger-ms "$STAGGER" \
            --fleet-cert-dir "$CERTS/devices" --product sensor --version 1.0.0 \
            --broker-host localhost --broker-port "${RMQ_PORT[$k]}" --ca-file "$CERTS/ca.crt" \
            --publisher-key "$CERTS/publisher.pub" --state-dir "$SHM/fleet/$k"
        fps+=("$(pid_of "fleet$k")")
    done
    wait_fleet $((60 + N / 10)) idle 1.0.0 "$N" || bench_die "$b/$nodes: not all idle: $(states)"
    for ((k = 1; k <= nodes; k++)); do
        wait_until 10 "grep -q 'all_connected' '$T/fleet$k.log'" || bench_die "fleet$k: no all_connected"
        c=$(grep -a -o "all_connected devices=[0-9]* connect_ms=[0-9]*" "$T/fleet$k.log" | head -n 1 | cut -d= -f3)
        [ "$c" -gt "$conn" ] && conn=$c
    done
    pack sensor "$v" "$T/fw.bin" "$T/p-$v.ota" || bench_die "pack failed"
    # shellcheck disable=SC2046  # one pid a word
    set -- $(broker_pids)
    for bp in "$@"; do hwm_reset "$bp"; done
    cb=$(sum_ticks "$@")
    cg=$(cpu_ticks "$(pid_of gateway)")
    cf=$(sum_ticks "${fps[@]}")
    t0=$(now_ms)
    announce sensor "file://$T/p-$v.ota" ",\"fragment_size\":65536" || bench_die "announce failed"
    wait_fleet "$limit" committed "$v" "$N" || bench_die "$b/$nodes: not all committed: $(states)"
    last=$(gw_json | jq '[.devices[].finished_ms] | max')
    echo "$b $nodes $((last - t0)) $conn $(($(sum_ticks "$@") - cb)) $(($(cpu_ticks "$(pid_of gateway)") - cg)) $(($(sum_ticks "${fps[@]}") - cf)) $(sum_hwm "$@")" >>"$T/rows"
    for ((k = 1; k <= nodes; k++)); do stop "fleet$k" >/dev/null || true; done
    stop gateway >/dev/null || true
    if [ "$b" = mosquitto ]; then broker_stop; else rabbit_stop_all; fi
    for f in "$T"/fleet*.log "$T/gateway.log"; do mv -f "$f" "${f%.log}-$b-$nodes.txt"; done
}

: >"$T/rows"
ver=0
for spec in $BROKERS; do
    ver=$((ver + 1))
    case $spec in
    mosquitto) run_one mosquitto 1 "1.$ver.0" ;;
    rabbitmq:[1-9]) run_one rabbitmq "${spec#rabbitmq:}" "1.$ver.0" ;;
    *) bench_die "unknown broker '$spec' (mosquitto, rabbitmq:NODES)" ;;
    esac
done
echo "| broker | devices x package | update time | fleets connected | CPU s: broker / gateway / devices | broker peak RSS |"
echo "| --- | --- | --- | --- | --- | --- |"
while read -r b nodes ms conn bc gc fc hwm; do
    name="Mosquitto 2.0.11"
    [ "$b" = rabbitmq ] && name="RabbitMQ 3.10, $nodes node$([ "$nodes" -gt 1 ] && echo s)"
    echo "| $name | $N x $KIB KiB | $(ms_s "$ms") | $(ms_s "$conn") | $(ticks_s "$bc") / $(ticks_s "$gc") / $(ticks_s "$fc") | $(mib "$hwm") |"
done <"$T/rows"
