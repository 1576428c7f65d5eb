#!/usr/bin/env bash
# Compressed and delta updates (proto/PROTOCOL.md 6.4), end to end with the real gateway,
# broker and devices:
#   1. a factory device (no image it can name) gets the image compressed (zstd): 1.1.0;
#   2. one device on 1.1.0 gets 1.2.0 as a delta from 1.1.0: a fraction of the bytes;
#   3. 1.3.0 to six devices: three on 1.1.0 share one delta stream (one group), one on
#      1.1.1 and one on 1.2.0 get deltas from their own bases, one on an unknown base (a
#      factory device) gets the compressed image; every one commits the exact image;
#   4. a link that corrupts 10% of the fragments: every bad frame is caught before its
#      blocks are written, asked for again, and the device commits the exact image;
#   5. a gateway that makes hostile deltas (test_hostile_delta: the delta rebuilds a
#      wrong first block): the device refuses it before writing any block, fails the
#      delta with a clear error, and the gateway sends it the full image instead.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

stat_of() { # stat_of LOG NAME: the largest "stats" value NAME= in a device log
    sed -n "s/.* stats .*[ ]$2=\([0-9]*\).*/\1/p" "$1" | sort -n | tail -1
}
enc_of() { dev_field "$1" encoding; }
wire_of() { dev_field "$1" wire_bytes; }

# Images like firmware: half of them compresses (text, tables), half does not (code,
# data); a new version is the old one with a few local edits and an insertion.
make_image() { # make_image OUT SEED
    { openssl enc -aes-128-ctr -nosalt -pass "pass:$2" -pbkdf2 -in /dev/zero 2>/dev/null |
        head -c 786432
      for _ in $(seq 40); do cat "$OTA_ROOT/README.md" "$OTA_ROOT/proto/PROTOCOL.md"; done |
          head -c 786432
    } >"$1"
}
edit_image() { # edit_image IN OUT TAG: three patches and 2 KiB inserted at 300000
    { head -c 300000 "$1"
      openssl enc -aes-128-ctr -nosalt -pass "pass:$3" -pbkdf2 -in /dev/zero 2>/dev/null |
          head -c 2048
      tail -c +300001 "$1"; } >"$2"
    for off in 4096 700000 1200000; do
        printf '%s-patched-%s' "$3" "$off" | dd of="$2" bs=1 seek="$off" conv=notrunc 2>/dev/null
    done
}

certs_make dev-001 dev-002 dev-003 dev-004 dev-005 dev-006 dev-007
broker_start || { not_ok "broker starts"; finish; }
mq_sub_bg grp observer1 'ota/grp/+/frag' 1000000 300 -F '%t' || not_ok "group topic counter subscribes"
HP=$(free_port)
check "gateway starts (with its HTTP API)" gateway_start --http-listen "127.0.0.1:$HP"
for d in dev-001 dev-002 dev-003 dev-004 dev-005 dev-006; do device_start "$d" 1.0.0; done
check "six devices report idle 1.0.0" \
    wait_until 15 'all_devices idle 1.0.0 dev-001 dev-002 dev-003 dev-004 dev-005 dev-006'

make_image "$T/a.bin" seed-a                # 1.1.0
edit_image "$T/a.bin" "$T/a1.bin" v111      # 1.1.1
edit_image "$T/a.bin" "$T/b.bin" v120       # 1.2.0
edit_image "$T/b.bin" "$T/c.bin" v130       # 1.3.0
size=$(stat -c %s "$T/c.bin")

# --- 1. Factory devices name no image: the compressed image.
pack sensor 1.1.0 "$T/a.bin" "$T/a.ota"
announce sensor "file://$T/a.ota" ',"devices":["dev-001","dev-002","dev-003","dev-004"]'
check "dev-001..004 commit 1.1.0" \
    wait_until 60 'all_devices committed 1.1.0 dev-001 dev-002 dev-003 dev-004'
