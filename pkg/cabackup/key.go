package cabackup

import (
	"bytes"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
)

// PEM block types of recipient keys.
const (
	PublicKeyPEMType  = "EMBARK X-WING PUBLIC KEY"
	PrivateKeyPEMType = "EMBARK X-WING PRIVATE KEY"
	kemHeader         = "KEM"
	kemName           = "X-Wing (MLKEM768-X25519)"
)

// kem is the one KEM of format version 1: X-Wing.
var kem = hpke.MLKEM768X25519()

// PublicKey is a recipient's X-Wing public key (1216 bytes).
type PublicKey struct {
	k  hpke.PublicKey
	id []byte
}

// PrivateKey is a recipient's X-Wing private key (a 32-byte seed).
type PrivateKey struct {
	k   hpke.PrivateKey
	pub *PublicKey
}

func newPublicKey(k hpke.PublicKey) *PublicKey {
	sum := sha256.Sum256(k.Bytes())
	return &PublicKey{k: k, id: sum[:]}
}

// GenerateKey returns a new recipient key pair.
func GenerateKey() (*PrivateKey, error) {
	k, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("cabackup: generate: %w", err)
	}
	return &PrivateKey{k: k, pub: newPublicKey(k.PublicKey())}, nil
}

// Public returns the public half of k.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// Bytes returns the X-Wing public key encoding.
func (p *PublicKey) Bytes() []byte { return p.k.Bytes() }

// KeyID returns the lower-case hex SHA-256 of the public key encoding.
func (p *PublicKey) KeyID() string { return hex.EncodeToString(p.id) }

// MarshalPublicKeyPEM encodes p as a PEM block of type [PublicKeyPEMType].
func MarshalPublicKeyPEM(p *PublicKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PublicKeyPEMType, Headers: map[string]string{kemHeader: kemName}, Bytes: p.Bytes()})
}

// MarshalPrivateKeyPEM encodes k as a PEM block of type [PrivateKeyPEMType]
// holding its 32-byte seed.
func MarshalPrivateKeyPEM(k *PrivateKey) ([]byte, error) {
	b, err := k.k.Bytes()
	if err != nil {
		return nil, fmt.Errorf("cabackup: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: PrivateKeyPEMType, Headers: map[string]string{kemHeader: kemName}, Bytes: b}), nil
}

// ParsePublicKeyPEM decodes a public key written by [MarshalPublicKeyPEM].
func ParsePublicKeyPEM(b []byte) (*PublicKey, error) {
	raw, err := decodePEM(b, PublicKeyPEMType)
	if err != nil {
		return nil, err
	}
	k, err := kem.NewPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: X-Wing public key: %v", ErrMalformed, err)
	}
	return newPublicKey(k), nil
}

// ParsePrivateKeyPEM decodes a private key written by [MarshalPrivateKeyPEM].
func ParsePrivateKeyPEM(b []byte) (*PrivateKey, error) {
	raw, err := decodePEM(b, PrivateKeyPEMType)
	if err != nil {
		return nil, err
	}
	k, err := kem.NewPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: X-Wing private key: %v", ErrMalformed, err)
	}
	return &PrivateKey{k: k, pub: newPublicKey(k.PublicKey())}, nil
}

func decodePEM(b []byte, typ string) ([]byte, error) {
	block, rest := pem.Decode(b)
	switch {
	case block == nil:
		return nil, fmt.Errorf("%w: no PEM block", ErrMalformed)
	case block.Type != typ:
		return nil, fmt.Errorf("%w: PEM block %q, want %q", ErrMalformed, block.Type, typ)
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, fmt.Errorf("%w: data after the PEM block", ErrMalformed)
	}
	if k, ok := block.Headers[kemHeader]; ok && k != kemName {
		return nil, fmt.Errorf("%w: KEM %q, want %q", ErrUnsupported, k, kemName)
	}
	return block.Bytes, nil
}

// WriteKeyPair creates a recipient key pair in base+".key" (mode 0600) and
// base+".pub" (0644). It refuses to overwrite either file.
func WriteKeyPair(base string) (*PrivateKey, error) {
	keyPath, pubPath := base+".key", base+".pub"
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%w: %s exists", ErrExists, p)
		}
	}
	k, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	priv, err := MarshalPrivateKeyPEM(k)
	if err != nil {
		return nil, err
	}
	if err := writeNew(keyPath, priv, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(pubPath, MarshalPublicKeyPEM(k.Public()), 0o644); err != nil {
		_ = os.Remove(keyPath)
		return nil, err
	}
	return k, nil
}

// ReadPublicKey reads a public key file.
func ReadPublicKey(path string) (*PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cabackup: %w", err)
	}
	k, err := ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ReadPrivateKey reads a private key file; it refuses one that group or
// others may read.
func ReadPrivateKey(path string) (*PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cabackup: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("cabackup: %s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cabackup: %w", err)
	}
	k, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
