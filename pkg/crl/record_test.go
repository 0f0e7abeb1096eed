package crl

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/store"
)

func TestRecordRevocation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	notAfter := testEpoch.Add(30 * 24 * time.Hour)
	e.revoke(t, "a1", notAfter, ReasonKeyCompromise)
	before := e.records(t, KindRevoked)

	t.Run("ok/stored", func(t *testing.T) {
		var rev Revocation
		var found bool
		if err := e.st.View(ctx, func(r store.Reader) (err error) {
			rev, found, err = Revoked(r, "a1")
			return err
		}); err != nil || !found {
			t.Fatalf("Revoked = %v, %v", found, err)
		}
		want := Revocation{RevokedAt: testEpoch, Reason: ReasonKeyCompromise, NotAfter: notAfter}
		if !rev.RevokedAt.Equal(want.RevokedAt) || !rev.NotAfter.Equal(want.NotAfter) || rev.Reason != want.Reason {
			t.Errorf("Revoked = %+v, want %+v", rev, want)
		}
	})
	t.Run("ok/not-revoked", func(t *testing.T) {
		var found bool
		if err := e.st.View(ctx, func(r store.Reader) (err error) {
			_, found, err = Revoked(r, "b2")
			return err
		}); err != nil || found {
			t.Fatalf("Revoked(b2) = %v, %v; want false, nil", found, err)
		}
	})
	t.Run("ok/second-revocation-keeps-first", func(t *testing.T) {
		e.clock.Advance(time.Hour)
		defer e.clock.Advance(-time.Hour)
		e.revoke(t, "a1", notAfter, ReasonSuperseded)
		if got := e.records(t, KindRevoked); !maps.Equal(got, before) {
			t.Errorf("records changed: %v, want %v", got, before)
		}
	})

	fails := []struct {
		name     string
		serial   string
		notAfter time.Time
		at       time.Time
		reason   int
		want     error
	}{
		{"fail/empty-serial", "", notAfter, testEpoch, 1, ErrInvalidSerial},
		{"fail/upper-case-serial", "A1B2", notAfter, testEpoch, 1, ErrInvalidSerial},
		{"fail/leading-zero", "0a1", notAfter, testEpoch, 1, ErrInvalidSerial},
		{"fail/zero-serial", "0", notAfter, testEpoch, 1, ErrInvalidSerial},
		{"fail/not-hex", "xyz", notAfter, testEpoch, 1, ErrInvalidSerial},
		{"fail/negative", "-a1", notAfter, testEpoch, 1, ErrInvalidSerial},
		{"fail/reason-hold", "c3", notAfter, testEpoch, 6, ErrInvalidReason},
		{"fail/reason-remove", "c3", notAfter, testEpoch, 8, ErrInvalidReason},
		{"fail/reason-negative", "c3", notAfter, testEpoch, -1, ErrInvalidReason},
		{"fail/reason-11", "c3", notAfter, testEpoch, 11, ErrInvalidReason},
		{"fail/zero-revoked-at", "c3", notAfter, time.Time{}, 1, ErrInvalidTime},
		{"fail/zero-not-after", "c3", time.Time{}, testEpoch, 1, ErrInvalidTime},
	}
	for _, tc := range fails {
		t.Run(tc.name, func(t *testing.T) {
			err := e.st.Update(ctx, func(tx store.Tx) error {
				return RecordRevocation(tx, tc.serial, tc.notAfter, tc.at, tc.reason)
			})
			if !errors.Is(err, tc.want) {
				t.Fatalf("RecordRevocation = %v, want %v", err, tc.want)
			}
			if got := e.records(t, KindRevoked); !maps.Equal(got, before) {
				t.Errorf("records changed: %v, want %v", got, before)
			}
		})
	}
}
