package onboard

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/embark-iot/embark/pkg/device"
)

// After a renewal, confirming the new certificate in use retires its
// predecessor: the predecessor can no longer renew nor open a session.
func TestConfirmInUse(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	id := device.ID("acme", "SN1")
	k1 := newKey(t)
	first, err := f.enroll(f.devs["SN1"], k1)
	if err != nil {
		t.Fatal(err)
	}
	k2 := newKey(t)
	second, err := f.renew(first.Certificate, k2)
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := SerialHex(first.Certificate), SerialHex(second.Certificate)
	if err := f.svc.CertUsable(first.Certificate); err != nil {
		t.Fatalf("predecessor before confirmation: %v", err)
	}
	before := f.snapshot()

	for _, tc := range []struct {
		name   string
		id     string
		serial string
		want   error
	}{
		{"fail/unknown-device", device.ID("acme", "NOPE"), s2, ErrUnknownDevice},
		{"fail/predecessor", id, s1, ErrNotCurrentCert},
		{"fail/no-serial", id, "", ErrNotCurrentCert},
		{"fail/other-device", device.ID("acme", "SN2"), s2, ErrNotCurrentCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.svc.ConfirmInUse(ctx, tc.id, tc.serial, "test")
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("ConfirmInUse = %v, %v; want %v", got, err, tc.want)
			}
			if after := f.snapshot(); !reflect.DeepEqual(after, before) {
				t.Fatalf("registry changed by a refused confirmation:\n%+v\n%+v", before, after)
			}
		})
	}

	retired, err := f.svc.ConfirmInUse(ctx, id, s2, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(retired, []string{s1}) {
		t.Fatalf("retired %v, want [%s]", retired, s1)
	}
	status := map[string]device.CertStatus{}
	for _, c := range f.certs("SN1") {
		status[c.Serial] = c.Status
	}
	if status[s1] != device.CertSuperseded || status[s2] != device.CertInUse {
		t.Fatalf("statuses after confirmation: %v", status)
	}
	if err := f.svc.CertUsable(first.Certificate); !errors.Is(err, ErrCertificateNotUsable) {
		t.Fatalf("session with the retired predecessor: %v, want refused", err)
	}
	_, err = f.renew(first.Certificate, newKey(t))
	wantReason(t, err, ReasonNotCurrent)

	// Again: nothing left to change.
	mid := f.snapshot()
	if retired, err := f.svc.ConfirmInUse(ctx, id, s2, "test"); err != nil || retired != nil {
		t.Fatalf("second confirmation: %v, %v", retired, err)
	}
	if after := f.snapshot(); !reflect.DeepEqual(after, mid) {
		t.Fatal("a confirmation with nothing to change changed the registry")
	}

	// The confirmed certificate renews as usual.
	if _, err := f.renew(second.Certificate, newKey(t)); err != nil {
		t.Fatalf("renewal with the confirmed certificate: %v", err)
	}

	// A revoked device's current certificate cannot be confirmed.
	if _, err := f.svc.Revoke(ctx, id, "alice", "stolen", ReasonCodeKeyCompromise); err != nil {
		t.Fatal(err)
	}
	cur := f.device("SN1").Current
	if _, err := f.svc.ConfirmInUse(ctx, id, cur, "test"); !errors.Is(err, ErrCertificateNotUsable) {
		t.Fatalf("confirmation after revocation: %v, want %v", err, ErrCertificateNotUsable)
	}
}
