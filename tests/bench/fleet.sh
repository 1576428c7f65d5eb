#!/usr/bin/env bash
# Fleet time against the broker's own floor, in one run on one broker:
#   - floor: tests/tools/floor, one publisher sends the package's bytes (in messages of the
#     fragment size) to N subscribers that only count them, over the same mutual TLS;
#   - ours: N simulated devices (one ota-device --fleet N process, a certificate each) take
#     a release announced with mosquitto_pub; time from that mosquitto_pub to the last
#     device committed, from the gateway's ledger (finished_ms of the last device).
# Also: CPU seconds (utime + stime from /proc) of broker, gateway and fleet, peak RSS
# (VmHWM, reset before each run) of gateway and broker, connection times, one run with the
# devices' state on disk instead of tmpfs, and a perf profile of the largest run.
# Prints Markdown (tables and their captions).
#   usage: tests/bench/fleet.sh [BUILD_DIR]
#   env: FLEET_SIZES="1 100 1000"  FLEET_PKG_KIB="64 1024"  FLEET_FRAG=65536
#        FLEET_DISK_ROW=1 (one more N=max, largest package, state on disk)
#        FLEET_PROFILE=1 (perf record the largest case once more, not timed)
#        FLEET_KEEP_PERF=1 (keep $T/perf.data; with KEEP=1 for perf report afterwards)
. "$(dirname "$0")/env.sh"
SIZES=${FLEET_SIZES:-1 100 1000}
PKGS=${FLEET_PKG_KIB:-64 1024}
FRAG=${FLEET_FRAG:-65536}
DISK_ROW=${FLEET_DISK_ROW:-1}
PROFILE=${FLEET_PROFILE:-1}
bench_need_tool floor
if [ "$PROFILE" = 1 ] && ! perf --version >/dev/null 2>&1; then
    bench_die "perf is missing (sh deploy/deps.sh bench installs linux-perf)"
fi
max=0
for n in $SIZES; do [ "$n" -gt "$max" ] && max=$n; done
big=0
for k in $PKGS; do [ "$k" -gt "$big" ] && big=$k; done
certs_make --devices "$max" >/dev/null || bench_die "make-certs failed"
# The floor's subscribers are the device certificates, one each (the broker makes the CN the
# client id: one certificate, one connection); the shipped ACL gives no device the floor's
# topic, so this broker has one more pattern line for it.
{ cat "$CERTS/acl"; printf '\npattern read ota/release/bench-floor/#\n'; } >"$T/bench.acl"
BROKER_ACL=$T/bench.acl broker_start >/dev/null || bench_die "the broker did not start"
BROKER=$(pid_of broker)
bench_tmpfs
for k in $PKGS; do make_payload "$T/fw-$k.bin" $((k * 1024)); done

# kib_label KIB: "64 KiB" or "1 MiB".
kib_label() { if [ $(($1 % 1024)) = 0 ]; then echo "$(($1 / 1024)) MiB"; else echo "$1 KiB"; fi; }

# floor_run N KIB: one floor measurement; sets F_CONNECT F_FANOUT F_CPU F_BCPU F_BHWM (ms, KiB).
floor_run() {
    local n=$1 k=$2 bytes=$(($2 * 1024)) msg=$FRAG out
    [ "$msg" -gt "$bytes" ] && msg=$bytes
    hwm_reset "$BROKER"
    out=$("$TOOLS/floor" --host localhost --port "$BROKER_PORT" --cafile "$CERTS/ca.crt" \
        --pub-cert "$CERTS/operator.crt" --pub-key "$CERTS/operator.key" \
        --sub-cert-dir "$CERTS/devices" \
        --subscribers "$n" --bytes "$bytes" --msg-size "$msg" --cpu-pid "$BROKER" \
        --timeout-s $((60 + n / 5)) 2>>"$T/floor.log") ||
        bench_die "floor with $n subscribers and $k KiB failed: $(tail -n 3 "$T/floor.log")"
    echo "$out" >>"$T/floor.log"
    F_CONNECT=$(grep -o 'connect_ms=[0-9.]*' <<<"$out" | cut -d= -f2)
    F_FANOUT=$(grep -o 'fanout_ms=[0-9.]*' <<<"$out" | cut -d= -f2)
    F_CPU=$(grep -o ' cpu_ms=[0-9.]*' <<<"$out" | cut -d= -f2)
    F_BCPU=$(grep -o 'pid_cpu_ms=[0-9.]*' <<<"$out" | cut -d= -f2)
    F_BHWM=$(hwm_kib "$BROKER")
    [ -n "$F_FANOUT" ] && [ -n "$F_BCPU" ] || bench_die "floor printed no figures: $out"
}

