package voucher

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// testPKI is a manufacturer (root, IDevID CA, voucher signer), a device and
// an owner's domain (root, intermediate, server and registrar certificates).
type testPKI struct {
	now time.Time

	mfrRoot      *x509.Certificate
	mfrRootKey   *ecdsa.PrivateKey
	anchor       *x509.Certificate // voucher-signing certificate
	anchorKey    *ecdsa.PrivateKey
	idevidCA     *x509.Certificate
	idevidCAKey  *ecdsa.PrivateKey
	device       *x509.Certificate
	deviceKey    *ecdsa.PrivateKey
	domainRoot   *x509.Certificate
	domainKey    *ecdsa.PrivateKey
	domainInter  *x509.Certificate
	interKey     *ecdsa.PrivateKey
	server       *x509.Certificate
	serverKey    *ecdsa.PrivateKey
	registrar    *x509.Certificate
	registrarKey *ecdsa.PrivateKey
}

var serialCounter int64 = 100

func mkCert(t testing.TB, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serialCounter++
	tmpl.SerialNumber = big.NewInt(serialCounter)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func caTmpl(cn string, now time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
}

func leafTmpl(cn string, now time.Time, eku ...x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: eku, BasicConstraintsValid: true,
	}
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{now: time.Now().UTC().Truncate(time.Second)}
	p.mfrRoot, p.mfrRootKey = mkCert(t, caTmpl("acme Root CA", p.now), nil, nil)
	p.anchor, p.anchorKey = mkCert(t, leafTmpl("acme voucher signer", p.now), p.mfrRoot, p.mfrRootKey)
	p.idevidCA, p.idevidCAKey = mkCert(t, caTmpl("acme IDevID CA", p.now), p.mfrRoot, p.mfrRootKey)
	dev := leafTmpl("ACME-000001", p.now, x509.ExtKeyUsageClientAuth)
	dev.Subject.SerialNumber = "ACME-000001"
	p.device, p.deviceKey = mkCert(t, dev, p.idevidCA, p.idevidCAKey)
	p.domainRoot, p.domainKey = mkCert(t, caTmpl("owner Root CA", p.now), nil, nil)
	p.domainInter, p.interKey = mkCert(t, caTmpl("owner Intermediate CA", p.now), p.domainRoot, p.domainKey)
	srv := leafTmpl("localhost", p.now, x509.ExtKeyUsageServerAuth)
	srv.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	srv.DNSNames = []string{"localhost"}
	p.server, p.serverKey = mkCert(t, srv, p.domainInter, p.interKey)
	reg := leafTmpl("owner registrar", p.now, x509.ExtKeyUsageClientAuth)
	reg.UnknownExtKeyUsage = append(reg.UnknownExtKeyUsage, OIDCmcRA)
	p.registrar, p.registrarKey = mkCert(t, reg, p.domainInter, p.interKey)
	return p
}

func (p *testPKI) signer(t testing.TB) *Signer {
	t.Helper()
	s, err := NewSigner(p.anchorKey, p.anchor)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *testPKI) nonce() []byte { return []byte("0123456789abcdef") }

func (p *testPKI) voucher() Voucher {
	return Voucher{Assertion: AssertionVerified, SerialNumber: "ACME-000001", Nonce: p.nonce(),
		PinnedDomainCert: p.domainRoot.Raw, CreatedOn: p.now}
}

func (p *testPKI) pledgeRequest(t testing.TB) []byte {
	t.Helper()
	s, err := NewRequestSigner(p.deviceKey, []*x509.Certificate{p.device})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.SignPledgeRequest(PledgeRequest{SerialNumber: "ACME-000001", Nonce: p.nonce(), ProximityRegistrar: SPKIHash(p.server)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (p *testPKI) registrarSigner(t testing.TB) *RequestSigner {
	t.Helper()
	s, err := NewRequestSigner(p.registrarKey, []*x509.Certificate{p.registrar, p.domainInter})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
