package pki

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
)

// backdate is how far before "now" certificates start, to absorb small clock
// differences between Embark and its peers.
const backdate = time.Minute

// CA issues and checks Embark's certificates. It is safe for concurrent use.
type CA struct {
	svc   apiv1.CertificateAuthorityService
	chain []*x509.Certificate // issuing intermediate first, root last
	inter *x509.Certificate
	root  *x509.Certificate

	dir    string // where server.crt/server.key live; "" for none
	clock  func() time.Time
	logger *slog.Logger
	tmpl   *ldevidTemplate

	serverMu sync.Mutex // serialises ServerCertificate
}

// New returns a CA that issues through svc. chain is the issuing
// intermediate first and the root last; each certificate must be a CA
// certificate signed by the next one, and the last must be self-signed.
// svc must sign with the key of chain[0]. New writes no files, and
// ServerCertificate does not persist what it issues.
func New(svc apiv1.CertificateAuthorityService, chain []*x509.Certificate, opts ...Option) (*CA, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return newCA(svc, chain, "", cfg)
}

func newCA(svc apiv1.CertificateAuthorityService, chain []*x509.Certificate, dir string, cfg *config) (*CA, error) {
	if svc == nil {
		return nil, fmt.Errorf("pki: new: nil CA service: %w", ErrInvalidOption)
	}
	if len(chain) < 2 {
		return nil, fmt.Errorf("pki: new: chain needs an intermediate and a root, got %d certificate(s): %w", len(chain), ErrChainMismatch)
	}
	for i, c := range chain {
		if c == nil {
			return nil, fmt.Errorf("pki: new: chain[%d] is nil: %w", i, ErrChainMismatch)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("pki: new: chain[%d] (%s) is not a CA certificate: %w", i, c.Subject, ErrChainMismatch)
		}
		parent := c
		if i+1 < len(chain) {
			parent = chain[i+1]
		}
		if err := c.CheckSignatureFrom(parent); err != nil {
			return nil, fmt.Errorf("pki: new: chain[%d] (%s) is not signed by %s: %w: %w", i, c.Subject, parent.Subject, ErrChainMismatch, err)
		}
	}
	now := cfg.clock()
	for _, c := range chain {
		if now.After(c.NotAfter) {
			return nil, fmt.Errorf("pki: new: CA certificate %s expired at %s: %w", c.Subject, c.NotAfter.UTC().Format(time.RFC3339), ErrExpired)
		}
		if now.Before(c.NotBefore) {
			return nil, fmt.Errorf("pki: new: CA certificate %s is valid only from %s: %w", c.Subject, c.NotBefore.UTC().Format(time.RFC3339), ErrNotYetValid)
		}
	}
	return &CA{
		svc:    svc,
		chain:  slices.Clone(chain),
		inter:  chain[0],
		root:   chain[len(chain)-1],
		dir:    dir,
		clock:  cfg.clock,
		logger: cfg.logger,
		tmpl:   cfg.tmpl,
	}, nil
}

// Root returns the root certificate.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Intermediate returns the certificate that issues LDevIDs and server
// certificates.
func (ca *CA) Intermediate() *x509.Certificate { return ca.inter }

// Chain returns the CA chain, intermediate first and root last. The slice is
// a copy; the certificates are shared and must not be modified.
func (ca *CA) Chain() []*x509.Certificate { return slices.Clone(ca.chain) }

// Service returns the CA service the certificates are issued through.
func (ca *CA) Service() apiv1.CertificateAuthorityService { return ca.svc }
