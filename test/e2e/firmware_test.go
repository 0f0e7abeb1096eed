package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/fleet"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// TestReportedFirmware: devices report their firmware in the CSR (RFC 4108
// attributes); the registry keeps it, and a device whose firmware differs
// from its manifest is quarantined by the built-in decision.
func TestReportedFirmware(t *testing.T) {
	const n = 20
	e := startEmbark(t, nil)
	fdir := mint(t, n, 0)
	e.trustAndImport(t, fdir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(count int, firmware string) {
		reps, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps://" + e.srv.UDPAddr().String(),
			RootFile: e.root, Count: count, FirmwareVersion: firmware, Concurrency: 10})
		if err != nil {
			t.Fatal(err)
		}
		if reps[0].OK != count {
			t.Fatalf("%s", reps[0])
		}
	}
	check := func(count int, state device.State, zone, version string) {
		t.Helper()
		if err := e.srv.Store().View(ctx, func(r store.Reader) error {
			for i := 1; i <= count; i++ {
				d, err := r.Device(device.ID("acme", fmt.Sprintf("ACME-%06d", i)))
				if err != nil {
					return err
				}
				if d.State != state || d.Zone != zone || d.Reported.FirmwareVersion != version {
					return fmt.Errorf("%s: %s zone %s reported %+v; want %s %s %s", d.ID, d.State, d.Zone, d.Reported, state, zone, version)
				}
				if got := d.Reported.Digest(d.Provenance.FirmwareSHA256); version == d.Provenance.FirmwareVersion && got != d.Provenance.FirmwareSHA256 {
					return fmt.Errorf("%s: reported digest %s, manifest %s", d.ID, got, d.Provenance.FirmwareSHA256)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	run(10, "")
	check(10, device.Onboarded, "default", "1.4.2")
	// The same devices after a firmware change, and ten more.
	run(n, "9.9.9")
	check(n, device.Quarantined, "quarantine", "9.9.9")
}
