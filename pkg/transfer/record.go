package transfer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
)

// PayloadType is the DSSE payload type of a transfer record.
const PayloadType = "application/vnd.embark.transfer.v1+json"

// RecordKind is the store collection (see store.Tx.PutRecord) that holds
// the records a registry created or accepted, keyed by [RecordKey].
const RecordKind = "transfer"

// Limits.
const (
	// MaxEnvelopeSize is the largest envelope accepted, in bytes. A record
	// is about 8 KiB: the seller's public key and the hybrid signature make
	// most of it.
	MaxEnvelopeSize = 32 << 10
	// MaxChain is the most records one transfer file may hold.
	MaxChain = 64
	// MaxFileSize is the largest transfer file accepted, in bytes.
	MaxFileSize = MaxChain * (MaxEnvelopeSize + 2)
	// MaxNameSize is the longest owner name, in bytes.
	MaxNameSize = 256
)

// From is the party that gives a device away: the owner when the record was
// signed. Key is its hybrid public key (hybridsig encoding, base64 in JSON),
// the key that signs the record.
type From struct {
	Name string `json:"name"`
	Key  []byte `json:"key"`
}

// To is the party that receives the device: the new owner's name and the
// KeyID of its hybrid key (its owner.pub).
type To struct {
	Name  string `json:"name"`
	KeyID string `json:"key_id"`
}

// Record is one ownership transfer of one device, the payload of a signed
// envelope. See the package documentation.
type Record struct {
	Manufacturer    string `json:"manufacturer"`
	Serial          string `json:"serial"`
	IDevIDKeySHA256 string `json:"idevid_key_sha256"`
	// Seq is the number of this transfer in the device's life: 1 for the
	// first resale, one more for each further one.
	Seq     uint32    `json:"seq"`
	From    From      `json:"from"`
	To      To        `json:"to"`
	Created time.Time `json:"created"`
}

// DeviceID returns the registry identifier of the record's device.
func (r *Record) DeviceID() string { return device.ID(r.Manufacturer, r.Serial) }

// FromKey decodes From.Key.
func (r *Record) FromKey() (*hybridsig.PublicKey, error) {
	k, err := hybridsig.ParsePublicKey(r.From.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: from.key: %w", ErrMalformed, err)
	}
	return k, nil
}

// Validate checks the fields of r. Errors match [ErrMalformed].
func (r *Record) Validate() error {
	bad := func(field, reason string) error {
		return fmt.Errorf("%w: %s: %s", ErrMalformed, field, reason)
	}
	if !manifest.ValidName(r.Manufacturer) {
		return bad("manufacturer", fmt.Sprintf("%q: want [a-z0-9][a-z0-9.-]{0,62}", r.Manufacturer))
	}
	if reason := manifest.CheckSerial(r.Serial); reason != "" {
		return bad("serial", reason)
	}
	if !manifest.IsSHA256Hex(r.IDevIDKeySHA256) {
		return bad("idevid_key_sha256", "want 64 lower-case hexadecimal digits")
	}
	if r.Seq == 0 {
		return bad("seq", "must be at least 1")
	}
	if reason := checkName(r.From.Name); reason != "" {
		return bad("from.name", reason)
	}
	if _, err := r.FromKey(); err != nil {
		return err
	}
	if reason := checkName(r.To.Name); reason != "" {
		return bad("to.name", reason)
	}
	if !manifest.IsSHA256Hex(r.To.KeyID) {
		return bad("to.key_id", "want 64 lower-case hexadecimal digits")
	}
	if r.Created.IsZero() {
		return bad("created", "missing")
	}
	return nil
}

// Sign validates r and returns it signed with key, the key r.From.Key
// names, as DSSE envelope JSON.
func Sign(r *Record, key *hybridsig.PrivateKey) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if !bytes.Equal(key.Public().Bytes(), r.From.Key) {
		return nil, fmt.Errorf("%w: signing key %s is not from.key", ErrInvalid, key.Public().KeyID())
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("transfer: sign: %w", err)
	}
	env, err := manifest.SignEnvelope(PayloadType, payload, key)
	if err != nil {
		return nil, fmt.Errorf("transfer: %w", err)
	}
	return env, nil
}

