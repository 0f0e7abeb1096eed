package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// t0 is the time of every fixture, in whole seconds.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// errBoom is what failing functions return.
var errBoom = errors.New("storetest: boom")

// hexOf returns a deterministic lower-case hex SHA-256 of s.
func hexOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// newDevice returns a new (Revision 0) device of manufacturer "acme".
func newDevice(serial string) device.Device {
	return device.Device{
		ID: device.ID("acme", serial),
		Provenance: device.Provenance{
			Manufacturer:    "acme",
			Serial:          serial,
			IDevIDKeySHA256: hexOf("idevid:" + serial),
			Model:           "sensor-7",
			FirmwareVersion: "1.4.2",
			FirmwareSHA256:  hexOf("fw-1.4.2"),
			ManufacturedAt:  t0.Add(-90 * 24 * time.Hour),
			Site:            "plant-1",
			Owner:           "operator-a",
		},
		State:     device.Expected,
		Cause:     "import",
		UpdatedAt: t0,
	}
}

// newCert returns a certificate of deviceID with the given serial, issued at
// notBefore. Its DER is filler bytes derived from the serial.
func newCert(deviceID, serial string, notBefore time.Time) device.Certificate {
	der := make([]byte, 0, 96)
	for len(der) < 96 {
		h := sha256.Sum256(append([]byte(serial), byte(len(der))))
		der = append(der, h[:]...)
	}
	return device.Certificate{
		Serial:    serial,
		DeviceID:  deviceID,
		DER:       der,
		KeySHA256: hexOf("ldevid:" + serial),
		Kind:      device.KindEnroll,
		Status:    device.CertIssued,
		NotBefore: notBefore,
		NotAfter:  notBefore.Add(30 * 24 * time.Hour),
	}
}

// newManufacturer returns a trusted manufacturer with one root and one key.
func newManufacturer(name string) device.Manufacturer {
	return device.Manufacturer{
		Name:             name,
		Roots:            [][]byte{[]byte("root-der:" + name)},
		ManifestKeys:     [][]byte{[]byte("manifest-key:" + name)},
		ManifestRevision: 3,
		TrustedAt:        t0,
		Devices:          10,
	}
}

// newEntry returns an unsealed audit entry.
func newEntry(action, deviceID string) audit.Entry {
	return audit.Entry{
		Time:     t0,
		Actor:    "device",
		Action:   action,
		DeviceID: deviceID,
		Outcome:  "ok",
		Policy:   "sha256:abc/allow-known",
	}
}

// normTime makes times comparable with reflect.DeepEqual: UTC, no
// monotonic reading, zero stays zero.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Round(0).UTC()
}

func normDevice(d device.Device) device.Device {
	d.UpdatedAt = normTime(d.UpdatedAt)
	d.Provenance.ManufacturedAt = normTime(d.Provenance.ManufacturedAt)
	return d
}

func normCert(c device.Certificate) device.Certificate {
	c.NotBefore = normTime(c.NotBefore)
	c.NotAfter = normTime(c.NotAfter)
	c.StatusAt = normTime(c.StatusAt)
	return c
}

func normManufacturer(m device.Manufacturer) device.Manufacturer {
	m.TrustedAt = normTime(m.TrustedAt)
	if len(m.Intermediates) == 0 {
		m.Intermediates = nil
	}
	return m
}

func normEntry(e audit.Entry) audit.Entry {
	e.Time = normTime(e.Time)
	if len(e.PrevHash) == 0 {
		e.PrevHash = nil
	}
	return e
}

