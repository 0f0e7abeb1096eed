package idevid

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/embark-iot/embark/pkg/device"
)

// Result is what a successful verification found.
type Result struct {
	// Manufacturer is the name of the trusted manufacturer whose root the chain leads to.
	Manufacturer string
	// Expired is set when the chain had expired but the verifier was told to
	// accept expired chains (see [AllowExpired]); the caller records it as a fact.
	Expired bool
}

// Verifier verifies IDevID chains. It is safe for concurrent use. Build a new
// one when the set of trusted manufacturers changes.
type Verifier struct {
	allowExpired bool
	// byName maps a manufacturer to its pools.
	byName map[string]*anchorSet
	// issuers lists every trusted CA certificate (roots and registered
	// intermediates), by raw subject, for leaves sent without their chain.
	issuers map[string][]*x509.Certificate

	mu    sync.Mutex
	cache map[[32]byte]caEntry
	// leaves remembers leaf signatures already checked against an issuer:
	// a device that connects to the broker and then enrolls presents the
	// same certificate twice within a second. Only the signature check is
	// skipped; validity and everything else are checked on every call.
	leaves map[[32]byte]struct{}
}

// maxLeaves bounds the leaf signature cache; it is emptied when full.
const maxLeaves = 16384

type anchorSet struct {
	name          string
	roots         *x509.CertPool
	intermediates *x509.CertPool
	rootSet       map[[32]byte]bool
}

type caEntry struct {
	manufacturer string
	notBefore    time.Time // latest notBefore along the verified chain
	notAfter     time.Time // earliest notAfter along the verified chain
}

// Option configures a Verifier.
type Option func(*Verifier)

// AllowExpired makes expired chains verify, with Result.Expired set.
func AllowExpired(allow bool) Option { return func(v *Verifier) { v.allowExpired = allow } }

// New builds a verifier for these trusted manufacturers.
func New(mfrs []device.Manufacturer, opts ...Option) (*Verifier, error) {
	v := &Verifier{
		byName:  make(map[string]*anchorSet, len(mfrs)),
		issuers: make(map[string][]*x509.Certificate),
		cache:   make(map[[32]byte]caEntry),
		leaves:  make(map[[32]byte]struct{}),
	}
	for _, o := range opts {
		o(v)
	}
	for _, m := range mfrs {
		if m.Distrusted != "" {
			continue
		}
		as := &anchorSet{name: m.Name, roots: x509.NewCertPool(), intermediates: x509.NewCertPool(), rootSet: map[[32]byte]bool{}}
		for _, der := range m.Roots {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("idevid: manufacturer %s: root: %w", m.Name, err)
			}
			as.roots.AddCert(c)
			as.rootSet[sha256.Sum256(c.Raw)] = true
			v.issuers[string(c.RawSubject)] = append(v.issuers[string(c.RawSubject)], c)
		}
		for _, der := range m.Intermediates {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("idevid: manufacturer %s: intermediate: %w", m.Name, err)
			}
			as.intermediates.AddCert(c)
			v.issuers[string(c.RawSubject)] = append(v.issuers[string(c.RawSubject)], c)
		}
		v.byName[m.Name] = as
	}
	return v, nil
}

// Verify checks that chain (leaf first, as presented by the peer) is a device
// certificate issued by a trusted manufacturer and valid at now.
func (v *Verifier) Verify(chain []*x509.Certificate, now time.Time) (Result, error) {
	if len(chain) == 0 || chain[0] == nil {
		return Result{}, ErrNoCertificate
	}
	leaf := chain[0]
	if leaf.IsCA || len(leaf.UnhandledCriticalExtensions) > 0 || !clientAuthOK(leaf) {
		return Result{}, fmt.Errorf("%w: %s", ErrNotDeviceCert, leaf.Subject)
	}
	// Candidate issuers: what the peer sent, then what the operator registered.
	var cands []*x509.Certificate
	for _, c := range chain[1:] {
		if bytes.Equal(c.RawSubject, leaf.RawIssuer) {
			cands = append(cands, c)
		}
	}
	cands = append(cands, v.issuers[string(leaf.RawIssuer)]...)
	var firstErr error
	for _, ca := range cands {
		e, err := v.verifiedCA(ca, chain[1:], now)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if err := v.checkLeaf(leaf, ca); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%w: %v", ErrUntrusted, err)
			}
			continue
		}
		if hasNameConstraints(ca) {
			// Rare for IDevID CAs: let crypto/x509 apply the constraints.
			if err := v.verifyFull(chain, e.manufacturer, now); err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
		}
		res := Result{Manufacturer: e.manufacturer}
		nb, na := later(leaf.NotBefore, e.notBefore), earlier(leaf.NotAfter, e.notAfter)
		switch {
		case now.Before(nb):
			return Result{}, fmt.Errorf("%w: valid from %s", ErrNotYetValid, nb.UTC().Format(time.RFC3339))
		case now.After(na):
			if !v.allowExpired {
				return Result{}, fmt.Errorf("%w: expired at %s", ErrExpired, na.UTC().Format(time.RFC3339))
			}
			res.Expired = true
		}
		return res, nil
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("%w: no trusted issuer named %s", ErrUntrusted, leaf.Issuer)
	}
	return Result{}, firstErr
}

