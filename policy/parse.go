package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"gopkg.in/yaml.v3"
)

// MaxSize is the largest policy file accepted, in bytes.
const MaxSize = 1 << 20

// Limits on names.
const (
	// MaxNameLen is the longest policy, zone or rule name.
	MaxNameLen = 64
	// MaxRenewGrace bounds how long after expiry a certificate may still
	// renew (devices that are rarely connected).
	MaxRenewGrace = 30 * 24 * time.Hour
	// MaxReasonLen is the longest reason.
	MaxReasonLen = 1024
	// MaxSecurityLevel is the highest IEC 62443 security level.
	MaxSecurityLevel = 4
)

// devicePlaceholder in a topic stands for the device identifier.
const devicePlaceholder = "{device}"

// Known keys of each mapping in a policy file.
var (
	topKeys     = []string{"policy", "description", "defaults", "zones", "rules"}
	defaultKeys = []string{"lifetime", "renew_grace"}
	zoneKeys    = []string{"name", "description", "security_level", "segment", "topics"}
	ruleKeys    = []string{"name", "description", "when", "decision", "zone", "lifetime", "renew_grace", "topics", "segment", "reason"}
)

// namePattern is what policy, zone and rule names look like.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Load reads and parses the policy file at path. A file that cannot be read
// is an error wrapping the os error; a refused file is an [*Errors].
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: load: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: load: %w", err)
	}
	return Parse(path, src)
}

// Parse checks and compiles a policy file; filename is used in positions
// and as the default name. It returns every problem it finds as an
// [*Errors] (errors.Is ErrInvalid), and a *Policy only when there is none.
func Parse(filename string, src []byte) (*Policy, error) {
	env, err := celEnv()
	if err != nil {
		return nil, err
	}
	ps := &parser{file: filename, src: src, env: env}
	p := ps.parse()
	if len(ps.errs) > 0 {
		slices.SortStableFunc(ps.errs, func(a, b Error) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Column - b.Column
		})
		errs := ps.errs
		return nil, &errs
	}
	return p, nil
}

// parser holds the state of one Parse.
type parser struct {
	file  string
	src   []byte
	lines []string // src split into lines, on first use
	env   *cel.Env
	errs  Errors
}

// errorf records a problem at node n.
func (ps *parser) errorf(n *yaml.Node, reason Reason, format string, args ...any) {
	ps.errorAt(n.Line, n.Column, reason, format, args...)
}

func (ps *parser) errorAt(line, col int, reason Reason, format string, args ...any) {
	ps.errs = append(ps.errs, Error{File: ps.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...), Reason: reason})
}

// yamlLine finds the line number in a yaml.v3 error message.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the problems yaml.v3's parser (not its scanner)
// reports. It reports their line 0-based, and scanner problems 1-based.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// syntaxError records a YAML syntax error. yaml.v3 reports only a line:
// where the construct the problem is in starts (a block, a flow list, a
// quoted string), or the problem's own line.
func (ps *parser) syntaxError(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if slices.Contains(yamlParserProblems, m[2]) {
			line++
		}
		ps.errorAt(min(line, ps.lineCount()), 0, ReasonSyntax, "%s", m[2])
		return
	}
	if slices.Contains(yamlParserProblems, strings.TrimPrefix(msg, "yaml: ")) {
		// yaml.v3 leaves out line 0, which is the first line.
		ps.errorAt(1, 0, ReasonSyntax, "%s", strings.TrimPrefix(msg, "yaml: "))
		return
	}
	ps.errorAt(0, 0, ReasonSyntax, "%s", strings.TrimPrefix(msg, "yaml: "))
}

