#!/bin/sh
# run.sh: the test runner behind `make test`.
#
#   sh tests/run.sh BUILD_DIR [unit|system]      (no second argument: unit, then system)
#
# unit:   every executable BUILD_DIR/tests/test_* with CMOCKA_MESSAGE_OUTPUT=TAP and
#         OTA_VECTORS=<repo>/tests/vectors; each "ok N" / "not ok N" line is one test.
# system: every tests/system/test_*.sh, run with bash, BUILD=<abs BUILD_DIR>,
#         OTA_ROOT=<repo root>, under a timeout (OTA_TEST_TIMEOUT, default 300 s; a line
#         "# ota-test-timeout: SECONDS" near a script's top raises its own, never lowers it);
#         each "ok - ..." / "not ok - ..." line is one test ("ok - ... # SKIP" is neither).
#         OTA_BROKER=rabbitmq: the scripts that honour it run against RabbitMQ, and those
#         marked "# ota-test-broker: rabbitmq" (skipped otherwise) run too.
# A program that exits non-zero (crash, sanitizer report, timeout) without a "not ok" line
# counts as one failure. The last line is "N passed, N failed"; exit 1 if anything failed
# or nothing ran. OTA_TEST_FILTER=REGEX runs only the binaries/scripts whose name matches.
# Written for bash; `sh` (dash) re-executes it with bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 BUILD_DIR [unit|system]" >&2
    exit 2
fi
MODE=${2:-all}
case $MODE in unit | system | all) ;; *) echo "run.sh: unknown mode '$MODE'" >&2; exit 2 ;; esac

# The build directory need not exist yet (system tests of the harness alone).
case $1 in /*) BUILD_ABS=$1 ;; *) BUILD_ABS=$PWD/$1 ;; esac
BUILD_ABS=${BUILD_ABS%/}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TIMEOUT=${OTA_TEST_TIMEOUT:-300}

PASSED=0
FAILED=0
INTERRUPTED=0
CHILD=
trap 'INTERRUPTED=1' INT TERM
OUT=$(mktemp /tmp/ota-run.XXXXXX)
PIDFILE=$(mktemp /tmp/ota-run-pids.XXXXXX)
trap 'rm -f "$OUT" "$PIDFILE"' EXIT

# count FILE PATTERN: number of lines of FILE matching the extended regex PATTERN.
count() {
    local n
    n=$(grep -a -c -E "$2" "$1" 2>/dev/null) || true
    echo "${n:-0}"
}

# reap_leftovers: kill what a SIGKILLed test script left behind, remove its temp dir.
reap_leftovers() {
    local kind val
    while read -r kind val; do
        case $kind in
        P)
            # Spawned processes lead their own session (setsid): only kill such a leader,
            # not an unrelated process that reused the pid.
            if [ "$(ps -o sid= -p "$val" 2>/dev/null | tr -d ' ')" = "$val" ]; then
                kill -KILL -- "-$val" 2>/dev/null || true
            fi ;;
        T)
            case $val in /tmp/ota-test.*) [ "${KEEP:-0}" = 1 ] || rm -rf "$val" ;; esac ;;
        esac
    done <"$PIDFILE"
    : >"$PIDFILE"
}

run_unit() {
    local bins=() b name rc ok nok
    for b in "$BUILD_ABS"/tests/test_*; do
        [ -f "$b" ] && [ -x "$b" ] || continue
        [[ ${b##*/} =~ ${OTA_TEST_FILTER:-.} ]] && bins+=("$b")
    done
    if [ ${#bins[@]} -eq 0 ]; then
        echo "# unit: no test binaries in $BUILD_ABS/tests"
        return
    fi
    for b in "${bins[@]}"; do
        [ "$INTERRUPTED" = 0 ] || return
        name=${b##*/}
        rc=0
        # The outer redirection catches the shell's own "Segmentation fault" notice.
        { CMOCKA_MESSAGE_OUTPUT=TAP OTA_VECTORS="$ROOT/tests/vectors" \
            timeout -k 10 "$TIMEOUT" "$b" >"$OUT" 2>&1 </dev/null; } 2>>"$OUT" || rc=$?
        ok=$(count "$OUT" '^ok [0-9]+')
        nok=$(count "$OUT" '^not ok [0-9]+')
        if [ "$rc" != 0 ] && [ "$nok" = 0 ]; then
            nok=1
            case $rc in
            124 | 137) echo "not ok - $name: timed out after ${TIMEOUT}s" >>"$OUT" ;;
            *) echo "not ok - $name: exit status $rc without a failing test" >>"$OUT" ;;
            esac
        fi
        PASSED=$((PASSED + ok))
        FAILED=$((FAILED + nok))
        echo "unit $name: $ok passed, $nok failed"
        if [ "$nok" != 0 ]; then
            sed 's/^/    /' "$OUT" | tail -n 200
        fi
    done
}

