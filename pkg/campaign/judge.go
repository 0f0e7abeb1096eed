package campaign

import (
	"fmt"
	"time"

	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
)

// verdict is what to do with one item after looking at its device.
type verdict struct {
	// state and reason are the item's next state (unchanged if equal).
	state  ItemState
	reason string
	// confirm: the device re-keyed and reported; confirm the new
	// certificate in use, then the item is done.
	confirm bool
	// reask: the request was overwritten before the device acted on it.
	reask bool
}

// judge decides what becomes of an asked item (pending, offline or
// failed), given the device, its current certificate (nil if none), its
// desired state and the time. It is pure.
func judge(it Item, timeout time.Duration, dev device.Device, cur *device.Certificate, d desired.Desired, now time.Time) verdict {
	keep := verdict{state: it.State, reason: it.Reason}
	switch dev.State {
	case device.Onboarded, device.Quarantined:
	default:
		reason := fmt.Sprintf("device %s", dev.State)
		if dev.Reason != "" {
			reason += ": " + dev.Reason
		}
		return verdict{state: Failed, reason: reason}
	}
	renewed := dev.Current != "" && dev.Current != it.OldCert
	rekeyed := renewed && cur != nil && cur.Serial == dev.Current && cur.KeySHA256 != it.OldKey && cur.Status.Usable()
	applied := it.Generation > 0 && d.Applied >= it.Generation
	switch {
	case applied && rekeyed:
		return verdict{state: Done, confirm: true}
	case applied && d.Rotate && d.Pending():
		// A later rotation was asked (another campaign, an operator):
		// it re-keys the device too.
		return keep
	case applied && d.Generation == it.Generation:
		return verdict{state: Failed, reason: "reported the rotation applied without a new key"}
	case applied && it.Asks < MaxAsks:
		return verdict{state: Pending, reask: true,
			reason: fmt.Sprintf("asked again: generation %d overwrote the request before the device acted on it", d.Generation)}
	case applied:
		return verdict{state: Failed, reason: fmt.Sprintf("the request was overwritten by later changes %d times", it.Asks)}
	case it.State == Pending && !now.Before(it.AskedAt.Add(timeout)):
		if renewed {
			return verdict{state: Failed, reason: fmt.Sprintf("renewed (certificate %s) but did not report the rotation applied within %s", dev.Current, timeout)}
		}
		return verdict{state: Offline, reason: fmt.Sprintf("neither renewed nor reported within %s", timeout)}
	}
	return keep
}
