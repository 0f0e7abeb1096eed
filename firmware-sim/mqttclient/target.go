package mqttclient

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// DefaultPort is the port of mqtts when the target names none.
const DefaultPort = "8883"

// Target is a parsed mqtts target.
type Target struct {
	// Host is the host name or IP address, without brackets.
	Host string
	// Port is the port, DefaultPort when the target named none.
	Port string
}

// Addr is host:port, ready to dial.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, t.Port) }

// String is the target as a URI.
func (t Target) String() string { return (&url.URL{Scheme: "mqtts", Host: t.Addr()}).String() }

// ParseTarget parses mqtts://host[:port]. A path, query, fragment or user
// part is refused, and so is any other scheme: the broker is always
// reached over TLS.
func ParseTarget(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q: %v", ErrTarget, s, err)
	}
	if !strings.EqualFold(u.Scheme, "mqtts") {
		return Target{}, fmt.Errorf("%w: %q: scheme must be mqtts", ErrTarget, s)
	}
	if u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Target{}, fmt.Errorf("%w: %q: only scheme, host and port are allowed", ErrTarget, s)
	}
	t := Target{Host: u.Hostname(), Port: u.Port()}
	if t.Host == "" {
		return Target{}, fmt.Errorf("%w: %q: no host", ErrTarget, s)
	}
	if strings.Contains(t.Host, ":") {
		if _, err := netip.ParseAddr(t.Host); err != nil {
			return Target{}, fmt.Errorf("%w: %q: bad IPv6 address: %v", ErrTarget, s, err)
		}
	}
	if t.Port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return Target{}, fmt.Errorf("%w: %q: empty port", ErrTarget, s)
		}
		t.Port = DefaultPort
	}
	if p, err := strconv.ParseUint(t.Port, 10, 16); err != nil || p == 0 {
		return Target{}, fmt.Errorf("%w: %q: port must be 1-65535", ErrTarget, s)
	}
	return t, nil
}
