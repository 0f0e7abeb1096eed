package mqttclient

import (
	"errors"
	"testing"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		addr     string
		want     error
	}{
		{name: "ok/default port", in: "mqtts://embark.example", addr: "embark.example:8883"},
		{name: "ok/port", in: "mqtts://127.0.0.1:18883", addr: "127.0.0.1:18883"},
		{name: "ok/upper-case scheme and a slash", in: "MQTTS://127.0.0.1:8883/", addr: "127.0.0.1:8883"},
		{name: "ok/IPv6", in: "mqtts://[::1]:8883", addr: "[::1]:8883"},
		{name: "fail/plain mqtt", in: "mqtt://127.0.0.1:1883", want: ErrTarget},
		{name: "fail/coaps", in: "coaps://127.0.0.1:5684", want: ErrTarget},
		{name: "fail/no host", in: "mqtts://:8883", want: ErrTarget},
		{name: "fail/empty port", in: "mqtts://127.0.0.1:", want: ErrTarget},
		{name: "fail/port zero", in: "mqtts://127.0.0.1:0", want: ErrTarget},
		{name: "fail/port too large", in: "mqtts://127.0.0.1:65536", want: ErrTarget},
		{name: "fail/path", in: "mqtts://127.0.0.1/embark", want: ErrTarget},
		{name: "fail/user", in: "mqtts://dev@127.0.0.1", want: ErrTarget},
		{name: "fail/query", in: "mqtts://127.0.0.1?x=1", want: ErrTarget},
		{name: "fail/no scheme", in: "127.0.0.1:8883", want: ErrTarget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTarget(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil && got.Addr() != tc.addr {
				t.Fatalf("addr = %q, want %q", got.Addr(), tc.addr)
			}
			if err != nil && got != (Target{}) {
				t.Fatalf("target %+v with an error", got)
			}
		})
	}
}
