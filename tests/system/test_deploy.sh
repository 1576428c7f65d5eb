#!/usr/bin/env bash
# shellcheck disable=SC2317,SC2016,SC2119  # functions run via check/bash -c; wait_until evals
# The deployment files, without a Docker engine (none runs where this is tested):
# deploy/docker-compose.yml passes `docker-compose config` and every host path it and
# deploy/Dockerfile use exists (or is made by a command deploy/README.md gives); the
# Dockerfile's package lists match deploy/deps.sh and the binaries' libraries; the example
# configurations pass --check and document every key; the systemd units are hardened,
# pass `systemd-analyze verify` and run what exists; and deploy/ota-entrypoint.sh gives
# scaled device replicas distinct identities (two real fleets against a real broker).
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

D=$OTA_ROOT/deploy
COMPOSE_FILE=$D/docker-compose.yml
EP=$D/ota-entrypoint.sh
certs_make --devices 4

# --- docker-compose config ----------------------------------------------------------------

# compose_config OUT [VAR=VALUE...]: docker-compose config with the given environment.
compose_config() {
    local out=$1
    shift
    env -u OTA_PKI -u OTA_PACKAGES -u OTA_FLEET_SIZE -u OTA_BROKER_PORT -u OTA_BROKER_BIND \
        -u OTA_DEVICES -u OTA_NOFILE -u OTA_NPROC -u OTA_IMAGE -u OTA_BROKER_IMAGE "$@" \
        docker-compose --no-ansi -f "$COMPOSE_FILE" config >"$out" 2>"$out.err" ||
        { cat "$out.err"; return 1; }
}

# host_paths CONFIG: every host path of the resolved configuration: bind-mount sources
# (volume entries starting with '/'), build contexts and the Dockerfiles in them.
host_paths() {
    awk '
        /^[^ ]/ { top = $1 }
        top != "services:" { next }
        /^    [a-z_]+:/ { key = $1; ctx = "" }
        key == "volumes:" && /^    - \// { sub(/^    - /, ""); split($0, a, ":"); print a[1] }
        key == "build:" && /^      context:/ { ctx = $2; print ctx }
        key == "build:" && /^      dockerfile:/ { print ctx "/" $2 }
    ' "$1" | sort -u
}

all_exist() {
    local p bad=0
    while read -r p; do
        [ -e "$p" ] || { echo "missing: $p"; bad=1; }
    done
    return "$bad"
}

mkdir -p "$T/packages"
if ! command -v docker-compose >/dev/null; then
    not_ok "docker-compose is installed (deploy/deps.sh lists it)"
