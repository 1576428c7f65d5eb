#!/usr/bin/env bash
# The publisher's and operator's command line, without a broker: keygen, pack and
# verify (with every kind of damaged package), configuration checks (--check),
# --help, unknown commands and options, status of a missing ledger.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

G=$BUILD/ota-gateway
D=$BUILD/ota-device

# fails_with PATTERN CMD [ARGS...]: CMD exits non-zero on its own (not killed by a
# signal, no sanitizer report) and its stderr matches PATTERN (grep -Ei). The output is
# printed so that a failing check shows it.
fails_with() {
    local pat=$1 rc=0
    shift
    "$@" >"$T/cmd.out" 2>"$T/cmd.err" </dev/null || rc=$?
    cat "$T/cmd.out" "$T/cmd.err"
    echo "(exit status $rc)"
    [ "$rc" != 0 ] && [ "$rc" -lt 128 ] || return 1
    ! grep -qE 'Sanitizer|runtime error:' "$T/cmd.err" || return 1
    grep -qEi -- "$pat" "$T/cmd.err"
}

# succeeds_with PATTERN CMD [ARGS...]: CMD exits 0, its stdout matches PATTERN (grep -E),
# and it writes no sanitizer report.
succeeds_with() {
    local pat=$1 rc=0
    shift
    "$@" >"$T/cmd.out" 2>"$T/cmd.err" </dev/null || rc=$?
    cat "$T/cmd.out" "$T/cmd.err"
    echo "(exit status $rc)"
    [ "$rc" = 0 ] || return 1
    ! grep -qE 'Sanitizer|runtime error:' "$T/cmd.err" || return 1
    grep -qE -- "$pat" "$T/cmd.out"
}

# --- keygen -------------------------------------------------------------------------------

check "keygen writes a key pair" succeeds_with 'k\.key' "$G" keygen --out "$T/k"
check "the private key is mode 0600" test "$(stat -c %a "$T/k.key" 2>&1)" = 600
check "the public key is a PEM public key" grep -q 'BEGIN PUBLIC KEY' "$T/k.pub"
cp "$T/k.key" "$T/k.key.orig" 2>/dev/null
cp "$T/k.pub" "$T/k.pub.orig" 2>/dev/null
check "keygen refuses to overwrite an existing key" \
    fails_with 'overwrite' "$G" keygen --out "$T/k"
check "and the key pair is unchanged" \
    bash -c "cmp -s '$T/k.key' '$T/k.key.orig' && cmp -s '$T/k.pub' '$T/k.pub.orig'"
check "keygen without --out fails" fails_with 'out' "$G" keygen
"$G" keygen --out "$T/other" >/dev/null 2>&1

# --- pack and verify ----------------------------------------------------------------------

make_payload "$T/fw.bin" 5000
SHA=$(sha256sum "$T/fw.bin" | cut -d' ' -f1)
check "pack signs a payload" \
    succeeds_with "sha256=$SHA" "$G" pack --key "$T/k.key" --product sensor \
    --version 1.1.0 --payload "$T/fw.bin" --out "$T/good.ota"
check "pack leaves no temporary file" test ! -e "$T/good.ota.tmp"
check "verify accepts it and prints product, version, size and sha256" \
    succeeds_with "product +sensor" "$G" verify --pubkey "$T/k.pub" "$T/good.ota"
check "  version" grep -qE '^ +version +1\.1\.0$' "$T/cmd.out"
check "  size" grep -qE '^ +size +5000$' "$T/cmd.out"
check "  sha256" grep -qE "^ +sha256 +$SHA\$" "$T/cmd.out"
check "verify --json prints the manifest" \
    succeeds_with '^\{' "$G" verify --pubkey "$T/k.pub" --json "$T/good.ota"
check "  with the right version, product, size and sha256" \
    test "$(jq -r '"\(.version) \(.product) \(.size) \(.sha256)"' "$T/cmd.out" 2>&1)" \
    = "1.1.0 sensor 5000 $SHA"

