package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/policy"
)

// OperatorCore is what the operator endpoints need of the onboarding core.
type OperatorCore interface {
	Approve(ctx context.Context, id, actor, reason string) (device.Device, error)
	Deny(ctx context.Context, id, actor, reason string) (device.Device, error)
	Revoke(ctx context.Context, id, actor, reason string, code int) (device.Device, error)
	Decommission(ctx context.Context, id, actor, reason string) (device.Device, error)
	Reonboard(ctx context.Context, id, actor, reason string) (device.Device, error)
	Expiring(ctx context.Context, within time.Duration) ([]device.Certificate, error)
	Reevaluate(ctx context.Context, all bool, cause string) (onboard.ReevaluationResult, error)
	Explain(ctx context.Context, id string, p *policy.Policy) (policy.Input, policy.Explanation, error)
	DryRun(ctx context.Context, p *policy.Policy, all bool) ([]onboard.DryRunRow, error)
}

// registerOperator adds:
//
//	POST /v1/devices/{id}/approve   {"reason": "..."}   a held device may proceed
//	POST /v1/devices/{id}/deny      {"reason": "..."}   a held device is denied
//	POST /v1/reevaluate             {"all": true}       decide again (all devices, or the flagged ones)
func (h *handler) registerOperator(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/devices/{id}/approve", h.operatorAction)
	mux.HandleFunc("POST /v1/devices/{id}/deny", h.operatorAction)
	mux.HandleFunc("POST /v1/devices/{id}/revoke", h.operatorAction)
	mux.HandleFunc("POST /v1/devices/{id}/decommission", h.operatorAction)
	mux.HandleFunc("POST /v1/devices/{id}/reonboard", h.operatorAction)
	mux.HandleFunc("GET /v1/certs/expiring", h.expiring)
	mux.HandleFunc("POST /v1/reevaluate", h.reevaluate)
}

// OperatorRequest is the body of approve and deny.
type OperatorRequest struct {
	Reason string `json:"reason,omitempty"`
}

func (h *handler) operatorAction(w http.ResponseWriter, r *http.Request) {
	if h.b.Core == nil {
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "operator actions are not available"})
		return
	}
	id, err := device.NormalizeID(r.PathValue("id"))
	if err != nil {
		h.bad(w, err.Error())
		return
	}
	var req OperatorRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			h.bad(w, "body: "+err.Error())
			return
		}
	}
	who := actor(r)
	var d device.Device
	switch {
	case strings.HasSuffix(r.URL.Path, "/approve"):
		d, err = h.b.Core.Approve(r.Context(), id, who, req.Reason)
	case strings.HasSuffix(r.URL.Path, "/decommission"):
		d, err = h.b.Core.Decommission(r.Context(), id, who, req.Reason)
	case strings.HasSuffix(r.URL.Path, "/reonboard"):
		d, err = h.b.Core.Reonboard(r.Context(), id, who, req.Reason)
	case strings.HasSuffix(r.URL.Path, "/revoke"):
		if req.Reason == "" {
			h.bad(w, `revoke: body {"reason": "..."} with a reason`)
			return
		}
		d, err = h.b.Core.Revoke(r.Context(), id, who, req.Reason, onboard.ReasonCodePrivilegeWithdrawn)
	default:
		d, err = h.b.Core.Deny(r.Context(), id, who, req.Reason)
	}
	switch {
	case errors.Is(err, onboard.ErrNotRevocable):
		writeJSON(w, http.StatusConflict, Error{Error: err.Error()})
	case errors.Is(err, onboard.ErrUnknownDevice):
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
	case errors.Is(err, onboard.ErrNotHeld):
		writeJSON(w, http.StatusConflict, Error{Error: err.Error()})
	case err != nil:
		h.fail(w, err)
	default:
		writeJSON(w, http.StatusOK, d)
	}
}

// ReevaluateRequest is the body of POST /v1/reevaluate.
type ReevaluateRequest struct {
	All bool `json:"all"`
}

func (h *handler) reevaluate(w http.ResponseWriter, r *http.Request) {
	if h.b.Core == nil {
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "re-evaluation is not available"})
		return
	}
	var req ReevaluateRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			h.bad(w, "body: "+err.Error())
			return
		}
	}
	res, err := h.b.Core.Reevaluate(r.Context(), req.All, "requested by "+actor(r))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// expiring serves GET /v1/certs/expiring?within=72h: current certificates
// that expire within the window, soonest first.
func (h *handler) expiring(w http.ResponseWriter, r *http.Request) {
	if h.b.Core == nil {
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "not available"})
		return
	}
	within := 72 * time.Hour
	if s := r.URL.Query().Get("within"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			h.bad(w, "within: want a positive duration such as 72h")
			return
		}
		within = d
	}
	certs, err := h.b.Core.Expiring(r.Context(), within)
	if err != nil {
		h.fail(w, err)
		return
	}
	if certs == nil {
		certs = []device.Certificate{}
	}
	writeJSON(w, http.StatusOK, certs)
}
