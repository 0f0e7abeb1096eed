package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/provenance"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
)

var now = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

// env is an admin handler over a real registry, with a simulated
// manufacturer's files.
type env struct {
	h     http.Handler
	st    *bolt.DB
	trust []byte
	// rev1 lists ACME-000001..5, rev2 adds ACME-000006.
	rev1, rev2 []byte
	signer     *hybridsig.PrivateKey
	// trustChanged counts calls of Backend.TrustChanged.
	trustChanged int
}

func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "acme")
	clock := func() time.Time { return now }
	if _, err := factory.Run(ctx, factory.Options{Out: dir, Count: 5, Clock: clock}); err != nil {
		t.Fatal(err)
	}
	e := &env{rev1: read(t, filepath.Join(dir, factory.ManifestFile))}
	if _, err := factory.Run(ctx, factory.Options{Out: dir, Count: 1, Clock: clock}); err != nil {
		t.Fatal(err)
	}
	e.rev2 = read(t, filepath.Join(dir, factory.ManifestFile))
	e.trust = read(t, filepath.Join(dir, factory.TrustFile))
	var err error
	if e.signer, err = hybridsig.ParsePrivateKeyPEM(read(t, filepath.Join(dir, factory.SignerKeyFile))); err != nil {
		t.Fatal(err)
	}
	if e.st, err = bolt.Open(filepath.Join(t.TempDir(), "registry.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	e.h = Handler(Backend{
		Store:        e.st,
		Clock:        clock,
		TrustChanged: func(context.Context) error { e.trustChanged++; return nil },
		Status:       func() map[string]any { return map[string]any{"listeners": map[string]string{"admin": "test"}} },
	})
	return e
}

// loaded returns an env with acme trusted and revision 1 imported.
func loaded(t testing.TB) *env {
	t.Helper()
	e := newEnv(t)
	e.mustDo(t, http.MethodPost, "/v1/manufacturers", e.trust, http.StatusOK, nil)
	e.mustDo(t, http.MethodPost, "/v1/manifests", e.rev1, http.StatusOK, nil)
	return e
}

// do serves one request and returns the status and body.
func (e *env) do(t testing.TB, method, target string, body io.Reader) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	req.Header.Set("X-Embark-Actor", "tester")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, target, ct)
	}
	return rec.Code, rec.Body.Bytes()
}

func (e *env) mustDo(t testing.TB, method, target string, body []byte, wantCode int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	code, b := e.do(t, method, target, rd)
	if code != wantCode {
		t.Fatalf("%s %s: %d %s, want %d", method, target, code, b, wantCode)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, target, b, err)
		}
	}
}