else
    check "docker-compose config accepts deploy/docker-compose.yml (OTA_PKI from make-certs)" \
        compose_config "$T/compose.yml" OTA_PKI="$CERTS" OTA_PACKAGES="$T/packages"
    check "  services broker, gateway and devices" \
        test "$(docker-compose -f "$COMPOSE_FILE" config --services 2>/dev/null | sort | xargs)" \
        = "broker devices gateway"
    host_paths "$T/compose.yml" >"$T/paths"
    check "  it names host paths" test "$(wc -l <"$T/paths")" -ge 10
    check "  every host path exists (mounts, build context, Dockerfile)" all_exist <"$T/paths"
    check "  the broker mounts the mosquitto.conf and acl the image reads" \
        grep -q "$D/mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" "$T/compose.yml"
    check "  mosquitto.conf reads its ACL and certs where they are mounted/staged" \
        bash -c "grep -qx 'acl_file /mosquitto/config/acl' '$D/mosquitto/mosquitto.conf' &&
                 grep -qx 'cafile /mosquitto/certs/ca.crt' '$D/mosquitto/mosquitto.conf' &&
                 grep -q '/mosquitto/certs' '$D/docker-compose.yml' &&
                 grep -q 'DST=\${OTA_BROKER_CERTS:-/mosquitto/certs}' '$D/broker-entrypoint.sh'"
    check "  the gateway mounts the packages directory at /packages" \
        grep -q "$T/packages:/packages:ro" "$T/compose.yml"
    check "  restart policies and healthchecks on all three services" \
        test "$(grep -c '^    restart: unless-stopped' "$T/compose.yml")" = 3 -a \
        "$(grep -c '^    healthcheck:' "$T/compose.yml")" = 3
    check "  devices: no fixed container name (scalable)" \
        bash -c "! grep -q 'container_name' '$T/compose.yml'"
    # Without OTA_PKI/OTA_PACKAGES: what is missing must be what the README's commands make.
    check "docker-compose config with the defaults" \
        compose_config "$T/compose-default.yml"
    host_paths "$T/compose-default.yml" | while read -r p; do
        [ -e "$p" ] || echo "$p"
    done >"$T/missing"
    check "  missing host paths are only under deploy/pki and deploy/packages" \
        bash -c "! grep -v -E '^$D/(pki|packages)(/|\$)' '$T/missing'"
    check "  the broker is published on 127.0.0.1:8883 by default" \
        grep -qx -- '    - 127.0.0.1:8883:8883/tcp' "$T/compose-default.yml"
    check "  the devices' open-file limit (4096) and one replica by default" \
        bash -c "grep -qx '      nofile: 4096' '$T/compose-default.yml' &&
                 grep -qx '      replicas: 1' '$T/compose-default.yml'"
    check "  OTA_BROKER_BIND=0.0.0.0 publishes it on every interface, OTA_BROKER_PORT moves it" \
        bash -c "$(declare -f compose_config); COMPOSE_FILE='$COMPOSE_FILE'
                 compose_config '$T/compose-any.yml' OTA_BROKER_BIND=0.0.0.0 OTA_BROKER_PORT=18883 &&
                 grep -qx -- '    - 0.0.0.0:18883:8883/tcp' '$T/compose-any.yml'"
    check "  OTA_DEVICES, OTA_NOFILE, OTA_IMAGE and OTA_BROKER_IMAGE are used" \
        bash -c "$(declare -f compose_config); COMPOSE_FILE='$COMPOSE_FILE'
                 compose_config '$T/compose-vars.yml' OTA_DEVICES=3 OTA_NOFILE=2048 \
                     OTA_IMAGE=ota:x OTA_BROKER_IMAGE=mq:y &&
                 grep -qx '      replicas: 3' '$T/compose-vars.yml' &&
                 grep -qx '      nofile: 2048' '$T/compose-vars.yml' &&
                 [ \$(grep -cx '    image: ota:x' '$T/compose-vars.yml') = 2 ] &&
                 grep -qx '    image: mq:y' '$T/compose-vars.yml'"
    check "  deploy/README.md gives the commands that make them" \
        bash -c "grep -q 'certs/make-certs.sh deploy/pki --devices' '$D/README.md' &&
                 grep -q 'mkdir -p deploy/packages' '$D/README.md'"
fi

# --- Dockerfile ---------------------------------------------------------------------------

copy_sources() {
    # COPY lines without --from: every source but the last word (the destination).
    sed -n 's/^COPY \+//p' "$D/Dockerfile" | grep -v -- '--from' |
        awk '{ for (i = 1; i < NF; i++) print $i }'
}
check "Dockerfile: every COPY source exists in the build context (the repo root)" \
    bash -c "cd '$OTA_ROOT' && $(declare -f copy_sources all_exist); D='$D'; copy_sources | all_exist"
check "  it copies every directory make needs" \
    bash -c "for d in proto common store gateway device-client; do
                 grep -qx \"COPY \$d/ \$d/\" '$D/Dockerfile' || { echo \"no COPY \$d/\"; exit 1; }
             done"
check "  two stages: debian:12 build, debian:12-slim runtime" \
    bash -c "grep -qx 'FROM debian:12 AS build' '$D/Dockerfile' && grep -qx 'FROM debian:12-slim' '$D/Dockerfile'"
# The build stage installs deps.sh's BUILD list (cmocka is for the unit tests only).
build_pkgs=$(sed -n '/^BUILD="/,/"/p' "$D/deps.sh" | tr -d '"' | sed 's/^BUILD=//' | xargs)
sed -n '/^FROM debian:12 AS build/,/^FROM /p' "$D/Dockerfile" >"$T/stage1"
sed -n '/^FROM debian:12-slim/,$p' "$D/Dockerfile" >"$T/stage2"
missing=
for p in $build_pkgs; do
    [ "$p" = libcmocka-dev ] && continue
    grep -qw -- "$p" "$T/stage1" || missing="$missing $p"
