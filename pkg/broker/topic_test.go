package broker

import (
	"errors"
	"strings"
	"testing"
)

func TestValidFilter(t *testing.T) {
	tests := []struct {
		name, filter string
		err          error
	}{
		{"ok/plain", "a/b/c", nil},
		{"ok/plus", "a/+/c", nil},
		{"ok/hash", "a/#", nil},
		{"ok/hash alone", "#", nil},
		{"ok/empty levels", "a//b/", nil},
		{"ok/dollar", "$SYS/broker", nil},
		{"ok/colon in level", "embark/v1/urn:dev:embark:acme:1/nonce", nil},
		{"fail/empty", "", ErrInvalidFilter},
		{"fail/hash not last", "a/#/b", ErrInvalidFilter},
		{"fail/hash inside level", "a/b#", ErrInvalidFilter},
		{"fail/plus inside level", "a/b+/c", ErrInvalidFilter},
		{"fail/nul", "a/\x00", ErrInvalidFilter},
		{"fail/too many levels", strings.Repeat("a/", maxLevels) + "a", ErrInvalidFilter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidFilter(tt.filter); !errors.Is(err, tt.err) {
				t.Fatalf("ValidFilter(%q) = %v, want %v", tt.filter, err, tt.err)
			}
		})
	}
}

func TestFilterContains(t *testing.T) {
	tests := []struct {
		name, grant, filter string
		want                bool
	}{
		{"ok/equal", "a/b", "a/b", true},
		{"ok/hash covers rest", "a/#", "a/b/c", true},
		{"ok/hash covers parent", "a/#", "a", true},
		{"ok/hash covers hash", "a/#", "a/#", true},
		{"ok/hash covers deeper hash", "a/#", "a/b/#", true},
		{"ok/hash covers plus", "a/#", "a/+/c", true},
		{"ok/root hash covers all", "#", "x/y/+/#", true},
		{"ok/plus covers literal", "a/+/c", "a/b/c", true},
		{"ok/plus covers plus", "a/+/c", "a/+/c", true},
		{"ok/plus covers empty level", "a/+", "a/", true},
		{"ok/plus then hash", "a/+/#", "a/b/c/d", true},
		{"ok/plus then hash covers plus level", "a/+/#", "a/+", true},
		{"ok/root plus covers plus", "+", "+", true},
		{"ok/dollar by dollar grant", "$SYS/#", "$SYS/x", true},
		{"fail/different literal", "a/b", "a/c", false},
		{"fail/longer filter", "a/b", "a/b/c", false},
		{"fail/shorter filter", "a/b/c", "a/b", false},
		{"fail/plus does not cover hash", "a/+", "a/#", false},
		{"fail/plus does not cover two levels", "a/+", "a/b/c", false},
		{"fail/plus does not cover parent", "a/+", "a", false},
		{"fail/literal does not cover plus", "a/b", "a/+", false},
		{"fail/literal does not cover hash", "a/b", "a/b/#", false},
		{"fail/hash deeper than filter hash", "a/b/#", "a/#", false},
		{"fail/plus hash does not cover parent", "a/+/#", "a", false},
		{"fail/root hash does not cover dollar", "#", "$SYS/x", false},
		{"fail/root plus does not cover dollar", "+/x", "$SYS/x", false},
		{"fail/invalid grant", "a/#/b", "a/x/b", false},
		{"fail/invalid filter", "#", "a/b#", false},
		{"fail/empty filter", "#", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FilterContains(tt.grant, tt.filter); got != tt.want {
				t.Fatalf("FilterContains(%q, %q) = %v, want %v", tt.grant, tt.filter, got, tt.want)
			}
		})
	}
}

