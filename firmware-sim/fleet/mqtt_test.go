package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/firmware-sim/mqttclient/mqtttest"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/mqttwire"
)

// bound ends a test that would hang; no test waits for it to pass.
const bound = 60 * time.Second

// mqttWorld is a factory directory, a test PKI with Embark's responder, and
// the Embark root file.
type mqttWorld struct {
	factoryDir string
	rootFile   string
	pki        *mqtttest.PKI
	clientCAs  *x509.CertPool
	ids        []string
}

func newMQTTWorld(t *testing.T, devices int) *mqttWorld {
	t.Helper()
	dir := t.TempDir()
	p, err := mqtttest.NewPKI()
	if err != nil {
		t.Fatal(err)
	}
	w := &mqttWorld{factoryDir: filepath.Join(dir, "factory"), pki: p}
	res, err := factory.Run(context.Background(), factory.Options{Out: w.factoryDir, Count: devices})
	if err != nil {
		t.Fatal(err)
	}
	w.rootFile = filepath.Join(dir, "embark-root.pem")
	writePEM(t, w.rootFile, p.Root.Cert)
	manufacturer, err := os.ReadFile(filepath.Join(w.factoryDir, factory.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	w.clientCAs = p.Roots()
	if !w.clientCAs.AppendCertsFromPEM(manufacturer) {
		t.Fatal("factory root.pem holds no certificate")
	}
	devs, err := factory.ReadDevices(filepath.Join(w.factoryDir, factory.DevicesFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		w.ids = append(w.ids, device.ID(res.Manufacturer, d.Serial))
	}
	return w
}

func (w *mqttWorld) start(t *testing.T, o mqtttest.Options) *mqtttest.Server {
	t.Helper()
	if o.ClientCAs == nil {
		o.ClientCAs = w.clientCAs
	}
	s, err := mqtttest.Start(w.pki, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func (w *mqttWorld) options(s *mqtttest.Server) Options {
	return Options{Transport: TransportMQTT, Target: s.Target, FactoryDir: w.factoryDir, RootFile: w.rootFile, Timeout: 10 * time.Second}
}

// waits records the waits a runner asked for, without waiting.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (ws *waits) tweak(r *runner) {
	r.wait = func(ctx context.Context, d time.Duration) bool {
		ws.mu.Lock()
		ws.d = append(ws.d, d)
		ws.mu.Unlock()
		return ctx.Err() == nil
	}
}

func TestRunMQTT(t *testing.T) {
	w := newMQTTWorld(t, 6)

	t.Run("ok/both with renewal and a state file", func(t *testing.T) {
		s := w.start(t, mqtttest.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		o := w.options(s)
		o.Mode, o.Renew, o.Concurrency = ModeBoth, true, 3
		o.StateFile = filepath.Join(t.TempDir(), "state.jsonl")
		reps, err := Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if got := phases(reps); !slices.Equal(got, []string{PhaseConnect, PhaseEnroll, PhaseRenew}) {
			t.Fatalf("phases %v, want connect, enroll, renew", got)
		}
		for _, r := range reps {
			if r.Devices != 6 || r.OK != 6 || r.FailedCount() != 0 || r.Retries != 0 {
				t.Fatalf("%s", r)
			}
		}
		if reps[1].OfCeiling <= 0 || reps[1].Ceiling != PhaseConnect || !strings.Contains(reps[1].String(), "of the connect ceiling") {
			t.Fatalf("enroll report without the connect ceiling:\n%s", reps[1])
		}
		if err := s.Wait(ctx, func() bool { return s.BarePublishes() == 6 }); err != nil {
			t.Fatalf("%d bare publishes, want 6", s.BarePublishes())
		}
		if s.Issued() != 12 || s.Requests(mqttwire.OpEnroll) != 6 || s.Requests(mqttwire.OpRenew) != 6 {
			t.Fatalf("issued %d for %d enroll and %d renew requests, want 12 for 6 and 6",
				s.Issued(), s.Requests(mqttwire.OpEnroll), s.Requests(mqttwire.OpRenew))
		}
		recs, err := ReadState(o.StateFile)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 6 {
			t.Fatalf("%d state records, want 6", len(recs))
		}
		for i, rec := range recs {
			pair, err := tls.X509KeyPair([]byte(rec.CertPEM), []byte(rec.KeyPEM))
			if err != nil {
				t.Fatal(err)
			}
			if len(pair.Leaf.URIs) != 1 || pair.Leaf.URIs[0].String() != w.ids[i] {
				t.Fatalf("%s: LDevID names %v, want %s", rec.Serial, pair.Leaf.URIs, w.ids[i])
			}
			if len(pair.Certificate) != 2 || !w.pki.Intermediate.Cert.Equal(mustParse(t, pair.Certificate[1])) {
				t.Fatalf("%s: the state holds no intermediate after the LDevID", rec.Serial)
			}
			// The renewal ran on a connection authenticated by the
			// enrolled LDevID, which the renewed one replaced.
			if seen := s.ClientCert(w.ids[i]); seen == nil || seen.Equal(pair.Leaf) || len(seen.URIs) != 1 || seen.URIs[0].String() != w.ids[i] {
				t.Fatalf("%s: the last handshake was not with the enrolled LDevID", rec.Serial)
			}
		}
	})

	t.Run("ok/held once then enrolled", func(t *testing.T) {
		s := w.start(t, mqtttest.Options{RetryFirst: 1, RetryAfter: 3})
		var ws waits
		o := w.options(s)
		o.Concurrency = 3
		reps, err := runTweaked(context.Background(), o, ws.tweak)
		if err != nil {
			t.Fatal(err)
		}
		if len(reps) != 1 || reps[0].OK != 6 || reps[0].Retries != 6 {
			t.Fatalf("reports %v, want one enroll report, 6 ok after 6 retries", reps)
		}
		if s.Issued() != 6 || s.Requests(mqttwire.OpEnroll) != 12 || s.Requests(mqttwire.OpNonce) != 12 {
			t.Fatalf("issued %d for %d requests and %d nonces, want 6 for 12 and 12 fresh nonces",
				s.Issued(), s.Requests(mqttwire.OpEnroll), s.Requests(mqttwire.OpNonce))
		}
		if len(ws.d) != 6 {
			t.Fatalf("%d waits, want 6", len(ws.d))
		}
		for _, d := range ws.d {
			if d < 3*time.Second || d >= 3*time.Second+time.Second {
				t.Fatalf("waited %s after RetryAfter 3, want 3s plus at most a quarter", d)
			}
		}
	})

	t.Run("ok/lost answers get the same certificate again", func(t *testing.T) {
		s := w.start(t, mqtttest.Options{})
		var ws waits
		o := w.options(s)
		o.Loss, o.Retries = 0.3, 30
		reps, err := runTweaked(context.Background(), o, ws.tweak)
		if err != nil {
			t.Fatal(err)
		}
		r := reps[0]
		if r.OK != 6 || r.FailedCount() != 0 {
			t.Fatalf("%s", r)
		}
		if s.Issued() != 6 || s.Requests(mqttwire.OpEnroll) != 6+r.Retries {
			t.Fatalf("issued %d for %d requests, want 6 for %d", s.Issued(), s.Requests(mqttwire.OpEnroll), 6+r.Retries)
		}
	})

	t.Run("ok/refusals are counted by reason", func(t *testing.T) {
		s := w.start(t, mqtttest.Options{Refuse: "unknown_device", RefuseMessage: "no provenance"})
		o := w.options(s)
		o.Count = 3
		reps, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		r := reps[0]
		if r.OK != 0 || r.Failed["unknown_device"] != 3 || len(r.Failed) != 1 || r.Retries != 0 {
			t.Fatalf("%s\nwant 3 failed as unknown_device, no retries", r)
		}
		if s.Issued() != 0 {
			t.Fatalf("issued %d after refusals", s.Issued())
		}
	})

	for _, tc := range []struct {
		name   string
		server mqtttest.Options
		root   func(t *testing.T) string
		reason string
	}{
		{name: "fail/broker not under the given root", reason: ReasonUntrustedServer, root: func(t *testing.T) string {
			other, err := mqtttest.NewPKI()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "other.pem")
			writePEM(t, path, other.Root.Cert)
			return path
		}},
		{name: "fail/IDevIDs the broker does not trust", reason: ReasonHandshakeRefused, server: mqtttest.Options{ClientCAs: x509.NewCertPool()}},
		{name: "fail/answers signed by a device, not the responder", reason: ReasonTimeout,
			server: mqtttest.Options{Tamper: mqtttest.Tamper{Op: mqttwire.OpEnroll, Signer: ptr(mustLeaf(t, w.pki, w.ids[5]))}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := w.start(t, tc.server)
			o := w.options(s)
			o.Count, o.Retries, o.Timeout = 2, -1, time.Second
			o.StateFile = filepath.Join(t.TempDir(), "state.jsonl")
			if tc.root != nil {
				o.RootFile = tc.root(t)
			}
			reps, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if r := reps[0]; r.OK != 0 || r.Failed[tc.reason] != 2 || len(r.Failed) != 1 {
				t.Fatalf("%s\nwant 2 failed as %s", r, tc.reason)
			}
			if recs, err := ReadState(o.StateFile); err != nil || len(recs) != 0 {
				t.Fatalf("state %v, %v: want no device", recs, err)
			}
		})
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustLeaf(t *testing.T, p *mqtttest.PKI, id string) tls.Certificate {
	t.Helper()
	c, err := p.Leaf("ldevid", id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

func TestStay(t *testing.T) {
	w := newMQTTWorld(t, 6)
	s := w.start(t, mqtttest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()

	// A forged "revoked", signed by a device key under the same root, is
	// waiting for the first three devices; the last one is genuinely
	// revoked.
	neighbour := mustLeaf(t, w.pki, device.ID("acme", "NEIGHBOUR"))
	forger, err := mqttwire.NewSigner(neighbour.PrivateKey.(*ecdsa.PrivateKey), []*x509.Certificate{neighbour.Leaf})
	if err != nil {
		t.Fatal(err)
	}
	forged, revoked := w.ids[:3], w.ids[5]
	for _, id := range forged {
		payload, err := forger.SignCommand(mqttwire.Command{Device: id, Generation: 7, Revoked: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PublishRetained(ctx, mqttwire.CommandTopic(id), payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PublishCommand(ctx, mqttwire.Command{Device: revoked, Generation: 2, Revoked: true, Reason: "decommissioned"}); err != nil {
		t.Fatal(err)
	}

	// The stay lasts until the campaign is over: once every forgery has
	// reached its device, a genuine rotation goes to the first five, and
	// the stay ends when they reported it and the revoked one left.
	campaign := func(ctx context.Context, _ time.Duration) bool {
		err := s.Wait(ctx, func() bool {
			for _, id := range forged {
				if s.RetainedSent(id) == 0 {
					return false
				}
			}
			return true
		})
		for _, id := range w.ids[:5] {
			if err == nil {
				err = s.PublishCommand(ctx, mqttwire.Command{Device: id, Generation: 1, Rotate: true, Zone: "plant-2", Campaign: "c1"})
			}
		}
		if err == nil {
			err = s.Wait(ctx, func() bool {
				for _, id := range w.ids[:5] {
					if len(s.States(id)) == 0 {
						return false
					}
				}
				opened, ended := s.Connections(revoked)
				return opened == 2 && ended == 2
			})
		}
		if err != nil {
			t.Errorf("campaign: %v", err)
		}
		return err == nil
	}
	o := w.options(s)
	o.Stay = time.Hour // ended by the campaign
	o.StateFile = filepath.Join(t.TempDir(), "state.jsonl")
	reps, err := runTweaked(ctx, o, func(r *runner) { r.stayWait = campaign })
	if err != nil {
		t.Fatal(err)
	}
	if got := phases(reps); !slices.Equal(got, []string{PhaseEnroll, PhaseStay}) {
		t.Fatalf("phases %v, want enroll, stay", got)
	}
	st := reps[1]
	if st.Devices != 6 || st.OK != 6 || st.FailedCount() != 0 || st.Connected != 5 || st.Applied != 6 ||
		st.Rotations != 5 || st.Revoked != 1 || st.Ignored != 3 || st.Reconnects != 5 {
		t.Fatalf("%s\nwant 6 ok, 5 connected, 6 applied, 5 rotations, 1 revoked, 3 ignored, 5 reconnects", st)
	}
	if !strings.Contains(st.String(), "connected 5, commands applied 6, rotations 5, revoked 1, ignored 3, reconnects 5") {
		t.Fatalf("report without the stay counts:\n%s", st)
	}
	// Each rotation once, each generation reported once.
	if s.Issued() != 6+5 {
		t.Fatalf("issued %d, want 11 (6 enrollments, 5 rotations)", s.Issued())
	}
	for _, id := range w.ids[:5] {
		if got := s.States(id); !slices.Equal(got, []uint64{1}) {
			t.Fatalf("%s reported %v, want [1]", id, got)
		}
	}
	if got := s.States(revoked); len(got) != 0 {
		t.Fatalf("the revoked device reported %v", got)
	}
	recs, err := ReadState(o.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Fatalf("%d state records, want 5: the revoked device forgot its LDevID", len(recs))
	}
	for i, rec := range recs {
		pair, err := tls.X509KeyPair([]byte(rec.CertPEM), []byte(rec.KeyPEM))
		if err != nil {
			t.Fatal(err)
		}
		if rec.Applied != 1 || rec.Zone != "plant-2" {
			t.Fatalf("%s: applied %d in zone %q, want 1 in plant-2", rec.Serial, rec.Applied, rec.Zone)
		}
		// The last handshake was with the rotated LDevID.
		if seen := s.ClientCert(w.ids[i]); seen == nil || !seen.Equal(pair.Leaf) {
			t.Fatalf("%s: the state's LDevID is not the one the device connected with last", rec.Serial)
		}
	}
}

func TestStayRotationRefused(t *testing.T) {
	w := newMQTTWorld(t, 3)
	s := w.start(t, mqtttest.Options{RefuseRenew: "denied", RefuseMessage: "rule r7"})
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	for _, id := range w.ids {
		if err := s.PublishCommand(ctx, mqttwire.Command{Device: id, Generation: 1, Rotate: true}); err != nil {
			t.Fatal(err)
		}
	}
	// The stay ends once every device asked for its rotation.
	tried := func(ctx context.Context, _ time.Duration) bool {
		err := s.Wait(ctx, func() bool { return s.Requests(mqttwire.OpRenew) >= 3 })
		if err != nil {
			t.Errorf("rotations asked: %v", err)
		}
		return err == nil
	}
	o := w.options(s)
	o.Stay = time.Hour
	o.StateFile = filepath.Join(t.TempDir(), "state.jsonl")
	reps, err := runTweaked(ctx, o, func(r *runner) { r.stayWait = tried })
	if err != nil {
		t.Fatal(err)
	}
	st := reps[1]
	if st.OK != 0 || st.Failed["denied"] != 3 || len(st.Failed) != 1 || st.Applied != 0 || st.Rotations != 0 {
		t.Fatalf("%s\nwant 3 failed as denied, nothing applied", st)
	}
	if s.Issued() != 3 {
		t.Fatalf("issued %d, want the 3 enrollments only", s.Issued())
	}
	for _, id := range w.ids {
		if got := s.States(id); len(got) != 0 {
			t.Fatalf("%s reported %v without rotating", id, got)
		}
	}
	// The devices keep the LDevIDs they enrolled with.
	recs, err := ReadState(o.StateFile)
	if err != nil || len(recs) != 3 {
		t.Fatalf("state %d records, %v; want 3", len(recs), err)
	}
	for _, rec := range recs {
		if rec.Applied != 0 {
			t.Fatalf("%s: applied %d, want 0", rec.Serial, rec.Applied)
		}
	}
}
