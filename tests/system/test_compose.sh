#!/usr/bin/env bash
# ota-test-timeout: 1800
# shellcheck disable=SC2016,SC2317  # wait_until evals its conditions; functions run via check
# deploy/docker-compose.yml started for real, with podman and podman-compose, following
# deploy/README.md ("Podman"): no Docker engine and no image registry, only Debian's
# archive.
#
#   images    deploy/podman/images.sh: debian:12, debian:12-slim (debootstrap) and the
#             ota-mosquitto:2 stand-in; cached in podman's store by a hash of their recipe
#   image     podman build --network host -f deploy/Dockerfile: tagged by a hash of the
#             Dockerfile, everything it copies and the base image, built only if missing
#   up        podman-compose up -d: broker, gateway, 2 devices replicas x 25 devices; every
#             device reports idle 1.0.0 in the gateway's ledger
#   healthy   every container's healthcheck, run by `podman healthcheck run` (podman
#             schedules healthchecks with systemd timers; there is no systemd here)
#   campaign  an 8 MiB release packed, verified and announced from the host with the
#             commands of deploy/README.md ("Publishing a release"); the gateway restarted
#             once (podman-compose restart gateway) as soon as devices start on it; every
#             device of every replica commits 1.1.0 (ota-gateway status --json, run in the
#             gateway container)
#   down      podman-compose down -v; no container, volume or network of the run is left
# Each phase prints its time ("# time: ..."); the first run makes the images (minutes),
# later runs find them in podman's store.
#
# What the test substitutes: nothing in the compose file, the Dockerfile or the entrypoints.
# It sets the compose file's variables OTA_PKI and OTA_PACKAGES (its temp dir), OTA_BROKER_PORT
# (a free port), OTA_DEVICES=2, OTA_FLEET_SIZE=25, OTA_IMAGE (the hash tag above) and
# OTA_BROKER_IMAGE (the stand-in); OTA_BROKER_BIND, OTA_NOFILE and OTA_NPROC keep their
# defaults. The project name (-p) is one per run, so runs on one machine do not collide.
# In the README's release commands it replaces deploy/pki, deploy/packages, build/,
# firmware.bin and port 8883 by the run's own, and makes the firmware 8 MiB instead of 1 MiB
# (with 1 MiB the 50 devices had all committed before the gateway could be restarted
# mid-campaign, once fleets resumed their TLS sessions).
#
# Skipped (with the reason) where podman cannot run a container (not root, podman missing,
# `podman info` or a trivial container failing: podman's error is shown) or Debian's
# archive cannot be reached to make the base images. Anything else that goes wrong fails,
# with the containers' logs; every wait has a time limit.
. "$OTA_ROOT/tests/system/lib.sh"

D=$OTA_ROOT/deploy
GW=$BUILD/ota-gateway
REPLICAS=${OTA_COMPOSE_REPLICAS:-2}
FLEET=${OTA_COMPOSE_FLEET:-25}
TOTAL=$((REPLICAS * FLEET))
PROJ=otatest$$r$RANDOM
STACK=0
export CONTAINERS_CONF=$D/podman/containers.conf
# Output shown only where it matters ($T/*.log is shown at every failure by lib.sh).
mkdir -p "$T/out"

# --- helpers --------------------------------------------------------------------------------

T0=${EPOCHREALTIME/./}
PHASE_T=$T0
TIMES=""
# phase_done NAME: prints how long NAME took (since the previous phase_done).
phase_done() {
    local now=${EPOCHREALTIME/./} ms
    ms=$(((now - PHASE_T) / 1000))
    PHASE_T=$now
    TIMES="$TIMES $1=$((ms / 1000)).$((ms % 1000 / 100))s"
    echo "# time: $1 $((ms / 1000)).$((ms % 1000 / 100)) s"
}

# Every podman command has a time limit (-k: podman may ignore SIGTERM).
pm() { timeout -k 10 120 podman "$@"; }
# pc SECONDS ARGS...: podman-compose on the run's project, from the repository root.
pc() {
    local secs=$1
    shift
    (cd "$OTA_ROOT" && timeout -k 10 "$secs" podman-compose -p "$PROJ" -f deploy/docker-compose.yml "$@")
}

