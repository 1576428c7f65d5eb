#!/usr/bin/env python3
"""syngate: a TCP relay whose accept queue is full for its first HOLD seconds,
and which relays each connection only DELAY seconds after accepting it.

It listens with a backlog of 0 and fills that queue with a connection of its
own, so the kernel drops every client's SYN meanwhile, as a busy broker's full
accept queue does. A client's connect() then completes only on a SYN
retransmission (1 s, 3 s, ... later): its socket is still connecting when its
TLS handshake starts, as on any link that is not loopback. After HOLD seconds
the gate accepts, and relays each client to TARGET byte for byte. With DELAY,
a connection waits that long first: its bytes are acknowledged by the kernel
and unread, as with a broker that holds the connection behind other work.

    usage: syngate.py LISTEN_PORT TARGET_PORT HOLD_SECONDS [DELAY_SECONDS]
Prints "listening" once the queue is full, "open" when it starts accepting.
"""
import socket
import sys
import threading
import time


def relay(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(c, target, delay):
    time.sleep(delay)
    try:
        t = socket.create_connection(("127.0.0.1", target))
    except OSError:
        c.close()
        return
    for a, b in ((c, t), (t, c)):
        threading.Thread(target=relay, args=(a, b), daemon=True).start()


def main():
    port, target, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(0)
    filler = socket.create_connection(("127.0.0.1", port))
    print("listening", flush=True)
    time.sleep(hold)
    conn, _ = ls.accept()
    conn.close()
    filler.close()
    print("open", flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c, target, delay), daemon=True).start()


if __name__ == "__main__":
    main()