func (ps *parser) parse() *Policy {
	if len(ps.src) > MaxSize {
		ps.errorAt(0, 0, ReasonSyntax, "larger than %d bytes", MaxSize)
		return nil
	}
	if !utf8.Valid(ps.src) {
		ps.errorAt(0, 0, ReasonSyntax, "not UTF-8")
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(ps.src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.errorAt(1, 1, ReasonStructure, "empty policy file")
		} else {
			ps.syntaxError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		ps.syntaxError(err)
		return nil
	default:
		ps.errorf(&extra, ReasonStructure, "a second YAML document; a policy file holds one")
		return nil
	}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	if root.Kind != yaml.MappingNode {
		ps.errorf(root, ReasonStructure, "a policy is a mapping with the keys %s", strings.Join(topKeys, ", "))
		return nil
	}
	sum := sha256.Sum256(ps.src)
	p := &Policy{file: ps.file, name: filepath.Base(ps.file), hash: hex.EncodeToString(sum[:])}
	top := ps.mapping(root, "policy", topKeys)
	if n := top.value("policy"); n != nil {
		if s, ok := ps.name(n, "policy"); ok {
			p.name = s
		}
	}
	if n := top.value("description"); n != nil {
		ps.text(n, "description", 0)
	}
	if n := top.value("defaults"); n != nil && ps.kind(n, yaml.MappingNode, "defaults", "a mapping") {
		d := ps.mapping(n, "defaults", defaultKeys)
		if v := d.value("lifetime"); v != nil {
			p.lifetime, _ = ps.lifetime(v)
		}
		if v := d.value("renew_grace"); v != nil {
			p.renewGrace, _ = ps.grace(v)
		}
	}
	zones := map[string]*yaml.Node{} // zone name → its name node
	if n := top.value("zones"); n != nil && ps.kind(n, yaml.SequenceNode, "zones", "a list of zones") {
		for _, zn := range n.Content {
			if z, nameNode, ok := ps.zone(deref(zn)); ok {
				if first, dup := zones[z.Name]; dup {
					ps.errorf(nameNode, ReasonDuplicate, "duplicate zone name %q (first at line %d, column %d)", z.Name, first.Line, first.Column)
					continue
				}
				zones[z.Name] = nameNode
				p.zones = append(p.zones, z)
			}
		}
	}
	n := top.value("rules")
	switch {
	case n == nil:
		ps.errorf(root, ReasonStructure, "no rules")
	case !ps.kind(n, yaml.SequenceNode, "rules", "a list of rules"):
	case len(n.Content) == 0:
		ps.errorf(n, ReasonStructure, "no rules")
	}
	if n == nil || n.Kind != yaml.SequenceNode {
		return p
	}
	names := map[string]*yaml.Node{}
	for _, rn := range n.Content {
		r, nameNode, ok := ps.rule(deref(rn), p)
		if nameNode != nil {
			if first, dup := names[r.name]; dup {
				ps.errorf(nameNode, ReasonDuplicate, "duplicate rule name %q (first at line %d, column %d)", r.name, first.Line, first.Column)
				continue
			}
			names[r.name] = nameNode
		}
		if ok {
			p.rules = append(p.rules, r)
		}
	}
	return p
}

// zone parses one zone; ok reports whether it has a well-formed name (so
// that rules naming it are not refused as well when something else about
// the zone is wrong).
func (ps *parser) zone(n *yaml.Node) (z Zone, nameNode *yaml.Node, ok bool) {
	if !ps.kind(n, yaml.MappingNode, "zone", "a mapping") {
		return Zone{}, nil, false
	}
	what := label("zone", n)
	m := ps.mapping(n, what, zoneKeys)
	if v := ps.require(m, n, what, "name"); v != nil {
		z.Name, ok = ps.name(v, "zone name")
		nameNode = v
	}
	if v := m.value("description"); v != nil {
		ps.text(v, "description", 0)
	}
	if v := ps.require(m, n, what, "security_level"); v != nil {
		l, err := strconv.Atoi(v.Value)
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || err != nil || l < 1 || l > MaxSecurityLevel {
			ps.errorf(v, ReasonValue, "security_level %q is not an IEC 62443 security level (1 to %d)", v.Value, MaxSecurityLevel)
		}
		z.SecurityLevel = l
	}
	if v := m.value("segment"); v != nil {
		z.Segment, _ = ps.text(v, "segment", MaxNameLen)
	}
	if v := m.value("topics"); v != nil {
		z.Topics, _ = ps.topics(v)
	}
	return z, nameNode, ok
}

// rule parses and compiles one rule; nameNode is nil when the name is
// missing or malformed.
func (ps *parser) rule(n *yaml.Node, p *Policy) (r rule, nameNode *yaml.Node, ok bool) {
	if !ps.kind(n, yaml.MappingNode, "rule", "a mapping") {
		return rule{}, nil, false
	}
	before := len(ps.errs)
	what := label("rule", n)
	m := ps.mapping(n, what, ruleKeys)
	if v := ps.require(m, n, what, "name"); v != nil {
		if s, okName := ps.name(v, "rule name"); okName {
			if s == DefaultRule {
				ps.errorf(v, ReasonValue, "rule name %q is reserved for the decision when no rule matches", s)
			}
			r.name, nameNode = s, v
		}
	}
	if v := m.value("description"); v != nil {
		ps.text(v, "description", 0)
	}
	if v := ps.require(m, n, what, "decision"); v != nil {
		if s, okText := ps.text(v, "decision", 0); okText {
			if Severity(s) < 0 {
				ps.errorf(v, ReasonValue, "decision %q is not one of allow, quarantine, hold, deny", s)
			}
			r.action = s
		}
	}
	admits := r.action == ActionAllow || r.action == ActionQuarantine
	if Severity(r.action) >= 0 && !admits {
		for _, k := range []string{"zone", "lifetime", "renew_grace", "topics", "segment"} {
			if kn := m.key(k); kn != nil {
				ps.errorf(kn, ReasonStructure, "%s: decision %s takes no %s", what, r.action, k)
			}
		}
	}
	if admits {
		if v := m.value("zone"); v == nil {
			ps.errorf(n, ReasonStructure, "%s: decision %s needs a zone", what, r.action)
		} else if s, okText := ps.text(v, "zone", 0); okText {
			z, defined := p.zoneNamed(s)
			if !defined {
				ps.errorf(v, ReasonUndefined, "zone %q is not defined", s)
			}
			r.zone = z
			r.segment, r.topics = z.Segment, z.Topics
		}
		r.lifetime = p.lifetime
		if v := m.value("lifetime"); v != nil {
			r.lifetime, _ = ps.lifetime(v)
		} else if p.lifetime == 0 {
			ps.errorf(n, ReasonStructure, "%s: decision %s needs a lifetime (here or in defaults)", what, r.action)
		}
		r.renewGrace = p.renewGrace
		if v := m.value("renew_grace"); v != nil {
			r.renewGrace, _ = ps.grace(v)
		}
		if v := m.value("segment"); v != nil {
			r.segment, _ = ps.text(v, "segment", MaxNameLen)
		}
		if v := m.value("topics"); v != nil {
			r.topics, _ = ps.topics(v)
		}
		for _, t := range r.topics {
			r.expand = r.expand || strings.Contains(t, devicePlaceholder)
		}
	}
	if v := m.value("reason"); v != nil {
		r.reason, _ = ps.text(v, "reason", MaxReasonLen)
	}
	if r.reason == "" {
		r.reason = "rule " + r.name + " matched"
	}
	if v := ps.require(m, n, what, "when"); v != nil {
		if s, okText := ps.text(v, "when", 0); okText {
			r.expr = s
			r.prg = ps.compile(v, what, s)
		}
	}
	return r, nameNode, len(ps.errs) == before
}

// label names a zone or rule mapping in messages: "rule NAME" when it has
// a well-formed name, else "rule".
func label(kind string, n *yaml.Node) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.Value == "name" && v.Kind == yaml.ScalarNode &&
			len(v.Value) <= MaxNameLen && namePattern.MatchString(v.Value) {
			return kind + " " + v.Value
		}
	}
	return kind
}

