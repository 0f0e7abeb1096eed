package broker

import (
	"crypto/x509"
	"fmt"
)

// Kind says which credential a client presented.
type Kind int

// Kinds of credential.
const (
	// KindIDevID is a device's factory identity: it may only enroll.
	KindIDevID Kind = iota + 1
	// KindLDevID is a device's Embark-issued operational identity.
	KindLDevID
	// KindService is Embark itself (or another back-end service).
	KindService
)

// String returns "idevid", "ldevid" or "service".
func (k Kind) String() string {
	switch k {
	case KindIDevID:
		return "idevid"
	case KindLDevID:
		return "ldevid"
	case KindService:
		return "service"
	default:
		return fmt.Sprintf("kind(%d)", int(k))
	}
}

// Identity is what an Authenticator says about a TLS client.
type Identity struct {
	Kind Kind
	// ID is the device URN for devices and the service name for
	// KindService. The client's MQTT client identifier must equal it.
	ID string
	// CertSerial is the hex serial of the leaf certificate (lower case, no
	// leading zeros: fmt.Sprintf("%x", serial)). The broker computes it from
	// the leaf itself; a non-empty value that differs is refused.
	CertSerial string
	// Topics are extra application topic filters the device's zone grants
	// (read and write). They are ignored for KindIDevID and KindService and
	// are nil for quarantined devices. Invalid filters and filters that start
	// with '$' are ignored.
	Topics []string
}

// Authenticator decides who a TLS client is from its presented chain (leaf
// first). The TLS handshake has only proved possession of the leaf's key: the
// Authenticator verifies the chain against the trust anchors it knows,
// refuses unknown, untrusted, revoked and expired certificates, and says which
// kind of credential it is.
//
// The broker calls Authenticate once per CONNECT (a second time when a
// [Broker.Disconnect] or [Broker.Refresh] ran while the first call was in
// progress) and again for every live client of a device on
// [Broker.Refresh]. It must be safe for concurrent use. Errors carry a
// readable reason; the broker logs it and tells the client only "not
// authorized".
type Authenticator interface {
	Authenticate(chain []*x509.Certificate) (Identity, error)
}

// AuthenticatorFunc adapts a function to the Authenticator interface.
type AuthenticatorFunc func(chain []*x509.Certificate) (Identity, error)

// Authenticate calls f(chain).
func (f AuthenticatorFunc) Authenticate(chain []*x509.Certificate) (Identity, error) {
	return f(chain)
}
