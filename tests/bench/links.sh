#!/usr/bin/env bash
# Links that are slow and far away: a 64 KiB update through tests/tools/linkemu (one
# emulator per device, between the device and the broker; the gateway talks to the broker
# directly) on three link profiles, for each fragment size, windowed (the gateway's default
# window, 32) and stop-and-wait (window 1: one fragment per round trip).
#
# One broker and one gateway; the cells of one profile run side by side, each device with
# its own product, release and emulator (links are not shared), the profiles one after the
# other. Each cell is capped (LINK_CAP_S); a cell that is not done by then is reported as
# "> cap" with the time its rate so far extrapolates to (fragments acknowledged per second).
#
# Times come from the system's own records: the gateway's ledger (announcement -> device
# committed, and the device's reported download time). Wire bytes are linkemu's byte counts,
# both directions, from the moment the device is idle (after its connection setup: TCP, TLS,
# CONNECT, SUBSCRIBE, first status) to the end of that connection, divided by the payload
# bytes: devices restart with restart_command=true, and the reconnection that renews their
# Last Will after the commit (PROTOCOL.md 3) is not counted, as a real restart's is not.
#
# Prints a Markdown table; writes the data for the plot to LINK_DATA (default $T/links.dat)
# and, when LINK_PLOT is set, the PNG there (gnuplot).
#   usage: tests/bench/links.sh [BUILD_DIR]
#   env: LINK_PROFILES="nbiot ltem 4g" LINK_FRAGS="160 512 1024 4096 16384"
#        LINK_MODES="window stopwait" LINK_KIB=64 LINK_CAP_S="nbiot:240 ltem:150 4g:90"
#        LINK_PLOT=docs/links.png
. "$(dirname "$0")/env.sh"
PROFILES=${LINK_PROFILES:-nbiot ltem 4g}
FRAGS=${LINK_FRAGS:-160 512 1024 4096 16384}
MODES=${LINK_MODES:-window stopwait}
KIB=${LINK_KIB:-64}
CAPS=${LINK_CAP_S:-nbiot:240 ltem:150 4g:90}
PLOT=${LINK_PLOT:-}
DATA=${LINK_DATA:-$T/links.dat}
LINK_ROWS=${LINK_ROWS:-} # a copy of the raw rows, for run.sh's summary of the targets
PAYLOAD=$((KIB * 1024))
bench_need_tool linkemu
if [ -n "$PLOT" ] && ! command -v gnuplot >/dev/null; then
    bench_die "gnuplot is missing (sh deploy/deps.sh bench installs gnuplot-nox)"
fi

# profile NAME: sets P_LABEL P_RATE (kbit/s) P_RTT (ms) P_CAP (s).
profile() {
    case $1 in
    nbiot) P_LABEL="NB-IoT-like"; P_RATE=20; P_RTT=2000 ;;
    ltem) P_LABEL="LTE-M-like"; P_RATE=300; P_RTT=200 ;;
    4g) P_LABEL="4G-like"; P_RATE=10000; P_RTT=60 ;;
    *) bench_die "unknown link profile '$1' (nbiot, ltem, 4g)" ;;
    esac
    P_CAP=$(tr ' ' '\n' <<<"$CAPS" | sed -n "s/^$1://p")
    [ -n "$P_CAP" ] || P_CAP=120
}

ncells=0
for p in $PROFILES; do for f in $FRAGS; do for m in $MODES; do ncells=$((ncells + 1)); done; done; done
certs_make --devices "$ncells" >/dev/null || bench_die "make-certs failed"
broker_start >/dev/null || bench_die "the broker did not start"
gateway_start ${LINK_GW_FLAGS:-} >/dev/null || bench_die "the gateway did not start"
make_payload "$T/fw.bin" "$PAYLOAD"

# le_start NAME ARGS...: linkemu in front of the broker on a free port; sets LE_PORT.
le_start() {
    local name=$1 attempt
    shift
    for attempt in 1 2 3; do
        LE_PORT=$(free_port) || return 1
        spawn "$name" "$TOOLS/linkemu" --listen "127.0.0.1:$LE_PORT" \
            --connect "127.0.0.1:$BROKER_PORT" --verbose "$@"
        wait_until 10 "grep -q 'info listening' '$T/$name.log' || ! alive $name"
        alive "$name" && return 0
        stop "$name" || true
        mv -f "$T/$name.log" "$T/$name-failed-$attempt.log"
    done
    return 1
}

