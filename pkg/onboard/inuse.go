package onboard

import (
	"context"
	"errors"
	"fmt"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// ErrNotCurrentCert: the certificate named is not the device's current one.
var ErrNotCurrentCert = errors.New("onboard: not the device's current certificate")

// ConfirmInUse records that a device uses its current LDevID (serial): the
// certificate is marked in use and its predecessor, which may renew only
// until its successor is seen in use, is superseded (retired). A renewal
// does the same for the certificate that authenticates it; this is for
// evidence that comes another way, such as a device reporting a rotation
// applied after it renewed. actor names who confirms, for the audit log.
//
// It returns the serials it superseded, whose live sessions the caller may
// drop. Confirming a certificate already in use with no usable predecessor
// changes nothing. An unknown device is [ErrUnknownDevice]; a serial that
// is not the device's current certificate [ErrNotCurrentCert]; a current
// certificate that is no longer usable [ErrCertificateNotUsable].
func (s *Service) ConfirmInUse(ctx context.Context, deviceID, serial, actor string) ([]string, error) {
	now := s.clock()
	var retired []string
	err := s.store.Update(ctx, func(tx store.Tx) error {
		retired = nil
		d, err := tx.Device(deviceID)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrUnknownDevice, deviceID)
		}
		if err != nil {
			return err
		}
		if serial == "" || d.Current != serial {
			return fmt.Errorf("%w: %s is not the current certificate of %s", ErrNotCurrentCert, serial, deviceID)
		}
		c, err := tx.Certificate(serial)
		if err != nil {
			return err
		}
		if !c.Status.Usable() {
			return fmt.Errorf("%w: %s is %s", ErrCertificateNotUsable, serial, c.Status)
		}
		changed := false
		if c.Status == device.CertIssued {
			c.Status, c.StatusAt = device.CertInUse, now
			if c.SeenFrom == "" {
				// The endpoint the device last spoke from (its renewal).
				c.SeenFrom = d.Reported.Remote
			}
			if err := tx.PutCertificate(c); err != nil {
				return err
			}
			changed = true
		}
		if d.Previous != "" && d.Previous != serial {
			p, err := tx.Certificate(d.Previous)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if err == nil && p.Status.Usable() {
				p.Status, p.StatusAt, p.Reason = device.CertSuperseded, now, "superseded: successor "+serial+" in use"
				if err := tx.PutCertificate(p); err != nil {
					return err
				}
				retired = append(retired, p.Serial)
				changed = true
			}
		}
		if !changed {
			return nil
		}
		detail := "certificate in use"
		if len(retired) > 0 {
			detail += "; predecessor " + retired[0] + " superseded"
		}
		if _, err := tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: "in use", DeviceID: d.ID,
			Outcome: "ok", Cert: serial, Detail: detail}); err != nil {
			return err
		}
		// A new revision: a renewal that read the device before this
		// commit (and took the predecessor for renewable) retries.
		return tx.PutDevice(&d)
	})
	if err != nil {
		return nil, err
	}
	return retired, nil
}
