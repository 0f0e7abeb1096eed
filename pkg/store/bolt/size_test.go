package bolt

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// maxBytesPerDevice is the registry's budget for a device after one
// enrollment and one renewal.
const maxBytesPerDevice = 4096

// fleetWriter writes realistic records: what the onboarding service stores
// for a device over import, enrollment and renewal.
type fleetWriter struct {
	mu  sync.Mutex
	rnd *rand.Rand
}

func newFleetWriter() *fleetWriter {
	return &fleetWriter{rnd: rand.New(rand.NewChaCha8([32]byte{7}))}
}

func (w *fleetWriter) bytes(n int) []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(w.rnd.Uint32())
	}
	return b
}

func (w *fleetWriter) hex(n int) string { return hex.EncodeToString(w.bytes(n)) }

var (
	fleetNow    = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	fleetPolicy = "sha256:" + hex.EncodeToString(make([]byte, 32)) + "#allow-known-firmware"
)

func fleetSerial(i int) string { return fmt.Sprintf("SN-%08d", i) }

func (w *fleetWriter) device(i int) device.Device {
	return device.Device{
		ID: device.ID("acme", fleetSerial(i)),
		Provenance: device.Provenance{
			Manufacturer:     "acme",
			Serial:           fleetSerial(i),
			IDevIDKeySHA256:  w.hex(32),
			Model:            "sensor-7",
			HardwareRev:      "B2",
			FirmwareVersion:  "1.4.2",
			FirmwareSHA256:   "9f2c" + hex.EncodeToString(make([]byte, 30)),
			SBOMRef:          "https://acme.example/sbom/sensor-7/1.4.2.cdx.json",
			SBOMSHA256:       "41d7" + hex.EncodeToString(make([]byte, 30)),
			ManufacturedAt:   fleetNow.AddDate(0, -3, 0),
			Site:             "plant-1",
			Owner:            "operator-a",
			ManifestRevision: 3,
		},
		State:     device.Expected,
		Cause:     "import",
		UpdatedAt: fleetNow,
	}
}

func (w *fleetWriter) cert(id string, kind device.CertKind, at time.Time) device.Certificate {
	return device.Certificate{
		Serial:    w.hex(16),
		DeviceID:  id,
		DER:       w.bytes(550),
		KeySHA256: w.hex(32),
		Kind:      kind,
		Status:    device.CertIssued,
		NotBefore: at,
		NotAfter:  at.Add(7 * 24 * time.Hour),
	}
}

func fleetEntry(action, id, serial string) audit.Entry {
	return audit.Entry{
		Time:     fleetNow,
		Actor:    "device",
		Action:   action,
		DeviceID: id,
		Outcome:  "ok",
		Cert:     serial,
		Detail:   "zone plant-floor SL2",
		Policy:   fleetPolicy,
	}
}