# wire_now NAME: up + down bytes of linkemu NAME's latest 5-second stats line.
wire_now() {
    grep -a ' info stats ' "$T/$1.log" | tail -n 1 |
        awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(up|down)_bytes=/) { split($i, a, "="); s += a[2] } }
             END { print s + 0 }'
}
# last_conn NAME: the id of the latest connection linkemu NAME accepted (0: none).
last_conn() { grep -a -o ' accept conn=[0-9]*' "$T/$1.log" | tail -n 1 | sed 's/.*=//;s/^$/0/'; }
# reconn_bytes NAME N: up + down bytes of linkemu NAME's connections after connection N
# (from their close lines; linkemu closes every connection when it stops).
reconn_bytes() {
    awk -v n="$2" '/ close conn=[0-9]+ / {
            id = 0; b = 0
            for (i = 1; i <= NF; i++) {
                split($i, a, "=")
                if (a[1] == "conn") id = a[2]
                if (a[1] == "up_bytes" || a[1] == "down_bytes") b += a[2]
            }
            if (id + 0 > n + 0) s += b
        } END { print s + 0 }' "$T/$1.log"
}
stats_lines() { awk '/ info stats / { n++ } END { print n + 0 }' "$T/$1.log" 2>/dev/null || echo 0; }

# json_num FILE KEY: a number from linkemu's --stats file.
json_num() { jq -r ".$2" "$1"; }

