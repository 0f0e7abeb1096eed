package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// CheckpointContext is the hybridsig application context under which
// checkpoints are signed, so that no other Embark signature (manifest,
// transfer record, voucher) can pass for a checkpoint, nor a checkpoint for
// one of them. It names the checkpoint format version.
const CheckpointContext = "embark audit checkpoint v1"

// Checkpoint states that the log's entry Seq had hash Hash when the key
// KeyID signed it at Time. Since every entry's hash covers its
// predecessor's, it vouches for entries 1 to Seq.
type Checkpoint struct {
	Seq  uint64
	Hash []byte
	// Time is when the checkpoint was made, in whole seconds.
	Time time.Time
	// KeyID is the hybridsig KeyID (hex SHA-256 of the public key) of the
	// signing key.
	KeyID string
}

// checkpointBody is the signed encoding of a Checkpoint; see the package
// documentation.
type checkpointBody struct {
	Seq   uint64 `cbor:"1,keyasint"`
	Hash  []byte `cbor:"2,keyasint"`
	Time  int64  `cbor:"3,keyasint"`
	KeyID string `cbor:"4,keyasint"`
}

// SignedCheckpoint is a checkpoint as stored and exported: the exact bytes
// signed and the hybrid signature over them.
type SignedCheckpoint struct {
	Body      []byte `cbor:"1,keyasint"`
	Signature []byte `cbor:"2,keyasint"`
}

// strictDec refuses what the canonical encoders never write: duplicate map
// keys, unknown fields, indefinite lengths, tags.
var strictDec = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// Marshal returns the canonical encoding of c, the bytes that are signed.
func (c Checkpoint) Marshal() ([]byte, error) {
	if len(c.Hash) != sha256.Size {
		return nil, fmt.Errorf("%w: checkpoint hash of %d bytes", ErrMalformed, len(c.Hash))
	}
	if !validKeyID(c.KeyID) {
		return nil, fmt.Errorf("%w: checkpoint key id %q", ErrMalformed, c.KeyID)
	}
	b, err := encMode.Marshal(checkpointBody{Seq: c.Seq, Hash: c.Hash, Time: c.Time.Unix(), KeyID: c.KeyID})
	if err != nil {
		return nil, fmt.Errorf("audit: encode checkpoint: %w", err)
	}
	return b, nil
}

// ParseCheckpoint decodes a checkpoint body. It refuses any encoding but
// the canonical one [Checkpoint.Marshal] writes.
func ParseCheckpoint(b []byte) (Checkpoint, error) {
	var w checkpointBody
	if err := strictDec.Unmarshal(b, &w); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint: %v", ErrMalformed, err)
	}
	c := Checkpoint{Seq: w.Seq, Hash: w.Hash, Time: time.Unix(w.Time, 0).UTC(), KeyID: w.KeyID}
	again, err := c.Marshal()
	if err != nil {
		return Checkpoint{}, err
	}
	if !bytes.Equal(again, b) {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint is not canonically encoded", ErrMalformed)
	}
	return c, nil
}

func validKeyID(id string) bool {
	if len(id) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && id == strings.ToLower(id)
}

// SignCheckpoint makes the checkpoint of entry e at time at, signed by k.
func SignCheckpoint(k *hybridsig.PrivateKey, e Entry, at time.Time) (SignedCheckpoint, error) {
	c := Checkpoint{Seq: e.Seq, Hash: e.Hash, Time: at.Truncate(time.Second), KeyID: k.Public().KeyID()}
	body, err := c.Marshal()
	if err != nil {
		return SignedCheckpoint{}, err
	}
	sig, err := k.SignContext(nil, body, []byte(CheckpointContext))
	if err != nil {
		return SignedCheckpoint{}, fmt.Errorf("audit: sign checkpoint %d: %w", e.Seq, err)
	}
	return SignedCheckpoint{Body: body, Signature: sig}, nil
}

// Verify decodes s and checks its signature with the key among keys whose
// KeyID it names. Errors: [ErrMalformed], [ErrUnknownKey], or
// [ErrSignature] together with hybridsig.ErrECDSA and/or hybridsig.ErrMLDSA
// (or hybridsig.ErrMalformed) for the half that failed.
func (s SignedCheckpoint) Verify(keys []*hybridsig.PublicKey) (Checkpoint, error) {
	c, err := ParseCheckpoint(s.Body)
	if err != nil {
		return Checkpoint{}, err
	}
	var key *hybridsig.PublicKey
	for _, k := range keys {
		if k != nil && k.KeyID() == c.KeyID {
			key = k
			break
		}
	}
	if key == nil {
		return c, fmt.Errorf("%w %s", ErrUnknownKey, c.KeyID)
	}
	if err := key.VerifyContext(s.Body, []byte(CheckpointContext), s.Signature); err != nil {
		return c, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return c, nil
}

// Marshal returns the stored encoding of s: a CBOR map {1: body,
// 2: signature}.
func (s SignedCheckpoint) Marshal() ([]byte, error) {
	b, err := encMode.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("audit: encode checkpoint: %w", err)
	}
	return b, nil
}

// ParseSignedCheckpoint decodes the stored encoding of a signed checkpoint.
// It does not verify it.
func ParseSignedCheckpoint(b []byte) (SignedCheckpoint, error) {
	var s SignedCheckpoint
	if err := strictDec.Unmarshal(b, &s); err != nil {
		return SignedCheckpoint{}, fmt.Errorf("%w: signed checkpoint: %v", ErrMalformed, err)
	}
	return s, nil
}
