#!/bin/bash
# ota-entrypoint: entrypoint of the ota image (deploy/Dockerfile), for the gateway and for
# scaled simulated devices alike.
#
#   ota-entrypoint ota-gateway run [FLAGS...]    stage keys, run the gateway
#   ota-entrypoint fleet [OTA-DEVICE FLAGS...]   claim a free identity slot, run a fleet
#   ota-entrypoint health gateway|fleet          healthcheck (docker-compose.yml)
#   ota-entrypoint CMD [ARGS...]                 anything else: run it (after staging)
#
# Keys. Certificates and keys are bind-mounted read-only at $OTA_PKI (/pki) from the host,
# where make-certs.sh made the keys mode 0600 for the host user: the container's user
# cannot read them, and the programs refuse keys readable by group or others. So when
# started as root (docker-compose.yml says user: root), this script copies the files the
# command needs into $OTA_RUN/pki (a tmpfs), owned by $OTA_USER, keys 0600, makes the
# state directories under $OTA_STATE belong to $OTA_USER, and then drops root for good
# (setpriv: uid, gid, groups, inheritable capabilities) before exec'ing the program.
# Started as a normal user (the image's default USER ota), it copies what it can read
# and runs the program as that user.
#
# Fleet slots. `docker-compose up --scale devices=N` starts N identical containers with the
# same command; each must simulate different devices. All replicas share one volume
# ($OTA_STATE/devices). Slot K is the file .slots/K.lock in it; a replica owns slot K while
# it holds an exclusive flock(2) on that file. The lock is taken here, on file
# descriptor 9, and that descriptor is inherited by ota-device through exec, so the slot
# stays claimed exactly as long as the fleet process lives, and the kernel releases it
# however the process ends (clean stop, crash, SIGKILL, container removed): no stale
# claims, nothing to clean up. The replica takes the lowest free slot, so after a restart
# or `docker-compose down && up` the replicas take slots 0..N-1 again.
# Slot K runs devices K*S+1 .. K*S+S (S = $OTA_FLEET_SIZE, default 50), i.e. ota-device
# --fleet S --fleet-first K*S+1. Each device's state lives in $OTA_STATE/devices/<id>, so
# an identity and its state always go together, whichever container holds the slot.
# A replica finding no slot with certificates (more replicas than certificates / S) says
# so and exits 1. Works because every replica shares the Docker host's kernel and the
# volume's filesystem (local volume driver); flock on a network filesystem is not assumed.
#
# Environment (defaults are the image's layout):
#   OTA_PKI=/pki  OTA_RUN=/run/ota  OTA_STATE=/var/lib/ota  OTA_USER=ota
#   OTA_FLEET_SIZE=50  OTA_FLEET_PREFIX=dev-  OTA_FLEET_MAX_SLOTS=10000
set -euo pipefail

OTA_PKI=${OTA_PKI:-/pki}
OTA_RUN=${OTA_RUN:-/run/ota}
OTA_STATE=${OTA_STATE:-/var/lib/ota}
OTA_USER=${OTA_USER:-ota}
OTA_FLEET_SIZE=${OTA_FLEET_SIZE:-50}
OTA_FLEET_PREFIX=${OTA_FLEET_PREFIX:-dev-}
OTA_FLEET_MAX_SLOTS=${OTA_FLEET_MAX_SLOTS:-10000}
STAGED=$OTA_RUN/pki
ROOT=0
[ "$(id -u)" = 0 ] && ROOT=1

say() { echo "ota-entrypoint: $*" >&2; }
die() { say "$*"; exit 1; }

# stage FILE...: copy FILE (relative to $OTA_PKI) to $STAGED; keys get mode 0600.
stage() {
    local f mode
    mkdir -p "$STAGED/devices"
    for f in "$@"; do
        [ -r "$OTA_PKI/$f" ] || die "$OTA_PKI/$f is missing or unreadable (certs/make-certs.sh deploy/pki ...)"
        case $f in *.key) mode=600 ;; *) mode=644 ;; esac
        install -m "$mode" "$OTA_PKI/$f" "$STAGED/$f"
    done
}

# own DIR...: make DIR (not what is in it: the programs create that) and belong to
# $OTA_USER when running as root.
own() {
    [ "$ROOT" = 1 ] || { mkdir -p "$@"; return 0; }
    install -d -o "$OTA_USER" -g "$OTA_USER" -m 700 "$@"
}

# run CMD...: exec CMD, as $OTA_USER when running as root.
run() {
    if [ "$ROOT" = 1 ]; then
        [ -d "$STAGED" ] && chown -R "$OTA_USER:$OTA_USER" "$OTA_RUN"
        exec setpriv --reuid="$OTA_USER" --regid="$OTA_USER" --init-groups --inh-caps=-all -- "$@"
    fi
    exec "$@"
}

