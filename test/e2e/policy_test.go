package e2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/firmware-sim/fleet"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

const vexPolicy = `policy: vex-test
defaults:
  lifetime: 720h
zones:
  - name: production
    security_level: 2
    segment: vlan-20
  - name: quarantine
    security_level: 1
    segment: vlan-99
rules:
  - name: critical-vulnerability
    when: "vulns.max_cvss >= 9.0"
    decision: quarantine
    zone: quarantine
    lifetime: 24h
    reason: open critical vulnerability
  - name: known-device
    when: "true"
    decision: allow
    zone: production
    reason: known device
`

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestVEXMovesExactlyTheVulnerable: 150 devices onboarded under a policy
// that quarantines critical vulnerabilities; a VEX import that makes the
// 100 devices on firmware 1.4.2 vulnerable moves exactly those, at once,
// without the devices doing anything.
func TestVEXMovesExactlyTheVulnerable(t *testing.T) {
	e := startEmbark(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fdir := filepath.Join(t.TempDir(), "factory")
	if _, err := factory.Run(ctx, factory.Options{Out: fdir, Count: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := factory.Run(ctx, factory.Options{Out: fdir, Count: 50, FirmwareVersion: "1.5.0"}); err != nil {
		t.Fatal(err)
	}
	e.trustAndImport(t, fdir)

	// Hot reload: the policy file appears in the data directory.
	if err := os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(vexPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "policy activation", 10*time.Second, func() bool {
		var info admin.PolicyInfo
		return e.client.Do(ctx, http.MethodGet, "/v1/policy", nil, &info) == nil && info.Active && info.Name == "vex-test"
	})

	state := filepath.Join(t.TempDir(), "state.jsonl")
	reps, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps://" + e.srv.UDPAddr().String(),
		RootFile: e.root, Concurrency: 50, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if reps[0].OK != 150 {
		t.Fatalf("%s", reps[0])
	}
	states := func() (quarantined, production int, wrong []string) {
		if err := e.srv.Store().View(ctx, func(r store.Reader) error {
			return r.Devices("", func(d device.Device) (bool, error) {
				switch {
				case d.State == device.Quarantined && d.Zone == "quarantine":
					quarantined++
					if d.Provenance.FirmwareVersion != "1.4.2" || d.Flags.Pending == "" {
						wrong = append(wrong, d.ID)
					}
				case d.State == device.Onboarded && d.Zone == "production":
					production++
				default:
					wrong = append(wrong, d.ID+" "+string(d.State)+" "+d.Zone)
				}
				return true, nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return
	}
	if q, p, wrong := states(); q != 0 || p != 150 || len(wrong) > 0 {
		t.Fatalf("before the VEX: %d quarantined, %d in production, wrong %v", q, p, wrong)
	}

	for _, doc := range []string{"sbom-sensor-x-1.4.2.json", "vex-openssl-affected.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "pkg", "vuln", "testdata", doc))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.client.Do(ctx, http.MethodPost, "/v1/vuln", b, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "re-evaluation", 20*time.Second, func() bool { q, _, _ := states(); return q == 100 })
	q, p, wrong := states()
	if q != 100 || p != 50 || len(wrong) > 0 {
		t.Fatalf("after the VEX: %d quarantined, %d in production, wrong %v", q, p, wrong)
	}

	// The device learns its new zone over DTLS with its LDevID.
	recs, err := fleet.ReadState(state)
	if err != nil {
		t.Fatal(err)
	}
	var rec fleet.StateRecord
	for _, r := range recs {
		if r.Serial == "ACME-000001" {
			rec = r
		}
	}
	pair, err := tls.X509KeyPair([]byte(rec.CertPEM), []byte(rec.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	c, err := estclient.Dial(ctx, estclient.Config{Target: "coaps://" + e.srv.UDPAddr().String(), Roots: e.rootPool(), Certificate: &pair})
	if err != nil {
		t.Fatal(err)
	}
	prof, err := c.Profile(ctx)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if prof.Zone != "quarantine" || prof.State != "quarantined" || prof.SecurityLevel != 1 || prof.Segment != "vlan-99" ||
		prof.Pending == "" || prof.Rule != "critical-vulnerability" {
		t.Fatalf("profile seen by the device: %+v", prof)
	}

	// A broken policy file is refused and the running one stays.
	if err := os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(strings.Replace(vexPolicy, "vulns.max_cvss", "vulns.colour", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal in the audit log", 10*time.Second, func() bool {
		found := false
		_ = e.srv.Store().View(ctx, func(r store.Reader) error {
			return r.Audit(0, func(en audit.Entry) (bool, error) {
				if en.Action == "policy" && en.Outcome == "refused" {
					found = true
				}
				return true, nil
			})
		})
		return found
	})
	var info admin.PolicyInfo
	if err := e.client.Do(ctx, http.MethodGet, "/v1/policy", nil, &info); err != nil || info.Name != "vex-test" {
		t.Fatalf("after a broken file: %+v, %v", info, err)
	}
	var ex admin.ExplainAnswer
	if err := e.client.Do(ctx, http.MethodGet, "/v1/policy/explain/acme:ACME-000001", nil, &ex); err != nil {
		t.Fatal(err)
	}
	if ex.Explanation.Decision.Rule != "critical-vulnerability" || !ex.Explanation.Rules[0].Matched {
		t.Fatalf("explain: %+v", ex.Explanation)
	}
}
