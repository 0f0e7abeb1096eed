"""Independent check of Embark's hybrid signature encoding.

Reads a directory written by the Go test (pub, priv, msg, ctx, sig), verifies
sig with python3-cryptography's ML-DSA-65 and ECDSA following the composite
ML-DSA construction, then writes its own signature of msg to pysig so that the
Go side can verify it. Exit status 77 means python3-cryptography lacks ML-DSA.
"""
import hashlib
import os
import sys

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, mldsa
except ImportError:
    sys.exit(77)

PREFIX = b"CompositeAlgorithmSignatures2025"
LABEL = b"COMPSIG-MLDSA65-ECDSA-P256-SHA512"
ML_PK, ML_SIG, SEED = 1952, 3309, 32


def read(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


def representative(msg, ctx):
    return PREFIX + LABEL + bytes([len(ctx)]) + ctx + hashlib.sha512(msg).digest()


def main(d):
    pub, priv = read(d, "pub"), read(d, "priv")
    msg, ctx, sig = read(d, "msg"), read(d, "ctx"), read(d, "sig")
    mp = representative(msg, ctx)

    ml_pub = mldsa.MLDSA65PublicKey.from_public_bytes(pub[:ML_PK])
    ec_pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub[ML_PK:])
    ml_pub.verify(sig[:ML_SIG], mp, LABEL)
    ec_pub.verify(sig[ML_SIG:], mp, ec.ECDSA(hashes.SHA256()))

    ml_priv = mldsa.MLDSA65PrivateKey.from_seed_bytes(priv[:SEED])
    ec_priv = serialization.load_der_private_key(priv[SEED:], password=None)
    if ml_priv.public_key().public_bytes_raw() != pub[:ML_PK]:
        sys.exit("ML-DSA seed does not give the public key")
    out = ml_priv.sign(mp, LABEL) + ec_priv.sign(mp, ec.ECDSA(hashes.SHA256()))
    with open(os.path.join(d, "pysig"), "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main(sys.argv[1])
