package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/embark-iot/embark/pkg/crl"
	"github.com/embark-iot/embark/pki"
)

// CAManager runs the rollover of the issuing CA (package pki) and serves
// the CRL of each of its intermediates.
type CAManager interface {
	// CAStatus describes the intermediates and how many live
	// certificates chain to each.
	CAStatus(ctx context.Context) (CAStatus, error)
	// Rollover introduces a new intermediate (and with NewRoot a new
	// root), which issues from then on.
	Rollover(ctx context.Context, req RolloverRequest, actor string) (CAStatus, error)
	// Retire retires a previous intermediate; it fails with
	// pki.ErrIssuerInUse while live certificates chain to it.
	Retire(ctx context.Context, id, actor string) (CAStatus, error)
	// CRL returns the DER CRL of the intermediate with this key id, of
	// the active one if id is empty; crl.ErrUnknownIssuer if it has none.
	CRL(ctx context.Context, id string) ([]byte, error)
}

// CAStatus is the answer of GET /v1/ca, POST /v1/ca/rollover and POST
// /v1/ca/intermediates/{id}/retire.
type CAStatus struct {
	// Active is the key id of the intermediate that issues.
	Active string `json:"active"`
	// Intermediates lists every generation, oldest first.
	Intermediates []CAIntermediate `json:"intermediates"`
}

// CAIntermediate is one intermediate as the API shows it.
type CAIntermediate struct {
	pki.Issuer
	// LiveCertificates counts the certificates in the registry that chain
	// to it and may still authenticate (issued or in use, not expired).
	// Retiring it is refused while this is not zero.
	LiveCertificates int `json:"live_certificates"`
	// EmbarkCertificates names Embark's own certificates in use that chain
	// to it (server, MQTT responder, embedded broker until a restart);
	// retiring it is refused while there are any.
	EmbarkCertificates []string `json:"embark_certificates,omitempty"`
}

// RolloverRequest is the body of POST /v1/ca/rollover.
type RolloverRequest struct {
	// NewRoot also creates a new root; see pki.RolloverOptions.
	NewRoot bool `json:"new_root,omitempty"`
}

// registerCA adds:
//
//	GET  /v1/ca                              the intermediates, their states and live certificates
//	POST /v1/ca/rollover {"new_root": bool}  a new intermediate (and root) that issues from now on
//	POST /v1/ca/intermediates/{id}/retire    end a previous intermediate's overlap
//
// GET /v1/crl takes ?aki=HEX (issuerCRL).
func (h *handler) registerCA(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/ca", h.caStatus)
	mux.HandleFunc("POST /v1/ca/rollover", h.caRollover)
	mux.HandleFunc("POST /v1/ca/intermediates/{id}/retire", h.caRetire)
}

func (h *handler) caManager(w http.ResponseWriter) (CAManager, bool) {
	if h.b.CA == nil {
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "the CA cannot be managed here"})
		return nil, false
	}
	return h.b.CA, true
}

func (h *handler) caStatus(w http.ResponseWriter, r *http.Request) {
	ca, ok := h.caManager(w)
	if !ok {
		return
	}
	st, err := ca.CAStatus(r.Context())
	h.caResult(w, st, err)
}

func (h *handler) caRollover(w http.ResponseWriter, r *http.Request) {
	ca, ok := h.caManager(w)
	if !ok {
		return
	}
	var req RolloverRequest
	if r.ContentLength != 0 {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			h.bad(w, "body: "+err.Error())
			return
		}
	}
	st, err := ca.Rollover(r.Context(), req, actor(r))
	h.caResult(w, st, err)
}

func (h *handler) caRetire(w http.ResponseWriter, r *http.Request) {
	ca, ok := h.caManager(w)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !isHex(id) {
		h.bad(w, "intermediate id: want its key id in hex (see GET /v1/ca)")
		return
	}
	st, err := ca.Retire(r.Context(), id, actor(r))
	h.caResult(w, st, err)
}

func (h *handler) caResult(w http.ResponseWriter, st CAStatus, err error) {
	switch {
	case errors.Is(err, pki.ErrUnknownIssuer):
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
	case errors.Is(err, pki.ErrIssuerInUse), errors.Is(err, pki.ErrActiveIssuer), errors.Is(err, pki.ErrRootKeyOffline),
		errors.Is(err, pki.ErrNoCADir), errors.Is(err, pki.ErrLifetime):
		writeJSON(w, http.StatusConflict, Error{Error: err.Error()})
	case err != nil:
		h.fail(w, err)
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// issuerCRL serves GET /v1/crl[?aki=HEX]: the CRL of the intermediate
// whose key id a device finds as the authority key identifier of its own
// certificate, by default the active intermediate's.
func (h *handler) issuerCRL(w http.ResponseWriter, r *http.Request) {
	aki := r.URL.Query().Get("aki")
	if h.b.CA == nil {
		if aki != "" {
			writeJSON(w, http.StatusNotFound, Error{Error: "no CRL per intermediate here"})
			return
		}
		h.crl(w, r)
		return
	}
	if aki != "" && !isHex(aki) {
		h.bad(w, "aki: want the hex authority key identifier of the certificate")
		return
	}
	der, err := h.b.CA.CRL(r.Context(), aki)
	switch {
	case errors.Is(err, crl.ErrUnknownIssuer):
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
		return
	case err != nil:
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(der)
}

// isHex reports whether s is 1 to 64 hex digits.
func isHex(s string) bool {
	return s != "" && len(s) <= 64 && strings.Trim(s, "0123456789abcdefABCDEF") == ""
}
