package crl

import "errors"

// Errors returned by this package. They are wrapped with details; test with
// errors.Is.
var (
	// ErrInvalidSerial: a serial is not a positive lower-case hex number.
	ErrInvalidSerial = errors.New("invalid certificate serial")
	// ErrInvalidReason: the reason is not an RFC 5280 CRLReason Embark uses
	// (0-5, 9, 10; certificateHold and removeFromCRL are not supported).
	ErrInvalidReason = errors.New("invalid revocation reason")
	// ErrInvalidTime: a revocation or expiry time is zero.
	ErrInvalidTime = errors.New("invalid revocation time")
	// ErrCorruptRecord: a stored revocation record cannot be decoded.
	ErrCorruptRecord = errors.New("corrupt revocation record")
	// ErrInvalidOption: an Option was given an unusable value.
	ErrInvalidOption = errors.New("invalid option")
	// ErrUnknownIssuer: no intermediate with that key id publishes a CRL
	// (unknown, or retired).
	ErrUnknownIssuer = errors.New("no CRL for that issuer")
)
