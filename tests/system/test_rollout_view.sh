#!/usr/bin/env bash
# Campaigns finish and the status view fits (issue 13, points 3 and 4): a campaign whose
# targets are all done is "finished" with its end time; releases are listed newest first; a
# device row names the release its state refers to; an aborted download shows as "aborted"
# (no stale rate); `ctl retry` offers a release again to the devices that failed it (not to
# one that rolled back); `status` fits an 80x24 terminal with the devices under way first
# and the rest summarised, filters by state, release, group and name; `--json --watch`
# prints only JSON documents.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

N=40
certs_make --devices 42
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
spawn fleet "$DEV" --fleet "$N" --fleet-cert-dir "$CERTS/devices" --product sensor \
    --version 1.0.0 --broker-host localhost --broker-port "$BROKER_PORT" \
    --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --state-dir "$T/fleet"
count() { gw_status_json | jq --arg s "$1" --arg v "$2" '[.devices[] | select(.state == $s and .version == $v)] | length'; }
check "$N devices idle" wait_until 60 "[ \"\$(count idle 1.0.0)\" = $N ]"
CONN=(--broker-host localhost --broker-port "$BROKER_PORT" --ca-file "$CERTS/ca.crt"
    --cert-file "$CERTS/operator.crt" --key-file "$CERTS/operator.key" --timeout-s 20)
status() { "$GW" status --db "$T/gw-db" "$@"; }
camp() { gw_status_json | jq -r --arg v "$1" ".releases[] | select(.version == \$v) | .campaign.$2"; }
rel_of() { gw_status_json | jq -r --arg v "$1" '.releases[] | select(.version == $v) | .release'; }

make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/p110.ota"
check "announce 1.1.0 to the fleet" "$GW" announce --product sensor --url "file://$T/p110.ota" "${CONN[@]}"
check "all $N commit" wait_until 90 "[ \"\$(count committed 1.1.0)\" = $N ]"
check "the campaign is finished, not rolling forever" wait_until 10 '[ "$(camp 1.1.0 state)" = finished ]'
check "with its end time" test "$(camp 1.1.0 finished_ms)" -gt 0
check "status shows it finished with the time it ended" \
    bash -c "'$GW' status --db '$T/gw-db' | grep -E '^[0-9a-f]{16} +sensor +1\.1\.0 +finished .* \.\. '"

# A slow transfer to three devices, so that they are under way while we look.
make_payload "$T/big.bin" 4194304  # ~16k stop-and-wait fragments: still under way at the abort on a quiet machine
pack sensor 1.2.0 "$T/big.bin" "$T/p120.ota"
check "announce a slow 1.2.0 to dev-001..dev-003" "$GW" announce --product sensor \
    --url "file://$T/p120.ota" --devices dev-001,dev-002,dev-003 --fragment-size 256 --window 1 "${CONN[@]}"
check "they are downloading" wait_until 20 "[ \"\$(gw_status_json | jq '[.devices[] | select(.state == \"downloading\" and .acked > 10)] | length')\" = 3 ]"
R120=$(rel_of 1.2.0)
R110=$(rel_of 1.1.0)
LINES=24 COLUMNS=80 status >"$T/view.txt"
sed 's/^/#   /' "$T/view.txt"
check "the default view fits 80x24: at most 24 lines" test "$(wc -l <"$T/view.txt")" -le 24
check "  and no line is wider than 80 columns" test "$(awk '{ if (length($0) > m) m = length($0) } END { print m + 0 }' "$T/view.txt")" -le 80
check "it opens with the campaigns, newest first" \
    bash -c "sed -n 2p '$T/view.txt' | grep -q '^$R120 .*1\.2\.0' && sed -n 3p '$T/view.txt' | grep -q '^$R110 .*1\.1\.0'"
check "then the device count per state" grep -qE '^DEVICES 40: .*3 downloading' "$T/view.txt"
check "the devices under way come first, with their release" \
    bash -c "grep -A3 '^DEVICE ' '$T/view.txt' | grep -cE '^dev-00[123] +1\.1\.0 +downloading +${R120:0:8} ' | grep -qx 3"
