package hybridsig

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// Algorithm is Embark's name for the hybrid signature algorithm.
const Algorithm = "ECDSA-P256-SHA256+ML-DSA-65"

// Prefix and Label start every message representative (see the package
// documentation). Label is the draft's domain separator for
// id-MLDSA65-ECDSA-P256-SHA512 and also the ML-DSA-65 context string.
const (
	Prefix = "CompositeAlgorithmSignatures2025"
	Label  = "COMPSIG-MLDSA65-ECDSA-P256-SHA512"
)

// Sizes of the encodings.
const (
	MLDSAPublicKeySize = mldsa65.PublicKeySize // 1952
	MLDSASignatureSize = mldsa65.SignatureSize // 3309
	MLDSASeedSize      = mldsa65.SeedSize      // 32
	ECDSAPublicKeySize = 65                    // uncompressed P-256 point
	PublicKeySize      = MLDSAPublicKeySize + ECDSAPublicKeySize
	// ECDSA signature bounds: DER SEQUENCE of two INTEGERs of 1 to 33 bytes.
	minECDSASignatureSize = 8
	maxECDSASignatureSize = 72
	// MinSignatureSize and MaxSignatureSize bound the length of a signature.
	MinSignatureSize = MLDSASignatureSize + minECDSASignatureSize
	MaxSignatureSize = MLDSASignatureSize + maxECDSASignatureSize
	// MaxContextSize is the longest application context accepted.
	MaxContextSize = 255
)

// PrivateKey is a hybrid signing key: an ML-DSA-65 key (kept as its seed)
// and an ECDSA P-256 key.
type PrivateKey struct {
	seed [MLDSASeedSize]byte
	ml   *mldsa65.PrivateKey
	ec   *ecdsa.PrivateKey
	pub  *PublicKey
}

// PublicKey is a hybrid verification key.
type PublicKey struct {
	ml  *mldsa65.PublicKey
	ec  *ecdsa.PublicKey
	raw []byte // the encoding, PublicKeySize bytes
	id  string
}

// GenerateKey returns a new hybrid key pair. rand is ignored: keys always
// come from the system's secure random source (see the package documentation).
func GenerateKey(_ io.Reader) (*PrivateKey, error) {
	var seed [MLDSASeedSize]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("hybridsig: generate: %w", err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("hybridsig: generate: %w", err)
	}
	return newPrivateKey(seed, ec)
}

func newPrivateKey(seed [MLDSASeedSize]byte, ec *ecdsa.PrivateKey) (*PrivateKey, error) {
	mlPub, ml := mldsa65.NewKeyFromSeed(&seed)
	pub, err := newPublicKey(mlPub, &ec.PublicKey)
	if err != nil {
		return nil, err
	}
	return &PrivateKey{seed: seed, ml: ml, ec: ec, pub: pub}, nil
}

func newPublicKey(ml *mldsa65.PublicKey, ec *ecdsa.PublicKey) (*PublicKey, error) {
	point, err := ec.Bytes()
	if err != nil {
		return nil, fmt.Errorf("hybridsig: ECDSA public key: %w", err)
	}
	raw := make([]byte, 0, PublicKeySize)
	raw = append(raw, ml.Bytes()...)
	raw = append(raw, point...)
	if len(raw) != PublicKeySize {
		return nil, fmt.Errorf("hybridsig: %w: public key of %d bytes", ErrMalformed, len(raw))
	}
	sum := sha256.Sum256(raw)
	return &PublicKey{ml: ml, ec: ec, raw: raw, id: hex.EncodeToString(sum[:])}, nil
}

// Public returns the public half of k.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// Sign signs msg with an empty context. See [PrivateKey.SignContext].
func (k *PrivateKey) Sign(rand io.Reader, msg []byte) ([]byte, error) {
	return k.SignContext(rand, msg, nil)
}

// SignContext signs msg under the application context ctx (at most
// [MaxContextSize] bytes), which a verifier must pass to
// [PublicKey.VerifyContext]. Different contexts keep signatures made for one
// purpose from being accepted for another. rand is ignored (see the package
// documentation).
func (k *PrivateKey) SignContext(_ io.Reader, msg, ctx []byte) ([]byte, error) {
	if k == nil || k.ml == nil || k.ec == nil {
		return nil, errors.New("hybridsig: sign: zero PrivateKey; use GenerateKey or ParsePrivateKey")
	}
	mp, err := messageRepresentative(msg, ctx)
	if err != nil {
		return nil, fmt.Errorf("hybridsig: sign: %w", err)
	}
	return k.signRepresentative(mp)
}

// signRepresentative signs the message representative M' with both keys:
// the ML-DSA-65 signature, then the ECDSA signature over SHA-256(M').
func (k *PrivateKey) signRepresentative(mp []byte) ([]byte, error) {
	sig := make([]byte, MLDSASignatureSize, MaxSignatureSize)
	if err := mldsa65.SignTo(k.ml, mp, []byte(Label), true, sig); err != nil {
		return nil, fmt.Errorf("hybridsig: sign ML-DSA-65: %w", err)
	}
	h := sha256.Sum256(mp)
	ecSig, err := ecdsa.SignASN1(rand.Reader, k.ec, h[:])
	if err != nil {
		return nil, fmt.Errorf("hybridsig: sign ECDSA: %w", err)
	}
	return append(sig, ecSig...), nil
}

// Verify checks sig over msg with an empty context. See
// [PublicKey.VerifyContext].
func (p *PublicKey) Verify(msg, sig []byte) error {
	return p.VerifyContext(msg, nil, sig)
}

