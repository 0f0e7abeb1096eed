package onboard

import (
	"context"
	"errors"
	"fmt"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/provenance"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/policy"
)

// InputOf builds the decision input of a device from the registry, as a
// re-evaluation would see it (for explain and dry runs).
func (s *Service) InputOf(r store.Reader, id string) (Input, error) {
	d, err := r.Device(id)
	if errors.Is(err, store.ErrNotFound) {
		return Input{}, fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	if err != nil {
		return Input{}, err
	}
	return s.inputFor(r, d, provenance.NewCache())
}

// inputFor builds the decision input of a device already read, sharing
// cache across the devices of one pass.
func (s *Service) inputFor(r store.Reader, d device.Device, cache *provenance.Cache) (Input, error) {
	facts, err := provenance.FactsOf(r, d, s.owner, cache)
	if err != nil {
		return Input{}, err
	}
	return Input{Device: d, Renewal: d.Current != "", Transport: "reevaluation", Now: s.clock(),
		Reported: facts.Firmware.Reported, FirmwareMismatch: facts.Firmware.Mismatch, Facts: facts}, nil
}

// Explain evaluates every rule of p for a device: which matched and why,
// and the decision.
func (s *Service) Explain(ctx context.Context, id string, p *policy.Policy) (policy.Input, policy.Explanation, error) {
	var in Input
	if err := s.store.View(ctx, func(r store.Reader) error {
		var err error
		in, err = s.InputOf(r, id)
		return err
	}); err != nil {
		return policy.Input{}, policy.Explanation{}, err
	}
	pi := PolicyInput(in)
	ex, err := p.Explain(pi)
	return pi, ex, err
}

// DryRunRow is what a policy would decide for one device.
type DryRunRow struct {
	Device  string `json:"device"`
	State   string `json:"state"`
	Zone    string `json:"zone,omitempty"`
	Action  string `json:"action"`
	NewZone string `json:"new_zone,omitempty"`
	Rule    string `json:"rule"`
	Reason  string `json:"reason,omitempty"`
	// Change is "", "tighter", "looser" or "zone" (same action, other zone).
	Change string `json:"change,omitempty"`
}

// DryRun decides with p for every registered device without changing
// anything, and reports what would change (all rows when all is set).
func (s *Service) DryRun(ctx context.Context, p *policy.Policy, all bool) ([]DryRunRow, error) {
	var rows []DryRunRow
	err := s.store.View(ctx, func(r store.Reader) error {
		rows = nil
		cache := provenance.NewCache()
		return r.Devices("", func(d device.Device) (bool, error) {
			in, err := s.inputFor(r, d, cache)
			if err != nil {
				return false, err
			}
			dec, err := DecideWith(p, in)
			if err != nil {
				return false, err
			}
			row := DryRunRow{Device: d.ID, State: string(d.State), Zone: d.Zone, Action: string(dec.Action), NewZone: dec.Zone,
				Rule: dec.Rule, Reason: dec.Reason}
			if reevaluable(d.State) || d.State == device.Held || d.State == device.Denied {
				cur := currentAction(d.State)
				switch {
				case Severity(dec.Action) > Severity(cur):
					row.Change = "tighter"
				case Severity(dec.Action) < Severity(cur):
					row.Change = "looser"
				case dec.Zone != d.Zone && (dec.Action == Allow || dec.Action == Quarantine):
					row.Change = "zone"
				}
			}
			if all || row.Change != "" {
				rows = append(rows, row)
			}
			return true, nil
		})
	})
	return rows, err
}

// RecordPolicy writes a policy activation or refusal to the audit log.
func (s *Service) RecordPolicy(ctx context.Context, outcome, detail, policyVersion string) error {
	now := s.clock()
	return s.store.Update(ctx, func(tx store.Tx) error {
		_, err := tx.AppendAudit(audit.Entry{Time: now, Actor: "operator", Action: "policy", Outcome: outcome,
			Detail: detail, Policy: policyVersion})
		return err
	})
}
