package manifest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// MaxEnvelopeOverhead is how much of an envelope besides its payload
// [OpenEnvelopeReader] holds in memory: the payload type, the signatures and
// the JSON around them (a few kilobytes in practice). An envelope with more
// is refused with [ErrTooLarge].
const MaxEnvelopeOverhead = 1 << 20

// spillSize is the longest top-level string of an envelope, in raw JSON
// bytes, that OpenEnvelopeReader keeps in memory; a longer one (the payload)
// is decoded into a temporary file as it is read. Payload types are far
// shorter.
const spillSize = 4 << 10

// b64Chunk is how many base64 characters of a spilled string are decoded
// at once; a multiple of 4.
const b64Chunk = 64 << 10

// errOverLimit is returned by a limitedReader past its limit.
var errOverLimit = errors.New("over the size limit")

// Payload is the payload of an envelope checked by [OpenEnvelopeReader]. A
// large payload waits in a temporary file until [Payload.Close].
type Payload struct {
	keyIDs []string
	src    io.ReaderAt
	off    int64
	size   int64
	sum    [sha256.Size]byte
	file   *os.File // nil for a payload held in memory
}

// KeyIDs returns the IDs of the trusted keys whose signatures verified.
func (p *Payload) KeyIDs() []string { return slices.Clone(p.keyIDs) }

// Size returns the length of the payload in bytes.
func (p *Payload) Size() int64 { return p.size }

// SHA256 returns the lower-case hexadecimal SHA-256 of the payload.
func (p *Payload) SHA256() string { return hex.EncodeToString(p.sum[:]) }

// NewReader returns a reader of the payload from its start. Readers are
// independent of one another.
func (p *Payload) NewReader() *io.SectionReader { return io.NewSectionReader(p.src, p.off, p.size) }

// Close removes the temporary file, if any. The payload cannot be read
// afterwards.
func (p *Payload) Close() error {
	if p.file == nil {
		return nil
	}
	f := p.file
	p.file, p.src = nil, bytes.NewReader(nil)
	p.size = 0
	return closeTemp(f)
}

// digest returns the SHA-512 of the payload's PAE, reading the payload once.
func (p *Payload) digest(payloadType string) ([]byte, error) {
	h := hybridsig.NewMessageHash()
	h.Write(paeHeader(payloadType, p.size))
	if _, err := io.Copy(h, p.NewReader()); err != nil {
		return nil, fmt.Errorf("read payload: %w", err)
	}
	return h.Sum(nil), nil
}

func closeTemp(f *os.File) error {
	errClose := f.Close()
	errRemove := os.Remove(f.Name())
	if err := errors.Join(errClose, errRemove); err != nil {
		return fmt.Errorf("manifest: remove temporary file: %w", err)
	}
	return nil
}

// OpenEnvelopeReader is [OpenEnvelope] for an envelope read from r: it
// accepts and refuses the envelopes OpenEnvelope does, with the same
// errors, without holding the envelope in memory. Errors reading r match
// [ErrRead]. The payload, decoded as it is read, waits in a temporary file
// (see [WithTempDir]) when it is larger than a few kilobytes; the caller must
// [Payload.Close] it.
//
// One limit differs from OpenEnvelope's: an envelope with more than
// [MaxEnvelopeOverhead] bytes besides its payload is refused with
// [ErrTooLarge]. An envelope over the size limit is refused with
// ErrTooLarge as soon as the limit is passed; a malformed one only once it
// is read to its end (or past the limit), so that the error is
// OpenEnvelope's.
func OpenEnvelopeReader(r io.Reader, payloadType string, keys KeyLookup, opts ...OpenOption) (*Payload, error) {
	c, err := newOpenConfig(opts)
	if err != nil {
		return nil, err
	}
	sc := &envScanner{maxOverhead: c.maxOverhead, tempDir: c.tempDir}
	if _, err := rand.Read(sc.nonce[:]); err != nil {
		return nil, fmt.Errorf("manifest: open: %w", err)
	}
	lr := &limitedReader{r: r, max: int64(c.maxSize)}
	sc.br = bufio.NewReaderSize(lr, 64<<10)
	p, err := sc.open(payloadType, keys)
	if err != nil {
		if sc.file != nil {
			_ = closeTemp(sc.file)
		}
		switch {
		case errors.Is(err, errOverLimit):
			return nil, fmt.Errorf("manifest: open: %w: envelope over %d bytes", ErrTooLarge, c.maxSize)
		case errors.Is(err, ErrRead):
			return nil, fmt.Errorf("manifest: open: %w", err)
		}
		return nil, err
	}
	if p.file == nil && sc.file != nil {
		_ = closeTemp(sc.file) // spills of other fields
	}
	return p, nil
}

