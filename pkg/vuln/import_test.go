package vuln

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// A device becomes vulnerable after a VEX import, is flagged for
// re-evaluation, and a later resolved statement clears the finding.
func TestLifecycle(t *testing.T) {
	st := openStore(t)
	gone := dev("SN4", "sensor-x", "1.4.2")
	gone.State = device.Decommissioned
	reported := dev("SN5", "sensor-x", "1.3.0")
	reported.Reported.FirmwareVersion = "1.4.2"
	putDevices(t, st, dev("SN1", "sensor-x", "1.4.2"), dev("SN2", "sensor-x", "1.5.0"), dev("SN3", "sensor-y", "1.4.2"),
		gone, reported)
	flags := func() map[string]string {
		out := map[string]string{}
		for _, s := range []string{"SN1", "SN2", "SN3", "SN4", "SN5"} {
			out[s] = getDevice(t, st, s).Flags.Reevaluate
		}
		return out
	}

	// ok/sbom: the product's components, no findings, nothing flagged.
	res := mustImport(t, st, testdata(t, "sbom-sensor-x-1.4.2.json"))
	want := ImportResult{Format: "CycloneDX 1.6 JSON", Kind: "sbom", SHA256: res.SHA256, Product: "acme/sensor-x@1.4.2",
		Products: 1, Components: 5, Unmatched: []string{}, DataVersion: 1, ChangedProducts: []string{}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("sbom import\n got %+v\nwant %+v", res, want)
	}
	f := findings(t, st, "sensor-x", "1.4.2")
	if len(f.Open) != 0 || f.MaxCVSS != 0 || f.DataVersion != 1 || len(f.Components) != 5 || f.SBOM == nil ||
		f.SBOM.Serial != "urn:uuid:6f1c6e39-2b9d-4c67-9d1e-5b2a4f0c8a11" || f.SBOM.SHA256 != res.SHA256 || f.SBOM.DataVersion != 1 {
		t.Fatalf("findings after the SBOM: %+v", f)
	}
	if got := (Component{Name: "i2c-driver", Version: "0.9.4", BOMRef: "sensor-hal-i2c"}); f.Components[4] != got {
		t.Errorf("nested component: %+v, want %+v", f.Components[4], got)
	}

	// ok/vex affected: open finding, highest CVSS rating, devices flagged.
	res = mustImport(t, st, testdata(t, "vex-openssl-affected.json"))
	if res.Kind != "vex" || res.Statements != 1 || len(res.Unmatched) != 0 || res.DataVersion != 2 ||
		!reflect.DeepEqual(res.ChangedProducts, []string{"acme/sensor-x@1.4.2"}) || res.AffectedDevices != 2 {
		t.Fatalf("vex import: %+v", res)
	}
	f = findings(t, st, "sensor-x", "1.4.2")
	if got, want := openIDs(f), []string{"CVE-2024-5535 affected 9.1 3.0.14 pkg:generic/openssl@3.0.11 v2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("open findings %q, want %q", got, want)
	}
	if f.MaxCVSS != 9.1 || f.DataVersion != 2 {
		t.Errorf("max CVSS %v data version %d, want 9.1 and 2", f.MaxCVSS, f.DataVersion)
	}
	wantFlags := map[string]string{"SN1": "vulnerability data v2", "SN2": "", "SN3": "", "SN4": "", "SN5": "vulnerability data v2"}
	if got := flags(); !reflect.DeepEqual(got, wantFlags) {
		t.Errorf("flags %v, want %v", got, wantFlags)
	}
	if f := findings(t, st, "sensor-x", "1.5.0"); len(f.Open) != 0 || f.SBOM != nil || f.DataVersion != 2 {
		t.Errorf("another firmware: %+v", f)
	}

	// ok/same vex again: the statement is set again by the new data version,
	// but no finding changed, so no device is flagged.
	clearFlag(t, st, "SN1")
	res = mustImport(t, st, testdata(t, "vex-openssl-affected.json"))
	if res.DataVersion != 3 || res.AffectedDevices != 0 || len(res.ChangedProducts) != 0 {
		t.Errorf("repeated import: %+v", res)
	}
	if got := openIDs(findings(t, st, "sensor-x", "1.4.2")); len(got) != 1 || !strings.HasSuffix(got[0], " v3") {
		t.Errorf("after the repeated import: %q", got)
	}
	if got := getDevice(t, st, "SN1").Flags.Reevaluate; got != "" {
		t.Errorf("unchanged findings flagged SN1: %q", got)
	}

	// ok/vex resolved: the finding is gone, the devices flagged again.
	res = mustImport(t, st, testdata(t, "vex-openssl-resolved.json"))
	if res.DataVersion != 4 || res.AffectedDevices != 2 || res.Statements != 1 {
		t.Errorf("resolved import: %+v", res)
	}
	f = findings(t, st, "sensor-x", "1.4.2")
	if len(f.Open) != 0 || f.MaxCVSS != 0 || f.DataVersion != 4 {
		t.Errorf("after resolved: %+v", f)
	}
	wantFlags["SN1"], wantFlags["SN5"] = "vulnerability data v4", "vulnerability data v4"
	if got := flags(); !reflect.DeepEqual(got, wantFlags) {
		t.Errorf("flags %v, want %v", got, wantFlags)
	}

	// One audit entry per import.
	var entries []audit.Entry
	if err := st.View(context.Background(), func(r store.Reader) error {
		return r.Audit(0, func(e audit.Entry) (bool, error) { entries = append(entries, e); return true, nil })
	}); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Fatalf("%d audit entries, want 4", len(entries))
	}
	for i, e := range entries {
		if e.Action != "import-vuln" || e.Actor != operator || e.Outcome != "ok" || !strings.Contains(e.Detail, "data version") {
			t.Errorf("audit entry %d: %+v", i, e)
		}
	}
}

