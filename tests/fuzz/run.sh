#!/bin/sh
# run.sh: the fuzzing runs behind `make fuzz` and `make fuzz-long`.
#
#   sh tests/fuzz/run.sh [SECONDS [TARGET...]]   each target for SECONDS (default 60)
#   sh tests/fuzz/run.sh long [TARGET...]        each target to FUZZ_LONG_RUNS executions
#   sh tests/fuzz/run.sh save [TARGET...]        merge the working corpus into the
#                                                committed one (see below), no fuzzing
#
# The targets are the files tests/fuzz/fuzz_*.c (default: all of them). A target
# names the project sources it links with on one comment line of its own,
# " * fuzz-sources: proto/*.c ...", and has its seed corpus in
# tests/fuzz/corpus/<target>/ and, optionally, a libFuzzer dictionary in
# tests/fuzz/<target>.dict. Adding a target is adding those files (and one line
# in tests/unit/test_fuzz_replay.c, which replays its corpus in `make test`).
#
# Each target is built with clang (-fsanitize=fuzzer,address,undefined, UB fatal)
# as build/fuzz/<target>, the project objects in build/fuzz/obj/. It then runs on
# its working corpus build/fuzz/corpus/<target>/, which is KEPT between runs (it
# accumulates; `make clean` or deleting it starts over), with the committed seeds
# tests/fuzz/corpus/<target>/ as a second, read-only corpus directory. At the end
# of each run the working corpus is minimised in place with -merge=1 (inputs that
# add no coverage are dropped). `save` merges it into the committed corpus: only
# inputs that add coverage to what is committed there are copied in (named by
# their SHA-1), so the committed corpus stays small and `make test` replays them.
#
# Per target the log is build/fuzz/<target>.log; the summary line gives the
# executions, libFuzzer's final cov (edges) and ft (features), the corpus size and
# the time. A crash, leak, timeout or out-of-memory file is copied to
# tests/fuzz/crashes/<target>/, where test_fuzz_replay replays it from then on; the
# exit status is then 1. `long` also writes the table build/fuzz/fuzz-long.md
# (for docs/SECURITY.md) and fails when a target stopped short of FUZZ_LONG_RUNS.
#
# Env: FUZZ_CC (default clang); FUZZ_JOBS targets run at once (default: the number of
# cores); FUZZ_WORKERS processes fuzz each target together on its corpus (default 1;
# `long` then counts the executions of all of them); FUZZ_ASAN_OPTIONS (default malloc_context_size=0:quarantine_size_mb=16); FUZZ_LONG_RUNS (default 10000000);
# FUZZ_LONG_MAX_SECONDS (default 1500: a target that is slower stops there, the
# table says so and the exit status is 1); FUZZ_FRESH=1 starts from the seeds only (the working corpus
# is emptied first); FUZZ_NO_DICT=1 runs without the dictionaries (to measure them).
# Written for bash (wait -n); `sh` (dash) re-executes it with bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
MODE=${1:-60}
[ $# -gt 0 ] && shift
TARGETS=${*:-$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c; done)}
CC=${FUZZ_CC:-clang}
B=build/fuzz
PKGS="libmosquitto libuv jansson libcurl openssl libzstd"
CFLAGS="-std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
        -Wmissing-prototypes -D_GNU_SOURCE -I. -g -O1 -fno-omit-frame-pointer
        -fno-sanitize-recover=all $(pkg-config --cflags $PKGS 2>/dev/null)"
SAN=address,undefined
LIBS="$(pkg-config --libs $PKGS 2>/dev/null) -llmdb -lm"
LONG_RUNS=${FUZZ_LONG_RUNS:-10000000}
LONG_MAX=${FUZZ_LONG_MAX_SECONDS:-1500}
JOBS=${FUZZ_JOBS:-$(nproc)}
# Allocation stacks off and a 16 MiB quarantine: a quarter more executions a second on
# the JSON targets (most of their time is ASan's malloc); a crash file still replays in
# `make test` with ASan's defaults and full reports.
FUZZ_ASAN=${FUZZ_ASAN_OPTIONS:-malloc_context_size=0:quarantine_size_mb=16}

case $MODE in
long | save) ;;
'' | *[!0-9]*)
    echo "run.sh: the first argument is SECONDS, 'long' or 'save'" >&2
    exit 2
    ;;
