package estclient

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
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
	// VoucherTarget is the registrar's plain CoAP BRSKI listener,
	// coap://host[:port] (see [RequestVoucher]).
	VoucherTarget string
	// Config is the session the device enrolls on once the voucher told
	// it whom to trust: Target, and Certificate (the IDevID, required).
	// Roots must be nil: they come from the voucher.
	Config
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
	// Client is the session, authenticated by the pinned domain
	// certificate from its handshake on: the device enrolls on it.
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

// ZeroTouch runs the device side of constrained BRSKI: a voucher request
// signed with the IDevID, with a fresh nonce, sent over plain CoAP; the
// voucher verified against the firmware's anchors (serial, nonce, validity
// with a clock, signature); then an ordinary DTLS/TLS session whose server
// must chain to the domain certificate the voucher pins — verified in the
// handshake, never after — and voucher status telemetry on it (whose
// failure is reported, not fatal). A voucher the device refuses ends the
// run with an error wrapping the voucher package's reason
// (voucher.ErrWrongNonce, voucher.ErrUnknownSigner, ...); a server the
// voucher does not vouch for fails the handshake, an error wrapping both
// [ErrHandshake] and voucher.ErrNotPinned. The registrar's own refusals
// are *StatusError (5.03 with MaxAge: try again later).
func ZeroTouch(ctx context.Context, c ZeroTouchConfig) (*ZeroTouchResult, error) {
	if len(c.Anchors) == 0 || c.Serial == "" || c.Certificate == nil {
		return nil, fmt.Errorf("%w: zero touch needs the IDevID, the serial and the firmware's voucher anchors", ErrConfig)
	}
	if c.Roots != nil {
		return nil, fmt.Errorf("%w: zero touch learns whom to trust from the voucher: no roots", ErrConfig)
	}
	if _, err := ParseVoucherTarget(c.VoucherTarget); err != nil {
		return nil, err
	}
	if _, err := ParseTarget(c.Target); err != nil {
		return nil, err
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
	// No proximity-registrar-pubk-sha256: the device saw no server
	// certificate (package voucher, Proximity).
	req := voucher.PledgeRequest{SerialNumber: c.Serial, Nonce: nonce}
	if c.Now != nil {
		req.CreatedOn = c.Now()
	}
	body, err := signer.SignPledgeRequest(req)
	if err != nil {
		return nil, err
	}
	raw, err := RequestVoucher(ctx, c.VoucherTarget, body, c.Timeout)
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
	cfg := c.Config
	cfg.Roots = x509.NewCertPool()
	cfg.Roots.AddCert(pinned)
	cl, err := Dial(ctx, cfg)
	if err != nil {
		if certificateRefused(err) {
			return nil, fmt.Errorf("%w: %w", voucher.ErrNotPinned, err)
		}
		return nil, err
	}
	var now time.Time
	if c.Now != nil {
		now = c.Now()
	}
	// The handshake verified the server against the pinned certificate;
	// this rebuilds the chain the device keeps, leaf first, pinned last.
	chain, err := voucher.VerifyServerChain(pinned, cl.PeerCertificates(), now)
	if err != nil {
		_ = cl.Close()
		return nil, fmt.Errorf("estclient: %w", err)
	}
	// Telemetry is for the registrar's records: its failure does not stop
	// the device.
	res := &ZeroTouchResult{Client: cl, Voucher: v, Chain: chain}
	res.TelemetryErr = cl.ReportVoucherStatus(ctx, voucher.Status{OK: true})
	return res, nil
}

// certificateRefused reports a handshake that failed because the server's
// certificate did not verify (as opposed to a network failure).
func certificateRefused(err error) bool {
	var (
		unknown   x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		verifyErr *tls.CertificateVerificationError
	)
	return errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &hostname) || errors.As(err, &verifyErr)
}
