package onboard

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
)

func csrDER(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "ACME-000001"},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func isLowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// FuzzParseCSR feeds arbitrary bytes to parseCSR: it must never panic; a
// CSR it accepts has a verified signature, an allowed key and the 64-digit
// fingerprint of its key; a refusal is an *Error with one of the CSR reasons
// and no CSR.
func FuzzParseCSR(f *testing.F) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	valid := csrDER(f, p256)
	badSig := bytes.Clone(valid)
	badSig[len(badSig)-1] ^= 0x01
	f.Add(valid)
	f.Add(csrDER(f, ed))
	f.Add(csrDER(f, p224))
	f.Add(badSig)
	f.Add(valid[:len(valid)/2])
	f.Add(valid[:len(valid)-1])
	f.Add([]byte{})
	f.Add([]byte("garbage, not DER"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add(append(bytes.Clone(valid), 0))
	f.Add(make([]byte, MaxCSRSize+1))

	reasons := map[Reason]bool{ReasonMalformedCSR: true, ReasonPayloadTooLarge: true, ReasonUnsupportedKey: true, ReasonCSRSignature: true}
	f.Fuzz(func(t *testing.T, der []byte) {
		in := bytes.Clone(der)
		csr, fp, err := parseCSR(der)
		if !bytes.Equal(in, der) {
			t.Fatal("parseCSR changed its input")
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !reasons[e.Reason] {
				t.Fatalf("refusal %v (%T) is not an *Error with a CSR reason", err, err)
			}
			if csr != nil || fp != "" {
				t.Fatalf("refusal %v with CSR %v and fingerprint %q", err, csr != nil, fp)
			}
			return
		}
		if csr == nil || !isLowerHex64(fp) {
			t.Fatalf("accepted with CSR %v and fingerprint %q", csr != nil, fp)
		}
		if len(der) == 0 || len(der) > MaxCSRSize {
			t.Fatalf("accepted %d bytes", len(der))
		}
		if fp != keyFingerprint(csr.RawSubjectPublicKeyInfo) {
			t.Fatal("fingerprint is not that of the CSR's key")
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature does not verify: %v", err)
		}
		switch k := csr.PublicKey.(type) {
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
				t.Fatalf("accepted curve %s", k.Curve.Params().Name)
			}
		case ed25519.PublicKey:
		default:
			t.Fatalf("accepted a %T key", csr.PublicKey)
		}
	})
}

// TestParseCSRSeeds pins the answer for each kind of seed of FuzzParseCSR.
func TestParseCSRSeeds(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	valid := csrDER(t, p256)
	badSig := bytes.Clone(valid)
	badSig[len(badSig)-1] ^= 0x01
	tests := []struct {
		name string
		der  []byte
		want Reason // "" for accepted
	}{
		{name: "ok/P-256", der: valid},
		{name: "ok/P-384", der: csrDER(t, p384)},
		{name: "ok/Ed25519", der: csrDER(t, ed)},
		{name: "fail/P-224", der: csrDER(t, p224), want: ReasonUnsupportedKey},
		{name: "fail/signature", der: badSig, want: ReasonCSRSignature},
		{name: "fail/empty", der: nil, want: ReasonMalformedCSR},
		{name: "fail/garbage", der: []byte("garbage"), want: ReasonMalformedCSR},
		{name: "fail/truncated", der: valid[:len(valid)-1], want: ReasonMalformedCSR},
		{name: "fail/trailing byte", der: append(bytes.Clone(valid), 0), want: ReasonMalformedCSR},
		{name: "fail/too large", der: make([]byte, MaxCSRSize+1), want: ReasonPayloadTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, fp, err := parseCSR(tt.der)
			if got := ReasonOf(err); got != tt.want {
				t.Fatalf("reason %q (%v), want %q", got, err, tt.want)
			}
			if tt.want == "" && (csr == nil || fp != keyFingerprint(csr.RawSubjectPublicKeyInfo)) {
				t.Fatalf("accepted: CSR %v, fingerprint %q", csr != nil, fp)
			}
		})
	}
}
