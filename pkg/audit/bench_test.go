package audit

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// benchEntry is an entry shaped like an enrollment's.
func benchEntry(i int) Entry {
	return Entry{
		Time:     time.Unix(1_800_000_000+int64(i/100), 0).UTC(),
		Actor:    "device",
		Action:   "enroll",
		DeviceID: fmt.Sprintf("urn:dev:acme:SN%08d", i),
		Outcome:  "ok",
		Cert:     fmt.Sprintf("%032x", i*7919),
		Policy:   "general@3f2a9c1d:allow-current-firmware",
	}
}

// writeBenchBundle writes a bundle of n entries with a checkpoint every
// 1000 to a file, streamed, and returns its path and the signing key.
func writeBenchBundle(b *testing.B, n int) (string, *hybridsig.PublicKey) {
	b.Helper()
	k := mustKey(b)
	path := filepath.Join(b.TempDir(), "audit.bundle")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	// Checkpoints come first in a bundle: seal the chain once to sign
	// them, then again to write the entries.
	var cps []SignedCheckpoint
	prev := Entry{}
	for i := 1; i <= n; i++ {
		prev = Seal(prev, benchEntry(i))
		if i%1000 == 0 {
			cps = append(cps, mustCheckpoint(b, k, prev))
		}
	}
	w, err := NewBundleWriter(bufio.NewWriter(f), BundleHeader{Created: time.Now(), Keys: []*hybridsig.PublicKey{k.Public()},
		Checkpoints: uint64(len(cps)), Last: uint64(n)})
	if err != nil {
		b.Fatal(err)
	}
	for i, c := range cps {
		if err := w.Checkpoint(uint64(i+1)*1000, c); err != nil {
			b.Fatal(err)
		}
	}
	prev = Entry{}
	for i := 1; i <= n; i++ {
		prev = Seal(prev, benchEntry(i))
		if err := w.Entry(prev); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return path, k.Public()
}

// BenchmarkVerifyBundle verifies an exported bundle of 1,000,000 entries
// (1,000 checkpoints) read from a file: every entry hash recomputed, every
// link and checkpoint (both signature halves) checked. Run with
// -benchtime=1x; it reports seconds per million entries.
func BenchmarkVerifyBundle(b *testing.B) {
	const n = 1_000_000
	path, pub := writeBenchBundle(b, n)
	b.ResetTimer()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		rep, err := VerifyBundle(f, pub)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if rep.Entries != n || rep.Checkpoints != n/1000 {
			b.Fatalf("report %+v", rep)
		}
		el := time.Since(start)
		b.ReportMetric(el.Seconds()*1e6/float64(n), "s/1M-entries")
		b.ReportMetric(float64(n)/el.Seconds(), "entries/s")
	}
	if st, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(st.Size())/n, "bytes/entry")
	}
}
