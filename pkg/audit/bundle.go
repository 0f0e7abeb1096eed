package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// Bundle format identifiers (see the package documentation).
const (
	BundleFormat  = "embark-audit-bundle"
	BundleVersion = 1
	// BundleMediaType is the media type of a bundle: a CBOR sequence
	// (RFC 8742).
	BundleMediaType = "application/cbor-seq"
)

// BundleHeader is the first item of a bundle.
type BundleHeader struct {
	// Created is when the bundle was written.
	Created time.Time
	// Keys are the public keys that signed checkpoints in the log.
	Keys []*hybridsig.PublicKey
	// Checkpoints is how many checkpoint items follow the header.
	Checkpoints uint64
	// Last is the sequence number of the last entry in the bundle (0 for
	// an empty log); entries run from 1 to Last.
	Last uint64
}

type bundleHeader struct {
	Format      string   `cbor:"1,keyasint"`
	Version     uint64   `cbor:"2,keyasint"`
	Created     int64    `cbor:"3,keyasint"`
	Keys        [][]byte `cbor:"4,keyasint"`
	Checkpoints uint64   `cbor:"5,keyasint"`
	Last        uint64   `cbor:"6,keyasint"`
}

type bundleCheckpoint struct {
	At        uint64 `cbor:"1,keyasint"`
	Body      []byte `cbor:"2,keyasint"`
	Signature []byte `cbor:"3,keyasint"`
}

// BundleWriter writes a bundle item by item: the header, then exactly
// Checkpoints checkpoints, then the entries 1 to Last in order.
type BundleWriter struct {
	bw      *bufio.Writer
	enc     *cbor.Encoder
	h       BundleHeader
	cps     uint64
	entries uint64
}

// NewBundleWriter writes the header h to w and returns the writer of the
// rest.
func NewBundleWriter(w io.Writer, h BundleHeader) (*BundleWriter, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	b := &BundleWriter{bw: bw, enc: encMode.NewEncoder(bw), h: h}
	wh := bundleHeader{Format: BundleFormat, Version: BundleVersion, Created: h.Created.Unix(),
		Checkpoints: h.Checkpoints, Last: h.Last, Keys: [][]byte{}}
	for _, k := range h.Keys {
		wh.Keys = append(wh.Keys, k.Bytes())
	}
	if err := b.enc.Encode(wh); err != nil {
		return nil, fmt.Errorf("audit: bundle header: %w", err)
	}
	return b, nil
}

// Checkpoint writes the checkpoint stored under entry at.
func (b *BundleWriter) Checkpoint(at uint64, s SignedCheckpoint) error {
	if b.cps == b.h.Checkpoints || b.entries > 0 {
		return fmt.Errorf("audit: bundle: checkpoint %d beyond the %d announced, or after entries", at, b.h.Checkpoints)
	}
	b.cps++
	if err := b.enc.Encode(bundleCheckpoint{At: at, Body: s.Body, Signature: s.Signature}); err != nil {
		return fmt.Errorf("audit: bundle checkpoint %d: %w", at, err)
	}
	return nil
}

// Entry writes the next entry.
func (b *BundleWriter) Entry(e Entry) error {
	if b.cps != b.h.Checkpoints {
		return fmt.Errorf("audit: bundle: entry %d after %d of %d checkpoints", e.Seq, b.cps, b.h.Checkpoints)
	}
	b.entries++
	if err := b.enc.Encode(&e); err != nil {
		return fmt.Errorf("audit: bundle entry %d: %w", e.Seq, err)
	}
	return nil
}

// Close flushes the bundle. It does not close the underlying writer.
func (b *BundleWriter) Close() error {
	if err := b.bw.Flush(); err != nil {
		return fmt.Errorf("audit: bundle: %w", err)
	}
	return nil
}

// BundleReport is what [VerifyBundle] found.
type BundleReport struct {
	Report
	Created time.Time
	// Pinned is true when the checkpoints were verified against keys the
	// caller gave, false when against the keys the bundle carries (which
	// proves integrity, not who signed).
	Pinned bool
	// BundleKeys are the KeyIDs of the keys the bundle carries.
	BundleKeys []string
}

// VerifyBundle reads a bundle from r and verifies it as a [Verifier] does:
// the chain of entries 1 to the header's Last and every checkpoint. The
// checkpoints must be signed by one of keys; with no keys, by one of the
// keys the bundle carries. A bundle that ends early is broken
// ([ReasonTruncated]); one that is not a bundle fails with [ErrBundle].
func VerifyBundle(r io.Reader, keys ...*hybridsig.PublicKey) (BundleReport, error) {
	dec := strictDec.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	var wh bundleHeader
	if err := dec.Decode(&wh); err != nil {
		return BundleReport{}, fmt.Errorf("%w: header: %v", ErrBundle, err)
	}
	if wh.Format != BundleFormat {
		return BundleReport{}, fmt.Errorf("%w: format %q", ErrBundle, wh.Format)
	}
	if wh.Version != BundleVersion {
		return BundleReport{}, fmt.Errorf("%w: version %d, this verifier reads version %d", ErrBundle, wh.Version, BundleVersion)
	}
	rep := BundleReport{Created: time.Unix(wh.Created, 0).UTC(), Pinned: len(keys) > 0}
	var carried []*hybridsig.PublicKey
	for i, raw := range wh.Keys {
		k, err := hybridsig.ParsePublicKey(raw)
		if err != nil {
			return BundleReport{}, fmt.Errorf("%w: key %d: %v", ErrBundle, i, err)
		}
		carried = append(carried, k)
		rep.BundleKeys = append(rep.BundleKeys, k.KeyID())
	}
	if len(keys) == 0 {
		keys = carried
	}
	v := NewVerifier(keys...)
	for i := uint64(0); i < wh.Checkpoints; i++ {
		var c bundleCheckpoint
		if err := dec.Decode(&c); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return BundleReport{}, broken(1, ReasonTruncated, err,
					"the bundle ends after %d of its %d checkpoints", i, wh.Checkpoints)
			}
			return BundleReport{}, fmt.Errorf("%w: checkpoint %d: %v", ErrBundle, i+1, err)
		}
		if err := v.AddCheckpoint(c.At, SignedCheckpoint{Body: c.Body, Signature: c.Signature}); err != nil {
			return BundleReport{}, err
		}
	}
	for {
		var e Entry
		err := dec.Decode(&e)
		if errors.Is(err, io.EOF) {
			break
		}
		next := v.Last().Seq + 1
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return BundleReport{}, v.Fail(next, fmt.Errorf("the bundle ends inside entry %d", next))
			}
			return BundleReport{}, v.Fail(next, err)
		}
		if e.Seq > wh.Last {
			return BundleReport{}, v.Fail(e.Seq, fmt.Errorf("entry %d after the last entry %d the header announces", e.Seq, wh.Last))
		}
		e.Time = e.Time.UTC()
		if err := v.Entry(e); err != nil {
			return BundleReport{}, err
		}
	}
	r2, err := v.Finish()
	if err != nil {
		return BundleReport{}, err
	}
	if r2.Last != wh.Last {
		return BundleReport{}, broken(r2.Last+1, ReasonTruncated, nil,
			"missing: the bundle ends at entry %d but its header announces entries up to %d", r2.Last, wh.Last)
	}
	rep.Report = r2
	return rep, nil
}