: >"$DATA"
: >"$T/rows"
i=0 # one device (and certificate) per cell, never reused
for p in $PROFILES; do
    profile "$p"
    cells=()
    for f in $FRAGS; do
        for m in $MODES; do
            i=$((i + 1))
            id=$(printf 'dev-%03d' "$i")
            prod="l-$p-$f-$m"
            le_start "le-$p-$i" --rtt-ms "$P_RTT" --rate-kbit "$P_RATE" \
                --stats "$T/le-$p-$i.json" || bench_die "linkemu did not start"
            rm -rf "$T/dev/$id"
            spawn "$p-$id" "$DEV" --id "$id" --product "$prod" --version 1.0.0 \
                --broker-host localhost --broker-port "$LE_PORT" --ca-file "$CERTS/ca.crt" \
                --cert-file "$CERTS/devices/$id.crt" --key-file "$CERTS/devices/$id.key" \
                --publisher-key "$CERTS/publisher.pub" --state-dir "$T/dev/$id" \
                --restart-command true
            pack "$prod" 1.1.0 "$T/fw.bin" "$T/$prod.ota" || bench_die "pack failed"
            cells+=("$i $id $prod $f $m")
        done
    done
    # Connection setup through the link (several round trips and two certificates at
    # P_RATE), then a baseline of the bytes it took.
    idle_ok() {
        local c
        for c in "${cells[@]}"; do
            # shellcheck disable=SC2086
            set -- $c
            [ "$(gw_json | jq -r --arg d "$2" '.devices[] | select(.device == $d) | .state')" = idle ] || return 1
        done
    }
    wait_until $((60 + 4 * P_RTT / 100)) idle_ok || bench_die "$P_LABEL: devices not idle: $(states)"
    declare -A BASE=() LINES=() T0=() CONN=()
    for c in "${cells[@]}"; do
        # shellcheck disable=SC2086
        set -- $c
        LINES[$1]=$(stats_lines "le-$p-$1")
    done
    # The next stats line (every 5 s) of each emulator comes after the idle moment.
    more_lines() {
        local c
        for c in "${cells[@]}"; do
            # shellcheck disable=SC2086
            set -- $c
            [ "$(stats_lines "le-$p-$1")" -gt "${LINES[$1]}" ] || return 1
        done
    }
    wait_until 8 more_lines || bench_die "$P_LABEL: linkemu printed no stats"
    for c in "${cells[@]}"; do
        # shellcheck disable=SC2086
        set -- $c
        BASE[$1]=$(wire_now "le-$p-$1")
        CONN[$1]=$(last_conn "le-$p-$1")
    done
    for c in "${cells[@]}"; do
        # shellcheck disable=SC2086
        set -- $c
        extra=""
        [ "$5" = stopwait ] && extra=',"window":1'
        T0[$1]=$(now_ms)
        announce "$3" "file://$T/$3.ota" ",\"fragment_size\":$4$extra" ||
            bench_die "mosquitto_pub of the announcement for $3 failed"
    done
    t_start=$(now_ms)
    all_done() {
        [ "$(gw_json | jq '[.devices[] | select(.version == "1.1.0" and .state == "committed" and (.device as $d | $ids | index($d)))] | length' \
            --argjson ids "$(printf '%s\n' "${cells[@]}" | awk '{ print $2 }' | jq -R . | jq -s .)")" = "${#cells[@]}" ]
    }
    wait_until "$P_CAP" all_done || true
    t_end=$(now_ms)
    json=$(gw_json)
    for c in "${cells[@]}"; do
        # shellcheck disable=SC2086
        set -- $c
        idx=$1 id=$2 prod=$3 f=$4 m=$5
        stop "le-$p-$idx" >/dev/null || true
        [ -s "$T/le-$p-$idx.json" ] || bench_die "linkemu wrote no --stats file for $prod"
        # The device's connection of the update only: a commit on a live connection renews
        # the Last Will by reconnecting (PROTOCOL.md 3), as a real restart reconnects, and
        # neither is counted (its bytes go to the row's last column).
        rc_bytes=$(reconn_bytes "le-$p-$idx" "${CONN[$idx]}")
        wire=$(($(json_num "$T/le-$p-$idx.json" up_bytes) + $(json_num "$T/le-$p-$idx.json" down_bytes) - BASE[$idx] - rc_bytes))
        read -r st acked nfr fin dl sent gx <<<"$(jq -r --arg d "$id" '.devices[] | select(.device == $d) |
            "\(.state) \(.acked) \(.fragments) \(.finished_ms) \(.timings.download_ms // -1) \(.frags_sent) \(if (.transferred_ms // 0) > 0 then .transferred_ms - .offered_ms else -1 end)"' <<<"$json")"
        [ -n "$st" ] || bench_die "$prod: $id is not in the ledger"
        ideal=$(awk -v b="$PAYLOAD" -v r="$P_RATE" -v rtt="$P_RTT" 'BEGIN { printf "%.0f", b * 8 / r + rtt }')
        # Row: profile fragment mode status update_ms transfer_ms wire ideal_ms sent fragments
        #      acked extrapolated_ms (-1: none) gateway_offer_to_all_acked_ms (-1: not yet)
        #      reconnection_bytes (not in wire)
        if [ "$st" = committed ]; then
            ms=$((fin - T0[$idx]))
            wr=$(awk -v w="$wire" -v b="$PAYLOAD" 'BEGIN { printf "%.3f", w / b }')
            echo "$p $f $m done $ms $dl $wr $ideal $sent $nfr $acked -1 $gx $rc_bytes" >>"$T/rows"
            echo "$p-$m $f $(awk -v m="$ms" 'BEGIN { print m / 1000 }') $wr" >>"$DATA"
        else
            el=$((t_end - T0[$idx]))
            [ "${acked:-0}" -gt 0 ] 2>/dev/null || acked=0
            est=-1
            wr=-
            if [ "$acked" -gt 0 ]; then
                est=$(awk -v e="$el" -v a="$acked" -v n="$nfr" 'BEGIN { printf "%.0f", e * n / a }')
                wr=$(awk -v w="$wire" -v a="$acked" -v f="$f" 'BEGIN { printf "%.2f", w / (a * f) }')
                echo "$p-$m $f $(awk -v m="$est" 'BEGIN { print m / 1000 }') $wr" >>"$DATA"
            fi
            echo "$p $f $m capped $el -1 $wr $ideal $sent $nfr $acked $est $gx $rc_bytes" >>"$T/rows"
        fi
        stop "$p-$id" >/dev/null || true
    done
    unset -f idle_ok more_lines all_done
done
stop gateway >/dev/null || true

