package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/server"
	"github.com/embark-iot/embark/pki"
)

// These tests do not run in parallel: they set USER, and a running server
// changes the process umask while it creates its socket.

type result struct {
	code        int
	out, errOut string
}

func runCLI(t testing.TB, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return result{code: code, out: out.String(), errOut: errOut.String()}
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%sstderr:\n%s", r.code, r.out, r.errOut)
}

// mustRun runs the CLI and fails the test unless it exits 0.
func mustRun(t testing.TB, args ...string) string {
	t.Helper()
	r := runCLI(t, args...)
	if r.code != 0 {
		t.Fatalf("embark %s: %v", strings.Join(args, " "), r)
	}
	if r.errOut != "" {
		t.Errorf("embark %s: stderr %q", strings.Join(args, " "), r.errOut)
	}
	return r.out
}

func TestRunUsage(t *testing.T) {
	t.Setenv("EMBARK_DATA", filepath.Join(t.TempDir(), "nowhere"))
	missing := filepath.Join(t.TempDir(), "nowhere")
	tests := []struct {
		name       string
		args       []string
		code       int
		wantOut    string
		wantErrOut string
	}{
		{name: "ok/help", args: []string{"help"}, code: 0, wantOut: "provenance import FILE"},
		{name: "ok/no arguments", args: nil, code: 0, wantOut: "Commands:"},
		{name: "ok/--help", args: []string{"--help"}, code: 0, wantOut: "Commands:"},
		{name: "ok/version", args: []string{"version"}, code: 0, wantOut: "embark " + server.Version},
		{name: "fail/unknown command", args: []string{"frobnicate"}, code: 2, wantErrOut: `unknown command "frobnicate"`},
		{name: "fail/device without subcommand", args: []string{"device"}, code: 2, wantErrOut: "usage: embark device"},
		{name: "fail/device show without id", args: []string{"device", "show", "--data", missing}, code: 2,
			wantErrOut: "usage: embark device"},
		{name: "fail/device show with two ids", args: []string{"device", "show", "a:1", "a:2", "--data", missing}, code: 2,
			wantErrOut: "usage: embark device"},
		{name: "fail/device list with an argument", args: []string{"device", "list", "all", "--data", missing}, code: 2},
		{name: "fail/device with an unknown flag", args: []string{"device", "list", "--colour", "red"}, code: 2,
			wantErrOut: "colour"},
		{name: "fail/manufacturer trust without file", args: []string{"manufacturer", "trust", "--data", missing}, code: 2,
			wantErrOut: "usage: embark manufacturer"},
		{name: "fail/manufacturer trust of a missing file", args: []string{"manufacturer", "trust", "missing.json", "--data", missing},
			code: 1, wantErrOut: "embark manufacturer: open missing.json: no such file or directory"},
		{name: "fail/provenance without import", args: []string{"provenance", "export", "x.json"}, code: 2,
			wantErrOut: "usage: embark provenance import FILE"},
		{name: "fail/provenance import of a missing file", args: []string{"provenance", "import", "missing.json", "--data", missing},
			code: 1, wantErrOut: "embark provenance: open missing.json: no such file or directory"},
		{name: "fail/audit without list", args: []string{"audit"}, code: 2, wantErrOut: "usage: embark audit list"},
		{name: "fail/status of a directory never initialised", args: []string{"status", "--data", missing}, code: 1,
			wantErrOut: "embark init --data " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\n%v", r.code, tt.code, r)
			}
			if !strings.Contains(r.out, tt.wantOut) || !strings.Contains(r.errOut, tt.wantErrOut) {
				t.Errorf("want stdout with %q and stderr with %q\n%v", tt.wantOut, tt.wantErrOut, r)
			}
			if tt.code != 0 && r.errOut == "" {
				t.Error("failure without a message")
			}
			if _, err := os.Stat(missing); !os.IsNotExist(err) {
				t.Errorf("the command created %s", missing)
			}
		})
	}
}