// Opened is a verified record.
type Opened struct {
	Record
	// Envelope is the envelope as received.
	Envelope []byte
	// FromKeyID is the KeyID of From.Key, the key whose signature verified.
	FromKeyID string
	// PayloadSHA256 is the lower-case hexadecimal SHA-256 of the signed
	// payload: it identifies the record whatever the envelope's encoding.
	PayloadSHA256 string
}

// Open checks an envelope and returns the record it carries: strict JSON,
// the transfer payload type, a valid record, and a signature by the key the
// record names as from.key that verifies in both halves. Open does not
// decide whether that key may give the device away: [Accept] does, against
// the registry.
func Open(envelope []byte) (*Opened, error) {
	if len(envelope) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: envelope of %d bytes, at most %d", ErrMalformed, len(envelope), MaxEnvelopeSize)
	}
	var env manifest.Envelope
	if err := strictUnmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("%w: payload type %q, want %q", ErrMalformed, env.PayloadType, PayloadType)
	}
	var r Record
	if err := strictUnmarshal(env.Payload, &r); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	from, err := r.FromKey()
	if err != nil {
		return nil, err
	}
	payload, _, err := manifest.OpenEnvelope(envelope, PayloadType, func(id string) (*hybridsig.PublicKey, bool) {
		return from, id == from.KeyID()
	}, manifest.WithMaxSize(MaxEnvelopeSize))
	switch {
	case errors.Is(err, manifest.ErrSignature):
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	case errors.Is(err, manifest.ErrUnknownSigner):
		return nil, fmt.Errorf("%w: not signed by from.key %s: %w", ErrSignature, from.KeyID(), err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	sum := sha256.Sum256(payload)
	return &Opened{Record: r, Envelope: bytes.Clone(envelope), FromKeyID: from.KeyID(), PayloadSHA256: hex.EncodeToString(sum[:])}, nil
}

// payloadSHA256 returns the digest of the payload of an envelope this
// registry stored after verifying it.
func payloadSHA256(envelope []byte) (string, error) {
	var env manifest.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		return "", fmt.Errorf("stored record: %w", err)
	}
	sum := sha256.Sum256(env.Payload)
	return hex.EncodeToString(sum[:]), nil
}

// ParseFile splits a transfer file into its envelopes, oldest first. A file
// is one envelope (a JSON object) or a chain: a JSON array of 1 to
// [MaxChain] envelopes. Envelopes are not verified here; see [Open].
func ParseFile(b []byte) ([][]byte, error) {
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%w: file of %d bytes, at most %d", ErrMalformed, len(b), MaxFileSize)
	}
	t := bytes.TrimSpace(b)
	switch {
	case len(t) > 0 && t[0] == '{':
		return [][]byte{bytes.Clone(t)}, nil
	case len(t) > 0 && t[0] == '[':
		var raw []json.RawMessage
		if err := strictUnmarshal(t, &raw); err != nil {
			return nil, fmt.Errorf("%w: file: %v", ErrMalformed, err)
		}
		if len(raw) == 0 || len(raw) > MaxChain {
			return nil, fmt.Errorf("%w: chain of %d records, want 1 to %d", ErrMalformed, len(raw), MaxChain)
		}
		out := make([][]byte, len(raw))
		for i, r := range raw {
			out[i] = []byte(r)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: file: want a JSON envelope or an array of envelopes", ErrMalformed)
}

// EncodeFile returns the transfer file of a chain of envelopes (oldest
// first): the envelope itself for a chain of one, else a JSON array.
func EncodeFile(chain [][]byte) ([]byte, error) {
	switch {
	case len(chain) == 0 || len(chain) > MaxChain:
		return nil, fmt.Errorf("%w: chain of %d records, want 1 to %d", ErrInvalid, len(chain), MaxChain)
	case len(chain) == 1:
		return bytes.Clone(chain[0]), nil
	}
	raw := make([]json.RawMessage, len(chain))
	for i, e := range chain {
		raw[i] = e
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return b, nil
}

// strictUnmarshal decodes exactly one JSON value into v, refusing unknown
// fields and trailing data.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

// checkName returns why s is not a valid owner name, or "".
func checkName(s string) string {
	switch {
	case s == "":
		return "missing"
	case len(s) > MaxNameSize:
		return fmt.Sprintf("%d bytes, at most %d", len(s), MaxNameSize)
	case !utf8.ValidString(s):
		return "not UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("contains control character %U", r)
		}
	}
	return ""
}
