#!/usr/bin/env bash
# The dashboard in a real browser: Debian's Chromium, driven by puppeteer-core
# (tests/browser/dashboard.js), during a --fleet rollout of DASH_N (default 200) simulated
# devices: the page loads, live updates arrive over the WebSocket, the pause button pauses
# the campaign in the ledger and the resume button resumes it (each showing the gateway's
# verdict), and the chart, the campaign row and the fleet reach the final state. The
# screenshot goes to $T/dashboard.png; with UPDATE_SCREENSHOT=1 also to docs/dashboard.png.
# Skipped, with the reason, only where Chromium or Node.js is not installed.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

N=${DASH_N:-200}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
BROWSER_DIR=$OTA_ROOT/tests/browser
if [ ! -x "$CHROMIUM" ]; then
    skip "dashboard in a browser" "Chromium is not installed ($CHROMIUM; deploy/deps.sh installs Debian's chromium where it can)"
    exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    skip "dashboard in a browser" "Node.js/npm are not installed (needed for puppeteer-core)"
    exit 0
fi
# puppeteer-core (no browser download) from the committed package-lock.json.
if [ ! -d "$BROWSER_DIR/node_modules/puppeteer-core" ]; then
    check "puppeteer-core installs from package-lock.json" \
        bash -c "cd '$BROWSER_DIR' && npm ci --no-audit --no-fund --loglevel=error" || finish
fi

certs_make --devices "$N"
broker_start || { not_ok "broker starts"; finish; }
HP=$(free_port)
check "gateway starts with the dashboard on 127.0.0.1:$HP" gateway_start --http-listen "127.0.0.1:$HP"
spawn fleet "$DEV" --fleet "$N" --fleet-cert-dir "$CERTS/devices" --product sensor \
    --version 1.0.0 --broker-host localhost --broker-port "$BROKER_PORT" \
    --ca-file "$CERTS/ca.crt" --publisher-key "$CERTS/publisher.pub" --state-dir "$T/fleet"
idle_count() { gw_status_json | jq '[.devices[] | select(.state == "idle")] | length'; }
check "all $N devices of the fleet report idle 1.0.0" wait_until 120 '[ "$(idle_count)" = "$N" ]'

make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/sensor-1.1.0.ota"
# 10 at a time: the rollout lasts long enough to be paused half way.
check "announce 1.1.0 to the fleet, 10 devices at a time" \
    announce sensor "file://$T/sensor-1.1.0.ota" ',"concurrency":10'
check "the release is verified" \
    wait_until 30 "gw_status_json | jq -e '.releases | length == 1' >/dev/null"
REL=$(gw_status_json | jq -r '.releases[0].release')

(cd "$BROWSER_DIR" && node dashboard.js "http://127.0.0.1:$HP/" "$REL" "$N" "$T/dashboard.png" \
    "$GW" status --db "$T/gw-db" --json) >"$T/browser.out" 2>&1
rc=$?
cat "$T/browser.out"
check "the browser test ran to the end (exit 0)" test "$rc" = 0
check "the ledger agrees: all $N committed 1.1.0" \
    test "$(gw_status_json | jq '[.devices[] | select(.state == "committed" and .version == "1.1.0")] | length')" = "$N"
if [ "${UPDATE_SCREENSHOT:-0}" = 1 ] && [ -f "$T/dashboard.png" ]; then
    cp "$T/dashboard.png" "$OTA_ROOT/docs/dashboard.png" && echo "# docs/dashboard.png updated"
fi
check "the fleet stops cleanly" stop_all_clean fleet
check "the gateway stops cleanly, no sanitizer reports" stop_all_clean gateway
finish
