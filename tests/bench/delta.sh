#!/usr/bin/env bash
# Deltas on real binaries (proto/PROTOCOL.md 6.4): what our delta costs against the full
# image, the zstd-compressed image, bsdiff and xdelta3 -9, on three pairs:
#   nearby:  this project's ota-device built at two nearby commits (DELTA_COMMITS, default
#            5e0cf65 -> d57c296: "--check's problem printer once"), stripped as firmware
#            ships, and the same with its debug info (-O2 -g, as `make` builds it);
#   opt:     ota-device of one commit built -O0 and -O2 (stripped): a large change;
#   rootfs:  a tar of a directory tree (the shared libraries ota-device links with, from
#            this machine, and libota.a) in which libota.a is swapped for its build at
#            the other commit.
# For each: bytes of full, zstd (the gateway's compressed image), ours (tests/tools/zdelta,
# the gateway's encoder: 256 KiB frames with the base as prefix, zstd level by size as
# proto_zenc_level), bsdiff, xdelta3 -9; the gateway's CPU to make
# ours (and bsdiff's, for scale); the device's CPU and peak anonymous memory to apply it
# (tests/tools/zdelta apply: the device's decoder, fed 4 KiB at a time, the base mapped).
# Then, with the real broker, gateway and ota-device (DELTA_SYS=1):
#   memory: a device on a 64 MiB image takes a delta to the next (1/8 of it new) and a
#     factory device takes the same image compressed; /proc/PID/status sampled every
#     100 ms during the update: peak RssAnon (the process's private memory) and RssFile
#     (file-backed: the base image mapped read-only, shared with the page cache);
#   links: the nearby-commit stripped ota-device as an update through linkemu on the
#     NB-IoT-like (20 kbit/s, 2 s RTT) and LTE-M-like (300 kbit/s, 200 ms) profiles of
#     tests/bench/links.sh: the base sent full (pack --no-compress), then the next build as
#     a delta: the device's own download time for each.
#   fleet (DELTA_FLEET=N, default 1000): N simulated devices take the nearby-commit pair
#     whole, then as a delta: update time, wire bytes, CPU of gateway, broker and devices.
#   usage: tests/bench/delta.sh [BUILD_DIR]
#   env: DELTA_COMMITS="A B" DELTA_SYS=0|1 (the real system: memory, links; default 1)
#        DELTA_MEM_MIB=64 DELTA_FLEET=N (the fleet part: N simulated devices, default 1000; 0: none)
BENCH_DELTA=1
. "$(dirname "$0")/env.sh"
read -r C1 C2 <<<"${DELTA_COMMITS:-5e0cf65 d57c296}"
bench_need_tool zdelta
for t in bsdiff xdelta3 zstd; do
    command -v "$t" >/dev/null || bench_die "$t is missing (sh deploy/deps.sh bench)"
done
ZD=$TOOLS/zdelta

# build COMMIT OPT DIR: ota-device and libota.a of COMMIT, built with OPT, into DIR.
build() {
    mkdir -p "$3/src"
    git -C "$OTA_ROOT" archive "$1" | tar -x -C "$3/src" || bench_die "git archive $1"
    nice make -C "$3/src" -j2 OPT="$2" build/ota-device >"$3/build.log" 2>&1 ||
        bench_die "building $1 with $2 failed (see $3/build.log)"
    cp "$3/src/build/ota-device" "$3/ota-device"
    cp "$3/src/build/libota.a" "$3/libota.a"
    strip -o "$3/ota-device.stripped" "$3/ota-device"
}
echo "delta: building ota-device at $C1 and $C2 (-O2 -g), and $C2 at -O0" >&2
build "$C1" "-O2 -g" "$T/c1"
build "$C2" "-O2 -g" "$T/c2"
build "$C2" "-O0" "$T/o0"

# The rootfs pair: the same tree, libota.a swapped.
mkdir -p "$T/tree"
for l in $(ldd "$T/c2/ota-device" | awk '/=>/ { print $3 }'); do cp -L "$l" "$T/tree/"; done
mktar() { # mktar LIBOTA OUT
    cp "$1" "$T/tree/libota.a"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$T/tree" -cf "$2" .
}
mktar "$T/c1/libota.a" "$T/rootfs1.tar"
mktar "$T/c2/libota.a" "$T/rootfs2.tar"

kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
x() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
cpu_of() { # cpu_of CMD...: user+sys ms of the command
    /usr/bin/time -f '%e %U %S' -o "$T/time" "$@" >/dev/null 2>&1
    awk '{ printf "%d", ($2 + $3) * 1000 }' "$T/time"
}

