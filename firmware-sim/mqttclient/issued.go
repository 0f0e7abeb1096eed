package mqttclient

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/embark-iot/embark/pkg/mqttwire"
)

// Issued is a certificate Embark issued, as the answer carried it. Nothing
// about it is checked yet but that it parses: see [Issued.Verify].
type Issued struct {
	// Certificate is the LDevID.
	Certificate *x509.Certificate
	// Chain is its CA chain, intermediate first.
	Chain []*x509.Certificate
	// Zone and State are what the answer said about the device, if
	// anything.
	Zone, State string
}

func parseIssued(r mqttwire.Response) (*Issued, error) {
	if len(r.Certificate) == 0 {
		return nil, fmt.Errorf("%w: %s answer without a certificate", ErrResponse, r.Op)
	}
	if len(r.Chain) > mqttwire.MaxChain {
		return nil, fmt.Errorf("%w: chain of %d certificates", ErrResponse, len(r.Chain))
	}
	cert, err := x509.ParseCertificate(r.Certificate)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrResponse, err)
	}
	iss := &Issued{Certificate: cert, Zone: r.Zone, State: r.State}
	for i, der := range r.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: chain[%d]: %w", ErrResponse, i, err)
		}
		iss.Chain = append(iss.Chain, c)
	}
	return iss, nil
}

// Verify checks that the certificate carries pub (the CSR's key), names
// deviceID in a URI SAN, is a client certificate valid at now and chains
// to roots through Chain.
func (i *Issued) Verify(roots *x509.CertPool, pub crypto.PublicKey, deviceID string, now time.Time) error {
	k, ok := i.Certificate.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !k.Equal(pub) {
		return ErrKeyMismatch
	}
	if !slices.ContainsFunc(i.Certificate.URIs, func(u *url.URL) bool { return u.String() == deviceID }) {
		return fmt.Errorf("%w: want URI SAN %q", ErrWrongIdentity, deviceID)
	}
	inter := x509.NewCertPool()
	for _, c := range i.Chain {
		inter.AddCert(c)
	}
	if _, err := i.Certificate.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("%w: %w", ErrUntrustedCert, err)
	}
	return nil
}
