#!/usr/bin/env bash
# make bench rewrites docs/BENCHMARKS.md; what was measured by hand sits in kept blocks
# (<!-- kept: NAME --> ... <!-- /kept: NAME -->) that tests/bench/run.sh copies back. Runs
# no benchmark: tests/bench/assemble_check.sh gives run.sh the document's own tables and
# diffs what it assembles with the document. Then what must fail does: a block whose
# `kept` call is gone is appended under its own heading and named, never dropped; a
# broken marker stops run.sh before it writes anything.
. "$OTA_ROOT/tests/system/lib.sh"

DOC=$OTA_ROOT/docs/BENCHMARKS.md
CHECK=$OTA_ROOT/tests/bench/assemble_check.sh

check "run.sh reassembles docs/BENCHMARKS.md from its tables and kept blocks, line for line" \
    bash "$CHECK"

# A copy of run.sh without the call that places the block "scale" (the copy sits in a tree
# of its own: run.sh finds the repository from its path; assembling reads nothing there).
mkdir -p "$T/tree/tests/bench"
grep -v '^ *kept scale$' "$OTA_ROOT/tests/bench/run.sh" >"$T/tree/tests/bench/run.sh"
if cmp -s "$OTA_ROOT/tests/bench/run.sh" "$T/tree/tests/bench/run.sh"; then
    not_ok "run.sh has a line 'kept scale' to take out"
fi
rc=0
KEEP_OUT=$T/orphan.md bash "$CHECK" "$DOC" "$T/tree/tests/bench/run.sh" >"$T/orphan.diff" 2>&1 || rc=$?
awk '/^<!-- kept: scale -->$/, /^<!-- \/kept: scale -->$/' "$DOC" >"$T/scale.block"
awk '/^## Other measurements kept from the previous document$/ { on = 1 } on' "$T/orphan.md" |
    awk '/^<!-- kept: scale -->$/, /^<!-- \/kept: scale -->$/' >"$T/scale.appended"
if [ "$rc" = 1 ] && [ -s "$T/scale.block" ] && cmp -s "$T/scale.block" "$T/scale.appended" &&
    grep -q 'kept block scale has no place in run.sh' "$T/orphan.md.err"; then
    ok "a kept block without its call is appended under its own heading and named on stderr"
else
    not_ok "a kept block without its call is appended under its own heading and named on stderr"
    sed 's/^/#   /' "$T/orphan.diff" | tail -n 20
fi

# A document without a block: nothing is printed in its place (the rest still matches).
awk '/^<!-- kept: rabbitmq -->$/ { skip = 1 } !skip; /^<!-- \/kept: rabbitmq -->$/ { skip = 0; getline }' \
    "$DOC" >"$T/norabbit.md"
if grep -q '^## The same update on RabbitMQ' "$T/norabbit.md"; then
    not_ok "the RabbitMQ block was taken out of the copy"
fi
check "a kept block absent from the document leaves nothing in its place" bash "$CHECK" "$T/norabbit.md"

# Broken markers: run.sh stops, names the block, and writes nothing.
broken() {
    local rc=0
    bash "$CHECK" "$T/broken.md" >"$T/broken.out" 2>&1 || rc=$?
    [ "$rc" = 1 ] && grep -q "$1" "$T/broken.out" && grep -q 'run.sh failed' "$T/broken.out"
}
grep -v '^<!-- /kept: scale -->$' "$DOC" >"$T/broken.md"
check "an unclosed kept block stops run.sh, named" broken 'kept block scale is not closed'
sed 's/^<!-- kept: rabbitmq -->$/<!-- kept: scale -->/; s/^<!-- \/kept: rabbitmq -->$/<!-- \/kept: scale -->/' \
    "$DOC" >"$T/broken.md"
check "two kept blocks of one name stop run.sh" broken 'two kept blocks are named scale'
sed 's/^<!-- kept: rabbitmq -->$/<!-- kept:rabbitmq -->/' "$DOC" >"$T/broken.md"
check "a malformed marker stops run.sh" broken 'malformed marker'

finish
