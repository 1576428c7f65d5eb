#!/bin/bash
# make-certs.sh: the PKI of an OTA fleet, for tests, demos and small deployments.
#
#   certs/make-certs.sh OUTDIR [options] [ID ...]
#
# Makes in OUTDIR (idempotent: what exists is kept, unless --force):
#   ca.crt ca.key                 fleet CA (EC P-256, 10 years)
#   broker.crt broker.key         CN=broker, SAN DNS:localhost,DNS:broker,IP:127.0.0.1, serverAuth
#   gateway.crt gateway.key       CN=ota-gateway, clientAuth
#   operator.crt operator.key     CN=ota-operator, clientAuth
#   devices/ID.crt devices/ID.key CN=ID, clientAuth (one per device)
#   publisher.key publisher.pub   Ed25519 signing key (PKCS#8 PEM) and its public key (SPKI PEM)
#
# Options:
#   --devices N    also make PREFIX001..PREFIXN (3 digits, more when N > 999)
#   --prefix P     prefix for --devices (default dev-)
#   --days D       validity of leaf certificates in days (default 825)
#   --jobs J       parallel openssl processes for devices (default: number of CPUs)
#   --force        make everything anew, including the CA and the publisher key
#   --rogue        also make rogue/ca.{crt,key} (an unrelated CA) and rogue/ID.{crt,key},
#                  a device certificate signed by it, for the first device ID (default dev-001)
#   --expired      also make expired/ID.{crt,key}: signed by the real CA, valid only in
#                  January 2020, for the first device ID (default dev-001)
#   --quiet        no summary
#
# Device ids: [A-Za-z0-9._-]{1,63}, not starting with '.'. The CN is the MQTT username
# (use_identity_as_username), so it is also what the broker's ACL %u expands to.
# Private keys are mode 0600, certificates 0644.
set -eu
# Written for bash: `sh make-certs.sh` re-executes it with bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi

usage() {
    sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//' >&2
    exit 2
}
die() { echo "make-certs: $*" >&2; exit 1; }

valid_id() {
    [[ $1 =~ ^[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}$ ]]
}

OUT=
NDEV=0
PREFIX=dev-
DAYS=825
JOBS=$(nproc 2>/dev/null || echo 2)
FORCE=0
ROGUE=0
EXPIRED=0
QUIET=0
IDS=()

while [ $# -gt 0 ]; do
    case $1 in
    --devices) [ $# -ge 2 ] || usage; NDEV=$2; shift 2 ;;
    --devices=*) NDEV=${1#*=}; shift ;;
    --prefix) [ $# -ge 2 ] || usage; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --days) [ $# -ge 2 ] || usage; DAYS=$2; shift 2 ;;
    --jobs) [ $# -ge 2 ] || usage; JOBS=$2; shift 2 ;;
    --force) FORCE=1; shift ;;
    --rogue) ROGUE=1; shift ;;
    --expired) EXPIRED=1; shift ;;
    --quiet | -q) QUIET=1; shift ;;
    -h | --help) usage ;;
    --) shift; IDS+=("$@"); break ;;
    -*) die "unknown option: $1 (try --help)" ;;
    *)
        if [ -z "$OUT" ]; then OUT=$1; else IDS+=("$1"); fi
        shift ;;
    esac
done

