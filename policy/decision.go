package policy

import (
	"slices"
	"time"
)

// Actions a rule may decide, from the least to the most severe.
const (
	// ActionAllow admits the device into its zone.
	ActionAllow = "allow"
	// ActionQuarantine admits the device into a restricted zone.
	ActionQuarantine = "quarantine"
	// ActionHold issues nothing until an operator approves the device.
	ActionHold = "hold"
	// ActionDeny refuses the device.
	ActionDeny = "deny"
)

// DefaultRule names the decision taken when no rule matches: deny.
const DefaultRule = "default"

// Zone is a network zone in the IEC 62443 sense: devices in one zone share
// security requirements. A device is admitted into exactly one zone.
type Zone struct {
	Name string `json:"name"`
	// SecurityLevel is the zone's IEC 62443 security level, 1 to 4. A
	// higher level marks a zone that is more sensitive to reach, so moving
	// a device to a lower level takes privileges from it.
	SecurityLevel int    `json:"security_level"`
	Segment       string `json:"segment,omitempty"`
	// Topics are the MQTT topic filters devices of the zone may use, with
	// "{device}" standing for the device identifier.
	Topics []string `json:"topics,omitempty"`
}

// Decision is what a policy decided for one device and request.
type Decision struct {
	// Action is one of the Action constants.
	Action string `json:"action"`
	// Zone is the zone admitted into; empty for hold and deny.
	Zone Zone `json:"zone"`
	// Lifetime is the certificate lifetime for allow and quarantine.
	Lifetime time.Duration `json:"lifetime"`
	// RenewGrace is how long after its expiry the device's certificate may
	// still renew (0: not at all).
	RenewGrace time.Duration `json:"renew_grace,omitempty"`
	// Topics are the MQTT topic filters the device may use (the rule's,
	// else the zone's) with "{device}" replaced by the device identifier.
	Topics []string `json:"topics,omitempty"`
	// Segment is the network segment (the rule's, else the zone's).
	Segment string `json:"segment,omitempty"`
	// Rule is the matching rule's name, [DefaultRule] when none matched.
	Rule string `json:"rule"`
	// Reason is the rule's human explanation.
	Reason string `json:"reason"`
	// PolicyHash is the hex SHA-256 of the policy source.
	PolicyHash string `json:"policy_hash"`
}

// Severity orders actions: allow 0 < quarantine 1 < hold 2 < deny 3. It
// returns -1 for anything else (such as "" for no decision).
func Severity(action string) int {
	switch action {
	case ActionAllow:
		return 0
	case ActionQuarantine:
		return 1
	case ActionHold:
		return 2
	case ActionDeny:
		return 3
	}
	return -1
}

// Tighter reports whether d restricts a device more than prev did, so that
// enforcement points must move the device at once:
//
//   - d's action is more severe than prev's (allow → quarantine → hold →
//     deny), or
//   - both admit the device with the same action (allow or quarantine) and
//     d's zone has a lower security level than prev's.
//
// Nothing is tighter than no decision: when either action is unknown (prev
// empty), Tighter is false; use [Changed] for those. A move to another zone
// at the same action and level, a shorter lifetime or fewer topics is a
// change, not a tightening.
func (d Decision) Tighter(prev Decision) bool {
	ds, ps := Severity(d.Action), Severity(prev.Action)
	if ds < 0 || ps < 0 {
		return false
	}
	if ds != ps {
		return ds > ps
	}
	if d.Action != ActionAllow && d.Action != ActionQuarantine {
		return false
	}
	return d.Zone.SecurityLevel < prev.Zone.SecurityLevel
}

// Changed reports whether next treats the device differently from prev:
// another action, zone (name or level), segment, topic list, lifetime or
// renewal grace.
// The rule, reason and policy hash are not compared: a new policy that
// decides the same is no change for the device.
func Changed(prev, next Decision) bool {
	return prev.Action != next.Action ||
		prev.Zone.Name != next.Zone.Name ||
		prev.Zone.SecurityLevel != next.Zone.SecurityLevel ||
		prev.Segment != next.Segment ||
		prev.Lifetime != next.Lifetime ||
		prev.RenewGrace != next.RenewGrace ||
		!slices.Equal(prev.Topics, next.Topics)
}
