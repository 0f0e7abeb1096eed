package manifest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// MaxSignatures is the most signatures an envelope may carry.
const MaxSignatures = 8

// Envelope is a DSSE envelope. Payload and Sig are carried as standard
// base64 in JSON.
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     []byte      `json:"payload"`
	Signatures  []Signature `json:"signatures"`
}

// Signature is one signature of an [Envelope].
type Signature struct {
	// KeyID is the hybridsig KeyID of the signing key.
	KeyID string `json:"keyid"`
	Sig   []byte `json:"sig"`
}

// KeyLookup returns the trusted key with the given hybridsig KeyID.
type KeyLookup func(keyID string) (*hybridsig.PublicKey, bool)

// OpenOption changes how [Open] and [OpenEnvelope] work.
type OpenOption func(*openConfig) error

type openConfig struct {
	maxSize int
	// tempDir is where OpenEnvelopeReader keeps large payloads ("": the
	// system's temporary directory).
	tempDir string
	// maxOverhead bounds what OpenEnvelopeReader holds of an envelope
	// besides its payload.
	maxOverhead int
}

func newOpenConfig(opts []OpenOption) (openConfig, error) {
	c := openConfig{maxSize: DefaultMaxSize, maxOverhead: MaxEnvelopeOverhead}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return openConfig{}, err
		}
	}
	return c, nil
}

// WithTempDir sets the directory where [OpenEnvelopeReader] and
// [VerifyReader] keep a large payload while it is checked and read (default:
// the system's temporary directory).
func WithTempDir(dir string) OpenOption {
	return func(c *openConfig) error {
		c.tempDir = dir
		return nil
	}
}

// WithMaxSize sets the largest envelope accepted, in bytes (default
// [DefaultMaxSize]).
func WithMaxSize(n int) OpenOption {
	return func(c *openConfig) error {
		if n <= 0 {
			return fmt.Errorf("manifest: max size %d, want > 0", n)
		}
		c.maxSize = n
		return nil
	}
}

// PAE returns the DSSE v1 pre-authentication encoding of a payload, the bytes
// that are signed.
func PAE(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	b.Grow(len("DSSEv1") + len(payloadType) + len(payload) + 48)
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return b.Bytes()
}

// paeHeader returns the PAE of a payload of n bytes up to the payload
// itself.
func paeHeader(payloadType string, n int64) []byte {
	b := make([]byte, 0, len("DSSEv1 ")+len(payloadType)+48)
	b = append(b, "DSSEv1 "...)
	b = strconv.AppendInt(b, int64(len(payloadType)), 10)
	b = append(b, ' ')
	b = append(b, payloadType...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, n, 10)
	return append(b, ' ')
}

// Sign validates m and returns it signed with key, as envelope JSON.
func Sign(m *Manifest, key *hybridsig.PrivateKey) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err // names the package already
	}
	payload, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("manifest: sign: %w", err)
	}
	env, err := SignEnvelope(PayloadType, payload, key)
	if err != nil {
		return nil, err
	}
	if len(env) > DefaultMaxSize {
		return nil, fmt.Errorf("manifest: sign: %w: envelope of %d bytes, at most %d", ErrTooLarge, len(env), DefaultMaxSize)
	}
	return env, nil
}

// SignEnvelope returns payload signed with key in a DSSE envelope, as JSON.
func SignEnvelope(payloadType string, payload []byte, key *hybridsig.PrivateKey) ([]byte, error) {
	sig, err := key.Sign(rand.Reader, PAE(payloadType, payload))
	if err != nil {
		return nil, fmt.Errorf("manifest: sign: %w", err)
	}
	env, err := json.Marshal(Envelope{
		PayloadType: payloadType,
		Payload:     payload,
		Signatures:  []Signature{{KeyID: key.Public().KeyID(), Sig: sig}},
	})
	if err != nil {
		return nil, fmt.Errorf("manifest: sign: %w", err)
	}
	return env, nil
}

// Open verifies a manifest envelope with the keys that lookup knows and
// returns the valid manifest it carries. See the package documentation for
// the checks and their errors.
func Open(envelope []byte, keys KeyLookup, opts ...OpenOption) (*Manifest, error) {
	v, err := Verify(envelope, keys, opts...)
	if err != nil {
		return nil, err
	}
	return v.Manifest, nil
}

// Verified is an opened manifest with what an audit record needs about it.
type Verified struct {
	Manifest *Manifest
	// KeyIDs are the trusted keys whose signatures verified.
	KeyIDs []string
	// PayloadSHA256 is the lower-case hexadecimal SHA-256 of the signed
	// payload: it identifies this manifest.
	PayloadSHA256 string
}

