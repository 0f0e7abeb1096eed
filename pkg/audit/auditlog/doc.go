// Package auditlog works on the audit log a store keeps: it makes
// hybrid-signed checkpoints of it beside the writers ([Checkpointer]),
// exports it as a bundle ([Export]) and verifies it ([Verify]). The formats
// are package audit's.
//
// # Checkpoints
//
// Checkpoints are opaque store records of kind [CheckpointKind], keyed by
// the entry they sign ([CheckpointKey]: 20 decimal digits); the public keys
// that signed them are records of kind [KeyKind] keyed by KeyID. Writers
// append entries in their own transactions and never wait for a signature:
// the [Checkpointer] polls the log (every [DefaultPoll]) in short read
// transactions, checks that the new entries chain on from the last one it
// verified, signs outside any transaction, and stores the checkpoints of a
// pass in one write transaction. It signs every entry whose sequence number
// is a multiple of N ([DefaultEvery]) and, once T ([DefaultInterval]) has
// passed since the last checkpoint, the newest entry; at shutdown it signs
// the tail. It never signs a log that does not chain on; it then fails with
// the *audit.BrokenError at every pass until the log is repaired.
//
// # Caveats
//
// Verification trusts the keys it is given. The keys stored in the registry
// sit beside the log they vouch for: pin audit.pub, or better a copy kept
// elsewhere, to prove who signed.
package auditlog
