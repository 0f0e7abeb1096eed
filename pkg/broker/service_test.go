package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadOrCreateService(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func(at time.Time) ServiceOption { return WithServiceClock(func() time.Time { return at }) }

	t.Run("ok/creates CA and client certificate", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "svc")
		s, err := LoadOrCreateService(dir, "embark", clock(t0))
		if err != nil {
			t.Fatal(err)
		}
		ca, leaf := s.CA, s.Cert.Leaf
		if !ca.IsCA || !ca.MaxPathLenZero || ca.MaxPathLen != 0 || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
			t.Errorf("CA constraints: IsCA=%v MaxPathLen=%d", ca.IsCA, ca.MaxPathLen)
		}
		if got := ca.NotAfter.Sub(t0); got < 3649*24*time.Hour || got > 3651*24*time.Hour {
			t.Errorf("CA lifetime %v", got)
		}
		if pub, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
			t.Errorf("CA key %T", ca.PublicKey)
		}
		if leaf.Subject.CommonName != "embark" || len(leaf.URIs) != 1 || leaf.URIs[0].String() != "urn:embark:service:embark" {
			t.Errorf("leaf names: CN %q URIs %v", leaf.Subject.CommonName, leaf.URIs)
		}
		if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || leaf.IsCA {
			t.Errorf("leaf usage %v IsCA=%v", leaf.ExtKeyUsage, leaf.IsCA)
		}
		if got := leaf.NotAfter.Sub(t0); got != 365*24*time.Hour {
			t.Errorf("leaf lifetime %v", got)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("leaf does not verify: %v", err)
		}
		for name, mode := range map[string]os.FileMode{ServiceCAKeyFile: 0o600, ServiceKeyFile: 0o600, ServiceCACertFile: 0o644, ServiceCertFile: 0o644, ".": 0o700} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != mode {
				t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
			}
		}
	})

	t.Run("ok/reuses what exists", func(t *testing.T) {
		dir := t.TempDir()
		a, err := LoadOrCreateService(dir, "embark", clock(t0))
		if err != nil {
			t.Fatal(err)
		}
		b, err := LoadOrCreateService(dir, "embark", clock(t0.Add(300*24*time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		if !a.CA.Equal(b.CA) || !a.Cert.Leaf.Equal(b.Cert.Leaf) {
			t.Fatal("second call issued new certificates")
		}
	})

	t.Run("ok/renews the client certificate with less than 30 days left", func(t *testing.T) {
		dir := t.TempDir()
		a, err := LoadOrCreateService(dir, "embark", clock(t0))
		if err != nil {
			t.Fatal(err)
		}
		later := a.Cert.Leaf.NotAfter.Add(-29 * 24 * time.Hour)
		b, err := LoadOrCreateService(dir, "embark", clock(later))
		if err != nil {
			t.Fatal(err)
		}
		if !a.CA.Equal(b.CA) {
			t.Fatal("CA replaced")
		}
		if a.Cert.Leaf.SerialNumber.Cmp(b.Cert.Leaf.SerialNumber) == 0 || !b.Cert.Leaf.NotAfter.After(a.Cert.Leaf.NotAfter) {
			t.Fatal("client certificate not renewed")
		}
		if b.Cert.Leaf.CheckSignatureFrom(a.CA) != nil {
			t.Fatal("renewed certificate not issued by the CA")
		}
	})

	t.Run("ok/new name gets a new client certificate", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := LoadOrCreateService(dir, "embark", clock(t0)); err != nil {
			t.Fatal(err)
		}
		b, err := LoadOrCreateService(dir, "embark-2", clock(t0))
		if err != nil {
			t.Fatal(err)
		}
		if b.Cert.Leaf.Subject.CommonName != "embark-2" {
			t.Fatalf("CN %q", b.Cert.Leaf.Subject.CommonName)
		}
	})

	t.Run("fail/invalid name creates nothing", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "svc")
		for _, name := range []string{"", "Embark", "a b", "a/b", "-x"} {
			if _, err := LoadOrCreateService(dir, name); !errors.Is(err, ErrInvalidServiceName) {
				t.Fatalf("name %q: %v, want ErrInvalidServiceName", name, err)
			}
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("directory created: %v", err)
		}
	})

	t.Run("fail/corrupt CA is left alone", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := LoadOrCreateService(dir, "embark", clock(t0)); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, ServiceCACertFile)
		if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateService(dir, "embark", clock(t0)); !errors.Is(err, ErrServiceFiles) {
			t.Fatalf("%v, want ErrServiceFiles", err)
		}
		if b, _ := os.ReadFile(p); string(b) != "garbage" {
			t.Fatal("CA file replaced")
		}
	})

	t.Run("fail/CA key of another CA", func(t *testing.T) {
		dir, other := t.TempDir(), t.TempDir()
		for _, d := range []string{dir, other} {
			if _, err := LoadOrCreateService(d, "embark", clock(t0)); err != nil {
				t.Fatal(err)
			}
		}
		key, err := os.ReadFile(filepath.Join(other, ServiceCAKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ServiceCAKeyFile), key, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateService(dir, "embark", clock(t0)); !errors.Is(err, ErrServiceFiles) {
			t.Fatalf("%v, want ErrServiceFiles", err)
		}
	})

	t.Run("fail/expired CA", func(t *testing.T) {
		dir := t.TempDir()
		s, err := LoadOrCreateService(dir, "embark", clock(t0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateService(dir, "embark", clock(s.CA.NotAfter.Add(time.Hour))); !errors.Is(err, ErrServiceFiles) {
			t.Fatalf("%v, want ErrServiceFiles", err)
		}
	})

	t.Run("fail/nil clock", func(t *testing.T) {
		if _, err := LoadOrCreateService(t.TempDir(), "embark", WithServiceClock(nil)); !errors.Is(err, ErrInvalidOption) {
			t.Fatalf("%v, want ErrInvalidOption", err)
		}
	})
}

// TestServiceClientOnEmbeddedBroker connects with a service identity from
// LoadOrCreateService through an Authenticator that trusts its CA.
func TestServiceClientOnEmbeddedBroker(t *testing.T) {
	s, err := LoadOrCreateService(t.TempDir(), "embark")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) {
		c.Auth = AuthenticatorFunc(func(chain []*x509.Certificate) (Identity, error) {
			if err := chain[0].CheckSignatureFrom(s.CA); err != nil {
				return Identity{}, err
			}
			return Identity{Kind: KindService, ID: chain[0].Subject.CommonName}, nil
		})
	})
	c := e.mustDial(t, s.Cert, "embark")
	subscribe(t, c, "$share/embark/embark/v1/+/enroll")
	if n := e.b.Clients(); n != 1 {
		t.Fatalf("Clients() = %d", n)
	}
}
