package onboard

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// A fake clock drives expiry and the renewal grace period: without grace an
// expired LDevID cannot renew; with it, it can until the grace runs out, and
// the broker-facing identity check follows the same rule.
func TestRenewalGrace(t *testing.T) {
	const life = 48 * time.Hour
	tests := []struct {
		name  string
		grace time.Duration
		after time.Duration // past the certificate's notAfter
		want  Reason        // "" = renewed
	}{
		{name: "ok/before expiry", grace: 0, after: -time.Hour},
		{name: "fail/expired without grace", grace: 0, after: time.Minute, want: ReasonExpiredChain},
		{name: "ok/expired within grace", grace: 72 * time.Hour, after: 71 * time.Hour},
		{name: "fail/grace ran out", grace: 72 * time.Hour, after: 73 * time.Hour, want: ReasonExpiredChain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, WithDecider(StaticDecider{Zone: "default", Lifetime: life, RenewGrace: tt.grace}))
			first, err := f.enroll(f.devs["SN1"], newKey(t))
			if err != nil {
				t.Fatal(err)
			}
			f.clock.Advance(first.Certificate.NotAfter.Sub(f.clock.Now()) + tt.after)
			before := f.snapshot()
			_, idErr := f.svc.Identify(context.Background(), append(first.Chain[:0:0], first.Certificate))
			res, err := f.renew(first.Certificate, newKey(t))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("renew: %v", err)
				}
				if idErr != nil {
					t.Fatalf("identify: %v", idErr)
				}
				if !res.Certificate.NotAfter.After(f.clock.Now()) {
					t.Fatalf("renewed certificate ends %s, before now", res.Certificate.NotAfter)
				}
				return
			}
			wantReason(t, err, tt.want)
			wantReason(t, idErr, tt.want)
			if after := f.snapshot(); after.stats != before.stats || !reflect.DeepEqual(after.devices, before.devices) {
				t.Fatalf("a refused renewal changed the registry")
			}
		})
	}
}
