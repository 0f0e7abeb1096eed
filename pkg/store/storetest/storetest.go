package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/embark-iot/embark/pkg/store"
)

// Opener returns a new, empty store for one subtest and arranges its
// cleanup with t.Cleanup. The store may already be closed by then.
type Opener func(t *testing.T) store.Store

// PathOpener opens the store kept at path, creating it if needed, and
// arranges its cleanup with t.Cleanup. The store may already be closed by
// then.
type PathOpener func(t *testing.T, path string) store.Store

// Run runs the conformance suite against the stores open returns.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("device", func(t *testing.T) { testDevice(t, open) })
	t.Run("devices", func(t *testing.T) { testDevices(t, open) })
	t.Run("certificate", func(t *testing.T) { testCertificate(t, open) })
	t.Run("manufacturer", func(t *testing.T) { testManufacturer(t, open) })
	t.Run("audit", func(t *testing.T) { testAudit(t, open) })
	t.Run("update", func(t *testing.T) { testUpdate(t, open) })
	t.Run("concurrency", func(t *testing.T) { testConcurrency(t, open) })
	t.Run("isolation", func(t *testing.T) { testIsolation(t, open) })
	t.Run("stats", func(t *testing.T) { testStats(t, open) })
	t.Run("records", func(t *testing.T) { testRecords(t, open) })
	t.Run("close", func(t *testing.T) { testClose(t, open) })
}

func testStats(t *testing.T, open Opener) {
	t.Run("ok/empty", func(t *testing.T) {
		st, err := open(t).Stats(context.Background())
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if st.Devices != 0 || st.Certificates != 0 || st.AuditEntries != 0 {
			t.Fatalf("Stats of an empty store = %+v", st)
		}
	})
	t.Run("ok/counts", func(t *testing.T) {
		s := open(t)
		ds := putDevices(t, s, newDevice("SN-1"), newDevice("SN-2"), newDevice("SN-3"))
		putCerts(t, s,
			newCert(ds[0].ID, "01", t0), newCert(ds[0].ID, "02", t0),
			newCert(ds[1].ID, "03", t0), newCert(ds[2].ID, "04", t0))
		appendEntries(t, s, newEntry("import", ""), newEntry("enroll", ds[0].ID))
		st, err := s.Stats(context.Background())
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if st.Devices != 3 || st.Certificates != 4 || st.AuditEntries != 2 {
			t.Fatalf("Stats = %+v, want 3 devices, 4 certificates, 2 audit entries", st)
		}
		if st.Bytes < 0 {
			t.Fatalf("Stats.Bytes = %d", st.Bytes)
		}
	})
	t.Run("fail/context-cancelled", func(t *testing.T) {
		s := open(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Stats(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Stats with a cancelled context: err = %v, want context.Canceled", err)
		}
	})
}

func testClose(t *testing.T, open Opener) {
	t.Run("ok/close-twice", func(t *testing.T) {
		s := open(t)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
	t.Run("fail/use-after-close", func(t *testing.T) {
		s := open(t)
		putDevices(t, s, newDevice("SN-1"))
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		ran := false
		err := s.Update(context.Background(), func(tx store.Tx) error {
			ran = true
			d := newDevice("SN-2")
			return tx.PutDevice(&d)
		})
		if !errors.Is(err, store.ErrClosed) {
			t.Fatalf("Update after Close: err = %v, want store.ErrClosed", err)
		}
		if ran {
			t.Fatalf("Update after Close ran its function")
		}
		err = s.View(context.Background(), func(r store.Reader) error {
			ran = true
			return nil
		})
		if !errors.Is(err, store.ErrClosed) {
			t.Fatalf("View after Close: err = %v, want store.ErrClosed", err)
		}
		if ran {
			t.Fatalf("View after Close ran its function")
		}
		if _, err := s.Stats(context.Background()); !errors.Is(err, store.ErrClosed) {
			t.Fatalf("Stats after Close: err = %v, want store.ErrClosed", err)
		}
	})
}