# ctrs [SERVICE]: names of the run's containers (of SERVICE), sorted.
ctrs() {
    pm ps -a --filter "label=io.podman.compose.project=$PROJ" \
        ${1:+--filter "label=com.docker.compose.service=$1"} --format '{{.Names}}' | sort
}

# stack_logs: every container's state and the end of its log, as TAP comments.
LOGS_SHOWN=0
stack_logs() {
    local c
    LOGS_SHOWN=1
    for c in $(ctrs); do
        echo "# --- $c: $(pm inspect -f '{{.State.Status}} exit={{.State.ExitCode}} restarts={{.RestartCount}}' "$c" 2>&1) ---"
        pm logs --tail "$LOG_TAIL" "$c" 2>&1 | sed 's/^/#   /'
    done
}

# stack_rm: remove what is left of the run's stack, whatever state it is in.
stack_rm() {
    local c v
    [ "$STACK" = 1 ] || return 0
    for c in $(ctrs); do pm rm -f -t 0 "$c" >/dev/null 2>&1; done
    for v in $(pm volume ls --format '{{.Name}}' | grep "^${PROJ}_"); do
        pm volume rm -f "$v" >/dev/null 2>&1
    done
    pm network rm -f "${PROJ}_default" >/dev/null 2>&1
    STACK=0
}
trap 'stack_rm; cleanup' EXIT

# abort DESC: the test cannot go on: the containers' logs, then the end.
abort() {
    echo "# giving up: $*"
    [ "$LOGS_SHOWN" = 1 ] || stack_logs
    finish
}

# broken: a container of the stack exited or was restarted by its restart policy (the
# gateway's planned restart is not counted: `podman restart` is not the policy's).
broken() {
    local c st
    for c in $(ctrs); do
        st=$(pm inspect -f '{{.State.Status}} {{.RestartCount}}' "$c" 2>/dev/null) || continue
        case $st in
        "running 0") ;;
        *) echo "$c: $st" >"$T/broken"; return 0 ;;
        esac
    done
    return 1
}

# wait_for SECS DESC COND: ok once COND holds; not ok (with the logs) after SECS or as soon
# as a container of the stack exits or restarts.
wait_for() {
    local secs=$1 desc=$2 cond=$3
    rm -f "$T/broken"
    if wait_until "$secs" "$cond || broken" && eval "$cond"; then
        ok "$desc"
        return 0
    fi
    if [ -s "$T/broken" ]; then
        not_ok "$desc (a container stopped: $(cat "$T/broken"))"
    else
        not_ok "$desc (not within $secs s)"
    fi
    stack_logs
    return 1
}

GWC=
# status_json: ota-gateway status --json in the gateway container, as user ota.
status_json() {
    timeout -k 5 30 podman exec --user ota "$GWC" \
        ota-gateway status --db /var/lib/ota/gateway/db --json 2>/dev/null
}
# count JQ-CONDITION: devices of the ledger for which the condition holds.
count() {
    status_json | jq "[.devices[] | select($1)] | length" 2>/dev/null
}
fleet_at() {
    [ "$(count ".state == \"$1\" and .version == \"$2\"")" = "$TOTAL" ]
}

# health CONTAINER: runs its healthcheck (podman healthcheck run) until healthy, 30 s at most.
health() {
    wait_until 30 "timeout -k 5 30 podman healthcheck run '$1' >'$T/out/health' 2>&1" &&
        [ "$(pm inspect -f '{{.State.Health.Status}}' "$1")" = healthy ] && return 0
    # What podman says, and the healthcheck command's own last output.
    cat "$T/out/health"
    pm inspect -f '{{range .State.Health.Log}}{{.ExitCode}}: {{.Output}}{{println}}{{end}}' "$1" | tail -n 3
    return 1
}

# --- can podman run here? -------------------------------------------------------------------

skip_all() {
    skip "docker-compose stack under podman" "$1"
    exit 0
}
[ "$(id -u)" = 0 ] || skip_all "needs root (podman as root, debootstrap; CI runs as root)"
for c in podman podman-compose debootstrap jq mosquitto_pub; do
    command -v "$c" >/dev/null || skip_all "$c is not installed (sh deploy/deps.sh installs it)"
done
[ -x "$GW" ] || skip_all "no $GW (make VARIANT=asan all-tests)"
pm info >"$T/out/podman-info.log" 2>&1 ||
    skip_all "podman cannot run here: $(grep -i -m1 error "$T/out/podman-info.log" || tail -n 1 "$T/out/podman-info.log")"
