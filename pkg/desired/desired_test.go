package desired

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
)

func setup(t *testing.T, ids ...string) (*Store, store.Store) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	err = db.Update(context.Background(), func(tx store.Tx) error {
		for _, id := range ids {
			d := device.Device{ID: id, State: device.Onboarded}
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	return New(db, func() time.Time { return now }), db
}

const a, b = "urn:dev:embark:acme:A", "urn:dev:embark:acme:B"

func TestSetAppliedPending(t *testing.T) {
	ctx := context.Background()
	s, db := setup(t, a, b)
	var mu sync.Mutex
	var seen []Desired
	s.OnChange(func(id string, d Desired) {
		mu.Lock()
		seen = append(seen, d)
		mu.Unlock()
	})
	first, err := s.Set(ctx, a, "operator", func(d *Desired) { d.Rotate, d.Campaign = true, "c1" })
	if err != nil {
		t.Fatal(err)
	}
	if first.Generation != 1 || !first.Rotate || first.Campaign != "c1" || !first.Pending() {
		t.Fatalf("first = %+v", first)
	}
	// A later change keeps state fields and drops the one-shot rotate.
	second, err := s.Set(ctx, a, "policy", func(d *Desired) { d.Zone = "quarantine" })
	if err != nil {
		t.Fatal(err)
	}
	if second.Generation != 2 || second.Rotate || second.Campaign != "" || second.Zone != "quarantine" {
		t.Fatalf("second = %+v", second)
	}
	if _, err := s.Applied(ctx, a, 3); !errors.Is(err, ErrAhead) {
		t.Fatalf("applying an unissued generation: %v, want ErrAhead", err)
	}
	var pending []string
	if err := s.Pending(ctx, func(id string, _ Desired) error { pending = append(pending, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 || pending[0] != a {
		t.Fatalf("pending = %v, want [%s]", pending, a)
	}
	got, err := s.Applied(ctx, a, 2)
	if err != nil || got.Applied != 2 || got.Pending() {
		t.Fatalf("applied 2: %+v, %v", got, err)
	}
	if again, err := s.Applied(ctx, a, 1); err != nil || again.Applied != 2 {
		t.Fatalf("a late report moved applied back: %+v, %v", again, err)
	}
	pending = nil
	_ = s.Pending(ctx, func(id string, _ Desired) error { pending = append(pending, id); return nil })
	if len(pending) != 0 {
		t.Fatalf("pending after apply = %v", pending)
	}
	if len(seen) != 3 {
		t.Fatalf("%d notifications, want 3 (two generations, one apply)", len(seen))
	}
	st, err := db.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.AuditEntries != 3 {
		t.Fatalf("%d audit entries, want 3", st.AuditEntries)
	}
	if d, err := s.Of(ctx, b); err != nil || d.Generation != 0 {
		t.Fatalf("untouched device: %+v, %v", d, err)
	}
}

func TestUnknownDevice(t *testing.T) {
	ctx := context.Background()
	s, db := setup(t, a)
	before, _ := db.Stats(ctx)
	if _, err := s.Set(ctx, "urn:dev:embark:acme:nobody", "operator", func(d *Desired) { d.Rotate = true }); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("Set on an unknown device: %v", err)
	}
	if _, err := s.Of(ctx, "urn:dev:embark:acme:nobody"); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("Of an unknown device: %v", err)
	}
	if after, _ := db.Stats(ctx); after != before {
		t.Fatal("refused change wrote to the registry")
	}
}
