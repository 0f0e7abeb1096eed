package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	bbolt "go.etcd.io/bbolt"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/server"
	"github.com/embark-iot/embark/pkg/store"
)

// editRegistry changes the audit bucket of a closed registry file directly,
// as someone with write access to the data directory could.
func editRegistry(t *testing.T, path string, fn func(b *bbolt.Bucket) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error { return fn(tx.Bucket([]byte("audit"))) }); err != nil {
		t.Fatal(err)
	}
}

func auditKey(seq uint64) []byte {
	return []byte{0, 0, 0, 0, 0, 0, byte(seq >> 8), byte(seq)}
}

func TestAuditCommands(t *testing.T) {
	t.Setenv("USER", "grace")
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultConfig(data)
	cfg.CoAP.UDP, cfg.CoAP.TCP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.CoAP.BRSKI = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.HTTPS.Listen = "127.0.0.1:0"
	cfg.AdminSocket = filepath.Join(t.TempDir(), "a.sock")
	if err := config.Write(cfg); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	fdir, _ := mint(t, 3)
	mustRun(t, "manufacturer", "trust", filepath.Join(fdir, factory.TrustFile), "--data", data)
	mustRun(t, "provenance", "import", filepath.Join(fdir, factory.ManifestFile), "--data", data)
	for i := 0; i < 8; i++ {
		err := srv.Store().Update(ctx, func(tx store.Tx) error {
			_, err := tx.AppendAudit(audit.Entry{Time: time.Now(), Actor: "system", Action: "test", Outcome: "ok"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	pubFile := filepath.Join(data, audit.PublicKeyFile)

	// Over the socket of the running server.
	out := mustRun(t, "audit", "verify", "--data", data)
	if !strings.Contains(out, "audit log verified: entries 1 to ") || !strings.Contains(out, "trusted key: "+pubFile) {
		t.Errorf("verify over the socket:\n%s", out)
	}
	// Stopping the server signs the tail.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "audit", "verify", "--data", data)
	if !strings.HasPrefix(out, "audit log verified: entries 1 to 10, ") {
		t.Errorf("verify offline:\n%s", out)
	}
	// The running server may have signed earlier entries too; its last
	// checkpoint, at the stop, covers the newest.
	if !regexp.MustCompile(`\ncheckpoints: \d+ verified \(ECDSA P-256 and ML-DSA-65\), the last for entry 10 at `).MatchString(out) ||
		!strings.Contains(out, "trusted key: "+pubFile) {
		t.Errorf("verify offline:\n%s", out)
	}
	if strings.Contains(out, "not yet checkpointed") {
		t.Errorf("verify offline: tail unsigned after a clean stop:\n%s", out)
	}

	// Export, then verify the bundle elsewhere with a copy of audit.pub.
	elsewhere := t.TempDir()
	bundle := filepath.Join(elsewhere, "audit.bundle")
	out = mustRun(t, "audit", "export", "--out", bundle, "--data", data)
	if !regexp.MustCompile(`^exported 10 entries and \d+ checkpoints? to ` + regexp.QuoteMeta(bundle) + ` \(sha256 [0-9a-f]{64}\)\n`).MatchString(out) {
		t.Errorf("export: %q", out)
	}
	pubCopy := filepath.Join(elsewhere, "audit.pub")
	b, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubCopy, b, 0o644); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if _, err := audit.InitKey(other); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name       string
		args       []string
		code       int
		wantOut    string
		wantErrOut string
	}{
		{name: "ok/bundle with the pinned key", args: []string{"audit", "verify", "--bundle", bundle, "--key", pubCopy},
			wantOut: "trusted key: " + pubCopy},
		{name: "ok/bundle without a key", args: []string{"audit", "verify", "--bundle", bundle},
			wantOut: "trusted key: none given"},
		{name: "fail/bundle with another key", args: []string{"audit", "verify", "--bundle", bundle, "--key", filepath.Join(other, audit.PublicKeyFile)},
			code: 1, wantErrOut: ": its checkpoint is signed by key "},
		{name: "fail/export over an existing file", args: []string{"audit", "export", "--out", bundle, "--data", data},
			code: 1, wantErrOut: bundle + " exists"},
		{name: "fail/export without --out", args: []string{"audit", "export", "--data", data}, code: 2,
			wantErrOut: "audit export --out FILE"},
		{name: "fail/list with --out", args: []string{"audit", "list", "--out", "x", "--data", data}, code: 2,
			wantErrOut: "audit list does not take --out"},
		{name: "fail/unknown subcommand", args: []string{"audit", "check", "--data", data}, code: 2,
			wantErrOut: "audit list|verify|export"},
		{name: "fail/missing bundle", args: []string{"audit", "verify", "--bundle", missing}, code: 1,
			wantErrOut: "no such file"},
		{name: "fail/not a bundle", args: []string{"audit", "verify", "--bundle", pubCopy}, code: 1,
			wantErrOut: "not an audit bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...)
			if r.code != tt.code || !strings.Contains(r.out, tt.wantOut) || !strings.Contains(r.errOut, tt.wantErrOut) {
				t.Fatalf("%v", r)
			}
		})
	}

	// Tampering with the registry file is found and named.
	reg := filepath.Join(data, server.RegistryFile)
	orig, err := os.ReadFile(reg)
	if err != nil {
		t.Fatal(err)
	}
	edits := []struct {
		name string
		edit func(b *bbolt.Bucket) error
		want string
	}{
		{"fail/entry changed", func(b *bbolt.Bucket) error {
			var e audit.Entry
			if err := cbor.Unmarshal(b.Get(auditKey(2)), &e); err != nil {
				return err
			}
			e.Actor = "operator:mallory"
			enc, _ := cbor.CoreDetEncOptions().EncMode()
			v, err := enc.Marshal(&e)
			if err != nil {
				return err
			}
			return b.Put(auditKey(2), v)
		}, "chain broken at entry 2: its content does not match its hash"},
		{"fail/entry deleted", func(b *bbolt.Bucket) error { return b.Delete(auditKey(2)) },
			"chain broken at entry 2: missing: entry 3 follows entry 1"},
		{"fail/entries swapped", func(b *bbolt.Bucket) error {
			v2, v3 := append([]byte(nil), b.Get(auditKey(2))...), append([]byte(nil), b.Get(auditKey(3))...)
			if err := b.Put(auditKey(2), v3); err != nil {
				return err
			}
			return b.Put(auditKey(3), v2)
		}, "chain broken at entry 2: its previous hash does not match entry 1"},
	}
	for _, tt := range edits {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(reg, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			editRegistry(t, reg, tt.edit)
			r := runCLI(t, "audit", "verify", "--data", data)
			if r.code != 1 || !strings.Contains(r.errOut, tt.want) {
				t.Fatalf("verify: %v", r)
			}
			// An export of the tampered log is kept as evidence but
			// reported.
			out := filepath.Join(t.TempDir(), "tampered.bundle")
			r = runCLI(t, "audit", "export", "--out", out, "--data", data)
			if r.code != 1 || !strings.Contains(r.errOut, "does not verify: ") || !strings.Contains(r.errOut, tt.want) {
				t.Fatalf("export: %v", r)
			}
			r = runCLI(t, "audit", "verify", "--bundle", out, "--key", pubCopy)
			if r.code != 1 || !strings.Contains(r.errOut, tt.want) {
				t.Fatalf("verify bundle: %v", r)
			}
		})
	}
	if err := os.WriteFile(reg, orig, 0o600); err != nil {
		t.Fatal(err)
	}
}
