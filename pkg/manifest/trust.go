package manifest

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// MaxTrustBundleSize is the largest trust bundle [ParseTrustBundle] accepts.
const MaxTrustBundleSize = 4 << 20

// TrustBundle is what a manufacturer hands an operator so that the operator
// can check its devices' IDevIDs and its manifests. It is JSON; certificates
// and keys are PEM text, one block per string.
type TrustBundle struct {
	// Name is the manufacturer's name, as in its manifests.
	Name string `json:"name"`
	// Roots are the CA certificates that anchor IDevID chains.
	Roots []string `json:"roots"`
	// Intermediates are CA certificates between a root and the IDevIDs,
	// which some devices do not send.
	Intermediates []string `json:"intermediates,omitempty"`
	// ManifestKeys are hybridsig public keys ("EMBARK HYBRID PUBLIC KEY")
	// that sign the manufacturer's manifests.
	ManifestKeys []string `json:"manifest_keys"`
}

// Trust is a checked [TrustBundle], decoded.
type Trust struct {
	Name          string
	Roots         []*x509.Certificate
	Intermediates []*x509.Certificate
	ManifestKeys  []*hybridsig.PublicKey
}

// NewTrustBundle builds the trust bundle of a manufacturer and checks it as
// [ParseTrustBundle] would.
func NewTrustBundle(name string, roots, intermediates []*x509.Certificate, keys []*hybridsig.PublicKey) (*TrustBundle, error) {
	tb := &TrustBundle{Name: name}
	for _, c := range roots {
		tb.Roots = append(tb.Roots, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	for _, c := range intermediates {
		tb.Intermediates = append(tb.Intermediates, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	for _, k := range keys {
		tb.ManifestKeys = append(tb.ManifestKeys, string(hybridsig.MarshalPublicKeyPEM(k)))
	}
	if _, err := tb.Parse(); err != nil {
		return nil, err
	}
	return tb, nil
}

// Marshal returns tb as indented JSON ending in a newline.
func (tb *TrustBundle) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(tb, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("manifest: trust bundle: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseTrustBundle decodes and checks a trust bundle: strict JSON of at most
// [MaxTrustBundleSize] bytes ([ErrTooLarge], [ErrMalformed]); a valid
// manufacturer name, at least one root, every root and intermediate a CA
// certificate, every intermediate issued by a root or another intermediate of
// the bundle, at least one manifest key ([ErrInvalid]); no key twice
// ([ErrDuplicate]).
func ParseTrustBundle(b []byte) (*Trust, error) {
	if len(b) > MaxTrustBundleSize {
		return nil, fmt.Errorf("manifest: trust bundle: %w: %d bytes, at most %d", ErrTooLarge, len(b), MaxTrustBundleSize)
	}
	var tb TrustBundle
	if err := strictUnmarshal(b, &tb); err != nil {
		return nil, fmt.Errorf("manifest: trust bundle: %w", err)
	}
	return tb.Parse()
}

// Parse checks tb as [ParseTrustBundle] does and decodes it.
func (tb *TrustBundle) Parse() (*Trust, error) {
	fail := func(sentinel error, format string, args ...any) error {
		return fmt.Errorf("manifest: trust bundle %q: %w: %s", tb.Name, sentinel, fmt.Sprintf(format, args...))
	}
	if !ValidName(tb.Name) {
		return nil, fail(ErrInvalid, "name: want [a-z0-9][a-z0-9.-]{0,62}")
	}
	if len(tb.Roots) == 0 {
		return nil, fail(ErrInvalid, "no roots")
	}
	if len(tb.ManifestKeys) == 0 {
		return nil, fail(ErrInvalid, "no manifest keys")
	}
	t := &Trust{Name: tb.Name}
	for i, s := range tb.Roots {
		c, err := parseCACert(s)
		if err != nil {
			return nil, fail(errSentinel(err), "roots[%d]: %v", i, err)
		}
		t.Roots = append(t.Roots, c)
	}
	for i, s := range tb.Intermediates {
		c, err := parseCACert(s)
		if err != nil {
			return nil, fail(errSentinel(err), "intermediates[%d]: %v", i, err)
		}
		t.Intermediates = append(t.Intermediates, c)
	}
	if i := unanchored(t.Roots, t.Intermediates); i >= 0 {
		return nil, fail(ErrInvalid, "intermediates[%d] (%s) is issued by no root or intermediate of the bundle",
			i, t.Intermediates[i].Subject)
	}
	seen := make(map[string]int, len(tb.ManifestKeys))
	for i, s := range tb.ManifestKeys {
		k, err := hybridsig.ParsePublicKeyPEM([]byte(s))
		if err != nil {
			return nil, fail(ErrMalformed, "manifest_keys[%d]: %v", i, err)
		}
		if j, ok := seen[k.KeyID()]; ok {
			return nil, fail(ErrDuplicate, "manifest_keys[%d] is manifest_keys[%d]", i, j)
		}
		seen[k.KeyID()] = i
		t.ManifestKeys = append(t.ManifestKeys, k)
	}
	return t, nil
}

// invalidCert marks certificate problems that are not encoding problems.
type invalidCert struct{ reason string }

func (e invalidCert) Error() string { return e.reason }

func errSentinel(err error) error {
	if _, ok := err.(invalidCert); ok {
		return ErrInvalid
	}
	return ErrMalformed
}

// parseCACert decodes one PEM certificate and checks that it is a CA.
func parseCACert(s string) (*x509.Certificate, error) {
	block, rest := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("want one PEM CERTIFICATE block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("data after the PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		return nil, invalidCert{fmt.Sprintf("%s is not a CA certificate", c.Subject)}
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, invalidCert{fmt.Sprintf("%s may not sign certificates (key usage)", c.Subject)}
	}
	return c, nil
}

// unanchored returns the index of an intermediate that does not chain to a
// root through the bundle's certificates, or -1.
func unanchored(roots, intermediates []*x509.Certificate) int {
	anchored := make([]bool, len(intermediates))
	issuers := append([]*x509.Certificate(nil), roots...)
	for progress := true; progress; {
		progress = false
		for i, c := range intermediates {
			if anchored[i] {
				continue
			}
			for _, p := range issuers {
				if c.CheckSignatureFrom(p) == nil {
					anchored[i], progress = true, true
					issuers = append(issuers, c)
					break
				}
			}
		}
	}
	for i, ok := range anchored {
		if !ok {
			return i
		}
	}
	return -1
}

// Lookup returns the manifest key of t with the given KeyID; it is a
// [KeyLookup].
func (t *Trust) Lookup(keyID string) (*hybridsig.PublicKey, bool) {
	for _, k := range t.ManifestKeys {
		if k.KeyID() == keyID {
			return k, true
		}
	}
	return nil, false
}

// Open opens a manifest signed with one of t's keys and checks that it is
// t's manufacturer's ([ErrWrongManufacturer]).
func (t *Trust) Open(envelope []byte, opts ...OpenOption) (*Manifest, error) {
	v, err := t.Verify(envelope, opts...)
	if err != nil {
		return nil, err
	}
	return v.Manifest, nil
}

// Verify is [Trust.Open] that also says who signed and which payload.
func (t *Trust) Verify(envelope []byte, opts ...OpenOption) (*Verified, error) {
	v, err := Verify(envelope, t.Lookup, opts...)
	if err != nil {
		return nil, err
	}
	if v.Manifest.Manufacturer != t.Name {
		return nil, fmt.Errorf("manifest: open: %w: manifest of %q signed with a key of %q",
			ErrWrongManufacturer, v.Manifest.Manufacturer, t.Name)
	}
	return v, nil
}
