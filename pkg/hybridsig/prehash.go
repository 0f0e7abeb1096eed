package hybridsig

import (
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
)

// DigestSize is the size of a message digest for [PrivateKey.SignDigest]
// and [PublicKey.VerifyDigest]: SHA-512.
const DigestSize = sha512.Size

// NewMessageHash returns the hash whose sum over a message is the digest
// that [PrivateKey.SignDigest] and [PublicKey.VerifyDigest] take: SHA-512,
// the pre-hash of the message representative. It lets a caller sign or
// verify a message too large to hold in memory, hashing it as it streams by.
func NewMessageHash() hash.Hash { return sha512.New() }

// SignDigest is [PrivateKey.SignContext] for a message given by its
// SHA-512 digest (see [NewMessageHash]): the signature is the one
// SignContext makes over the message itself.
func (k *PrivateKey) SignDigest(_ io.Reader, digest, ctx []byte) ([]byte, error) {
	if k == nil || k.ml == nil || k.ec == nil {
		return nil, errors.New("hybridsig: sign: zero PrivateKey; use GenerateKey or ParsePrivateKey")
	}
	mp, err := representativeOfDigest(digest, ctx)
	if err != nil {
		return nil, fmt.Errorf("hybridsig: sign: %w", err)
	}
	return k.signRepresentative(mp)
}

// VerifyDigest is [PublicKey.VerifyContext] for a message given by its
// SHA-512 digest (see [NewMessageHash]): it accepts exactly the signatures
// that VerifyContext accepts over the message, with the same errors, and
// [ErrMalformed] for a digest that is not [DigestSize] bytes.
func (p *PublicKey) VerifyDigest(digest, ctx, sig []byte) error {
	if p == nil || p.ml == nil || p.ec == nil {
		return fmt.Errorf("hybridsig: verify: %w: zero PublicKey", ErrMalformed)
	}
	mp, err := representativeOfDigest(digest, ctx)
	if err != nil {
		return fmt.Errorf("hybridsig: verify: %w", err)
	}
	return p.verifyRepresentative(mp, sig)
}

// representativeOfDigest returns M' = Prefix || Label || len(ctx) || ctx ||
// digest, where digest is SHA-512(M).
func representativeOfDigest(digest, ctx []byte) ([]byte, error) {
	if len(ctx) > MaxContextSize {
		return nil, ErrContextTooLong
	}
	if len(digest) != DigestSize {
		return nil, fmt.Errorf("%w: digest of %d bytes, want %d", ErrMalformed, len(digest), DigestSize)
	}
	mp := make([]byte, 0, len(Prefix)+len(Label)+1+len(ctx)+DigestSize)
	mp = append(mp, Prefix...)
	mp = append(mp, Label...)
	mp = append(mp, byte(len(ctx)))
	mp = append(mp, ctx...)
	return append(mp, digest...), nil
}