// mint runs the simulated factory and returns its directory and the
// manifest's entries.
func mint(t testing.TB, n int) (string, []manifest.Entry) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "factory")
	if _, err := factory.Run(context.Background(), factory.Options{Out: dir, Count: n}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, factory.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var env manifest.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	var m manifest.Manifest
	if err := json.Unmarshal(env.Payload, &m); err != nil {
		t.Fatal(err)
	}
	return dir, m.Devices
}

// rows returns the whitespace-separated fields of each line of a table,
// header included.
func rows(s string) [][]string {
	var out [][]string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		out = append(out, strings.Fields(l))
	}
	return out
}

// field returns the value of a "key  value" line of `device show`.
func field(t testing.TB, out, key string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, key+"  "); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("no %q in\n%s", key, out)
	return ""
}

func checkDeviceList(t testing.TB, out string, entries []manifest.Entry) {
	t.Helper()
	rs := rows(out)
	if len(rs) != len(entries)+1 || strings.Join(rs[0], " ") != "DEVICE STATE ZONE MODEL FIRMWARE CURRENT CERT UPDATED" {
		t.Fatalf("device list:\n%s", out)
	}
	for i, e := range entries {
		r := rs[i+1]
		want := []string{"urn:dev:embark:acme:" + e.Serial, "expected", "-", "sensor-x", "1.4.2", "-"}
		if len(r) != 7 || strings.Join(r[:6], " ") != strings.Join(want, " ") {
			t.Errorf("row %d: %q, want %q and a time", i, r, want)
		}
	}
}

func TestOffline(t *testing.T) {
	t.Setenv("USER", "erin")
	data := filepath.Join(t.TempDir(), "data")
	out := mustRun(t, "init", "--data", data)
	if !strings.Contains(out, "data directory "+data+" ready") {
		t.Errorf("init: %q", out)
	}
	for _, p := range []string{config.Path(data), filepath.Join(data, server.CADir, pki.RootCertFile),
		filepath.Join(data, server.CADir, pki.IntermediateKeyFile)} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("init: %v", err)
		}
	}
	root, err := os.ReadFile(filepath.Join(data, server.CADir, pki.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, "init", "--data", data)
	if again, _ := os.ReadFile(filepath.Join(data, server.CADir, pki.RootCertFile)); !bytes.Equal(again, root) {
		t.Error("a second init replaced the root")
	}

	fdir, entries := mint(t, 5)
	out = mustRun(t, "manufacturer", "trust", filepath.Join(fdir, factory.TrustFile), "--data", data)
	if !strings.HasPrefix(out, "trusted manufacturer acme: 1 root(s), 1 intermediate(s)") {
		t.Errorf("trust: %q", out)
	}
	out = mustRun(t, "provenance", "import", filepath.Join(fdir, factory.ManifestFile), "--data", data)
	if !strings.HasPrefix(out, "imported acme manifest revision 1: 5 devices (5 new, 0 updated), signed by ") {
		t.Errorf("import: %q", out)
	}
	checkDeviceList(t, mustRun(t, "device", "list", "--data", data), entries)
	checkDeviceList(t, mustRun(t, "device", "list", "--state", "expected", "--data", data), entries)
	checkDeviceList(t, mustRun(t, "device", "list", "--limit", "2", "--data", data), entries[:2])
	if rs := rows(mustRun(t, "device", "list", "--state", "held", "--data", data)); len(rs) != 1 {
		t.Errorf("held devices: %v", rs)
	}

	for _, id := range []string{"acme:ACME-000001", "urn:dev:embark:acme:ACME-000001"} {
		out = mustRun(t, "device", "show", id, "--data", data)
		for key, want := range map[string]string{
			"device":            "urn:dev:embark:acme:ACME-000001",
			"state":             "expected",
			"serial":            "ACME-000001",
			"manufacturer":      "acme",
			"owner":             "example-operator",
			"idevid key":        "sha256:" + entries[0].IDevIDKeySHA256,
			"manifest revision": "1",
			"enrollments":       "0",
		} {
			if got := field(t, out, key); got != want {
				t.Errorf("show %s: %s = %q, want %q", id, key, got, want)
			}
		}
	}
	r := runCLI(t, "device", "show", "acme:ACME-999999", "--data", data)
	if r.code != 1 || !strings.Contains(r.errOut, "HTTP 404") {
		t.Errorf("unknown device: %v", r)
	}
	r = runCLI(t, "device", "show", "--data", data)
	if r.code != 2 {
		t.Errorf("show without id: %v", r)
	}

	out = mustRun(t, "manufacturer", "list", "--data", data)
	if rs := rows(out); len(rs) != 2 || strings.Join(rs[1][:3], " ") != "acme 5 1" {
		t.Errorf("manufacturer list:\n%s", out)
	}
	out = mustRun(t, "provenance", "import", filepath.Join(fdir, factory.ManifestFile), "--data", data)
	if !strings.Contains(out, "(0 new, 5 updated)") {
		t.Errorf("second import: %q", out)
	}
	out = mustRun(t, "audit", "list", "--data", data)
	rs := rows(out)
	if len(rs) != 4 {
		t.Fatalf("audit list:\n%s", out)
	}
	for i, action := range []string{"trust-manufacturer", "import-manifest", "import-manifest"} {
		if r := rs[i+1]; r[0] != strconv.Itoa(i+1) || r[2] != "operator:erin" || r[3] != action || r[5] != "ok" {
			t.Errorf("audit row %d: %q", i+1, r)
		}
	}

	// A refused import changes nothing and says why.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"payloadType":`), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "provenance", "import", bad, "--data", data)
	if r.code != 1 || !strings.Contains(r.errOut, "malformed") || !strings.Contains(r.errOut, "HTTP 400") {
		t.Errorf("bad import: %v", r)
	}
	if rs := rows(mustRun(t, "audit", "list", "--data", data)); len(rs) != 4 {
		t.Errorf("a refused import was audited: %v", rs)
	}
	if _, err := os.Stat(filepath.Join(data, "admin.sock")); !os.IsNotExist(err) {
		t.Errorf("offline commands left a socket: %v", err)
	}
}

