#!/bin/sh
# make-seeds.sh: regenerate the fuzz seed corpora tests/fuzz/corpus/<target>/.
#
#   sh tests/fuzz/make-seeds.sh
#
# fuzz_proto: every file of tests/vectors/{announce,offer,status,manifest}
#             (JSON, as is) and {frag,ack} (hex text, as binary), each with the
#             decoder's selector byte in front (numbers as in fuzz_proto.c),
#             plus rollout control messages and text-helper strings written here.
# fuzz_pkg:   packages signed with the RFC 8032 TEST 1 key (the public half is
#             fuzz_pkg.c's fixed key): one valid package, broken variants of it,
#             and the ok- manifests of tests/vectors/manifest/ signed, no payload.
# fuzz_conf:  deploy/*.conf.example and configuration files written here.
# fuzz_state: device state.json files as dev__persist_json() writes them at each
#             step of an update, and damaged ones (power cut, bit flips).
# fuzz_ledger: ledgers as `ota-gateway fsck` and the gateway read them (one
#             record a line, see fuzz_ledger.c), with packages signed as above.
# fuzz_delta: zstd payloads and deltas (against fuzz_delta.c's fixed base) made
#             by the zstd tool, broken variants, and images for the round trip.
#
# Vectors larger than SEED_MAX bytes are left out. The seed files are written
# (overwritten) by name; other files in the corpus directories (inputs added by
# `make fuzz-save`) are kept; tests/fuzz/crashes/ is never touched. Needs xxd and
# openssl.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SEED_MAX=17000
OUT=tests/fuzz/corpus
TMP=$(mktemp -d /tmp/ota-fuzz-seeds.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# The selector bytes of fuzz_proto.c (enum fproto_sel).
SEL_ANNOUNCE=0 SEL_OFFER=1 SEL_STATUS=2 SEL_MANIFEST=3 SEL_CONTROL=4
SEL_FRAG=5 SEL_ACK=6 SEL_TEXT=7 SEL_VERDICT=8 SEL_POLL=9

# byte N: write the byte N (0..255) to stdout.
byte() {
    # shellcheck disable=SC2059
    printf "$(printf '\\%03o' "$1")"
}

# le32 N: N as 4 little-endian bytes.
le32() {
    byte $(($1 & 255))
    byte $(($1 >> 8 & 255))
    byte $(($1 >> 16 & 255))
    byte $(($1 >> 24 & 255))
}

# unhex: hex text on stdin ('#' comments, whitespace) to bytes on stdout.
unhex() {
    sed 's/#.*//' | tr -d ' \t\r\n' | xxd -r -p
}

# seed TARGET NAME SELECTOR|- : stdin becomes corpus/TARGET/NAME, after the
# selector byte unless it is '-'.
seed() {
    {
        [ "$3" = - ] || byte "$3"
        cat
    } >"$OUT/$1/$2"
}

mkdir -p "$OUT/fuzz_proto" "$OUT/fuzz_pkg" "$OUT/fuzz_conf" "$OUT/fuzz_state" \
    "$OUT/fuzz_ledger" "$OUT/fuzz_keyset"

# --- fuzz_proto: the decoder vectors ---------------------------------------------
skipped=0
for kind in announce offer status manifest frag ack verdict; do
    case $kind in
    announce) sel=$SEL_ANNOUNCE ;;
    offer) sel=$SEL_OFFER ;;
    status) sel=$SEL_STATUS ;;
    manifest) sel=$SEL_MANIFEST ;;
    frag) sel=$SEL_FRAG ;;
    ack) sel=$SEL_ACK ;;
    verdict) sel=$SEL_VERDICT ;;
    esac
    for f in tests/vectors/$kind/*; do
        [ -f "$f" ] || continue
        if [ "$(wc -c <"$f")" -gt "$SEED_MAX" ]; then
            skipped=$((skipped + 1))
            continue
        fi
        name=$(basename "$f")
        case $f in
        *.hex) unhex <"$f" | seed fuzz_proto "$kind-${name%.*}" "$sel" ;;
        *) seed fuzz_proto "$kind-${name%.*}" "$sel" <"$f" ;;
        esac
    done
done

# Rollout control messages (there are no control vectors in tests/vectors).
n=0
while IFS= read -r line; do
    n=$((n + 1))
    printf '%s' "$line" | seed fuzz_proto "control-$n" "$SEL_CONTROL"
done <<'EOF'
{"action":"pause"}
{"action":"resume"}
{"action":"abort","release":"0123456789abcdef"}
{"action":"pause","release":"fedcba9876543210","extra":[1,{"a":null}]}
{"action":"stop"}
{}
{"action":1}
{"action":"pause","release":"0123456789ABCDEF"}
{"action":"pause","release":"0123"}
{"action":"pause","release":null}
["pause"]
{"action":"pause"} x
{"action":"pa\u0000use"}
EOF

# Text helpers: versions, ids, state names, hex.
n=0
while IFS= read -r line; do
    n=$((n + 1))
    printf '%s' "$line" | seed fuzz_proto "text-$n" "$SEL_TEXT"
done <<'EOF'
1.0.0
999999.999999.999999
1000000.0.0
01.0.0
1.0
-1.0.0
sensor-1_a.B
.hidden
rolled_back
downloading
00112233445566778899aabbccddeeff00112233445566778899aabbccddeeFF
EOF

# --- fuzz_pkg: signed packages ---------------------------------------------------
# RFC 8032 section 7.1 TEST 1 private key, as PKCS#8 DER.
printf '302e020100300506032b657004220420%s' \
    9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60 |
    xxd -r -p >"$TMP/key.der"

# pkg MANIFEST_FILE PAYLOAD_FILE: a signed package on stdout.
pkg() {
    openssl pkeyutl -sign -rawin -keyform DER -inkey "$TMP/key.der" \
        -in "$1" -out "$TMP/sig"
    printf 'OTAPKG01'
    le32 "$(wc -c <"$1")"
    le32 64
    cat "$1" "$TMP/sig" "$2"
}

printf 'hello, fleet\n' >"$TMP/payload"
size=$(wc -c <"$TMP/payload")
sha=$(sha256sum "$TMP/payload" | cut -d' ' -f1)
printf '{"format":1,"product":"sensor","version":"1.1.0","size":%d,"sha256":"%s","created":1700000000}' \
    "$size" "$sha" >"$TMP/manifest"
pkg "$TMP/manifest" "$TMP/payload" >"$TMP/ok.pkg"
total=$(wc -c <"$TMP/ok.pkg")

seed fuzz_pkg ok - <"$TMP/ok.pkg"
{ cat "$TMP/ok.pkg"; printf 'x'; } | seed fuzz_pkg payload-long-by-one -
head -c $((total - 1)) "$TMP/ok.pkg" | seed fuzz_pkg payload-short-by-one -
head -c $((total - size)) "$TMP/ok.pkg" | seed fuzz_pkg payload-missing -
head -c $((total - size - 1)) "$TMP/ok.pkg" | seed fuzz_pkg sig-truncated -
head -c 16 "$TMP/ok.pkg" | seed fuzz_pkg header-only -
head -c 15 "$TMP/ok.pkg" | seed fuzz_pkg header-short -
printf 'hello, fleet?' >"$TMP/payload2"
pkg "$TMP/manifest" "$TMP/payload2" | seed fuzz_pkg payload-digest-mismatch -
{ printf 'OTAPKG02'; tail -c +9 "$TMP/ok.pkg"; } | seed fuzz_pkg bad-magic -
{ printf 'OTAPKG01'; le32 0; le32 64; } | seed fuzz_pkg manifest-len-0 -
{ printf 'OTAPKG01'; le32 16385; le32 64; } | seed fuzz_pkg manifest-len-16385 -
{ head -c 12 "$TMP/ok.pkg"; le32 63; tail -c +17 "$TMP/ok.pkg"; } |
    seed fuzz_pkg sig-len-63 -
# the signature's last byte flipped
{
    head -c $((total - size - 1)) "$TMP/ok.pkg"
    byte $(($(tail -c $((size + 1)) "$TMP/ok.pkg" | head -c 1 | od -An -tu1) ^ 1))
    cat "$TMP/payload"
} | seed fuzz_pkg sig-flipped -
: >"$TMP/empty"
for f in tests/vectors/manifest/ok-*.json; do
    [ "$(wc -c <"$f")" -le "$SEED_MAX" ] || continue
    name=$(basename "$f" .json)
    pkg "$f" "$TMP/empty" | seed fuzz_pkg "manifest-$name" -
done

# --- fuzz_conf: configuration files ----------------------------------------------
for f in deploy/*.conf.example; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .conf.example)
    seed fuzz_conf "example-$name" - <"$f"
done
: | seed fuzz_conf empty -
conf() { printf '%b' "$2" | seed fuzz_conf "$1" -; }
conf all-keys 'broker_host = broker\nbroker_port = 1\nca_file = /etc/ota/ca.crt\nid = dev-001\nlog_level = debug\none = ""\nfragment_size = 65536\nwindow = 256\nany = 4294967295\nzero = 0\nverbose = yes\njson = 0\n'
conf quoted 'broker_host = "a # not a comment" # a comment\nid="x"\n'
conf unbalanced-quotes 'broker_host = "abc\n'
conf text-after-quote 'broker_host = "abc" def\n'
conf comment-only '# nothing here\n\n   \t# indented\n'
conf comment-after-value 'window = 8 # eight\n'
conf no-equals 'broker_host localhost\n'
conf unknown-key 'brokr_host = x\n'
conf dash-key 'broker-port = 1883\n'
conf empty-key ' = x\n'
conf empty-value 'id =\n'
conf crlf 'id = a\r\nwindow = 2\r\n'
conf no-final-newline 'window = 3'
conf u32-overflow 'any = 4294967296\n'
conf u64-overflow 'any = 18446744073709551616\n'
conf u32-sign 'window = -1\nwindow = +1\n'
conf u32-space 'window = 1 2\n'
conf u32-hex 'window = 0x10\n'
conf out-of-range 'fragment_size = 159\n'
conf zero-max 'zero = 1\n'
conf str-too-long 'log_level = warning!\n'
conf str-one 'one = x\n'
conf bool-words 'verbose = true\nverbose = no\njson = 1\njson = maybe\n'
conf equals-in-value 'ca_file = a=b\n'
conf hash-before-equals '#id = x\nid # = y\n'
conf nul-byte 'id = a\0b\nwindow = 2\n'
head -c 2100 /dev/zero | tr '\0' a | { printf 'id = '; cat; echo; } |
    seed fuzz_conf line-too-long -
head -c 2040 /dev/zero | tr '\0' a | { printf 'ca_file = '; cat; echo; } |
    seed fuzz_conf line-2050 -

# --- fuzz_state: the device's state.json ------------------------------------------
# The signed manifest of a package with a block table, as the device keeps it.
MAN=$(tr -d '\n' <tests/vectors/manifest/ok-blocks.json)
cp tests/vectors/manifest/ok-blocks.json "$TMP/man-blocks"
openssl pkeyutl -sign -rawin -keyform DER -inkey "$TMP/key.der" \
    -in "$TMP/man-blocks" -out "$TMP/sig-blocks"
SIG=$(xxd -p "$TMP/sig-blocks" | tr -d '\n')
ZSIG=$(head -c 64 /dev/zero | xxd -p | tr -d '\n')
REL=0123456789abcdef
MANJ=$(printf '%s' "$MAN" | sed 's/"/\\"/g')
# st NAME VERSION SLOT PHASE RELEASE MANIFEST SIG FS FRAGS WIN HELD PREV ERROR TA TD TV TI TR TU REFUSED TABLE
st() {
    n=$1
    shift
    printf '{"version":"%s","slot":"%s","phase":"%s","release":"%s","manifest":"%s","sig":"%s","fragment_size":%s,"fragments":%s,"window":%s,"held":%s,"prev_version":"%s","error":"%s","t_accept":%s,"t_downloaded":%s,"t_verified":%s,"t_installed":%s,"t_restart":%s,"t_up":%s,"refused":"%s","table_fragments":%s}' \
        "$@" | seed fuzz_state "$n" -
}
st fresh 1.0.0 a idle "" "" "$ZSIG" 0 0 0 0 "" "" 0 0 0 0 0 0 "" 0
st downloading 1.0.0 a downloading $REL "$MANJ" "$SIG" 1024 2 16 1 "" "" 1700000000000 0 0 0 0 0 "" 1
st downloading-held-all 1.0.0 a downloading $REL "$MANJ" "$SIG" 1024 2 16 3 "" "" 1700000000000 0 0 0 0 0 "" 1
st verifying 1.0.0 a verifying $REL "$MANJ" "$SIG" 1024 2 16 3 "" "" 1700000000000 1700000001000 0 0 0 0 "" 1
st restarting 1.1.0 b restarting $REL "$MANJ" "$SIG" 1024 2 16 3 1.0.0 "" 1700000000000 1700000001000 1700000001100 1700000001200 1700000001300 0 "" 1
st committed 1.1.0 b committed $REL "$MANJ" "$SIG" 1024 2 16 3 1.0.0 "" 1700000000000 1700000001000 1700000001100 1700000001200 1700000001300 1700000001500 "" 1
st rolled-back 1.0.0 a rolled_back $REL "$MANJ" "$SIG" 1024 2 16 3 1.0.0 'health check failed: exit 3' 1700000000000 1700000001000 1700000001100 1700000001200 1700000001300 0 $REL 1
st failed-utf8 1.0.0 a failed $REL "" "$ZSIG" 0 0 0 0 "" 'caf\u00e9 \"quoted\"' 0 0 0 0 0 0 "" 0
st bad-held-beyond 1.0.0 a downloading $REL "$MANJ" "$SIG" 1024 2 16 92 "" "" 1700000000000 0 0 0 0 0 "" 1
st bad-held-negative 1.0.0 a downloading $REL "$MANJ" "$SIG" 1024 2 16 -1 "" "" 1700000000000 0 0 0 0 0 "" 1
st bad-fragments-huge 1.0.0 a downloading $REL "$MANJ" "$SIG" 1024 4294967296 16 1 "" "" 1700000000000 0 0 0 0 0 "" 1
st bad-slot 1.0.0 c idle "" "" "$ZSIG" 0 0 0 0 "" "" 0 0 0 0 0 0 "" 0
st bad-phase 1.0.0 a installed "" "" "$ZSIG" 0 0 0 0 "" "" 0 0 0 0 0 0 "" 0
st bad-release-upper 1.0.0 a idle 0123456789ABCDEF "" "$ZSIG" 0 0 0 0 "" "" 0 0 0 0 0 0 "" 0
st bad-sig-short 1.0.0 a idle "" "" "00ff" 0 0 0 0 "" "" 0 0 0 0 0 0 "" 0
st bad-version 1.0 a idle "" "" "$ZSIG" 0 0 0 0 "" "" 0 0 0 0 0 0 "" 0
st bad-time-negative 1.0.0 a committed $REL "" "$ZSIG" 0 0 0 0 "" "" -5 0 0 0 0 0 "" 0
printf '{"version":"1.0.0","slot":"a","phase":"idle","release":"","manifest":"","sig":""}' |
    seed fuzz_state old-minimal -
# An encoded download (PROTOCOL.md 6.4): a delta's base and the decoder's checkpoint.
printf '%s\n' '{"version":"1.0.0","slot":"a","phase":"downloading","release":"0123456789abcdef","manifest":"","sig":"","fragment_size":1024,"fragments":2,"window":16,"held":1,"table_fragments":1,"encoding":"delta","payload_size":1500,"zoff":1024,"zimg":4096,"base":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}' |
    seed fuzz_state delta-downloading -
printf '%s\n' '{"version":"1.0.0","slot":"a","phase":"downloading","release":"0123456789abcdef","manifest":"","sig":"","fragment_size":1024,"fragments":2,"window":16,"held":1,"table_fragments":1,"encoding":"zstd","payload_size":1500,"zoff":2000,"zimg":0}' |
    seed fuzz_state bad-zoff-beyond -
printf '{"version":"1.0.0","slot":"a","phase":"idle","release":"","manifest":"","sig":"","phase":"failed"}' |
    seed fuzz_state bad-duplicate -
# The highest gateway epoch seen (PROTOCOL.md 5.2), in range and out of it.
for e in gw-epoch:7 bad-gw-epoch-negative:-1 bad-gw-epoch-2pow32:4294967296; do
    sed -e 's/}$/,"gw_epoch":'"${e#*:}"'}/' "$OUT/fuzz_state/committed" | seed fuzz_state "${e%%:*}" -
done
head -c 100 "$OUT/fuzz_state/downloading" | seed fuzz_state power-cut-truncated -
: | seed fuzz_state power-cut-empty -
head -c 300 /dev/zero | seed fuzz_state power-cut-zeros -

# --- fuzz_ledger: ledgers, one record a line -------------------------------------
# The release of the block-table manifest above: id = first 8 bytes of its SHA-256.
RID=$(sha256sum "$TMP/man-blocks" | cut -c1-16)
RREC=$(printf '{"release":"%s","product":"sensor","version":"1.1.0","size":1234,"path":"/var/lib/ota/store/%s.pkg","manifest":"%s","sig":"%s","payload_off":%d,"fragment_size":1024,"fragments":3,"window":16,"group":"","devices":null,"created_ms":1700000000000,"campaign":{"state":"rolling","paused":false,"aborted":false,"canary":false,"pause_reason":"","canary_quota":0,"started":2,"active":1,"committed":1,"failed":0,"concurrency":0,"canary_percent":0,"canary_success_percent":0,"pause_failure_percent":0},"table_fragments":1,"block_size":4096,"fetch_ms":12,"verify_ms":3}' \
    "$RID" "$RID" "$MANJ" "$SIG" $((16 + $(wc -c <"$TMP/man-blocks") + 64)))
# dev ID STATE VERSION RELEASE ACKED FRAGS SENT RESENT ERROR TIMINGS FINISHED
dev() {
    printf 'd %s {"device":"%s","product":"sensor","version":"%s","group":"g1","state":"%s","online":true,"release":"%s","failed_release":"","acked":%s,"fragments":%s,"frags_sent":%s,"frags_resent":%s,"error":"%s","timings":%s,"offered_ms":1700000000100,"transferred_ms":1700000001000,"finished_ms":%s,"seen_ms":1700000002000}\n' \
        "$1" "$1" "$3" "$2" "$4" "$5" "$6" "$7" "$8" "$9" "${10}" "${11}"
}
# ev SEQ EVENT DEVICE RELEASE DETAIL
ev() {
    printf 'e %016x {"ts":1700000000%03d,"event":"%s","device":"%s","release":"%s","detail":"%s"}\n' \
        "$1" "$1" "$2" "$3" "$4" "$5"
}
{
    printf 'r %s %s\n' "$RID" "$RREC"
    dev dev-001 committed 1.1.0 "$RID" 3 3 4 1 "" '{"download_ms":900,"verify_ms":3,"install_ms":40,"restart_ms":200,"total_ms":1200}' 1700000003000
    dev dev-002 downloading 1.0.0 "$RID" 1 3 2 0 "" '{}' 0
    dev dev-003 idle 1.0.0 "" 0 0 0 0 "" '{}' 0
    ev 1 release_verified "" "$RID" "sensor 1.1.0"
    ev 2 offered dev-001 "$RID" ""
    ev 3 offered dev-002 "$RID" ""
    ev 4 committed dev-001 "$RID" "1.1.0"
    printf 'm version {"format":1}\n'
} >"$TMP/ledger"
seed fuzz_ledger consistent - <"$TMP/ledger"
# dev-003 failed the release (failed_releases, and failed_release the latest) and a meta
# record fsck knows: fsck finds it consistent, so the gateway must read the list as recorded.
sed -e "s/\"release\":\"\",\"failed_release\":\"\",\"acked\":0/\"release\":\"\",\"failed_release\":\"$RID\",\"failed_releases\":[{\"release\":\"$RID\",\"state\":\"failed\"}],\"acked\":0/" \
    -e 's/^m version .*/m canary_key 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff/' \
    "$TMP/ledger" | seed fuzz_ledger failed-releases -
