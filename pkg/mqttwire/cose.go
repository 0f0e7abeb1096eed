package mqttwire

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	_ "crypto/sha256" // go-cose looks the hash of ES256 up at run time
	_ "crypto/sha512" // and of ES384
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

var (
	encMode, _ = cbor.CoreDetEncOptions().EncMode()
	decMode, _ = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		MaxNestedLevels:  8,
		MaxArrayElements: 64,
		MaxMapPairs:      32,
	}.DecMode()
)

// Signer signs messages with a private key, naming its certificate chain
// (leaf first) in the x5chain header.
type Signer struct {
	signer cose.Signer
	chain  [][]byte
}

// NewSigner returns a Signer for key, whose certificate is chain[0].
// Supported keys: ECDSA P-256 (ES256) and P-384 (ES384), Ed25519 (EdDSA).
func NewSigner(key crypto.Signer, chain []*x509.Certificate) (*Signer, error) {
	if len(chain) == 0 || len(chain) > MaxChain {
		return nil, fmt.Errorf("mqttwire: signer chain of %d certificates: want 1..%d", len(chain), MaxChain)
	}
	alg, err := algorithmFor(key.Public())
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(key.Public(), chain[0].PublicKey) {
		return nil, fmt.Errorf("mqttwire: the key does not match the certificate %s", chain[0].Subject)
	}
	cs, err := cose.NewSigner(alg, key)
	if err != nil {
		return nil, fmt.Errorf("mqttwire: signer: %w", err)
	}
	s := &Signer{signer: cs}
	for _, c := range chain {
		s.chain = append(s.chain, c.Raw)
	}
	return s, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func algorithmFor(pub crypto.PublicKey) (cose.Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return cose.AlgorithmES256, nil
		case elliptic.P384():
			return cose.AlgorithmES384, nil
		}
	case ed25519.PublicKey:
		return cose.AlgorithmEdDSA, nil
	}
	return 0, fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

// SignRequest signs a device request.
func (s *Signer) SignRequest(r Request) ([]byte, error) { return s.sign(TypeRequest, r) }

// SignResponse signs a response.
func (s *Signer) SignResponse(r Response) ([]byte, error) { return s.sign(TypeResponse, r) }

// SignCommand signs a command document.
func (s *Signer) SignCommand(c Command) ([]byte, error) { return s.sign(TypeCommand, c) }

func (s *Signer) sign(ctype string, payload any) ([]byte, error) {
	body, err := encMode.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("mqttwire: encode payload: %w", err)
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(s.signer.Algorithm())
	msg.Headers.Protected[cose.HeaderLabelContentType] = ctype
	if len(s.chain) == 1 {
		msg.Headers.Protected[cose.HeaderLabelX5Chain] = s.chain[0]
	} else {
		msg.Headers.Protected[cose.HeaderLabelX5Chain] = s.chain
	}
	msg.Payload = body
	if err := msg.Sign(rand.Reader, nil, s.signer); err != nil {
		return nil, fmt.Errorf("mqttwire: sign: %w", err)
	}
	out, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("mqttwire: encode message: %w", err)
	}
	if len(out) > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(out), MaxMessage)
	}
	return out, nil
}

// open decodes a COSE_Sign1 of the given content type, verifies its
// signature with the key of the first certificate of its x5chain and
// decodes its payload into v. It returns the chain, leaf first. Whether the
// chain is trusted is the caller's business.
func open(b []byte, ctype string, v any) ([]*x509.Certificate, error) {
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxMessage)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty payload", ErrMalformed)
	}
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(b); err != nil {
		return nil, fmt.Errorf("%w: not a COSE_Sign1: %v", ErrMalformed, err)
	}
	if got, _ := msg.Headers.Protected[cose.HeaderLabelContentType].(string); got != ctype {
		return nil, fmt.Errorf("%w: content type %q, want %q", ErrMalformed, got, ctype)
	}
	alg, err := msg.Headers.Protected.Algorithm()
	if err != nil {
		return nil, fmt.Errorf("%w: algorithm: %v", ErrMalformed, err)
	}
	chain, err := x5chain(msg.Headers.Protected[cose.HeaderLabelX5Chain])
	if err != nil {
		return nil, err
	}
	want, err := algorithmFor(chain[0].PublicKey)
	if err != nil {
		return nil, err
	}
	if alg != want {
		return nil, fmt.Errorf("%w: algorithm %v does not fit the certificate's key (%v)", ErrBadSignature, alg, want)
	}
	verifier, err := cose.NewVerifier(alg, chain[0].PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if err := msg.Verify(nil, verifier); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if err := decMode.Unmarshal(msg.Payload, v); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	return chain, nil
}

