package voucher

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/veraison/go-cose"
)

// PledgeRequest is what a device asks its registrar for.
type PledgeRequest struct {
	SerialNumber string
	// Nonce is fresh for every request; the voucher must echo it.
	Nonce []byte
	// ProximityRegistrar is the SHA-256 of the SubjectPublicKeyInfo of a
	// server certificate the device saw ([SPKIHash]), or nil. A device that
	// asks over plain CoAP saw none and leaves it out (see the package
	// documentation, Proximity); when present, the MASA vouches only
	// through that registrar.
	ProximityRegistrar []byte
	// CreatedOn is set by a device with a clock; zero otherwise.
	CreatedOn time.Time
}

type wirePledge struct {
	SerialNumber       string `cbor:"1,keyasint"`
	Nonce              []byte `cbor:"2,keyasint"`
	ProximityRegistrar []byte `cbor:"3,keyasint,omitempty"`
	CreatedOn          uint64 `cbor:"4,keyasint,omitempty"`
}

// RegistrarRequest is what a registrar asks the MASA for: a voucher for
// the device whose pledge request it carries, or, without one, a nonceless
// voucher for a serial number (offline sites).
type RegistrarRequest struct {
	SerialNumber string
	// Nonce is the pledge request's nonce; nil for a nonceless voucher.
	Nonce []byte
	// PledgeRequest is the device's signed request, verbatim; nil for a
	// nonceless voucher.
	PledgeRequest []byte
	// ProximityChain is the registrar's server chain (leaf first): the one
	// the device saw when its request names a key, else the registrar's
	// own current server chain. The MASA checks that it belongs to the
	// registrar's domain.
	ProximityChain [][]byte
	CreatedOn      time.Time
	// ExpiresOn is the expiry the registrar asks for (nonceless only); the
	// MASA may shorten it.
	ExpiresOn time.Time
}

type wireRegistrar struct {
	SerialNumber   string   `cbor:"1,keyasint"`
	Nonce          []byte   `cbor:"2,keyasint,omitempty"`
	PledgeRequest  []byte   `cbor:"3,keyasint,omitempty"`
	ProximityChain [][]byte `cbor:"4,keyasint,omitempty"`
	CreatedOn      uint64   `cbor:"5,keyasint"`
	ExpiresOn      uint64   `cbor:"6,keyasint,omitempty"`
}

// RequestSigner signs requests with a key and its certificate chain, which
// travels in the x5chain header. It is safe for concurrent use.
type RequestSigner struct {
	cs    cose.Signer
	chain [][]byte
	leaf  *x509.Certificate
}

// NewRequestSigner returns a RequestSigner for an ECDSA P-256 key whose
// certificate is chain[0]; chain may hold up to MaxChain certificates.
func NewRequestSigner(key crypto.Signer, chain []*x509.Certificate) (*RequestSigner, error) {
	if len(chain) == 0 || len(chain) > MaxChain {
		return nil, fmt.Errorf("voucher: request signer chain of %d certificates, want 1..%d", len(chain), MaxChain)
	}
	cs, err := es256(key, chain[0])
	if err != nil {
		return nil, err
	}
	return &RequestSigner{cs: cs, chain: raws(chain), leaf: chain[0]}, nil
}

// Leaf returns the signer's certificate.
func (s *RequestSigner) Leaf() *x509.Certificate { return s.leaf }

// SignPledgeRequest signs a device's request.
func (s *RequestSigner) SignPledgeRequest(r PledgeRequest) ([]byte, error) {
	if err := checkPledge(r); err != nil {
		return nil, err
	}
	w := wirePledge{SerialNumber: r.SerialNumber, Nonce: r.Nonce, ProximityRegistrar: r.ProximityRegistrar}
	if !r.CreatedOn.IsZero() {
		w.CreatedOn = unixTime(r.CreatedOn.Unix())
	}
	return sign1(s.cs, TypePledgeRequest, nil, s.chain, w, MaxRequest)
}

// SignRegistrarRequest signs a registrar's request.
func (s *RequestSigner) SignRegistrarRequest(r RegistrarRequest) ([]byte, error) {
	if err := checkRegistrar(r); err != nil {
		return nil, err
	}
	w := wireRegistrar{SerialNumber: r.SerialNumber, Nonce: r.Nonce, PledgeRequest: r.PledgeRequest,
		ProximityChain: r.ProximityChain, CreatedOn: unixTime(r.CreatedOn.Unix())}
	if !r.ExpiresOn.IsZero() {
		w.ExpiresOn = unixTime(r.ExpiresOn.Unix())
	}
	return sign1(s.cs, TypeRegistrarRequest, nil, s.chain, w, MaxRequest)
}

func checkPledge(r PledgeRequest) error {
	switch {
	case !validSerial(r.SerialNumber):
		return fmt.Errorf("%w: serial-number %q", ErrMalformed, r.SerialNumber)
	case len(r.Nonce) < MinNonce || len(r.Nonce) > MaxNonce:
		return fmt.Errorf("%w: nonce of %d bytes, want %d..%d", ErrMalformed, len(r.Nonce), MinNonce, MaxNonce)
	case len(r.ProximityRegistrar) != 0 && len(r.ProximityRegistrar) != 32:
		return fmt.Errorf("%w: proximity-registrar-pubk-sha256 of %d bytes, want 32 or none", ErrMalformed, len(r.ProximityRegistrar))
	}
	return nil
}

