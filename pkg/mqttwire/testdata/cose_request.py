#!/usr/bin/env python3
"""Build an Embark MQTT request with an encoder independent of the Go code.

The request is a COSE_Sign1 (RFC 9052, tag 18):

    protected header  {1: alg, 3: "application/embark-request+cbor", 33: x5chain}
    unprotected       {}
    payload           {1: op, 2: device, 3: nonce, 4: csr, 6: applied}
    signature         over ["Signature1", protected, b"", payload]

x5chain (RFC 9360) is the certificate chain, leaf first: an array of DER
certificates, or a single byte string when the chain has one certificate.
ECDSA signatures are raw r||s (32+32 bytes for ES256), not DER.

Usage:

    python3 cose_request.py --key device.key.pem --chain chain.pem \\
        --device urn:dev:embark:acme:SN-0001 --nonce 0a1b2c... \\
        --csr device.csr.der --op enroll [--applied N] [--out FILE]

    --key      signing key, PKCS#8 PEM: ECDSA P-256 (ES256), P-384 (ES384)
               or Ed25519 (EdDSA)
    --chain    PEM certificates, leaf first, the root left out
    --device   device identifier (URN), payload key 2
    --nonce    nonce issued by Embark, hex, payload key 3
    --csr      DER PKCS#10 request, payload key 4 (required for enroll, renew)
    --op       enroll, renew or state, payload key 1
    --applied  command generation applied (state), payload key 6
    --out      write the message in binary to FILE; without it, print it
               in hex on stdout

Needs python3-cbor2 and python3-cryptography (Debian packages).
"""

import argparse
import base64
import binascii
import re
import sys

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

TYPE_REQUEST = "application/embark-request+cbor"

ALG_ES256 = -7
ALG_ES384 = -35
ALG_EDDSA = -8

PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S
)


def read_chain(path):
    """Returns the DER certificates of a PEM file, in file order."""
    with open(path, "rb") as f:
        pem = f.read()
    ders = [base64.b64decode(b"".join(m.group(1).split())) for m in PEM_CERT.finditer(pem)]
    if not ders:
        raise SystemExit("cose_request: no certificate in %s" % path)
    for der in ders:
        x509.load_der_x509_certificate(der)  # refuse what is not a certificate
    return ders


def algorithm(key):
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return ALG_ES256, hashes.SHA256(), 32
        if isinstance(key.curve, ec.SECP384R1):
            return ALG_ES384, hashes.SHA384(), 48
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return ALG_EDDSA, None, 0
    raise SystemExit("cose_request: unsupported key %s" % type(key).__name__)


def sign1(key, protected, payload):
    """Signs the Sig_structure of a COSE_Sign1 and returns the COSE signature."""
    alg, digest, size = algorithm(key)
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    if alg == ALG_EDDSA:
        return key.sign(tbs)
    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(digest)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def build(key, chain, op, device, nonce, csr=None, applied=0):
    alg, _, _ = algorithm(key)
    x5chain = chain[0] if len(chain) == 1 else list(chain)
    protected = cbor2.dumps({1: alg, 3: TYPE_REQUEST, 33: x5chain}, canonical=True)
    body = {1: op, 2: device, 3: nonce}
    if csr:
        body[4] = csr
    if applied:
        body[6] = applied
    payload = cbor2.dumps(body, canonical=True)
    signature = sign1(key, protected, payload)
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))


def main(argv):
    ap = argparse.ArgumentParser(description="Build a signed Embark MQTT request (COSE_Sign1).")
    ap.add_argument("--key", required=True, help="signing key, PKCS#8 PEM")
    ap.add_argument("--chain", required=True, help="PEM certificates, leaf first")
    ap.add_argument("--device", required=True, help="device identifier (URN)")
    ap.add_argument("--nonce", required=True, help="nonce, hex")
    ap.add_argument("--csr", help="DER PKCS#10 request")
    ap.add_argument("--op", required=True, choices=["enroll", "renew", "state"])
    ap.add_argument("--applied", type=int, default=0, help="command generation applied")
    ap.add_argument("--out", help="write the binary message to this file instead of hex to stdout")
    args = ap.parse_args(argv)

    with open(args.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    chain = read_chain(args.chain)
    try:
        nonce = binascii.unhexlify(args.nonce)
    except binascii.Error as e:
        raise SystemExit("cose_request: --nonce: %s" % e)
    csr = None
    if args.csr:
        with open(args.csr, "rb") as f:
            csr = f.read()
    if args.op in ("enroll", "renew") and not csr:
        raise SystemExit("cose_request: --op %s needs --csr" % args.op)

    msg = build(key, chain, args.op, args.device, nonce, csr, args.applied)
    if args.out:
        with open(args.out, "wb") as f:
            f.write(msg)
    else:
        sys.stdout.write(msg.hex() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