done
check "  the build stage installs deploy/deps.sh's BUILD packages${missing:+ (missing:$missing)}" \
    test -z "$missing"
runtime="libmosquitto1 libuv1 libjansson4 liblmdb0 libcurl4 libssl3 libzstd1 ca-certificates
         libwebsockets17 libwebsockets-evlib-uv libcap2"
missing=
for p in $runtime; do grep -qw -- "$p" "$T/stage2" || missing="$missing $p"; done
check "  the runtime stage installs$missing the runtime libraries" test -z "$missing"
check "  and no -dev package" bash -c "! grep -e '-dev\\b' '$T/stage2'"
check "  a non-root USER, /var/lib/ota, the entrypoint" \
    bash -c "grep -qx 'USER ota' '$T/stage2' && grep -q '/var/lib/ota' '$T/stage2' &&
             grep -qx 'ENTRYPOINT \\[\"/usr/local/bin/ota-entrypoint\"\\]' '$T/stage2'"
# Every shared library the binaries link directly comes from a runtime package (or libc6).
if command -v dpkg >/dev/null && command -v readelf >/dev/null && command -v ldd >/dev/null; then
    libs_ok() {
        local b l path pkg bad=0
        for b in "$GW" "$DEV"; do
            for l in $(readelf -d "$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
                case $l in libasan* | libubsan*) continue ;; esac
                path=$(ldd "$b" | awk -v l="$l" '$1 == l { print $3 }')
                pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null)
                pkg=${pkg%%:*}
                case " $runtime libc6 " in
                *" $pkg "*) ;;
                *) echo "$l ($path): package '$pkg' is not in the runtime stage"; bad=1 ;;
                esac
            done
        done
        return "$bad"
    }
    check "  the binaries' libraries (readelf NEEDED, dpkg -S) are all in the runtime stage" libs_ok
else
    skip "  the binaries' libraries are in the runtime stage" "no dpkg, readelf or ldd"
fi
check "entrypoint scripts parse (bash -n, sh -n)" \
    bash -c "bash -n '$EP' && sh -n '$D/broker-entrypoint.sh'"

# --- example configurations ---------------------------------------------------------------

GWFLAGS=(--ca-file "$CERTS/ca.crt" --cert-file "$CERTS/gateway.crt"
    --key-file "$CERTS/gateway.key" --publisher-key "$CERTS/publisher.pub")
DEVFLAGS=(--ca-file "$CERTS/ca.crt" --cert-file "$CERTS/devices/dev-001.crt"
    --key-file "$CERTS/devices/dev-001.key" --publisher-key "$CERTS/publisher.pub")
check "gateway.conf.example passes ota-gateway run --check (cert flags after -c)" \
    "$GW" run -c "$D/gateway.conf.example" "${GWFLAGS[@]}" --check
check "device.conf.example passes ota-device --check (cert flags after -c)" \
    "$DEV" -c "$D/device.conf.example" "${DEVFLAGS[@]}" --check
# Its commented fleet keys, uncommented, make a valid fleet configuration.
sed -e 's/^#\(fleet[a-z_]* = \)/\1/' -e '/^\(id\|cert_file\|key_file\) = /d' \
    -e "s|^fleet_cert_dir = .*|fleet_cert_dir = $CERTS/devices|" \
    -e "s|^fleet = .*|fleet = 2|" "$D/device.conf.example" >"$T/fleet.conf"
check "  and its fleet keys, uncommented, pass --check in fleet mode" \
    "$DEV" -c "$T/fleet.conf" --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --check

