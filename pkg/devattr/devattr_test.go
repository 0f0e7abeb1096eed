package devattr

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func csrWith(t *testing.T, exts []pkix.Extension) *x509.CertificateRequest {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}, ExtraExtensions: exts}, k)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestRoundTrip(t *testing.T) {
	want := Reported{FirmwareVersion: "1.4.2", FirmwareSHA256: strings.Repeat("ab", 32)}
	exts, err := Extensions(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromCSR(csrWith(t, exts))
	if err != nil || got != want {
		t.Fatalf("FromCSR = %+v, %v; want %+v", got, err, want)
	}
	// The encoding documented for openssl.
	if hex.EncodeToString(exts[0].Value) != "30070405312e342e32" {
		t.Fatalf("version DER = %x", exts[0].Value)
	}
	if got, err := FromCSR(csrWith(t, nil)); err != nil || !got.Empty() {
		t.Fatalf("nothing reported: %+v, %v", got, err)
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name string
		ext  pkix.Extension
	}{
		{"fail/version-not-der", pkix.Extension{Id: OIDFirmwareVersion, Value: []byte{0x30, 0x05, 0x01}}},
		{"fail/version-empty", pkix.Extension{Id: OIDFirmwareVersion, Value: []byte{0x30, 0x02, 0x04, 0x00}}},
		{"fail/digest-short", pkix.Extension{Id: OIDFirmwareSHA256, Value: mustDER(t, packageDigest{Algorithm: algorithmIdentifier{oidSHA256}, Digest: []byte{1, 2}})}},
		{"fail/digest-sha1", pkix.Extension{Id: OIDFirmwareSHA256, Value: mustDER(t, packageDigest{Algorithm: algorithmIdentifier{[]int{1, 3, 14, 3, 2, 26}}, Digest: make([]byte, 32)})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := FromCSR(csrWith(t, []pkix.Extension{tt.ext})); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
	if _, err := Extensions(Reported{FirmwareSHA256: "zz"}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad digest hex: %v", err)
	}
}

func mustDER(t *testing.T, v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
