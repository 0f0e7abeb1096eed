package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/embark-iot/embark/pkg/registrar"
)

// VoucherRegistrar is what the voucher endpoints need: package registrar.
type VoucherRegistrar interface {
	SetMASA(ctx context.Context, manufacturer, url, ca, actor string) (registrar.MASASetting, error)
	MASA(ctx context.Context, manufacturer string) (registrar.MASASetting, error)
	Prefetch(ctx context.Context, ids []string, pending bool, lifetime time.Duration, actor string) ([]registrar.Prefetched, error)
}

// MASARequest is the body of PUT /v1/manufacturers/{name}/masa.
type MASARequest struct {
	// URL is https://host[:port] of the manufacturer's MASA.
	URL string `json:"url"`
	// CA, optional, is a PEM CA that authenticates the MASA instead of
	// the manufacturer's trusted roots.
	CA string `json:"ca,omitempty"`
}

// PrefetchRequest is the body of POST /v1/vouchers/prefetch.
type PrefetchRequest struct {
	// Devices are device identifiers (URN or manufacturer:serial).
	Devices []string `json:"devices,omitempty"`
	// Pending adds every device that has not onboarded yet (expected or held).
	Pending bool `json:"pending,omitempty"`
	// Lifetime is how long the vouchers should hold ("168h"); the MASA
	// may shorten it. Default 7 days.
	Lifetime string `json:"lifetime,omitempty"`
}

// PrefetchResult is the answer of POST /v1/vouchers/prefetch.
type PrefetchResult struct {
	Vouchers []registrar.Prefetched `json:"vouchers"`
}

// registerVoucher adds the registrar's endpoints:
//
//	GET  /v1/manufacturers/{name}/masa  the MASA setting of a manufacturer
//	PUT  /v1/manufacturers/{name}/masa  set it (registers Embark's domain with the MASA)
//	POST /v1/vouchers/prefetch          nonceless vouchers for offline sites
func (h *handler) registerVoucher(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/manufacturers/{name}/masa", h.getMASA)
	mux.HandleFunc("PUT /v1/manufacturers/{name}/masa", h.setMASA)
	mux.HandleFunc("POST /v1/vouchers/prefetch", h.prefetch)
}

func (h *handler) voucherRegistrar(w http.ResponseWriter) (VoucherRegistrar, bool) {
	if h.b.Registrar == nil {
		writeJSON(w, http.StatusNotImplemented, Error{Error: "this server has no voucher registrar"})
		return nil, false
	}
	return h.b.Registrar, true
}

func (h *handler) getMASA(w http.ResponseWriter, r *http.Request) {
	reg, ok := h.voucherRegistrar(w)
	if !ok {
		return
	}
	s, err := reg.MASA(r.Context(), r.PathValue("name"))
	if err != nil {
		h.registrarFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h *handler) setMASA(w http.ResponseWriter, r *http.Request) {
	reg, ok := h.voucherRegistrar(w)
	if !ok {
		return
	}
	body, ok := h.read(w, r)
	if !ok {
		return
	}
	var req MASARequest
	if err := json.Unmarshal(body, &req); err != nil || req.URL == "" {
		h.bad(w, "body: want {\"url\": \"https://host:port\", \"ca\": PEM (optional)}")
		return
	}
	s, err := reg.SetMASA(r.Context(), r.PathValue("name"), req.URL, req.CA, actor(r))
	if err != nil {
		h.registrarFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h *handler) prefetch(w http.ResponseWriter, r *http.Request) {
	reg, ok := h.voucherRegistrar(w)
	if !ok {
		return
	}
	body, ok := h.read(w, r)
	if !ok {
		return
	}
	var req PrefetchRequest
	if err := json.Unmarshal(body, &req); err != nil || (len(req.Devices) == 0 && !req.Pending) {
		h.bad(w, "body: want {\"devices\": [...]} or {\"pending\": true}, and optionally \"lifetime\": \"168h\"")
		return
	}
	var lifetime time.Duration
	if req.Lifetime != "" {
		d, err := time.ParseDuration(req.Lifetime)
		if err != nil || d < time.Minute {
			h.bad(w, "lifetime: want a duration of at least 1m, such as \"168h\"")
			return
		}
		lifetime = d
	}
	out, err := reg.Prefetch(r.Context(), req.Devices, req.Pending, lifetime, actor(r))
	if err != nil {
		h.registrarFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, PrefetchResult{Vouchers: out})
}

// registrarFail maps the registrar's errors to HTTP.
func (h *handler) registrarFail(w http.ResponseWriter, err error) {
	var ref *registrar.MASARefusal
	switch {
	case errors.Is(err, registrar.ErrNoMASA), errors.Is(err, registrar.ErrUnknownManufacturer):
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
	case errors.Is(err, registrar.ErrConfig):
		h.bad(w, err.Error())
	case errors.As(err, &ref), errors.Is(err, registrar.ErrMASA):
		writeJSON(w, http.StatusBadGateway, Error{Error: err.Error()})
	default:
		h.fail(w, err)
	}
}