// Statements about the product decide over statements about its
// components; closed states never show.
func TestStates(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
		want []string
	}{
		{name: "ok/component not_affected", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "not_affected", 7, "pkg:generic/openssl@3.0.11")))},
		{name: "ok/component false_positive", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "false_positive", 7, "pkg:generic/zlib@1.3.1")))},
		{name: "ok/component resolved_with_pedigree", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "resolved_with_pedigree", 7, "pkg:generic/zlib@1.3.1")))},
		{name: "ok/product not_affected overrides an affected component",
			doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "exploitable", 7, "pkg:generic/openssl@3.0.11"),
				vulnJSON("CVE-1", "not_affected", 0, "product")))},
		{name: "ok/product affected", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "exploitable", 7.5, "product"))),
			want: []string{"CVE-1 affected 7.5  pkg:generic/acme/sensor-x@1.4.2 v2"}},
		{name: "ok/no analysis is in triage", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "", 4.3, "pkg:generic/busybox@1.36.1"))),
			want: []string{"CVE-1 in_triage 4.3  pkg:generic/busybox@1.36.1 v2"}},
		{name: "ok/openvex vocabulary", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "affected", 3, "pkg:generic/busybox@1.36.1"),
			vulnJSON("CVE-2", "under_investigation", 2, "pkg:generic/busybox@1.36.1"), vulnJSON("CVE-3", "fixed", 9, "pkg:generic/busybox@1.36.1"))),
			want: []string{"CVE-1 affected 3  pkg:generic/busybox@1.36.1 v2", "CVE-2 in_triage 2  pkg:generic/busybox@1.36.1 v2"}},
		{name: "ok/two components, the higher CVSS shows",
			doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "exploitable", 5, "pkg:generic/busybox@1.36.1"),
				vulnJSON("CVE-1", "exploitable", 8, "pkg:generic/zlib@1.3.1"), vulnJSON("CVE-1", "not_affected", 9, "pkg:generic/openssl@3.0.11"))),
			want: []string{"CVE-1 affected 8  pkg:generic/zlib@1.3.1 v2"}},
		{name: "ok/sorted by CVSS", doc: bom(sensorX142, vulns(vulnJSON("CVE-B", "exploitable", 5, "pkg:generic/busybox@1.36.1"),
			vulnJSON("CVE-A", "exploitable", 5, "product"), vulnJSON("CVE-C", "in_triage", 9.8, "pkg:generic/zlib@1.3.1"))),
			want: []string{"CVE-C in_triage 9.8  pkg:generic/zlib@1.3.1 v2", "CVE-A affected 5  pkg:generic/acme/sensor-x@1.4.2 v2",
				"CVE-B affected 5  pkg:generic/busybox@1.36.1 v2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			putDevices(t, st, dev("SN1", "sensor-x", "1.4.2"))
			mustImport(t, st, testdata(t, "sbom-sensor-x-1.4.2.json"))
			res := mustImport(t, st, tt.doc)
			f := findings(t, st, "sensor-x", "1.4.2")
			want := tt.want
			if want == nil {
				want = []string{}
			}
			if got := openIDs(f); !reflect.DeepEqual(got, want) {
				t.Errorf("open %q, want %q", got, want)
			}
			wantFlag, wantAffected := "", 0
			if len(want) > 0 {
				wantFlag, wantAffected = "vulnerability data v2", 1
			}
			if got := getDevice(t, st, "SN1").Flags.Reevaluate; got != wantFlag || res.AffectedDevices != wantAffected {
				t.Errorf("flag %q, affected devices %d; want %q, %d", got, res.AffectedDevices, wantFlag, wantAffected)
			}
		})
	}
}

