package registrar

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/voucher"
)

// Identifier names the device a certificate chain belongs to: the
// onboarding core.
type Identifier interface {
	Identify(ctx context.Context, chain []*x509.Certificate) (onboard.Identity, error)
}

// Defaults of Config.
const (
	DefaultRetryAfter = 30 * time.Second
	DefaultTimeout    = 10 * time.Second
)

// Config configures a Registrar.
type Config struct {
	// Store holds the MASA settings and the trusted manufacturers, and
	// takes the audit entries.
	Store store.Store
	// Core authenticates devices.
	Core Identifier
	// Owner signs the domain registrations.
	Owner *owner.Identity
	// DomainCA returns the certificate devices are to pin: Embark's root.
	DomainCA func() *x509.Certificate
	// Certificate is the registrar certificate (id-kp-cmcRA, chaining to
	// DomainCA) and its key: it signs registrar requests and
	// authenticates the registrar to MASAs.
	Certificate tls.Certificate
	// Proximity returns the server certificate chains devices may see
	// when they connect (leaf first; the CoAP listeners' current one
	// first, then the MQTT broker's): the MASA vouches only through the one
	// a request names, or the first for a request that names none (plain
	// CoAP). They may change while the server runs (a CA rollover).
	Proximity func() [][]*x509.Certificate
	// VoucherDir holds prefetched nonceless vouchers,
	// VoucherDir/<manufacturer>/<serial>.voucher; "" for none.
	VoucherDir string
	// RetryAfter is the delay given to devices while the MASA cannot be
	// reached or none is configured. Default DefaultRetryAfter.
	RetryAfter time.Duration
	// Timeout bounds one MASA round trip. Default DefaultTimeout.
	Timeout time.Duration
	Clock   func() time.Time
	Logger  *slog.Logger
}

// Registrar obtains vouchers for devices. It is safe for concurrent use.
type Registrar struct {
	cfg     Config
	log     *slog.Logger
	signer  *voucher.RequestSigner
	clients clients
	links   linkCache

	mu   sync.Mutex
	tlsS map[string]string // MASA URL → last TLS seen
}

// New checks cfg and returns a Registrar.
func New(cfg Config) (*Registrar, error) {
	switch {
	case cfg.Store == nil || cfg.Core == nil || cfg.Owner == nil || cfg.DomainCA == nil:
		return nil, fmt.Errorf("%w: store, core, owner and domain CA are required", ErrConfig)
	case len(cfg.Certificate.Certificate) == 0 || cfg.Certificate.Leaf == nil:
		return nil, fmt.Errorf("%w: no registrar certificate", ErrConfig)
	case !voucher.IsRegistrar(cfg.Certificate.Leaf):
		return nil, fmt.Errorf("%w: %s is not a registrar certificate (id-kp-cmcRA, clientAuth)", ErrConfig, cfg.Certificate.Leaf.Subject)
	case cfg.Proximity == nil:
		return nil, fmt.Errorf("%w: no proximity chain (the server certificate devices see)", ErrConfig)
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	chain := []*x509.Certificate{cfg.Certificate.Leaf}
	for _, der := range cfg.Certificate.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: registrar chain: %v", ErrConfig, err)
		}
		chain = append(chain, c)
	}
	key, ok := cfg.Certificate.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: the registrar key is a %T", ErrConfig, cfg.Certificate.PrivateKey)
	}
	signer, err := voucher.NewRequestSigner(key, chain)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	r := &Registrar{cfg: cfg, log: cfg.Logger, signer: signer, tlsS: map[string]string{}}
	r.clients = clients{cert: cfg.Certificate, timeout: cfg.Timeout, observe: r.observe}
	return r, nil
}

// observe notes the TLS state of each new connection to a MASA.
func (r *Registrar) observe(u string, cs tls.ConnectionState) {
	d := voucher.DescribeTLS(cs)
	r.mu.Lock()
	r.tlsS[u] = d
	r.mu.Unlock()
	r.log.Debug("registrar: MASA connection", "masa", u, "tls", d)
}

// Status describes the registrar for `embark status`: its certificate and
// the TLS version and group last negotiated with each MASA.
func (r *Registrar) Status() map[string]any {
	r.mu.Lock()
	links := make(map[string]string, len(r.tlsS))
	for u, d := range r.tlsS {
		links[u] = d
	}
	r.mu.Unlock()
	leaf := r.cfg.Certificate.Leaf
	return map[string]any{
		"certificate": leaf.Subject.String(),
		"not_after":   leaf.NotAfter.UTC().Format(time.RFC3339),
		"masa_links":  links,
		"masa_tls":    "TLS1.3 X25519MLKEM768 only",
	}
}

