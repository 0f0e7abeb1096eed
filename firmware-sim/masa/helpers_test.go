package masa

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/voucher"
)

var certSerial atomic.Int64

func mkCert(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(certSerial.Add(1))
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0)
	}
	tmpl.BasicConstraintsValid = true
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

// domain is an owner: its hybrid owner key and its CA with a registrar
// certificate and a server certificate.
type domain struct {
	name      string
	owner     *hybridsig.PrivateKey
	root      *x509.Certificate
	rootKey   *ecdsa.PrivateKey
	inter     *x509.Certificate
	interKey  *ecdsa.PrivateKey
	registrar tls.Certificate
	server    []*x509.Certificate
	serverKey *ecdsa.PrivateKey
}

func newDomain(t *testing.T, name string) *domain {
	t.Helper()
	d := &domain{name: name}
	var err error
	if d.owner, err = hybridsig.GenerateKey(nil); err != nil {
		t.Fatal(err)
	}
	d.root, d.rootKey = mkCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: name + " Root CA"}, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	d.inter, d.interKey = mkCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: name + " Intermediate"}, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign}, d.root, d.rootKey)
	d.registrar = d.issue(t, name+" registrar", true, x509.ExtKeyUsageClientAuth)
	srv, key := mkCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, d.inter, d.interKey)
	d.server, d.serverKey = []*x509.Certificate{srv, d.inter}, key
	return d
}

// issue makes a client certificate of the domain, a registrar's if ra.
func (d *domain) issue(t *testing.T, cn string, ra bool, eku ...x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: eku}
	if ra {
		tmpl.UnknownExtKeyUsage = append(tmpl.UnknownExtKeyUsage, voucher.OIDCmcRA)
	}
	c, k := mkCert(t, tmpl, d.inter, d.interKey)
	return tls.Certificate{Certificate: [][]byte{c.Raw, d.inter.Raw}, PrivateKey: k, Leaf: c}
}

func (d *domain) registration(t *testing.T, created time.Time) []byte {
	t.Helper()
	b, err := voucher.SignRegistration(d.owner, voucher.Registration{Owner: d.name, OwnerKey: d.owner.Public(), DomainCA: d.root, CreatedOn: created})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testMASA is a MASA on loopback over a factory directory holding devices
// sold to owner A (by key), one to owner B (by key) and one to "by-name"
// (without a key).
type testMASA struct {
	m       *MASA
	dir     string
	url     string
	roots   *x509.CertPool
	a, b    *domain
	devices map[string]factory.Device
	fw      *factory.Firmware
}

func newTestMASA(t *testing.T, opts ...func(*Options)) *testMASA {
	t.Helper()
	tm := &testMASA{dir: filepath.Join(t.TempDir(), "factory"), a: newDomain(t, "owner-a"), b: newDomain(t, "owner-b")}
	ctx := context.Background()
	for _, o := range []factory.Options{
		{Out: tm.dir, Count: 3, Owner: "owner-a", OwnerKey: tm.a.owner.Public().KeyID()},
		{Out: tm.dir, Count: 1, Owner: "owner-b", OwnerKey: tm.b.owner.Public().KeyID()},
		{Out: tm.dir, Count: 1, Owner: "by-name"},
	} {
		if _, err := factory.Run(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	devs, err := factory.ReadDevices(filepath.Join(tm.dir, factory.DevicesFile))
	if err != nil {
		t.Fatal(err)
	}
	tm.devices = map[string]factory.Device{}
	for _, d := range devs {
		tm.devices[d.Serial] = d
	}
	if tm.fw, err = factory.ReadFirmware(tm.dir); err != nil {
		t.Fatal(err)
	}
	o := Options{FactoryDir: tm.dir}
	for _, f := range opts {
		f(&o)
	}
	if tm.m, err = New(o); err != nil {
		t.Fatal(err)
	}
	if _, err := tm.m.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tm.m.Close(); err != nil {
			t.Error(err)
		}
	})
	tm.url = tm.m.URL()
	tm.roots = x509.NewCertPool()
	tm.roots.AddCert(tm.m.Root())
	return tm
}

// client is an HTTPS client of the MASA with cert (nil: none).
func (tm *testMASA) client(cert *tls.Certificate, edit func(*tls.Config)) *http.Client {
	cfg := voucher.ClientTLSConfig(cert, tm.roots, "127.0.0.1")
	if edit != nil {
		edit(cfg)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}
}

// post sends body to path and returns the status, the body and the
// refusal reason, if any.
func (tm *testMASA) post(t *testing.T, cl *http.Client, path, ctype string, body []byte) (int, []byte, string, http.Header) {
	t.Helper()
	resp, err := cl.Post(tm.url+path, ctype, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("post %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e errorBody
	if resp.StatusCode != http.StatusOK {
		_ = json.Unmarshal(b, &e)
	}
	return resp.StatusCode, b, e.Reason, resp.Header
}

func (tm *testMASA) register(t *testing.T, d *domain) {
	t.Helper()
	code, body, _, _ := tm.post(t, tm.client(&d.registrar, nil), voucher.PathMASARegister, voucher.MediaTypeRegistration, d.registration(t, time.Now()))
	if code != http.StatusOK {
		t.Fatalf("register %s: %d %s", d.name, code, body)
	}
}

// pledge signs a device's voucher request as seen through server.
func pledge(t *testing.T, dev factory.Device, serial string, nonce []byte, server *x509.Certificate) []byte {
	t.Helper()
	s, err := voucher.NewRequestSigner(dev.Key, dev.Chain[:1])
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.SignPledgeRequest(voucher.PledgeRequest{SerialNumber: serial, Nonce: nonce, ProximityRegistrar: voucher.SPKIHash(server)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// registrarRequest wraps a pledge request, signed with cert.
func registrarRequest(t *testing.T, cert tls.Certificate, r voucher.RegistrarRequest) []byte {
	t.Helper()
	chain := []*x509.Certificate{cert.Leaf}
	for _, der := range cert.Certificate[1:] {
		c, _ := x509.ParseCertificate(der)
		chain = append(chain, c)
	}
	s, err := voucher.NewRequestSigner(cert.PrivateKey.(*ecdsa.PrivateKey), chain)
	if err != nil {
		t.Fatal(err)
	}
	if r.CreatedOn.IsZero() {
		r.CreatedOn = time.Now()
	}
	b, err := s.SignRegistrarRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func raws(chain []*x509.Certificate) [][]byte {
	out := make([][]byte, len(chain))
	for i, c := range chain {
		out[i] = c.Raw
	}
	return out
}

func readKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}
