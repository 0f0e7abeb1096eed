package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/vuln"
)

func vulnDoc(t testing.TB, name string) []byte {
	t.Helper()
	return read(t, filepath.Join("..", "vuln", "testdata", name))
}

const findingsQuery = "/v1/vuln?manufacturer=acme&model=sensor-x&firmware=1.4.2"

func TestVulnImportAndFindings(t *testing.T) {
	e := loaded(t) // five acme sensor-x 1.4.2 devices

	var res vuln.ImportResult
	e.mustDo(t, http.MethodPost, "/v1/vuln", vulnDoc(t, "sbom-sensor-x-1.4.2.json"), http.StatusOK, &res)
	if res.Product != "acme/sensor-x@1.4.2" || res.Components != 5 || res.DataVersion != 1 || res.AffectedDevices != 0 {
		t.Errorf("sbom: %+v", res)
	}
	e.mustDo(t, http.MethodPost, "/v1/vuln", vulnDoc(t, "vex-openssl-affected.json"), http.StatusOK, &res)
	if res.Statements != 1 || res.DataVersion != 2 || res.AffectedDevices != 5 || len(res.Unmatched) != 0 {
		t.Errorf("vex: %+v", res)
	}

	var f vuln.Findings
	e.mustDo(t, http.MethodGet, findingsQuery, nil, http.StatusOK, &f)
	want := []vuln.Finding{{ID: "CVE-2024-5535", State: vuln.Affected, CVSS: 9.1, FixedIn: "3.0.14", Via: "pkg:generic/openssl@3.0.11",
		DataVersion: 2}}
	if !reflect.DeepEqual(f.Open, want) || f.MaxCVSS != 9.1 || f.DataVersion != 2 || len(f.Components) != 5 ||
		f.Product != "pkg:generic/acme/sensor-x@1.4.2" {
		t.Errorf("findings: %+v", f)
	}
	var d DeviceDetail
	e.mustDo(t, http.MethodGet, "/v1/devices/acme:ACME-000003", nil, http.StatusOK, &d)
	if d.Device.Flags.Reevaluate != "vulnerability data v2" {
		t.Errorf("device flags: %+v", d.Device.Flags)
	}

	e.mustDo(t, http.MethodPost, "/v1/vuln", vulnDoc(t, "vex-openssl-resolved.json"), http.StatusOK, &res)
	e.mustDo(t, http.MethodGet, findingsQuery, nil, http.StatusOK, &f)
	if len(f.Open) != 0 || f.MaxCVSS != 0 || f.DataVersion != 3 {
		t.Errorf("findings after resolved: %+v", f)
	}

	var page AuditPage
	e.mustDo(t, http.MethodGet, "/v1/audit?after=2", nil, http.StatusOK, &page)
	if len(page.Entries) != 3 || page.Entries[0].Action != "import-vuln" || page.Entries[0].Actor != "operator:tester" {
		t.Errorf("audit: %+v", page.Entries)
	}
}

func TestVulnBadRequests(t *testing.T) {
	e := loaded(t)
	e.mustDo(t, http.MethodPost, "/v1/vuln", vulnDoc(t, "sbom-sensor-x-1.4.2.json"), http.StatusOK, nil)
	stats := func() store.Stats {
		s, err := e.st.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := stats()
	tests := []struct {
		name    string
		method  string
		target  string
		body    io.Reader
		code    int
		wantErr string
	}{
		{name: "fail/malformed JSON", method: http.MethodPost, target: "/v1/vuln", body: strings.NewReader(`{"bomFormat":`),
			code: http.StatusBadRequest, wantErr: "malformed CycloneDX document: JSON"},
		{name: "fail/not CycloneDX", method: http.MethodPost, target: "/v1/vuln", body: strings.NewReader(`{"specVersion":"1.6"}`),
			code: http.StatusBadRequest, wantErr: `bomFormat "", want "CycloneDX"`},
		{name: "fail/empty body", method: http.MethodPost, target: "/v1/vuln", body: strings.NewReader(""),
			code: http.StatusBadRequest, wantErr: "empty document"},
		{name: "fail/too large", method: http.MethodPost, target: "/v1/vuln", body: io.LimitReader(zeros{}, vuln.MaxDocumentSize+1),
			code: http.StatusRequestEntityTooLarge, wantErr: "body exceeds"},
		{name: "fail/findings without firmware", method: http.MethodGet, target: "/v1/vuln?manufacturer=acme&model=sensor-x",
			code: http.StatusBadRequest, wantErr: "want manufacturer, model and firmware"},
		{name: "fail/findings without anything", method: http.MethodGet, target: "/v1/vuln",
			code: http.StatusBadRequest, wantErr: "want manufacturer, model and firmware"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.do(t, tt.method, tt.target, tt.body)
			var msg Error
			if err := json.Unmarshal(body, &msg); err != nil {
				t.Fatalf("answer %s: %v", body, err)
			}
			if code != tt.code || !strings.Contains(msg.Error, tt.wantErr) {
				t.Errorf("%d %q, want %d with %q", code, msg.Error, tt.code, tt.wantErr)
			}
			if after := stats(); after != before {
				t.Errorf("registry changed: %+v -> %+v", before, after)
			}
		})
	}

	// A VEX about an unknown product is accepted and reported.
	var res vuln.ImportResult
	e.mustDo(t, http.MethodPost, "/v1/vuln",
		[]byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","vulnerabilities":[{"id":"CVE-1","affects":[{"ref":"pkg:generic/beta/x@2"}]}]}`),
		http.StatusOK, &res)
	if !reflect.DeepEqual(res.Unmatched, []string{"CVE-1 pkg:generic/beta/x@2"}) || res.Statements != 1 {
		t.Errorf("unknown product: %+v", res)
	}
}
