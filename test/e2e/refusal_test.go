package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/firmware-sim/fleet"
	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/store"
)

// TestRefusalsOnTheWire checks reasons as devices see them over DTLS, and
// that refused devices change nothing but the audit log.
func TestRefusalsOnTheWire(t *testing.T) {
	e := startEmbark(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// 6 devices, the last 2 with expired IDevIDs.
	known := mint(t, 6, 2)
	e.trustAndImport(t, known)
	// A manufacturer the operator never trusted.
	untrusted := filepath.Join(t.TempDir(), "untrusted")
	if _, err := factory.Run(ctx, factory.Options{Out: untrusted, Count: 3, Manufacturer: "shady"}); err != nil {
		t.Fatal(err)
	}
	// Devices of the trusted manufacturer minted after the imported
	// manifest: their keys are in no imported manifest.
	if _, err := factory.Run(ctx, factory.Options{Out: known, Count: 2}); err != nil {
		t.Fatal(err)
	}

	before, err := e.srv.Store().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	run := func(dir string, count int) fleet.Report {
		reps, err := fleet.Run(ctx, fleet.Options{FactoryDir: dir, Target: "coaps://" + e.srv.UDPAddr().String(),
			RootFile: e.root, Count: count, Retries: -1, Concurrency: 4})
		if err != nil {
			t.Fatal(err)
		}
		return reps[0]
	}
	rep := run(known, 0)
	if rep.OK != 4 || rep.Failed["expired_chain"] != 2 || rep.Failed["unknown_device"] != 2 {
		t.Fatalf("trusted manufacturer: %s", rep)
	}
	rep = run(untrusted, 0)
	if rep.OK != 0 || rep.Failed["untrusted_chain"] != 3 {
		t.Fatalf("untrusted manufacturer: %s", rep)
	}
	after, err := e.srv.Store().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Devices != before.Devices || after.Certificates != before.Certificates+4 {
		t.Fatalf("registry %+v -> %+v: want the same devices and 4 more certificates", before, after)
	}
	// The 2 unknown devices are audited; nothing else was written for refusals.
	if after.AuditEntries != before.AuditEntries+4+2 {
		t.Fatalf("audit entries %d -> %d, want 4 enrollments + 2 unknown-device refusals", before.AuditEntries, after.AuditEntries)
	}
	var unknown int
	if err := e.srv.Store().View(ctx, func(r store.Reader) error {
		return r.Audit(uint64(before.AuditEntries), func(en audit.Entry) (bool, error) {
			if en.Outcome == "unknown_device" && en.DeviceID == "" {
				unknown++
			}
			return true, nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if unknown != 2 {
		t.Fatalf("%d unknown-device audit entries, want 2", unknown)
	}
	_ = os.RemoveAll(untrusted)
}