func TestFiltersOverlap(t *testing.T) {
	tests := []struct {
		name, a, b string
		want       bool
	}{
		{"ok/equal", "a/b", "a/b", true},
		{"ok/plus and literal", "a/+", "a/b", true},
		{"ok/hash and deeper", "a/#", "a/b/c", true},
		{"ok/hash and parent", "a/#", "a", true},
		{"ok/plus on both sides", "+/b/+", "a/+/c", true},
		{"ok/hash against plus path", "embark/v1/+/nonce/#", "embark/v1/x/#", true},
		{"ok/root hash", "#", "a", true},
		{"fail/different literal", "a/b", "a/c", false},
		{"fail/different lengths", "a/+", "a/b/c", false},
		{"fail/protocol subtree and other level", "embark/v1/+/nonce/#", "embark/v1/x/status", false},
		{"fail/root hash and dollar", "#", "$SYS/x", false},
		{"fail/root plus and dollar", "$share/g/x", "+/g/x", false},
		{"fail/invalid", "a/b#", "#", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FiltersOverlap(tt.a, tt.b); got != tt.want {
				t.Fatalf("FiltersOverlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
			if got := FiltersOverlap(tt.b, tt.a); got != tt.want {
				t.Fatalf("FiltersOverlap(%q, %q) = %v, want %v (swapped)", tt.b, tt.a, got, tt.want)
			}
		})
	}
}

func TestStripShare(t *testing.T) {
	tests := []struct {
		name, in, out string
		shared        bool
	}{
		{"ok/not shared", "embark/v1/#", "embark/v1/#", false},
		{"ok/shared", "$share/g/embark/v1/+/enroll", "embark/v1/+/enroll", true},
		{"ok/shared upper case", "$SHARE/g/a", "a", true},
		{"fail/no group", "$share//a", "", true},
		{"fail/no filter", "$share/g", "", true},
		{"fail/wildcard group", "$share/+/a", "", true},
		{"ok/prefix only by accident", "$shared/a", "$shared/a", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, shared := stripShare(tt.in)
			if out != tt.out || shared != tt.shared {
				t.Fatalf("stripShare(%q) = %q, %v; want %q, %v", tt.in, out, shared, tt.out, tt.shared)
			}
		})
	}
}

// matches is a reference matcher: does filter match the topic name?
func matches(filter, topic string) bool {
	f := strings.Split(filter, "/")
	n := strings.Split(topic, "/")
	if len(n) > 0 && strings.HasPrefix(n[0], "$") && (f[0] == "+" || f[0] == "#") {
		return false
	}
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(n) || l != "+" && l != n[i] {
			return false
		}
	}
	return len(f) == len(n)
}

// instances returns topic names the filter matches, built from its
// wildcards: "+" by each of some sample levels, "#" by nothing, one and two
// levels.
func instances(filter string) []string {
	out := []string{""}
	for i, l := range strings.Split(filter, "/") {
		var next []string
		for _, prefix := range out {
			join := func(s string) string {
				if i == 0 {
					return s
				}
				return prefix + "/" + s
			}
			switch l {
			case "+":
				for _, s := range []string{"x", "", "b"} {
					next = append(next, join(s))
				}
			case "#":
				if i > 0 {
					next = append(next, prefix)
				}
				next = append(next, join("x"), join("b/c"))
			default:
				next = append(next, join(l))
			}
		}
		out = next
	}
	return out
}

// FuzzFilterContains checks FilterContains against the reference matcher:
// when grant contains filter, every topic the filter matches is matched by
// the grant, and FiltersOverlap is true.
func FuzzFilterContains(f *testing.F) {
	for _, s := range [][2]string{
		{"a/#", "a/b/+"}, {"a/+", "a/#"}, {"#", "$SYS/x"}, {"+/+", "a/b"},
		{"embark/v1/+/nonce/#", "embark/v1/x/nonce"}, {"a/+/#", "a"}, {"a/b", "a/+"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, grant, filter string) {
		if ValidFilter(grant) != nil || ValidFilter(filter) != nil || len(filter) > 64 ||
			strings.Count(filter, "+") > 4 {
			if FilterContains(grant, filter) {
				t.Fatalf("invalid input %q, %q contained", grant, filter)
			}
			return
		}
		if !FilterContains(grant, filter) {
			return
		}
		for _, topic := range instances(filter) {
			if matches(filter, topic) && !matches(grant, topic) {
				t.Fatalf("FilterContains(%q, %q) but %q matches only the filter", grant, filter, topic)
			}
		}
		if !FiltersOverlap(grant, filter) {
			t.Fatalf("FilterContains(%q, %q) but no overlap", grant, filter)
		}
	})
}
