package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"
)

const testDevice = "urn:dev:embark:acme:ACME-000001"

func TestIssueLDevID(t *testing.T) {
	tests := []struct {
		name     string
		key      string
		cn       string
		lifetime time.Duration
		wantCN   string
	}{
		{name: "ok/P-256, common name defaults to the device", key: "p256", lifetime: 24 * time.Hour, wantCN: testDevice},
		{name: "ok/P-384", key: "p384", lifetime: time.Hour, wantCN: testDevice},
		{name: "ok/Ed25519", key: "ed25519", lifetime: 90 * 24 * time.Hour, wantCN: testDevice},
		{name: "ok/explicit common name", key: "p256", cn: "ACME-000001", lifetime: time.Hour, wantCN: "ACME-000001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, clk, _ := newTestCA(t)
			clk.Advance(3 * time.Hour)
			now := clk.Now()
			pub := publicKey(t, tt.key)

			c, err := ca.IssueLDevID(LDevIDRequest{PublicKey: pub, DeviceID: testDevice, CommonName: tt.cn, Lifetime: tt.lifetime})
			if err != nil {
				t.Fatalf("IssueLDevID: %v", err)
			}

			verifyClientChain(t, ca, c, now)
			if err := ca.VerifyLDevID(c, now); err != nil {
				t.Errorf("VerifyLDevID: %v", err)
			}
			if len(c.URIs) != 1 || c.URIs[0].String() != testDevice {
				t.Errorf("URIs %v, want [%s]", c.URIs, testDevice)
			}
			if id, ok := DeviceIDOf(c); !ok || id != testDevice {
				t.Errorf("DeviceIDOf = %q, %v", id, ok)
			}
			if got := c.Subject.String(); got != "CN="+tt.wantCN {
				t.Errorf("subject %q, want CN=%s", got, tt.wantCN)
			}
			if !c.NotBefore.Equal(now.Add(-time.Minute)) || !c.NotAfter.Equal(now.Add(tt.lifetime)) {
				t.Errorf("validity %s..%s, want %s..%s", c.NotBefore, c.NotAfter, now.Add(-time.Minute), now.Add(tt.lifetime))
			}
			if c.IsCA || !c.BasicConstraintsValid {
				t.Errorf("IsCA=%v BasicConstraintsValid=%v, want an end-entity certificate", c.IsCA, c.BasicConstraintsValid)
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("key usage %v, want digitalSignature", c.KeyUsage)
			}
			if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("extended key usage %v, want [clientAuth]", c.ExtKeyUsage)
			}
			if len(c.SubjectKeyId) == 0 || !slices.Equal(c.AuthorityKeyId, ca.Intermediate().SubjectKeyId) {
				t.Errorf("SKID %x, AKID %x (intermediate SKID %x)", c.SubjectKeyId, c.AuthorityKeyId, ca.Intermediate().SubjectKeyId)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 127 {
				t.Errorf("serial %x is not a positive 127-bit number", c.SerialNumber)
			}
			if !c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Error("certificate does not carry the requested key")
			}
			if len(c.Extensions) != 6 { // KU, EKU, BC, SKID, AKID, SAN: nothing else
				t.Errorf("%d extensions, want 6", len(c.Extensions))
			}
		})
	}
}

