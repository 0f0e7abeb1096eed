package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Header is what a manifest says besides its devices.
type Header struct {
	Manufacturer string
	Revision     uint64
	IssuedAt     time.Time
}

// Stream is a manifest checked by [VerifyReader]: signed by a trusted key
// and valid, its devices read from the payload (in a temporary file) when
// asked for. Close it to remove the temporary file.
type Stream struct {
	p *Payload
	h Header
	n int
	// devAt is the offset of the devices array in the payload, or -1.
	devAt int64
}

// errDuplicateMember marks a payload with two devices members, which
// encoding/json merges one into the other; a stream refuses them.
var errDuplicateMember = errors.New("more than one devices member")

// VerifyReader is [Verify] for an envelope read from r: it verifies the
// signatures and checks the whole manifest as [Manifest.Validate] does,
// refusing what Verify refuses with the same errors, while memory holds
// about one device and a compact set of the serial numbers and keys seen
// (64 bytes per device). Errors reading r match [ErrRead]. The devices are
// read afterwards with [Stream.Entries], in order; the caller must
// [Stream.Close] the stream.
//
// Besides the limits of [OpenEnvelopeReader], a stream refuses with
// [ErrMalformed] a payload whose object has its "devices" member twice,
// which Open merges as encoding/json does.
func VerifyReader(r io.Reader, keys KeyLookup, opts ...OpenOption) (*Stream, error) {
	p, err := OpenEnvelopeReader(r, PayloadType, keys, opts...)
	if err != nil {
		return nil, err
	}
	s, err := checkPayload(p)
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	return s, nil
}

// VerifyReader is [Trust.Verify] for an envelope read from r; see
// [VerifyReader].
func (t *Trust) VerifyReader(r io.Reader, opts ...OpenOption) (*Stream, error) {
	s, err := VerifyReader(r, t.Lookup, opts...)
	if err != nil {
		return nil, err
	}
	if s.h.Manufacturer != t.Name {
		_ = s.Close()
		return nil, fmt.Errorf("manifest: open: %w: manifest of %q signed with a key of %q",
			ErrWrongManufacturer, s.h.Manufacturer, t.Name)
	}
	return s, nil
}

// Header returns the manifest without its devices.
func (s *Stream) Header() Header { return s.h }

// Len returns the number of devices.
func (s *Stream) Len() int { return s.n }

// KeyIDs returns the IDs of the trusted keys whose signatures verified.
func (s *Stream) KeyIDs() []string { return s.p.KeyIDs() }

// PayloadSHA256 is the lower-case hexadecimal SHA-256 of the signed
// payload, as in [Verified].
func (s *Stream) PayloadSHA256() string { return s.p.SHA256() }

// Entries calls fn for each device in manifest order, with its index, until
// fn returns an error, which Entries returns. It may be called more than
// once.
func (s *Stream) Entries(fn func(i int, e Entry) error) error {
	if s.n == 0 {
		return nil
	}
	dec := json.NewDecoder(io.NewSectionReader(s.p.src, s.p.off+s.devAt, s.p.size-s.devAt))
	dec.DisallowUnknownFields()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return fmt.Errorf("manifest: read devices: %w: no devices array (%v)", ErrMalformed, err)
	}
	for i := range s.n {
		var e Entry
		if err := dec.Decode(&e); err != nil {
			return fmt.Errorf("manifest: read devices[%d]: %w", i, err)
		}
		if err := fn(i, e); err != nil {
			return err
		}
	}
	return nil
}

// ReadAll returns the whole manifest, as [Open] would.
func (s *Stream) ReadAll() (*Manifest, error) {
	m := &Manifest{Manufacturer: s.h.Manufacturer, Revision: s.h.Revision, IssuedAt: s.h.IssuedAt,
		Devices: make([]Entry, 0, s.n)}
	if err := s.Entries(func(_ int, e Entry) error {
		m.Devices = append(m.Devices, e)
		return nil
	}); err != nil {
		return nil, err
	}
	return m, nil
}

// Close removes the temporary file of the payload.
func (s *Stream) Close() error { return s.p.Close() }

// entryAt returns device i.
func (s *Stream) entryAt(i int) (Entry, error) {
	var found Entry
	errFound := errors.New("found")
	err := s.Entries(func(j int, e Entry) error {
		if j == i {
			found = e
			return errFound
		}
		return nil
	})
	if err == errFound {
		return found, nil
	}
	if err == nil {
		err = fmt.Errorf("no devices[%d]", i)
	}
	return Entry{}, err
}

