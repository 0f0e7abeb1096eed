package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/provenance"
)

func vulnFile(name string) string { return filepath.Join("..", "..", "pkg", "vuln", "testdata", name) }

func TestVulnUsage(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nowhere")
	t.Setenv("EMBARK_DATA", missing)
	tests := []struct {
		name       string
		args       []string
		code       int
		wantErrOut string
	}{
		{name: "fail/no subcommand", args: []string{"vuln"}, code: 2, wantErrOut: "usage: embark vuln"},
		{name: "fail/unknown subcommand", args: []string{"vuln", "list"}, code: 2, wantErrOut: "vuln import FILE | show MANUFACTURER MODEL FIRMWARE"},
		{name: "fail/import without file", args: []string{"vuln", "import", "--data", missing}, code: 2, wantErrOut: "usage: embark vuln"},
		{name: "fail/import of two files", args: []string{"vuln", "import", "a.json", "b.json"}, code: 2, wantErrOut: "usage: embark vuln"},
		{name: "fail/show without firmware", args: []string{"vuln", "show", "acme", "sensor-x"}, code: 2, wantErrOut: "usage: embark vuln"},
		{name: "fail/show with too much", args: []string{"vuln", "show", "acme", "sensor-x", "1", "2"}, code: 2, wantErrOut: "usage: embark vuln"},
		{name: "fail/unknown flag", args: []string{"vuln", "show", "acme", "sensor-x", "1", "--colour"}, code: 2, wantErrOut: "colour"},
		{name: "fail/import of a missing file", args: []string{"vuln", "import", "missing.json", "--data", missing}, code: 1,
			wantErrOut: "embark vuln: open missing.json: no such file or directory"},
		{name: "fail/show in a directory never initialised", args: []string{"vuln", "show", "acme", "sensor-x", "1.4.2"}, code: 1,
			wantErrOut: "embark init --data " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...)
			if r.code != tt.code || !strings.Contains(r.errOut, tt.wantErrOut) || r.out != "" {
				t.Errorf("want exit %d and stderr with %q\n%v", tt.code, tt.wantErrOut, r)
			}
			if _, err := os.Stat(missing); !os.IsNotExist(err) {
				t.Errorf("the command created %s", missing)
			}
		})
	}
}

func TestVulnOffline(t *testing.T) {
	t.Setenv("USER", "grace")
	data := filepath.Join(t.TempDir(), "data")
	mustRun(t, "init", "--data", data)
	fdir, _ := mint(t, 3) // acme sensor-x 1.4.2
	mustRun(t, "manufacturer", "trust", filepath.Join(fdir, factory.TrustFile), "--data", data)
	mustRun(t, "provenance", "import", filepath.Join(fdir, factory.ManifestFile), "--data", data)

	out := mustRun(t, "vuln", "import", vulnFile("sbom-sensor-x-1.4.2.json"), "--data", data)
	want := "imported CycloneDX 1.6 JSON (sbom): data version 1\n" +
		"SBOM of acme/sensor-x@1.4.2: 5 components\n" +
		"0 statements, 0 unmatched; 0 products changed, 0 devices to re-evaluate\n"
	if out != want {
		t.Errorf("sbom import:\n%s\nwant\n%s", out, want)
	}
	out = mustRun(t, "vuln", "import", vulnFile("vex-openssl-affected.json"), "--data", data)
	if !strings.Contains(out, "1 statements, 0 unmatched; 1 products changed, 3 devices to re-evaluate") {
		t.Errorf("vex import:\n%s", out)
	}
	out = mustRun(t, "vuln", "show", "acme", "sensor-x", "1.4.2", "--data", data)
	rs := rows(out)
	wantRows := [][]string{
		{"pkg:generic/acme/sensor-x@1.4.2:", "SBOM", "of", "5", "components", "(data", "version", "1),", "data", "version", "2"},
		{"1", "open", "findings,", "max", "CVSS", "9.1"},
		{"VULNERABILITY", "STATE", "CVSS", "FIXED", "IN", "VIA", "DATA", "VERSION"},
		{"CVE-2024-5535", "affected", "9.1", "3.0.14", "pkg:generic/openssl@3.0.11", "2"},
	}
	if !reflect.DeepEqual(rs, wantRows) {
		t.Errorf("show:\n%s", out)
	}
	var d struct {
		admin.DeviceDetail
		Provenance provenance.View `json:"provenance"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "device", "show", "acme:ACME-000002", "--json", "--data", data)), &d); err != nil {
		t.Fatal(err)
	}
	if d.Provenance.Vulns.MaxCVSS != 9.1 || len(d.Provenance.Vulns.Open) != 1 || d.Provenance.DataVersions.VulnData != 2 {
		t.Errorf("provenance after the VEX: %+v", d.Provenance.Vulns)
	}
	// With no server running, the CLI re-evaluated the flagged devices at
	// once: not yet enrolled, they are decided at enrollment; the flag is
	// cleared.
	if d.Device.Flags.Reevaluate != "" {
		t.Errorf("device flags after the VEX and re-evaluation: %+v", d.Device.Flags)
	}

	out = mustRun(t, "vuln", "import", vulnFile("vex-openssl-resolved.json"), "--data", data)
	if !strings.Contains(out, "data version 3") {
		t.Errorf("resolved import:\n%s", out)
	}
	out = mustRun(t, "vuln", "show", "acme", "sensor-x", "1.4.2", "--data", data)
	if !strings.HasSuffix(out, "data version 3\nno open findings\n") {
		t.Errorf("show after resolved:\n%s", out)
	}

	unknown := filepath.Join(t.TempDir(), "unknown.json")
	if err := os.WriteFile(unknown, []byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","vulnerabilities":[`+
		`{"id":"CVE-2026-0001","affects":[{"ref":"pkg:generic/beta/gateway@2.0"}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "vuln", "import", unknown, "--data", data)
	if !strings.Contains(out, "1 statements, 1 unmatched") || !strings.HasSuffix(out, "unmatched: CVE-2026-0001 pkg:generic/beta/gateway@2.0\n") {
		t.Errorf("unknown product:\n%s", out)
	}

	// A refused document changes nothing and says why.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"name":"not a bom"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	auditRows := len(rows(mustRun(t, "audit", "list", "--data", data)))
	r := runCLI(t, "vuln", "import", bad, "--data", data)
	if r.code != 1 || !strings.Contains(r.errOut, `bomFormat ""`) || !strings.Contains(r.errOut, "HTTP 400") {
		t.Errorf("bad import: %v", r)
	}
	if n := len(rows(mustRun(t, "audit", "list", "--data", data))); n != auditRows {
		t.Errorf("a refused import was audited: %d rows, was %d", n, auditRows)
	}
	if !strings.Contains(mustRun(t, "vuln", "show", "acme", "sensor-x", "1.4.2", "--data", data), "data version 4\n") {
		t.Error("the refused import changed the data version")
	}
}
