package estclient

import (
	"errors"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Target
		err  error
	}{
		{name: "ok/coaps with port", in: "coaps://127.0.0.1:15684", want: Target{DTLS, "127.0.0.1", "15684"}},
		{name: "ok/coaps default port", in: "coaps://embark.example", want: Target{DTLS, "embark.example", "5684"}},
		{name: "ok/coaps+tcp", in: "coaps+tcp://embark.example:6000", want: Target{TLS, "embark.example", "6000"}},
		{name: "ok/coaps+tcp default port", in: "coaps+tcp://10.0.0.1", want: Target{TLS, "10.0.0.1", "5684"}},
		{name: "ok/ipv6", in: "coaps://[::1]:5684", want: Target{DTLS, "::1", "5684"}},
		{name: "ok/ipv6 with zone", in: "coaps://[fe80::1%25eth0]:5684", want: Target{DTLS, "fe80::1%eth0", "5684"}},
		{name: "ok/trailing slash", in: "coaps://h/", want: Target{DTLS, "h", "5684"}},
		{name: "fail/plain coap", in: "coap://h:5683", err: ErrTarget},
		{name: "fail/https", in: "https://h", err: ErrTarget},
		{name: "fail/no scheme", in: "127.0.0.1:5684", err: ErrTarget},
		{name: "fail/no host", in: "coaps://:5684", err: ErrTarget},
		{name: "fail/empty port", in: "coaps://h:", err: ErrTarget},
		{name: "fail/path", in: "coaps://h/.well-known/est", err: ErrTarget},
		{name: "fail/query", in: "coaps://h?x=1", err: ErrTarget},
		{name: "fail/user", in: "coaps://u@h", err: ErrTarget},
		{name: "fail/empty", in: "", err: ErrTarget},
		{name: "fail/bare colons", in: "coaps://::0", err: ErrTarget},
		{name: "fail/port zero", in: "coaps://h:0", err: ErrTarget},
		{name: "fail/port too large", in: "coaps://h:65536", err: ErrTarget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTarget(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("ParseTarget(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		t    Target
		want string
	}{
		{Target{DTLS, "::1", "5684"}, "coaps://[::1]:5684"},
		{Target{TLS, "fe80::1%eth0", "5684"}, "coaps+tcp://[fe80::1%25eth0]:5684"},
	} {
		if s := tc.t.String(); s != tc.want {
			t.Fatalf("String = %q, want %q", s, tc.want)
		}
	}
}

func TestParseDiagnostic(t *testing.T) {
	for _, tc := range []struct {
		name, in, reason, msg string
	}{
		{name: "ok/reason and message", in: "unknown_device: no provenance", reason: "unknown_device", msg: "no provenance"},
		{name: "ok/message with colons", in: "denied: rule r1: firmware 1.2: CVE", reason: "denied", msg: "rule r1: firmware 1.2: CVE"},
		{name: "ok/reason alone", in: "held", reason: "held"},
		{name: "ok/reason and empty message", in: "held:", reason: "held"},
		{name: "ok/surrounding space", in: " overloaded: try later\n", reason: "overloaded", msg: "try later"},
		{name: "fail/free text is all message", in: "Something went wrong: sorry", msg: "Something went wrong: sorry"},
		{name: "fail/spaces in reason", in: "bad thing: x", msg: "bad thing: x"},
		{name: "fail/empty", in: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, msg := parseDiagnostic([]byte(tc.in))
			if reason != tc.reason || msg != tc.msg {
				t.Fatalf("parseDiagnostic(%q) = %q, %q; want %q, %q", tc.in, reason, msg, tc.reason, tc.msg)
			}
		})
	}
}

func TestStatusErrorString(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  StatusError
		want string
	}{
		{name: "ok/final", err: StatusError{Code: codes.Forbidden, Reason: "denied", Message: "rule r1"},
			want: "estclient: 4.03 Forbidden: denied: rule r1"},
		{name: "ok/retryable", err: StatusError{Code: codes.ServiceUnavailable, Reason: "held", MaxAge: 30 * time.Second},
			want: "estclient: 5.03 ServiceUnavailable: held (retry after 30s)"},
		{name: "ok/bare", err: StatusError{Code: codes.BadRequest}, want: "estclient: 4.00 BadRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Fatalf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}
