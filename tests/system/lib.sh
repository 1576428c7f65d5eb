# shellcheck shell=bash
# lib.sh: shared harness for system tests. Source it from a bash test script:
#
#   . "$OTA_ROOT/tests/system/lib.sh"
#   certs_make dev-001 dev-002
#   broker_start
#   mq_sub_bg sub gateway 'ota/dev/+/status' 1 10
#   mq_pub_as dev-001 ota/dev/dev-001/status '{"state":"idle"}'
#   check "gateway gets the status" wait_until 5 '[ "$(mq_count sub)" -ge 1 ]'
#   finish
#
# Environment: OTA_ROOT (repo root; default: derived from this file), BUILD (build dir with
# the programs; default $OTA_ROOT/build), KEEP=1 keeps the temp dir, LOG_TAIL (lines of each
# log shown on failure, default 25). tests/run.sh sets OTA_PIDFILE: every spawned pid is
# also written there so the runner can kill leftovers if this script is SIGKILLed.
#
# API (all paths under $T, a fresh temp dir removed on exit):
#   spawn NAME CMD [ARGS]   run CMD in the background (own session), output in $T/NAME.log;
#                           sets LAST_PID; pid_of NAME prints the pid later
#   stop NAME               SIGTERM, SIGKILL after 3 s; returns the process's exit status
#   alive NAME              true while NAME runs
#   wait_until SECS 'COND'  poll COND (a shell condition, eval'd) every 0.1 s
#   free_port               print a free TCP port on 127.0.0.1
#   certs_make [ARGS]       certs/make-certs.sh "$T/certs" ARGS (see that script)
#   broker_start/broker_stop  Mosquitto with deploy/mosquitto config on 127.0.0.1:$BROKER_PORT
#                           and the ACL make-certs wrote ($CERTS/acl) plus test observers
#   broker_reload           SIGHUP it after make-certs changed the ACL or the CRL
#   OTA_BROKER=rabbitmq     broker_start/broker_reload start/update RabbitMQ instead
#                           (tests/system/rabbit.sh; OTA_RABBIT_NODES nodes, default 1)
#   broker_start_as NAME    one more Mosquitto like broker_start's, named NAME (log
#                           $T/NAME.log), on its own free port: sets BROKER_PORT_<NAME>
#                           (several brokers: tests/system/test_failover.sh)
#   mq_pub_as WHO TOPIC MSG [ARGS]      mosquitto_pub as WHO (operator, gateway, monitor,
#   mq_pubf_as WHO TOPIC FILE [ARGS]    operator-NAME, monitor-NAME, observer1..3, injector,
#                                       a device id, a cert path prefix containing '/', or
#                                       none)
#   The broker makes the certificate's CN the client id (use_username_as_clientid): two
#   clients with one certificate throw each other off. So a test that watches offers or
#   fragments while the gateway runs subscribes as observer1..3 (CN ota-test-observer1..3,
#   read-only on ota/#, a block only the tests' ACL has), never as the gateway, and one
#   that forges offers or fragments publishes as injector (see observers_make).
#   mq_sub_as WHO TOPIC COUNT TIMEOUT [ARGS]  mosquitto_sub -C COUNT -W TIMEOUT, foreground
#   mq_sub_bg NAME WHO TOPIC COUNT TIMEOUT [ARGS]  background subscriber, returns once the
#                           broker acknowledged the subscription (or 1 if it could not connect)
#   mq_msgs NAME / mq_count NAME   "TOPIC PAYLOAD" lines received by a background subscriber
#   ok DESC, not_ok DESC, check DESC CMD [ARGS], skip DESC REASON, finish
set -u

OTA_ROOT=${OTA_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${BUILD:-$OTA_ROOT/build}
LOG_TAIL=${LOG_TAIL:-25}
export OTA_ROOT BUILD

T=$(mktemp -d /tmp/ota-test.XXXXXX) || { echo "Bail out! mktemp failed"; exit 1; }
export T
if [ -n "${OTA_PIDFILE:-}" ]; then echo "T $T" >>"$OTA_PIDFILE"; fi
CERTS=$T/certs
declare -A _LIB_PID=()
declare -A _LIB_DONE=()
_LIB_ALL=()
_LIB_FAILS=0
_LIB_CHECKS=0
LAST_PID=
BROKER_PORT=

# --- cleanup ------------------------------------------------------------------------------

# _lib_kill PID: TERM the process group, KILL it after 3 s; reap it. Returns its status.
_lib_kill() {
    local pid=$1 i rc=0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 30; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            # A zombie child answers kill -0: check whether it is reapable.
            [ "$(ps -o stat= -p "$pid" 2>/dev/null)" = Z ] && break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z ]; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
        fi
    fi
    wait "$pid" 2>/dev/null || rc=$?
    # Whatever else is left in its process group.
    kill -KILL -- "-$pid" 2>/dev/null || true
    return "$rc"
}

