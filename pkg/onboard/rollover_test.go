package onboard

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/embark-iot/embark/pki"
)

// TestRollover: after a CA rollover, an LDevID of the previous intermediate
// still identifies its device, gets its profile and renews (onto the new
// intermediate, with the new chain); once the old intermediate is retired
// it does none of these, and an LDevID still cannot enroll.
func TestRollover(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	old, err := f.enroll(f.devs["SN1"], newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	oldInter := f.ca.Intermediate()
	f.clock.Advance(time.Hour)
	is, err := f.ca.Rollover(pki.RolloverOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("ok/identify-with-previous-intermediate", func(t *testing.T) {
		id, err := f.svc.Identify(ctx, []*x509.Certificate{old.Certificate})
		if err != nil || id.Credential != CredLDevID || id.DeviceID != old.DeviceID {
			t.Fatalf("Identify = %+v, %v", id, err)
		}
		if err := f.svc.CertUsable(old.Certificate); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.ProfileOf(ctx, []*x509.Certificate{old.Certificate}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("fail/ldevid-of-previous-intermediate-cannot-enroll", func(t *testing.T) {
		before := f.snapshot()
		_, err := f.svc.Enroll(ctx, Request{Chain: []*x509.Certificate{old.Certificate}, CSR: csrFor(t, newKey(t)), Transport: "test"})
		wantReason(t, err, ReasonWrongCredential)
		if after := f.snapshot(); after.stats != before.stats {
			t.Fatal("registry changed")
		}
	})
	var renewed *Result
	t.Run("ok/renew-onto-new-intermediate", func(t *testing.T) {
		renewed, err = f.renew(old.Certificate, newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		c := renewed.Certificate
		if c.CheckSignatureFrom(f.ca.Intermediate()) != nil || is.ID != f.ca.ActiveIssuer().ID {
			t.Fatal("renewal not issued by the new intermediate")
		}
		if len(renewed.Chain) != 2 || !renewed.Chain[0].Equal(f.ca.Intermediate()) {
			t.Fatalf("chain of the renewal = %v, want the new intermediate's", renewed.Chain)
		}
	})
	t.Run("ok/replayed-old-certificate-keeps-its-chain", func(t *testing.T) {
		res, err := f.svc.result(f.device("SN1"), &f.certs("SN1")[0], true)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Chain[0].Equal(oldInter) {
			t.Fatal("a certificate of the previous intermediate must come with its own chain")
		}
	})
	t.Run("fail/retired-intermediate", func(t *testing.T) {
		// The new certificate confirms itself by renewing; the old one
		// is then superseded and nothing lives under the old intermediate.
		if _, err := f.renew(renewed.Certificate, newKey(t)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ca.Retire(f.ca.Issuers()[0].ID); err != nil {
			t.Fatal(err)
		}
		before := f.snapshot()
		_, err := f.svc.Identify(ctx, []*x509.Certificate{old.Certificate})
		wantReason(t, err, ReasonUntrustedChain)
		_, err = f.svc.ProfileOf(ctx, []*x509.Certificate{old.Certificate})
		wantReason(t, err, ReasonUntrustedChain)
		_, err = f.renew(old.Certificate, newKey(t))
		wantReason(t, err, ReasonUntrustedChain)
		_, err = f.svc.Enroll(ctx, Request{Chain: []*x509.Certificate{old.Certificate}, CSR: csrFor(t, newKey(t)), Transport: "test"})
		wantReason(t, err, ReasonWrongCredential)
		if after := f.snapshot(); after.stats != before.stats {
			t.Fatal("registry changed")
		}
	})
}
