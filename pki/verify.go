package pki

import (
	"crypto/x509"
	"fmt"
	"time"
)

// VerifyLDevID checks that leaf is an LDevID issued by one of this CA's
// intermediates that is not retired, and valid at now. It returns an error
// wrapping ErrNotIssuedHere if another CA (or another key) signed it, and
// also ErrRetired if its intermediate was retired; ErrNotYetValid or
// ErrExpired if now is outside its validity; and ErrNotLDevID if it is a CA
// certificate, lacks the clientAuth extended key usage or carries no device
// URN. Revocation is not checked here: it lives in the registry.
func (ca *CA) VerifyLDevID(leaf *x509.Certificate, now time.Time) error {
	if leaf == nil {
		return fmt.Errorf("pki: verify LDevID: no certificate: %w", ErrNotIssuedHere)
	}
	g := ca.state().issuerOf(leaf)
	if g == nil {
		return fmt.Errorf("pki: verify LDevID %x: issuer %q: %w", leaf.SerialNumber, leaf.Issuer, ErrNotIssuedHere)
	}
	if err := leaf.CheckSignatureFrom(g.inter); err != nil {
		return fmt.Errorf("pki: verify LDevID %x: %w: %w", leaf.SerialNumber, ErrNotIssuedHere, err)
	}
	if g.rec.State == IssuerRetired {
		return fmt.Errorf("pki: verify LDevID %x: intermediate %s (generation %d): %w: %w",
			leaf.SerialNumber, g.rec.ID, g.rec.Generation, ErrNotIssuedHere, ErrRetired)
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("pki: verify LDevID %x: valid from %s: %w", leaf.SerialNumber, leaf.NotBefore.UTC().Format(time.RFC3339), ErrNotYetValid)
	}
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("pki: verify LDevID %x: expired at %s: %w", leaf.SerialNumber, leaf.NotAfter.UTC().Format(time.RFC3339), ErrExpired)
	}
	switch _, ok := DeviceIDOf(leaf); {
	case leaf.IsCA:
		return fmt.Errorf("pki: verify LDevID %x: is a CA certificate: %w", leaf.SerialNumber, ErrNotLDevID)
	case !hasClientAuth(leaf):
		return fmt.Errorf("pki: verify LDevID %x: no clientAuth extended key usage: %w", leaf.SerialNumber, ErrNotLDevID)
	case !ok:
		return fmt.Errorf("pki: verify LDevID %x: no single URN URI SAN: %w", leaf.SerialNumber, ErrNotLDevID)
	}
	return nil
}

// DeviceIDOf returns the device URN of an LDevID: its URI SAN with scheme
// "urn". It reports false if there is none or more than one.
func DeviceIDOf(c *x509.Certificate) (string, bool) {
	if c == nil {
		return "", false
	}
	id, n := "", 0
	for _, u := range c.URIs {
		if u.Scheme == "urn" {
			id, n = u.String(), n+1
		}
	}
	if n != 1 {
		return "", false
	}
	return id, true
}

func hasClientAuth(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth {
			return true
		}
	}
	return false
}
