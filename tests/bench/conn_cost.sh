#!/usr/bin/env bash
# What one connection costs the broker, step by step, with the broker's shipped OpenSSL
# configuration (deploy/mosquitto/openssl.cnf: stateful session tickets) and with
# OpenSSL's defaults (stateless tickets), on one machine in one run: tests/tools/conncost.py
# connects N device certificates one after another (TCP only; a resumed TLS 1.3 handshake;
# + MQTT CONNECT with the will; + the device's subscriptions and a retained status; the
# last two again with a full handshake) and reads the broker's CPU time per connection.
# Prints a Markdown table.
#   usage: tests/bench/conn_cost.sh [BUILD_DIR]
#   env: CONN_N=300 (connections per step)  CONN_ROUNDS=2 (alternations of the two brokers)
. "$(dirname "$0")/env.sh"
N=${CONN_N:-300}
ROUNDS=${CONN_ROUNDS:-2}
python3 -c 'import ssl; ssl.TLSVersion.TLSv1_3' 2>/dev/null || bench_die "python3 with ssl is missing"
certs_make --devices "$N" >/dev/null || bench_die "make-certs failed"
: >"$T/empty.cnf"
STEPS="tcp tls connect device full-connect full-device"
for r in $(seq 1 "$ROUNDS"); do
    for mode in stateful stateless; do
        if [ "$mode" = stateless ]; then export BROKER_OPENSSL_CONF=$T/empty.cnf; else unset BROKER_OPENSSL_CONF; fi
        broker_start >/dev/null || bench_die "the broker did not start"
        python3 "$OTA_ROOT/tests/tools/conncost.py" 127.0.0.1 "$BROKER_PORT" "$(pid_of broker)" \
            "$CERTS" "$N" "$(tr ' ' , <<<"$STEPS")" >"$T/cost-$mode-$r.txt" 2>"$T/cost.err" ||
            bench_die "conncost.py failed ($mode): $(tail -n 3 "$T/cost.err")"
        broker_stop
    done
done
unset BROKER_OPENSSL_CONF
# mean STEP MODE FIELD: the mean over the rounds of FIELD (broker_us or resumed).
mean() {
    cat "$T"/cost-"$2"-*.txt | awk -v s="$1" -v f="$3" '{
        split("", kv); for (i = 1; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
        if (kv["step"] == s) { t += kv[f]; n++ } } END { if (n) printf "%.0f", t / n; else print "-" }'
}
declare -A LABEL=([tcp]="TCP connect and close" [tls]="TLS 1.3 handshake, resumed"
    [connect]="+ MQTT CONNECT (with will), CONNACK, DISCONNECT"
    [device]="+ the device's 2 SUBSCRIBEs and a retained QoS 1 status (a device's reconnection)"
    [full-connect]="full handshake + CONNECT" [full-device]="full handshake + what a device does")
rounds="mean of $ROUNDS rounds"
[ "$ROUNDS" = 1 ] && rounds="one round"
echo "| step ($N connections, $rounds) | broker CPU per connection: stateful tickets (openssl.cnf) | stateless (OpenSSL's defaults) | stateful / stateless |"
echo "| --- | --- | --- | --- |"
for s in $STEPS; do
    a=$(mean "$s" stateful broker_us)
    b=$(mean "$s" stateless broker_us)
    ra=$(mean "$s" stateful resumed)
    rb=$(mean "$s" stateless resumed)
    note=""
    case $s in tls | connect | device) note=" (resumed: $ra / $rb of $N)" ;; esac
    echo "| ${LABEL[$s]}$note | $a us | $b us | $(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }') |"
done