func payloadMalformed(format string, args ...any) error {
	return fmt.Errorf("manifest: open: payload: %w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// checkPayload decodes the payload as Open does, keeping one device at a
// time, and validates it.
func checkPayload(p *Payload) (*Stream, error) {
	s := &Stream{p: p, devAt: -1}
	dec := json.NewDecoder(p.NewReader())
	dec.DisallowUnknownFields()
	// The members other than the devices are gathered into a small object
	// that encoding/json decodes as it would decode the whole payload; the
	// devices array is replaced there by [0].
	var top bytes.Buffer
	var set entrySet
	var invalid *ValidationError
	dupKeyOf := -1
	tok, err := dec.Token()
	switch {
	case err != nil:
		return nil, payloadMalformed("%v", err)
	case tok == nil: // null: an empty manifest
	case tok == json.Delim('{'):
		top.WriteByte('{')
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return nil, payloadMalformed("%v", err)
			}
			k, err := json.Marshal(key)
			if err != nil {
				return nil, payloadMalformed("%v", err)
			}
			if top.Len() > 1 {
				top.WriteByte(',')
			}
			top.Write(k)
			top.WriteByte(':')
			c, err := nextValueByte(p, dec.InputOffset())
			if err != nil {
				return nil, err
			}
			if c != '[' {
				var raw json.RawMessage
				if err := dec.Decode(&raw); err != nil {
					return nil, payloadMalformed("%v", err)
				}
				top.Write(raw)
				continue
			}
			if s.devAt >= 0 {
				return nil, fmt.Errorf("manifest: open: payload: %w: %w", ErrMalformed, errDuplicateMember)
			}
			if _, err := dec.Token(); err != nil {
				return nil, payloadMalformed("%v", err)
			}
			s.devAt = dec.InputOffset() - 1
			top.WriteString("[0]")
			for dec.More() {
				var e Entry
				if err := dec.Decode(&e); err != nil {
					return nil, payloadMalformed("devices[%d]: %v", s.n, err)
				}
				if invalid == nil {
					invalid, dupKeyOf = set.add(s.n, &e)
					if invalid != nil {
						set = entrySet{} // no longer needed
					}
				}
				s.n++
			}
			if _, err := dec.Token(); err != nil {
				return nil, payloadMalformed("%v", err)
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, payloadMalformed("%v", err)
		}
		top.WriteByte('}')
	default:
		return nil, payloadMalformed("the payload is not a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, payloadMalformed("data after the JSON value")
	}
	var h struct {
		Manufacturer string    `json:"manufacturer"`
		Revision     uint64    `json:"revision"`
		IssuedAt     time.Time `json:"issued_at"`
		Devices      []int     `json:"devices"`
	}
	if tok != nil {
		if err := strictUnmarshal(top.Bytes(), &h); err != nil {
			return nil, fmt.Errorf("manifest: open: payload: %w", err)
		}
	}
	s.h = Header{Manufacturer: h.Manufacturer, Revision: h.Revision, IssuedAt: h.IssuedAt}
	if len(h.Devices) == 0 {
		// No devices member, or a later one set it to null: the array
		// read is not the manifest's.
		s.n, s.devAt, invalid = 0, -1, nil
	}
	if err := validateHeader(s.h, s.n); err != nil {
		return nil, err
	}
	if invalid != nil {
		if dupKeyOf >= 0 {
			other, err := s.entryAt(dupKeyOf)
			if err != nil {
				return nil, err
			}
			invalid.Reason = fmt.Sprintf("key %s also belongs to serial %q", invalid.Reason, other.Serial)
		}
		return nil, invalid
	}
	return s, nil
}

// nextValueByte returns the first byte of the member value after the key
// that ends at off, skipping the colon and white space.
func nextValueByte(p *Payload, off int64) (byte, error) {
	var buf [64]byte
	for off < p.size {
		n, err := p.src.ReadAt(buf[:min(int64(len(buf)), p.size-off)], p.off+off)
		for _, c := range buf[:n] {
			switch c {
			case ' ', '\t', '\n', '\r', ':':
			default:
				return c, nil
			}
		}
		off += int64(n)
		if err != nil && err != io.EOF {
			return 0, fmt.Errorf("manifest: open: read payload: %w", err)
		}
		if n == 0 {
			break
		}
	}
	return 0, payloadMalformed("unexpected end of JSON input")
}

// validateHeader checks the rules of [Manifest.Validate] before the
// devices, for a manifest of n devices.
func validateHeader(h Header, n int) error {
	top := func(field, reason string) error {
		return &ValidationError{Device: -1, Field: field, Reason: reason, Err: ErrInvalid}
	}
	if !ValidName(h.Manufacturer) {
		return top("manufacturer", fmt.Sprintf("%q: want [a-z0-9][a-z0-9.-]{0,62}", h.Manufacturer))
	}
	if h.Revision == 0 {
		return top("revision", "must be at least 1")
	}
	if h.IssuedAt.IsZero() {
		return top("issued_at", "missing")
	}
	if n == 0 {
		return top("devices", "no devices")
	}
	return nil
}

// entrySet checks entries one at a time as [Manifest.Validate] does,
// remembering the SHA-256 of each serial number and each key.
type entrySet struct {
	serials map[[sha256.Size]byte]int32
	keys    map[[sha256.Size]byte]int32
}

// add checks entry i. For a key listed before, it also returns the index of
// the entry that has it, and the error's Reason is only the key: the caller
// completes it with that entry's serial. Otherwise the index is -1.
func (s *entrySet) add(i int, e *Entry) (*ValidationError, int) {
	if s.serials == nil {
		s.serials = make(map[[sha256.Size]byte]int32)
		s.keys = make(map[[sha256.Size]byte]int32)
	}
	if err := e.validate(); err != nil {
		err.Device, err.Serial = i, e.Serial
		return err, -1
	}
	sk := sha256Of(e.Serial)
	if j, ok := s.serials[sk]; ok {
		return &ValidationError{Device: i, Serial: e.Serial, Field: "serial", Err: ErrDuplicate,
			Reason: fmt.Sprintf("serial %q also listed at devices[%d]", e.Serial, j)}, -1
	}
	s.serials[sk] = int32(i)
	var kk [sha256.Size]byte
	if _, err := hex.Decode(kk[:], []byte(e.IDevIDKeySHA256)); err != nil {
		// validate checked the form already.
		return &ValidationError{Device: i, Serial: e.Serial, Field: "idevid_key_sha256", Err: ErrInvalid,
			Reason: "want 64 lower-case hexadecimal digits"}, -1
	}
	if j, ok := s.keys[kk]; ok {
		return &ValidationError{Device: i, Serial: e.Serial, Field: "idevid_key_sha256", Err: ErrDuplicate,
			Reason: e.IDevIDKeySHA256}, int(j)
	}
	s.keys[kk] = int32(i)
	return nil, -1
}

func sha256Of(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }
