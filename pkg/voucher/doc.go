// Package voucher is the wire format of Embark's vouchers: how a
// factory-fresh device comes to trust its owner's network (BRSKI, RFC 8995,
// and constrained BRSKI, draft-ietf-anima-constrained-voucher), and how the
// registrar (Embark) and the manufacturer's voucher service (MASA) talk
// about it. Devices, Embark and the simulated MASA share it; it holds no
// policy and does no I/O.
//
// # The flow
//
//  1. The device sends a [PledgeRequest] to /.well-known/brski/rv over plain
//     CoAP (UDP, no DTLS): its serial number and a fresh nonce, signed with
//     its IDevID key, the IDevID chain in the x5chain header. The request
//     needs no secure channel: it is signed, and the answer is signed too.
//  2. Embark (the registrar) checks the IDevID and the signature, wraps the
//     request in a [RegistrarRequest] signed with its registrar certificate
//     (extended key usage id-kp-cmcRA) and sends it to the MASA over TLS 1.3
//     with X25519MLKEM768 only ([ClientTLSConfig], [ServerTLSConfig]),
//     authenticated by the same registrar certificate.
//  3. The MASA knows from its sales records who owns the device and which
//     domain CA that owner registered ([Registration], signed with the
//     owner's hybrid key). It answers with a [Voucher] pinning that CA,
//     COSE-signed with the manufacturer's voucher key, wrapped in a
//     [Countersigned] envelope that adds a hybrid (ECDSA P-256 + ML-DSA-65)
//     signature of the manufacturer's manifest key for the back-end link.
//  4. Embark checks the countersignature and passes the COSE voucher on.
//     The device verifies it with [Verify] against the voucher anchor of
//     its firmware (serial, nonce, validity, signature), pins the domain
//     CA, and opens an ordinary DTLS (or TLS) session whose server must
//     chain to that CA — a verified handshake from the first byte — to
//     enroll. A server the voucher does not vouch for fails the handshake.
//
// # Proximity
//
// RFC 8995 §5.5 has the device name, in proximity-registrar-pubk-sha256,
// the server key it saw in a provisional (unverified) TLS handshake, so
// that the MASA vouches only through the registrar the device is talking
// to. Embark's devices never open a TLS or DTLS session without verifying
// the server — there is no "accept any certificate" path on a device — so
// they ask over plain CoAP, see no server certificate, and leave that
// field out: proximity is not asserted by the device. The registrar still
// sends the MASA its own server chain (the proximity chain) and signs the
// request with its registrar certificate, and the MASA keeps every other
// check: the registrar and its server chain belong to a domain registered
// with the MASA, that domain is the one the owner in the sales records
// registered, and the pledge request is signed by the IDevID sold under
// the serial. What binds the voucher to this owner is thus the owner's
// registration with the MASA, not the device's view of the network. A
// request that does name a key (a device on another path) is still held
// to it: the registrar refuses one that names none of its servers, and
// the MASA one that does not name the proximity chain's leaf.
//
// # Vouchers
//
// A voucher is a COSE_Sign1 (RFC 9052, tag 18), content format 836
// (application/voucher-cose+cbor). Protected header: alg ES256 (-7),
// content type [TypeVoucher], kid = [KeyID] of the signing certificate (the
// first 16 bytes of the SHA-256 of its SubjectPublicKeyInfo); no x5chain:
// devices know the signer from their firmware. The payload is a CBOR map
// with the RFC 8366 leaves as small integer keys:
//
//	1  assertion           uint   0 verified, 1 logged, 2 proximity
//	2  serial-number       tstr
//	3  nonce               bstr   absent in a nonceless voucher
//	4  pinned-domain-cert  bstr   DER X.509 certificate of the owner's domain CA
//	5  created-on          uint   seconds since the Unix epoch
//	6  expires-on          uint   seconds since the Unix epoch; absent in a nonced voucher
//	7  idevid-issuer       bstr   authority key identifier of the IDevID (optional)
//
// A nonced voucher answers one request: freshness comes from the nonce and
// a device needs no clock. A nonceless voucher (for sites that onboard
// while the MASA is unreachable) carries expires-on, bounded by the MASA;
// a device accepts one only if it has a clock and allows them
// ([VerifyOptions].AllowNonceless).
//
// # Requests
//
// [PledgeRequest] (device → registrar) and [RegistrarRequest] (registrar →
// MASA) are COSE_Sign1 messages like vouchers, but carry the signer's
// certificate chain in the protected x5chain header (RFC 9360) instead of a
// kid. Their payload keys:
//
//	pledge request:     1 serial-number, 2 nonce, 3 proximity-registrar-pubk-sha256 (optional, see Proximity),
//	                    4 created-on (optional)
//	registrar request:  1 serial-number, 2 nonce (absent: nonceless), 3 the pledge request (verbatim),
//	                    4 proximity chain (the registrar's server chain, leaf first),
//	                    5 created-on, 6 requested expires-on (nonceless only)
//
// Unknown keys are refused everywhere: a decoder never skips what a signer
// may have meant.
//
// # Back-end envelopes
//
// [Registration] and [Countersigned] are CBOR arrays [body, key id,
// signature] whose signature is a hybridsig signature (package hybridsig)
// over body with a context string naming the envelope, so that neither can
// pass for the other. Status telemetry ([Status], /vs and /es) is a plain
// CBOR map, content format 60.
package voucher
