package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/server"
	"github.com/embark-iot/embark/pkg/transfer"
)

// transferEnv is a server (not listening) whose registry holds acme's
// devices ACME-000001..2, sold to this operator, and beta's BETA-000001,
// sold to someone else; the admin API is called in process.
type transferEnv struct {
	srv   *server.Server
	cl    *admin.Client
	buyer *owner.Identity // another operator's owner key
}

func newTransferEnv(t *testing.T) *transferEnv {
	t.Helper()
	ctx := context.Background()
	cfg := config.DefaultConfig(filepath.Join(t.TempDir(), "data"))
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	e := &transferEnv{srv: srv, cl: admin.InProcess(srv.AdminHandler())}
	for _, m := range []factory.Options{
		{Manufacturer: "acme", Count: 2, Owner: cfg.Owner},
		{Manufacturer: "beta", Count: 1, Owner: "someone-else"},
	} {
		m.Out = filepath.Join(t.TempDir(), m.Manufacturer)
		if _, err := factory.Run(ctx, m); err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct{ path, file string }{{"/v1/manufacturers", factory.TrustFile}, {"/v1/manifests", factory.ManifestFile}} {
			b, err := os.ReadFile(filepath.Join(m.Out, f.file))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.cl.Do(ctx, http.MethodPost, f.path, b, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if e.buyer, err = owner.Init(t.TempDir(), "buyer"); err != nil {
		t.Fatal(err)
	}
	return e
}

func statusOf(err error) int {
	var ae *admin.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func (e *transferEnv) auditLen(t *testing.T) int {
	t.Helper()
	st, err := e.srv.Store().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.AuditEntries
}

func TestTransferEndpoints(t *testing.T) {
	ctx := context.Background()
	e := newTransferEnv(t)
	buyerPEM := string(hybridsig.MarshalPublicKeyPEM(e.buyer.Key.Public()))
	export := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	acme1, acme2 := device.ID("acme", "ACME-000001"), device.ID("acme", "ACME-000002")

	// ok: sell ACME-000001 by PEM key; the file can be fetched again.
	var file json.RawMessage
	if err := e.cl.Do(ctx, http.MethodPost, "/v1/transfers/export",
		export(admin.TransferExport{Device: "acme:ACME-000001", ToName: "buyer", ToKey: buyerPEM}), &file); err != nil {
		t.Fatal(err)
	}
	rec, err := transfer.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	if rec.DeviceID() != acme1 || rec.To.KeyID != e.buyer.KeyID() || rec.FromKeyID != e.srv.Owner().KeyID() {
		t.Fatalf("record %+v", rec.Record)
	}
	var again json.RawMessage
	if err := e.cl.Do(ctx, http.MethodGet, "/v1/transfers/acme:ACME-000001", nil, &again); err != nil || !bytes.Equal(again, file) {
		t.Fatalf("GET transfer file: %v", err)
	}

	tests := []struct {
		name, method, target string
		body                 []byte
		code                 int
	}{
		{"fail/export-unknown-field", http.MethodPost, "/v1/transfers/export", []byte(`{"device":"acme:ACME-000002","price":1}`), http.StatusBadRequest},
		{"fail/export-not-json", http.MethodPost, "/v1/transfers/export", []byte(`device=acme`), http.StatusBadRequest},
		{"fail/export-no-buyer-key", http.MethodPost, "/v1/transfers/export",
			export(admin.TransferExport{Device: acme2, ToName: "buyer"}), http.StatusBadRequest},
		{"fail/export-bad-pem", http.MethodPost, "/v1/transfers/export",
			export(admin.TransferExport{Device: acme2, ToName: "buyer", ToKey: "-----BEGIN NOTHING-----"}), http.StatusBadRequest},
		{"fail/export-key-and-key-id-disagree", http.MethodPost, "/v1/transfers/export",
			export(admin.TransferExport{Device: acme2, ToName: "buyer", ToKey: buyerPEM, ToKeyID: strings.Repeat("0", 64)}), http.StatusBadRequest},
		{"fail/export-bad-key-id", http.MethodPost, "/v1/transfers/export",
			export(admin.TransferExport{Device: acme2, ToName: "buyer", ToKeyID: "XYZ"}), http.StatusBadRequest},
		{"fail/export-to-oneself", http.MethodPost, "/v1/transfers/export",
			export(admin.TransferExport{Device: acme2, ToName: "me", ToKeyID: e.srv.Owner().KeyID()}), http.StatusBadRequest},
		{"fail/export-unknown-device", http.MethodPost, "/v1/transfers/export",
			export(admin.TransferExport{Device: "acme:ACME-999999", ToName: "buyer", ToKeyID: e.buyer.KeyID()}), http.StatusNotFound},
		{"fail/export-device-of-another-owner", http.MethodPost, "/v1/transfers/export",
			export(admin.TransferExport{Device: "beta:BETA-000001", ToName: "buyer", ToKeyID: e.buyer.KeyID()}), http.StatusForbidden},
		{"fail/export-sold-already", http.MethodPost, "/v1/transfers/export",
			export(admin.TransferExport{Device: acme1, ToName: "buyer", ToKeyID: e.buyer.KeyID()}), http.StatusForbidden},
		{"fail/accept-garbage", http.MethodPost, "/v1/transfers", []byte(`garbage`), http.StatusBadRequest},
		{"fail/accept-too-large", http.MethodPost, "/v1/transfers", bytes.Repeat([]byte(" "), transfer.MaxFileSize+1),
			http.StatusRequestEntityTooLarge},
		{"fail/accept-bad-seller-key", http.MethodPost, "/v1/transfers?from_key=nope", file, http.StatusBadRequest},
		{"fail/accept-record-for-another-owner", http.MethodPost, "/v1/transfers", file, http.StatusForbidden},
		{"fail/get-unknown-device", http.MethodGet, "/v1/transfers/acme:ACME-999999", nil, http.StatusNotFound},
		{"fail/get-never-transferred", http.MethodGet, "/v1/transfers/" + acme2, nil, http.StatusNotFound},
		{"fail/get-bad-id", http.MethodGet, "/v1/transfers/acme", nil, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.auditLen(t)
			err := e.cl.Do(ctx, tt.method, tt.target, tt.body, nil)
			if statusOf(err) != tt.code {
				t.Fatalf("%s %s: %v, want HTTP %d", tt.method, tt.target, err, tt.code)
			}
			if n := e.auditLen(t); n != before {
				t.Fatalf("%d audit entries written", n-before)
			}
		})
	}
	var d admin.DeviceDetail
	if err := e.cl.Do(ctx, http.MethodGet, "/v1/devices/"+acme2, nil, &d); err != nil {
		t.Fatal(err)
	}
	if d.Device.State != device.Expected || d.Device.Provenance.Transfers != 0 {
		t.Fatalf("ACME-000002 after refused requests: %+v", d.Device)
	}
}
