package pki

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"strings"
	"testing"
	"time"
)

// stepLeafTemplate is written as a step-ca operator would write it: the
// default leaf template, clientAuth only, plus a private extension that
// carries the device URN.
const stepLeafTemplate = `{
	"subject": {{ toJson .Subject }},
	"sans": {{ toJson .SANs }},
{{- if typeIs "*rsa.PublicKey" .Insecure.CR.PublicKey }}
	"keyUsage": ["keyEncipherment", "digitalSignature"],
{{- else }}
	"keyUsage": ["digitalSignature"],
{{- end }}
	"extKeyUsage": ["clientAuth"],
	"extensions": [
		{"id": "1.3.6.1.4.1.99999.1", "value": {{ asn1Enc (printf "utf8:%s" .DeviceID) | toJson }}}
	]
}`

var oidTestExtension = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}

func TestWithTemplate(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		check func(t *testing.T, ca *CA)
	}{
		{name: "ok/step-style template with an extra extension", text: stepLeafTemplate, check: func(t *testing.T, ca *CA) {
			c := issue(t, ca, testDevice)
			var found bool
			for _, e := range c.Extensions {
				if e.Id.Equal(oidTestExtension) {
					found = true
					var got string
					if _, err := asn1.UnmarshalWithParams(e.Value, &got, "utf8"); err != nil || got != testDevice {
						t.Errorf("extension value %q (%v), want %q", got, err, testDevice)
					}
				}
			}
			if !found {
				t.Error("extension from the template missing")
			}
			if c.Subject.String() != "CN="+testDevice {
				t.Errorf("subject %q", c.Subject)
			}
		}},
		{name: "ok/template without SANs gets the device URN", text: `{
			"subject": {"commonName": {{ toJson .Insecure.CR.Subject.CommonName }}, "organization": ["Acme Fleet"]},
			"keyUsage": ["digitalSignature"],
			"extKeyUsage": ["clientAuth", "serverAuth"]
		}`, check: func(t *testing.T, ca *CA) {
			c := issue(t, ca, testDevice)
			if id, ok := DeviceIDOf(c); !ok || id != testDevice {
				t.Errorf("DeviceIDOf = %q, %v", id, ok)
			}
			if len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "Acme Fleet" {
				t.Errorf("subject %q, want the template's organization", c.Subject)
			}
		}},
		{name: "ok/template that refuses some devices", text: `
			{{- if hasPrefix "urn:dev:embark:blocked:" .DeviceID }}{{ fail "manufacturer blocked" }}{{ end -}}
			{"subject": {{ toJson .Subject }}, "sans": {{ toJson .SANs }}, "extKeyUsage": ["clientAuth"]}`,
			check: func(t *testing.T, ca *CA) {
				issue(t, ca, testDevice)
				_, err := ca.IssueLDevID(LDevIDRequest{PublicKey: &p256Key(t).PublicKey, DeviceID: "urn:dev:embark:blocked:1", Lifetime: time.Hour})
				if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), "manufacturer blocked") {
					t.Errorf("blocked device: %v, want ErrTemplate with the template's message", err)
				}
			}},
		{name: "ok/result checked per certificate, not only at load", text: `{
			"subject": {{ toJson .Subject }}, "sans": {{ toJson .SANs }}, "extKeyUsage": ["clientAuth"]
			{{- if hasPrefix "urn:dev:embark:evil:" .DeviceID }},
			"extensions": [{"id": "2.5.29.19", "critical": true, "value": "MAMBAf8="}]
			{{- end }}
		}`, check: func(t *testing.T, ca *CA) {
			issue(t, ca, testDevice)
			c, err := ca.IssueLDevID(LDevIDRequest{PublicKey: &p256Key(t).PublicKey, DeviceID: "urn:dev:embark:evil:1", Lifetime: time.Hour})
			if !errors.Is(err, ErrTemplate) || c != nil {
				t.Errorf("template made a CA for one device: certificate %v, error %v; want ErrTemplate", c != nil, err)
			}
		}},
		{name: "ok/template cannot set serial, validity or key", text: `{
			"subject": {{ toJson .Subject }}, "sans": {{ toJson .SANs }}, "extKeyUsage": ["clientAuth"],
			"serialNumber": 1, "notBefore": "2000-01-01T00:00:00Z", "notAfter": "2100-01-01T00:00:00Z"
		}`, check: func(t *testing.T, ca *CA) {
			c := issue(t, ca, testDevice)
			if c.SerialNumber.BitLen() < 64 {
				t.Errorf("serial %x came from the template", c.SerialNumber)
			}
			if got := c.NotAfter.Sub(c.NotBefore); got != time.Hour+time.Minute {
				t.Errorf("validity %s, want the requested hour plus backdate", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, _, _ := newTestCA(t, WithTemplate(tt.text))
			tt.check(t, ca)
		})
	}
}

func TestWithTemplateRefused(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		wantMsg string
	}{
		{name: "fail/does not parse", text: `{"subject": {{ toJson .Subject }`, wantMsg: "parse"},
		{name: "fail/unknown function", text: `{"subject": {{ nosuchfunc .Subject }}}`, wantMsg: "nosuchfunc"},
		{name: "fail/not JSON", text: `{"subject": {{ .Subject }}`, wantMsg: "unmarshal"},
		{name: "fail/makes a CA", text: `{"subject": {{ toJson .Subject }}, "sans": {{ toJson .SANs }}, "extKeyUsage": ["clientAuth"],
			"basicConstraints": {"isCA": true}}`, wantMsg: "CA certificate"},
		{name: "fail/CA through a raw extension", text: `{"subject": {{ toJson .Subject }}, "sans": {{ toJson .SANs }}, "extKeyUsage": ["clientAuth"],
			"extensions": [{"id": "2.5.29.19", "critical": true, "value": "MAMBAf8="}]}`, wantMsg: "CA certificate"},
		{name: "fail/no clientAuth", text: `{"subject": {{ toJson .Subject }}, "sans": {{ toJson .SANs }}, "extKeyUsage": ["serverAuth"]}`, wantMsg: "clientAuth"},
		{name: "fail/names another device", text: `{"subject": {{ toJson .Subject }}, "uris": ["urn:dev:embark:other:1"], "extKeyUsage": ["clientAuth"]}`, wantMsg: "URN"},
		{name: "fail/two device URNs", text: `{"subject": {{ toJson .Subject }}, "sans": {{ toJson .SANs }}, "uris": ["urn:dev:embark:other:1"], "extKeyUsage": ["clientAuth"]}`, wantMsg: "URN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Init(dir, WithTemplate(tt.text))
			if !errors.Is(err, ErrTemplate) {
				t.Fatalf("Init: %v, want ErrTemplate", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
			assertSnapshot(t, dir, map[string]string{}) // no CA was created
		})
	}
}

func issue(t *testing.T, ca *CA, id string) *x509.Certificate {
	t.Helper()
	now := ca.clock()
	c, err := ca.IssueLDevID(LDevIDRequest{PublicKey: &p256Key(t).PublicKey, DeviceID: id, Lifetime: time.Hour})
	if err != nil {
		t.Fatalf("IssueLDevID: %v", err)
	}
	verifyClientChain(t, ca, c, now)
	if err := ca.VerifyLDevID(c, now); err != nil {
		t.Errorf("VerifyLDevID: %v", err)
	}
	return c
}
