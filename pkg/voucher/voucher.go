package voucher

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/veraison/go-cose"
)

// Assertion says what the MASA checked before it vouched (RFC 8366).
type Assertion uint8

// Assertions.
const (
	// AssertionVerified: the MASA verified the owner from its sales records.
	AssertionVerified Assertion = 0
	// AssertionLogged: the MASA only logged the claim.
	AssertionLogged Assertion = 1
	// AssertionProximity: the device was near the registrar.
	AssertionProximity Assertion = 2
)

func (a Assertion) String() string {
	switch a {
	case AssertionVerified:
		return "verified"
	case AssertionLogged:
		return "logged"
	case AssertionProximity:
		return "proximity"
	}
	return fmt.Sprintf("Assertion(%d)", uint8(a))
}

// Voucher is the manufacturer's statement that a device (SerialNumber)
// belongs to the domain whose certificate it pins.
type Voucher struct {
	Assertion    Assertion
	SerialNumber string
	// Nonce is the device's nonce; nil in a nonceless voucher.
	Nonce []byte
	// PinnedDomainCert is the DER certificate the device is to trust: the
	// owner's domain CA.
	PinnedDomainCert []byte
	CreatedOn        time.Time
	// ExpiresOn is zero in a nonced voucher.
	ExpiresOn time.Time
	// IDevIDIssuer is the authority key identifier of the device's IDevID.
	IDevIDIssuer []byte
}

// Nonceless reports whether v answers no particular request.
func (v *Voucher) Nonceless() bool { return len(v.Nonce) == 0 }

// Pinned parses the pinned domain certificate.
func (v *Voucher) Pinned() (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(v.PinnedDomainCert)
	if err != nil {
		return nil, fmt.Errorf("%w: pinned-domain-cert: %v", ErrMalformed, err)
	}
	return c, nil
}

type wireVoucher struct {
	Assertion        Assertion `cbor:"1,keyasint"`
	SerialNumber     string    `cbor:"2,keyasint"`
	Nonce            []byte    `cbor:"3,keyasint,omitempty"`
	PinnedDomainCert []byte    `cbor:"4,keyasint"`
	CreatedOn        uint64    `cbor:"5,keyasint"`
	ExpiresOn        uint64    `cbor:"6,keyasint,omitempty"`
	IDevIDIssuer     []byte    `cbor:"7,keyasint,omitempty"`
}

// check refuses what no valid voucher holds.
func (v *Voucher) check() error {
	switch {
	case v.Assertion > AssertionProximity:
		return fmt.Errorf("%w: assertion %d", ErrMalformed, v.Assertion)
	case !validSerial(v.SerialNumber):
		return fmt.Errorf("%w: serial-number %q", ErrMalformed, v.SerialNumber)
	case len(v.Nonce) != 0 && (len(v.Nonce) < MinNonce || len(v.Nonce) > MaxNonce):
		return fmt.Errorf("%w: nonce of %d bytes, want %d..%d", ErrMalformed, len(v.Nonce), MinNonce, MaxNonce)
	case len(v.PinnedDomainCert) == 0:
		return fmt.Errorf("%w: no pinned-domain-cert", ErrMalformed)
	case v.CreatedOn.IsZero():
		return fmt.Errorf("%w: no created-on", ErrMalformed)
	case len(v.Nonce) == 0 && v.ExpiresOn.IsZero():
		return fmt.Errorf("%w: a nonceless voucher without expires-on", ErrMalformed)
	case !v.ExpiresOn.IsZero() && !v.ExpiresOn.After(v.CreatedOn):
		return fmt.Errorf("%w: expires-on %s is not after created-on %s", ErrMalformed, v.ExpiresOn, v.CreatedOn)
	}
	return nil
}

func validSerial(s string) bool {
	return s != "" && len(s) <= MaxSerial && utf8.ValidString(s)
}

