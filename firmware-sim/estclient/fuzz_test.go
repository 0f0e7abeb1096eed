package estclient

import (
	"strings"
	"testing"
)

func FuzzParseDiagnostic(f *testing.F) {
	for _, s := range []string{"unknown_device: no provenance", "held", "Something: else", "", ":", "a:b:c", "x1_: \x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		reason, msg := parseDiagnostic(payload)
		if reason != "" && !isReasonCode(reason) {
			t.Fatalf("reason %q is no reason code", reason)
		}
		trimmed := strings.TrimSpace(string(payload))
		if reason == "" && msg != trimmed {
			t.Fatalf("without a reason the message %q is not the payload %q", msg, trimmed)
		}
		if reason != "" && !strings.HasPrefix(trimmed, reason) {
			t.Fatalf("reason %q is not the start of %q", reason, trimmed)
		}
	})
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"coaps://127.0.0.1:5684", "coaps+tcp://[::1]", "coap://h", "coaps://h:x", "coaps://%zz", "coaps://[fe80::1%25eth0]:5684"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tgt, err := ParseTarget(s)
		if err != nil {
			return
		}
		if tgt.Host == "" || tgt.Port == "" || (tgt.Transport != DTLS && tgt.Transport != TLS) {
			t.Fatalf("ParseTarget(%q) = %+v without an error", s, tgt)
		}
		again, err := ParseTarget(tgt.String())
		if err != nil || again != tgt {
			t.Fatalf("ParseTarget(%q) = %+v, but its String %q parses to %+v, %v", s, tgt, tgt.String(), again, err)
		}
	})
}
