#!/usr/bin/python3
"""assembler_check.py: the peer device's block assembler (PROTOCOL.md 8 step 7) on random
geometries (fragments that straddle blocks or carry several), random order and corrupted
fragments, with a fixed seed. Each transfer must end with the exact payload in the slot,
every corrupted fragment refused by a block or table check and fetched again, and the
checkpoint naming only blocks in the slot. Prints TAP; exit status 1 on a failure.
"""
import hashlib
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_device  # noqa: E402
from peer_device import Transfer  # noqa: E402

peer_device.log = lambda *a: None  # the failed checks are expected here


class Files:
    """The device's table file and slot, in memory."""

    def __init__(self):
        self.table, self.slot = bytearray(), bytearray()

    @staticmethod
    def _put(buf, off, data):
        buf.extend(b"\0" * max(0, off + len(data) - len(buf)))
        buf[off : off + len(data)] = data

    def table_write(self, off, data):
        self._put(self.table, off, data)

    def table_read(self, n):
        return bytes(self.table[:n])

    def table_truncate(self):
        del self.table[:]

    def slot_write(self, off, data):
        self._put(self.slot, off, data)


def one(rng):
    F = rng.choice([160, 333, 1000, 4096, 5000, 16384])
    BS = rng.choice([512, 1024, 4096, 8192])
    payload = rng.randbytes(rng.randint(1, 60000))
    blocks = [payload[i : i + BS] for i in range(0, len(payload), BS)]
    table = b"".join(hashlib.sha256(b).digest() for b in blocks)
    T, N = -(-len(table) // F), -(-len(payload) // F)
    offer = {"release": "00" * 8, "fragment_size": F, "window": 32, "fragments": N,
             "table_fragments": T}
    man = {"size": len(payload), "block_size": BS, "blocks": hashlib.sha256(table).hexdigest()}
    files = Files()
    x = Transfer(files, offer, man)
    data = [table[i * F : (i + 1) * F] for i in range(T)]
    data += [payload[i * F : (i + 1) * F] for i in range(N)]
    corrupted, rounds, spoilt = 0, 0, set()
    while x.cum < x.total:
        rounds += 1
        if rounds > 50:
            return "no progress after 50 rounds (cum %d of %d)" % (x.cum, x.total)
        todo = [i for i in range(x.total) if not x.held[i]]
        rng.shuffle(todo)
        for i in todo:
            d = data[i]
            if i not in spoilt and rng.random() < 0.05:  # once per index: one byte changed
                spoilt.add(i)
                k = rng.randrange(len(d))
                d = d[:k] + bytes([d[k] ^ 0x5A]) + d[k + 1 :]
                corrupted += 1
            x.on_fragment(i, d, False, 0.0)
            h = x.checkpoint_value()
            named = x.blocks_named(h)
            if any(not x.written[b] for b in range(named)):
                return "checkpoint %d names a block not in the slot" % h
    if bytes(files.slot[: len(payload)]) != payload:
        return "slot differs from the payload"
    if corrupted and x.failed_checks == 0:
        return "%d corrupted fragments, no failed check" % corrupted
    return None


def main():
    rng = random.Random(14)
    runs = 300
    print("1..1")
    errors = [e for e in (one(rng) for _ in range(runs)) if e]
    print(("ok" if not errors else "not ok"), 1,
          "%d random transfers end with the exact payload" % runs)
    for e in errors[:10]:
        print("#", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
