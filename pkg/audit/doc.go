// Package audit defines Embark's audit entries, their hash chain, the
// hybrid-signed checkpoints over it and the bundle format that carries a
// log for offline verification.
//
// # Hash chain
//
// Every entry carries the SHA-256 of its predecessor, so that removing,
// changing or reordering entries breaks the chain at a point [VerifyChain]
// and [Check] name. Stores persist entries through [Seal], which fills in
// the sequence number and both hashes. An entry's hash is the SHA-256 of its
// core deterministic CBOR encoding (RFC 8949 §4.2.1; the integer keys of
// [Entry]'s struct tags, times as whole epoch seconds) with the Hash field
// left out.
//
// # Checkpoints
//
// A checkpoint states that entry Seq had hash Hash when the audit key signed
// it; since each hash covers the one before, it vouches for entries 1 to Seq.
// Someone who can write the log but not sign can change entries and re-seal
// the chain after them, but not the checkpoints: the next checkpoint no
// longer matches. The signed bytes (the body) are the core deterministic
// CBOR encoding of the map
//
//	{1: Seq (uint), 2: Hash (bstr, 32 bytes), 3: Time (int, epoch seconds),
//	 4: KeyID (tstr, 64 lower-case hex digits: hybridsig KeyID of the signer)}
//
// for example a4 01 1903e8 02 5820 <hash> 03 1a6b49d200 04 7840 <key id>.
// [ParseCheckpoint] refuses any other encoding of the same values. The
// signature is a hybridsig signature (ECDSA P-256 and ML-DSA-65, both must
// verify) over the body under the application context [CheckpointContext]
// ("embark audit checkpoint v1"), so both components sign
//
//	M' = "CompositeAlgorithmSignatures2025" || "COMPSIG-MLDSA65-ECDSA-P256-SHA512"
//	     || 0x1a || "embark audit checkpoint v1" || SHA-512(body)
//
// (see package hybridsig). A [SignedCheckpoint] is stored and exported as
// the CBOR map {1: body, 2: signature}. [SignedCheckpoint.Verify] refuses a
// checkpoint whose key is not among the trusted ones ([ErrUnknownKey]) and
// one where either half fails ([ErrSignature], with hybridsig.ErrECDSA or
// hybridsig.ErrMLDSA naming the half).
//
// The signing key lives in the data directory ([InitKey]: audit.key, mode
// 0600, and audit.pub for verifiers). Package auditlog makes checkpoints
// beside a store's writers and exports its log.
//
// # Verification
//
// A [Verifier] streams a log: every entry's hash is recomputed, every link
// and sequence number checked, and every checkpoint checked (both signature
// halves under a trusted key, stored under the entry it signs, that entry's
// hash equal to the signed one). The result is a [Report], or a
// *[BrokenError] naming the first broken entry by sequence number and a
// [Reason]: missing, out-of-order, prev-hash, content, unreadable, truncated
// (a checkpoint or bundle header names entries past the end), or one of the
// checkpoint reasons. Entries after the last checkpoint are reported as
// unsigned ([Report.Unsigned]): the chain vouches for them, no signature
// does yet. Cutting the end of a log together with the checkpoints over it
// leaves a shorter valid log: compare with an earlier export, or the last
// checkpoint seen, to catch that.
//
// # Bundle
//
// An exported log is one file, a CBOR sequence (RFC 8742, [BundleMediaType])
// written and read as a stream:
//
//  1. the header {1: "embark-audit-bundle", 2: 1 (version), 3: created
//     (epoch seconds), 4: [public keys, hybridsig encoding], 5: number of
//     checkpoints, 6: sequence number of the last entry};
//  2. that many checkpoints {1: entry it is stored under, 2: body,
//     3: signature}, in entry order;
//  3. the entries 1 to the last, each an [Entry] in its CBOR encoding
//     (sequence number included).
//
// [BundleWriter] writes one; [VerifyBundle] verifies one against pinned
// keys or, with none, against the keys it carries (which proves integrity,
// not who signed). Memory use is the checkpoints and one entry.
package audit
