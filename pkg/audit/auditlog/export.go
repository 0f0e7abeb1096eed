package auditlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/store"
)

// ExportInfo describes a written bundle.
type ExportInfo struct {
	Entries     uint64
	Checkpoints int
	// Last is the newest entry at the start of the export; entries
	// appended later are not in the bundle.
	Last uint64
}

// snapshot is what one read transaction gives an export or a
// verification: the newest entry, the stored keys and every checkpoint.
type snapshot struct {
	last audit.Entry
	keys []*hybridsig.PublicKey
	cps  []storedCheckpoint
}

func takeSnapshot(ctx context.Context, st store.Store) (snapshot, error) {
	var s snapshot
	err := st.View(ctx, func(rd store.Reader) error {
		s = snapshot{}
		var err error
		if s.last, err = rd.LastAudit(); err != nil {
			return err
		}
		if s.keys, err = readKeys(rd); err != nil {
			return err
		}
		return readCheckpoints(rd, 0, func(c storedCheckpoint) bool {
			s.cps = append(s.cps, c)
			return true
		})
	})
	if err != nil {
		return snapshot{}, fmt.Errorf("auditlog: %w", err)
	}
	return s, nil
}

// eachEntry calls fn for every entry from 1 to last, reading them in short
// transactions of at most chunk entries and calling fn outside them.
func eachEntry(ctx context.Context, st store.Store, last uint64, fn func(audit.Entry) error) error {
	after := uint64(0)
	buf := make([]audit.Entry, 0, chunk)
	for after < last {
		buf = buf[:0]
		err := st.View(ctx, func(rd store.Reader) error {
			buf = buf[:0]
			return rd.Audit(after, func(e audit.Entry) (bool, error) {
				if e.Seq > last {
					return false, nil
				}
				buf = append(buf, e)
				return len(buf) < chunk, nil
			})
		})
		// The entries read before one that cannot be are passed on first.
		for _, e := range buf {
			if err := fn(e); err != nil {
				return err
			}
		}
		if err != nil {
			if len(buf) > 0 {
				after = buf[len(buf)-1].Seq
			}
			return &readError{after: after, err: err}
		}
		if len(buf) == 0 {
			return nil
		}
		after = buf[len(buf)-1].Seq
	}
	return nil
}

// readError is an entry that cannot be read from the store.
type readError struct {
	after uint64
	err   error
}

func (e *readError) Error() string {
	return fmt.Sprintf("auditlog: read entries after %d: %v", e.after, e.err)
}
func (e *readError) Unwrap() error { return e.err }

// Export writes st's audit log to w as a bundle (see package audit): the
// stored keys, every checkpoint and the entries up to the newest one at
// the start, streamed in chunks. A checkpoint record that does not decode
// is exported as it is stored, as evidence.
func Export(ctx context.Context, st store.Store, w io.Writer, now time.Time) (ExportInfo, error) {
	s, err := takeSnapshot(ctx, st)
	if err != nil {
		return ExportInfo{}, err
	}
	bw, err := audit.NewBundleWriter(w, audit.BundleHeader{Created: now, Keys: s.keys,
		Checkpoints: uint64(len(s.cps)), Last: s.last.Seq})
	if err != nil {
		return ExportInfo{}, err
	}
	info := ExportInfo{Checkpoints: len(s.cps), Last: s.last.Seq}
	for _, c := range s.cps {
		sc := c.sc
		if c.err != nil {
			sc = audit.SignedCheckpoint{Body: c.raw}
		}
		if err := bw.Checkpoint(c.at, sc); err != nil {
			return info, err
		}
	}
	var written uint64
	err = eachEntry(ctx, st, s.last.Seq, func(e audit.Entry) error {
		info.Entries++
		written = e.Seq
		return bw.Entry(e)
	})
	var re *readError
	if errors.As(err, &re) {
		// Name the entry, as a verifier would.
		return info, &audit.BrokenError{Seq: written + 1, Reason: audit.ReasonUnreadable,
			Detail: fmt.Sprintf("cannot be read: %v", re.err), Err: re.err}
	}
	if err != nil {
		return info, err
	}
	return info, bw.Close()
}

// StoredKeys returns the public keys the store holds for its checkpoints.
// They prove the log's integrity, not who signed it: pin the key from the
// data directory's audit.pub (or a copy kept elsewhere) to prove that.
func StoredKeys(ctx context.Context, st store.Store) ([]*hybridsig.PublicKey, error) {
	var keys []*hybridsig.PublicKey
	err := st.View(ctx, func(rd store.Reader) error {
		var err error
		keys, err = readKeys(rd)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("auditlog: %w", err)
	}
	return keys, nil
}

// Verify checks st's whole audit log: every entry's hash, the links and
// sequence numbers, and every checkpoint (both signature halves, under one
// of keys, and its entry's hash). A broken log fails with the
// *audit.BrokenError of its first broken entry.
func Verify(ctx context.Context, st store.Store, keys ...*hybridsig.PublicKey) (audit.Report, error) {
	s, err := takeSnapshot(ctx, st)
	if err != nil {
		return audit.Report{}, err
	}
	v := audit.NewVerifier(keys...)
	for _, c := range s.cps {
		sc := c.sc
		if c.err != nil {
			sc = audit.SignedCheckpoint{Body: c.raw}
		}
		if err := v.AddCheckpoint(c.at, sc); err != nil {
			return audit.Report{}, err
		}
	}
	err = eachEntry(ctx, st, s.last.Seq, v.Entry)
	var re *readError
	if errors.As(err, &re) {
		return audit.Report{}, v.Fail(v.Last().Seq+1, re.err)
	}
	if err != nil {
		return audit.Report{}, err
	}
	rep, err := v.Finish()
	if err != nil {
		return audit.Report{}, err
	}
	if rep.Last != s.last.Seq {
		// The newest entry was read at the start; a shorter walk means
		// the end went missing.
		return audit.Report{}, &audit.BrokenError{Seq: rep.Last + 1, Reason: audit.ReasonTruncated,
			Detail: fmt.Sprintf("missing: the log ends at entry %d, its newest entry is %d", rep.Last, s.last.Seq)}
	}
	return rep, nil
}
