package policy

import (
	"fmt"
	"reflect"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
)

// The CEL names of the input variables.
const (
	varDevice     = "device"
	varProvenance = "provenance"
	varVulns      = "vulns"
	varHistory    = "history"
	varRequest    = "request"
)

// celEnv is the environment every rule compiles in. A cel.Env is immutable
// and safe for concurrent use, so one serves every policy.
var celEnv = sync.OnceValues(newEnv)

// newEnv declares the five input variables with their Go types, so that an
// unknown field or a type error is a compile-time error. Fields are named
// by their cel tags.
func newEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(
		ext.NativeTypes(
			reflect.TypeFor[Device](),
			reflect.TypeFor[Provenance](),
			reflect.TypeFor[Vulns](),
			reflect.TypeFor[History](),
			reflect.TypeFor[Request](),
			ext.ParseStructTags(true),
		),
		cel.Variable(varDevice, cel.ObjectType("policy.Device")),
		cel.Variable(varProvenance, cel.ObjectType("policy.Provenance")),
		cel.Variable(varVulns, cel.ObjectType("policy.Vulns")),
		cel.Variable(varHistory, cel.ObjectType("policy.History")),
		cel.Variable(varRequest, cel.ObjectType("policy.Request")),
		// vulns.max_cvss >= 9 reads as operators mean it.
		cel.CrossTypeNumericComparisons(true),
		// Timestamp accessors (getHours, getDayOfWeek, ...) use UTC unless
		// the rule names a time zone.
		cel.DefaultUTCTimeZone(true),
		ext.Strings(),
		ext.Sets(),
	)
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	return env, nil
}