// The forms a statement's ref may take.
func TestRefs(t *testing.T) {
	const sbomSerial = "urn:cdx:6f1c6e39-2b9d-4c67-9d1e-5b2a4f0c8a11/1"
	tests := []struct {
		name          string
		doc           []byte
		wantVia       string
		wantUnmatched []string
	}{
		{name: "ok/purl", doc: bom("", vulns(vulnJSON("CVE-1", "exploitable", 7, "pkg:generic/zlib@1.3.1"))),
			wantVia: "pkg:generic/zlib@1.3.1"},
		{name: "ok/product purl with qualifiers, upper-case manufacturer",
			doc:     bom("", vulns(vulnJSON("CVE-1", "exploitable", 7, "pkg:generic/ACME/sensor-x@1.4.2?arch=arm"))),
			wantVia: "pkg:generic/acme/sensor-x@1.4.2"},
		{name: "ok/bom-ref of the document's product", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "exploitable", 7, "product"))),
			wantVia: "pkg:generic/acme/sensor-x@1.4.2"},
		{name: "ok/no affects in a document about the product", doc: bom(sensorX142, vulns(`{"id":"CVE-1","analysis":{"state":"exploitable"}}`)),
			wantVia: "pkg:generic/acme/sensor-x@1.4.2"},
		{name: "ok/product by name, version and supplier",
			doc: bom(`{"type":"firmware","bom-ref":"p","name":"sensor-x","version":"1.4.2","supplier":{"name":"Acme"}}`,
				vulns(vulnJSON("CVE-1", "exploitable", 7, "p"))),
			wantVia: "pkg:generic/acme/sensor-x@1.4.2"},
		{name: "ok/bom-ref of a component in the same document",
			doc: bom(`{"type":"firmware","name":"x"}`, `"components":[{"type":"library","bom-ref":"z","name":"zlib","purl":"pkg:generic/zlib@1.3.1"}]`,
				vulns(vulnJSON("CVE-1", "exploitable", 7, "z"))),
			wantVia: "pkg:generic/zlib@1.3.1"},
		{name: "ok/BOM-Link into the stored SBOM", doc: bom("", vulns(vulnJSON("CVE-1", "exploitable", 7, sbomSerial+"#openssl"))),
			wantVia: "pkg:generic/openssl@3.0.11"},
		{name: "ok/BOM-Link to the stored SBOM's product", doc: bom("", vulns(vulnJSON("CVE-1", "exploitable", 7, sbomSerial))),
			wantVia: "pkg:generic/acme/sensor-x@1.4.2"},
		{name: "ok/bom-ref of the stored SBOM", doc: bom("", vulns(vulnJSON("CVE-1", "exploitable", 7, "busybox"))),
			wantVia: "pkg:generic/busybox@1.36.1"},
		{name: "ok/component without purl, by BOM-Link",
			doc:     bom("", vulns(vulnJSON("CVE-1", "exploitable", 7, sbomSerial+"#sensor-hal-i2c"))),
			wantVia: "acme/sensor-x@1.4.2#sensor-hal-i2c"},
		{name: "ok/unknown bom-ref is unmatched and not stored", doc: bom("", vulns(vulnJSON("CVE-1", "exploitable", 7, "nosuchref"))),
			wantUnmatched: []string{"CVE-1 nosuchref (unknown bom-ref; not stored)"}},
		{name: "ok/BOM-Link into an unknown SBOM is unmatched",
			doc: bom("", vulns(vulnJSON("CVE-1", "exploitable", 7, "urn:cdx:00000000-0000-4000-8000-000000000000/1#openssl"))),
			wantUnmatched: []string{
				"CVE-1 urn:cdx:00000000-0000-4000-8000-000000000000/1#openssl (no stored SBOM with this serial number; not stored)"}},
		{name: "ok/unknown product purl is unmatched",
			doc:           bom("", vulns(vulnJSON("CVE-1", "exploitable", 7, "pkg:generic/other/thing@1"))),
			wantUnmatched: []string{"CVE-1 pkg:generic/other/thing@1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			mustImport(t, st, testdata(t, "sbom-sensor-x-1.4.2.json"))
			res := mustImport(t, st, tt.doc)
			want := tt.wantUnmatched
			if want == nil {
				want = []string{}
			}
			if !reflect.DeepEqual(res.Unmatched, want) {
				t.Errorf("unmatched %q, want %q", res.Unmatched, want)
			}
			f := findings(t, st, "sensor-x", "1.4.2")
			var via []string
			for _, o := range f.Open {
				via = append(via, o.Via)
			}
			if tt.wantVia == "" && len(via) != 0 || tt.wantVia != "" && !reflect.DeepEqual(via, []string{tt.wantVia}) {
				t.Errorf("open findings via %q, want %q", via, tt.wantVia)
			}
		})
	}
}