func sameDevice(t *testing.T, what string, got, want device.Device) {
	t.Helper()
	if g, w := normDevice(got), normDevice(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func sameCert(t *testing.T, what string, got, want device.Certificate) {
	t.Helper()
	if g, w := normCert(got), normCert(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func sameManufacturer(t *testing.T, what string, got, want device.Manufacturer) {
	t.Helper()
	if g, w := normManufacturer(got), normManufacturer(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func sameEntry(t *testing.T, what string, got, want audit.Entry) {
	t.Helper()
	if g, w := normEntry(got), normEntry(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

// update runs fn in an Update that must succeed.
func update(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// view runs fn in a View that must succeed.
func view(t *testing.T, s store.Store, fn func(store.Reader) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// putDevices stores new devices and returns them with their revisions.
func putDevices(t *testing.T, s store.Store, ds ...device.Device) []device.Device {
	t.Helper()
	out := make([]device.Device, len(ds))
	copy(out, ds)
	update(t, s, func(tx store.Tx) error {
		for i := range out {
			out[i].Revision = ds[i].Revision
			if err := tx.PutDevice(&out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return out
}

// putCerts stores certificates.
func putCerts(t *testing.T, s store.Store, cs ...device.Certificate) {
	t.Helper()
	update(t, s, func(tx store.Tx) error {
		for _, c := range cs {
			if err := tx.PutCertificate(c); err != nil {
				return err
			}
		}
		return nil
	})
}

// appendEntries appends entries in one Update and returns them sealed.
func appendEntries(t *testing.T, s store.Store, es ...audit.Entry) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	update(t, s, func(tx store.Tx) error {
		out = out[:0]
		for _, e := range es {
			sealed, err := tx.AppendAudit(e)
			if err != nil {
				return err
			}
			out = append(out, sealed)
		}
		return nil
	})
	return out
}

// snapshot is everything a Reader can list, plus the counts of Stats.
type snapshot struct {
	Devices       []device.Device
	Certificates  map[string][]device.Certificate
	Manufacturers []device.Manufacturer
	Audit         []audit.Entry
	Counts        [3]int
}

// takeSnapshot reads the whole store, normalised for comparison. extraIDs
// names devices whose certificates to list even if the device is absent.
func takeSnapshot(t *testing.T, s store.Store, extraIDs ...string) snapshot {
	t.Helper()
	var snap snapshot
	view(t, s, func(r store.Reader) error {
		snap = snapshot{Certificates: map[string][]device.Certificate{}}
		ids := append([]string(nil), extraIDs...)
		err := r.Devices("", func(d device.Device) (bool, error) {
			snap.Devices = append(snap.Devices, normDevice(d))
			ids = append(ids, d.ID)
			return true, nil
		})
		if err != nil {
			return fmt.Errorf("Devices: %w", err)
		}
		for _, id := range ids {
			cs, err := r.CertificatesOf(id)
			if err != nil {
				return fmt.Errorf("CertificatesOf(%q): %w", id, err)
			}
			for i := range cs {
				cs[i] = normCert(cs[i])
			}
			if len(cs) > 0 {
				snap.Certificates[id] = cs
			}
		}
		ms, err := r.Manufacturers()
		if err != nil {
			return fmt.Errorf("Manufacturers: %w", err)
		}
		for _, m := range ms {
			snap.Manufacturers = append(snap.Manufacturers, normManufacturer(m))
		}
		return r.Audit(0, func(e audit.Entry) (bool, error) {
			snap.Audit = append(snap.Audit, normEntry(e))
			return true, nil
		})
	})
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	snap.Counts = [3]int{st.Devices, st.Certificates, st.AuditEntries}
	return snap
}

func snapshotsEqual(a, b snapshot) bool { return reflect.DeepEqual(a, b) }

// unchanged fails the test if the store differs from before.
func unchanged(t *testing.T, s store.Store, before snapshot, extraIDs ...string) {
	t.Helper()
	if after := takeSnapshot(t, s, extraIDs...); !snapshotsEqual(before, after) {
		t.Fatalf("store changed:\nbefore %+v\n after %+v", before, after)
	}
}

// allEntries returns the whole audit log.
func allEntries(t *testing.T, r store.Reader) []audit.Entry {
	t.Helper()
	var es []audit.Entry
	if err := r.Audit(0, func(e audit.Entry) (bool, error) {
		es = append(es, e)
		return true, nil
	}); err != nil {
		t.Fatalf("Audit: %v", err)
	}
	return es
}