cleanup() {
    local pid
    trap - EXIT INT TERM
    for pid in ${_LIB_ALL[@]+"${_LIB_ALL[@]}"}; do
        [ -n "${_LIB_DONE[$pid]:-}" ] || _lib_kill "$pid" || true
    done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "# kept $T" >&2
    else
        rm -rf "$T" 2>/dev/null || { sleep 0.5; rm -rf "$T"; }
    fi
}
trap cleanup EXIT
trap 'echo "# interrupted (SIGINT)" >&2; exit 130' INT
trap 'echo "# interrupted (SIGTERM)" >&2; exit 143' TERM

# --- processes ----------------------------------------------------------------------------

# spawn NAME CMD [ARGS...]: background, own session/process group, stdin from /dev/null.
spawn() {
    local name=$1
    shift
    [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || { echo "spawn: bad name '$name'" >&2; return 2; }
    # The log is emptied here, not by the child's redirection: a wait for a line of the
    # new log right after spawn would otherwise read the previous process's log.
    : >"$T/$name.log"
    setsid "$@" >>"$T/$name.log" 2>&1 </dev/null &
    LAST_PID=$!
    _LIB_PID[$name]=$LAST_PID
    _LIB_ALL+=("$LAST_PID")
    if [ -n "${OTA_PIDFILE:-}" ]; then echo "P $LAST_PID" >>"$OTA_PIDFILE"; fi
    return 0
}

pid_of() { echo "${_LIB_PID[$1]:-}"; }

alive() {
    local pid=${_LIB_PID[$1]:-}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z ]
}

# stop NAME: returns the exit status of the process (143 if SIGTERM killed it unhandled).
stop() {
    local pid=${_LIB_PID[$1]:-} rc=0
    [ -n "$pid" ] || { echo "stop: no process '$1'" >&2; return 2; }
    _lib_kill "$pid" || rc=$?
    _LIB_DONE[$pid]=1
    unset "_LIB_PID[$1]"
    return "$rc"
}

# now_ms: wall clock in milliseconds.
now_ms() {
    local t=${EPOCHREALTIME/./}
    echo $((t / 1000))
}

# wait_until SECONDS 'CONDITION': 0 as soon as CONDITION holds, 1 after SECONDS.
wait_until() {
    local secs=$1 cond=$2 now end frac=0
    case $secs in *.*) frac=${secs#*.}000000; frac=$((10#${frac:0:6})); secs=${secs%%.*} ;; esac
    now=${EPOCHREALTIME/./}
    end=$((now + ${secs:-0} * 1000000 + frac))
    while :; do
        eval "$cond" && return 0
        now=${EPOCHREALTIME/./}
        [ "$now" -lt "$end" ] || return 1
        sleep 0.1
    done
}

