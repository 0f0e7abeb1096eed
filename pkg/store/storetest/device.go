package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

func testDevice(t *testing.T, open Opener) {
	t.Run("ok/put-new-then-get", func(t *testing.T) {
		s := open(t)
		d := newDevice("SN-1")
		update(t, s, func(tx store.Tx) error {
			d.Revision = 0
			return tx.PutDevice(&d)
		})
		if d.Revision != 1 {
			t.Fatalf("Revision after the first PutDevice = %d, want 1", d.Revision)
		}
		view(t, s, func(r store.Reader) error {
			got, err := r.Device(d.ID)
			if err != nil {
				return err
			}
			sameDevice(t, "Device", got, d)
			got, err = r.DeviceByIDevIDKey(d.Provenance.IDevIDKeySHA256)
			if err != nil {
				return err
			}
			sameDevice(t, "DeviceByIDevIDKey", got, d)
			return nil
		})
	})

	t.Run("ok/update-with-stored-revision", func(t *testing.T) {
		s := open(t)
		d := putDevices(t, s, newDevice("SN-1"))[0]
		d.State = device.Onboarded
		d.Current = "0a1b"
		d.Zone = "plant-floor"
		d.Enrollments = 1
		d.UpdatedAt = t0.Add(time.Minute)
		want := d
		update(t, s, func(tx store.Tx) error {
			d.Revision = want.Revision
			return tx.PutDevice(&d)
		})
		if d.Revision != want.Revision+1 {
			t.Fatalf("Revision = %d, want %d", d.Revision, want.Revision+1)
		}
		view(t, s, func(r store.Reader) error {
			got, err := r.Device(d.ID)
			if err != nil {
				return err
			}
			sameDevice(t, "Device", got, d)
			return nil
		})
	})

	t.Run("ok/put-read-put-in-one-update", func(t *testing.T) {
		s := open(t)
		var rev uint64
		update(t, s, func(tx store.Tx) error {
			d := newDevice("SN-1")
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
			got, err := tx.Device(d.ID)
			if err != nil {
				return err
			}
			got.State = device.Held
			if err := tx.PutDevice(&got); err != nil {
				return err
			}
			rev = got.Revision
			return nil
		})
		if rev != 2 {
			t.Fatalf("Revision after two writes in one Update = %d, want 2", rev)
		}
	})

	t.Run("ok/index-moves-when-key-changes", func(t *testing.T) {
		s := open(t)
		d := putDevices(t, s, newDevice("SN-1"))[0]
		oldKey := d.Provenance.IDevIDKeySHA256
		d.Provenance.IDevIDKeySHA256 = hexOf("replacement key")
		rev := d.Revision
		update(t, s, func(tx store.Tx) error {
			d.Revision = rev
			return tx.PutDevice(&d)
		})
		view(t, s, func(r store.Reader) error {
			if _, err := r.DeviceByIDevIDKey(oldKey); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("DeviceByIDevIDKey(old key): err = %v, want store.ErrNotFound", err)
			}
			got, err := r.DeviceByIDevIDKey(d.Provenance.IDevIDKeySHA256)
			if err != nil {
				return err
			}
			sameDevice(t, "DeviceByIDevIDKey(new key)", got, d)
			return nil
		})
		// The old key is free again.
		other := newDevice("SN-2")
		other.Provenance.IDevIDKeySHA256 = oldKey
		other = putDevices(t, s, other)[0]
		view(t, s, func(r store.Reader) error {
			got, err := r.DeviceByIDevIDKey(oldKey)
			if err != nil {
				return err
			}
			sameDevice(t, "DeviceByIDevIDKey(old key, new owner)", got, other)
			return nil
		})
	})

	t.Run("ok/clearing-key-removes-index", func(t *testing.T) {
		s := open(t)
		d := putDevices(t, s, newDevice("SN-1"))[0]
		oldKey := d.Provenance.IDevIDKeySHA256
		d.Provenance.IDevIDKeySHA256 = ""
		rev := d.Revision
		update(t, s, func(tx store.Tx) error {
			d.Revision = rev
			return tx.PutDevice(&d)
		})
		view(t, s, func(r store.Reader) error {
			if _, err := r.DeviceByIDevIDKey(oldKey); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("DeviceByIDevIDKey(cleared key): err = %v, want store.ErrNotFound", err)
			}
			return nil
		})
	})

	t.Run("fail/not-found", func(t *testing.T) {
		s := open(t)
		putDevices(t, s, newDevice("SN-1"))
		view(t, s, func(r store.Reader) error {
			if _, err := r.Device(device.ID("acme", "SN-404")); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Device(unknown): err = %v, want store.ErrNotFound", err)
			}
			if _, err := r.DeviceByIDevIDKey(hexOf("unknown")); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("DeviceByIDevIDKey(unknown): err = %v, want store.ErrNotFound", err)
			}
			if _, err := r.DeviceByIDevIDKey(""); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("DeviceByIDevIDKey(\"\"): err = %v, want store.ErrNotFound", err)
			}
			return nil
		})
	})

	// Refused writes. Each case seeds devices SN-1 (Revision 1) and SN-2
	// (Revision 2), then tries one PutDevice. The function goes on after the
	// refusal and its transaction commits: the refusal alone must have
	// written nothing.
	tests := []struct {
		name    string
		put     func(seeded []device.Device) device.Device
		wantErr error // nil: any error
	}{
		{"fail/stale-revision", func(ds []device.Device) device.Device {
			d := ds[1]
			d.Revision--
			d.State = device.Denied
			return d
		}, store.ErrConflict},
		{"fail/revision-ahead", func(ds []device.Device) device.Device {
			d := ds[0]
			d.Revision += 5
			d.State = device.Denied
			return d
		}, store.ErrConflict},
		{"fail/new-device-with-existing-id", func(ds []device.Device) device.Device {
			d := newDevice("SN-1")
			d.Provenance.IDevIDKeySHA256 = hexOf("another key")
			return d
		}, store.ErrConflict},
		{"fail/absent-device-with-revision", func(ds []device.Device) device.Device {
			d := newDevice("SN-3")
			d.Revision = 1
			return d
		}, store.ErrConflict},
		{"fail/new-device-with-taken-idevid-key", func(ds []device.Device) device.Device {
			d := newDevice("SN-3")
			d.Provenance.IDevIDKeySHA256 = ds[0].Provenance.IDevIDKeySHA256
			return d
		}, store.ErrConflict},
		{"fail/key-change-to-taken-idevid-key", func(ds []device.Device) device.Device {
			d := ds[1]
			d.Provenance.IDevIDKeySHA256 = ds[0].Provenance.IDevIDKeySHA256
			return d
		}, store.ErrConflict},
		{"fail/empty-id", func(ds []device.Device) device.Device {
			d := newDevice("SN-3")
			d.ID = ""
			return d
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			seeded := putDevices(t, s, newDevice("SN-1"), newDevice("SN-2"))
			seeded[1].Cause = "renew"
			update(t, s, func(tx store.Tx) error {
				seeded[1].Revision = 1
				return tx.PutDevice(&seeded[1])
			})
			before := takeSnapshot(t, s)
			d := tt.put(seeded)
			rev := d.Revision
			var putErr error
			update(t, s, func(tx store.Tx) error {
				d.Revision = rev
				putErr = tx.PutDevice(&d)
				return nil
			})
			switch {
			case putErr == nil:
				t.Fatalf("PutDevice succeeded, want an error")
			case tt.wantErr != nil && !errors.Is(putErr, tt.wantErr):
				t.Fatalf("PutDevice: err = %v, want %v", putErr, tt.wantErr)
			}
			if d.Revision != rev {
				t.Fatalf("refused PutDevice changed Revision from %d to %d", rev, d.Revision)
			}
			unchanged(t, s, before)
			// The same refusal returned from the function fails the Update.
			err := s.Update(t.Context(), func(tx store.Tx) error {
				d.Revision = rev
				return tx.PutDevice(&d)
			})
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Update: err = %v, want %v", err, tt.wantErr)
			}
			unchanged(t, s, before)
		})
	}
}

