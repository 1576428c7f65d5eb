# profile.awk: sort the samples of `perf script -F comm,ip,sym,dso` (a DWARF call graph
# of the broker, the gateway and the simulated fleet) into what the CPU did. Each sample
# goes to the first category whose pattern matches a frame of its stack (leaf to root), so
# a TLS write inside the broker's routing counts as TLS, not as routing.
# Output (TSV): category, then samples per process (mosquitto, ota-gateway, ota-device).
function classify(stack, leaf_kernel) {
    if (stack ~ /proto_verify|util_sha256_fd|SHA256_|sha256_block|ossl_ed25519|ED25519|verify_work/)
        return "SHA-256 of images, Ed25519 signature checks"
    # libssl without a record read or write is a handshake (SSL_connect/accept run inside
    # libmosquitto and the broker's internal functions).
    if (stack ~ /ossl_statem|SSL_do_handshake|SSL_connect|SSL_accept|SSL_CTX_|X509_STORE_load|X509_verify|OSSL_DECODER|PEM_read|d2i_SSL_SESSION|EVP_PKEY_generate|EC_POINT_mul|mosquitto_tls_set|mq_start|mq_new|dev_init|restart_inproc/ ||
        (stack ~ /\?libssl/ && stack !~ /(^|;)SSL_(read|write|peek)/))
        return "connecting: TLS handshakes, certificate and key loading"
    if (stack ~ /mdb_|store_commit|store__/)
        return "ledger (LMDB)"
    if (stack ~ /ext4_|shmem_|fdatasync|fsync|__libc_pwrite|util_write_atomic|__x64_sys_rename|__x64_sys_openat|__x64_sys_unlink|jbd2|blk_/)
        return "files: payload writes, checkpoints, fsync, state.json"
    if (stack ~ /(^|;)SSL_(read|write|peek)/ && !leaf_kernel)
        return "TLS record encryption and decryption"
    if (leaf_kernel && stack ~ /SSL_(read|write)|tcp_|sock_|sendmsg|recvmsg|net_rx|__napi_poll|ip_local|skb/)
        return "socket send/receive (kernel, loopback TCP)"
    if (stack ~ /json_|libjansson/)
        return "JSON (offers, statuses, ledger records)"
    if (stack ~ /sub__|db__|packet__|handle__|send__|mux_|acl__|mosquitto_publish|mosquitto_loop_read|mosquitto_loop_write|mosquitto_acl|message__|\?libmosquitto/)
        return "MQTT packets, routing and queues"
    if (stack ~ /gw__xfer|gw__campaign|send_frag|pump|gw__tick/)
        return "gateway transfer engine (windows, timers)"
    if (leaf_kernel && stack ~ /epoll|poll|schedule|futex|timerfd|nanosleep/)
        return "event loop: epoll, timers, wake-ups (kernel)"
    if (stack ~ /^(malloc|free|cfree|_int_|__memmove|__memcpy|__memset|realloc|calloc|unlink_chunk|malloc_consolidate)/)
        return "memory allocation and copies"
    return leaf_kernel ? "other (kernel)" : "other (user space)"
}
function flush() {
    if (comm != "" && nframes > 0) {
        c = classify(stack, leaf_kernel)
        n[c, comm]++
        cat[c] = 1
        total[comm]++
    }
    comm = ""; stack = ""; nframes = 0; leaf_kernel = 0
}
/^[^ \t]/ { flush(); comm = $1; next }
/^[ \t]*$/ { flush(); next }
{
    # "    addr symbol+off (dso)": the symbol, and whether the leaf is in the kernel.
    sym = $2
    sub(/\+0x[0-9a-f]+$/, "", sym)
    if (sym == "[unknown]") {
        # An internal function of a stripped library: keep which library.
        dso = $NF
        gsub(/^\(|\)$|^.*\//, "", dso)
        sym = "?" dso
    }
    if (nframes == 0 && $0 ~ /kernel\.kallsyms/)
        leaf_kernel = 1
    stack = (nframes == 0) ? sym : stack ";" sym
    nframes++
}
END {
    flush()
    for (c in cat)
        printf "%s\t%d\t%d\t%d\n", c, n[c, "mosquitto"], n[c, "ota-gateway"], n[c, "ota-device"]
    printf "TOTAL\t%d\t%d\t%d\n", total["mosquitto"], total["ota-gateway"], total["ota-device"]
}