check "the rest is summarised in one line" grep -qE '^\.\.\. [0-9]+ more not shown \([0-9]+ committed\)' "$T/view.txt"
check "--state downloading shows exactly those 3" \
    test "$(status --state downloading | grep -cE '^dev-[0-9]+ ')" = 3
check "a name pattern selects by name" test "$(status --all 'dev-01*' | grep -cE '^dev-[0-9]+ ')" = 10
check "--release selects by the release a state refers to (a prefix will do)" \
    test "$(status --all --release "${R110:0:6}" | grep -cE '^dev-[0-9]+ ')" = 37
check "--group with no such group shows no device" bash -c "'$GW' status --db '$T/gw-db' --group nosuch | grep -q '^DEVICES 0$'"
check "--json honours the filters" test "$(status --json --state downloading | jq '.devices | length')" = 3

# --json --watch: JSON documents only, one per refresh.
# (timeout may cut the last document short: count the complete ones.)
timeout 3.5 "$GW" status --db "$T/gw-db" --json --watch 1 >"$T/watch.json" 2>/dev/null
check "--json --watch prints only JSON, one document per refresh" \
    bash -c "head -c1 '$T/watch.json' | grep -q '{' && [ \$(jq -c '.counts' '$T/watch.json' 2>/dev/null | wc -l) -ge 2 ]"

check "ctl abort of 1.2.0" "$GW" ctl abort --product sensor "${CONN[@]}"
check "the aborted downloads show as aborted, not downloading" \
    wait_until 10 "[ \"\$(status --state aborted | grep -cE '^dev-00[123] .* aborted ')\" = 3 ]"
check "and --wide gives them no (stale) rate" \
    bash -c "'$GW' status --db '$T/gw-db' --wide --state aborted | grep -E '^dev-001 ' | grep -vq '/s'"

# Retry: dev-041 fails (its size limit), dev-042 rolls back (its restart fails).
make_payload "$T/two.bin" 2097152
pack sensor 1.3.0 "$T/two.bin" "$T/p130.ota"
device_start dev-041 1.1.0 --max-package-mb 1
device_start dev-042 1.1.0 --restart-command false
check "dev-041 and dev-042 online" wait_until 10 "all_devices idle 1.1.0 dev-041 dev-042"
check "announce 1.3.0 to them" "$GW" announce --product sensor --url "file://$T/p130.ota" \
    --devices dev-041,dev-042 "${CONN[@]}"
check "dev-041 fails, dev-042 rolls back" \
    wait_until 30 '[ "$(dev_field dev-041 state) $(dev_field dev-042 state)" = "failed rolled_back" ]'
check "the campaign is finished" wait_until 10 '[ "$(camp 1.3.0 state)" = finished ]'
stop dev-041
device_start dev-041 1.1.0
wait_until 10 '[ "$(dev_field dev-041 state)" = failed ]'
sleep 1
check "without a retry it is not offered again" test "$(dev_field dev-041 version)" = 1.1.0
"$GW" ctl retry --product sensor "${CONN[@]}" >"$T/retry.out" 2>&1
rc=$?
sed 's/^/#   /' "$T/retry.out"
check "ctl retry: accepted (exit 0)" test "$rc" = 0
check "  names the failed device it retries" grep -q 'targets 1 device: dev-041' "$T/retry.out"
check "  and says the rolled-back one refuses it by design" \
    grep -q '1 rolled back (dev-042): a device refuses a release it rolled back from, by design' "$T/retry.out"
check "dev-041 commits 1.3.0 without a new package" wait_until 30 "all_devices committed 1.3.0 dev-041"
check "the campaign is finished again" wait_until 10 '[ "$(camp 1.3.0 state)" = finished ]'
check "a second retry has nothing to retry: exit 1" \
    bash -c "! '$GW' ctl retry --product sensor ${CONN[*]} >/dev/null 2>&1"
check "the ledger is consistent (fsck)" gw_fsck
check "everything stops cleanly" stop_all_clean gateway fleet dev-041 dev-042
finish
