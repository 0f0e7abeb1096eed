package onboard

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/embark-iot/embark/pkg/device"
)

func TestProfileOf(t *testing.T) {
	f := setup(t)
	res, err := f.enroll(f.devs["SN1"], newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.svc.ProfileOf(context.Background(), []*x509.Certificate{res.Certificate})
	if err != nil {
		t.Fatal(err)
	}
	if p.DeviceID != device.ID("acme", "SN1") || p.State != "onboarded" || p.Zone != "default" || p.Rule != "allow-known" {
		t.Fatalf("profile = %+v", p)
	}
	tests := []struct {
		name  string
		chain []*x509.Certificate
		want  Reason
	}{
		{"fail/no-certificate", nil, ReasonUnauthenticated},
		{"fail/idevid", f.devs["SN2"].chain, ReasonWrongCredential},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.ProfileOf(context.Background(), tt.chain)
			wantReason(t, err, tt.want)
		})
	}
	t.Run("fail/superseded", func(t *testing.T) {
		if _, err := f.enroll(f.devs["SN1"], newKey(t)); err != nil { // reboot: the first one is superseded
			t.Fatal(err)
		}
		_, err := f.svc.ProfileOf(context.Background(), []*x509.Certificate{res.Certificate})
		wantReason(t, err, ReasonRevoked)
	})
}
