package onboard

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pki"
)

// Credential says which kind of certificate a device presented.
type Credential int

// Credentials.
const (
	// CredIDevID is the factory certificate: it may only enroll.
	CredIDevID Credential = iota + 1
	// CredLDevID is a certificate Embark issued.
	CredLDevID
)

// Identity is who a certificate chain says a device is, for transports
// that admit devices before any request (an MQTT broker).
type Identity struct {
	DeviceID   string
	Credential Credential
	// CertSerial is the leaf's serial, lowercase hex.
	CertSerial string
	// Zone and Topics come from the registry (LDevID only): the zone the
	// device is in and the application topics it grants.
	Zone   string
	Topics []string
}

// Identify verifies a presented chain and names the device it belongs to.
// An LDevID must verify against the CA and be usable (neither revoked nor
// superseded) and its device must be active; an IDevID must chain to a
// trusted manufacturer. An IDevID whose key is in no manifest is named by
// its manufacturer and subject serial number, so that the device can be
// told "unknown_device" by the request that follows.
func (s *Service) Identify(ctx context.Context, chain []*x509.Certificate) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, refuse(ReasonUnauthenticated, "no client certificate")
	}
	leaf := chain[0]
	now := s.clock()
	id := Identity{CertSerial: serialHex(leaf)}
	if s.issuedHere(leaf) {
		expired, err := s.verifyLDevID(leaf, now)
		if err != nil {
			return Identity{}, refuseErr(ReasonUntrustedChain, err, "LDevID does not verify: %v", err)
		}
		if err := s.CertUsable(leaf); err != nil {
			if errors.Is(err, ErrCertificateNotUsable) {
				return Identity{}, refuseErr(ReasonRevoked, err, "%v", err)
			}
			return Identity{}, s.internal("identify", err)
		}
		var d device.Device
		err = s.store.View(ctx, func(r store.Reader) error {
			c, err := r.Certificate(id.CertSerial)
			if err != nil {
				return err
			}
			d, err = r.Device(c.DeviceID)
			return err
		})
		if err != nil {
			return Identity{}, s.internal("identify", err)
		}
		if err := s.stateAllows(d); err != nil {
			return Identity{}, err
		}
		if expired {
			if err := inGrace(leaf, d, now); err != nil {
				return Identity{}, err
			}
		}
		id.DeviceID, id.Credential, id.Zone = d.ID, CredLDevID, d.Zone
		id.Topics = append([]string(nil), d.Profile.Topics...)
		return id, nil
	}
	vr, err := s.verifier.Load().Verify(chain, now)
	if err != nil {
		return Identity{}, chainError(err)
	}
	key := keyFingerprint(leaf.RawSubjectPublicKeyInfo)
	var d device.Device
	err = s.store.View(ctx, func(r store.Reader) error {
		var err error
		d, err = r.DeviceByIDevIDKey(key)
		return err
	})
	switch {
	case err == nil && d.Provenance.Manufacturer == vr.Manufacturer:
		id.DeviceID = d.ID
	case err == nil || errors.Is(err, store.ErrNotFound):
		if manifest.CheckSerial(leaf.Subject.SerialNumber) != "" || strings.ContainsAny(leaf.Subject.SerialNumber, "+#") {
			return Identity{}, refuse(ReasonUnknownDevice, "IDevID %s names no usable serial number", leaf.Subject)
		}
		id.DeviceID = device.ID(vr.Manufacturer, leaf.Subject.SerialNumber)
	default:
		return Identity{}, s.internal("identify", err)
	}
	id.Credential = CredIDevID
	return id, nil
}

// String names a credential.
func (c Credential) String() string {
	switch c {
	case CredIDevID:
		return "IDevID"
	case CredLDevID:
		return "LDevID"
	}
	return fmt.Sprintf("Credential(%d)", int(c))
}

// verifyLDevID verifies an LDevID issued here. An expired one that is
// otherwise valid is reported as expired (not as an error): whether it may
// still renew depends on the device's grace period, known after the
// registry is read.
func (s *Service) verifyLDevID(leaf *x509.Certificate, now time.Time) (expired bool, err error) {
	err = s.ca.VerifyLDevID(leaf, now)
	if errors.Is(err, pki.ErrExpired) {
		if err2 := s.ca.VerifyLDevID(leaf, leaf.NotAfter); err2 != nil {
			return false, err2
		}
		return true, nil
	}
	return false, err
}

// inGrace allows an expired LDevID while the device's policy grants a
// renewal grace period that has not run out.
func inGrace(leaf *x509.Certificate, d device.Device, now time.Time) error {
	late := now.Sub(leaf.NotAfter)
	if g := d.Profile.RenewGrace; g > 0 && late <= g {
		return nil
	}
	msg := fmt.Sprintf("LDevID expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	if g := d.Profile.RenewGrace; g > 0 {
		msg += fmt.Sprintf("; the renewal grace of %s ran out %s ago", g, (late - g).Round(time.Second))
	} else {
		msg += "; the policy grants no renewal grace"
	}
	return &Error{Reason: ReasonExpiredChain, Msg: msg}
}
