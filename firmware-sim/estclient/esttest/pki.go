package esttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"
)

// CA is a certificate authority made for a test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// PKI is the world of one test: the Embark root and intermediate that
// issue LDevIDs and the server certificate, and a manufacturer CA that
// issues IDevIDs.
type PKI struct {
	Root, Intermediate *CA
	Manufacturer       *CA
	// Server is the server certificate (chain: leaf, intermediate) for
	// 127.0.0.1 and "embark.test".
	Server tls.Certificate
}

// NewPKI makes a fresh PKI.
func NewPKI() (*PKI, error) {
	root, err := NewRoot("Embark Root")
	if err != nil {
		return nil, err
	}
	inter, err := root.Sub("Embark Intermediate")
	if err != nil {
		return nil, err
	}
	manufacturer, err := NewRoot("Acme Manufacturer CA")
	if err != nil {
		return nil, err
	}
	server, err := inter.Leaf("embark", []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"embark.test"}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	return &PKI{Root: root, Intermediate: inter, Manufacturer: manufacturer, Server: server}, nil
}

// Roots is a pool holding the Embark root.
func (p *PKI) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Root.Cert)
	return pool
}

// IDevID issues a device identity from the manufacturer CA.
func (p *PKI) IDevID(serial string) (tls.Certificate, error) {
	return p.Manufacturer.Leaf(serial, nil, nil, x509.ExtKeyUsageClientAuth)
}

// serial is a random positive 64-bit serial number.
func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func caTemplate(name string) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil
}

// NewRoot makes a self-signed CA.
func NewRoot(name string) (*CA, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := caTemplate(name)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("esttest: root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Sub makes an intermediate CA under ca.
func (ca *CA) Sub(name string) (*CA, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := caTemplate(name)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("esttest: intermediate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Issue signs an end-entity certificate for pub.
func (ca *CA) Issue(cn string, pub any, ips []net.IP, dns []string, eku x509.ExtKeyUsage) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{eku},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("esttest: issue: %w", err)
	}
	return x509.ParseCertificate(der)
}

// Leaf makes a key pair and a certificate for it and returns them as a
// tls.Certificate whose chain is the leaf and ca.
func (ca *CA) Leaf(cn string, ips []net.IP, dns []string, eku x509.ExtKeyUsage) (tls.Certificate, error) {
	key, err := newKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := ca.Issue(cn, &key.PublicKey, ips, dns, eku)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw, ca.Cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}