# The same with one thing wrong each (what fsck must report, the gateway survive).
sed 's/"acked":3,/"acked":4,/' "$TMP/ledger" | seed fuzz_ledger acked-beyond -
sed 's/"acked":1,/"acked":-1,/' "$TMP/ledger" | seed fuzz_ledger acked-negative -
sed 's/"frags_resent":1,/"frags_resent":9223372036854775807,/' "$TMP/ledger" | seed fuzz_ledger resent-huge -
sed 's/"acked":1,"fragments":3/"acked":9223372036854775807,"fragments":1/' "$TMP/ledger" | seed fuzz_ledger acked-overflow -
sed 's/"offered_ms":1700000000100/"offered_ms":-9223372036854775807/' "$TMP/ledger" | seed fuzz_ledger offered-negative -
sed 's/"ts":1700000000004/"ts":-1/' "$TMP/ledger" | seed fuzz_ledger event-ts-negative -
sed '/^e 0000000000000003/d' "$TMP/ledger" | seed fuzz_ledger event-missing -
sed 's/"started":2,"active":1/"started":0,"active":1/' "$TMP/ledger" | seed fuzz_ledger campaign-counts -
sed 's/"state":"rolling"/"state":"sideways"/' "$TMP/ledger" | seed fuzz_ledger campaign-state -
sed 's/"device":"dev-002"/"device":"dev-002","device":"x"/' "$TMP/ledger" | seed fuzz_ledger duplicate-member -
sed 's|"version":"1.0.0","group":"g1","state":"idle"|"version":"1.0","group":"g/1","state":"idle"|' "$TMP/ledger" | seed fuzz_ledger bad-strings -
sed 's/"timings":{}/"timings":{"download_ms":-5,"total_ms":"x"}/' "$TMP/ledger" | seed fuzz_ledger bad-timings -
sed 's/^d dev-003 .*/d dev-003 {"device":"dev-003"/' "$TMP/ledger" | seed fuzz_ledger power-cut-record -
sed 's/^d dev-003 .*/d dev-003 [1,2,3]/' "$TMP/ledger" | seed fuzz_ledger not-object -
sed 's/^e 0000000000000002/e 02/' "$TMP/ledger" | seed fuzz_ledger event-key-short -
sed "s/^r $RID/r 0123456789ABCDEF/" "$TMP/ledger" | seed fuzz_ledger release-key-bad -
sed 's/"manifest":"{/"manifest":"[/' "$TMP/ledger" | seed fuzz_ledger manifest-bad -
grep '^[de]' "$TMP/ledger" | seed fuzz_ledger release-missing -
: | seed fuzz_ledger empty -

