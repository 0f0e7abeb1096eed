package policy

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
)

// Policy is a compiled policy file. It is immutable and safe for concurrent
// use; every rule was compiled once, by [Parse].
type Policy struct {
	name, file string
	hash       string
	lifetime   time.Duration // defaults.lifetime, 0 if not set
	renewGrace time.Duration // defaults.renew_grace
	zones      []Zone
	rules      []rule
}

// rule is one compiled rule.
type rule struct {
	name, expr string
	action     string
	zone       Zone // empty for hold and deny
	lifetime   time.Duration
	renewGrace time.Duration
	topics     []string // the rule's own, else the zone's; templates
	expand     bool     // some topic holds the {device} placeholder
	segment    string
	reason     string
	prg        cel.Program
}

// Rule describes one rule of a policy, for tools that list them.
type Rule struct {
	Name, Expr string
	Action     string
	// Zone names the zone for allow and quarantine, else "".
	Zone string
}

// RuleResult is how one rule fared in an [Explanation].
type RuleResult struct {
	Name, Expr string
	// Matched: the expression was true (only the first matching rule
	// decides; later ones are Skipped).
	Matched bool
	// Skipped: an earlier rule matched or failed, so this one was not
	// evaluated.
	Skipped bool
	// Err is the evaluation error, "" if none.
	Err string
}

// Explanation says how a decision came about: every rule in order and the
// decision.
type Explanation struct {
	Rules    []RuleResult
	Decision Decision
}

// Hash returns the hex SHA-256 of the policy source.
func (p *Policy) Hash() string { return p.hash }

// Name returns the policy's name: its policy field, else the file's base
// name.
func (p *Policy) Name() string { return p.name }

// File returns the file name the policy was parsed under.
func (p *Policy) File() string { return p.file }

// Zones returns the zones the policy defines, in file order.
func (p *Policy) Zones() []Zone {
	out := make([]Zone, len(p.zones))
	for i, z := range p.zones {
		out[i] = z
		out[i].Topics = slices.Clone(z.Topics)
	}
	return out
}

// Zone returns the zone of that name.
func (p *Policy) Zone(name string) (Zone, bool) {
	for _, z := range p.zones {
		if z.Name == name {
			z.Topics = slices.Clone(z.Topics)
			return z, true
		}
	}
	return Zone{}, false
}

// Rules lists the rules in order.
func (p *Policy) Rules() []Rule {
	out := make([]Rule, len(p.rules))
	for i, r := range p.rules {
		out[i] = Rule{Name: r.name, Expr: r.expr, Action: r.action, Zone: r.zone.Name}
	}
	return out
}

// Decide evaluates the rules in order and returns the decision of the first
// that matches, or a deny by rule [DefaultRule] when none does.
//
// It fails closed: when a rule's expression fails at evaluation (an error
// wrapping [ErrEvaluation]) or the device identifier cannot be put into
// the decision's topics ([ErrUnsafeDeviceID]), it returns that error
// together with a deny decision naming the rule, so a caller that only
// looks at the decision refuses the device as well.
func (p *Policy) Decide(in Input) (Decision, error) {
	a := activations.Get().(*activation)
	a.in = in
	d, err := p.decide(a, nil)
	a.in = Input{}
	activations.Put(a)
	return d, err
}

// Explain decides as [Policy.Decide] does and reports every rule: whether
// it matched, failed or was skipped. The explanation is complete also when
// the error (the one Decide would return) is not nil.
func (p *Policy) Explain(in Input) (Explanation, error) {
	results := make([]RuleResult, len(p.rules))
	for i, r := range p.rules {
		results[i] = RuleResult{Name: r.name, Expr: r.expr}
	}
	d, err := p.decide(&activation{in: in}, results)
	return Explanation{Rules: results, Decision: d}, err
}

// decide evaluates the rules; results, if not nil, has one entry per rule
// to fill in.
func (p *Policy) decide(act *activation, results []RuleResult) (Decision, error) {
	for i := range p.rules {
		r := &p.rules[i]
		matched, err := r.eval(act)
		if results != nil {
			results[i].Matched = matched
			if err != nil {
				results[i].Err = err.Error()
			}
		}
		if err == nil && !matched {
			continue
		}
		if results != nil {
			for j := i + 1; j < len(results); j++ {
				results[j].Skipped = true
			}
		}
		if err != nil {
			return p.failed(r, err), fmt.Errorf("%w: %w (policy %s, rule %s)", ErrEvaluation, err, p.name, r.name)
		}
		d, err := p.decision(r, &act.in)
		if err != nil {
			if results != nil {
				results[i].Err = err.Error()
			}
			return p.failed(r, err), fmt.Errorf("%w (policy %s, rule %s)", err, p.name, r.name)
		}
		return d, nil
	}
	return Decision{
		Action:     ActionDeny,
		Rule:       DefaultRule,
		Reason:     "no rule matched",
		PolicyHash: p.hash,
	}, nil
}

// eval reports whether the rule's expression is true for the input.
func (r *rule) eval(act *activation) (bool, error) {
	out, _, err := r.prg.Eval(act)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		// The checker proved the expression is a bool; an error value or
		// unknown lands here.
		return false, fmt.Errorf("result %v is not a bool", out)
	}
	return bool(b), nil
}

// decision builds the decision of a matching rule.
func (p *Policy) decision(r *rule, in *Input) (Decision, error) {
	d := Decision{
		Action:     r.action,
		Lifetime:   r.lifetime,
		RenewGrace: r.renewGrace,
		Segment:    r.segment,
		Rule:       r.name,
		Reason:     r.reason,
		PolicyHash: p.hash,
	}
	if r.action != ActionAllow && r.action != ActionQuarantine {
		return d, nil
	}
	id := in.Device.ID
	if r.expand && (id == "" || strings.ContainsAny(id, "/+#\x00")) {
		return Decision{}, fmt.Errorf("%w: %q", ErrUnsafeDeviceID, id)
	}
	// One array holds the copies of the zone's topics and the decision's.
	nz := len(r.zone.Topics)
	buf := make([]string, nz+len(r.topics))
	d.Zone = r.zone
	d.Zone.Topics = nil
	if nz > 0 {
		d.Zone.Topics = buf[:nz:nz]
		copy(d.Zone.Topics, r.zone.Topics)
	}
	if r.topics != nil {
		d.Topics = buf[nz:]
		for i, t := range r.topics {
			if r.expand {
				t = strings.ReplaceAll(t, devicePlaceholder, id)
			}
			d.Topics[i] = t
		}
	}
	return d, nil
}

// failed is the fail-closed decision when rule r could not decide.
func (p *Policy) failed(r *rule, err error) Decision {
	return Decision{
		Action:     ActionDeny,
		Rule:       r.name,
		Reason:     "rule failed: " + err.Error(),
		PolicyHash: p.hash,
	}
}

// activation resolves the input variables for CEL without building a map.
// Decide takes them from a pool, so that neither they nor the input copied
// into them cost an allocation.
type activation struct {
	in Input
}

var activations = sync.Pool{New: func() any { return new(activation) }}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case varDevice:
		return &a.in.Device, true
	case varProvenance:
		return &a.in.Provenance, true
	case varVulns:
		return &a.in.Vulns, true
	case varHistory:
		return &a.in.History, true
	case varRequest:
		return &a.in.Request, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }
