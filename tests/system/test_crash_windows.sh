#!/usr/bin/env bash
# Three power-cut windows (issue 18), each held exactly with a named crash point
# (--test-crash-at, tests only), the device then started again:
#   downloaded     after the checkpoint that records every fragment, before the download
#                  is closed: the device must go on to verification, not sit in
#                  `downloading` for good;
#   table-removed  just after the block table file is removed: the device must not
#                  start the download over (no fragment sent again);
#   rollback       in the middle of a rollback (a health check that fails once, then
#                  passes): state.json, the `active` link and the reported version must
#                  agree (the rollback stands: rolled_back on 1.0.0 in slot-a).
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002 dev-003)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
# 256 KiB in 1 KiB fragments: 2 carry the block table, 256 the payload.
TOTAL=258
HC3="test -e '$T/hc3.once' || { touch '$T/hc3.once'; exit 1; }"
dev() { # dev ID [CRASH_POINT]
    local extra=()
    [ "$1" = dev-003 ] && extra=(--health-command "$HC3")
    device_start "$1" 1.0.0 --checkpoint-every 16 ${2:+--test-crash-at "$2"} "${extra[@]}"
}
dev dev-001 downloaded
dev dev-002 table-removed
dev dev-003 rollback
check "devices online" wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"
make_payload "$T/fw.bin" 262144
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota" ',"fragment_size":1024,"window":8'

declare -A point=([dev-001]=downloaded [dev-002]=table-removed [dev-003]=rollback)
for id in "${ids[@]}"; do
    p=${point[$id]}
    check "$id is cut at '$p'" wait_until 60 "! alive $id"
    stop "$id" >/dev/null 2>&1
    check "$id: the cut was the crash point '$p'" \
        grep -q "test crash point '$p': SIGKILL" "$T/$id.log"
    mv "$T/$id.log" "$T/$id-cut.log"
    dev "$id"
done

# (a) every fragment held at the cut: straight on to verification and the commit.
check "dev-001 (cut at 'downloaded') resumes with every fragment held" \
    wait_until 10 "grep -q 'resuming release=.* from fragment $TOTAL of $TOTAL' '$T/dev-001.log'"
check "... and goes on to commit 1.1.0 instead of staying in downloading" \
    wait_until 30 'all_devices committed 1.1.0 dev-001'
check "... with the exact payload" cmp -s "$T/fw.bin" "$T/dev/dev-001/active/payload"

# (b) the block table removed at the cut: the download is not started over.
check "dev-002 (cut at 'table-removed') commits 1.1.0" \
    wait_until 30 'all_devices committed 1.1.0 dev-002'
check "... without starting the download over" \
    bash -c "! grep -q 'starting over' '$T/dev-002.log'"
sent=$(dev_field dev-002 frags_sent)
check "... and without any fragment sent again ($sent sent for $TOTAL)" test "$sent" -le "$TOTAL"
check "... with the exact payload" cmp -s "$T/fw.bin" "$T/dev/dev-002/active/payload"

# (c) a rollback cut in the middle: the records agree with what runs.
check "dev-003 (cut at 'rollback') settles" \
    wait_until 30 "all_devices rolled_back 1.0.0 dev-003 || all_devices committed 1.1.0 dev-003"
S=$T/dev/dev-003
active=$(readlink "$S/active")
slot=$(jq -r .slot "$S/state.json")
version=$(jq -r .version "$S/state.json")
held_ver=$(cat "$S/$active/version" 2>/dev/null || echo 1.0.0)
echo "# dev-003: active -> $active, state.json slot $slot version $version, ledger $(dev_field dev-003 state) $(dev_field dev-003 version)"
check "dev-003: state.json's slot is where 'active' points ($slot, $active)" test "slot-$slot" = "$active"
check "dev-003: the reported version is what the active slot holds ($held_ver)" \
    test "$(dev_field dev-003 version)" = "$held_ver"
check "dev-003: the rollback stands (rolled_back on 1.0.0, slot-a)" \
    bash -c "[ '$(dev_field dev-003 state) $version $active' = 'rolled_back 1.0.0 slot-a' ]"
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
check "the gateway's ledger is consistent (fsck)" gw_fsck
finish
