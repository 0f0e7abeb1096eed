package mqttwire

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"time"
)

// testNow is the time every test certificate is valid at and every test
// Verifier runs at, so that no test depends on the wall clock.
var testNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

const testDevice = "urn:dev:embark:acme:SN-0001"

// issued is a key with its certificate chain, leaf first, the root left out.
type issued struct {
	key   crypto.Signer
	chain []*x509.Certificate
}

func (i issued) signer(tb testing.TB) *Signer {
	tb.Helper()
	s, err := NewSigner(i.key, i.chain)
	if err != nil {
		tb.Fatalf("NewSigner: %v", err)
	}
	return s
}

// ders returns the DER certificates of the chain.
func (i issued) ders() [][]byte {
	out := make([][]byte, 0, len(i.chain))
	for _, c := range i.chain {
		out = append(out, c.Raw)
	}
	return out
}

// testPKI is the set of test identities:
//
//	root ─ inter ─ responder        (URI SAN ResponderURI, P-256)
//	             ├ responderP384    (URI SAN ResponderURI, P-384)
//	             ├ responderEd      (URI SAN ResponderURI, Ed25519)
//	             ├ ldevid           (a device's LDevID: same root, no ResponderURI)
//	             └ shortResponder   (URI SAN ResponderURI, expires at testNow+1h)
//	root ─ responderDirect          (URI SAN ResponderURI, no intermediate)
//	root ─ shortInter ─ responderUnderShort  (the intermediate expires at testNow+30 days)
//	otherRoot ─ otherInter ─ otherResponder  (URI SAN ResponderURI, other root)
//	mfgRoot ─ mfgInter ─ device     (IDevID, P-256)
//	                   └ deviceEd   (IDevID, Ed25519)
type testPKI struct {
	root, otherRoot, mfgRoot *x509.Certificate

	responder, responderP384, responderEd issued
	ldevid, shortResponder                issued
	responderDirect, responderUnderShort  issued
	otherResponder                        issued
	device, deviceEd                      issued

	// stranger is a P-256 key no certificate names.
	stranger *ecdsa.PrivateKey
	// csr is a DER PKCS#10 request of the device key.
	csr []byte
}

func (p *testPKI) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.root)
	return pool
}

func (p *testPKI) verifier() *Verifier { return NewVerifier(p.roots(), fixedClock(testNow)) }

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
	pkiErr  error
)

// getPKI builds the test PKI once per test binary.
func getPKI(tb testing.TB) *testPKI {
	tb.Helper()
	pkiOnce.Do(func() { pkiVal, pkiErr = buildPKI() })
	if pkiErr != nil {
		tb.Fatalf("test PKI: %v", pkiErr)
	}
	return pkiVal
}

type certSpec struct {
	cn        string
	ca        bool
	uris      []string
	notBefore time.Time
	notAfter  time.Time
}

func makeCert(spec certSpec, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, error) {
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: spec.cn, Organization: []string{"Embark test"}},
		NotBefore:    spec.notBefore,
		NotAfter:     spec.notAfter,
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = testNow.Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = testNow.Add(365 * 24 * time.Hour)
	}
	if spec.ca {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, s := range spec.uris {
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", spec.cn, err)
	}
	return x509.ParseCertificate(der)
}

func p256() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

// newCA makes a CA certificate: self-signed when parent is nil.
func newCA(cn string, parent *x509.Certificate, parentKey crypto.Signer, notAfter time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := p256()
	if err != nil {
		return nil, nil, err
	}
	if parent == nil {
		parentKey = key
	}
	c, err := makeCert(certSpec{cn: cn, ca: true, notAfter: notAfter}, key.Public(), parent, parentKey)
	return c, key, err
}

// newLeaf makes an end-entity certificate for key; chain is the CA chain
// below the root, issuer first (empty when the root issues it).
func newLeaf(spec certSpec, key crypto.Signer, issuer *x509.Certificate, issuerKey crypto.Signer, chain ...*x509.Certificate) (issued, error) {
	c, err := makeCert(spec, key.Public(), issuer, issuerKey)
	if err != nil {
		return issued{}, err
	}
	return issued{key: key, chain: append([]*x509.Certificate{c}, chain...)}, nil
}