size=$(stat -c %s "$T/good.ota")
mlen=$(od -An -tu4 -j8 -N4 "$T/good.ota" | tr -d ' ')
check "the package is header + manifest + signature + payload" \
    test "$size" = $((16 + mlen + 64 + 5000))

# flip_byte FILE OFFSET: xor the byte at OFFSET with 0x01.
flip_byte() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\$(printf %03o $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

cp "$T/good.ota" "$T/flip.ota"
flip_byte "$T/flip.ota" $((size - 1000))
check "verify refuses a flipped payload byte (digest)" \
    fails_with 'SHA-256|digest' "$G" verify --pubkey "$T/k.pub" "$T/flip.ota"

{ cat "$T/good.ota"; printf 'xyz'; } >"$T/long.ota"
check "verify refuses a payload with bytes appended (longer than signed)" \
    fails_with '3 bytes longer than signed' "$G" verify --pubkey "$T/k.pub" "$T/long.ota"

head -c $((size - 10)) "$T/good.ota" >"$T/short.ota"
check "verify refuses a truncated payload (shorter than signed)" \
    fails_with '10 bytes shorter than signed' "$G" verify --pubkey "$T/k.pub" "$T/short.ota"

# Inside the manifest, change the product "sensor" to "sensos": still valid JSON and a
# valid name, but not what was signed.
off=$(grep -obUa 'sensor' "$T/good.ota" | head -n 1 | cut -d: -f1)
cp "$T/good.ota" "$T/man.ota"
[ -n "$off" ] && [ "$off" -gt 16 ] && flip_byte "$T/man.ota" $((off + 5))
check "the manifest byte was changed" bash -c "grep -qa sensos '$T/man.ota'"
check "verify refuses a changed manifest byte (signature)" \
    fails_with 'signature does not verify' "$G" verify --pubkey "$T/k.pub" "$T/man.ota"

head -c $((16 + mlen + 30)) "$T/good.ota" >"$T/sigcut.ota"
check "verify refuses a file cut inside the signature (truncated)" \
    fails_with 'truncated' "$G" verify --pubkey "$T/k.pub" "$T/sigcut.ota"

check "verify refuses a package signed by another key" \
    fails_with 'signature does not verify' "$G" verify --pubkey "$T/other.pub" "$T/good.ota"

head -c 4096 /dev/zero | tr '\0' 'A' >"$T/notpkg.ota"
check "verify refuses a file that is not a package (magic)" \
    fails_with 'not an OTA package' "$G" verify --pubkey "$T/k.pub" "$T/notpkg.ota"

: >"$T/empty.ota"
check "verify refuses an empty file" \
    fails_with 'header|empty' "$G" verify --pubkey "$T/k.pub" "$T/empty.ota"

check "verify of a missing package fails" \
    fails_with 'No such file' "$G" verify --pubkey "$T/k.pub" "$T/missing.ota"
check "verify with a public key that is not Ed25519 fails" \
    fails_with 'not an Ed25519 public key' "$G" verify --pubkey "$T/fw.bin" "$T/good.ota"

# --- pack refusals ------------------------------------------------------------------------

# pack_refuses PATTERN OUT [PACK ARGS...]: pack fails with PATTERN and writes neither OUT
# nor OUT.tmp.
pack_refuses() {
    local pat=$1 out=$2
    shift 2
    fails_with "$pat" "$G" pack --out "$out" "$@" || return 1
    [ ! -e "$out" ] && [ ! -e "$out.tmp" ] || { echo "$out was written"; return 1; }
}

cp "$T/k.key" "$T/open.key"
chmod 0644 "$T/open.key"
check "pack refuses a private key with mode 0644 (chmod 600)" \
    pack_refuses 'chmod 600' "$T/p1.ota" --key "$T/open.key" --product sensor \
    --version 1.1.0 --payload "$T/fw.bin"
check "pack refuses version 1.2" \
    pack_refuses "'1\\.2'.*MAJOR\\.MINOR\\.PATCH" "$T/p2.ota" --key "$T/k.key" \
    --product sensor --version 1.2 --payload "$T/fw.bin"
check "pack refuses product bad/name" \
    pack_refuses "'bad/name'" "$T/p3.ota" --key "$T/k.key" --product bad/name \
    --version 1.1.0 --payload "$T/fw.bin"
: >"$T/empty.bin"
check "pack refuses an empty payload" \
    pack_refuses 'payload is empty' "$T/p4.ota" --key "$T/k.key" --product sensor \
    --version 1.1.0 --payload "$T/empty.bin"
check "pack refuses a missing payload file" \
    pack_refuses 'nope\.bin.*No such file' "$T/p5.ota" --key "$T/k.key" --product sensor \
    --version 1.1.0 --payload "$T/nope.bin"
check "pack refuses a missing --key" \
    pack_refuses 'key is required' "$T/p6.ota" --product sensor --version 1.1.0 \
    --payload "$T/fw.bin"

# --- configuration checks -----------------------------------------------------------------

certs_make dev-001 >/dev/null 2>&1
check "certs_make made the certificates" test -s "$CERTS/gateway.crt"

gw_conf() {
    cat <<EOF
# gateway test configuration
broker_host = localhost
broker_port = 8883

ca_file = $CERTS/ca.crt
cert_file = $CERTS/gateway.crt
key_file = $CERTS/gateway.key    # mode 0600
publisher_key = $CERTS/publisher.pub
db_dir = $T/gw-db
store_dir = $T/gw-store
window = 16
fragment_size = 1024
log_level = debug
EOF
}

gw_conf >"$T/gw.conf"
check "run --check accepts a valid file" \
    succeeds_with 'configuration OK' "$G" run -c "$T/gw.conf" --check

{ gw_conf; echo 'colour = blue'; } >"$T/gw-unknown.conf"
line=$(grep -n '^colour' "$T/gw-unknown.conf" | cut -d: -f1)
check "run --check refuses an unknown key, naming FILE:LINE and the key" \
    fails_with "$T/gw-unknown.conf:$line:.*colour" "$G" run -c "$T/gw-unknown.conf" --check

gw_conf | grep -v '^publisher_key' >"$T/gw-nopub.conf"
check "run --check refuses a missing publisher_key, naming it" \
    fails_with 'publisher_key' "$G" run -c "$T/gw-nopub.conf" --check

gw_conf | sed 's/^window = 16$/window = 0/' >"$T/gw-window.conf"
line=$(grep -n '^window' "$T/gw-window.conf" | cut -d: -f1)
check "run --check refuses window = 0, naming FILE:LINE and the key" \
    fails_with "$T/gw-window.conf:$line:.*window" "$G" run -c "$T/gw-window.conf" --check

gw_conf | sed 's/^broker_port = 8883$/broker_port = 70000/' >"$T/gw-port.conf"
line=$(grep -n '^broker_port' "$T/gw-port.conf" | cut -d: -f1)
check "run --check refuses broker_port = 70000, naming FILE:LINE and the key" \
    fails_with "$T/gw-port.conf:$line:.*broker_port" "$G" run -c "$T/gw-port.conf" --check

check "a flag overrides the file: --window 0 is refused" \
    fails_with 'window' "$G" run -c "$T/gw.conf" --window 0 --check
check "a flag overrides the file: a missing CA file is refused" \
    fails_with "$T/nope.crt" "$G" run -c "$T/gw.conf" --ca-file "$T/nope.crt" --check
check "run --check with a missing config file names it" \
    fails_with "$T/nope.conf" "$G" run -c "$T/nope.conf" --check
check "run --check refuses a publisher key that is not Ed25519" \
    fails_with 'Ed25519' "$G" run -c "$T/gw.conf" --publisher-key "$CERTS/ca.crt" --check

dev_conf() {
    cat <<EOF
id = dev-001
product = sensor
version = 1.0.0
ca_file = $CERTS/ca.crt
cert_file = $CERTS/devices/dev-001.crt
key_file = $CERTS/devices/dev-001.key
publisher_key = $CERTS/publisher.pub
state_dir = $T/dev-state   # slots live here
EOF
}

dev_conf >"$T/dev.conf"
check "ota-device --check accepts a valid file" \
    succeeds_with 'configuration OK' "$D" -c "$T/dev.conf" --check

dev_conf | sed 's|^id = dev-001$|id = a/b|' >"$T/dev-id.conf"
check "ota-device --check refuses id a/b, naming the key" \
    fails_with "'id'.*a/b" "$D" -c "$T/dev-id.conf" --check

dev_conf | sed 's/^version = 1.0.0$/version = 1.0/' >"$T/dev-ver.conf"
check "ota-device --check refuses version 1.0, naming the key" \
    fails_with "'version'.*1\\.0" "$D" -c "$T/dev-ver.conf" --check

{ dev_conf; echo 'speed = 9'; } >"$T/dev-unknown.conf"
line=$(grep -n '^speed' "$T/dev-unknown.conf" | cut -d: -f1)
check "ota-device --check refuses an unknown key, naming FILE:LINE and the key" \
    fails_with "$T/dev-unknown.conf:$line:.*speed" "$D" -c "$T/dev-unknown.conf" --check

dev_conf | grep -v '^publisher_key' >"$T/dev-nopub.conf"
check "ota-device --check refuses a missing publisher_key, naming it" \
    fails_with 'publisher_key' "$D" -c "$T/dev-nopub.conf" --check

check "ota-device: a flag overrides the file (--version 2.0.0 is fine)" \
    succeeds_with 'configuration OK' "$D" -c "$T/dev-ver.conf" --version 2.0.0 --check

# --- private keys readable by group or others are refused at start ---------------------

# refuses_key MODE FILE CMD [ARGS...]: with FILE at MODE, CMD fails at once naming FILE,
# its mode and the chmod to run; FILE goes back to 0600 afterwards.
refuses_key() {
    local mode=$1 file=$2 rc=0
    shift 2
    chmod "$mode" "$file"
    fails_with "is accessible by group or others \\(mode 0$mode\\): run chmod 600 $file" \
        timeout 10 "$@" || rc=1
    chmod 600 "$file"
    return "$rc"
}
check "run --check refuses a gateway key_file with mode 0644, with the chmod to run" \
    refuses_key 644 "$CERTS/gateway.key" "$G" run -c "$T/gw.conf" --check
check "  so does run itself, before connecting" \
    refuses_key 640 "$CERTS/gateway.key" "$G" run -c "$T/gw.conf" --broker-port 1
check "ota-device --check refuses a key_file with mode 0640" \
    refuses_key 640 "$CERTS/devices/dev-001.key" "$D" -c "$T/dev.conf" --check
check "  so does ota-device itself" \
    refuses_key 604 "$CERTS/devices/dev-001.key" "$D" -c "$T/dev.conf" --broker-port 1
fleet_args=(--fleet 1 --fleet-cert-dir "$CERTS/devices" --product sensor --version 1.0.0
    --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --state-dir "$T/fleet")
check "ota-device --fleet --check refuses a key of fleet_cert_dir with mode 0644" \
    refuses_key 644 "$CERTS/devices/dev-001.key" "$D" "${fleet_args[@]}" --check
check "  and accepts the directory once it is 0600" \
    succeeds_with 'configuration OK' "$D" "${fleet_args[@]}" --check
check "ota-gateway ctl refuses an operator key with mode 0644 before connecting" \
    refuses_key 644 "$CERTS/operator.key" "$G" ctl pause --product sensor --broker-port 1 \
    --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/operator.crt" --key-file "$CERTS/operator.key"
check "  (and says why it cannot connect when the key is fine)" \
    fails_with 'connection failed|refused' "$G" ctl pause --product sensor --broker-port 1 \
    --ca-file "$CERTS/ca.crt" --cert-file "$CERTS/operator.crt" --key-file "$CERTS/operator.key"
check "pack refuses a group-readable publisher key the same way" \
    refuses_key 640 "$CERTS/publisher.key" "$G" pack --key "$CERTS/publisher.key" \
    --product sensor --version 1.1.0 --payload "$T/fw.bin" --out "$T/p9.ota"
check "make-certs writes every private key 0600" \
    bash -c "[ -z \"\$(find '$CERTS' -name '*.key' ! -perm 600)\" ]"

# --- what must never be committed or sent to a docker build ------------------------------

git_ignores() {
    local p
    for p in "$@"; do
        git -C "$OTA_ROOT" check-ignore -q --no-index "$p" || { echo "not ignored: $p"; return 1; }
    done
}
check "git ignores the README's pki/ (CA and publisher keys), packages and payloads" \
    git_ignores pki/ca.key pki/publisher.key deploy/pki/ca.key sensor-1.1.0.ota firmware.bin \
    deploy/packages/sensor-1.1.0.ota
git_keeps() { ! git -C "$OTA_ROOT" check-ignore --no-index "$@"; }
check "  but not the sources" git_keeps certs/make-certs.sh tests/system/lib.sh \
    deploy/mosquitto/acl tests/vectors/x.bin tests/fuzz/corpus/x.ota
check ".dockerignore keeps them out of a build context" \
    bash -c "for p in pki/ deploy/pki/ deploy/packages/ '*.ota' '*.bin'; do
                 grep -qxF \"\$p\" '$OTA_ROOT/.dockerignore' || { echo \"missing: \$p\"; exit 1; }
             done"

# --- help, unknown commands and options ---------------------------------------------------

check "ota-gateway --help prints usage" succeeds_with '^usage: ota-gateway' "$G" --help
check "ota-gateway run --help prints usage and the keys" \
    succeeds_with '^usage: ota-gateway run' "$G" run --help
check "  run --help lists --publisher-key" grep -q -- '--publisher-key' "$T/cmd.out"
check "ota-gateway pack --help prints usage" \
    succeeds_with '^usage: ota-gateway pack' "$G" pack --help
check "ota-gateway verify --help prints usage" \
    succeeds_with '^usage: ota-gateway verify' "$G" verify --help
check "ota-gateway keygen --help prints usage" \
    succeeds_with '^usage: ota-gateway keygen' "$G" keygen --help
check "ota-gateway status --help prints usage" \
    succeeds_with '^usage: ota-gateway status' "$G" status --help
check "ota-device --help prints usage" succeeds_with '^usage: ota-device' "$D" --help
check "  and lists --state-dir" grep -q -- '--state-dir' "$T/cmd.out"

check "ota-gateway without a command fails with usage" fails_with 'usage' "$G"
check "ota-gateway with an unknown command fails" \
    fails_with "unknown command 'frobnicate'" "$G" frobnicate
check "ota-gateway run with an unknown option fails" \
    fails_with "unknown option '--frobnicate'" "$G" run --frobnicate 1
check "ota-gateway pack with an unknown option fails" \
    fails_with "unknown option '--frobnicate'" "$G" pack --frobnicate
check "ota-gateway run with a stray argument fails" \
    fails_with "unexpected argument 'extra'" "$G" run -c "$T/gw.conf" --check extra
check "ota-device with an unknown option fails" \
    fails_with "unknown option '--frobnicate'" "$D" --frobnicate
check "ota-device with an option missing its value fails" \
    fails_with "needs a value" "$D" -c "$T/dev.conf" --check --id

# --- status -------------------------------------------------------------------------------

check "status of a missing ledger fails with a clear message" \
    fails_with "$T/nonexistent.*(No such file|no gateway database)" \
    "$G" status --db "$T/nonexistent"

finish
