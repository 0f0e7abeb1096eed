package hybridsig

import (
	"crypto/rand"
	"testing"
)

func BenchmarkGenerateKey(b *testing.B) {
	for b.Loop() {
		if _, err := GenerateKey(rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	k := mustKey(b)
	msg := make([]byte, 1024)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := k.Sign(rand.Reader, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k := mustKey(b)
	msg := make([]byte, 1024)
	sig := mustSign(b, k, msg, nil)
	pub := k.Public()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := pub.Verify(msg, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePublicKey(b *testing.B) {
	raw := mustKey(b).Public().Bytes()
	for b.Loop() {
		if _, err := ParsePublicKey(raw); err != nil {
			b.Fatal(err)
		}
	}
}
