package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/firmware-sim/fleet"
	"github.com/embark-iot/embark/firmware-sim/masa"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/registrar"
	"github.com/embark-iot/embark/pkg/store"
)

// mintOwned runs the factory for n devices sold to e's owner (by key).
func mintOwned(t *testing.T, e *embark, n int) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "factory")
	if _, err := factory.Run(context.Background(), factory.Options{Out: out, Count: n, OwnerKey: e.srv.Owner().KeyID()}); err != nil {
		t.Fatal(err)
	}
	return out
}

// startMASA serves the factory's voucher service on loopback.
func startMASA(t *testing.T, factoryDir string) *masa.MASA {
	t.Helper()
	m, err := masa.New(masa.Options{FactoryDir: factoryDir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// setMASA runs `embark manufacturer masa acme URL` over the admin socket.
func (e *embark) setMASA(t *testing.T, url string) registrar.MASASetting {
	t.Helper()
	body, _ := json.Marshal(admin.MASARequest{URL: url})
	var s registrar.MASASetting
	if err := e.client.Do(context.Background(), http.MethodPut, "/v1/manufacturers/acme/masa", body, &s); err != nil {
		t.Fatalf("set MASA: %v", err)
	}
	return s
}

// auditCounts counts the audit entries by action and outcome.
func (e *embark) auditCounts(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := e.srv.Store().View(context.Background(), func(r store.Reader) error {
		return r.Audit(0, func(en audit.Entry) (bool, error) {
			out[en.Action+"/"+en.Outcome]++
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *embark) stats(t *testing.T) store.Stats {
	t.Helper()
	st, err := e.srv.Store().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.Bytes = 0
	return st
}

// TestZeroTouch onboards 200 factory-fresh devices that know nothing but
// their IDevID and the voucher anchor of their firmware: each gets a
// voucher from the manufacturer's MASA through Embark, pins Embark's root
// from it, verifies the server, enrolls and renews.
func TestZeroTouch(t *testing.T) {
	const n = 200
	e := startEmbark(t, nil)
	fdir := mintOwned(t, e, n)
	m := startMASA(t, fdir)
	e.trustAndImport(t, fdir)
	s := e.setMASA(t, m.URL())
	if s.TLS != "TLS1.3 X25519MLKEM768" || s.Devices != n || s.OwnerKey != e.srv.Owner().KeyID() {
		t.Fatalf("MASA setting %+v", s)
	}
	state := filepath.Join(t.TempDir(), "state.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	reports, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps://" + e.srv.UDPAddr().String(), VoucherTarget: e.voucherTarget(),
		Concurrency: 50, Renew: true, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		t.Log(r.String())
		if r.OK != n {
			t.Fatalf("%s: %d of %d ok, failures %v", r.Phase, r.OK, n, r.Failed)
		}
	}
	if len(reports) != 2 || reports[0].Phase != fleet.PhaseZeroTouch || reports[1].Phase != fleet.PhaseRenew {
		t.Fatalf("phases %v", reports)
	}
	checkFleet(t, e, state, n, 1)
	if st := m.Stats(); st.Issued != n || st.Refused != 0 {
		t.Fatalf("MASA %+v", st)
	}
	counts := e.auditCounts(t)
	for _, k := range []string{"voucher/ok", "voucher_status/ok", "enroll_status/ok"} {
		if counts[k] != n {
			t.Errorf("audit %s: %d, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
	// The status exposes the back-end link's group.
	var status map[string]any
	if err := e.client.Do(ctx, http.MethodGet, "/v1/status", nil, &status); err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(status["registrar"]); !strings.Contains(string(b), "TLS1.3 X25519MLKEM768") {
		t.Fatalf("status registrar %s", b)
	}
}

// TestZeroTouchOverTLS runs the same over CoAP over TCP and TLS.
func TestZeroTouchOverTLS(t *testing.T) {
	const n = 20
	e := startEmbark(t, nil)
	fdir := mintOwned(t, e, n)
	m := startMASA(t, fdir)
	e.trustAndImport(t, fdir)
	e.setMASA(t, m.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reports, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps+tcp://" + e.srv.TCPAddr().String(), VoucherTarget: e.voucherTarget(), Concurrency: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || reports[0].OK != n {
		t.Fatalf("reports %v", reports)
	}
}

// TestRogueEmbark: a second Embark with another owner's CA, which trusts
// the manufacturer and imported its manifest, registers with the MASA
// (anyone may), but the MASA refuses its voucher requests with a reason
// (the devices were sold to the first owner), the devices refuse to
// onboard there, and the rogue issues nothing. The same devices then
// onboard with their owner.
func TestRogueEmbark(t *testing.T) {
	const n = 30
	owner := startEmbark(t, nil)
	rogue := startEmbark(t, func(c *config.Config) { c.Owner = "rogue-operator" })
	fdir := mintOwned(t, owner, n)
	m := startMASA(t, fdir)
	for _, e := range []*embark{owner, rogue} {
		e.trustAndImport(t, fdir)
	}
	owner.setMASA(t, m.URL())
	if s := rogue.setMASA(t, m.URL()); s.Devices != 0 {
		t.Fatalf("the MASA says the rogue owns %d devices", s.Devices)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reports, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps://" + rogue.srv.UDPAddr().String(), VoucherTarget: rogue.voucherTarget(), Concurrency: 10})
	if err != nil {
		t.Fatal(err)
	}
	if r := reports[0]; r.OK != 0 || r.Failed[string(registrar.ReasonVoucherRefused)] != n {
		t.Fatalf("at the rogue: %s", r)
	}
	if st := rogue.stats(t); st.Certificates != 0 {
		t.Fatalf("the rogue issued %d certificates", st.Certificates)
	}
	refused := 0
	_ = rogue.srv.Store().View(ctx, func(r store.Reader) error {
		return r.Audit(0, func(en audit.Entry) (bool, error) {
			if en.Action == "voucher" && en.Outcome == string(registrar.ReasonVoucherRefused) && strings.Contains(en.Detail, "wrong_owner") {
				refused++
			}
			return true, nil
		})
	})
	if refused != n {
		t.Fatalf("rogue audit: %d refusals naming wrong_owner, want %d", refused, n)
	}
	if st := m.Stats(); st.Refused != n {
		t.Fatalf("MASA %+v", st)
	}
	reports, err = fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps://" + owner.srv.UDPAddr().String(), VoucherTarget: owner.voucherTarget(), Concurrency: 10})
	if err != nil || reports[0].OK != n {
		t.Fatalf("with the owner: %v %v", err, reports)
	}
}

// TestOfflineSite: nonceless vouchers prefetched while the MASA answers
// let devices onboard after it became unreachable — devices with a clock
// that accept them; a device that does not is refused with its reason.
func TestOfflineSite(t *testing.T) {
	const n = 6
	e := startEmbark(t, nil)
	fdir := mintOwned(t, e, n)
	m := startMASA(t, fdir)
	e.trustAndImport(t, fdir)
	e.setMASA(t, m.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	body, _ := json.Marshal(admin.PrefetchRequest{Pending: true, Devices: []string{"acme:ACME-999999"}, Lifetime: "24h"})
	var res admin.PrefetchResult
	if err := e.client.Do(ctx, http.MethodPost, "/v1/vouchers/prefetch", body, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Vouchers) != n+1 {
		t.Fatalf("%d answers, want %d", len(res.Vouchers), n+1)
	}
	for _, p := range res.Vouchers {
		if p.Serial == "ACME-999999" {
			if !strings.Contains(p.Error, "unknown_device") {
				t.Fatalf("unknown device: %+v", p)
			}
			continue
		}
		if p.Error != "" || p.ExpiresOn.After(time.Now().Add(25*time.Hour)) || p.ExpiresOn.Before(time.Now().Add(23*time.Hour)) {
			t.Fatalf("prefetch %+v", p)
		}
		path, err := registrar.VoucherPath(filepath.Join(e.dir, "vouchers"), p.Manufacturer, p.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, p.Voucher, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil { // the site goes offline
		t.Fatal(err)
	}
	target := "coaps://" + e.srv.UDPAddr().String()
	reports, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: target, VoucherTarget: e.voucherTarget(), Count: 2, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if r := reports[0]; r.OK != 0 || r.Failed[fleet.ReasonVoucherNonceless] != 2 {
		t.Fatalf("devices that accept no nonceless voucher: %s", r)
	}
	reports, err = fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: target, VoucherTarget: e.voucherTarget(), AllowNonceless: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := reports[0]; r.OK != n {
		t.Fatalf("offline: %s", r)
	}
	offline := 0
	_ = e.srv.Store().View(ctx, func(r store.Reader) error {
		return r.Audit(0, func(en audit.Entry) (bool, error) {
			if en.Action == "voucher" && en.Outcome == "ok" && strings.Contains(en.Detail, "offline voucher (MASA unreachable)") {
				offline++
			}
			return true, nil
		})
	})
	if offline != n+2 {
		t.Fatalf("%d offline vouchers served, want %d", offline, n+2)
	}
}

// TestCompareMode: half the devices enroll with the out-of-band root, half
// zero-touch, in one run; the zero-touch report gives its rate as a
// fraction of the other.
func TestCompareMode(t *testing.T) {
	const n = 40
	e := startEmbark(t, nil)
	fdir := mintOwned(t, e, n)
	m := startMASA(t, fdir)
	e.trustAndImport(t, fdir)
	e.setMASA(t, m.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reports, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps://" + e.srv.UDPAddr().String(), VoucherTarget: e.voucherTarget(), RootFile: e.root,
		Mode: fleet.ModeCompare, Concurrency: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 2 || reports[0].Phase != fleet.PhaseEnroll || reports[1].Phase != fleet.PhaseZeroTouch ||
		reports[0].OK != n/2 || reports[1].OK != n/2 || reports[1].Ceiling != fleet.PhaseEnroll || reports[1].OfCeiling <= 0 {
		t.Fatalf("reports %v", reports)
	}
	if st := m.Stats(); st.Issued != n/2 {
		t.Fatalf("MASA %+v: only the zero-touch half asks for vouchers", st)
	}
}

// voucherTarget is the plain CoAP listener where devices without the
// Embark root ask for their vouchers.
func (e *embark) voucherTarget() string { return "coap://" + e.srv.BRSKIAddr().String() }