# port_listening PORT: something listens on 127.0.0.1:PORT (or on all addresses).
port_listening() {
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

# small_fs SIZE DIR [SIZE DIR ...]: a tmpfs of SIZE (e.g. 3m) mounted on each DIR (made if
# need be), unmounted on exit; for disk-full tests. Needs root: without it the test fails
# (CI runs as root), it is never skipped. Returns 1 if a mount fails.
small_fs() {
    local dirs=""
    if [ "$(id -u)" != 0 ]; then
        echo "not ok - needs root to mount a small tmpfs (CI runs as root)"
        exit 1
    fi
    while [ $# -ge 2 ]; do
        mkdir -p "$2" && mount -t tmpfs -o size="$1" tmpfs "$2" || return 1
        dirs="$dirs '$2'"
        # shellcheck disable=SC2064 # the list is meant to be expanded now
        trap "umount $dirs 2>/dev/null; cleanup" EXIT
        shift 2
    done
}

# free_port: a port nobody listens on, below the kernel's ephemeral range (outgoing
# connections, thousands of them in fleet tests, take their ports from that range, and
# one could take a port between this check and the listener's bind).
free_port() {
    local i p lo=10000 hi
    hi=$(awk '{ print $1 - 1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
    [ "${hi:-0}" -gt $((lo + 1000)) ] || hi=32767
    for ((i = 0; i < 100; i++)); do
        p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
        port_listening "$p" || { echo "$p"; return 0; }
    done
    echo "free_port: no free port found" >&2
    return 1
}

# --- TAP ----------------------------------------------------------------------------------

# _lib_log_tails: the tails of the logs; after the first failure, only of the logs that
# changed since the previous failure's report (keeps long failing runs readable).
_lib_log_tails() {
    local f shown=0
    for f in "$T"/*.log; do
        [ -f "$f" ] || continue
        if [ -e "$T/.tails-shown" ] && ! [ "$f" -nt "$T/.tails-shown" ]; then
            continue
        fi
        echo "# --- ${f##*/} (last $LOG_TAIL lines) ---"
        tail -n "$LOG_TAIL" "$f" | sed 's/^/#   /'
        shown=1
    done
    [ "$shown" = 1 ] || echo "# (no log changed since the last failure)"
    touch "$T/.tails-shown"
}

ok() {
    _LIB_CHECKS=$((_LIB_CHECKS + 1))
    echo "ok - $*"
}

not_ok() {
    _LIB_CHECKS=$((_LIB_CHECKS + 1))
    _LIB_FAILS=$((_LIB_FAILS + 1))
    echo "not ok - $*"
    _lib_log_tails
}

skip() {
    echo "ok - $1 # SKIP ${2:-}"
}

# check DESC CMD [ARGS...]: ok if CMD succeeds; otherwise not_ok with CMD's output.
check() {
    local desc=$1 rc=0
    shift
    "$@" >"$T/check.out" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
        ok "$desc"
    else
        not_ok "$desc"
        echo "# command: $* (exit $rc)"
        tail -n "$LOG_TAIL" "$T/check.out" | sed 's/^/#   /'
    fi
    return "$rc"
}

# finish: stop everything (so sanitizers write their reports), report sanitizer errors
# found in any log as failures, and exit non-zero if anything failed.
finish() {
    local name f
    # "epmd" (tests/system/rabbit.sh) last: a RabbitMQ node that stops runs rabbitmqctl,
    # which starts an epmd daemon of its own (outliving the test) if the test's is gone.
    for name in "${!_LIB_PID[@]}"; do [ "$name" = epmd ] || stop "$name" || true; done
    [ -z "${_LIB_PID[epmd]:-}" ] || stop epmd || true
    for f in "$T"/*.log; do
        [ -f "$f" ] || continue
        if grep -q -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f"; then
            not_ok "no sanitizer errors in ${f##*/}"
        fi
    done
    echo "# $_LIB_CHECKS checks, $_LIB_FAILS failed"
    [ "$_LIB_FAILS" = 0 ] && [ "$_LIB_CHECKS" -gt 0 ]
    exit $?
}

# --- certificates and broker --------------------------------------------------------------

# shellcheck disable=SC2120  # arguments are optional
certs_make() {
    bash "$OTA_ROOT/certs/make-certs.sh" "$CERTS" --quiet "$@"
}

# observers_make: certificates for CN ota-test-observer1..3 and ota-test-injector
# (devices/<CN>.*, made by make-certs like any client certificate), and $T/acl: the ACL
# make-certs wrote plus, for the tests only, a read-only block for each observer and one
# for the injector, which may write what the gateway writes to devices (offers,
# fragments) and what devices write (status, ack): a stand-in for a compromised gateway or
# device that does not throw the running one off, as a second client with its own
# certificate now would.
observers_make() {
    local k
    [ -s "$CERTS/devices/ota-test-injector.crt" ] && [ -s "$CERTS/acl" ] ||
        certs_make ota-test-observer1 ota-test-observer2 ota-test-observer3 ota-test-injector ||
        return 1
    {
        cat "$CERTS/acl"
        for k in 1 2 3; do printf '\nuser ota-test-observer%s\ntopic read ota/#\n' "$k"; done
        printf '\nuser ota-test-injector\ntopic write ota/dev/+/offer\ntopic write ota/dev/+/frag\n'
        printf 'topic write ota/grp/+/frag\ntopic write ota/dev/+/status\ntopic write ota/dev/+/ack\n'
    } >"$T/acl"
}

# broker_spawn NAME CONF: Mosquitto with configuration CONF as process NAME, with the
# OpenSSL configuration of the deployment (OPENSSL_CONF: deploy/mosquitto/openssl.cnf,
# stateful TLS session tickets); benchmarks set BROKER_OPENSSL_CONF to compare another
# (e.g. an empty file: OpenSSL's defaults).
broker_spawn() {
    spawn "$1" env OPENSSL_CONF="${BROKER_OPENSSL_CONF:-$OTA_ROOT/deploy/mosquitto/openssl.cnf}" \
        mosquitto -c "$2"
}

# broker_start: Mosquitto with the deployment's template and the ACL make-certs wrote on a
# random free port (BROKER_SED: one more sed expression applied to the template, for tests
# of broker limits; BROKER_ACL: another ACL file instead).
broker_start() {
    local attempt
    if [ "${OTA_BROKER:-mosquitto}" = rabbitmq ]; then
        # shellcheck source=tests/system/rabbit.sh
        . "$OTA_ROOT/tests/system/rabbit.sh"
        rabbit_start "${OTA_RABBIT_NODES:-1}"
        return
    fi
    [ -s "$CERTS/broker.crt" ] || certs_make || return 1
    observers_make || { echo "broker_start: could not make the observer certificates" >&2; return 1; }
    for attempt in 1 2 3; do
        BROKER_PORT=$(free_port) || return 1
        sed -e "s|@PORT@|$BROKER_PORT|g" -e "s|@BIND@|127.0.0.1|g" -e "s|@CERTS@|$CERTS|g" \
            -e "s|@ACL@|${BROKER_ACL:-$T/acl}|g" -e "s|@USER@|$(id -un)|g" \
            -e "${BROKER_SED:-}" "$OTA_ROOT/deploy/mosquitto/mosquitto.conf.in" >"$T/mosquitto.conf"
        broker_spawn broker "$T/mosquitto.conf"
        if wait_until 10 'port_listening "$BROKER_PORT" || ! alive broker'; then
            if alive broker; then
                export BROKER_PORT
                return 0
            fi
        fi
        # Lost a race for the port (or a slow start): try again on another port.
        stop broker || true
        mv -f "$T/broker.log" "$T/broker-failed-$attempt.log"
    done
    echo "broker_start: mosquitto did not start" >&2
    return 1
}

broker_stop() {
    stop broker || true
}

broker_start_as() {
    local name=$1 port attempt
    [[ $name =~ ^[A-Za-z0-9_]+$ ]] || { echo "broker_start_as: bad name '$name'" >&2; return 2; }
    [ -s "$CERTS/broker.crt" ] || certs_make || return 1
    observers_make || return 1
    for attempt in 1 2 3; do
        port=$(free_port) || return 1
        sed -e "s|@PORT@|$port|g" -e "s|@BIND@|127.0.0.1|g" -e "s|@CERTS@|$CERTS|g" \
            -e "s|@ACL@|${BROKER_ACL:-$T/acl}|g" -e "s|@USER@|$(id -un)|g" \
            -e "${BROKER_SED:-}" "$OTA_ROOT/deploy/mosquitto/mosquitto.conf.in" >"$T/$name.conf"
        broker_spawn "$name" "$T/$name.conf"
        if wait_until 10 "port_listening $port || ! alive $name" && alive "$name"; then
            printf -v "BROKER_PORT_$name" %s "$port"
            export "BROKER_PORT_$name"
            return 0
        fi
        stop "$name" || true
        mv -f "$T/$name.log" "$T/$name-failed-$attempt.log"
    done
    echo "broker_start_as: mosquitto $name did not start" >&2
    return 1
}

# broker_reload: rewrite $T/acl from $CERTS/acl (after make-certs --operator or --revoke)
# and SIGHUP the broker; returns once it logged the reload (the ACL and crl.pem re-read).
broker_reload() {
    local n
    if [ "${OTA_BROKER:-mosquitto}" = rabbitmq ]; then
        rabbit_reload
        return
    fi
    observers_make || return 1
    n=$(grep -c 'Reloading config' "$T/broker.log")
    kill -HUP "$(pid_of broker)" || return 1
    wait_until 5 "[ \"\$(grep -c 'Reloading config' '$T/broker.log')\" -gt $n ]"
}

# --- MQTT as a given identity -------------------------------------------------------------

# _mq_tls WHO: sets _MQ_ARGS to the connection arguments for WHO.
_mq_tls() {
    local who=$1 base
    _MQ_ARGS=(-h 127.0.0.1 -p "$BROKER_PORT" --cafile "$CERTS/ca.crt")
    case $who in
    none) return 0 ;;
    operator | ota-operator) base=$CERTS/operator ;;
    operator-* | ota-operator-*) base=$CERTS/operators/${who#*operator-} ;;
    gateway | ota-gateway) base=$CERTS/gateway ;;
    monitor | ota-monitor) base=$CERTS/monitor ;;
    monitor-* | ota-monitor-*) base=$CERTS/monitors/${who#*monitor-} ;;
    observer[1-3] | injector) base=$CERTS/devices/ota-test-$who ;;
    */*) base=$who ;;
    *) base=$CERTS/devices/$who ;;
    esac
    _MQ_ARGS+=(--cert "$base.crt" --key "$base.key")
    # RabbitMQ names a subscriber's queue after its client id and lets each user use only
    # the queues named after its CN (deploy/rabbitmq/definitions.sh): the client id must
    # be the CN (Mosquitto sets it so itself). A caller's own -i comes later and wins.
    if [ "${OTA_BROKER:-mosquitto}" = rabbitmq ]; then
        _MQ_ARGS+=(-i "$(openssl x509 -in "$base.crt" -noout -subject -nameopt multiline |
            sed -n 's/^ *commonName *= *//p')")
    fi
}