// An XML document holding an SBOM and a statement on one of its components.
func TestXML(t *testing.T) {
	st := openStore(t)
	putDevices(t, st, dev("SN2", "sensor-x", "1.5.0"))
	res := mustImport(t, st, testdata(t, "sbom-sensor-x-1.5.0.xml"))
	if res.Format != "CycloneDX 1.5 XML" || res.Kind != "sbom+vex" || res.Product != "acme/sensor-x@1.5.0" ||
		res.Components != 2 || res.Statements != 1 || res.AffectedDevices != 1 {
		t.Fatalf("xml import: %+v", res)
	}
	f := findings(t, st, "sensor-x", "1.5.0")
	if got, want := openIDs(f), []string{"CVE-2023-42366 in_triage 5.5  pkg:generic/busybox@1.36.1 v1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("open %q, want %q", got, want)
	}
}

// Later documents update earlier ones.
func TestRepeatedImports(t *testing.T) {
	st := openStore(t)
	putDevices(t, st, dev("SN1", "sensor-x", "1.4.2"), dev("SN2", "sensor-x", "1.5.0"))
	mustImport(t, st, testdata(t, "sbom-sensor-x-1.4.2.json"))
	steps := []struct {
		name          string
		doc           []byte
		wantOpen      []string
		wantAffected  int
		wantUnmatched []string
	}{
		{name: "ok/in triage", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "in_triage", 5, "pkg:generic/zlib@1.3.1"))),
			wantOpen: []string{"CVE-1 in_triage 5  pkg:generic/zlib@1.3.1 v2"}, wantAffected: 1},
		{name: "ok/rescored and confirmed", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "exploitable", 9.8, "pkg:generic/zlib@1.3.1"))),
			wantOpen: []string{"CVE-1 affected 9.8  pkg:generic/zlib@1.3.1 v3"}, wantAffected: 1},
		{name: "ok/fixed-in added by property",
			doc: bom(sensorX142, vulns(`{"id":"CVE-1","ratings":[{"score":9.8,"method":"CVSSv4"}],"analysis":{"state":"exploitable"},`+
				`"properties":[{"name":"embark:fixed-in","value":"1.3.2"}],"affects":[{"ref":"pkg:generic/zlib@1.3.1"}]}`)),
			wantOpen: []string{"CVE-1 affected 9.8 1.3.2 pkg:generic/zlib@1.3.1 v4"}, wantAffected: 1},
		{name: "ok/another vulnerability leaves the first", doc: bom(sensorX142, vulns(vulnJSON("CVE-2", "exploitable", 4, "product"))),
			wantOpen:     []string{"CVE-1 affected 9.8 1.3.2 pkg:generic/zlib@1.3.1 v4", "CVE-2 affected 4  pkg:generic/acme/sensor-x@1.4.2 v5"},
			wantAffected: 1},
		{name: "ok/a new SBOM without zlib drops its finding",
			doc:      bom(sensorX142, `"components":[{"type":"library","name":"zlib","version":"1.3.2","purl":"pkg:generic/zlib@1.3.2"}]`),
			wantOpen: []string{"CVE-2 affected 4  pkg:generic/acme/sensor-x@1.4.2 v5"}, wantAffected: 1},
		{name: "ok/zlib 1.3.1 is now unmatched", doc: bom("", vulns(vulnJSON("CVE-3", "exploitable", 4, "pkg:generic/zlib@1.3.1"))),
			wantOpen:      []string{"CVE-2 affected 4  pkg:generic/acme/sensor-x@1.4.2 v5"},
			wantUnmatched: []string{"CVE-3 pkg:generic/zlib@1.3.1"}},
	}
	for i, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clearFlag(t, st, "SN1")
			res := mustImport(t, st, s.doc)
			if res.DataVersion != uint64(i+2) || res.AffectedDevices != s.wantAffected {
				t.Errorf("data version %d affected %d, want %d and %d", res.DataVersion, res.AffectedDevices, i+2, s.wantAffected)
			}
			f := findings(t, st, "sensor-x", "1.4.2")
			if got := openIDs(f); !reflect.DeepEqual(got, s.wantOpen) {
				t.Errorf("open %q, want %q", got, s.wantOpen)
			}
			if f.DataVersion != uint64(i+2) {
				t.Errorf("findings data version %d, want %d", f.DataVersion, i+2)
			}
			wantFlag := ""
			if s.wantAffected > 0 {
				wantFlag = fmt.Sprintf("vulnerability data v%d", i+2)
			}
			if got := getDevice(t, st, "SN1").Flags.Reevaluate; got != wantFlag {
				t.Errorf("SN1 flag %q, want %q", got, wantFlag)
			}
			if got := getDevice(t, st, "SN2").Flags.Reevaluate; got != "" {
				t.Errorf("SN2 (another firmware) flagged: %q", got)
			}
			if want := s.wantUnmatched; !reflect.DeepEqual(res.Unmatched, append([]string{}, want...)) {
				t.Errorf("unmatched %q, want %q", res.Unmatched, want)
			}
		})
	}
}

