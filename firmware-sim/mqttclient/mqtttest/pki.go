package mqtttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient/esttest"
	"github.com/embark-iot/embark/pkg/mqttwire"
)

// PKI is the world of one test: esttest's Embark root and intermediate,
// manufacturer CA and server certificate (for 127.0.0.1), and Embark's
// responder certificate.
type PKI struct {
	*esttest.PKI
	// Responder signs Embark's answers and commands: URI SAN
	// mqttwire.ResponderURI, issued by the intermediate (chain: leaf,
	// intermediate).
	Responder tls.Certificate
}

// NewPKI makes a fresh PKI.
func NewPKI() (*PKI, error) {
	base, err := esttest.NewPKI()
	if err != nil {
		return nil, err
	}
	p := &PKI{PKI: base}
	if p.Responder, err = p.Leaf("embark responder", mqttwire.ResponderURI); err != nil {
		return nil, err
	}
	return p, nil
}

// Leaf makes a key pair and a client certificate for it from the Embark
// intermediate, with subject CN cn and URI SAN uri; chain: leaf,
// intermediate. With a device URN, it is an LDevID; it never passes as
// Embark's responder unless uri is mqttwire.ResponderURI.
func (p *PKI) Leaf(cn, uri string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := p.issue(cn, uri, &key.PublicKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw, p.Intermediate.Cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// issue signs a client certificate for pub with the intermediate.
func (p *PKI) issue(cn, uri string, pub any) (*x509.Certificate, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("mqtttest: uri %q: %w", uri, err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn.Add(sn, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Intermediate.Cert, pub, p.Intermediate.Key)
	if err != nil {
		return nil, fmt.Errorf("mqtttest: issue: %w", err)
	}
	return x509.ParseCertificate(der)
}
