package campaign

import (
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
)

func TestJudge(t *testing.T) {
	asked := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	timeout := 10 * time.Minute
	it := Item{State: Pending, Generation: 4, AskedAt: asked, Asks: 1, OldCert: "01", OldKey: "k1"}
	onb := device.Device{State: device.Onboarded, Current: "01"}
	renewed := device.Device{State: device.Onboarded, Current: "02", Previous: "01"}
	newCert := &device.Certificate{Serial: "02", KeySHA256: "k2", Status: device.CertIssued}
	sameKey := &device.Certificate{Serial: "02", KeySHA256: "k1", Status: device.CertIssued}
	oldCert := &device.Certificate{Serial: "01", KeySHA256: "k1", Status: device.CertInUse}
	ours := desired.Desired{Generation: 4, Rotate: true, Campaign: "c"}
	applied := desired.Desired{Generation: 4, Applied: 4}
	later := desired.Desired{Generation: 5, Zone: "z", Applied: 5}
	laterRotate := desired.Desired{Generation: 5, Rotate: true, Campaign: "other", Applied: 4}
	before, after := asked.Add(time.Minute), asked.Add(timeout)
	offline := it
	offline.State, offline.Reason = Offline, "neither renewed nor reported within 10m0s"
	worn := it
	worn.Asks = MaxAsks

	for _, tc := range []struct {
		name string
		it   Item
		dev  device.Device
		cur  *device.Certificate
		d    desired.Desired
		now  time.Time
		want verdict
		msg  string
	}{
		{"ok/waiting", it, onb, oldCert, ours, before, verdict{state: Pending}, ""},
		{"ok/renewed-not-reported", it, renewed, newCert, ours, before, verdict{state: Pending}, ""},
		{"ok/done", it, renewed, newCert, applied, before, verdict{state: Done, confirm: true}, ""},
		{"ok/done-after-timeout", it, renewed, newCert, applied, after, verdict{state: Done, confirm: true}, ""},
		{"ok/offline-comes-back", offline, renewed, newCert, applied, after.Add(time.Hour), verdict{state: Done, confirm: true}, ""},
		{"ok/later-rotation-pending", it, onb, oldCert, laterRotate, before, verdict{state: Pending}, ""},
		{"ok/overwritten-reask", it, onb, oldCert, later, before, verdict{state: Pending, reask: true}, "generation 5 overwrote"},
		{"ok/offline", it, onb, oldCert, ours, after, verdict{state: Offline}, "neither renewed nor reported within 10m0s"},
		{"ok/offline-stays", offline, onb, oldCert, ours, after.Add(time.Hour), verdict{state: Offline}, "neither renewed"},
		{"fail/timeout-after-renewal", it, renewed, newCert, ours, after, verdict{state: Failed}, "renewed (certificate 02) but did not report"},
		{"fail/same-key", it, renewed, sameKey, applied, before, verdict{state: Failed}, "without a new key"},
		{"fail/applied-without-renewal", it, onb, oldCert, applied, before, verdict{state: Failed}, "without a new key"},
		{"fail/overwritten-too-often", worn, onb, oldCert, later, before, verdict{state: Failed}, "overwritten by later changes 3 times"},
		{"fail/revoked", it, device.Device{State: device.Revoked, Reason: "stolen", Current: "02"}, newCert, applied, before,
			verdict{state: Failed}, "device revoked: stolen"},
		{"fail/denied", it, device.Device{State: device.Denied, Current: "01"}, oldCert, ours, before, verdict{state: Failed}, "device denied"},
		{"fail/held", it, device.Device{State: device.Held, Reason: "clone", Current: "01"}, oldCert, ours, before,
			verdict{state: Failed}, "device held: clone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := judge(tc.it, timeout, tc.dev, tc.cur, tc.d, tc.now)
			if got.state != tc.want.state || got.confirm != tc.want.confirm || got.reask != tc.want.reask ||
				!strings.Contains(got.reason, tc.msg) {
				t.Fatalf("judge = %+v, want %+v with reason containing %q", got, tc.want, tc.msg)
			}
		})
	}
}
