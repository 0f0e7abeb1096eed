// Package hybridsig is Embark's one hybrid signature: ECDSA P-256 with
// SHA-256 combined with ML-DSA-65 (FIPS 204). A signature is valid only if
// both component signatures verify over the same message, so it stays secure
// as long as either algorithm does. Manifests, ownership transfer records,
// vouchers and audit checkpoints are all signed with it.
//
// The construction follows the composite ML-DSA of
// draft-ietf-lamps-pq-composite-sigs for id-MLDSA65-ECDSA-P256-SHA512:
// encodings, message representative, domain-separation label and signing
// procedure are those of the draft, so that a verifier of that draft should
// accept Embark's signatures given the raw public key. The tests check M'
// against the draft's worked example and check signatures in both directions
// against an independent implementation (python3-cryptography's ML-DSA-65
// and ECDSA) when one is installed. [Algorithm] is Embark's name for it.
//
// # Message representative
//
// Both components sign the same message representative M':
//
//	M' = Prefix || Label || len(ctx) || ctx || SHA-512(M)
//
// where
//
//   - Prefix is the 32 ASCII bytes "CompositeAlgorithmSignatures2025" ([Prefix]);
//   - Label is the 33 ASCII bytes "COMPSIG-MLDSA65-ECDSA-P256-SHA512" ([Label]);
//   - ctx is an application context string of at most 255 bytes, empty for
//     [PrivateKey.Sign] and [PublicKey.Verify], and len(ctx) is its length as
//     one byte;
//   - M is the message.
//
// [MessageRepresentative] computes M'. Hashing M first means the cost of
// signing a large manifest is one SHA-512 pass, and the ML-DSA and ECDSA
// signatures each cover 66 to 321 bytes.
//
// # Signing and verification
//
// The ML-DSA-65 component is the pure (not pre-hashed) ML-DSA.Sign of M'
// with Label as its FIPS 204 context string, hedged (randomized). The ECDSA
// component is ECDSA P-256 over SHA-256(M'), encoded as a DER
// ECDSA-Sig-Value (RFC 5480 / RFC 3279).
//
// [PublicKey.Verify] checks both components, always both, and reports which
// failed: errors.Is(err, [ErrMLDSA]) when the ML-DSA-65 component does not
// verify, errors.Is(err, [ErrECDSA]) when the ECDSA component does not, both
// when neither does. A signature that cannot be decoded is [ErrMalformed] and
// no component is evaluated.
//
// Signatures are not unique (both components are randomized, and ECDSA
// signatures are malleable): never use a signature as an identifier; hash the
// signed message instead.
//
// # Encodings
//
// Public key ([PublicKey.Bytes], [ParsePublicKey]), 2017 bytes:
//
//	ML-DSA-65 public key (1952 bytes, FIPS 204 pkEncode)
//	|| ECDSA P-256 public key (65 bytes, uncompressed SEC 1 point 0x04 || X || Y)
//
// Signature, 3317 to 3381 bytes:
//
//	ML-DSA-65 signature (3309 bytes, FIPS 204 sigEncode)
//	|| ECDSA signature (DER SEQUENCE { r INTEGER, s INTEGER }, 8 to 72 bytes)
//
// Private key ([PrivateKey.Bytes], [ParsePrivateKey]):
//
//	ML-DSA-65 seed (32 bytes, the FIPS 204 ML-DSA.KeyGen seed ξ)
//	|| ECDSA P-256 private key (DER ECPrivateKey, RFC 5915)
//
// Key identifier ([PublicKey.KeyID]): the lower-case hexadecimal SHA-256 of
// the public key encoding, 64 characters. DSSE envelopes name their signer
// with it.
//
// PEM ([MarshalPublicKeyPEM], [MarshalPrivateKeyPEM]): one block of type
// "EMBARK HYBRID PUBLIC KEY" or "EMBARK HYBRID PRIVATE KEY" whose bytes are
// the encodings above, with the header "Algorithm: ECDSA-P256-SHA256+ML-DSA-65".
// Parsers accept a block without that header, refuse one with another
// algorithm, another block type, or anything but white space after the block.
//
// # Randomness
//
// The rand arguments exist for the shape of the crypto APIs. As with
// crypto/ecdsa since Go 1.26, keys and signatures always draw from the
// system's secure random source; tests that need determinism use
// testing/cryptotest.SetGlobalRandom.
package hybridsig