echo "| Pair | Full | zstd (ours, no base) | Ours (delta) | bsdiff | xdelta3 -9 | Ours / full | Ours / bsdiff | Gateway CPU: ours (bsdiff) | Device CPU | Device peak anon. memory (file-backed) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
: >"$T/rows"
pair() { # pair LABEL KEY BASE TARGET
    local label=$1 key=$2 a=$3 b=$4 full z ours bs xd mk gcpu bcpu ap dcpu anon file
    full=$(stat -c %s "$b")
    "$ZD" make - "$b" "$T/$key.zst" >"$T/$key.zline" || bench_die "$label: zstd failed"
    z=$(stat -c %s "$T/$key.zst")
    mk=$("$ZD" make "$a" "$b" "$T/$key.zd") || bench_die "$label: delta failed"
    ours=$(stat -c %s "$T/$key.zd")
    gcpu=$(sed 's/.*cpu_ms=//' <<<"$mk")
    bcpu=$(cpu_of bsdiff "$a" "$b" "$T/$key.bsdiff")
    bs=$(stat -c %s "$T/$key.bsdiff")
    xdelta3 -9 -f -e -s "$a" "$b" "$T/$key.xd3" || bench_die "$label: xdelta3 failed"
    xd=$(stat -c %s "$T/$key.xd3")
    ap=$("$ZD" apply "$a" "$T/$key.zd" "$full" "$T/$key.out") || bench_die "$label: apply failed"
    cmp -s "$T/$key.out" "$b" || bench_die "$label: the delta did not rebuild the image"
    dcpu=$(sed 's/.*cpu_ms=\([0-9]*\).*/\1/' <<<"$ap")
    anon=$(sed 's/.*rss_anon_peak_kib=\([0-9]*\).*/\1/' <<<"$ap")
    file=$(sed 's/.*rss_file_peak_kib=\([0-9]*\).*/\1/' <<<"$ap")
    echo "| $label | $(kib "$full") | $(kib "$z") | $(kib "$ours") | $(kib "$bs") | $(kib "$xd") | $(pct "$ours" "$full") | $(x "$ours" "$bs") | $gcpu ms ($bcpu ms) | $dcpu ms | $(mib "$anon") ($(mib "$file")) |"
    echo "$key $full $z $ours $bs $xd $anon" >>"$T/rows"
}
pair "ota-device, nearby commits, stripped" nearby "$T/c1/ota-device.stripped" "$T/c2/ota-device.stripped"
pair "ota-device, nearby commits, -O2 -g" nearby_g "$T/c1/ota-device" "$T/c2/ota-device"
pair "ota-device, -O0 -> -O2, stripped" opt "$T/o0/ota-device.stripped" "$T/c2/ota-device.stripped"
pair "tar of libraries, libota.a swapped" rootfs "$T/rootfs1.tar" "$T/rootfs2.tar"
cp "$T/rows" "${DELTA_ROWS:-/dev/null}" 2>/dev/null || true
echo
read -r _ full _ ours bs _ _ < <(grep '^nearby ' "$T/rows")
echo "Targets (nearby commits, stripped): our delta $(pct "$ours" "$full") of the full image (target <= 10%), $(x "$ours" "$bs") bsdiff's size (target <= 1.5x)."

SYS=${DELTA_SYS:-1}
FLEET=${DELTA_FLEET:-1000}
[ "$SYS" = 1 ] || [ "$FLEET" -gt 0 ] || exit 0

