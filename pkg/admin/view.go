package admin

import (
	"net/http"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/provenance"
	"github.com/embark-iot/embark/pkg/store"
)

// registerView adds GET /v1/devices/{id}/provenance: the device's
// provenance view (package provenance).
func (h *handler) registerView(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/devices/{id}/provenance", h.provenanceView)
	mux.HandleFunc("GET /v1/profiles", h.profiles)
}

// ProfileList is the answer of GET /v1/profiles: the network profiles of
// the devices that hold credentials, for enforcement points (switch and
// firewall configuration, brokers).
type ProfileList struct {
	Profiles []onboard.Profile `json:"profiles"`
	Next     string            `json:"next,omitempty"`
}

func (h *handler) profiles(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, ok := h.limit(w, q)
	if !ok {
		return
	}
	out := ProfileList{Profiles: []onboard.Profile{}}
	if err := h.b.Store.View(r.Context(), func(rd store.Reader) error {
		return rd.Devices(q.Get("after"), func(d device.Device) (bool, error) {
			if d.State != device.Onboarded && d.State != device.Quarantined {
				return true, nil
			}
			if len(out.Profiles) == limit {
				out.Next = out.Profiles[len(out.Profiles)-1].DeviceID
				return false, nil
			}
			out.Profiles = append(out.Profiles, onboard.ProfileFromDevice(d))
			return true, nil
		})
	}); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
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
