package bolt

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// benchDevices is how many devices the registry holds before the clock
// starts; each operation enrolls one of them.
const benchDevices = 10_000

// BenchmarkUpdateParallel measures the hot path: many concurrent
// enrollments, each one transaction that reads and writes a device, stores a
// certificate and appends an audit entry. It compares the committer
// (group-commit) with one bbolt Update per operation (plain-update) and with
// bbolt's own Batch (bbolt-batch, MaxBatchDelay 2 ms), and reports the
// commits (fsyncs) and bytes of pages written per operation.
func BenchmarkUpdateParallel(b *testing.B) {
	variants := []struct {
		name   string
		update func(s *DB, fn func(store.Tx) error) error
	}{
		{"group-commit", func(s *DB, fn func(store.Tx) error) error {
			return s.Update(context.Background(), fn)
		}},
		{"plain-update", func(s *DB, fn func(store.Tx) error) error {
			return s.bdb.Update(func(btx *bbolt.Tx) error { return fn(&tx{btx: btx, undo: &undoLog{}}) })
		}},
		{"bbolt-batch", func(s *DB, fn func(store.Tx) error) error {
			return s.bdb.Batch(func(btx *bbolt.Tx) error { return fn(&tx{btx: btx, undo: &undoLog{}}) })
		}},
	}
	for _, v := range variants {
		for _, par := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/goroutines-%d", v.name, par*runtime.GOMAXPROCS(0)), func(b *testing.B) {
				s := openTestDB(b)
				s.bdb.MaxBatchDelay = 2 * time.Millisecond
				s.bdb.MaxBatchSize = DefaultMaxBatch
				w := newFleetWriter()
				if err := w.importFleet(context.Background(), s, 0, benchDevices); err != nil {
					b.Fatal(err)
				}
				// Certificates are prepared before the clock starts, as the
				// issuer would have signed them before the commit.
				certs := make([]device.Certificate, benchDevices)
				for i := range certs {
					certs[i] = w.cert(device.ID("acme", fleetSerial(i)), device.KindEnroll, fleetNow)
				}
				order := w.rnd.Perm(benchDevices)

				var (
					next    atomic.Int64
					mu      sync.Mutex
					txIDs   = map[int]struct{}{}
					commits = s.commits.Load()
					written = pageAlloc(s)
				)
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := order[int(next.Add(1)-1)%benchDevices]
						c := certs[i]
						err := v.update(s, func(t store.Tx) error {
							mu.Lock()
							txIDs[t.(*tx).btx.ID()] = struct{}{}
							mu.Unlock()
							d, err := t.Device(c.DeviceID)
							if err != nil {
								return err
							}
							d.State = device.Onboarded
							d.Previous, d.Current = d.Current, c.Serial
							d.Enrollments++
							if err := t.PutDevice(&d); err != nil {
								return err
							}
							if err := t.PutCertificate(c); err != nil {
								return err
							}
							_, err = t.AppendAudit(fleetEntry("enroll", d.ID, c.Serial))
							return err
						})
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				n := float64(b.N)
				b.ReportMetric(float64(len(txIDs))/n, "fsyncs/op")
				b.ReportMetric(float64(pageAlloc(s)-written)/n/1024, "written-KiB/op")
				if v.name == "group-commit" {
					b.ReportMetric(n/float64(s.commits.Load()-commits), "updates/commit")
				}
			})
		}
	}
}

// pageAlloc returns the bytes of pages the registry's transactions have
// allocated, that is, written.
func pageAlloc(s *DB) int64 {
	st := s.bdb.Stats()
	return st.TxStats.GetPageAlloc()
}
