#!/bin/bash
# make-certs.sh: the PKI of an OTA fleet, for tests, demos and small deployments.
#
#   certs/make-certs.sh OUTDIR [options] [ID ...]
#
# Makes in OUTDIR (idempotent: what exists is kept, unless --force):
#   ca.crt ca.key                 fleet CA (EC P-256, 10 years)
#   broker.crt broker.key         CN=broker, SAN DNS:localhost,DNS:broker,IP:127.0.0.1, serverAuth
#   gateway.crt gateway.key       CN=ota-gateway, clientAuth
#   gateways/NAME.crt .key        CN=ota-gateway-NAME, clientAuth (one per --gateway NAME)
#   operator.crt operator.key     CN=ota-operator, clientAuth (the default operator)
#   operators/NAME.crt .key       CN=ota-operator-NAME, clientAuth (one per --operator NAME)
#   monitor.crt monitor.key       CN=ota-monitor, clientAuth (read-only: statuses, releases, control)
#   monitors/NAME.crt .key        CN=ota-monitor-NAME, clientAuth (one per --monitor NAME)
#   devices/ID.crt devices/ID.key CN=ID, clientAuth (one per device)
#   publisher.key publisher.pub   Ed25519 signing key (PKCS#8 PEM) and its public key (SPKI PEM)
#   ca-db/                        the CA's database (index.txt: what was revoked; crlnumber)
#   crl.pem                       the CA's revocation list (always written, empty at first;
#                                 the broker's crlfile; valid --crl-days)
#   acl                           the broker's ACL (acl_file): the template (--acl-template)
#                                 plus one "user ota-gateway-NAME" block per named gateway
#                                 with the rights of the template's ota-gateway, one
#                                 "user ota-operator-NAME" block per named operator
#                                 with the rights of the template's ota-operator, and one
#                                 "user ota-monitor-NAME" per named monitor with those of
#                                 ota-monitor; written anew on every run
#
# Options:
#   --gateway NAME   also make gateways/NAME.{crt,key} (CN ota-gateway-NAME, the rights of
#                  ota-gateway): a second gateway, the standby of docs/FAILOVER.md. It needs
#                  its own certificate: the broker makes the CN the client id, so two
#                  gateways with one certificate would throw each other off; repeatable
#   --operator NAME  also make operators/NAME.{crt,key} (CN ota-operator-NAME); repeatable.
#                  Each operator tool needs its own certificate: the broker uses the CN as
#                  the MQTT client id, so two clients with one certificate throw each other off
#   --monitor NAME also make monitors/NAME.{crt,key} (CN ota-monitor-NAME, read-only like
#                  ota-monitor), e.g. one per dashboard; repeatable
#   --revoke CN    revoke the certificate of CN (a device id, ota-operator, ota-operator-NAME,
#                  ota-monitor, ota-monitor-NAME, ota-gateway or ota-gateway-NAME) and write crl.pem anew;
#                  repeatable. The certificate files stay where they are (to give the id a
#                  new certificate, delete them and run make-certs again). The broker
#                  reads crl.pem at start and on SIGHUP (kill -HUP); a client already
#                  connected stays connected until the broker restarts
#   --crl-days D   validity of crl.pem (default 3650; once it lapses the broker refuses every
#                  client, so run make-certs again before then: it renews a CRL with less
#                  than a tenth of that left)
#   --acl-template FILE  the ACL to extend (default: deploy/mosquitto/acl next to certs/)
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
# Device ids: [A-Za-z0-9_-]{1,63} (proto/PROTOCOL.md section 2: no '.', which RabbitMQ's
# MQTT plugin turns into a topic level); operator and monitor names the same, at most 50
# characters.
# The CN is the MQTT username (use_identity_as_username) and client id
# (use_username_as_clientid), so it is also what the broker's ACL %u expands to. The ids
# broker, ota-gateway, ota-gateway-*, ota-operator, ota-operator-*, ota-monitor and ota-monitor-* are reserved.
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
    [[ $1 =~ ^[A-Za-z0-9_-]{1,63}$ ]]
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
OPERATORS=()
GATEWAYS=()
MONITORS=()
REVOKE=()
CRL_DAYS=3650
ACL_TEMPLATE=$(cd "$(dirname "$0")/.." && pwd)/deploy/mosquitto/acl

