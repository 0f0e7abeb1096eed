package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkSign10000(b *testing.B) {
	a, _ := testKeys(b)
	m := testManifest(10000)
	for b.Loop() {
		if _, err := Sign(m, a); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen10000(b *testing.B) {
	a, _ := testKeys(b)
	env, err := Sign(testManifest(10000), a)
	if err != nil {
		b.Fatal(err)
	}
	keys := lookupOf(a.Public())
	b.SetBytes(int64(len(env)))
	b.ReportMetric(float64(len(env)), "envelope-bytes")
	for b.Loop() {
		if _, err := Open(env, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyReader verifies a manifest read from a file and reads its
// devices back once, as an import does. peak-heap-B is the highest heap
// (live and not yet collected objects) sampled while it runs.
func BenchmarkVerifyReader(b *testing.B) {
	a, _ := testKeys(b)
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			w, err := NewWriter(dir, Header{Manufacturer: "acme", Revision: 1, IssuedAt: issued})
			if err != nil {
				b.Fatal(err)
			}
			for i := range n {
				if err := w.Add(entry(fmt.Sprintf("ACME-%06d", i+1))); err != nil {
					b.Fatal(err)
				}
			}
			path := filepath.Join(dir, "manifest.json")
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			size, err := w.SignTo(f, a)
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
			w.Close()
			keys := lookupOf(a.Public())
			b.SetBytes(size)
			runtime.GC()
			var peak atomic.Uint64
			done := make(chan struct{})
			defer close(done)
			go func() {
				sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
				t := time.NewTicker(2 * time.Millisecond)
				defer t.Stop()
				for {
					metrics.Read(sample)
					if v := sample[0].Value.Uint64(); v > peak.Load() {
						peak.Store(v)
					}
					select {
					case <-done:
						return
					case <-t.C:
					}
				}
			}()
			for b.Loop() {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				s, err := VerifyReader(f, keys, WithTempDir(dir))
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Entries(func(int, Entry) error { return nil }); err != nil {
					b.Fatal(err)
				}
				s.Close()
				f.Close()
			}
			b.ReportMetric(float64(size), "envelope-B")
			b.ReportMetric(float64(peak.Load()), "peak-heap-B")
		})
	}
}
