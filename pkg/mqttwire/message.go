package mqttwire

// Content types of the three kinds of message (COSE protected header 3).
const (
	TypeRequest  = "application/embark-request+cbor"
	TypeResponse = "application/embark-response+cbor"
	TypeCommand  = "application/embark-command+cbor"
)

// ResponderURI is the URI SAN of the certificate Embark signs responses and
// commands with. Devices accept no other signer, even one that chains to the
// same root (an LDevID does too).
const ResponderURI = "urn:embark:responder"

// Limits of the wire format.
const (
	// MaxMessage bounds a whole message.
	MaxMessage = 16 << 10
	// MaxChain bounds the certificates in an x5chain.
	MaxChain = 4
	// MaxCSR bounds a certificate request.
	MaxCSR = 4 << 10
	// NonceSize is the size of the nonces Embark issues.
	NonceSize = 40
)

// Request is the signed payload of a device's enroll, renew or state
// request. Keys are small integers (CBOR map keys 1…6).
type Request struct {
	// Op is "enroll", "renew" or "state"; it must match the topic.
	Op Op `cbor:"1,keyasint"`
	// Device is the device identifier (URN); it must match the topic and
	// the identity of the signing certificate.
	Device string `cbor:"2,keyasint"`
	// Nonce is a nonce Embark issued to this device.
	Nonce []byte `cbor:"3,keyasint"`
	// CSR is the DER PKCS#10 request (enroll, renew).
	CSR []byte `cbor:"4,keyasint,omitempty"`
	// Claims are what the device reports about itself.
	Claims *Claims `cbor:"5,keyasint,omitempty"`
	// Applied is the command generation the device applied (state).
	Applied uint64 `cbor:"6,keyasint,omitempty"`
}

// Claims are the device's reports. Firmware claims, when present, must
// agree with the firmware attributes of the CSR.
type Claims struct {
	FirmwareVersion string `cbor:"1,keyasint,omitempty"`
	// FirmwareSHA256 is the hex SHA-256 of the running image.
	FirmwareSHA256 string `cbor:"2,keyasint,omitempty"`
}

// Status is the outcome a Response reports.
type Status string

// Response statuses.
const (
	StatusOK      Status = "ok"
	StatusRefused Status = "refused"
	// StatusRetry: not yet (held for approval, overloaded); ask again after
	// RetryAfter seconds with a fresh nonce.
	StatusRetry Status = "retry"
)

// Response is the signed payload of Embark's answer to a request.
type Response struct {
	Op     Op     `cbor:"1,keyasint"`
	Device string `cbor:"2,keyasint"`
	// Correlation echoes the MQTT v5 correlation data of the request.
	Correlation []byte `cbor:"3,keyasint"`
	// Nonce echoes the request's nonce; for Op "nonce", it is the nonce
	// issued, valid for NonceTTL seconds.
	Nonce []byte `cbor:"4,keyasint,omitempty"`
	// Seq grows with every message Embark signs.
	Seq    uint64 `cbor:"5,keyasint"`
	Status Status `cbor:"6,keyasint"`
	// Reason is the reason code of a refusal or retry (the same codes as
	// over CoAP), Message a human-readable explanation.
	Reason     string `cbor:"7,keyasint,omitempty"`
	Message    string `cbor:"8,keyasint,omitempty"`
	RetryAfter uint32 `cbor:"9,keyasint,omitempty"`
	// Certificate is the DER LDevID issued; Chain its CA chain,
	// intermediate first.
	Certificate []byte   `cbor:"10,keyasint,omitempty"`
	Chain       [][]byte `cbor:"11,keyasint,omitempty"`
	NonceTTL    uint32   `cbor:"12,keyasint,omitempty"`
	Zone        string   `cbor:"13,keyasint,omitempty"`
	State       string   `cbor:"14,keyasint,omitempty"`
	// Voucher is the COSE voucher answering a voucher request (Op
	// "voucher"): the device verifies it, pins the domain it names, and
	// only then can verify this response's signature.
	Voucher []byte `cbor:"15,keyasint,omitempty"`
}

// Command is the signed desired-state document of a device, published
// retained on its command topic. A device applies a generation once, in
// order, and reports it on its state topic.
type Command struct {
	Device     string `cbor:"1,keyasint"`
	Generation uint64 `cbor:"2,keyasint"`
	Seq        uint64 `cbor:"3,keyasint"`
	// Rotate asks the device to renew now with a new key.
	Rotate bool `cbor:"4,keyasint,omitempty"`
	// Zone is the device's zone; a change is announced by a new generation.
	Zone string `cbor:"5,keyasint,omitempty"`
	// Revoked says the device's credentials are revoked: stop using them.
	Revoked bool   `cbor:"6,keyasint,omitempty"`
	Reason  string `cbor:"7,keyasint,omitempty"`
	// Campaign names the rotation campaign that asked for Rotate.
	Campaign string `cbor:"8,keyasint,omitempty"`
}