// zoneNamed returns the zone of that name among those parsed so far.
func (p *Policy) zoneNamed(name string) (Zone, bool) {
	for _, z := range p.zones {
		if z.Name == name {
			return z, true
		}
	}
	return Zone{}, false
}

// compile type-checks a when expression and plans its program. Errors are
// positioned at the expression's place in the file.
func (ps *parser) compile(n *yaml.Node, what, expr string) cel.Program {
	ast, iss := ps.env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		for _, e := range iss.Errors() {
			ps.exprError(n, what, e.Location.Line(), e.Location.Column(), e.Message)
		}
		return nil
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		ps.exprError(n, what, 1, 0, fmt.Sprintf("must be a bool expression, found %s", t))
		return nil
	}
	prg, err := ps.env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		ps.exprError(n, what, 1, 0, err.Error())
		return nil
	}
	return prg
}

// splitLines splits the source into lines, once.
func (ps *parser) splitLines() {
	if ps.lines == nil {
		ps.lines = strings.Split(string(ps.src), "\n")
		for i, l := range ps.lines {
			ps.lines[i] = strings.TrimSuffix(l, "\r")
		}
	}
}

// lineCount is the number of lines of the source, counting a last line
// without a line break.
func (ps *parser) lineCount() int {
	ps.splitLines()
	n := len(ps.lines)
	if n > 1 && ps.lines[n-1] == "" {
		n--
	}
	return n
}

