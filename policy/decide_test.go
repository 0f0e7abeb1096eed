package policy

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const enginePolicy = `policy: engine
defaults:
  lifetime: 720h
zones:
  - name: production
    security_level: 2
    segment: vlan-20
    topics: ["embark/v1/{device}/#"]
  - name: quarantine
    security_level: 1
    segment: vlan-99
    topics: ["embark/v1/{device}/status"]
  - name: plant
    security_level: 3
    segment: vlan-30
    topics: ["plant/alarms"]
rules:
  - name: broken-index
    when: request.transport == "broken" && vulns.ids[0] == "CVE-1"
    decision: deny
  - name: clock-before-2020
    when: request.time < timestamp("2020-01-01T00:00:00Z")
    decision: deny
    reason: the request time is implausible
  - name: critical
    when: vulns.max_cvss >= 9
    decision: quarantine
    zone: quarantine
    lifetime: 24h
    reason: critical vulnerability
  - name: plant-renewal
    when: request.renewal && device.model == "plc"
    decision: allow
    zone: plant
    lifetime: 1h
    reason: plant controller
  - name: acme
    when: device.manufacturer == "acme" && "CVE-2" in vulns.ids == false
    decision: allow
    zone: production
    reason: acme device
`

const testID = "urn:dev:embark:acme:SN-1"

// acmeInput is a device the engine policy allows into production.
func acmeInput() Input {
	return Input{
		Device:     Device{ID: testID, Manufacturer: "acme", Model: "sensor"},
		Provenance: Provenance{ManufacturerTrusted: true, OwnerOurs: true},
		Request:    Request{Transport: "coaps", Time: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)},
	}
}

func mustParse(t testing.TB, name, src string) *Policy {
	t.Helper()
	p, err := Parse(name, []byte(src))
	if err != nil {
		t.Fatalf("Parse %s: %v", name, err)
	}
	return p
}

