package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInitCreates(t *testing.T) {
	tests := []struct {
		name     string
		opts     []Option
		wantRoot string
		wantInt  string
	}{
		{name: "ok/default name", wantRoot: "Embark Root CA", wantInt: "Embark Intermediate CA"},
		{name: "ok/custom name", opts: []Option{WithName("Acme")}, wantRoot: "Acme Root CA", wantInt: "Acme Intermediate CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, clk, dir := newTestCA(t, tt.opts...)

			if got := fileMode(t, dir); got != 0o700 {
				t.Errorf("dir mode %04o, want 0700", got)
			}
			for name, want := range map[string]os.FileMode{
				RootCertFile: 0o644, RootKeyFile: 0o600, IntermediateCertFile: 0o644, IntermediateKeyFile: 0o600,
			} {
				if got := fileMode(t, filepath.Join(dir, name)); got != want {
					t.Errorf("%s mode %04o, want %04o", name, got, want)
				}
			}

			root, inter := ca.Root(), ca.Intermediate()
			if root.Subject.CommonName != tt.wantRoot || inter.Subject.CommonName != tt.wantInt {
				t.Errorf("names %q, %q; want %q, %q", root.Subject.CommonName, inter.Subject.CommonName, tt.wantRoot, tt.wantInt)
			}
			for _, c := range []*x509.Certificate{root, inter} {
				k, ok := c.PublicKey.(*ecdsa.PublicKey)
				if !ok || k.Curve.Params().Name != "P-256" {
					t.Errorf("%s: key %T, want ECDSA P-256", c.Subject.CommonName, c.PublicKey)
				}
				if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
					t.Errorf("%s: not a CA certificate", c.Subject.CommonName)
				}
			}
			now := clk.Now()
			if !root.NotAfter.Equal(now.Add(RootLifetime)) || !inter.NotAfter.Equal(now.Add(IntermediateLifetime)) {
				t.Errorf("NotAfter root %s, intermediate %s; want %s, %s", root.NotAfter, inter.NotAfter,
					now.Add(RootLifetime), now.Add(IntermediateLifetime))
			}
			if !inter.MaxPathLenZero || inter.MaxPathLen != 0 {
				t.Errorf("intermediate path length not 0")
			}
			if err := inter.CheckSignatureFrom(root); err != nil {
				t.Errorf("intermediate not signed by root: %v", err)
			}
			chain := ca.Chain()
			if len(chain) != 2 || chain[0] != inter || chain[1] != root {
				t.Errorf("Chain() = %v, want [intermediate root]", chain)
			}
		})
	}
}

func TestInitLoadsExisting(t *testing.T) {
	first, clk, dir := newTestCA(t)
	before := snapshot(t, dir)
	clk.Advance(24 * time.Hour)

	second, err := Init(dir, WithClock(clk.Now))
	if err != nil {
		t.Fatalf("second Init: %v", err)
	}
	if !second.Root().Equal(first.Root()) || !second.Intermediate().Equal(first.Intermediate()) {
		t.Error("second Init did not load the same CA")
	}
	assertSnapshot(t, dir, before)
}

func TestInitRefusesPartialCA(t *testing.T) {
	_, clk, dir := newTestCA(t)
	if err := os.Remove(filepath.Join(dir, IntermediateCertFile)); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	_, err := Init(dir, WithClock(clk.Now))
	if !errors.Is(err, ErrIncompleteCA) {
		t.Fatalf("Init over a partial CA: %v, want ErrIncompleteCA", err)
	}
	if !strings.Contains(err.Error(), IntermediateCertFile) {
		t.Errorf("error %q does not name the missing file", err)
	}
	assertSnapshot(t, dir, before)
}

func TestInitTightensDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir); err != nil {
		t.Fatal(err)
	}
	if got := fileMode(t, dir); got != 0o700 {
		t.Errorf("dir mode %04o, want 0700", got)
	}
}

