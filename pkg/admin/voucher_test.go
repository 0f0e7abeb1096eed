package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/registrar"
)

// fakeVoucherRegistrar records calls and answers what a case sets.
type fakeVoucherRegistrar struct {
	err      error
	calls    int
	pending  bool
	ids      []string
	lifetime time.Duration
}

func (f *fakeVoucherRegistrar) SetMASA(_ context.Context, m, url, _, _ string) (registrar.MASASetting, error) {
	f.calls++
	return registrar.MASASetting{Manufacturer: m, URL: url}, f.err
}

func (f *fakeVoucherRegistrar) MASA(_ context.Context, m string) (registrar.MASASetting, error) {
	f.calls++
	return registrar.MASASetting{Manufacturer: m}, f.err
}

func (f *fakeVoucherRegistrar) Prefetch(_ context.Context, ids []string, pending bool, lifetime time.Duration, _ string) ([]registrar.Prefetched, error) {
	f.calls++
	f.ids, f.pending, f.lifetime = ids, pending, lifetime
	return []registrar.Prefetched{{DeviceID: "urn:dev:embark:acme:A1"}}, f.err
}

func TestVoucherEndpoints(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		err                      error
		code                     int
		calls                    int
	}{
		{"ok/get", "GET", "/v1/manufacturers/acme/masa", "", nil, 200, 1},
		{"ok/set", "PUT", "/v1/manufacturers/acme/masa", `{"url":"https://127.0.0.1:8444"}`, nil, 200, 1},
		{"ok/prefetch", "POST", "/v1/vouchers/prefetch", `{"pending":true,"lifetime":"48h"}`, nil, 200, 1},
		{"fail/not set", "GET", "/v1/manufacturers/acme/masa", "", fmt.Errorf("x: %w", registrar.ErrNoMASA), 404, 1},
		{"fail/set without url", "PUT", "/v1/manufacturers/acme/masa", `{}`, nil, 400, 0},
		{"fail/set not json", "PUT", "/v1/manufacturers/acme/masa", `url`, nil, 400, 0},
		{"fail/bad url", "PUT", "/v1/manufacturers/acme/masa", `{"url":"http://x"}`, fmt.Errorf("%w: want https", registrar.ErrConfig), 400, 1},
		{"fail/masa refuses", "PUT", "/v1/manufacturers/acme/masa", `{"url":"https://x"}`, &registrar.MASARefusal{Status: 409, Reason: "domain_taken"}, 502, 1},
		{"fail/masa unreachable", "PUT", "/v1/manufacturers/acme/masa", `{"url":"https://x"}`, fmt.Errorf("%w: dial", registrar.ErrMASA), 502, 1},
		{"fail/untrusted manufacturer", "PUT", "/v1/manufacturers/globex/masa", `{"url":"https://x"}`, registrar.ErrUnknownManufacturer, 404, 1},
		{"fail/prefetch nothing", "POST", "/v1/vouchers/prefetch", `{}`, nil, 400, 0},
		{"fail/prefetch short lifetime", "POST", "/v1/vouchers/prefetch", `{"pending":true,"lifetime":"1s"}`, nil, 400, 0},
		{"fail/internal", "GET", "/v1/manufacturers/acme/masa", "", errors.New("disk on fire"), 500, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeVoucherRegistrar{err: tt.err}
			h := Handler(Backend{Registrar: f})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body)))
			if rec.Code != tt.code || f.calls != tt.calls {
				t.Fatalf("answer %d %s, registrar called %d times; want %d, %d", rec.Code, rec.Body, f.calls, tt.code, tt.calls)
			}
			if tt.name == "ok/prefetch" && (!f.pending || f.lifetime != 48*time.Hour) {
				t.Fatalf("prefetch got pending %t lifetime %s", f.pending, f.lifetime)
			}
		})
	}
	rec := httptest.NewRecorder()
	Handler(Backend{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/manufacturers/acme/masa", nil))
	if rec.Code != http.StatusNotImplemented {
		t.Fatalf("without a registrar: %d", rec.Code)
	}
}