[ -n "$OUT" ] || usage
[[ $NDEV =~ ^[0-9]+$ ]] || die "--devices wants a number, got '$NDEV'"
[[ $DAYS =~ ^[1-9][0-9]*$ ]] || die "--days wants a positive number, got '$DAYS'"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "--jobs wants a positive number, got '$JOBS'"
NDEV=$((10#$NDEV))

if [ "$NDEV" -gt 0 ]; then
    width=${#NDEV}
    [ "$width" -ge 3 ] || width=3
    for ((i = 1; i <= NDEV; i++)); do
        IDS+=("$(printf '%s%0*d' "$PREFIX" "$width" "$i")")
    done
fi

for id in ${IDS[@]+"${IDS[@]}"}; do
    valid_id "$id" || die "invalid device id '$id': want [A-Za-z0-9._-]{1,63}, not starting with '.'"
    case $id in ota-gateway | ota-operator | broker)
        die "device id '$id' is reserved for a service certificate" ;;
    esac
done
FIRST_ID=${IDS[0]:-dev-001}

command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"

umask 022
mkdir -p "$OUT/devices"
OUT=$(cd "$OUT" && pwd)
CNF=$(mktemp "${TMPDIR:-/tmp}/make-certs.XXXXXX")
trap 'rm -f "$CNF"; rm -rf "$CNF.d"' EXIT
export MC_CADB="$CNF.d"    # referenced by the config below, only used by "openssl ca"

cat >"$CNF" <<'EOF'
# OpenSSL configuration written and removed by make-certs.sh.
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:true,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,DNS:broker,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
# For "openssl ca" (only used for the expired certificate: it accepts -startdate).
[ca]
default_ca = exp
[exp]
database = $ENV::MC_CADB/index.txt
new_certs_dir = $ENV::MC_CADB
serial = $ENV::MC_CADB/serial
default_md = sha256
policy = pol
copy_extensions = none
unique_subject = no
[pol]
commonName = supplied
EOF

# make_ca DIR CN: a self-signed EC P-256 CA, 10 years.
make_ca() {
    local err
    err=$(openssl req -x509 -config "$CNF" -extensions ca_ext \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1/ca.key" -out "$1/ca.crt" -days 3650 -subj "/CN=$2" 2>&1) ||
        die "could not make CA in $1: $err"
    chmod 600 "$1/ca.key"
    chmod 644 "$1/ca.crt"
}

# leaf CADIR BASE CN EXT: key BASE.key and certificate BASE.crt signed by CADIR/ca.*
# One openssl process per leaf (req -x509 -CA, OpenSSL >= 3.0): ~20 ms each.
leaf() {
    local err
    err=$(openssl req -x509 -config "$CNF" -extensions "$4" \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$2.key" -out "$2.crt" -days "$DAYS" -subj "/CN=$3" \
        -CA "$1/ca.crt" -CAkey "$1/ca.key" 2>&1) ||
        { echo "make-certs: could not make $2.crt: $err" >&2; return 1; }
    chmod 600 "$2.key"
    chmod 644 "$2.crt"
}

have() { [ -s "$1.crt" ] && [ -s "$1.key" ]; }

start=$(date +%s.%N)
ca_state=kept
if [ "$FORCE" = 1 ] || ! have "$OUT/ca"; then
    make_ca "$OUT" "OTA Fleet CA"
    ca_state=created
fi
# A new CA invalidates every leaf: make them all again.
renew=0
[ "$ca_state" = created ] && renew=1

for svc in "broker broker server_ext" "gateway ota-gateway client_ext" \
           "operator ota-operator client_ext"; do
    # shellcheck disable=SC2086  # split "file cn extensions"
    set -- $svc
    if [ "$renew" = 1 ] || ! have "$OUT/$1"; then
        leaf "$OUT" "$OUT/$1" "$2" "$3" || exit 1
    fi
done

pub_state=kept
if [ "$FORCE" = 1 ] || [ ! -s "$OUT/publisher.key" ] || [ ! -s "$OUT/publisher.pub" ]; then
    rm -f "$OUT/publisher.key"
    (umask 077 && openssl genpkey -algorithm ed25519 -out "$OUT/publisher.key") ||
        die "could not make the publisher key"
    chmod 600 "$OUT/publisher.key"
    openssl pkey -in "$OUT/publisher.key" -pubout -out "$OUT/publisher.pub"
    chmod 644 "$OUT/publisher.pub"
    pub_state=created
fi

# Devices: only those missing (or all, after a new CA), in JOBS parallel workers.
todo=()
for id in ${IDS[@]+"${IDS[@]}"}; do
    if [ "$renew" = 1 ] || ! have "$OUT/devices/$id"; then
        todo+=("$id")
    fi
done
if [ ${#todo[@]} -gt 0 ]; then
    pids=()
    for ((w = 0; w < JOBS; w++)); do
        (
            for ((k = w; k < ${#todo[@]}; k += JOBS)); do
                leaf "$OUT" "$OUT/devices/${todo[k]}" "${todo[k]}" client_ext || exit 1
            done
        ) &
        pids+=($!)
    done
    failed=0
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    [ "$failed" = 0 ] || die "some device certificates could not be made"
fi

if [ "$ROGUE" = 1 ]; then
    mkdir -p "$OUT/rogue"
    if [ "$FORCE" = 1 ] || ! have "$OUT/rogue/ca"; then
        make_ca "$OUT/rogue" "Rogue CA"
    fi
    leaf "$OUT/rogue" "$OUT/rogue/$FIRST_ID" "$FIRST_ID" client_ext || exit 1
fi

if [ "$EXPIRED" = 1 ]; then
    mkdir -p "$OUT/expired" "$CNF.d"
    : >"$CNF.d/index.txt"
    e="$OUT/expired/$FIRST_ID"
    openssl req -new -config "$CNF" -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$e.key" -out "$CNF.d/req.csr" -subj "/CN=$FIRST_ID" >/dev/null 2>&1 ||
        die "could not make the expired certificate request"
    openssl ca -batch -config "$CNF" -extensions client_ext \
        -cert "$OUT/ca.crt" -keyfile "$OUT/ca.key" -in "$CNF.d/req.csr" -out "$e.crt" \
        -rand_serial -notext -startdate 20200101000000Z -enddate 20200201000000Z \
        >"$CNF.d/ca.log" 2>&1 || die "could not sign the expired certificate: $(cat "$CNF.d/ca.log")"
    chmod 600 "$e.key"
    chmod 644 "$e.crt"
fi

end=$(date +%s.%N)
if [ "$QUIET" = 0 ]; then
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    extra=
    [ "$ROGUE" = 1 ] && extra="$extra, rogue/$FIRST_ID"
    [ "$EXPIRED" = 1 ] && extra="$extra, expired/$FIRST_ID"
    echo "make-certs: $OUT: CA $ca_state; broker, gateway, operator ready;" \
        "${#todo[@]} of ${#IDS[@]} device certs made; publisher key $pub_state$extra (${secs}s)"
fi
