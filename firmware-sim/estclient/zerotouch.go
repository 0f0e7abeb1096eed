package estclient

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/embark-iot/embark/pkg/voucher"
)

// NonceSize is the size of the nonces a device puts in its voucher
// requests.
const NonceSize = 16

// ZeroTouchConfig says how a factory-fresh device joins its owner's
// network.
type ZeroTouchConfig struct {
	ProvisionalConfig
	// Serial is the device's serial number, as its IDevID names it.
	Serial string
	// Anchors are the voucher anchors of the device's firmware: the
	// manufacturer's voucher-signing certificates.
	Anchors []*x509.Certificate
	// Now is the device's clock; nil for a device without one.
	Now func() time.Time
	// AllowNonceless accepts a nonceless (prefetched) voucher; it needs Now.
	AllowNonceless bool
	// Signer signs the voucher request; default: one made from the IDevID
	// key and certificate.
	Signer *voucher.RequestSigner
}

// ZeroTouchResult is a device that trusts its owner's network.
type ZeroTouchResult struct {
	// Client is the session, now authenticated by the pinned domain
	// certificate: the device enrolls on it.
	Client *Client
	// Voucher is the voucher the device verified.
	Voucher *voucher.Voucher
	// Chain is the server's verified chain, leaf first, the pinned
	// domain certificate last: the device keeps the root (and the
	// intermediate, to check the LDevID it receives).
	Chain []*x509.Certificate
	// TelemetryErr is the failure to report the voucher status, if any.
	TelemetryErr error
}

// ZeroTouch runs the device side of constrained BRSKI: a provisional
// session with the IDevID, a voucher request with a fresh nonce, the
// voucher verified against the firmware's anchors (serial, nonce, validity
// with a clock, signature), the server's chain verified against the
// domain certificate the voucher pins, and voucher status telemetry on the
// now authenticated session (whose failure is reported, not fatal). A voucher the device refuses ends the session
// with an error wrapping the voucher package's reason (voucher.ErrWrongNonce,
// voucher.ErrUnknownSigner, voucher.ErrNotPinned, ...); the registrar's
// own refusals are *StatusError (5.03 with MaxAge: try again later).
func ZeroTouch(ctx context.Context, c ZeroTouchConfig) (*ZeroTouchResult, error) {
	if len(c.Anchors) == 0 || c.Serial == "" || c.Certificate == nil {
		return nil, fmt.Errorf("%w: zero touch needs the IDevID, the serial and the firmware's voucher anchors", ErrConfig)
	}
	signer := c.Signer
	if signer == nil {
		key, ok := c.Certificate.PrivateKey.(crypto.Signer)
		if !ok || c.Certificate.Leaf == nil {
			return nil, fmt.Errorf("%w: the IDevID needs its key and parsed leaf", ErrConfig)
		}
		var err error
		if signer, err = voucher.NewRequestSigner(key, []*x509.Certificate{c.Certificate.Leaf}); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	p, err := DialProvisional(ctx, c.ProvisionalConfig)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = p.Close()
		}
	}()
	req := voucher.PledgeRequest{SerialNumber: c.Serial, Nonce: nonce, ProximityRegistrar: voucher.SPKIHash(p.PeerCertificates()[0])}
	if c.Now != nil {
		req.CreatedOn = c.Now()
	}
	body, err := signer.SignPledgeRequest(req)
	if err != nil {
		return nil, err
	}
	raw, err := p.RequestVoucher(ctx, body)
	if err != nil {
		return nil, err
	}
	v, err := voucher.Verify(raw, voucher.VerifyOptions{Anchors: c.Anchors, Serial: c.Serial, Nonce: nonce, Now: c.Now,
		AllowNonceless: c.AllowNonceless})
	if err != nil {
		return nil, fmt.Errorf("estclient: the device refuses the voucher: %w", err)
	}
	pinned, err := v.Pinned()
	if err != nil {
		return nil, fmt.Errorf("estclient: the device refuses the voucher: %w", err)
	}
	var now time.Time
	if c.Now != nil {
		now = c.Now()
	}
	cl, chain, err := p.Promote(pinned, now)
	if err != nil {
		return nil, err
	}
	ok = true
	// Telemetry is for the registrar's records: its failure does not stop
	// the device.
	res := &ZeroTouchResult{Client: cl, Voucher: v, Chain: chain}
	res.TelemetryErr = cl.ReportVoucherStatus(ctx, voucher.Status{OK: true})
	return res, nil
}
