package campaign

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
)

// Every way a device can answer a campaign, with a fake clock for the
// timeout.
func TestRunnerFollowsDevices(t *testing.T) {
	f := newFixture(t)
	ok := f.addDevice("OK", "X", "a", device.Onboarded)
	away := f.addDevice("AWAY", "X", "a", device.Onboarded)
	revoked := f.addDevice("REVOKED", "X", "a", device.Onboarded)
	lazy := f.addDevice("LAZY", "X", "a", device.Onboarded)
	moved := f.addDevice("MOVED", "X", "a", device.Onboarded)
	silent := f.addDevice("SILENT", "X", "a", device.Onboarded)
	other := f.addDevice("OTHER", "Y", "a", device.Onboarded)
	f.run()
	s := f.start(Spec{Selector: Selector{SelectModel, "X"}, Unlimited: true, Timeout: time.Hour})
	for _, id := range []string{ok, away, revoked, lazy, moved, silent} {
		f.waitItem(s.ID, id, Pending)
	}
	for _, id := range []string{ok, away, revoked, lazy, moved, silent} {
		d, err := f.ds.Of(context.Background(), id)
		if err != nil || !d.Rotate || d.Campaign != s.ID || d.Generation != f.item(s.ID, id).Generation {
			t.Fatalf("%s desired %+v, %v", id, d, err)
		}
	}
	if d, _ := f.ds.Of(context.Background(), other); d.Generation != 0 {
		t.Fatalf("a device outside the selection was asked: %+v", d)
	}

	// ok re-keys and reports: done, its new certificate confirmed.
	oldOK := f.item(s.ID, ok).OldCert
	newOK := f.renew(ok, false)
	f.report(ok)
	it := f.waitItem(s.ID, ok, Done)
	if it.NewCert != newOK || f.core.confirmed(ok) != 1 {
		t.Fatalf("done item %+v, confirmations %d", it, f.core.confirmed(ok))
	}
	f.waitFor("the old certificate's sessions dropped", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return slices.Contains(f.retired, oldOK)
	})

	// revoked is revoked meanwhile (the server tells it through its
	// desired state): failed.
	f.setState(revoked, device.Revoked)
	if _, err := f.ds.Set(context.Background(), revoked, "system", func(d *desired.Desired) { d.Revoked = true }); err != nil {
		t.Fatal(err)
	}
	if it := f.waitItem(s.ID, revoked, Failed); !strings.Contains(it.Reason, "device revoked") {
		t.Fatalf("revoked item %+v", it)
	}

	// lazy reports the rotation applied without renewing: failed.
	f.report(lazy)
	if it := f.waitItem(s.ID, lazy, Failed); !strings.Contains(it.Reason, "without a new key") {
		t.Fatalf("lazy item %+v", it)
	}

	// moved gets a zone change before it acted: the request is overwritten,
	// the device applies the zone; it is asked again, then completes.
	first := f.item(s.ID, moved).Generation
	if _, err := f.ds.Set(context.Background(), moved, "policy", func(d *desired.Desired) { d.Zone = "b" }); err != nil {
		t.Fatal(err)
	}
	f.report(moved)
	f.waitFor("moved to be asked again", func() bool { return f.item(s.ID, moved).Asks == 2 })
	if it := f.item(s.ID, moved); it.State != Pending || it.Generation <= first+1 {
		t.Fatalf("moved after the overwrite: %+v", it)
	}
	f.renew(moved, false)
	f.report(moved)
	f.waitItem(s.ID, moved, Done)

	// silent renews but never reports; away does nothing. After the
	// timeout: failed and offline. Both complete later.
	f.renew(silent, false)
	f.clock.Advance(time.Hour)
	if it := f.waitItem(s.ID, away, Offline); !strings.Contains(it.Reason, "neither renewed nor reported") {
		t.Fatalf("away item %+v", it)
	}
	if it := f.waitItem(s.ID, silent, Failed); !strings.Contains(it.Reason, "did not report") {
		t.Fatalf("silent item %+v", it)
	}
	f.waitFor("the campaign to finish", func() bool { return f.detail(s.ID).State == Finished })
	d := f.detail(s.ID)
	if want := (Counts{Done: 2, Failed: 3, Offline: 1}); d.Counts != want {
		t.Fatalf("counts at the end %+v, want %+v", d.Counts, want)
	}
	f.report(silent)
	f.waitItem(s.ID, silent, Done)
	f.renew(away, false)
	f.report(away)
	f.waitItem(s.ID, away, Done)
	if want := (Counts{Done: 4, Failed: 2}); f.detail(s.ID).Counts != want {
		t.Fatalf("counts after the stragglers %+v, want %+v", f.detail(s.ID).Counts, want)
	}
}

