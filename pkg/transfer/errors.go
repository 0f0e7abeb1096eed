package transfer

import "errors"

// Errors of this package. Callers compare with errors.Is; store and
// signature errors are wrapped, not replaced. Every refused operation
// changes nothing.
var (
	// ErrMalformed: a transfer file, envelope or record that is not the
	// strict JSON expected, breaks a rule of [Record.Validate], or is too
	// large.
	ErrMalformed = errors.New("transfer: malformed record")
	// ErrSignature: the envelope carries no valid signature by the key its
	// record names as from.key. The error also matches
	// hybridsig.ErrECDSA and/or hybridsig.ErrMLDSA to say which half of the
	// hybrid signature failed.
	ErrSignature = errors.New("transfer: signature invalid")
	// ErrNotOwner: the record is signed by a key that does not own the
	// device (as the registry knows it), or a seller asked to transfer a
	// device it does not own.
	ErrNotOwner = errors.New("transfer: signer is not the current owner")
	// ErrNotForUs: the record (the last of a chain) transfers the device to
	// another owner key than this registry's.
	ErrNotForUs = errors.New("transfer: record is addressed to another owner")
	// ErrReplayed: the record was accepted before, or is older than (or
	// conflicts with) a transfer this registry already accepted.
	ErrReplayed = errors.New("transfer: record replayed or older than the registry")
	// ErrMismatch: the record's device facts (IDevID key) differ from the
	// registry, the records of a chain do not follow each other, or
	// earlier records of the chain are missing.
	ErrMismatch = errors.New("transfer: record does not match the registry")
	// ErrUnknownDevice: the device is not in the registry (import its
	// manufacturer's manifest first).
	ErrUnknownDevice = errors.New("transfer: unknown device")
	// ErrInvalid: a request to create a record with a bad argument (device
	// identifier, buyer name or key, a transfer to oneself, no owner key).
	ErrInvalid = errors.New("transfer: invalid request")
	// ErrState: the device's state does not allow the transfer (for
	// example a decommissioned device, or one onboarded here while owned by
	// someone else). It wraps the *device.ErrTransition.
	ErrState = errors.New("transfer: device state does not allow it")
)
