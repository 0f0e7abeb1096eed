package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
	"github.com/smallstep/certificates/cas/softcas"
	kmsapi "go.step.sm/crypto/kms/apiv1"
)

// Names of the files in a CA directory.
const (
	RootCertFile         = "root.crt"
	RootKeyFile          = "root.key"
	IntermediateCertFile = "intermediate.crt"
	IntermediateKeyFile  = "intermediate.key"
	ServerCertFile       = "server.crt"
	ServerKeyFile        = "server.key"
	ResponderCertFile    = "responder.crt"
	ResponderKeyFile     = "responder.key"
)

// Lifetimes of the CA certificates created by Init.
const (
	RootLifetime         = 10 * 365 * 24 * time.Hour
	IntermediateLifetime = 5 * 365 * 24 * time.Hour
)

const (
	keyPerm  fs.FileMode = 0o600
	certPerm fs.FileMode = 0o644
	dirPerm  fs.FileMode = 0o700
)

// Init loads the CA in dir, creating it first if dir holds none of its files.
// A new CA has an ECDSA P-256 root valid for 10 years and an ECDSA P-256
// intermediate valid for 5 years, both created through softcas. Init never
// overwrites a file: if dir holds part of a CA it fails with ErrIncompleteCA.
func Init(dir string, opts ...Option) (*CA, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile, StateFile} {
		_, err := os.Stat(filepath.Join(dir, name))
		switch {
		case err == nil:
			return load(dir, cfg)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("pki: init: %w", err)
		}
	}
	if err := create(dir, cfg); err != nil {
		return nil, err
	}
	return load(dir, cfg)
}

// Load loads the CA in dir. It fails with ErrNoCA if dir holds no CA and
// ErrIncompleteCA if a required file is missing; root.key is optional (it may
// be kept offline) but is checked when present. Key files readable by group
// or others are refused with ErrKeyPermissions, keys that do not match their
// certificates with ErrKeyMismatch, and certificates that do not chain with
// ErrChainMismatch. A CA that has rolled over is loaded generation by
// generation from its state file (the keys of retired intermediates are not
// read); a state file that does not match the directory is refused with
// ErrState.
func Load(dir string, opts ...Option) (*CA, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return load(dir, cfg)
}

func load(dir string, cfg *config) (*CA, error) {
	path := func(name string) string { return filepath.Join(dir, name) }
	switch _, err := os.Stat(path(StateFile)); {
	case err == nil:
		return loadState(dir, cfg)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("pki: load: %w", err)
	}

	required := []string{RootCertFile, IntermediateCertFile, IntermediateKeyFile}
	var missing []string
	for _, name := range required {
		if _, err := os.Stat(path(name)); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("pki: load: %w", err)
			}
			missing = append(missing, name)
		}
	}
	_, err := os.Stat(path(RootKeyFile))
	haveRootKey := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pki: load: %w", err)
	}
	switch {
	case len(missing) == len(required) && !haveRootKey:
		return nil, fmt.Errorf("pki: load %s: %w", dir, ErrNoCA)
	case len(missing) > 0:
		return nil, fmt.Errorf("pki: load %s: missing %s (restore them, or remove the remaining CA files to create a new CA): %w",
			dir, strings.Join(missing, ", "), ErrIncompleteCA)
	}

	root, err := readCertificate(path(RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("pki: load: %w", err)
	}
	inter, err := readCertificate(path(IntermediateCertFile))
	if err != nil {
		return nil, fmt.Errorf("pki: load: %w", err)
	}
	if !root.BasicConstraintsValid || !root.IsCA {
		return nil, fmt.Errorf("pki: load: %s is not a CA certificate: %w", path(RootCertFile), ErrChainMismatch)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("pki: load: %s is not self-signed: %w: %w", path(RootCertFile), ErrChainMismatch, err)
	}
	if !inter.BasicConstraintsValid || !inter.IsCA {
		return nil, fmt.Errorf("pki: load: %s is not a CA certificate: %w", path(IntermediateCertFile), ErrChainMismatch)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("pki: load: %s is not signed by %s: %w: %w", path(IntermediateCertFile), path(RootCertFile), ErrChainMismatch, err)
	}

	signer, err := readKey(path(IntermediateKeyFile), inter)
	if err != nil {
		return nil, fmt.Errorf("pki: load: %w", err)
	}
	if haveRootKey {
		if _, err := readKey(path(RootKeyFile), root); err != nil {
			return nil, fmt.Errorf("pki: load: %w", err)
		}
	} else {
		cfg.logger.Info("root key not present, root kept offline", "dir", dir)
	}

	chain := []*x509.Certificate{inter, root}
	svc, err := softcas.New(context.Background(), apiv1.Options{CertificateChain: chain, Signer: signer})
	if err != nil {
		return nil, fmt.Errorf("pki: load: %w", err)
	}
	ca, err := newCA(svc, chain, dir, cfg)
	if err != nil {
		return nil, err
	}
	cfg.logger.Info("CA loaded", "dir", dir,
		"root", root.Subject.CommonName, "root_sha256", fingerprint(root),
		"intermediate", inter.Subject.CommonName, "intermediate_not_after", inter.NotAfter)
	return ca, nil
}