# example_keys FILE: the keys set or shown commented out ("#key = value").
example_keys() { sed -n 's/^#\{0,1\}\([a-z_][a-z0-9_]*\) = .*/\1/p' "$1" | sort -u; }
# help_keys CMD...: the keys --help lists (--foo-bar -> foo_bar), without -c, --check and
# --version (the program's own, not a key).
help_keys() {
    "$@" --help 2>&1 | sed -n 's/^  --\([a-z][a-z0-9-]*\) .*/\1/p' |
        grep -v -x -e config -e check -e version | tr - _ | sort -u
}
same_keys() {
    diff <(example_keys "$1") <(shift; help_keys "$@")
}
# Every key line follows a comment line.
documented() {
    awk '/^#?[a-z_]+ = / && prev !~ /^#/ { print FILENAME ":" NR ": " $0 " has no comment"; bad = 1 }
         { prev = $0 } END { exit bad }' "$1"
}
check "gateway.conf.example has exactly the keys of ota-gateway run --help" \
    same_keys "$D/gateway.conf.example" "$GW" run
check "device.conf.example has exactly the keys of ota-device --help" \
    same_keys "$D/device.conf.example" "$DEV"
check "  every key of both is documented by a comment" \
    bash -c "$(declare -f documented); documented '$D/gateway.conf.example' && documented '$D/device.conf.example'"

# The compose gateway command: the same flags, container paths mapped to the test's.
gw_cmd=$(sed -n '/^  gateway:/,/^  devices:/p' "$COMPOSE_FILE" | sed -n '/command:/,/]/p' |
    tr -d '[],"' | sed 's/command://' | xargs)
read -r -a gw_args <<<"$(sed -e "s|/run/ota/pki|$CERTS|g" -e "s|/var/lib/ota/gateway|$T/gw|g" \
    -e "s|/etc/ota/gateway.conf|$D/gateway.conf.example|g" <<<"$gw_cmd")"
check "the compose gateway command parses (${gw_cmd:0:40}...)" \
    "$GW" "${gw_args[@]:1}" --check

# --- systemd units ------------------------------------------------------------------------

has_keys() {
    local f=$1 k bad=0
    shift
    for k in "$@"; do grep -qx -- "$k" "$f" || { echo "$f: no line '$k'"; bad=1; }; done
    return "$bad"
}
HARD=(NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes
    CapabilityBoundingSet= "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"
    SystemCallFilter=@system-service MemoryDenyWriteExecute=yes LockPersonality=yes
    Restart=on-failure)
check "ota-gateway.service: hardening, StateDirectory, user, --check before start" \
    has_keys "$D/systemd/ota-gateway.service" "${HARD[@]}" StateDirectory=ota-gateway \
    ReadWritePaths=/var/lib/ota-gateway User=ota-gateway \
    "ExecStartPre=/usr/local/bin/ota-gateway run -c /etc/ota/gateway.conf --check" \
    "ExecStart=/usr/local/bin/ota-gateway run -c /etc/ota/gateway.conf"
check "ota-device.service: hardening, StateDirectory, user, --check before start" \
    has_keys "$D/systemd/ota-device.service" "${HARD[@]}" StateDirectory=ota-device \
    ReadWritePaths=/var/lib/ota-device User=ota-device \
    "ExecStartPre=/usr/local/bin/ota-device -c /etc/ota/device.conf --check" \
    "ExecStart=/usr/local/bin/ota-device -c /etc/ota/device.conf"
check "  the users the units run as are in ota.sysusers" \
    bash -c "grep -q '^u *ota-gateway ' '$D/systemd/ota.sysusers' && grep -q '^u *ota-device ' '$D/systemd/ota.sysusers'"
# What ExecStartPre runs, with this build's binary and the example configuration.
unit_cmd() {
    sed -n "s/^$2=//p" "$D/systemd/$1" | sed -e "s|/usr/local/bin/|$BUILD/|" \
        -e "s|/etc/ota/gateway.conf|$D/gateway.conf.example|" \
        -e "s|/etc/ota/device.conf|$D/device.conf.example|"
}
read -r -a cmd <<<"$(unit_cmd ota-gateway.service ExecStartPre)"
check "  ota-gateway.service's ExecStartPre runs (binary, -c, --check)" "${cmd[@]}" "${GWFLAGS[@]}"
read -r -a cmd <<<"$(unit_cmd ota-device.service ExecStartPre)"
check "  ota-device.service's ExecStartPre runs (binary, -c, --check)" "${cmd[@]}" "${DEVFLAGS[@]}"
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$T/units"
    for u in ota-gateway.service ota-device.service; do
        sed "s|/usr/local/bin/|$BUILD/|g" "$D/systemd/$u" >"$T/units/$u"
    done
    check "systemd-analyze verify accepts both units (binaries: this build)" \
        bash -c "cd '$T/units' && out=\$(systemd-analyze verify ./ota-gateway.service ./ota-device.service 2>&1);
                 echo \"\$out\"; ! grep -q 'ota-' <<<\"\$out\""
