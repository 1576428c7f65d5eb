#!/usr/bin/env bash
# ota-gateway fsck: the ledger check. A real campaign writes a real ledger; fsck finds it
# consistent, also while the gateway is writing it; then each kind of damage, made with
# lmdb-utils (mdb_dump/mdb_load) on a copy, is found and named: a record that is not
# JSON, a dangling release reference, a device's failed releases out of shape (its older
# record with only failed_release still passes), a counter out of bounds, a campaign counter that
# disagrees with the event log, a forged signature, a hole in the event sequence, a
# truncated package, a damaged data file. Finally the gateway starts on a damaged ledger,
# skips the bad record, keeps serving, and its next writes make the ledger whole again.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

ids=(dev-001 dev-002)
certs_make "${ids[@]}"
broker_start || { not_ok "broker starts"; finish; }
check "gateway starts" gateway_start
for d in "${ids[@]}"; do device_start "$d" 1.0.0; done
check "devices online" wait_until 10 "all_devices idle 1.0.0 ${ids[*]}"

# fsck_db DIR [FLAGS]: run fsck, output in $T/fsck.out, its exit status returned.
fsck_db() {
    local db=$1 rc=0
    shift
    "$GW" fsck --db "$db" --publisher-key "$CERTS/publisher.pub" "$@" >"$T/fsck.out" 2>&1 || rc=$?
    cat "$T/fsck.out"
    echo "(exit status $rc)"
    return "$rc"
}
# finds DIR PATTERN [FLAGS]: fsck exits 1, names PATTERN (grep -E), and its summary counts
# exactly one problem (one damaged record is one problem, not a cascade).
finds() {
    local db=$1 pat=$2 rc=0
    shift 2
    fsck_db "$db" "$@" || rc=$?
    [ "$rc" = 1 ] && grep -qE -- "$pat" "$T/fsck.out" && grep -q ': 1 problem$' "$T/fsck.out"
}

make_payload "$T/fw.bin" 2097152
pack sensor 1.1.0 "$T/fw.bin" "$T/p.ota"
announce sensor "file://$T/p.ota" ',"fragment_size":1024,"window":1'
check "the transfer is under way" wait_until 30 '[ "$(dev_field dev-001 acked)" -gt 20 ] 2>/dev/null'
live_ok=0 live_runs=0
while [ "$live_runs" -lt 20 ] && ! all_devices committed 1.1.0 "${ids[@]}"; do
    live_runs=$((live_runs + 1))
    if fsck_db "$T/gw-db" >/dev/null; then live_ok=$((live_ok + 1)); else cat "$T/fsck.out" >>"$T/fsck-live.log"; fi
    sleep 0.1
done
echo "# fsck while the gateway writes: $live_ok of $live_runs runs consistent"
check "fsck on the live ledger (read-only, one snapshot) is consistent every time" \
    test "$live_ok" = "$live_runs" -a "$live_runs" -ge 3
check "both devices commit 1.1.0" wait_until 60 "all_devices committed 1.1.0 ${ids[*]}"
check "the gateway stops cleanly" stop_all_clean gateway
check "fsck: the finished ledger is consistent" fsck_db "$T/gw-db"
check "  and says what it read" \
    grep -qE "^ota-gateway fsck: .*: 1 releases, 2 devices, [0-9]+ events, 1 meta: consistent, 0 problems$" "$T/fsck.out"
check "mdb_stat reads the same ledger" mdb_stat -a "$T/gw-db"

# --- damage, one kind at a time, on a copy --------------------------------------------------

REL=$(gw_status_json | jq -r '.releases[0].release')
fresh() { rm -rf "$T/c"; cp -r "$T/gw-db" "$T/c"; }
# put DB KEY VALUE: write one record with mdb_load -T (plain text, where a backslash
# starts a hex escape: it is written as \5c; mdb_load 0.9.24 mangles its "\\" escape).
put() { printf '%s\n%s\n' "$2" "$(sed 's/\\/\\5c/g' <<<"$3")" | mdb_load -T -s "$1" "$T/c"; }
# raw DB KEY: the record as it is stored (printable JSON: mdb_dump -p shows it as is).
raw() { mdb_dump -p -s "$1" "$T/gw-db" | sed -n "/^ $2\$/{n;s/^ //;p;q}"; }
dev_rec() { gw_status_json | jq -c --arg id "$1" ".devices[] | select(.device == \$id) | $2"; }

fresh
put devices dev-001 '{"device":"dev-001","state":'
check "a device record that is not JSON is found" finds "$T/c" '^devices/dev-001: not JSON'
fresh
put devices dev-002 "$(dev_rec dev-002 '.release = "0123456789abcdef"')"
check "a device naming a release the ledger does not hold is found" \
    finds "$T/c" "^devices/dev-002: release '0123456789abcdef' is not in the ledger's releases"
fresh
put devices dev-002 "$(dev_rec dev-002 '.failed_releases = [{release: "0123456789abcdef", state: "failed"}] | .failed_release = "0123456789abcdef"')"
check "a failed release the ledger does not hold is found" \
    finds "$T/c" "^devices/dev-002: failed_releases\[0\] '0123456789abcdef' is not in the ledger's releases"
