package audit

import (
	"bytes"
	"fmt"
)

// Reason says what is wrong at the entry a [BrokenError] names.
type Reason string

// Reasons of a [BrokenError].
const (
	// ReasonMissing: the entry is absent; a later one follows its
	// predecessor.
	ReasonMissing Reason = "missing"
	// ReasonOrder: an earlier (or the same) sequence number appears where
	// the entry belongs.
	ReasonOrder Reason = "out-of-order"
	// ReasonPrevHash: the entry does not name its predecessor's hash.
	ReasonPrevHash Reason = "prev-hash"
	// ReasonContent: the entry's content does not match its hash.
	ReasonContent Reason = "content"
	// ReasonUnreadable: the entry cannot be read or decoded.
	ReasonUnreadable Reason = "unreadable"
	// ReasonTruncated: entries are missing at the end of the log: a
	// checkpoint or the bundle header names an entry that is not there.
	ReasonTruncated Reason = "truncated"
	// ReasonCheckpointMalformed: a checkpoint for the entry cannot be
	// decoded.
	ReasonCheckpointMalformed Reason = "checkpoint-malformed"
	// ReasonCheckpointKey: a checkpoint for the entry is signed by a key
	// that is not trusted.
	ReasonCheckpointKey Reason = "checkpoint-key"
	// ReasonCheckpointSignature: a checkpoint for the entry has a hybrid
	// signature that does not verify (either half).
	ReasonCheckpointSignature Reason = "checkpoint-signature"
	// ReasonCheckpointMoved: a checkpoint is stored under another entry
	// than the one it signs.
	ReasonCheckpointMoved Reason = "checkpoint-moved"
	// ReasonCheckpointHash: the entry's hash differs from the one its
	// checkpoint signed: the log was rewritten.
	ReasonCheckpointHash Reason = "checkpoint-hash"
)

// BrokenError names the first entry of a log that does not verify. It
// matches [ErrBroken] with errors.Is, and the cause (for example
// hybridsig.ErrECDSA) when there is one.
type BrokenError struct {
	// Seq is the sequence number of the first broken entry.
	Seq    uint64
	Reason Reason
	// Detail says what is wrong, for people.
	Detail string
	// Err is the underlying error, if any.
	Err error
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit: chain broken at entry %d: %s", e.Seq, e.Detail)
}

// Unwrap returns ErrBroken and the cause.
func (e *BrokenError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrBroken}
	}
	return []error{ErrBroken, e.Err}
}

func broken(seq uint64, r Reason, err error, format string, args ...any) *BrokenError {
	return &BrokenError{Seq: seq, Reason: r, Detail: fmt.Sprintf(format, args...), Err: err}
}

// Check reports whether e is the valid successor of prev (the zero Entry
// for the first entry of a log). Only prev's Seq and Hash are used. The
// error is a *[BrokenError] naming the first entry that is wrong.
func Check(prev, e Entry) error {
	if err := check(prev, e); err != nil {
		return err
	}
	return nil
}

func check(prev, e Entry) *BrokenError {
	want := prev.Seq + 1
	switch {
	case e.Seq > want:
		if e.Seq == want+1 {
			return broken(want, ReasonMissing, nil, "missing: entry %d follows entry %d", e.Seq, prev.Seq)
		}
		return broken(want, ReasonMissing, nil, "missing (with entries up to %d): entry %d follows entry %d",
			e.Seq-1, e.Seq, prev.Seq)
	case e.Seq < want:
		return broken(want, ReasonOrder, nil, "out of order: entry %d follows entry %d", e.Seq, prev.Seq)
	case !bytes.Equal(e.PrevHash, prev.Hash) && !(len(e.PrevHash) == 0 && len(prev.Hash) == 0):
		if prev.Seq == 0 {
			return broken(e.Seq, ReasonPrevHash, nil, "the first entry names a previous hash")
		}
		return broken(e.Seq, ReasonPrevHash, nil, "its previous hash does not match entry %d", prev.Seq)
	case !bytes.Equal(e.Hash, hashOf(e)):
		return broken(e.Seq, ReasonContent, nil, "its content does not match its hash")
	}
	return nil
}
