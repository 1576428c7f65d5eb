#!/usr/bin/env bash
# Two device rules of PROTOCOL.md (issue 14, points 12 and 13):
# - section 8 step 5: an offer of the release a device has committed is ignored without
#   any check, and the retained status stays `committed` (before: a re-offer that failed
#   a check, here a bad signature, published `failed` over it);
# - section 3: the Last Will names the version the device runs. A device whose restart
#   command keeps its process (and its connection) renews its will after the commit, so
#   when it is killed its retained status is `offline` on the new version, not the old.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
device_start dev-001 1.0.0 --restart-command true
device_start dev-002 1.0.0
check "devices online" wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"

make_payload "$T/fw110.bin" 65536
pack sensor 1.1.0 "$T/fw110.bin" "$T/p110.ota"
announce sensor "file://$T/p110.ota"
check "1.1.0 reaches both devices" wait_until 40 "all_devices committed 1.1.0 ${ids[*]}"
check "dev-001 restarted by its command, in the same process" \
    grep -q 'reconnecting with a new last will' "$T/dev-001.log"

# retained_is ID STATE VERSION: the device's retained status, as a monitor reads it.
retained_is() {
    mq_sub_as observer1 "ota/dev/$1/status" 1 5 |
        jq -e --arg s "$2" --arg v "$3" '.state == $s and .version == $v'
}

# Point 12: re-offers of the committed release, one valid, one that fails a check.
mq_pub_as injector ota/dev/dev-001/offer "$(offer_json "$T/p110.ota" 16)" -q 1
check "dev-001 ignores a re-offer of the release it committed" \
    wait_until 10 "grep -q 'ignored: already committed (committed, version 1.1.0)' '$T/dev-001.log'"
mq_pub_as injector ota/dev/dev-002/offer \
    "$(offer_json "$T/p110.ota" 99 | jq -c '.sig = ("00" * 64)')" -q 1
check "dev-002 ignores one with a bad signature and fragment count, without checking it" \
    wait_until 10 "grep -q 'ignored: already committed (committed, version 1.1.0)' '$T/dev-002.log'"
sleep 1
for d in "${ids[@]}"; do
    check "$d: the retained status is still committed on 1.1.0" \
        retained_is "$d" committed 1.1.0
done
check "no device refused or failed anything" \
    bash -c "! grep -q 'REFUSED\|-> failed' '$T/dev-001.log' '$T/dev-002.log'"

# Point 13: the will of dev-001 (connected before the commit) names 1.1.0.
kill -9 "$(pid_of dev-001)"
check "killed, dev-001 is offline by its Last Will" \
    wait_until 60 '[ "$(dev_field dev-001 state)" = offline ]'
check "and its will names the version it runs, 1.1.0" retained_is dev-001 offline 1.1.0
check "the gateway's record agrees" test "$(dev_field dev-001 version)" = 1.1.0
check "everything stops cleanly" stop_all_clean gateway dev-002
finish