// limitedReader reads at most max bytes of r and fails with errOverLimit
// when r has more.
type limitedReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n > l.max {
		return 0, errOverLimit
	}
	if rest := l.max + 1 - l.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", ErrRead, err)
	}
	if l.n > l.max {
		return n, errOverLimit
	}
	return n, err
}

// envScanner reads an envelope and keeps its JSON in memory except for the
// long strings directly in the top-level object: long values (the payload)
// are base64-decoded into a temporary file and replaced by a marker, long
// keys (never a field name) by an unknown key. encoding/json then decodes
// what is kept exactly as OpenEnvelope decodes the whole envelope.
type envScanner struct {
	br          *bufio.Reader
	maxOverhead int
	tempDir     string
	// kept is the envelope with long strings replaced.
	kept []byte
	// nonce makes markers unpredictable, so that no envelope can carry a
	// marker of its own.
	nonce  [16]byte
	spills []spill
	file   *os.File
	fw     *bufio.Writer
	fsize  int64
}

// spill is one long value decoded into the temporary file.
type spill struct {
	off, n int64
	sum    [sha256.Size]byte
	// bad: the value is not standard base64; its marker is not base64
	// either, so that decoding it into a []byte fails as the value would.
	bad bool
}

// marker returns the decoded bytes of the marker of spill i.
func (sc *envScanner) marker(i int) []byte {
	return binary.BigEndian.AppendUint32(append([]byte("\x00spill\x00"), sc.nonce[:]...), uint32(i))
}

func (sc *envScanner) open(payloadType string, keys KeyLookup) (*Payload, error) {
	if err := sc.scan(); err != nil {
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) {
			// OpenEnvelope refuses an envelope over the size limit
			// before looking at it: read on to know.
			if _, derr := io.Copy(io.Discard, sc.br); derr != nil {
				return nil, derr
			}
		}
		return nil, err
	}
	if sc.fw != nil {
		if err := sc.fw.Flush(); err != nil {
			return nil, fmt.Errorf("manifest: open: write temporary file: %w", err)
		}
	}
	var env Envelope
	if err := strictUnmarshal(sc.kept, &env); err != nil {
		return nil, fmt.Errorf("manifest: open: envelope: %w", err)
	}
	p := &Payload{src: bytes.NewReader(env.Payload), size: int64(len(env.Payload)), sum: sha256.Sum256(env.Payload)}
	for i, s := range sc.spills {
		if !s.bad && bytes.Equal(env.Payload, sc.marker(i)) {
			p = &Payload{src: sc.file, off: s.off, size: s.n, sum: s.sum, file: sc.file}
			break
		}
	}
	env.Payload = nil
	keyIDs, err := checkSignatures(&env, payloadType, keys, func() ([]byte, error) { return p.digest(payloadType) })
	if err != nil {
		return nil, err
	}
	p.keyIDs = keyIDs
	return p, nil
}

