package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
)

// LDevIDRequest asks for an LDevID.
type LDevIDRequest struct {
	// PublicKey is the key to certify, taken from a CSR whose signature the
	// caller has checked. ECDSA P-256, P-384 and Ed25519 are accepted.
	PublicKey crypto.PublicKey
	// DeviceID is the device URN, e.g. "urn:dev:embark:acme:ACME-000001".
	// It becomes the certificate's URI SAN.
	DeviceID string
	// CommonName is the subject common name; empty means DeviceID.
	CommonName string
	// Lifetime is how long the certificate is valid from now; it must be
	// positive and must not reach past the intermediate's NotAfter.
	Lifetime time.Duration
}

// IssueLDevID issues an LDevID signed by the intermediate. The subject is the
// common name alone, whatever the device's CSR asked for; the device URN is
// the only URN URI SAN; the key usage is digitalSignature and the extended
// key usage clientAuth. The validity starts one minute before now.
func (ca *CA) IssueLDevID(req LDevIDRequest) (*x509.Certificate, error) {
	alg, err := checkLeafKey(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("pki: issue LDevID: %w", err)
	}
	uri, err := parseDeviceID(req.DeviceID)
	if err != nil {
		return nil, fmt.Errorf("pki: issue LDevID: %w", err)
	}
	cn := req.CommonName
	if cn == "" {
		cn = req.DeviceID
	}
	g := ca.state().active
	notBefore, notAfter, err := ca.validity(g, req.Lifetime)
	if err != nil {
		return nil, fmt.Errorf("pki: issue LDevID %s: %w", req.DeviceID, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("pki: issue LDevID: %w", err)
	}
	skid, err := subjectKeyID(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("pki: issue LDevID: %w", err)
	}

	var tmpl *x509.Certificate
	if ca.tmpl == nil {
		tmpl = &x509.Certificate{
			Subject:               pkix.Name{CommonName: cn},
			URIs:                  []*url.URL{uri},
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true,
		}
	} else {
		tmpl, err = ca.tmpl.build(req.PublicKey, alg, req.DeviceID, uri, cn)
		if err != nil {
			return nil, fmt.Errorf("pki: issue LDevID %s: %w", req.DeviceID, err)
		}
	}
	// Whatever a template says, these are the CA's.
	tmpl.SerialNumber = serial
	tmpl.NotBefore = notBefore
	tmpl.NotAfter = notAfter
	tmpl.PublicKey = req.PublicKey
	tmpl.PublicKeyAlgorithm = alg
	if len(tmpl.SubjectKeyId) == 0 {
		tmpl.SubjectKeyId = skid
	}

	cert, err := ca.create(g, tmpl, req.Lifetime)
	if err != nil {
		return nil, fmt.Errorf("pki: issue LDevID %s: %w", req.DeviceID, err)
	}
	if ca.tmpl != nil {
		if err := checkLDevID(cert, req.DeviceID); err != nil {
			return nil, fmt.Errorf("pki: issue LDevID %s: %w", req.DeviceID, err)
		}
	}
	return cert, nil
}

// validity returns the validity period of a certificate issued now by g
// with the given lifetime.
func (ca *CA) validity(g *generation, lifetime time.Duration) (notBefore, notAfter time.Time, err error) {
	if lifetime <= 0 {
		return time.Time{}, time.Time{}, fmt.Errorf("lifetime %s: %w", lifetime, ErrLifetime)
	}
	now := ca.clock()
	notBefore, notAfter = now.Add(-backdate), now.Add(lifetime)
	if notAfter.After(g.inter.NotAfter) {
		return time.Time{}, time.Time{}, fmt.Errorf("lifetime %s ends after the intermediate CA expires (%s): %w",
			lifetime, g.inter.NotAfter.UTC().Format(time.RFC3339), ErrLifetime)
	}
	return notBefore, notAfter, nil
}

// create issues tmpl through g's CA service.
func (ca *CA) create(g *generation, tmpl *x509.Certificate, lifetime time.Duration) (*x509.Certificate, error) {
	resp, err := g.svc.CreateCertificate(&apiv1.CreateCertificateRequest{
		Template: tmpl,
		Lifetime: lifetime,
		Backdate: backdate,
	})
	if err != nil {
		return nil, err
	}
	if resp == nil || resp.Certificate == nil {
		return nil, fmt.Errorf("CA service returned no certificate")
	}
	return resp.Certificate, nil
}

// checkLeafKey accepts ECDSA P-256/P-384 and Ed25519 public keys.
func checkLeafKey(pub crypto.PublicKey) (x509.PublicKeyAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return 0, fmt.Errorf("empty ECDSA key: %w", ErrKeyType)
		}
		switch k.Curve {
		case elliptic.P256(), elliptic.P384():
			return x509.ECDSA, nil
		}
		return 0, fmt.Errorf("ECDSA curve %s: %w", k.Curve.Params().Name, ErrKeyType)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return 0, fmt.Errorf("Ed25519 key of %d bytes: %w", len(k), ErrKeyType)
		}
		return x509.Ed25519, nil
	case nil:
		return 0, fmt.Errorf("no public key: %w", ErrKeyType)
	default:
		return 0, fmt.Errorf("%T: %w", pub, ErrKeyType)
	}
}

// parseDeviceID parses a device URN ("urn:<nid>:<nss>") and requires that it
// survives a round trip unchanged, so that the URI SAN equals the identifier.
func parseDeviceID(id string) (*url.URL, error) {
	u, err := url.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDeviceID, err)
	}
	nid, nss, _ := strings.Cut(u.Opaque, ":")
	switch {
	case u.Scheme != "urn" || nid == "" || nss == "":
		return nil, fmt.Errorf("%q: want urn:<namespace>:<name>: %w", id, ErrDeviceID)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("%q: query or fragment not allowed: %w", id, ErrDeviceID)
	case !urnChars(u.Opaque):
		return nil, fmt.Errorf("%q: characters outside RFC 3986 pchar: %w", id, ErrDeviceID)
	case u.String() != id:
		return nil, fmt.Errorf("%q: not in canonical form (%q): %w", id, u.String(), ErrDeviceID)
	}
	return u, nil
}

// urnChars reports whether s has only RFC 3986 pchar characters and "/".
func urnChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:@/%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		b[0] &= 0x7f
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID derives a key identifier from the subjectPublicKey bits:
// the leftmost 160 bits of their SHA-256 (RFC 7093, section 2, method 1),
// as crypto/x509 does for CA certificates.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	var bits []byte
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKeyType, err)
		}
		bits = b
	case ed25519.PublicKey:
		bits = k
	default:
		return nil, fmt.Errorf("%T: %w", pub, ErrKeyType)
	}
	sum := sha256.Sum256(bits)
	return sum[:20], nil
}

// fingerprint is the hex SHA-256 of a certificate, for logs.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