// exprError records a CEL error at line (1-based) and col (0-based, in
// characters) of the expression in node n: at that very place in the file
// where the YAML scalar lets it be found, else at the node with the
// expression's own position in the message.
func (ps *parser) exprError(n *yaml.Node, what string, line, col int, msg string) {
	if fl, fc, ok := ps.exprPos(n, line, col); ok {
		ps.errorAt(fl, fc, ReasonExpression, "%s: when: %s", what, msg)
		return
	}
	ps.errorf(n, ReasonExpression, "%s: when: %s (expression line %d, column %d)", what, msg, line, col+1)
}

// exprPos maps a position in the expression held by scalar n to the file.
// It succeeds when the expression's text appears in the file as written:
// a plain or quoted scalar on one line without escapes, or a literal
// block scalar.
func (ps *parser) exprPos(n *yaml.Node, line, col int) (int, int, bool) {
	ps.splitLines()
	src := func(l int) ([]rune, bool) { // file line l (1-based)
		if l < 1 || l > len(ps.lines) {
			return nil, false
		}
		return []rune(ps.lines[l-1]), true
	}
	exprLines := strings.Split(n.Value, "\n")
	if line < 1 || line > len(exprLines) || n.Line < 1 || n.Column < 1 {
		return 0, 0, false
	}
	want := []rune(exprLines[line-1])
	if col < 0 || col > len(want) {
		return 0, 0, false
	}
	switch n.Style {
	case 0, yaml.TaggedStyle, yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		if len(exprLines) != 1 {
			return 0, 0, false
		}
		start := n.Column - 1 // 0-based column of the scalar
		if n.Style == yaml.SingleQuotedStyle || n.Style == yaml.DoubleQuotedStyle {
			start++
		}
		text, ok := src(n.Line)
		if !ok || start+len(want) > len(text) || string(text[start:start+len(want)]) != string(want) {
			return 0, 0, false
		}
		if n.Style == yaml.SingleQuotedStyle && start+len(want) < len(text) && text[start+len(want)] != '\'' {
			return 0, 0, false
		}
		return n.Line, start + col + 1, true
	case yaml.LiteralStyle:
		text, ok := src(n.Line + line)
		if !ok {
			return 0, 0, false
		}
		indent := len(text) - len(want)
		if indent < 0 || string(text[indent:]) != string(want) || strings.TrimSpace(string(text[:indent])) != "" {
			return 0, 0, false
		}
		return n.Line + line, indent + col + 1, true
	}
	return 0, 0, false
}

// fields are the keys and values of one mapping.
type fields struct {
	keys, values map[string]*yaml.Node
}

func (f fields) value(k string) *yaml.Node { return f.values[k] }
func (f fields) key(k string) *yaml.Node   { return f.keys[k] }

// require returns the value of key k of f, the fields of mapping n,
// recording its absence at n.
func (ps *parser) require(f fields, n *yaml.Node, what, k string) *yaml.Node {
	if f.keys[k] == nil {
		ps.errorf(n, ReasonStructure, "%s: missing %s", what, k)
	}
	return f.values[k]
}

// mapping collects the keys of mapping n, reporting unknown and repeated
// keys and keys without a value.
func (ps *parser) mapping(n *yaml.Node, what string, known []string) fields {
	f := fields{keys: map[string]*yaml.Node{}, values: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := deref(n.Content[i]), deref(n.Content[i+1])
		if kn.Kind != yaml.ScalarNode {
			ps.errorf(kn, ReasonStructure, "%s: a key must be a string", what)
			continue
		}
		k := kn.Value
		if !slices.Contains(known, k) {
			ps.errorf(kn, ReasonStructure, "%s: unknown key %q (known: %s)", what, k, strings.Join(known, ", "))
			continue
		}
		if first, dup := f.keys[k]; dup {
			ps.errorf(kn, ReasonStructure, "%s: key %q repeated (first at line %d, column %d)", what, k, first.Line, first.Column)
			continue
		}
		f.keys[k] = kn
		if vn.Kind == yaml.ScalarNode && vn.ShortTag() == "!!null" {
			ps.errorf(kn, ReasonStructure, "%s: %s has no value", what, k)
			continue
		}
		f.values[k] = vn
	}
	return f
}

