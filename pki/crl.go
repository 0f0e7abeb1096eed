package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
)

// Errors of CreateCRL.
var (
	// ErrCRL: the CRL parameters are unusable (no or negative number,
	// nextUpdate not after thisUpdate, an entry without a serial).
	ErrCRL = errors.New("invalid CRL parameters")
	// ErrNoCRLSigner: the CA service cannot sign CRLs, or signed one with a
	// key other than the intermediate's.
	ErrNoCRLSigner = errors.New("CA service cannot sign CRLs for the intermediate")
)

// maxCRLNumberBits is the largest CRL number RFC 5280 §5.2.3 allows: 20
// octets, and the number is a non-negative INTEGER.
const maxCRLNumberBits = 20*8 - 1

// CreateCRL returns a DER X.509 v2 CRL issued by the active intermediate
// (the CA of LDevIDs and server certificates) listing entries, with the
// given CRL number and validity; see [CA.CreateCRLFor].
func (ca *CA) CreateCRL(entries []x509.RevocationListEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	return ca.createCRL(ca.state().active, entries, number, thisUpdate, nextUpdate)
}

// CreateCRLFor returns a DER X.509 v2 CRL issued by the intermediate with
// this ID (see [CA.Issuer]) listing entries, with the given CRL number and
// validity. It carries the authority key identifier of the intermediate
// and the CRL number extension; an entry's reason code is included unless
// it is 0 (unspecified), as RFC 5280 recommends. The CRL is signed through
// the intermediate's CA service (softcas implements
// [apiv1.CertificateAuthorityCRLGenerator]) and checked against the
// intermediate before it is returned. A retired intermediate signs no CRL
// (ErrRetired).
func (ca *CA) CreateCRLFor(id string, entries []x509.RevocationListEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	g, err := ca.state().byID(id)
	if err != nil {
		return nil, fmt.Errorf("pki: create CRL: %w", err)
	}
	return ca.createCRL(g, entries, number, thisUpdate, nextUpdate)
}

func (ca *CA) createCRL(g *generation, entries []x509.RevocationListEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	switch {
	case number == nil || number.Sign() < 0:
		return nil, fmt.Errorf("pki: create CRL: number %v: %w", number, ErrCRL)
	case number.BitLen() > maxCRLNumberBits:
		return nil, fmt.Errorf("pki: create CRL: number longer than 20 octets: %w", ErrCRL)
	case thisUpdate.IsZero() || !nextUpdate.After(thisUpdate):
		return nil, fmt.Errorf("pki: create CRL: nextUpdate %s not after thisUpdate %s: %w",
			nextUpdate.UTC().Format(time.RFC3339), thisUpdate.UTC().Format(time.RFC3339), ErrCRL)
	}
	for i := range entries {
		if entries[i].SerialNumber == nil || entries[i].SerialNumber.Sign() <= 0 {
			return nil, fmt.Errorf("pki: create CRL: entry %d has no positive serial number: %w", i, ErrCRL)
		}
	}
	if g.rec.State == IssuerRetired || g.svc == nil {
		return nil, fmt.Errorf("pki: create CRL: intermediate %s: %w", g.rec.ID, ErrRetired)
	}
	gen, ok := g.svc.(apiv1.CertificateAuthorityCRLGenerator)
	if !ok {
		return nil, fmt.Errorf("pki: create CRL: service %T: %w", g.svc, ErrNoCRLSigner)
	}
	resp, err := gen.CreateCRL(&apiv1.CreateCRLRequest{RevocationList: &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    number,
		ThisUpdate:                thisUpdate.UTC(),
		NextUpdate:                nextUpdate.UTC(),
	}})
	if err != nil {
		return nil, fmt.Errorf("pki: create CRL: %w", err)
	}
	if resp == nil || len(resp.CRL) == 0 {
		return nil, fmt.Errorf("pki: create CRL: empty response: %w", ErrNoCRLSigner)
	}
	// The service chooses its own signer; make sure it is the intermediate.
	crl, err := x509.ParseRevocationList(resp.CRL)
	if err != nil {
		return nil, fmt.Errorf("pki: create CRL: parse signed CRL: %w", err)
	}
	if err := crl.CheckSignatureFrom(g.inter); err != nil {
		return nil, fmt.Errorf("pki: create CRL: %w: %w", ErrNoCRLSigner, err)
	}
	return resp.CRL, nil
}
