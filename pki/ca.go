package pki

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
)

// backdate is how far before "now" certificates start, to absorb small clock
// differences between Embark and its peers.
const backdate = time.Minute

// CA issues and checks Embark's certificates. It is safe for concurrent use.
//
// A CA has one or more intermediates (generations): the active one issues
// every new certificate; previous ones still verify what they issued until
// they are retired (see [CA.Rollover]).
type CA struct {
	st atomic.Pointer[caState]

	dir    string // the CA directory; "" for none
	clock  func() time.Time
	logger *slog.Logger
	tmpl   *ldevidTemplate
	fail   func(step string) error // test seam: fails Rollover at a step

	serverMu sync.Mutex // serialises ServerCertificate
	rollMu   sync.Mutex // serialises Rollover and Retire
}

// caState is an immutable snapshot of the CA's generations.
type caState struct {
	active *generation
	gens   []*generation // by generation number, retired ones included
}

// generation is one intermediate of the CA with the root above it.
type generation struct {
	rec    genRecord
	inter  *x509.Certificate
	root   *x509.Certificate
	chain  []*x509.Certificate // inter first, root last
	bridge *x509.Certificate   // inter certified by an older root; nil if none
	svc    apiv1.CertificateAuthorityService
}

// New returns a CA that issues through svc. chain is the issuing
// intermediate first and the root last; each certificate must be a CA
// certificate signed by the next one, and the last must be self-signed.
// svc must sign with the key of chain[0]. New writes no files, and
// ServerCertificate does not persist what it issues. A CA made by New has
// one intermediate and cannot roll over.
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
	if err := checkChain(chain, cfg.clock()); err != nil {
		return nil, err
	}
	g := &generation{
		rec:   genRecord{Generation: 1, ID: keyIDOf(chain[0]), Dir: ".", RootDir: ".", State: IssuerActive},
		inter: chain[0],
		root:  chain[len(chain)-1],
		chain: slices.Clone(chain),
		svc:   svc,
	}
	return newCAFrom(&caState{active: g, gens: []*generation{g}}, dir, cfg), nil
}

func newCAFrom(st *caState, dir string, cfg *config) *CA {
	ca := &CA{dir: dir, clock: cfg.clock, logger: cfg.logger, tmpl: cfg.tmpl, fail: cfg.fail}
	ca.st.Store(st)
	return ca
}

// checkChain checks a CA chain: CA certificates, each signed by the next,
// the last self-signed, all valid at now.
func checkChain(chain []*x509.Certificate, now time.Time) error {
	if len(chain) < 2 {
		return fmt.Errorf("pki: new: chain needs an intermediate and a root, got %d certificate(s): %w", len(chain), ErrChainMismatch)
	}
	for i, c := range chain {
		if c == nil {
			return fmt.Errorf("pki: new: chain[%d] is nil: %w", i, ErrChainMismatch)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return fmt.Errorf("pki: new: chain[%d] (%s) is not a CA certificate: %w", i, c.Subject, ErrChainMismatch)
		}
		parent := c
		if i+1 < len(chain) {
			parent = chain[i+1]
		}
		if err := c.CheckSignatureFrom(parent); err != nil {
			return fmt.Errorf("pki: new: chain[%d] (%s) is not signed by %s: %w: %w", i, c.Subject, parent.Subject, ErrChainMismatch, err)
		}
	}
	for _, c := range chain {
		if err := checkValidAt(c, now); err != nil {
			return fmt.Errorf("pki: new: %w", err)
		}
	}
	return nil
}

// checkValidAt checks that a CA certificate is valid at now.
func checkValidAt(c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("CA certificate %s expired at %s: %w", c.Subject, c.NotAfter.UTC().Format(time.RFC3339), ErrExpired)
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("CA certificate %s is valid only from %s: %w", c.Subject, c.NotBefore.UTC().Format(time.RFC3339), ErrNotYetValid)
	}
	return nil
}

func (ca *CA) state() *caState { return ca.st.Load() }

// Root returns the root above the active intermediate.
func (ca *CA) Root() *x509.Certificate { return ca.state().active.root }

// Intermediate returns the active intermediate: the certificate that issues
// LDevIDs and server certificates.
func (ca *CA) Intermediate() *x509.Certificate { return ca.state().active.inter }

// Chain returns the chain of the active intermediate, intermediate first
// and root last. The slice is a copy; the certificates are shared and must
// not be modified.
func (ca *CA) Chain() []*x509.Certificate { return slices.Clone(ca.state().active.chain) }

// Service returns the CA service the active intermediate issues through.
func (ca *CA) Service() apiv1.CertificateAuthorityService { return ca.state().active.svc }
