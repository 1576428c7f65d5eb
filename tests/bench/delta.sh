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
# For each: bytes of full, zstd -19, ours (tests/tools/zdelta, the gateway's encoder:
# 1 MiB frames with the base as prefix), bsdiff, xdelta3 -9; the gateway's CPU to make
# ours (and bsdiff's, for scale); the device's CPU and peak anonymous memory to apply it
# (tests/tools/zdelta apply: the device's decoder, fed 4 KiB at a time, the base mapped).
# Then the link times (full vs delta, NB-IoT-like and LTE-M-like through linkemu, the
# real gateway and device) when DELTA_LINKS=1 (make bench: yes).
#   usage: tests/bench/delta.sh [BUILD_DIR]
#   env: DELTA_COMMITS="A B" DELTA_LINKS=0|1 DELTA_LINK_CAP_S=400
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

echo "| Pair | Full | zstd -19 | Ours (delta) | bsdiff | xdelta3 -9 | Ours / full | Ours / bsdiff | Gateway CPU: ours (bsdiff) | Device CPU | Device peak anon. memory (file-backed) |"
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
