package onboard

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// ErrCertificateNotUsable is returned by CertUsable for an LDevID that is
// revoked, superseded or unknown to the registry.
var ErrCertificateNotUsable = errors.New("onboard: certificate not usable")

// RevocationHook is told, inside the revoking transaction, about every
// certificate revoked (to record it for the CRL), and after the commit about
// the serials revoked (to drop their live sessions).
type RevocationHook struct {
	Record    func(tx store.Tx, c device.Certificate, at time.Time, reason int) error
	Committed func(serials []string)
}

// WithRevocationHook sets the revocation hook.
func WithRevocationHook(h RevocationHook) Option {
	return func(s *Service) error { s.revHook = h; return nil }
}

// CRL reason codes (RFC 5280 §5.3.1) used by Embark.
const (
	ReasonCodeUnspecified        = 0
	ReasonCodeKeyCompromise      = 1
	ReasonCodeAffiliationChanged = 3
	ReasonCodeSuperseded         = 4
	ReasonCodeCessation          = 5
	ReasonCodePrivilegeWithdrawn = 9
)

// Revoke revokes every live certificate of a device and marks it revoked:
// it cannot renew or re-enroll until an operator re-onboards it. Its live
// sessions are dropped once the revocation is committed.
func (s *Service) Revoke(ctx context.Context, id, actor, reason string, code int) (device.Device, error) {
	var revoked []string
	d, err := s.operatorAction(ctx, id, actor, "revoke", reason, func(tx store.Tx, d *device.Device, now time.Time) error {
		next, err := device.Next(d.State, device.EvRevoke)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotRevocable, err)
		}
		if revoked, err = s.retire(tx, d.ID, device.CertRevoked, "revoked by "+actor+": "+reason, now, code); err != nil {
			return err
		}
		d.State = next
		d.Flags.Pending = "revoked: " + reason
		return nil
	})
	if err != nil {
		return device.Device{}, err
	}
	s.revoked(revoked)
	return d, nil
}

// ErrNotRevocable: the device's state does not allow revocation.
var ErrNotRevocable = errors.New("onboard: device cannot be revoked in its state")

// CertUsable is the check of every new DTLS/TLS session: an LDevID issued
// here must be in the registry and usable (not revoked, not superseded).
// Other certificates (IDevIDs) pass; the core verifies them per request.
func (s *Service) CertUsable(leaf *x509.Certificate) error {
	if leaf == nil || !s.issuedHere(leaf) {
		return nil
	}
	serial := serialHex(leaf)
	var c device.Certificate
	err := s.store.View(context.Background(), func(r store.Reader) error {
		var err error
		c, err = r.Certificate(serial)
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %s is not in the registry", ErrCertificateNotUsable, serial)
	case err != nil:
		return err
	case !c.Status.Usable():
		return fmt.Errorf("%w: %s is %s", ErrCertificateNotUsable, serial, c.Status)
	}
	return nil
}
