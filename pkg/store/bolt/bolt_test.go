package bolt

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/storetest"
)

// openTestDB opens a registry in t.TempDir(). On cleanup it closes the
// registry (if the test has not) and checks the file's consistency.
func openTestDB(t testing.TB, opts ...Option) *DB {
	t.Helper()
	return openTestDBAt(t, filepath.Join(t.TempDir(), "registry.db"), opts...)
}

func openTestDBAt(t testing.TB, path string, opts ...Option) *DB {
	t.Helper()
	s, err := Open(path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		checkFile(t, path)
	})
	return s
}

// checkFile runs bbolt's consistency check on a closed registry file.
func checkFile(t testing.TB, path string) {
	t.Helper()
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Errorf("check %s: open: %v", path, err)
		return
	}
	defer bdb.Close()
	err = bdb.View(func(btx *bbolt.Tx) error {
		var errs []error
		for err := range btx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Errorf("check %s: %v", path, err)
	}
}

func TestConformance(t *testing.T) {
	// The suite runs once per committer configuration: grouped commits
	// and one transaction per Update.
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"max-batch-default", nil},
		{"max-batch-1", []Option{WithMaxBatch(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store { return openTestDB(t, tc.opts...) })
		})
	}
}

func TestPersistent(t *testing.T) {
	storetest.RunPersistent(t, func(t *testing.T, path string) store.Store {
		return openTestDBAt(t, path)
	})
}

func TestOpen(t *testing.T) {
	t.Run("ok/new-file-mode-0600", func(t *testing.T) {
		s := openTestDB(t)
		fi, err := os.Stat(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Fatalf("registry file mode %v, want no group or other access", perm)
		}
	})
	t.Run("fail/locked-by-another-handle", func(t *testing.T) {
		s := openTestDB(t)
		second, err := Open(s.Path(), WithLockTimeout(50*time.Millisecond))
		if !errors.Is(err, ErrLocked) {
			if second != nil {
				second.Close()
			}
			t.Fatalf("second Open: err = %v, want ErrLocked", err)
		}
		// Once the first handle is closed, the file opens again.
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		openTestDBAt(t, s.Path(), WithLockTimeout(50*time.Millisecond))
	})
	t.Run("fail/newer-schema", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "registry.db")
		bdb, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = bdb.Update(func(btx *bbolt.Tx) error {
			b, err := btx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put(keySchema, []byte{schemaVersion + 1})
		})
		if cerr := bdb.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path); !errors.Is(err, ErrSchema) {
			t.Fatalf("Open: err = %v, want ErrSchema", err)
		}
		// The refused open released the lock.
		bdb, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatalf("open after a refused Open: %v", err)
		}
		bdb.Close()
	})
	t.Run("fail/missing-directory", func(t *testing.T) {
		_, err := Open(filepath.Join(t.TempDir(), "missing", "registry.db"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Open: err = %v, want fs.ErrNotExist", err)
		}
	})
	for _, tc := range []struct {
		name string
		opt  Option
	}{
		{"fail/max-batch-0", WithMaxBatch(0)},
		{"fail/nil-logger", WithLogger(nil)},
		{"fail/lock-timeout-0", WithLockTimeout(0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "registry.db")
			if _, err := Open(path, tc.opt); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Open: err = %v, want ErrInvalid", err)
			}
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("refused Open created the file: %v", err)
			}
		})
	}
}

// TestInvalid checks what the bolt backend refuses beyond the conformance
// suite, with its own sentinel.
func TestInvalid(t *testing.T) {
	id := device.ID("acme", "SN-1")
	cert := func(serial, deviceID string) device.Certificate {
		return device.Certificate{Serial: serial, DeviceID: deviceID, DER: []byte{1}, NotBefore: time.Unix(1, 0)}
	}
	tests := []struct {
		name  string
		write func(tx store.Tx) error
	}{
		{"fail/nil-device", func(tx store.Tx) error { return tx.PutDevice(nil) }},
		{"fail/empty-device-id", func(tx store.Tx) error { return tx.PutDevice(&device.Device{}) }},
		{"fail/device-id-with-nul", func(tx store.Tx) error { return tx.PutDevice(&device.Device{ID: "acme:a\x00b"}) }},
		{"fail/serial-upper-case", func(tx store.Tx) error { return tx.PutCertificate(cert("0A1B", id)) }},
		{"fail/serial-not-hex", func(tx store.Tx) error { return tx.PutCertificate(cert("0x1b", id)) }},
		{"fail/serial-empty", func(tx store.Tx) error { return tx.PutCertificate(cert("", id)) }},
		{"fail/certificate-device-id-empty", func(tx store.Tx) error { return tx.PutCertificate(cert("01", "")) }},
		{"fail/certificate-device-id-with-nul", func(tx store.Tx) error { return tx.PutCertificate(cert("01", "a\x00")) }},
		{"fail/manufacturer-name-empty", func(tx store.Tx) error { return tx.PutManufacturer(device.Manufacturer{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTestDB(t)
			before, err := s.Stats(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var writeErr error
			if err := s.Update(t.Context(), func(tx store.Tx) error {
				writeErr = tt.write(tx)
				return nil
			}); err != nil {
				t.Fatalf("Update: %v", err)
			}
			if !errors.Is(writeErr, ErrInvalid) {
				t.Fatalf("write: err = %v, want ErrInvalid", writeErr)
			}
			after, err := s.Stats(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			before.Bytes, after.Bytes = 0, 0
			if before != after {
				t.Fatalf("refused write changed the store: %+v -> %+v", before, after)
			}
			if err := s.View(t.Context(), func(r store.Reader) error {
				ms, err := r.Manufacturers()
				if len(ms) != 0 {
					t.Errorf("Manufacturers = %d, want none", len(ms))
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("fail/nil-update-function", func(t *testing.T) {
		s := openTestDB(t)
		if err := s.Update(t.Context(), nil); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Update(nil): err = %v, want ErrInvalid", err)
		}
	})
}

// TestTimesStoredInSeconds documents the time resolution: sub-second parts
// are dropped, the instant in whole seconds survives, in UTC, and the audit
// chain still verifies.
func TestTimesStoredInSeconds(t *testing.T) {
	s := openTestDB(t)
	at := time.Date(2026, 5, 6, 7, 8, 9, 987654321, time.FixedZone("CEST", 2*3600))
	d := device.Device{ID: device.ID("acme", "SN-1"), UpdatedAt: at}
	var sealed audit.Entry
	if err := s.Update(t.Context(), func(tx store.Tx) error {
		dd := d
		if err := tx.PutDevice(&dd); err != nil {
			return err
		}
		var err error
		sealed, err = tx.AppendAudit(audit.Entry{Time: at, Action: "import"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.View(t.Context(), func(r store.Reader) error {
		got, err := r.Device(d.ID)
		if err != nil {
			return err
		}
		if want := at.Truncate(time.Second).UTC(); got.UpdatedAt != want {
			t.Errorf("UpdatedAt = %v, want %v", got.UpdatedAt, want)
		}
		e, err := r.LastAudit()
		if err != nil {
			return err
		}
		if err := audit.VerifyChain(audit.Entry{}, []audit.Entry{e}); err != nil {
			t.Errorf("VerifyChain: %v", err)
		}
		if string(e.Hash) != string(sealed.Hash) {
			t.Errorf("stored hash differs from the sealed one")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