func TestLoad(t *testing.T) {
	// other is a second CA with the same names, whose files are swapped in.
	_, _, other := newTestCA(t)
	copyFile := func(t *testing.T, dir, name string) {
		b, err := os.ReadFile(filepath.Join(other, name))
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	writeKey := func(t *testing.T, dir, name string, block *pem.Block) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		advance time.Duration
		wantErr error
		wantMsg string // a substring the error must contain
	}{
		{name: "ok/complete"},
		{name: "ok/root key kept offline", prepare: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, RootKeyFile)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "ok/key 0400", prepare: func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, IntermediateKeyFile), 0o400); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "ok/SEC 1 EC key", prepare: func(t *testing.T, dir string) {
			s, err := parseKey(mustRead(t, filepath.Join(dir, IntermediateKeyFile)))
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalECPrivateKey(s.(*ecdsa.PrivateKey))
			if err != nil {
				t.Fatal(err)
			}
			writeKey(t, dir, IntermediateKeyFile, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
		}},
		{name: "fail/empty directory", prepare: func(t *testing.T, dir string) {
			for _, n := range []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile} {
				if err := os.Remove(filepath.Join(dir, n)); err != nil {
					t.Fatal(err)
				}
			}
		}, wantErr: ErrNoCA},
		{name: "fail/missing intermediate key", prepare: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, IntermediateKeyFile)); err != nil {
				t.Fatal(err)
			}
		}, wantErr: ErrIncompleteCA, wantMsg: IntermediateKeyFile},
		{name: "fail/missing root certificate", prepare: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, RootCertFile)); err != nil {
				t.Fatal(err)
			}
		}, wantErr: ErrIncompleteCA, wantMsg: RootCertFile},
		{name: "fail/world-readable intermediate key", prepare: func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, IntermediateKeyFile), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: ErrKeyPermissions, wantMsg: IntermediateKeyFile},
		{name: "fail/group-readable root key", prepare: func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, RootKeyFile), 0o640); err != nil {
				t.Fatal(err)
			}
		}, wantErr: ErrKeyPermissions, wantMsg: RootKeyFile},
		{name: "fail/intermediate key of another CA", prepare: func(t *testing.T, dir string) {
			copyFile(t, dir, IntermediateKeyFile)
		}, wantErr: ErrKeyMismatch, wantMsg: IntermediateKeyFile},
		{name: "fail/root key of another CA", prepare: func(t *testing.T, dir string) {
			copyFile(t, dir, RootKeyFile)
		}, wantErr: ErrKeyMismatch, wantMsg: RootKeyFile},
		{name: "fail/intermediate of another CA", prepare: func(t *testing.T, dir string) {
			copyFile(t, dir, IntermediateCertFile)
			copyFile(t, dir, IntermediateKeyFile)
		}, wantErr: ErrChainMismatch, wantMsg: IntermediateCertFile},
		{name: "fail/leaf as root", prepare: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, RootCertFile), mustRead(t, filepath.Join(dir, IntermediateCertFile)), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: ErrChainMismatch, wantMsg: RootCertFile},
		{name: "fail/garbage certificate", prepare: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, RootCertFile), []byte("not PEM"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: ErrMalformed, wantMsg: RootCertFile},
		{name: "fail/encrypted key", prepare: func(t *testing.T, dir string) {
			writeKey(t, dir, IntermediateKeyFile, &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}})
		}, wantErr: ErrMalformed, wantMsg: "encrypted"},
		{name: "fail/expired intermediate", advance: IntermediateLifetime + time.Hour, wantErr: ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, clk, dir := newTestCA(t)
			if tt.prepare != nil {
				tt.prepare(t, dir)
			}
			clk.Advance(tt.advance)
			before := snapshot(t, dir)

			ca, err := Load(dir, WithClock(clk.Now))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if _, err := ca.IssueLDevID(LDevIDRequest{PublicKey: &p256Key(t).PublicKey, DeviceID: "urn:dev:embark:acme:1", Lifetime: time.Hour}); err != nil {
					t.Errorf("loaded CA cannot issue: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Load: %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
			assertSnapshot(t, dir, before)
		})
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
	}{
		{"fail/nil clock", WithClock(nil)},
		{"fail/nil logger", WithLogger(nil)},
		{"fail/empty name", WithName("")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Init(dir, tt.opt); !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("Init: %v, want ErrInvalidOption", err)
			}
			assertSnapshot(t, dir, map[string]string{})
		})
	}
}

func TestNew(t *testing.T) {
	a, clk, _ := newTestCA(t)
	b, _, _ := newTestCA(t)
	tests := []struct {
		name    string
		chain   []*x509.Certificate
		noSvc   bool
		wantErr error
	}{
		{name: "ok/intermediate and root", chain: a.Chain()},
		{name: "fail/no service", chain: a.Chain(), noSvc: true, wantErr: ErrInvalidOption},
		{name: "fail/root only", chain: []*x509.Certificate{a.Root()}, wantErr: ErrChainMismatch},
		{name: "fail/intermediate of another root", chain: []*x509.Certificate{a.Intermediate(), b.Root()}, wantErr: ErrChainMismatch},
		{name: "fail/wrong order", chain: []*x509.Certificate{a.Root(), a.Intermediate()}, wantErr: ErrChainMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := a.Service()
			if tt.noSvc {
				svc = nil
			}
			ca, err := New(svc, tt.chain, WithClock(clk.Now))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New: %v, want %v", err, tt.wantErr)
			}
			if err == nil && !ca.Root().Equal(a.Root()) {
				t.Error("wrong root")
			}
		})
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
