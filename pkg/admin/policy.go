package admin

import (
	"errors"
	"io"
	"net/http"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/policy"
)

// maxPolicy bounds an uploaded policy file.
const maxPolicy = 1 << 20

// registerPolicy adds:
//
//	GET  /v1/policy                  the active policy (name, hash, zones)
//	GET  /v1/policy/explain/{id}     every rule of the active policy for a device, and the decision
//	POST /v1/policy/explain/{id}     the same with the policy file in the body
//	POST /v1/policy/test[?all=1]     dry run of the policy file in the body over every device
func (h *handler) registerPolicy(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/policy", h.policyInfo)
	mux.HandleFunc("GET /v1/policy/explain/{id}", h.explain)
	mux.HandleFunc("POST /v1/policy/explain/{id}", h.explain)
	mux.HandleFunc("POST /v1/policy/test", h.policyTest)
}

// PolicyInfo describes the active policy.
type PolicyInfo struct {
	Active  bool          `json:"active"`
	Name    string        `json:"name,omitempty"`
	Hash    string        `json:"hash,omitempty"`
	Version string        `json:"version,omitempty"`
	Zones   []policy.Zone `json:"zones,omitempty"`
}

func (h *handler) active() *policy.Policy {
	if h.b.Policy == nil {
		return nil
	}
	return h.b.Policy()
}

func (h *handler) policyInfo(w http.ResponseWriter, _ *http.Request) {
	p := h.active()
	if p == nil {
		writeJSON(w, http.StatusOK, PolicyInfo{})
		return
	}
	writeJSON(w, http.StatusOK, PolicyInfo{Active: true, Name: p.Name(), Hash: p.Hash(), Version: onboard.PolicyVersion(p), Zones: p.Zones()})
}

// uploadedPolicy parses a policy file from the request body.
func (h *handler) uploadedPolicy(w http.ResponseWriter, r *http.Request) (*policy.Policy, bool) {
	src, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPolicy))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, Error{Error: "policy file over 1 MiB"})
		return nil, false
	}
	name := r.URL.Query().Get("file")
	if name == "" {
		name = "policy"
	}
	p, err := policy.Parse(name, src)
	if err != nil {
		h.bad(w, err.Error())
		return nil, false
	}
	return p, true
}

// ExplainAnswer is the answer of the explain endpoints.
type ExplainAnswer struct {
	Policy      string             `json:"policy"`
	Input       policy.Input       `json:"input"`
	Explanation policy.Explanation `json:"explanation"`
}

func (h *handler) explain(w http.ResponseWriter, r *http.Request) {
	if h.b.Core == nil {
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "explain is not available"})
		return
	}
	id, err := device.NormalizeID(r.PathValue("id"))
	if err != nil {
		h.bad(w, err.Error())
		return
	}
	p := h.active()
	if r.Method == http.MethodPost {
		var ok bool
		if p, ok = h.uploadedPolicy(w, r); !ok {
			return
		}
	}
	if p == nil {
		writeJSON(w, http.StatusConflict, Error{Error: "no policy is active (the built-in decision applies); pass a policy file"})
		return
	}
	in, ex, err := h.b.Core.Explain(r.Context(), id, p)
	if errors.Is(err, onboard.ErrUnknownDevice) {
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
		return
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ExplainAnswer{Policy: onboard.PolicyVersion(p), Input: in, Explanation: ex})
}

// DryRunAnswer is the answer of POST /v1/policy/test.
type DryRunAnswer struct {
	Policy string              `json:"policy"`
	Rows   []onboard.DryRunRow `json:"rows"`
}

func (h *handler) policyTest(w http.ResponseWriter, r *http.Request) {
	if h.b.Core == nil {
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "policy test is not available"})
		return
	}
	p, ok := h.uploadedPolicy(w, r)
	if !ok {
		return
	}
	rows, err := h.b.Core.DryRun(r.Context(), p, r.URL.Query().Get("all") != "")
	if err != nil {
		h.fail(w, err)
		return
	}
	if rows == nil {
		rows = []onboard.DryRunRow{}
	}
	writeJSON(w, http.StatusOK, DryRunAnswer{Policy: onboard.PolicyVersion(p), Rows: rows})
}