// Verify is [Open] that also says who signed and which payload.
func Verify(envelope []byte, keys KeyLookup, opts ...OpenOption) (*Verified, error) {
	payload, keyIDs, err := OpenEnvelope(envelope, PayloadType, keys, opts...)
	if err != nil {
		return nil, err
	}
	m, err := decodePayload(payload)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(payload)
	return &Verified{Manifest: m, KeyIDs: keyIDs, PayloadSHA256: hex.EncodeToString(sum[:])}, nil
}

// decodePayload parses strict manifest JSON and validates the manifest.
func decodePayload(payload []byte) (*Manifest, error) {
	var m Manifest
	if err := strictUnmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("manifest: open: payload: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err // names the package already
	}
	return &m, nil
}

// OpenEnvelope checks a DSSE envelope of the given payload type and returns
// its payload and the IDs of the trusted keys whose signatures verified.
// Errors are those of [Open] before the payload is parsed.
func OpenEnvelope(envelope []byte, payloadType string, keys KeyLookup, opts ...OpenOption) (payload []byte, keyIDs []string, err error) {
	c, err := newOpenConfig(opts)
	if err != nil {
		return nil, nil, err
	}
	if len(envelope) > c.maxSize {
		return nil, nil, fmt.Errorf("manifest: open: %w: envelope of %d bytes, at most %d", ErrTooLarge, len(envelope), c.maxSize)
	}
	var env Envelope
	if err := strictUnmarshal(envelope, &env); err != nil {
		return nil, nil, fmt.Errorf("manifest: open: envelope: %w", err)
	}
	keyIDs, err = checkSignatures(&env, payloadType, keys, func() ([]byte, error) {
		h := hybridsig.NewMessageHash()
		h.Write(paeHeader(env.PayloadType, int64(len(env.Payload))))
		h.Write(env.Payload)
		return h.Sum(nil), nil
	})
	if err != nil {
		return nil, nil, err
	}
	return env.Payload, keyIDs, nil
}

// checkSignatures does what [OpenEnvelope] does once the envelope is
// decoded: it checks the payload type and the signatures and returns the IDs
// of the trusted keys whose signatures verified. digest returns the SHA-512
// of the payload's PAE (hybridsig's pre-hash of the signed message); it is
// called only if a trusted key signed.
func checkSignatures(env *Envelope, payloadType string, keys KeyLookup, digest func() ([]byte, error)) (keyIDs []string, err error) {
	if env.PayloadType != payloadType {
		return nil, fmt.Errorf("manifest: open: %w: %q, want %q", ErrPayloadType, env.PayloadType, payloadType)
	}
	switch {
	case len(env.Signatures) == 0:
		return nil, fmt.Errorf("manifest: open: %w: no signatures", ErrMalformed)
	case len(env.Signatures) > MaxSignatures:
		return nil, fmt.Errorf("manifest: open: %w: %d signatures, at most %d", ErrMalformed, len(env.Signatures), MaxSignatures)
	}
	seen := make(map[string]bool, len(env.Signatures))
	var unknown []string
	var sum []byte
	for _, s := range env.Signatures {
		if seen[s.KeyID] {
			return nil, fmt.Errorf("manifest: open: %w: two signatures by key %q", ErrMalformed, s.KeyID)
		}
		seen[s.KeyID] = true
		var key *hybridsig.PublicKey
		if keys != nil {
			k, ok := keys(s.KeyID)
			if ok && k != nil {
				if k.KeyID() != s.KeyID {
					return nil, fmt.Errorf("manifest: open: %w: lookup of key %s returned key %s", ErrUnknownSigner, s.KeyID, k.KeyID())
				}
				key = k
			}
		}
		if key == nil {
			unknown = append(unknown, fmt.Sprintf("%q", s.KeyID))
			continue
		}
		if sum == nil {
			if sum, err = digest(); err != nil {
				return nil, fmt.Errorf("manifest: open: %w", err)
			}
		}
		if err := key.VerifyDigest(sum, nil, s.Sig); err != nil {
			return nil, fmt.Errorf("manifest: open: %w: key %s: %w", ErrSignature, s.KeyID, err)
		}
		keyIDs = append(keyIDs, s.KeyID)
	}
	if len(keyIDs) == 0 {
		return nil, fmt.Errorf("manifest: open: %w: signed by %s", ErrUnknownSigner, strings.Join(unknown, ", "))
	}
	return keyIDs, nil
}

// strictUnmarshal decodes exactly one JSON value into v, refusing unknown
// fields and trailing data. Errors match ErrMalformed.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data after the JSON value", ErrMalformed)
	}
	return nil
}
