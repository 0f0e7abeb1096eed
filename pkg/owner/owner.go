package owner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// File names in the data directory.
const (
	KeyFile    = "owner.key"
	PublicFile = "owner.pub"
)

// ErrNoKey is returned by Load when the data directory has no owner key.
var ErrNoKey = errors.New("owner: no owner key")

// Identity is the operator as an owner of devices.
type Identity struct {
	Name string
	Key  *hybridsig.PrivateKey
}

// KeyID returns the KeyID of the owner's public key.
func (id *Identity) KeyID() string { return id.Key.Public().KeyID() }

// Owns reports whether a device whose provenance names owner and ownerKey
// belongs to this identity. A manifest that names the owner's key decides
// by the key; otherwise by the name.
func (id *Identity) Owns(owner, ownerKey string) bool {
	if ownerKey != "" {
		return ownerKey == id.KeyID()
	}
	return owner != "" && owner == id.Name
}

// Init creates the owner key in dir if there is none, and loads it.
func Init(dir, name string) (*Identity, error) {
	id, err := Load(dir, name)
	if !errors.Is(err, ErrNoKey) {
		return id, err
	}
	k, err := hybridsig.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("owner: %w", err)
	}
	priv, err := hybridsig.MarshalPrivateKeyPEM(k)
	if err != nil {
		return nil, fmt.Errorf("owner: %w", err)
	}
	if err := writeNew(filepath.Join(dir, KeyFile), priv, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, PublicFile), hybridsig.MarshalPublicKeyPEM(k.Public()), 0o644); err != nil {
		return nil, fmt.Errorf("owner: %w", err)
	}
	return &Identity{Name: name, Key: k}, nil
}

// Load reads the owner key of dir.
func Load(dir, name string) (*Identity, error) {
	k, err := hybridsig.ReadPrivateKeyFile(filepath.Join(dir, KeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoKey, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("owner: %w", err)
	}
	return &Identity{Name: name, Key: k}, nil
}

func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("owner: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("owner: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("owner: %w", err)
	}
	return f.Close()
}
