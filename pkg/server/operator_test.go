package server

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestOperatorEndpointsRefuseBadInput: each refusal has a clear status and
// leaves the registry as it was.
func TestOperatorEndpointsRefuseBadInput(t *testing.T) {
	srv, err := New(context.Background(), testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	h := srv.AdminHandler()
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"fail/revoke-without-reason", http.MethodPost, "/v1/devices/acme:SN1/revoke", `{}`, http.StatusBadRequest},
		{"fail/revoke-unknown-device", http.MethodPost, "/v1/devices/acme:SN1/revoke", `{"reason":"x"}`, http.StatusNotFound},
		{"fail/approve-unknown-device", http.MethodPost, "/v1/devices/acme:SN1/approve", ``, http.StatusNotFound},
		{"fail/decommission-bad-id", http.MethodPost, "/v1/devices/nocolon/decommission", ``, http.StatusBadRequest},
		{"fail/reonboard-malformed-body", http.MethodPost, "/v1/devices/acme:SN1/reonboard", `{`, http.StatusBadRequest},
		{"fail/expiring-bad-window", http.MethodGet, "/v1/certs/expiring?within=soon", ``, http.StatusBadRequest},
		{"fail/expiring-negative-window", http.MethodGet, "/v1/certs/expiring?within=-1h", ``, http.StatusBadRequest},
		{"fail/policy-test-broken-file", http.MethodPost, "/v1/policy/test", `rules: [`, http.StatusBadRequest},
		{"fail/explain-without-policy", http.MethodGet, "/v1/policy/explain/acme:SN1", ``, http.StatusConflict},
		{"fail/profile-of-unknown", http.MethodGet, "/v1/devices/acme:SN1/provenance", ``, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := srv.Store().Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(tt.method, tt.path, bytes.NewReader([]byte(tt.body)))
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want || !bytes.Contains(rec.Body.Bytes(), []byte(`"error"`)) {
				t.Fatalf("%s %s: %d %s, want %d with a JSON error", tt.method, tt.path, rec.Code, rec.Body, tt.want)
			}
			after, err := srv.Store().Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			before.Bytes, after.Bytes = 0, 0
			if before != after {
				t.Fatalf("registry changed: %+v -> %+v", before, after)
			}
		})
	}
}