func TestOverSocket(t *testing.T) {
	t.Setenv("USER", "frank")
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
	cfg.AdminSocket = filepath.Join(t.TempDir(), "a.sock") // unix socket paths are limited to ~100 bytes
	if err := config.Write(cfg); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}

	var st struct {
		Listeners map[string]string `json:"listeners"`
		Started   string            `json:"started"`
	}
	out := mustRun(t, "status", "--data", data)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, out)
	}
	// Only a running server has listeners and a start time; the offline
	// path shows neither.
	if st.Listeners["admin"] != cfg.SocketPath() || st.Listeners["coaps"] != srv.UDPAddr().String() || st.Started == "" {
		t.Errorf("status did not come from the server:\n%s", out)
	}

	fdir, entries := mint(t, 3)
	mustRun(t, "manufacturer", "trust", filepath.Join(fdir, factory.TrustFile), "--data", data)
	out = mustRun(t, "provenance", "import", filepath.Join(fdir, factory.ManifestFile), "--data", data)
	if !strings.Contains(out, "3 devices (3 new, 0 updated)") {
		t.Errorf("import: %q", out)
	}
	checkDeviceList(t, mustRun(t, "device", "list", "--data", data), entries)
	if got := field(t, mustRun(t, "device", "show", "acme:ACME-000003", "--data", data), "serial"); got != "ACME-000003" {
		t.Errorf("show: serial %q", got)
	}
	rs := rows(mustRun(t, "audit", "list", "--data", data))
	if len(rs) != 3 || rs[1][2] != "operator:frank" || rs[2][3] != "import-manifest" {
		t.Errorf("audit: %v", rs)
	}
	// The server saw the import: its registry holds the devices.
	stats, err := srv.Store().Stats(ctx)
	if err != nil || stats.Devices != 3 {
		t.Errorf("server registry: %+v, %v", stats, err)
	}
	if fi, err := os.Stat(cfg.SocketPath()); err != nil || fi.Mode()&fs.ModeSocket == 0 {
		t.Errorf("admin socket: %v", err)
	}
}
