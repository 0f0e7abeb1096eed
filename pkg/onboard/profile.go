package onboard

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// Profile is the network profile of a device: where policy placed it, and
// what it still has to be told.
type Profile struct {
	DeviceID      string   `json:"device"`
	State         string   `json:"state"`
	Zone          string   `json:"zone,omitempty"`
	SecurityLevel int      `json:"security_level,omitempty"`
	Segment       string   `json:"segment,omitempty"`
	Topics        []string `json:"topics,omitempty"`
	Pending       string   `json:"pending,omitempty"`
	Policy        string   `json:"policy,omitempty"`
	Rule          string   `json:"rule,omitempty"`
	// The renewal window of the certificate presented: renew from
	// RenewFrom (two thirds into its life) and before NotAfter; after it,
	// only within RenewGraceSeconds, when policy grants a grace period.
	RenewFrom         time.Time `json:"renew_from,omitzero"`
	NotAfter          time.Time `json:"not_after,omitzero"`
	RenewGraceSeconds int64     `json:"renew_grace_seconds,omitempty"`
}

// RenewFrom is when a device should renew a certificate: two thirds into
// its validity.
func RenewFrom(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// ProfileFromDevice returns the profile a registry record stands for.
func ProfileFromDevice(d device.Device) Profile {
	return Profile{DeviceID: d.ID, State: string(d.State), Zone: d.Zone, SecurityLevel: d.Profile.SecurityLevel,
		Segment: d.Profile.Segment, Topics: d.Profile.Topics, Pending: d.Flags.Pending, Policy: d.Profile.Policy, Rule: d.Profile.Rule}
}

// ProfileOf answers a device that authenticates with a usable LDevID with
// its own network profile.
func (s *Service) ProfileOf(ctx context.Context, chain []*x509.Certificate) (Profile, error) {
	now := s.clock()
	if len(chain) == 0 {
		return Profile{}, refuse(ReasonUnauthenticated, "the profile is served to a device authenticated with its LDevID")
	}
	leaf := chain[0]
	if !s.issuedHere(leaf) {
		return Profile{}, refuse(ReasonWrongCredential, "the profile is served to LDevIDs issued here, not to IDevIDs")
	}
	if err := s.ca.VerifyLDevID(leaf, now); err != nil {
		return Profile{}, refuseErr(ReasonUntrustedChain, err, "LDevID does not verify: %v", err)
	}
	var p Profile
	err := s.store.View(ctx, func(r store.Reader) error {
		c, err := r.Certificate(serialHex(leaf))
		if err != nil {
			return err
		}
		if !c.Status.Usable() {
			return refuse(ReasonRevoked, "certificate %s is %s", c.Serial, c.Status)
		}
		d, err := r.Device(c.DeviceID)
		if err != nil {
			return err
		}
		p = ProfileFromDevice(d)
		p.RenewFrom, p.NotAfter = RenewFrom(leaf).UTC(), leaf.NotAfter.UTC()
		p.RenewGraceSeconds = int64(d.Profile.RenewGrace / time.Second)
		return nil
	})
	var e *Error
	switch {
	case errors.As(err, &e):
		return Profile{}, e
	case errors.Is(err, store.ErrNotFound):
		return Profile{}, refuse(ReasonNotCurrent, "certificate %s is not in the registry", serialHex(leaf))
	case err != nil:
		return Profile{}, s.internal("profile", err)
	}
	return p, nil
}