else
    skip "systemd-analyze verify accepts both units" "systemd-analyze not installed"
fi

# --- fleet slots: scaled replicas get distinct identities ----------------------------------
# Two "replicas" of the devices service, run by deploy/ota-entrypoint.sh exactly as the
# container runs them, but with the test's paths: 2 devices per slot, 4 certificates.

broker_start || { not_ok "broker starts"; finish; }
gateway_start || not_ok "gateway starts"

# replica NAME: ota-entrypoint fleet, as the devices service runs it.
replica() {
    local name=$1
    spawn "$name" env OTA_PKI="$CERTS" OTA_RUN="$T/run-$name" OTA_STATE="$T/state" \
        OTA_USER="$(id -un)" OTA_FLEET_SIZE=2 PATH="$BUILD:$PATH" \
        bash "$EP" fleet --product sensor --version 1.0.0 --broker-host localhost \
        --broker-port "$BROKER_PORT" --ca-file "$T/run-$name/pki/ca.crt" \
        --publisher-key "$T/run-$name/pki/publisher.pub" --fleet-stagger-ms 1
}
slot_of() { cut -d' ' -f1 "$T/run-$1/slot" 2>/dev/null; }

replica r1
replica r2
check "two replicas each claim a slot" \
    wait_until 10 '[ -s "$T/run-r1/slot" ] && [ -s "$T/run-r2/slot" ]'
check "  distinct slots 0 and 1" \
    test "$(printf '%s\n' "$(slot_of r1)" "$(slot_of r2)" | sort | xargs)" = "0 1"
check "  all four devices come online, each once" \
    wait_until 20 'all_devices idle 1.0.0 dev-001 dev-002 dev-003 dev-004'
check "  each replica staged only its own slot's keys, mode 0600" \
    bash -c "[ \$(ls '$T/run-r1/pki/devices' | wc -l) = 4 ] &&
             [ \"\$(stat -c %a '$T/run-r1/pki/devices/'*.key | sort -u)\" = 600 ]"
check "  state directories per device id in the shared state directory" \
    bash -c "cd '$T/state/devices' && [ -d dev-001 ] && [ -d dev-004 ]"
replica r3
check "a third replica finds no free slot (4 certificates) and says why" \
    wait_until 10 '! alive r3 && grep -q "no free fleet slot" "$T/r3.log"'
# shellcheck disable=SC2034  # used in the wait_until condition below
freed=$(slot_of r1)
stop r1 || true
replica r4
check "after a replica stops, a new one takes its slot" \
    wait_until 10 '[ -s "$T/run-r4/slot" ] && [ "$(slot_of r4)" = "$freed" ]'
check "  and its devices are back online" \
    wait_until 20 'all_devices idle 1.0.0 dev-001 dev-002 dev-003 dev-004'
# The devices service's open-file limit (OTA_NOFILE) too low for OTA_FLEET_SIZE: said at start.
check "a replica whose fleet needs more open files than its limit says to raise OTA_NOFILE" \
    bash -c "ulimit -n 200; out=\$(OTA_PKI='$CERTS' OTA_RUN='$T/run-nofile' OTA_STATE='$T/state-nofile' \
                 OTA_USER=\$(id -un) OTA_FLEET_SIZE=100 PATH='$BUILD:$PATH' bash '$EP' fleet 2>&1)
             rc=\$?; echo \"\$out\"; [ \$rc = 1 ] && grep -q 'limit is 200: raise OTA_NOFILE' <<<\"\$out\""
check "the gateway healthcheck (ota-entrypoint health gateway) reads the ledger" \
    env OTA_STATE="$T" PATH="$BUILD:$PATH" bash "$EP" health gateway "$T/gw-db"
check "stopping the fleets and the gateway is clean" stop_all_clean r2 r4 gateway

finish
