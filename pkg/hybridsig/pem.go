package hybridsig

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"os"
)

// PEM block types.
const (
	PublicKeyPEMType  = "EMBARK HYBRID PUBLIC KEY"
	PrivateKeyPEMType = "EMBARK HYBRID PRIVATE KEY"
)

// algorithmHeader names the algorithm inside PEM blocks.
const algorithmHeader = "Algorithm"

// MarshalPublicKeyPEM returns p as a PEM block of type [PublicKeyPEMType].
func MarshalPublicKeyPEM(p *PublicKey) []byte {
	return pem.EncodeToMemory(&pem.Block{
		Type:    PublicKeyPEMType,
		Headers: map[string]string{algorithmHeader: Algorithm},
		Bytes:   p.Bytes(),
	})
}

// ParsePublicKeyPEM decodes a public key written by [MarshalPublicKeyPEM].
func ParsePublicKeyPEM(b []byte) (*PublicKey, error) {
	der, err := decodePEM(b, PublicKeyPEMType)
	if err != nil {
		return nil, err
	}
	return ParsePublicKey(der)
}

// MarshalPrivateKeyPEM returns k as a PEM block of type [PrivateKeyPEMType].
func MarshalPrivateKeyPEM(k *PrivateKey) ([]byte, error) {
	der, err := k.Bytes()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{
		Type:    PrivateKeyPEMType,
		Headers: map[string]string{algorithmHeader: Algorithm},
		Bytes:   der,
	}), nil
}

// ParsePrivateKeyPEM decodes a private key written by [MarshalPrivateKeyPEM].
func ParsePrivateKeyPEM(b []byte) (*PrivateKey, error) {
	der, err := decodePEM(b, PrivateKeyPEMType)
	if err != nil {
		return nil, err
	}
	return ParsePrivateKey(der)
}

// decodePEM returns the bytes of the single PEM block of type typ in b.
func decodePEM(b []byte, typ string) ([]byte, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("hybridsig: %w: no PEM block", ErrMalformed)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("hybridsig: %w: PEM block %q, want %q", ErrMalformed, block.Type, typ)
	}
	if alg, ok := block.Headers[algorithmHeader]; ok && alg != Algorithm {
		return nil, fmt.Errorf("hybridsig: %w: PEM algorithm %q, want %q", ErrMalformed, alg, Algorithm)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("hybridsig: %w: data after the PEM block", ErrMalformed)
	}
	return block.Bytes, nil
}

// ReadPrivateKeyFile reads a private key file written with
// [MarshalPrivateKeyPEM]. It refuses a file that group or others may read;
// a missing file gives an error matching fs.ErrNotExist.
func ReadPrivateKeyFile(path string) (*PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
