#!/usr/bin/env bash
# What encryption costs (proto/PROTOCOL.md section 6.3): N simulated devices (one
# ota-device --fleet N process, a certificate each, group sending on) take the same size of
# release in clear and encrypted, alternately, on one broker and one gateway in one run, so
# that the two are measured side by side on a shared machine. Per update: time from the
# announcement's mosquitto_pub to the last device committed (the ledger's finished_ms), CPU
# seconds of broker, gateway and fleet (utime + stime from /proc), fragments sent and
# resent, and the bytes the fragments took on the wire (header, data, tag). Prints Markdown.
#   usage: tests/bench/encrypt.sh [BUILD_DIR]
#   env: ENC_DEVICES=1000  ENC_KIB=1024  ENC_FRAG=65536  ENC_ROUNDS=2 (pairs clear/encrypted)
. "$(dirname "$0")/env.sh"
N=${ENC_DEVICES:-1000}
KIB=${ENC_KIB:-1024}
FRAG=${ENC_FRAG:-65536}
ROUNDS=${ENC_ROUNDS:-2}
certs_make --devices "$N" >/dev/null || bench_die "make-certs failed"
broker_start >/dev/null || bench_die "the broker did not start"
BROKER=$(pid_of broker)
bench_tmpfs
make_payload "$T/fw.bin" $((KIB * 1024))
# The gateway wraps each release's key for the devices' certificates (the same files the
# fleet connects with; it reads only the .crt ones).
gateway_start --device-cert-dir "$CERTS/devices" >/dev/null || bench_die "the gateway did not start"
spawn fleet "$DEV" --fleet "$N" --fleet-cert-dir "$CERTS/devices" --product sensor \
    --version 1.0.0 --broker-host localhost --broker-port "$BROKER_PORT" \
    --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --state-dir "$SHM/fleet"
wait_fleet $((30 + N / 10)) idle 1.0.0 "$N" ||
    bench_die "$N devices not idle after $((30 + N / 10)) s: $(states)"

# update VERSION ENCRYPT(true|false): one release to all; appends a row to $T/rows.
update() {
    local v=$1 enc=$2 gw fl cb cg cf t0 last ms sent resent wire
    gw=$(pid_of gateway)
    fl=$(pid_of fleet)
    pack sensor "$v" "$T/fw.bin" "$T/p-$v.ota" || bench_die "pack failed"
    cb=$(cpu_ticks "$BROKER")
    cg=$(cpu_ticks "$gw")
    cf=$(cpu_ticks "$fl")
    t0=$(now_ms)
    announce sensor "file://$T/p-$v.ota" ",\"fragment_size\":$FRAG,\"encrypt\":$enc" ||
        bench_die "mosquitto_pub of the announcement failed"
    wait_fleet $((60 + N / 2)) committed "$v" "$N" ||
        bench_die "$N devices ($enc): not all committed $v: $(states)"
    cb=$(($(cpu_ticks "$BROKER") - cb))
    cg=$(($(cpu_ticks "$gw") - cg))
    cf=$(($(cpu_ticks "$fl") - cf))
    last=$(gw_json | jq '[.devices[].finished_ms] | max')
    ms=$((last - t0))
    sent=$(gw_json | jq '[.devices[].frags_sent] | add')
    resent=$(gw_json | jq '[.devices[].frags_resent] | add')
    # Bytes of one copy of the release's fragments: table + payload, 8-byte headers, and
    # a 16-byte tag each when encrypted.
    rel=$(gw_json | jq -r --arg v "$v" '.releases[] | select(.version == $v) | "\(.fragments) \(.size) \(.block_size)"')
    wire=$(awk -v r="$rel" -v e="$enc" 'BEGIN { split(r, f, " "); blocks = int((f[2] + f[3] - 1) / f[3])
        print f[2] + 32 * blocks + f[1] * (8 + (e == "true" ? 16 : 0)) }')
    echo "$enc $v $ms $cb $cg $cf $sent $resent $wire" >>"$T/rows"
}

: >"$T/rows"
for ((r = 1; r <= ROUNDS; r++)); do
    update "1.$((2 * r - 1)).0" false
    update "1.$((2 * r)).0" true
done
grep -q 'encrypted verified' "$T/gateway.log" || bench_die "no release was encrypted"
[ "$(grep -c 'not offered' "$T/gateway.log")" = 0 ] || bench_die "a device was not offered"
stop fleet >/dev/null || true
stop gateway >/dev/null || true

label() { if [ "$1" = true ]; then echo encrypted; else echo "in clear"; fi; }
echo "| release | sent | fleet time | CPU s: broker / gateway / devices | fragments sent (resent) | bytes of one copy of the fragments |"
echo "| --- | --- | --- | --- | --- | --- |"
while read -r enc v ms cb cg cf sent resent wire; do
    echo "| $v | $(label "$enc") | $(ms_s "$ms") | $(ticks_s "$cb") / $(ticks_s "$cg") / $(ticks_s "$cf") | $sent ($resent) | $wire |"
done <"$T/rows"
echo
# Medians (of ROUNDS) per mode, then encrypted / in clear.
awk -v hz="$CLK_TCK" '
    function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
        if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    { k = $1; n[k]++; ms[k, n[k]] = $3; b[k, n[k]] = $4; g[k, n[k]] = $5; d[k, n[k]] = $6; w[k] = $9 }
    END {
        split("false true", m, " ")
        for (x = 1; x <= 2; x++) { k = m[x]
            for (i = 1; i <= n[k]; i++) { t1[i] = ms[k, i]; t2[i] = b[k, i]; t3[i] = g[k, i]; t4[i] = d[k, i] }
            M[k] = med(t1, n[k]); B[k] = med(t2, n[k]); G[k] = med(t3, n[k]); D[k] = med(t4, n[k]) }
        printf "| median of %d | fleet time | CPU s: broker | gateway | devices | wire bytes |\n", n["false"]
        printf "| --- | --- | --- | --- | --- | --- |\n"
        printf "| in clear | %.2f s | %.1f | %.1f | %.1f | %d |\n", M["false"] / 1000, B["false"] / hz, G["false"] / hz, D["false"] / hz, w["false"]
        printf "| encrypted | %.2f s | %.1f | %.1f | %.1f | %d |\n", M["true"] / 1000, B["true"] / hz, G["true"] / hz, D["true"] / hz, w["true"]
        r = "| **encrypted / in clear** |"
        printf "%s **%.2f** | %.2f | %.2f | %.2f | %.4f |\n", r, M["true"] / M["false"],
            (B["false"] ? B["true"] / B["false"] : 0), (G["false"] ? G["true"] / G["false"] : 0),
            (D["false"] ? D["true"] / D["false"] : 0), w["true"] / w["false"]
    }' "$T/rows"