func (sc *envScanner) keep(b ...byte) error {
	sc.kept = append(sc.kept, b...)
	if len(sc.kept) > sc.maxOverhead {
		return fmt.Errorf("manifest: open: %w: more than %d bytes besides the payload", ErrTooLarge, sc.maxOverhead)
	}
	return nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("manifest: open: envelope: %w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// scan reads the whole envelope. It tracks only what it needs to find the
// strings of the top-level object; encoding/json checks the rest.
func (sc *envScanner) scan() error {
	depth := 0
	inObject := false // the top-level value is an object
	expectKey := false
	for {
		c, err := sc.br.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch c {
		case '"':
			if depth == 1 {
				if err := sc.topString(expectKey); err != nil {
					return err
				}
			} else if err := sc.keepString(); err != nil {
				return err
			}
			continue
		case '{', '[':
			depth++
			if depth == 1 {
				inObject, expectKey = c == '{', c == '{'
			}
		case '}', ']':
			depth--
		case ',':
			if depth == 1 {
				expectKey = inObject
			}
		case ':':
			if depth == 1 {
				expectKey = false
			}
		}
		if err := sc.keep(c); err != nil {
			return err
		}
	}
}

// keepString copies a string (its opening quote read) as it is.
func (sc *envScanner) keepString() error {
	if err := sc.keep('"'); err != nil {
		return err
	}
	escaped := false
	for {
		c, err := sc.br.ReadByte()
		if err == io.EOF {
			return malformed("unterminated string")
		}
		if err != nil {
			return err
		}
		if err := sc.keep(c); err != nil {
			return err
		}
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			return nil
		}
	}
}

// topString reads a string of the top-level object (its opening quote
// read). A short one is kept as it is; a long key is replaced by a key no
// field has; a long value is decoded into the temporary file.
func (sc *envScanner) topString(key bool) error {
	raw := []byte{'"'} // the string as read, while it is short
	short := true
	sink := &b64Sink{}
	st := strState{sink: sink}
	for {
		if sc.br.Buffered() == 0 {
			if _, err := sc.br.Peek(1); err == io.EOF {
				return malformed("unterminated string")
			} else if err != nil {
				return err
			}
		}
		buf, _ := sc.br.Peek(sc.br.Buffered())
		if short {
			// Stop where the string stops being short.
			buf = buf[:min(len(buf), spillSize+2-len(raw))]
		}
		n, done, err := st.feed(buf)
		if short {
			raw = append(raw, buf[:n]...)
		}
		if _, derr := sc.br.Discard(n); derr != nil {
			return derr
		}
		switch {
		case err != nil:
			return err
		case done && short:
			return sc.keep(raw...)
		case done && key:
			return nil // its replacement is kept already
		case done:
			return sc.finishSpill(sink)
		case short && len(raw) > spillSize+1:
			short, raw = false, nil
			if key {
				sink.discard = true
				if err := sc.keep([]byte(`"\u0000long key"`)...); err != nil {
					return err
				}
				continue
			}
			if err := sc.startSpill(sink); err != nil {
				return err
			}
		}
	}
}

// startSpill sends sink's output to the temporary file from now on.
func (sc *envScanner) startSpill(s *b64Sink) error {
	if sc.file == nil {
		f, err := os.CreateTemp(sc.tempDir, ".embark-manifest-*")
		if err != nil {
			return fmt.Errorf("manifest: open: temporary file: %w", err)
		}
		sc.file, sc.fw = f, bufio.NewWriterSize(f, 256<<10)
	}
	s.h, s.w = sha256.New(), sc.fw
	return nil
}

// finishSpill records a long value and keeps its marker in its place.
func (sc *envScanner) finishSpill(s *b64Sink) error {
	s.flush(true)
	if s.err != nil {
		return fmt.Errorf("manifest: open: write temporary file: %w", s.err)
	}
	sp := spill{off: sc.fsize, n: s.n, bad: s.bad}
	copy(sp.sum[:], s.h.Sum(nil))
	sc.fsize += s.n
	i := len(sc.spills)
	sc.spills = append(sc.spills, sp)
	if sp.bad {
		return sc.keep([]byte(`"!"`)...)
	}
	return sc.keep([]byte(`"` + base64.StdEncoding.EncodeToString(sc.marker(i)) + `"`)...)
}

// strState checks the syntax of a JSON string as it streams by and hands
// its characters to a b64Sink.
type strState struct {
	sink *b64Sink
	esc  bool // after a backslash
	hex  int  // hex digits of \uXXXX still expected
	r    rune
}

// feed consumes bytes of the string's content. It returns how many it
// consumed and whether the string ended (its closing quote consumed).
func (s *strState) feed(buf []byte) (n int, done bool, err error) {
	for n < len(buf) {
		c := buf[n]
		switch {
		case s.hex > 0:
			var v byte
			switch {
			case '0' <= c && c <= '9':
				v = c - '0'
			case 'a' <= c && c <= 'f':
				v = c - 'a' + 10
			case 'A' <= c && c <= 'F':
				v = c - 'A' + 10
			default:
				return n, false, malformed("bad \\u escape in string")
			}
			s.r = s.r<<4 | rune(v)
			s.hex--
			if s.hex == 0 {
				if s.r < 0x80 {
					s.sink.char(byte(s.r))
				} else {
					s.sink.bad = true
				}
			}
			n++
		case s.esc:
			s.esc = false
			switch c {
			case '"', '\\', '/':
				s.sink.char(c)
			case 'b':
				s.sink.char('\b')
			case 'f':
				s.sink.char('\f')
			case 'n':
				s.sink.char('\n')
			case 'r':
				s.sink.char('\r')
			case 't':
				s.sink.char('\t')
			case 'u':
				s.hex, s.r = 4, 0
			default:
				return n, false, malformed("bad escape \\%c in string", c)
			}
			n++
		default:
			// The common case: a run of plain characters.
			i := n
			for i < len(buf) && buf[i] >= 0x20 && buf[i] < 0x80 && buf[i] != '"' && buf[i] != '\\' {
				i++
			}
			if i > n {
				s.sink.run(buf[n:i])
				n = i
				continue
			}
			n++
			switch {
			case c == '"':
				return n, true, nil
			case c == '\\':
				s.esc = true
			case c < 0x20:
				return n, false, malformed("control character %#x in string", c)
			default:
				s.sink.bad = true // not base64
			}
		}
	}
	return n, false, nil
}

// b64Sink decodes the standard base64 of a string's characters, as
// encoding/json decodes a []byte field (new lines are ignored), into a hash
// and a writer. Until it spills it only collects.
type b64Sink struct {
	buf     []byte
	bad     bool
	discard bool
	h       hash.Hash // nil until the string spills
	w       io.Writer
	n       int64
	out     []byte
	err     error
}

func (s *b64Sink) char(c byte) {
	if c == '\n' || c == '\r' {
		return
	}
	s.run([]byte{c})
}

func (s *b64Sink) run(p []byte) {
	if s.discard || s.bad {
		return
	}
	for len(p) > 0 && !s.bad {
		if len(s.buf) == b64Chunk {
			s.flush(false)
		}
		if s.buf == nil {
			s.buf = make([]byte, 0, b64Chunk)
		}
		k := copy(s.buf[len(s.buf):b64Chunk], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
	}
}

// flush decodes the collected characters. Only the last chunk may hold
// padding: a full chunk is flushed only when more characters follow.
func (s *b64Sink) flush(final bool) {
	if s.bad || s.discard {
		s.buf = s.buf[:0]
		return
	}
	if !final && bytes.IndexByte(s.buf, '=') >= 0 {
		s.bad = true
		return
	}
	if cap(s.out) < base64.StdEncoding.DecodedLen(len(s.buf)) {
		s.out = make([]byte, base64.StdEncoding.DecodedLen(b64Chunk))
	}
	k, err := base64.StdEncoding.Decode(s.out[:cap(s.out)], s.buf)
	s.buf = s.buf[:0]
	if err != nil {
		s.bad = true
		return
	}
	s.n += int64(k)
	if s.h != nil {
		s.h.Write(s.out[:k])
	}
	if s.w != nil && s.err == nil {
		_, s.err = s.w.Write(s.out[:k])
	}
}
