package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/server"
	"github.com/embark-iot/embark/pkg/store"
)

func TestRotateUsage(t *testing.T) {
	t.Setenv("EMBARK_DATA", filepath.Join(t.TempDir(), "nowhere"))
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fail/nothing", []string{"rotate"}},
		{"fail/model-without-name", []string{"rotate", "model"}},
		{"fail/unknown-selector", []string{"rotate", "serial", "X"}},
		{"fail/all-with-value", []string{"rotate", "all", "X"}},
		{"fail/status-two-ids", []string{"rotate", "status", "a", "b"}},
		{"fail/cancel-without-id", []string{"rotate", "cancel"}},
		{"fail/bad-rate", []string{"rotate", "all", "--rate", "fast"}},
		{"fail/bad-timeout", []string{"rotate", "all", "--timeout", "soon"}},
		{"fail/negative-limit", []string{"rotate", "status", "x", "--limit", "-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.args...)
			if r.code != 2 || !strings.Contains(r.errOut, "usage: embark rotate") {
				t.Fatalf("%v", r)
			}
		})
	}
}

// enrollOffline gives devices of the registry a live certificate, as an
// enrollment would, while no server runs.
func enrollOffline(t *testing.T, data string, serials ...string) {
	t.Helper()
	cfg, err := config.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.OpenOffline(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	now := time.Now()
	err = srv.Store().Update(context.Background(), func(tx store.Tx) error {
		for i, sn := range serials {
			d, err := tx.Device(device.ID("acme", sn))
			if err != nil {
				return err
			}
			c := device.Certificate{Serial: "0a0b0c0" + string(rune('1'+i)), DeviceID: d.ID, KeySHA256: strings.Repeat("cd", 32),
				Kind: device.KindEnroll, Status: device.CertIssued, NotBefore: now, NotAfter: now.Add(time.Hour)}
			if err := tx.PutCertificate(c); err != nil {
				return err
			}
			d.State, d.Current, d.Zone = device.Onboarded, c.Serial, "plant"
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Offline (no server runs) a campaign is recorded, shown and cancelled;
// the server's runner would ask the devices when it starts.
func TestRotateOffline(t *testing.T) {
	t.Setenv("USER", "gina")
	data := filepath.Join(t.TempDir(), "data")
	mustRun(t, "init", "--data", data)
	fdir, _ := mint(t, 3)
	mustRun(t, "manufacturer", "trust", filepath.Join(fdir, factory.TrustFile), "--data", data)
	mustRun(t, "provenance", "import", filepath.Join(fdir, factory.ManifestFile), "--data", data)
	enrollOffline(t, data, "ACME-000001", "ACME-000002")

	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"fail/unknown-zone", []string{"rotate", "zone", "moon"}, `unknown zone: no device in zone "moon" (HTTP 404)`},
		{"fail/unknown-device", []string{"rotate", "device", "acme:NOPE"}, "unknown device: urn:dev:embark:acme:NOPE (HTTP 404)"},
		{"fail/not-enrolled", []string{"rotate", "device", "acme:ACME-000003"}, "without a live LDevID (HTTP 409)"},
		{"fail/negative-rate", []string{"rotate", "all", "--rate", "-2"}, "rate -2 devices/s: want more than 0 (or no limit) (HTTP 400)"},
		{"fail/absurd-rate", []string{"rotate", "all", "--rate", "1e7"}, "above 10000"},
		{"fail/short-timeout", []string{"rotate", "all", "--timeout", "1ms"}, "timeout 1ms"},
		{"fail/cancel-unknown", []string{"rotate", "cancel", "rot-20990101-000000-000000"}, "unknown campaign"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, append(tc.args, "--data", data)...)
			if r.code != 1 || !strings.Contains(r.errOut, tc.msg) {
				t.Fatalf("%v, want %q", r, tc.msg)
			}
		})
	}
	if rs := rows(mustRun(t, "rotate", "status", "--data", data)); len(rs) != 1 {
		t.Fatalf("campaigns after refusals: %v", rs)
	}

	out := mustRun(t, "rotate", "zone", "plant", "--rate", "5", "--timeout", "1m", "--data", data)
	m := regexp.MustCompile(`^campaign (rot-[0-9a-f-]+): rotate zone plant, 2 devices, 5/s, timeout 1m0s\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rotate zone: %q", out)
	}
	id := m[1]
	out = mustRun(t, "rotate", "all", "--rate", "0", "--data", data)
	if !strings.Contains(out, "2 devices, no limit, timeout 10m0s") {
		t.Fatalf("rotate all --rate 0: %q", out)
	}
	rs := rows(mustRun(t, "rotate", "status", "--data", data))
	found := false
	for _, r := range rs[1:] {
		if r[0] == id {
			found = strings.Join(r[1:11], " ") == "zone plant running 5/s 2 2 0 0 0 0"
		}
	}
	if len(rs) != 3 || !found {
		t.Fatalf("status:\n%v", rs)
	}
	out = mustRun(t, "rotate", "status", id, "--data", data)
	for _, want := range []string{"campaign " + id + ": rotate zone plant, running, 5/s, timeout 1m0s",
		"devices 2: queued 2, pending 0, done 0", "urn:dev:embark:acme:ACME-000001  queued", "urn:dev:embark:acme:ACME-000002  queued"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status %s lacks %q:\n%s", id, want, out)
		}
	}
	if out := mustRun(t, "rotate", "status", id, "--limit", "1", "--data", data); !strings.Contains(out, "(more: --limit 0 for all)") ||
		strings.Contains(out, "ACME-000002") {
		t.Fatalf("status --limit 1:\n%s", out)
	}
	if out := mustRun(t, "rotate", "cancel", id, "--data", data); out != "campaign "+id+": cancelled\n" {
		t.Fatalf("cancel: %q", out)
	}
	if r := runCLI(t, "rotate", "cancel", id, "--data", data); r.code != 1 || !strings.Contains(r.errOut, "embark rotate: campaign: not running: "+id+" is cancelled (HTTP 409)") {
		t.Fatalf("cancel again: %v", r)
	}
}
