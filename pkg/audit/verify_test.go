package audit

import (
	"errors"
	"slices"
	"testing"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// testLog is a log of n entries with checkpoints at the given entries.
type testLog struct {
	entries []Entry
	cps     map[uint64]SignedCheckpoint
}

func newTestLog(t testing.TB, k *hybridsig.PrivateKey, n int, at ...uint64) testLog {
	t.Helper()
	l := testLog{entries: chain(n), cps: map[uint64]SignedCheckpoint{}}
	for _, s := range at {
		l.cps[s] = mustCheckpoint(t, k, l.entries[s-1])
	}
	return l
}

func (l testLog) clone() testLog {
	c := testLog{entries: slices.Clone(l.entries), cps: map[uint64]SignedCheckpoint{}}
	for k, v := range l.cps {
		c.cps[k] = v
	}
	return c
}

func (l testLog) verify(keys ...*hybridsig.PublicKey) (Report, error) {
	v := NewVerifier(keys...)
	ats := make([]uint64, 0, len(l.cps))
	for at := range l.cps {
		ats = append(ats, at)
	}
	slices.Sort(ats)
	for _, at := range ats {
		if err := v.AddCheckpoint(at, l.cps[at]); err != nil {
			return Report{}, err
		}
	}
	for _, e := range l.entries {
		if err := v.Entry(e); err != nil {
			return Report{}, err
		}
	}
	return v.Finish()
}

// rewrite changes entry seq's outcome and re-seals it and every later
// entry, as someone who can write the log but not sign would.
func (l testLog) rewrite(seq uint64) {
	prev := Entry{}
	if seq > 1 {
		prev = l.entries[seq-2]
	}
	for i := seq - 1; i < uint64(len(l.entries)); i++ {
		e := l.entries[i]
		if e.Seq == seq {
			e.Outcome = "denied"
		}
		l.entries[i] = Seal(prev, e)
		prev = l.entries[i]
	}
}

func wantBroken(t *testing.T, err error, seq uint64, reason Reason) *BrokenError {
	t.Helper()
	var be *BrokenError
	if !errors.As(err, &be) || !errors.Is(err, ErrBroken) {
		t.Fatalf("err = %v, want a BrokenError", err)
	}
	if be.Seq != seq || be.Reason != reason {
		t.Fatalf("broken at entry %d (%s), want entry %d (%s): %v", be.Seq, be.Reason, seq, reason, err)
	}
	return be
}

func TestVerifier(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	base := newTestLog(t, k, 10, 4, 8)
	otherCP := mustCheckpoint(t, other, base.entries[3])
	cp2 := mustCheckpoint(t, k, base.entries[1])

	rep, err := base.verify(k.Public())
	if err != nil {
		t.Fatalf("ok/intact: %v", err)
	}
	if rep.Entries != 10 || rep.Last != 10 || rep.Checkpoints != 2 || rep.LastCheckpoint.Seq != 8 ||
		rep.Unsigned() != 2 || !slices.Equal(rep.Keys, []string{k.Public().KeyID()}) {
		t.Fatalf("ok/intact: report %+v", rep)
	}

	tests := []struct {
		name   string
		mutate func(l testLog) testLog
		seq    uint64
		reason Reason
		is     error
		not    error
	}{
		{name: "fail/tampered entry", seq: 3, reason: ReasonContent,
			mutate: func(l testLog) testLog { l.entries[2].Outcome = "denied"; return l }},
		{name: "fail/deleted entry", seq: 3, reason: ReasonMissing,
			mutate: func(l testLog) testLog { l.entries = slices.Delete(l.entries, 2, 3); return l }},
		{name: "fail/deleted first entry", seq: 1, reason: ReasonMissing,
			mutate: func(l testLog) testLog { l.entries = l.entries[1:]; return l }},
		{name: "fail/reordered entries", seq: 3, reason: ReasonMissing,
			mutate: func(l testLog) testLog { l.entries[2], l.entries[3] = l.entries[3], l.entries[2]; return l }},
		{name: "fail/reordered contents, sequence numbers kept", seq: 3, reason: ReasonPrevHash,
			mutate: func(l testLog) testLog {
				l.entries[2], l.entries[3] = l.entries[3], l.entries[2]
				l.entries[2].Seq, l.entries[3].Seq = 3, 4
				return l
			}},
		{name: "fail/duplicated entry", seq: 4, reason: ReasonOrder,
			mutate: func(l testLog) testLog { l.entries = slices.Insert(l.entries, 3, l.entries[2]); return l }},
		{name: "fail/rewritten and re-sealed after a checkpoint", seq: 8, reason: ReasonCheckpointHash,
			mutate: func(l testLog) testLog { l.rewrite(6); return l }},
		{name: "fail/checkpoint with only the ECDSA half valid", seq: 4, reason: ReasonCheckpointSignature,
			is: hybridsig.ErrMLDSA, not: hybridsig.ErrECDSA,
			mutate: func(l testLog) testLog {
				c := l.cps[4]
				c.Signature = splice(l.cps[8].Signature, c.Signature)
				l.cps[4] = c
				return l
			}},
		{name: "fail/checkpoint with only the ML-DSA half valid", seq: 4, reason: ReasonCheckpointSignature,
			is: hybridsig.ErrECDSA, not: hybridsig.ErrMLDSA,
			mutate: func(l testLog) testLog {
				c := l.cps[4]
				c.Signature = splice(c.Signature, l.cps[8].Signature)
				l.cps[4] = c
				return l
			}},
		{name: "fail/checkpoint moved to a later entry", seq: 8, reason: ReasonCheckpointMoved,
			mutate: func(l testLog) testLog { l.cps[8] = l.cps[4]; delete(l.cps, 4); return l }},
		{name: "fail/checkpoint moved to an earlier entry", seq: 2, reason: ReasonCheckpointMoved,
			mutate: func(l testLog) testLog { l.cps[2] = l.cps[4]; delete(l.cps, 4); return l }},
		{name: "fail/checkpoint over another", seq: 4, reason: ReasonCheckpointMoved,
			mutate: func(l testLog) testLog { l.cps[4] = cp2; return l }},
		{name: "fail/checkpoint by an untrusted key", seq: 4, reason: ReasonCheckpointKey, is: ErrUnknownKey,
			mutate: func(l testLog) testLog { l.cps[4] = otherCP; return l }},
		{name: "fail/malformed checkpoint", seq: 8, reason: ReasonCheckpointMalformed, is: ErrMalformed,
			mutate: func(l testLog) testLog { c := l.cps[8]; c.Body = c.Body[:10]; l.cps[8] = c; return l }},
		{name: "fail/end removed", seq: 8, reason: ReasonTruncated,
			mutate: func(l testLog) testLog { l.entries = l.entries[:7]; return l }},
		{name: "fail/first of two breaks: the entry", seq: 3, reason: ReasonContent,
			mutate: func(l testLog) testLog {
				l.entries[2].Outcome = "denied"
				c := l.cps[8]
				c.Signature = splice(l.cps[4].Signature, c.Signature)
				l.cps[8] = c
				return l
			}},
		{name: "fail/first of two breaks: the checkpoint", seq: 4, reason: ReasonCheckpointSignature,
			mutate: func(l testLog) testLog {
				l.entries[5].Outcome = "denied"
				c := l.cps[4]
				c.Signature = splice(l.cps[8].Signature, c.Signature)
				l.cps[4] = c
				return l
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.mutate(base.clone()).verify(k.Public())
			wantBroken(t, err, tt.seq, tt.reason)
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want %v", err, tt.is)
			}
			if tt.not != nil && errors.Is(err, tt.not) {
				t.Errorf("err = %v, must not be %v", err, tt.not)
			}
		})
	}
}