# devcert NUMBER: prints the device id for NUMBER, with the width make-certs.sh chose
# (3 digits, more for bigger fleets: the first width whose certificate exists).
devcert() {
    local n=$1 w id
    for ((w = ${#n} < 3 ? 3 : ${#n}; w <= 10; w++)); do
        id=$(printf '%s%0*d' "$OTA_FLEET_PREFIX" "$w" "$n")
        [ -e "$OTA_PKI/devices/$id.crt" ] && { echo "$id"; return 0; }
    done
    return 1
}

fleet() {
    local slots=$OTA_STATE/devices/.slots k first last n id ids=()
    [[ $OTA_FLEET_SIZE =~ ^[1-9][0-9]*$ ]] || die "OTA_FLEET_SIZE must be a positive number"
    # ota-device refuses a fleet its open-file limit cannot hold (device-client/fleet.c:
    # 4 per device + 64) and says to raise the hard limit; in a container that is the
    # compose file's OTA_NOFILE, so say that here, before claiming a slot.
    local need=$((OTA_FLEET_SIZE * 4 + 64)) hard
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] || [ "$hard" -ge "$need" ] ||
        die "OTA_FLEET_SIZE=$OTA_FLEET_SIZE devices need about $need open files but the" \
            "container's limit is $hard: raise OTA_NOFILE (docker-compose.yml, up to the" \
            "host's hard limit, ulimit -Hn) or lower OTA_FLEET_SIZE and add replicas"
    own "$OTA_STATE/devices"
    mkdir -p "$slots"
    for ((k = 0; k < OTA_FLEET_MAX_SLOTS; k++)); do
        first=$((k * OTA_FLEET_SIZE + 1))
        last=$((first + OTA_FLEET_SIZE - 1))
        # No certificate for this slot's last device: no slot left.
        devcert "$last" >/dev/null ||
            die "no free fleet slot: slots 0..$((k - 1)) are taken and $OTA_PKI/devices has" \
                "no certificate for device $last; make more (certs/make-certs.sh deploy/pki" \
                "--devices $last) or scale down"
        exec 9>>"$slots/$k.lock"
        if flock -n 9; then
            break
        fi
        exec 9>&-
    done
    [ "$k" -lt "$OTA_FLEET_MAX_SLOTS" ] || die "no free fleet slot"
    # Who holds it, for people looking at the volume (the lock itself is what counts).
    echo "${HOSTNAME:-$(hostname)} pid $$ devices $first..$last" >"$slots/$k.owner"
    for ((n = first; n <= last; n++)); do
        id=$(devcert "$n") || die "no certificate for device number $n in $OTA_PKI/devices"
        ids+=("devices/$id.crt" "devices/$id.key")
    done
    stage ca.crt publisher.pub "${ids[@]}"
    echo "$k $first $last $(devcert "$first")" >"$OTA_RUN/slot"
    say "fleet slot $k: devices $(devcert "$first")..$(devcert "$last") (state in $OTA_STATE/devices)"
    # Flags after the caller's: they override a -c file and the caller's own.
    run ota-device "$@" --fleet "$OTA_FLEET_SIZE" --fleet-first "$first" \
        --fleet-prefix "$OTA_FLEET_PREFIX" --fleet-cert-dir "$STAGED/devices" \
        --state-dir "$OTA_STATE/devices"
}

health() {
    case ${1:-} in
    gateway)
        # The ledger opens and reads (the gateway made it; a second reader, read-only).
        ota-gateway status --db "${2:-$OTA_STATE/gateway/db}" >/dev/null ;;
    fleet)
        # A slot is claimed, the container's first process is ota-device, and the slot's
        # first device has its state directory.
        local k first last id
        read -r k first last id <"$OTA_RUN/slot" || exit 1
        grep -qa ota-device /proc/1/cmdline && [ -d "$OTA_STATE/devices/$id" ] ;;
    *) die "usage: ota-entrypoint health gateway [DB]|fleet" ;;
    esac
}

case ${1:-} in
fleet)
    shift
    fleet "$@" ;;
health)
    shift
    health "$@" ;;
ota-gateway)
    # The gateway's files (see docker-compose.yml for the paths given as flags).
    files=()
    for f in ca.crt gateway.crt gateway.key publisher.pub; do
        [ -e "$OTA_PKI/$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] && stage "${files[@]}"
    # The ledger and the package store are volumes mounted at these two paths (the rest
    # of the image is read-only in docker-compose.yml).
    own "$OTA_STATE/gateway/db" "$OTA_STATE/gateway/packages"
    run "$@" ;;
"")
    die "usage: ota-entrypoint ota-gateway run ... | fleet ... | health ... | CMD ..." ;;
*)
    run "$@" ;;
esac
