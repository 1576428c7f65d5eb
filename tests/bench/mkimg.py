# tests/bench/mkimg.py OUT MIB SEED [BASE CHANGE_EVERY] (for tests/bench/delta.sh): a firmware-like image of MIB MiB: 64 KiB chunks,
# every other one text (compressible), the rest pseudo-random. With BASE: BASE with every
# CHANGE_EVERY-th chunk replaced by new pseudo-random bytes.
import random, sys
out, mib, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = random.Random(seed)
C = 65536
if len(sys.argv) > 4:
    base = bytearray(open(sys.argv[4], 'rb').read())
    every = int(sys.argv[5])
    for i in range(0, len(base) // C, every):
        base[i * C:(i + 1) * C] = r.randbytes(C)
    open(out, 'wb').write(base)
    sys.exit(0)
words = [b'sensor', b'reading', b'ota', b'firmware', b'block', b'table', b'verify', b'0x%04x']
buf = bytearray()
for i in range(mib * 1024 * 1024 // C):
    if i % 2:
        buf += r.randbytes(C)
    else:
        t = bytearray()
        while len(t) < C:
            t += b' '.join(r.choice(words[:7]) for _ in range(12)) + b'\n'
        buf += t[:C]
open(out, 'wb').write(buf)
