package onboard

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
)

func TestApproveReonboarding(t *testing.T) {
	f := setup(t)
	k := newKey(t)
	first, err := f.enroll(f.devs["SN1"], k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.renew(first.Certificate, k); err != nil { // the LDevID is in use
		t.Fatal(err)
	}
	_, err = f.enroll(f.devs["SN1"], newKey(t)) // factory reset
	wantReason(t, err, ReasonHeld)
	if d := f.device("SN1"); d.Flags.Reonboard == "" {
		t.Fatal("re-onboarding hold not flagged")
	}
	d, err := f.svc.Approve(context.Background(), device.ID("acme", "SN1"), "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != device.Expected || d.Flags.Reonboard != "" {
		t.Fatalf("after approve: %s %+v", d.State, d.Flags)
	}
	for _, c := range f.certs("SN1") {
		if c.Status.Usable() {
			t.Fatalf("certificate %s still %s after an approved re-onboarding", c.Serial, c.Status)
		}
	}
	if _, err := f.enroll(f.devs["SN1"], newKey(t)); err != nil {
		t.Fatalf("enrollment after approval: %v", err)
	}
	if d := f.device("SN1"); d.State != device.Onboarded || d.Enrollments != 2 {
		t.Fatalf("device = %s, %d enrollments", d.State, d.Enrollments)
	}
}

func TestDenyHeld(t *testing.T) {
	f := setup(t)
	clone := newDevice(t, "SN1", f.inter, f.clock.Now().Add(-time.Hour), noExpiry)
	_, err := f.enroll(clone, newKey(t))
	wantReason(t, err, ReasonCloneSuspected)
	d, err := f.svc.Deny(context.Background(), device.ID("acme", "SN1"), "bob", "counterfeit confirmed")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != device.Denied || d.Reason != "counterfeit confirmed" {
		t.Fatalf("after deny: %s %q", d.State, d.Reason)
	}
	_, err = f.enroll(f.devs["SN1"], newKey(t))
	wantReason(t, err, ReasonDenied)
}

func TestOperatorActionsRefused(t *testing.T) {
	f := setup(t)
	if _, err := f.enroll(f.devs["SN2"], newKey(t)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"fail/approve-onboarded", func() error {
			_, err := f.svc.Approve(context.Background(), device.ID("acme", "SN2"), "a", "")
			return err
		}, ErrNotHeld},
		{"fail/deny-expected", func() error {
			_, err := f.svc.Deny(context.Background(), device.ID("acme", "SN3"), "a", "")
			return err
		}, ErrNotHeld},
		{"fail/approve-unknown", func() error {
			_, err := f.svc.Approve(context.Background(), device.ID("acme", "NOPE"), "a", "")
			return err
		}, ErrUnknownDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.snapshot()
			if err := tt.do(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if after := f.snapshot(); after.stats != before.stats {
				t.Fatal("registry changed")
			}
		})
	}
}

// serialDecider quarantines, holds or denies the listed serials and allows
// the rest: a stand-in for a policy whose data changed.
type serialDecider struct {
	mu      sync.Mutex
	actions map[string]Action
}

func (s *serialDecider) Decide(_ context.Context, in Input) (Decision, error) {
	s.mu.Lock()
	a, ok := s.actions[in.Device.Provenance.Serial]
	s.mu.Unlock()
	if !ok {
		return Decision{Action: Allow, Zone: "default", Lifetime: 24 * time.Hour, Rule: "allow", PolicyVersion: "t"}, nil
	}
	return Decision{Action: a, Zone: "restricted", SecurityLevel: 1, Lifetime: 24 * time.Hour, Rule: "restrict", PolicyVersion: "t",
		Reason: "data changed"}, nil
}

func TestReevaluateMovesExactlyTheAffected(t *testing.T) {
	dec := &serialDecider{actions: map[string]Action{}}
	f := setup(t, WithDecider(dec))
	for _, s := range []string{"SN1", "SN2", "SN4"} {
		if _, err := f.enroll(f.devs[s], newKey(t)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := f.svc.Reevaluate(context.Background(), true, "test")
	if err != nil || res.Changed != 0 || res.Evaluated != 3 {
		t.Fatalf("nothing changed yet: %+v, %v", res, err)
	}
	dec.mu.Lock()
	dec.actions["SN1"], dec.actions["SN4"] = Quarantine, Deny
	dec.mu.Unlock()
	res, err = f.svc.Reevaluate(context.Background(), true, "vulnerability data v2")
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed != 2 || res.Tightened != 2 {
		t.Fatalf("result = %+v, want 2 changed and tightened", res)
	}
	if d := f.device("SN1"); d.State != device.Quarantined || d.Zone != "restricted" || d.Profile.SecurityLevel != 1 || d.Flags.Pending == "" {
		t.Fatalf("SN1 = %s zone %s profile %+v flags %+v", d.State, d.Zone, d.Profile, d.Flags)
	}
	if d := f.device("SN4"); d.State != device.Denied {
		t.Fatalf("SN4 = %s, want denied", d.State)
	}
	for _, c := range f.certs("SN4") {
		if c.Status.Usable() {
			t.Fatalf("denied device keeps usable certificate %s", c.Serial)
		}
	}
	if d := f.device("SN2"); d.State != device.Onboarded || d.Zone != "default" {
		t.Fatalf("SN2 moved: %s %s", d.State, d.Zone)
	}
	// Idempotent: a second pass changes nothing.
	if res, err := f.svc.Reevaluate(context.Background(), true, "again"); err != nil || res.Changed != 0 {
		t.Fatalf("second pass: %+v, %v", res, err)
	}
}
