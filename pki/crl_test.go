package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
)

// foreignCRLService signs CRLs with another CA's service.
type foreignCRLService struct {
	apiv1.CertificateAuthorityService
	other apiv1.CertificateAuthorityCRLGenerator
}

func (s *foreignCRLService) CreateCRL(req *apiv1.CreateCRLRequest) (*apiv1.CreateCRLResponse, error) {
	return s.other.CreateCRL(req)
}

func TestCreateCRL(t *testing.T) {
	ca, clk, _ := newTestCA(t)
	now := clk.Now()
	entries := []x509.RevocationListEntry{
		{SerialNumber: big.NewInt(0x1234), RevocationTime: now.Add(-time.Hour), ReasonCode: 1},
		{SerialNumber: big.NewInt(0xabcdef), RevocationTime: now.Add(-2 * time.Hour), ReasonCode: 0},
		{SerialNumber: new(big.Int).Lsh(big.NewInt(1), 150), RevocationTime: now, ReasonCode: 4},
	}

	t.Run("ok/entries", func(t *testing.T) {
		der, err := ca.CreateCRL(entries, big.NewInt(42), now, now.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(ca.Intermediate()); err != nil {
			t.Fatalf("CheckSignatureFrom(intermediate): %v", err)
		}
		if crl.Number.Cmp(big.NewInt(42)) != 0 {
			t.Errorf("number %v, want 42", crl.Number)
		}
		if !crl.ThisUpdate.Equal(now) || !crl.NextUpdate.Equal(now.Add(24*time.Hour)) {
			t.Errorf("thisUpdate %v nextUpdate %v", crl.ThisUpdate, crl.NextUpdate)
		}
		if !bytes.Equal(crl.AuthorityKeyId, ca.Intermediate().SubjectKeyId) || len(crl.AuthorityKeyId) == 0 {
			t.Errorf("AKI %x, want intermediate SKI %x", crl.AuthorityKeyId, ca.Intermediate().SubjectKeyId)
		}
		if !bytes.Equal(crl.RawIssuer, ca.Intermediate().RawSubject) {
			t.Errorf("issuer %s, want %s", crl.Issuer, ca.Intermediate().Subject)
		}
		if len(crl.RevokedCertificateEntries) != len(entries) {
			t.Fatalf("%d entries, want %d", len(crl.RevokedCertificateEntries), len(entries))
		}
		for i, e := range crl.RevokedCertificateEntries {
			w := entries[i]
			if e.SerialNumber.Cmp(w.SerialNumber) != 0 || !e.RevocationTime.Equal(w.RevocationTime) || e.ReasonCode != w.ReasonCode {
				t.Errorf("entry %d = %v %v %d, want %v %v %d", i, e.SerialNumber, e.RevocationTime, e.ReasonCode,
					w.SerialNumber, w.RevocationTime, w.ReasonCode)
			}
		}
		if err := crl.CheckSignatureFrom(ca.Root()); err == nil {
			t.Error("CRL verifies against the root; it must be signed by the intermediate")
		}
		opensslVerifyCRL(t, ca, der, "1234", "Key Compromise", "Superseded")
	})

	t.Run("ok/empty", func(t *testing.T) {
		der, err := ca.CreateCRL(nil, big.NewInt(0), now, now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(ca.Intermediate()); err != nil {
			t.Fatal(err)
		}
		if len(crl.RevokedCertificateEntries) != 0 || crl.Number.Sign() != 0 {
			t.Errorf("entries %d number %v", len(crl.RevokedCertificateEntries), crl.Number)
		}
		opensslVerifyCRL(t, ca, der)
	})

	tooBig := new(big.Int).Lsh(big.NewInt(1), 160)
	fails := []struct {
		name       string
		entries    []x509.RevocationListEntry
		number     *big.Int
		this, next time.Time
	}{
		{"fail/nil-number", nil, nil, now, now.Add(time.Hour)},
		{"fail/negative-number", nil, big.NewInt(-1), now, now.Add(time.Hour)},
		{"fail/number-over-20-octets", nil, tooBig, now, now.Add(time.Hour)},
		{"fail/next-equals-this", nil, big.NewInt(1), now, now},
		{"fail/next-before-this", nil, big.NewInt(1), now, now.Add(-time.Second)},
		{"fail/zero-this", nil, big.NewInt(1), time.Time{}, now},
		{"fail/nil-serial", []x509.RevocationListEntry{{RevocationTime: now}}, big.NewInt(1), now, now.Add(time.Hour)},
		{"fail/zero-serial", []x509.RevocationListEntry{{SerialNumber: big.NewInt(0), RevocationTime: now}}, big.NewInt(1), now, now.Add(time.Hour)},
	}
	for _, tc := range fails {
		t.Run(tc.name, func(t *testing.T) {
			der, err := ca.CreateCRL(tc.entries, tc.number, tc.this, tc.next)
			if !errors.Is(err, ErrCRL) || der != nil {
				t.Fatalf("CreateCRL = %d bytes, %v; want ErrCRL", len(der), err)
			}
		})
	}

	t.Run("fail/service-without-crl", func(t *testing.T) {
		// countingService embeds only the service interface, so it does
		// not offer CreateCRL.
		wrapped, _, _ := countingCA(t)
		der, err := wrapped.CreateCRL(entries, big.NewInt(1), now, now.Add(time.Hour))
		if !errors.Is(err, ErrNoCRLSigner) || der != nil {
			t.Fatalf("CreateCRL = %d bytes, %v; want ErrNoCRLSigner", len(der), err)
		}
	})

	t.Run("fail/foreign-signer", func(t *testing.T) {
		other, _, _ := newTestCA(t)
		gen, ok := other.Service().(apiv1.CertificateAuthorityCRLGenerator)
		if !ok {
			t.Fatal("softcas does not implement CertificateAuthorityCRLGenerator")
		}
		wrong, err := New(&foreignCRLService{CertificateAuthorityService: ca.Service(), other: gen}, ca.Chain(), WithClock(clk.Now))
		if err != nil {
			t.Fatal(err)
		}
		der, err := wrong.CreateCRL(entries, big.NewInt(1), now, now.Add(time.Hour))
		if !errors.Is(err, ErrNoCRLSigner) || der != nil {
			t.Fatalf("CreateCRL = %d bytes, %v; want ErrNoCRLSigner", len(der), err)
		}
	})
}

// opensslVerifyCRL checks with openssl that der parses and verifies against
// the CA chain, and that its text shows each of want.
func opensslVerifyCRL(t *testing.T, ca *CA, der []byte, want ...string) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	crlPath, caPath := filepath.Join(dir, "crl.der"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(crlPath, der, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caPath, pemCert(ca.Intermediate(), ca.Root()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "crl", "-inform", "DER", "-in", crlPath, "-CAfile", caPath, "-noout", "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl did not verify the CRL:\n%s", out)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("openssl crl text lacks %q:\n%s", w, out)
		}
	}
}