# probe: a trivial container of the base image runs. If podman says it cannot, skip with
# its error; if it does not answer (3 tries of 3 minutes), fail: that is not a reason to skip.
probe() {
    local i rc
    for ((i = 1; i <= 3; i++)); do
        rc=0
        timeout -k 10 180 podman run --rm --network none debian:12 true >"$T/out/probe.log" 2>&1 || rc=$?
        case $rc in
        0) return 0 ;;
        124 | 137) echo "# podman run (a trivial container) did not answer in 180 s, try $i" ;;
        *) skip_all "podman cannot run a container here (exit $rc): $(grep -i -m1 -E 'error|denied' \
            "$T/out/probe.log" || tail -n 1 "$T/out/probe.log")" ;;
        esac
    done
    not_ok "podman runs a trivial container (it hung 3 times)"
    pgrep -a -f 'podman|conmon|runc' | sed 's/^/#   /'
    finish
}

# --- images ---------------------------------------------------------------------------------

# As deploy/README.md: sh deploy/podman/images.sh
if ! sh "$D/podman/images.sh" >"$T/out/images.log" 2>&1; then
    mirror=$(sed -n 's/^images: debootstrap .* from \([^ ]*\).*/\1/p' "$T/out/images.log")
    if [ -n "$mirror" ] && ! timeout -k 5 30 wget -q -T 20 -O /dev/null "$mirror/dists/bookworm/Release"; then
        skip_all "Debian's archive ($mirror) cannot be reached to make the base images"
    fi
    # The base image was made but the stand-in's build could not run a container.
    pm image exists debian:12 && probe
    not_ok "deploy/podman/images.sh makes the base images and the Mosquitto stand-in"
    tail -n 30 "$T/out/images.log" | sed 's/^/#   /'
    finish
fi
probe
ok "deploy/podman/images.sh: debian:12, debian:12-slim and the Mosquitto stand-in"
OTA_BROKER_IMAGE=$(sed -n 's/^OTA_BROKER_IMAGE=//p' "$T/out/images.log")
grep '^images: ' "$T/out/images.log" | sed 's/^/# /'
phase_done images

# The ota image, tagged by a hash of what goes into it: built again only when deploy/Dockerfile,
# a file it copies or the base image changes.
img_hash() {
    local srcs
    srcs=$(sed -n 's/^COPY \+//p' "$D/Dockerfile" | grep -v -- '--from' |
        awk '{ for (i = 1; i < NF; i++) print $i }')
    {
        cat "$D/Dockerfile"
        # shellcheck disable=SC2086  # the list of sources is meant to be split
        (cd "$OTA_ROOT" && find $srcs -type f | LC_ALL=C sort | xargs sha256sum)
        pm image inspect -f '{{.Id}}' debian:12 debian:12-slim
    } | sha256sum | cut -c1-12
}
OTA_IMAGE=localhost/ota:src-$(img_hash)
if pm image exists "$OTA_IMAGE"; then
    ok "the ota image is in podman's store ($OTA_IMAGE)"
else
    # As deploy/README.md, with the run's tag: podman build --network host -f deploy/Dockerfile -t ota:latest .
    (
        flock -w 1200 9 || exit 1
        pm image exists "$OTA_IMAGE" ||
            (cd "$OTA_ROOT" && timeout -k 10 1200 podman build --network host -f deploy/Dockerfile \
                -t "$OTA_IMAGE" .)
    ) 9>"/run/lock/ota-image-${OTA_IMAGE##*:}.lock" >"$T/out/build.log" 2>&1
    if pm image exists "$OTA_IMAGE"; then
        ok "podman build -f deploy/Dockerfile builds the ota image ($OTA_IMAGE)"
        # Images of older sources (any checkout's) go after two days; one in use stays.
        for old in $(pm images --filter 'reference=localhost/ota:src-*' --filter until=48h \
            --format '{{.Repository}}:{{.Tag}}' | grep ':src-'); do
            pm rmi "$old" >/dev/null 2>&1 || true
        done
    else
        not_ok "podman build -f deploy/Dockerfile builds the ota image"
        tail -n 40 "$T/out/build.log" | sed 's/^/#   /'
        finish
    fi