# --- table --------------------------------------------------------------------------------
[ -n "$LINK_ROWS" ] && cp "$T/rows" "$LINK_ROWS"
fmt_s() { ms_s "$1"; }
# cells P F M: sets C_UPD C_XFER C_WIRE for one table cell group.
cells() {
    local row
    row=$(awk -v p="$1" -v f="$2" -v m="$3" '$1 == p && $2 == f && $3 == m' "$T/rows")
    C_UPD=- C_XFER=- C_WIRE=-
    [ -n "$row" ] || return 0
    # shellcheck disable=SC2086
    set -- $row
    if [ "$4" = done ]; then
        C_UPD="$(fmt_s "$5") ($(awk -v a="$5" -v b="$8" 'BEGIN { printf "%.2fx", a / b }'))"
        C_XFER=$(fmt_s "$6")
        C_WIRE="$(awk -v w="$7" 'BEGIN { printf "%.2f", w }') ($9 / ${10})"
    elif [ "${13}" -gt 0 ]; then
        # Every fragment acknowledged, but the commit not yet reported.
        C_UPD="> $(fmt_s "$5") cap (transferred; commit not reported yet)"
        C_XFER="$(fmt_s "${13}") (gateway: offer -> all acknowledged)"
        C_WIRE="~$7 so far ($9 / ${10})"
    elif [ "${12}" -gt 0 ]; then
        C_UPD="> $(fmt_s "$5") cap (~$(fmt_s "${12}"), $(awk -v a="${12}" -v b="$8" 'BEGIN { printf "%.1fx", a / b }'))"
        C_XFER="${11} of ${10} fragments"
        C_WIRE="~$7 so far ($9 / ${11})"
    else
        C_UPD="> $(fmt_s "$5") cap"
        C_XFER="nothing acknowledged"
    fi
}
echo "| link | fragment | windowed: update (x ideal) | transfer | wire bytes / payload byte (fragments sent / needed) | stop-and-wait: update (x ideal) | transfer | wire bytes / payload byte (sent / needed) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for p in $PROFILES; do
    profile "$p"
    for f in $FRAGS; do
        cells "$p" "$f" window
        w=("$C_UPD" "$C_XFER" "$C_WIRE")
        cells "$p" "$f" stopwait
        echo "| $P_LABEL ($P_RATE kbit/s, $P_RTT ms) | $f B | ${w[0]} | ${w[1]} | ${w[2]} | $C_UPD | $C_XFER | $C_WIRE |"
    done
done
echo
if [ -n "$PLOT" ]; then
    for p in $PROFILES; do
        for m in window stopwait; do
            awk -v s="$p-$m" '$1 == s { print $2, $3, $4 }' "$DATA" | sort -n >"$T/plot-$p-$m.dat"
        done
    done
    {
        echo "set terminal pngcairo size 1200,560 font 'sans,10'"
        echo "set output '$PLOT'"
        echo "set multiplot layout 1,2 title 'ota: ${KIB} KiB update through linkemu (make bench, $(date -u '+%Y-%m-%d'))'"
        echo "set logscale x 2; set xrange [128:20480]; set xtics (160, 512, 1024, 4096, 16384); set grid"
        echo "set xlabel 'fragment size (bytes)' offset 0,0.5; set key below maxrows 2; set bmargin 8"
        echo "set logscale y; set ylabel 'update time (s), announcement -> committed'"
        echo "set title 'update time (extrapolated where capped; dotted: payload/bandwidth + RTT)'"
        plots=()
        c=0
        for p in $PROFILES; do
            profile "$p"
            c=$((c + 1))
            plots+=("'$T/plot-$p-window.dat' using 1:2 with linespoints lw 2 lc $c pt 7 title '$P_LABEL windowed'")
            plots+=("'$T/plot-$p-stopwait.dat' using 1:2 with linespoints dt 2 lc $c pt 6 title '$P_LABEL stop-and-wait'")
            plots+=("$(awk -v b="$PAYLOAD" -v r="$P_RATE" -v rtt="$P_RTT" 'BEGIN { printf "%.3f", (b * 8 / r + rtt) / 1000 }') with lines dt 3 lc $c notitle")
        done
        (IFS=,; echo "plot ${plots[*]}")
        echo "unset logscale y; set ylabel 'wire bytes per payload byte'; set yrange [1:*]"
        echo "set title 'bytes on the wire (both directions) per payload byte'"
        plots=()
        c=0
        for p in $PROFILES; do
            profile "$p"
            c=$((c + 1))
            plots+=("'$T/plot-$p-window.dat' using 1:3 with linespoints lw 2 lc $c pt 7 title '$P_LABEL windowed'")
            plots+=("'$T/plot-$p-stopwait.dat' using 1:3 with linespoints dt 2 lc $c pt 6 title '$P_LABEL stop-and-wait'")
        done
        (IFS=,; echo "plot ${plots[*]}")
        echo "unset multiplot"
    } >"$T/plot.gp"
    gnuplot "$T/plot.gp" 2>"$T/gnuplot.log" || bench_die "gnuplot failed: $(cat "$T/gnuplot.log")"
    [ -s "$PLOT" ] || bench_die "gnuplot wrote no $PLOT"
fi