# fleet_up N DIR: gateway (fresh ledger) and a fleet of N devices with state under DIR,
# all idle; sets C_FLEET (the fleet's own all-connected time, ms).
fleet_up() {
    local n=$1 dir=$2
    rm -rf "$T/gw-db" "$T/gw-store" "$dir"
    gateway_start >/dev/null || bench_die "the gateway did not start"
    spawn fleet "$DEV" --fleet "$n" --fleet-cert-dir "$CERTS/devices" --product sensor \
        --version 1.0.0 --broker-host localhost --broker-port "$BROKER_PORT" \
        --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --state-dir "$dir"
    wait_fleet $((30 + n / 10)) idle 1.0.0 "$n" ||
        bench_die "$n devices not idle after $((30 + n / 10)) s: $(states)"
    wait_until 10 "grep -q 'all_connected devices=$n ' '$T/fleet.log'" ||
        bench_die "the fleet did not report all_connected"
    C_FLEET=$(grep -a -o "all_connected devices=$n connect_ms=[0-9]*" "$T/fleet.log" |
        head -n 1 | cut -d= -f3)
}

fleet_down() {
    stop fleet >/dev/null || true
    stop gateway >/dev/null || true
    mv "$T/fleet.log" "$T/fleet-$1.log"
    mv "$T/gateway.log" "$T/gateway-$1.log"
}

# update N KIB VERSION: announce, wait for all N committed; sets U_MS U_BCPU U_GCPU
# U_FCPU (ticks) U_GHWM U_BHWM (KiB) U_SENT U_RESENT.
update() {
    local n=$1 k=$2 v=$3 gw fl cb cg cf t0 last limit=$((60 + n / 2))
    gw=$(pid_of gateway)
    fl=$(pid_of fleet)
    pack sensor "$v" "$T/fw-$k.bin" "$T/p-$v.ota" || bench_die "pack failed"
    hwm_reset "$BROKER"
    hwm_reset "$gw"
    cb=$(cpu_ticks "$BROKER")
    cg=$(cpu_ticks "$gw")
    cf=$(cpu_ticks "$fl")
    t0=$(now_ms)
    announce sensor "file://$T/p-$v.ota" ",\"fragment_size\":$FRAG" ||
        bench_die "mosquitto_pub of the announcement failed"
    wait_fleet "$limit" committed "$v" "$n" ||
        bench_die "$n devices, $k KiB: not all committed $v after $limit s: $(states)"
    U_BCPU=$(($(cpu_ticks "$BROKER") - cb))
    U_GCPU=$(($(cpu_ticks "$gw") - cg))
    U_FCPU=$(($(cpu_ticks "$fl") - cf))
    U_GHWM=$(hwm_kib "$gw")
    U_BHWM=$(hwm_kib "$BROKER")
    last=$(gw_json | jq '[.devices[].finished_ms] | max')
    U_MS=$((last - t0))
    U_SENT=$(gw_json | jq '[.devices[].frags_sent] | add')
    U_RESENT=$(gw_json | jq '[.devices[].frags_resent] | add')
}

