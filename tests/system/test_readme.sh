#!/usr/bin/env bash
# The README's operator guide, command by command, on loopback. The commands of README's
# fenced sh blocks are read from README.md itself (continuation lines joined) and run from
# $T with only these substitutions:
#   build/              -> $BUILD/
#   certs/make-certs.sh -> $OTA_ROOT/certs/make-certs.sh   (pki/, firmware.bin ... stay
#                          relative: the commands run in $T, so pki/ is $T/pki/)
#   /var/lib/, /srv/ota/ -> $T/var/lib/, $T/srv/ota/ (https://ota.example/ -> file://$T/srv/ota/;
#                          --file-dirs /srv/ota -> --file-dirs $T/srv/ota)
#   -h localhost -p 8883, --broker-port 8883 -> the test broker's port
#   mosquitto_pub ...   -> mosquitto_pub with the operator's connection arguments
# (plus, where noted, another version, payload, device id or an added flag). Commands the
# README gives only inline in its prose (ctl, --fleet, --wide ...) are written out here,
# and the README's text for them is checked. A README command that is gone or changed
# fails its "README shows" check, so this test and the README cannot drift apart silently.
# SC2317: helpers run through check and wait_until; SC2016: conditions and README text
# are single-quoted on purpose.
# shellcheck disable=SC2317,SC2016
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

README=$OTA_ROOT/README.md
PKI=$T/pki
CERTS=$PKI # the harness's broker and mq_* helpers use the README's pki/
mkdir -p "$T/srv/ota"

