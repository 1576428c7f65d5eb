# shellcheck shell=bash
# rabbit.sh: RabbitMQ nodes for system tests, started by the test itself on loopback and
# stopped at its end (source after lib.sh). Each node is a real rabbitmq-server (Debian's
# 3.10 with its MQTT plugin) with deploy/rabbitmq/rabbitmq.conf.in, its own node name, data
# directory, MQTT port and Erlang distribution port, all in $T; the nodes of one test share
# an Erlang cookie ($T/rmq-home) and a private epmd on a free port, so nothing is left on
# the machine and tests never meet each other's nodes.
#
#   rabbit_start N        N nodes, clustered when N > 1 (classic peer discovery); users and
#                         permissions from deploy/rabbitmq/definitions.sh over $CERTS plus the
#                         tests' observer/injector identities. Sets RMQ_PORT[1..N] (MQTT
#                         over TLS), RMQ_NODE[1..N], and BROKER_PORT=RMQ_PORT[1] so lib.sh's
#                         mq_* helpers talk to node 1 (RMQ_AT=K: to node K).
#   rabbit_stop K         stop node K (SIGTERM to its process group, SIGKILL after 3 s)
#   rabbit_kill K         SIGKILL node K at once (a crash)
#   rabbitmqctl_on K ...  rabbitmqctl against node K
#   rabbit_clients K      MQTT client ids connected to node K (not to the cluster), one a line
# The test identities' client ids must equal their CN (see definitions.sh: queue names):
# _mq_tls adds "-i CN" when OTA_BROKER=rabbitmq.
RMQ_BIN=${RMQ_BIN:-/usr/lib/rabbitmq/bin}
declare -g -a RMQ_PORT=() RMQ_NODE=() RMQ_DIST=()
declare -g RMQ_EPMD=

# _rmq_env K: sets _RMQ_ENV to the environment of node K (and of rabbitmqctl against it).
_rmq_env() {
    local k=$1
    # Erlang distribution and epmd on loopback only (the default is every interface). Only
    # the test's own epmd (spawned, so stopped at the end): with -start_epmd false neither
    # a node nor rabbitmqctl starts a daemon of its own (one did, when the test's epmd was
    # stopped before a node, and outlived the test).
    _RMQ_ENV=(HOME="$T/rmq-home" ERL_EPMD_PORT="$RMQ_EPMD" ERL_EPMD_ADDRESS=127.0.0.1
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false"
        RABBITMQ_CTL_ERL_ARGS="-start_epmd false"
        RABBITMQ_CONF_ENV_FILE="$T/rmq-home/env.conf"
        RABBITMQ_NODENAME="${RMQ_NODE[$k]}"
        RABBITMQ_DIST_PORT="${RMQ_DIST[$k]}"
        RABBITMQ_CONFIG_FILE="$T/rmq$k/rabbitmq.conf"
        RABBITMQ_ADVANCED_CONFIG_FILE="$T/rmq$k/advanced.config"
        RABBITMQ_ENABLED_PLUGINS_FILE="$OTA_ROOT/deploy/rabbitmq/enabled_plugins"
        RABBITMQ_MNESIA_BASE="$T/rmq$k/mnesia" RABBITMQ_LOG_BASE="$T/rmq$k/log"
        RABBITMQ_PLUGINS_EXPAND_DIR="$T/rmq$k/plugins-expand"
        RABBITMQ_PID_FILE="$T/rmq$k/pid" ERL_CRASH_DUMP="$T/rmq$k/erl_crash.dump")
}

rabbitmqctl_on() {
    local k=$1
    shift
    _rmq_env "$k"
    env "${_RMQ_ENV[@]}" "$RMQ_BIN/rabbitmqctl" -n "${RMQ_NODE[$k]}" -q "$@"
}

# rabbit_defs: the deployment's definitions plus the tests' identities (lib.sh's
# observers_make: observer1..3 read ota/#, the injector writes what a compromised gateway
# or device would).
rabbit_defs() {
    observers_make || return 1
    bash "$OTA_ROOT/deploy/rabbitmq/definitions.sh" "$CERTS" -o "$T/rmq-defs.base.json" || return 1
    jq '
      def test_user($cn; $w; $r): .topic_permissions |= map(select(.user != $cn)) + [
        {user: $cn, vhost: "/", exchange: "amq.topic", write: $w, read: $r}];
      test_user("ota-test-observer1"; "^$"; "^ota(\\..+)?$")
      | test_user("ota-test-observer2"; "^$"; "^ota(\\..+)?$")
      | test_user("ota-test-observer3"; "^$"; "^ota(\\..+)?$")
      | test_user("ota-test-injector";
          "^ota\\.(dev\\.[^.]+\\.(offer|frag|status|ack)|grp\\.[^.]+\\.frag)$"; "^$")
    ' "$T/rmq-defs.base.json" >"$T/rmq-defs.json"
}

# _rmq_conf K N: node K's rabbitmq.conf from the deployment's template.
_rmq_conf() {
    local k=$1 n=$2 i cluster=""
    if [ "$n" -gt 1 ]; then
        cluster="cluster_formation.peer_discovery_backend = classic_config"
        for ((i = 1; i <= n; i++)); do
            cluster="$cluster\\ncluster_formation.classic_config.nodes.$i = ${RMQ_NODE[$i]}"
        done
    fi
    mkdir -p "$T/rmq$k"
    sed -e "s|@MQTT_PORT@|${RMQ_PORT[$k]}|g" -e "s|@BIND@|127.0.0.1|g" \
        -e "s|@CERTS@|$CERTS|g" -e "s|@DEFS@|$T/rmq-defs.json|g" \
        -e "s|@CLUSTER@|$cluster|" "$OTA_ROOT/deploy/rabbitmq/rabbitmq.conf.in" \
        >"$T/rmq$k/rabbitmq.conf"
}

