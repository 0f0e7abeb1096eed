package audit

import "errors"

// Errors of checkpoints, keys and bundles. [ErrBroken] (audit.go) marks a
// log that does not verify; [BrokenError] names where.
var (
	// ErrMalformed reports a checkpoint or bundle that cannot be decoded or
	// is not in its canonical encoding.
	ErrMalformed = errors.New("audit: malformed")
	// ErrUnknownKey reports a checkpoint signed by a key that is not
	// trusted.
	ErrUnknownKey = errors.New("audit: checkpoint signed by an unknown key")
	// ErrSignature reports a checkpoint whose hybrid signature does not
	// verify; the error also matches hybridsig.ErrECDSA and/or
	// hybridsig.ErrMLDSA for the half that failed.
	ErrSignature = errors.New("audit: checkpoint signature invalid")
	// ErrNoKey reports a data directory without an audit signing key.
	ErrNoKey = errors.New("audit: no audit key")
	// ErrBundle reports a file that is not an audit bundle of a version
	// this package reads.
	ErrBundle = errors.New("audit: not an audit bundle")
	// ErrOrder reports a checkpoint given to a [Verifier] for an entry it
	// has already passed.
	ErrOrder = errors.New("audit: checkpoint after its entry")
)