# --- fuzz_keyset: the key set vectors, and envelopes the TEST 1 key signed -------
for f in "$ROOT"/tests/vectors/keyset/*.json; do
    name=${f##*/}
    seed fuzz_keyset "vector-${name%.json}" - <"$f"
done
ROOTPUB=d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a
OTHER=3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c
# signed_env NAME BODY: the envelope of BODY with one signature by the TEST 1 key.
signed_env() {
    printf '%s' "$2" >"$TMP/ksbody"
    openssl pkeyutl -sign -rawin -keyform DER -inkey "$TMP/key.der" \
        -in "$TMP/ksbody" -out "$TMP/kssig"
    sig=$(od -An -tx1 "$TMP/kssig" | tr -d ' \n')
    jq -nc --rawfile b "$TMP/ksbody" --arg k "$ROOTPUB" --arg s "$sig" \
        '{signed:$b, signatures:[{key:$k, sig:$s}]}' | seed fuzz_keyset "$1" -
}
signed_env signed-v1 '{"type":"ota-keyset","version":1,"created":1700000000,"expires":1900000000,"root":{"threshold":1,"keys":["'$ROOTPUB'"]},"publishers":[{"product":"sensor","key":"'$OTHER'"}]}'
signed_env signed-star '{"type":"ota-keyset","version":7,"created":1700000000,"expires":1900000000,"root":{"threshold":1,"keys":["'$ROOTPUB'"]},"publishers":[{"product":"*","key":"'$OTHER'"},{"product":"meter","key":"'$ROOTPUB'"}]}'
signed_env signed-rotation '{"type":"ota-keyset","version":2,"created":1700000000,"expires":1900000000,"root":{"threshold":1,"keys":["'$OTHER'"]},"publishers":[]}'
signed_env signed-threshold-2 '{"type":"ota-keyset","version":3,"created":1700000000,"expires":1900000000,"root":{"threshold":2,"keys":["'$ROOTPUB'","'$OTHER'"]},"publishers":[]}'