fi
phase_done image

# --- up -------------------------------------------------------------------------------------

# As deploy/README.md (certs/make-certs.sh deploy/pki --devices N; mkdir -p deploy/packages).
OTA_PKI=$T/pki
OTA_PACKAGES=$T/packages
bash "$OTA_ROOT/certs/make-certs.sh" "$OTA_PKI" --quiet --devices "$TOTAL" ||
    { not_ok "certs/make-certs.sh makes the PKI"; finish; }
mkdir -p "$OTA_PACKAGES"
OTA_BROKER_PORT=$(free_port)
unset OTA_BROKER_BIND OTA_NOFILE OTA_NPROC
export OTA_PKI OTA_PACKAGES OTA_BROKER_PORT OTA_IMAGE OTA_BROKER_IMAGE
export OTA_DEVICES=$REPLICAS OTA_FLEET_SIZE=$FLEET
echo "# project $PROJ: broker on 127.0.0.1:$OTA_BROKER_PORT, $REPLICAS x $FLEET devices," \
    "images $OTA_IMAGE $OTA_BROKER_IMAGE"

STACK=1
pc 300 up -d >"$T/out/compose-up.log" 2>&1
rc=$?
# podman-compose up's own status says little (it goes on after a failed container):
# what runs is what counts.
check "podman-compose up -d starts broker, gateway and $REPLICAS devices replicas (exit $rc)" \
    test "$(ctrs | xargs)" = "$(printf '%s\n' "${PROJ}_broker_1" "${PROJ}_gateway_1" \
        $(seq -f "${PROJ}_devices_%g" 1 "$REPLICAS") | sort | xargs)" ||
    { grep -a -i -E 'error|exit code: [1-9]' "$T/out/compose-up.log" | tail -n 20 | sed 's/^/#   /'; abort "the stack did not start"; }
GWC=${PROJ}_gateway_1
BRC=${PROJ}_broker_1
wait_for 120 "the gateway connects to the broker (by its service name)" \
    "pm logs '$GWC' 2>&1 | grep -q 'mqtt connected'" || abort "no gateway"
wait_for 180 "all $TOTAL devices of the $REPLICAS replicas report idle 1.0.0 (ledger, in the gateway container)" \
    "fleet_at idle 1.0.0" || abort "the fleet did not come up"
slots=$(for c in $(ctrs devices); do pm exec "$c" cat /run/ota/slot | cut -d' ' -f1; done | sort -n | xargs)
check "  each replica holds its own slot ($slots)" test "$slots" = "$(seq 0 $((REPLICAS - 1)) | xargs)"
check "  the broker is published on 127.0.0.1 only (OTA_BROKER_BIND's default)" \
    test "$(pm port "$BRC" | xargs)" = "8883/tcp -> 127.0.0.1:$OTA_BROKER_PORT"
# The broker's environment, read from the host: mosquitto dropped root for its own user,
# and podman's root inside the container may not read a process that did.
br_env=$(tr '\0' '\n' <"/proc/$(podman inspect -f '{{.State.Pid}}' "$BRC")/environ" 2>/dev/null)
check "  the broker runs with deploy/mosquitto/openssl.cnf (OPENSSL_CONF, the file mounted)" \
    bash -c "grep -qx 'OPENSSL_CONF=/mosquitto/config/openssl.cnf' <<<\"\$1\" &&
             podman exec '$BRC' grep -q '^Options = -SessionTicket' /mosquitto/config/openssl.cnf" \
    _ "$br_env"
check "  the devices' open-file limit is OTA_NOFILE's default (4096)" \
    bash -c "podman exec '${PROJ}_devices_1' grep 'Max open files' /proc/1/limits | grep -q ' 4096 \+4096 '"
phase_done up

# --- healthchecks ---------------------------------------------------------------------------

for c in $(ctrs); do
    check "healthcheck of $c: healthy" health "$c" || stack_logs
done
phase_done healthy

# --- a release, published from the host as deploy/README.md says ----------------------------