func TestDecide(t *testing.T) {
	p := mustParse(t, "engine.yaml", enginePolicy)
	production := Zone{Name: "production", SecurityLevel: 2, Segment: "vlan-20", Topics: []string{"embark/v1/{device}/#"}}
	quarantine := Zone{Name: "quarantine", SecurityLevel: 1, Segment: "vlan-99", Topics: []string{"embark/v1/{device}/status"}}
	plant := Zone{Name: "plant", SecurityLevel: 3, Segment: "vlan-30", Topics: []string{"plant/alarms"}}
	tests := []struct {
		name    string
		edit    func(*Input)
		want    Decision
		wantErr error
	}{
		{
			name: "ok/allow with topics expanded",
			edit: func(*Input) {},
			want: Decision{Action: ActionAllow, Zone: production, Lifetime: 720 * time.Hour,
				Topics: []string{"embark/v1/" + testID + "/#"}, Segment: "vlan-20", Rule: "acme", Reason: "acme device"},
		},
		{
			name: "ok/first match wins",
			edit: func(in *Input) { in.Vulns.MaxCVSS = 9.8 },
			want: Decision{Action: ActionQuarantine, Zone: quarantine, Lifetime: 24 * time.Hour,
				Topics: []string{"embark/v1/" + testID + "/status"}, Segment: "vlan-99", Rule: "critical", Reason: "critical vulnerability"},
		},
		{
			name: "ok/int literal compares with a double",
			edit: func(in *Input) { in.Vulns.MaxCVSS = 9.0 },
			want: Decision{Action: ActionQuarantine, Zone: quarantine, Lifetime: 24 * time.Hour,
				Topics: []string{"embark/v1/" + testID + "/status"}, Segment: "vlan-99", Rule: "critical", Reason: "critical vulnerability"},
		},
		{
			name: "ok/timestamp comparison",
			edit: func(in *Input) { in.Request.Time = time.Date(2019, 12, 31, 23, 59, 59, 0, time.UTC) },
			want: Decision{Action: ActionDeny, Rule: "clock-before-2020", Reason: "the request time is implausible"},
		},
		{
			name: "ok/topics without placeholder",
			edit: func(in *Input) { in.Request.Renewal, in.Device.Model, in.Device.ID = true, "plc", "" },
			want: Decision{Action: ActionAllow, Zone: plant, Lifetime: time.Hour,
				Topics: []string{"plant/alarms"}, Segment: "vlan-30", Rule: "plant-renewal", Reason: "plant controller"},
		},
		{
			name: "ok/list membership",
			edit: func(in *Input) { in.Vulns.IDs = []string{"CVE-1", "CVE-2"} },
			want: Decision{Action: ActionDeny, Rule: DefaultRule, Reason: "no rule matched"},
		},
		{
			name: "ok/no rule matches denies",
			edit: func(in *Input) { in.Device.Manufacturer = "globex" },
			want: Decision{Action: ActionDeny, Rule: DefaultRule, Reason: "no rule matched"},
		},
		{
			name: "ok/short-circuit avoids the failing index",
			edit: func(in *Input) { in.Request.Transport = "coaps+tcp" },
			want: Decision{Action: ActionAllow, Zone: production, Lifetime: 720 * time.Hour,
				Topics: []string{"embark/v1/" + testID + "/#"}, Segment: "vlan-20", Rule: "acme", Reason: "acme device"},
		},
		{
			name:    "fail/evaluation error denies",
			edit:    func(in *Input) { in.Request.Transport = "broken" },
			want:    Decision{Action: ActionDeny, Rule: "broken-index", Reason: "rule failed: index out of bounds: 0"},
			wantErr: ErrEvaluation,
		},
		{
			name:    "fail/device id with a wildcard",
			edit:    func(in *Input) { in.Device.ID = "urn:dev:embark:acme:SN#1" },
			want:    Decision{Action: ActionDeny, Rule: "acme", Reason: `rule failed: policy: device identifier cannot be used in a topic: "urn:dev:embark:acme:SN#1"`},
			wantErr: ErrUnsafeDeviceID,
		},
		{
			name:    "fail/device id with a level separator",
			edit:    func(in *Input) { in.Device.ID = "a/b" },
			want:    Decision{Action: ActionDeny, Rule: "acme", Reason: `rule failed: policy: device identifier cannot be used in a topic: "a/b"`},
			wantErr: ErrUnsafeDeviceID,
		},
		{
			name:    "fail/empty device id",
			edit:    func(in *Input) { in.Device.ID = "" },
			want:    Decision{Action: ActionDeny, Rule: "acme", Reason: `rule failed: policy: device identifier cannot be used in a topic: ""`},
			wantErr: ErrUnsafeDeviceID,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := acmeInput()
			tt.edit(&in)
			d, err := p.Decide(in)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			want := tt.want
			want.PolicyHash = p.Hash()
			if !reflect.DeepEqual(d, want) {
				t.Errorf("decision:\n got %+v\nwant %+v", d, want)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	p := mustParse(t, "engine.yaml", enginePolicy)
	rules := p.Rules()
	results := func(edit func(i int, r *RuleResult)) []RuleResult {
		out := make([]RuleResult, len(rules))
		for i, r := range rules {
			out[i] = RuleResult{Name: r.Name, Expr: r.Expr}
			edit(i, &out[i])
		}
		return out
	}
	tests := []struct {
		name     string
		edit     func(*Input)
		want     []RuleResult
		wantRule string
		wantErr  error
	}{
		{
			name: "ok/match skips later rules",
			edit: func(in *Input) { in.Vulns.MaxCVSS = 9.1 },
			want: results(func(i int, r *RuleResult) {
				r.Matched = i == 2
				r.Skipped = i > 2
			}),
			wantRule: "critical",
		},
		{
			name:     "ok/nothing matches",
			edit:     func(in *Input) { in.Device.Manufacturer = "globex" },
			want:     results(func(int, *RuleResult) {}),
			wantRule: DefaultRule,
		},
		{
			name: "fail/evaluation error stops",
			edit: func(in *Input) { in.Request.Transport = "broken" },
			want: results(func(i int, r *RuleResult) {
				if i == 0 {
					r.Err = "index out of bounds: 0"
				}
				r.Skipped = i > 0
			}),
			wantRule: "broken-index",
			wantErr:  ErrEvaluation,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := acmeInput()
			tt.edit(&in)
			x, err := p.Explain(in)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(x.Rules, tt.want) {
				t.Errorf("rules:\n got %+v\nwant %+v", x.Rules, tt.want)
			}
			d, derr := p.Decide(in)
			if !reflect.DeepEqual(x.Decision, d) || (derr == nil) != (err == nil) {
				t.Errorf("Explain decided %+v, %v; Decide %+v, %v", x.Decision, err, d, derr)
			}
			if x.Decision.Rule != tt.wantRule {
				t.Errorf("rule %q, want %q", x.Decision.Rule, tt.wantRule)
			}
		})
	}
}

// TestPolicyImmutable changes everything a Policy hands out and checks that
// later decisions do not change.
func TestPolicyImmutable(t *testing.T) {
	p := mustParse(t, "engine.yaml", enginePolicy)
	in := acmeInput()
	in.Request.Renewal, in.Device.Model = true, "plc"
	first, err := p.Decide(in)
	if err != nil {
		t.Fatal(err)
	}
	first.Topics[0] = "#"
	first.Zone.Topics[0] = "#"
	for _, z := range p.Zones() {
		if len(z.Topics) > 0 {
			z.Topics[0] = "#"
		}
	}
	if z, ok := p.Zone("plant"); !ok || z.Topics[0] != "plant/alarms" {
		t.Fatalf("Zone(plant) = %+v, %v", z, ok)
	} else {
		z.Topics[0] = "#"
	}
	again, err := p.Decide(in)
	if err != nil {
		t.Fatal(err)
	}
	if again.Topics[0] != "plant/alarms" || again.Zone.Topics[0] != "plant/alarms" {
		t.Errorf("decision changed after its slices were edited: %+v", again)
	}
	if _, ok := p.Zone("nowhere"); ok {
		t.Error("Zone(nowhere) found")
	}
}

// TestDecideConcurrent decides from many goroutines at once; run with
// -race it shows that a Policy needs no locking.
func TestDecideConcurrent(t *testing.T) {
	p := mustParse(t, "engine.yaml", enginePolicy)
	inputs := []Input{acmeInput(), acmeInput(), acmeInput()}
	inputs[1].Vulns.MaxCVSS = 9.9
	inputs[2].Device.Manufacturer = "globex"
	want := make([]Decision, len(inputs))
	for i, in := range inputs {
		d, err := p.Decide(in)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = d
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for n := range 200 {
				i := (g + n) % len(inputs)
				d, err := p.Decide(inputs[i])
				if err != nil || !reflect.DeepEqual(d, want[i]) {
					select {
					case errs <- d.Rule:
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	var bad []string
	for r := range errs {
		bad = append(bad, r)
	}
	if len(bad) > 0 {
		t.Errorf("concurrent decisions differ: %s", strings.Join(bad, ", "))
	}
}

func TestDecideErrorText(t *testing.T) {
	p := mustParse(t, "engine.yaml", enginePolicy)
	tests := []struct {
		name string
		edit func(*Input)
		want string
	}{
		{"fail/evaluation", func(in *Input) { in.Request.Transport = "broken" },
			"policy: rule evaluation failed: index out of bounds: 0 (policy engine, rule broken-index)"},
		{"fail/unsafe id", func(in *Input) { in.Device.ID = "x+" },
			`policy: device identifier cannot be used in a topic: "x+" (policy engine, rule acme)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := acmeInput()
			tt.edit(&in)
			if _, err := p.Decide(in); err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %s", err, tt.want)
			}
		})
	}
}