check "they got it compressed (zstd)" \
    sh -c "[ '$(enc_of dev-001)' = zstd ] && [ '$(enc_of dev-004)' = zstd ]"
pack sensor 1.1.1 "$T/a1.bin" "$T/a1.ota"
announce sensor "file://$T/a1.ota" ',"devices":["dev-005"]'
check "dev-005 commits 1.1.1" wait_until 60 'all_devices committed 1.1.1 dev-005'
image_reported() { # the retained status of dev-005, read as the monitor
    mq_sub_as monitor ota/dev/dev-005/status 1 5 |
        grep -q "\"image\":\"$(sha256sum "$T/a1.bin" | cut -c1-64)\""
}
check "a committed device reports its image's SHA-256 in its status" image_reported

# --- 2. One device on 1.1.0: 1.2.0 as a delta.
pack sensor 1.2.0 "$T/b.bin" "$T/b.ota"
announce sensor "file://$T/b.ota" ',"devices":["dev-001"]'
check "dev-001 commits 1.2.0" wait_until 60 'all_devices committed 1.2.0 dev-001'
check "dev-001 holds the exact image" cmp -s "$T/b.bin" "$T/dev/dev-001/active/payload"
w=$(wire_of dev-001)
echo "# dev-001: $(enc_of dev-001), $w bytes on the wire for a $size-byte image"
check "dev-001 took a delta" test "$(enc_of dev-001)" = delta
check "the delta's wire bytes are under 5% of the image ($w)" test "$w" -lt $((size / 20))
check "the gateway made it once and logged it" \
    grep -q 'release=.* delta from 1.1.0 .* bytes' "$T/gateway.log"

# --- 3. 1.3.0 to six devices on four bases.
pack sensor 1.3.0 "$T/c.bin" "$T/c.ota"
announce sensor "file://$T/c.ota"
all6="dev-001 dev-002 dev-003 dev-004 dev-005 dev-006"
check "all six commit 1.3.0" wait_until 90 "all_devices committed 1.3.0 $all6"
for d in $all6; do
    check "$d holds the exact image" cmp -s "$T/c.bin" "$T/dev/$d/active/payload"
done
for d in dev-001 dev-002 dev-003 dev-004 dev-005; do
    check "$d (a known base) took a delta ($(wire_of $d) bytes)" \
        sh -c "[ '$(enc_of $d)' = delta ] && [ '$(wire_of $d)' -lt $((size / 20)) ]"
done
check "dev-006 (unknown base) took the compressed image" test "$(enc_of dev-006)" = zstd
check "three deltas were made for 1.3.0 (from 1.1.0, 1.1.1, 1.2.0)" \
    sh -c "[ \$(grep -c 'delta from 1.1.[01] \|delta from 1.2.0 ' '$T/gateway.log') -ge 4 ]"
check "the devices on 1.1.0 shared one delta stream (a group of 3)" \
    grep -q 'group of 3 devices: sending' "$T/gateway.log"
topics=$(sort -u "$T/grp.log" | grep -c 'd[0-9a-f]\{16\}/frag$' || true)
check "delta groups publish on their own topics (ota/grp/<release>d<base>/frag: $topics)" \
    test "$topics" -ge 1
"$GW" status --db "$T/gw-db" >"$T/status.out"
check "ota-gateway status shows how each update travelled and its bytes" \
    sh -c "grep -q 'SENT  *WIRE' '$T/status.out' && grep -q '^dev-002 .* delta ' '$T/status.out'"
api_of() { # api_of ID: "encoding wire_bytes" of a device in the HTTP API
    curl -s "http://127.0.0.1:$HP/api/devices?name=$1" | jq -r '.devices[0] | "\(.encoding) \(.wire_bytes)"'
}
check "the HTTP API shows how each update travelled and its bytes, as the ledger" \
    sh -c "[ '$(api_of dev-002)' = 'delta $(wire_of dev-002)' ] &&
           [ '$(api_of dev-006)' = 'zstd $(wire_of dev-006)' ]"