func x5chain(v any) ([]*x509.Certificate, error) {
	var ders [][]byte
	switch c := v.(type) {
	case []byte:
		ders = [][]byte{c}
	case []any:
		for _, e := range c {
			d, ok := e.([]byte)
			if !ok {
				return nil, fmt.Errorf("%w: x5chain holds a %T", ErrMalformed, e)
			}
			ders = append(ders, d)
		}
	case nil:
		return nil, fmt.Errorf("%w: no x5chain in the protected header", ErrMalformed)
	default:
		return nil, fmt.Errorf("%w: x5chain is a %T", ErrMalformed, v)
	}
	if len(ders) == 0 || len(ders) > MaxChain {
		return nil, fmt.Errorf("%w: x5chain of %d certificates, want 1..%d", ErrMalformed, len(ders), MaxChain)
	}
	chain := make([]*x509.Certificate, 0, len(ders))
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("%w: x5chain: %v", ErrMalformed, err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// SignedRequest is a request whose signature verified with the key of the
// first certificate of Chain.
type SignedRequest struct {
	Request
	Chain []*x509.Certificate
}

// OpenRequest decodes a request and verifies its signature against the
// certificate it carries. It does not decide whether that certificate is
// trusted: the onboarding core does.
func OpenRequest(b []byte) (*SignedRequest, error) {
	var r Request
	chain, err := open(b, TypeRequest, &r)
	if err != nil {
		return nil, err
	}
	switch {
	case r.Device == "" || !validID(r.Device):
		return nil, fmt.Errorf("%w: request names no valid device", ErrMalformed)
	case len(r.Nonce) == 0 || len(r.Nonce) > 2*NonceSize:
		return nil, fmt.Errorf("%w: request nonce of %d bytes", ErrMalformed, len(r.Nonce))
	case len(r.CSR) > MaxCSR:
		return nil, fmt.Errorf("%w: CSR of %d bytes, limit %d", ErrTooLarge, len(r.CSR), MaxCSR)
	}
	switch r.Op {
	case OpEnroll, OpRenew:
		if len(r.CSR) == 0 {
			return nil, fmt.Errorf("%w: %s request without a CSR", ErrMalformed, r.Op)
		}
	case OpState:
	default:
		return nil, fmt.Errorf("%w: request op %q", ErrMalformed, r.Op)
	}
	return &SignedRequest{Request: r, Chain: chain}, nil
}

// Verifier checks messages signed by Embark: the signature, the chain to a
// trusted root and the responder identity. It is safe for concurrent use.
type Verifier struct {
	roots *x509.CertPool
	now   func() time.Time

	mu       sync.Mutex
	verified map[string]validity // leaf DER → validity of a chain verified before
}

// validity is the time span in which every certificate of a verified chain,
// leaf to root, is valid.
type validity struct{ notBefore, notAfter time.Time }

func (w validity) contains(t time.Time) bool { return !t.Before(w.notBefore) && t.Before(w.notAfter) }

// NewVerifier returns a Verifier trusting roots. now gives the time for
// certificate validity; nil means time.Now.
func NewVerifier(roots *x509.CertPool, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{roots: roots, now: now, verified: make(map[string]validity)}
}

// Response opens a response signed by Embark.
func (v *Verifier) Response(b []byte) (Response, error) {
	var r Response
	chain, err := open(b, TypeResponse, &r)
	if err != nil {
		return Response{}, err
	}
	if err := v.trusted(chain); err != nil {
		return Response{}, err
	}
	return r, nil
}

// Command opens a command document signed by Embark.
func (v *Verifier) Command(b []byte) (Command, error) {
	var c Command
	chain, err := open(b, TypeCommand, &c)
	if err != nil {
		return Command{}, err
	}
	if err := v.trusted(chain); err != nil {
		return Command{}, err
	}
	return c, nil
}

func (v *Verifier) trusted(chain []*x509.Certificate) error {
	leaf := chain[0]
	now := v.now()
	v.mu.Lock()
	w, ok := v.verified[string(leaf.Raw)]
	v.mu.Unlock()
	if ok && w.contains(now) {
		return nil
	}
	if !slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return u.String() == ResponderURI }) {
		return fmt.Errorf("%w: %s is not Embark's responder", ErrUntrustedSigner, leaf.Subject)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUntrustedSigner, err)
	}
	// Remember the chain only while all of its certificates are valid: an
	// intermediate may expire before the leaf does.
	w = validity{notBefore: leaf.NotBefore, notAfter: leaf.NotAfter}
	for _, c := range chains[0][1:] {
		if c.NotBefore.After(w.notBefore) {
			w.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(w.notAfter) {
			w.notAfter = c.NotAfter
		}
	}
	v.mu.Lock()
	if len(v.verified) > 64 {
		clear(v.verified)
	}
	v.verified[string(leaf.Raw)] = w
	v.mu.Unlock()
	return nil
}

// IsRefusal reports whether err is a refusal of the message itself (as
// opposed to an internal failure).
func IsRefusal(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrBadSignature) ||
		errors.Is(err, ErrUntrustedSigner) || errors.Is(err, ErrUnsupportedKey) || errors.Is(err, ErrTopic)
}