// Statements about unknown things are accepted, reported, and apply once
// the thing becomes known.
func TestUnmatched(t *testing.T) {
	st := openStore(t)
	putDevices(t, st, dev("SN2", "sensor-x", "1.5.0"))

	res := mustImport(t, st, bom("", vulns(vulnJSON("CVE-1", "exploitable", 6.1, "pkg:generic/libfoo@2.0", "pkg:generic/acme/sensor-z@9"))))
	if want := []string{"CVE-1 pkg:generic/acme/sensor-z@9", "CVE-1 pkg:generic/libfoo@2.0"}; !reflect.DeepEqual(res.Unmatched, want) ||
		res.Statements != 2 || res.DataVersion != 1 || res.AffectedDevices != 0 {
		t.Fatalf("unknown refs: %+v", res)
	}

	// A product without SBOM that devices are is known.
	res = mustImport(t, st, bom("", vulns(vulnJSON("CVE-2", "exploitable", 3.3, "pkg:generic/acme/sensor-x@1.5.0"))))
	if len(res.Unmatched) != 0 || res.AffectedDevices != 1 {
		t.Errorf("product of a device: %+v", res)
	}

	// An SBOM listing libfoo picks up the statement stored before.
	clearFlag(t, st, "SN2")
	res = mustImport(t, st, bom(`{"type":"firmware","purl":"pkg:generic/acme/sensor-x@1.5.0","name":"sensor-x"}`,
		`"components":[{"type":"library","name":"libfoo","purl":"pkg:generic/libfoo@2.0"}]`))
	if res.AffectedDevices != 1 {
		t.Errorf("sbom import: %+v", res)
	}
	want := []string{"CVE-1 affected 6.1  pkg:generic/libfoo@2.0 v1", "CVE-2 affected 3.3  pkg:generic/acme/sensor-x@1.5.0 v2"}
	if got := openIDs(findings(t, st, "sensor-x", "1.5.0")); !reflect.DeepEqual(got, want) {
		t.Errorf("open %q, want %q", got, want)
	}
	if got := getDevice(t, st, "SN2").Flags.Reevaluate; got != "vulnerability data v3" {
		t.Errorf("SN2 flag %q", got)
	}
}

