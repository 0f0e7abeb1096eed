package registrar

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/embark-iot/embark/pkg/voucher"
)

// Files of the registrar certificate in its directory (DATA/registrar).
const (
	CertFile = "registrar.crt"
	KeyFile  = "registrar.key"
)

// CertificateLifetime is the life of a new registrar certificate.
const CertificateLifetime = 365 * 24 * time.Hour

// Issuer signs a certificate template with the CA's intermediate and
// returns the certificate and the chain above it (intermediate first).
type Issuer func(tmpl *x509.Certificate, lifetime time.Duration) (*x509.Certificate, []*x509.Certificate, error)

// Certificate returns the registrar certificate kept in dir (created 0700)
// if it is still good — issued by inter, a registrar's, valid at now for
// more than a third of its life — and otherwise issues a new one with
// issue: ECDSA P-256, extended key usages clientAuth and id-kp-cmcRA,
// subject CN "Embark registrar" and O owner. The key is written 0600.
func Certificate(dir, owner string, inter *x509.Certificate, issue Issuer, now time.Time) (tls.Certificate, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("registrar: certificate: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	// A stored certificate that is unreadable, mismatched, readable by
	// others or no longer good is replaced.
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && c.Leaf != nil {
		life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
		st, serr := os.Stat(keyPath)
		if serr == nil && st.Mode().Perm()&0o077 == 0 && voucher.IsRegistrar(c.Leaf) && c.Leaf.CheckSignatureFrom(inter) == nil &&
			!now.Before(c.Leaf.NotBefore) && c.Leaf.NotAfter.Sub(now) > life/3 {
			return c, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("registrar: certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("registrar: certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: "Embark registrar", Organization: []string{owner}},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{voucher.OIDCmcRA},
		BasicConstraintsValid: true,
		PublicKey:             &key.PublicKey,
	}
	leaf, chain, err := issue(tmpl, CertificateLifetime)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("registrar: issue the registrar certificate: %w", err)
	}
	if !voucher.IsRegistrar(leaf) || !key.PublicKey.Equal(leaf.PublicKey) {
		return tls.Certificate{}, fmt.Errorf("registrar: the CA issued %s without id-kp-cmcRA or for another key", leaf.Subject)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("registrar: certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	out := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		out.Certificate = append(out.Certificate, c.Raw)
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFile(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return out, nil
}

func writeFile(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("registrar: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("registrar: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("registrar: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	return nil
}
