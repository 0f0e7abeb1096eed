package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// Files of the audit signing key in the data directory.
const (
	// KeyFile holds the private key (hybridsig PEM, mode 0600).
	KeyFile = "audit.key"
	// PublicKeyFile holds the public key (hybridsig PEM, 0644): give it to
	// whoever verifies exported bundles.
	PublicKeyFile = "audit.pub"
)

// InitKey loads the audit signing key of the data directory dir, creating
// it (KeyFile 0600 and PublicKeyFile) if there is none. An existing key is
// never replaced; a missing PublicKeyFile is written again from it.
func InitKey(dir string) (*hybridsig.PrivateKey, error) {
	k, err := LoadKey(dir)
	switch {
	case err == nil:
		return k, writePublic(dir, k)
	case !errors.Is(err, ErrNoKey):
		return nil, err
	}
	k, err = hybridsig.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	priv, err := hybridsig.MarshalPrivateKeyPEM(k)
	if err != nil {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	if err := writeNew(filepath.Join(dir, KeyFile), priv, 0o600); err != nil {
		return nil, err
	}
	return k, writePublic(dir, k)
}

// writePublic writes PublicKeyFile if it is missing and checks that an
// existing one belongs to k.
func writePublic(dir string, k *hybridsig.PrivateKey) error {
	path := filepath.Join(dir, PublicKeyFile)
	pub, err := LoadPublicKey(path)
	switch {
	case err == nil && pub.Equal(k.Public()):
		return nil
	case err == nil:
		return fmt.Errorf("audit: %s does not belong to %s", path, filepath.Join(dir, KeyFile))
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return writeNew(path, hybridsig.MarshalPublicKeyPEM(k.Public()), 0o644)
}

// LoadKey reads the audit signing key of the data directory dir. It fails
// with [ErrNoKey] if there is none and refuses a key file that group or
// others may read.
func LoadKey(dir string) (*hybridsig.PrivateKey, error) {
	k, err := hybridsig.ReadPrivateKeyFile(filepath.Join(dir, KeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoKey, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return k, nil
}

// LoadPublicKey reads a public key file written by [InitKey].
func LoadPublicKey(path string) (*hybridsig.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: public key: %w", err)
	}
	k, err := hybridsig.ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("audit: %s: %w", path, err)
	}
	return k, nil
}

// writeNew writes data to path, which must not exist, through a synced
// temporary file: a crash leaves either no file or the whole file.
func writeNew(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-audit-")
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}
