#!/usr/bin/env python3
"""Check an Embark response or command with a decoder independent of the Go code.

Decodes a COSE_Sign1 (RFC 9052, tag 18) signed by Embark, verifies its
signature with the key of the first certificate of its x5chain (protected
header label 33), checks the content type, and prints the payload as JSON:
map keys as strings, byte strings as hex.

Usage:

    python3 cose_response.py --in msg.cbor [--type response|command] \\
        [--root root.pem [--at 2030-06-01T12:00:00Z]]

    --in    the message, binary; "-" reads hex from stdin
    --type  the kind expected (default: response)
    --root  also check that the x5chain leads to this root certificate,
            link by link, and that the leaf carries the URI SAN
            urn:embark:responder
    --at    with --root, also check every certificate's validity at this
            time (RFC 3339, UTC)

Exits 1 with the reason on stderr when any check fails.
Needs python3-cbor2 and python3-cryptography (Debian packages).
"""

import argparse
import datetime
import json
import sys

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

TYPES = {
    "response": "application/embark-response+cbor",
    "command": "application/embark-command+cbor",
}
RESPONDER_URI = "urn:embark:responder"

ALG_ES256 = -7
ALG_ES384 = -35
ALG_EDDSA = -8


class Refused(Exception):
    pass


def verify_cose(pub, alg, tbs, sig):
    if isinstance(pub, ec.EllipticCurvePublicKey):
        want = {"secp256r1": (ALG_ES256, hashes.SHA256(), 32), "secp384r1": (ALG_ES384, hashes.SHA384(), 48)}
        if pub.curve.name not in want or want[pub.curve.name][0] != alg:
            raise Refused("alg %s does not fit a %s key" % (alg, pub.curve.name))
        _, digest, size = want[pub.curve.name]
        if len(sig) != 2 * size:
            raise Refused("signature of %d bytes" % len(sig))
        der = encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big"))
        pub.verify(der, tbs, ec.ECDSA(digest))
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        if alg != ALG_EDDSA:
            raise Refused("alg %s does not fit an Ed25519 key" % alg)
        pub.verify(sig, tbs)
    else:
        raise Refused("unsupported key %s" % type(pub).__name__)


def verify_issued(cert, issuer):
    """Checks that issuer signed cert (ECDSA or Ed25519 issuers)."""
    if cert.issuer != issuer.subject:
        raise Refused("%s is not issued by %s" % (cert.subject.rfc4514_string(), issuer.subject.rfc4514_string()))
    pub = issuer.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes)
    else:
        raise Refused("unsupported issuer key %s" % type(pub).__name__)


def check_chain(chain, root, at):
    leaf = chain[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if RESPONDER_URI not in uris:
        raise Refused("the signer is not Embark's responder (URIs %s)" % uris)
    for cert, issuer in zip(chain, chain[1:] + [root]):
        verify_issued(cert, issuer)
    if at is not None:
        for cert in chain + [root]:
            if not (cert.not_valid_before <= at <= cert.not_valid_after):
                raise Refused("%s is not valid at %s" % (cert.subject.rfc4514_string(), at))


def jsonable(v):
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


def check(msg, ctype, root=None, at=None):
    obj = cbor2.loads(msg)
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != 18:
        raise Refused("not a tagged COSE_Sign1")
    if not isinstance(obj.value, list) or len(obj.value) != 4:
        raise Refused("COSE_Sign1 is not an array of 4")
    protected, _unprotected, payload, sig = obj.value
    if not all(isinstance(x, bytes) for x in (protected, payload, sig)):
        raise Refused("protected header, payload and signature must be byte strings")
    hdr = cbor2.loads(protected)
    if hdr.get(3) != ctype:
        raise Refused("content type %r, want %r" % (hdr.get(3), ctype))
    x5 = hdr.get(33)
    ders = [x5] if isinstance(x5, bytes) else x5
    if not isinstance(ders, list) or not ders or not all(isinstance(d, bytes) for d in ders):
        raise Refused("no x5chain in the protected header")
    chain = [x509.load_der_x509_certificate(d) for d in ders]
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    verify_cose(chain[0].public_key(), hdr.get(1), tbs, sig)
    if root is not None:
        check_chain(chain, root, at)
    return cbor2.loads(payload)


def main(argv):
    ap = argparse.ArgumentParser(description="Verify and decode an Embark response or command.")
    ap.add_argument("--in", dest="inp", required=True, help='message file (binary), or "-" for hex on stdin')
    ap.add_argument("--type", choices=sorted(TYPES), default="response")
    ap.add_argument("--root", help="root certificate, PEM")
    ap.add_argument("--at", help="check validity at this time (RFC 3339, UTC)")
    args = ap.parse_args(argv)

    if args.inp == "-":
        msg = bytes.fromhex(sys.stdin.read().strip())
    else:
        with open(args.inp, "rb") as f:
            msg = f.read()
    root = None
    if args.root:
        with open(args.root, "rb") as f:
            root = x509.load_pem_x509_certificate(f.read())
    at = None
    if args.at:
        at = datetime.datetime.strptime(args.at, "%Y-%m-%dT%H:%M:%SZ")
    try:
        payload = check(msg, TYPES[args.type], root, at)
    except (Refused, InvalidSignature, ValueError, cbor2.CBORDecodeError) as e:
        sys.stderr.write("cose_response: refused: %s\n" % (str(e) or type(e).__name__))
        return 1
    json.dump(jsonable(payload), sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
