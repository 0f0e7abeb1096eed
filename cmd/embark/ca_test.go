package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/server"
	"github.com/embark-iot/embark/pki"
)

func TestCACommands(t *testing.T) {
	tmp := t.TempDir()
	a := filepath.Join(tmp, "a")
	mustRun(t, "init", "--data", a)
	orig, err := pki.Load(filepath.Join(a, server.CADir))
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(tmp, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "ca", "backup-key", "--out", filepath.Join(keys, "offsite"))
	if !strings.HasPrefix(out, "wrote "+filepath.Join(keys, "offsite")+".key (keep it offline)") {
		t.Errorf("backup-key: %q", out)
	}
	mustRun(t, "ca", "backup-key", "--out", filepath.Join(keys, "other"))
	sealed := filepath.Join(tmp, "ca.sealed")
	out = mustRun(t, "ca", "backup", "--to", filepath.Join(keys, "offsite.pub"), "--out", sealed, "--data", a)
	if !strings.Contains(out, "sealed root.crt, root.key, intermediate.crt, intermediate.key of CA ") {
		t.Errorf("backup: %q", out)
	}
	raw, err := os.ReadFile(sealed)
	if err != nil {
		t.Fatal(err)
	}
	pubAsKey := filepath.Join(keys, "pub-as.key")
	if pub, err := os.ReadFile(filepath.Join(keys, "offsite.pub")); err != nil || os.WriteFile(pubAsKey, pub, 0o600) != nil {
		t.Fatal(err)
	}
	modified := filepath.Join(tmp, "modified.sealed")
	bad := append([]byte(nil), raw...)
	bad[len(bad)-40] ^= 0x01
	if err := os.WriteFile(modified, bad, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		args       []string
		code       int
		wantErrOut string
	}{
		{"fail/wrong key", []string{"ca", "restore", "--key", filepath.Join(keys, "other.key"), "--in", sealed}, 1,
			"sealed to another key: the backup is sealed to key "},
		{"fail/modified byte", []string{"ca", "restore", "--key", filepath.Join(keys, "offsite.key"), "--in", modified}, 1,
			"cannot open: the backup was modified or is not sealed to this key"},
		{"fail/public key given to restore", []string{"ca", "restore", "--key", pubAsKey, "--in", sealed}, 1,
			"malformed: PEM block \"EMBARK X-WING PUBLIC KEY\", want \"EMBARK X-WING PRIVATE KEY\""},
		{"fail/key pair exists", []string{"ca", "backup-key", "--out", filepath.Join(keys, "offsite")}, 1, "refusing to overwrite"},
		{"fail/backup over a file", []string{"ca", "backup", "--to", filepath.Join(keys, "offsite.pub"), "--out", sealed, "--data", a}, 1,
			"exists"},
		{"fail/restore without --in", []string{"ca", "restore", "--key", filepath.Join(keys, "offsite.key")}, 2, "usage: embark ca"},
		{"fail/backup with --in", []string{"ca", "backup", "--in", sealed}, 2, "ca backup does not take --in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := filepath.Join(tmp, "dest-"+strings.ReplaceAll(tt.name, "/", "-"))
			r := runCLI(t, append(tt.args, "--data", dest)...)
			if tt.code != r.code || !strings.Contains(r.errOut, tt.wantErrOut) {
				t.Fatalf("%v", r)
			}
			if _, err := os.Stat(dest); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("wrote into %s: %v", dest, err)
			}
		})
	}
	t.Run("fail/restore over the existing CA", func(t *testing.T) {
		r := runCLI(t, "ca", "restore", "--key", filepath.Join(keys, "offsite.key"), "--in", sealed, "--data", a)
		if r.code != 1 || !strings.Contains(r.errOut, "refusing to overwrite") {
			t.Fatalf("%v", r)
		}
		if ca, err := pki.Load(filepath.Join(a, server.CADir)); err != nil || !ca.Root().Equal(orig.Root()) {
			t.Fatalf("CA changed: %v", err)
		}
	})

	// Restore into a fresh data directory; init then keeps the CA.
	b := filepath.Join(tmp, "b")
	out = mustRun(t, "ca", "restore", "--key", filepath.Join(keys, "offsite.key"), "--in", sealed, "--data", b)
	if !strings.HasPrefix(out, "restored root.crt, root.key, intermediate.crt, intermediate.key into "+filepath.Join(b, server.CADir)) {
		t.Errorf("restore: %q", out)
	}
	mustRun(t, "init", "--data", b)
	restored, err := pki.Load(filepath.Join(b, server.CADir))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := restored.IssueLDevID(pki.LDevIDRequest{PublicKey: &key.PublicKey, DeviceID: "urn:dev:embark:acme:ACME-000042", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(orig.Root())
	inters.AddCert(restored.Intermediate())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("a certificate of the restored CA does not chain to the original root: %v", err)
	}
	if err := orig.VerifyLDevID(cert, time.Now()); err != nil {
		t.Fatalf("the original CA does not accept it: %v", err)
	}
}