func buildPKI() (*testPKI, error) {
	p := &testPKI{}
	var err error
	must := func(e error) {
		if err == nil {
			err = e
		}
	}
	var rootKey, interKey, shortKey, otherRootKey, otherInterKey, mfgRootKey, mfgInterKey crypto.Signer
	var inter, shortInter, otherInter, mfgInter *x509.Certificate
	var e error
	p.root, rootKey, e = newCA("Embark test root", nil, nil, time.Time{})
	must(e)
	if err != nil {
		return nil, err
	}
	inter, interKey, e = newCA("Embark test intermediate", p.root, rootKey, time.Time{})
	must(e)
	shortInter, shortKey, e = newCA("Embark short-lived intermediate", p.root, rootKey, testNow.Add(30*24*time.Hour))
	must(e)
	p.otherRoot, otherRootKey, e = newCA("Other root", nil, nil, time.Time{})
	must(e)
	if err != nil {
		return nil, err
	}
	otherInter, otherInterKey, e = newCA("Other intermediate", p.otherRoot, otherRootKey, time.Time{})
	must(e)
	p.mfgRoot, mfgRootKey, e = newCA("Manufacturer root", nil, nil, time.Time{})
	must(e)
	if err != nil {
		return nil, err
	}
	mfgInter, mfgInterKey, e = newCA("Manufacturer intermediate", p.mfgRoot, mfgRootKey, time.Time{})
	must(e)
	if err != nil {
		return nil, err
	}

	leaf := func(dst *issued, spec certSpec, key crypto.Signer, issuer *x509.Certificate, issuerKey crypto.Signer, chain ...*x509.Certificate) {
		if err != nil {
			return
		}
		*dst, err = newLeaf(spec, key, issuer, issuerKey, chain...)
	}
	newKey := func() crypto.Signer {
		k, e := p256()
		must(e)
		return k
	}
	p384, e := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(e)
	_, edResp, e := ed25519.GenerateKey(rand.Reader)
	must(e)
	_, edDev, e := ed25519.GenerateKey(rand.Reader)
	must(e)
	p.stranger, e = p256()
	must(e)
	if err != nil {
		return nil, err
	}

	resp := []string{ResponderURI}
	leaf(&p.responder, certSpec{cn: "Embark responder", uris: resp}, newKey(), inter, interKey, inter)
	leaf(&p.responderP384, certSpec{cn: "Embark responder P-384", uris: resp}, p384, inter, interKey, inter)
	leaf(&p.responderEd, certSpec{cn: "Embark responder Ed25519", uris: resp}, edResp, inter, interKey, inter)
	leaf(&p.ldevid, certSpec{cn: testDevice, uris: []string{testDevice}}, newKey(), inter, interKey, inter)
	leaf(&p.shortResponder, certSpec{cn: "Embark short responder", uris: resp, notAfter: testNow.Add(time.Hour)},
		newKey(), inter, interKey, inter)
	leaf(&p.responderDirect, certSpec{cn: "Embark direct responder", uris: resp}, newKey(), p.root, rootKey)
	leaf(&p.responderUnderShort, certSpec{cn: "Embark responder under short intermediate", uris: resp,
		notAfter: testNow.Add(10 * 365 * 24 * time.Hour)}, newKey(), shortInter, shortKey, shortInter)
	leaf(&p.otherResponder, certSpec{cn: "Other responder", uris: resp}, newKey(), otherInter, otherInterKey, otherInter)
	leaf(&p.device, certSpec{cn: "SN-0001", uris: []string{testDevice}}, newKey(), mfgInter, mfgInterKey, mfgInter)
	leaf(&p.deviceEd, certSpec{cn: "SN-0002", uris: []string{testDevice}}, edDev, mfgInter, mfgInterKey, mfgInter)
	if err != nil {
		return nil, err
	}
	p.csr, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "SN-0001"},
	}, p.device.key)
	if err != nil {
		return nil, err
	}
	return p, nil
}