func testDevices(t *testing.T, open Opener) {
	serials := []string{"SN-1", "SN-2", "SN-3", "SN-4", "SN-5"}
	ids := make([]string, len(serials))
	for i, sn := range serials {
		ids[i] = device.ID("acme", sn)
	}
	errStop := errors.New("storetest: stop")
	tests := []struct {
		name    string
		after   string
		stopAt  int // fn returns false after this many devices; 0: never
		failAt  int // fn returns errStop at this device; 0: never
		want    []string
		wantErr error
	}{
		{name: "ok/all", after: "", want: ids},
		{name: "ok/after-first", after: ids[0], want: ids[1:]},
		{name: "ok/after-middle", after: ids[2], want: ids[3:]},
		{name: "ok/after-between-keys", after: ids[1] + "0", want: ids[2:]},
		{name: "ok/after-before-all", after: "a", want: ids},
		{name: "ok/after-last", after: ids[4], want: nil},
		{name: "ok/after-beyond-all", after: "zzz", want: nil},
		{name: "ok/early-stop", after: "", stopAt: 2, want: ids[:2]},
		{name: "ok/page-after-stop", after: ids[1], stopAt: 2, want: ids[2:4]},
		{name: "fail/fn-error", after: "", failAt: 3, want: ids[:3], wantErr: errStop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			// Insert out of order: iteration order must not depend on it.
			var ds []device.Device
			for _, i := range []int{3, 0, 4, 1, 2} {
				ds = append(ds, newDevice(serials[i]))
			}
			putDevices(t, s, ds...)
			var got []string
			err := s.View(t.Context(), func(r store.Reader) error {
				return r.Devices(tt.after, func(d device.Device) (bool, error) {
					got = append(got, d.ID)
					if tt.failAt > 0 && len(got) == tt.failAt {
						return true, errStop
					}
					return tt.stopAt == 0 || len(got) < tt.stopAt, nil
				})
			})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Devices: err = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Devices: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Devices(%q) visited %q, want %q", tt.after, got, tt.want)
			}
		})
	}
	t.Run("ok/empty", func(t *testing.T) {
		s := open(t)
		n := 0
		view(t, s, func(r store.Reader) error {
			return r.Devices("", func(device.Device) (bool, error) { n++; return true, nil })
		})
		if n != 0 {
			t.Fatalf("Devices of an empty store visited %d", n)
		}
	})
}
