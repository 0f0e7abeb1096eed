package onboard

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
	"github.com/embark-iot/embark/pkg/vuln"
	"github.com/embark-iot/embark/pki"
	"github.com/embark-iot/embark/policy"
)

const benchPolicy = `policy: bench
defaults:
  lifetime: 720h
zones:
  - name: production
    security_level: 2
  - name: quarantine
    security_level: 1
rules:
  - name: distrusted
    when: "!provenance.manufacturer_trusted"
    decision: deny
    reason: manufacturer not trusted
  - name: critical
    when: "vulns.max_cvss >= 9.0"
    decision: quarantine
    zone: quarantine
    reason: critical vulnerability
  - name: known
    when: "true"
    decision: allow
    zone: production
    reason: known device
`

// BenchmarkReevaluateAfterVEX measures the end-to-end re-evaluation after
// a vulnerability update: N onboarded devices, a VEX import that makes all
// of them vulnerable (flagging them), then the pass that decides again with
// a CEL policy and quarantines every one. Run with -benchtime 1x; set
// EMBARK_BENCH_DEVICES (default 100000).
func BenchmarkReevaluateAfterVEX(b *testing.B) {
	n := 100000
	if s := os.Getenv("EMBARK_BENCH_DEVICES"); s != "" {
		fmt.Sscan(s, &n)
	}
	ctx := context.Background()
	dir := b.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "registry.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ca, err := pki.Init(filepath.Join(dir, "ca"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for start := 0; start < n; start += 10000 {
		if err := st.Update(ctx, func(tx store.Tx) error {
			if start == 0 {
				if err := tx.PutManufacturer(device.Manufacturer{Name: "acme", TrustedAt: now}); err != nil {
					return err
				}
			}
			for i := start; i < min(start+10000, n); i++ {
				s := fmt.Sprintf("ACME-%07d", i)
				d := device.Device{ID: device.ID("acme", s), State: device.Onboarded, Zone: "production", UpdatedAt: now,
					Provenance: device.Provenance{Manufacturer: "acme", Serial: s, IDevIDKeySHA256: fmt.Sprintf("%064x", i+1),
						Model: "sensor-x", FirmwareVersion: "1.4.2", Owner: "example-operator"}}
				if err := tx.PutDevice(&d); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	p, err := policy.Parse("bench.yaml", []byte(benchPolicy))
	if err != nil {
		b.Fatal(err)
	}
	dec := NewPolicyDecider(StaticDecider{Zone: "default", Lifetime: time.Hour})
	dec.Set(p)
	svc, err := New(ctx, st, ca, WithDecider(dec))
	if err != nil {
		b.Fatal(err)
	}
	for _, doc := range []string{"sbom-sensor-x-1.4.2.json"} {
		src, err := os.ReadFile(filepath.Join("..", "vuln", "testdata", doc))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := vuln.Import(ctx, st, src, "bench", now); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := svc.Reevaluate(ctx, false, "sbom"); err != nil {
		b.Fatal(err)
	}
	vex, err := os.ReadFile(filepath.Join("..", "vuln", "testdata", "vex-openssl-affected.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		res, err := vuln.Import(ctx, st, vex, "bench", now)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		rr, err := svc.Reevaluate(ctx, false, "vex")
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if rr.Changed != n || res.AffectedDevices != n {
			b.Fatalf("import flagged %d, re-evaluation changed %d, want %d", res.AffectedDevices, rr.Changed, n)
		}
		b.ReportMetric(t1.Sub(t0).Seconds(), "import-s")
		b.ReportMetric(t2.Sub(t1).Seconds(), "reevaluate-s")
		b.ReportMetric(t2.Sub(t0).Seconds(), "total-s")
	}
}
