package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

func testUpdate(t *testing.T, open Opener) {
	t.Run("fail/fn-error-rolls-back-everything", func(t *testing.T) {
		s := open(t)
		seeded := putDevices(t, s, newDevice("SN-1"))[0]
		putCerts(t, s, newCert(seeded.ID, "01", t0))
		appendEntries(t, s, newEntry("import", ""))
		before := takeSnapshot(t, s, device.ID("acme", "SN-2"))
		err := s.Update(t.Context(), func(tx store.Tx) error {
			d := newDevice("SN-2")
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
			old, err := tx.Device(seeded.ID)
			if err != nil {
				return err
			}
			old.State = device.Revoked
			if err := tx.PutDevice(&old); err != nil {
				return err
			}
			if err := tx.PutCertificate(newCert(d.ID, "02", t0)); err != nil {
				return err
			}
			if err := tx.DeleteCertificate("01"); err != nil {
				return err
			}
			if err := tx.PutManufacturer(newManufacturer("acme")); err != nil {
				return err
			}
			if _, err := tx.AppendAudit(newEntry("enroll", d.ID)); err != nil {
				return err
			}
			return fmt.Errorf("late failure: %w", errBoom)
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Update: err = %v, want %v", err, errBoom)
		}
		unchanged(t, s, before, device.ID("acme", "SN-2"))
		view(t, s, func(r store.Reader) error {
			if _, err := r.DeviceByIDevIDKey(newDevice("SN-2").Provenance.IDevIDKeySHA256); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("IDevID index of a rolled-back device: err = %v, want store.ErrNotFound", err)
			}
			if _, err := r.Certificate("02"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("rolled-back certificate: err = %v, want store.ErrNotFound", err)
			}
			if _, err := r.Manufacturer("acme"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("rolled-back manufacturer: err = %v, want store.ErrNotFound", err)
			}
			return nil
		})
	})

	t.Run("fail/fn-error-restores-written-back-revision", func(t *testing.T) {
		// PutDevice writes the new revision back into the caller's
		// device; when the Update fails, the caller's device must again
		// carry the stored revision, so that it can simply retry.
		s := open(t)
		d := putDevices(t, s, newDevice("SN-1"))[0]
		d.State = device.Onboarded
		err := s.Update(t.Context(), func(tx store.Tx) error {
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Update: err = %v, want %v", err, errBoom)
		}
		if d.Revision != 1 {
			t.Fatalf("Revision after a failed Update = %d, want 1", d.Revision)
		}
		update(t, s, func(tx store.Tx) error { return tx.PutDevice(&d) })
		if d.Revision != 2 {
			t.Fatalf("Revision after the retry = %d, want 2", d.Revision)
		}
	})

	t.Run("fail/context-cancelled-before-update", func(t *testing.T) {
		s := open(t)
		before := takeSnapshot(t, s)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		ran := false
		err := s.Update(ctx, func(tx store.Tx) error {
			ran = true
			d := newDevice("SN-1")
			return tx.PutDevice(&d)
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Update: err = %v, want context.Canceled", err)
		}
		if ran {
			t.Fatalf("Update ran its function with a cancelled context")
		}
		unchanged(t, s, before)
	})

	t.Run("fail/context-cancelled-before-view", func(t *testing.T) {
		s := open(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		ran := false
		err := s.View(ctx, func(store.Reader) error { ran = true; return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("View: err = %v, want context.Canceled", err)
		}
		if ran {
			t.Fatalf("View ran its function with a cancelled context")
		}
	})

	t.Run("fail/view-returns-fn-error", func(t *testing.T) {
		s := open(t)
		err := s.View(t.Context(), func(store.Reader) error { return errBoom })
		if !errors.Is(err, errBoom) {
			t.Fatalf("View: err = %v, want %v", err, errBoom)
		}
	})
}

func testConcurrency(t *testing.T, open Opener) {
	t.Run("ok/200-concurrent-updates-all-land", func(t *testing.T) {
		s := open(t)
		counter := putDevices(t, s, newDevice("counter"))[0]
		const n = 200
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				errs[i] = s.Update(context.Background(), func(tx store.Tx) error {
					d := newDevice(fmt.Sprintf("W-%03d", i))
					if err := tx.PutDevice(&d); err != nil {
						return err
					}
					c, err := tx.Device(counter.ID)
					if err != nil {
						return err
					}
					c.Enrollments++
					if err := tx.PutDevice(&c); err != nil {
						return err
					}
					if err := tx.PutCertificate(newCert(d.ID, fmt.Sprintf("%04x", i+1), t0)); err != nil {
						return err
					}
					_, err = tx.AppendAudit(newEntry("enroll", d.ID))
					return err
				})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Update %d: %v", i, err)
			}
		}
		view(t, s, func(r store.Reader) error {
			c, err := r.Device(counter.ID)
			if err != nil {
				return err
			}
			if c.Enrollments != n || c.Revision != n+1 {
				t.Errorf("counter: Enrollments %d, Revision %d; want %d, %d", c.Enrollments, c.Revision, n, n+1)
			}
			for i := range n {
				id := device.ID("acme", fmt.Sprintf("W-%03d", i))
				if _, err := r.Device(id); err != nil {
					t.Errorf("Device(%s): %v", id, err)
				}
			}
			es := allEntries(t, r)
			if len(es) != n {
				t.Errorf("audit entries = %d, want %d", len(es), n)
			}
			if err := audit.VerifyChain(audit.Entry{}, es); err != nil {
				t.Errorf("VerifyChain: %v", err)
			}
			return nil
		})
		st, err := s.Stats(t.Context())
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if st.Devices != n+1 || st.Certificates != n || st.AuditEntries != n {
			t.Fatalf("Stats = %+v, want %d devices, %d certificates, %d entries", st, n+1, n, n)
		}
	})

	t.Run("ok/optimistic-cas-counters-add-up", func(t *testing.T) {
		// Read outside the transaction, write with compare-and-swap, retry
		// on conflict: no increment may be lost or counted twice.
		s := open(t)
		counter := putDevices(t, s, newDevice("counter"))[0]
		const workers, each = 8, 5
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for range each {
					for {
						var d device.Device
						err := s.View(context.Background(), func(r store.Reader) error {
							var err error
							d, err = r.Device(counter.ID)
							return err
						})
						if err != nil {
							errs[w] = err
							return
						}
						d.Renewals++
						err = s.Update(context.Background(), func(tx store.Tx) error {
							dd := d
							return tx.PutDevice(&dd)
						})
						if err == nil {
							break
						}
						if !errors.Is(err, store.ErrConflict) {
							errs[w] = err
							return
						}
					}
				}
			})
		}
		wg.Wait()
		for w, err := range errs {
			if err != nil {
				t.Errorf("worker %d: %v", w, err)
			}
		}
		view(t, s, func(r store.Reader) error {
			d, err := r.Device(counter.ID)
			if err != nil {
				return err
			}
			if d.Renewals != workers*each || d.Revision != workers*each+1 {
				t.Errorf("counter: Renewals %d, Revision %d; want %d, %d", d.Renewals, d.Revision, workers*each, workers*each+1)
			}
			return nil
		})
	})

	t.Run("ok/failing-updates-leave-others-intact", func(t *testing.T) {
		s := open(t)
		const n = 120
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				errs[i] = s.Update(context.Background(), func(tx store.Tx) error {
					d := newDevice(fmt.Sprintf("W-%03d", i))
					if err := tx.PutDevice(&d); err != nil {
						return err
					}
					if _, err := tx.AppendAudit(newEntry("enroll", d.ID)); err != nil {
						return err
					}
					if i%3 == 0 {
						return fmt.Errorf("update %d: %w", i, errBoom)
					}
					return nil
				})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if i%3 == 0 && !errors.Is(err, errBoom) {
				t.Errorf("Update %d: err = %v, want %v", i, err, errBoom)
			}
			if i%3 != 0 && err != nil {
				t.Errorf("Update %d: %v", i, err)
			}
		}
		view(t, s, func(r store.Reader) error {
			for i := range n {
				id := device.ID("acme", fmt.Sprintf("W-%03d", i))
				_, err := r.Device(id)
				if i%3 == 0 && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Device(%s) of a failed Update: err = %v, want store.ErrNotFound", id, err)
				}
				if i%3 != 0 && err != nil {
					t.Errorf("Device(%s): %v", id, err)
				}
			}
			es := allEntries(t, r)
			if len(es) != n-n/3 {
				t.Errorf("audit entries = %d, want %d", len(es), n-n/3)
			}
			if err := audit.VerifyChain(audit.Entry{}, es); err != nil {
				t.Errorf("VerifyChain: %v", err)
			}
			return nil
		})
	})
}