func (e *env) setState(t testing.TB, serial string, s device.State) {
	t.Helper()
	err := e.st.Update(context.Background(), func(tx store.Tx) error {
		d, err := tx.Device(device.ID("acme", serial))
		if err != nil {
			return err
		}
		d.State = s
		return tx.PutDevice(&d)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func ids(l DeviceList) []string {
	out := []string{}
	for _, d := range l.Devices {
		out = append(out, strings.TrimPrefix(d.ID, device.URNPrefix+"acme:"))
	}
	return out
}

func TestDevices(t *testing.T) {
	e := loaded(t)
	e.setState(t, "ACME-000003", device.Held)
	id := func(serial string) string { return device.ID("acme", serial) }
	tests := []struct {
		name     string
		query    string
		want     []string
		wantNext string
	}{
		{name: "ok/all", query: "", want: []string{"ACME-000001", "ACME-000002", "ACME-000003", "ACME-000004", "ACME-000005"}},
		{name: "ok/first page", query: "?limit=2", want: []string{"ACME-000001", "ACME-000002"}, wantNext: id("ACME-000002")},
		{name: "ok/second page", query: "?limit=2&after=" + id("ACME-000002"), want: []string{"ACME-000003", "ACME-000004"},
			wantNext: id("ACME-000004")},
		{name: "ok/last page", query: "?limit=2&after=" + id("ACME-000004"), want: []string{"ACME-000005"}},
		{name: "ok/page that ends exactly at the end has no next", query: "?limit=3&after=" + id("ACME-000002"),
			want: []string{"ACME-000003", "ACME-000004", "ACME-000005"}},
		{name: "ok/after the last device", query: "?after=" + id("ACME-000005"), want: []string{}},
		{name: "ok/state held", query: "?state=held", want: []string{"ACME-000003"}},
		{name: "ok/state expected, paged", query: "?state=expected&limit=2&after=" + id("ACME-000001"),
			want: []string{"ACME-000002", "ACME-000004"}, wantNext: id("ACME-000004")},
		{name: "ok/state with no device", query: "?state=revoked", want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l DeviceList
			e.mustDo(t, http.MethodGet, "/v1/devices"+tt.query, nil, http.StatusOK, &l)
			if got := ids(l); !reflect.DeepEqual(got, tt.want) || l.Next != tt.wantNext {
				t.Errorf("devices %v next %q, want %v next %q", got, l.Next, tt.want, tt.wantNext)
			}
		})
	}
}

// Following next from page to page lists every device exactly once.
func TestDevicesWalk(t *testing.T) {
	e := loaded(t)
	var got []string
	after := ""
	for range 10 {
		q := "/v1/devices?limit=2"
		if after != "" {
			q += "&after=" + after
		}
		var l DeviceList
		e.mustDo(t, http.MethodGet, q, nil, http.StatusOK, &l)
		got = append(got, ids(l)...)
		if l.Next == "" {
			break
		}
		after = l.Next
	}
	want := []string{"ACME-000001", "ACME-000002", "ACME-000003", "ACME-000004", "ACME-000005"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("walk: %v, want %v", got, want)
	}
}

func TestBadRequests(t *testing.T) {
	e := loaded(t)
	tests := []struct {
		name, method, target string
		want                 int
	}{
		{name: "fail/limit 0", method: http.MethodGet, target: "/v1/devices?limit=0", want: http.StatusBadRequest},
		{name: "fail/limit negative", method: http.MethodGet, target: "/v1/devices?limit=-1", want: http.StatusBadRequest},
		{name: "fail/limit not a number", method: http.MethodGet, target: "/v1/devices?limit=ten", want: http.StatusBadRequest},
		{name: "fail/limit too large", method: http.MethodGet, target: "/v1/devices?limit=10001", want: http.StatusBadRequest},
		{name: "fail/unknown state", method: http.MethodGet, target: "/v1/devices?state=happy", want: http.StatusBadRequest},
		{name: "fail/audit limit 0", method: http.MethodGet, target: "/v1/audit?limit=0", want: http.StatusBadRequest},
		{name: "fail/audit after not a number", method: http.MethodGet, target: "/v1/audit?after=x", want: http.StatusBadRequest},
		{name: "fail/device id without serial", method: http.MethodGet, target: "/v1/devices/acme", want: http.StatusBadRequest},
		{name: "fail/unknown device (short id)", method: http.MethodGet, target: "/v1/devices/acme:ACME-999999", want: http.StatusNotFound},
		{name: "fail/unknown device (URN)", method: http.MethodGet, target: "/v1/devices/urn:dev:embark:other:X1", want: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.do(t, tt.method, tt.target, nil)
			if code != tt.want {
				t.Fatalf("%d %s, want %d", code, body, tt.want)
			}
			var msg Error
			if err := json.Unmarshal(body, &msg); err != nil || msg.Error == "" {
				t.Errorf("body %s is not a JSON error (%v)", body, err)
			}
		})
	}
}

func TestDevice(t *testing.T) {
	e := loaded(t)
	var short, urn DeviceDetail
	e.mustDo(t, http.MethodGet, "/v1/devices/acme:ACME-000004", nil, http.StatusOK, &short)
	e.mustDo(t, http.MethodGet, "/v1/devices/"+device.ID("acme", "ACME-000004"), nil, http.StatusOK, &urn)
	if short.Device.ID != device.ID("acme", "ACME-000004") || short.Device.Provenance.Serial != "ACME-000004" {
		t.Errorf("short id: %+v", short.Device)
	}
	if !reflect.DeepEqual(short, urn) {
		t.Errorf("short id and URN differ:\n%+v\n%+v", short, urn)
	}
	if short.Device.State != device.Expected || len(short.Certificates) != 0 {
		t.Errorf("device %+v with %d certificates", short.Device, len(short.Certificates))
	}
}

func TestImport(t *testing.T) {
	e := newEnv(t)
	var tr provenance.TrustResult
	e.mustDo(t, http.MethodPost, "/v1/manufacturers", e.trust, http.StatusOK, &tr)
	if tr.Name != "acme" || e.trustChanged != 1 {
		t.Fatalf("trust: %+v, TrustChanged called %d times", tr, e.trustChanged)
	}
	var res provenance.ImportResult
	e.mustDo(t, http.MethodPost, "/v1/manifests", e.rev2, http.StatusOK, &res)
	if res.Manufacturer != "acme" || res.Revision != 2 || res.New != 6 {
		t.Fatalf("import: %+v", res)
	}

	invalid := func(mutate func(*manifest.Manifest)) []byte {
		m := &manifest.Manifest{Manufacturer: "acme", Revision: 3, IssuedAt: now,
			Devices: []manifest.Entry{{Serial: "ACME-000100", IDevIDKeySHA256: strings.Repeat("ab", 32)}}}
		mutate(m)
		payload, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		env, err := manifest.SignEnvelope(manifest.PayloadType, payload, e.signer)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	otherType, err := manifest.SignEnvelope("application/vnd.embark.voucher.v1+json", []byte("{}"), e.signer)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		target string
		body   []byte
		want   int
	}{
		{name: "fail/manifest is garbage", target: "/v1/manifests", body: []byte("not a manifest"), want: http.StatusBadRequest},
		{name: "fail/empty manifest", target: "/v1/manifests", body: nil, want: http.StatusBadRequest},
		{name: "fail/stale revision", target: "/v1/manifests", body: e.rev1, want: http.StatusConflict},
		{name: "fail/invalid manifest", target: "/v1/manifests", want: http.StatusBadRequest,
			body: invalid(func(m *manifest.Manifest) { m.Revision = 0 })},
		{name: "fail/wrong payload type", target: "/v1/manifests", body: otherType, want: http.StatusBadRequest},
		{name: "fail/known serial with another key", target: "/v1/manifests", want: http.StatusConflict,
			body: invalid(func(m *manifest.Manifest) { m.Devices[0].Serial = "ACME-000001" })},
		{name: "fail/trust bundle is garbage", target: "/v1/manufacturers", body: []byte("{"), want: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := e.st.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			code, body := e.do(t, http.MethodPost, tt.target, bytes.NewReader(tt.body))
			if code != tt.want {
				t.Fatalf("%d %s, want %d", code, body, tt.want)
			}
			var msg Error
			if err := json.Unmarshal(body, &msg); err != nil || msg.Error == "" {
				t.Errorf("body %s is not a JSON error (%v)", body, err)
			}
			after, err := e.st.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if before.Devices != after.Devices || before.AuditEntries != after.AuditEntries {
				t.Errorf("registry changed: %+v -> %+v", before, after)
			}
		})
	}
	if e.trustChanged != 1 {
		t.Errorf("TrustChanged called %d times, want 1 (refused bundles change nothing)", e.trustChanged)
	}
}

