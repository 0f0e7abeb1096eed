package onboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/provenance"
	"github.com/embark-iot/embark/pkg/store"
)

// Errors of the operator actions.
var (
	// ErrNotHeld: approve or deny of a device that is not waiting for an operator.
	ErrNotHeld = errors.New("onboard: device is not held")
	// ErrUnknownDevice: no device with that identifier.
	ErrUnknownDevice = errors.New("onboard: unknown device")
)

// Approve lets a held device proceed: it goes back to expected and may
// enroll. When it was held for re-onboarding (a new key while an LDevID was
// in use), its live certificates are superseded, so that the next
// enrollment issues a fresh identity; a clone suspicion is cleared.
func (s *Service) Approve(ctx context.Context, id, actor, reason string) (device.Device, error) {
	return s.operatorAction(ctx, id, actor, "approve", reason, func(tx store.Tx, d *device.Device, now time.Time) error {
		if d.State != device.Held {
			return fmt.Errorf("%w: %s is %s", ErrNotHeld, d.ID, d.State)
		}
		if d.Flags.Reonboard != "" {
			if _, err := s.retire(tx, d.ID, device.CertSuperseded, "re-onboarding approved by "+actor, now, ReasonCodeSuperseded); err != nil {
				return err
			}
			d.Current, d.Previous = "", ""
		}
		next, err := device.Next(d.State, device.EvApprove)
		if err != nil {
			return err
		}
		d.State = next
		d.Flags.Reonboard, d.Flags.Clone = "", ""
		return nil
	})
}

// Deny refuses a held device: it is denied and its certificates revoked.
func (s *Service) Deny(ctx context.Context, id, actor, reason string) (device.Device, error) {
	var gone []string
	d, err := s.operatorAction(ctx, id, actor, "deny", reason, func(tx store.Tx, d *device.Device, now time.Time) error {
		if d.State != device.Held {
			return fmt.Errorf("%w: %s is %s", ErrNotHeld, d.ID, d.State)
		}
		var err error
		if gone, err = s.retire(tx, d.ID, device.CertRevoked, "denied by "+actor, now, ReasonCodePrivilegeWithdrawn); err != nil {
			return err
		}
		next, err := device.Next(d.State, device.EvDeny)
		if err != nil {
			return err
		}
		d.State, d.Flags.Reonboard = next, ""
		d.Flags.Pending = "revoked: denied by an operator"
		return nil
	})
	if err == nil {
		s.revoked(gone)
	}
	return d, err
}

func (s *Service) operatorAction(ctx context.Context, id, actor, op, reason string,
	apply func(tx store.Tx, d *device.Device, now time.Time) error) (device.Device, error) {
	now := s.clock()
	if reason == "" {
		reason = op + " by " + actor
	}
	var out device.Device
	err := s.store.Update(ctx, func(tx store.Tx) error {
		d, err := tx.Device(id)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrUnknownDevice, id)
		}
		if err != nil {
			return err
		}
		if err := apply(tx, &d, now); err != nil {
			return err
		}
		d.Reason, d.Cause, d.UpdatedAt = reason, "operator:"+actor, now
		if _, err := tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: op, DeviceID: d.ID,
			Outcome: string(d.State), Detail: reason}); err != nil {
			return err
		}
		if err := tx.PutDevice(&d); err != nil {
			return err
		}
		out = d
		return nil
	})
	return out, err
}

// retire moves every usable certificate of a device to status; revoked
// ones are recorded for the CRL through the revocation hook. It returns
// the serials it retired.
func (s *Service) retire(tx store.Tx, id string, status device.CertStatus, reason string, now time.Time, code int) ([]string, error) {
	certs, err := tx.CertificatesOf(id)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range certs {
		if !c.Status.Usable() {
			continue
		}
		c.Status, c.StatusAt, c.Reason = status, now, reason
		if err := tx.PutCertificate(c); err != nil {
			return nil, err
		}
		if status == device.CertRevoked && s.revHook.Record != nil {
			if err := s.revHook.Record(tx, c, now, code); err != nil {
				return nil, err
			}
		}
		out = append(out, c.Serial)
	}
	return out, nil
}

// revoked tells the hook which certificates a committed transaction revoked.
func (s *Service) revoked(serials []string) {
	if s.revHook.Committed != nil && len(serials) > 0 {
		s.revHook.Committed(serials)
	}
}

// ReevaluationResult counts what a re-evaluation did.
type ReevaluationResult struct {
	Evaluated int `json:"evaluated"`
	Changed   int `json:"changed"`
	Tightened int `json:"tightened"`
	// Moved lists the devices whose state or zone changed (at most 1000).
	Moved []string `json:"moved,omitempty"`
}

// reevaluable are the states in which a device holds (or may get) a
// credential that a new decision can restrict.
func reevaluable(s device.State) bool {
	return s == device.Onboarded || s == device.Quarantined
}

// currentAction is the action a device's state stands for.
func currentAction(s device.State) Action {
	switch s {
	case device.Onboarded:
		return Allow
	case device.Quarantined:
		return Quarantine
	case device.Held:
		return Hold
	}
	return Deny
}

// reevalBatch bounds the devices decided and moved in one transaction.
const reevalBatch = 1000

