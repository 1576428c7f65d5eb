#!/usr/bin/env python3
"""Known-answer vectors for PROTOCOL.md section 6.3, computed independently of proto/enc.c
(Python 'cryptography'); tests/unit/test_proto_enc.c holds the output. Run: python3 this."""
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PT = serialization.PublicFormat.UncompressedPoint
ENC = serialization.Encoding.X962

dev = ec.derive_private_key(int.from_bytes(b"\x11" * 32, "big"), ec.SECP256R1())
eph = ec.derive_private_key(int.from_bytes(b"\x22" * 32, "big"), ec.SECP256R1())
dev_pub = dev.public_key().public_bytes(ENC, PT)
epk = eph.public_key().public_bytes(ENC, PT)
ckey = bytes(range(32))
release, device = b"eb66cecd2c30a94e", b"dev-001"

z = eph.exchange(ec.ECDH(), dev.public_key())
info = b"ota key wrap v1\x00" + release + b"\x00" + device
kek = HKDF(hashes.SHA256(), 32, salt=epk + dev_pub, info=info).derive(z)
wrapped = AESGCM(kek).encrypt(b"\x00" * 12, ckey, None)
print("dev_pub ", dev_pub.hex())
print("epk     ", epk.hex())
print("wrapped ", wrapped.hex())

# Fragment 5 of release tag eb 66 ce cd, fragment_size 160, data bytes 0..159.
hdr = bytes.fromhex("11eb66cecd050000")
nonce = hdr[1:8] + (160).to_bytes(4, "little") + b"\x00"
data = bytes(range(160))
sealed = AESGCM(ckey).encrypt(nonce, data, hdr)
print("nonce   ", nonce.hex())
print("sealed  ", sealed.hex())
