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
#
# Vectors larger than SEED_MAX bytes are left out. The corpus directories are
# replaced; tests/fuzz/crashes/ is never touched. Needs xxd and openssl.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SEED_MAX=17000
OUT=tests/fuzz/corpus
TMP=$(mktemp -d /tmp/ota-fuzz-seeds.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# The selector bytes of fuzz_proto.c (enum fproto_sel).
SEL_ANNOUNCE=0 SEL_OFFER=1 SEL_STATUS=2 SEL_MANIFEST=3 SEL_CONTROL=4
SEL_FRAG=5 SEL_ACK=6 SEL_TEXT=7 SEL_VERDICT=8

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

rm -rf "$OUT/fuzz_proto" "$OUT/fuzz_pkg" "$OUT/fuzz_conf"
mkdir -p "$OUT/fuzz_proto" "$OUT/fuzz_pkg" "$OUT/fuzz_conf"

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

for t in fuzz_proto fuzz_pkg fuzz_conf; do
    echo "$OUT/$t: $(find "$OUT/$t" -type f | wc -l) files, $(du -sk "$OUT/$t" | cut -f1) KiB"
done
[ "$skipped" = 0 ] || echo "($skipped vectors over $SEED_MAX bytes left out)"
