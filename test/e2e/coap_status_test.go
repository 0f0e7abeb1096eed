package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/fleet"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/store"
)

// stayProgress reads the stay's progress lines ("stay connected 50/50
// applied 3 rotations 3 revoked 0 ignored 0 reconnects 3").
type stayProgress struct {
	mu                                     sync.Mutex
	connected, applied, rotations, revoked int
	lines                                  int
}

func (p *stayProgress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range strings.Split(string(b), "\n") {
		var c, total, a, r, v, ig, rc int
		if n, _ := fmt.Sscanf(line, "stay connected %d/%d applied %d rotations %d revoked %d ignored %d reconnects %d",
			&c, &total, &a, &r, &v, &ig, &rc); n == 7 {
			p.connected, p.applied, p.rotations, p.revoked = c, a, r, v
			p.lines++
		}
	}
	return len(b), nil
}

func (p *stayProgress) get() (connected, applied, rotations, revoked int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connected, p.applied, p.rotations, p.revoked
}

// TestCoAPStatusStay: 50 devices stay connected over CoAP/DTLS, observing
// their status resource. An operator rotates all of them: each renews with
// a new key and reports the generation applied from a session with its new
// LDevID. One device revoked during the stay is cut off (a final
// notification, then its session dropped) and stops.
func TestCoAPStatusStay(t *testing.T) {
	const n = 50
	e := startEmbark(t, nil)
	fdir := mint(t, n, 0)
	if res := e.trustAndImport(t, fdir); res.New != n {
		t.Fatalf("imported %d new devices, want %d", res.New, n)
	}
	state := filepath.Join(t.TempDir(), "state.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stayCtx, endStay := context.WithCancel(ctx)
	defer endStay()
	progress := &stayProgress{}
	type result struct {
		reps []fleet.Report
		err  error
	}
	done := make(chan result, 1)
	go func() {
		reps, err := fleet.Run(stayCtx, fleet.Options{FactoryDir: fdir, Target: "coaps://" + e.srv.UDPAddr().String(),
			RootFile: e.root, Concurrency: n, Stay: time.Hour, StateFile: state, Progress: progress, Timeout: 20 * time.Second})
		done <- result{reps, err}
	}()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = device.ID("acme", fmt.Sprintf("ACME-%06d", i+1))
	}
	waitFor(t, "every device to observe its status", 2*time.Minute, func() bool {
		c, _, _, _ := progress.get()
		return c == n
	})

	// The operator's rotation, device by device, as `embark device rotate` does.
	gens := map[string]uint64{}
	for _, id := range ids {
		body, _ := json.Marshal(admin.RotateRequest{Campaign: "q3"})
		var d desired.Desired
		if err := e.client.Do(ctx, http.MethodPost, "/v1/devices/"+id+"/rotate", body, &d); err != nil {
			t.Fatalf("rotate %s: %v", id, err)
		}
		if !d.Rotate || d.Campaign != "q3" || d.Generation == 0 {
			t.Fatalf("rotate %s: %+v", id, d)
		}
		gens[id] = d.Generation
	}
	desiredOf := func(id string) desired.Desired {
		var d desired.Desired
		if err := e.client.Do(ctx, http.MethodGet, "/v1/devices/"+id+"/desired", nil, &d); err != nil {
			t.Fatalf("desired %s: %v", id, err)
		}
		return d
	}
	waitFor(t, "every device to report the rotation applied", 2*time.Minute, func() bool {
		for _, id := range ids {
			if d := desiredOf(id); d.Applied < gens[id] {
				return false
			}
		}
		return true
	})

	// One device is revoked while it stays.
	victim := ids[n-1]
	body, _ := json.Marshal(admin.OperatorRequest{Reason: "key leaked"})
	var rd device.Device
	if err := e.client.Do(ctx, http.MethodPost, "/v1/devices/"+victim+"/revoke", body, &rd); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revoked device to stop", time.Minute, func() bool {
		c, _, _, v := progress.get()
		return v == 1 && c == n-1
	})
	endStay()
	res := <-done
	if !errors.Is(res.err, context.Canceled) {
		t.Fatalf("fleet ended with %v, want the end of the stay", res.err)
	}
	if len(res.reps) != 2 || res.reps[1].Phase != fleet.PhaseStay {
		t.Fatalf("reports %v, want enroll and stay", res.reps)
	}
	for _, r := range res.reps {
		t.Log(r.String())
	}
	st := res.reps[1]
	// The revoked device may count the "revoked" generation as applied if
	// its notice arrived before the session was cut, or not.
	if st.Devices != n || st.OK != n || st.FailedCount() != 0 || st.Connected != n-1 || st.Rotations != n ||
		st.Applied < n || st.Applied > n+1 || st.Revoked != 1 || st.Reconnects < n {
		t.Fatalf("stay: %s\nwant %d ok, %d connected, %d rotations, %d or %d applied, 1 revoked, at least %d reconnects",
			st, n, n-1, n, n, n+1, n)
	}

	// Each device holds a new key, the registry's current certificate after
	// one renewal; the revoked one forgot its LDevID.
	recs, err := fleet.ReadState(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n-1 {
		t.Fatalf("state holds %d devices, want %d", len(recs), n-1)
	}
	for _, rec := range recs {
		id := device.ID("acme", rec.Serial)
		if id == victim {
			t.Fatalf("the revoked device kept its LDevID")
		}
		pair, err := tls.X509KeyPair([]byte(rec.CertPEM), []byte(rec.KeyPEM))
		if err != nil {
			t.Fatal(err)
		}
		if rec.Applied != gens[id] {
			t.Fatalf("%s applied %d, want %d", id, rec.Applied, gens[id])
		}
		err = e.srv.Store().View(ctx, func(r store.Reader) error {
			d, err := r.Device(id)
			if err != nil {
				return err
			}
			if d.State != device.Onboarded || d.Renewals != 1 || d.Current != onboard.SerialHex(pair.Leaf) {
				return fmt.Errorf("%s: registry state %s, %d renewals, current %s; the device holds %s",
					id, d.State, d.Renewals, d.Current, onboard.SerialHex(pair.Leaf))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err = e.srv.Store().View(ctx, func(r store.Reader) error {
		d, err := r.Device(victim)
		if err != nil {
			return err
		}
		if d.State != device.Revoked {
			return fmt.Errorf("%s is %s, want revoked", victim, d.State)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
