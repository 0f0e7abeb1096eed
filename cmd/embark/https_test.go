package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/server"
)

// startHTTPS runs a server in process with the HTTPS admin API on a
// loopback :0 listener and returns its data directory and HTTPS URL.
func startHTTPS(t *testing.T) (string, string) {
	t.Helper()
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultConfig(data)
	cfg.CoAP.UDP, cfg.CoAP.TCP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.CoAP.BRSKI = "127.0.0.1:0"
	cfg.MQTT.Listen = ""
	cfg.HTTPS.Listen = "127.0.0.1:0"
	cfg.AdminSocket = filepath.Join(t.TempDir(), "a.sock") // unix socket paths are limited to ~100 bytes
	if err := config.Write(cfg); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return data, "https://" + srv.HTTPSAddr().String()
}

// TestCLIOverHTTPS: operators are added on the server host, then the CLI
// works against the running server over HTTPS with their certificates.
func TestCLIOverHTTPS(t *testing.T) {
	t.Setenv("USER", "root-on-host")
	data, url := startHTTPS(t)
	creds := t.TempDir()
	out := mustRun(t, "operator", "add", "alice", "--role", "admin", "--out", creds, "--data", data)
	if !strings.Contains(out, "operator alice (admin) added") || !strings.Contains(out, "--server "+url) {
		t.Fatalf("operator add:\n%s", out)
	}
	mustRun(t, "operator", "add", "carol", "--role", "auditor", "--out", creds, "--data", data)
	for name, want := range map[string]os.FileMode{"alice.key": 0o600, "alice.crt": 0o644, ServerCAFile: 0o644, "carol.key": 0o600} {
		fi, err := os.Stat(filepath.Join(creds, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v %v, want mode %v", name, fi, err, want)
		}
	}
	as := func(name string, args ...string) []string {
		return append([]string{"--server", url, "--cert", filepath.Join(creds, name+".crt"),
			"--key", filepath.Join(creds, name+".key"), "--ca", filepath.Join(creds, ServerCAFile)}, args...)
	}

	// An admin imports a manufacturer and its devices remotely.
	fdir, entries := mint(t, 3)
	mustRun(t, as("alice", "manufacturer", "trust", filepath.Join(fdir, factory.TrustFile))...)
	mustRun(t, as("alice", "provenance", "import", filepath.Join(fdir, factory.ManifestFile))...)
	checkDeviceList(t, mustRun(t, as("alice", "device", "list")...), entries)

	var st struct {
		TLS   string `json:"tls"`
		HTTPS struct {
			AllowClassical bool `json:"allow_classical"`
		} `json:"https"`
	}
	out = mustRun(t, as("carol", "status")...)
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.TLS != "TLS1.3 X25519MLKEM768" || st.HTTPS.AllowClassical {
		t.Fatalf("status over HTTPS (%v):\n%s", err, out)
	}

	// The auditor may read but not act, also when given by environment.
	t.Setenv("EMBARK_SERVER", url)
	t.Setenv("EMBARK_CERT", filepath.Join(creds, "carol.crt"))
	t.Setenv("EMBARK_KEY", filepath.Join(creds, "carol.key"))
	t.Setenv("EMBARK_CA", filepath.Join(creds, ServerCAFile))
	checkDeviceList(t, mustRun(t, "device", "list"), entries)
	r := runCLI(t, "device", "revoke", "acme:ACME-000001", "--reason", "lost")
	if r.code != 1 || !strings.Contains(r.errOut, `operator "carol" has role auditor; POST /v1/devices/{id}/revoke needs role operator (HTTP 403)`) {
		t.Fatalf("auditor revoke: %v", r)
	}
	for _, k := range []string{"EMBARK_SERVER", "EMBARK_CERT", "EMBARK_KEY", "EMBARK_CA"} {
		t.Setenv(k, "")
	}

	rs := rows(mustRun(t, "operator", "list", "--data", data))
	if len(rs) != 3 || rs[1][0] != "alice" || rs[1][1] != "admin" || rs[2][0] != "carol" || rs[2][1] != "auditor" {
		t.Fatalf("operator list: %v", rs)
	}
	// The audit log names the remote admin for the import.
	audit := mustRun(t, "audit", "list", "--data", data)
	if !strings.Contains(audit, "operator:alice") || !strings.Contains(audit, "operator:root-on-host") {
		t.Fatalf("audit:\n%s", audit)
	}

	// Removal through the socket refuses carol's next request.
	mustRun(t, "operator", "remove", "carol", "--reason", "left", "--data", data)
	r = runCLI(t, as("carol", "status")...)
	if r.code != 1 || !strings.Contains(r.errOut, `operator "carol"`) || !strings.Contains(r.errOut, "removed") {
		t.Fatalf("removed operator: %v", r)
	}
}

func TestCLIHTTPSRefusals(t *testing.T) {
	data, url := startHTTPS(t)
	creds := t.TempDir()
	mustRun(t, "operator", "add", "alice", "--role", "admin", "--out", creds, "--data", data)
	crt, key, ca := filepath.Join(creds, "alice.crt"), filepath.Join(creds, "alice.key"), filepath.Join(creds, ServerCAFile)
	loose := filepath.Join(creds, "loose.key")
	b, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, b, 0o644); err != nil {
		t.Fatal(err)
	}
	taken := filepath.Join(t.TempDir(), "x")
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
		created string // a file that must not exist afterwards
	}{
		{name: "fail/server-without-credentials", args: []string{"--server", url, "status"}, code: 1,
			wantErr: "--server needs --cert, --key and --ca"},
		{name: "fail/plain-http", args: []string{"--server", strings.Replace(url, "https", "http", 1), "--cert", crt, "--key", key, "--ca", ca, "status"}, code: 1,
			wantErr: "want https://host:port"},
		{name: "fail/key-readable-by-others", args: []string{"--server", url, "--cert", crt, "--key", loose, "--ca", ca, "status"}, code: 1,
			wantErr: "others may read it"},
		{name: "fail/wrong-server-ca", args: []string{"--server", url, "--cert", crt, "--key", key, "--ca", crt, "status"}, code: 1,
			wantErr: "certificate signed by unknown authority"},
		{name: "fail/unknown-global-flag", args: []string{"--sever", url, "status"}, code: 2, wantErr: "flag provided but not defined"},
		{name: "fail/add-taken-name", args: []string{"operator", "add", "alice", "--role", "operator", "--out", taken, "--data", data}, code: 1,
			wantErr: "already registered", created: filepath.Join(taken, "alice.key")},
		{name: "fail/add-bad-role", args: []string{"operator", "add", "bob", "--role", "root", "--out", creds, "--data", data}, code: 1,
			wantErr: `invalid role: "root"`, created: filepath.Join(creds, "bob.key")},
		{name: "fail/add-without-role", args: []string{"operator", "add", "bob", "--out", creds, "--data", data}, code: 2,
			wantErr: "a role is required", created: filepath.Join(creds, "bob.key")},
		{name: "fail/add-over-existing-files", args: []string{"operator", "add", "alice", "--role", "admin", "--out", creds, "--data", data}, code: 1,
			wantErr: "exists: remove it or choose another --out"},
		{name: "fail/remove-unknown", args: []string{"operator", "remove", "nobody", "--data", data}, code: 1, wantErr: "unknown operator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...)
			if r.code != tt.code || !strings.Contains(r.errOut, tt.wantErr) {
				t.Fatalf("%v\nwant exit %d with %q", r, tt.code, tt.wantErr)
			}
			if tt.created != "" {
				if _, err := os.Stat(tt.created); !os.IsNotExist(err) {
					t.Fatalf("%s left behind", tt.created)
				}
			}
		})
	}
	// Still exactly one operator.
	if rs := rows(mustRun(t, "operator", "list", "--data", data)); len(rs) != 2 {
		t.Fatalf("operators: %v", rs)
	}
}
