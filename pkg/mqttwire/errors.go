package mqttwire

import "errors"

var (
	// ErrMalformed: not a well-formed message of the expected kind.
	ErrMalformed = errors.New("malformed message")
	// ErrTooLarge: the message exceeds MaxMessage or a field's limit.
	ErrTooLarge = errors.New("message too large")
	// ErrBadSignature: the signature does not verify with the key of the
	// certificate the message carries.
	ErrBadSignature = errors.New("bad signature")
	// ErrUntrustedSigner: the signer's certificate does not chain to the
	// trusted root, or is not Embark's responder certificate.
	ErrUntrustedSigner = errors.New("untrusted signer")
	// ErrTopic: a topic outside the layout, or outside the device's namespace.
	ErrTopic = errors.New("bad topic")
	// ErrUnsupportedKey: a key type the wire format does not sign with.
	ErrUnsupportedKey = errors.New("unsupported key")
)
