package policy

import (
	"testing"
	"time"
)

func TestSeverity(t *testing.T) {
	tests := []struct {
		action string
		want   int
	}{
		{ActionAllow, 0}, {ActionQuarantine, 1}, {ActionHold, 2}, {ActionDeny, 3},
		{"", -1}, {"Allow", -1}, {"permit", -1},
	}
	for _, tt := range tests {
		if got := Severity(tt.action); got != tt.want {
			t.Errorf("Severity(%q) = %d, want %d", tt.action, got, tt.want)
		}
	}
}

func TestTighterAndChanged(t *testing.T) {
	prod := Zone{Name: "production", SecurityLevel: 2}
	prodB := Zone{Name: "production-b", SecurityLevel: 2}
	control := Zone{Name: "control", SecurityLevel: 3}
	quar := Zone{Name: "quarantine", SecurityLevel: 1}
	allow := func(z Zone) Decision {
		return Decision{Action: ActionAllow, Zone: z, Segment: z.Name, Lifetime: 720 * time.Hour, Topics: []string{"t/" + z.Name}, Rule: "r"}
	}
	quarantine := func(z Zone) Decision {
		return Decision{Action: ActionQuarantine, Zone: z, Segment: z.Name, Lifetime: 24 * time.Hour, Rule: "q"}
	}
	hold := Decision{Action: ActionHold, Rule: "h"}
	deny := Decision{Action: ActionDeny, Rule: "d"}
	shorter := allow(prod)
	shorter.Lifetime = time.Hour
	otherRule := allow(prod)
	otherRule.Rule, otherRule.Reason, otherRule.PolicyHash = "other", "another reason", "abc"
	tests := []struct {
		name             string
		prev, next       Decision
		tighter, changed bool
	}{
		{"ok/allow to quarantine", allow(prod), quarantine(quar), true, true},
		{"ok/allow to hold", allow(prod), hold, true, true},
		{"ok/quarantine to deny", quarantine(quar), deny, true, true},
		{"ok/hold to deny", hold, deny, true, true},
		{"ok/allow into a lower level", allow(control), allow(prod), true, true},
		{"ok/quarantine into a lower level", quarantine(prod), quarantine(quar), true, true},
		{"ok/allow into a higher level", allow(prod), allow(control), false, true},
		{"ok/same level, other zone", allow(prod), allow(prodB), false, true},
		{"ok/quarantine to allow", quarantine(quar), allow(prod), false, true},
		{"ok/deny to hold", deny, hold, false, true},
		{"ok/same decision", allow(prod), allow(prod), false, false},
		{"ok/other rule, same effect", allow(prod), otherRule, false, false},
		{"ok/shorter lifetime", allow(prod), shorter, false, true},
		{"ok/deny again", deny, deny, false, false},
		{"ok/no earlier decision", Decision{}, deny, false, true},
		{"ok/unknown new action", allow(prod), Decision{Action: "bogus"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.next.Tighter(tt.prev); got != tt.tighter {
				t.Errorf("Tighter = %v, want %v", got, tt.tighter)
			}
			if got := Changed(tt.prev, tt.next); got != tt.changed {
				t.Errorf("Changed = %v, want %v", got, tt.changed)
			}
		})
	}
}
