package registrar

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
	"github.com/embark-iot/embark/pkg/voucher"
)

var serials atomic.Int64

func mkCert(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serials.Add(1))
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0)
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

func ca(t *testing.T, cn string, parent *x509.Certificate, key *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	return mkCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, KeyUsage: x509.KeyUsageCertSign}, parent, key)
}

// world is a manufacturer (root, IDevID CA, voucher signer, hybrid
// manifest key), a device, and an Embark domain (root, intermediate,
// server and registrar certificates) with its registry.
type world struct {
	mfrRoot     *x509.Certificate
	mfrKey      *ecdsa.PrivateKey
	voucherKey  *ecdsa.PrivateKey
	anchor      *x509.Certificate
	manifestKey *hybridsig.PrivateKey
	device      *x509.Certificate
	deviceKey   *ecdsa.PrivateKey

	root      *x509.Certificate
	inter     *x509.Certificate
	interKey  *ecdsa.PrivateKey
	server    []*x509.Certificate
	registrar tls.Certificate
	owner     *owner.Identity
	db        *bolt.DB
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{}
	w.mfrRoot, w.mfrKey = ca(t, "acme root", nil, nil)
	w.anchor, w.voucherKey = mkCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "acme voucher signer"}, KeyUsage: x509.KeyUsageDigitalSignature}, w.mfrRoot, w.mfrKey)
	var err error
	if w.manifestKey, err = hybridsig.GenerateKey(nil); err != nil {
		t.Fatal(err)
	}
	w.device, w.deviceKey = mkCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "ACME-000001", SerialNumber: "ACME-000001"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, w.mfrRoot, w.mfrKey)
	var rootKey *ecdsa.PrivateKey
	w.root, rootKey = ca(t, "embark root", nil, nil)
	w.inter, w.interKey = ca(t, "embark intermediate", w.root, rootKey)
	srv, _ := mkCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, w.inter, w.interKey)
	w.server = []*x509.Certificate{srv, w.inter}
	dir := t.TempDir()
	issue := func(tmpl *x509.Certificate, lifetime time.Duration) (*x509.Certificate, []*x509.Certificate, error) {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(lifetime)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, w.inter, tmpl.PublicKey, w.interKey)
		if err != nil {
			return nil, nil, err
		}
		c, err := x509.ParseCertificate(der)
		return c, []*x509.Certificate{w.inter}, err
	}
	if w.registrar, err = Certificate(filepath.Join(dir, "registrar"), "op", w.inter, issue, time.Now()); err != nil {
		t.Fatal(err)
	}
	if w.owner, err = owner.Init(dir, "op"); err != nil {
		t.Fatal(err)
	}
	if w.db, err = bolt.Open(filepath.Join(dir, "registry.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.db.Close() })
	err = w.db.Update(context.Background(), func(tx store.Tx) error {
		return tx.PutManufacturer(device.Manufacturer{Name: "acme", Roots: [][]byte{w.mfrRoot.Raw},
			ManifestKeys: [][]byte{w.manifestKey.Public().Bytes()}, TrustedAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// identifier is the core's Identify as far as the registrar cares: the
// device's IDevID names acme:<serial>; anything else is untrusted.
type identifier struct{ w *world }

func (i identifier) Identify(_ context.Context, chain []*x509.Certificate) (onboard.Identity, error) {
	if chain[0].CheckSignatureFrom(i.w.mfrRoot) != nil {
		return onboard.Identity{}, &onboard.Error{Reason: onboard.ReasonUntrustedChain, Msg: "not an acme IDevID"}
	}
	return onboard.Identity{DeviceID: device.ID("acme", chain[0].Subject.SerialNumber), Credential: onboard.CredIDevID}, nil
}

func (w *world) registrarOf(t *testing.T, opts ...func(*Config)) *Registrar {
	t.Helper()
	cfg := Config{Store: w.db, Core: identifier{w}, Owner: w.owner, DomainCA: func() *x509.Certificate { return w.root },
		Certificate: w.registrar, Proximity: func() [][]*x509.Certificate { return [][]*x509.Certificate{w.server} },
		Timeout: 5 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// pledge is the device's voucher request as seen through the registrar.
func (w *world) pledge(t *testing.T, nonce []byte) []byte {
	t.Helper()
	s, err := voucher.NewRequestSigner(w.deviceKey, []*x509.Certificate{w.device})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.SignPledgeRequest(voucher.PledgeRequest{SerialNumber: "ACME-000001", Nonce: nonce, ProximityRegistrar: voucher.SPKIHash(w.server[0])})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeMASA answers requests with what answer makes of them.
type fakeMASA struct {
	url      string
	requests atomic.Int64
}

func (w *world) startMASA(t *testing.T, groups []tls.CurveID, answer func(t *testing.T, sr *voucher.SignedRegistrarRequest, body []byte) (int, []byte)) *fakeMASA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serials.Add(1)), Subject: pkix.Name{CommonName: "acme MASA"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, w.mfrRoot, &key.PublicKey, w.mfrKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := voucher.ServerTLSConfig(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil)
	if groups != nil {
		cfg.CurvePreferences, cfg.VerifyConnection = groups, nil
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	fm := &fakeMASA{url: "https://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fm.requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		var sr *voucher.SignedRegistrarRequest
		if r.URL.Path == voucher.PathMASARequestVoucher {
			sr, _ = voucher.OpenRegistrarRequest(body)
		}
		code, out := answer(t, sr, body)
		rw.WriteHeader(code)
		_, _ = rw.Write(out)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return fm
}

// vouch is what a genuine MASA answers: a voucher for the request,
// pinning pinned, countersigned by key.
func (w *world) vouch(t *testing.T, sr *voucher.SignedRegistrarRequest, edit func(v *voucher.Voucher), key *hybridsig.PrivateKey) []byte {
	t.Helper()
	s, err := voucher.NewSigner(w.voucherKey, w.anchor)
	if err != nil {
		t.Fatal(err)
	}
	v := voucher.Voucher{Assertion: voucher.AssertionVerified, SerialNumber: sr.SerialNumber, Nonce: sr.Nonce, PinnedDomainCert: w.root.Raw,
		CreatedOn: time.Now().Truncate(time.Second)}
	if len(sr.Nonce) == 0 {
		v.ExpiresOn = sr.ExpiresOn.Truncate(time.Second)
	}
	if edit != nil {
		edit(&v)
	}
	b, err := s.Sign(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := voucher.Countersign(key, b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