// A runner stopped in the middle of a rate-limited campaign: the next one
// asks the rest, nobody twice, and a device asked before the stop but not
// recorded keeps its request.
func TestRunnerResumes(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for _, sn := range []string{"A", "B", "C", "D", "E", "F", "G", "H"} {
		ids = append(ids, f.addDevice(sn, "X", "a", device.Onboarded))
	}
	s := f.start(Spec{Selector: Selector{Select: SelectAll}, Rate: 10, Timeout: time.Hour})
	// H was asked by a runner that stopped before recording it.
	if _, err := f.ds.Set(context.Background(), ids[7], "campaign:"+s.ID, func(d *desired.Desired) { d.Rotate, d.Campaign = true, s.ID }); err != nil {
		t.Fatal(err)
	}
	stop := f.run()
	f.waitFor("three devices asked", func() bool { return f.detail(s.ID).Counts.Pending >= 3 })
	stop()
	if d := f.detail(s.ID); d.Counts.Queued == 0 || d.State != Running {
		t.Fatalf("after the stop: %+v (the test needs devices left queued)", d.Counts)
	}
	f.run()
	f.waitFor("every device asked", func() bool { return f.detail(s.ID).Counts.Pending == len(ids) })
	for _, id := range ids {
		d, err := f.ds.Of(context.Background(), id)
		if err != nil || d.Generation != 1 || f.item(s.ID, id).Generation != 1 || f.item(s.ID, id).Asks != 1 {
			t.Fatalf("%s asked more than once: desired %+v, item %+v", id, d, f.item(s.ID, id))
		}
		f.renew(id, false)
		f.report(id)
	}
	f.waitFor("the campaign to finish", func() bool { return f.detail(s.ID).State == Finished })
	if d := f.detail(s.ID); d.Counts != (Counts{Done: len(ids)}) {
		t.Fatalf("counts %+v", d.Counts)
	}
}

// Cancel: the asker stops, the queued devices are cancelled, the pending
// requests withdrawn with a new generation without rotate.
func TestRunnerCancel(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for _, sn := range []string{"A", "B", "C", "D", "E", "F"} {
		ids = append(ids, f.addDevice(sn, "X", "a", device.Onboarded))
	}
	f.run()
	s := f.start(Spec{Selector: Selector{Select: SelectAll}, Rate: 10, Timeout: time.Hour})
	f.waitFor("two devices asked", func() bool { return f.detail(s.ID).Counts.Pending >= 2 })
	f.renew(ids[0], false)
	f.report(ids[0])
	f.waitItem(s.ID, ids[0], Done)
	if _, err := Cancel(context.Background(), f.st, s.ID, "operator:test", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.waitFor("every device settled", func() bool {
		c := f.detail(s.ID).Counts
		return c.Queued == 0 && c.Pending == 0
	})
	d := f.detail(s.ID)
	if d.State != Cancelled || d.Counts.Done != 1 || d.Counts.Cancelled != len(ids)-1 {
		t.Fatalf("after cancel: %s %+v", d.State, d.Counts)
	}
	for _, it := range d.Items {
		des, err := f.ds.Of(context.Background(), it.Device)
		if err != nil {
			t.Fatal(err)
		}
		if des.Rotate && des.Pending() {
			t.Fatalf("%s (%s) still asked to rotate: %+v", it.Device, it.State, des)
		}
		if it.State == ItemCanceled && it.Generation > 0 && des.Generation != it.Generation+1 {
			t.Fatalf("%s: pending request not withdrawn: item %+v desired %+v", it.Device, it, des)
		}
	}
}

// The asks keep to the campaign's rate: device i is asked no sooner than
// i/rate seconds after the asker started, which is after the campaign was
// created; so the last one at least (n-1)/rate after that. Without pacing
// they would all go within milliseconds.
func TestRunnerRate(t *testing.T) {
	if testing.Short() {
		t.Skip("paced in real time")
	}
	f := newFixture(t)
	const n, rate = 21, 40.0
	for i := range n {
		f.addDevice(string(rune('A'+i)), "X", "a", device.Onboarded)
	}
	f.run(WithClock(time.Now))
	created := time.Now()
	s := f.start(Spec{Selector: Selector{Select: SelectAll}, Rate: rate, Timeout: time.Hour})
	f.waitFor("every device asked", func() bool { return f.detail(s.ID).Counts.Pending == n })
	var last time.Time
	for _, it := range f.detail(s.ID).Items {
		if it.AskedAt.After(last) {
			last = it.AskedAt
		}
	}
	if span, floor := last.Sub(created), time.Duration(float64(n-1)/rate*float64(time.Second)); span < floor {
		t.Fatalf("%d devices at %g/s all asked within %s of the start, want at least %s", n, rate, span, floor)
	}
}
