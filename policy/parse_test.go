package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// head is the start of most test files: a name, a default lifetime and two
// zones. It has 12 lines, so a rule appended to it starts on line 13.
const head = `policy: test
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
rules:
`

func TestHeadLines(t *testing.T) {
	if n := strings.Count(head, "\n"); n != 12 {
		t.Fatalf("head has %d lines, the tests count on 12", n)
	}
}

func TestParseRefused(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []Error // File is "p.yaml"
	}{
		{
			name: "fail/yaml syntax error",
			src:  head + "  - name: a\n    when: x: y\n    decision: deny\n",
			want: []Error{{Line: 14, Reason: ReasonSyntax, Msg: "mapping values are not allowed in this context"}},
		},
		{
			name: "fail/yaml unclosed flow list",
			src:  "policy: test\nzones:\n  - name: a\n    topics: [a, b\n    security_level: 1\nrules: []\n",
			want: []Error{{Line: 4, Reason: ReasonSyntax, Msg: "did not find expected ',' or ']'"}},
		},
		{
			name: "fail/yaml bad indentation",
			src:  "rules:\n  - name: a\n   when: x\n",
			want: []Error{{Line: 2, Reason: ReasonSyntax, Msg: "did not find expected '-' indicator"}},
		},
		{
			name: "fail/yaml tab",
			src:  "policy: a\n\trules: []\n",
			want: []Error{{Line: 2, Reason: ReasonSyntax, Msg: "found a tab character that violates indentation"}},
		},
		{
			name: "fail/cel syntax error",
			src:  head + "  - name: a\n    when: \"device.model == \"\n    decision: deny\n",
			want: []Error{{Line: 14, Column: 28, Reason: ReasonExpression,
				Msg: "rule a: when: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}"}},
		},
		{
			name: "fail/cel type error",
			src:  head + "  - name: a\n    when: device.model > 3\n    decision: deny\n",
			want: []Error{{Line: 14, Column: 24, Reason: ReasonExpression,
				Msg: "rule a: when: found no matching overload for '_>_' applied to '(string, int)'"}},
		},
		{
			name: "fail/unknown input field",
			src:  head + "  - name: a\n    when: device.colour == 'red'\n    decision: deny\n",
			want: []Error{{Line: 14, Column: 17, Reason: ReasonExpression, Msg: "rule a: when: undefined field 'colour'"}},
		},
		{
			name: "fail/unknown variable",
			src:  head + "  - name: a\n    when: 'devices.model == \"x\"'\n    decision: deny\n",
			want: []Error{{Line: 14, Column: 12, Reason: ReasonExpression, Msg: "rule a: when: undeclared reference to 'devices' (did you mean 'device'?)"}},
		},
		{
			name: "fail/expression not bool",
			src:  head + "  - name: a\n    when: vulns.max_cvss\n    decision: deny\n",
			want: []Error{{Line: 14, Column: 11, Reason: ReasonExpression, Msg: "rule a: when: must be a bool expression, found double"}},
		},
		{
			name: "fail/cel error in literal block on its second line",
			src:  head + "  - name: a\n    when: |\n      device.model == 'x' &&\n        device.colour\n    decision: deny\n",
			want: []Error{{Line: 16, Column: 15, Reason: ReasonExpression, Msg: "rule a: when: undefined field 'colour'"}},
		},
		{
			name: "fail/cel error in folded block at the expression",
			src:  head + "  - name: a\n    when: >\n      device.model == 'x' &&\n        device.colour\n    decision: deny\n",
			want: []Error{{Line: 14, Column: 11, Reason: ReasonExpression, Msg: "rule a: when: undefined field 'colour' (expression line 2, column 9)"}},
		},
		{
			name: "fail/rule without decision",
			src:  head + "  - name: a\n    when: 'true'\n",
			want: []Error{{Line: 13, Column: 5, Reason: ReasonStructure, Msg: "rule a: missing decision"}},
		},
		{
			name: "fail/rule without when",
			src:  head + "  - name: a\n    decision: deny\n",
			want: []Error{{Line: 13, Column: 5, Reason: ReasonStructure, Msg: "rule a: missing when"}},
		},
		{
			name: "fail/rule without name",
			src:  head + "  - when: 'true'\n    decision: deny\n",
			want: []Error{{Line: 13, Column: 5, Reason: ReasonStructure, Msg: "rule: missing name"}},
		},
		{
			name: "fail/rule key without value",
			src:  head + "  - name: a\n    when: 'true'\n    decision:\n",
			want: []Error{{Line: 15, Column: 5, Reason: ReasonStructure, Msg: "rule a: decision has no value"}},
		},
		{
			name: "fail/decision not one of the four",
			src:  head + "  - name: a\n    when: 'true'\n    decision: permit\n",
			want: []Error{{Line: 15, Column: 15, Reason: ReasonValue, Msg: `decision "permit" is not one of allow, quarantine, hold, deny`}},
		},
		{
			name: "fail/zone not defined",
			src:  head + "  - name: a\n    when: 'true'\n    decision: allow\n    zone: prod\n",
			want: []Error{{Line: 16, Column: 11, Reason: ReasonUndefined, Msg: `zone "prod" is not defined`}},
		},
		{
			name: "fail/allow without zone",
			src:  head + "  - name: a\n    when: 'true'\n    decision: allow\n",
			want: []Error{{Line: 13, Column: 5, Reason: ReasonStructure, Msg: "rule a: decision allow needs a zone"}},
		},
		{
			name: "fail/deny with zone and lifetime",
			src:  head + "  - name: a\n    when: 'true'\n    decision: deny\n    zone: production\n    lifetime: 1h\n",
			want: []Error{
				{Line: 16, Column: 5, Reason: ReasonStructure, Msg: "rule a: decision deny takes no zone"},
				{Line: 17, Column: 5, Reason: ReasonStructure, Msg: "rule a: decision deny takes no lifetime"},
			},
		},
		{
			name: "fail/duplicate rule names",
			src:  head + "  - name: a\n    when: 'true'\n    decision: deny\n  - name: a\n    when: 'false'\n    decision: hold\n",
			want: []Error{{Line: 16, Column: 11, Reason: ReasonDuplicate, Msg: `duplicate rule name "a" (first at line 13, column 11)`}},
		},
		{
			name: "fail/duplicate zone names",
			src:  "zones:\n  - name: z\n    security_level: 1\n  - name: z\n    security_level: 2\nrules:\n  - name: a\n    when: 'true'\n    decision: deny\n",
			want: []Error{{Line: 4, Column: 11, Reason: ReasonDuplicate, Msg: `duplicate zone name "z" (first at line 2, column 11)`}},
		},
		{
			name: "fail/lifetime not a duration",
			src:  head + "  - name: a\n    when: 'true'\n    decision: allow\n    zone: production\n    lifetime: 30 days\n",
			want: []Error{{Line: 17, Column: 15, Reason: ReasonValue, Msg: `lifetime "30 days" is not a duration (such as 720h or 90m)`}},
		},
		{
			name: "fail/lifetime not positive",
			src:  head + "  - name: a\n    when: 'true'\n    decision: quarantine\n    zone: quarantine\n    lifetime: -1h\n",
			want: []Error{{Line: 17, Column: 15, Reason: ReasonValue, Msg: `lifetime "-1h" is not positive`}},
		},
		{
			name: "fail/renew_grace above the bound",
			src:  head + "  - name: a\n    when: 'true'\n    decision: allow\n    zone: production\n    renew_grace: 721h\n",
			want: []Error{{Line: 17, Column: 18, Reason: ReasonValue, Msg: `renew_grace "721h" is not between 0 and 720h0m0s`}},
		},
		{
			name: "fail/renew_grace negative in defaults",
			src:  "defaults:\n  lifetime: 1h\n  renew_grace: -1h\nrules:\n  - name: a\n    when: 'true'\n    decision: deny\n",
			want: []Error{{Line: 3, Column: 16, Reason: ReasonValue, Msg: `renew_grace "-1h" is not between 0 and 720h0m0s`}},
		},
		{
			name: "fail/renew_grace on a hold rule",
			src:  head + "  - name: a\n    when: 'true'\n    decision: hold\n    renew_grace: 24h\n",
			want: []Error{{Line: 16, Column: 5, Reason: ReasonStructure, Msg: "rule a: decision hold takes no renew_grace"}},
		},
		{
			name: "fail/lifetime zero in defaults",
			src:  "defaults:\n  lifetime: 0s\nrules:\n  - name: a\n    when: 'true'\n    decision: deny\n",
			want: []Error{{Line: 2, Column: 13, Reason: ReasonValue, Msg: `lifetime "0s" is not positive`}},
		},
		{
			name: "fail/allow without any lifetime",
			src:  "zones:\n  - name: z\n    security_level: 1\nrules:\n  - name: a\n    when: 'true'\n    decision: allow\n    zone: z\n",
			want: []Error{{Line: 5, Column: 5, Reason: ReasonStructure, Msg: "rule a: decision allow needs a lifetime (here or in defaults)"}},
		},
		{
			name: "fail/unknown top-level key",
			src:  "policy: p\nrule:\n  - name: a\n",
			want: []Error{
				{Line: 1, Column: 1, Reason: ReasonStructure, Msg: "no rules"},
				{Line: 2, Column: 1, Reason: ReasonStructure, Msg: `policy: unknown key "rule" (known: policy, description, defaults, zones, rules)`},
			},
		},
		{
			name: "fail/misspelt rule key",
			src:  head + "  - name: a\n    when: 'true'\n    decison: deny\n",
			want: []Error{
				{Line: 13, Column: 5, Reason: ReasonStructure, Msg: "rule a: missing decision"},
				{Line: 15, Column: 5, Reason: ReasonStructure, Msg: `rule a: unknown key "decison" (known: name, description, when, decision, zone, lifetime, renew_grace, topics, segment, reason)`},
			},
		},
		{
			name: "fail/repeated key",
			src:  head + "  - name: a\n    when: 'true'\n    decision: allow\n    decision: deny\n",
			want: []Error{
				{Line: 13, Column: 5, Reason: ReasonStructure, Msg: "rule a: decision allow needs a zone"},
				{Line: 16, Column: 5, Reason: ReasonStructure, Msg: `rule a: key "decision" repeated (first at line 15, column 5)`},
			},
		},
		{
			name: "fail/no rules key",
			src:  "policy: p\n",
			want: []Error{{Line: 1, Column: 1, Reason: ReasonStructure, Msg: "no rules"}},
		},
		{
			name: "fail/empty rule list",
			src:  "policy: p\nrules: []\n",
			want: []Error{{Line: 2, Column: 8, Reason: ReasonStructure, Msg: "no rules"}},
		},
		{
			name: "fail/rules not a list",
			src:  "rules:\n  name: a\n",
			want: []Error{{Line: 2, Column: 3, Reason: ReasonStructure, Msg: "rules must be a list of rules"}},
		},
		{
			name: "fail/empty file",
			src:  "",
			want: []Error{{Line: 1, Column: 1, Reason: ReasonStructure, Msg: "empty policy file"}},
		},
		{
			name: "fail/not a mapping",
			src:  "- a\n- b\n",
			want: []Error{{Line: 1, Column: 1, Reason: ReasonStructure, Msg: "a policy is a mapping with the keys policy, description, defaults, zones, rules"}},
		},
		{
			name: "fail/two documents",
			src:  "rules: []\n---\nrules: []\n",
			want: []Error{{Line: 2, Column: 1, Reason: ReasonStructure, Msg: "a second YAML document; a policy file holds one"}},
		},
		{
			name: "fail/reserved rule name",
			src:  head + "  - name: default\n    when: 'true'\n    decision: deny\n",
			want: []Error{{Line: 13, Column: 11, Reason: ReasonValue, Msg: `rule name "default" is reserved for the decision when no rule matches`}},
		},
		{
			name: "fail/malformed rule name",
			src:  head + "  - name: my rule\n    when: 'true'\n    decision: deny\n",
			want: []Error{{Line: 13, Column: 11, Reason: ReasonValue, Msg: `rule name "my rule": use letters, digits, '.', '_' and '-', starting with a letter or digit`}},
		},
		{
			name: "fail/security level out of range",
			src:  "zones:\n  - name: z\n    security_level: 5\nrules:\n  - name: a\n    when: 'true'\n    decision: deny\n",
			want: []Error{{Line: 3, Column: 21, Reason: ReasonValue, Msg: `security_level "5" is not an IEC 62443 security level (1 to 4)`}},
		},
		{
			name: "fail/a broken zone is still defined for rules",
			src:  "defaults:\n  lifetime: 1h\nzones:\n  - name: z\n    security_level: high\nrules:\n  - name: a\n    when: 'true'\n    decision: allow\n    zone: z\n",
			want: []Error{{Line: 5, Column: 21, Reason: ReasonValue, Msg: `security_level "high" is not an IEC 62443 security level (1 to 4)`}},
		},
		{
			name: "fail/zone without security level",
			src:  "zones:\n  - name: z\nrules:\n  - name: a\n    when: 'true'\n    decision: deny\n",
			want: []Error{{Line: 2, Column: 5, Reason: ReasonStructure, Msg: "zone z: missing security_level"}},
		},
		{
			name: "fail/topic with misplaced wildcard",
			src:  "zones:\n  - name: z\n    security_level: 1\n    topics: ['a/#/b', 'a/b+']\nrules:\n  - name: a\n    when: 'true'\n    decision: deny\n",
			want: []Error{
				{Line: 4, Column: 14, Reason: ReasonValue, Msg: `topic "a/#/b": '#' must be the whole last level`},
				{Line: 4, Column: 23, Reason: ReasonValue, Msg: `topic "a/b+": '+' must be a whole level`},
			},
		},
		{
			name: "fail/topic with unknown placeholder",
			src:  head + "  - name: a\n    when: 'true'\n    decision: allow\n    zone: production\n    topics: [\"x/{zone}\"]\n",
			want: []Error{{Line: 17, Column: 14, Reason: ReasonValue, Msg: `topic "x/{zone}": the only placeholder is {device}`}},
		},
		{
			name: "fail/several problems in file order",
			src:  head + "  - name: a\n    when: device.colour\n    decision: allow\n    zone: nowhere\n  - name: b\n    when: 'true'\n",
			want: []Error{
				{Line: 14, Column: 17, Reason: ReasonExpression, Msg: "rule a: when: undefined field 'colour'"},
				{Line: 16, Column: 11, Reason: ReasonUndefined, Msg: `zone "nowhere" is not defined`},
				{Line: 17, Column: 5, Reason: ReasonStructure, Msg: "rule b: missing decision"},
			},
		},
		{
			name: "fail/too large",
			src:  "policy: p\n" + strings.Repeat("#", MaxSize),
			want: []Error{{Reason: ReasonSyntax, Msg: "larger than 1048576 bytes"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tt.src))
			if p != nil {
				t.Fatalf("Parse returned a policy for a broken file")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not *Errors", err)
			}
			want := make(Errors, len(tt.want))
			for i, e := range tt.want {
				e.File = "p.yaml"
				want[i] = e
			}
			if !reflect.DeepEqual(*errs, want) {
				t.Errorf("errors:\n got %#v\nwant %#v", *errs, want)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	errs := &Errors{
		{File: "p.yaml", Line: 3, Column: 7, Msg: "one"},
		{File: "p.yaml", Line: 4, Msg: "two"},
		{File: "p.yaml", Msg: "three"},
	}
	if got, want := errs.Error(), "p.yaml:3:7: one\np.yaml:4: two\np.yaml: three"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var e Error
	if !errors.As(errs, &e) || e.Msg != "one" {
		t.Errorf("errors.As(Error) = %+v, want the first item", e)
	}
}

func TestParseOK(t *testing.T) {
	src := head + `  - name: anchors
    when: device.model == "x"
    decision: quarantine
    zone: quarantine
    lifetime: 24h
    topics: &t ["embark/v1/{device}/status", "site/+/alarms"]
  - name: alias
    when: |
      device.model == "y"
    decision: allow
    zone: production
    segment: vlan-21
    topics: *t
    reason: reused topics
  - name: stop
    when: "false"
    decision: hold
`
	p, err := Parse("dir/sub/p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(src))
	if p.Hash() != hex.EncodeToString(sum[:]) {
		t.Errorf("Hash = %s", p.Hash())
	}
	if p.Name() != "test" || p.File() != "dir/sub/p.yaml" {
		t.Errorf("Name, File = %q, %q", p.Name(), p.File())
	}
	wantZones := []Zone{
		{Name: "production", SecurityLevel: 2, Segment: "vlan-20", Topics: []string{"embark/v1/{device}/#"}},
		{Name: "quarantine", SecurityLevel: 1, Segment: "vlan-99"},
	}
	if got := p.Zones(); !reflect.DeepEqual(got, wantZones) {
		t.Errorf("Zones = %+v", got)
	}
	wantRules := []Rule{
		{Name: "anchors", Expr: `device.model == "x"`, Action: ActionQuarantine, Zone: "quarantine"},
		{Name: "alias", Expr: "device.model == \"y\"\n", Action: ActionAllow, Zone: "production"},
		{Name: "stop", Expr: "false", Action: ActionHold},
	}
	if got := p.Rules(); !reflect.DeepEqual(got, wantRules) {
		t.Errorf("Rules = %+v", got)
	}
	d, err := p.Decide(Input{Device: Device{ID: "urn:dev:embark:acme:1", Model: "y"}})
	if err != nil {
		t.Fatal(err)
	}
	want := Decision{
		Action:     ActionAllow,
		Zone:       wantZones[0],
		Lifetime:   720 * time.Hour,
		Topics:     []string{"embark/v1/urn:dev:embark:acme:1/status", "site/+/alarms"},
		Segment:    "vlan-21",
		Rule:       "alias",
		Reason:     "reused topics",
		PolicyHash: p.Hash(),
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Decide:\n got %+v\nwant %+v", d, want)
	}
}

func TestParseDefaultName(t *testing.T) {
	p, err := Parse("/etc/embark/fleet.yaml", []byte("rules:\n  - name: a\n    when: 'true'\n    decision: deny\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "fleet.yaml" {
		t.Errorf("Name = %q, want the file's base name", p.Name())
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("rules:\n  - name: a\n    when: 'true'\n    decision: deny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - name: a\n    when: 'true'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr error
		wantMsg string
	}{
		{name: "ok/file", path: good},
		{name: "fail/missing file", path: filepath.Join(dir, "none.yaml"), wantErr: os.ErrNotExist},
		{name: "fail/refused file", path: bad, wantErr: ErrInvalid, wantMsg: bad + ":2:5: rule a: missing decision"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Load(tt.path)
			if tt.wantErr == nil {
				if err != nil || p == nil {
					t.Fatalf("Load = %v, %v", p, err)
				}
				return
			}
			if p != nil || !errors.Is(err, tt.wantErr) {
				t.Fatalf("Load = %v, %v; want %v", p, err, tt.wantErr)
			}
			if tt.wantMsg != "" && err.Error() != tt.wantMsg {
				t.Errorf("error %q, want %q", err, tt.wantMsg)
			}
		})
	}
}
