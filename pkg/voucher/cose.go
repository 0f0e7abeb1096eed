package voucher

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

var (
	encMode, _ = cbor.CoreDetEncOptions().EncMode()
	decMode, _ = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		MaxNestedLevels:   6,
		MaxArrayElements:  16,
		MaxMapPairs:       16,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
)

// KeyID names a certificate's key in the kid header of a voucher: the
// first 16 bytes of the SHA-256 of its SubjectPublicKeyInfo.
func KeyID(c *x509.Certificate) []byte {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return sum[:16]
}

// SPKIHash is the SHA-256 of a certificate's SubjectPublicKeyInfo, as a
// pledge request names the registrar it saw (proximity-registrar-pubk-sha256).
func SPKIHash(c *x509.Certificate) []byte {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return sum[:]
}

// es256 returns a COSE signer for an ECDSA P-256 key whose certificate is
// cert.
func es256(key crypto.Signer, cert *x509.Certificate) (cose.Signer, error) {
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: %T: vouchers and requests are signed with ECDSA P-256 (ES256)", ErrUnsupportedKey, key.Public())
	}
	if cert != nil && !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: the key does not match the certificate %s", ErrUnsupportedKey, cert.Subject)
	}
	s, err := cose.NewSigner(cose.AlgorithmES256, key)
	if err != nil {
		return nil, fmt.Errorf("voucher: signer: %w", err)
	}
	return s, nil
}

// sign1 encodes payload and signs it as a tagged COSE_Sign1 with the given
// content type and either a kid or an x5chain.
func sign1(s cose.Signer, ctype string, kid []byte, chain [][]byte, payload any, limit int) ([]byte, error) {
	body, err := encMode.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("voucher: encode payload: %w", err)
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(s.Algorithm())
	msg.Headers.Protected[cose.HeaderLabelContentType] = ctype
	if kid != nil {
		msg.Headers.Protected[cose.HeaderLabelKeyID] = kid
	}
	switch len(chain) {
	case 0:
	case 1:
		msg.Headers.Protected[cose.HeaderLabelX5Chain] = chain[0]
	default:
		msg.Headers.Protected[cose.HeaderLabelX5Chain] = chain
	}
	msg.Payload = body
	if err := msg.Sign(rand.Reader, nil, s); err != nil {
		return nil, fmt.Errorf("voucher: sign: %w", err)
	}
	out, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("voucher: encode message: %w", err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(out), limit)
	}
	return out, nil
}

// decode1 decodes a COSE_Sign1 of content type ctype, without verifying it.
func decode1(b []byte, ctype string, limit int) (*cose.Sign1Message, error) {
	if len(b) > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), limit)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(b); err != nil {
		return nil, fmt.Errorf("%w: not a COSE_Sign1: %v", ErrMalformed, err)
	}
	if got, _ := msg.Headers.Protected[cose.HeaderLabelContentType].(string); got != ctype {
		return nil, fmt.Errorf("%w: content type %q, want %q", ErrMalformed, got, ctype)
	}
	alg, err := msg.Headers.Protected.Algorithm()
	if err != nil || alg != cose.AlgorithmES256 {
		return nil, fmt.Errorf("%w: algorithm %v, want ES256", ErrMalformed, alg)
	}
	return &msg, nil
}

// verify1 checks msg's signature with pub.
func verify1(msg *cose.Sign1Message, pub crypto.PublicKey) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
	}
	v, err := cose.NewVerifier(cose.AlgorithmES256, k)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if err := msg.Verify(nil, v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return nil
}

// openChained decodes a COSE_Sign1 that carries its signer's chain,
// verifies its signature with the leaf's key and decodes its payload into
// v. Whether the chain is trusted is the caller's business.
func openChained(b []byte, ctype string, limit int, v any) ([]*x509.Certificate, error) {
	msg, err := decode1(b, ctype, limit)
	if err != nil {
		return nil, err
	}
	chain, err := x5chain(msg.Headers.Protected[cose.HeaderLabelX5Chain])
	if err != nil {
		return nil, err
	}
	if err := verify1(msg, chain[0].PublicKey); err != nil {
		return nil, err
	}
	if err := decMode.Unmarshal(msg.Payload, v); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	return chain, nil
}

// MaxChain bounds the certificates of an x5chain or a proximity chain.
const MaxChain = 4

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
	return parseChain(ders, "x5chain")
}

func parseChain(ders [][]byte, what string) ([]*x509.Certificate, error) {
	if len(ders) == 0 || len(ders) > MaxChain {
		return nil, fmt.Errorf("%w: %s of %d certificates, want 1..%d", ErrMalformed, what, len(ders), MaxChain)
	}
	chain := make([]*x509.Certificate, 0, len(ders))
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

func raws(chain []*x509.Certificate) [][]byte {
	out := make([][]byte, len(chain))
	for i, c := range chain {
		out[i] = c.Raw
	}
	return out
}

// unixTime converts a time to wire seconds (0 for the zero time).
func unixTime(t int64) uint64 {
	if t <= 0 {
		return 0
	}
	return uint64(t)
}

func equalBytes(a, b []byte) bool { return bytes.Equal(a, b) }
