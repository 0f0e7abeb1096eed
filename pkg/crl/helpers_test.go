package crl

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
	"github.com/embark-iot/embark/pki"
)

var testEpoch = time.Date(2031, 3, 14, 15, 9, 26, 0, time.UTC)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

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

type env struct {
	st    store.Store
	path  string
	ca    *pki.CA
	clock *fakeClock
}

func newEnv(t testing.TB) *env {
	t.Helper()
	clk := &fakeClock{now: testEpoch}
	ca, err := pki.Init(filepath.Join(t.TempDir(), "ca"), pki.WithClock(clk.Now))
	if err != nil {
		t.Fatalf("pki.Init: %v", err)
	}
	e := &env{ca: ca, clock: clk, path: filepath.Join(t.TempDir(), "registry.db")}
	e.open(t)
	return e
}

// open (re)opens the registry, closing it at the end of the test.
func (e *env) open(t testing.TB) {
	t.Helper()
	st, err := bolt.Open(e.path)
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	e.st = st
	t.Cleanup(func() { _ = st.Close() })
}

func (e *env) publisher(t testing.TB, opts ...Option) *Publisher {
	t.Helper()
	p, err := New(e.st, e.ca, append([]Option{WithClock(e.clock.Now)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func (e *env) revoke(t testing.TB, serial string, notAfter time.Time, reason int) {
	t.Helper()
	if err := e.st.Update(context.Background(), func(tx store.Tx) error {
		return RecordRevocation(tx, serial, notAfter, e.clock.Now(), reason)
	}); err != nil {
		t.Fatalf("RecordRevocation(%s): %v", serial, err)
	}
}

// records returns every record of kind.
func (e *env) records(t testing.TB, kind string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := e.st.View(context.Background(), func(r store.Reader) error {
		return r.Records(kind, "", func(k string, v []byte) (bool, error) {
			out[k] = string(v)
			return true, nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// parse parses der and checks it is signed by the intermediate.
func (e *env) parse(t testing.TB, der []byte) *x509.RevocationList {
	t.Helper()
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("ParseRevocationList: %v", err)
	}
	if err := crl.CheckSignatureFrom(e.ca.Intermediate()); err != nil {
		t.Fatalf("CheckSignatureFrom(intermediate): %v", err)
	}
	return crl
}

// listed maps the serials of crl (hex) to their reason codes.
func listed(crl *x509.RevocationList) map[string]int {
	out := map[string]int{}
	for _, e := range crl.RevokedCertificateEntries {
		out[SerialHex(e.SerialNumber)] = e.ReasonCode
	}
	return out
}

// opensslVerify checks with openssl that der parses and verifies against the
// CA chain and that its text shows each of want.
func (e *env) opensslVerify(t *testing.T, der []byte, want ...string) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	var chain []byte
	for _, c := range e.ca.Chain() {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	crlPath, caPath := filepath.Join(dir, "crl.der"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(crlPath, der, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caPath, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "crl", "-inform", "DER", "-in", crlPath, "-CAfile", caPath, "-noout", "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl did not verify the CRL:\n%s", out)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("openssl text lacks %q:\n%s", w, out)
		}
	}
}
