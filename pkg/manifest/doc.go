// Package manifest is the wire format of Embark's signed provenance
// manifests, shared by the server and the simulated manufacturer.
//
// A manifest ([Manifest]) lists the devices a manufacturer made: per serial
// number, the SHA-256 of the device's IDevID public key ([KeyFingerprint]),
// model, hardware revision, firmware version and digest, SBOM reference and
// digest, manufacture date and site, and the owner the device was sold to.
//
// # Envelope
//
// A manifest travels as JSON inside a DSSE envelope (in-toto's Dead Simple
// Signing Envelope, version 1):
//
//	{"payloadType": "application/vnd.embark.manifest.v1+json",
//	 "payload": "<standard base64 of the manifest JSON>",
//	 "signatures": [{"keyid": "<hybridsig KeyID>", "sig": "<standard base64>"}]}
//
// Each signature is a hybrid signature (package hybridsig, empty context) over
// the DSSE pre-authentication encoding of the payload ([PAE]):
//
//	"DSSEv1" SP len(payloadType) SP payloadType SP len(payload) SP payload
//
// where lengths are ASCII decimal byte counts and SP is one space. Binding the
// payload type keeps a manifest signature from being accepted for another
// kind of document signed with the same key. [SignEnvelope] and
// [OpenEnvelope] do the same for other payload types.
//
// # Opening
//
// [Open] accepts an envelope only if, in this order: it is at most
// [DefaultMaxSize] bytes ([ErrTooLarge]); it is strict JSON with exactly the
// fields above ([ErrMalformed]); its payload type is [PayloadType]
// ([ErrPayloadType]); at least one signature names a key the caller trusts
// ([ErrUnknownSigner]); every signature by a trusted key verifies, both halves
// ([ErrSignature], which also matches hybridsig.ErrECDSA or
// hybridsig.ErrMLDSA); the payload is strict JSON without unknown fields
// ([ErrMalformed]); and the manifest is valid ([Manifest.Validate]:
// [ErrInvalid] or [ErrDuplicate], as a [*ValidationError] naming the device
// and field). Signatures by keys the caller does not know are ignored, so a
// manufacturer can sign with an old and a new key while rotating.
//
// # Streaming
//
// A manifest of 100,000 devices is about 65 MB of envelope. [VerifyReader]
// opens one from an io.Reader without holding it: the envelope is read once,
// its payload base64-decoded into a temporary file ([WithTempDir]) as it
// streams by, whether the payload comes before or after the signatures;
// the signatures are verified over the PAE hashed from that file
// (hybridsig pre-hashes with SHA-512, see [hybridsig.PublicKey.VerifyDigest]);
// then the payload is decoded one device at a time and checked as
// [Manifest.Validate] checks it, duplicates included, remembering 64 bytes
// per device. [Stream.Entries] reads the devices again afterwards. The
// stream accepts and refuses what [Verify] does, with the same errors
// (FuzzVerifyReader checks both against each other), except that it refuses
// an envelope with more than [MaxEnvelopeOverhead] bytes besides its
// payload ([ErrTooLarge]) and a payload with two "devices" members
// ([ErrMalformed]). [OpenEnvelopeReader] is the same for other payload
// types.
//
// [Writer] is the other direction: it builds a manifest one device at a
// time in a temporary file and writes the envelope [Sign] would make.
//
// # Trust bundles
//
// A manufacturer hands an operator a [TrustBundle]: its name, the CA
// certificates that issue its IDevIDs and the hybrid public keys that sign
// its manifests. [ParseTrustBundle] checks it and returns a [Trust], whose
// [Trust.Open] opens a manifest with the bundle's keys and checks that the
// manifest is the bundle's manufacturer's.
package manifest
