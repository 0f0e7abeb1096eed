package registrar

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/store"
)

// RecordKind is the registry collection of MASA settings, keyed by
// manufacturer name.
const RecordKind = "registrar.masa"

// MASASetting is the MASA of a manufacturer and how Embark's domain is
// registered there.
type MASASetting struct {
	Manufacturer string `json:"manufacturer"`
	// URL is https://host[:port] of the MASA.
	URL string `json:"url"`
	// CA, if set, is a PEM CA that authenticates the MASA instead of the
	// manufacturer's trusted roots.
	CA string `json:"ca,omitempty"`
	// RegisteredAt is when the MASA accepted Embark's domain registration.
	RegisteredAt time.Time `json:"registered_at"`
	// OwnerKey is the KeyID of the owner key that registered.
	OwnerKey string `json:"owner_key"`
	// DomainCASHA256 is the SHA-256 of the root registered.
	DomainCASHA256 string `json:"domain_ca_sha256"`
	// Devices is how many devices the MASA said this owner bought.
	Devices int `json:"devices"`
	// TLS is the version and key exchange of the registration's connection.
	TLS string `json:"tls"`
}

// checkURL accepts https://host[:port] without path, query or user.
func checkURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: MASA URL %q: %v", ErrConfig, s, err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: MASA URL %q: want https://host[:port]", ErrConfig, s)
	}
	u.Path = ""
	return u, nil
}

func parseCAs(pemText string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(pemText)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: MASA CA: %v", ErrConfig, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the MASA CA holds no PEM certificate", ErrConfig)
	}
	return out, nil
}

// link is what talking to a manufacturer's MASA needs, read from the
// registry in one transaction.
type link struct {
	setting MASASetting
	// roots authenticate the MASA's TLS certificate.
	roots []*x509.Certificate
	// keys are the manufacturer's trusted manifest keys, which
	// countersign vouchers.
	keys map[string]*hybridsig.PublicKey
}

// readLink reads the MASA setting and the trust of a manufacturer.
// Without a setting it returns ErrNoMASA (and the trust). Parsed links are
// kept in cache while what they were parsed from is unchanged.
func readLink(r store.Reader, manufacturer string, cache *linkCache) (*link, error) {
	m, err := r.Manufacturer(manufacturer)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownManufacturer, manufacturer)
	}
	if err != nil {
		return nil, err
	}
	if m.Distrusted != "" {
		return nil, fmt.Errorf("%w: %q is distrusted: %s", ErrUnknownManufacturer, manufacturer, m.Distrusted)
	}
	b, err := r.Record(RecordKind, manufacturer)
	noMASA := errors.Is(err, store.ErrNotFound)
	if err != nil && !noMASA {
		return nil, err
	}
	fp := fingerprint(m, b)
	if l, ok := cache.get(manufacturer, fp); ok {
		if noMASA {
			return l, fmt.Errorf("%w for %q", ErrNoMASA, manufacturer)
		}
		return l, nil
	}
	l := &link{keys: map[string]*hybridsig.PublicKey{}}
	if err := trustOf(m, l); err != nil {
		return nil, err
	}
	if !noMASA {
		if err := json.Unmarshal(b, &l.setting); err != nil {
			return nil, fmt.Errorf("registrar: MASA setting of %q: %w", manufacturer, err)
		}
		if l.setting.CA != "" {
			if l.roots, err = parseCAs(l.setting.CA); err != nil {
				return nil, err
			}
		}
	}
	cache.put(manufacturer, fp, l)
	if noMASA {
		return l, fmt.Errorf("%w for %q", ErrNoMASA, manufacturer)
	}
	return l, nil
}

// fingerprint hashes what a link is parsed from.
func fingerprint(m device.Manufacturer, setting []byte) [sha256.Size]byte {
	h := sha256.New()
	put := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	put(setting)
	for _, group := range [][][]byte{m.Roots, m.ManifestKeys} {
		put(nil)
		for _, b := range group {
			put(b)
		}
	}
	put([]byte(strings.Join(m.RevokedKeys, ",")))
	var out [sha256.Size]byte
	copy(out[:], h.Sum(nil))
	return out
}

// linkCache keeps parsed links by manufacturer. Links are read-only.
type linkCache struct {
	mu sync.Mutex
	m  map[string]cachedLink
}

type cachedLink struct {
	fp [sha256.Size]byte
	l  *link
}

func (c *linkCache) get(manufacturer string, fp [sha256.Size]byte) (*link, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[manufacturer]
	return e.l, ok && e.fp == fp
}

func (c *linkCache) put(manufacturer string, fp [sha256.Size]byte, l *link) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 1024 {
		c.m = map[string]cachedLink{}
	}
	c.m[manufacturer] = cachedLink{fp: fp, l: l}
}

// trustOf fills l with the manufacturer's roots and usable manifest keys.
func trustOf(m device.Manufacturer, l *link) error {
	for _, der := range m.Roots {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("registrar: root of %q: %w", m.Name, err)
		}
		l.roots = append(l.roots, c)
	}
	revoked := map[string]bool{}
	for _, id := range m.RevokedKeys {
		revoked[id] = true
	}
	for _, b := range m.ManifestKeys {
		k, err := hybridsig.ParsePublicKey(b)
		if err != nil {
			return fmt.Errorf("registrar: manifest key of %q: %w", m.Name, err)
		}
		if !revoked[k.KeyID()] {
			l.keys[k.KeyID()] = k
		}
	}
	return nil
}
