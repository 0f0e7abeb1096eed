package factory

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// caValidity is how long the manufacturer's CA certificates are valid.
const caValidity = 20

// authority is the manufacturer's CA and manifest signing key.
type authority struct {
	manufacturer string
	root         *x509.Certificate
	rootKey      *ecdsa.PrivateKey
	inter        *x509.Certificate
	interKey     *ecdsa.PrivateKey
	signer       *hybridsig.PrivateKey
	interPEM     []byte
}

// caFiles are the files that make up an authority.
var caFiles = []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile, SignerKeyFile, SignerPubFile}

// loadAuthority reads the authority in dir. found is false if dir holds none
// of its files.
func loadAuthority(dir string) (a *authority, found bool, err error) {
	var missing []string
	for _, name := range caFiles {
		if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, name)
		} else if err != nil {
			return nil, false, err
		}
	}
	if len(missing) == len(caFiles) {
		return nil, false, nil
	}
	if len(missing) > 0 {
		return nil, true, fmt.Errorf("%w: %s holds a manufacturer CA without %v", ErrInconsistent, dir, missing)
	}
	a = &authority{}
	if a.root, err = readCert(filepath.Join(dir, RootCertFile)); err != nil {
		return nil, true, err
	}
	if a.rootKey, err = readKey(filepath.Join(dir, RootKeyFile)); err != nil {
		return nil, true, err
	}
	if a.inter, err = readCert(filepath.Join(dir, IntermediateCertFile)); err != nil {
		return nil, true, err
	}
	if a.interKey, err = readKey(filepath.Join(dir, IntermediateKeyFile)); err != nil {
		return nil, true, err
	}
	b, err := os.ReadFile(filepath.Join(dir, SignerKeyFile))
	if err != nil {
		return nil, true, err
	}
	if a.signer, err = hybridsig.ParsePrivateKeyPEM(b); err != nil {
		return nil, true, fmt.Errorf("%s: %w", SignerKeyFile, err)
	}
	b, err = os.ReadFile(filepath.Join(dir, SignerPubFile))
	if err != nil {
		return nil, true, err
	}
	pub, err := hybridsig.ParsePublicKeyPEM(b)
	if err != nil {
		return nil, true, fmt.Errorf("%s: %w", SignerPubFile, err)
	}
	switch {
	case !a.rootKey.PublicKey.Equal(a.root.PublicKey):
		return nil, true, fmt.Errorf("%w: %s does not match %s", ErrInconsistent, RootKeyFile, RootCertFile)
	case !a.interKey.PublicKey.Equal(a.inter.PublicKey):
		return nil, true, fmt.Errorf("%w: %s does not match %s", ErrInconsistent, IntermediateKeyFile, IntermediateCertFile)
	case a.inter.CheckSignatureFrom(a.root) != nil:
		return nil, true, fmt.Errorf("%w: %s is not issued by %s", ErrInconsistent, IntermediateCertFile, RootCertFile)
	case !pub.Equal(a.signer.Public()):
		return nil, true, fmt.Errorf("%w: %s does not match %s", ErrInconsistent, SignerPubFile, SignerKeyFile)
	case len(a.root.Subject.Organization) != 1:
		return nil, true, fmt.Errorf("%w: %s names no manufacturer (subject O)", ErrInconsistent, RootCertFile)
	}
	a.manufacturer = a.root.Subject.Organization[0]
	a.interPEM = certPEM(a.inter)
	return a, true, nil
}

// newAuthority makes a new root CA, IDevID CA and manifest signing key.
func newAuthority(manufacturer string, now time.Time) (*authority, error) {
	a := &authority{manufacturer: manufacturer}
	var err error
	if a.rootKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if a.interKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if a.signer, err = hybridsig.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	notBefore, notAfter := now.Add(-time.Hour), now.AddDate(caValidity, 0, 0)
	rootTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: manufacturer + " Root CA", Organization: []string{manufacturer}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	if a.root, err = issue(rootTmpl, rootTmpl, &a.rootKey.PublicKey, a.rootKey); err != nil {
		return nil, fmt.Errorf("root CA: %w", err)
	}
	interTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: manufacturer + " IDevID CA", Organization: []string{manufacturer}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if a.inter, err = issue(interTmpl, a.root, &a.interKey.PublicKey, a.rootKey); err != nil {
		return nil, fmt.Errorf("IDevID CA: %w", err)
	}
	a.interPEM = certPEM(a.inter)
	return a, nil
}

// files returns the authority's files and their modes.
func (a *authority) files() (map[string][]byte, map[string]os.FileMode, error) {
	rootKey, err := keyPEM(a.rootKey)
	if err != nil {
		return nil, nil, err
	}
	interKey, err := keyPEM(a.interKey)
	if err != nil {
		return nil, nil, err
	}
	signer, err := hybridsig.MarshalPrivateKeyPEM(a.signer)
	if err != nil {
		return nil, nil, err
	}
	data := map[string][]byte{
		RootCertFile:         certPEM(a.root),
		RootKeyFile:          rootKey,
		IntermediateCertFile: a.interPEM,
		IntermediateKeyFile:  interKey,
		SignerKeyFile:        signer,
		SignerPubFile:        hybridsig.MarshalPublicKeyPEM(a.signer.Public()),
	}
	modes := map[string]os.FileMode{
		RootCertFile: 0o644, RootKeyFile: 0o600, IntermediateCertFile: 0o644,
		IntermediateKeyFile: 0o600, SignerKeyFile: 0o600, SignerPubFile: 0o644,
	}
	return data, modes, nil
}

// issue signs tmpl with a fresh random 128-bit serial number.
func issue(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// randomSerial returns a random positive serial number below 2^128.
func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, err
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// keyPEM returns k as a PKCS#8 "PRIVATE KEY" PEM block.
func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s: no PEM CERTIFICATE", ErrMalformed, path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, path, err)
	}
	return c, nil
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := parseKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// parseKeyPEM decodes a PKCS#8 (or SEC 1) PEM ECDSA P-256 private key.
func parseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM private key", ErrMalformed)
	}
	var k any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block %q, want PRIVATE KEY", ErrMalformed, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: want an ECDSA P-256 private key, got %T", ErrMalformed, k)
	}
	return ec, nil
}