// Bad documents are refused with the exact error and change nothing.
func TestBadInput(t *testing.T) {
	st := openStore(t)
	putDevices(t, st, dev("SN1", "sensor-x", "1.4.2"))
	mustImport(t, st, testdata(t, "sbom-sensor-x-1.4.2.json"))
	mustImport(t, st, testdata(t, "vex-openssl-affected.json"))
	before := snap(t, st)

	many := `"components":[` + strings.Repeat(`{"type":"library","name":"a"},`, MaxComponents) + `{"type":"library","name":"a"}]`
	big := append(bom(sensorX142, vulns(vulnJSON("CVE-1", "exploitable", 5, "product"))), bytes.Repeat([]byte(" "), MaxDocumentSize)...)
	tests := []struct {
		name string
		doc  []byte
		want error
		why  string
	}{
		{name: "fail/malformed JSON", doc: []byte(`{"bomFormat":"CycloneDX",`), want: ErrMalformed, why: "JSON"},
		{name: "fail/JSON but not CycloneDX", doc: []byte(`{"name":"sensor-x","version":"1.4.2"}`), want: ErrMalformed,
			why: `bomFormat "", want "CycloneDX"`},
		{name: "fail/SPDX", doc: []byte(`{"spdxVersion":"SPDX-2.3","bomFormat":"SPDX"}`), want: ErrMalformed, why: "bomFormat"},
		{name: "fail/unknown spec version", doc: []byte(`{"bomFormat":"CycloneDX","specVersion":"9.9"}`), want: ErrMalformed,
			why: "invalid specification version"},
		{name: "fail/no spec version", doc: []byte(`{"bomFormat":"CycloneDX","components":[]}`), want: ErrMalformed, why: "no specVersion"},
		{name: "fail/trailing data", doc: append(bom(sensorX142, `"components":[]`), "{}"...), want: ErrMalformed, why: "JSON"},
		{name: "fail/JSON array", doc: []byte(`[]`), want: ErrMalformed, why: "neither JSON nor XML"},
		{name: "fail/empty", doc: []byte(" \n"), want: ErrMalformed, why: "empty"},
		{name: "fail/oversized", doc: big, want: ErrTooLarge},
		{name: "fail/XML not CycloneDX", doc: []byte(`<bom xmlns="http://spdx.org/x"><components/></bom>`), want: ErrMalformed,
			why: "want a CycloneDX bom"},
		{name: "fail/XML with a second element",
			doc:  append(bytes.Clone(testdata(t, "sbom-sensor-x-1.5.0.xml")), "<bom/>"...),
			want: ErrMalformed, why: "after the bom element"},
		{name: "fail/member twice", doc: bom(sensorX142, `"components":[]`, `"components":[]`), want: ErrMalformed,
			why: `member "components" twice`},
		{name: "fail/too many components", doc: bom(sensorX142, many), want: ErrMalformed, why: "more than 100000 components"},
		{name: "fail/components not an array", doc: bom(sensorX142, `"components":{}`), want: ErrMalformed, why: "want an array"},
		{name: "fail/XML text after the bom element",
			doc:  append(bytes.Clone(testdata(t, "sbom-sensor-x-1.5.0.xml")), "trailing"...),
			want: ErrMalformed, why: "content after the bom element"},
		{name: "fail/XML of an unknown CycloneDX version", doc: []byte(`<bom xmlns="http://cyclonedx.org/schema/bom/2.0"/>`),
			want: ErrMalformed, why: "unknown CycloneDX namespace"},
		{name: "fail/nothing to import", doc: bom(sensorX142), want: ErrMalformed, why: "neither components nor vulnerabilities"},
		{name: "fail/empty vulnerabilities", doc: bom(sensorX142, `"vulnerabilities":[]`), want: ErrMalformed,
			why: "neither components nor vulnerabilities"},
		{name: "fail/SBOM without product", doc: bom("", `"components":[{"type":"library","name":"zlib"}]`), want: ErrMalformed,
			why: "must name its product"},
		{name: "fail/SBOM product without manufacturer", doc: bom(`{"type":"firmware","name":"sensor-x","version":"1.4.2"}`,
			`"components":[]`), want: ErrMalformed, why: "no manufacturer or supplier"},
		{name: "fail/SBOM product with a bad manufacturer", doc: bom(`{"type":"firmware","name":"x","version":"1","supplier":{"name":"Acme Corp."}}`,
			`"components":[]`), want: ErrMalformed, why: "manufacturer name"},
		{name: "fail/component purl without pkg:", doc: bom(sensorX142, `"components":[{"type":"library","name":"z","purl":"zlib@1"}]`),
			want: ErrMalformed, why: "does not start with pkg:"},
		{name: "fail/control character in a bom-ref", doc: bom(sensorX142, `"components":[{"type":"library","name":"z","bom-ref":"a\u0000b"}]`),
			want: ErrMalformed, why: "control characters"},
		{name: "fail/vulnerability without id", doc: bom(sensorX142, vulns(vulnJSON("", "exploitable", 5, "product"))), want: ErrMalformed,
			why: "vulnerabilities[0]: no id"},
		{name: "fail/unknown analysis state", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "exploitable", 5, "product"), vulnJSON("CVE-2", "pwned", 5, "product"))),
			want: ErrMalformed, why: `vulnerabilities[1]: CVE-2: unknown analysis state "pwned"`},
		{name: "fail/CVSS above 10", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "exploitable", 10.5, "product"))), want: ErrMalformed,
			why: "outside 0..10"},
		{name: "fail/empty ref", doc: bom(sensorX142, vulns(vulnJSON("CVE-1", "exploitable", 5, " "))), want: ErrMalformed, why: "no ref"},
		{name: "fail/id too long", doc: bom(sensorX142, vulns(vulnJSON("CVE-"+strings.Repeat("1", MaxIDLen), "exploitable", 5, "product"))),
			want: ErrMalformed, why: "id of 68 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Import(context.Background(), st, tt.doc, operator, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("err = %v, want it to say %q", err, tt.why)
			}
			if !reflect.DeepEqual(res, ImportResult{}) {
				t.Errorf("result of a refused import: %+v", res)
			}
			before.mustEqual(t, snap(t, st))
		})
	}
}