# rabbit_node_start K: (re)start node K; returns once its MQTT listener is up.
rabbit_node_start() {
    _rmq_spawn "$1" && _rmq_wait "$1"
}
_rmq_spawn() {
    local e pid p=()
    _rmq_env "$1"
    spawn "rabbit$1" env "${_RMQ_ENV[@]}" "$RMQ_BIN/rabbitmq-server"
    # The test's epmd last in lib.sh's cleanup order (spawn order), after every node: see
    # finish in lib.sh.
    e=$(pid_of epmd)
    [ -n "$e" ] || return 0
    for pid in "${_LIB_ALL[@]}"; do [ "$pid" = "$e" ] || p+=("$pid"); done
    _LIB_ALL=("${p[@]}" "$e")
}
_rmq_wait() {
    local k=$1
    if ! wait_until 120 "port_listening ${RMQ_PORT[$k]} || ! alive rabbit$k"; then
        echo "rabbit: node $k did not open its MQTT port in 120 s" >&2
        return 1
    fi
    alive "rabbit$k" || { echo "rabbit: node $k exited" >&2; return 1; }
    # Each node imports the definitions into the cluster's shared database at boot, and one
    # node's listener can open while another is still importing (1000 users take seconds):
    # ready only once this node says it finished.
    if ! wait_until 120 "grep -q 'Server startup complete' '$T/rabbit$k.log' || ! alive rabbit$k" ||
        ! alive "rabbit$k"; then
        echo "rabbit: node $k did not complete its start" >&2
        return 1
    fi
}

rabbit_start() {
    local n=$1 k tag
    [ -x "$RMQ_BIN/rabbitmq-server" ] || { echo "rabbit_start: no $RMQ_BIN/rabbitmq-server (deploy/deps.sh installs it)" >&2; return 1; }
    [ -s "$CERTS/broker.crt" ] || certs_make || return 1
    rabbit_defs || { echo "rabbit_start: definitions failed" >&2; return 1; }
    mkdir -p "$T/rmq-home"
    : >"$T/rmq-home/env.conf"
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/rmq-home/.erlang.cookie"
    chmod 400 "$T/rmq-home/.erlang.cookie"
    RMQ_EPMD=$(free_port) || return 1
    spawn epmd env ERL_EPMD_ADDRESS=127.0.0.1 epmd -port "$RMQ_EPMD"
    wait_until 5 "port_listening $RMQ_EPMD" || { echo "rabbit_start: epmd did not start" >&2; return 1; }
    tag=$$
    for ((k = 1; k <= n; k++)); do
        RMQ_NODE[k]="ota$k-$tag@localhost"
        RMQ_PORT[k]=$(free_port) || return 1
        RMQ_DIST[k]=$(free_port) || return 1
    done
    for ((k = 1; k <= n; k++)); do _rmq_conf "$k" "$n"; done
    # Node 1 first, to the end of its start: it forms the cluster, creates the vhost and
    # imports the definitions. Then the others together: they join, start the vhost's
    # processes at boot and skip the import (skip_if_unchanged). All at once instead lost a
    # race in 3.10: the vhost one node created during the others' boot was never started on
    # them ("vhost '/' is down" to every client of those nodes).
    rabbit_node_start 1 || return 1
    for ((k = 2; k <= n; k++)); do _rmq_spawn "$k"; done
    for ((k = 2; k <= n; k++)); do _rmq_wait "$k" || return 1; done
    BROKER_PORT=${RMQ_PORT[1]}
    export BROKER_PORT
}

rabbit_stop() {
    stop "rabbit$1" || true
}

rabbit_kill() {
    local pid
    pid=$(pid_of "rabbit$1")
    [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null
    stop "rabbit$1" || true
}

rabbit_clients() {
    # rabbit_mqtt_collector is the cluster's registry of client ids (the same list on every
    # node); the node of the connection's process says where the client is connected.
    rabbitmqctl_on "$1" eval \
        '[io:format("~s~n", [C]) || {C, P} <- rabbit_mqtt_collector:list(), node(P) =:= node()], ok.' \
        2>/dev/null | grep -v '^ok$'
}

# rabbit_reload: the definitions anew from $CERTS (after make-certs --operator or
# --revoke): imported into the running cluster (additive), and the users of revoked
# certificates deleted (new connections with them are refused).
rabbit_reload() {
    local u
    rabbit_defs || return 1
    rabbitmqctl_on 1 import_definitions "$T/rmq-defs.json" >/dev/null || return 1
    for u in $(rabbitmqctl_on 1 list_users --formatter json | jq -r '.[].user'); do
        jq -e --arg u "$u" 'any(.users[]; .name == $u)' "$T/rmq-defs.json" >/dev/null ||
            rabbitmqctl_on 1 delete_user "$u" >/dev/null || return 1
    done
}

# rabbit_stop_all: every node and the private epmd stopped, their data removed (a later
# rabbit_start makes a new cluster).
rabbit_stop_all() {
    local k
    for k in "${!RMQ_NODE[@]}"; do rabbit_stop "$k"; done
    stop epmd || true
    rm -rf "$T"/rmq[0-9]*
    RMQ_NODE=() RMQ_PORT=() RMQ_DIST=()
}

# rabbit_beam_pid K: the OS pid of node K's Erlang VM (what uses the CPU and memory).
rabbit_beam_pid() {
    local pid
    pid=$(cat "$T/rmq$1/pid" 2>/dev/null) && echo "$pid"
}