: >"$T/rows"
: >"$T/conn"
ver=0
for n in $SIZES; do
    # The floor first, with no gateway connected (it would read the floor's topic).
    declare -A FL=()
    for k in $PKGS; do
        floor_run "$n" "$k"
        FL[$k]="$F_FANOUT $F_CPU $F_BCPU $F_BHWM"
        fconn=$F_CONNECT
    done
    fleet_up "$n" "$SHM/fleet-$n"
    echo "$n $C_FLEET $fconn" >>"$T/conn"
    for k in $PKGS; do
        ver=$((ver + 1))
        update "$n" "$k" "1.$ver.0"
        # shellcheck disable=SC2086  # split the floor's figures
        set -- ${FL[$k]}
        echo "$n $k $U_MS $1 $U_BCPU $U_GCPU $U_FCPU $3 $2 $U_GHWM $U_BHWM $4 $U_SENT $U_RESENT tmpfs" >>"$T/rows"
    done
    if [ "$n" = "$max" ] && [ "$PROFILE" = 1 ]; then
        # The largest case once more under perf (DWARF call graphs of all three programs);
        # not timed: perf slows what it watches.
        ver=$((ver + 1))
        pack sensor "1.$ver.0" "$T/fw-$big.bin" "$T/p-prof.ota"
        perf record -q -F 200 --call-graph dwarf,16384 -o "$T/perf.data" \
            -p "$BROKER,$(pid_of gateway),$(pid_of fleet)" >"$T/perf.log" 2>&1 &
        perf_pid=$!
        sleep 1
        P_B=$(cpu_ticks "$BROKER")
        P_G=$(cpu_ticks "$(pid_of gateway)")
        P_F=$(cpu_ticks "$(pid_of fleet)")
        announce sensor "file://$T/p-prof.ota" ",\"fragment_size\":$FRAG" ||
            bench_die "announce failed"
        wait_fleet $((120 + n)) committed "1.$ver.0" "$n" ||
            bench_die "profiled run: not all committed: $(states)"
        P_B=$(($(cpu_ticks "$BROKER") - P_B))
        P_G=$(($(cpu_ticks "$(pid_of gateway)") - P_G))
        P_F=$(($(cpu_ticks "$(pid_of fleet)") - P_F))
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        perf script -i "$T/perf.data" -F comm,ip,sym,dso 2>/dev/null |
            awk -f "$OTA_ROOT/tests/bench/profile.awk" >"$T/profile.tsv"
        grep -q '^TOTAL' "$T/profile.tsv" || bench_die "perf script gave no samples: $(cat "$T/perf.log")"
        [ -n "${FLEET_KEEP_PERF:-}" ] || rm -f "$T/perf.data"
    fi
    fleet_down "$n"
done
if [ "$DISK_ROW" = 1 ]; then
    fleet_up "$max" "$T/fleet-disk"
    ver=$((ver + 1))
    update "$max" "$big" "1.$ver.0"
    echo "$max $big $U_MS - $U_BCPU $U_GCPU $U_FCPU - - $U_GHWM $U_BHWM - $U_SENT $U_RESENT disk" >>"$T/rows"
    fleet_down disk
fi

# --- tables -------------------------------------------------------------------------------
# Raw rows for run.sh's summary: n kib ours_ms floor_ms cpu_ticks(broker gateway fleet)
# floor_broker_cpu_ms floor_tool_cpu_ms gw_hwm broker_hwm floor_broker_hwm sent resent where
[ -n "${FLEET_ROWS:-}" ] && cp "$T/rows" "$FLEET_ROWS"
echo "| devices | package | our time | floor | ratio | CPU s: broker / gateway / devices | floor CPU s: broker / subscribers | broker CPU: ours / floor's | peak RSS: gateway / broker (floor's broker) | fragments resent |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
while read -r n k ms fms bc gc fc fbc fcpu ghwm bhwm fbhwm sent resent where; do
    if [ "$where" = disk ]; then
        label="$(kib_label "$k"), state on disk"
        floor="(as above)"
        ratio=$(awk -v a="$ms" -v b="$(awk -v n="$n" -v k="$k" '$1 == n && $2 == k && $15 == "tmpfs" { print $4 }' "$T/rows")" \
            'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }')
        fcpus="-"
        bratio="-"
        fb="-"
    else
        label=$(kib_label "$k")
        floor=$(ms_s "$fms")
        ratio=$(awk -v a="$ms" -v b="$fms" 'BEGIN { printf "%.1f", a / b }')
        fcpus="$(awk -v m="$fbc" 'BEGIN { printf "%.1f", m / 1000 }') / $(awk -v m="$fcpu" 'BEGIN { printf "%.1f", m / 1000 }')"
        bratio=$(awk -v t="$bc" -v hz="$CLK_TCK" -v f="$fbc" \
            'BEGIN { if (f > 0) printf "%.2f", t * 1000 / hz / f; else print "-" }')
        fb=$(mib "$fbhwm")
    fi
    resent_pct=$(awk -v s="$sent" -v r="$resent" 'BEGIN { if (s > 0) printf "%.0f%%", 100 * r / s; else print "-" }')
    echo "| $n | $label | $(ms_s "$ms") | $floor | **$ratio** | $(ticks_s "$bc") / $(ticks_s "$gc") / $(ticks_s "$fc") | $fcpus | $bratio | $(mib "$ghwm") / $(mib "$bhwm") ($fb) | $resent / $sent ($resent_pct) |"