// checkLeaf checks leaf's signature by ca, once per (leaf, ca) pair.
func (v *Verifier) checkLeaf(leaf, ca *x509.Certificate) error {
	h := sha256.New()
	h.Write(leaf.Raw)
	h.Write(ca.RawSubjectPublicKeyInfo)
	var key [32]byte
	h.Sum(key[:0])
	v.mu.Lock()
	_, ok := v.leaves[key]
	v.mu.Unlock()
	if ok {
		return nil
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return err
	}
	v.mu.Lock()
	if len(v.leaves) >= maxLeaves {
		clear(v.leaves)
	}
	v.leaves[key] = struct{}{}
	v.mu.Unlock()
	return nil
}

// verifiedCA returns the cached verification of a CA certificate, verifying
// it (independently of time, which Verify checks per call) when first seen.
func (v *Verifier) verifiedCA(ca *x509.Certificate, presented []*x509.Certificate, now time.Time) (caEntry, error) {
	key := sha256.Sum256(ca.Raw)
	v.mu.Lock()
	e, ok := v.cache[key]
	v.mu.Unlock()
	if ok {
		return e, nil
	}
	if !ca.IsCA || !ca.BasicConstraintsValid {
		return caEntry{}, fmt.Errorf("%w: issuer %s is not a CA", ErrUntrusted, ca.Subject)
	}
	for _, as := range v.byName {
		if as.rootSet[key] {
			e = caEntry{manufacturer: as.name, notBefore: ca.NotBefore, notAfter: ca.NotAfter}
			v.store(key, e)
			return e, nil
		}
	}
	for _, as := range v.byName {
		inter := as.intermediates.Clone()
		for _, c := range presented {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{
			Roots:         as.roots,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		}
		chains, err := ca.Verify(opts)
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			if !v.allowExpired {
				return caEntry{}, fmt.Errorf("%w: %v", ErrExpired, err)
			}
			// Validity is judged per call against the chain's window;
			// here only the signatures matter.
			opts.CurrentTime = midpoint(ca)
			chains, err = ca.Verify(opts)
		}
		if err != nil {
			continue
		}
		e = caEntry{manufacturer: as.name, notBefore: ca.NotBefore, notAfter: ca.NotAfter}
		for _, c := range chains[0][1:] {
			e.notBefore = later(e.notBefore, c.NotBefore)
			e.notAfter = earlier(e.notAfter, c.NotAfter)
		}
		if !hasNameConstraints(ca) {
			v.store(key, e)
		}
		return e, nil
	}
	return caEntry{}, fmt.Errorf("%w: issuer %s does not chain to a trusted root", ErrUntrusted, ca.Subject)
}

func (v *Verifier) store(key [32]byte, e caEntry) {
	v.mu.Lock()
	v.cache[key] = e
	v.mu.Unlock()
}

func (v *Verifier) verifyFull(chain []*x509.Certificate, mfr string, now time.Time) error {
	as := v.byName[mfr]
	inter := as.intermediates.Clone()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: as.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		return fmt.Errorf("%w: %v", ErrExpired, err)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	return nil
}

// Manufacturers returns the names of the trusted manufacturers.
func (v *Verifier) Manufacturers() []string {
	out := make([]string, 0, len(v.byName))
	for n := range v.byName {
		out = append(out, n)
	}
	return out
}

func clientAuthOK(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func hasNameConstraints(c *x509.Certificate) bool {
	return len(c.PermittedDNSDomains)+len(c.ExcludedDNSDomains)+len(c.PermittedIPRanges)+
		len(c.ExcludedIPRanges)+len(c.PermittedEmailAddresses)+len(c.ExcludedEmailAddresses)+
		len(c.PermittedURIDomains)+len(c.ExcludedURIDomains) > 0
}

func midpoint(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
