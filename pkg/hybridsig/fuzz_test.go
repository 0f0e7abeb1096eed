package hybridsig

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzParsePublicKey(f *testing.F) {
	k := mustKey(f)
	raw := k.Public().Bytes()
	f.Add(raw)
	f.Add(raw[:len(raw)-1])
	f.Add(append(bytes.Clone(raw), 0))
	f.Add([]byte{})
	f.Add(MarshalPublicKeyPEM(k.Public()))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePublicKey(b)
		if err != nil {
			if p != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParsePublicKey = %v, %v", p, err)
			}
			return
		}
		if !bytes.Equal(p.Bytes(), b) {
			t.Fatal("accepted key does not re-encode to its input")
		}
		if _, err := ParsePublicKeyPEM(MarshalPublicKeyPEM(p)); err != nil {
			t.Fatalf("PEM round trip: %v", err)
		}
	})
}

// FuzzVerify feeds arbitrary signatures to Verify: it must never panic, never
// accept anything but a genuine signature, and classify every failure.
func FuzzVerify(f *testing.F) {
	k := mustKey(f)
	pub := k.Public()
	msg := []byte("fuzzed message")
	sig := mustSign(f, k, msg, nil)
	f.Add(sig)
	f.Add(sig[:len(sig)-1])
	f.Add(sig[:MLDSASignatureSize])
	f.Add(append(bytes.Clone(sig), 0))
	f.Add(sig[MLDSASignatureSize:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, s []byte) {
		err := pub.Verify(msg, s)
		if err == nil {
			// Only the genuine ML-DSA-65 component can verify; the ECDSA
			// component may differ (ECDSA signatures are malleable).
			if len(s) < MLDSASignatureSize || !bytes.Equal(s[:MLDSASignatureSize], sig[:MLDSASignatureSize]) {
				t.Fatalf("accepted a signature with another ML-DSA-65 component")
			}
			return
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMLDSA) && !errors.Is(err, ErrECDSA) {
			t.Fatalf("unclassified error: %v", err)
		}
		if errors.Is(err, ErrMalformed) && (errors.Is(err, ErrMLDSA) || errors.Is(err, ErrECDSA)) {
			t.Fatalf("malformed and evaluated: %v", err)
		}
	})
}
