#!/bin/sh
# entrypoint.sh: one node of the RabbitMQ cluster of docker-compose.yml (next to this file).
# Renders rabbitmq.conf.in for this node, puts the Erlang cookie and the broker's key where
# RabbitMQ wants them (mode 0400, owned by whoever runs the broker), then starts it.
# Environment: OTA_CLUSTER (the node names, e.g. "rabbit@rmq1 rabbit@rmq2 rabbit@rmq3";
# empty for one node), OTA_MQTT_PORT (default 8883).
set -eu
run=/run/ota-rabbit
mkdir -p "$run/pki"
for f in ca.crt broker.crt broker.key; do
    cp /ota/pki/$f "$run/pki/$f"
done
chmod 0400 "$run/pki/broker.key"
cluster=
if [ -n "${OTA_CLUSTER:-}" ]; then
    cluster="cluster_formation.peer_discovery_backend = classic_config"
    i=1
    for n in $OTA_CLUSTER; do
        cluster="$cluster\\ncluster_formation.classic_config.nodes.$i = $n"
        i=$((i + 1))
    done
fi
sed -e "s|@MQTT_PORT@|${OTA_MQTT_PORT:-8883}|g" -e "s|@BIND@|0.0.0.0|g" \
    -e "s|@CERTS@|$run/pki|g" -e "s|@DEFS@|/ota/definitions.json|g" \
    -e "s|@CLUSTER@|$cluster|" /ota/rabbitmq.conf.in >"$run/rabbitmq.conf"
# The nodes of one cluster share this secret (it lets its holder run code on them).
cp /ota/cookie "$HOME/.erlang.cookie"
chmod 0400 "$HOME/.erlang.cookie"
export RABBITMQ_CONFIG_FILE="$run/rabbitmq.conf"
exec docker-entrypoint.sh rabbitmq-server
