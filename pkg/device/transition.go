package device

import "fmt"

// Event is something that happens to a device.
type Event string

// Events that move a device between states.
const (
	EvEnroll     Event = "enroll"     // a certificate was issued (allow)
	EvQuarantine Event = "quarantine" // policy restricts the device
	EvHold       Event = "hold"       // an operator must decide
	EvDeny       Event = "deny"       // policy or operator refuses the device
	EvApprove    Event = "approve"    // an operator lets a held device proceed
	EvRevoke     Event = "revoke"     // credentials revoked
	EvDecom      Event = "decommission"
	EvReonboard  Event = "reonboard" // operator allows a revoked/decommissioned/denied device to start over
	EvTransfer   Event = "transfer"  // the owner sold the device on
	EvAcquire    Event = "acquire"   // a transfer to this owner was accepted
)

// ErrTransition is returned by [Next] for an event that is not allowed in a state.
type ErrTransition struct {
	From  State
	Event Event
}

func (e *ErrTransition) Error() string {
	return fmt.Sprintf("device: %s not allowed in state %s", e.Event, e.From)
}

// Next returns the state a device in state from reaches on event ev.
func Next(from State, ev Event) (State, error) {
	bad := func() (State, error) { return from, &ErrTransition{From: from, Event: ev} }
	switch ev {
	case EvEnroll:
		switch from {
		case Expected, Onboarded, Quarantined, Held:
			return Onboarded, nil
		}
	case EvQuarantine:
		switch from {
		case Expected, Onboarded, Quarantined, Held:
			return Quarantined, nil
		}
	case EvHold:
		switch from {
		case Expected, Onboarded, Quarantined, Held:
			return Held, nil
		}
	case EvDeny:
		switch from {
		case Expected, Onboarded, Quarantined, Held, Denied:
			return Denied, nil
		}
	case EvApprove:
		if from == Held {
			return Expected, nil
		}
	case EvRevoke:
		switch from {
		case Onboarded, Quarantined, Held, Revoked:
			return Revoked, nil
		}
	case EvDecom:
		if from != Decommissioned {
			return Decommissioned, nil
		}
	case EvReonboard:
		switch from {
		case Revoked, Decommissioned, Denied, Held:
			return Expected, nil
		}
	case EvTransfer:
		if from != Transferred && from != Decommissioned {
			return Transferred, nil
		}
	case EvAcquire:
		// A device comes back, or arrives, after a factory reset.
		switch from {
		case Expected, Transferred, Denied, Held, Revoked:
			return Expected, nil
		}
	}
	return bad()
}

// CanRequestCredential reports whether a device in state s may be issued a
// certificate at all (subject to policy).
func (s State) CanRequestCredential() bool {
	switch s {
	case Expected, Onboarded, Quarantined:
		return true
	}
	return false
}
