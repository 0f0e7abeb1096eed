package manifest

import (
	"errors"
	"fmt"
)

var (
	// ErrMalformed reports an envelope, payload or trust bundle that is not
	// the strict JSON, base64 or PEM expected.
	ErrMalformed = errors.New("malformed")
	// ErrPayloadType reports an envelope that carries another kind of
	// document.
	ErrPayloadType = errors.New("wrong payload type")
	// ErrUnknownSigner reports an envelope signed by no key the caller trusts.
	ErrUnknownSigner = errors.New("unknown signer")
	// ErrSignature reports a signature by a trusted key that does not verify.
	// The error also matches hybridsig.ErrECDSA and/or hybridsig.ErrMLDSA
	// (or hybridsig.ErrMalformed) to say which half failed.
	ErrSignature = errors.New("signature invalid")
	// ErrInvalid reports a well-formed manifest or trust bundle with a value
	// that breaks a rule of [Manifest.Validate] or [ParseTrustBundle].
	ErrInvalid = errors.New("invalid")
	// ErrDuplicate reports a serial number listed twice, or one IDevID key
	// listed for two serial numbers (or a key listed twice in a trust bundle).
	ErrDuplicate = errors.New("duplicate")
	// ErrTooLarge reports an envelope or trust bundle over the size limit.
	ErrTooLarge = errors.New("too large")
	// ErrRead reports that an envelope could not be read from its reader
	// ([OpenEnvelopeReader], [VerifyReader]); the reader's error is wrapped
	// too.
	ErrRead = errors.New("read failed")
	// ErrWrongManufacturer reports a manifest opened with a manufacturer's
	// trust whose manufacturer field names someone else.
	ErrWrongManufacturer = errors.New("wrong manufacturer")
)

// ValidationError says which rule of [Manifest.Validate] a manifest breaks.
// It matches [ErrInvalid] or [ErrDuplicate].
type ValidationError struct {
	// Device is the index of the offending entry in Devices, or -1 for a
	// field of the manifest itself.
	Device int
	// Serial is the serial number of the offending entry, if any.
	Serial string
	// Field is the JSON name of the offending field.
	Field string
	// Reason says what is wrong, for people.
	Reason string
	// Err is ErrInvalid or ErrDuplicate.
	Err error
}

func (e *ValidationError) Error() string {
	if e.Device < 0 {
		return fmt.Sprintf("manifest: %v: %s: %s", e.Err, e.Field, e.Reason)
	}
	return fmt.Sprintf("manifest: %v: devices[%d] (serial %q): %s: %s", e.Err, e.Device, e.Serial, e.Field, e.Reason)
}

func (e *ValidationError) Unwrap() error { return e.Err }