check "the ledger passes fsck" gw_fsck

# --- 4. A corrupting link on a delta (10% of the fragments get a byte flipped).
stop dev-002 >/dev/null
device_start dev-002 1.3.0 --test-corrupt-percent 10 --test-seed 7
check "dev-002 is back on 1.3.0" wait_until 15 'all_devices committed 1.3.0 dev-002'
edit_image "$T/c.bin" "$T/d.bin" v140
pack sensor 1.4.0 "$T/d.bin" "$T/d.ota"
announce sensor "file://$T/d.ota" ',"devices":["dev-002"],"fragment_size":512'
check "dev-002 commits 1.4.0 through the corrupting link" \
    wait_until 90 'all_devices committed 1.4.0 dev-002'
check "dev-002 holds the exact image" cmp -s "$T/d.bin" "$T/dev/dev-002/active/payload"
check "dev-002 took a delta" test "$(enc_of dev-002)" = delta
corrupted=$(stat_of "$T/dev-002.log" corrupted_test)
dropped=$(grep -c 'frame at payload offset .* dropped, nothing of it written' "$T/dev-002.log" || true)
echo "# dev-002: $corrupted fragments corrupted, $dropped frames dropped and fetched again"
check "corrupted fragments were caught at their frame and repaired ($corrupted corrupted, $dropped dropped)" \
    test "${corrupted:-0}" -gt 0 -a "$dropped" -gt 0
check "no corrupted block reached the slot (no digest failure at verify)" \
    sh -c "! grep -q 'SHA-256 does not match' '$T/dev-002.log'"

# --- 5. A gateway that sends hostile deltas.
stop gateway >/dev/null
check "gateway restarts with test_hostile_delta" gateway_start --test-hostile-delta true
device_start dev-007 1.0.0
# dev-007 first takes 1.3.0 (announced for every device; it has no base: zstd), then
# 1.5.0 would come as a delta from it.
check "dev-007 commits 1.3.0" wait_until 60 'all_devices committed 1.3.0 dev-007'
edit_image "$T/c.bin" "$T/e.bin" v150
pack sensor 1.5.0 "$T/e.bin" "$T/e.ota"
announce sensor "file://$T/e.ota" ',"devices":["dev-007"]'
check "dev-007 commits 1.5.0 in the end" wait_until 90 'all_devices committed 1.5.0 dev-007'
check "dev-007 holds the exact image" cmp -s "$T/e.bin" "$T/dev/dev-007/active/payload"
check "dev-007 refused the hostile delta with a clear error" \
    grep -q 'rebuilds block 0, which does not match the signed block table, twice with the same bytes' "$T/dev-007.log"
check "it wrote none of the delta's blocks (its first frame was refused)" \
    grep -q 'frame at payload offset 0 (image offset 0) rebuilds block 0.*dropped, nothing of it written' "$T/dev-007.log"
check "the gateway then sent dev-007 the full image" \
    grep -q 'device=dev-007 .*failed its delta payload.*offering the full image' "$T/gateway.log"
check "dev-007's last update travelled as the full image" test "$(enc_of dev-007)" = full
# "delta":false: even with a known base, no delta.
edit_image "$T/e.bin" "$T/f.bin" v160
pack sensor 1.6.0 "$T/f.bin" "$T/f.ota"
announce sensor "file://$T/f.ota" ',"devices":["dev-004"],"delta":false'
check "dev-004 commits 1.6.0" wait_until 60 'all_devices committed 1.6.0 dev-004'
check "with \"delta\":false it took the compressed image, not a delta" test "$(enc_of dev-004)" = zstd

check "everything stops cleanly" stop_all_clean gateway dev-001 dev-002 dev-003 dev-004 dev-005 dev-006 dev-007
finish
