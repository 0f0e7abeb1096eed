package storetest

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/store"
)

func testAudit(t *testing.T, open Opener) {
	t.Run("ok/empty", func(t *testing.T) {
		s := open(t)
		view(t, s, func(r store.Reader) error {
			last, err := r.LastAudit()
			if err != nil {
				return err
			}
			if last.Seq != 0 || len(last.Hash) != 0 {
				t.Fatalf("LastAudit of an empty log = %+v, want the zero Entry", last)
			}
			if es := allEntries(t, r); len(es) != 0 {
				t.Fatalf("Audit of an empty log visited %d entries", len(es))
			}
			return nil
		})
	})

	t.Run("ok/chain", func(t *testing.T) {
		s := open(t)
		var sealed []audit.Entry
		sealed = append(sealed, appendEntries(t, s, newEntry("import", ""))...)
		sealed = append(sealed, appendEntries(t, s, newEntry("enroll", "d1"), newEntry("enroll", "d2"))...)
		sealed = append(sealed, appendEntries(t, s, newEntry("renew", "d1"))...)
		for i, e := range sealed {
			if e.Seq != uint64(i+1) {
				t.Fatalf("AppendAudit #%d returned Seq %d, want %d", i+1, e.Seq, i+1)
			}
		}
		if err := audit.VerifyChain(audit.Entry{}, sealed); err != nil {
			t.Fatalf("VerifyChain(returned entries): %v", err)
		}
		view(t, s, func(r store.Reader) error {
			stored := allEntries(t, r)
			if len(stored) != len(sealed) {
				t.Fatalf("Audit visited %d entries, want %d", len(stored), len(sealed))
			}
			if err := audit.VerifyChain(audit.Entry{}, stored); err != nil {
				t.Fatalf("VerifyChain(stored entries): %v", err)
			}
			for i := range stored {
				sameEntry(t, "stored entry", stored[i], sealed[i])
			}
			last, err := r.LastAudit()
			if err != nil {
				return err
			}
			sameEntry(t, "LastAudit", last, sealed[len(sealed)-1])
			return nil
		})
	})

	t.Run("ok/append-continues-after-rollback", func(t *testing.T) {
		s := open(t)
		first := appendEntries(t, s, newEntry("import", ""))
		err := s.Update(t.Context(), func(tx store.Tx) error {
			if _, err := tx.AppendAudit(newEntry("enroll", "lost")); err != nil {
				return err
			}
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Update: err = %v, want %v", err, errBoom)
		}
		second := appendEntries(t, s, newEntry("enroll", "kept"))
		if second[0].Seq != 2 || !bytes.Equal(second[0].PrevHash, first[0].Hash) {
			t.Fatalf("entry after a rolled-back append: Seq %d, want 2, chained to entry 1: %v",
				second[0].Seq, bytes.Equal(second[0].PrevHash, first[0].Hash))
		}
		view(t, s, func(r store.Reader) error {
			stored := allEntries(t, r)
			if err := audit.VerifyChain(audit.Entry{}, stored); err != nil {
				t.Fatalf("VerifyChain: %v", err)
			}
			if len(stored) != 2 || stored[1].DeviceID != "kept" {
				t.Fatalf("stored entries = %+v, want import and kept", stored)
			}
			return nil
		})
	})

	errStop := errors.New("storetest: stop")
	tests := []struct {
		name    string
		after   uint64
		stopAt  int
		failAt  int
		want    []uint64
		wantErr error
	}{
		{name: "ok/after-0", after: 0, want: []uint64{1, 2, 3, 4, 5}},
		{name: "ok/after-2", after: 2, want: []uint64{3, 4, 5}},
		{name: "ok/after-last", after: 5, want: nil},
		{name: "ok/after-beyond", after: 99, want: nil},
		{name: "ok/after-max", after: math.MaxUint64, want: nil},
		{name: "ok/early-stop", after: 1, stopAt: 2, want: []uint64{2, 3}},
		{name: "fail/fn-error", after: 0, failAt: 2, want: []uint64{1, 2}, wantErr: errStop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			appendEntries(t, s, newEntry("a", ""), newEntry("b", ""), newEntry("c", ""))
			appendEntries(t, s, newEntry("d", ""), newEntry("e", ""))
			var got []uint64
			err := s.View(t.Context(), func(r store.Reader) error {
				return r.Audit(tt.after, func(e audit.Entry) (bool, error) {
					got = append(got, e.Seq)
					if tt.failAt > 0 && len(got) == tt.failAt {
						return true, errStop
					}
					return tt.stopAt == 0 || len(got) < tt.stopAt, nil
				})
			})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Audit: err = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Audit: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Audit(%d) visited %v, want %v", tt.after, got, tt.want)
			}
		})
	}
}