# --- fuzz_delta: payloads made by the zstd tool (its --patch-from) ---------------
mkdir -p "$OUT/fuzz_delta"
# The fixed base of fuzz_delta.c, and an image: the base's first 6000 bytes edited.
python3 -c 'import sys; sys.stdout.buffer.write(bytes(97 + (i * 7 + i // 251) % 26 for i in range(65536)))' >"$TMP/base"
head -c 6000 "$TMP/base" | sed 's/abc/XYZ/g' >"$TMP/img"
# dhdr SEL SIZE PIECE: selector, image size (u24 LE), piece byte.
dhdr() {
    byte "$1"
    byte $(($2 & 255))
    byte $(($2 >> 8 & 255))
    byte $(($2 >> 16 & 255))
    byte "$3"
}
zstd -q -c -19 "$TMP/img" >"$TMP/img.zst"
zstd -q -c -19 --patch-from="$TMP/base" "$TMP/img" >"$TMP/img.delta"
{ dhdr 0 6000 3; cat "$TMP/img.zst"; } | seed fuzz_delta zstd -
{ dhdr 0 6000 0; cat "$TMP/img.zst"; } | seed fuzz_delta zstd-bytewise -
{ dhdr 1 6000 63; cat "$TMP/img.delta"; } | seed fuzz_delta delta -
{ dhdr 1 6000 63; head -c 40 "$TMP/img.delta"; } | seed fuzz_delta delta-truncated -
{ dhdr 1 5000 63; cat "$TMP/img.delta"; } | seed fuzz_delta delta-wrong-size -
{ dhdr 0 6000 1; cat "$TMP/img.zst" "$TMP/img.zst"; } | seed fuzz_delta zstd-twice -
{ dhdr 0 6000 1; zstd -q -c --no-content-size <"$TMP/img"; } | seed fuzz_delta no-content-size -
{ byte 2; cat "$TMP/img"; } | seed fuzz_delta round-img -
{ byte 2; head -c 3000 /dev/zero; } | seed fuzz_delta round-zeros -

for t in fuzz_proto fuzz_pkg fuzz_conf fuzz_state fuzz_ledger fuzz_keyset fuzz_delta; do
    echo "$OUT/$t: $(find "$OUT/$t" -type f | wc -l) files, $(du -sk "$OUT/$t" | cut -f1) KiB"
done
[ "$skipped" = 0 ] || echo "($skipped vectors over $SEED_MAX bytes left out)"
