package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/transfer"
)

// TransferExport is the body of POST /v1/transfers/export: sell Device to
// the owner named ToName whose owner key is ToKey (its owner.pub, PEM) or
// has the KeyID ToKeyID. If both are given they must agree.
type TransferExport struct {
	Device  string `json:"device"`
	ToName  string `json:"to_name"`
	ToKeyID string `json:"to_key_id,omitempty"`
	ToKey   string `json:"to_key,omitempty"`
}

// registerTransfer adds the ownership transfer endpoints:
//
//	POST /v1/transfers/export   TransferExport -> the transfer file (package transfer)
//	POST /v1/transfers          a transfer file -> transfer.Result; ?from_key=KEYID requires
//	                            that the first record applied be signed by that key
//	GET  /v1/transfers/{device} the transfer file of the records held for a device
func (h *handler) registerTransfer(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/transfers/export", h.exportTransfer)
	mux.HandleFunc("POST /v1/transfers", h.acceptTransfer)
	mux.HandleFunc("GET /v1/transfers/{id}", h.transferFile)
}

func (h *handler) exportTransfer(w http.ResponseWriter, r *http.Request) {
	seller := h.transferOwner()
	if seller == nil {
		h.noOwner(w)
		return
	}
	body, ok := h.readAtMost(w, r, 64<<10)
	if !ok {
		return
	}
	var req TransferExport
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		h.bad(w, "transfer export: "+err.Error())
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		h.bad(w, "transfer export: data after the JSON value")
		return
	}
	keyID := req.ToKeyID
	if req.ToKey != "" {
		k, err := hybridsig.ParsePublicKeyPEM([]byte(req.ToKey))
		if err != nil {
			h.bad(w, "to_key: "+err.Error())
			return
		}
		if keyID != "" && keyID != k.KeyID() {
			h.bad(w, fmt.Sprintf("to_key has KeyID %s, to_key_id says %s", k.KeyID(), keyID))
			return
		}
		keyID = k.KeyID()
	}
	if keyID == "" {
		h.bad(w, "to_key or to_key_id: the buyer's owner key is required")
		return
	}
	exp, err := transfer.Create(r.Context(), h.b.Store, seller, req.Device, req.ToName, keyID, h.b.Clock(),
		transfer.WithActor(actor(r)))
	if err != nil {
		h.failTransfer(w, err)
		return
	}
	file, err := exp.File()
	if err != nil {
		h.failTransfer(w, err)
		return
	}
	h.b.Logger.Info("device transferred", slog.String("device", exp.DeviceID), slog.Uint64("seq", uint64(exp.Seq)),
		slog.String("to", exp.To), slog.String("to_key", exp.ToKey), slog.Int("revoked", len(exp.Revoked)),
		slog.String("by", actor(r)))
	writeRaw(w, file)
}

func (h *handler) acceptTransfer(w http.ResponseWriter, r *http.Request) {
	buyer := h.transferOwner()
	if buyer == nil {
		h.noOwner(w)
		return
	}
	var opts []transfer.Option
	if k := r.URL.Query().Get("from_key"); k != "" {
		opts = append(opts, transfer.WithSellerKey(k))
	}
	body, ok := h.readAtMost(w, r, transfer.MaxFileSize)
	if !ok {
		return
	}
	res, err := transfer.Accept(r.Context(), h.b.Store, buyer, body, h.b.Clock(), append(opts, transfer.WithActor(actor(r)))...)
	if err != nil {
		h.failTransfer(w, err)
		return
	}
	h.b.Logger.Info("device acquired", slog.String("device", res.DeviceID), slog.Uint64("seq", uint64(res.Seq)),
		slog.String("from", res.From), slog.String("from_key", res.FromKey), slog.Bool("name_only", res.NameOnly),
		slog.String("by", actor(r)))
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) transferFile(w http.ResponseWriter, r *http.Request) {
	id, err := device.NormalizeID(r.PathValue("id"))
	if err != nil {
		h.bad(w, err.Error())
		return
	}
	chain, err := transfer.Chain(r.Context(), h.b.Store, id)
	if err != nil {
		h.failTransfer(w, err)
		return
	}
	if len(chain) == 0 {
		writeJSON(w, http.StatusNotFound, Error{Error: fmt.Sprintf("no transfer records for %s", id)})
		return
	}
	file, err := transfer.EncodeFile(chain)
	if err != nil {
		h.failTransfer(w, err)
		return
	}
	writeRaw(w, file)
}

// failTransfer answers a transfer error with its status code: the request
// is bad (400), the signer or addressee is not who it must be (403), the
// device is unknown (404), or the record does not fit the registry (409).
func (h *handler) failTransfer(w http.ResponseWriter, err error) {
	code := 0
	switch {
	case errors.Is(err, store.ErrConflict):
	case errors.Is(err, transfer.ErrMalformed), errors.Is(err, transfer.ErrSignature), errors.Is(err, transfer.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, transfer.ErrNotOwner), errors.Is(err, transfer.ErrNotForUs):
		code = http.StatusForbidden
	case errors.Is(err, transfer.ErrUnknownDevice):
		code = http.StatusNotFound
	case errors.Is(err, transfer.ErrReplayed), errors.Is(err, transfer.ErrMismatch), errors.Is(err, transfer.ErrState):
		code = http.StatusConflict
	}
	if code == 0 {
		h.fail(w, err)
		return
	}
	writeJSON(w, code, Error{Error: err.Error()})
}

// readAtMost reads a request body of at most n bytes.
func (h *handler) readAtMost(w http.ResponseWriter, r *http.Request, n int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, n))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, Error{Error: fmt.Sprintf("body exceeds %d bytes", n)})
			return nil, false
		}
		h.bad(w, "read body: "+err.Error())
		return nil, false
	}
	return body, true
}

// transferOwner returns the operator's owner identity, which signs the
// records of devices sold on and accepts those of devices bought, or nil if
// the server gave the handler none.
func (h *handler) transferOwner() *owner.Identity {
	return h.b.Owner
}

func (h *handler) noOwner(w http.ResponseWriter) {
	writeJSON(w, http.StatusServiceUnavailable, Error{Error: "no owner identity: the server did not give the admin API its owner key (owner.key), which signs and accepts transfers"})
}

// writeRaw answers 200 with a JSON document that is already encoded.
func writeRaw(w http.ResponseWriter, doc []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
}