done <"$T/rows"
echo
echo "At one device the ratio compares the fixed cost of one update (the stage latencies below:"
echo "fetch and verification, the offer and its signature check, the image digest, install, the"
echo "restart and its reconnection, the statuses) with a single publish; the large rows are the"
echo "ones that measure the transfer."
echo
echo "Connection time (separate from the update times above): from the start of the process"
echo "to all N connected over mutual TLS, one connection every 2 ms (the fleet's default"
echo "\`fleet_stagger_ms\`; the floor tool staggers the same way). The fleet looks every 100 ms."
echo
echo "| devices | fleet: all connected | floor: all subscribers connected |"
echo "| --- | --- | --- |"
while read -r n cf cfl; do
    echo "| $n | $(ms_s "$cf") | $(ms_s "$cfl") |"
done <"$T/conn"
if [ "$PROFILE" = 1 ]; then
    echo
    echo "Where the CPU goes in the $max devices x $(kib_label "$big") update (run once more under"
    echo "\`perf record -F 200 --call-graph dwarf\`, not timed). Each sample is put into the first"
    echo "category that matches a frame of its call stack (tests/bench/profile.awk); shares are"
    echo "of all samples of the three programs. That run used $(ticks_s "$P_B") / $(ticks_s "$P_G") /"
    echo "$(ticks_s "$P_F") CPU seconds (broker / gateway / devices)."
    echo
    echo "| what | broker | gateway | devices | all |"
    echo "| --- | --- | --- | --- | --- |"
    awk -F'\t' '$1 == "TOTAL" { tb = $2; tg = $3; td = $4; next }
        { row[NR] = $0 }
        END {
            all = tb + tg + td
            for (i in row) {
                split(row[i], f, "\t")
                printf "%s\t%.1f%%\t%.1f%%\t%.1f%%\t%.1f%%\n", f[1], 100 * f[2] / all,
                    100 * f[3] / all, 100 * f[4] / all, 100 * (f[2] + f[3] + f[4]) / all
            }
            printf "all\t%.1f%%\t%.1f%%\t%.1f%%\t100%%\n", 100 * tb / all, 100 * tg / all, 100 * td / all
        }' "$T/profile.tsv" | sort -t$'\t' -k5 -nr | awk -F'\t' '
        $1 == "all" { last = $0; next } { printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }
        END { split(last, f, "\t"); printf "| **all** | %s | %s | %s | %s |\n", f[2], f[3], f[4], f[5] }'
    echo
    # Where the remaining time is, from these samples (see BENCHMARKS.md).
    awk -F'\t' '$1 == "TOTAL" { all = $2 + $3 + $4; next }
        $1 ~ /^(TLS record|socket|MQTT)/ { net += $2 + $3 }
        $1 ~ /^connecting/ { dconn = $4; bconn = $2 }
        $1 ~ /^(files|SHA-256)/ { dwork += $4 }
        { if ($1 != "TOTAL") dev += $4 }
        END {
            printf "Of these samples: the devices (one process, so one core) %.0f%%; their connecting\n", 100 * dev / all
            printf "(the restarts'"'"' reconnections) %.0f%%, and the broker'"'"'s side of those handshakes %.0f%%;\n", 100 * dconn / all, 100 * bconn / all
            printf "the devices'"'"' files and digests %.0f%%; TLS records, sockets and MQTT of broker and\n", 100 * dwork / all
            printf "gateway together %.0f%%.\n", 100 * net / all
        }' "$T/profile.tsv"
fi