// zeros is an endless reader of zero bytes that costs no memory.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestOversized(t *testing.T) {
	// The upload streams to a temporary file, so each case writes up to
	// MaxUpload (128 MiB) to disk but holds little in memory.
	if testing.Short() {
		t.Skip("streams MaxUpload (128 MiB) to disk; skipped with -short")
	}
	e := newEnv(t)
	e.mustDo(t, http.MethodPost, "/v1/manufacturers", e.trust, http.StatusOK, nil)
	tests := []struct {
		name string
		size int64
	}{
		{name: "fail/over the upload limit", size: MaxUpload + 1},
		{name: "fail/over the manifest size limit", size: manifest.DefaultMaxSize + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.do(t, http.MethodPost, "/v1/manifests", io.LimitReader(zeros{}, tt.size))
			if code != http.StatusRequestEntityTooLarge {
				t.Fatalf("%d %.200s, want 413", code, body)
			}
			var msg Error
			if err := json.Unmarshal(body, &msg); err != nil || msg.Error == "" {
				t.Errorf("body %.200s is not a JSON error (%v)", body, err)
			}
		})
	}
}

func TestAudit(t *testing.T) {
	e := loaded(t)
	var page AuditPage
	e.mustDo(t, http.MethodGet, "/v1/audit", nil, http.StatusOK, &page)
	if len(page.Entries) != 2 {
		t.Fatalf("%d entries, want 2: %+v", len(page.Entries), page.Entries)
	}
	for i, want := range []string{"trust-manufacturer", "import-manifest"} {
		en := page.Entries[i]
		if en.Seq != uint64(i+1) || en.Action != want || en.Actor != "operator:tester" || en.Outcome != "ok" || !en.Time.Equal(now) {
			t.Errorf("entry %d: %+v, want action %s by operator:tester", i, en, want)
		}
	}
	if !strings.Contains(page.Entries[1].Detail, "acme revision 1: 5 devices (5 new, 0 updated)") {
		t.Errorf("import detail %q", page.Entries[1].Detail)
	}
	e.mustDo(t, http.MethodGet, "/v1/audit?after=1&limit=1", nil, http.StatusOK, &page)
	if len(page.Entries) != 1 || page.Entries[0].Seq != 2 {
		t.Errorf("after=1&limit=1: %+v", page.Entries)
	}
}

