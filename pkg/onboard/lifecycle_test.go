package onboard

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
)

func TestDecommissionAndReonboard(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	id := device.ID("acme", "SN1")
	k := newKey(t)
	first, err := f.enroll(f.devs["SN1"], k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.renew(first.Certificate, k); err != nil {
		t.Fatal(err)
	}
	d, err := f.svc.Decommission(ctx, id, "alice", "end of life")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != device.Decommissioned || d.Flags.Pending == "" {
		t.Fatalf("after decommission: %s %+v", d.State, d.Flags)
	}
	for _, c := range f.certs("SN1") {
		if c.Status.Usable() {
			t.Fatalf("certificate %s still %s", c.Serial, c.Status)
		}
	}
	_, err = f.enroll(f.devs["SN1"], newKey(t))
	wantReason(t, err, ReasonRevoked)
	if _, err := f.svc.Decommission(ctx, id, "alice", "again"); !errors.Is(err, ErrNotRevocable) {
		t.Fatalf("decommission twice: %v", err)
	}
	d, err = f.svc.Reonboard(ctx, id, "bob", "refurbished")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != device.Expected || d.Current != "" {
		t.Fatalf("after re-onboarding: %s current %q", d.State, d.Current)
	}
	if _, err := f.enroll(f.devs["SN1"], newKey(t)); err != nil {
		t.Fatalf("enrollment after re-onboarding: %v", err)
	}
	if _, err := f.svc.Reonboard(ctx, device.ID("acme", "SN2"), "bob", "x"); !errors.Is(err, ErrNotRevocable) {
		t.Fatalf("re-onboarding an expected device: %v", err)
	}
}

func TestExpiring(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	for _, s := range []string{"SN1", "SN2"} {
		if _, err := f.enroll(f.devs[s], newKey(t)); err != nil {
			t.Fatal(err)
		}
	}
	// Certificates live 30 days (the built-in decision).
	if got, err := f.svc.Expiring(ctx, 72*time.Hour); err != nil || len(got) != 0 {
		t.Fatalf("expiring within 72h now: %d, %v", len(got), err)
	}
	f.clock.Advance(28 * 24 * time.Hour)
	got, err := f.svc.Expiring(ctx, 72*time.Hour)
	if err != nil || len(got) != 2 {
		t.Fatalf("expiring within 72h after 28 days: %d, %v", len(got), err)
	}
	if got[0].NotAfter.After(got[1].NotAfter) {
		t.Fatal("not sorted soonest first")
	}
}
