package broker

import (
	"fmt"
	"strings"
)

// maxLevels bounds the number of levels the ACL looks at; longer topics and
// filters are refused. MQTT itself has no limit, but no Embark topic comes
// close and the bound keeps level slices on the stack.
const maxLevels = 32

// sharePrefix starts a shared subscription filter ("$share/<group>/<filter>").
// Mochi compares it without regard to case, so the ACL does too.
const sharePrefix = "$share"

// ValidFilter reports whether filter is a well-formed MQTT topic filter: not
// empty, '+' and '#' only as whole levels, '#' only as the last level, no NUL
// character and at most 32 levels. A topic name is a filter without wildcards.
func ValidFilter(filter string) error {
	_, err := splitFilter(filter, nil)
	return err
}

// FilterContains reports whether every topic that filter can match is also
// matched by grant, that is whether a grant of grant covers a subscription to
// filter. Both must be valid filters (see [ValidFilter]); an invalid one
// covers and is covered by nothing.
//
// A "#" in grant covers the rest of the topic, including the parent level
// ("a/#" covers "a"); a "+" in grant covers one level, including a "+" in
// filter; a "#" in filter is covered only by a "#" in grant at that level or
// above. Wildcards at the first level of grant do not cover topics that start
// with '$' (MQTT-4.7.2-1). Shared subscriptions ("$share/...") are not
// unwrapped: callers strip the prefix first.
func FilterContains(grant, filter string) bool {
	var gb, fb [maxLevels]string
	g, err := splitFilter(grant, gb[:0])
	if err != nil {
		return false
	}
	f, err := splitFilter(filter, fb[:0])
	if err != nil {
		return false
	}
	return contains(g, f)
}

// FiltersOverlap reports whether at least one topic is matched by both a and
// b. Invalid filters overlap nothing.
func FiltersOverlap(a, b string) bool {
	var ab, bb [maxLevels]string
	x, err := splitFilter(a, ab[:0])
	if err != nil {
		return false
	}
	y, err := splitFilter(b, bb[:0])
	if err != nil {
		return false
	}
	return overlaps(x, y)
}

// splitFilter splits a filter into its levels, appending to dst, and checks
// it. Callers pass a stack array as dst so that splitting does not allocate.
func splitFilter(filter string, dst []string) ([]string, error) {
	if filter == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidFilter)
	}
	if strings.IndexByte(filter, 0) >= 0 {
		return nil, fmt.Errorf("%w: %q contains NUL", ErrInvalidFilter, filter)
	}
	rest := filter
	for {
		if len(dst) == maxLevels {
			return nil, fmt.Errorf("%w: %q has more than %d levels", ErrInvalidFilter, filter, maxLevels)
		}
		level, tail, more := strings.Cut(rest, "/")
		if strings.ContainsAny(level, "+#") && len(level) != 1 {
			return nil, fmt.Errorf("%w: %q: a wildcard must be a whole level", ErrInvalidFilter, filter)
		}
		if level == "#" && more {
			return nil, fmt.Errorf("%w: %q: '#' must be the last level", ErrInvalidFilter, filter)
		}
		dst = append(dst, level)
		if !more {
			return dst, nil
		}
		rest = tail
	}
}

// isWild reports whether a level is a wildcard.
func isWild(level string) bool { return level == "+" || level == "#" }

// hasWildcard reports whether a split filter has a wildcard level.
func hasWildcard(levels []string) bool {
	for _, l := range levels {
		if isWild(l) {
			return true
		}
	}
	return false
}

// contains is FilterContains on split, valid filters.
func contains(grant, filter []string) bool {
	if len(filter) > 0 && len(grant) > 0 && isWild(grant[0]) &&
		!isWild(filter[0]) && strings.HasPrefix(filter[0], "$") {
		return false // [MQTT-4.7.2-1]
	}
	for i := 0; ; i++ {
		if i == len(grant) {
			return i == len(filter)
		}
		g := grant[i]
		if g == "#" {
			return true
		}
		if i == len(filter) {
			return false
		}
		f := filter[i]
		switch {
		case f == "#":
			return false
		case g == "+":
			continue
		case f != g: // also a "+" in filter against a literal in grant
			return false
		}
	}
}

// overlaps is FiltersOverlap on split, valid filters.
func overlaps(a, b []string) bool {
	if len(a) > 0 && len(b) > 0 {
		// A first-level wildcard never matches a topic starting with '$'.
		if isWild(a[0]) && !isWild(b[0]) && strings.HasPrefix(b[0], "$") ||
			isWild(b[0]) && !isWild(a[0]) && strings.HasPrefix(a[0], "$") {
			return false
		}
	}
	for i := 0; ; i++ {
		if i < len(a) && a[i] == "#" || i < len(b) && b[i] == "#" {
			return true
		}
		if i == len(a) || i == len(b) {
			return i == len(a) && i == len(b)
		}
		if a[i] != "+" && b[i] != "+" && a[i] != b[i] {
			return false
		}
	}
}

// stripShare returns the filter of a shared subscription and true, or the
// filter unchanged and false. A malformed share (no group or no filter)
// returns "" and true, which no grant covers.
func stripShare(filter string) (string, bool) {
	if len(filter) < len(sharePrefix)+1 || filter[len(sharePrefix)] != '/' ||
		!strings.EqualFold(filter[:len(sharePrefix)], sharePrefix) {
		return filter, false
	}
	group, rest, ok := strings.Cut(filter[len(sharePrefix)+1:], "/")
	if !ok || group == "" || strings.ContainsAny(group, "+#") || rest == "" {
		return "", true
	}
	return rest, true
}