while [ $# -gt 0 ]; do
    case $1 in
    --devices) [ $# -ge 2 ] || usage; NDEV=$2; shift 2 ;;
    --devices=*) NDEV=${1#*=}; shift ;;
    --prefix) [ $# -ge 2 ] || usage; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --days) [ $# -ge 2 ] || usage; DAYS=$2; shift 2 ;;
    --jobs) [ $# -ge 2 ] || usage; JOBS=$2; shift 2 ;;
    --gateway) [ $# -ge 2 ] || usage; GATEWAYS+=("$2"); shift 2 ;;
    --gateway=*) GATEWAYS+=("${1#*=}"); shift ;;
    --operator) [ $# -ge 2 ] || usage; OPERATORS+=("$2"); shift 2 ;;
    --operator=*) OPERATORS+=("${1#*=}"); shift ;;
    --monitor) [ $# -ge 2 ] || usage; MONITORS+=("$2"); shift 2 ;;
    --monitor=*) MONITORS+=("${1#*=}"); shift ;;
    --revoke) [ $# -ge 2 ] || usage; REVOKE+=("$2"); shift 2 ;;
    --revoke=*) REVOKE+=("${1#*=}"); shift ;;
    --crl-days) [ $# -ge 2 ] || usage; CRL_DAYS=$2; shift 2 ;;
    --acl-template) [ $# -ge 2 ] || usage; ACL_TEMPLATE=$2; shift 2 ;;
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
[[ $CRL_DAYS =~ ^[1-9][0-9]*$ ]] || die "--crl-days wants a positive number, got '$CRL_DAYS'"
[ -r "$ACL_TEMPLATE" ] || die "ACL template $ACL_TEMPLATE not found (give --acl-template FILE)"
NDEV=$((10#$NDEV))

if [ "$NDEV" -gt 0 ]; then
    width=${#NDEV}
    [ "$width" -ge 3 ] || width=3
    for ((i = 1; i <= NDEV; i++)); do
        IDS+=("$(printf '%s%0*d' "$PREFIX" "$width" "$i")")
    done
fi

for id in ${IDS[@]+"${IDS[@]}"}; do
    valid_id "$id" || die "invalid device id '$id': want [A-Za-z0-9_-]{1,63} (no '.': RabbitMQ maps '/' to '.')"
    case $id in ota-gateway | ota-gateway-* | ota-operator | ota-operator-* | ota-monitor | ota-monitor-* | broker)
        die "device id '$id' is reserved for a service certificate" ;;
    esac
done
for name in ${OPERATORS[@]+"${OPERATORS[@]}"} ${MONITORS[@]+"${MONITORS[@]}"} \
    ${GATEWAYS[@]+"${GATEWAYS[@]}"}; do
    [[ $name =~ ^[A-Za-z0-9_-]{1,50}$ ]] ||
        die "invalid gateway, operator or monitor name '$name': want [A-Za-z0-9_-]{1,50} (no '.')"
done
FIRST_ID=${IDS[0]:-dev-001}

command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"

umask 022
mkdir -p "$OUT/devices"
OUT=$(cd "$OUT" && pwd)
CNF=$(mktemp "${TMPDIR:-/tmp}/make-certs.XXXXXX")
trap 'rm -f "$CNF"; rm -rf "$CNF.d"' EXIT
export MC_CADB="$CNF.d"    # referenced by the config below, only used by "openssl ca"
export MC_FLEETDB="$OUT/ca-db"  # the fleet CA's database: revocations and the CRL

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
# The fleet CA's database, for "openssl ca -revoke" and "-gencrl" (certificates are issued
# with "req -x509 -CA" above: revoking one adds it to index.txt).
[fleet]
database = $ENV::MC_FLEETDB/index.txt
new_certs_dir = $ENV::MC_FLEETDB
serial = $ENV::MC_FLEETDB/serial
crlnumber = $ENV::MC_FLEETDB/crlnumber
default_md = sha256
policy = pol
unique_subject = no
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
           "operator ota-operator client_ext" "monitor ota-monitor client_ext"; do
    # shellcheck disable=SC2086  # split "file cn extensions"
    set -- $svc
    if [ "$renew" = 1 ] || ! have "$OUT/$1"; then
        leaf "$OUT" "$OUT/$1" "$2" "$3" || exit 1
    fi
done
# named ROLE NAME...: ROLEs/NAME.{crt,key}, CN ota-ROLE-NAME, for each NAME and (after a new
# CA) for each one already there. Counts what it made in named_made.
named_made=0
named() {
    local role=$1 f name
    shift
    declare -A seen=()
    [ $# -gt 0 ] || [ -d "$OUT/${role}s" ] || return 0
    mkdir -p "$OUT/${role}s"
    if [ "$renew" = 1 ]; then
        for f in "$OUT/${role}s"/*.crt; do
            [ -e "$f" ] || continue
            f=${f##*/}
            set -- "$@" "${f%.crt}"
        done
    fi
    for name in "$@"; do
        [ -z "${seen[$name]:-}" ] || continue
        seen[$name]=1
        if [ "$renew" = 1 ] || ! have "$OUT/${role}s/$name"; then
            leaf "$OUT" "$OUT/${role}s/$name" "ota-$role-$name" client_ext || return 1
            named_made=$((named_made + 1))
        fi
    done
}
named gateway ${GATEWAYS[@]+"${GATEWAYS[@]}"} || exit 1
named operator ${OPERATORS[@]+"${OPERATORS[@]}"} || exit 1
named monitor ${MONITORS[@]+"${MONITORS[@]}"} || exit 1

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
declare -A dev_seen=()
if [ "$renew" = 1 ]; then
    # A new CA: the devices already there were signed by the old one; renew them too.
    for f in "$OUT"/devices/*.crt; do
        [ -e "$f" ] || continue
        f=${f##*/}
        IDS+=("${f%.crt}")
    done
fi
for id in ${IDS[@]+"${IDS[@]}"}; do
    [ -z "${dev_seen[$id]:-}" ] || continue
    dev_seen[$id]=1
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

# --- the CA's database, revocations, the CRL ------------------------------------------------
# A new CA starts a new database: what the old CA revoked means nothing to it.
if [ "$ca_state" = created ]; then rm -rf "$OUT/ca-db" "$OUT/crl.pem"; fi
if [ ! -d "$OUT/ca-db" ]; then
    (umask 077 && mkdir "$OUT/ca-db")
    : >"$OUT/ca-db/index.txt"
    echo 1000 >"$OUT/ca-db/crlnumber"
fi

# cert_of CN: the certificate file make-certs wrote for CN (or nothing).
cert_of() {
    case $1 in
    ota-gateway) echo "$OUT/gateway.crt" ;;
    ota-gateway-*) echo "$OUT/gateways/${1#ota-gateway-}.crt" ;;
    ota-operator) echo "$OUT/operator.crt" ;;
    ota-monitor) echo "$OUT/monitor.crt" ;;
    ota-operator-*) echo "$OUT/operators/${1#ota-operator-}.crt" ;;
    ota-monitor-*) echo "$OUT/monitors/${1#ota-monitor-}.crt" ;;
    broker) ;;
    *) valid_id "$1" && echo "$OUT/devices/$1.crt" ;;
    esac
}

