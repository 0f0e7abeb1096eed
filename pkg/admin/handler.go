package admin

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/provenance"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/policy"
)

// MaxUpload bounds a manifest or trust bundle upload: the largest manifest
// the manifest package opens.
const MaxUpload = manifest.DefaultMaxSize

// Backend is what the handlers work on.
type Backend struct {
	Store store.Store
	// TrustChanged is called after the trusted manufacturers changed.
	TrustChanged func(context.Context) error
	// Core performs operator actions on devices (approve, deny,
	// re-evaluate); nil disables those endpoints.
	Core OperatorCore
	// DataChanged is called after data that decisions rest on changed
	// (vulnerability data, trust, transfers); the server re-evaluates the
	// flagged devices in the background.
	DataChanged func(cause string)
	// Policy returns the active policy, nil while the built-in decision
	// applies.
	Policy func() *policy.Policy
	// CRL returns the current DER CRL of the issuing CA; nil disables GET /v1/crl.
	CRL func(context.Context) ([]byte, error)
	// CA manages the CA rollover and serves a CRL per intermediate (ca.go);
	// nil disables those endpoints.
	CA CAManager
	// Registrar sets MASAs and prefetches vouchers (voucher.go); nil
	// disables those endpoints.
	Registrar VoucherRegistrar
	// Status adds server facts (listeners, version) to /v1/status.
	Status func() map[string]any
	Clock  func() time.Time
	Logger *slog.Logger
	// Owner is the operator's owner identity: it signs the transfer
	// records of devices sold on and accepts those of devices bought.
	Owner *owner.Identity
	// Commands sends commands to devices; nil disables those endpoints.
	Commands Commander
	// Operators authenticates operators over HTTPS and issues their
	// certificates; nil refuses every remote request.
	Operators *Operators
}

