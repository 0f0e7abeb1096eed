package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestServerCertificate(t *testing.T) {
	ca, clk, dir := newTestCA(t)
	ips := []net.IP{net.ParseIP("192.0.2.10"), net.IPv6loopback}
	c, err := ca.ServerCertificate([]string{"embark.example", "localhost"}, ips, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	if len(c.Certificate) != 2 || c.Leaf == nil || string(c.Certificate[0]) != string(c.Leaf.Raw) ||
		string(c.Certificate[1]) != string(ca.Intermediate().Raw) {
		t.Fatal("tls.Certificate is not [leaf, intermediate] with Leaf set")
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(ca.Root())
	inters.AddCert(ca.Intermediate())
	for _, name := range []string{"embark.example", "localhost", "192.0.2.10", "::1"} {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{
			DNSName: name, Roots: roots, Intermediates: inters, CurrentTime: clk.Now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if c.Leaf.IsCA {
		t.Error("server certificate is a CA")
	}
	if got := fileMode(t, filepath.Join(dir, ServerKeyFile)); got != 0o600 {
		t.Errorf("server.key mode %04o, want 0600", got)
	}
	if got := fileMode(t, filepath.Join(dir, ServerCertFile)); got != 0o644 {
		t.Errorf("server.crt mode %04o, want 0644", got)
	}
}

func TestServerCertificateReuse(t *testing.T) {
	const life = 30 * 24 * time.Hour
	names := []string{"embark.example", "localhost"}
	ips := []net.IP{net.ParseIP("192.0.2.10")}

	tests := []struct {
		name      string
		advance   time.Duration
		names     []string
		ips       []net.IP
		lifetime  time.Duration
		prepare   func(t *testing.T, dir string)
		wantReuse bool
	}{
		{name: "ok/reused at half its life", advance: life / 2, names: names, ips: ips, lifetime: life, wantReuse: true},
		{name: "ok/reused with names reordered and in other case", advance: time.Hour,
			names: []string{"LOCALHOST", "embark.example."}, ips: []net.IP{net.ParseIP("::ffff:192.0.2.10")}, lifetime: life, wantReuse: true},
		{name: "ok/reissued with a third of its life left", advance: life - life/3, names: names, ips: ips, lifetime: life},
		{name: "ok/reissued when expired", advance: life + time.Hour, names: names, ips: ips, lifetime: life},
		{name: "ok/reissued for another DNS name", advance: time.Hour, names: []string{"embark.example"}, ips: ips, lifetime: life},
		{name: "ok/reissued for another IP", advance: time.Hour, names: names, ips: []net.IP{net.ParseIP("192.0.2.11")}, lifetime: life},
		{name: "ok/reissued for a shorter lifetime", advance: time.Hour, names: names, ips: ips, lifetime: 24 * time.Hour},
		{name: "ok/reissued when the key is world-readable", advance: time.Hour, names: names, ips: ips, lifetime: life,
			prepare: func(t *testing.T, dir string) {
				if err := os.Chmod(filepath.Join(dir, ServerKeyFile), 0o644); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "ok/reissued when the key does not match", advance: time.Hour, names: names, ips: ips, lifetime: life,
			prepare: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, ServerKeyFile), mustRead(t, filepath.Join(dir, IntermediateKeyFile)), 0o600); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "ok/reissued when the certificate is garbage", advance: time.Hour, names: names, ips: ips, lifetime: life,
			prepare: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, ServerCertFile), []byte("garbage"), 0o644); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, clk, dir := newTestCA(t)
			first, err := mustLoad(t, dir, clk).ServerCertificate(names, ips, life)
			if err != nil {
				t.Fatal(err)
			}
			if tt.prepare != nil {
				tt.prepare(t, dir)
			}
			clk.Advance(tt.advance)

			// A restart: a new CA value on the same directory.
			ca := mustLoad(t, dir, clk)
			second, err := ca.ServerCertificate(tt.names, tt.ips, tt.lifetime)
			if err != nil {
				t.Fatal(err)
			}
			reused := second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0
			if reused != tt.wantReuse {
				t.Fatalf("reused = %v, want %v", reused, tt.wantReuse)
			}
			if len(second.Certificate) != 2 || second.Leaf == nil {
				t.Fatal("tls.Certificate is not [leaf, intermediate] with Leaf set")
			}
			if _, err := x509.ParseCertificate(second.Certificate[0]); err != nil {
				t.Fatal(err)
			}
			// What is on disk is what was returned, and the key is private.
			onDisk, err := readCertificate(filepath.Join(dir, ServerCertFile))
			if err != nil || !onDisk.Equal(second.Leaf) {
				t.Errorf("server.crt does not hold the returned certificate (%v)", err)
			}
			if _, err := readKey(filepath.Join(dir, ServerKeyFile), second.Leaf); err != nil {
				t.Errorf("server.key: %v", err)
			}
			// A third start at the same moment reuses what the second wrote.
			third, err := mustLoad(t, dir, clk).ServerCertificate(tt.names, tt.ips, tt.lifetime)
			if err != nil || third.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) != 0 {
				t.Errorf("third start did not reuse the certificate (%v)", err)
			}
		})
	}
}

func TestServerCertificateRefuses(t *testing.T) {
	tests := []struct {
		name     string
		names    []string
		ips      []net.IP
		lifetime time.Duration
		wantErr  error
	}{
		{name: "fail/no names", lifetime: time.Hour, wantErr: ErrNoSANs},
		{name: "fail/zero lifetime", names: []string{"embark.example"}, wantErr: ErrLifetime},
		{name: "fail/outlives the intermediate", names: []string{"embark.example"}, lifetime: IntermediateLifetime + time.Second, wantErr: ErrLifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, _, dir := newTestCA(t)
			before := snapshot(t, dir)
			if _, err := ca.ServerCertificate(tt.names, tt.ips, tt.lifetime); !errors.Is(err, tt.wantErr) {
				t.Fatalf("ServerCertificate: %v, want %v", err, tt.wantErr)
			}
			assertSnapshot(t, dir, before)
		})
	}
}

func TestServerCertificateWithoutDirectory(t *testing.T) {
	ca, _, _ := countingCA(t)
	a, err := ca.ServerCertificate([]string{"embark.example"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.ServerCertificate([]string{"embark.example"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if a.Leaf.SerialNumber.Cmp(b.Leaf.SerialNumber) == 0 {
		t.Error("a CA without a directory reused a certificate it cannot have stored")
	}
}

func mustLoad(t *testing.T, dir string, clk *fakeClock) *CA {
	t.Helper()
	ca, err := Load(dir, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