func (v *Voucher) wire() wireVoucher {
	w := wireVoucher{
		Assertion:        v.Assertion,
		SerialNumber:     v.SerialNumber,
		Nonce:            v.Nonce,
		PinnedDomainCert: v.PinnedDomainCert,
		CreatedOn:        unixTime(v.CreatedOn.Unix()),
		IDevIDIssuer:     v.IDevIDIssuer,
	}
	if !v.ExpiresOn.IsZero() {
		w.ExpiresOn = unixTime(v.ExpiresOn.Unix())
	}
	return w
}

func fromWire(w wireVoucher) *Voucher {
	v := &Voucher{
		Assertion:        w.Assertion,
		SerialNumber:     w.SerialNumber,
		Nonce:            w.Nonce,
		PinnedDomainCert: w.PinnedDomainCert,
		IDevIDIssuer:     w.IDevIDIssuer,
	}
	if w.CreatedOn != 0 {
		v.CreatedOn = time.Unix(int64(min(w.CreatedOn, 1<<62)), 0).UTC()
	}
	if w.ExpiresOn != 0 {
		v.ExpiresOn = time.Unix(int64(min(w.ExpiresOn, 1<<62)), 0).UTC()
	}
	return v
}

// Signer signs vouchers with the manufacturer's voucher key. It is safe
// for concurrent use.
type Signer struct {
	cs   cose.Signer
	cert *x509.Certificate
	kid  []byte
}

// NewSigner returns a Signer for an ECDSA P-256 key whose certificate
// (the devices' voucher anchor) is cert.
func NewSigner(key crypto.Signer, cert *x509.Certificate) (*Signer, error) {
	cs, err := es256(key, cert)
	if err != nil {
		return nil, err
	}
	return &Signer{cs: cs, cert: cert, kid: KeyID(cert)}, nil
}

// Certificate returns the signer's certificate.
func (s *Signer) Certificate() *x509.Certificate { return s.cert }

// Sign encodes and signs v.
func (s *Signer) Sign(v Voucher) ([]byte, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	return sign1(s.cs, TypeVoucher, s.kid, nil, v.wire(), MaxVoucher)
}

// Parse decodes a voucher without verifying its signature, for a
// registrar that checks what the MASA vouched for (the device verifies
// the signature). It returns the voucher and the kid it names.
func Parse(b []byte) (*Voucher, []byte, error) {
	msg, err := decode1(b, TypeVoucher, MaxVoucher)
	if err != nil {
		return nil, nil, err
	}
	v, err := payloadOf(msg)
	if err != nil {
		return nil, nil, err
	}
	kid, _ := msg.Headers.Protected[cose.HeaderLabelKeyID].([]byte)
	return v, kid, nil
}

func payloadOf(msg *cose.Sign1Message) (*Voucher, error) {
	var w wireVoucher
	if err := decMode.Unmarshal(msg.Payload, &w); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	v := fromWire(w)
	if err := v.check(); err != nil {
		return nil, err
	}
	return v, nil
}

// DefaultMaxSkew is how far in the future a voucher's created-on may lie
// for a device with a clock.
const DefaultMaxSkew = 5 * time.Minute

// VerifyOptions is what a device checks a voucher against.
type VerifyOptions struct {
	// Anchors are the manufacturer's voucher-signing certificates from the
	// device's firmware. Required.
	Anchors []*x509.Certificate
	// Serial is the device's own serial number. Required.
	Serial string
	// Nonce is the nonce the device sent; the voucher must carry it. A
	// voucher without a nonce is nonceless (see AllowNonceless).
	Nonce []byte
	// Now is the device's clock; nil for a device without one, which then
	// checks no time (freshness comes from the nonce).
	Now func() time.Time
	// AllowNonceless accepts a nonceless voucher; it needs Now, to check
	// expires-on.
	AllowNonceless bool
	// MaxSkew is how far created-on may lie ahead of Now. Default
	// DefaultMaxSkew.
	MaxSkew time.Duration
}