// importFleet stores devices [from, to) as a manifest import does: in
// batches, with one audit entry per device.
func (w *fleetWriter) importFleet(ctx context.Context, s store.Store, from, to int) error {
	const batch = 250
	for start := from; start < to; start += batch {
		end := min(start+batch, to)
		ds := make([]device.Device, 0, end-start)
		for i := start; i < end; i++ {
			ds = append(ds, w.device(i))
		}
		err := s.Update(ctx, func(tx store.Tx) error {
			for _, d := range ds {
				d.Revision = 0
				if err := tx.PutDevice(&d); err != nil {
					return err
				}
				if _, err := tx.AppendAudit(fleetEntry("import", d.ID, "")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// enroll commits what an enrollment commits: the device, its new
// certificate and an audit entry.
func (w *fleetWriter) enroll(ctx context.Context, s store.Store, i int) error {
	id := device.ID("acme", fleetSerial(i))
	c := w.cert(id, device.KindEnroll, fleetNow.Add(time.Hour))
	return s.Update(ctx, func(tx store.Tx) error {
		d, err := tx.Device(id)
		if err != nil {
			return err
		}
		d.State = device.Onboarded
		d.Zone = "plant-floor"
		d.Current = c.Serial
		d.Cause = "enroll"
		d.Reason = "allow-known-firmware"
		d.Enrollments++
		d.UpdatedAt = c.NotBefore
		if err := tx.PutDevice(&d); err != nil {
			return err
		}
		if err := tx.PutCertificate(c); err != nil {
			return err
		}
		_, err = tx.AppendAudit(fleetEntry("enroll", id, c.Serial))
		return err
	})
}

// renew commits a renewal: the new certificate, the old one superseded,
// the device and an audit entry.
func (w *fleetWriter) renew(ctx context.Context, s store.Store, i int) error {
	id := device.ID("acme", fleetSerial(i))
	c := w.cert(id, device.KindRenew, fleetNow.Add(5*24*time.Hour))
	return s.Update(ctx, func(tx store.Tx) error {
		d, err := tx.Device(id)
		if err != nil {
			return err
		}
		old, err := tx.Certificate(d.Current)
		if err != nil {
			return err
		}
		old.Status = device.CertSuperseded
		old.StatusAt = c.NotBefore
		c.Predecessor = old.Serial
		d.Previous, d.Current = d.Current, c.Serial
		d.Cause = "renew"
		d.Renewals++
		d.UpdatedAt = c.NotBefore
		if err := tx.PutDevice(&d); err != nil {
			return err
		}
		if err := tx.PutCertificate(old); err != nil {
			return err
		}
		if err := tx.PutCertificate(c); err != nil {
			return err
		}
		_, err = tx.AppendAudit(fleetEntry("renew", id, c.Serial))
		return err
	})
}

// writeFleet imports n devices, then enrolls and renews every one of them
// from concurrent workers in a shuffled order, as a fleet onboarding at once
// would.
func writeFleet(tb testing.TB, s store.Store, n, workers int) {
	tb.Helper()
	ctx := context.Background()
	w := newFleetWriter()
	if err := w.importFleet(ctx, s, 0, n); err != nil {
		tb.Fatalf("import: %v", err)
	}
	for _, step := range []func(context.Context, store.Store, int) error{w.enroll, w.renew} {
		order := w.rnd.Perm(n)
		next := make(chan int)
		errs := make(chan error, workers)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range next {
					if err := step(ctx, s, i); err != nil {
						errs <- fmt.Errorf("device %d: %w", i, err)
						return
					}
				}
			})
		}
		for _, i := range order {
			next <- i
		}
		close(next)
		wg.Wait()
		close(errs)
		for err := range errs {
			tb.Fatal(err)
		}
	}
}

// registrySize describes the space a registry takes.
type registrySize struct {
	file    int64 // bytes on disk
	used    int64 // bbolt's high-water mark (tx.Size)
	free    int64 // free pages below the high-water mark
	payload int64 // sum of key and value lengths
	buckets map[string]bbolt.BucketStats
}

func measure(tb testing.TB, s *DB) registrySize {
	tb.Helper()
	sz := registrySize{buckets: map[string]bbolt.BucketStats{}}
	err := s.bdb.View(func(btx *bbolt.Tx) error {
		sz.used = btx.Size()
		return btx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			sz.buckets[string(name)] = b.Stats()
			return b.ForEach(func(k, v []byte) error {
				sz.payload += int64(len(k) + len(v))
				return nil
			})
		})
	})
	if err != nil {
		tb.Fatal(err)
	}
	sz.free = int64(s.bdb.Stats().FreePageN+s.bdb.Stats().PendingPageN) * int64(s.bdb.Info().PageSize)
	fi, err := os.Stat(s.path)
	if err != nil {
		tb.Fatal(err)
	}
	sz.file = fi.Size()
	return sz
}

func (sz registrySize) log(tb testing.TB, n int) {
	tb.Helper()
	tb.Logf("%d devices: file %d B (%.0f B/device), used %d B (%.0f B/device), free pages %d B, live %.0f B/device, payload %.0f B/device",
		n, sz.file, float64(sz.file)/float64(n), sz.used, float64(sz.used)/float64(n), sz.free,
		float64(sz.used-sz.free)/float64(n), float64(sz.payload)/float64(n))
	for _, name := range allBuckets {
		bs := sz.buckets[string(name)]
		alloc := bs.BranchAlloc + bs.LeafAlloc
		fill := 0.0
		if alloc > 0 {
			fill = float64(bs.BranchInuse+bs.LeafInuse) / float64(alloc)
		}
		tb.Logf("  %-13s keys %6d  pages %5d (+%d overflow)  %8d B allocated  %.0f B/device  fill %.0f%%",
			name, bs.KeyN, bs.BranchPageN+bs.LeafPageN, bs.BranchOverflowN+bs.LeafOverflowN,
			alloc, float64(alloc)/float64(n), 100*fill)
	}
}

// TestSizePerDevice keeps the registry within its budget: a device after
// one enrollment and one renewal takes at most 4 KiB of live pages. The
// pages bbolt keeps free for reuse are a fixed cost, not counted per
// device; BenchmarkRegistrySize measures the whole file for 10,000 devices.
func TestSizePerDevice(t *testing.T) {
	const n = 2_000
	s := openTestDB(t)
	writeFleet(t, s, n, 32)
	sz := measure(t, s)
	sz.log(t, n)
	st, err := s.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Devices != n || st.Certificates != 2*n || st.AuditEntries != 3*n {
		t.Fatalf("Stats = %+v, want %d devices, %d certificates, %d audit entries", st, n, 2*n, 3*n)
	}
	if per := (sz.used - sz.free) / n; per > maxBytesPerDevice {
		t.Fatalf("registry uses %d B of live pages per device, budget %d B", per, maxBytesPerDevice)
	}
}

// BenchmarkRegistrySize writes the life of 10,000 devices per iteration and
// reports the space they take. Run it with -benchtime=1x.
func BenchmarkRegistrySize(b *testing.B) {
	const n = 10_000
	for b.Loop() {
		s := openTestDB(b)
		writeFleet(b, s, n, 32)
		sz := measure(b, s)
		sz.log(b, n)
		b.ReportMetric(float64(sz.file)/n, "file-B/device")
		b.ReportMetric(float64(sz.used)/n, "used-B/device")
		b.ReportMetric(float64(sz.used-sz.free)/n, "live-B/device")
		b.ReportMetric(float64(sz.payload)/n, "payload-B/device")
	}
}
