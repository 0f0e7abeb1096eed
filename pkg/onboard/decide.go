package onboard

import (
	"context"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/provenance"
)

// Action is what a decision says to do with a device.
type Action string

// Actions a Decider may return.
const (
	Allow      Action = "allow"
	Quarantine Action = "quarantine"
	Hold       Action = "hold"
	Deny       Action = "deny"
)

// Input is what a Decider sees about one request.
type Input struct {
	Device device.Device
	// Renewal is set for renewals, unset for enrollments.
	Renewal bool
	// Transport names the transport the request came over ("coaps", "coaps+tcp", "mqtt").
	Transport string
	// IDevIDExpired is set when the device's IDevID chain had expired and
	// expired chains are accepted as a fact for the decision.
	IDevIDExpired bool
	// Reported is what the device said about itself in this request
	// (firmware version and digest); empty when it said nothing.
	Reported device.Reported
	// FirmwareMismatch explains how the reported firmware differs from the
	// manifest; empty when it matches or nothing was reported.
	FirmwareMismatch string
	// Facts is the device's provenance view (manufacturer trust, owner,
	// firmware, open vulnerabilities, flags, data versions) as read in the
	// same transaction as the device.
	Facts provenance.View
	Now   time.Time
}

// Decision is a Decider's answer.
type Decision struct {
	Action Action
	// Zone is the network zone the device is placed in, with its profile.
	Zone          string
	SecurityLevel int
	Segment       string
	Topics        []string
	// Lifetime is the lifetime of the certificate to issue.
	Lifetime time.Duration
	// RenewGrace is how long after expiry the certificate may still renew.
	RenewGrace time.Duration
	// PolicyVersion and Rule name what decided, for the audit log.
	PolicyVersion string
	Rule          string
	// Reason explains the decision to a person.
	Reason string
}

// Severity orders actions from the least to the most restrictive.
func Severity(a Action) int {
	switch a {
	case Allow:
		return 0
	case Quarantine:
		return 1
	case Hold:
		return 2
	case Deny:
		return 3
	}
	return 3
}

// Decider decides about a device. The policy engine implements it.
type Decider interface {
	Decide(ctx context.Context, in Input) (Decision, error)
}

// StaticDecider allows every known device into one zone with one lifetime,
// refuses expired IDevIDs, and quarantines a device whose reported firmware
// differs from its manifest. It is the decider used until a policy is loaded.
type StaticDecider struct {
	Zone     string
	Lifetime time.Duration
	// QuarantineZone receives devices with a firmware mismatch (default "quarantine").
	QuarantineZone string
	// RenewGrace lets expired certificates renew for that long.
	RenewGrace time.Duration
}

// Decide implements Decider.
func (d StaticDecider) Decide(_ context.Context, in Input) (Decision, error) {
	if in.IDevIDExpired {
		return Decision{Action: Deny, PolicyVersion: "builtin", Rule: "expired-idevid", Reason: "IDevID chain expired"}, nil
	}
	if in.FirmwareMismatch != "" {
		z := d.QuarantineZone
		if z == "" {
			z = "quarantine"
		}
		return Decision{Action: Quarantine, Zone: z, Lifetime: d.Lifetime, RenewGrace: d.RenewGrace, PolicyVersion: "builtin", Rule: "firmware-mismatch",
			Reason: "reported firmware differs from the manifest: " + in.FirmwareMismatch}, nil
	}
	return Decision{Action: Allow, Zone: d.Zone, Lifetime: d.Lifetime, RenewGrace: d.RenewGrace, PolicyVersion: "builtin", Rule: "allow-known",
		Reason: "known device"}, nil
}
