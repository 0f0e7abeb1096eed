package mqttwire

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// COSE labels and algorithm identifiers, spelled out so that hand-built
// messages do not borrow them from the code under test.
const (
	labelAlg         = 1
	labelContentType = 3
	labelX5Chain     = 33

	algES256 = -7
	algES384 = -35
	algEdDSA = -8
)

// rawSign1 hand-builds a COSE_Sign1 with the test's own encoder, so that
// tests can make messages the Signer refuses to make: other algorithms than
// the key's, headers missing or doubled, payloads that are not the wire
// format's.
type rawSign1 struct {
	// protected is the protected header map; protectedRaw, when set,
	// replaces its encoding.
	protected    map[int]any
	protectedRaw []byte
	unprotected  map[int]any
	payload      []byte
	// alg picks the hash and signature encoding; key signs.
	alg int
	key crypto.Signer
	// untagged leaves out tag 18; tag, when non-zero, replaces it.
	untagged bool
	tag      uint64
}

func mustCBOR(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := b.Marshal(v)
	if err != nil {
		tb.Fatalf("cbor: %v", err)
	}
	return out
}

// sign1Signature signs the Sig_structure of RFC 9052 §4.4 and returns the
// COSE signature: raw r||s for ECDSA, the plain signature for EdDSA.
func sign1Signature(tb testing.TB, alg int, key crypto.Signer, protected, payload []byte) []byte {
	tb.Helper()
	tbs := mustCBOR(tb, []any{"Signature1", protected, []byte{}, payload})
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		var digest []byte
		switch alg {
		case algES256:
			d := sha256.Sum256(tbs)
			digest = d[:]
		case algES384:
			d := sha512.Sum384(tbs)
			digest = d[:]
		default:
			tb.Fatalf("rawSign1: algorithm %d with an ECDSA key", alg)
		}
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			tb.Fatal(err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig := make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
		return sig
	case ed25519.PrivateKey:
		return ed25519.Sign(k, tbs)
	}
	tb.Fatalf("rawSign1: key %T", key)
	return nil
}

func (m rawSign1) bytes(tb testing.TB) []byte {
	tb.Helper()
	prot := m.protectedRaw
	if prot == nil {
		prot = mustCBOR(tb, m.protected)
	}
	unprot := m.unprotected
	if unprot == nil {
		unprot = map[int]any{}
	}
	sig := sign1Signature(tb, m.alg, m.key, prot, m.payload)
	body := []any{prot, unprot, m.payload, sig}
	if m.untagged {
		return mustCBOR(tb, body)
	}
	tag := m.tag
	if tag == 0 {
		tag = 18
	}
	return mustCBOR(tb, cbor.Tag{Number: tag, Content: body})
}

// header returns a protected header of content type ctype with alg and the
// given x5chain (omitted when nil).
func header(alg int, ctype string, x5chain any) map[int]any {
	h := map[int]any{labelAlg: alg, labelContentType: ctype}
	if x5chain != nil {
		h[labelX5Chain] = x5chain
	}
	return h
}
