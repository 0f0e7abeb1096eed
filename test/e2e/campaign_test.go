package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/mqttclient"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/campaign"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/server"
)

// restartable is an Embark on one data directory that the test stops and
// starts again; devices follow its MQTT address.
type restartable struct {
	t    *testing.T
	dir  string
	mu   sync.Mutex
	cur  *embark
	addr atomic.Pointer[string] // MQTT
	udp  atomic.Pointer[string] // CoAP over DTLS
}

func newRestartable(t *testing.T) *restartable {
	r := &restartable{t: t, dir: filepath.Join(t.TempDir(), "data")}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.cur != nil {
			if err := r.cur.srv.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			r.cur = nil
		}
	})
	return r
}

// start starts a server on the data directory (":0" listeners).
func (r *restartable) start() *embark {
	t := r.t
	t.Helper()
	cfg := config.DefaultConfig(r.dir)
	cfg.CoAP.UDP, cfg.CoAP.TCP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.CoAP.BRSKI = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.HTTPS.Listen = "127.0.0.1:0"
	cfg.AdminSocket = filepath.Join(t.TempDir(), "a.sock")
	srv, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "embark-root.pem")
	if err := os.WriteFile(root, pemCert(srv.CA().Root().Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	cl := admin.DialSocket(cfg.SocketPath())
	cl.Actor = "e2e"
	e := &embark{srv: srv, dir: r.dir, client: cl, root: root, mqttAddr: srv.MQTTAddr().String()}
	r.mu.Lock()
	r.cur = e
	r.mu.Unlock()
	addr, udp := e.mqttAddr, srv.UDPAddr().String()
	r.addr.Store(&addr)
	r.udp.Store(&udp)
	return e
}

// stop closes the running server.
func (r *restartable) stop() {
	r.t.Helper()
	r.mu.Lock()
	e := r.cur
	r.cur = nil
	r.mu.Unlock()
	if err := e.srv.Close(); err != nil {
		r.t.Fatalf("close: %v", err)
	}
}

// stayer is a device that stays connected with its LDevID and follows its
// commands: "rotate" renews with a new key (the same key and CSR again
// after a lost answer), then reconnects with the new certificate and
// reports; it reconnects with backoff when it loses its connection.
type stayer struct {
	*mqttDevice
	r *restartable
	// coap: the device speaks CoAP over DTLS (observes /embark/status,
	// renews at /sren, reports with POST /embark/status) instead of MQTT.
	coap bool

	applied, reported uint64
	rotateKey         *ecdsa.PrivateKey
	rotateCSR         []byte
	connected         atomic.Bool
}

func (s *stayer) dial(ctx context.Context) (*mqttclient.Conn, error) {
	cert := tls.Certificate{PrivateKey: s.key, Certificate: [][]byte{s.cur.Certificate.Raw, s.cur.Chain[0].Raw}}
	target := (&url.URL{Scheme: "mqtts", Host: *s.r.addr.Load()}).String()
	return mqttclient.Dial(ctx, mqttclient.Config{Target: target, Roots: s.e.rootPool(), Certificate: cert,
		DeviceID: s.id, Timeout: 10 * time.Second, Commands: true})
}

func (s *stayer) run(ctx context.Context) {
	for failures := 0; ctx.Err() == nil; {
		if failures > 0 {
			wait := min(50*time.Millisecond<<min(failures, 5), time.Second)
			if !sleepCtx(ctx, wait/2+time.Duration(rand.Float64()*float64(wait/2))) {
				return
			}
		}
		if s.coap {
			err := s.runCoAP(ctx)
			if err != nil {
				failures++
			} else {
				failures = 0
			}
			continue
		}
		c, err := s.dial(ctx)
		if err != nil {
			failures++
			continue
		}
		s.connected.Store(true)
		err = s.obey(ctx, c)
		s.connected.Store(false)
		c.Close()
		if err != nil {
			failures++
		} else {
			failures = 0
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

var errLost = errors.New("connection lost")

func (s *stayer) obey(ctx context.Context, c *mqttclient.Conn) error {
	if s.reported < s.applied {
		if err := c.ReportState(ctx, s.applied); err != nil {
			return err
		}
		s.reported = s.applied
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.Done():
			return errLost
		case cmd := <-c.Commands():
			if cmd.Generation <= s.applied {
				continue
			}
			if cmd.Rotate {
				if err := s.rotate(ctx, c); err != nil {
					return err
				}
				s.applied = cmd.Generation
				return nil // reconnect with the new certificate and report there
			}
			s.applied = cmd.Generation
			if err := c.ReportState(ctx, s.applied); err != nil {
				return err
			}
			s.reported = s.applied
		}
	}
}

func (s *stayer) rotate(ctx context.Context, c *mqttclient.Conn) error {
	if s.rotateKey == nil {
		s.rotateKey, s.rotateCSR = csrFor(s.t, s.fd.Serial)
	}
	for n := 0; ; n++ {
		iss, err := c.Renew(ctx, s.rotateCSR, nil)
		var se *mqttclient.StatusError
		if errors.As(err, &se) && se.Retryable() && n < 5 {
			if !sleepCtx(ctx, se.RetryAfter) {
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		if err := iss.Verify(s.e.rootPool(), &s.rotateKey.PublicKey, s.id, time.Now()); err != nil {
			return err
		}
		s.key, s.cur = s.rotateKey, iss
		s.rotateKey, s.rotateCSR = nil, nil
		return nil
	}
}

// runCoAP is one DTLS session of a CoAP device: report what is applied,
// observe the status resource, rotate when told (then a new session with
// the new certificate).
func (s *stayer) runCoAP(ctx context.Context) error {
	cert := tls.Certificate{PrivateKey: s.key, Certificate: [][]byte{s.cur.Certificate.Raw, s.cur.Chain[0].Raw}}
	c, err := estclient.Dial(ctx, estclient.Config{Target: "coaps://" + *s.r.udp.Load(), Roots: s.e.rootPool(),
		Certificate: &cert, Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer c.Close()
	if s.reported < s.applied {
		if _, err := c.ReportApplied(ctx, s.applied); err != nil {
			return err
		}
		s.reported = s.applied
	}
	obs, err := c.ObserveStatus(ctx, 2*time.Second)
	if err != nil {
		return err
	}
	s.connected.Store(true)
	defer s.connected.Store(false)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-obs.Done():
			return errLost
		case st := <-obs.Updates():
			if st.Generation <= s.applied {
				continue
			}
			if st.Rotate {
				if s.rotateKey == nil {
					s.rotateKey, s.rotateCSR = csrFor(s.t, s.fd.Serial)
				}
				leaf, err := c.Reenroll(ctx, s.rotateCSR)
				if err != nil {
					return fmt.Errorf("rotate over CoAP: %w", err)
				}
				s.key, s.cur = s.rotateKey, &mqttclient.Issued{Certificate: leaf, Chain: s.cur.Chain}
				s.rotateKey, s.rotateCSR = nil, nil
				s.applied = st.Generation
				return nil // a new session with the new certificate reports
			}
			s.applied = st.Generation
			if _, err := c.ReportApplied(ctx, s.applied); err != nil {
				return err
			}
			s.reported = s.applied
		}
	}
}

// keyOf is how the registry names a certificate's key.
func keyOf(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// A campaign over 500 devices, half speaking CoAP (observable status
// resource) and half MQTT (commands), 10% of them offline, with an Embark
// restart in the middle: every online device ends with a new key, its new
// certificate in use and the old one superseded; the offline ones are
// "offline", and complete when they connect. The asks keep to the rate.
func TestRotationCampaign(t *testing.T) {
	n, timeout, rate := 500, 30*time.Second, 100.0
	if testing.Short() {
		n, timeout, rate = 40, 8*time.Second, 50.0
	}
	away := n / 10
	dir := mint(t, n, 0)
	r := newRestartable(t)
	e := r.start()
	e.trustAndImport(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Bad input first: nothing is started.
	for _, tc := range []struct {
		name, body string
		code       int
		msg        string
	}{
		{"fail/unknown-device", `{"select":"device","value":"acme:NOPE"}`, 404, "unknown device"},
		{"fail/unknown-model", `{"select":"model","value":"toaster"}`, 404, "unknown model"},
		{"fail/unknown-zone", `{"select":"zone","value":"moon"}`, 404, "unknown zone"},
		{"fail/nothing-enrolled", `{"select":"all"}`, 409, "none holds a live LDevID"},
		{"fail/rate-zero", `{"select":"all","rate":0}`, 400, "want more than 0"},
		{"fail/rate-absurd", `{"select":"all","rate":1e9}`, 400, "above 10000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.client.Do(ctx, http.MethodPost, "/v1/campaigns", []byte(tc.body), nil)
			var ae *admin.APIError
			if !errors.As(err, &ae) || ae.Status != tc.code || !strings.Contains(ae.Msg, tc.msg) {
				t.Fatalf("err = %v, want %d with %q", err, tc.code, tc.msg)
			}
		})
	}
	var l admin.CampaignList
	if err := e.client.Do(ctx, http.MethodGet, "/v1/campaigns", nil, &l); err != nil || len(l.Campaigns) != 0 {
		t.Fatalf("campaigns after bad input: %+v, %v", l, err)
	}

	// Enroll everybody.
	devs := mqttDevices(t, e, dir)
	stayers := make([]*stayer, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, d := range devs {
		// Half the devices speak CoAP, half MQTT, online and away alike.
		stayers[i] = &stayer{mqttDevice: d, r: r, coap: i%2 == 1}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := d.enroll(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", d.id, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("enroll: %v", err)
	}
	oldKey := map[string]string{}
	for _, s := range stayers {
		oldKey[s.id] = keyOf(s.cur.Certificate.RawSubjectPublicKeyInfo)
	}

	// 90% stay connected; the last 10% are away.
	online, offline := stayers[:n-away], stayers[n-away:]
	devCtx, stopDevs := context.WithCancel(ctx)
	var devWG sync.WaitGroup
	defer func() { stopDevs(); devWG.Wait() }()
	startDevices := func(ss []*stayer) {
		for _, s := range ss {
			devWG.Go(func() { s.run(devCtx) })
		}
	}
	startDevices(online)
	waitUntil(t, "the online devices connected", func() bool {
		for _, s := range online {
			if !s.connected.Load() {
				return false
			}
		}
		return true
	})

	var s campaign.Summary
	body := fmt.Sprintf(`{"select":"all","rate":%g,"timeout":%q}`, rate, timeout)
	if err := e.client.Do(ctx, http.MethodPost, "/v1/campaigns", []byte(body), &s); err != nil {
		t.Fatal(err)
	}
	if s.Devices != n {
		t.Fatalf("campaign selected %d devices, want %d", s.Devices, n)
	}
	get := func() campaign.Detail {
		t.Helper()
		r.mu.Lock()
		cl := r.cur.client
		r.mu.Unlock()
		var d campaign.Detail
		if err := cl.Do(ctx, http.MethodGet, "/v1/campaigns/"+s.ID+"?limit=10000", nil, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}

	// Restart Embark in the middle of the asks.
	waitUntil(t, "a third of the devices asked", func() bool {
		c := get().Counts
		return c.Pending+c.Done >= n/3
	})
	r.stop()
	e = r.start()
	if d := get(); d.State != campaign.Running || d.Counts.Queued == 0 {
		t.Fatalf("after the restart: %s %+v (the test needs a restart in the middle of the asks)", d.State, d.Counts)
	} else {
		t.Logf("restarted with %+v", d.Counts)
	}

	// The campaign finishes: the away devices time out as offline.
	waitUntil(t, "the campaign to finish", func() bool { return get().State == campaign.Finished })
	d := get()
	t.Logf("finished after %s: %+v", d.Ended.Sub(d.Created).Round(time.Millisecond), d.Counts)
	state := map[string]campaign.Item{}
	for _, it := range d.Items {
		state[it.Device] = it
	}
	for _, s := range offline {
		if it := state[s.id]; it.State != campaign.Offline {
			t.Fatalf("away device %s is %s (%s), want offline", s.id, it.State, it.Reason)
		}
	}
	waitUntil(t, "every online device done", func() bool { return get().Counts.Done == len(online) })

	// The asks kept to the rate, across the restart: the last no sooner
	// than (n-1)/rate after the campaign was created.
	var last time.Time
	for _, it := range get().Items {
		if it.AskedAt.After(last) {
			last = it.AskedAt
		}
	}
	if span, floor := last.Sub(s.Created), time.Duration(float64(n-1)/rate*float64(time.Second)); span < floor {
		t.Fatalf("%d devices at %g/s were all asked within %s of the start, want at least %s", n, rate, span, floor)
	}
	checkRekeyed(t, ctx, e, online, oldKey)

	// The away devices come back: they find the retained command and
	// complete.
	startDevices(offline)
	waitUntil(t, "the away devices done", func() bool { return get().Counts.Done == n })
	checkRekeyed(t, ctx, e, offline, oldKey)
	if c := get().Counts; c != (campaign.Counts{Done: n}) {
		t.Fatalf("counts at the end %+v", c)
	}
}

// checkRekeyed checks the registry: each device's current certificate is
// the one the device holds, with a new key, in use; its predecessor is
// superseded.
func checkRekeyed(t *testing.T, ctx context.Context, e *embark, ss []*stayer, oldKey map[string]string) {
	t.Helper()
	waitUntil(t, "the devices idle", func() bool {
		for _, s := range ss {
			if !s.connected.Load() {
				return false
			}
		}
		return true
	})
	for _, s := range ss {
		var dd admin.DeviceDetail
		if err := e.client.Do(ctx, http.MethodGet, "/v1/devices/"+url.PathEscape(s.id), nil, &dd); err != nil {
			t.Fatal(err)
		}
		status := map[string]device.CertStatus{}
		var cur admin.CertView
		for _, c := range dd.Certificates {
			status[c.Serial] = c.Status
			if c.Serial == dd.Device.Current {
				cur = c
			}
		}
		switch {
		case cur.KeySHA256 == oldKey[s.id]:
			t.Fatalf("%s: current certificate %s has the key from before the campaign", s.id, cur.Serial)
		case cur.Status != device.CertInUse:
			t.Fatalf("%s: current certificate %s is %s, want in_use", s.id, cur.Serial, cur.Status)
		case status[dd.Device.Previous] != device.CertSuperseded:
			t.Fatalf("%s: previous certificate %s is %s, want superseded", s.id, dd.Device.Previous, status[dd.Device.Previous])
		}
	}
}

// waitUntil polls cond; it fails the test after a generous bound (a hang,
// not a timing assertion).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
