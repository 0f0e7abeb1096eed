package hybridsig

import "errors"

var (
	// ErrECDSA reports that the ECDSA P-256 component of a signature does not
	// verify.
	ErrECDSA = errors.New("ECDSA signature invalid")
	// ErrMLDSA reports that the ML-DSA-65 component of a signature does not
	// verify.
	ErrMLDSA = errors.New("ML-DSA-65 signature invalid")
	// ErrMalformed reports a key, signature or PEM block that cannot be
	// decoded.
	ErrMalformed = errors.New("malformed encoding")
	// ErrContextTooLong reports an application context longer than
	// [MaxContextSize] bytes.
	ErrContextTooLong = errors.New("context longer than 255 bytes")
)
