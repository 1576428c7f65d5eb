#!/bin/sh
# run.sh: the fuzzing run behind `make fuzz`.
#
#   sh tests/fuzz/run.sh [SECONDS [TARGET...]]     (default: 60, every target)
#
# Builds each libFuzzer target tests/fuzz/<target>.c with clang
# (-fsanitize=fuzzer,address,undefined, UB fatal) against the project sources
# it needs, compiled with clang into build/fuzz/obj/, as build/fuzz/<target>.
# Then runs each for SECONDS on a fresh copy of tests/fuzz/corpus/<target>/ in
# build/fuzz/corpus-<target>/ (the repo's corpus is never written), with its
# log in build/fuzz/<target>.log, and prints per target the executions, the
# final `cov:` figure and any crash file. A crash, leak, timeout or
# out-of-memory file is copied to tests/fuzz/crashes/<target>/, where
# test_fuzz_replay replays it from then on; the exit status is then 1.
#
# Env: FUZZ_CC (default clang), FUZZ_KEEP_CORPUS=1 to keep build/fuzz/corpus-*
# from the last run (it grows) instead of starting from the seeds.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
SECS=${1:-60}
[ $# -gt 0 ] && shift
TARGETS=${*:-fuzz_proto fuzz_pkg fuzz_conf}
CC=${FUZZ_CC:-clang}
B=build/fuzz
CFLAGS="-std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
        -Wmissing-prototypes -D_GNU_SOURCE -I. -g -O1 -fno-omit-frame-pointer
        -fno-sanitize-recover=all"
SAN=address,undefined
LIBS="-ljansson -lcrypto"

case $SECS in '' | *[!0-9]*) echo "run.sh: SECONDS must be a number" >&2; exit 2 ;; esac
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: $CC not found (apt-get install clang)" >&2
    exit 2
fi

# sources TARGET: the project sources TARGET links with.
sources() {
    case $1 in
    fuzz_conf) echo common/conf.c ;;
    *) echo proto/*.c ;;
    esac
}

# max_len TARGET: the longest input libFuzzer makes (the seeds go up to 17000).
max_len() {
    case $1 in
    fuzz_conf) echo 8192 ;;
    *) echo 20000 ;;
    esac
}

# build TARGET: build/fuzz/TARGET; project objects get coverage but no main.
build() {
    objs=
    for src in $(sources "$1"); do
        obj=$B/obj/${src%.c}.o
        mkdir -p "$(dirname "$obj")"
        if [ ! -f "$obj" ] || [ -n "$(find "$src" proto/*.h common/*.h -newer "$obj")" ]; then
            # shellcheck disable=SC2086
            $CC $CFLAGS -fsanitize=fuzzer-no-link,$SAN -c -o "$obj" "$src" || return 1
        fi
        objs="$objs $obj"
    done
    # shellcheck disable=SC2086
    $CC $CFLAGS -fsanitize=fuzzer,$SAN -o "$B/$1" "tests/fuzz/$1.c" $objs $LIBS
}

mkdir -p "$B"
for t in $TARGETS; do
    if [ ! -f "tests/fuzz/$t.c" ]; then
        echo "fuzz: no tests/fuzz/$t.c" >&2
        exit 2
    fi
    echo "  CLANG   $B/$t"
    build "$t" || { echo "fuzz: building $t failed" >&2; exit 2; }
done

status=0
summary=
for t in $TARGETS; do
    corpus=$B/corpus-$t
    art=$B/artifacts-$t
    log=$B/$t.log
    [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ] || rm -rf "$corpus"
    rm -rf "$art"
    mkdir -p "$corpus" "$art"
    cp tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    echo "  FUZZ    $t for ${SECS}s (log $log)"
    rc=0
    "$B/$t" -max_total_time="$SECS" -max_len="$(max_len "$t")" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$art/" "$corpus" >"$log" 2>&1 || rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    found=
    for f in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-*; do
        [ -f "$f" ] || continue
        mkdir -p "tests/fuzz/crashes/$t"
        cp "$f" "tests/fuzz/crashes/$t/"
        found="$found tests/fuzz/crashes/$t/${f##*/}"
    done
    line="$t: executions ${execs:-?}, cov ${cov:-?}"
    if [ -n "$found" ]; then
        line="$line, CRASH:$found"
        status=1
        grep -a -m 3 -E '^(SUMMARY|==[0-9]+==ERROR)' "$log" | sed 's/^/    /'
    elif [ "$rc" != 0 ]; then
        line="$line, FAILED (exit $rc, no crash file; see $log)"
        status=1
        tail -n 20 "$log" | sed 's/^/    /'
    else
        line="$line, no crash"
    fi
    summary="$summary$line
"
done
printf '%s' "$summary"
exit "$status"
