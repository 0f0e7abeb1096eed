package policy

import (
	"testing"
	"time"
)

func TestRenewGrace(t *testing.T) {
	const src = `defaults:
  lifetime: 24h
  renew_grace: 72h
zones:
  - name: field
    security_level: 2
rules:
  - name: sensors
    when: device.model == "sensor"
    decision: allow
    zone: field
    renew_grace: 240h
  - name: rest
    when: 'true'
    decision: allow
    zone: field
`
	p := mustParse(t, "grace.yaml", src)
	for _, tt := range []struct {
		model string
		want  time.Duration
	}{
		{model: "sensor", want: 240 * time.Hour},
		{model: "gateway", want: 72 * time.Hour},
	} {
		in := Input{Device: Device{ID: "urn:dev:embark:acme:1", Model: tt.model}}
		d, err := p.Decide(in)
		if err != nil {
			t.Fatal(err)
		}
		if d.RenewGrace != tt.want {
			t.Errorf("model %s: renew grace %s, want %s", tt.model, d.RenewGrace, tt.want)
		}
	}
	a, _ := p.Decide(Input{Device: Device{ID: "urn:dev:embark:acme:1", Model: "sensor"}})
	b, _ := p.Decide(Input{Device: Device{ID: "urn:dev:embark:acme:1", Model: "gateway"}})
	if !Changed(a, b) {
		t.Error("Changed ignores a different renewal grace")
	}
}
