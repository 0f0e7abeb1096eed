package admin

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/embark-iot/embark/pkg/crl"
	"github.com/embark-iot/embark/pki"
)

// fakeCA records the calls that reach it; ids starting with "bad" fail.
type fakeCA struct {
	calls []string
}

const (
	fakeActive = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	fakeInUse  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	fakeOld    = "cccccccccccccccccccccccccccccccccccccccc"
)

func (f *fakeCA) status() CAStatus {
	return CAStatus{Active: fakeActive, Intermediates: []CAIntermediate{
		{Issuer: pki.Issuer{ID: fakeOld, Generation: 1, State: pki.IssuerPrevious}},
		{Issuer: pki.Issuer{ID: fakeInUse, Generation: 2, State: pki.IssuerPrevious}, LiveCertificates: 3},
		{Issuer: pki.Issuer{ID: fakeActive, Generation: 3, State: pki.IssuerActive}},
	}}
}

func (f *fakeCA) CAStatus(context.Context) (CAStatus, error) {
	f.calls = append(f.calls, "status")
	return f.status(), nil
}

func (f *fakeCA) Rollover(_ context.Context, req RolloverRequest, actor string) (CAStatus, error) {
	f.calls = append(f.calls, fmt.Sprintf("rollover root=%v by %s", req.NewRoot, actor))
	if req.NewRoot {
		return CAStatus{}, fmt.Errorf("root.key: %w", pki.ErrRootKeyOffline)
	}
	return f.status(), nil
}

func (f *fakeCA) Retire(_ context.Context, id, actor string) (CAStatus, error) {
	f.calls = append(f.calls, "retire "+id+" by "+actor)
	switch {
	case id == fakeActive:
		return CAStatus{}, fmt.Errorf("retire: %w", pki.ErrActiveIssuer)
	case id == fakeInUse:
		return CAStatus{}, fmt.Errorf("retire: 3 live: %w", pki.ErrIssuerInUse)
	case id == fakeOld:
		return f.status(), nil
	}
	return CAStatus{}, fmt.Errorf("%q: %w", id, pki.ErrUnknownIssuer)
}

func (f *fakeCA) CRL(_ context.Context, id string) ([]byte, error) {
	f.calls = append(f.calls, "crl "+id)
	if id == "" || id == fakeOld {
		return []byte("DER of " + id), nil
	}
	return nil, fmt.Errorf("crl: %w", crl.ErrUnknownIssuer)
}

func TestCAEndpoints(t *testing.T) {
	f := &fakeCA{}
	h := Handler(Backend{CA: f})
	cases := []struct {
		name, method, path, body string
		code                     int
		want                     string // in the body
		call                     string // what reached the CA, "" for nothing
	}{
		{"ok/status", "GET", "/v1/ca", "", 200, `"live_certificates": 3`, "status"},
		{"ok/rollover", "POST", "/v1/ca/rollover", `{}`, 200, `"active": "` + fakeActive, "rollover root=false by operator:alice"},
		{"ok/rollover-without-body", "POST", "/v1/ca/rollover", "", 200, `"active"`, "rollover root=false by operator:alice"},
		{"fail/rollover-root-key-offline", "POST", "/v1/ca/rollover", `{"new_root":true}`, 409, "root key not in the CA directory", "rollover root=true by operator:alice"},
		{"fail/rollover-unknown-field", "POST", "/v1/ca/rollover", `{"root":true}`, 400, "unknown field", ""},
		{"fail/rollover-bad-json", "POST", "/v1/ca/rollover", `{`, 400, "body:", ""},
		{"ok/retire", "POST", "/v1/ca/intermediates/" + fakeOld + "/retire", "", 200, `"generation": 1`, "retire " + fakeOld + " by operator:alice"},
		{"fail/retire-in-use", "POST", "/v1/ca/intermediates/" + fakeInUse + "/retire", "", 409, "live certificates chain", "retire " + fakeInUse + " by operator:alice"},
		{"fail/retire-active", "POST", "/v1/ca/intermediates/" + fakeActive + "/retire", "", 409, "active one", "retire " + fakeActive + " by operator:alice"},
		{"fail/retire-unknown", "POST", "/v1/ca/intermediates/dddddddd/retire", "", 404, "unknown intermediate", "retire dddddddd by operator:alice"},
		{"fail/retire-not-hex", "POST", "/v1/ca/intermediates/xyz/retire", "", 400, "want its key id in hex", ""},
		{"fail/retire-too-long", "POST", "/v1/ca/intermediates/" + strings.Repeat("a", 65) + "/retire", "", 400, "want its key id in hex", ""},
		{"ok/crl-default", "GET", "/v1/crl", "", 200, "DER of ", "crl "},
		{"ok/crl-by-aki", "GET", "/v1/crl?aki=" + fakeOld, "", 200, "DER of " + fakeOld, "crl " + fakeOld},
		{"fail/crl-unknown-aki", "GET", "/v1/crl?aki=" + fakeInUse, "", 404, "no CRL for that issuer", "crl " + fakeInUse},
		{"fail/crl-bad-aki", "GET", "/v1/crl?aki=zz", "", 400, "aki:", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.calls = nil
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.body == "" {
				req = httptest.NewRequest(tc.method, tc.path, nil)
			}
			req.Header.Set("X-Embark-Actor", "alice")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
				t.Fatalf("%s %s = %d %s; want %d with %q", tc.method, tc.path, rec.Code, rec.Body, tc.code, tc.want)
			}
			got := strings.Join(f.calls, "; ")
			if got != tc.call {
				t.Fatalf("reached the CA: %q, want %q", got, tc.call)
			}
		})
	}
	t.Run("fail/no-ca-manager", func(t *testing.T) {
		h := Handler(Backend{CRL: func(context.Context) ([]byte, error) { return []byte("active"), nil }})
		for _, tc := range []struct {
			method, path string
			code         int
		}{
			{"GET", "/v1/ca", 503},
			{"POST", "/v1/ca/rollover", 503},
			{"GET", "/v1/crl?aki=" + fakeOld, 404},
			{"GET", "/v1/crl", 200},
		} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, bytes.NewReader(nil)))
			if rec.Code != tc.code {
				t.Errorf("%s %s = %d, want %d", tc.method, tc.path, rec.Code, tc.code)
			}
		}
	})
}

// TestCARoutesNeedAdmin: rollover and retire change the CA: admin only;
// the status is for auditors too.
func TestCARoutesNeedAdmin(t *testing.T) {
	for route, want := range map[string]string{
		"GET /v1/ca":                            "auditor",
		"POST /v1/ca/rollover":                  "admin",
		"POST /v1/ca/intermediates/{id}/retire": "admin",
		"GET /v1/crl":                           "auditor",
	} {
		r, ok := RouteRole(route)
		if !ok || r.String() != want {
			t.Errorf("%s: role %v (%v), want %s", route, r, ok, want)
		}
	}
}
