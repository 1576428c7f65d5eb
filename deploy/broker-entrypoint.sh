#!/bin/sh
# broker-entrypoint.sh: entrypoint of the broker service of docker-compose.yml (the official
# eclipse-mosquitto:2 image, Alpine, so POSIX sh).
#
# Mosquitto 2 drops root for the "user" of its configuration (mosquitto) right after reading
# it, before it loads certificates: broker.key must be readable by that user. The host's
# key (certs/make-certs.sh) is mode 0600 for the host user and is mounted read-only at
# /pki, so it is copied into /mosquitto/certs (a tmpfs, the path mosquitto.conf names),
# owned by mosquitto, mode 0600. This replaces the image's own entrypoint, which would
# chown -R everything under /mosquitto, read-only mounts included. crl.pem (the fleet CA's
# revocation list, certs/make-certs.sh --revoke) is copied the same way: after a revocation,
# restart the broker service (docker-compose restart broker) so that it copies and reads
# the new list; a SIGHUP alone would re-read the old copy.
#
# OPENSSL_CONF: the broker's own OpenSSL configuration (deploy/mosquitto/openssl.cnf,
# mounted at /mosquitto/config/openssl.cnf: stateful TLS session tickets, see the file).
# OpenSSL ignores a missing file silently, so its absence is said here.
set -eu
SRC=${OTA_BROKER_PKI:-/pki}
DST=${OTA_BROKER_CERTS:-/mosquitto/certs}
mkdir -p "$DST"
for f in ca.crt broker.crt broker.key crl.pem; do
    [ -r "$SRC/$f" ] || { echo "broker-entrypoint: $SRC/$f is missing (run certs/make-certs.sh deploy/pki again)" >&2; exit 1; }
    cp "$SRC/$f" "$DST/$f"
done
chown mosquitto:mosquitto "$DST" "$DST/ca.crt" "$DST/broker.crt" "$DST/broker.key" "$DST/crl.pem"
chmod 0644 "$DST/ca.crt" "$DST/broker.crt" "$DST/crl.pem"
chmod 0600 "$DST/broker.key"
OSSL=${OTA_BROKER_OPENSSL_CONF:-/mosquitto/config/openssl.cnf}
if [ -r "$OSSL" ]; then
    export OPENSSL_CONF="$OSSL"
else
    echo "broker-entrypoint: $OSSL is missing: OpenSSL's defaults (stateless session tickets, about twice the broker's CPU per resumed TLS handshake)" >&2
fi
exec /usr/sbin/mosquitto -c /mosquitto/config/mosquitto.conf
