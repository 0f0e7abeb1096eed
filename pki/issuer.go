package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// IssuerState is where an intermediate stands in a rollover.
type IssuerState string

// Issuer states.
const (
	// IssuerActive: the intermediate issues every new certificate. A CA
	// has exactly one.
	IssuerActive IssuerState = "active"
	// IssuerPrevious: the intermediate issues nothing any more, but what it
	// issued still verifies (the overlap of a rollover).
	IssuerPrevious IssuerState = "previous"
	// IssuerRetired: what the intermediate issued no longer verifies; its
	// CRL is no longer published and its key is no longer loaded.
	IssuerRetired IssuerState = "retired"
)

// minIDPrefix is the shortest prefix of an issuer ID that Issuer accepts.
const minIDPrefix = 8

// Issuer describes one intermediate (one generation) of the CA.
type Issuer struct {
	// ID is the intermediate's subject key identifier in lower-case hex:
	// the authority key identifier of every certificate it issued.
	ID string `json:"id"`
	// Generation numbers the intermediates from 1 (the one Init created).
	Generation int         `json:"generation"`
	State      IssuerState `json:"state"`
	Subject    string      `json:"subject"`
	// Root is the subject of the root above it, RootSHA256 the root's
	// certificate fingerprint.
	Root       string    `json:"root"`
	RootSHA256 string    `json:"root_sha256"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	// Bridged is set when the intermediate was also certified by the root
	// of the generation before it (a root rollover), so that devices that
	// trust only the older root still verify what it signs.
	Bridged bool      `json:"bridged,omitempty"`
	Created time.Time `json:"created,omitzero"`
	Retired time.Time `json:"retired,omitzero"`
	// Certificate is the intermediate itself.
	Certificate *x509.Certificate `json:"-"`
}

func (g *generation) issuer() Issuer {
	return Issuer{
		ID:          g.rec.ID,
		Generation:  g.rec.Generation,
		State:       g.rec.State,
		Subject:     g.inter.Subject.String(),
		Root:        g.root.Subject.String(),
		RootSHA256:  fingerprint(g.root),
		NotBefore:   g.inter.NotBefore,
		NotAfter:    g.inter.NotAfter,
		Bridged:     g.bridge != nil,
		Created:     g.rec.Created,
		Retired:     g.rec.Retired,
		Certificate: g.inter,
	}
}

// keyIDOf returns the hex subject key identifier of a CA certificate, or,
// if it carries none, the first 20 bytes of the SHA-256 of its public key.
func keyIDOf(c *x509.Certificate) string {
	if len(c.SubjectKeyId) > 0 {
		return hex.EncodeToString(c.SubjectKeyId)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:20])
}

// issues reports whether leaf names g's intermediate as its issuer: the
// issuer name and, when both carry one, the key identifier.
func (g *generation) issues(leaf *x509.Certificate) bool {
	if !bytes.Equal(leaf.RawIssuer, g.inter.RawSubject) {
		return false
	}
	return len(leaf.AuthorityKeyId) == 0 || len(g.inter.SubjectKeyId) == 0 ||
		bytes.Equal(leaf.AuthorityKeyId, g.inter.SubjectKeyId)
}

// issuerOf returns the generation that leaf names as its issuer, nil if
// none. The active generation is tried first: it issued most certificates.
func (st *caState) issuerOf(leaf *x509.Certificate) *generation {
	if leaf == nil {
		return nil
	}
	if st.active.issues(leaf) {
		return st.active
	}
	for _, g := range st.gens {
		if g != st.active && g.issues(leaf) {
			return g
		}
	}
	return nil
}

// byID returns the generation with this ID or unique ID prefix (at least
// 8 hex digits).
func (st *caState) byID(id string) (*generation, error) {
	id = strings.ToLower(id)
	if len(id) < minIDPrefix {
		return nil, fmt.Errorf("issuer %q: want its key id (at least %d hex digits): %w", id, minIDPrefix, ErrUnknownIssuer)
	}
	var found *generation
	for _, g := range st.gens {
		if !strings.HasPrefix(g.rec.ID, id) {
			continue
		}
		if g.rec.ID == id {
			return g, nil
		}
		if found != nil {
			return nil, fmt.Errorf("issuer %q: prefix of more than one key id: %w", id, ErrUnknownIssuer)
		}
		found = g
	}
	if found == nil {
		return nil, fmt.Errorf("issuer %q: %w", id, ErrUnknownIssuer)
	}
	return found, nil
}

// live returns the generations that are not retired, the active one first.
func (st *caState) live() []*generation {
	out := []*generation{st.active}
	for i := len(st.gens) - 1; i >= 0; i-- {
		if g := st.gens[i]; g != st.active && g.rec.State != IssuerRetired {
			out = append(out, g)
		}
	}
	return out
}

// Issuers describes every intermediate of the CA, retired ones included,
// oldest first.
func (ca *CA) Issuers() []Issuer {
	st := ca.state()
	out := make([]Issuer, 0, len(st.gens))
	for _, g := range st.gens {
		out = append(out, g.issuer())
	}
	return out
}

// ActiveIssuer describes the active intermediate.
func (ca *CA) ActiveIssuer() Issuer { return ca.state().active.issuer() }

// Issuer describes the intermediate with this ID (see [Issuer]), or with
// this unique prefix of at least 8 hex digits. It fails with
// ErrUnknownIssuer.
func (ca *CA) Issuer(id string) (Issuer, error) {
	g, err := ca.state().byID(id)
	if err != nil {
		return Issuer{}, fmt.Errorf("pki: %w", err)
	}
	return g.issuer(), nil
}

// IssuerOf describes the intermediate that leaf names as its issuer (by
// name and key identifier, without checking the signature), whatever its
// state. It reports false if no intermediate of this CA matches.
func (ca *CA) IssuerOf(leaf *x509.Certificate) (Issuer, bool) {
	g := ca.state().issuerOf(leaf)
	if g == nil {
		return Issuer{}, false
	}
	return g.issuer(), true
}

// IssuedHere reports whether leaf claims to come from one of the CA's
// intermediates, retired ones included (issuer name and key identifier),
// without a signature check: it tells an LDevID from a certificate of
// another CA before the costlier [CA.VerifyLDevID].
func (ca *CA) IssuedHere(leaf *x509.Certificate) bool {
	return ca.state().issuerOf(leaf) != nil
}

// ChainOf returns the chain of the intermediate that leaf names as its
// issuer, intermediate first and root last, or nil if there is none. After
// a root rollover the intermediate's bridge certificate follows it, so that
// a device which trusts only the previous root can still verify leaf with
// these certificates. The certificates are shared and must not be modified.
func (ca *CA) ChainOf(leaf *x509.Certificate) []*x509.Certificate {
	g := ca.state().issuerOf(leaf)
	if g == nil {
		return nil
	}
	return append(g.presented(), g.chain[1:]...)
}

// Chains returns the chain of every intermediate that is not retired, the
// active one first; each is intermediate first and root last.
func (ca *CA) Chains() [][]*x509.Certificate {
	var out [][]*x509.Certificate
	for _, g := range ca.state().live() {
		out = append(out, slices.Clone(g.chain))
	}
	return out
}

// Intermediates returns every intermediate that is not retired, the active
// one first, each followed by its bridge certificate if it has one: the
// pool a verifier needs to check any certificate the CA may still present.
func (ca *CA) Intermediates() []*x509.Certificate {
	var out []*x509.Certificate
	for _, g := range ca.state().live() {
		out = append(out, g.chain[:len(g.chain)-1]...)
		if g.bridge != nil {
			out = append(out, g.bridge)
		}
	}
	return out
}

// Roots returns the roots above the intermediates that are not retired,
// the active one first.
func (ca *CA) Roots() []*x509.Certificate {
	var out []*x509.Certificate
	for _, g := range ca.state().live() {
		if !slices.ContainsFunc(out, g.root.Equal) {
			out = append(out, g.root)
		}
	}
	return out
}

// CACerts returns what devices are told to know (EST /crts): the
// intermediates of [CA.Intermediates], then the roots of [CA.Roots] with
// the active root last.
func (ca *CA) CACerts() []*x509.Certificate {
	out := ca.Intermediates()
	roots := ca.Roots()
	out = append(out, roots[1:]...)
	return append(out, roots[0])
}