# --- the real system ------------------------------------------------------------------------
bench_need_tool linkemu
certs_make --devices 4 >/dev/null || bench_die "make-certs failed"
broker_start >/dev/null || bench_die "the broker did not start"
gateway_start --delta-wait-s 1800 >/dev/null || bench_die "the gateway did not start"
if [ "$SYS" = 1 ]; then
    MIB=${DELTA_MEM_MIB:-64}
    python3 "$OTA_ROOT/tests/bench/mkimg.py" "$T/m1.bin" "$MIB" base || bench_die "mkimg"
    python3 "$OTA_ROOT/tests/bench/mkimg.py" "$T/m2.bin" "$MIB" next "$T/m1.bin" 8 || bench_die "mkimg"
    dev_up() { # dev_up ID PORT PRODUCT
        spawn "$1" "$DEV" --id "$1" --product "$3" --version 1.0.0 --broker-host localhost \
            --broker-port "$2" --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/devices/$1.crt" \
            --key-file "$CERTS/devices/$1.key" --publisher-key "$CERTS/publisher.pub" \
            --state-dir "$T/dev/$1" --restart-command true
    }
    # sample PID OUT: peak RssAnon and RssFile (KiB) into OUT until the file STOP appears.
    sample() {
        local a f pa=0 pf=0
        while [ ! -e "$T/STOP" ]; do
            read -r a f < <(awk '/^RssAnon/ { a = $2 } /^RssFile/ { f = $2 } END { print a + 0, f + 0 }' \
                "/proc/$1/status" 2>/dev/null || echo "0 0")
            [ "$a" -gt "$pa" ] && pa=$a
            [ "$f" -gt "$pf" ] && pf=$f
            echo "$pa $pf" >"$2"
            sleep 0.1
        done
    }
    dev_up dev-001 "$BROKER_PORT" mem
    dev_up dev-002 "$BROKER_PORT" mem
    wait_until 20 'all_devices idle 1.0.0 dev-001 dev-002' || bench_die "devices not idle"
    pack mem 1.1.0 "$T/m1.bin" "$T/m1.ota" || bench_die "pack"
    announce mem "file://$T/m1.ota" ',"devices":["dev-001"]'
    wait_until 1200 'all_devices committed 1.1.0 dev-001' || bench_die "the $MIB MiB base was not committed"
    idle_anon=$(awk '/^RssAnon/ { print $2 }' "/proc/$(pid_of dev-002)/status")
    pack mem 1.2.0 "$T/m2.bin" "$T/m2.ota" || bench_die "pack"
    rm -f "$T/STOP"
    sample "$(pid_of dev-001)" "$T/mem1" &
    s1=$!
    sample "$(pid_of dev-002)" "$T/mem2" &
    s2=$!
    c1=$(cpu_ticks "$(pid_of dev-001)") c2=$(cpu_ticks "$(pid_of dev-002)")
    announce mem "file://$T/m2.ota" ',"devices":["dev-001","dev-002"]'
    wait_until 2400 'all_devices committed 1.2.0 dev-001 dev-002' || bench_die "1.2.0 was not committed"
    touch "$T/STOP"
    wait "$s1" "$s2"
    c1=$(($(cpu_ticks "$(pid_of dev-001)") - c1)) c2=$(($(cpu_ticks "$(pid_of dev-002)") - c2))
    cmp -s "$T/m2.bin" "$T/dev/dev-001/active/payload" || bench_die "dev-001: not the exact image"
    cmp -s "$T/m2.bin" "$T/dev/dev-002/active/payload" || bench_die "dev-002: not the exact image"
    json=$(gw_json)
    row_mem() { # row_mem ID SAMPLES TICKS
        local enc wire dl
        read -r enc wire dl <<<"$(jq -r --arg d "$1" '.devices[] | select(.device == $d) |
            "\(.encoding) \(.wire_bytes) \(.timings.download_ms)"' <<<"$json")"
        read -r a f <"$2"
        echo "| $MIB MiB image, $enc | $(kib "$wire") | $(ms_s "$dl") | $(ticks_s "$3") s | $(mib "$a") | $(mib "$f") |"
        echo "$1 $enc $a $f" >>"$T/memrows"
    }
    echo
    echo "Device memory during a $MIB MiB update (ota-device, release build; idle, a device's RssAnon is $(mib "$idle_anon")):"
    echo
    echo "| Update | Wire bytes | Download | Device CPU | Peak private memory (RssAnon) | Peak file-backed (RssFile: the base, mapped) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    row_mem dev-001 "$T/mem1" "$c1"
    row_mem dev-002 "$T/mem2" "$c2"
    stop dev-001 >/dev/null
    stop dev-002 >/dev/null

    # --- links ------------------------------------------------------------------------------------
    cp "$T/c1/ota-device.stripped" "$T/fw1.bin"
    cp "$T/c2/ota-device.stripped" "$T/fw2.bin"
    echo
    echo "Update time of the nearby-commit ota-device (stripped, $(kib "$(stat -c %s "$T/fw2.bin")")) through linkemu (the device's download time, offer accepted to last fragment; update: announcement to committed):"
    echo
    echo "| Link | Full: wire bytes | Full: download | Full: update | Delta: wire bytes | Delta: download | Delta: update | Delta faster by |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    n=2
    for prof in "nbiot 20 2000 NB-IoT-like" "ltem 300 200 LTE-M-like"; do
        read -r p rate rtt label <<<"$prof"
        n=$((n + 1))
        id=$(printf 'dev-%03d' "$n")
        LE_PORT=$(free_port)
        spawn "le-$p" "$TOOLS/linkemu" --listen "127.0.0.1:$LE_PORT" --connect "127.0.0.1:$BROKER_PORT" \
            --rtt-ms "$rtt" --rate-kbit "$rate"
        wait_until 10 "grep -q 'info listening' '$T/le-$p.log'" || bench_die "linkemu"
        dev_up "$id" "$LE_PORT" "fw$p"
        wait_until 120 "all_devices idle 1.0.0 $id" || bench_die "$id not idle through $label"
        "$GW" pack --key "$CERTS/publisher.key" --product "fw$p" --version 1.1.0 --payload "$T/fw1.bin" \
            --out "$T/fw1-$p.ota" --no-compress >/dev/null || bench_die "pack"
        pack "fw$p" 1.2.0 "$T/fw2.bin" "$T/fw2-$p.ota" || bench_die "pack"
        t0=$(now_ms)
        announce "fw$p" "file://$T/fw1-$p.ota"
        wait_until 900 "all_devices committed 1.1.0 $id" || bench_die "$label: full not committed"
        t1=$(now_ms)
        read -r e1 w1 d1 <<<"$(gw_json | jq -r --arg d "$id" '.devices[] | select(.device == $d) | "\(.encoding) \(.wire_bytes) \(.timings.download_ms)"')"
        # After a commit the device reconnects to renew its Last Will (PROTOCOL.md 3): on a
        # 2 s RTT link that is some 8 s of TCP, TLS and CONNECT. The delta is announced once
        # it is back, as the full image was announced to a connected device.
        wait_until 120 "[ \$(grep -c 'mqtt connected' '$T/$id.log') -ge 2 ]" || bench_die "$id did not reconnect"
        t1=$(now_ms)
        announce "fw$p" "file://$T/fw2-$p.ota"
        wait_until 900 "all_devices committed 1.2.0 $id" || bench_die "$label: delta not committed"
        t2=$(now_ms)
        read -r e2 w2 d2 <<<"$(gw_json | jq -r --arg d "$id" '.devices[] | select(.device == $d) | "\(.encoding) \(.wire_bytes) \(.timings.download_ms)"')"
        [ "$e1" = full ] && [ "$e2" = delta ] || bench_die "$label: encodings $e1 then $e2"
        cmp -s "$T/fw2.bin" "$T/dev/$id/active/payload" || bench_die "$label: not the exact image"
        echo "| $label | $(kib "$w1") | $(ms_s "$d1") | $(ms_s $((t1 - t0))) | $(kib "$w2") | $(ms_s "$d2") | $(ms_s $((t2 - t1))) | $(x "$d1" "$d2") (update $(x $((t1 - t0)) $((t2 - t1)))) |"
        echo "$p $d1 $d2 $((t1 - t0)) $((t2 - t1))" >>"$T/linkrows"
        stop "$id" >/dev/null
        stop "le-$p" >/dev/null
    done
    read -r _ _ anon _ < <(grep '^dev-001 ' "$T/memrows")
    read -r _ d1 d2 u1 u2 < <(grep '^nbiot ' "$T/linkrows")
    echo
    echo "Targets: NB-IoT-like download $(x "$d1" "$d2") shorter with the delta (update $(x "$u1" "$u2")) (target >= 5x); peak private memory applying a $MIB MiB delta $(mib "$anon") (target <= 8 MiB)."
