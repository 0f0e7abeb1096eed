package campaign

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// BenchmarkAskAndComplete measures the runner alone over a real registry:
// a campaign with no rate limit asks every device (desired state, item
// record), then every device renews and reports at once and the runner
// confirms and records it. It reports devices per second for each half.
func BenchmarkAskAndComplete(b *testing.B) {
	const n = 2000
	for range b.N {
		b.StopTimer()
		f := newFixture(b)
		ids := make([]string, n)
		err := f.st.Update(b.Context(), func(tx store.Tx) error {
			for i := range n {
				id := device.ID("acme", fmt.Sprintf("SN%06d", i))
				c := device.Certificate{Serial: fmt.Sprintf("%016x", i+1), DeviceID: id, KeySHA256: randomHex(b, 32), Kind: device.KindEnroll,
					Status: device.CertIssued, NotBefore: f.clock.Now(), NotAfter: f.clock.Now().Add(time.Hour)}
				if err := tx.PutCertificate(c); err != nil {
					return err
				}
				d := device.Device{ID: id, State: device.Onboarded, Current: c.Serial, UpdatedAt: f.clock.Now(),
					Provenance: device.Provenance{Manufacturer: "acme", Serial: fmt.Sprintf("SN%06d", i), IDevIDKeySHA256: randomHex(b, 32)}}
				ids[i] = id
				if err := tx.PutDevice(&d); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		stop := f.run()
		b.StartTimer()
		start := time.Now()
		s := f.start(Spec{Selector: Selector{Select: SelectAll}, Unlimited: true, Timeout: time.Hour})
		for f.detail(s.ID).Counts.Pending != n {
			time.Sleep(10 * time.Millisecond)
		}
		asked := time.Since(start)
		b.StopTimer()
		for _, id := range ids {
			f.renew(id, false)
		}
		b.StartTimer()
		start = time.Now()
		sem := make(chan struct{}, 64)
		var wg sync.WaitGroup
		for _, id := range ids {
			sem <- struct{}{}
			wg.Go(func() { defer func() { <-sem }(); f.report(id) })
		}
		wg.Wait()
		for f.detail(s.ID).State != Finished {
			time.Sleep(10 * time.Millisecond)
		}
		done := time.Since(start)
		b.ReportMetric(n/asked.Seconds(), "asked/s")
		b.ReportMetric(n/done.Seconds(), "completed/s")
		b.StopTimer()
		stop()
	}
}