func TestVerifierUse(t *testing.T) {
	k := mustKey(t)
	l := newTestLog(t, k, 3, 1)
	v := NewVerifier(k.Public())
	if err := v.Entry(l.entries[0]); err != nil {
		t.Fatal(err)
	}
	if err := v.AddCheckpoint(1, l.cps[1]); !errors.Is(err, ErrOrder) {
		t.Fatalf("fail/checkpoint after its entry: %v", err)
	}
	tampered := l.entries[1]
	tampered.Actor = "operator"
	first := v.Entry(tampered)
	wantBroken(t, first, 2, ReasonContent)
	if err := v.Entry(l.entries[2]); err != first {
		t.Fatalf("a later entry changed the error: %v", err)
	}
	if _, err := v.Finish(); err != first {
		t.Fatalf("Finish: %v", err)
	}

	// A log without checkpoints verifies as a chain.
	rep, err := newTestLog(t, k, 3).verify()
	if err != nil || rep.Checkpoints != 0 || rep.Unsigned() != 3 {
		t.Fatalf("ok/no checkpoints: %+v, %v", rep, err)
	}
	// An empty log verifies.
	if rep, err := (testLog{}).verify(k.Public()); err != nil || rep.Entries != 0 {
		t.Fatalf("ok/empty: %+v, %v", rep, err)
	}
}
