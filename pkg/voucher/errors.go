package voucher

import "errors"

var (
	// ErrMalformed: not a well-formed message of the expected kind.
	ErrMalformed = errors.New("voucher: malformed")
	// ErrTooLarge: the message exceeds the limit of its kind.
	ErrTooLarge = errors.New("voucher: too large")
	// ErrBadSignature: the signature does not verify (the message was
	// altered after signing, or signed by another key than it names).
	ErrBadSignature = errors.New("voucher: bad signature")
	// ErrUnknownSigner: the voucher names a signer that is none of the
	// device's anchors (another manufacturer signed it).
	ErrUnknownSigner = errors.New("voucher: unknown signer")
	// ErrWrongSerial: the voucher is for another device.
	ErrWrongSerial = errors.New("voucher: wrong serial number")
	// ErrWrongNonce: the voucher answers another request (a replay).
	ErrWrongNonce = errors.New("voucher: wrong nonce")
	// ErrNonceless: a nonceless voucher where the device allows none, or
	// cannot check one (no clock).
	ErrNonceless = errors.New("voucher: nonceless voucher not acceptable")
	// ErrExpired: the voucher's expires-on has passed.
	ErrExpired = errors.New("voucher: expired")
	// ErrNotYetValid: the voucher was created in the future.
	ErrNotYetValid = errors.New("voucher: not yet valid")
	// ErrNotPinned: the server's certificate chain does not lead to the
	// pinned domain certificate.
	ErrNotPinned = errors.New("voucher: server not authenticated by the pinned domain certificate")
	// ErrProximity: the device saw another registrar than the one asking
	// for its voucher.
	ErrProximity = errors.New("voucher: proximity registrar mismatch")
	// ErrUnsupportedKey: a key the wire format does not sign with.
	ErrUnsupportedKey = errors.New("voucher: unsupported key")
	// ErrClassicalTLS: a back-end TLS connection that did not negotiate
	// TLS 1.3 with X25519MLKEM768.
	ErrClassicalTLS = errors.New("voucher: back-end link is not TLS 1.3 with X25519MLKEM768")
)
