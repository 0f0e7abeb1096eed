package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/campaign"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// onboard gives the listed devices of the registry a live certificate, as
// an enrollment would, and a model and zone.
func onboardDevices(t testing.TB, st store.Store, model, zone string, serials ...string) {
	t.Helper()
	err := st.Update(context.Background(), func(tx store.Tx) error {
		for i, sn := range serials {
			d, err := tx.Device(device.ID("acme", sn))
			if err != nil {
				return err
			}
			c := device.Certificate{Serial: "c0ffee0" + string(rune('0'+i)) + strings.ToLower(sn[len(sn)-1:]), DeviceID: d.ID,
				KeySHA256: strings.Repeat("ab", 32), Kind: device.KindEnroll, Status: device.CertIssued,
				NotBefore: now, NotAfter: now.Add(24 * time.Hour)}
			if err := tx.PutCertificate(c); err != nil {
				return err
			}
			d.State, d.Current, d.Zone, d.Provenance.Model = device.Onboarded, c.Serial, zone, model
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func registryStats(t testing.TB, st store.Store) store.Stats {
	t.Helper()
	s, err := st.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.Bytes = 0
	return s
}

func TestCampaignEndpoints(t *testing.T) {
	e := loaded(t)
	onboardDevices(t, e.st, "sensor-9", "plant-a", "ACME-000001", "ACME-000002")
	onboardDevices(t, e.st, "valve-2", "plant-b", "ACME-000003")

	before := registryStats(t, e.st)
	for _, tc := range []struct {
		name string
		body string
		code int
		msg  string
	}{
		{"fail/unknown-device", `{"select":"device","value":"acme:NOPE"}`, 404, "unknown device: urn:dev:embark:acme:NOPE"},
		{"fail/unknown-model", `{"select":"model","value":"pump"}`, 404, `unknown model: no device of model "pump"`},
		{"fail/unknown-zone", `{"select":"zone","value":"moon"}`, 404, `unknown zone: no device in zone "moon"`},
		{"fail/not-enrolled", `{"select":"device","value":"acme:ACME-000004"}`, 409, "expected without a live LDevID"},
		{"fail/rate-zero", `{"select":"all","rate":0}`, 400, "rate 0 devices/s: want more than 0"},
		{"fail/rate-negative", `{"select":"all","rate":-1}`, 400, "rate -1 devices/s"},
		{"fail/rate-absurd", `{"select":"all","rate":1e12}`, 400, "above 10000"},
		{"fail/rate-and-unlimited", `{"select":"all","rate":5,"unlimited":true}`, 400, "no limit at once"},
		{"fail/timeout-zero", `{"select":"all","timeout":"0s"}`, 400, "timeout 0s"},
		{"fail/timeout-garbage", `{"select":"all","timeout":"soon"}`, 400, "timeout: time: invalid duration"},
		{"fail/no-select", `{}`, 400, `select ""`},
		{"fail/unknown-field", `{"select":"all","speed":5}`, 400, `unknown field "speed"`},
		{"fail/not-json", `rotate!`, 400, "body:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := e.do(t, http.MethodPost, "/v1/campaigns", strings.NewReader(tc.body))
			var ae Error
			if code != tc.code || json.Unmarshal(b, &ae) != nil || !strings.Contains(ae.Error, tc.msg) {
				t.Fatalf("%d %s, want %d with %q", code, b, tc.code, tc.msg)
			}
			if after := registryStats(t, e.st); after != before {
				t.Fatalf("registry changed: %+v -> %+v", before, after)
			}
		})
	}

	var s campaign.Summary
	e.mustDo(t, http.MethodPost, "/v1/campaigns", []byte(`{"select":"model","value":"sensor-9","rate":25,"timeout":"90s"}`), http.StatusCreated, &s)
	if s.Devices != 2 || s.Rate != 25 || time.Duration(s.Timeout) != 90*time.Second || s.CreatedBy != "operator:tester" || s.Counts.Queued != 2 {
		t.Fatalf("started %+v", s)
	}
	var all campaign.Summary
	e.mustDo(t, http.MethodPost, "/v1/campaigns", []byte(`{"select":"all","unlimited":true}`), http.StatusCreated, &all)
	if all.Devices != 3 || !all.Unlimited || time.Duration(all.Timeout) != campaign.DefaultTimeout {
		t.Fatalf("started %+v", all)
	}

	var l CampaignList
	e.mustDo(t, http.MethodGet, "/v1/campaigns", nil, http.StatusOK, &l)
	if len(l.Campaigns) != 2 {
		t.Fatalf("list %+v", l)
	}
	var d campaign.Detail
	e.mustDo(t, http.MethodGet, "/v1/campaigns/"+s.ID+"?limit=1", nil, http.StatusOK, &d)
	if len(d.Items) != 1 || d.Next != d.Items[0].Device || d.Counts.Queued != 2 || d.Items[0].OldCert == "" {
		t.Fatalf("detail %+v", d)
	}
	var d2 campaign.Detail
	e.mustDo(t, http.MethodGet, "/v1/campaigns/"+s.ID+"?after="+d.Next, nil, http.StatusOK, &d2)
	if len(d2.Items) != 1 || d2.Next != "" || d2.Items[0].Device <= d.Next {
		t.Fatalf("second page %+v", d2)
	}

	var c campaign.Campaign
	e.mustDo(t, http.MethodPost, "/v1/campaigns/"+s.ID+"/cancel", nil, http.StatusOK, &c)
	if c.State != campaign.Cancelled || c.EndedBy != "operator:tester" {
		t.Fatalf("cancelled %+v", c)
	}
	before = registryStats(t, e.st)
	for _, tc := range []struct {
		name, method, path string
		code               int
		msg                string
	}{
		{"fail/cancel-again", "POST", "/v1/campaigns/" + s.ID + "/cancel", 409, "not running"},
		{"fail/cancel-unknown", "POST", "/v1/campaigns/rot-20990101-000000-000000/cancel", 404, "unknown campaign"},
		{"fail/get-unknown", "GET", "/v1/campaigns/rot-20990101-000000-000000", 404, "unknown campaign"},
		{"fail/get-bad-state", "GET", "/v1/campaigns/" + s.ID + "?state=asleep", 400, `state "asleep"`},
		{"fail/get-bad-limit", "GET", "/v1/campaigns/" + s.ID + "?limit=0", 400, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := e.do(t, tc.method, tc.path, nil)
			var ae Error
			if code != tc.code || json.Unmarshal(b, &ae) != nil || !strings.Contains(ae.Error, tc.msg) {
				t.Fatalf("%d %s, want %d with %q", code, b, tc.code, tc.msg)
			}
			if after := registryStats(t, e.st); after != before {
				t.Fatalf("registry changed: %+v -> %+v", before, after)
			}
		})
	}
}

// An auditor reads campaigns but cannot start or cancel one; an operator can.
func TestCampaignRoles(t *testing.T) {
	e := newTLSEnv(t)
	bob := e.client(ClientTLSConfig(e.addOperator(t, "bob", "operator"), e.roots))
	carol := e.client(ClientTLSConfig(e.addOperator(t, "carol", "auditor"), e.roots))
	body := []byte(`{"select":"all"}`)
	for _, tc := range []struct {
		name   string
		who    *http.Client
		method string
		path   string
		body   []byte
		want   int
		msg    string
	}{
		{"fail/auditor-starts", carol, "POST", "/v1/campaigns", body, 403, "POST /v1/campaigns needs role operator"},
		{"fail/auditor-cancels", carol, "POST", "/v1/campaigns/rot-20990101-000000-000000/cancel", nil, 403,
			"POST /v1/campaigns/{id}/cancel needs role operator"},
		{"ok/auditor-lists", carol, "GET", "/v1/campaigns", nil, 200, ""},
		{"ok/auditor-reads", carol, "GET", "/v1/campaigns/rot-20990101-000000-000000", nil, 404, "unknown campaign"},
		// The operator passes the role check; the empty registry has
		// nothing to rotate.
		{"ok/operator-starts", bob, "POST", "/v1/campaigns", body, 409, "the registry holds no device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.stats(t)
			resp, b, err := e.call(t, tc.who, tc.method, tc.path, tc.body, nil)
			if err != nil {
				t.Fatal(err)
			}
			var ae Error
			if resp.StatusCode != tc.want || (tc.msg != "" && (json.Unmarshal(b, &ae) != nil || !strings.Contains(ae.Error, tc.msg))) {
				t.Fatalf("%d %s, want %d with %q", resp.StatusCode, b, tc.want, tc.msg)
			}
			if after := e.stats(t); after != before {
				t.Fatalf("registry changed: %+v -> %+v", before, after)
			}
		})
	}
}