// The caller passes only the key of the CSR: whatever else the device asked
// for must not reach the certificate.
func TestIssueLDevIDIgnoresCSRSubject(t *testing.T) {
	ca, clk, _ := newTestCA(t)
	key := p256Key(t)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "admin", Organization: []string{"Embark"}},
		DNSNames:       []string{"embark.example"},
		IPAddresses:    []net.IP{net.IPv4(10, 0, 0, 1)},
		EmailAddresses: []string{"root@example.com"},
		URIs:           []*url.URL{{Scheme: "urn", Opaque: "dev:embark:acme:SOMEONE-ELSE"}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}

	c, err := ca.IssueLDevID(LDevIDRequest{PublicKey: csr.PublicKey, DeviceID: testDevice, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Subject.String(); got != "CN="+testDevice {
		t.Errorf("subject %q, want only the device", got)
	}
	if len(c.DNSNames)+len(c.IPAddresses)+len(c.EmailAddresses) != 0 || len(c.URIs) != 1 || c.URIs[0].String() != testDevice {
		t.Errorf("SANs dns=%v ip=%v email=%v uri=%v, want only %s", c.DNSNames, c.IPAddresses, c.EmailAddresses, c.URIs, testDevice)
	}
	verifyClientChain(t, ca, c, clk.Now())
}

func TestIssueLDevIDRefuses(t *testing.T) {
	tests := []struct {
		name     string
		key      string
		id       string
		lifetime time.Duration
		wantErr  error
	}{
		{name: "fail/RSA key", key: "rsa", wantErr: ErrKeyType},
		{name: "fail/P-224 key", key: "p224", wantErr: ErrKeyType},
		{name: "fail/P-521 key", key: "p521", wantErr: ErrKeyType},
		{name: "fail/no key", key: "none", wantErr: ErrKeyType},
		{name: "fail/empty device id", id: "-", wantErr: ErrDeviceID},
		{name: "fail/https URL", id: "https://acme.example/ACME-000001", wantErr: ErrDeviceID},
		{name: "fail/no namespace", id: "urn:ACME-000001", wantErr: ErrDeviceID},
		{name: "fail/short form", id: "acme:ACME-000001", wantErr: ErrDeviceID},
		{name: "fail/upper-case scheme", id: "URN:dev:embark:acme:ACME-000001", wantErr: ErrDeviceID},
		{name: "fail/space", id: "urn:dev:embark:acme:ACME 000001", wantErr: ErrDeviceID},
		{name: "fail/fragment", id: "urn:dev:embark:acme:ACME-000001#x", wantErr: ErrDeviceID},
		{name: "fail/query", id: "urn:dev:embark:acme:ACME-000001?x=1", wantErr: ErrDeviceID},
		{name: "fail/control character", id: "urn:dev:embark:acme:ACME\n000001", wantErr: ErrDeviceID},
		{name: "fail/zero lifetime", lifetime: -1, wantErr: ErrLifetime},
		{name: "fail/negative lifetime", lifetime: -time.Hour, wantErr: ErrLifetime},
		{name: "fail/outlives the intermediate", lifetime: IntermediateLifetime + time.Second, wantErr: ErrLifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, svc, _ := countingCA(t)
			req := LDevIDRequest{DeviceID: testDevice, Lifetime: time.Hour}
			switch tt.key {
			case "":
				req.PublicKey = &p256Key(t).PublicKey
			case "none":
			default:
				req.PublicKey = publicKey(t, tt.key)
			}
			switch tt.id {
			case "":
			case "-":
				req.DeviceID = ""
			default:
				req.DeviceID = tt.id
			}
			switch tt.lifetime {
			case 0:
			case -1:
				req.Lifetime = 0
			default:
				req.Lifetime = tt.lifetime
			}

			c, err := ca.IssueLDevID(req)
			if !errors.Is(err, tt.wantErr) || c != nil {
				t.Fatalf("IssueLDevID: certificate %v, error %v; want %v", c != nil, err, tt.wantErr)
			}
			if n := svc.creates.Load(); n != 0 {
				t.Errorf("refused request reached the CA service %d time(s)", n)
			}
		})
	}
}

func TestIssueLDevIDUniqueSerials(t *testing.T) {
	ca, _, _ := newTestCA(t)
	pub := &p256Key(t).PublicKey
	const workers, each = 4, 250
	var mu sync.Mutex
	seen := make(map[string]bool, workers*each)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				c, err := ca.IssueLDevID(LDevIDRequest{PublicKey: pub, DeviceID: testDevice, Lifetime: time.Hour})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				seen[c.SerialNumber.Text(16)] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != workers*each {
		t.Errorf("%d distinct serials in %d certificates", len(seen), workers*each)
	}
}

func BenchmarkIssueLDevID(b *testing.B) {
	for _, kind := range []string{"p256", "ed25519"} {
		b.Run(kind, func(b *testing.B) {
			ca, _, _ := newTestCA(b)
			pub := publicKey(b, kind)
			req := LDevIDRequest{PublicKey: pub, DeviceID: testDevice, Lifetime: 24 * time.Hour}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ca.IssueLDevID(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("p256/template", func(b *testing.B) {
		ca, _, _ := newTestCA(b, WithTemplate(stepLeafTemplate))
		req := LDevIDRequest{PublicKey: publicKey(b, "p256"), DeviceID: testDevice, Lifetime: 24 * time.Hour}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ca.IssueLDevID(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("p256/parallel", func(b *testing.B) {
		ca, _, _ := newTestCA(b)
		req := LDevIDRequest{PublicKey: publicKey(b, "p256"), DeviceID: testDevice, Lifetime: 24 * time.Hour}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ca.IssueLDevID(req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