# readme_block HEADING: the first ```sh block after the line HEADING of deploy/README.md.
readme_block() {
    awk -v h="$1" '$0 == h { f = 1; next } f && /^```sh/ { b = 1; next }
                   b && /^```/ { exit } b { print }' "$D/README.md"
}
# The README's commands, with the run's paths and port; `make` (the host build) is done.
readme_block "### Publishing a release" | grep -v '^make\b' |
    sed -e "s|deploy/pki|$OTA_PKI|g" -e "s|deploy/packages|$OTA_PACKAGES|g" \
        -e "s|build/ota-gateway|$GW|g" -e "s|firmware.bin|$T/firmware.bin|g" \
        -e "s|head -c 1048576 |head -c $((8 * 1048576)) |" \
        -e "s|-p 8883|-p $OTA_BROKER_PORT|g" >"$T/publish.sh"
check "deploy/README.md's release commands: pack, verify, mosquitto_pub (one file:///packages/ URL)" \
    bash -c "grep -q ' pack ' '$T/publish.sh' && grep -q ' verify ' '$T/publish.sh' &&
             grep -q '^mosquitto_pub ' '$T/publish.sh' &&
             grep -q 'file:///packages/sensor-1.1.0.ota' '$T/publish.sh'" ||
    { sed 's/^/#   /' "$T/publish.sh"; abort "no release commands in deploy/README.md"; }
started0=$(pm inspect -f '{{.State.StartedAt}}' "$GWC")
t_pub=${EPOCHREALTIME/./}
check "  they run from the host (pack, verify, announce)" bash -e "$T/publish.sh" ||
    abort "the release was not published"

# As soon as devices start on the release, restart the gateway.
wait_for 60 "devices start on the release" \
    "[ \"\$(count '.state != \"idle\"' || echo 0)\" -gt 0 ]" || abort "no campaign"
done_before=$(count '.state == "committed" and .version == "1.1.0"')
echo "# restarting the gateway: ${done_before:-?} of $TOTAL devices committed," \
    "$(( (${EPOCHREALTIME/./} - t_pub) / 1000 )) ms after the announce"
check "  podman-compose restart gateway, mid-campaign" pc 120 restart gateway
check "  that was mid-campaign (${done_before:-?} of $TOTAL committed before)" \
    test "${done_before:-$TOTAL}" -lt "$TOTAL"
check "  the gateway container was restarted" \
    test "$(pm inspect -f '{{.State.StartedAt}}' "$GWC")" != "$started0"
wait_for 60 "  the restarted gateway connects again" \
    "[ \$(pm logs '$GWC' 2>&1 | grep -c 'mqtt connected') -ge 2 ]"
wait_for 300 "every device of every replica commits 1.1.0 (ledger, in the gateway container)" \
    "fleet_at committed 1.1.0"
echo "# announce -> all $TOTAL committed: $(( (${EPOCHREALTIME/./} - t_pub) / 1000 )) ms" \
    "(8 MiB, gateway restarted once)"
check "  the gateway is healthy after its restart" health "$GWC"
phase_done campaign

# --- down -----------------------------------------------------------------------------------

down() { pc 180 down -v >"$T/out/compose-down.log" 2>&1 || { tail -n 20 "$T/out/compose-down.log"; return 1; }; }
check "podman-compose down -v" down
# podman-compose 1.0.3 leaves the project's network (deploy/README.md says to remove it).
pm network rm "${PROJ}_default" >/dev/null 2>&1
check "  no container, volume or network of the run is left" \
    test -z "$(ctrs)$(pm volume ls --format '{{.Name}}' | grep "^${PROJ}_")$(pm network ls --format '{{.Name}}' | grep "^${PROJ}_")"
STACK=0
phase_done down
echo "# times:$TIMES total=$(( (${EPOCHREALTIME/./} - T0) / 1000000 ))s"

check "deploy/README.md gives the podman commands this test runs" \
    bash -c "for l in 'export CONTAINERS_CONF=\$PWD/deploy/podman/containers.conf' \
                      'sh deploy/podman/images.sh' \
                      'podman build --network host -f deploy/Dockerfile -t ota:latest .' \
                      'export OTA_BROKER_IMAGE=ota-mosquitto:2' \
                      'podman-compose -f deploy/docker-compose.yml up -d' \
                      'podman healthcheck run' \
                      'podman-compose -f deploy/docker-compose.yml restart gateway' \
                      'podman-compose -f deploy/docker-compose.yml down -v'; do
                 grep -qF -- \"\$l\" '$D/README.md' || { echo \"missing: \$l\"; exit 1; }
             done"
finish
