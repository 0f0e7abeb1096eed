package broker

import (
	"fmt"
	"strings"
)

// Topic layout (see the package documentation).
const (
	// TopicRoot is the first two levels of every Embark topic.
	TopicRoot = "embark/v1"
)

// Protocol topic names under a device namespace "embark/v1/<id>/". They and
// everything below them are governed only by the protocol rules: a zone
// grant never opens them.
const (
	TopicNonce  = "nonce"
	TopicEnroll = "enroll"
	TopicRenew  = "renew"
	TopicState  = "state"
	TopicResp   = "resp"
	TopicCmd    = "cmd"
	// TopicVoucher takes a device's voucher request (its IDevID's).
	TopicVoucher = "voucher"
)

// Namespace returns the topic namespace of a device, "embark/v1/<id>".
func Namespace(deviceID string) string { return TopicRoot + "/" + deviceID }

// reserved are the protocol subtrees of every device namespace.
var reserved = func() [][]string {
	var r [][]string
	for _, p := range []string{TopicNonce, TopicEnroll, TopicRenew, TopicState, TopicResp, TopicCmd, TopicVoucher} {
		r = append(r, []string{"embark", "v1", "+", p, "#"})
	}
	return r
}()

// serviceGrant is everything a service may read and write.
var serviceGrant = []string{"embark", "v1", "#"}

// acl is the compiled access policy of one client. It is immutable: Refresh
// swaps in a new one.
type acl struct {
	kind   Kind
	id     string
	writes []string   // exact protocol topic names the client may publish
	reads  [][]string // protocol filters the client may subscribe to
	zone   [][]string // zone grants, read and write
}

// denyAll is the ACL of a client being disconnected.
var denyAll = &acl{}

// compileACL checks an identity and builds its ACL. ignored lists zone
// topics that were left out because they are invalid or start with '$'.
func compileACL(id Identity) (a *acl, ignored []string, err error) {
	if id.ID == "" {
		return nil, nil, fmt.Errorf("%w: empty ID", ErrInvalidIdentity)
	}
	switch id.Kind {
	case KindService:
		return &acl{kind: KindService, id: id.ID}, nil, nil
	case KindIDevID, KindLDevID:
	default:
		return nil, nil, fmt.Errorf("%w: unknown kind %d", ErrInvalidIdentity, int(id.Kind))
	}
	if err := validLevel(id.ID); err != nil {
		return nil, nil, err
	}
	ns := Namespace(id.ID)
	a = &acl{kind: id.Kind, id: id.ID}
	nsLevels := []string{"embark", "v1", id.ID}
	sub := func(levels ...string) []string {
		return append(append([]string(nil), nsLevels...), levels...)
	}
	if id.Kind == KindIDevID {
		a.writes = []string{ns + "/" + TopicNonce, ns + "/" + TopicEnroll, ns + "/" + TopicVoucher}
		a.reads = [][]string{sub(TopicResp, "#")}
		return a, nil, nil
	}
	a.writes = []string{ns + "/" + TopicNonce, ns + "/" + TopicRenew, ns + "/" + TopicState}
	a.reads = [][]string{sub(TopicResp, "#"), sub(TopicCmd)}
	for _, t := range id.Topics {
		levels, err := splitFilter(t, nil)
		if err != nil || strings.HasPrefix(levels[0], "$") {
			ignored = append(ignored, t)
			continue
		}
		a.zone = append(a.zone, levels)
	}
	return a, ignored, nil
}

// validLevel checks that a device ID can be one topic level.
func validLevel(id string) error {
	if strings.ContainsAny(id, "/+#\x00") {
		return fmt.Errorf("%w: device ID %q is not a single topic level", ErrInvalidIdentity, id)
	}
	return nil
}

// allowed reports whether the client may publish to topic (write) or
// subscribe to, or receive messages on, the filter or topic (read).
func (a *acl) allowed(topic string, write bool) bool {
	if a == nil || a.kind == 0 {
		return false
	}
	var buf [maxLevels]string
	if a.kind == KindService {
		if !write {
			topic, _ = stripShare(topic)
		}
		levels, err := splitFilter(topic, buf[:0])
		if err != nil || write && hasWildcard(levels) {
			return false
		}
		return contains(serviceGrant, levels)
	}
	levels, err := splitFilter(topic, buf[:0])
	if err != nil || strings.HasPrefix(levels[0], "$") {
		return false // no $SYS, no $share, nothing else starting with '$'
	}
	if write {
		if hasWildcard(levels) {
			return false
		}
		for _, w := range a.writes {
			if topic == w {
				return true
			}
		}
	} else {
		for _, r := range a.reads {
			if contains(r, levels) {
				return true
			}
		}
	}
	return a.zoneAllows(levels)
}

// zoneAllows reports whether a zone grant covers levels and levels touch no
// protocol topic.
func (a *acl) zoneAllows(levels []string) bool {
	if len(a.zone) == 0 {
		return false
	}
	for _, r := range reserved {
		if overlaps(levels, r) {
			return false
		}
	}
	for _, g := range a.zone {
		if contains(g, levels) {
			return true
		}
	}
	return false
}