func checkRegistrar(r RegistrarRequest) error {
	switch {
	case !validSerial(r.SerialNumber):
		return fmt.Errorf("%w: serial-number %q", ErrMalformed, r.SerialNumber)
	case r.CreatedOn.IsZero():
		return fmt.Errorf("%w: no created-on", ErrMalformed)
	case len(r.ProximityChain) > MaxChain:
		return fmt.Errorf("%w: proximity chain of %d certificates, at most %d", ErrMalformed, len(r.ProximityChain), MaxChain)
	}
	if len(r.PledgeRequest) == 0 {
		if len(r.Nonce) != 0 || r.ExpiresOn.IsZero() || len(r.ProximityChain) != 0 {
			return fmt.Errorf("%w: a request without a pledge request asks for a nonceless voucher: no nonce, no proximity chain, an expiry", ErrMalformed)
		}
		return nil
	}
	switch {
	case len(r.Nonce) < MinNonce || len(r.Nonce) > MaxNonce:
		return fmt.Errorf("%w: nonce of %d bytes, want %d..%d", ErrMalformed, len(r.Nonce), MinNonce, MaxNonce)
	case !r.ExpiresOn.IsZero():
		return fmt.Errorf("%w: a nonced request asks for no expiry", ErrMalformed)
	case len(r.ProximityChain) == 0:
		return fmt.Errorf("%w: no proximity chain", ErrMalformed)
	}
	return nil
}

// SignedPledgeRequest is a pledge request whose signature verified with
// the key of Chain[0].
type SignedPledgeRequest struct {
	PledgeRequest
	// Chain is the signer's x5chain, leaf first.
	Chain []*x509.Certificate
	// Raw is the request as received.
	Raw []byte
}

// OpenPledgeRequest decodes a pledge request and verifies its signature
// with the certificate it carries, whose subject serialNumber must be the
// request's serial number. Whether that certificate is a trusted IDevID is
// the caller's business.
func OpenPledgeRequest(b []byte) (*SignedPledgeRequest, error) {
	var w wirePledge
	chain, err := openChained(b, TypePledgeRequest, MaxRequest, &w)
	if err != nil {
		return nil, err
	}
	r := PledgeRequest{SerialNumber: w.SerialNumber, Nonce: w.Nonce, ProximityRegistrar: w.ProximityRegistrar}
	if w.CreatedOn != 0 {
		r.CreatedOn = time.Unix(int64(min(w.CreatedOn, 1<<62)), 0).UTC()
	}
	if err := checkPledge(r); err != nil {
		return nil, err
	}
	if sn := chain[0].Subject.SerialNumber; sn != r.SerialNumber {
		return nil, fmt.Errorf("%w: request for serial %q signed by the IDevID of %q", ErrMalformed, r.SerialNumber, sn)
	}
	return &SignedPledgeRequest{PledgeRequest: r, Chain: chain, Raw: b}, nil
}

// SignedRegistrarRequest is a registrar request whose signature verified
// with the key of Chain[0].
type SignedRegistrarRequest struct {
	RegistrarRequest
	Chain []*x509.Certificate
	// Pledge is the opened pledge request; nil for a nonceless request.
	Pledge *SignedPledgeRequest
	// Proximity is the parsed proximity chain.
	Proximity []*x509.Certificate
}

// OpenRegistrarRequest decodes a registrar request, verifies its signature
// with the certificate it carries and opens the pledge request inside,
// which must be for the same serial number and nonce and, if it names a
// server key, name the leaf of the proximity chain. Whether the registrar and the device are trusted is
// the caller's business.
func OpenRegistrarRequest(b []byte) (*SignedRegistrarRequest, error) {
	var w wireRegistrar
	chain, err := openChained(b, TypeRegistrarRequest, MaxRequest, &w)
	if err != nil {
		return nil, err
	}
	r := RegistrarRequest{SerialNumber: w.SerialNumber, Nonce: w.Nonce, PledgeRequest: w.PledgeRequest,
		ProximityChain: w.ProximityChain}
	if w.CreatedOn != 0 {
		r.CreatedOn = time.Unix(int64(min(w.CreatedOn, 1<<62)), 0).UTC()
	}
	if w.ExpiresOn != 0 {
		r.ExpiresOn = time.Unix(int64(min(w.ExpiresOn, 1<<62)), 0).UTC()
	}
	if err := checkRegistrar(r); err != nil {
		return nil, err
	}
	out := &SignedRegistrarRequest{RegistrarRequest: r, Chain: chain}
	if len(r.PledgeRequest) == 0 {
		return out, nil
	}
	if out.Pledge, err = OpenPledgeRequest(r.PledgeRequest); err != nil {
		return nil, fmt.Errorf("pledge request: %w", err)
	}
	if out.Proximity, err = parseChain(r.ProximityChain, "proximity chain"); err != nil {
		return nil, err
	}
	switch p := out.Pledge; {
	case p.SerialNumber != r.SerialNumber:
		return nil, fmt.Errorf("%w: registrar asks for %q, the pledge request is for %q", ErrMalformed, r.SerialNumber, p.SerialNumber)
	case !equalBytes(p.Nonce, r.Nonce):
		return nil, fmt.Errorf("%w: the registrar's nonce is not the pledge's", ErrMalformed)
	case len(p.ProximityRegistrar) != 0 && !equalBytes(p.ProximityRegistrar, SPKIHash(out.Proximity[0])):
		return nil, fmt.Errorf("%w: the device saw another registrar than the proximity chain names", ErrProximity)
	}
	return out, nil
}
