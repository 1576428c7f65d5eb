#!/bin/bash
# definitions.sh: RabbitMQ definitions (users, permissions, topic permissions) for the
# certificates in a certs/make-certs.sh directory; the JSON goes to stdout (or -o FILE).
#
#   deploy/rabbitmq/definitions.sh PKI_DIR [-o FILE]
#
# One user per certificate, named by its CN (the broker logs clients in by the CN of their
# certificate, mqtt.ssl_cert_login): ota-gateway, ota-gateway-NAME (a second gateway, the
# standby of docs/FAILOVER.md, with the same rights), ota-operator, ota-operator-NAME,
# ota-monitor, ota-monitor-NAME, and each device in devices/. Users have no password
# (password_hash ""): they log in by certificate only. A certificate without a user here
# (an unknown CN, or a revoked one: those listed as revoked in PKI_DIR/ca-db/index.txt are
# left out) is refused at CONNECT even though the fleet CA signed it.
#
# Permissions mirror deploy/mosquitto/acl. RabbitMQ routes MQTT through the topic exchange
# amq.topic with "/" turned into "." (ota/dev/dev-001/ack -> ota.dev.dev-001.ack, "+" -> "*"),
# and checks topic permissions (regular expressions over that routing key) on every publish
# (write) and every subscription (read, against the filter itself: a device subscribing to
# "#" is refused, where Mosquitto grants the subscription and filters what it delivers).
# Queue permissions: a client may only use the queues named after its own CN
# (mqtt-subscription-<CN>qos0/1), which RabbitMQ names after the MQTT client id, so a
# client that subscribes must use its CN as client id. Operators and monitors may also use
# libmosquitto's random ids (mosq-...), as `ota-gateway ctl` does.
#
# RabbitMQ imports definitions additively: a user removed here (a revoked certificate) must
# also be deleted on the cluster (rabbitmqctl delete_user CN), see deploy/rabbitmq/README.md.
set -euo pipefail

die() { echo "definitions.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: definitions.sh PKI_DIR [-o FILE]"
PKI=$1
shift
OUT=
while [ $# -gt 0 ]; do
    case $1 in
    -o) [ $# -ge 2 ] || die "-o wants a file"; OUT=$2; shift 2 ;;
    *) die "unknown argument '$1'" ;;
    esac
done
[ -s "$PKI/ca.crt" ] || die "$PKI is not a make-certs directory (no ca.crt)"
command -v jq >/dev/null || die "jq is required"

# revoked: CNs of the certificates the CA revoked (index.txt lines "R ... /CN=<cn>").
declare -A REVOKED=()
if [ -s "$PKI/ca-db/index.txt" ]; then
    while IFS= read -r cn; do REVOKED[$cn]=1; done < <(
        awk -F'\t' '$1 == "R" { n = split($6, a, "/CN="); if (n > 1) print a[n] }' \
            "$PKI/ca-db/index.txt")
fi

# cns ROLE FILE...: "ROLE CN" for each certificate, in one openssl run for all of them
# (1,000 devices: one process, not 1,000).
cns() {
    local role=$1 f n
    shift
    n=0
    for f in "$@"; do if [ -s "$f" ]; then n=$((n + 1)); fi; done
    [ "$n" -gt 0 ] || return 0
    for f in "$@"; do if [ -s "$f" ]; then cat "$f"; fi; done |
        openssl crl2pkcs7 -nocrl -certfile /dev/stdin | openssl pkcs7 -print_certs -noout |
        sed -n 's/^subject=.*CN = \([^,]*\).*$/\1/p' >"$TMP" || die "cannot read the certificates of $role"
    [ "$(wc -l <"$TMP")" = "$n" ] || die "$role: $n certificates but $(wc -l <"$TMP") CNs read"
    sed "s/^/$role /" "$TMP"
}

# One JSON object per user: {cn, role}; roles decide the permissions below.
entries() {
    local role cn
    {
        cns gateway "$PKI/gateway.crt" "$PKI"/gateways/*.crt
        cns operator "$PKI/operator.crt" "$PKI"/operators/*.crt
        cns monitor "$PKI/monitor.crt" "$PKI"/monitors/*.crt
        cns device "$PKI"/devices/*.crt
    } | while read -r role cn; do
        # The CN becomes part of routing keys and regular expressions: only the characters
        # that mean nothing in either ("." would be a routing-key level separator).
        [[ $cn =~ ^[A-Za-z0-9_-]{1,64}$ ]] ||
            die "$role certificate: CN '$cn' has characters other than A-Z a-z 0-9 _ - (RabbitMQ maps '/' to '.')"
        [ -z "${REVOKED[$cn]:-}" ] || continue
        if [ "$role" = device ]; then
            case $cn in
            broker | ota-gateway* | ota-operator* | ota-monitor*) die "reserved CN '$cn' for a device" ;;
            esac
        fi
        printf '%s\t%s\n' "$cn" "$role"
    done
}

# The permissions of each role, as jq: $cn is the user's CN (a safe charset, see above).
# shellcheck disable=SC2016  # $cn, $ids are jq's own
JQ='
def q($ids): "mqtt-subscription-(" + $ids + ")qos[01]";
def ids: if .role == "operator" or .role == "monitor" then .cn + "|mosq-[A-Za-z0-9]+" else .cn end;
def topics:
  if .role == "device" then
    {write: ("^ota\\.dev\\." + .cn + "\\.(status|ack)$"),
     read: ("^(ota\\.dev\\." + .cn + "\\.(offer|frag|poll)|ota\\.grp\\.[^.]+\\.frag|ota\\.hello)$")}
  elif .role == "gateway" then
    {write: "^(ota\\.(dev|grp|result|gw)\\..+|ota\\.hello)$", read: "^ota\\.(dev|release|ctl|gw)\\..+$"}
  elif .role == "operator" then
    {write: "^ota\\.(release|ctl)\\..+$", read: "^(ota\\.result\\..+|ota\\.dev\\.[^.]+\\.status)$"}
  else
    {write: "^$", read: "^(ota\\.dev\\.[^.]+\\.status|ota\\.(release|ctl)\\..+)$"}
  end;
{
  users: [.[] | {name: .cn, password_hash: "", hashing_algorithm: "rabbit_password_hashing_sha256", tags: []}],
  vhosts: [{name: "/"}],
  permissions: [.[] | {user: .cn, vhost: "/",
    configure: ("^" + q(ids) + "$"),
    write: ("^(amq\\.topic|" + q(ids) + ")$"),
    read: ("^(amq\\.topic|" + q(ids) + ")$")}],
  topic_permissions: [.[] | {user: .cn, vhost: "/", exchange: "amq.topic"} + topics],
  parameters: [], policies: [], queues: [], exchanges: [], bindings: [],
  global_parameters: []
}'

TMP=$(mktemp) || die "mktemp failed"
trap 'rm -f "$TMP"' EXIT
entries >"$TMP.list" || { rm -f "$TMP.list"; exit 1; }
JQ='[inputs | split("\t") | {cn: .[0], role: .[1]}] | '"$JQ"
if [ -n "$OUT" ]; then
    jq -n -R "$JQ" <"$TMP.list" >"$OUT.tmp" && mv -f "$OUT.tmp" "$OUT"
else
    jq -n -R "$JQ" <"$TMP.list"
fi
rc=$?
rm -f "$TMP.list"
exit $rc
