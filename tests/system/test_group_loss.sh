#!/usr/bin/env bash
# One lossy device does not slow its group (issue 14; proto/PROTOCOL.md section 9, Groups):
#   1. Four healthy devices take a release as one group: the reference time.
#   2. The same four take the next release, one of them dropping 4% of its fragments (a
#      test-only fault option, fixed seed). It holds the group back a little at each of its
#      holes; when that adds up to 3 s it leaves the group and goes on on its own topic.
#      The three healthy ones finish about as fast as in 1 (side by side, same test, same
#      load: at most 1.5 x the reference plus the 3 s the spec lets a member hold).
#   3. All four commit the exact payload; what went again is counted as resent.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002 dev-003 dev-004)
healthy=(dev-001 dev-002 dev-003)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
# Every device behind a link of 40 ms RTT (one emulator, a link per connection): a hole
# then holds the group back for a round trip, as on a real network.
LE_PORT=$(free_port)
spawn linkemu "$BUILD/tools/linkemu" --listen "127.0.0.1:$LE_PORT" \
    --connect "127.0.0.1:$BROKER_PORT" --rate-kbit 200000 --rtt-ms 40
check "the link emulator listens" wait_until 10 "grep -q 'info listening' '$T/linkemu.log'"
for d in "${ids[@]}"; do device_start "$d" 1.0.0 --broker-port "$LE_PORT"; done
check "four devices report idle 1.0.0" wait_until 15 "all_devices idle 1.0.0 ${ids[*]}"

# The gateway log's time (HH:MM:SS.mmm) of a line, in ms.
log_ms() {
    awk '{ split($1, t, ":"); printf "%d\n", ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000 }'
}
# release_of VERSION: the release id the gateway offered for it.
release_of() {
    sed -n "s/.* release=\([0-9a-f]*\) version=$1 offered.*/\1/p" "$T/gateway.log" | head -1
}
# healthy_ms RELEASE: from the group's start to the last healthy device's last ack.
healthy_ms() {
    local rel=$1 start end d t
    start=$(grep "release=$rel group of .* devices: sending" "$T/gateway.log" | head -1 | log_ms)
    end=0
    for d in "${healthy[@]}"; do
        t=$(grep "device=$d release=$rel all .* fragments acknowledged" "$T/gateway.log" |
            head -1 | log_ms)
        [ -n "$t" ] && [ "$t" -gt "$end" ] && end=$t
    done
    echo $((end - start))
}

# 4 MiB in 1 KiB fragments, window 64: a few seconds; 4% of 4096 fragments are some 160
# holes, each of which holds the group back about a round trip.
SIZE=4194304
EXTRA=',"fragment_size":1024,"window":64'

# --- 1. Four healthy devices.
make_payload "$T/fw1.bin" $SIZE
pack sensor 1.1.0 "$T/fw1.bin" "$T/sensor-1.1.0.ota"
announce sensor "file://$T/sensor-1.1.0.ota" "$EXTRA"
check "a group of four starts sending 1.1.0" \
    wait_until 30 "grep -q 'group of 4 devices: sending' '$T/gateway.log'"
check "the four commit 1.1.0" wait_until 120 "all_devices committed 1.1.0 ${ids[*]}"
rel1=$(release_of 1.1.0)
t1=$(healthy_ms "$rel1")
check "nobody left the group of 1.1.0" \
    test "$(grep -c "release=$rel1 left the group" "$T/gateway.log")" = 0

# --- 2. dev-004 comes back dropping 4% of its fragments.
stop dev-004 >/dev/null
device_start dev-004 1.1.0 --broker-port "$LE_PORT" --test-drop-percent 4 --test-seed 11
check "dev-004 is back" wait_until 15 "grep -q 'mqtt connected' '$T/dev-004.log'"
sleep 1
make_payload "$T/fw2.bin" $SIZE
printf 'v2' | dd of="$T/fw2.bin" conv=notrunc 2>/dev/null
pack sensor 1.2.0 "$T/fw2.bin" "$T/sensor-1.2.0.ota"
# "delta":false: 1.2.0 differs from 1.1.0 in two bytes, and a delta of a few hundred
# bytes would end before anyone could hold the group back: the same full image as 1.1.0.
announce sensor "file://$T/sensor-1.2.0.ota" "$EXTRA,\"delta\":false"
check "the healthy three commit 1.2.0" \
    wait_until 180 "all_devices committed 1.2.0 ${healthy[*]}"
check "the lossy dev-004 commits 1.2.0 too" \
    wait_until 180 "all_devices committed 1.2.0 dev-004"
rel2=$(release_of 1.2.0)
check "1.2.0 was sent to a group of four" \
    grep -q "release=$rel2 group of 4 devices: sending" "$T/gateway.log"
t2=$(healthy_ms "$rel2")
grep "release=$rel2 left the group" "$T/gateway.log" | sed 's/^/# /'
# The rule (PROTOCOL.md 9): a member leaves once it has held the group back 3 s in all.
# On a busy machine dev-004's repairs take that long and it leaves; on a quiet one they can
# come fast enough that it never does (its held_group_ms says how long it held it).
held4=$(sed -n "s/.*device=dev-004 release=$rel2 all .*held_group_ms=\([0-9]*\).*/\1/p" \
    "$T/gateway.log" | tail -n 1)
echo "# dev-004 held the group of 1.2.0 back ${held4:-?} ms in all"
check "dev-004 left the group of 1.2.0 after holding it back 3 s in all, or held it less (${held4:-?} ms)" \
    sh -c "grep -q 'device=dev-004 release=$rel2 left the group .*too slow for the group' \
        '$T/gateway.log' || [ '${held4:-99999}' -lt 3000 ]"
check "no healthy device left it" \
    test "$(grep "release=$rel2 left the group" "$T/gateway.log" | grep -vc dev-004)" = 0
echo "# healthy members: ${t1} ms for 1.1.0 (all healthy), ${t2} ms for 1.2.0 (dev-004 lossy)"
check "the healthy finish about as fast with a lossy member ($t2 <= 1.5 x $t1 + 3000 ms)" \
    test "$t2" -le $((t1 * 3 / 2 + 3000))

# --- 3. Exact payloads, and the resends counted as such.
for d in "${healthy[@]}"; do
    check "$d's payload is 1.2.0's" cmp -s "$T/fw2.bin" "$T/dev/$d/active/payload"
done
check "dev-004's payload is 1.2.0's" cmp -s "$T/fw2.bin" "$T/dev/dev-004/active/payload"
resent4=$(dev_field dev-004 frags_resent)
# 4% of 4096: some 160 fragments lost and sent again.
check "fragments sent again to dev-004 are counted as resent ($resent4)" test "$resent4" -ge 80
check "every program stops cleanly" stop_all_clean gateway "${ids[@]}" linkemu
finish