// Close drops the idle connections to MASAs.
func (r *Registrar) Close() { r.clients.close() }

// Request is a device's voucher request as a transport received it.
type Request struct {
	// Chain is the client certificate chain of the device's session (its
	// IDevID), leaf first. Over MQTT and over plain CoAP (no client
	// certificate), the x5chain of the signed request: the device is then
	// who signed it, and the signature is all that authenticates it.
	Chain []*x509.Certificate
	// Body is the signed pledge request.
	Body []byte
	// Transport and Remote describe the session, for the audit log.
	Transport, Remote string
}

func refuse(reason onboard.Reason, err error, format string, args ...any) *onboard.Error {
	return &onboard.Error{Reason: reason, Msg: fmt.Sprintf(format, args...), Err: err}
}

// RequestVoucher obtains a voucher for the device whose pledge request
// req carries, as described in the package documentation. It returns the
// COSE voucher to hand to the device, or an *onboard.Error.
func (r *Registrar) RequestVoucher(ctx context.Context, req Request) ([]byte, error) {
	if len(req.Chain) == 0 {
		return nil, refuse(onboard.ReasonUnauthenticated, nil, "no client certificate: the voucher request needs the IDevID")
	}
	pr, err := voucher.OpenPledgeRequest(req.Body)
	if err != nil {
		reason := onboard.ReasonBadRequest
		switch {
		case errors.Is(err, voucher.ErrBadSignature):
			reason = onboard.ReasonBadSignature
		case errors.Is(err, voucher.ErrTooLarge):
			reason = onboard.ReasonPayloadTooLarge
		}
		return nil, refuse(reason, err, "voucher request: %v", err)
	}
	if !pr.Chain[0].Equal(req.Chain[0]) {
		return nil, refuse(onboard.ReasonWrongDevice, nil, "the voucher request is not signed by the IDevID of this session")
	}
	id, err := r.cfg.Core.Identify(ctx, req.Chain)
	if err != nil {
		return nil, err
	}
	if id.Credential != onboard.CredIDevID {
		return nil, refuse(onboard.ReasonWrongCredential, nil, "a voucher is asked for with the IDevID, not with an %s", id.Credential)
	}
	mfr, serial, err := device.ParseID(id.DeviceID)
	if err != nil || serial != pr.SerialNumber {
		return nil, refuse(onboard.ReasonWrongDevice, err, "the voucher request is for %q, the IDevID names %s", pr.SerialNumber, id.DeviceID)
	}
	// A device that asked over plain CoAP saw no server certificate and
	// names none: the MASA gets this registrar's current server chain (see
	// package voucher, Proximity). One that names a key is held to it.
	var prox []*x509.Certificate
	for _, c := range r.cfg.Proximity() {
		if len(c) > 0 && (len(pr.ProximityRegistrar) == 0 || bytes.Equal(pr.ProximityRegistrar, voucher.SPKIHash(c[0]))) {
			prox = c
			break
		}
	}
	if prox == nil {
		if len(pr.ProximityRegistrar) == 0 {
			return nil, refuse(onboard.ReasonInternal, nil, "no server chain to send the MASA")
		}
		return nil, refuse(ReasonProximity, nil, "the device saw another server certificate than this registrar's")
	}
	proximity := make([][]byte, len(prox))
	for i, c := range prox {
		proximity[i] = c.Raw
	}
	var l *link
	err = r.cfg.Store.View(ctx, func(rd store.Reader) error {
		var err error
		l, err = readLink(rd, mfr, &r.links)
		return err
	})
	switch {
	case errors.Is(err, ErrNoMASA):
		if v, ok := r.offline(mfr, serial); ok {
			return r.deliver(ctx, id.DeviceID, req, v, "offline voucher (no MASA configured)")
		}
		return nil, &onboard.Error{Reason: ReasonNoMASA, Msg: fmt.Sprintf("no MASA is configured for manufacturer %q", mfr), RetryAfter: r.cfg.RetryAfter}
	case errors.Is(err, ErrUnknownManufacturer):
		return nil, refuse(onboard.ReasonUntrustedChain, err, "%v", err)
	case err != nil:
		return nil, refuse(onboard.ReasonInternal, err, "registry: %v", err)
	}
	now := r.cfg.Clock()
	body, err := r.signer.SignRegistrarRequest(voucher.RegistrarRequest{SerialNumber: serial, Nonce: pr.Nonce,
		PledgeRequest: req.Body, ProximityChain: proximity, CreatedOn: now})
	if err != nil {
		return nil, refuse(onboard.ReasonInternal, err, "sign the registrar request: %v", err)
	}
	v, err := r.ask(ctx, l, body)
	if ref, ok := isRefusal(err); ok {
		r.audit(ctx, audit.Entry{Actor: "device", Action: "voucher", DeviceID: id.DeviceID, Outcome: string(ReasonVoucherRefused),
			Detail: fmt.Sprintf("MASA %s refused over %s: %s: %s", l.setting.URL, req.Transport, ref.Reason, ref.Message)})
		return nil, refuse(ReasonVoucherRefused, ref, "the manufacturer's MASA refused: %s: %s", ref.Reason, ref.Message)
	}
	if errors.Is(err, ErrMASA) {
		r.log.Warn("registrar: MASA unreachable", "masa", l.setting.URL, "device", id.DeviceID, "err", err)
		if v, ok := r.offline(mfr, serial); ok {
			return r.deliver(ctx, id.DeviceID, req, v, "offline voucher (MASA unreachable)")
		}
		return nil, &onboard.Error{Reason: ReasonMASAUnavailable, Msg: "the manufacturer's MASA cannot be reached; try again later",
			RetryAfter: r.cfg.RetryAfter, Err: err}
	}
	if err != nil {
		return nil, refuse(ReasonVoucherUntrusted, err, "%v", err)
	}
	if err := r.check(v, serial, pr.Nonce); err != nil {
		return nil, refuse(ReasonVoucherUntrusted, err, "the MASA's voucher: %v", err)
	}
	return r.deliver(ctx, id.DeviceID, req, v, "MASA "+l.setting.URL)
}

