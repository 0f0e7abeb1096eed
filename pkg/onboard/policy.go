package onboard

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/embark-iot/embark/policy"
)

// PolicyDecider decides with a CEL policy (package policy), which can be
// replaced at any time (hot reload); until one is set, the fallback decides.
type PolicyDecider struct {
	p        atomic.Pointer[policy.Policy]
	fallback Decider
}

// NewPolicyDecider returns a decider that uses fallback until Set.
func NewPolicyDecider(fallback Decider) *PolicyDecider {
	return &PolicyDecider{fallback: fallback}
}

// Set activates p; requests decided from now on use it.
func (d *PolicyDecider) Set(p *policy.Policy) { d.p.Store(p) }

// Current returns the active policy, nil while the fallback decides.
func (d *PolicyDecider) Current() *policy.Policy { return d.p.Load() }

// Decide implements Decider.
func (d *PolicyDecider) Decide(ctx context.Context, in Input) (Decision, error) {
	p := d.p.Load()
	if p == nil {
		return d.fallback.Decide(ctx, in)
	}
	return DecideWith(p, in)
}

// DecideWith decides about in with policy p.
func DecideWith(p *policy.Policy, in Input) (Decision, error) {
	pd, err := p.Decide(PolicyInput(in))
	if err != nil {
		return Decision{}, fmt.Errorf("policy %s: %w", p.Name(), err)
	}
	return FromPolicy(p, pd), nil
}

// FromPolicy converts a policy decision.
func FromPolicy(p *policy.Policy, pd policy.Decision) Decision {
	seg, topics := pd.Segment, pd.Topics
	if seg == "" {
		seg = pd.Zone.Segment
	}
	if topics == nil {
		topics = pd.Zone.Topics
	}
	return Decision{
		Action: Action(pd.Action), Zone: pd.Zone.Name, SecurityLevel: pd.Zone.SecurityLevel, Segment: seg, Topics: topics,
		Lifetime: pd.Lifetime, RenewGrace: pd.RenewGrace, PolicyVersion: PolicyVersion(p), Rule: pd.Rule, Reason: pd.Reason,
	}
}

// PolicyVersion names a policy in decisions and the audit log: its name
// and the start of its content hash.
func PolicyVersion(p *policy.Policy) string {
	h := p.Hash()
	if len(h) > 12 {
		h = h[:12]
	}
	return p.Name() + "@" + h
}

// PolicyInput maps what the core knows about a request to the typed
// inputs a policy sees.
func PolicyInput(in Input) policy.Input {
	d, f := in.Device, in.Facts
	pi := policy.Input{
		Device: policy.Device{
			ID: d.ID, State: string(d.State), Zone: d.Zone, Manufacturer: d.Provenance.Manufacturer, Model: d.Provenance.Model,
			Serial: d.Provenance.Serial, HardwareRev: d.Provenance.HardwareRev,
			FirmwareRecorded: d.Provenance.FirmwareVersion, FirmwareReported: in.Reported.FirmwareVersion,
			FirmwareMismatch: in.FirmwareMismatch != "",
		},
		Provenance: policy.Provenance{
			ManufacturerTrusted: f.Manufacturer.Trusted, OwnerOurs: f.Owner.Ours, Owner: d.Provenance.Owner,
			Transfers: int64(d.Provenance.Transfers), Clone: d.Flags.Clone != "", IDevIDExpired: in.IDevIDExpired,
			ManifestRevision: int64(d.Provenance.ManifestRevision), Site: d.Provenance.Site,
		},
		Vulns:   policy.Vulns{Open: int64(len(f.Vulns.Open)), MaxCVSS: f.Vulns.MaxCVSS, DataVersion: int64(f.DataVersions.VulnData)},
		History: policy.History{Enrollments: int64(d.Enrollments), Renewals: int64(d.Renewals), LastRule: d.Profile.Rule},
		Request: policy.Request{Transport: in.Transport, Renewal: in.Renewal, Time: in.Now},
	}
	if d.Profile.Rule != "" {
		pi.History.LastDecision = string(currentAction(d.State))
	}
	for _, v := range f.Vulns.Open {
		pi.Vulns.IDs = append(pi.Vulns.IDs, v.ID)
	}
	if r := f.Vulns.Reported; r != nil {
		pi.Vulns.ReportedMaxCVSS = r.MaxCVSS
	}
	return pi
}
