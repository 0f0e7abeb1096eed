package campaign

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
)

// registry: x1 and x2 of model X in zone a, y1 of model Y in zone b
// (quarantined), e1 of model E never enrolled, r1 of model R revoked.
func registry(t *testing.T) (*fixture, map[string]string) {
	f := newFixture(t)
	ids := map[string]string{
		"x1": f.addDevice("X1", "X", "a", device.Onboarded),
		"x2": f.addDevice("X2", "X", "a", device.Onboarded),
		"y1": f.addDevice("Y1", "Y", "b", device.Quarantined),
		"e1": f.addDevice("E1", "E", "", device.Expected),
		"r1": f.addDevice("R1", "R", "c", device.Revoked),
	}
	return f, ids
}

func TestStart(t *testing.T) {
	f, ids := registry(t)
	for _, tc := range []struct {
		name string
		spec Spec
		want []string
	}{
		{"ok/device", Spec{Selector: Selector{SelectDevice, ids["x1"]}, Rate: 5}, []string{ids["x1"]}},
		{"ok/device-short-id", Spec{Selector: Selector{SelectDevice, "acme:Y1"}, Rate: 5}, []string{ids["y1"]}},
		{"ok/model", Spec{Selector: Selector{SelectModel, "X"}, Rate: 5}, []string{ids["x1"], ids["x2"]}},
		{"ok/zone", Spec{Selector: Selector{SelectZone, "b"}, Unlimited: true}, []string{ids["y1"]}},
		{"ok/all-rotatable-only", Spec{Selector: Selector{Select: SelectAll}, Rate: MaxRate, Timeout: time.Hour},
			[]string{ids["x1"], ids["x2"], ids["y1"]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(context.Background(), f.st, tc.spec, "operator:test", f.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			if s.State != Running || s.Devices != len(tc.want) || s.Counts.Queued != len(tc.want) || !ValidID(s.ID) {
				t.Fatalf("summary %+v", s)
			}
			if tc.spec.Timeout == 0 && time.Duration(s.Timeout) != DefaultTimeout {
				t.Fatalf("timeout %s, want the default", time.Duration(s.Timeout))
			}
			var got []string
			for _, it := range f.detail(s.ID).Items {
				if it.State != Queued || it.OldCert == "" || it.OldKey == "" {
					t.Fatalf("item %+v", it)
				}
				got = append(got, it.Device)
			}
			slices.Sort(tc.want)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("devices %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStartRefusals(t *testing.T) {
	f, ids := registry(t)
	before, recs := f.stats(), f.records()
	all := Selector{Select: SelectAll}
	for _, tc := range []struct {
		name string
		spec Spec
		want error
		msg  string
	}{
		{"fail/unknown-device", Spec{Selector: Selector{SelectDevice, "acme:NOPE"}, Rate: 1}, ErrUnknownDevice, "urn:dev:embark:acme:NOPE"},
		{"fail/malformed-device", Spec{Selector: Selector{SelectDevice, "nope"}, Rate: 1}, ErrInvalid, "device id"},
		{"fail/unknown-model", Spec{Selector: Selector{SelectModel, "Z"}, Rate: 1}, ErrUnknownModel, `model "Z"`},
		{"fail/unknown-zone", Spec{Selector: Selector{SelectZone, "nowhere"}, Rate: 1}, ErrUnknownZone, `zone "nowhere"`},
		{"fail/device-never-enrolled", Spec{Selector: Selector{SelectDevice, ids["e1"]}, Rate: 1}, ErrNothingToRotate, "expected"},
		{"fail/device-revoked", Spec{Selector: Selector{SelectDevice, ids["r1"]}, Rate: 1}, ErrNothingToRotate, "revoked"},
		{"fail/model-none-rotatable", Spec{Selector: Selector{SelectModel, "R"}, Rate: 1}, ErrNothingToRotate, "1 devices match model R"},
		{"fail/empty-model", Spec{Selector: Selector{SelectModel, " "}, Rate: 1}, ErrInvalid, "needs a value"},
		{"fail/all-with-value", Spec{Selector: Selector{SelectAll, "x"}, Rate: 1}, ErrInvalid, "no value"},
		{"fail/unknown-select", Spec{Selector: Selector{"serial", "x"}, Rate: 1}, ErrInvalid, `select "serial"`},
		{"fail/rate-zero", Spec{Selector: all}, ErrInvalid, "rate 0"},
		{"fail/rate-negative", Spec{Selector: all, Rate: -5}, ErrInvalid, "rate -5"},
		{"fail/rate-nan", Spec{Selector: all, Rate: math.NaN()}, ErrInvalid, "rate NaN"},
		{"fail/rate-absurd", Spec{Selector: all, Rate: 1e9}, ErrInvalid, "above 10000"},
		{"fail/rate-and-unlimited", Spec{Selector: all, Rate: 5, Unlimited: true}, ErrInvalid, "no limit at once"},
		{"fail/timeout-short", Spec{Selector: all, Rate: 1, Timeout: time.Millisecond}, ErrInvalid, "timeout 1ms"},
		{"fail/timeout-long", Spec{Selector: all, Rate: 1, Timeout: 365 * 24 * time.Hour}, ErrInvalid, "timeout 8760h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), f.st, tc.spec, "operator:test", f.clock.Now())
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
			if after, r := f.stats(), f.records(); after != before || !reflect.DeepEqual(r, recs) {
				t.Fatalf("registry changed: %+v %v -> %+v %v", before, recs, after, r)
			}
		})
	}
}

func TestGetAndCancel(t *testing.T) {
	f, _ := registry(t)
	s := f.start(Spec{Selector: Selector{Select: SelectAll}, Rate: 1})
	ctx := context.Background()

	// Pages in device order, with the counts of every device.
	var got []string
	after := ""
	for {
		d, err := Get(ctx, f.st, s.ID, Query{After: after, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if d.Counts.Queued != 3 || len(d.Items) > 2 {
			t.Fatalf("page after %q: %+v", after, d)
		}
		for _, it := range d.Items {
			got = append(got, it.Device)
		}
		if d.Next == "" {
			break
		}
		after = d.Next
	}
	if len(got) != 3 || !slices.IsSorted(got) {
		t.Fatalf("paged devices %v", got)
	}
	if d, err := Get(ctx, f.st, s.ID, Query{State: Done}); err != nil || len(d.Items) != 0 {
		t.Fatalf("done devices: %v, %v", d.Items, err)
	}
	for _, tc := range []struct {
		name string
		id   string
		q    Query
		want error
	}{
		{"fail/unknown", "rot-20990101-000000-000000", Query{}, ErrUnknownCampaign},
		{"fail/malformed", "../x", Query{}, ErrUnknownCampaign},
		{"fail/bad-state", s.ID, Query{State: "sleepy"}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Get(ctx, f.st, tc.id, tc.q); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}

	l, err := List(ctx, f.st)
	if err != nil || len(l) != 1 || l[0].ID != s.ID || l[0].Counts.Queued != 3 {
		t.Fatalf("list: %+v, %v", l, err)
	}
	c, err := Cancel(ctx, f.st, s.ID, "operator:test", f.clock.Now())
	if err != nil || c.State != Cancelled || c.EndedBy != "operator:test" {
		t.Fatalf("cancel: %+v, %v", c, err)
	}
	before := f.stats()
	for _, tc := range []struct {
		name, id string
		want     error
	}{
		{"fail/again", s.ID, ErrNotRunning},
		{"fail/unknown", "rot-20990101-000000-000000", ErrUnknownCampaign},
	} {
		t.Run("cancel-"+tc.name, func(t *testing.T) {
			if _, err := Cancel(ctx, f.st, tc.id, "operator:test", f.clock.Now()); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if f.stats() != before {
				t.Fatal("a refused cancel changed the registry")
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(Campaign{Timeout: Duration(90 * time.Second)})
	if err != nil || !strings.Contains(string(b), `"timeout":"1m30s"`) {
		t.Fatalf("%s, %v", b, err)
	}
	var c Campaign
	if err := json.Unmarshal(b, &c); err != nil || time.Duration(c.Timeout) != 90*time.Second {
		t.Fatalf("%+v, %v", c, err)
	}
	if err := json.Unmarshal([]byte(`{"timeout": 5}`), &c); err == nil {
		t.Fatal("a number was taken for a duration")
	}
}