// ask sends a registrar request to the MASA of l and returns the voucher
// of its countersigned answer.
func (r *Registrar) ask(ctx context.Context, l *link, body []byte) ([]byte, error) {
	cl, err := r.clients.get(l.setting.URL, l.roots, true)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	answer, _, err := post(ctx, cl, l.setting.URL, voucher.PathMASARequestVoucher, voucher.MediaTypeVoucherCOSE, body)
	if err != nil {
		return nil, err
	}
	v, _, err := voucher.OpenCountersigned(answer, func(id string) (*hybridsig.PublicKey, bool) {
		k, ok := l.keys[id]
		return k, ok
	})
	if err != nil {
		return nil, fmt.Errorf("countersignature: %w", err)
	}
	return v, nil
}

// check refuses a voucher that is not for this device and nonce, or that
// does not pin Embark's root.
func (r *Registrar) check(b []byte, serial string, nonce []byte) error {
	v, _, err := voucher.Parse(b)
	if err != nil {
		return err
	}
	switch {
	case v.SerialNumber != serial:
		return fmt.Errorf("for serial %q, not %q", v.SerialNumber, serial)
	case !bytes.Equal(v.Nonce, nonce):
		return fmt.Errorf("for another nonce")
	case !bytes.Equal(v.PinnedDomainCert, r.cfg.DomainCA().Raw):
		return fmt.Errorf("pins another domain than this Embark's root")
	}
	return nil
}

// deliver records a voucher handed to a device and returns it.
func (r *Registrar) deliver(ctx context.Context, deviceID string, req Request, v []byte, source string) ([]byte, error) {
	sum := sha256.Sum256(v)
	if err := r.audit(ctx, audit.Entry{Actor: "device", Action: "voucher", DeviceID: deviceID, Outcome: "ok",
		Detail: fmt.Sprintf("%s over %s from %s; voucher sha256:%s", source, req.Transport, req.Remote, hex.EncodeToString(sum[:]))}); err != nil {
		return nil, refuse(onboard.ReasonInternal, err, "audit: %v", err)
	}
	return v, nil
}

// audit appends an entry, stamped now.
func (r *Registrar) audit(ctx context.Context, e audit.Entry) error {
	e.Time = r.cfg.Clock().UTC()
	err := r.cfg.Store.Update(ctx, func(tx store.Tx) error {
		_, err := tx.AppendAudit(e)
		return err
	})
	if err != nil {
		r.log.Error("registrar: audit", "action", e.Action, "device", e.DeviceID, "err", err)
	}
	return err
}
