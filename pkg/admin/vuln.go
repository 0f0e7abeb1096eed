package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/vuln"
)

// registerVuln adds the vulnerability data endpoints:
//
//	POST /v1/vuln   body: a CycloneDX SBOM/VEX document -> vuln.ImportResult
//	GET  /v1/vuln?manufacturer=M&model=X&firmware=V     -> vuln.Findings
func (h *handler) registerVuln(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/vuln", h.importVuln)
	mux.HandleFunc("GET /v1/vuln", h.vulnFindings)
}

func (h *handler) importVuln(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, vuln.MaxDocumentSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, Error{Error: fmt.Sprintf("body exceeds %d bytes", vuln.MaxDocumentSize)})
			return
		}
		h.bad(w, "read body: "+err.Error())
		return
	}
	res, err := vuln.Import(r.Context(), h.b.Store, body, actor(r), h.b.Clock())
	if err != nil {
		h.vulnFail(w, err)
		return
	}
	h.b.Logger.Info("vulnerability data imported", slog.String("kind", res.Kind), slog.Uint64("data_version", res.DataVersion),
		slog.Int("statements", res.Statements), slog.Int("unmatched", len(res.Unmatched)),
		slog.Int("affected_devices", res.AffectedDevices), slog.String("by", actor(r)))
	if h.b.DataChanged != nil && res.AffectedDevices > 0 {
		h.b.DataChanged(fmt.Sprintf("vulnerability data v%d", res.DataVersion))
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) vulnFindings(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	m, model, fw := q.Get("manufacturer"), q.Get("model"), q.Get("firmware")
	if m == "" || model == "" || fw == "" {
		h.bad(w, "want manufacturer, model and firmware")
		return
	}
	var out vuln.Findings
	err := h.b.Store.View(r.Context(), func(rd store.Reader) error {
		var err error
		out, err = vuln.FindingsFor(rd, m, model, fw)
		return err
	})
	if err != nil {
		h.vulnFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// vulnFail answers an error of package vuln with its status code.
func (h *handler) vulnFail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, vuln.ErrMalformed):
		code = http.StatusBadRequest
	case errors.Is(err, vuln.ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, store.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	if code == http.StatusInternalServerError {
		h.b.Logger.Error("admin", slog.Any("err", err))
	}
	writeJSON(w, code, Error{Error: err.Error()})
}
