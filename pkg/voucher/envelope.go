package voucher

import (
	"crypto/x509"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// Context strings of the hybrid signatures: a signature over one envelope
// kind never verifies as another.
const (
	contextRegistration = "embark-masa-registration-v1"
	contextCountersign  = "embark-voucher-countersignature-v1"
)

// envelope is [body, key id, hybrid signature over body].
type envelope struct {
	_         struct{} `cbor:",toarray"`
	Body      []byte
	KeyID     string
	Signature []byte
}

func sealEnvelope(key *hybridsig.PrivateKey, ctx string, body []byte) ([]byte, error) {
	sig, err := key.SignContext(nil, body, []byte(ctx))
	if err != nil {
		return nil, fmt.Errorf("voucher: hybrid signature: %w", err)
	}
	out, err := encMode.Marshal(envelope{Body: body, KeyID: key.Public().KeyID(), Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("voucher: encode envelope: %w", err)
	}
	return out, nil
}

func openEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) > MaxEnvelope {
		return e, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxEnvelope)
	}
	if err := decMode.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	if len(e.Body) == 0 || len(e.Signature) == 0 {
		return e, fmt.Errorf("%w: envelope without body or signature", ErrMalformed)
	}
	return e, nil
}

// Countersign wraps a signed voucher with a hybrid signature of key (the
// manufacturer's manifest key): the MASA's answer to a registrar. The
// device never sees it; the registrar checks it with [OpenCountersigned]
// and passes the voucher on.
func Countersign(key *hybridsig.PrivateKey, voucher []byte) ([]byte, error) {
	if len(voucher) == 0 || len(voucher) > MaxVoucher {
		return nil, fmt.Errorf("%w: voucher of %d bytes", ErrMalformed, len(voucher))
	}
	return sealEnvelope(key, contextCountersign, voucher)
}

// OpenCountersigned checks the hybrid countersignature of a MASA answer
// with the key that keys returns for the key id it names, and returns the
// voucher inside (not verified: that is the device's job) and that key id.
func OpenCountersigned(b []byte, keys func(keyID string) (*hybridsig.PublicKey, bool)) ([]byte, string, error) {
	e, err := openEnvelope(b)
	if err != nil {
		return nil, "", err
	}
	pub, ok := keys(e.KeyID)
	if !ok {
		return nil, "", fmt.Errorf("%w: countersigned by key %s, which is not the manufacturer's", ErrUnknownSigner, e.KeyID)
	}
	if err := pub.VerifyContext(e.Body, []byte(contextCountersign), e.Signature); err != nil {
		return nil, "", fmt.Errorf("%w: countersignature: %v", ErrBadSignature, err)
	}
	if len(e.Body) > MaxVoucher {
		return nil, "", fmt.Errorf("%w: voucher of %d bytes", ErrTooLarge, len(e.Body))
	}
	return e.Body, e.KeyID, nil
}

// Registration is an owner's statement to a manufacturer's MASA: vouchers
// for devices sold to the holder of OwnerKey are to pin DomainCA.
type Registration struct {
	// Owner is the owner's name, for people reading the MASA's records.
	Owner string
	// OwnerKey is the owner's hybrid public key (Embark's owner.pub); its
	// KeyID is what manifests name as owner_key.
	OwnerKey *hybridsig.PublicKey
	// DomainCA is the certificate devices are to pin: the root of the
	// owner's Embark CA.
	DomainCA *x509.Certificate
	// CreatedOn orders registrations: the MASA keeps the newest.
	CreatedOn time.Time
}

type wireRegistration struct {
	Owner     string `cbor:"1,keyasint"`
	OwnerKey  []byte `cbor:"2,keyasint"`
	DomainCA  []byte `cbor:"3,keyasint"`
	CreatedOn uint64 `cbor:"4,keyasint"`
}