func testIsolation(t *testing.T, open Opener) {
	t.Run("ok/values-outlive-their-transaction", func(t *testing.T) {
		s := open(t)
		d := putDevices(t, s, newDevice("SN-1"))[0]
		c := newCert(d.ID, "01", t0)
		m := newManufacturer("acme")
		putCerts(t, s, c)
		update(t, s, func(tx store.Tx) error { return tx.PutManufacturer(m) })
		sealed := appendEntries(t, s, newEntry("enroll", d.ID))[0]

		var (
			gotD  device.Device
			gotC  device.Certificate
			gotCs []device.Certificate
			gotM  device.Manufacturer
			gotMs []device.Manufacturer
			gotE  audit.Entry
		)
		view(t, s, func(r store.Reader) error {
			var err error
			if gotD, err = r.Device(d.ID); err != nil {
				return err
			}
			if gotC, err = r.Certificate(c.Serial); err != nil {
				return err
			}
			if gotCs, err = r.CertificatesOf(d.ID); err != nil {
				return err
			}
			if gotM, err = r.Manufacturer(m.Name); err != nil {
				return err
			}
			if gotMs, err = r.Manufacturers(); err != nil {
				return err
			}
			gotE, err = r.LastAudit()
			return err
		})
		// Rewrite and grow the store so that the pages the values were
		// read from are reused.
		for round := range 4 {
			update(t, s, func(tx store.Tx) error {
				for i := range 50 {
					dd := newDevice(fmt.Sprintf("F-%d-%02d", round, i))
					if err := tx.PutDevice(&dd); err != nil {
						return err
					}
					if err := tx.PutCertificate(newCert(dd.ID, fmt.Sprintf("%02x%02x", round+16, i+16), t0)); err != nil {
						return err
					}
				}
				mm := m
				mm.Roots = [][]byte{bytes.Repeat([]byte{0xee}, 64)}
				return tx.PutManufacturer(mm)
			})
		}
		update(t, s, func(tx store.Tx) error { return tx.PutManufacturer(m) })
		sameDevice(t, "kept Device", gotD, d)
		sameCert(t, "kept Certificate", gotC, c)
		if len(gotCs) != 1 {
			t.Fatalf("kept CertificatesOf: %d", len(gotCs))
		}
		sameCert(t, "kept CertificatesOf[0]", gotCs[0], c)
		sameManufacturer(t, "kept Manufacturer", gotM, m)
		if len(gotMs) != 1 {
			t.Fatalf("kept Manufacturers: %d", len(gotMs))
		}
		sameManufacturer(t, "kept Manufacturers[0]", gotMs[0], m)
		sameEntry(t, "kept LastAudit", gotE, sealed)

		// Mutating what was returned does not change the store.
		gotC.DER[0] ^= 0xff
		gotCs[0].DER[1] ^= 0xff
		gotM.Roots[0][0] ^= 0xff
		gotMs[0].ManifestKeys[0][0] ^= 0xff
		gotE.Hash[0] ^= 0xff
		view(t, s, func(r store.Reader) error {
			cc, err := r.Certificate(c.Serial)
			if err != nil {
				return err
			}
			sameCert(t, "Certificate after mutating a returned copy", cc, c)
			mm, err := r.Manufacturer(m.Name)
			if err != nil {
				return err
			}
			sameManufacturer(t, "Manufacturer after mutating a returned copy", mm, m)
			last, err := r.LastAudit()
			if err != nil {
				return err
			}
			sameEntry(t, "LastAudit after mutating a returned copy", last, sealed)
			return nil
		})
	})

	t.Run("ok/written-slices-not-retained", func(t *testing.T) {
		s := open(t)
		d := putDevices(t, s, newDevice("SN-1"))[0]
		c := newCert(d.ID, "01", t0)
		m := newManufacturer("acme")
		update(t, s, func(tx store.Tx) error {
			cc := c
			cc.DER = bytes.Clone(c.DER)
			mm := m
			mm.Roots = [][]byte{bytes.Clone(m.Roots[0])}
			if err := tx.PutCertificate(cc); err != nil {
				return err
			}
			if err := tx.PutManufacturer(mm); err != nil {
				return err
			}
			// The caller reuses its buffers before the commit.
			cc.DER[0] ^= 0xff
			mm.Roots[0][0] ^= 0xff
			return nil
		})
		view(t, s, func(r store.Reader) error {
			got, err := r.Certificate(c.Serial)
			if err != nil {
				return err
			}
			sameCert(t, "Certificate", got, c)
			gotM, err := r.Manufacturer(m.Name)
			if err != nil {
				return err
			}
			sameManufacturer(t, "Manufacturer", gotM, m)
			return nil
		})
	})

	t.Run("ok/reads-see-own-writes", func(t *testing.T) {
		s := open(t)
		var seen device.Certificate
		update(t, s, func(tx store.Tx) error {
			d := newDevice("SN-1")
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
			if err := tx.PutCertificate(newCert(d.ID, "01", t0)); err != nil {
				return err
			}
			var err error
			seen, err = tx.Certificate("01")
			return err
		})
		sameCert(t, "Certificate read in its own Update", seen, newCert(device.ID("acme", "SN-1"), "01", t0))
	})
}
