package auditlog_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/audit/auditlog"
	"github.com/embark-iot/embark/pkg/hybridsig"
)

// TestVerifyTampered changes a registry file behind the store's back and
// checks that both the store's verification and an exported bundle name the
// first broken entry.
func TestVerifyTampered(t *testing.T) {
	k := mustKey(t)
	ctx := context.Background()
	tests := []struct {
		name     string
		tamper   func(entries, records *bbolt.Bucket) error
		seq      uint64
		reason   audit.Reason
		is       error
		not      error
		noBundle bool // the store cannot even export it
	}{
		{name: "ok/intact", tamper: func(_, _ *bbolt.Bucket) error { return nil }},
		{name: "fail/entry changed", seq: 7, reason: audit.ReasonContent,
			tamper: func(b, _ *bbolt.Bucket) error {
				return editEntry(b, 7, func(e *audit.Entry) { e.Outcome = "denied" })
			}},
		{name: "fail/entry deleted", seq: 7, reason: audit.ReasonMissing,
			tamper: func(b, _ *bbolt.Bucket) error { return b.Delete(seqKey(7)) }},
		{name: "fail/two entries swapped", seq: 7, reason: audit.ReasonPrevHash,
			tamper: func(b, _ *bbolt.Bucket) error {
				v7, v8 := bytes.Clone(b.Get(seqKey(7))), bytes.Clone(b.Get(seqKey(8)))
				if err := b.Put(seqKey(7), v8); err != nil {
					return err
				}
				return b.Put(seqKey(8), v7)
			}},
		{name: "fail/entry changed and the chain re-sealed", seq: 10, reason: audit.ReasonCheckpointHash,
			tamper: func(b, _ *bbolt.Bucket) error {
				var prev audit.Entry
				for seq := uint64(1); seq <= 20; seq++ {
					var cur audit.Entry
					if err := editEntry(b, seq, func(e *audit.Entry) {
						e.Seq = seq - 1 // Seal numbers it prev.Seq+1
						if seq == 7 {
							e.Outcome = "denied"
						}
						*e = audit.Seal(prev, *e)
						cur = *e
						e.Seq = 0
					}); err != nil {
						return err
					}
					cur.Seq = seq
					prev = cur
				}
				return nil
			}},
		{name: "fail/end removed", seq: 18, reason: audit.ReasonTruncated,
			tamper: func(b, _ *bbolt.Bucket) error {
				for seq := uint64(18); seq <= 20; seq++ {
					if err := b.Delete(seqKey(seq)); err != nil {
						return err
					}
				}
				return nil
			}},
		{name: "fail/checkpoint with only the ECDSA half valid", seq: 10, reason: audit.ReasonCheckpointSignature,
			is: hybridsig.ErrMLDSA, not: hybridsig.ErrECDSA,
			tamper: func(_, r *bbolt.Bucket) error {
				c10, err := checkpointRecord(r, 10)
				if err != nil {
					return err
				}
				c15, err := checkpointRecord(r, 15)
				if err != nil {
					return err
				}
				c10.Signature = splice(c15.Signature, c10.Signature)
				return putCheckpointRecord(r, 10, c10)
			}},
		{name: "fail/checkpoint with only the ML-DSA half valid", seq: 10, reason: audit.ReasonCheckpointSignature,
			is: hybridsig.ErrECDSA, not: hybridsig.ErrMLDSA,
			tamper: func(_, r *bbolt.Bucket) error {
				c10, err := checkpointRecord(r, 10)
				if err != nil {
					return err
				}
				c15, err := checkpointRecord(r, 15)
				if err != nil {
					return err
				}
				c10.Signature = splice(c10.Signature, c15.Signature)
				return putCheckpointRecord(r, 10, c10)
			}},
		{name: "fail/checkpoint moved over another", seq: 15, reason: audit.ReasonCheckpointMoved,
			tamper: func(_, r *bbolt.Bucket) error {
				c10, err := checkpointRecord(r, 10)
				if err != nil {
					return err
				}
				return putCheckpointRecord(r, 15, c10)
			}},
		{name: "fail/checkpoint moved to an entry without one", seq: 12, reason: audit.ReasonCheckpointMoved,
			tamper: func(_, r *bbolt.Bucket) error {
				c10, err := checkpointRecord(r, 10)
				if err != nil {
					return err
				}
				if err := r.Bucket([]byte(auditlog.CheckpointKind)).Delete([]byte(auditlog.CheckpointKey(10))); err != nil {
					return err
				}
				return putCheckpointRecord(r, 12, c10)
			}},
		{name: "fail/checkpoint record overwritten", seq: 5, reason: audit.ReasonCheckpointMalformed, is: audit.ErrMalformed,
			tamper: func(_, r *bbolt.Bucket) error {
				return r.Bucket([]byte(auditlog.CheckpointKind)).Put([]byte(auditlog.CheckpointKey(5)), []byte("zeroed"))
			}},
		{name: "fail/entry unreadable", seq: 7, reason: audit.ReasonUnreadable, noBundle: true,
			tamper: func(b, _ *bbolt.Bucket) error { return b.Put(seqKey(7), []byte{0xff}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := dbPath(t)
			st := openStore(t, path)
			appendN(t, st, 20)
			c := newCheckpointer(t, st, k, &fakeClock{now: t0}, auditlog.WithEvery(5))
			if _, err := c.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			st.Close()
			tamper(t, path, tt.tamper)
			st = openStore(t, path)

			check := func(what string, rep audit.Report, err error) {
				t.Helper()
				if tt.seq == 0 {
					if err != nil || rep.Entries != 20 || rep.Checkpoints != 4 || rep.Unsigned() != 0 {
						t.Fatalf("%s: %+v, %v", what, rep, err)
					}
					return
				}
				var be *audit.BrokenError
				if !errors.As(err, &be) || be.Seq != tt.seq || be.Reason != tt.reason {
					t.Fatalf("%s: %v; want entry %d (%s)", what, err, tt.seq, tt.reason)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("%s: %v, want %v", what, err, tt.is)
				}
				if tt.not != nil && errors.Is(err, tt.not) {
					t.Errorf("%s: %v, must not be %v", what, err, tt.not)
				}
			}
			rep, err := auditlog.Verify(ctx, st, k.Public())
			check("store", rep, err)

			var buf bytes.Buffer
			info, err := auditlog.Export(ctx, st, &buf, t0)
			if tt.noBundle {
				if err == nil {
					t.Fatal("exported an unreadable log")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.Checkpoints != 4 && tt.seq == 0 {
				t.Fatalf("export %+v", info)
			}
			brep, err := audit.VerifyBundle(&buf, k.Public())
			check("bundle", brep.Report, err)
		})
	}
}