# $T/readme.cmds: one line per command of README's ```sh blocks (comment lines dropped,
# backslash continuations and quoted strings spanning lines joined, trailing comments cut).
awk '
/^```sh[ \t]*$/ { inb = 1; next }
/^```/ { inb = 0; buf = ""; next }
!inb { next }
{
    line = $0
    if (buf == "" && (line ~ /^[ \t]*#/ || line ~ /^[ \t]*$/)) next
    if (buf != "") { sub(/^[ \t]+/, "", line); buf = buf " " line } else buf = line
    if (buf ~ /\\$/) { sub(/[ \t]*\\$/, "", buf); next }
    tmp = buf
    if (gsub(/\047/, "", tmp) % 2 == 1) next
    sub(/[ \t]+#[ \t].*$/, "", buf)
    print buf
    buf = ""
}' "$README" >"$T/readme.cmds"
# $T/readme.flat: the whole README on one line, runs of white space squeezed (for commands
# given inline in the prose, which may wrap).
tr '\n' ' ' <"$README" | tr -s ' \t' ' ' >"$T/readme.flat"

# readme_cmd PREFIX: the one README command that starts with PREFIX (fails if none or
# more than one).
readme_cmd() {
    local n
    n=$(awk -v p="$1" 'index($0, p) == 1' "$T/readme.cmds" | wc -l)
    [ "$n" = 1 ] || { echo "README has $n commands starting with: $1"; return 1; }
    awk -v p="$1" 'index($0, p) == 1' "$T/readme.cmds"
}

# readme_says TEXT: the README's prose contains TEXT (white space squeezed).
readme_says() {
    grep -qF -- "$1" "$T/readme.flat" || { echo "README does not say: $1"; return 1; }
}

OP_ARGS="-h localhost -p \$BROKER_PORT --cafile pki/ca.crt --cert pki/operator.crt --key pki/operator.key -q 1"

# readme_sub PREFIX [SED-EXPR...]: the README command starting with PREFIX, with the
# standard substitutions (see the top) and then the SED-EXPRs applied. $BROKER_PORT is
# left as a variable: it is expanded when the command runs.
readme_sub() {
    local cmd e
    cmd=$(readme_cmd "$1") || return 1
    shift
    cmd=$(sed -e "s|^build/|$BUILD/|" -e "s|^certs/make-certs\\.sh|$OTA_ROOT/certs/make-certs.sh|" \
        -e "s|/var/lib/|$T/var/lib/|g" -e "s|file:///srv/ota/|file://$T/srv/ota/|g" \
        -e "s|--file-dirs /srv/ota|--file-dirs $T/srv/ota|g" \
        -e "s|https://ota\\.example/|file://$T/srv/ota/|g" \
        -e "s|-h localhost -p 8883|-h localhost -p \$BROKER_PORT|g" \
        -e "s|--broker-port 8883|--broker-port \$BROKER_PORT|g" \
        -e "s|^mosquitto_pub \\.\\.\\. |mosquitto_pub $OP_ARGS |" -e 's| &$||' <<<"$cmd")
    for e in "$@"; do cmd=$(sed -e "$e" <<<"$cmd"); done
    echo "$cmd"
}

# CMDS[PREFIX] is checked once: "README shows PREFIX".
declare -A SHOWN=()
readme_shown() {
    [ -n "${SHOWN[$1]:-}" ] && return 0
    SHOWN[$1]=1
    check "README shows: $1" readme_cmd "$1"
}

# readme_run DESC PREFIX [SED-EXPR...]: run that README command in $T (a check); its
# output is in $T/last.out.
readme_run() {
    local desc=$1 prefix=$2 cmd
    shift 2
    readme_shown "$prefix" || { not_ok "$desc (not run: the README command is gone)"; return 1; }
    cmd=$(readme_sub "$prefix" "$@")
    echo "# \$ $cmd" >"$T/last.cmd"
    check "$desc" bash -c "cd '$T' && { $cmd; } >'$T/last.out' 2>&1 || { cat '$T/last.cmd' '$T/last.out'; exit 1; }"
}

# readme_spawn NAME PREFIX [SED-EXPR...]: that README command as background process NAME.
readme_spawn() {
    local name=$1 prefix=$2 cmd
    shift 2
    readme_shown "$prefix" || return 1
    cmd=$(readme_sub "$prefix" "$@")
    echo "# $name: $cmd" >>"$T/spawned.cmds"
    spawn "$name" bash -c "cd '$T' && exec env $cmd"
}

# refuses PATTERN CMD [ARGS...]: CMD exits non-zero by itself (not a signal, not timeout's
# 124) and its output matches PATTERN (grep -Ei).
refuses() {
    local pat=$1 rc=0
    shift
    (cd "$T" && "$@") >"$T/refuses.out" 2>&1 </dev/null || rc=$?
    cat "$T/refuses.out"
    echo "(exit status $rc)"
    [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$rc" -lt 128 ] && grep -qEi -- "$pat" "$T/refuses.out"
}

# op_pub ARGS...: mosquitto_pub as the README's operator (for messages the README
# describes but does not spell out).
op_pub() {
    (cd "$T" && eval "mosquitto_pub $OP_ARGS \"\$@\"")
}

STATUS_DB=$T/var/gateway-db
events() { gw_status_json | jq -r "[.events[] | select($1)] | length"; }
rel_id() { gw_status_json | jq -r --arg v "$1" '.releases[] | select(.version == $v) | .release'; }
rel_field() { gw_status_json | jq -r --arg v "$1" ".releases[] | select(.version == \$v) | $2"; }
acked_sum() {
    gw_status_json | jq '[.devices[] | select(.device == "dev-001" or .device == "dev-002"
        or .device == "dev-003") | .acked // 0] | add'
}
# gw_status_json reads $T/gw-db (ota.sh): point it at the README's db.
gw_status_json() { "$GW" status --db "$STATUS_DB" --json --events 1000 2>/dev/null; }

# --- 1. keys and certificates ---------------------------------------------------------------

readme_run "make-certs.sh makes the fleet's PKI into pki/" "certs/make-certs.sh pki --devices 3"
for f in ca.crt broker.crt gateway.crt operator.crt operator.key publisher.key publisher.pub \
    devices/dev-001.crt devices/dev-001.key devices/dev-003.crt devices/dev-003.key; do
    [ -s "$PKI/$f" ] || not_ok "pki/$f exists"
done
check "pki/ holds CA, broker, gateway, operator, 3 devices and the publisher key" \
    test "$(find "$PKI/devices" -name '*.crt' | wc -l)" = 3

# --- 2. pack and verify ---------------------------------------------------------------------

readme_run "firmware.bin is made as written" "head -c 200000 /dev/urandom >firmware.bin"
check "  200000 bytes" test "$(stat -c %s "$T/firmware.bin")" = 200000
readme_run "pack signs firmware.bin into sensor-1.1.0.ota as written" \
    "build/ota-gateway pack --publisher-key pki/publisher.key --product sensor --version 1.1.0"
check "the package exists" test -s "$T/sensor-1.1.0.ota"
readme_run "verify accepts it as written" "build/ota-gateway verify --publisher-key pki/publisher.pub sensor-1.1.0.ota"
check "and prints product, version and the payload's sha256" \
    bash -c "grep -q sensor '$T/last.out' && grep -q 1.1.0 '$T/last.out' &&
        grep -q $(sha256sum "$T/firmware.bin" | cut -d' ' -f1) '$T/last.out'"
cp "$T/sensor-1.1.0.ota" "$T/srv/ota/" 2>/dev/null

# --- 3. broker, gateway, devices ------------------------------------------------------------

# The README names deploy/mosquitto/mosquitto.conf; the harness renders its template
# mosquitto.conf.in. Both must say the same thing (comments aside).
check "deploy/mosquitto/mosquitto.conf is its template rendered for port 8883 (no drift)" \
    diff <(sed -e 's|@PORT@|8883|g' -e 's|@BIND@|0.0.0.0|g' -e 's|@CERTS@|/mosquitto/certs|g' \
        -e 's|@ACL@|/mosquitto/config/acl|g' -e 's|@USER@|mosquitto|g' \
        "$OTA_ROOT/deploy/mosquitto/mosquitto.conf.in" | grep -v '^#') \
    <(grep -v '^#' "$OTA_ROOT/deploy/mosquitto/mosquitto.conf")
check "README: the broker is deploy/mosquitto/mosquitto.conf with deploy/mosquitto/acl" \
    readme_says 'A broker for this: `deploy/mosquitto/mosquitto.conf` (TLS only, client certificates required'
# The README's host broker: deploy/mosquitto/mosquitto-local.conf, the template rendered for
# this host (no drift), started as written from the top directory ($T here, with the
# test's port instead of 8883; pki/ holds the certificates, CRL and ACL make-certs wrote).
check "deploy/mosquitto/mosquitto-local.conf is its template rendered for this host (no drift)" \
    diff <(sed -e 's|@PORT@|8883|g' -e 's|@BIND@|127.0.0.1|g' -e 's|@CERTS@|pki|g' \
        -e 's|@ACL@|pki/acl|g' -e 's|@USER@|root|g' \
        "$OTA_ROOT/deploy/mosquitto/mosquitto.conf.in" | grep -v '^#') \
    <(grep -v '^#' "$OTA_ROOT/deploy/mosquitto/mosquitto-local.conf")
BROKER_PORT=$(free_port)
export BROKER_PORT
mkdir -p "$T/deploy/mosquitto"
sed "s|^listener 8883 |listener $BROKER_PORT |" "$OTA_ROOT/deploy/mosquitto/mosquitto-local.conf" \
    >"$T/deploy/mosquitto/mosquitto-local.conf"
cp "$OTA_ROOT/deploy/mosquitto/openssl.cnf" "$T/deploy/mosquitto/openssl.cnf"
readme_spawn broker "OPENSSL_CONF=deploy/mosquitto/openssl.cnf mosquitto -c deploy/mosquitto/mosquitto-local.conf"
check "the broker starts as written (host config, pki/ with its CRL and ACL)" \
    wait_until 10 'port_listening "$BROKER_PORT" && alive broker'

GW_RUN="build/ota-gateway run --broker-host localhost --broker-port 8883"
readme_spawn gateway "$GW_RUN"
check "the gateway runs as written (no directory made beforehand) and connects" \
    wait_until 15 "grep -q 'mqtt connected' '$T/gateway.log' || ! alive gateway"
if ! alive gateway; then
    # Carry on with the directories made, to check the rest.
    mkdir -p "$T/var"
    readme_spawn gateway "$GW_RUN"
    wait_until 15 "grep -q 'mqtt connected' '$T/gateway.log'"
fi
check "the gateway's ledger is where --db-dir says" test -d "$STATUS_DB"

DEV_RUN="build/ota-device --id dev-001 --product sensor --firmware-version 1.0.0"
# One ota-device per id: the README's dev-001 command with the id (and a state directory
# of its own: the README's example is one device's).
device_readme() {
    local id=$1
    shift
    readme_spawn "$id" "$DEV_RUN" "s|dev-001|$id|g" \
        "$@"
}
for d in dev-001 dev-002 dev-003; do device_readme "$d"; done
check "the three devices, started as written, report idle 1.0.0" \
    wait_until 15 'all_devices idle 1.0.0 dev-001 dev-002 dev-003'

# --- 4. announce; status shows the fleet converge ------------------------------------------

readme_run "the announcement as written (mosquitto_pub, operator's certificate)" \
    "mosquitto_pub -h localhost -p 8883 --cafile pki/ca.crt"
readme_run "the verdict read as written (mosquitto_sub, ota/result/sensor/last)" \
    "mosquitto_sub -h localhost -p 8883 --cafile pki/ca.crt"
check "  it says accepted, version 1.1.0, targets 3 devices" \
    jq -e '.verdict == "accepted" and .version == "1.1.0" and .targets == 3' "$T/last.out"
check "all three devices commit 1.1.0" \
    wait_until 30 'all_devices committed 1.1.0 dev-001 dev-002 dev-003'
for d in dev-001 dev-002 dev-003; do
    check "$d runs the payload from state_dir/active/payload" \
        cmp -s "$T/firmware.bin" "$T/var/$d/active/payload"
done
# "the operator's certificate is the only one allowed to": the same command with another
# certificate reaches no gateway.
for who in gateway devices/dev-003; do
    readme_run "the announcement with pki/$who's certificate instead (the broker drops it)" \
        "mosquitto_pub -h localhost -p 8883 --cafile pki/ca.crt" "s|pki/operator\\.|pki/$who.|g" \
        "s|sensor-1\\.1\\.0\\.ota|forged-${who#*/}.ota|"
done
sleep 1
check "the gateway never hears of announcements made with other certificates" \
    bash -c "! grep -q 'forged-' '$T/gateway.log'"
readme_run "status as written" "build/ota-gateway status --db var/gateway-db --events 20"
cp "$T/last.out" "$T/status-events.out"
for d in dev-001 dev-002 dev-003; do
    check "status shows $d committed 1.1.0" \
        grep -qE "$d .*committed.* 1\\.1\\.0|$d .*1\\.1\\.0.* committed" "$T/status-events.out"
done
check "status shows each device's state, progress, resends and stage timings" \
    grep -qE '^DEVICE +VERSION +STATE +RELEASE +DONE +RESNT +DOWNLD +VERIFY +INSTALL +RESTART +TOTAL' "$T/status-events.out"
check "status --events 20 shows the event log (offered, committed)" \
    bash -c "grep -q offered '$T/status-events.out' && grep -q committed '$T/status-events.out'"
n_json=$(events true)
n_text=$(sed -n '/^EVENTS/,$p' "$T/status-events.out" | grep -cE '^[0-9]{2}-[0-9]{2} ')
check "--events 20: the last min(20, all) events ($n_text shown of $n_json)" \
    test "$n_text" = "$((n_json < 20 ? n_json : 20))"
check "announced without keys, the release has the documented defaults: fragment size 4096, window 32" \
    test "$(rel_field 1.1.0 '"\(.fragment_size) \(.window)"')" = "4096 32"

# --- simulated fleet (two more devices), offline when 1.1.0 appeared -------------------------

check "README: the simulated fleet command" \
    readme_says '`ota-device --fleet N --fleet-cert-dir pki/devices [--fleet-prefix dev-] [--fleet-first 1]`'
check "README: fleet certificates are numbered as make-certs.sh --devices N makes them" \
    readme_says 'numbered as `certs/make-certs.sh --devices N` makes them'
readme_run "make-certs.sh again with --devices 5 keeps what exists, adds dev-004, dev-005" \
    "certs/make-certs.sh pki --devices 3" "s|--devices 3|--devices 5|"
check "  the CA is unchanged (same broker keeps working)" \
    bash -c "openssl verify -CAfile '$PKI/ca.crt' '$PKI/devices/dev-005.crt' '$PKI/devices/dev-001.crt'"
# The README's inline command, completed with the keys every device needs (as above).
FLEET_CMD="$BUILD/ota-device --fleet 2 --fleet-cert-dir pki/devices --fleet-prefix dev- --fleet-first 4"
FLEET_CMD+=" --product sensor --version 1.0.0 --broker-host localhost --broker-port $BROKER_PORT"
FLEET_CMD+=" --ca-file pki/ca.crt --publisher-key pki/publisher.pub --state-dir /var/lib/ota-fleet"
FLEET_CMD=${FLEET_CMD//\/var\/lib\//$T/var/lib/}
spawn fleet bash -c "cd '$T' && exec $FLEET_CMD"
check "the fleet devices dev-004 and dev-005 appear in the ledger" \
    wait_until 20 '[ -n "$(dev_field dev-004 state)" ] && [ -n "$(dev_field dev-005 state)" ]'
check "each with its own state directory under state_dir" \
    wait_until 5 "test -f '$T/var/lib/ota-fleet/dev-004/state.json' -a -f '$T/var/lib/ota-fleet/dev-005/state.json'"
check "devices offline when 1.1.0 appeared get it when they come" \
    wait_until 30 'all_devices committed 1.1.0 dev-004 dev-005'

# --- 5. operator guide: group, canary, concurrency, auto-pause -------------------------------

# The devices of group east: dev-001..003 again, as written, with --group east.
for d in dev-001 dev-002 dev-003; do
    stop "$d" >/dev/null || true
    device_readme "$d" 's|$| --group east|'
done
check "README: a device joins a group with ota-device --group east" \
    readme_says '`group` | only devices that report this group (`ota-device --group east`)'
check "dev-001..003 are back, in group east" \
    wait_until 15 '[ "$(gw_status_json | jq -r "[.devices[] | select(.group == \"east\" and .online and .state == \"committed\")] | length")" = 3 ]'
make_payload "$T/firmware-1.2.0.bin" 150000
readme_run "pack 1.2.0 (the README's pack command, another version and payload)" \
    "build/ota-gateway pack --publisher-key pki/publisher.key --product sensor --version 1.1.0" \
    's|1\.1\.0|1.2.0|g' 's|--payload firmware.bin|--payload firmware-1.2.0.bin|'
cp "$T/sensor-1.2.0.ota" "$T/srv/ota/" 2>/dev/null
readme_run "Operating a rollout: announce --dry-run as written (for 1.2.0)" \
    "build/ota-gateway announce --product sensor" 's|sensor-1\.1\.0|sensor-1.2.0|'
check "  its verdict: a dry run, targets 3 devices of group east" \
    bash -c "grep -q 'announce sensor 1.2.0: dry run' '$T/last.out' && grep -q 'targets 3 devices: dev-001, dev-002, dev-003' '$T/last.out'"
check "  and nothing was started" test -z "$(rel_id 1.2.0)"
readme_run "the operator guide's announcement (group, canary, concurrency, auto-pause) is accepted" \
    "mosquitto_pub ... -t ota/release/sensor -m '{\"url\":\"https://ota.example/sensor-1.2.0.ota\","
check "the gateway takes its keys: group east, canary 10% (1 of 3), concurrency 50, pause at 20%" \
    wait_until 10 '[ "$(rel_field 1.2.0 "\"\(.group) \(.campaign.canary_percent) \(.campaign.canary_quota) \(.campaign.concurrency) \(.campaign.pause_failure_percent)\"")" = "east 10 1 50 20" ]'
check "the whole group east commits 1.2.0" \
    wait_until 30 'all_devices committed 1.2.0 dev-001 dev-002 dev-003'
R120=$(rel_id 1.2.0)
order=$(gw_status_json | jq -r --arg r "$R120" '[.events[] | select(.release == $r and
    (.event == "offered" or .event == "committed" or .event == "canary_passed")) | .event] | join(",")')
check "canary first: one device offered, it commits, then the rest ($order)" \
    test "$order" = "offered,committed,canary_passed,offered,offered,committed,committed"
n=$(gw_status_json | jq --arg r "$R120" '[.events[] | select(.event == "offered" and .release == $r
    and (.device == "dev-004" or .device == "dev-005"))] | length')
check "devices outside group east (the fleet's) are not offered it ($n offers)" test "$n" = 0
check "  and still run 1.1.0" all_devices committed 1.1.0 dev-004 dev-005

# --- 5b. pause, resume, abort (the README's three lines, then the ctl command) --------------

# A slow transfer to act on: 2 MiB in 256-byte fragments, one in flight (keys from the table).
make_payload "$T/big.bin" 2097152
readme_run "pack 1.3.0" "build/ota-gateway pack --publisher-key pki/publisher.key --product sensor --version 1.1.0" \
    's|1\.1\.0|1.3.0|g' 's|--payload firmware.bin|--payload big.bin|'
cp "$T/sensor-1.3.0.ota" "$T/srv/ota/" 2>/dev/null
check "README: fragment_size and window are announcement keys" \
    readme_says '| `fragment_size`, `window` | 160 .. 65536 bytes; 1 .. 256 fragments in flight per device |'
check "announce 1.3.0 to group east with fragment_size 256, window 1" \
    op_pub -t ota/release/sensor -m "{\"url\":\"file://$T/srv/ota/sensor-1.3.0.ota\",\"group\":\"east\",\"fragment_size\":256,\"window\":1}"
check "the slow transfer starts" wait_until 20 '[ "$(acked_sum)" -gt 150 ] 2>/dev/null'
R130=$(rel_id 1.3.0)

# frozen: the fragments acknowledged by dev-001..003 do not move for 1.5 s.
frozen() {
    local a b
    sleep 0.5
    a=$(acked_sum)
    sleep 1.5
    b=$(acked_sum)
    echo "acked $a -> $b"
    [ "$a" = "$b" ]
}
# moving: they do, within 10 s.
moving() {
    local a
    a=$(acked_sum)
    wait_until 10 "[ \"\$(acked_sum)\" -gt $a ]"
}
readme_run "pause as written" "mosquitto_pub ... -t ota/ctl/sensor -m '{\"action\":\"pause\"}'"
check "a paused campaign sends nothing" frozen
readme_run "status (paused)" "build/ota-gateway status --db var/gateway-db --events 20"
check "status shows the release paused with the reason" \
    grep -qE "$R130 .*paused.*operator|paused by the operator" "$T/last.out"
readme_run "resume as written" "mosquitto_pub ... -t ota/ctl/sensor -m '{\"action\":\"resume\"}'"
check "resume continues the transfer" moving

check "README: the ota-gateway ctl command line" \
    readme_says '`ota-gateway ctl pause|resume|abort|retry --product sensor [--release ID] --broker-host H --broker-port P --ca-file ca.crt --cert-file operator.crt --key-file operator.key` (it waits for the gateway'"'"'s verdict'
# ctl_cli ACTION [RELEASE]: the README's ctl command line with the test broker and pki/.
ctl_cli() {
    (cd "$T" && "$GW" ctl "$1" --product sensor ${2:+--release "$2"} --broker-host localhost \
        --broker-port "$BROKER_PORT" --ca-file pki/ca.crt --cert-file pki/operator.crt \
        --key-file pki/operator.key)
}
check "ota-gateway ctl pause --release ID: the gateway's verdict is accepted" ctl_cli pause "$R130"
check "  and pauses that release at once" frozen
check "  (the ledger says paused by the operator)" \
    test "$(rel_field 1.3.0 '.campaign.pause_reason')" = "paused by the operator"
check "ota-gateway ctl resume (the newest release): accepted" ctl_cli resume
check "  and the transfer continues" moving
check "ota-gateway ctl fails when no broker answers" \
    refuses . timeout 20 "$GW" ctl pause --product sensor --broker-host localhost \
    --broker-port "$(free_port)" --ca-file pki/ca.crt --cert-file pki/operator.crt \
    --key-file pki/operator.key --timeout-s 3
check "  (and so nothing was paused)" moving

readme_run "abort as written" "mosquitto_pub ... -t ota/ctl/sensor -m '{\"action\":\"abort\"}'"
check "abort ends the transfers with the reason in the ledger" \
    wait_until 10 '[ "$(gw_status_json | jq -r "[.devices[] | select(.error == \"update aborted by the operator\")] | length")" = 3 ]'
check "  and nothing more is sent" frozen
readme_run "status (aborted)" "build/ota-gateway status --db var/gateway-db --events 20"
check "status shows the release aborted" grep -qE "$R130 .*aborted" "$T/last.out"
offers=$(events ".event == \"offered\" and .release == \"$R130\"")
readme_run "resume after the abort, as written" "mosquitto_pub ... -t ota/ctl/sensor -m '{\"action\":\"resume\"}'"
check "  does not bring the aborted release back" frozen
stop dev-002 >/dev/null || true
device_readme dev-002 's|$| --group east|'
check "a device restarted after the abort comes back online" \
    wait_until 15 '[ "$(dev_field dev-002 online)" = true ]'
sleep 6 # longer than the offer re-send period (5 s)
check "the aborted release is never offered again" \
    test "$(events ".event == \"offered\" and .release == \"$R130\"")" = "$offers"
check "the group still runs 1.2.0" \
    test "$(gw_status_json | jq -r '[.devices[] | select(.group == "east") | .version] | unique | join(",")')" = 1.2.0

# --- 6. status --wide, --json, --watch -------------------------------------------------------

check "README: status --wide" \
    readme_says 'of the stage timings, a progress bar, bytes, transfer rate and the last error'
readme_run "status --wide" "build/ota-gateway status --db var/gateway-db --events 20" \
    's|--events 20|--wide|'
cp "$T/last.out" "$T/status-wide.out"
check "--wide shows a progress bar" grep -qE 'dev-001 .*#+.*%' "$T/status-wide.out"
check "--wide shows bytes and a transfer rate (dev-004's finished transfer)" \
    grep -qE 'dev-004 .*(KiB|MiB).*/s' "$T/status-wide.out"
check "  and dev-001's aborted download as aborted, without a (stale) rate" \
    bash -c "grep -E '^dev-001 ' '$T/status-wide.out' | grep ' aborted ' | grep -vq '/s'"
check "--wide shows the last error" grep -qE 'dev-002 .*update aborted by the operator' "$T/status-wide.out"
check "--wide shows the wide table instead of the stage timings" \
    bash -c "grep -q 'LAST ERROR' '$T/status-wide.out' && ! grep -q DOWNLD '$T/status-wide.out'"
readme_run "status --json" "build/ota-gateway status --db var/gateway-db --events 20" \
    's|--events 20|--json|'
check "--json is valid JSON with releases, devices and events" \
    jq -e '(.releases | length) == 3 and (.devices | length) == 5 and (.events | type) == "array"' "$T/last.out"
check "README: status --watch" readme_says '`--watch 2` redraws every two seconds'
rc=0
(cd "$T" && timeout 3 "$GW" status --db "$STATUS_DB" --watch 1 >"$T/watch.out" 2>&1) || rc=$?
check "--watch 1 runs until interrupted (timeout ends it: $rc)" test "$rc" = 124
check "--watch 1 redraws: at least two tables in 3 s ($(grep -c '^CAMPAIGNS' "$T/watch.out"))" \
    test "$(grep -c '^CAMPAIGNS' "$T/watch.out")" -ge 2

# --- 5c. after an abort: publish a new release instead ------------------------------------------

check "README: an aborted release is never offered again (publish a new release instead)" \
    readme_says 'An aborted one is never offered again (publish a new release instead):'
make_payload "$T/firmware-1.4.0.bin" 100000
readme_run "pack 1.4.0" "build/ota-gateway pack --publisher-key pki/publisher.key --product sensor --version 1.1.0" \
    's|1\.1\.0|1.4.0|g' 's|--payload firmware.bin|--payload firmware-1.4.0.bin|'
cp "$T/sensor-1.4.0.ota" "$T/srv/ota/" 2>/dev/null
readme_run "after an abort, publish a new release instead (the README's announcement, 1.4.0)" \
    "mosquitto_pub -h localhost -p 8883 --cafile pki/ca.crt" 's|1\.1\.0|1.4.0|g'
check "the devices that had no aborted transfer (the fleet's) commit 1.4.0" \
    wait_until 15 'all_devices committed 1.4.0 dev-004 dev-005'
check "the devices whose 1.3.0 transfer was aborted commit 1.4.0 too" \
    wait_until 10 'all_devices committed 1.4.0 dev-001 dev-002 dev-003'

# --- 8. --check and --help ---------------------------------------------------------------------

check "README: -c FILE, flags override, --check, --help" \
    readme_says 'every key can also be given as a flag, `--key value`, which overrides the file; `--check` validates the configuration and exits; `--help` lists every key.'
readme_run "ota-gateway run ... --check (the README's flags) exits 0" "$GW_RUN" 's|$| --check|'
check "  and says the configuration is OK" grep -q 'configuration OK' "$T/last.out"
readme_run "ota-device ... --check (the README's flags) exits 0" "$DEV_RUN" 's|$| --check|'
check "ota-gateway run --check refuses a missing key file" \
    refuses 'nope\.key' bash -c "timeout 10 $(readme_sub "$GW_RUN") --key-file pki/nope.key --check"
check "ota-device --check refuses port 0" \
    refuses 'broker_port|broker-port' bash -c "timeout 10 $(readme_sub "$DEV_RUN") --broker-port 0 --check"
# A configuration file with the README's flags as keys; flags override it.
{
    echo "broker_host = localhost"
    echo "broker_port = $BROKER_PORT"
    echo "ca_file = pki/ca.crt"
    echo "cert_file = pki/gateway.crt"
    echo "key_file = pki/nope.key"
    echo "publisher_key = pki/publisher.pub"
    echo "db_dir = $T/var/lib/ota-gateway/db2"
    echo "store_dir = $T/var/lib/ota-gateway/packages2"
} >"$T/gateway.conf"
check "ota-gateway run -c FILE --check refuses the file's missing key file" \
    refuses 'nope\.key' timeout 10 "$GW" run -c gateway.conf --check
check "  and the flag --key-file pki/gateway.key overrides the file" \
    bash -c "cd '$T' && timeout 10 '$GW' run -c gateway.conf --key-file pki/gateway.key --check"

# --help lists every key: those of the example configurations and those the README names.
conf_keys() { sed -nE 's/^#? ?([a-z][a-z0-9_]*) = .*/\1/p' "$1" | sort -u; }
help_missing() {
    local help=$1 conf=$2 k miss=
    shift 2
    for k in $(conf_keys "$conf") "$@"; do
        grep -qE -- "--${k//_/-}( |$)" "$help" || miss+=" $k"
    done
    echo "missing from --help:${miss:- none}"
    [ -z "$miss" ]
}
check "ota-gateway run --help exits 0" bash -c "'$GW' run --help >'$T/gw-help.out' 2>&1"
check "ota-gateway run --help lists every key" help_missing "$T/gw-help.out" \
    "$OTA_ROOT/deploy/gateway.conf.example" https_ca_file max_package_mb fetch_retries max_inflight_kb group_fragments
check "ota-device --help exits 0" bash -c "'$DEV' --help >'$T/dev-help.out' 2>&1"
check "ota-device --help lists every key" help_missing "$T/dev-help.out" \
    "$OTA_ROOT/deploy/device.conf.example" restart_command health_command health_timeout_s \
    checkpoint_every max_package_mb fleet_stagger_ms test_drop_percent test_corrupt_percent test_crash_at test_seed state_dir \
    fleet fleet_cert_dir fleet_prefix fleet_first group

# Every command's --help has examples and fits an 80-column terminal.
help_ok() { # help_ok NAME CMD...: exit 0, an example, no line over 79 columns
    local out=$T/help-$1.out
    shift
    "$@" --help >"$out" 2>&1 || return 1
    grep -q '^examples\{0,1\}:' "$out" || { echo "no example in: $*"; return 1; }
    awk 'length > 79 { print "too wide: " $0; bad = 1 } END { exit bad }' "$out"
}
for c in run status fsck ctl announce keygen pack verify; do
    check "ota-gateway $c --help has examples and fits 80 columns" help_ok "gw-$c" "$GW" "$c"
done
check "ota-gateway --help has examples and fits 80 columns" help_ok gw "$GW"
check "ota-device --help has examples and fits 80 columns" help_ok dev "$DEV"

check "everything stops cleanly, no sanitizer reports" \
    stop_all_clean fleet dev-001 dev-002 dev-003 gateway
finish
