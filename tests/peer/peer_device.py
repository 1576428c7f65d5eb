#!/usr/bin/python3
"""peer_device.py: a second OTA device, written from proto/PROTOCOL.md alone.

It is a conformance reference as much as a test peer: each rule is marked with the
section of PROTOCOL.md it implements (§N). It never read the C device's source.

    peer_device.py --id ID --product P --firmware-version V --broker-host H --broker-port N
                   --ca-file CA --cert-file CRT --key-file KEY --publisher-key PUB
                   --state-dir DIR [--group G] [--drop-percent P --seed S]
                   [--checkpoint-every N] [--max-size BYTES]

State directory: state.json (the persistent record, written atomically), table.bin (the
block table as it arrives), slot-a/ and slot-b/ (the A/B image slots) and `active`, a
symlink to the running slot (active/payload is the running image).
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import struct
import sys
import time

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

IDENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}$")  # §2
VERSION = re.compile(r"^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$")
HEX = re.compile(r"^[0-9a-fA-F]*$")
ENC_ALG = "aes-256-gcm+p256-hkdf-sha256"


class Refused(Exception):
    """An offer check failed: published as status `failed` with this text (§8 step 5)."""


class Ignored(Exception):
    """Expiry or rollback refused the manifest: logged, nothing published (§4.5)."""


def now_ms():
    return int(time.time() * 1000)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def vtuple(v):
    m = VERSION.match(v) if isinstance(v, str) else None
    if not m:
        raise ValueError("invalid version %r" % (v,))
    return tuple(int(x) for x in m.groups())


def strict_json(raw, limit):
    """§1 JSON rules: one object, no duplicate keys, no NUL, at most `limit` bytes."""
    if len(raw) > limit:
        raise ValueError("longer than %d bytes" % limit)

    def pairs(kv):
        keys = [k for k, _ in kv]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate key")
        return dict(kv)

    def no_const(c):
        raise ValueError("not JSON: " + c)

    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if "\0" in text:
        raise ValueError("NUL character")
    obj = json.loads(text, object_pairs_hook=pairs, parse_constant=no_const)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def get(o, key, kind, required=True, lo=None, hi=None):
    """A member of exact type (§1: 4096.0 is not an integer, true is not 1)."""
    if key not in o:
        if required:
            raise ValueError("missing %s" % key)
        return None
    v = o[key]
    if kind is int and (type(v) is not int or not lo <= v <= hi):
        raise ValueError("%s is not an integer in %d..%d" % (key, lo, hi))
    if kind is not int and type(v) is not kind:
        raise ValueError("%s is not a %s" % (key, kind.__name__))
    return v


def hexdigits(o, key, n, required=True):
    v = get(o, key, str, required)
    if v is not None and (len(v) != n or not HEX.match(v)):
        raise ValueError("%s is not %d hex digits" % (key, n))
    return v


def parse_manifest(raw):
    """§4.2; the device requires the block table (§4.1)."""
    m = strict_json(raw, 16384)
    if get(m, "format", int, lo=0, hi=2**53) != 1:
        raise ValueError("unsupported format")
    if not IDENT.match(get(m, "product", str)):
        raise ValueError("invalid product")
    vtuple(get(m, "version", str))
    get(m, "size", int, lo=1, hi=2**40)
    hexdigits(m, "sha256", 64)
    get(m, "created", int, lo=0, hi=2**53)
    bs = get(m, "block_size", int, False, 512, 1048576)
    if (bs is None) != ("blocks" not in m):
        raise ValueError("block_size and blocks come together")
    if bs is None:
        raise ValueError("package has no block table")
    if bs & (bs - 1) or -(-m["size"] // bs) > 2**24:
        raise ValueError("invalid block_size")
    hexdigits(m, "blocks", 64)
    if "downgrade" in m:
        if get(m, "downgrade", bool) is not True:
            raise ValueError("downgrade is written only as true")
        if vtuple(get(m, "replaces", str)) <= vtuple(m["version"]):
            raise ValueError("replaces must be newer than version")
    elif "replaces" in m:
        raise ValueError("replaces without downgrade")
    get(m, "security_version", int, False, 1, 2**24 - 1)
    if get(m, "expires", int, False, 0, 2**63) is not None and m["expires"] <= m["created"]:
        raise ValueError("expires is not after created")
    return m


class Transfer:
    """One release being received: the windowed receiver of §9 and the block checks of §8."""

    def __init__(self, dev, offer, man):
        self.dev, self.offer, self.man = dev, offer, man
        self.release = offer["release"]
        self.tag_bytes = bytes.fromhex(self.release)[:4]  # §4.3: tag = first 4 id bytes
        self.F, self.window = offer["fragment_size"], offer["window"]
        self.T, self.N = offer.get("table_fragments", 0), offer["fragments"]
        self.total = self.T + self.N
        self.size, self.BS = man["size"], man["block_size"]
        self.nblocks = -(-self.size // self.BS)
        self.table_len = 32 * self.nblocks
        self.held = bytearray(self.total)
        self.cum = 0
        self.buf = {}  # payload fragment index -> data, until every block it touches is written
        self.written = bytearray(self.nblocks)
        self.table = None  # the checked table (bytes) once all table fragments are held
        self.failed_checks = 0
        self.aead = None
        self.unacked, self.oldest_unacked = 0, None
        self.quiet, self.quiet_until = 2.0, time.monotonic() + 2.0
        self.last_ckpt = 0

    # -- geometry (§6.1, §4.4) --
    def data_len(self, i):
        if i < self.T:
            return min(self.table_len, (i + 1) * self.F) - i * self.F
        p = i - self.T
        return min(self.size, (p + 1) * self.F) - p * self.F

    def blocks_of(self, i):
        lo = (i - self.T) * self.F
        return range(lo // self.BS, (lo + self.data_len(i) - 1) // self.BS + 1)

    def frags_of(self, b):
        lo, hi = b * self.BS, min(self.size, (b + 1) * self.BS)
        return range(self.T + lo // self.F, self.T + (hi - 1) // self.F + 1)

    def checkpoint_value(self):
        """§8 step 7: h = min(cum, T) before the table is checked, else T + floor(w*BS/F)."""
        if self.table is None:
            return min(self.cum, self.T)
        w = 0
        while w < self.nblocks and self.written[w]:
            w += 1
        return self.total if w == self.nblocks else self.T + w * self.BS // self.F

    def blocks_named(self, h):
        """§8 step 7: the blocks a checkpoint h says are in the slot."""
        return min(self.nblocks, -(-max(0, h - self.T) * self.F // self.BS))

    # -- receiving --
    def on_fragment(self, idx, data, from_group, now):
        """§9: returns (kind, ack_now): kind is new, dup, ahead, range or bad."""
        if idx >= self.total:
            return "range", False
        if from_group and idx >= self.cum + self.window:
            return "ahead", False  # the group ran ahead of our window: dropped quietly
        if len(data) != self.data_len(idx) + (16 if self.aead else 0):
            return "bad", False
        self.quiet_until, self.quiet = now + 2.0, 2.0  # any fragment ends the silence
        if self.held[idx]:
            if from_group:  # another member's repair: says nothing about us
                return "dup", self.delayed(now)
            return "dup", True  # a resend on our own topic: our ack was lost
        if self.aead:
            try:  # §6.3: nonce = tag, index, fragment_size, 00; AAD = the 8-byte header
                hdr = b"\x11" + self.tag_bytes + idx.to_bytes(3, "little")
                data = self.aead.decrypt(hdr[1:] + struct.pack("<I", self.F) + b"\0", data, hdr)
            except InvalidTag:
                self.failed_check("fragment %d does not decrypt" % idx)
                return "new", True
        was_cum = self.cum
        taken, dropped = self.take(idx, data)
        while self.cum < self.total and self.held[self.cum]:
            self.cum += 1
        if not taken or dropped or idx != was_cum or self.cum > idx + 1:
            return "new", True  # §9: cannot take, drop, gap, hole filled
        return "new", self.cum == self.total or self.delayed(now)

    def delayed(self, now):
        """§9 delayed ack: at once when max(1, window/4) are unacknowledged."""
        self.unacked += 1
        self.oldest_unacked = self.oldest_unacked or now
        return self.unacked >= max(1, self.window // 4)

    def tick(self, now):
        """§9 timers: the delayed ack 20 ms after the oldest unacknowledged fragment; the
        silence repeat 2 s after the last fragment, then 4, 8, .. at most 60 s apart."""
        if self.oldest_unacked is not None and now - self.oldest_unacked >= 0.020 - 1e-9:
            return True
        if now >= self.quiet_until - 1e-9:
            self.quiet = min(self.quiet * 2, 60.0)
            self.quiet_until = now + self.quiet
            return True
        return False

    def reconnected(self, now):
        """§9: a (re)connection starts the silence repeats over at 2 s."""
        self.quiet, self.quiet_until = 2.0, now + 2.0

    def take(self, idx, data):
        """The block assembler (§8 step 7): returns (taken, dropped some)."""
        self.held[idx] = 1
        if idx < self.T:
            self.dev.table_write(idx * self.F, data)
            return True, all(self.held[: self.T]) and not self.check_table()
        self.buf[idx] = data
        return True, self.table is not None and not self.check_blocks(self.blocks_of(idx))

    def failed_check(self, why):
        self.failed_checks += 1
        log("check failed:", why)
        if self.failed_checks > self.nblocks + 64:  # §8 step 7
            raise Refused("more failed checks than blocks: data corrupted or forged")

    def drop(self, frags):
        for f in frags:
            self.held[f] = 0
            self.buf.pop(f, None)
        self.cum = min([self.cum] + list(frags))

    def check_table(self):
        tbl = self.dev.table_read(self.table_len)
        if hashlib.sha256(tbl).hexdigest() != self.man["blocks"].lower():
            self.failed_check("block table does not match the signed manifest")
            self.drop(range(self.T))
            self.dev.table_truncate()
            return False
        self.table = tbl
        pending = {b for i in self.buf for b in self.blocks_of(i)}
        return self.check_blocks(sorted(pending))

    def check_blocks(self, blocks):
        """Each block whose fragments are all held: check it against its table entry;
        a match goes to the slot, a mismatch drops every fragment carrying its bytes."""
        ok = True
        for b in blocks:
            frags = self.frags_of(b)
            if self.written[b] or not all(self.held[f] for f in frags):
                continue
            lo, hi = b * self.BS, min(self.size, (b + 1) * self.BS)
            block = b"".join(self.buf[f] for f in frags)
            first = (frags[0] - self.T) * self.F
            block = block[lo - first : hi - first]
            if hashlib.sha256(block).digest() != self.table[32 * b : 32 * b + 32]:
                self.failed_check("block %d does not match its table entry" % b)
                self.drop(frags)
                ok = False
                continue
            self.dev.slot_write(lo, block)
            self.written[b] = 1
            for f in frags:  # free what no unwritten block needs any more
                if f in self.buf and all(self.written[x] for x in self.blocks_of(f)):
                    del self.buf[f]
        return ok

    def ack_bytes(self):
        """§6.2: cum, then a SACK bitmap of fragments cum+1.. as long as needed."""
        bits = bytearray(32)
        last = -1
        for k in range(256):
            i = self.cum + 1 + k
            if i >= self.total:
                break
            if self.held[i]:
                bits[k // 8] |= 1 << (k % 8)
                last = k
        n = last // 8 + 1
        return b"\x12" + self.tag_bytes + self.cum.to_bytes(3, "little") + bytes([n]) + bits[:n]


class Device:
    def __init__(self, a):
        self.a = a
        self.dir = a.state_dir
        os.makedirs(self.dir, exist_ok=True)
        self.st = self.load_state()
        self.xfer = None
        self.counts = {}
        self.rng = random.Random(a.seed)
        self.pub = serialization.load_pem_public_key(open(a.publisher_key, "rb").read())
        self.last_progress = 0.0
        self.stopping = False
        self.conn = False
        self.reexec = False
        self.unacked_status = set()  # QoS 1 statuses without their PUBACK yet

    # -- persistence (§4.5, §8 step 7) --
    def path(self, name):
        return os.path.join(self.dir, name)

    def load_state(self):
        try:
            with open(self.path("state.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            v = self.a.firmware_version
            return {"version": v, "highest": v, "security_floor": 0, "time_floor": 0}

    def save_state(self):
        tmp = self.path("state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.st, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path("state.json"))
        fd = os.open(self.dir, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def inactive_slot(self):
        active = os.path.realpath(self.path("active")) if os.path.islink(self.path("active")) else ""
        return self.path("slot-b" if active.endswith("slot-a") else "slot-a")

    def _rw(self, name, create=False):
        return os.open(self.path(name), os.O_RDWR | (os.O_CREAT if create else 0), 0o644)

    def table_write(self, off, data):
        os.pwrite(self.table_fd, data, off)

    def table_read(self, n):
        return os.pread(self.table_fd, n, 0)

    def table_truncate(self):
        os.ftruncate(self.table_fd, 0)

    def slot_write(self, off, data):
        os.pwrite(self.slot_fd, data, off)

    def checkpoint(self, force=False):
        x = self.xfer
        if x is None or not (force or x.cum - x.last_ckpt >= self.a.checkpoint_every):
            return
        h, x.last_ckpt = x.checkpoint_value(), x.cum
        if h == self.st["dl"]["held"]:
            return  # nothing new to make durable (cum moved over buffered fragments only)
        os.fdatasync(self.table_fd)  # data durable before the record that names it
        os.fdatasync(self.slot_fd)
        self.st["dl"]["held"] = h
        self.save_state()

    # -- MQTT --
    def topic(self, leaf):
        return "ota/dev/%s/%s" % (self.a.id, leaf)

    def status(self, state, **extra):
        """§5.3, retained, QoS 1; members in the order of the spec."""
        s = {"device": self.a.id, "product": self.a.product, "version": self.st["version"]}
        if self.a.group:
            s["group"] = self.a.group
        s["state"] = state
        s.update(extra)
        s["ts"] = now_ms()
        info = self.mq.publish(self.topic("status"), json.dumps(s, separators=(",", ":")), 1, True)
        self.unacked_status.add(info.mid)
        log("status", state, extra.get("release", ""), extra.get("error", ""))

    def progress(self, force=False):
        x = self.xfer
        if force or time.monotonic() - self.last_progress >= 1.0:  # §5.3: at most 1/s
            self.last_progress = time.monotonic()
            self.status("downloading", release=x.release, progress=round(x.cum / x.total, 6))

    def send_ack(self):
        x = self.xfer
        self.mq.publish(self.topic("ack"), x.ack_bytes(), 0)
        x.unacked, x.oldest_unacked = 0, None

    def connect(self):
        a = self.a
        self.mq = mqtt.Client(client_id=a.id, clean_session=True, protocol=mqtt.MQTTv311)
        self.mq.tls_set(ca_certs=a.ca_file, certfile=a.cert_file, keyfile=a.key_file)
        will = {"device": a.id, "product": a.product, "version": self.st["version"]}
        if a.group:
            will["group"] = a.group
        will["state"] = "offline"  # §3: the will names the version this process runs
        self.mq.will_set(self.topic("status"), json.dumps(will, separators=(",", ":")), 1, True)
        self.mq.on_connect = self.on_connect
        self.mq.on_message = self.on_message
        self.mq.on_disconnect = lambda c, u, rc: setattr(self, "conn", False)
        self.mq.on_publish = lambda c, u, mid: self.unacked_status.discard(mid)
        self.mq.connect(a.broker_host, a.broker_port, keepalive=30)

    def on_connect(self, c, u, flags, rc):
        if rc != 0:
            log("connect refused rc=%d" % rc)
            return
        self.conn = True
        c.subscribe(self.topic("offer"), 1)  # §3: subscribe again after every connect
        c.subscribe(self.topic("frag"), 0)
        x = self.xfer
        if x is not None:
            if x.offer.get("group"):
                c.subscribe("ota/grp/%s/frag" % x.release, 0)
            self.progress(force=True)  # §7: a partial download reports downloading,
            self.send_ack()  # then an ack naming what it holds
            x.reconnected(time.monotonic())
        elif "committed" in self.st:  # §8 step 11 (after a restart: with the timings once)
            tm = {"timings": self.st.pop("timings")} if "timings" in self.st else {}
            self.status("committed", release=self.st["committed"], **tm)
            if tm:
                self.save_state()
        else:
            self.status("idle")

    def on_message(self, c, u, msg):
        t = msg.topic
        try:
            if t == self.topic("offer"):
                self.on_offer(msg.payload)
            elif t == self.topic("frag") or (t.startswith("ota/grp/") and t.endswith("/frag")):
                self.on_frag(msg.payload, t.startswith("ota/grp/"))
        except Refused as e:
            self.fail(str(e))

    # -- offers (§5.2, §8 steps 5-6) --
    def on_offer(self, raw):
        try:
            o = strict_json(raw, 256 * 1024)
            rel = hexdigits(o, "release", 16)
            if rel != rel.lower():
                raise ValueError("release is not lower-case")
            man_raw = get(o, "manifest", str).encode("utf-8")
            sig = bytes.fromhex(hexdigits(o, "sig", 128))
            get(o, "fragment_size", int, lo=160, hi=65536)
            get(o, "fragments", int, lo=1, hi=2**24)
            get(o, "window", int, lo=1, hi=256)
            o.setdefault("table_fragments", 0)
            get(o, "table_fragments", int, lo=0, hi=2**24 - 1)
            get(o, "group", bool, required=False)
        except ValueError as e:  # §10: a malformed message is dropped and counted
            self.count("bad_offer")
            log("offer dropped: malformed:", e)
            return
        if rel == self.st.get("committed"):  # §8 step 5: before any check
            self.status("committed", release=rel)
            return
        x = self.xfer
        geometry = ("fragment_size", "fragments", "table_fragments")
        if x is not None and x.release == rel:
            if all(o[k] == x.offer[k] for k in geometry):
                self.accept_again(o)  # §8 step 5: answered like a fresh accept (resume)
                return
            log("offer of %s with another geometry: starting the download again" % rel)
            self.end_transfer()
        try:
            man = self.check_offer(o, man_raw, sig)
        except Ignored as e:
            log("offer ignored:", e)
            return
        except Refused as e:
            self.status("failed", release=rel, error=str(e)[:255])
            return
        self.start(o, man)

    def check_offer(self, o, man_raw, sig):
        if "keyset" in o:
            log("offer carries a key set; this device has no root keys: using its publisher key")
        try:
            man = parse_manifest(man_raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise Refused("manifest: %s" % e)
        try:
            self.pub.verify(sig, man_raw)
        except InvalidSignature:
            raise Refused("signature does not verify with the configured publisher key")
        if hashlib.sha256(man_raw).hexdigest()[:16] != o["release"]:
            raise Refused("release is not the id of the manifest")
        if man["product"] != self.a.product:
            raise Refused("product %s is not %s" % (man["product"], self.a.product))
        self.check_rollback(man)
        if man["size"] > self.a.max_size:
            raise Refused("size %d exceeds the slot (%d)" % (man["size"], self.a.max_size))
        if man["size"] > shutil.disk_usage(self.dir).free:
            raise Refused("size %d exceeds the free storage" % man["size"])
        F = o["fragment_size"]
        if o["fragments"] != -(-man["size"] // F):
            raise Refused("fragments is not ceil(size / fragment_size)")
        if o["table_fragments"] != -(-32 * -(-man["size"] // man["block_size"]) // F):
            raise Refused("table_fragments is not ceil(32 x blocks / fragment_size)")
        if o["table_fragments"] + o["fragments"] > 2**24:
            raise Refused("more than 2^24 fragments")
        if "enc" in o:
            self.unwrap(o)
        return man

    def check_rollback(self, man):
        """§4.5 and §4.6: refusals here are ignored, not reported."""
        st, v = self.st, vtuple(man["version"])
        now_s = max(time.time(), st["time_floor"])
        if "expires" in man and now_s >= man["expires"]:
            raise Ignored("package expired at %d" % man["expires"])
        if man.get("security_version", 0) < st["security_floor"]:
            raise Ignored("security_version below the floor %d" % st["security_floor"])
        run, high = vtuple(st["version"]), vtuple(st["highest"])
        if man.get("downgrade"):
            if not (v < run and high <= vtuple(man["replaces"])):
                raise Ignored("downgrade to %s not allowed" % man["version"])
        elif not (v > run and v > high):
            raise Ignored("version %s is not newer than %s" % (man["version"], st["version"]))

    def unwrap(self, o):
        """§6.3 key unwrapping with the private key of our own certificate."""
        try:
            enc = o["enc"]
            if enc.get("alg") != ENC_ALG:
                raise Refused("unknown encryption algorithm %s" % enc.get("alg"))
            E = bytes.fromhex(hexdigits(enc, "epk", 130))
            wrapped = bytes.fromhex(hexdigits(enc, "key", 96))
            d = serialization.load_pem_private_key(open(self.a.key_file, "rb").read(), None)
            Q = d.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
            z = d.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), E))
            info = b"ota key wrap v1\0" + o["release"].encode() + b"\0" + self.a.id.encode()
            kek = HKDF(hashes.SHA256(), 32, E + Q, info).derive(z)
            o["_ck"] = AESGCM(kek).decrypt(b"\0" * 12, wrapped, None)
        except (ValueError, TypeError, AttributeError, InvalidTag) as e:
            raise Refused("content key could not be unwrapped: %s" % (e or "tag mismatch"))

    def start(self, o, man):
        if self.xfer is not None:  # §8: a newer valid release replaces the download
            log("replacing the download of", self.xfer.release)
            self.end_transfer()
        slot = self.inactive_slot()
        os.makedirs(slot, exist_ok=True)
        for name in ("table.bin", os.path.join(slot, "payload")):
            if os.path.exists(self.path(name)):
                os.unlink(self.path(name))
        ck = o.pop("_ck", None)
        self.st["dl"] = {"offer": o, "slot": slot, "accepted_ms": now_ms(), "held": 0}
        self.save_state()
        self.open_transfer(o, man, ck)
        log("accepted release=%s version=%s %s" % (o["release"], man["version"],
                                                   "encrypted" if ck else "in clear"))
        self.accept_again(o)

    def open_transfer(self, o, man, ck):
        self.xfer = Transfer(self, o, man)
        self.xfer.aead = AESGCM(ck) if ck else None
        self.table_fd = self._rw("table.bin", True)
        self.slot_fd = self._rw(os.path.join(self.st["dl"]["slot"], "payload"), True)

    def accept_again(self, o):
        """§8 step 6 / §5.2: group SUBSCRIBE before the ack, no wait for the SUBACK."""
        x = self.xfer
        if "enc" in o:
            self.unwrap(o)
            x.aead = AESGCM(o.pop("_ck"))
        x.offer["group"] = o.get("group", False)
        if x.offer["group"]:
            self.mq.subscribe("ota/grp/%s/frag" % x.release, 0)
        self.progress(force=True)
        self.send_ack()

    def resume(self):
        """§8 step 7: after a restart, check what the checkpoint names; else start from 0."""
        dl = self.st["dl"]
        o = dl["offer"]
        man = parse_manifest(o["manifest"].encode())
        ck = None
        if "enc" in o:  # §6.3: epk and key kept with the checkpoint, CK never stored
            self.unwrap(o)
            ck = o.pop("_ck")
        self.open_transfer(o, man, ck)
        x, h = self.xfer, dl["held"]
        w = x.blocks_named(h)
        ok = True
        if h >= x.T and x.T > 0:
            tbl = self.table_read(x.table_len)
            ok = hashlib.sha256(tbl).hexdigest() == man["blocks"].lower()
            x.table = tbl if ok else None
            for b in range(w if ok else 0):
                lo, hi = b * x.BS, min(x.size, (b + 1) * x.BS)
                if hashlib.sha256(os.pread(self.slot_fd, hi - lo, lo)).digest() != tbl[32 * b : 32 * b + 32]:
                    ok = False
                    break
                x.written[b] = 1
        if not ok:
            log("checkpoint does not match the table file or the slot: starting from 0")
            x.written, x.table, h = bytearray(x.nblocks), None, 0
        for i in range(h):
            x.held[i] = 1
        x.cum = x.last_ckpt = h
        log("resuming release=%s from fragment %d of %d" % (x.release, h, x.total))

    # -- fragments (§6.1, §9) --
    def on_frag(self, p, from_group):
        if self.a.drop_percent and self.rng.random() * 100 < self.a.drop_percent:
            self.count("dropped_test")  # simulated loss on the link
            return
        x = self.xfer
        if x is None or len(p) < 9 or p[0] != 0x11 or p[1:5] != x.tag_bytes:
            self.count("stale")  # §10: wrong state, type or release: dropped and counted
            return
        kind, ack = x.on_fragment(int.from_bytes(p[5:8], "little"), p[8:], from_group,
                                  time.monotonic())
        self.count(kind)
        if ack:
            self.send_ack()
        self.checkpoint(force=x.cum == x.total)
        if x.cum == x.total:
            self.complete()
        elif kind == "new":
            self.progress()

    def timers(self):
        x = self.xfer
        if x is not None and self.conn and x.tick(time.monotonic()):
            self.send_ack()

    def end_transfer(self):
        x, self.xfer = self.xfer, None
        if x.offer.get("group"):
            self.mq.unsubscribe("ota/grp/%s/frag" % x.release)
        os.close(self.table_fd)
        os.close(self.slot_fd)
        self.st.pop("dl", None)
        return x

    def fail(self, why):
        x = self.end_transfer() if self.xfer else None
        self.save_state()
        self.status("failed", **({"release": x.release} if x else {}), error=why[:255])

    # -- verify, install, restart, commit (§8 steps 8-11) --
    def complete(self):
        x, dl = self.xfer, self.st["dl"]
        tm = {"download_ms": now_ms() - dl["accepted_ms"]}
        self.status("verifying", release=x.release, timings=tm)
        t0 = time.monotonic()
        h = hashlib.sha256()
        with open(os.path.join(dl["slot"], "payload"), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        tm["verify_ms"] = int((time.monotonic() - t0) * 1000)
        if h.hexdigest() != x.man["sha256"].lower():
            raise Refused("payload SHA-256 does not match the signed manifest")
        self.status("installing", release=x.release, timings=tm)
        t0 = time.monotonic()
        slot = dl["slot"]
        self.end_transfer()
        tmp = self.path("active.tmp")  # the A/B switch: one atomic rename of a symlink
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.basename(slot), tmp)
        os.replace(tmp, self.path("active"))
        tm["install_ms"] = int((time.monotonic() - t0) * 1000)
        self.status("restarting", release=x.release, timings=tm)
        self.st["pending"] = {"release": x.release, "version": x.man["version"], "man": x.man,
                              "timings": tm, "accepted_ms": dl["accepted_ms"],
                              "restart_ms": now_ms()}
        self.save_state()
        self.reexec = True  # out of the MQTT callback first

    def restart(self):
        # Wait for the PUBACKs first: closing a socket with unread data (PUBACKs) resets the
        # connection, the broker may lose what it had not yet read, and sends the will.
        for _ in range(100):
            if not self.unacked_status or self.mq.loop(0.02) != mqtt.MQTT_ERR_SUCCESS:
                break
        self.mq.disconnect()  # clean: the broker discards the will naming the old version
        for _ in range(40):
            if self.mq.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
        log("stats", " ".join("%s=%d" % kv for kv in sorted(self.counts.items())))
        log("restarting into", self.st["pending"]["version"])
        os.execv(sys.executable, [sys.executable] + sys.argv)

    def commit_pending(self):
        """The new version came up: health check (this process runs), then commit."""
        p = self.st.pop("pending")
        man, tm, st = p["man"], p["timings"], self.st
        tm["restart_ms"] = max(0, now_ms() - p["restart_ms"])
        tm["total_ms"] = now_ms() - p["accepted_ms"]
        st["version"] = man["version"]
        st["highest"] = max(st["highest"], man["version"], key=vtuple)  # §4.5: only goes up
        st["security_floor"] = max(st["security_floor"], man.get("security_version", 0))
        st["time_floor"] = max(st["time_floor"], man["created"])
        st["committed"], st["timings"] = p["release"], tm
        for name in ("table.bin",):
            if os.path.exists(self.path(name)):
                os.unlink(self.path(name))
        self.save_state()
        log("committed", man["version"], tm)

    def count(self, k):
        self.counts[k] = self.counts.get(k, 0) + 1

    def run(self):
        if "pending" in self.st:
            self.commit_pending()
        elif "dl" in self.st:
            try:
                self.resume()
            except (Refused, ValueError) as e:
                log("the stored download cannot be resumed (%s): dropped" % e)
                self.xfer = None
                self.st.pop("dl")
                self.save_state()
        self.connect()
        while not self.stopping:
            x = self.xfer
            wait = 0.005 if x and x.oldest_unacked else 0.1
            rc = self.mq.loop(wait)
            if rc != mqtt.MQTT_ERR_SUCCESS and not self.stopping:
                self.conn = False
                time.sleep(0.5)
                try:
                    self.mq.reconnect()
                except OSError as e:
                    log("reconnect failed:", e)
                continue
            self.timers()
            if self.reexec:
                self.restart()
        self.checkpoint(force=True)
        self.mq.disconnect()
        log("stats", " ".join("%s=%d" % kv for kv in sorted(self.counts.items())))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for opt in ("id", "product", "firmware-version", "broker-host", "ca-file", "cert-file",
                "key-file", "publisher-key", "state-dir"):
        p.add_argument("--" + opt, required=True)
    p.add_argument("--broker-port", type=int, required=True)
    p.add_argument("--group", default=None)
    p.add_argument("--drop-percent", type=float, default=0.0, help="test: drop fragments")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=64)
    p.add_argument("--max-size", type=int, default=64 << 20)
    a = p.parse_args()
    for v, what in ((a.id, "id"), (a.product, "product")) + (((a.group, "group"),) if a.group else ()):
        if not IDENT.match(v):
            p.error("invalid %s %r" % (what, v))
    vtuple(a.firmware_version)
    dev = Device(a)
    signal.signal(signal.SIGTERM, lambda s, f: setattr(dev, "stopping", True))
    signal.signal(signal.SIGINT, lambda s, f: setattr(dev, "stopping", True))
    dev.run()


if __name__ == "__main__":
    main()
