package estclient

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// DefaultPort is the port of coaps and coaps+tcp when the target names none.
const DefaultPort = "5684"

// Transport names the secure transport of a target.
type Transport string

// Transports a target can name.
const (
	// DTLS is CoAP over DTLS 1.2 over UDP ("coaps").
	DTLS Transport = "coaps"
	// TLS is CoAP over TLS over TCP ("coaps+tcp", RFC 8323).
	TLS Transport = "coaps+tcp"
)

// Target is a parsed EST-coaps target.
type Target struct {
	Transport Transport
	// Host is the host name or IP address, without brackets.
	Host string
	// Port is the port, DefaultPort when the target named none.
	Port string
}

// Addr is host:port, ready to dial.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, t.Port) }

// String is the target as a URI.
func (t Target) String() string {
	return (&url.URL{Scheme: string(t.Transport), Host: t.Addr()}).String()
}

// ParseTarget parses coaps://host[:port] or coaps+tcp://host[:port].
// A path, query, fragment or user part is refused.
func ParseTarget(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q: %v", ErrTarget, s, err)
	}
	var t Target
	switch strings.ToLower(u.Scheme) {
	case string(DTLS):
		t.Transport = DTLS
	case string(TLS):
		t.Transport = TLS
	default:
		return Target{}, fmt.Errorf("%w: %q: scheme must be coaps or coaps+tcp", ErrTarget, s)
	}
	if u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Target{}, fmt.Errorf("%w: %q: only scheme, host and port are allowed", ErrTarget, s)
	}
	t.Host = u.Hostname()
	if t.Host == "" {
		return Target{}, fmt.Errorf("%w: %q: no host", ErrTarget, s)
	}
	if strings.Contains(t.Host, ":") {
		if _, err := netip.ParseAddr(t.Host); err != nil {
			return Target{}, fmt.Errorf("%w: %q: bad IPv6 address: %v", ErrTarget, s, err)
		}
	}
	t.Port = u.Port()
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