// Reevaluate decides again about onboarded and quarantined devices (all of
// them, or only those flagged for re-evaluation) and applies what changed
// at once: a device now quarantined, held or denied is moved there in the
// registry — where the enforcement points read it — and the change is
// recorded as pending for the device to be told. Flags are cleared.
func (s *Service) Reevaluate(ctx context.Context, all bool, cause string) (ReevaluationResult, error) {
	var res ReevaluationResult
	after := ""
	for {
		var batch []string
		if err := s.store.View(ctx, func(r store.Reader) error {
			return r.Devices(after, func(d device.Device) (bool, error) {
				after = d.ID
				if (all || d.Flags.Reevaluate != "") && (reevaluable(d.State) || d.Flags.Reevaluate != "") {
					batch = append(batch, d.ID)
				}
				return len(batch) < reevalBatch, nil
			})
		}); err != nil {
			return res, fmt.Errorf("onboard: reevaluate: %w", err)
		}
		if len(batch) == 0 {
			return res, nil
		}
		if err := s.reevaluateBatch(ctx, batch, cause, &res); err != nil {
			return res, err
		}
		if len(batch) < reevalBatch {
			return res, nil
		}
	}
}

func (s *Service) reevaluateBatch(ctx context.Context, ids []string, cause string, res *ReevaluationResult) error {
	now := s.clock()
	// Decide outside the write transaction (reads only), apply inside.
	type change struct {
		dev device.Device
		dec Decision
	}
	var changes []change
	var clear []device.Device
	err := s.store.View(ctx, func(r store.Reader) error {
		cache := provenance.NewCache()
		for _, id := range ids {
			d, err := r.Device(id)
			if err != nil {
				return err
			}
			if !reevaluable(d.State) {
				clear = append(clear, d)
				continue
			}
			facts, err := provenance.FactsOf(r, d, s.owner, cache)
			if err != nil {
				return err
			}
			dec, err := s.decider.Decide(ctx, Input{Device: d, Renewal: true, Transport: "reevaluation", Now: now,
				Reported: facts.Firmware.Reported, FirmwareMismatch: facts.Firmware.Mismatch, Facts: facts})
			if err != nil {
				return err
			}
			res.Evaluated++
			if dec.Action == currentAction(d.State) && dec.Zone == d.Zone {
				clear = append(clear, d)
				continue
			}
			changes = append(changes, change{d, dec})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("onboard: reevaluate: %w", err)
	}
	var gone []string
	err = s.store.Update(ctx, func(tx store.Tx) error {
		gone = gone[:0]
		for _, c := range clear {
			if c.Flags.Reevaluate == "" {
				continue
			}
			d, err := tx.Device(c.ID)
			if err != nil {
				return err
			}
			d.Flags.Reevaluate = ""
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
		}
		for _, c := range changes {
			d, err := tx.Device(c.dev.ID)
			if err != nil {
				return err
			}
			if d.Revision != c.dev.Revision {
				continue // changed meanwhile: the next enrollment or pass decides
			}
			prev := currentAction(d.State)
			if err := s.applyReevaluation(tx, &d, c.dec, now, &gone); err != nil {
				return err
			}
			d.Flags.Reevaluate = ""
			if _, err := tx.AppendAudit(audit.Entry{Time: now, Actor: "policy", Action: "reevaluate", DeviceID: d.ID,
				Outcome: string(d.State), Policy: c.dec.PolicyVersion + "/" + c.dec.Rule,
				Detail: fmt.Sprintf("%s: %s -> %s zone %s: %s", cause, prev, c.dec.Action, c.dec.Zone, c.dec.Reason)}); err != nil {
				return err
			}
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("onboard: reevaluate: %w", err)
	}
	s.revoked(gone)
	for _, c := range changes {
		res.Changed++
		if Severity(c.dec.Action) > Severity(currentAction(c.dev.State)) {
			res.Tightened++
		}
		if len(res.Moved) < 1000 {
			res.Moved = append(res.Moved, c.dev.ID)
		}
	}
	if len(changes) > 0 {
		s.log.Info("re-evaluated", slog.String("cause", cause), slog.Int("changed", len(changes)))
	}
	return nil
}

// applyReevaluation moves a device to what a new decision says.
func (s *Service) applyReevaluation(tx store.Tx, d *device.Device, dec Decision, now time.Time, revokedOut *[]string) error {
	switch dec.Action {
	case Allow, Quarantine:
		if err := s.moveTo(d, dec, now, "reevaluation"); err != nil {
			return err
		}
		d.Flags.Pending = fmt.Sprintf("zone changed to %s", dec.Zone)
	case Hold:
		next, err := device.Next(d.State, device.EvHold)
		if err != nil {
			return err
		}
		d.State, d.Reason, d.Cause, d.UpdatedAt = next, dec.Reason, "reevaluation", now
		d.Flags.Pending = "held: " + dec.Reason
	case Deny:
		gone, err := s.retire(tx, d.ID, device.CertRevoked, "denied by policy rule "+dec.Rule, now, ReasonCodePrivilegeWithdrawn)
		if err != nil {
			return err
		}
		*revokedOut = append(*revokedOut, gone...)
		next, err := device.Next(d.State, device.EvDeny)
		if err != nil {
			return err
		}
		d.State, d.Reason, d.Cause, d.UpdatedAt = next, dec.Reason, "reevaluation", now
		d.Flags.Pending = "revoked: " + dec.Reason
	default:
		return fmt.Errorf("unknown action %q", dec.Action)
	}
	return nil
}
