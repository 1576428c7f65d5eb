#!/usr/bin/env bash
# No circle between the modules of gateway/ and device-client/ (issue 14, point 5): every
# gateway/*.c includes the one gateway/gw.h, so the headers show no circle; the calls do.
# tests/tools/modgraph.py reads the built objects with nm (which object defines a symbol,
# which objects use it) and fails on a circle. First the checker itself, on two made-up
# modules that call each other (it must fail) and on the same without the call back (it
# must pass); then the real build.
. "$OTA_ROOT/tests/system/lib.sh"

MODGRAPH=$OTA_ROOT/tests/tools/modgraph.py

# fake DIR CALLBACK: objects DIR/obj/gateway/{low,high}.o, high calling low; with
# CALLBACK=1 low calls high back, and header DIR/gateway/low.h includes high.h, which
# includes low.h. device-client/ gets one module.
fake() {
    local d=$1/obj
    mkdir -p "$d/gateway" "$d/device-client" "$1/gateway"
    echo '#include "gateway/low.h"' >"$1/gateway/high.h"
    [ "$2" = 1 ] && echo '#include "gateway/high.h"' >"$1/gateway/low.h"
    printf 'int high_f(void);\nint low_f(void);\nint low_f(void) { return %s; }\n' \
        "$([ "$2" = 1 ] && echo 'high_f()' || echo 0)" >"$1/gateway/low.c"
    printf 'int low_f(void);\nint high_f(void);\nint high_f(void) { return low_f() + 1; }\n' \
        >"$1/gateway/high.c"
    mkdir -p "$1/device-client"
    printf 'int dev_f(void);\nint dev_f(void) { return 0; }\n' >"$1/device-client/dev.c"
    cc -c -o "$d/gateway/low.o" "$1/gateway/low.c" &&
        cc -c -o "$d/gateway/high.o" "$1/gateway/high.c" &&
        cc -c -o "$d/device-client/dev.o" "$1/device-client/dev.c" &&
        cp "$d/gateway/low.o" "$d/gateway/gone.o" # an object whose source is gone
}

rc=0
fake "$T/circle" 1 && python3 "$MODGRAPH" "$T/circle" --root "$T/circle" >"$T/circle.out" 2>&1 ||
    rc=$?
sed 's/^/#   /' "$T/circle.out"
if [ "$rc" = 1 ] && grep -q '^# gateway: circle of 2 modules: high low$' "$T/circle.out" &&
    grep -q 'low -> high: high_f' "$T/circle.out" &&
    grep -q '^# gateway: include circle: gateway/high.h gateway/low.h$' "$T/circle.out" &&
    grep -q 'gone.o left out (no gateway/gone.c)' "$T/circle.out"; then
    ok "modgraph fails on a circle of calls and of includes, and names them"
else
    not_ok "modgraph fails on a circle (exit status $rc)"
fi

rc=0
fake "$T/line" 0 && python3 "$MODGRAPH" "$T/line" --root "$T/line" >"$T/line.out" 2>&1 || rc=$?
if [ "$rc" = 0 ] && grep -q '^#   \[1\] high -> low$' "$T/line.out"; then
    ok "modgraph passes one direction of calls (high -> low)"
else
    sed 's/^/#   /' "$T/line.out"
    not_ok "modgraph passes one direction of calls (exit status $rc)"
fi

# The real build: its own "ok"/"not ok" lines (calls and includes, per directory).
rc=0
python3 "$MODGRAPH" "$BUILD" --tap >"$T/build.out" 2>&1 || rc=$?
cat "$T/build.out"
_LIB_CHECKS=$((_LIB_CHECKS + $(grep -c -E '^(not )?ok ' "$T/build.out")))
case $rc in
0) ;;
1) _LIB_FAILS=$((_LIB_FAILS + 1)) ;;
*) not_ok "modgraph on $BUILD: exit status $rc" ;;
esac

finish
