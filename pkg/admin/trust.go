package admin

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/embark-iot/embark/pkg/provenance"
)

// registerTrust adds the trust-change endpoints:
//
//	POST /v1/manufacturers/{name}/distrust              {"reason": "..."}
//	POST /v1/manufacturers/{name}/keys/{key}/distrust   {"reason": "..."}
func (h *handler) registerTrust(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/manufacturers/{name}/distrust", h.distrust)
	mux.HandleFunc("POST /v1/manufacturers/{name}/keys/{key}/distrust", h.distrust)
}

// DistrustRequest is the body of the distrust endpoints.
type DistrustRequest struct {
	Reason string `json:"reason"`
}

func (h *handler) distrust(w http.ResponseWriter, r *http.Request) {
	var req DistrustRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || req.Reason == "" {
		h.bad(w, `body: want {"reason": "..."} with a reason`)
		return
	}
	var (
		res provenance.DistrustResult
		err error
	)
	if key := r.PathValue("key"); key != "" {
		res, err = provenance.DistrustKey(r.Context(), h.b.Store, r.PathValue("name"), key, req.Reason, actor(r), h.b.Clock())
	} else {
		res, err = provenance.DistrustManufacturer(r.Context(), h.b.Store, r.PathValue("name"), req.Reason, actor(r), h.b.Clock())
	}
	switch {
	case errors.Is(err, provenance.ErrUnknownManufacturer), errors.Is(err, provenance.ErrUnknownKey):
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
		return
	case err != nil:
		h.fail(w, err)
		return
	}
	if h.b.TrustChanged != nil {
		if err := h.b.TrustChanged(r.Context()); err != nil {
			h.fail(w, err)
			return
		}
	}
	if h.b.DataChanged != nil && res.Marked > 0 {
		h.b.DataChanged("trust withdrawn from " + res.Manufacturer)
	}
	h.b.Logger.Warn("trust withdrawn", "manufacturer", res.Manufacturer, "key", res.Key, "reason", req.Reason, "marked", res.Marked)
	writeJSON(w, http.StatusOK, res)
}
