package factory

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// Files of the manufacturer's voucher service (MASA) and of the firmware
// image.
const (
	// VoucherCertFile is the voucher-signing certificate, issued by the
	// root: the anchor devices verify vouchers with.
	VoucherCertFile = "masa-voucher.pem"
	// VoucherKeyFile is its ECDSA P-256 private key (0600).
	VoucherKeyFile = "masa-voucher-key.pem"
	// FirmwareFile is the firmware image every device of the manufacturer
	// runs, as far as onboarding cares: the voucher anchors built into it.
	FirmwareFile = "firmware.json"
)

// Firmware is what the factory builds into every device's firmware image.
type Firmware struct {
	Manufacturer string
	// VoucherAnchors are the certificates whose keys sign the vouchers the
	// device accepts (package voucher).
	VoucherAnchors []*x509.Certificate
}

type firmwareFile struct {
	Manufacturer   string   `json:"manufacturer"`
	VoucherAnchors []string `json:"voucher_anchors"`
}

// voucherFiles are the voucher signer's files and the firmware image, ready
// to be written.
type voucherFiles struct {
	key, cert []byte // nil: keep the existing ones
	firmware  []byte
}

// prepareVoucherFiles makes the voucher-signing key and certificate if dir
// has none, and the firmware image that carries the certificate as the
// devices' voucher anchor. Existing voucher files are kept if they belong
// to the authority's root, and refused otherwise.
func prepareVoucherFiles(dir string, a *authority, now time.Time) (*voucherFiles, error) {
	vf := &voucherFiles{}
	cert, _, err := loadVoucherSigner(dir, a.root)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			Subject:               pkix.Name{CommonName: a.manufacturer + " voucher signer", Organization: []string{a.manufacturer}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              a.root.NotAfter,
			KeyUsage:              x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
		}
		if cert, err = issue(tmpl, a.root, &key.PublicKey, a.rootKey); err != nil {
			return nil, fmt.Errorf("voucher signer: %w", err)
		}
		if vf.key, err = keyPEM(key); err != nil {
			return nil, err
		}
		vf.cert = certPEM(cert)
	} else if err != nil {
		return nil, err
	}
	fw, err := json.MarshalIndent(firmwareFile{Manufacturer: a.manufacturer, VoucherAnchors: []string{string(certPEM(cert))}}, "", "  ")
	if err != nil {
		return nil, err
	}
	vf.firmware = append(fw, '\n')
	return vf, nil
}

// write writes the files into dir, the firmware image last.
func (vf *voucherFiles) write(dir string) error {
	if vf.key != nil {
		if err := writeFileAtomic(filepath.Join(dir, VoucherKeyFile), vf.key, 0o600); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, VoucherCertFile), vf.cert, 0o644); err != nil {
			return err
		}
	}
	return writeFileAtomic(filepath.Join(dir, FirmwareFile), vf.firmware, 0o644)
}

// loadVoucherSigner reads the voucher-signing certificate and key of dir
// and checks that root issued the certificate. The error wraps
// fs.ErrNotExist if dir has neither file.
func loadVoucherSigner(dir string, root *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, VoucherCertFile), filepath.Join(dir, VoucherKeyFile)
	_, cerr := os.Stat(certPath)
	_, kerr := os.Stat(keyPath)
	if errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("factory: no voucher signer in %s: %w", dir, fs.ErrNotExist)
	}
	cert, err := readCert(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInconsistent, err)
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInconsistent, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%w: %s does not match %s", ErrInconsistent, VoucherKeyFile, VoucherCertFile)
	}
	if err := cert.CheckSignatureFrom(root); err != nil {
		return nil, nil, fmt.Errorf("%w: %s is not issued by %s: %v", ErrInconsistent, VoucherCertFile, RootCertFile, err)
	}
	return cert, key, nil
}

// ReadFirmware reads the firmware image of a factory output directory.
func ReadFirmware(dir string) (*Firmware, error) {
	b, err := os.ReadFile(filepath.Join(dir, FirmwareFile))
	if err != nil {
		return nil, fmt.Errorf("factory: firmware image: %w", err)
	}
	var f firmwareFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("factory: %s: %w: %v", FirmwareFile, ErrMalformed, err)
	}
	fw := &Firmware{Manufacturer: f.Manufacturer}
	for _, p := range f.VoucherAnchors {
		block, rest := pem.Decode([]byte(p))
		if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
			return nil, fmt.Errorf("factory: %s: %w: a voucher anchor is not one PEM certificate", FirmwareFile, ErrMalformed)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("factory: %s: %w: %v", FirmwareFile, ErrMalformed, err)
		}
		fw.VoucherAnchors = append(fw.VoucherAnchors, c)
	}
	if len(fw.VoucherAnchors) == 0 {
		return nil, fmt.Errorf("factory: %s: %w: no voucher anchor", FirmwareFile, ErrMalformed)
	}
	return fw, nil
}

// Manufacturer is what the manufacturer's own services (the simulated
// MASA) hold: the root CA and its key, the IDevID CA, the manifest signing
// key, and the voucher signing key and certificate.
type Manufacturer struct {
	Name         string
	Root         *x509.Certificate
	RootKey      *ecdsa.PrivateKey
	Intermediate *x509.Certificate
	// ManifestSigner signs manifests; the MASA countersigns vouchers with it.
	ManifestSigner *hybridsig.PrivateKey
	VoucherCert    *x509.Certificate
	VoucherKey     *ecdsa.PrivateKey
}

// LoadManufacturer reads the manufacturer of a factory output directory,
// voucher signer included.
func LoadManufacturer(dir string) (*Manufacturer, error) {
	a, found, err := loadAuthority(dir)
	if err != nil {
		return nil, fmt.Errorf("factory: %w", err)
	}
	if !found {
		return nil, fmt.Errorf("factory: %s holds no manufacturer: %w", dir, fs.ErrNotExist)
	}
	cert, key, err := loadVoucherSigner(dir, a.root)
	if err != nil {
		return nil, fmt.Errorf("factory: %w", err)
	}
	return &Manufacturer{Name: a.manufacturer, Root: a.root, RootKey: a.rootKey, Intermediate: a.inter,
		ManifestSigner: a.signer, VoucherCert: cert, VoucherKey: key}, nil
}
