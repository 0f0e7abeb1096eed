package policy

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkDecide decides a typical device with each example policy: one
// that passes every check and is admitted by the last rules, so that most
// rules are evaluated.
func BenchmarkDecide(b *testing.B) {
	for _, c := range []struct{ file, model string }{
		{"general.yaml", "sensor-x"},
		{"hospital.yaml", "bedside-tablet-3"},
		{"ot-utility.yaml", "flow-meter-3"},
	} {
		b.Run(c.file, func(b *testing.B) {
			p, err := Load(filepath.Join("examples", c.file))
			if err != nil {
				b.Fatal(err)
			}
			in := fleetDevice(c.model)
			in.Vulns.Open, in.Vulns.MaxCVSS, in.Vulns.IDs = 1, 5.3, []string{"CVE-2026-0001"}
			if d, err := p.Decide(in); err != nil || d.Action != ActionAllow {
				b.Fatalf("Decide = %+v, %v", d, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Decide(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParse parses and compiles each example policy.
func BenchmarkParse(b *testing.B) {
	for _, file := range []string{"general.yaml", "hospital.yaml", "ot-utility.yaml"} {
		b.Run(file, func(b *testing.B) {
			src, err := os.ReadFile(filepath.Join("examples", file))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(file, src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
