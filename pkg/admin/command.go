package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
)

// Commander changes devices' desired state (package desired); the
// transports tell the devices.
type Commander interface {
	Rotate(ctx context.Context, id, actor, campaign string) (desired.Desired, error)
	DesiredOf(ctx context.Context, id string) (desired.Desired, error)
}

// RotateRequest is the body of POST /v1/devices/{id}/rotate.
type RotateRequest struct {
	Campaign string `json:"campaign,omitempty"`
}

// registerCommands adds:
//
//	POST /v1/devices/{id}/rotate   {"campaign": "..."}   ask the device to renew with a new key
//	GET  /v1/devices/{id}/desired                        its desired-state document and what it applied
func (h *handler) registerCommands(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/devices/{id}/rotate", h.rotate)
	mux.HandleFunc("GET /v1/devices/{id}/desired", h.desired)
}

func (h *handler) commander(w http.ResponseWriter, r *http.Request) (Commander, string, bool) {
	if h.b.Commands == nil {
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "commands to devices are not available"})
		return nil, "", false
	}
	id, err := device.NormalizeID(r.PathValue("id"))
	if err != nil {
		h.bad(w, err.Error())
		return nil, "", false
	}
	return h.b.Commands, id, true
}

func (h *handler) rotate(w http.ResponseWriter, r *http.Request) {
	c, id, ok := h.commander(w, r)
	if !ok {
		return
	}
	var req RotateRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			h.bad(w, "body: "+err.Error())
			return
		}
	}
	d, err := c.Rotate(r.Context(), id, actor(r), req.Campaign)
	h.commandResult(w, d, err)
}

func (h *handler) desired(w http.ResponseWriter, r *http.Request) {
	c, id, ok := h.commander(w, r)
	if !ok {
		return
	}
	d, err := c.DesiredOf(r.Context(), id)
	h.commandResult(w, d, err)
}

func (h *handler) commandResult(w http.ResponseWriter, d desired.Desired, err error) {
	switch {
	case errors.Is(err, desired.ErrUnknownDevice):
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
	case err != nil:
		h.fail(w, err)
	default:
		writeJSON(w, http.StatusOK, d)
	}
}
