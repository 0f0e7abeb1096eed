package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/embark-iot/embark/pkg/campaign"
)

// CampaignRequest is the body of POST /v1/campaigns.
type CampaignRequest struct {
	// Select is device, model, zone or all; Value the device ID, model or
	// zone.
	Select campaign.Select `json:"select"`
	Value  string          `json:"value,omitempty"`
	// Rate is in devices per second (default campaign.DefaultRate);
	// Unlimited asks as fast as the server can instead.
	Rate      *float64 `json:"rate,omitempty"`
	Unlimited bool     `json:"unlimited,omitempty"`
	// Timeout is how long each device has to complete, as "10m" (default
	// campaign.DefaultTimeout).
	Timeout string `json:"timeout,omitempty"`
}

// Spec checks the request and returns the campaign it asks for.
func (q CampaignRequest) Spec() (campaign.Spec, error) {
	spec := campaign.Spec{Selector: campaign.Selector{Select: q.Select, Value: q.Value}, Unlimited: q.Unlimited}
	switch {
	case q.Rate != nil:
		spec.Rate = *q.Rate
	case !q.Unlimited:
		spec.Rate = campaign.DefaultRate
	}
	if q.Timeout != "" {
		d, err := time.ParseDuration(q.Timeout)
		if err != nil {
			return spec, fmt.Errorf("%w: timeout: %v", campaign.ErrInvalid, err)
		}
		if d <= 0 {
			// An explicit zero is refused, not taken for the default.
			return spec, fmt.Errorf("%w: timeout %s: want %s..%s", campaign.ErrInvalid, d, campaign.MinTimeout, campaign.MaxTimeout)
		}
		spec.Timeout = d
	}
	return spec.Check()
}

// CampaignList is the answer of GET /v1/campaigns.
type CampaignList struct {
	Campaigns []campaign.Summary `json:"campaigns"`
}

// registerCampaigns adds:
//
//	POST /v1/campaigns               start a rotation campaign
//	GET  /v1/campaigns               every campaign with its counts
//	GET  /v1/campaigns/{id}          counts and a page of devices (?after=&limit=&state=)
//	POST /v1/campaigns/{id}/cancel   stop asking and withdraw the pending requests
func (h *handler) registerCampaigns(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/campaigns", h.startCampaign)
	mux.HandleFunc("GET /v1/campaigns", h.campaigns)
	mux.HandleFunc("GET /v1/campaigns/{id}", h.campaign)
	mux.HandleFunc("POST /v1/campaigns/{id}/cancel", h.cancelCampaign)
}

func (h *handler) startCampaign(w http.ResponseWriter, r *http.Request) {
	var req CampaignRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		h.bad(w, "body: "+err.Error())
		return
	}
	spec, err := req.Spec()
	if err != nil {
		h.campaignError(w, err)
		return
	}
	s, err := campaign.Start(r.Context(), h.b.Store, spec, actor(r), h.b.Clock())
	if err != nil {
		h.campaignError(w, err)
		return
	}
	h.b.Logger.Info("campaign started", slog.String("campaign", s.ID), slog.String("select", s.Selector.String()),
		slog.Int("devices", s.Devices), slog.String("by", actor(r)))
	writeJSON(w, http.StatusCreated, s)
}

func (h *handler) campaigns(w http.ResponseWriter, r *http.Request) {
	l, err := campaign.List(r.Context(), h.b.Store)
	if err != nil {
		h.campaignError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, CampaignList{Campaigns: l})
}

func (h *handler) campaign(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, ok := h.limit(w, q)
	if !ok {
		return
	}
	d, err := campaign.Get(r.Context(), h.b.Store, r.PathValue("id"),
		campaign.Query{After: q.Get("after"), Limit: limit, State: campaign.ItemState(q.Get("state"))})
	if err != nil {
		h.campaignError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (h *handler) cancelCampaign(w http.ResponseWriter, r *http.Request) {
	c, err := campaign.Cancel(r.Context(), h.b.Store, r.PathValue("id"), actor(r), h.b.Clock())
	if err != nil {
		h.campaignError(w, err)
		return
	}
	h.b.Logger.Info("campaign cancelled", slog.String("campaign", c.ID), slog.String("by", actor(r)))
	writeJSON(w, http.StatusOK, c)
}

// campaignError maps the campaign package's errors to status codes; the
// body names the reason.
func (h *handler) campaignError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, campaign.ErrInvalid):
		h.bad(w, err.Error())
	case errors.Is(err, campaign.ErrUnknownDevice), errors.Is(err, campaign.ErrUnknownModel),
		errors.Is(err, campaign.ErrUnknownZone), errors.Is(err, campaign.ErrUnknownCampaign):
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
	case errors.Is(err, campaign.ErrNothingToRotate), errors.Is(err, campaign.ErrNotRunning):
		writeJSON(w, http.StatusConflict, Error{Error: err.Error()})
	default:
		h.fail(w, err)
	}
}