esac
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: $CC not found (sh deploy/deps.sh fuzz)" >&2
    exit 2
fi

# sources TARGET: the project sources TARGET links with (its fuzz-sources line).
sources() {
    sed -n 's/^ \* fuzz-sources: *//p' "tests/fuzz/$1.c" | head -n 1
}

# max_len TARGET: the longest input libFuzzer makes (the seeds go up to 17000).
max_len() {
    case $1 in
    fuzz_conf | fuzz_ledger | fuzz_state) echo 8192 ;;
    *) echo 20000 ;;
    esac
}

# build TARGET: build/fuzz/TARGET; project objects get coverage but no main.
build() {
    objs=
    srcs=$(sources "$1")
    if [ -z "$srcs" ]; then
        echo "fuzz: tests/fuzz/$1.c has no ' * fuzz-sources:' line" >&2
        return 1
    fi
    # shellcheck disable=SC2086
    for src in $srcs; do
        obj=$B/obj/${src%.c}.o
        mkdir -p "$(dirname "$obj")"
        if [ ! -f "$obj" ] || [ -n "$(find "$src" ./*/*.h -newer "$obj")" ]; then
            # shellcheck disable=SC2086
            $CC $CFLAGS -fsanitize=fuzzer-no-link,$SAN -c -o "$obj" "$src" || return 1
        fi
        objs="$objs $obj"
    done
    # shellcheck disable=SC2086
    $CC $CFLAGS -fsanitize=fuzzer,$SAN -o "$B/$1" "tests/fuzz/$1.c" $objs $LIBS
}