revoked_now=()
for cn in ${REVOKE[@]+"${REVOKE[@]}"}; do
    crt=$(cert_of "$cn")
    [ -n "$crt" ] && [ -s "$crt" ] || die "--revoke $cn: no certificate ${crt:-for that name} in $OUT"
    serial=$(openssl x509 -in "$crt" -noout -serial) || die "--revoke $cn: cannot read $crt"
    serial=${serial#serial=}
    if awk -F'	' -v s="$serial" '$1 == "R" && toupper($4) == toupper(s) { f = 1 } END { exit !f }'         "$OUT/ca-db/index.txt"; then
        [ "$QUIET" = 1 ] || echo "make-certs: $cn (serial $serial) was already revoked"
        continue
    fi
    err=$(openssl ca -batch -config "$CNF" -name fleet -cert "$OUT/ca.crt" -keyfile "$OUT/ca.key" \
        -revoke "$crt" 2>&1) || die "could not revoke $crt: $err"
    revoked_now+=("$cn")
done

# The CRL: written when missing, after a revocation, and when less than a tenth of its
# validity is left (an expired CRL makes the broker refuse every client).
crl_state=kept
if [ -s "$OUT/crl.pem" ]; then
    left=$(( ($(date -d "$(openssl crl -in "$OUT/crl.pem" -noout -nextupdate | cut -d= -f2)" +%s) \
        - $(date +%s)) / 86400 )) || left=0
else
    left=0
fi
if [ ${#revoked_now[@]} -gt 0 ] || [ "$left" -lt $((CRL_DAYS / 10 + 1)) ]; then
    err=$(openssl ca -batch -config "$CNF" -name fleet -cert "$OUT/ca.crt" -keyfile "$OUT/ca.key" \
        -gencrl -crldays "$CRL_DAYS" -out "$OUT/ca-db/crl.new" 2>&1) ||
        die "could not write the CRL: $err"
    # Rewritten in place (same inode): a bind mount of the file sees the new list.
    cat "$OUT/ca-db/crl.new" >"$OUT/crl.pem"
    rm -f "$OUT/ca-db/crl.new"
    chmod 644 "$OUT/crl.pem"
    crl_state=written
fi
nrevoked=$(awk -F'\t' '$1 == "R"' "$OUT/ca-db/index.txt" | wc -l)

# --- the broker's ACL -------------------------------------------------------------------------
# role_rules ROLE: the topic lines of the template's "user ota-ROLE" block.
role_rules() {
    awk -v u="ota-$1" '/^user / { f = ($2 == u); next } /^pattern / { f = 0 }
        f && /^topic / { print }' "$ACL_TEMPLATE"
}
# role_blocks ROLE: one "user ota-ROLE-NAME" block per ROLEs/NAME.crt, with the topic lines
# of "user ota-ROLE" (its deny of ota/dev/ota-ROLE/# becomes ota/dev/ota-ROLE-NAME/#).
role_blocks() {
    local rules f name
    rules=$(role_rules "$1")
    [ -n "$rules" ] || die "$ACL_TEMPLATE has no 'user ota-$1' block with topic lines"
    for f in "$OUT/${1}s"/*.crt; do
        [ -e "$f" ] || continue
        name=${f##*/}
        name=${name%.crt}
        echo
        echo "# ${1^} $name (${1}s/$name.crt): the rights of ota-$1 above."
        echo "user ota-$1-$name"
        echo "${rules//\/ota-$1\//\/ota-$1-$name\/}"
    done
}
{
    echo "# Generated by certs/make-certs.sh from $ACL_TEMPLATE: do not edit here,"
    echo "# edit the template (or add --gateway/--operator/--monitor NAME) and run make-certs.sh"
    echo "# again; then reload the broker (SIGHUP)."
    cat "$ACL_TEMPLATE"
    role_blocks gateway
    role_blocks operator
    role_blocks monitor
} >"$OUT/acl.new" || exit 1
cat "$OUT/acl.new" >"$OUT/acl"
rm -f "$OUT/acl.new"
chmod 644 "$OUT/acl"
nnamed=$(find "$OUT/gateways" "$OUT/operators" "$OUT/monitors" -name '*.crt' 2>/dev/null | wc -l)

end=$(date +%s.%N)
if [ "$QUIET" = 0 ]; then
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    extra=
    [ "$ROGUE" = 1 ] && extra="$extra, rogue/$FIRST_ID"
    [ "$EXPIRED" = 1 ] && extra="$extra, expired/$FIRST_ID"
    echo "make-certs: $OUT: CA $ca_state; broker, gateway, operator, monitor ready;" \
        "$nnamed named gateways, operators and monitors ($named_made made);" \
        "${#todo[@]} of ${#IDS[@]} device certs made; publisher key $pub_state$extra;" \
        "CRL $crl_state ($nrevoked revoked); acl written (${secs}s)"
fi
for cn in ${revoked_now[@]+"${revoked_now[@]}"}; do
    echo "make-certs: revoked $cn; the broker refuses it after a reload (kill -HUP, or a restart" \
        "to cut off a connection already open)"
done
