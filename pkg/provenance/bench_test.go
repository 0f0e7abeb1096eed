package provenance

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/store"
)

// benchManifest writes a signed manifest of n devices shaped like the
// factory's and returns its path and the manufacturer's trust bundle.
func benchManifest(b *testing.B, n int) (path string, trust []byte) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "acme")
	if _, err := factory.Run(context.Background(), factory.Options{Out: dir, Count: 1, Clock: func() time.Time { return now }}); err != nil {
		b.Fatal(err)
	}
	key, err := hybridsig.ParsePrivateKeyPEM(readFile(b, filepath.Join(dir, factory.SignerKeyFile)))
	if err != nil {
		b.Fatal(err)
	}
	w, err := manifest.NewWriter(dir, manifest.Header{Manufacturer: "acme", Revision: 2, IssuedAt: now})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	for i := range n {
		serial := fmt.Sprintf("ACME-%06d", i+1)
		if err := w.Add(manifest.Entry{
			Serial: serial, IDevIDKeySHA256: fingerprint("key of " + serial),
			Model: "sensor-x", HardwareRev: "B", FirmwareVersion: "1.4.2", FirmwareSHA256: fingerprint("firmware"),
			SBOMRef: "urn:embark:sbom:acme:sensor-x:1.4.2", SBOMSHA256: fingerprint("sbom"),
			ManufacturedAt: now, Site: "plant-1", Owner: "example-operator",
		}); err != nil {
			b.Fatal(err)
		}
	}
	path = filepath.Join(dir, "bench-manifest.json")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	if _, err := w.SignTo(bw, key); err != nil {
		b.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path, readFile(b, filepath.Join(dir, factory.TrustFile))
}

// heapPeak samples the bytes of live heap objects until stopped and
// returns the highest value seen.
func heapPeak() (stop func() uint64) {
	const name = "/memory/classes/heap/objects:bytes"
	sample := []metrics.Sample{{Name: name}}
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// BenchmarkImportManifestFrom imports a manifest of 10,000 and 100,000
// devices from a file into an empty registry (one transaction, with its
// fsync). It reports the envelope size and the peak of live heap objects.
func BenchmarkImportManifestFrom(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			path, trust := benchManifest(b, n)
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(fi.Size())
			var peak uint64
			for b.Loop() {
				b.StopTimer()
				st := openStore(b)
				mustTrust(b, st, trust)
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				stop := heapPeak()
				b.StartTimer()
				res, err := ImportManifestFrom(context.Background(), st, f, "operator:bench", now)
				b.StopTimer()
				peak = max(peak, stop())
				f.Close()
				if err != nil || res.New != n {
					b.Fatalf("import: %+v, %v", res, err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(fi.Size()), "envelope-B")
			b.ReportMetric(float64(peak), "peak-heap-B")
		})
	}
}

// BenchmarkDeviceRead reads the provenance view of one device (store.View
// then Reader.Device) from a registry of 100,000 devices.
func BenchmarkDeviceRead(b *testing.B) {
	const n = 100_000
	path, trust := benchManifest(b, n)
	st := openStore(b)
	mustTrust(b, st, trust)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := ImportManifestFrom(context.Background(), st, f, "operator:bench", now); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	i := 0
	for b.Loop() {
		id := device.ID("acme", fmt.Sprintf("ACME-%06d", i%n+1))
		i += 7919 // a prime: spread the reads over the registry
		var d device.Device
		if err := st.View(ctx, func(r store.Reader) error {
			var err error
			d, err = r.Device(id)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		if d.ID != id || d.Provenance.IDevIDKeySHA256 == "" {
			b.Fatalf("read %+v", d)
		}
	}
}