# mq_pub_as WHO TOPIC MESSAGE [ARGS...]
mq_pub_as() {
    local who=$1 topic=$2 msg=$3
    shift 3
    _mq_tls "$who"
    mosquitto_pub "${_MQ_ARGS[@]}" -t "$topic" -m "$msg" "$@"
}

# mq_pubf_as WHO TOPIC FILE [ARGS...]: the payload is the file's content.
mq_pubf_as() {
    local who=$1 topic=$2 file=$3
    shift 3
    _mq_tls "$who"
    mosquitto_pub "${_MQ_ARGS[@]}" -t "$topic" -f "$file" "$@"
}

# mq_sub_as WHO TOPIC COUNT TIMEOUT [ARGS...]: prints the payloads (add -v for topics).
# Exit status: 0 after COUNT messages, 27 on timeout, other on connection errors.
mq_sub_as() {
    local who=$1 topic=$2 count=$3 timeout=$4
    shift 4
    _mq_tls "$who"
    mosquitto_sub "${_MQ_ARGS[@]}" -t "$topic" -C "$count" -W "$timeout" "$@"
}

# mq_sub_bg NAME WHO TOPIC COUNT TIMEOUT [ARGS...]: subscriber in the background; returns
# 0 once its SUBACK arrived (so what is published next will reach it if allowed), 1 if it
# exited or did not get that far in 10 s. Read what it got with mq_msgs/mq_count NAME.
mq_sub_bg() {
    local name=$1 who=$2 topic=$3 count=$4 timeout=$5
    shift 5
    _mq_tls "$who"
    # stdbuf: line-buffered stdout, so the log shows SUBACK and messages as they come.
    spawn "$name" stdbuf -oL -eL mosquitto_sub "${_MQ_ARGS[@]}" -t "$topic" -C "$count" -W "$timeout" -d \
        -F 'MSG %t %p' "$@"
    wait_until 10 "grep -q 'received SUBACK' '$T/$name.log' || ! alive '$name'" &&
        grep -q 'received SUBACK' "$T/$name.log"
}

# mq_msgs NAME: "TOPIC PAYLOAD" per message received by background subscriber NAME.
mq_msgs() {
    sed -n 's/^MSG //p' "$T/$1.log" 2>/dev/null
}

mq_count() {
    local n
    n=$(grep -a -c '^MSG ' "$T/$1.log" 2>/dev/null) || true
    echo "${n:-0}"
}
