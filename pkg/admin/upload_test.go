package admin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/embark-iot/embark/pkg/provenance"
)

func TestUpload(t *testing.T) {
	e := loaded(t)
	cl := InProcess(e.h)
	cl.Actor = "dave"
	ctx := context.Background()
	// A reader of unknown length that cannot seek: the body streams.
	half := len(e.rev2) / 2
	body := io.MultiReader(bytes.NewReader(e.rev2[:half]), bytes.NewReader(e.rev2[half:]))
	var res provenance.ImportResult
	if err := cl.Upload(ctx, "/v1/manifests", body, -1, &res); err != nil {
		t.Fatal(err)
	}
	if res.Manufacturer != "acme" || res.Revision != 2 || res.Devices != 6 || res.New != 1 || res.Updated != 5 {
		t.Errorf("import %+v", res)
	}
	var page AuditPage
	if err := cl.Do(ctx, http.MethodGet, "/v1/audit?after=2", nil, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 1 || page.Entries[0].Actor != "operator:dave" || page.Entries[0].Action != "import-manifest" {
		t.Errorf("audit %+v", page.Entries)
	}

	tests := []struct {
		name string
		body []byte
		want int
	}{
		{name: "fail/stale revision", body: e.rev1, want: http.StatusConflict},
		{name: "fail/truncated manifest", body: e.rev2[:half], want: http.StatusBadRequest},
		{name: "fail/empty body", body: nil, want: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cl.Upload(ctx, "/v1/manifests", bytes.NewReader(tt.body), int64(len(tt.body)), nil)
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Status != tt.want || apiErr.Msg == "" {
				t.Fatalf("Upload = %v, want HTTP %d", err, tt.want)
			}
		})
	}
}
