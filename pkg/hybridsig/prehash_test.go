package hybridsig

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"testing"
)

func digestOf(msg []byte) []byte {
	sum := sha512.Sum512(msg)
	return sum[:]
}

func TestRepresentativeOfDigest(t *testing.T) {
	msg := []byte("a manifest too large to hold")
	for _, ctx := range [][]byte{nil, []byte("embark"), bytes.Repeat([]byte{7}, MaxContextSize)} {
		want, err := MessageRepresentative(msg, ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := representativeOfDigest(digestOf(msg), ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("context of %d bytes: M' from the digest differs from MessageRepresentative", len(ctx))
		}
	}
}

// NewMessageHash fed in pieces gives the digest of the whole message.
func TestNewMessageHash(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789"), 1000)
	h := NewMessageHash()
	for p := msg; len(p) > 0; {
		n := min(len(p), 333)
		h.Write(p[:n])
		p = p[n:]
	}
	if got := h.Sum(nil); !bytes.Equal(got, digestOf(msg)) || len(got) != DigestSize {
		t.Fatalf("streamed digest %x", got)
	}
}

// Signatures made from a digest verify over the message and the other way
// round, with and without a context.
func TestDigestInteroperates(t *testing.T) {
	k := mustKey(t)
	msg := []byte("DSSEv1 39 application/vnd.embark.manifest.v1+json 2 {}")
	for _, ctx := range [][]byte{nil, []byte("embark transfer")} {
		fromDigest, err := k.SignDigest(rand.Reader, digestOf(msg), ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Public().VerifyContext(msg, ctx, fromDigest); err != nil {
			t.Errorf("context %q: VerifyContext of a SignDigest signature: %v", ctx, err)
		}
		if err := k.Public().VerifyDigest(digestOf(msg), ctx, mustSign(t, k, msg, ctx)); err != nil {
			t.Errorf("context %q: VerifyDigest of a SignContext signature: %v", ctx, err)
		}
	}
}

// VerifyDigest refuses what VerifyContext refuses, with the same errors.
func TestVerifyDigestRefuses(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	msg, msg2 := []byte("manifest revision 7"), []byte("manifest revision 8")
	sig := mustSign(t, k, msg, nil)
	mlPart, ecPart := sig[:MLDSASignatureSize], sig[MLDSASignatureSize:]
	flipped := bytes.Clone(sig)
	flipped[100] ^= 0x01
	sentinels := []error{ErrMLDSA, ErrECDSA, ErrMalformed, ErrContextTooLong}
	tests := []struct {
		name string
		key  *PublicKey
		msg  []byte
		ctx  []byte
		sig  []byte
		want []error
	}{
		{name: "fail/bad ML-DSA half", key: k.Public(), msg: msg, sig: flipped, want: []error{ErrMLDSA}},
		{name: "fail/bad ECDSA half", key: k.Public(), msg: msg, sig: concat(mlPart, ecdsaOnly(t, other, msg)),
			want: []error{ErrECDSA}},
		{name: "fail/another message", key: k.Public(), msg: msg2, sig: sig, want: []error{ErrMLDSA, ErrECDSA}},
		{name: "fail/another key", key: other.Public(), msg: msg, sig: sig, want: []error{ErrMLDSA, ErrECDSA}},
		{name: "fail/another context", key: k.Public(), msg: msg, ctx: []byte("x"), sig: sig, want: []error{ErrMLDSA, ErrECDSA}},
		{name: "fail/context too long", key: k.Public(), msg: msg, ctx: make([]byte, 256), sig: sig,
			want: []error{ErrContextTooLong}},
		{name: "fail/truncated", key: k.Public(), msg: msg, sig: sig[:len(sig)-1], want: []error{ErrMalformed}},
		{name: "fail/only the ECDSA half", key: k.Public(), msg: msg, sig: ecPart, want: []error{ErrMalformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errDigest := tt.key.VerifyDigest(digestOf(tt.msg), tt.ctx, tt.sig)
			errMsg := tt.key.VerifyContext(tt.msg, tt.ctx, tt.sig)
			if errDigest == nil || errMsg == nil {
				t.Fatalf("accepted: VerifyDigest %v, VerifyContext %v", errDigest, errMsg)
			}
			for _, s := range sentinels {
				want := false
				for _, w := range tt.want {
					want = want || w == s
				}
				if got := errors.Is(errDigest, s); got != want {
					t.Errorf("VerifyDigest: errors.Is(%v) = %v, want %v; err: %v", s, got, want, errDigest)
				}
				if errors.Is(errMsg, s) != errors.Is(errDigest, s) {
					t.Errorf("VerifyContext and VerifyDigest disagree on %v: %v / %v", s, errMsg, errDigest)
				}
			}
		})
	}
}

func TestDigestSize(t *testing.T) {
	k := mustKey(t)
	msg := []byte("m")
	sig := mustSign(t, k, msg, nil)
	for _, n := range []int{0, DigestSize - 1, DigestSize + 1} {
		d := make([]byte, n)
		if err := k.Public().VerifyDigest(d, nil, sig); !errors.Is(err, ErrMalformed) {
			t.Errorf("VerifyDigest with a digest of %d bytes: %v, want ErrMalformed", n, err)
		}
		if s, err := k.SignDigest(rand.Reader, d, nil); !errors.Is(err, ErrMalformed) || s != nil {
			t.Errorf("SignDigest with a digest of %d bytes: %v, want ErrMalformed", n, err)
		}
	}
	var zero PublicKey
	if err := zero.VerifyDigest(digestOf(msg), nil, sig); !errors.Is(err, ErrMalformed) {
		t.Errorf("zero key: %v", err)
	}
}