// deref follows YAML aliases.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// kind checks the YAML kind of n.
func (ps *parser) kind(n *yaml.Node, k yaml.Kind, what, want string) bool {
	if n.Kind != k {
		ps.errorf(n, ReasonStructure, "%s must be %s", what, want)
		return false
	}
	return true
}

// text returns the string value of scalar n, at most max bytes (0: no
// limit), without control characters.
func (ps *parser) text(n *yaml.Node, what string, max int) (string, bool) {
	if !ps.kind(n, yaml.ScalarNode, what, "a string") {
		return "", false
	}
	s := n.Value
	if strings.TrimSpace(s) == "" {
		ps.errorf(n, ReasonValue, "%s is empty", what)
		return "", false
	}
	if max > 0 && len(s) > max {
		ps.errorf(n, ReasonValue, "%s is %d bytes long, at most %d", what, len(s), max)
		return "", false
	}
	if what != "when" && what != "description" && strings.ContainsFunc(s, isControl) {
		ps.errorf(n, ReasonValue, "%s contains a control character", what)
		return "", false
	}
	return s, true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// name returns a policy, zone or rule name.
func (ps *parser) name(n *yaml.Node, what string) (string, bool) {
	s, ok := ps.text(n, what, MaxNameLen)
	if !ok {
		return "", false
	}
	if !namePattern.MatchString(s) {
		ps.errorf(n, ReasonValue, "%s %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", what, s)
		return "", false
	}
	return s, true
}

// lifetime returns a positive duration such as "24h" or "90m".
func (ps *parser) lifetime(n *yaml.Node) (time.Duration, bool) {
	s, ok := ps.text(n, "lifetime", 0)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		ps.errorf(n, ReasonValue, "lifetime %q is not a duration (such as 720h or 90m)", s)
		return 0, false
	}
	if d <= 0 {
		ps.errorf(n, ReasonValue, "lifetime %q is not positive", s)
		return 0, false
	}
	return d, true
}

// grace returns a renewal grace period: a duration from 0 to MaxRenewGrace.
func (ps *parser) grace(n *yaml.Node) (time.Duration, bool) {
	s, ok := ps.text(n, "renew_grace", 0)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		ps.errorf(n, ReasonValue, "renew_grace %q is not a duration (such as 72h)", s)
		return 0, false
	}
	if d < 0 || d > MaxRenewGrace {
		ps.errorf(n, ReasonValue, "renew_grace %q is not between 0 and %s", s, MaxRenewGrace)
		return 0, false
	}
	return d, true
}

// topics returns a list of MQTT topic filters.
func (ps *parser) topics(n *yaml.Node) ([]string, bool) {
	if !ps.kind(n, yaml.SequenceNode, "topics", "a list of MQTT topic filters") {
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for _, tn := range n.Content {
		tn = deref(tn)
		t, okText := ps.text(tn, "topic", 0)
		if !okText {
			ok = false
			continue
		}
		if why := checkTopic(t); why != "" {
			ps.errorf(tn, ReasonValue, "topic %q: %s", t, why)
			ok = false
			continue
		}
		out = append(out, t)
	}
	return out, ok
}

// checkTopic returns why t is not an MQTT topic filter a zone may grant,
// or "".
func checkTopic(t string) string {
	if len(t) > 65535 {
		return "longer than 65535 bytes"
	}
	rest := t
	for {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			break
		}
		if !strings.HasPrefix(rest[i:], devicePlaceholder) {
			return "the only placeholder is " + devicePlaceholder
		}
		rest = rest[i+len(devicePlaceholder):]
	}
	levels := strings.Split(t, "/")
	for i, l := range levels {
		switch {
		case strings.Contains(l, "#") && (l != "#" || i != len(levels)-1):
			return "'#' must be the whole last level"
		case strings.Contains(l, "+") && l != "+":
			return "'+' must be a whole level"
		}
	}
	return ""
}
