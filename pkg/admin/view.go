package admin

import (
	"net/http"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/provenance"
	"github.com/embark-iot/embark/pkg/store"
)

// registerView adds GET /v1/devices/{id}/provenance: the device's
// provenance view (package provenance).
func (h *handler) registerView(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/devices/{id}/provenance", h.provenanceView)
}

func (h *handler) provenanceView(w http.ResponseWriter, r *http.Request) {
	id, err := device.NormalizeID(r.PathValue("id"))
	if err != nil {
		h.bad(w, err.Error())
		return
	}
	var v provenance.View
	if err := h.b.Store.View(r.Context(), func(rd store.Reader) error {
		var err error
		v, err = provenance.ViewOf(rd, id, h.b.Owner)
		return err
	}); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