// SignRegistration signs a registration with the owner's key, which must
// be r.OwnerKey's private half.
func SignRegistration(key *hybridsig.PrivateKey, r Registration) ([]byte, error) {
	if r.OwnerKey == nil || !r.OwnerKey.Equal(key.Public()) {
		return nil, fmt.Errorf("%w: the registration must name the key that signs it", ErrMalformed)
	}
	if err := checkRegistration(&r); err != nil {
		return nil, err
	}
	body, err := encMode.Marshal(wireRegistration{Owner: r.Owner, OwnerKey: r.OwnerKey.Bytes(), DomainCA: r.DomainCA.Raw,
		CreatedOn: unixTime(r.CreatedOn.Unix())})
	if err != nil {
		return nil, fmt.Errorf("voucher: encode registration: %w", err)
	}
	return sealEnvelope(key, contextRegistration, body)
}

func checkRegistration(r *Registration) error {
	switch {
	case r.Owner == "" || len(r.Owner) > 256 || !utf8.ValidString(r.Owner):
		return fmt.Errorf("%w: owner name %q", ErrMalformed, r.Owner)
	case r.DomainCA == nil || !r.DomainCA.IsCA || !r.DomainCA.BasicConstraintsValid:
		return fmt.Errorf("%w: the domain certificate must be a CA certificate", ErrMalformed)
	case r.CreatedOn.IsZero():
		return fmt.Errorf("%w: no created-on", ErrMalformed)
	}
	return nil
}

// OpenRegistration decodes a registration and checks that the key it
// names signed it. Whether that key owns anything is the MASA's business.
func OpenRegistration(b []byte) (*Registration, error) {
	e, err := openEnvelope(b)
	if err != nil {
		return nil, err
	}
	var w wireRegistration
	if err := decMode.Unmarshal(e.Body, &w); err != nil {
		return nil, fmt.Errorf("%w: registration: %v", ErrMalformed, err)
	}
	pub, err := hybridsig.ParsePublicKey(w.OwnerKey)
	if err != nil {
		return nil, fmt.Errorf("%w: owner key: %v", ErrMalformed, err)
	}
	if e.KeyID != pub.KeyID() {
		return nil, fmt.Errorf("%w: signed by key %s, the registration names %s", ErrBadSignature, e.KeyID, pub.KeyID())
	}
	if err := pub.VerifyContext(e.Body, []byte(contextRegistration), e.Signature); err != nil {
		return nil, fmt.Errorf("%w: registration: %v", ErrBadSignature, err)
	}
	ca, err := x509.ParseCertificate(w.DomainCA)
	if err != nil {
		return nil, fmt.Errorf("%w: domain certificate: %v", ErrMalformed, err)
	}
	r := &Registration{Owner: w.Owner, OwnerKey: pub, DomainCA: ca}
	if w.CreatedOn != 0 {
		r.CreatedOn = time.Unix(int64(min(w.CreatedOn, 1<<62)), 0).UTC()
	}
	if err := checkRegistration(r); err != nil {
		return nil, err
	}
	return r, nil
}

// Status is voucher or enrollment status telemetry (RFC 8995 §5.7, §5.9.4)
// that a device posts to /vs or /es: a CBOR map
// {1: version, 2: status, 3: reason, 4: reason-context}.
type Status struct {
	Version int    `cbor:"1,keyasint"`
	OK      bool   `cbor:"2,keyasint"`
	Reason  string `cbor:"3,keyasint,omitempty"`
	Context string `cbor:"4,keyasint,omitempty"`
}

// MaxStatus bounds status telemetry.
const MaxStatus = 1 << 10

// MarshalStatus encodes status telemetry (version 1 if unset).
func MarshalStatus(s Status) ([]byte, error) {
	if s.Version == 0 {
		s.Version = 1
	}
	b, err := encMode.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("voucher: encode status: %w", err)
	}
	if len(b) > MaxStatus {
		return nil, fmt.Errorf("%w: status of %d bytes", ErrTooLarge, len(b))
	}
	return b, nil
}

// ParseStatus decodes status telemetry.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	if len(b) > MaxStatus {
		return s, fmt.Errorf("%w: status of %d bytes, limit %d", ErrTooLarge, len(b), MaxStatus)
	}
	if err := decMode.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("%w: status: %v", ErrMalformed, err)
	}
	if s.Version != 1 || !utf8.ValidString(s.Reason) || !utf8.ValidString(s.Context) {
		return Status{}, fmt.Errorf("%w: status version %d or text not UTF-8", ErrMalformed, s.Version)
	}
	return s, nil
}