# minimise DIR_OUT DIR_IN...: -merge=1 of the inputs into DIR_OUT.
minimise() {
    t_=$1
    out_=$2
    shift 2
    "$B/$t_" -merge=1 -max_len="$(max_len "$t_")" -timeout=10 "$out_" "$@" \
        >>"$B/$t_.merge.log" 2>&1
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

if [ "$MODE" = save ]; then
    for t in $TARGETS; do
        seeds=tests/fuzz/corpus/$t
        before=$(find "$seeds" -type f | wc -l)
        : >"$B/$t.merge.log"
        minimise "$t" "$seeds" "$B/corpus/$t" || { echo "fuzz: merging $t failed (see $B/$t.merge.log)" >&2; exit 1; }
        echo "$t: committed corpus $before -> $(find "$seeds" -type f | wc -l) files, $(du -sk "$seeds" | cut -f1) KiB"
    done
    exit 0
fi

# run_one TARGET: fuzz it; writes $B/TARGET.line (its summary line), $B/TARGET.row
# (its table row) and $B/TARGET.rc (0 or 1).
run_one() {
    t=$1
    corpus=$B/corpus/$t
    art=$B/artifacts-$t
    log=$B/$t.log
    [ "${FUZZ_FRESH:-0}" = 1 ] && rm -rf "$corpus"
    rm -rf "$art"
    mkdir -p "$corpus" "$art"
    dict=
    [ -f "tests/fuzz/$t.dict" ] && [ "${FUZZ_NO_DICT:-0}" != 1 ] &&
        dict=-dict=tests/fuzz/$t.dict
    if [ "$MODE" = long ]; then
        limit="-runs=$LONG_RUNS -max_total_time=$LONG_MAX"
        what="to $LONG_RUNS executions"
    else
        limit="-max_total_time=$MODE"
        what="for ${MODE}s"
    fi
    echo "  FUZZ    $t $what (log $log)"
    rc=0
    t0=$(date +%s)
    # FUZZ_WORKERS processes on the one corpus (libFuzzer reloads what the others
    # add), each with its own seed and log, each to its share of the executions.
    workers=${FUZZ_WORKERS:-1}
    wlimit=$limit
    [ "$MODE" = long ] && wlimit="-runs=$(((LONG_RUNS + workers - 1) / workers)) -max_total_time=$LONG_MAX"
    pids=
    for w in $(seq 1 "$workers"); do
        wlog=$log
        [ "$workers" -gt 1 ] && wlog=$log.w$w
        # shellcheck disable=SC2086
        ASAN_OPTIONS=$FUZZ_ASAN "$B/$t" $wlimit $dict -max_len="$(max_len "$t")" -timeout=10 \
            -print_final_stats=1 -artifact_prefix="$art/" "$corpus" \
            "tests/fuzz/corpus/$t" >"$wlog" 2>&1 &
        pids="$pids $!"
    done
    for p in $pids; do wait "$p" || rc=$?; done
    if [ "$workers" -gt 1 ]; then
        cat "$log".w* >"$log"
        rm -f "$log".w*
    fi
    secs=$(($(date +%s) - t0))

    # Executions: the sum over the workers; cov and ft: the highest a worker reached.
    execs=$(awk '/^stat::number_of_executed_units/ { n += $NF } END { if (n) print n + 0 }' "$log")
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$log" | sort -n | tail -n 1)
    cov=$(grep -a -o 'cov: [0-9]*' "$log" | cut -d' ' -f2 | sort -n | tail -n 1)
    ft=$(grep -a -o 'ft: [0-9]*' "$log" | cut -d' ' -f2 | sort -n | tail -n 1)
    found=
    for f in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-*; do
        [ -f "$f" ] || continue
        mkdir -p "tests/fuzz/crashes/$t"
        cp "$f" "tests/fuzz/crashes/$t/"
        found="$found tests/fuzz/crashes/$t/${f##*/}"
    done
    # Minimise the working corpus in place: merge it into a fresh directory.
    : >"$B/$t.merge.log"
    rm -rf "$corpus.new"
    mkdir -p "$corpus.new"
    if minimise "$t" "$corpus.new" "$corpus"; then
        rm -rf "$corpus"
        mv "$corpus.new" "$corpus"
    else
        rm -rf "$corpus.new"
        echo "    (minimising $corpus failed; see $B/$t.merge.log)"
    fi
    nfiles=$(find "$corpus" -type f | wc -l)
    line="$t: executions ${execs:-?}, cov ${cov:-?}, ft ${ft:-?}, corpus $nfiles, ${secs}s"
    st=0
    if [ -n "$found" ]; then
        line="$line, CRASH:$found"
        st=1
        grep -a -m 3 -E '^(SUMMARY|==[0-9]+==ERROR)' "$log" | sed 's/^/    /'
    elif [ "$rc" != 0 ]; then
        line="$line, FAILED (exit $rc, no crash file; see $log)"
        st=1
        tail -n 20 "$log" | sed 's/^/    /'
    elif [ "$MODE" = long ] && [ "${execs:-0}" -lt "$LONG_RUNS" ]; then
        line="$line, SHORT of $LONG_RUNS executions (stopped after ${LONG_MAX}s)"
        st=1
    else
        line="$line, no crash"
    fi
    rate=$((${execs:-0} / (secs > 0 ? secs : 1)))
    echo "$line" >"$B/$t.line"
    echo "| $t | ${execs:-?} | ${cov:-?} | ${ft:-?} | $nfiles | $secs | $rate |" >"$B/$t.row"
    echo "$st" >"$B/$t.rc"
    echo "  DONE    $line"
}

# FUZZ_JOBS targets at a time (default: one per core), each on one core.
running=0
for t in $TARGETS; do
    rm -f "$B/$t.line" "$B/$t.row" "$B/$t.rc"
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

status=0
summary=
table="| target | executions | cov | ft | corpus | time (s) | exec/s |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
"
for t in $TARGETS; do
    [ "$(cat "$B/$t.rc" 2>/dev/null)" = 0 ] || status=1
    summary="$summary$(cat "$B/$t.line" 2>/dev/null || echo "$t: did not run")
"
    table="$table$(cat "$B/$t.row" 2>/dev/null || echo "| $t | did not run | | | | | |")
"
done
printf '%s' "$summary"
if [ "$MODE" = long ]; then
    {
        echo "\`make fuzz-long\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo '+'), $(nproc) cores, $CC $($CC -dumpversion 2>/dev/null):"
        echo
        printf '%s' "$table"
        echo
        if [ "$status" = 0 ]; then
            echo "Every target reached $LONG_RUNS executions with no crash."
        else
            echo "NOT every target passed:"
            printf '%s' "$summary" | sed 's/^/    /'
        fi
    } >"$B/fuzz-long.md"
    echo "table: $B/fuzz-long.md"
fi
exit "$status"
