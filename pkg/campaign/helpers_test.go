package campaign

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
)

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// fakeCore confirms certificates in use as the core does: the current one
// becomes in use, its usable predecessor superseded.
type fakeCore struct {
	st    store.Store
	mu    sync.Mutex
	calls map[string]int
}

func (f *fakeCore) ConfirmInUse(ctx context.Context, id, serial, _ string) ([]string, error) {
	var retired []string
	err := f.st.Update(ctx, func(tx store.Tx) error {
		retired = nil
		d, err := tx.Device(id)
		if err != nil {
			return err
		}
		if d.Current != serial {
			return fmt.Errorf("%s is not current", serial)
		}
		c, err := tx.Certificate(serial)
		if err != nil {
			return err
		}
		c.Status = device.CertInUse
		if err := tx.PutCertificate(c); err != nil {
			return err
		}
		if p, err := tx.Certificate(d.Previous); err == nil && p.Status.Usable() {
			p.Status = device.CertSuperseded
			retired = append(retired, p.Serial)
			return tx.PutCertificate(p)
		}
		return nil
	})
	if err == nil {
		f.mu.Lock()
		f.calls[id]++
		f.mu.Unlock()
	}
	return retired, err
}

func (f *fakeCore) confirmed(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

// fixture is a registry with devices, their desired state and a core.
type fixture struct {
	t     testing.TB
	st    *bolt.DB
	ds    *desired.Store
	clock *clock
	core  *fakeCore

	mu      sync.Mutex
	retired []string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	clk := &clock{t: time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)}
	return &fixture{t: t, st: st, ds: desired.New(st, clk.Now), clock: clk, core: &fakeCore{st: st, calls: map[string]int{}}}
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// addDevice registers a device in state s, with a usable current
// certificate when s is onboarded or quarantined.
func (f *fixture) addDevice(serial, model, zone string, s device.State) string {
	f.t.Helper()
	id := device.ID("acme", serial)
	now := f.clock.Now()
	err := f.st.Update(context.Background(), func(tx store.Tx) error {
		d := device.Device{ID: id, State: s, Zone: zone, UpdatedAt: now,
			Provenance: device.Provenance{Manufacturer: "acme", Serial: serial, Model: model, IDevIDKeySHA256: randomHex(f.t, 32)}}
		if s == device.Onboarded || s == device.Quarantined {
			c := device.Certificate{Serial: randomHex(f.t, 8), DeviceID: id, KeySHA256: randomHex(f.t, 32), Kind: device.KindEnroll,
				Status: device.CertIssued, NotBefore: now, NotAfter: now.Add(30 * 24 * time.Hour)}
			if err := tx.PutCertificate(c); err != nil {
				return err
			}
			d.Current = c.Serial
		}
		return tx.PutDevice(&d)
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

// renew plays a device renewing: a new certificate, with a new key unless
// sameKey.
func (f *fixture) renew(id string, sameKey bool) string {
	f.t.Helper()
	now := f.clock.Now()
	var serial string
	err := f.st.Update(context.Background(), func(tx store.Tx) error {
		d, err := tx.Device(id)
		if err != nil {
			return err
		}
		old, err := tx.Certificate(d.Current)
		if err != nil {
			return err
		}
		key := randomHex(f.t, 32)
		if sameKey {
			key = old.KeySHA256
		}
		c := device.Certificate{Serial: randomHex(f.t, 8), DeviceID: id, KeySHA256: key, Kind: device.KindRenew,
			Status: device.CertIssued, NotBefore: now, NotAfter: now.Add(30 * 24 * time.Hour), Predecessor: old.Serial}
		if err := tx.PutCertificate(c); err != nil {
			return err
		}
		d.Previous, d.Current, d.UpdatedAt = d.Current, c.Serial, now
		serial = c.Serial
		return tx.PutDevice(&d)
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return serial
}

// report plays a device reporting its latest generation applied. It may
// run in its own goroutine.
func (f *fixture) report(id string) {
	f.t.Helper()
	d, err := f.ds.Of(context.Background(), id)
	if err == nil {
		_, err = f.ds.Applied(context.Background(), id, d.Generation)
	}
	if err != nil {
		f.t.Errorf("report %s: %v", id, err)
	}
}

func (f *fixture) setState(id string, s device.State) {
	f.t.Helper()
	err := f.st.Update(context.Background(), func(tx store.Tx) error {
		d, err := tx.Device(id)
		if err != nil {
			return err
		}
		d.State, d.Reason = s, "test"
		return tx.PutDevice(&d)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// run starts a runner until the test ends or stop is called.
func (f *fixture) run(opts ...Option) (stop func()) {
	f.t.Helper()
	opts = append([]Option{WithClock(f.clock.Now), WithPoll(5 * time.Millisecond), WithRetired(func(s []string) {
		f.mu.Lock()
		f.retired = append(f.retired, s...)
		f.mu.Unlock()
	})}, opts...)
	r, err := NewRunner(f.st, f.ds, f.core, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("runner: %v", err)
			}
		})
	}
	f.t.Cleanup(stop)
	return stop
}

func (f *fixture) start(spec Spec) Summary {
	f.t.Helper()
	s, err := Start(context.Background(), f.st, spec, "operator:test", f.clock.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// detail returns every device of a campaign.
func (f *fixture) detail(id string) Detail {
	f.t.Helper()
	d, err := Get(context.Background(), f.st, id, Query{Limit: 10000})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) item(id, dev string) Item {
	f.t.Helper()
	for _, it := range f.detail(id).Items {
		if it.Device == dev {
			return it
		}
	}
	f.t.Fatalf("%s has no item for %s", id, dev)
	return Item{}
}

// waitFor polls cond until it holds; it fails the test after a generous
// bound (a hang, not a timing assertion).
func (f *fixture) waitFor(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) waitItem(id, dev string, s ItemState) Item {
	f.t.Helper()
	var it Item
	f.waitFor(fmt.Sprintf("%s to be %s", dev, s), func() bool { it = f.item(id, dev); return it.State == s })
	return it
}

func (f *fixture) stats() store.Stats {
	f.t.Helper()
	s, err := f.st.Stats(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	s.Bytes = 0
	return s
}

func (f *fixture) records() map[string]int {
	f.t.Helper()
	out := map[string]int{}
	err := f.st.View(context.Background(), func(r store.Reader) error {
		for _, k := range []string{Kind, ItemKind, desired.Kind} {
			if err := r.Records(k, "", func(string, []byte) (bool, error) { out[k]++; return true, nil }); err != nil &&
				!errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}
