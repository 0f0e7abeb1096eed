package broker

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Files LoadOrCreateService keeps in its directory.
const (
	ServiceCACertFile = "service-ca.crt"
	ServiceCAKeyFile  = "service-ca.key"
	ServiceCertFile   = "service.crt"
	ServiceKeyFile    = "service.key"
)

// ServiceURIPrefix starts the URI SAN of a service certificate.
const ServiceURIPrefix = "urn:embark:service:"

const (
	serviceCALifetime   = 10 * 365 * 24 * time.Hour
	serviceCertLifetime = 365 * 24 * time.Hour
	serviceRenewBefore  = 30 * 24 * time.Hour
	backdate            = 5 * time.Minute
)

var serviceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// Service is the identity Embark uses as an MQTT client of a broker: a
// self-signed "service CA" and a client certificate it issued.
type Service struct {
	// Name is the certificate's common name; the URI SAN is
	// ServiceURIPrefix+Name.
	Name string
	// CA is the service CA. Brokers trust it for service clients only (the
	// embedded broker's Authenticator, or Mosquitto's service listener).
	CA *x509.Certificate
	// Cert is the client certificate with its key; Cert.Leaf is set.
	Cert tls.Certificate
}

// ServiceOption configures LoadOrCreateService.
type ServiceOption func(*serviceOptions) error

type serviceOptions struct {
	now func() time.Time
}

// WithServiceClock sets the clock used to date new certificates and to
// decide renewal (default time.Now).
func WithServiceClock(now func() time.Time) ServiceOption {
	return func(o *serviceOptions) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidOption)
		}
		o.now = now
		return nil
	}
}

// LoadOrCreateService returns the service identity kept in dir, creating what
// is missing: a self-signed P-256 service CA (CA:TRUE, path length 0, 10
// years) and a client certificate for name (CN=name, URI SAN
// "urn:embark:service:<name>", extended key usage clientAuth, 1 year). The
// client certificate is issued again, with a new key, when it has less than
// 30 days left, names another service or was not issued by the CA in dir.
// Keys are written with mode 0600, atomically; dir is created with mode
// 0700 if needed.
//
// An existing CA that cannot be read, does not match its key or has expired
// is an error (ErrServiceFiles): replacing it would silently break every
// broker configured to trust it.
func LoadOrCreateService(dir, name string, opts ...ServiceOption) (*Service, error) {
	o := serviceOptions{now: time.Now}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if !serviceNameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: %q: want [a-z0-9][a-z0-9.-]{0,62}", ErrInvalidServiceName, name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("service identity: %w", err)
	}
	now := o.now()
	ca, caKey, err := loadPair(dir, ServiceCACertFile, ServiceCAKeyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ca, caKey, err = createServiceCA(dir, now)
		if err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case !ca.IsCA || now.After(ca.NotAfter):
		return nil, fmt.Errorf("%w: %s is not a valid CA at %s", ErrServiceFiles, filepath.Join(dir, ServiceCACertFile), now.UTC().Format(time.RFC3339))
	}

	leaf, key, err := loadPair(dir, ServiceCertFile, ServiceKeyFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrServiceFiles) {
		return nil, err
	}
	if err != nil || !usableServiceCert(leaf, ca, name, now) {
		leaf, key, err = createServiceCert(dir, ca, caKey, name, now)
		if err != nil {
			return nil, err
		}
	}
	return &Service{
		Name: name,
		CA:   ca,
		Cert: tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf},
	}, nil
}

// usableServiceCert reports whether leaf can be kept.
func usableServiceCert(leaf, ca *x509.Certificate, name string, now time.Time) bool {
	return leaf.Subject.CommonName == name &&
		len(leaf.URIs) == 1 && leaf.URIs[0].String() == ServiceURIPrefix+name &&
		bytes.Equal(leaf.RawIssuer, ca.RawSubject) && leaf.CheckSignatureFrom(ca) == nil &&
		!now.Before(leaf.NotBefore) && leaf.NotAfter.Sub(now) >= serviceRenewBefore
}

func createServiceCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("service CA: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	ski, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Embark Service CA", Organization: []string{"Embark"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(serviceCALifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          ski,
	}
	cert, err := signAndStore(dir, ServiceCACertFile, ServiceCAKeyFile, tmpl, tmpl, key, key)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func createServiceCert(dir string, ca *x509.Certificate, caKey crypto.Signer, name string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("service certificate: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(ServiceURIPrefix + name)
	if err != nil {
		return nil, nil, fmt.Errorf("service certificate: %w", err)
	}
	notAfter := now.Add(serviceCertLifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Embark"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{u},
	}
	cert, err := signAndStore(dir, ServiceCertFile, ServiceKeyFile, tmpl, ca, key, caKey)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// signAndStore issues a certificate for key, signed by issuerKey, and
// writes it and key. The key is written first, so that a crash in between
// leaves a key without a certificate, which the next call replaces, never a
// certificate without its key.
func signAndStore(dir, certFile, keyFile string, tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, issuerKey crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, issuerKey)
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", certFile, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", certFile, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", keyFile, err)
	}
	if err := writeAtomic(filepath.Join(dir, keyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		return nil, err
	}
	if err := writeAtomic(filepath.Join(dir, certFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return cert, nil
}

// loadPair reads a PEM certificate and its PKCS#8 EC key. It returns an
// error wrapping fs.ErrNotExist when either file is missing, and
// ErrServiceFiles when they cannot be used.
func loadPair(dir, certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, certFile))
	if err != nil {
		return nil, nil, fmt.Errorf("service identity: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("service identity: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("%w: %s or %s is not PEM of the expected type", ErrServiceFiles, certFile, keyFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrServiceFiles, certFile, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrServiceFiles, keyFile, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%w: %s does not hold the key of %s", ErrServiceFiles, keyFile, certFile)
	}
	return cert, key, nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}
