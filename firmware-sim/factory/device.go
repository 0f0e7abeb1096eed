package factory

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/embark-iot/embark/pkg/manifest"
)

// noExpiry is the IEEE 802.1AR notAfter of an IDevID without a
// well-defined expiration, 99991231235959Z.
var noExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// Device is one minted device as stored in devices.jsonl.
type Device struct {
	Serial string
	// Key is the device's IDevID private key.
	Key *ecdsa.PrivateKey
	// Chain is the IDevID followed by the intermediate CA certificate.
	Chain []*x509.Certificate
	// KeyPEM is Key as a PKCS#8 PEM block; CertPEM is Chain as PEM blocks.
	KeyPEM, CertPEM []byte
	// FirmwareVersion and FirmwareSHA256 are the firmware the device runs
	// and reports when it enrolls (empty in files from older factories).
	FirmwareVersion, FirmwareSHA256 string
}

// deviceRecord is one line of devices.jsonl.
type deviceRecord struct {
	Serial string `json:"serial"`
	Key    string `json:"key"`
	Cert   string `json:"cert"`
	// The firmware the device runs, as it will report it.
	FirmwareVersion string `json:"firmware_version,omitempty"`
	FirmwareSHA256  string `json:"firmware_sha256,omitempty"`
}

// maxLine bounds one line of devices.jsonl.
const maxLine = 1 << 20

// ReadDevices reads every device of a devices.jsonl file. For large files,
// [ScanDevices] avoids holding them all.
func ReadDevices(path string) ([]Device, error) {
	var out []Device
	err := ScanDevices(path, func(d Device) error {
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ScanDevices calls fn for each device of a devices.jsonl file, in file
// order, and stops at the first error. Each line must be strict JSON with
// the fields serial, key and cert; the key must be an ECDSA P-256 private key
// matching the first certificate, whose subject serialNumber is the serial.
// Errors in the file match [ErrMalformed] and name the line.
func ScanDevices(path string, fn func(Device) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("factory: read devices: %w", err)
	}
	defer f.Close()
	return scanDevices(f, path, fn)
}

func scanDevices(r io.Reader, name string, fn func(Device) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	// Devices of one run share their intermediate: parse it once.
	parsed := map[string]*x509.Certificate{}
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		d, err := parseDevice(sc.Bytes(), parsed)
		if err != nil {
			return fmt.Errorf("factory: %s:%d: %w", name, line, err)
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("factory: %s: %w: %v", name, ErrMalformed, err)
	}
	return nil
}

func parseDevice(line []byte, parsed map[string]*x509.Certificate) (Device, error) {
	var rec deviceRecord
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return Device{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Device{}, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	if rec.Serial == "" {
		return Device{}, fmt.Errorf("%w: no serial", ErrMalformed)
	}
	key, err := parseKeyPEM([]byte(rec.Key))
	if err != nil {
		return Device{}, err
	}
	var chain []*x509.Certificate
	rest := []byte(rec.Cert)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return Device{}, fmt.Errorf("%w: PEM block %q in cert", ErrMalformed, block.Type)
		}
		c, ok := parsed[string(block.Bytes)]
		if !ok {
			if c, err = x509.ParseCertificate(block.Bytes); err != nil {
				return Device{}, fmt.Errorf("%w: cert: %v", ErrMalformed, err)
			}
			if len(chain) > 0 { // CA certificates repeat from line to line
				parsed[string(block.Bytes)] = c
			}
		}
		chain = append(chain, c)
	}
	switch {
	case len(bytes.TrimSpace(rest)) != 0:
		return Device{}, fmt.Errorf("%w: data after the certificates", ErrMalformed)
	case len(chain) == 0:
		return Device{}, fmt.Errorf("%w: no certificate", ErrMalformed)
	case !key.PublicKey.Equal(chain[0].PublicKey):
		return Device{}, fmt.Errorf("%w: serial %q: key does not match the IDevID", ErrMalformed, rec.Serial)
	case chain[0].Subject.SerialNumber != rec.Serial:
		return Device{}, fmt.Errorf("%w: serial %q: IDevID is for %q", ErrMalformed, rec.Serial, chain[0].Subject.SerialNumber)
	}
	return Device{Serial: rec.Serial, Key: key, Chain: chain, KeyPEM: []byte(rec.Key), CertPEM: []byte(rec.Cert),
		FirmwareVersion: rec.FirmwareVersion, FirmwareSHA256: rec.FirmwareSHA256}, nil
}

// WriteDeviceFiles writes d's certificate chain to dir/cert.pem (IDevID then
// intermediate) and its private key to dir/key.pem (PKCS#8, mode 0600), the
// form that OpenSSL and GnuTLS tools such as coap-client read. dir is created
// with mode 0700 if needed.
func WriteDeviceFiles(d Device, dir string) (certPath, keyPath string, err error) {
	certPEM, keyPEMBytes := d.CertPEM, d.KeyPEM
	if len(certPEM) == 0 {
		for _, c := range d.Chain {
			certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
	}
	if len(keyPEMBytes) == 0 && d.Key != nil {
		if keyPEMBytes, err = keyPEM(d.Key); err != nil {
			return "", "", fmt.Errorf("factory: device files: %w", err)
		}
	}
	if len(certPEM) == 0 || len(keyPEMBytes) == 0 {
		return "", "", fmt.Errorf("factory: device files: %w: device %q has no certificate or key", ErrMalformed, d.Serial)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("factory: device files: %w", err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("factory: device files: %w", err)
	}
	if err := writeFileAtomic(keyPath, keyPEMBytes, 0o600); err != nil {
		return "", "", fmt.Errorf("factory: device files: %w", err)
	}
	return certPath, keyPath, nil
}

// minted is one new device: its devices.jsonl line and manifest entry.
type minted struct {
	line  []byte
	entry manifest.Entry
}

// mintDevice makes a key and IDevID for serial.
func (a *authority) mintDevice(serial string, notBefore, notAfter time.Time, entry manifest.Entry) (minted, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return minted{}, err
	}
	certSerial, err := randomSerial()
	if err != nil {
		return minted{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: certSerial,
		Subject: pkix.Name{
			CommonName:   serial,
			SerialNumber: serial,
			Organization: []string{a.manufacturer},
		},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.inter, &key.PublicKey, a.interKey)
	if err != nil {
		return minted{}, fmt.Errorf("IDevID for %s: %w", serial, err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return minted{}, err
	}
	kp, err := keyPEM(key)
	if err != nil {
		return minted{}, err
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), a.interPEM...)
	line, err := json.Marshal(deviceRecord{Serial: serial, Key: string(kp), Cert: string(chain),
		FirmwareVersion: entry.FirmwareVersion, FirmwareSHA256: entry.FirmwareSHA256})
	if err != nil {
		return minted{}, err
	}
	entry.Serial = serial
	entry.IDevIDKeySHA256 = manifest.KeyFingerprint(spki)
	return minted{line: append(line, '\n'), entry: entry}, nil
}

// readSerials returns the serials of a devices.jsonl file in order, reading
// only the serial field of each line.
func readSerials(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var out []string
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var rec struct {
			Serial string `json:"serial"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Serial == "" {
			return nil, fmt.Errorf("%w: %s:%d: no serial", ErrMalformed, path, line)
		}
		out = append(out, rec.Serial)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, path, err)
	}
	return out, nil
}
