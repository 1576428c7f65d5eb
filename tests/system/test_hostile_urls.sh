#!/usr/bin/env bash
# The gateway survives whatever an operator names (docs/SECURITY.md):
# - four announcements naming FIFOs used to block every thread of the pool (ledger not
#   written, a valid release left unverified, SIGTERM ignored): they are refused at once,
#   and a valid release announced after them is verified and rolled out promptly;
# - /dev/zero and a 2 GiB sparse file are refused before a byte is copied into store_dir;
# - file:// outside file_dirs (a path, a symlink out, a relative path) is refused with the
#   reason;
# - the credentials of an https URL appear neither in the log nor in the event log;
# - a .fetch-* temporary file a killed gateway left in store_dir is removed at start;
# - SIGTERM stops the gateway within seconds.
. "$OTA_ROOT/tests/system/lib.sh"
. "$OTA_ROOT/tests/system/ota.sh"

certs_make dev-001
broker_start || { not_ok "broker starts"; finish; }
# Packages from $T, and (to show that devices are refused by type, not only by place) /dev.
check "gateway starts (file_dirs $T:/dev, max_package_mb 1)" \
    gateway_start --file-dirs "$T:/dev" --max-package-mb 1 --fetch-retries 0
device_start dev-001 1.0.0
check "device online" wait_until 10 "all_devices idle 1.0.0 dev-001"
make_payload "$T/fw.bin" 65536
pack sensor 1.1.0 "$T/fw.bin" "$T/ok.ota"
refusals() { gw_status_json | jq '[.events[] | select(.event == "release_refused")] | length'; }

# --- FIFOs ------------------------------------------------------------------------------
for i in 1 2 3 4; do
    mkfifo "$T/fifo$i.ota"
    announce sensor "file://$T/fifo$i.ota"
done
check "the four FIFOs are refused at once, by type" \
    wait_until 5 "[ \"\$(grep -c 'release REFUSED .*fifo[1-4].ota is a FIFO, not a regular file: refused before reading' '$T/gateway.log')\" = 4 ]"
check "the ledger records the four refusals" wait_until 5 '[ "$(refusals)" = 4 ]'
t0=$(now_ms)
announce sensor "file://$T/ok.ota"
check "a valid release announced next is verified" \
    wait_until 10 "grep -q 'version=1.1.0 .*verified and stored' '$T/gateway.log'"
echo "# verified $(($(now_ms) - t0)) ms after its announcement"
check "and rolled out" wait_until 30 "all_devices committed 1.1.0 dev-001"

# --- no copy of what cannot be a package ------------------------------------------------
store_bytes() { du -sb "$T/gw-store" | cut -f1; }
before=$(store_bytes)
announce sensor "file:///dev/zero"
check "/dev/zero is refused as a character device" \
    wait_until 5 "grep -q '/dev/zero is a character device, not a regular file: refused before reading' '$T/gateway.log'"
truncate -s 2G "$T/sparse.ota"
announce sensor "file://$T/sparse.ota"
check "a 2 GiB sparse file is refused on its size, before copying" \
    wait_until 5 "grep -q 'sparse.ota is 2147483648 bytes, larger than the configured maximum of 1048576 bytes (max_package_mb): refused before copying' '$T/gateway.log'"
check "nothing was copied into store_dir ($before -> $(store_bytes) bytes)" \
    test "$(store_bytes)" -le "$before"
check "no temporary file is left in store_dir" \
    bash -c "! ls -A '$T/gw-store' | grep -q '^\\.fetch-'"

# --- only below file_dirs ---------------------------------------------------------------
announce sensor "file:///etc/hostname"
check "a file outside file_dirs is refused with the reason" \
    wait_until 5 "grep -q '/etc/hostname is outside the directories allowed for file:// packages (file_dirs = $T:/dev)' '$T/gateway.log'"
ln -s /etc/passwd "$T/link.ota"
announce sensor "file://$T/link.ota"
check "so is a symlink that leads outside" \
    wait_until 5 "grep -q '/etc/passwd is outside the directories allowed' '$T/gateway.log'"
announce sensor "file://etc/hostname"
check "and a relative path" \
    wait_until 5 "grep -q 'file:// URL must name an absolute path' '$T/gateway.log'"

# --- credentials are never logged --------------------------------------------------------
port=$(free_port)
announce sensor "https://alice:s3cr3t-pw@127.0.0.1:$port/p.ota?token=t0k3n-xyz&v=2"
check "the https fetch fails (nothing listens)" \
    wait_until 15 "grep -q 'fetch https://.*127.0.0.1:$port/p.ota.* failed' '$T/gateway.log'"
check "the log shows the URL redacted" \
    grep -qF "https://***@127.0.0.1:$port/p.ota?token=***&v=***" "$T/gateway.log"
check "the password is not in the log" bash -c "! grep -q 's3cr3t-pw' '$T/gateway.log'"
check "nor the token" bash -c "! grep -q 't0k3n-xyz' '$T/gateway.log'"
check "nor the user name" bash -c "! grep -q 'alice' '$T/gateway.log'"
"$GW" status --db "$T/gw-db" --events 1000 >"$T/status.out" 2>&1
gw_status_json >"$T/status.json"
check "the event log has neither" \
    bash -c "! grep -q 's3cr3t-pw\\|t0k3n-xyz\\|alice' '$T/status.out' '$T/status.json'"

# --- a killed gateway's temporary file ----------------------------------------------------
t0=$(now_ms)
check "SIGTERM stops the gateway, exit 0" stop_all_clean gateway
stop_ms=$(($(now_ms) - t0))
check "within 3 s ($stop_ms ms)" test "$stop_ms" -lt 3000
head -c 100000 /dev/urandom >"$T/gw-store/.fetch-AbC123"
check "gateway starts again" gateway_start --file-dirs "$T:/dev"
check "the leftover .fetch-AbC123 is removed" test ! -e "$T/gw-store/.fetch-AbC123"
check "and the gateway says so" \
    grep -q "removed 1 temporary file(s) of fetches a stopped gateway left" "$T/gateway.log"
check "fsck: ledger and store consistent" gw_fsck
check "everything stops cleanly" stop_all_clean gateway dev-001
finish