func TestStatus(t *testing.T) {
	e := loaded(t)
	e.setState(t, "ACME-000002", device.Quarantined)
	var st struct {
		Registry       store.Stats          `json:"registry"`
		DevicesByState map[device.State]int `json:"devices_by_state"`
		Listeners      map[string]string    `json:"listeners"`
	}
	e.mustDo(t, http.MethodGet, "/v1/status", nil, http.StatusOK, &st)
	want := map[device.State]int{device.Expected: 4, device.Quarantined: 1}
	if st.Registry.Devices != 5 || !reflect.DeepEqual(st.DevicesByState, want) || st.Listeners["admin"] != "test" {
		t.Errorf("status %+v", st)
	}
}

func TestManufacturers(t *testing.T) {
	e := newEnv(t)
	var ms []device.Manufacturer
	e.mustDo(t, http.MethodGet, "/v1/manufacturers", nil, http.StatusOK, &ms)
	if ms == nil || len(ms) != 0 {
		t.Errorf("no manufacturers: %#v, want []", ms)
	}
	e.mustDo(t, http.MethodPost, "/v1/manufacturers", e.trust, http.StatusOK, nil)
	e.mustDo(t, http.MethodPost, "/v1/manifests", e.rev1, http.StatusOK, nil)
	e.mustDo(t, http.MethodGet, "/v1/manufacturers", nil, http.StatusOK, &ms)
	if len(ms) != 1 || ms[0].Name != "acme" || ms[0].Devices != 5 || ms[0].ManifestRevision != 1 {
		t.Errorf("manufacturers %+v", ms)
	}
}

func TestClientInProcess(t *testing.T) {
	e := loaded(t)
	cl := InProcess(e.h)
	cl.Actor = "carol"
	ctx := context.Background()

	var d DeviceDetail
	if err := cl.Do(ctx, http.MethodGet, "/v1/devices/acme:ACME-000001", nil, &d); err != nil {
		t.Fatal(err)
	}
	if d.Device.ID != device.ID("acme", "ACME-000001") {
		t.Errorf("device %+v", d.Device)
	}
	// The actor reaches the audit log.
	if err := cl.Do(ctx, http.MethodPost, "/v1/manifests", e.rev2, nil); err != nil {
		t.Fatal(err)
	}
	var page AuditPage
	if err := cl.Do(ctx, http.MethodGet, "/v1/audit?after=2", nil, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 1 || page.Entries[0].Actor != "operator:carol" || page.Entries[0].Action != "import-manifest" {
		t.Errorf("audit %+v", page.Entries)
	}

	tests := []struct {
		name         string
		method, path string
		body         []byte
		want         int
	}{
		{name: "fail/unknown device", method: http.MethodGet, path: "/v1/devices/acme:NOPE", want: http.StatusNotFound},
		{name: "fail/stale manifest", method: http.MethodPost, path: "/v1/manifests", body: e.rev1, want: http.StatusConflict},
		{name: "fail/bad limit", method: http.MethodGet, path: "/v1/devices?limit=0", want: http.StatusBadRequest},
		{name: "fail/no such endpoint", method: http.MethodGet, path: "/v1/nothing", want: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cl.Do(ctx, tt.method, tt.path, tt.body, nil)
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if ae.Status != tt.want || ae.Msg == "" {
				t.Errorf("APIError %+v, want status %d", ae, tt.want)
			}
		})
	}
}
