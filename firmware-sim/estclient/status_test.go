package estclient_test

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/estclient/esttest"
)

func nextUpdate(t *testing.T, o *estclient.StatusObservation) estclient.Status {
	t.Helper()
	select {
	case st := <-o.Updates():
		return st
	case <-o.Done():
		t.Fatalf("observation ended: %v", o.Err())
	case <-time.After(30 * time.Second): // ends a hanging test only
		t.Fatal("no update")
	}
	return estclient.Status{}
}

func waitDone(t *testing.T, o *estclient.StatusObservation) error {
	t.Helper()
	select {
	case <-o.Done():
		return o.Err()
	case <-time.After(30 * time.Second): // ends a hanging test only
		t.Fatal("observation did not end")
	}
	return nil
}

func TestObserveStatus(t *testing.T) {
	for _, tr := range []Transport{DTLS, TLS} {
		t.Run(string(tr), func(t *testing.T) {
			p := newPKI(t)
			s, err := esttest.Start(p, esttest.Options{Transport: string(tr)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			ctx := context.Background()
			ldevid, err := p.Intermediate.Leaf("SN-1", nil, nil, x509.ExtKeyUsageClientAuth)
			if err != nil {
				t.Fatal(err)
			}
			idevid, err := p.IDevID("SN-1")
			if err != nil {
				t.Fatal(err)
			}

			t.Run("ok/observe, notify, report, cancel", func(t *testing.T) {
				cl := dial(t, Config{Target: s.Target, Roots: p.Roots(), Certificate: &ldevid})
				o, err := cl.ObserveStatus(ctx, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if first := nextUpdate(t, o); first != (estclient.Status{}) {
					t.Fatalf("first update %+v, want generation 0", first)
				}
				s.SetStatus("SN-1", func(st *esttest.Status) { st.Rotate, st.Zone = true, "plant-2" })
				if got := nextUpdate(t, o); got.Generation != 1 || !got.Rotate || got.Zone != "plant-2" {
					t.Fatalf("update %+v, want generation 1: rotate in plant-2", got)
				}
				st, err := cl.ReportApplied(ctx, 1)
				if err != nil {
					t.Fatal(err)
				}
				if st.Applied != 1 || st.Generation != 1 {
					t.Fatalf("report answered %+v", st)
				}
				if got := s.Reports("SN-1"); len(got) != 1 || got[0] != 1 {
					t.Fatalf("server got reports %v, want [1]", got)
				}
				if err := o.Cancel(ctx); err != nil {
					t.Fatal(err)
				}
				if err := waitDone(t, o); !errors.Is(err, estclient.ErrObservationCanceled) {
					t.Fatalf("ended with %v, want ErrObservationCanceled", err)
				}
				if n := s.Observers("SN-1"); n != 0 {
					t.Fatalf("%d observers after Cancel", n)
				}
				// The session outlives its observation.
				if got, err := cl.Status(ctx); err != nil || got.Generation != 1 || got.Applied != 1 {
					t.Fatalf("Status = %+v, %v", got, err)
				}
			})
			t.Run("fail/report of a generation never issued", func(t *testing.T) {
				cl := dial(t, Config{Target: s.Target, Roots: p.Roots(), Certificate: &ldevid})
				_, err := cl.ReportApplied(ctx, 9)
				var se *StatusError
				if !errors.As(err, &se) || se.Code != codes.BadRequest || se.Reason != "bad_request" {
					t.Fatalf("err = %v, want 4.00 bad_request", err)
				}
				if got := s.Reports("SN-1"); len(got) != 1 {
					t.Fatalf("server recorded %v", got)
				}
			})
			t.Run("fail/observe with the idevid", func(t *testing.T) {
				cl := dial(t, Config{Target: s.Target, Roots: p.Roots(), Certificate: &idevid})
				_, err := cl.ObserveStatus(ctx, 0)
				var se *StatusError
				if !errors.As(err, &se) || se.Code != codes.Forbidden || se.Reason != "wrong_credential" {
					t.Fatalf("err = %v, want 4.03 wrong_credential", err)
				}
				if n := s.Observers("SN-1"); n != 0 {
					t.Fatalf("%d observers after a refusal", n)
				}
			})
			t.Run("ok/session lost", func(t *testing.T) {
				cl := dial(t, Config{Target: s.Target, Roots: p.Roots(), Certificate: &ldevid})
				o, err := cl.ObserveStatus(ctx, 0)
				if err != nil {
					t.Fatal(err)
				}
				nextUpdate(t, o)
				_ = cl.Close()
				if err := waitDone(t, o); !errors.Is(err, estclient.ErrSessionLost) {
					t.Fatalf("ended with %v, want ErrSessionLost", err)
				}
			})
			t.Run("ok/revoked: final notification", func(t *testing.T) {
				cl := dial(t, Config{Target: s.Target, Roots: p.Roots(), Certificate: &ldevid})
				o, err := cl.ObserveStatus(ctx, 0)
				if err != nil {
					t.Fatal(err)
				}
				nextUpdate(t, o)
				s.Revoke("SN-1", "key leaked")
				err = waitDone(t, o)
				var se *StatusError
				if !estclient.IsRevoked(err) || !errors.As(err, &se) || se.Message != "key leaked" {
					t.Fatalf("ended with %v, want 4.03 revoked: key leaked", err)
				}
			})
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want estclient.Status
		err  error
	}{
		{name: "ok/unknown keys are skipped", in: []byte{0xa2, 0x6a, 'g', 'e', 'n', 'e', 'r', 'a', 't', 'i', 'o', 'n', 0x03, 0x61, 'x', 0x01},
			want: estclient.Status{Generation: 3}},
		{name: "fail/duplicate key", in: []byte{0xa2, 0x6a, 'g', 'e', 'n', 'e', 'r', 'a', 't', 'i', 'o', 'n', 0x03, 0x6a, 'g', 'e', 'n', 'e', 'r', 'a', 't', 'i', 'o', 'n', 0x04},
			err: estclient.ErrResponse},
		{name: "fail/indefinite map", in: []byte{0xbf, 0xff}, err: estclient.ErrResponse},
		{name: "fail/not a map", in: []byte{0x01}, err: estclient.ErrResponse},
		{name: "fail/empty", err: estclient.ErrResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := estclient.ParseStatus(tt.in)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Fatalf("ParseStatus = %+v, %v; want %+v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func FuzzParseStatus(f *testing.F) {
	for _, b := range [][]byte{{0xa1, 0x6a, 'g', 'e', 'n', 'e', 'r', 'a', 't', 'i', 'o', 'n', 0x03}, {0xa0}, {0xbf, 0xff}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := estclient.ParseStatus(b)
		if err != nil && st != (estclient.Status{}) {
			t.Fatalf("ParseStatus returned %+v with error %v", st, err)
		}
	})
}