run_system() {
    local scripts=() s name rc ok nok skipped limit t
    for s in tests/system/test_*.sh; do
        [ -f "$s" ] || continue
        [[ ${s##*/} =~ ${OTA_TEST_FILTER:-.} ]] || continue
        # "# ota-test-broker: rabbitmq" near the top: only with OTA_BROKER=rabbitmq (make
        # test-rabbitmq), whose other scripts run against RabbitMQ instead of Mosquitto.
        if [ "${OTA_BROKER:-mosquitto}" != rabbitmq ] &&
            head -n 5 "$s" | grep -q '^# ota-test-broker: rabbitmq$'; then
            continue
        fi
        scripts+=("$s")
    done
    if [ ${#scripts[@]} -eq 0 ]; then
        echo "# system: no scripts tests/system/test_*.sh"
        return
    fi
    for s in "${scripts[@]}"; do
        [ "$INTERRUPTED" = 0 ] || return
        name=${s##*/}
        echo "system $name"
        rc=0
        # The script runs in the background with its output in a file, shown live by
        # tail: result lines and the lib's '#' diagnostics as they come, the rest (programs'
        # stray output) only on failure. A pipe would hang on orphans holding it open.
        # timeout signals the script's whole process group; spawned programs have their
        # own sessions and are stopped by the lib (or by reap_leftovers).
        : >"$OUT"
        limit=$TIMEOUT
        t=$(sed -n '1,30s/^# ota-test-timeout: *\([0-9][0-9]*\) *$/\1/p' "$s" | head -n 1)
        [ -n "$t" ] && [ "$t" -gt "$limit" ] && limit=$t
        BUILD="$BUILD_ABS" OTA_ROOT="$ROOT" OTA_PIDFILE="$PIDFILE" \
            timeout -k 10 "$limit" bash "$s" </dev/null >"$OUT" 2>&1 &
        CHILD=$!
        tail -s 0.2 -n +1 -f --pid="$CHILD" "$OUT" 2>/dev/null |
            grep -a --line-buffered -E '^(ok|not ok|#|Bail out)' | sed -u 's/^/    /' &
        SHOW=$!
        while :; do
            rc=0
            wait "$CHILD" 2>/dev/null || rc=$?
            # wait returns early when a signal (Ctrl-C) arrives: pass it on as TERM.
            if kill -0 "$CHILD" 2>/dev/null; then
                kill -TERM "$CHILD" 2>/dev/null || true
                continue
            fi
            break
        done
        wait "$SHOW" 2>/dev/null || true
        CHILD=
        reap_leftovers
        ok=$(count "$OUT" '^ok( |$)')
        skipped=$(count "$OUT" '^ok .*# SKIP')
        ok=$((ok - skipped))
        nok=$(count "$OUT" '^not ok( |$)')
        if [ "$rc" != 0 ] && [ "$nok" = 0 ]; then
            nok=1
            case $rc in
            124 | 137) echo "    not ok - $name: timed out after ${limit}s" ;;
            *) echo "    not ok - $name: exit status $rc without a 'not ok' line" ;;
            esac
        fi
        if [ "$nok" != 0 ]; then
            echo "    # --- other output of $name (last 40 lines) ---"
            grep -a -v -E '^(ok|not ok|#)' "$OUT" | tail -n 40 | sed 's/^/    #   /'
        fi
        PASSED=$((PASSED + ok))
        FAILED=$((FAILED + nok))
    done
}

case $MODE in
unit) run_unit ;;
system) run_system ;;
all) run_unit; run_system ;;
esac

if [ "$INTERRUPTED" = 1 ]; then
    echo "# interrupted"
    FAILED=$((FAILED + 1))
fi
if [ $((PASSED + FAILED)) = 0 ]; then
    echo "# no tests ran"
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
