#!/usr/bin/env bash
# Session mismatch from a device: on dev-001's own status and ack topics (a compromised or
# buggy device can publish only there, deploy/mosquitto/acl), while
# its transfer is under way, publish acks that do not decode, acks for a release that
# does not exist, acks for fragments never sent, statuses that do not decode or name
# another device, statuses for a release the gateway never had, and a flood of 500 bad
# statuses. The gateway drops and counts every one (bad_msgs, stale_msgs), logs them at
# a bounded rate, does not restart or end anyone's transfer because of them, and all
# three devices (dev-001 included) commit the exact payload; the ledger stays consistent.
# The hostile messages are published by the tests' injector, allowed to write dev-001's
# status and ack topics (lib.sh): the broker makes the certificate's CN the client id, so
# a second client with dev-001's certificate would throw the running device off, and each
# reconnect is a legitimate re-offer. What reaches the gateway is the same: it cannot
# tell who published on a topic, only the broker's ACL decides who may.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002 dev-003)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
for d in "${ids[@]}"; do device_start "$d" 1.0.0; done
check "devices online" wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"

make_payload "$T/fw.bin" 1048576
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota" ',"fragment_size":1024,"window":4'
acked_all() { [ "$(gw_status_json | jq "[.devices[] | select(.acked > $1)] | length")" = 3 ]; }
check "all three transfers are under way" wait_until 30 'acked_all 10'
# Paused, the transfers stay open (the gateway holds a session for each device) and
# nothing moves, so every hostile message below meets a live session in a known place.
check "the operator pauses the campaign" \
    mq_pub_as operator ota/ctl/sensor '{"action":"pause"}' -q 1
sleep 0.5
REL=$(gw_status_json | jq -r '.releases[0].release')
TAG=${REL:0:8}
NEXT=$(dev_field dev-001 acked)
echo "# release $REL (tag bytes $TAG), dev-001 holds $NEXT of 1024"

