package onboard

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
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

// Decommission retires a device for good: its live certificates are
// revoked (cessation of operation) and it is marked decommissioned. It can
// come back only through Reonboard.
func (s *Service) Decommission(ctx context.Context, id, actor, reason string) (device.Device, error) {
	var revoked []string
	d, err := s.operatorAction(ctx, id, actor, "decommission", reason, func(tx store.Tx, d *device.Device, now time.Time) error {
		next, err := device.Next(d.State, device.EvDecom)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotRevocable, err)
		}
		if revoked, err = s.retire(tx, d.ID, device.CertRevoked, "decommissioned by "+actor, now, ReasonCodeCessation); err != nil {
			return err
		}
		d.State, d.Zone, d.Profile = next, "", device.Profile{}
		d.Flags.Pending = "decommissioned"
		return nil
	})
	if err != nil {
		return device.Device{}, err
	}
	s.revoked(revoked)
	return d, nil
}

// Reonboard lets a revoked, decommissioned, denied or held device start
// over (after a factory reset): it returns to expected with no current
// certificate, so that its next enrollment opens a fresh identity history
// (an audit entry marks the start). Certificates still usable are superseded.
func (s *Service) Reonboard(ctx context.Context, id, actor, reason string) (device.Device, error) {
	return s.operatorAction(ctx, id, actor, "reonboard", reason, func(tx store.Tx, d *device.Device, now time.Time) error {
		next, err := device.Next(d.State, device.EvReonboard)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotRevocable, err)
		}
		if _, err := s.retire(tx, d.ID, device.CertSuperseded, "re-onboarded by "+actor, now, ReasonCodeSuperseded); err != nil {
			return err
		}
		d.State, d.Current, d.Previous, d.Zone, d.Profile = next, "", "", "", device.Profile{}
		d.Flags = device.Flags{}
		return nil
	})
}

// Expiring lists the current certificates of devices that expire before
// now+within, soonest first.
func (s *Service) Expiring(ctx context.Context, within time.Duration) ([]device.Certificate, error) {
	limit := s.clock().Add(within)
	var out []device.Certificate
	err := s.store.View(ctx, func(r store.Reader) error {
		out = nil
		return r.Devices("", func(d device.Device) (bool, error) {
			if d.Current == "" || (d.State != device.Onboarded && d.State != device.Quarantined) {
				return true, nil
			}
			c, err := r.Certificate(d.Current)
			if err != nil {
				return false, err
			}
			if c.NotAfter.Before(limit) {
				c.DER = nil
				out = append(out, c)
			}
			return true, nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].NotAfter.Before(out[j].NotAfter) })
	return out, err
}
