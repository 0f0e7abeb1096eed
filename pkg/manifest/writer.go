package manifest

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// Writer builds a signed manifest one device at a time, for manifests too
// large to hold in memory: entries go to a temporary file as they are added
// and are checked as [Manifest.Validate] checks them. [Writer.SignTo] writes
// the same envelope [Sign] makes for the same manifest. Close the writer to
// remove its temporary file.
type Writer struct {
	f      *os.File
	bw     *bufio.Writer
	size   int64 // payload bytes written
	n      int
	devAt  int64 // offset of the devices array
	set    entrySet
	err    error // sticky
	signed bool
}

// NewWriter starts a manifest with header h, keeping its payload in a
// temporary file in dir ("": the system's temporary directory). An invalid
// header is a [*ValidationError].
func NewWriter(dir string, h Header) (*Writer, error) {
	if err := validateHeader(h, 1); err != nil {
		return nil, err
	}
	head, err := json.Marshal(struct {
		Manufacturer string    `json:"manufacturer"`
		Revision     uint64    `json:"revision"`
		IssuedAt     time.Time `json:"issued_at"`
	}{h.Manufacturer, h.Revision, h.IssuedAt})
	if err != nil {
		return nil, fmt.Errorf("manifest: write: %w", err)
	}
	f, err := os.CreateTemp(dir, ".embark-manifest-*")
	if err != nil {
		return nil, fmt.Errorf("manifest: write: %w", err)
	}
	w := &Writer{f: f, bw: bufio.NewWriterSize(f, 256<<10)}
	w.write(head[:len(head)-1])
	w.write([]byte(`,"devices":`))
	w.devAt = w.size
	w.write([]byte{'['})
	if w.err != nil {
		_ = closeTemp(f)
		return nil, w.err
	}
	return w, nil
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.bw.Write(b)
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("manifest: write: %w", err)
	}
}

// Len returns the number of devices added.
func (w *Writer) Len() int { return w.n }

// Add appends a device. An entry that breaks a rule of [Manifest.Validate]
// (including a serial number or key listed before) is refused with a
// [*ValidationError] and not added.
func (w *Writer) Add(e Entry) error {
	if w.err != nil {
		return w.err
	}
	if w.signed {
		return errors.New("manifest: write: add after SignTo")
	}
	invalid, dupKeyOf := w.set.add(w.n, &e)
	if invalid != nil {
		if dupKeyOf >= 0 {
			other, err := w.entryAt(dupKeyOf)
			if err != nil {
				return err
			}
			invalid.Reason = fmt.Sprintf("key %s also belongs to serial %q", invalid.Reason, other.Serial)
			// The key stays registered to the earlier entry.
		}
		w.forget(invalid, &e)
		return invalid
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("manifest: write: %w", err)
	}
	if w.n > 0 {
		w.write([]byte{','})
	}
	w.write(b)
	if w.err != nil {
		return w.err
	}
	w.n++
	return nil
}

// forget removes what set.add recorded for a refused entry, so that a
// caller may go on adding.
func (w *Writer) forget(invalid *ValidationError, e *Entry) {
	if invalid.Field == "idevid_key_sha256" && invalid.Err == ErrDuplicate {
		// The serial was new and got recorded under this entry's index.
		delete(w.set.serials, sha256Of(e.Serial))
	}
}

// entryAt returns device i of those written.
func (w *Writer) entryAt(i int) (Entry, error) {
	if err := w.bw.Flush(); err != nil {
		return Entry{}, fmt.Errorf("manifest: write: %w", err)
	}
	s := &Stream{p: &Payload{src: w.f, size: w.size}, n: w.n, devAt: w.devAt}
	return s.entryAt(i)
}

// SignTo closes the device list, signs the manifest with key and writes
// the envelope to out, as [Sign] would make it. It returns the number of
// bytes written. A manifest without devices is a [*ValidationError]; an
// envelope over [DefaultMaxSize] is refused with [ErrTooLarge] before
// anything is written. SignTo may be called once.
func (w *Writer) SignTo(out io.Writer, key *hybridsig.PrivateKey) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.signed {
		return 0, errors.New("manifest: write: SignTo called twice")
	}
	if w.n == 0 {
		return 0, &ValidationError{Device: -1, Field: "devices", Reason: "no devices", Err: ErrInvalid}
	}
	w.signed = true
	w.write([]byte("]}"))
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.err = fmt.Errorf("manifest: write: %w", err)
		}
	}
	if w.err != nil {
		return 0, w.err
	}
	p := &Payload{src: w.f, size: w.size}
	digest, err := p.digest(PayloadType)
	if err != nil {
		return 0, fmt.Errorf("manifest: sign: %w", err)
	}
	sig, err := key.SignDigest(nil, digest, nil)
	if err != nil {
		return 0, fmt.Errorf("manifest: sign: %w", err)
	}
	head, err := json.Marshal(PayloadType)
	if err != nil {
		return 0, fmt.Errorf("manifest: sign: %w", err)
	}
	sigs, err := json.Marshal([]Signature{{KeyID: key.Public().KeyID(), Sig: sig}})
	if err != nil {
		return 0, fmt.Errorf("manifest: sign: %w", err)
	}
	prefix := append(append([]byte(`{"payloadType":`), head...), `,"payload":"`...)
	suffix := append(append([]byte(`","signatures":`), sigs...), '}')
	total := int64(len(prefix)) + int64(base64.StdEncoding.EncodedLen(int(w.size))) + int64(len(suffix))
	if total > DefaultMaxSize {
		return 0, fmt.Errorf("manifest: sign: %w: envelope of %d bytes, at most %d", ErrTooLarge, total, DefaultMaxSize)
	}
	cw := &countWriter{w: out}
	cw.Write(prefix)
	enc := base64.NewEncoder(base64.StdEncoding, cw)
	if _, err := io.Copy(enc, p.NewReader()); err != nil && cw.err == nil {
		return cw.n, fmt.Errorf("manifest: sign: read payload: %w", err)
	}
	enc.Close()
	cw.Write(suffix)
	if cw.err != nil {
		return cw.n, fmt.Errorf("manifest: sign: write: %w", cw.err)
	}
	return cw.n, nil
}

// Close removes the temporary file.
func (w *Writer) Close() error {
	if w.f == nil {
		return nil
	}
	f := w.f
	w.f = nil
	if w.err == nil {
		w.err = errors.New("manifest: write: closed")
	}
	return closeTemp(f)
}

// countWriter counts what it writes and keeps the first error.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}
