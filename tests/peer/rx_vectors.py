#!/usr/bin/python3
"""rx_vectors.py: run the receiver vectors (tests/vectors/rx/*.rx, format in
tests/vectors/README.md) against peer_device.py's receiver: the second implementation
must make the same decisions as the C one. Prints TAP; exit status 1 on a mismatch.

    rx_vectors.py [VECTOR_DIR]
"""
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_device import Transfer  # noqa: E402


class VectorTransfer(Transfer):
    """The receiver with the block assembler replaced by the vector's instructions."""

    refuse, unhold = False, None

    def take(self, idx, data):
        if self.refuse:
            return False, False
        self.held[idx] = 1
        if self.unhold:
            self.drop(range(self.unhold[0], self.unhold[1] + 1))
            return True, True
        return True, False


def setup(line):
    kv = dict(w.split("=") for w in line.split()[1:])
    n, start = int(kv["n"]), int(kv.get("start", 0)) / 1000
    offer = {"release": "00" * 8, "fragment_size": 160, "window": int(kv["window"]),
             "fragments": n, "table_fragments": 0}
    x = VectorTransfer(None, offer, {"size": 160 * n, "block_size": 512})
    x.quiet_until = start + 2.0
    for i in range(int(kv.get("held", 0))):
        x.held[i] = 1
    x.cum = x.last_ckpt = int(kv.get("held", 0))
    return x, int(kv["checkpoint"])


def ack_text(x):
    above = [str(i) for i in range(x.cum + 1, min(x.total, x.cum + 257)) if x.held[i]]
    return "ack=%d" % x.cum + ("+" + ",".join(above) if above else "")


def step(x, every, line):
    """One event; returns the outcome in the vector's own words."""
    event, _, _ = line.partition("->")
    w = event.split()
    now = int(w[0]) / 1000
    if w[1] == "tick":
        if x.tick(now):
            out = ack_text(x)
            x.unacked, x.oldest_unacked = 0, None
            return out
        return "none"
    if w[1] == "link":  # the connection is back (the ack it sends is section 7's)
        x.reconnected(now)
        return "none"
    idx = int(w[2])
    x.refuse = "refuse" in w
    x.unhold = next((tuple(map(int, a[7:].split("-"))) for a in w if a.startswith("unhold=")), None)
    kind, ack = x.on_fragment(idx, b"\0" * (x.data_len(idx) if idx < x.total else 1),
                              "group" in w, now)
    out = [kind]
    if x.cum == x.total:
        return kind + " complete"  # the final ack and checkpoint belong to step 8
    if ack:
        out.append(ack_text(x))
        x.unacked, x.oldest_unacked = 0, None
    if x.cum - x.last_ckpt >= every:
        out.append("checkpoint")
        x.last_ckpt = x.cum
    return " ".join(out)


def main():
    vdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "vectors", "rx")
    files = sorted(glob.glob(os.path.join(vdir, "*.rx")))
    print("1..%d" % len(files))
    bad = 0
    for n, path in enumerate(files, 1):
        x, every, errs = None, 0, []
        for ln, raw in enumerate(open(path), 1):
            line = raw.split("#")[0].strip()
            if not line:
                continue
            if x is None:
                x, every = setup(line)
                continue
            want = " ".join(line.partition("->")[2].split())
            got = step(x, every, line)
            if got != want:
                errs.append("%s:%d: want '%s', got '%s'" % (os.path.basename(path), ln, want, got))
        print(("ok" if not errs else "not ok"), n, os.path.basename(path))
        for e in errs:
            print("#", e)
        bad += bool(errs)
    return 1 if bad or not files else 0


if __name__ == "__main__":
    sys.exit(main())