fresh
put devices dev-002 "$(dev_rec dev-002 ".failed_releases = [{release: \"$REL\", state: \"failed\"}, {release: \"$REL\", state: \"rolled_back\"}] | .failed_release = \"$REL\"")"
check "a release failed twice is found" finds "$T/c" "^devices/dev-002: failed_releases names '$REL' twice"
fresh
put devices dev-002 "$(dev_rec dev-002 ".failed_releases = [{release: \"$REL\", state: \"failed\"}]")"
check "a failed_release other than the last failed release is found" \
    finds "$T/c" "^devices/dev-002: failed_release '' is not the last of failed_releases \('$REL'\)"
fresh
put devices dev-002 "$(dev_rec dev-002 '.failed_releases = [{release: .release, state: "exploded"}]')"
check "a failed release of an unknown kind is found" \
    finds "$T/c" '^devices/dev-002: failed_releases\[0\] is not \{"release": ID, "state": "failed" or "rolled_back"\}'
fresh
put devices dev-002 "$(dev_rec dev-002 "del(.failed_releases) | .failed_release = \"$REL\"")"
check "a device record of the older format (only failed_release) is consistent" fsck_db "$T/c"
fresh
put devices dev-002 "$(dev_rec dev-002 '.acked = .fragments + 1')"
check "acked beyond the fragment count is found" finds "$T/c" '^devices/dev-002: acked ([0-9]+) is more than its [0-9]+ fragments'
fresh
put devices dev-002 "$(dev_rec dev-002 '.state = "exploded"')"
check "an unknown device state is found" finds "$T/c" "^devices/dev-002: unknown state 'exploded'"
fresh
put releases "$REL" "$(raw releases "$REL" | jq -c '.campaign.committed -= 1')"
check "a campaign counter that disagrees with the event log is found" \
    finds "$T/c" "^releases/$REL: campaign committed is 1, the event log has 2 \"committed\" events"
fresh
put releases "$REL" "$(raw releases "$REL" | jq -c '.sig |= (if .[0:1] == "0" then "1" else "0" end) + .[1:]')"
check "a forged manifest signature is found (with --publisher-key)" \
    finds "$T/c" "^releases/$REL: the manifest's signature does not verify"
check "  (an intact one verifies)" fsck_db "$T/gw-db"
fresh
put events "$(printf '\\00\\00\\00\\00\\00\\00\\01\\00')" \
    "{\"ts\":1,\"event\":\"resumed\",\"device\":\"\",\"release\":\"$REL\",\"detail\":\"\"}"
check "a hole in the event sequence is found" finds "$T/c" '^events/#256: follows #[0-9]+: [0-9]+ event\(s\) missing'
fresh
# The verdict's event is replaced: it counts towards nothing else (the event log's order
# around it depends on timing: the compressed payload is made in the thread pool).
vkey=$(mdb_dump -p -s events "$T/gw-db" | grep -B1 '"event":"verdict"' | head -n 1 | sed 's/^ //')
vseq=$((16#$(printf '%s' "$vkey" | tr -d '\\' | tail -c 4)))
put events "$vkey" \
    "{\"ts\":1,\"event\":\"aborted\",\"device\":\"dev-009\",\"release\":\"$REL\",\"detail\":\"\"}"
check "an event naming an unknown device is found" \
    finds "$T/c" "^events/#$vseq: aborted: device 'dev-009' is not in the ledger's devices"
fresh
pkg=$(find "$T/gw-store" -name '*.ota' | head -n 1)
cp "$pkg" "$T/pkg.bak"
truncate -s -100 "$pkg"
check "a truncated package in the store is found" finds "$T/c" "^releases/$REL: package .* holds [0-9]+ bytes, the record says"
check "  and not looked at with --skip-packages" fsck_db "$T/c" --skip-packages
cp "$T/pkg.bak" "$pkg"
# The data file itself damaged: every page after the first two (the meta pages) zeroed.
fresh
size=$(stat -c %s "$T/c/data.mdb")
dd if=/dev/zero of="$T/c/data.mdb" bs=4096 seek=2 count=$(((size - 8192) / 4096)) conv=notrunc 2>/dev/null
rc=0
fsck_db "$T/c" >/dev/null || rc=$?
cat "$T/fsck.out"
check "a damaged data file is reported as such (exit $rc), no crash" \
    bash -c "[ $rc = 1 ] || [ $rc = 2 ]; grep -qiE 'LMDB|MDB_' '$T/fsck.out'"

# --- the gateway on a damaged ledger --------------------------------------------------------
fresh
put devices dev-001 '{"device":"dev-001","state":'
rm -rf "$T/gw-db"
mv "$T/c" "$T/gw-db"
mv "$T/gateway.log" "$T/gateway-1.log"
check "the gateway starts on the damaged ledger" gateway_start
check "  and says it skipped the unreadable record" grep -q 'skipping unreadable device record' "$T/gateway.log"
make_payload "$T/fw2.bin" 65536
pack sensor 1.2.0 "$T/fw2.bin" "$T/p2.ota"
announce sensor "file://$T/p2.ota"
check "  and keeps serving: both devices commit 1.2.0" wait_until 60 "all_devices committed 1.2.0 ${ids[*]}"
check "  with the exact payload" cmp -s "$T/fw2.bin" "$T/dev/dev-001/active/payload"
check "its writes make the ledger consistent again" fsck_db "$T/gw-db"
check "everything stops cleanly" stop_all_clean gateway "${ids[@]}"
finish
