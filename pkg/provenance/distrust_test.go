package provenance

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/store"
)

func TestDistrust(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	setup := func(t *testing.T) store.Store {
		st := openStore(t)
		mustTrust(t, st, f.acmeTrust)
		mustTrust(t, st, f.betaTrust)
		mustImport(t, st, f.acmeRev1)
		mustImport(t, st, sign(t, &manifest.Manifest{Manufacturer: "beta", Revision: 1, IssuedAt: now,
			Devices: []manifest.Entry{{Serial: "BETA-1", IDevIDKeySHA256: fingerprint("beta-1")}}}, f.betaKey))
		return st
	}
	flagged := func(t *testing.T, st store.Store) map[string]bool {
		out := map[string]bool{}
		if err := st.View(ctx, func(r store.Reader) error {
			return r.Devices("", func(d device.Device) (bool, error) {
				out[d.ID] = d.Flags.Reevaluate != ""
				return true, nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("ok/manufacturer-marks-exactly-its-devices", func(t *testing.T) {
		st := setup(t)
		res, err := DistrustManufacturer(ctx, st, "acme", "CA key leaked", "test", now)
		if err != nil {
			t.Fatal(err)
		}
		if res.Marked != 5 {
			t.Fatalf("marked %d, want the 5 acme devices", res.Marked)
		}
		for id, f := range flagged(t, st) {
			if f != strings.Contains(id, ":acme:") {
				t.Fatalf("%s flagged = %v", id, f)
			}
		}
		if m := take(t, st).manufacturer(t, "acme"); m.Distrusted != "CA key leaked" {
			t.Fatalf("manufacturer = %+v", m)
		}
	})
	t.Run("ok/key-withdrawn-refuses-its-manifests", func(t *testing.T) {
		st := setup(t)
		if _, err := DistrustKey(ctx, st, "acme", f.acmeKey.Public().KeyID(), "signing key compromised", "test", now); err != nil {
			t.Fatal(err)
		}
		_, err := ImportManifest(ctx, st, f.acmeRev2, "test", now)
		if !errors.Is(err, manifest.ErrUnknownSigner) {
			t.Fatalf("import signed by a withdrawn key: %v, want ErrUnknownSigner", err)
		}
		if m := take(t, st).manufacturer(t, "acme"); len(m.RevokedKeys) != 1 || len(m.ManifestKeys) != 0 {
			t.Fatalf("manufacturer keys = %d, revoked %v", len(m.ManifestKeys), m.RevokedKeys)
		}
	})
	tests := []struct {
		name string
		do   func(st store.Store) error
		want error
	}{
		{"fail/unknown-manufacturer", func(st store.Store) error {
			_, err := DistrustManufacturer(ctx, st, "nobody", "r", "test", now)
			return err
		}, ErrUnknownManufacturer},
		{"fail/unknown-key", func(st store.Store) error {
			_, err := DistrustKey(ctx, st, "acme", strings.Repeat("ab", 32), "r", "test", now)
			return err
		}, ErrUnknownKey},
		{"fail/key-of-another-manufacturer", func(st store.Store) error {
			_, err := DistrustKey(ctx, st, "acme", f.betaKey.Public().KeyID(), "r", "test", now)
			return err
		}, ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := setup(t)
			before := take(t, st)
			if err := tt.do(st); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			after := take(t, st)
			if before.stats != after.stats {
				t.Fatal("registry changed")
			}
		})
	}
	t.Run("fail/no-reason", func(t *testing.T) {
		st := setup(t)
		if _, err := DistrustManufacturer(ctx, st, "acme", "", "test", now); err == nil {
			t.Fatal("distrust without a reason accepted")
		}
	})
}
