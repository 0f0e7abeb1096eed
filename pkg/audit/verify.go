package audit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// Verifier checks a log as it streams past: give it the checkpoints with
// [Verifier.AddCheckpoint] (at the latest before the entry they sign), then
// every entry in order with [Verifier.Entry], then call [Verifier.Finish].
// It holds the checkpoints not yet reached and one entry, never the log.
//
// It reports the first broken entry by sequence number: whichever comes
// first of a break in the chain and a bad checkpoint.
type Verifier struct {
	keys    []*hybridsig.PublicKey
	pending []pendingCheckpoint // sorted by seq once entries flow
	sorted  bool
	prev    Entry
	started bool
	failed  *BrokenError
	rep     Report
}

type pendingCheckpoint struct {
	seq uint64 // the entry it is checked at
	cp  Checkpoint
	bad *BrokenError // what is wrong with it, found when it was added
}

// Report describes a log that verified.
type Report struct {
	// Entries is how many entries were verified; Last is the newest and
	// LastHash its hash.
	Entries  uint64
	Last     uint64
	LastHash []byte
	// Checkpoints is how many checkpoints were verified; LastCheckpoint is
	// the newest (zero if none).
	Checkpoints    int
	LastCheckpoint Checkpoint
	// Keys lists the KeyIDs that signed the verified checkpoints.
	Keys []string
}

// Unsigned returns how many entries follow the newest checkpoint: the tail
// that a checkpoint does not vouch for yet.
func (r Report) Unsigned() uint64 { return r.Last - r.LastCheckpoint.Seq }

// NewVerifier returns a Verifier that trusts checkpoints signed by keys.
func NewVerifier(keys ...*hybridsig.PublicKey) *Verifier {
	return &Verifier{keys: slices.Clone(keys), sorted: true}
}

// AddCheckpoint adds the checkpoint stored under entry at. A checkpoint
// that does not decode, is signed by an unknown key, has a bad signature or
// is stored under another entry than the one it signs is recorded as a
// break at that entry. It returns [ErrOrder] if entry at was already
// passed.
func (v *Verifier) AddCheckpoint(at uint64, s SignedCheckpoint) error {
	if v.started && at <= v.prev.Seq {
		return fmt.Errorf("%w: checkpoint of entry %d added after entry %d", ErrOrder, at, v.prev.Seq)
	}
	p := pendingCheckpoint{seq: at}
	c, err := s.Verify(v.keys)
	switch {
	case err == nil && c.Seq != at:
		p.bad = broken(at, ReasonCheckpointMoved, nil,
			"the checkpoint stored for entry %d signs entry %d", at, c.Seq)
	case err == nil:
		p.cp = c
	case errors.Is(err, ErrMalformed):
		p.bad = broken(at, ReasonCheckpointMalformed, err, "its checkpoint cannot be decoded: %v", err)
	case errors.Is(err, ErrUnknownKey):
		p.bad = broken(at, ReasonCheckpointKey, err, "its checkpoint is signed by key %s, which is not trusted", c.KeyID)
	default:
		p.bad = broken(at, ReasonCheckpointSignature, err, "its checkpoint signature does not verify (%s)", signatureFault(err))
	}
	v.pending = append(v.pending, p)
	v.sorted = false
	return nil
}

// Entry verifies the next entry. It returns the *[BrokenError] of the first
// broken entry, and the same error for every later call.
func (v *Verifier) Entry(e Entry) error {
	if v.failed != nil {
		return v.failed
	}
	if !v.sorted {
		slices.SortStableFunc(v.pending, func(a, b pendingCheckpoint) int {
			switch {
			case a.seq < b.seq:
				return -1
			case a.seq > b.seq:
				return 1
			}
			return 0
		})
		v.sorted = true
	}
	v.started = true
	if err := check(v.prev, e); err != nil {
		// Every pending checkpoint is at or after the entry that broke:
		// the break in the chain comes first.
		v.failed = err
		return err
	}
	for len(v.pending) > 0 && v.pending[0].seq <= e.Seq {
		p := v.pending[0]
		if p.bad != nil {
			v.failed = p.bad
			return p.bad
		}
		if p.seq == e.Seq && !bytes.Equal(p.cp.Hash, e.Hash) {
			v.failed = broken(e.Seq, ReasonCheckpointHash, nil,
				"its hash %s is not the one checkpointed at %s (%s): the log was rewritten after entry %d",
				short(e.Hash), p.cp.Time.Format(time.RFC3339), short(p.cp.Hash), v.rep.LastCheckpoint.Seq)
			return v.failed
		}
		v.pending = v.pending[1:]
		v.rep.Checkpoints++
		v.rep.LastCheckpoint = p.cp
		if !slices.Contains(v.rep.Keys, p.cp.KeyID) {
			v.rep.Keys = append(v.rep.Keys, p.cp.KeyID)
		}
	}
	v.prev = e
	v.rep.Entries++
	return nil
}

// Fail records that entry seq could not be read (for example it does not
// decode) and returns the resulting error, unless an earlier entry already
// broke.
func (v *Verifier) Fail(seq uint64, err error) error {
	if v.failed != nil {
		return v.failed
	}
	if len(v.pending) > 0 && v.pending[0].bad != nil && v.pending[0].seq < seq {
		v.failed = v.pending[0].bad
		return v.failed
	}
	v.failed = broken(seq, ReasonUnreadable, err, "cannot be read: %v", err)
	return v.failed
}

// Last returns the newest entry verified (the zero Entry if none).
func (v *Verifier) Last() Entry { return v.prev }

// Finish checks that no checkpoint names an entry after the last one (the
// log would have lost its end) and returns the report.
func (v *Verifier) Finish() (Report, error) {
	if v.failed != nil {
		return Report{}, v.failed
	}
	for _, p := range v.pending {
		if p.bad != nil {
			v.failed = p.bad
			return Report{}, v.failed
		}
	}
	if len(v.pending) > 0 {
		p := v.pending[len(v.pending)-1]
		v.failed = broken(v.prev.Seq+1, ReasonTruncated, nil,
			"missing: the log ends at entry %d but a checkpoint signed at %s names entry %d",
			v.prev.Seq, p.cp.Time.Format(time.RFC3339), p.cp.Seq)
		return Report{}, v.failed
	}
	r := v.rep
	r.Last = v.prev.Seq
	r.LastHash = bytes.Clone(v.prev.Hash)
	r.Keys = slices.Clone(r.Keys)
	return r, nil
}

// signatureFault names the halves of a hybrid signature that failed.
func signatureFault(err error) string {
	ml, ec := errors.Is(err, hybridsig.ErrMLDSA), errors.Is(err, hybridsig.ErrECDSA)
	switch {
	case ml && ec:
		return "neither the ML-DSA-65 nor the ECDSA half verifies"
	case ml:
		return "the ML-DSA-65 half does not verify"
	case ec:
		return "the ECDSA half does not verify"
	}
	return err.Error()
}

func short(h []byte) string {
	s := hex.EncodeToString(h)
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}