# ack HEX...: an acknowledgement from the bytes given in hex, on dev-001's ack topic.
n_bad=0 n_stale=0
ack() {
    printf '%s' "$*" | xxd -r -p >"$T/ack.bin"
    mq_pubf_as injector ota/dev/dev-001/ack "$T/ack.bin" -q 1
}
le24() { printf '%02x %02x %02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)); }
status() { mq_pub_as injector ota/dev/dev-001/status "$1" -q 1; }

# Acks that do not decode (bad).
_mq_tls injector
mosquitto_pub "${_MQ_ARGS[@]}" -t ota/dev/dev-001/ack -q 1 -n && n_bad=$((n_bad + 1)) # empty
ack 12 && n_bad=$((n_bad + 1))                                          # 1 byte
ack 12 "$TAG" 00 00 && n_bad=$((n_bad + 1))                              # truncated
ack 11 "$TAG" 00 00 00 00 && n_bad=$((n_bad + 1))                        # fragment type
ack 12 "$TAG" 00 00 00 21 "$(printf '%066d' 0)" && n_bad=$((n_bad + 1))  # sack_len 33
ack 12 "$TAG" 00 00 00 02 ff && n_bad=$((n_bad + 1))                     # sack cut short
head -c 200 /dev/urandom >"$T/junk.bin"
mq_pubf_as injector ota/dev/dev-001/ack "$T/junk.bin" -q 1 && n_bad=$((n_bad + 1))
# Valid acks that fit no session: another release's tag (stale), a fragment never sent,
# a fragment beyond the release (bad).
ack 12 deadbeef "$(le24 5)" 00 && n_stale=$((n_stale + 1))
ack 12 00000000 "$(le24 1024)" 00 && n_stale=$((n_stale + 1))
ack 12 "$TAG" "$(le24 1000)" 00 && n_bad=$((n_bad + 1))
ack 12 "$TAG" "$(le24 5000)" 00 && n_bad=$((n_bad + 1))
ack 12 "$TAG" "$(le24 $((NEXT + 100)))" 01 ff && n_bad=$((n_bad + 1))
# Statuses that do not decode or name another device (bad).
status '{"device":"dev-001","product":' && n_bad=$((n_bad + 1))
status '{"device":"dev-002","product":"sensor","version":"1.0.0","state":"committed"}' && n_bad=$((n_bad + 1))
status '{"device":"dev-001","product":"sensor","version":"1.0.0","state":"exploded"}' && n_bad=$((n_bad + 1))
status "{\"device\":\"dev-001\",\"product\":\"sensor\",\"version\":\"1.0.0\",\"state\":\"downloading\",\"release\":\"$REL\",\"progress\":7}" &&
    n_bad=$((n_bad + 1))
# Statuses for a release the gateway never had (stale): they must not end, restart or
# re-offer dev-001's transfer.
status '{"device":"dev-001","product":"sensor","version":"1.0.0","state":"failed","release":"00000000deadbeef","error":"x"}' &&
    n_stale=$((n_stale + 1))
status '{"device":"dev-001","product":"sensor","version":"1.0.0","state":"rolled_back","release":"0123456789abcdef","error":"x"}' &&
    n_stale=$((n_stale + 1))
# A flood: 500 statuses that do not decode, over one connection.
for ((i = 0; i < 500; i++)); do echo "{\"device\":\"dev-001\",\"n\":$i"; done >"$T/flood.txt"
_mq_tls injector
mosquitto_pub "${_MQ_ARGS[@]}" -t ota/dev/dev-001/status -q 1 -l <"$T/flood.txt" && n_bad=$((n_bad + 500))
echo "# sent on dev-001's topics: $n_bad messages that should count as bad, $n_stale as stale"
check "every hostile message was accepted by the broker (published on dev-001's own topics)" \
    test "$n_bad $n_stale" = "514 4"
check "the gateway is still running" alive gateway

check "the operator resumes the campaign" \
    mq_pub_as operator ota/ctl/sensor '{"action":"resume"}' -q 1
check "all three devices commit 1.1.0" wait_until 60 "all_devices committed 1.1.0 ${ids[*]}"
for d in "${ids[@]}"; do
    check "$d's payload is exact" cmp -s "$T/fw.bin" "$T/dev/$d/active/payload"
done
check "no transfer was restarted or re-offered: one offer and one accept per device" \
    test "$(grep -c ' offered$' "$T/gateway.log") $(grep -c 'accepted, sending from fragment' "$T/gateway.log")" = "3 3"
check "dev-001's ledger record names the real release, not the ones it was told about" \
    test "$(dev_field dev-001 release) $(dev_field dev-001 failed_release)" = "$REL "
check "the ledger is consistent (fsck)" gw_fsck
# Log forging: a status whose error text holds a line break and a made-up log line. The
# device may say it failed (its own state is its own to report), but not write lines
# into the gateway's log: control characters are shown escaped.
forged='12:00:00.000 ota-gateway info device=dev-002 state=committed version=9.9.9'
status "{\"device\":\"dev-001\",\"product\":\"sensor\",\"version\":\"1.1.0\",\"state\":\"failed\",\"release\":\"$REL\",\"error\":\"x\\n$forged\"}"
check "the gateway logs the device's error text" wait_until 10 "grep -q 'device=dev-001 state=failed' '$T/gateway.log'"
check "  on one line, its line break escaped: no forged line in the log" \
    bash -c "! grep -q '^$forged' '$T/gateway.log' && grep -qF 'error=x\\x0a$forged' '$T/gateway.log'"
drop_lines=$(grep -c 'dropped' "$T/gateway.log")
echo "# gateway log lines about dropped messages: $drop_lines"
check "dropped messages are logged at a bounded rate (at most 10 lines for $n_bad + $n_stale)" \
    test "$drop_lines" -le 10
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
line=$(grep 'gateway stopped:' "$T/gateway.log")
echo "# ${line#*ota-gateway }"
bad=$(sed -n 's/.* bad_msgs=\([0-9]*\).*/\1/p' <<<"$line")
stale=$(sed -n 's/.* stale_msgs=\([0-9]*\).*/\1/p' <<<"$line")
check "the gateway counted every bad message ($bad >= $n_bad)" test "${bad:-0}" -ge "$n_bad"
check "and every stale one ($stale >= $n_stale)" test "${stale:-0}" -ge "$n_stale"
check "  and nothing else was counted bad (the devices' own traffic is clean)" test "${bad:-0}" = "$n_bad"
finish