// Verify checks a voucher as a device does: the signature with the anchor
// its kid names ([ErrUnknownSigner] if none; [ErrBadSignature] if it does
// not verify), the serial number ([ErrWrongSerial]), the nonce
// ([ErrWrongNonce]; [ErrNonceless] for an unacceptable nonceless voucher)
// and, with a clock, created-on ([ErrNotYetValid]), expires-on
// ([ErrExpired]) and the anchor's validity. The pinned domain certificate
// must parse. Nothing is returned on refusal.
func Verify(b []byte, o VerifyOptions) (*Voucher, error) {
	if len(o.Anchors) == 0 || o.Serial == "" {
		return nil, fmt.Errorf("%w: verify needs anchors and the device's serial", ErrMalformed)
	}
	msg, err := decode1(b, TypeVoucher, MaxVoucher)
	if err != nil {
		return nil, err
	}
	kid, _ := msg.Headers.Protected[cose.HeaderLabelKeyID].([]byte)
	i := slices.IndexFunc(o.Anchors, func(c *x509.Certificate) bool { return equalBytes(KeyID(c), kid) })
	if i < 0 {
		return nil, fmt.Errorf("%w: kid %x", ErrUnknownSigner, kid)
	}
	anchor := o.Anchors[i]
	if err := verify1(msg, anchor.PublicKey); err != nil {
		return nil, err
	}
	v, err := payloadOf(msg)
	if err != nil {
		return nil, err
	}
	if v.SerialNumber != o.Serial {
		return nil, fmt.Errorf("%w: voucher for %q, device %q", ErrWrongSerial, v.SerialNumber, o.Serial)
	}
	switch {
	case v.Nonceless() && (!o.AllowNonceless || o.Now == nil):
		return nil, fmt.Errorf("%w: allowed %t, clock %t", ErrNonceless, o.AllowNonceless, o.Now != nil)
	case !v.Nonceless() && !equalBytes(v.Nonce, o.Nonce):
		return nil, fmt.Errorf("%w: the voucher answers another request", ErrWrongNonce)
	}
	if o.Now != nil {
		now := o.Now()
		skew := o.MaxSkew
		if skew <= 0 {
			skew = DefaultMaxSkew
		}
		switch {
		case v.CreatedOn.After(now.Add(skew)):
			return nil, fmt.Errorf("%w: created on %s", ErrNotYetValid, v.CreatedOn.Format(time.RFC3339))
		case !v.ExpiresOn.IsZero() && !now.Before(v.ExpiresOn):
			return nil, fmt.Errorf("%w: on %s", ErrExpired, v.ExpiresOn.Format(time.RFC3339))
		case now.Before(anchor.NotBefore) || now.After(anchor.NotAfter):
			return nil, fmt.Errorf("%w: the voucher anchor %s is outside its validity", ErrExpired, anchor.Subject)
		}
	}
	if _, err := v.Pinned(); err != nil {
		return nil, err
	}
	return v, nil
}

// VerifyServerChain checks that a server's certificate chain (leaf first,
// as the handshake gave it) leads to the pinned domain certificate: if
// pinned is a CA, the leaf must verify to it as the only root, for server
// authentication; otherwise the leaf must be pinned itself. now is the
// device's time (zero: time.Now). It returns the verified chain, leaf
// first, pinned last.
func VerifyServerChain(pinned *x509.Certificate, chain []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	if pinned == nil || len(chain) == 0 {
		return nil, fmt.Errorf("%w: no pinned certificate or no server chain", ErrNotPinned)
	}
	leaf := chain[0]
	if !pinned.IsCA {
		if !leaf.Equal(pinned) {
			return nil, fmt.Errorf("%w: the server presented %s, the voucher pins %s", ErrNotPinned, leaf.Subject, pinned.Subject)
		}
		return []*x509.Certificate{leaf}, nil
	}
	roots := x509.NewCertPool()
	roots.AddCert(pinned)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotPinned, err)
	}
	return chains[0], nil
}