// VerifyContext checks sig over msg under the application context ctx. It
// returns nil only if both components verify. Otherwise the error matches
// [ErrMLDSA], [ErrECDSA] or both, or [ErrMalformed] if sig cannot be decoded,
// or [ErrContextTooLong].
func (p *PublicKey) VerifyContext(msg, ctx, sig []byte) error {
	if p == nil || p.ml == nil || p.ec == nil {
		return fmt.Errorf("hybridsig: verify: %w: zero PublicKey", ErrMalformed)
	}
	mp, err := messageRepresentative(msg, ctx)
	if err != nil {
		return fmt.Errorf("hybridsig: verify: %w", err)
	}
	return p.verifyRepresentative(mp, sig)
}

// verifyRepresentative checks both halves of sig over the message
// representative M'. Both are always checked, so the error names every
// half that failed.
func (p *PublicKey) verifyRepresentative(mp, sig []byte) error {
	mlSig, ecSig, err := splitSignature(sig)
	if err != nil {
		return fmt.Errorf("hybridsig: verify: %w", err)
	}
	var errs []error
	if !mldsa65.Verify(p.ml, mp, []byte(Label), mlSig) {
		errs = append(errs, ErrMLDSA)
	}
	h := sha256.Sum256(mp)
	if !ecdsa.VerifyASN1(p.ec, h[:], ecSig) {
		errs = append(errs, ErrECDSA)
	}
	if len(errs) > 0 {
		return fmt.Errorf("hybridsig: verify: %w", errors.Join(errs...))
	}
	return nil
}

// splitSignature checks the structure of sig and returns its components.
func splitSignature(sig []byte) (mlSig, ecSig []byte, err error) {
	if len(sig) < MinSignatureSize || len(sig) > MaxSignatureSize {
		return nil, nil, fmt.Errorf("%w: signature of %d bytes, want %d to %d",
			ErrMalformed, len(sig), MinSignatureSize, MaxSignatureSize)
	}
	mlSig, ecSig = sig[:MLDSASignatureSize], sig[MLDSASignatureSize:]
	var v struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(ecSig, &v)
	if err != nil || len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w: ECDSA component is not a DER ECDSA-Sig-Value", ErrMalformed)
	}
	return mlSig, ecSig, nil
}

// MessageRepresentative returns M' = Prefix || Label || len(ctx) || ctx ||
// SHA-512(msg), the bytes both components sign.
func MessageRepresentative(msg, ctx []byte) ([]byte, error) {
	mp, err := messageRepresentative(msg, ctx)
	if err != nil {
		return nil, fmt.Errorf("hybridsig: %w", err)
	}
	return mp, nil
}

func messageRepresentative(msg, ctx []byte) ([]byte, error) {
	ph := sha512.Sum512(msg)
	return representativeOfDigest(ph[:], ctx)
}

// Bytes returns the public key encoding: the ML-DSA-65 public key followed by
// the uncompressed ECDSA P-256 point ([PublicKeySize] bytes).
func (p *PublicKey) Bytes() []byte { return bytes.Clone(p.raw) }

// KeyID returns the lower-case hexadecimal SHA-256 of [PublicKey.Bytes].
func (p *PublicKey) KeyID() string { return p.id }

// Equal reports whether p and q are the same key. Two nil keys are equal.
func (p *PublicKey) Equal(q *PublicKey) bool {
	if p == nil || q == nil {
		return p == q
	}
	return bytes.Equal(p.raw, q.raw)
}

// ParsePublicKey decodes a public key encoded by [PublicKey.Bytes].
func ParsePublicKey(b []byte) (*PublicKey, error) {
	if len(b) != PublicKeySize {
		return nil, fmt.Errorf("hybridsig: %w: public key of %d bytes, want %d", ErrMalformed, len(b), PublicKeySize)
	}
	var ml mldsa65.PublicKey
	if err := ml.UnmarshalBinary(b[:MLDSAPublicKeySize]); err != nil {
		return nil, fmt.Errorf("hybridsig: %w: ML-DSA-65 public key: %v", ErrMalformed, err)
	}
	ec, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b[MLDSAPublicKeySize:])
	if err != nil {
		return nil, fmt.Errorf("hybridsig: %w: ECDSA public key: %v", ErrMalformed, err)
	}
	p, err := newPublicKey(&ml, ec)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(p.raw, b) {
		// The ML-DSA-65 encoding is canonical; a difference means the
		// input was not.
		return nil, fmt.Errorf("hybridsig: %w: public key is not canonically encoded", ErrMalformed)
	}
	return p, nil
}

// Bytes returns the private key encoding: the 32-byte ML-DSA-65 seed
// followed by the DER ECPrivateKey of the ECDSA key.
func (k *PrivateKey) Bytes() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k.ec)
	if err != nil {
		return nil, fmt.Errorf("hybridsig: encode private key: %w", err)
	}
	out := make([]byte, 0, MLDSASeedSize+len(der))
	out = append(out, k.seed[:]...)
	return append(out, der...), nil
}

// ParsePrivateKey decodes a private key encoded by [PrivateKey.Bytes].
func ParsePrivateKey(b []byte) (*PrivateKey, error) {
	if len(b) <= MLDSASeedSize {
		return nil, fmt.Errorf("hybridsig: %w: private key of %d bytes", ErrMalformed, len(b))
	}
	var seed [MLDSASeedSize]byte
	copy(seed[:], b)
	der := b[MLDSASeedSize:]
	if rest, err := asn1.Unmarshal(der, new(asn1.RawValue)); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("hybridsig: %w: ECDSA private key is not one DER element", ErrMalformed)
	}
	ec, err := x509.ParseECPrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("hybridsig: %w: ECDSA private key: %v", ErrMalformed, err)
	}
	if ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("hybridsig: %w: ECDSA private key on %s, want P-256", ErrMalformed, ec.Curve.Params().Name)
	}
	return newPrivateKey(seed, ec)
}