// Handler returns the admin API over b.
func Handler(b Backend) http.Handler {
	if b.Clock == nil {
		b.Clock = time.Now
	}
	if b.Logger == nil {
		b.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{b: b}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", h.status)
	mux.HandleFunc("GET /v1/devices", h.devices)
	mux.HandleFunc("GET /v1/devices/{id}", h.device)
	mux.HandleFunc("GET /v1/manufacturers", h.manufacturers)
	mux.HandleFunc("POST /v1/manufacturers", h.trust)
	mux.HandleFunc("POST /v1/manifests", h.importManifest)
	mux.HandleFunc("GET /v1/audit", h.audit)
	h.registerVuln(mux)
	h.registerTransfer(mux)
	h.registerTrust(mux)
	h.registerView(mux)
	h.registerOperator(mux)
	h.registerPolicy(mux)
	h.registerCommands(mux)
	h.registerCampaigns(mux)
	h.registerAudit(mux)
	h.registerCA(mux)
	h.registerVoucher(mux)
	mux.HandleFunc("GET /v1/crl", h.issuerCRL)
	h.registerAuth(mux)
	return h.authorize(mux)
}

type handler struct{ b Backend }

// actor names who made a request: the local socket is the operator of the
// machine (the socket is 0600).
func actor(r *http.Request) string {
	if id, ok := OperatorOf(r.Context()); ok {
		return "operator:" + id.Name
	}
	if a := r.Header.Get("X-Embark-Actor"); a != "" && len(a) < 64 {
		return "operator:" + a
	}
	return "operator"
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	st, err := h.b.Store.Stats(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	out := map[string]any{"registry": st}
	counts := map[device.State]int{}
	if err := h.b.Store.View(r.Context(), func(rd store.Reader) error {
		return rd.Devices("", func(d device.Device) (bool, error) { counts[d.State]++; return true, nil })
	}); err != nil {
		h.fail(w, err)
		return
	}
	out["devices_by_state"] = counts
	if r.TLS != nil {
		out["tls"] = DescribeTLS(r.TLS)
	}
	if h.b.Status != nil {
		for k, v := range h.b.Status() {
			out[k] = v
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// DeviceList is the answer of GET /v1/devices.
type DeviceList struct {
	Devices []device.Device `json:"devices"`
	// Next is the cursor for the next page ("after"), empty at the end.
	Next string `json:"next,omitempty"`
}

func (h *handler) devices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, ok := h.limit(w, q)
	if !ok {
		return
	}
	state := device.State(q.Get("state"))
	if state != "" && !state.Valid() {
		h.bad(w, fmt.Sprintf("state %q: unknown", state))
		return
	}
	var out DeviceList
	err := h.b.Store.View(r.Context(), func(rd store.Reader) error {
		out.Devices, out.Next = []device.Device{}, ""
		return rd.Devices(q.Get("after"), func(d device.Device) (bool, error) {
			if state != "" && d.State != state {
				return true, nil
			}
			if len(out.Devices) == limit {
				out.Next = out.Devices[len(out.Devices)-1].ID
				return false, nil
			}
			out.Devices = append(out.Devices, d)
			return true, nil
		})
	})
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// DeviceDetail is the answer of GET /v1/devices/{id}.
type DeviceDetail struct {
	Device       device.Device `json:"device"`
	Certificates []CertView    `json:"certificates"`
}

// CertView is a certificate as the API shows it.
type CertView struct {
	device.Certificate
	Subject string   `json:"subject"`
	URIs    []string `json:"uris"`
	Issuer  string   `json:"issuer"`
}

func (h *handler) device(w http.ResponseWriter, r *http.Request) {
	id, err := device.NormalizeID(r.PathValue("id"))
	if err != nil {
		h.bad(w, err.Error())
		return
	}
	var out DeviceDetail
	err = h.b.Store.View(r.Context(), func(rd store.Reader) error {
		var err error
		if out.Device, err = rd.Device(id); err != nil {
			return err
		}
		certs, err := rd.CertificatesOf(id)
		if err != nil {
			return err
		}
		out.Certificates = nil
		for _, c := range certs {
			v := CertView{Certificate: c}
			if pc, err := x509.ParseCertificate(c.DER); err == nil {
				v.Subject, v.Issuer = pc.Subject.String(), pc.Issuer.String()
				for _, u := range pc.URIs {
					v.URIs = append(v.URIs, u.String())
				}
			}
			out.Certificates = append(out.Certificates, v)
		}
		return nil
	})
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) manufacturers(w http.ResponseWriter, r *http.Request) {
	var out []device.Manufacturer
	if err := h.b.Store.View(r.Context(), func(rd store.Reader) error {
		var err error
		out, err = rd.Manufacturers()
		return err
	}); err != nil {
		h.fail(w, err)
		return
	}
	if out == nil {
		out = []device.Manufacturer{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) trust(w http.ResponseWriter, r *http.Request) {
	body, ok := h.read(w, r)
	if !ok {
		return
	}
	res, err := provenance.TrustManufacturer(r.Context(), h.b.Store, body, actor(r), h.b.Clock())
	if err != nil {
		h.fail(w, err)
		return
	}
	if h.b.TrustChanged != nil {
		if err := h.b.TrustChanged(r.Context()); err != nil {
			h.fail(w, err)
			return
		}
	}
	h.b.Logger.Info("manufacturer trusted", slog.String("name", res.Name), slog.String("by", actor(r)))
	writeJSON(w, http.StatusOK, res)
}

// importManifest streams the request body into the import: a manifest of
// 100,000 devices (about 65 MB) is never held in memory.
func (h *handler) importManifest(w http.ResponseWriter, r *http.Request) {
	body := http.MaxBytesReader(w, r.Body, MaxUpload)
	res, err := provenance.ImportManifestFrom(r.Context(), h.b.Store, body, actor(r), h.b.Clock())
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeJSON(w, http.StatusRequestEntityTooLarge, Error{Error: fmt.Sprintf("body exceeds %d bytes", MaxUpload)})
		case errors.Is(err, manifest.ErrRead):
			h.bad(w, "read body: "+err.Error())
		default:
			h.fail(w, err)
		}
		return
	}
	h.b.Logger.Info("manifest imported", slog.String("manufacturer", res.Manufacturer),
		slog.Uint64("revision", res.Revision), slog.Int("devices", res.Devices), slog.String("by", actor(r)))
	writeJSON(w, http.StatusOK, res)
}

// AuditPage is the answer of GET /v1/audit.
type AuditPage struct {
	Entries []audit.Entry `json:"entries"`
}

func (h *handler) audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			h.bad(w, "after: want an entry number")
			return
		}
		after = n
	}
	limit, ok := h.limit(w, q)
	if !ok {
		return
	}
	var out AuditPage
	if err := h.b.Store.View(r.Context(), func(rd store.Reader) error {
		out.Entries = nil
		return rd.Audit(after, func(e audit.Entry) (bool, error) {
			out.Entries = append(out.Entries, e)
			return len(out.Entries) < limit, nil
		})
	}); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// limit reads the limit query parameter (default 100, at most 10000).
func (h *handler) limit(w http.ResponseWriter, q url.Values) (int, bool) {
	s := q.Get("limit")
	if s == "" {
		return 100, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 10000 {
		h.bad(w, "limit: want 1..10000")
		return 0, false
	}
	return n, true
}

func (h *handler) read(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxUpload))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, Error{Error: fmt.Sprintf("body exceeds %d bytes", MaxUpload)})
			return nil, false
		}
		h.bad(w, "read body: "+err.Error())
		return nil, false
	}
	return body, true
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}

func (h *handler) bad(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, Error{Error: msg})
}

func (h *handler) fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, provenance.ErrStaleRevision), errors.Is(err, provenance.ErrKeyChanged), errors.Is(err, store.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, manifest.ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, provenance.ErrBadBundle), errors.Is(err, provenance.ErrUntrustedManufacturer),
		errors.Is(err, manifest.ErrMalformed), errors.Is(err, manifest.ErrSignature), errors.Is(err, manifest.ErrUnknownSigner),
		errors.Is(err, manifest.ErrDuplicate), errors.Is(err, manifest.ErrInvalid), errors.Is(err, manifest.ErrPayloadType),
		errors.Is(err, manifest.ErrWrongManufacturer):
		code = http.StatusBadRequest
	}
	if code == http.StatusInternalServerError {
		h.b.Logger.Error("admin", slog.Any("err", err))
	}
	writeJSON(w, code, Error{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// crl serves the current CRL of the issuing CA (DER, application/pkix-crl).
func (h *handler) crl(w http.ResponseWriter, r *http.Request) {
	if h.b.CRL == nil {
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "no CRL publisher"})
		return
	}
	der, err := h.b.CRL(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(der)
}
