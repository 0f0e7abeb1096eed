// Package policy decides, per device and request, whether a device may join
// the network and where: operators write ordered rules whose conditions are
// CEL expressions over typed inputs, and each rule yields a decision, an
// IEC 62443 zone, a certificate lifetime, MQTT topics, a network segment
// and a reason.
//
// The package is a leaf: it knows nothing of the registry, the store or
// the transports. Callers map what they know about a device into an
// [Input] and act on the [Decision].
//
// # Files
//
// A policy file is YAML:
//
//	policy: general-fleet        # the name; default: the file's base name
//	defaults:
//	  lifetime: 720h             # for allow/quarantine rules without their own
//	zones:
//	  - name: production
//	    security_level: 2        # IEC 62443 SL 1..4
//	    segment: vlan-20
//	    topics: ["embark/v1/{device}/#"]
//	rules:                       # in order; the first that matches decides
//	  - name: critical-vulnerability
//	    when: "vulns.max_cvss >= 9.0"
//	    decision: quarantine     # allow, quarantine, hold or deny
//	    zone: quarantine
//	    lifetime: 24h
//	    reason: open critical vulnerability
//
// Every rule has a name, a when expression and a decision. Allow and
// quarantine name a zone the file defines and have a lifetime (the rule's
// or defaults.lifetime); they may set topics and segment, which replace
// the zone's. Hold and deny take none of these. Zones and rules have
// unique names; the rule name "default" is reserved. Topics are MQTT topic
// filters in which "{device}" stands for the device identifier. Unknown
// keys are refused, so a misspelt key never goes unnoticed. When no rule
// matches, the decision is deny by rule [DefaultRule].
//
// # Expressions
//
// A when expression is CEL that must type-check to bool over five
// variables: device ([Device]), provenance ([Provenance]), vulns
// ([Vulns]), history ([History]) and request ([Request]), with the
// snake_case field names of their cel tags (device.firmware_mismatch,
// vulns.max_cvss, request.time, ...). An unknown field or a type error is
// refused when the file is parsed. Besides the CEL standard library, the
// strings and sets extensions are available; ints and doubles compare
// with each other (vulns.max_cvss >= 9), and timestamp accessors use UTC
// unless given a time zone.
//
// # Errors
//
// [Parse] and [Load] check the whole file and refuse it with an [*Errors]
// listing every problem as file:line:column: message, each with a
// [Reason]. CEL errors stand at the place in the file where the
// expression goes wrong (for plain, quoted and literal block scalars
// written without escapes; else at the expression's start, with the
// position inside the expression in the message). YAML syntax errors
// carry only the line the YAML parser reports: where the construct the
// problem is in starts, or the problem's own line. A refused file never
// yields a [*Policy].
//
// # Decisions
//
// A [*Policy] is immutable and compiled once; [Policy.Decide] only
// evaluates and is safe for concurrent use. Decide fails closed: a rule
// whose expression fails at run time denies, with [ErrEvaluation].
// [Policy.Explain] reports each rule's outcome beside the decision.
// [Decision.Tighter] and [Changed] compare a new decision with an earlier
// one, for re-evaluation.
package policy
