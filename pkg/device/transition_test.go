package device

import (
	"errors"
	"testing"
)

func TestNext(t *testing.T) {
	tests := []struct {
		name string
		from State
		ev   Event
		want State
		fail bool
	}{
		{"ok/expected-enroll", Expected, EvEnroll, Onboarded, false},
		{"ok/onboarded-renew-enroll", Onboarded, EvEnroll, Onboarded, false},
		{"ok/onboarded-quarantine", Onboarded, EvQuarantine, Quarantined, false},
		{"ok/quarantined-enroll", Quarantined, EvEnroll, Onboarded, false},
		{"ok/expected-hold", Expected, EvHold, Held, false},
		{"ok/held-approve", Held, EvApprove, Expected, false},
		{"ok/onboarded-revoke", Onboarded, EvRevoke, Revoked, false},
		{"ok/revoked-reonboard", Revoked, EvReonboard, Expected, false},
		{"ok/any-decommission", Quarantined, EvDecom, Decommissioned, false},
		{"ok/onboarded-transfer", Onboarded, EvTransfer, Transferred, false},
		{"ok/transferred-acquire", Transferred, EvAcquire, Expected, false},
		{"fail/transferred-enroll", Transferred, EvEnroll, Transferred, true},
		{"fail/decommissioned-transfer", Decommissioned, EvTransfer, Decommissioned, true},
		{"fail/revoked-enroll", Revoked, EvEnroll, Revoked, true},
		{"fail/decommissioned-enroll", Decommissioned, EvEnroll, Decommissioned, true},
		{"fail/denied-enroll", Denied, EvEnroll, Denied, true},
		{"fail/expected-approve", Expected, EvApprove, Expected, true},
		{"fail/expected-revoke", Expected, EvRevoke, Expected, true},
		{"fail/decommissioned-decommission", Decommissioned, EvDecom, Decommissioned, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Next(tt.from, tt.ev)
			if tt.fail {
				var te *ErrTransition
				if !errors.As(err, &te) {
					t.Fatalf("Next(%s, %s) err = %v, want ErrTransition", tt.from, tt.ev, err)
				}
			} else if err != nil {
				t.Fatalf("Next(%s, %s): %v", tt.from, tt.ev, err)
			}
			if got != tt.want {
				t.Fatalf("Next(%s, %s) = %s, want %s", tt.from, tt.ev, got, tt.want)
			}
		})
	}
}

func TestID(t *testing.T) {
	id := ID("acme", "SN-1:2")
	if id != "urn:dev:embark:acme:SN-1:2" {
		t.Fatalf("ID = %q", id)
	}
	m, s, err := ParseID(id)
	if err != nil || m != "acme" || s != "SN-1:2" {
		t.Fatalf("ParseID(%q) = %q, %q, %v", id, m, s, err)
	}
	if n, err := NormalizeID("acme:SN-1"); err != nil || n != "urn:dev:embark:acme:SN-1" {
		t.Fatalf("NormalizeID short = %q, %v", n, err)
	}
	for _, bad := range []string{"", "acme", ":x", "acme:", URNPrefix} {
		if _, _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) succeeded", bad)
		}
	}
}
