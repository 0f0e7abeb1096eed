package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
)

// testEpoch is a whole second: certificates carry seconds only.
var testEpoch = time.Date(2031, 3, 14, 15, 9, 26, 0, time.UTC)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: testEpoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newTestCA creates a CA in a fresh directory with a fake clock.
func newTestCA(t testing.TB, opts ...Option) (*CA, *fakeClock, string) {
	t.Helper()
	clk := newFakeClock()
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := Init(dir, append([]Option{WithClock(clk.Now)}, opts...)...)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return ca, clk, dir
}

// countingService counts the requests that reach the CA service.
type countingService struct {
	apiv1.CertificateAuthorityService
	creates atomic.Int64
}

func (s *countingService) CreateCertificate(req *apiv1.CreateCertificateRequest) (*apiv1.CreateCertificateResponse, error) {
	s.creates.Add(1)
	return s.CertificateAuthorityService.CreateCertificate(req)
}

// countingCA wraps the service of a fresh CA so tests can see whether a
// request reached it.
func countingCA(t testing.TB, opts ...Option) (*CA, *countingService, *fakeClock) {
	t.Helper()
	base, clk, _ := newTestCA(t)
	svc := &countingService{CertificateAuthorityService: base.Service()}
	ca, err := New(svc, base.Chain(), append([]Option{WithClock(clk.Now)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return ca, svc, clk
}

func p256Key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func publicKey(t testing.TB, kind string) crypto.PublicKey {
	t.Helper()
	switch kind {
	case "p256":
		return &p256Key(t).PublicKey
	case "p384", "p224", "p521":
		curve := map[string]elliptic.Curve{"p384": elliptic.P384(), "p224": elliptic.P224(), "p521": elliptic.P521()}[kind]
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &k.PublicKey
	case "ed25519":
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return pub
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return &k.PublicKey
	}
	t.Fatalf("unknown key kind %q", kind)
	return nil
}

// snapshot records every file of dir with its mode, to show that a failed
// call changed nothing.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fi.Mode().String() + ":" + string(b)
	}
	return out
}

func assertSnapshot(t testing.TB, dir string, want map[string]string) {
	t.Helper()
	got := snapshot(t, dir)
	if len(got) != len(want) {
		t.Fatalf("directory has %d files, want %d", len(got), len(want))
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s changed", name)
		}
	}
}

func fileMode(t testing.TB, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func verifyClientChain(t testing.TB, ca *CA, leaf *x509.Certificate, now time.Time) {
	t.Helper()
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(ca.Root())
	inters.AddCert(ca.Intermediate())
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inters,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Fatalf("x509 Verify: %v", err)
	}
}
