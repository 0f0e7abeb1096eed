package auditlog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/audit/auditlog"
	"github.com/embark-iot/embark/pkg/store"
)

// benchEntry is an entry shaped like an enrollment's.
func benchEntry(i int) audit.Entry {
	return audit.Entry{
		Time:     time.Now(),
		Actor:    "device",
		Action:   "enroll",
		DeviceID: fmt.Sprintf("urn:dev:acme:SN%08d", i),
		Outcome:  "ok",
		Detail:   "zone plant-floor SL2",
		Cert:     fmt.Sprintf("%032x", i*7919),
		Policy:   "general@3f2a9c1d:allow-current-firmware",
	}
}

// BenchmarkAppend appends audit entries through the bbolt store as the
// server's writers do: many goroutines, one Update each, grouped into
// commits by the store. "checkpoints" runs the checkpointer beside them
// with its defaults (every 1,000 entries or 10 s, polled every 250 ms);
// "no-checkpoints" is the same without it. It reports entries/s and the
// checkpoints made. Run with -benchtime=50000x or more.
func BenchmarkAppend(b *testing.B) {
	for _, withCP := range []bool{false, true} {
		name := "no-checkpoints"
		if withCP {
			name = "checkpoints"
		}
		b.Run(fmt.Sprintf("%s/goroutines-%d", name, 32*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			st := openStore(b, dbPath(b))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			key := mustKey(b)
			if withCP {
				c, err := auditlog.NewCheckpointer(st, key)
				if err != nil {
					b.Fatal(err)
				}
				go func() { c.Run(ctx); close(done) }()
			} else {
				close(done)
			}
			var next atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e := benchEntry(int(next.Add(1)))
					err := st.Update(ctx, func(tx store.Tx) error {
						_, err := tx.AppendAudit(e)
						return err
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "entries/s")
			cancel()
			<-done
			if withCP {
				b.ReportMetric(float64(len(checkpointSeqs(b, st))), "checkpoints")
				rep, err := auditlog.Verify(context.Background(), st, key.Public())
				if err != nil || rep.Entries != uint64(b.N) || rep.Unsigned() != 0 {
					b.Fatalf("verify: %+v, %v", rep, err)
				}
			}
		})
	}
}

// BenchmarkVerify builds a registry of 1,000,000 audit entries with a
// checkpoint every 1,000 (not timed), then times the verification of the
// whole log in the store, its export to a bundle file, and the
// verification of that file. Run with -benchtime=1x.
func BenchmarkVerify(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	path := dbPath(b)
	st := openStore(b, path)
	k := mustKey(b)
	for i := 0; i < n; i += 10_000 {
		err := st.Update(ctx, func(tx store.Tx) error {
			for j := i; j < i+10_000; j++ {
				if _, err := tx.AppendAudit(benchEntry(j)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	c, err := auditlog.NewCheckpointer(st, k)
	if err != nil {
		b.Fatal(err)
	}
	cpStart := time.Now()
	if made, err := c.Flush(ctx); err != nil || made != n/1000 {
		b.Fatalf("checkpoints: %d, %v", made, err)
	}
	cpTime := time.Since(cpStart)
	bundle := filepath.Join(b.TempDir(), "audit.bundle")
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		rep, err := auditlog.Verify(ctx, st, k.Public())
		if err != nil || rep.Entries != n || rep.Checkpoints != n/1000 {
			b.Fatalf("verify: %+v, %v", rep, err)
		}
		verifyStore := time.Since(start)

		start = time.Now()
		f, err := os.Create(bundle)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := auditlog.Export(ctx, st, f, time.Now()); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		export := time.Since(start)

		start = time.Now()
		f, err = os.Open(bundle)
		if err != nil {
			b.Fatal(err)
		}
		brep, err := audit.VerifyBundle(f, k.Public())
		f.Close()
		if err != nil || brep.Entries != n {
			b.Fatalf("verify bundle: %+v, %v", brep, err)
		}
		verifyBundle := time.Since(start)

		b.ReportMetric(verifyStore.Seconds(), "s-verify-store")
		b.ReportMetric(export.Seconds(), "s-export")
		b.ReportMetric(verifyBundle.Seconds(), "s-verify-bundle")
	}
	b.ReportMetric(cpTime.Seconds(), "s-checkpoint-1M")
	if st, err := os.Stat(bundle); err == nil {
		b.ReportMetric(float64(st.Size())/(1<<20), "MiB-bundle")
	}
}
