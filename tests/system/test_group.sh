#!/usr/bin/env bash
# Group sending (proto/PROTOCOL.md section 3): devices that accept a release together get
# each fragment from one publish on ota/grp/<release>/frag instead of one per device.
#   1. Five devices, one of them frozen (SIGSTOP) mid-transfer and one behind a slow link:
#      both leave the group ("too slow for the group") after holding it back for 3 s, the
#      other three finish at loopback speed, and all five commit the exact payload; the
#      group topic carries each fragment once.
#   2. group_fragments = false: every fragment goes to each device's own topic.
#   3. A device cannot publish on a group topic (the broker's ACL).
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001 dev-002 dev-003 dev-004 dev-005
broker_start || { not_ok "broker starts"; finish; }
# -F: topics only (the last -F wins), so that the logs hold no binary payloads.
mq_sub_bg grp observer1 'ota/grp/+/frag' 1000000 300 -F 'MSG %t' || not_ok "group topic counter subscribes"
mq_sub_bg uni observer2 'ota/dev/+/frag' 1000000 300 -F 'MSG %t' || not_ok "device topic counter subscribes"
check "gateway starts and connects" gateway_start
for d in dev-001 dev-002 dev-003 dev-004; do device_start "$d" 1.0.0; done
LE_PORT=$(free_port)
# 2 Mbit/s: 512 KiB take about 2 s down this link, against milliseconds on loopback.
spawn linkemu "$BUILD/tools/linkemu" --listen "127.0.0.1:$LE_PORT" \
    --connect "127.0.0.1:$BROKER_PORT" --rate-kbit 2000 --rtt-ms 20
check "the link emulator listens" wait_until 10 "grep -q 'info listening' '$T/linkemu.log'"
device_start dev-005 1.0.0 --broker-port "$LE_PORT"
all5="dev-001 dev-002 dev-003 dev-004 dev-005"
check "five devices report idle 1.0.0" wait_until 15 "all_devices idle 1.0.0 $all5"

# --- 1. 2 MiB in 4 KiB fragments: 512 payload + 16 table fragments.
make_payload "$T/fw.bin" 2097152
pack sensor 1.1.0 "$T/fw.bin" "$T/sensor-1.1.0.ota"
check "one mosquitto_pub of the release" announce sensor "file://$T/sensor-1.1.0.ota"
check "a group of five starts sending" \
    wait_until 20 "grep -q 'group of 5 devices: sending' '$T/gateway.log'"
check "dev-001 is receiving" wait_until 20 '[ "$(dev_field dev-001 acked)" -ge 40 ] 2>/dev/null'
kill -STOP "$(pid_of dev-001)"
check "the frozen dev-001 leaves the group" \
    wait_until 30 "grep -q 'device=dev-001 .*left the group.*too slow' '$T/gateway.log'"
check "the slow-linked dev-005 leaves the group" \
    wait_until 30 "grep -q 'device=dev-005 .*left the group.*too slow' '$T/gateway.log'"
check "the other three commit 1.1.0 while dev-001 is frozen" \
    wait_until 30 'all_devices committed 1.1.0 dev-002 dev-003 dev-004'
kill -CONT "$(pid_of dev-001)"
check "dev-001 and dev-005 finish on their own and commit 1.1.0" \
    wait_until 60 "all_devices committed 1.1.0 $all5"
for d in $all5; do
    check "$d's installed payload is identical" cmp -s "$T/fw.bin" "$T/dev/$d/active/payload"
done
ngrp=$(mq_count grp) nuni=$(mq_count uni)
echo "# group topic: $ngrp fragments for 528; device topics: $nuni (5 devices alone: 2640)"
check "the group topic carried each fragment at most once ($ngrp of 528)" \
    test "$ngrp" -le 528 -a "$ngrp" -ge 100
check "device topics carried less than the two leavers' share ($nuni < 2 x 528)" \
    test "$nuni" -lt 1056
grep 'left the group' "$T/gateway.log" | sed 's/^/# /'
stopped=$(grep -c 'left the group' "$T/gateway.log")
check "no other device left the group ($stopped lines)" test "$stopped" = 2

# --- 2. group_fragments = false: each device on its own topic.
stop gateway >/dev/null
cp "$T/gateway.log" "$T/gateway-1.log" # the restart starts a new log
check "gateway restarts with --group-fragments false" gateway_start --group-fragments false
ngrp0=$(mq_count grp) nuni0=$(mq_count uni)
make_payload "$T/fw2.bin" 65536
pack sensor 1.2.0 "$T/fw2.bin" "$T/sensor-1.2.0.ota"
# "delta":false: 1.2.0 is a prefix of 1.1.0 (the same seed), whose delta would be a few
# fragments; this counts the full image's 17 fragments per device.
announce sensor "file://$T/sensor-1.2.0.ota" ',"devices":["dev-002","dev-003","dev-004"],"delta":false'
check "three devices commit 1.2.0" wait_until 30 'all_devices committed 1.2.0 dev-002 dev-003 dev-004'
sleep 0.5
ngrp1=$(mq_count grp) nuni1=$(mq_count uni)
echo "# without groups: group topic +$((ngrp1 - ngrp0)), device topics +$((nuni1 - nuni0)) (3 x 17)"
check "nothing went to a group topic" test "$ngrp1" = "$ngrp0"
check "each device got every fragment on its own topic" test $((nuni1 - nuni0)) -ge 51

# --- 3. Only the gateway publishes group fragments.
rel=$(dev_field dev-002 release)
head -c 100 /dev/zero >"$T/junk"
mq_pubf_as dev-002 "ota/grp/$rel/frag" "$T/junk" -q 0
sleep 0.5
check "a device's publish on a group topic is not delivered" test "$(mq_count grp)" = "$ngrp1"
check "every device stops cleanly" stop_all_clean $all5
finish