// A commit that fails changes nothing either.
func TestImportCanceled(t *testing.T) {
	st := openStore(t)
	mustImport(t, st, testdata(t, "sbom-sensor-x-1.4.2.json"))
	before := snap(t, st)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Import(ctx, st, testdata(t, "vex-openssl-affected.json"), operator, now); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	before.mustEqual(t, snap(t, st))
}

func TestFindingsForUnknown(t *testing.T) {
	st := openStore(t)
	mustImport(t, st, testdata(t, "sbom-sensor-x-1.4.2.json"))
	tests := []struct {
		name, mfr, model, fw string
		wantProduct          string
	}{
		{name: "ok/unknown product", mfr: "acme", model: "sensor-q", fw: "1", wantProduct: "pkg:generic/acme/sensor-q@1"},
		{name: "ok/escaped parts", mfr: "acme", model: "a/b", fw: "1.0+rc1", wantProduct: "pkg:generic/acme/a%2Fb@1.0%2Brc1"},
		{name: "ok/no firmware version", mfr: "acme", model: "sensor-x"},
		{name: "ok/invalid manufacturer", mfr: "ACME", model: "sensor-x", fw: "1.4.2"},
		{name: "ok/model too long", mfr: "acme", model: strings.Repeat("m", MaxPartLen+1), fw: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Findings
			err := st.View(context.Background(), func(r store.Reader) error {
				var err error
				f, err = FindingsFor(r, tt.mfr, tt.model, tt.fw)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			want := Findings{Product: tt.wantProduct, Open: []Finding{}, DataVersion: 1}
			if !reflect.DeepEqual(f, want) {
				t.Errorf("findings %+v, want %+v", f, want)
			}
		})
	}
}

func TestProductPurl(t *testing.T) {
	tests := []struct {
		name, purl string
		want       string // product key, "" if not a product
	}{
		{name: "ok/plain", purl: "pkg:generic/acme/sensor-x@1.4.2", want: "acme/sensor-x@1.4.2"},
		{name: "ok/escaped", purl: "pkg:generic/acme/a%2Fb@1.0+rc1?x=y#sub", want: "acme/a%2Fb@1.0%2Brc1"},
		{name: "ok/upper-case type and namespace", purl: "PKG:Generic/AcMe/s@1", want: "acme/s@1"},
		{name: "fail/no namespace", purl: "pkg:generic/busybox@1.36.1"},
		{name: "fail/two namespace segments", purl: "pkg:generic/a/b/c@1"},
		{name: "fail/no version", purl: "pkg:generic/acme/sensor-x"},
		{name: "fail/other type", purl: "pkg:deb/debian/openssl@3.0.11"},
		{name: "fail/invalid manufacturer", purl: "pkg:generic/ac_me/x@1"},
		{name: "fail/bad escape", purl: "pkg:generic/acme/x@1%zz"},
		{name: "fail/empty version", purl: "pkg:generic/acme/x@"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := productOfPurl(tt.purl)
			got := ""
			if ok {
				got = p.key()
				if back, ok := productOfKey(got); !ok || back != p {
					t.Errorf("productOfKey(%q) = %+v, %v", got, back, ok)
				}
			}
			if got != tt.want {
				t.Errorf("productOfPurl(%q) = %q, want %q", tt.purl, got, tt.want)
			}
		})
	}
}
