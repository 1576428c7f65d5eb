#!/usr/bin/env bash
# Does tests/bench/run.sh reproduce docs/BENCHMARKS.md? Takes each benchmark's table out of
# the document (what run.sh would have read from the benchmark), lets run.sh assemble the
# document from them and its kept blocks (ASSEMBLE_FROM), and diffs the result with the
# document, all but the header's lines of date, machine and versions. Runs nothing else.
#   usage: tests/bench/assemble_check.sh [DOC [RUN_SH]]   (exit 0: identical)
#   KEEP_OUT=FILE keeps the assembled document; its stderr goes to FILE.err.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DOC=${1:-$ROOT/docs/BENCHMARKS.md}
RUN=${2:-$ROOT/tests/bench/run.sh}
T=$(mktemp -d /tmp/ota-assemble.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
mkdir "$T/in"

# NAME, the heading of its section, and the first line after its table(s): the table is
# from the first "| " line after the heading to that line, without trailing blank lines.
while read -r name head end; do
    awk -v head="$head" -v end="$end" '
        !on && $0 ~ head { on = 1; next }
        on == 1 && /^\| / { on = 2 }
        on == 2 && $0 ~ end { exit }
        on == 2 { line[++n] = $0 }
        END { while (n > 0 && line[n] == "") n--; for (i = 1; i <= n; i++) print line[i] }
    ' "$DOC" >"$T/in/$name.md"
    [ -s "$T/in/$name.md" ] || { echo "assemble_check: no table for $name in $DOC" >&2; exit 1; }
    s=$(tr '\n' ' ' <"$DOC" | sed -n "s/.*tests\/bench\/$name\.sh\` (\([^)]*\) s)\..*/\1/p" | sed 's/.*[ ,]//')
    echo "${s:-?}" >"$T/in/$name.s"
done <<'EOF'
fleet ^##.Fleet.time.and.its.floor$ ^(#|<!--.kept)
conn_cost ^###.What.one.connection.costs.the.broker$ ^(#|<!--.kept)
stages ^##.Stage.latencies ^(#|<!--.kept)
links ^##.Links.that.are.slow ^!\[
delta ^##.Deltas$ ^(#|<!--.kept)
gateway_rss ^###.Gateway.memory.per.connected.device$ ^The.last.column.is.what
device_rss ^###.Device.client.memory ^(#|<!--.kept)
loop_stall ^##.Event.loop.during ^(#|<!--.kept)
encrypt ^##.Encrypted.releases ^(#|<!--.kept)
http ^##.The.HTTP.side ^(#|<!--.kept)
EOF
# The generated rows of the Targets table (its first table: the hand rows have their own).
awk '/^## Targets$/ { on = 1 } on && /^\| --- / { on = 2; next } on == 2 && !/^\| / { exit } on == 2' \
    "$DOC" >"$T/in/targets.md"

ASSEMBLE_FROM=$T/in ASSEMBLE_OUT=$T/out.md ASSEMBLE_DOC=$DOC bash "$RUN" "$T" full >/dev/null 2>"$T/err" ||
    { cat "$T/err" >&2; echo "assemble_check: run.sh failed" >&2; exit 1; }
grep -v '^bench: dropped' "$T/err" >&2
if [ -n "${KEEP_OUT:-}" ]; then cp "$T/out.md" "$KEEP_OUT" && cp "$T/err" "$KEEP_OUT.err"; fi
diff -u --label "$DOC" --label "assembled by run.sh" <(sed 3,5d "$DOC") <(sed 3,5d "$T/out.md")
