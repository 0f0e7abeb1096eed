package fleet

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient/esttest"
	"github.com/embark-iot/embark/firmware-sim/factory"
)

// until polls cond until it holds or ctx ends.
func until(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func TestStayCoAP(t *testing.T) {
	for _, transport := range []string{"coaps", "coaps+tcp"} {
		t.Run("ok/"+transport, func(t *testing.T) {
			w := newWorld(t, 4)
			s := w.start(t, esttest.Options{Transport: transport})
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			devs, err := factory.ReadDevices(filepath.Join(w.factoryDir, factory.DevicesFile))
			if err != nil {
				t.Fatal(err)
			}
			var serials []string
			for _, d := range devs {
				serials = append(serials, d.Serial)
			}
			rotated, revoked := serials[:3], serials[3]

			// The stay lasts until the campaign is over: once every device
			// observes its status, the first three are told to rotate and
			// the last one is revoked; the stay ends when the three
			// reported the rotation from their new sessions.
			campaign := func(ctx context.Context, _ time.Duration) bool {
				err := until(ctx, func() bool {
					for _, sn := range serials {
						if s.Observers(sn) != 1 {
							return false
						}
					}
					return true
				})
				if err == nil {
					for _, sn := range rotated {
						s.SetStatus(sn, func(st *esttest.Status) { st.Rotate, st.Zone, st.Campaign = true, "plant-2", "c1" })
					}
					s.Revoke(revoked, "key leaked")
					err = until(ctx, func() bool {
						for _, sn := range rotated {
							if len(s.Reports(sn)) == 0 || s.Observers(sn) != 1 {
								return false
							}
						}
						return true
					})
				}
				if err != nil {
					t.Errorf("campaign: %v", err)
				}
				return err == nil
			}
			o := Options{FactoryDir: w.factoryDir, Target: s.Target, RootFile: w.rootFile, Timeout: 10 * time.Second,
				Stay: time.Hour, StateFile: filepath.Join(t.TempDir(), "state.jsonl")}
			reps, err := runTweaked(ctx, o, func(r *runner) { r.stayWait = campaign })
			if err != nil {
				t.Fatal(err)
			}
			if got := phases(reps); !slices.Equal(got, []string{PhaseEnroll, PhaseStay}) {
				t.Fatalf("phases %v, want enroll, stay", got)
			}
			st := reps[1]
			if st.Devices != 4 || st.OK != 4 || st.FailedCount() != 0 || st.Connected != 3 || st.Applied != 3 ||
				st.Rotations != 3 || st.Revoked != 1 || st.Ignored != 0 || st.Reconnects != 3 {
				t.Fatalf("%s\nwant 4 ok, 3 connected, 3 applied, 3 rotations, 1 revoked, 0 ignored, 3 reconnects", st)
			}
			if !strings.Contains(st.String(), "connected 3, commands applied 3, rotations 3, revoked 1, ignored 0, reconnects 3") {
				t.Fatalf("report without the stay counts:\n%s", st)
			}
			if s.Issued() != 4+3 {
				t.Fatalf("issued %d, want 7 (4 enrollments, 3 rotations)", s.Issued())
			}
			for _, sn := range rotated {
				if got := s.Reports(sn); !slices.Equal(got, []uint64{1}) {
					t.Fatalf("%s reported %v, want [1]", sn, got)
				}
			}
			if got := s.Reports(revoked); len(got) != 0 {
				t.Fatalf("the revoked device reported %v", got)
			}
			recs, err := ReadState(o.StateFile)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 3 {
				t.Fatalf("%d state records, want 3: the revoked device forgot its LDevID", len(recs))
			}
			for _, rec := range recs {
				if _, err := tls.X509KeyPair([]byte(rec.CertPEM), []byte(rec.KeyPEM)); err != nil {
					t.Fatal(err)
				}
				if rec.Applied != 1 || rec.Zone != "plant-2" {
					t.Fatalf("%s: applied %d in zone %q, want 1 in plant-2", rec.Serial, rec.Applied, rec.Zone)
				}
			}
		})
	}
}

func TestStayCoAPRevokedWhileAway(t *testing.T) {
	w := newWorld(t, 2)
	s := w.start(t, esttest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	devs, err := factory.ReadDevices(filepath.Join(w.factoryDir, factory.DevicesFile))
	if err != nil {
		t.Fatal(err)
	}
	// The first device was revoked while away: it is refused when it
	// observes and stops. The stay ends once
	// the second one observes too.
	s.Revoke(devs[0].Serial, "decommissioned")
	seen := func(ctx context.Context, _ time.Duration) bool {
		err := until(ctx, func() bool { return s.Observers(devs[1].Serial) == 1 })
		if err != nil {
			t.Errorf("observe: %v", err)
		}
		return err == nil
	}
	o := Options{FactoryDir: w.factoryDir, Target: s.Target, RootFile: w.rootFile, Timeout: 10 * time.Second, Stay: time.Hour}
	reps, err := runTweaked(ctx, o, func(r *runner) { r.stayWait = seen })
	if err != nil {
		t.Fatal(err)
	}
	st := reps[1]
	if st.OK != 2 || st.Connected != 1 || st.Revoked != 1 || st.Applied != 0 || st.Reconnects != 0 {
		t.Fatalf("%s\nwant 2 ok: 1 connected, 1 revoked when it asked", st)
	}
}
