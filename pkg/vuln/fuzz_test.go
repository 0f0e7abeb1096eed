package vuln

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary documents to the parser: it never panics, refuses
// with ErrMalformed or ErrTooLarge only, and what it accepts holds what
// Import relies on.
func FuzzParse(f *testing.F) {
	names, err := filepath.Glob(filepath.Join("testdata", "*.*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(bom(sensorX142, vulns(vulnJSON("CVE-1", "exploitable", 5, "product", "pkg:generic/zlib@1"))))
	f.Add(bom("", vulns(vulnJSON("CVE-1", "", 5, "urn:cdx:6f1c6e39-2b9d-4c67-9d1e-5b2a4f0c8a11/1#openssl"))))
	f.Add([]byte(`<bom xmlns="http://cyclonedx.org/schema/bom/1.4"><components><component type="library"><name>x</name></component></components></bom>`))
	f.Add([]byte(`{"bomFormat":"CycloneDX","specVersion":"1.4"}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		d, err := parse(doc)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("parse: unexpected error %v", err)
			}
			return
		}
		if d.sbom && (d.product == nil || d.product.check() != nil) {
			t.Fatalf("an SBOM without a valid product: %+v", d.product)
		}
		if !d.sbom && len(d.statements) == 0 {
			t.Fatal("accepted a document with nothing to import")
		}
		if !d.sbom && d.components != nil {
			t.Fatal("components kept without an SBOM")
		}
		if len(d.serial) > 128 || !printable(d.serial) {
			t.Fatalf("serial %q", d.serial)
		}
		for _, s := range d.statements {
			if s.ID == "" || len(s.ID) > MaxIDLen || !printable(s.ID) || !printable(s.Ref) {
				t.Fatalf("statement %+v", s)
			}
			if math.IsNaN(s.CVSS) || s.CVSS < 0 || s.CVSS > 10 {
				t.Fatalf("CVSS %v", s.CVSS)
			}
			switch s.State {
			case Affected, NotAffected, Fixed, InTriage, FalsePositive:
			default:
				t.Fatalf("state %q", s.State)
			}
		}
		for ref, subj := range d.bomRefs {
			if len(ref) > MaxRefLen || !printable(ref) || !printable(subj) {
				t.Fatalf("bom-ref %q -> %q", ref, subj)
			}
		}
	})
}
