#!/usr/bin/env bash
# A network partition mid-transfer: dev-001 reaches the broker through the link emulator,
# which is frozen with SIGSTOP while fragments flow. Nothing is reset (no RST, no FIN):
# packets just stop, as when a cell drops out. The broker notices by keepalive (1.5 x
# keepalive_s) and publishes the device's Last Will; the device notices by keepalive too
# (no PINGRESP) and keeps trying to reconnect. When the link thaws, the device reconnects,
# the transfer resumes from what the device holds (not from 0) and completes with the
# exact payload. dev-002, on a direct connection, is not held up meanwhile.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

LE=$BUILD/tools/linkemu
KA=5 # keepalive_s of the devices (the least libmosquitto accepts)
NFRAGS=2048
certs_make dev-001 dev-002
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
LE_PORT=
for attempt in 1 2 3; do
    LE_PORT=$(free_port)
    spawn link "$LE" --listen "127.0.0.1:$LE_PORT" --connect "127.0.0.1:$BROKER_PORT" --rtt-ms 10
    wait_until 10 "grep -q 'info listening' '$T/link.log' || ! alive link"
    alive link && break
    stop link || true
    mv -f "$T/link.log" "$T/link-failed-$attempt.log"
done
check "the link emulator runs in front of the broker" alive link
device_start dev-001 1.0.0 --broker-port "$LE_PORT" --keepalive-s $KA --checkpoint-every 32
device_start dev-002 1.0.0 --keepalive-s $KA
check "devices online" wait_until 15 'all_devices idle 1.0.0 dev-001 dev-002'

make_payload "$T/fw.bin" $((NFRAGS * 1024))
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota" ',"fragment_size":1024,"window":4'
check "dev-001's transfer is under way through the link" \
    wait_until 30 '[ "$(dev_field dev-001 acked)" -gt 200 ] 2>/dev/null'

# --- the partition ----------------------------------------------------------------------------
kill -STOP "$(pid_of link)"
t_cut=$(now_ms)
acked_cut=$(dev_field dev-001 acked)
b_acked=$(dev_field dev-002 acked)
echo "# partition at dev-001 fragment $acked_cut of $NFRAGS (link frozen, nothing reset)"
broker_saw() { grep -q 'Client dev-001 has exceeded timeout' "$T/broker.log"; }
device_saw() { grep -q 'device=dev-001 connection lost' "$T/dev-001.log"; }
check "the broker notices by keepalive" wait_until $((KA * 3)) broker_saw
t_broker=$(now_ms)
check "  and publishes dev-001's Last Will: the ledger shows it offline" \
    wait_until 5 '[ "$(dev_field dev-001 state)" = offline ]'
check "the device notices by keepalive (no PINGRESP)" wait_until $((KA * 3)) device_saw
t_device=$(now_ms)
reason=$(grep -m1 'device=dev-001 connection lost' "$T/dev-001.log" | sed 's/.*connection lost: //')
echo "# detected after: broker $((t_broker - t_cut)) ms, device $((t_device - t_cut)) ms" \
    "(keepalive $KA s; device says: $reason)"
check "neither saw a reset: both waited at least one keepalive" \
    test $((t_broker - t_cut)) -ge $((KA * 1000)) -a $((t_device - t_cut)) -ge $((KA * 1000))
check "the device gave up on the link by its keepalive timer, not a socket error" \
    grep -qi 'keepalive' <<<"$reason"
# Let its reconnect attempts meet the frozen link too (they cannot get past TCP).
sleep 2
check "dev-002, on its own connection, was not held up by the partition" \
    test "$(dev_field dev-002 acked)" -gt "$b_acked" -o "$(dev_field dev-002 state)" = committed
check "no fragment reached dev-001 during the partition" \
    test "$(dev_field dev-001 acked)" = "$acked_cut"

# --- the link heals -----------------------------------------------------------------------------
kill -CONT "$(pid_of link)"
t_heal=$(now_ms)
resumed() { grep -E 'device=dev-001 release=[0-9a-f]+ accepted, sending from fragment' "$T/gateway.log" | sed -n 2p; }
check "dev-001 reconnects after the partition heals and is offered the transfer again" \
    wait_until 30 '[ -n "$(resumed)" ]'
t_back=$(now_ms)
from=$(resumed | sed 's/.*sending from fragment \([0-9]*\) of.*/\1/')
echo "# reconnected and resumed $((t_back - t_heal)) ms after the link healed, from fragment $from"
check "the transfer resumes from what the device holds ($from >= $acked_cut), not from 0" \
    test "${from:-0}" -ge "$acked_cut"
check "both devices commit 1.1.0" wait_until 60 'all_devices committed 1.1.0 dev-001 dev-002'
for d in dev-001 dev-002; do
    check "$d's payload is exact" cmp -s "$T/fw.bin" "$T/dev/$d/active/payload"
done
sent=$(dev_field dev-001 frags_sent)
echo "# dev-001: $sent fragments sent for $NFRAGS"
check "fragments sent again because of the partition stay few ($((sent - NFRAGS)) <= 64)" \
    test $((sent - NFRAGS)) -le 64
check "the ledger is consistent (fsck)" gw_fsck
check "everything stops cleanly" stop_all_clean gateway dev-001 dev-002 link
finish
