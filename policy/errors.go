package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of this package. Callers compare with errors.Is.
var (
	// ErrInvalid: a policy file was refused. The error is an [*Errors]
	// listing every problem with its position.
	ErrInvalid = errors.New("policy: invalid policy")
	// ErrEvaluation: a rule's expression failed while it was evaluated (an
	// index out of range, a division by zero, ...). Decide fails closed: it
	// returns a deny decision naming the rule together with this error.
	ErrEvaluation = errors.New("policy: rule evaluation failed")
	// ErrUnsafeDeviceID: the decision's topics contain the {device}
	// placeholder and the device identifier is empty or contains a
	// character that is not allowed in an MQTT topic level ('/', '+', '#',
	// U+0000). Decide fails closed as for [ErrEvaluation].
	ErrUnsafeDeviceID = errors.New("policy: device identifier cannot be used in a topic")
)

// Reason classifies an [Error].
type Reason string

// Reasons of an [Error].
const (
	// ReasonSyntax: the file is not well-formed YAML, or too large.
	ReasonSyntax Reason = "syntax"
	// ReasonStructure: a key is unknown, missing or repeated, or a value
	// has the wrong YAML kind (a list where a string belongs, ...).
	ReasonStructure Reason = "structure"
	// ReasonValue: a value is not allowed (a decision other than the four,
	// a lifetime that is no positive duration, a malformed topic, ...).
	ReasonValue Reason = "value"
	// ReasonUndefined: a rule names a zone the file does not define.
	ReasonUndefined Reason = "undefined"
	// ReasonDuplicate: two rules or two zones share a name.
	ReasonDuplicate Reason = "duplicate"
	// ReasonExpression: a rule's when expression does not compile (CEL
	// syntax error, unknown variable or field, type error, not a bool).
	ReasonExpression Reason = "expression"
)

// Error is one problem found in a policy file, at a position: Line and
// Column are 1-based (Column counts characters); Column is 0 where only the
// line is known (some YAML syntax errors), Line 0 where the problem is the
// file as a whole.
type Error struct {
	File         string
	Line, Column int
	Msg          string
	Reason       Reason
}

// Error returns "file:line:column: msg".
func (e Error) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Column == 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

// Is reports whether target is [ErrInvalid].
func (e Error) Is(target error) bool { return target == ErrInvalid }

// Errors lists every problem found in a refused policy file, ordered by
// position. Parse and Load return it as *Errors.
type Errors []Error

// Error prints one problem per line.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, x := range *e {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(x.Error())
	}
	return b.String()
}

// Is reports whether target is [ErrInvalid].
func (e *Errors) Is(target error) bool { return target == ErrInvalid }

// Unwrap returns the items, so errors.As finds an [Error] too.
func (e *Errors) Unwrap() []error {
	out := make([]error, len(*e))
	for i, x := range *e {
		out[i] = x
	}
	return out
}