fi

# --- a fleet ----------------------------------------------------------------------------------
# FLEET simulated devices (one ota-device --fleet process, state on tmpfs, as
# tests/bench/fleet.sh) take the nearby-commit ota-device (stripped) as the full image, then
# the same pair as a delta: after the base (0.2.0 = build 1), 0.3.0 = build 2 goes whole
# (pack --no-compress, "delta":false); 0.4.0 = build 1 again brings the fleet back to that
# image (a delta, not timed); 0.5.0 = build 2 then goes as the delta from it. Time: the
# announcement to the last device committed (its finished_ms in the ledger); CPU: utime +
# stime of gateway, broker and the fleet's process over that time; wire bytes: the ledger's
# per device (a group's publish counted once per member).
if [ "$FLEET" -gt 0 ]; then
    certs_make --devices "$FLEET" --prefix fl- >/dev/null || bench_die "make-certs failed"
    bench_tmpfs
    BROKER=$(pid_of broker)
    GWP=$(pid_of gateway)
    spawn fleet "$DEV" --fleet "$FLEET" --fleet-prefix fl- --fleet-cert-dir "$CERTS/devices" \
        --product fleet --version 0.1.0 --broker-host localhost --broker-port "$BROKER_PORT" \
        --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --state-dir "$SHM/fleet"
    wait_fleet $((60 + FLEET / 10)) idle 0.1.0 "$FLEET" ||
        bench_die "$FLEET devices not idle: $(states)"
    FLP=$(pid_of fleet)
    "$GW" pack --key "$CERTS/publisher.key" --product fleet --version 0.3.0 \
        --payload "$T/c2/ota-device.stripped" --out "$T/f3.ota" --no-compress >/dev/null ||
        bench_die "pack"
    pack fleet 0.2.0 "$T/c1/ota-device.stripped" "$T/f2.ota" || bench_die "pack"
    pack fleet 0.4.0 "$T/c1/ota-device.stripped" "$T/f4.ota" || bench_die "pack"
    pack fleet 0.5.0 "$T/c2/ota-device.stripped" "$T/f5.ota" || bench_die "pack"
    # fleet_update VERSION PKG EXTRA [ROW]: all FLEET committed; ROW: a line into fleetrows.
    fleet_update() {
        local v=$1 cb cg cf t0 json last
        cb=$(cpu_ticks "$BROKER") cg=$(cpu_ticks "$GWP") cf=$(cpu_ticks "$FLP")
        t0=$(now_ms)
        announce fleet "file://$2" "$3"
        wait_fleet $((120 + FLEET / 2)) committed "$v" "$FLEET" ||
            bench_die "$FLEET devices: not all committed $v: $(states)"
        cb=$(($(cpu_ticks "$BROKER") - cb)) cg=$(($(cpu_ticks "$GWP") - cg))
        cf=$(($(cpu_ticks "$FLP") - cf))
        [ -n "${4:-}" ] || return 0
        json=$(gw_json | jq -c --arg v "$v" '[.devices[] | select(.device | startswith("fl-"))]')
        last=$(jq '[.[].finished_ms] | max' <<<"$json")
        echo "$4 $(jq -r '[.[].encoding] | unique | join(",")' <<<"$json") \
$(jq '[.[].wire_bytes] | add' <<<"$json") $((last - t0)) $cg $cb $cf" >>"$T/fleetrows"
    }
    fleet_update 0.2.0 "$T/f2.ota" ''
    fleet_update 0.3.0 "$T/f3.ota" ',"delta":false' full
    fleet_update 0.4.0 "$T/f4.ota" ''
    fleet_update 0.5.0 "$T/f5.ota" '' delta
    for id in "$(ls "$SHM/fleet" | sort | head -n 1)" "$(ls "$SHM/fleet" | sort | tail -n 1)"; do
        cmp -s "$T/c2/ota-device.stripped" "$SHM/fleet/$id/active/payload" ||
            bench_die "$id: not the exact image"
    done
    read -r _ fe fw fms fg fb ff < <(grep '^full ' "$T/fleetrows")
    read -r _ de dw dms dg db df < <(grep '^delta ' "$T/fleetrows")
    [ "$fe" = full ] && [ "$de" = delta ] || bench_die "the fleet's updates went as $fe and $de"
    mk=$(sed -n 's/.*delta from 0\.4\.0 .*(\(made\|from the store\), \([0-9]*\) ms CPU).*/\2/p' \
        "$T/gateway.log" | tail -n 1)
    echo
    echo "$FLEET simulated devices (one ota-device --fleet process, state on tmpfs) take the nearby-commit ota-device (stripped, $(kib "$(stat -c %s "$T/c2/ota-device.stripped")")) whole, then the same pair as a delta (update time: announcement to the last device committed, the delta's making included: ${mk:-?} ms of CPU; CPU over that time):"
    echo
    echo "| $FLEET devices | Sent | Wire bytes, all devices (per device) | Update time | Gateway CPU | Broker CPU | Devices' CPU |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    echo "| Full image | $fe | $(kib "$fw") ($(kib $((fw / FLEET)))) | $(ms_s "$fms") | $(ticks_s "$fg") s | $(ticks_s "$fb") s | $(ticks_s "$ff") s |"
    echo "| Delta | $de | $(kib "$dw") ($(kib $((dw / FLEET)))) | $(ms_s "$dms") | $(ticks_s "$dg") s | $(ticks_s "$db") s | $(ticks_s "$df") s |"
    echo "| Delta / full | | $(pct "$dw" "$fw") | $(x "$dms" "$fms") | $(x "$dg" "$fg") | $(x "$db" "$fb") | $(x "$df" "$ff") |"
    stop fleet >/dev/null
fi
stop gateway >/dev/null
