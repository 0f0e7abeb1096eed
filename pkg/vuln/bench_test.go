package vuln

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/embark-iot/embark/pkg/store"
)

// Benchmark shapes: each product's SBOM lists 8 components, 4 of them from a
// pool shared by all products; 10,000 statements, half about products, half
// about pool components (5 per pooled purl).
const (
	benchProducts = 10000
	benchPool     = 1000
)

func benchSBOM(i int) []byte {
	var cs []string
	for j := range 4 {
		p := (i*7 + j*131) % benchPool
		cs = append(cs, fmt.Sprintf(`{"type":"library","bom-ref":"c%d","name":"lib%d","version":"1.%d","purl":"pkg:generic/lib%d@1.%d"}`, j, p, p, p, p))
	}
	for j := range 4 {
		cs = append(cs, fmt.Sprintf(`{"type":"library","bom-ref":"u%d","name":"own%d","version":"%d","purl":"pkg:generic/acme/own-%d-%d@1"}`, j, j, i, i, j))
	}
	return bom(fmt.Sprintf(`{"type":"firmware","name":"m%d","version":"1.0.0","purl":"pkg:generic/acme/m%d@1.0.0"}`, i, i),
		`"components":[`+strings.Join(cs, ",")+`]`)
}

// fillBench stores the benchmark's SBOMs and statements.
func fillBench(b *testing.B, st store.Store) {
	b.Helper()
	docs := make([]*document, benchProducts)
	for i := range docs {
		var err error
		if docs[i], err = parse(benchSBOM(i)); err != nil {
			b.Fatal(err)
		}
	}
	for start := 0; start < len(docs); start += 500 {
		err := st.Update(context.Background(), func(tx store.Tx) error {
			for _, d := range docs[start:min(start+500, len(docs))] {
				if err := storeSBOM(tx, d, 1, now); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	err := st.Update(context.Background(), func(tx store.Tx) error {
		for i := range benchProducts {
			subject := product{"acme", fmt.Sprintf("m%d", i*2%benchProducts), "1.0.0"}.purl()
			if i%2 == 1 {
				p := i / 2 % benchPool
				subject = fmt.Sprintf("pkg:generic/lib%d@1.%d", p, p)
			}
			st := Affected
			if i%3 == 0 {
				st = NotAffected
			}
			s := statement{ID: fmt.Sprintf("CVE-2026-%05d", i), State: st, CVSS: float64(i%100) / 10, DataVersion: 1, At: now.Unix()}
			if err := put(tx, KindStatement, statementKey(subject, s.ID), s); err != nil {
				return err
			}
		}
		return put(tx, KindMeta, metaVersion, uint64(1))
	})
	if err != nil {
		b.Fatal(err)
	}
	for start := 0; start < benchProducts; start += 1000 {
		err := st.Update(context.Background(), func(tx store.Tx) error {
			for i := start; i < start+1000; i++ {
				if _, err := refreshOpen(tx, product{"acme", fmt.Sprintf("m%d", i), "1.0.0"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFindings measures the vulnerability part of a device's
// provenance view: one read transaction and Summary (what decisions use) or
// FindingsFor (with the component list).
func BenchmarkFindings(b *testing.B) {
	st := openStore(b)
	fillBench(b, st)
	ctx := context.Background()
	for _, bm := range []struct {
		name string
		fn   func(store.Reader, string, string, string) (Findings, error)
	}{{"summary", Summary}, {"with-components", FindingsFor}} {
		b.Run(bm.name, func(b *testing.B) {
			var open, comps int
			i := 0
			for b.Loop() {
				err := st.View(ctx, func(r store.Reader) error {
					f, err := bm.fn(r, "acme", fmt.Sprintf("m%d", i%benchProducts), "1.0.0")
					open += len(f.Open)
					comps += len(f.Components)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
				i += 7919
			}
			b.ReportMetric(float64(open)/float64(b.N), "open/op")
			b.ReportMetric(float64(comps)/float64(b.N), "components/op")
		})
	}
}

// BenchmarkImport100kDevices imports documents about the product 100,000
// devices are. flag-all: a VEX statement about one of its components that
// flips between affected and fixed, so every import flags all devices.
// scan-only: a VEX about another model of their manufacturer, so every
// import walks the manufacturer's devices to see whether any is that model.
func BenchmarkImport100kDevices(b *testing.B) {
	const n = 100000
	st := openStore(b)
	ctx := context.Background()
	for start := 0; start < n; start += 10000 {
		err := st.Update(ctx, func(tx store.Tx) error {
			for i := start; i < start+10000; i++ {
				d := dev(fmt.Sprintf("SN%06d", i), "sensor-x", "1.4.2")
				if err := tx.PutDevice(&d); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if _, err := Import(ctx, st, testdata(b, "sbom-sensor-x-1.4.2.json"), operator, now); err != nil {
		b.Fatal(err)
	}
	b.Run("flag-all", func(b *testing.B) {
		docs := [][]byte{testdata(b, "vex-openssl-affected.json"), testdata(b, "vex-openssl-resolved.json")}
		i := 0
		for b.Loop() {
			res, err := Import(ctx, st, docs[i%2], operator, now)
			if err != nil {
				b.Fatal(err)
			}
			if res.AffectedDevices != n {
				b.Fatalf("%d devices flagged, want %d", res.AffectedDevices, n)
			}
			i++
		}
		d := getDevice(b, st, "SN099999")
		if d.Flags.Reevaluate == "" {
			b.Fatal("last device not flagged")
		}
	})
	b.Run("scan-only", func(b *testing.B) {
		doc := bom("", vulns(vulnJSON("CVE-1", "exploitable", 5, "pkg:generic/acme/sensor-q@1.0")))
		for b.Loop() {
			res, err := Import(ctx, st, doc, operator, now)
			if err != nil {
				b.Fatal(err)
			}
			if res.AffectedDevices != 0 || len(res.Unmatched) != 1 {
				b.Fatalf("result %+v", res)
			}
		}
	})
}