// create makes a new root and intermediate in dir through softcas and writes
// them. It fails if any file already exists.
func create(dir string, cfg *config) error {
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("pki: init: %w", err)
	} else if fi.Mode().Perm()&^dirPerm != 0 && runtime.GOOS != "windows" {
		if err := os.Chmod(dir, dirPerm); err != nil {
			return fmt.Errorf("pki: init: %w", err)
		}
		cfg.logger.Info("restricted CA directory permissions", "dir", dir, "was", fi.Mode().Perm().String())
	}

	creator, err := softcas.New(context.Background(), apiv1.Options{IsCreator: true})
	if err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	now := cfg.clock()
	p256 := &apiv1.CreateKeyRequest{SignatureAlgorithm: kmsapi.ECDSAWithSHA256}

	rootSerial, err := newSerial()
	if err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	root, err := creator.CreateCertificateAuthority(&apiv1.CreateCertificateAuthorityRequest{
		Name: cfg.name + " Root CA",
		Type: apiv1.RootCA,
		Template: &x509.Certificate{
			SerialNumber:          rootSerial,
			Subject:               pkix.Name{CommonName: cfg.name + " Root CA", Organization: []string{cfg.name}},
			NotBefore:             now.Add(-backdate),
			NotAfter:              now.Add(RootLifetime),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLen:            1,
		},
		Lifetime:  RootLifetime,
		Backdate:  backdate,
		CreateKey: p256,
	})
	if err != nil {
		return fmt.Errorf("pki: init: create root: %w", err)
	}

	interSerial, err := newSerial()
	if err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	inter, err := creator.CreateCertificateAuthority(&apiv1.CreateCertificateAuthorityRequest{
		Name: cfg.name + " Intermediate CA",
		Type: apiv1.IntermediateCA,
		Template: &x509.Certificate{
			SerialNumber:          interSerial,
			Subject:               pkix.Name{CommonName: cfg.name + " Intermediate CA", Organization: []string{cfg.name}},
			NotBefore:             now.Add(-backdate),
			NotAfter:              now.Add(IntermediateLifetime),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLen:            0,
			MaxPathLenZero:        true,
		},
		Lifetime:  IntermediateLifetime,
		Backdate:  backdate,
		Parent:    root,
		CreateKey: p256,
	})
	if err != nil {
		return fmt.Errorf("pki: init: create intermediate: %w", err)
	}

	rootKey, err := marshalKey(root.PrivateKey)
	if err != nil {
		return fmt.Errorf("pki: init: root key: %w", err)
	}
	interKey, err := marshalKey(inter.PrivateKey)
	if err != nil {
		return fmt.Errorf("pki: init: intermediate key: %w", err)
	}
	// Stage all four files first so that a failure leaves as little as
	// possible behind, then put them in place without overwriting anything.
	files := []struct {
		name string
		data []byte
		perm fs.FileMode
	}{
		{RootKeyFile, rootKey, keyPerm},
		{IntermediateKeyFile, interKey, keyPerm},
		{RootCertFile, pemCert(root.Certificate), certPerm},
		{IntermediateCertFile, pemCert(inter.Certificate), certPerm},
	}
	temps := make([]string, 0, len(files))
	defer func() {
		for _, t := range temps {
			_ = os.Remove(t)
		}
	}()
	for _, f := range files {
		t, err := writeTemp(dir, f.data, f.perm)
		if err != nil {
			return fmt.Errorf("pki: init: %w", err)
		}
		temps = append(temps, t)
	}
	for i, f := range files {
		if err := os.Link(temps[i], filepath.Join(dir, f.name)); err != nil {
			return fmt.Errorf("pki: init: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	cfg.logger.Info("CA created", "dir", dir,
		"root", root.Certificate.Subject.CommonName, "root_sha256", fingerprint(root.Certificate))
	return nil
}

// checkKeyPerm refuses a key file that group or others may access.
func checkKeyPerm(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file: %w", path, ErrMalformed)
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o, want 0600 or stricter (chmod 600 %s): %w", path, perm, path, ErrKeyPermissions)
	}
	return nil
}

// readCertificate returns the first certificate of a PEM file.
func readCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%s: no PEM CERTIFICATE block: %w", path, ErrMalformed)
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", path, ErrMalformed, err)
		}
		return c, nil
	}
}

// readKey reads a private key file after checking its permissions and that
// it belongs to cert.
func readKey(path string, cert *x509.Certificate) (crypto.Signer, error) {
	if err := checkKeyPerm(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	signer, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not belong to the certificate %q: %w", path, cert.Subject.CommonName, ErrKeyMismatch)
	}
	return signer, nil
}

// parseKey parses a PEM private key, PKCS#8 or SEC 1 EC.
func parseKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("no PEM private key block: %w", ErrMalformed)
		}
		if _, encrypted := b.Headers["Proc-Type"]; encrypted || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, fmt.Errorf("encrypted private keys are not supported: %w", ErrMalformed)
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key of type %T cannot sign: %w", key, ErrMalformed)
		}
		return s, nil
	}
}

func marshalKey(key crypto.PrivateKey) ([]byte, error) {
	if _, ok := key.(*ecdsa.PrivateKey); !ok {
		// softkms returns the key itself; anything else would be a
		// key manager we did not ask for.
		return nil, fmt.Errorf("unexpected private key type %T", key)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func pemCert(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// writeTemp writes data to a new temporary file in dir with the given
// permissions, synced to disk, and returns its name.
func writeTemp(dir string, data []byte, perm fs.FileMode) (name string, err error) {
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return "", err
	}
	name = f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(name)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return "", err
	}
	if _, err = f.Write(data); err != nil {
		return "", err
	}
	if err = f.Sync(); err != nil {
		return "", err
	}
	if err = f.Close(); err != nil {
		return "", err
	}
	return name, nil
}

// replaceFile atomically replaces (or creates) path with data.
func replaceFile(path string, data []byte, perm fs.FileMode) error {
	t, err := writeTemp(filepath.Dir(path), data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(t, path); err != nil {
		_ = os.Remove(t)
		return err
	}
	return nil
}

func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
