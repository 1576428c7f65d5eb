#!/usr/bin/env python3
"""Broker CPU per connection, step by step (tests/bench/conn_cost.sh runs it).

usage: conncost.py HOST PORT BROKER_PID CERT_DIR N [STEP,...]

The first N device certificates (CERT_DIR/devices/dev-*.crt, CERT_DIR/ca.crt) connect one
after another over mutual TLS 1.3, as ota-device does after its restart, each step going
one stage further: tcp (connect and close), tls (a resumed handshake), connect (+ MQTT
CONNECT with the device's will, CONNACK, DISCONNECT), device (+ its two SUBSCRIBEs and a
retained QoS 1 status, as PROTOCOL.md section 3 has a device do on every connect), and
full-connect / full-device (the same without resuming). A first round of full handshakes
gives every device a session; each resumed step offers the newest one and keeps the one
it gets. Prints one line per step: the broker's CPU per connection in microseconds
(/proc/PID/schedstat, its time on CPU) and how many handshakes resumed.
"""
import glob
import json
import os
import socket
import ssl
import struct
import sys
import time


def cpu_ns(pid):
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0])


def mqtt_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def packet(kind, body):
    n, rl = len(body), b""
    while True:
        d, n = n % 128, n // 128
        rl += bytes([d | (0x80 if n else 0)])
        if not n:
            return bytes([kind]) + rl + body


def read_packet(s):
    h = s.recv(1)
    if not h:
        raise ConnectionError("the broker closed the connection")
    mult, n = 1, 0
    while True:
        b = s.recv(1)[0]
        n += (b & 127) * mult
        mult *= 128
        if not b & 128:
            break
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        body += chunk
    return h[0], body


class Device:
    def __init__(self, cert_dir, cid):
        self.cid = cid
        self.ctx = ssl.create_default_context(cafile=cert_dir + "/ca.crt")
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(cert_dir + "/devices/%s.crt" % cid,
                                 cert_dir + "/devices/%s.key" % cid)
        self.session = None

    def connect_packet(self):
        will = json.dumps({"state": "offline", "device": self.cid, "product": "sensor",
                           "group": "", "version": "1.0.0"})
        flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, will, will QoS 1, will retain
        body = (mqtt_str("MQTT") + bytes([4, flags]) + struct.pack("!H", 30) +
                mqtt_str(self.cid) + mqtt_str("ota/dev/%s/status" % self.cid) + mqtt_str(will))
        return packet(0x10, body)

    def run(self, host, port, stage, resume):
        raw = socket.create_connection((host, port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if stage == "tcp":
            raw.close()
            return False
        s = self.ctx.wrap_socket(raw, server_hostname="localhost",
                                 session=self.session if resume else None)
        reused = s.session_reused
        if stage != "tls":
            s.sendall(self.connect_packet())
            kind, body = read_packet(s)
            if kind != 0x20 or body[1] != 0:
                raise ConnectionError("%s: CONNACK %r" % (self.cid, body))
        if stage == "device":
            topics = ["ota/dev/%s/offer" % self.cid, "ota/dev/%s/poll" % self.cid, "ota/hello"]
            s.sendall(packet(0x82, struct.pack("!H", 1) +
                             b"".join(mqtt_str(t) + b"\x01" for t in topics)))
            s.sendall(packet(0x82, struct.pack("!H", 2) +
                             mqtt_str("ota/dev/%s/frag" % self.cid) + b"\x00"))
            status = json.dumps({"state": "idle", "device": self.cid, "product": "sensor",
                                 "version": "1.0.0"}).encode()
            s.sendall(packet(0x33, mqtt_str("ota/dev/%s/status" % self.cid) +
                             struct.pack("!H", 3) + status))
            acks = 0
            while acks < 3:  # two SUBACKs, one PUBACK
                kind, _ = read_packet(s)
                if kind & 0xF0 in (0x90, 0x40):
                    acks += 1
        if stage != "tls":
            # The ticket came after CONNACK: this session is the newest (a handshake
            # closed at once may not have read its ticket: the step after it offers the
            # session kept before).
            self.session = s.session
        if stage != "tls":
            s.sendall(b"\xe0\x00")  # DISCONNECT
        s.close()
        return reused


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    host, port, pid, cert_dir, n = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                    sys.argv[4], int(sys.argv[5]))
    steps = (sys.argv[6] if len(sys.argv) > 6 else
             "tcp,tls,connect,device,full-connect,full-device").split(",")
    ids = sorted(os.path.basename(f)[:-4] for f in glob.glob(cert_dir + "/devices/dev-*.crt"))
    if len(ids) < n:
        sys.exit("conncost.py: %d device certificates in %s/devices, want %d" % (len(ids), cert_dir, n))
    devices = [Device(cert_dir, cid) for cid in ids[:n]]
    for d in devices:
        d.run(host, port, "connect", False)
    for step in steps:
        resume = not step.startswith("full-")
        stage = step[5:] if step.startswith("full-") else step
        c0, reused = cpu_ns(pid), 0
        for d in devices:
            if d.run(host, port, stage, resume):
                reused += 1
        time.sleep(0.3)  # the broker's last reads and closes
        c1 = cpu_ns(pid)
        print("step=%s n=%d broker_us=%.0f resumed=%d" %
              (step, n, (c1 - c0) / 1e3 / n, reused), flush=True)


if __name__ == "__main__":
    main()
