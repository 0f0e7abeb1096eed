package provenance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/vuln"
)

func vulnDoc(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "vuln", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putSensor(t testing.TB, st store.Store, serial, reported string) {
	t.Helper()
	if err := st.Update(context.Background(), func(tx store.Tx) error {
		d := device.Device{ID: device.ID("acme", serial), State: device.Onboarded, Zone: "default",
			Provenance: device.Provenance{Manufacturer: "acme", Serial: serial, IDevIDKeySHA256: fingerprint(serial),
				Model: "sensor-x", FirmwareVersion: "1.4.2", Owner: "op", ManifestRevision: 3},
			Reported: device.Reported{FirmwareVersion: reported}}
		return tx.PutDevice(&d)
	}); err != nil {
		t.Fatal(err)
	}
}

func view(t testing.TB, st store.Store, serial string, me *owner.Identity) View {
	t.Helper()
	var v View
	if err := st.View(context.Background(), func(r store.Reader) error {
		var err error
		v, err = ViewOf(r, device.ID("acme", serial), me)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestViewVulnerabilities(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	me, err := owner.Init(t.TempDir(), "op")
	if err != nil {
		t.Fatal(err)
	}
	putSensor(t, st, "SN1", "")
	putSensor(t, st, "SN2", "1.5.0")
	if _, err := vuln.Import(ctx, st, vulnDoc(t, "sbom-sensor-x-1.4.2.json"), "test", now); err != nil {
		t.Fatal(err)
	}
	v := view(t, st, "SN1", me)
	if len(v.Vulns.Open) != 0 || len(v.SBOM.Components) == 0 || !v.Owner.Ours || v.DataVersions.ManifestRevision != 3 {
		t.Fatalf("before VEX: %+v", v)
	}
	before := v.DataVersions.VulnData

	res, err := vuln.Import(ctx, st, vulnDoc(t, "vex-openssl-affected.json"), "test", now)
	if err != nil {
		t.Fatal(err)
	}
	v = view(t, st, "SN1", me)
	if len(v.Vulns.Open) == 0 || v.Vulns.MaxCVSS <= 0 {
		t.Fatalf("after an affected VEX: open %v, max CVSS %v", v.Vulns.Open, v.Vulns.MaxCVSS)
	}
	if v.DataVersions.VulnData != res.DataVersion || res.DataVersion <= before {
		t.Fatalf("data version %d (import said %d, before %d)", v.DataVersions.VulnData, res.DataVersion, before)
	}
	if v.Flags.Reevaluate == "" {
		t.Fatal("a device that became vulnerable is not marked for re-evaluation")
	}
	// A device reporting another firmware shows both.
	if v2 := view(t, st, "SN2", me); v2.Vulns.Reported == nil || v2.Vulns.Reported.FirmwareVersion != "1.5.0" ||
		v2.Firmware.Mismatch == "" {
		t.Fatalf("reported firmware view: %+v / %+v", v2.Vulns.Reported, v2.Firmware)
	}

	if _, err := vuln.Import(ctx, st, vulnDoc(t, "vex-openssl-resolved.json"), "test", now); err != nil {
		t.Fatal(err)
	}
	if v = view(t, st, "SN1", me); len(v.Vulns.Open) != 0 || v.Vulns.MaxCVSS != 0 {
		t.Fatalf("after a resolved VEX: open %v", v.Vulns.Open)
	}
	other, _ := owner.Init(t.TempDir(), "someone-else")
	if view(t, st, "SN1", other).Owner.Ours {
		t.Fatal("view says the device is ours for another owner")
	}
}

// BenchmarkViewOf reads the provenance view of one device out of 10,000,
// with SBOM and VEX data loaded.
func BenchmarkViewOf(b *testing.B) {
	ctx := context.Background()
	st := openStore(b)
	if err := st.Update(ctx, func(tx store.Tx) error {
		for i := range 10000 {
			s := fmt.Sprintf("SN%05d", i)
			d := device.Device{ID: device.ID("acme", s), State: device.Onboarded,
				Provenance: device.Provenance{Manufacturer: "acme", Serial: s, IDevIDKeySHA256: fingerprint(s),
					Model: "sensor-x", FirmwareVersion: "1.4.2", Owner: "op"}}
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, doc := range []string{"sbom-sensor-x-1.4.2.json", "vex-openssl-affected.json"} {
		if _, err := vuln.Import(ctx, st, vulnDoc(b, doc), "bench", now); err != nil {
			b.Fatal(err)
		}
	}
	me, _ := owner.Init(b.TempDir(), "op")
	for _, bc := range []struct {
		name string
		fn   func(store.Reader, string, *owner.Identity) (View, error)
	}{{"ViewOf", ViewOf}, {"Facts", Facts}} {
		b.Run(bc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				id := device.ID("acme", fmt.Sprintf("SN%05d", i%10000))
				i++
				if err := st.View(ctx, func(r store.Reader) error {
					_, err := bc.fn(r, id, me)
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
