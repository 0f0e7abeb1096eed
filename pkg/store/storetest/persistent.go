package storetest

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// RunPersistent runs the reopen tests against a store kept in a file: it
// writes, closes, opens the same path again and reads everything back.
func RunPersistent(t *testing.T, open func(t *testing.T, path string) store.Store) {
	t.Run("ok/reopen-reads-back-everything", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "registry")
		s := open(t, path)
		ds := putDevices(t, s, newDevice("SN-1"), newDevice("SN-2"))
		ds[0].State = device.Onboarded
		ds[0].Current = "01"
		rev := ds[0].Revision
		update(t, s, func(tx store.Tx) error {
			ds[0].Revision = rev
			return tx.PutDevice(&ds[0])
		})
		certs := []device.Certificate{newCert(ds[0].ID, "01", t0), newCert(ds[0].ID, "02", t0.Add(time.Hour))}
		putCerts(t, s, certs...)
		m := newManufacturer("acme")
		update(t, s, func(tx store.Tx) error { return tx.PutManufacturer(m) })
		sealed := appendEntries(t, s, newEntry("import", ""), newEntry("enroll", ds[0].ID))
		before := takeSnapshot(t, s)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		s = open(t, path)
		if after := takeSnapshot(t, s); !snapshotsEqual(before, after) {
			t.Fatalf("after reopening:\n got %+v\nwant %+v", after, before)
		}
		view(t, s, func(r store.Reader) error {
			got, err := r.DeviceByIDevIDKey(ds[1].Provenance.IDevIDKeySHA256)
			if err != nil {
				return err
			}
			sameDevice(t, "DeviceByIDevIDKey after reopening", got, ds[1])
			c, err := r.Certificate("02")
			if err != nil {
				return err
			}
			sameCert(t, "Certificate after reopening", c, certs[1])
			es := allEntries(t, r)
			if err := audit.VerifyChain(audit.Entry{}, es); err != nil {
				t.Fatalf("VerifyChain after reopening: %v", err)
			}
			return nil
		})

		// Revisions and the audit chain continue where they were.
		stale := ds[0]
		stale.Revision = rev
		err := s.Update(t.Context(), func(tx store.Tx) error {
			dd := stale
			return tx.PutDevice(&dd)
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("PutDevice with a stale revision after reopening: err = %v, want store.ErrConflict", err)
		}
		next := appendEntries(t, s, newEntry("renew", ds[0].ID))[0]
		if err := audit.Follows(sealed[len(sealed)-1], next); err != nil {
			t.Fatalf("entry appended after reopening: %v", err)
		}
	})

	t.Run("ok/rolled-back-update-not-persisted", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "registry")
		s := open(t, path)
		putDevices(t, s, newDevice("SN-1"))
		err := s.Update(t.Context(), func(tx store.Tx) error {
			d := newDevice("SN-2")
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Update: err = %v, want %v", err, errBoom)
		}
		before := takeSnapshot(t, s)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		s = open(t, path)
		if after := takeSnapshot(t, s); !snapshotsEqual(before, after) {
			t.Fatalf("after reopening:\n got %+v\nwant %+v", after, before)
		}
		view(t, s, func(r store.Reader) error {
			if _, err := r.Device(device.ID("acme", "SN-2")); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("rolled-back device after reopening: err = %v, want store.ErrNotFound", err)
			}
			return nil
		})
	})
}
