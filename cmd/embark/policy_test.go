package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embark-iot/embark/firmware-sim/factory"
)

const quarantineAll = `policy: quarantine-all
defaults:
  lifetime: 24h
zones:
  - name: quarantine
    security_level: 1
rules:
  - name: everyone
    when: "device.model == 'sensor-x'"
    decision: quarantine
    zone: quarantine
    reason: test
`

func TestPolicyCommands(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(quarantineAll), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.Replace(quarantineAll, "device.model", "device.colour", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, "policy", "check", good); !strings.Contains(out, "policy quarantine-all is valid") {
		t.Fatalf("check good: %q", out)
	}
	r := runCLI(t, "policy", "check", bad)
	if r.code != 1 || !strings.Contains(r.errOut, bad+":9:18:") || !strings.Contains(r.errOut, "colour") {
		t.Fatalf("check bad: %+v", r)
	}
	if r := runCLI(t, "policy", "check"); r.code != 2 {
		t.Fatalf("check without a file: %+v", r)
	}

	// Dry run and explain over a registry with devices, no server running.
	data := filepath.Join(dir, "data")
	mustRun(t, "init", "--data", data)
	fdir, _ := mint(t, 2)
	mustRun(t, "manufacturer", "trust", filepath.Join(fdir, factory.TrustFile), "--data", data)
	mustRun(t, "provenance", "import", filepath.Join(fdir, factory.ManifestFile), "--data", data)
	out := mustRun(t, "policy", "test", good, "--all", "--data", data)
	if !strings.Contains(out, "acme:ACME-000001") || !strings.Contains(out, "quarantine") {
		t.Fatalf("test: %q", out)
	}
	out = mustRun(t, "policy", "explain", "acme:ACME-000002", "--file", good, "--data", data)
	if !strings.Contains(out, "everyone") || !strings.Contains(out, "MATCH") || !strings.Contains(out, "decision: quarantine zone quarantine (SL 1)") {
		t.Fatalf("explain: %q", out)
	}
	// No policy is active in this data directory.
	if r := runCLI(t, "policy", "explain", "acme:ACME-000002", "--data", data); r.code != 1 || !strings.Contains(r.errOut, "no policy is active") {
		t.Fatalf("explain without a policy: %+v", r)
	}
}
