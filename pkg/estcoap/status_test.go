package estcoap

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	coaptcp "github.com/plgd-dev/go-coap/v3/tcp"

	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
	"github.com/embark-iot/embark/pki"
)

// identCore is a fake core that also identifies devices: by the serial of
// the presented leaf, as an LDevID or an IDevID, or refuses.
type identCore struct {
	fakeCore
	mu     sync.Mutex
	ids    map[string]onboard.Identity
	refuse map[string]error
}

func (c *identCore) Identify(_ context.Context, chain []*x509.Certificate) (onboard.Identity, error) {
	if len(chain) == 0 {
		return onboard.Identity{}, &onboard.Error{Reason: onboard.ReasonUnauthenticated, Msg: "no client certificate"}
	}
	serial := onboard.SerialHex(chain[0])
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.refuse[serial]; err != nil {
		return onboard.Identity{}, err
	}
	id, ok := c.ids[serial]
	if !ok {
		return onboard.Identity{}, &onboard.Error{Reason: onboard.ReasonUntrustedChain, Msg: "unknown certificate"}
	}
	return id, nil
}

func (c *identCore) setRefusal(cert tls.Certificate, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse[onboard.SerialHex(cert.Leaf)] = err
}

const (
	devA = "urn:dev:embark:acme:A"
	devB = "urn:dev:embark:acme:B"
)

type statusEnv struct {
	srv      *Server
	core     *identCore
	desired  *desired.Store
	db       store.Store
	udp, tcp string
	roots    *x509.CertPool
	// a and a2 are LDevIDs of device A, b of device B, idevid an IDevID.
	a, a2, b, idevid tls.Certificate
}

var nextSerial = struct {
	sync.Mutex
	n int64
}{n: 1000}

// selfSigned makes a client certificate; the fake core decides what it is.
func selfSigned(t *testing.T, cn string, lifetime time.Duration) tls.Certificate {
	t.Helper()
	nextSerial.Lock()
	nextSerial.n++
	serial := nextSerial.n
	nextSerial.Unlock()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(lifetime),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func setupStatus(t *testing.T) *statusEnv {
	t.Helper()
	ca, err := pki.Init(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.ServerCertificate([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	err = db.Update(context.Background(), func(tx store.Tx) error {
		for _, id := range []string{devA, devB} {
			if err := tx.PutDevice(&device.Device{ID: id, State: device.Onboarded}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &statusEnv{db: db, desired: desired.New(db, nil),
		a: selfSigned(t, "a", 90*time.Minute), a2: selfSigned(t, "a2", time.Hour), b: selfSigned(t, "b", time.Hour),
		idevid: selfSigned(t, "idevid", time.Hour)}
	e.core = &identCore{refuse: map[string]error{}, ids: map[string]onboard.Identity{
		onboard.SerialHex(e.a.Leaf):      {DeviceID: devA, Credential: onboard.CredLDevID, CertSerial: onboard.SerialHex(e.a.Leaf)},
		onboard.SerialHex(e.a2.Leaf):     {DeviceID: devA, Credential: onboard.CredLDevID, CertSerial: onboard.SerialHex(e.a2.Leaf)},
		onboard.SerialHex(e.b.Leaf):      {DeviceID: devB, Credential: onboard.CredLDevID, CertSerial: onboard.SerialHex(e.b.Leaf)},
		onboard.SerialHex(e.idevid.Leaf): {DeviceID: devA, Credential: onboard.CredIDevID},
	}}
	e.srv, err = New(Config{Core: e.core, CACerts: ca.Chain, Certificate: srvCert, MaxBody: 1024, Desired: e.desired})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.srv.Close() })
	ua, err := e.srv.ListenDTLS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ta, err := e.srv.ListenTLS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.udp, e.tcp = ua.String(), ta.String()
	e.roots = x509.NewCertPool()
	e.roots.AddCert(ca.Root())
	return e
}

// dial opens a session over "dtls" or "tls", with cert unless it is empty.
func (e *statusEnv) dial(t *testing.T, transport string, cert tls.Certificate) mux.Conn {
	t.Helper()
	var certs []tls.Certificate
	if len(cert.Certificate) > 0 {
		certs = []tls.Certificate{cert}
	}
	var c mux.Conn
	var err error
	switch transport {
	case "dtls":
		c, err = coapdtls.Dial(e.udp, &piondtls.Config{RootCAs: e.roots, ServerName: "127.0.0.1", Certificates: certs,
			ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret})
	case "tls":
		c, err = coaptcp.Dial(e.tcp, options.WithTLS(&tls.Config{RootCAs: e.roots, ServerName: "localhost",
			Certificates: certs, NextProtos: []string{"coap"}}))
	default:
		t.Fatalf("transport %q", transport)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// note is one message of an observation, read in its callback.
type note struct {
	code    codes.Code
	observe int64 // -1: no Observe option
	cf      message.MediaType
	body    []byte
}

func (n note) doc(t *testing.T) StatusDocument {
	t.Helper()
	if n.code != codes.Content || n.cf != message.AppCBOR {
		t.Fatalf("notification %v format %d: %s, want 2.05 CBOR", n.code, n.cf, n.body)
	}
	var d StatusDocument
	if err := cbor.Unmarshal(n.body, &d); err != nil {
		t.Fatalf("status document: %v", err)
	}
	return d
}

type watch struct {
	obs   mux.Observation
	notes chan note
}

// observe registers an observation of the status resource.
func observe(t *testing.T, c mux.Conn) *watch {
	t.Helper()
	w := &watch{notes: make(chan note, 16)}
	obs, err := c.Observe(ctx(t), StatusPath, func(m *pool.Message) {
		n := note{code: m.Code(), observe: -1}
		if v, err := m.Observe(); err == nil {
			n.observe = int64(v)
		}
		n.cf, _ = m.ContentFormat()
		if b := m.Body(); b != nil {
			_, _ = b.Seek(0, io.SeekStart)
			n.body, _ = io.ReadAll(b)
		}
		w.notes <- n
	})
	if err != nil {
		t.Fatal(err)
	}
	w.obs = obs
	return w
}

func (w *watch) next(t *testing.T) note {
	t.Helper()
	select {
	case n := <-w.notes:
		return n
	case <-ctx(t).Done():
		t.Fatal("no notification")
	}
	return note{}
}

// waitFor waits until cond holds; the bound only ends a hanging test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	c := ctx(t)
	for !cond() {
		select {
		case <-c.Done():
			t.Fatalf("waiting for %s: %v", what, c.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestStatusObserve(t *testing.T) {
	for _, transport := range []string{"dtls", "tls"} {
		t.Run("ok/"+transport, func(t *testing.T) {
			e := setupStatus(t)
			c := e.dial(t, transport, e.a)
			w := observe(t, c)
			first := w.next(t)
			if first.observe < 0 {
				t.Fatal("registration answered without Observe: not registered")
			}
			doc := first.doc(t)
			want := StatusDocument{RenewFrom: onboard.RenewFrom(e.a.Leaf).Unix(), NotAfter: e.a.Leaf.NotAfter.Unix()}
			if doc != want {
				t.Fatalf("first document %+v, want %+v", doc, want)
			}
			if n := e.srv.Observers(); n != 1 {
				t.Fatalf("%d observers, want 1", n)
			}
			// Another device's change is not news for this one.
			if _, err := e.desired.Set(ctx(t), devB, "operator", func(d *desired.Desired) { d.Rotate = true }); err != nil {
				t.Fatal(err)
			}
			if _, err := e.desired.Set(ctx(t), devA, "operator", func(d *desired.Desired) { d.Rotate, d.Campaign = true, "c1" }); err != nil {
				t.Fatal(err)
			}
			n := w.next(t)
			want.Generation, want.Rotate, want.Campaign = 1, true, "c1"
			if got := n.doc(t); got != want || n.observe <= first.observe {
				t.Fatalf("notification %+v (Observe %d after %d), want %+v", got, n.observe, first.observe, want)
			}
			// An applied report is not notified; the next generation is.
			if _, err := e.desired.Applied(ctx(t), devA, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := e.desired.Set(ctx(t), devA, "policy", func(d *desired.Desired) { d.Zone = "quarantine" }); err != nil {
				t.Fatal(err)
			}
			n2 := w.next(t)
			want = StatusDocument{Generation: 2, Zone: "quarantine", Applied: 1, RenewFrom: want.RenewFrom, NotAfter: want.NotAfter}
			if got := n2.doc(t); got != want || n2.observe <= n.observe {
				t.Fatalf("notification %+v (Observe %d after %d), want %+v", got, n2.observe, n.observe, want)
			}
		})
	}
}

func TestStatusDeregister(t *testing.T) {
	e := setupStatus(t)
	t.Run("ok/cancel", func(t *testing.T) {
		c := e.dial(t, "dtls", e.a)
		w := observe(t, c)
		w.next(t)
		if err := w.obs.Cancel(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if n := e.srv.Observers(); n != 0 {
			t.Fatalf("%d observers after deregistration, want 0", n)
		}
	})
	for _, transport := range []string{"dtls", "tls"} {
		t.Run("ok/connection-closed-"+transport, func(t *testing.T) {
			c := e.dial(t, transport, e.a)
			observe(t, c).next(t)
			if n := e.srv.Observers(); n != 1 {
				t.Fatalf("%d observers, want 1", n)
			}
			_ = c.Close()
			waitFor(t, "the closed session's observer to go", func() bool { return e.srv.Observers() == 0 })
		})
	}
}

func TestStatusRevokedSessionGetsFinalNotification(t *testing.T) {
	for _, transport := range []string{"dtls", "tls"} {
		t.Run("ok/"+transport, func(t *testing.T) {
			e := setupStatus(t)
			victim := e.dial(t, transport, e.a)
			bystander := e.dial(t, transport, e.b)
			wv, wb := observe(t, victim), observe(t, bystander)
			wv.next(t)
			wb.next(t)
			e.core.setRefusal(e.a, &onboard.Error{Reason: onboard.ReasonRevoked, Msg: "certificate 1 is revoked"})
			if n := e.srv.Disconnect(onboard.SerialHex(e.a.Leaf)); n != 1 {
				t.Fatalf("dropped %d sessions, want 1", n)
			}
			final := wv.next(t)
			if final.code != codes.Forbidden || final.observe != -1 || string(final.body) != "revoked: certificate 1 is revoked" {
				t.Fatalf("final notification %v Observe %d %q, want 4.03 without Observe \"revoked: certificate 1 is revoked\"",
					final.code, final.observe, final.body)
			}
			select {
			case <-victim.Done():
			case <-ctx(t).Done():
				t.Fatal("the revoked session was not dropped")
			}
			if n := e.srv.Observers(); n != 1 {
				t.Fatalf("%d observers, want the bystander's alone", n)
			}
			if _, err := e.desired.Set(ctx(t), devB, "operator", func(d *desired.Desired) { d.Rotate = true }); err != nil {
				t.Fatal(err)
			}
			if d := wb.next(t).doc(t); d.Generation != 1 || !d.Rotate {
				t.Fatalf("bystander notified %+v", d)
			}
		})
	}
}

func TestStatusRefusals(t *testing.T) {
	e := setupStatus(t)
	e.core.setRefusal(e.a2, &onboard.Error{Reason: onboard.ReasonRevoked, Msg: "certificate is revoked"})
	tests := []struct {
		name   string
		cert   tls.Certificate
		method codes.Code
		opts   []message.Option
		code   codes.Code
		diag   string
	}{
		{name: "fail/no client certificate", code: codes.Unauthorized,
			diag: "unauthenticated: the status is served to a device authenticated with its LDevID"},
		{name: "fail/idevid", cert: e.idevid, code: codes.Forbidden,
			diag: "wrong_credential: the status is served to LDevIDs issued here, not to IDevIDs"},
		{name: "fail/revoked ldevid", cert: e.a2, code: codes.Forbidden, diag: "revoked: certificate is revoked"},
		{name: "fail/accept json", cert: e.a, opts: []message.Option{acceptOpt(message.AppJSON)}, code: codes.NotAcceptable,
			diag: "bad_request: status offers 60 (application/cbor)"},
		{name: "fail/put", cert: e.a, method: codes.PUT, code: codes.MethodNotAllowed,
			diag: "bad_request: status answers GET and POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial(t, "dtls", tt.cert)
			before, _ := e.desired.Of(ctx(t), devA)
			var resp *pool.Message
			var err error
			if tt.method == codes.PUT {
				resp, err = c.Put(ctx(t), StatusPath, message.AppCBOR, bytes.NewReader([]byte{0xa0}), tt.opts...)
			} else {
				w := &watch{notes: make(chan note, 4)}
				var got note
				obs, oerr := c.Observe(ctx(t), StatusPath, func(m *pool.Message) {
					n := note{code: m.Code(), observe: -1}
					if b := m.Body(); b != nil {
						_, _ = b.Seek(0, io.SeekStart)
						n.body, _ = io.ReadAll(b)
					}
					w.notes <- n
				}, tt.opts...)
				if oerr == nil {
					_ = obs.Cancel(ctx(t))
					t.Fatal("a refused registration was accepted")
				}
				got = w.next(t)
				if got.code != tt.code || string(got.body) != tt.diag {
					t.Fatalf("got %v %q, want %v %q", got.code, got.body, tt.code, tt.diag)
				}
				resp, err = c.Get(ctx(t), StatusPath, tt.opts...)
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.Code() != tt.code || string(body(t, resp)) != tt.diag {
				t.Fatalf("got %v %q, want %v %q", resp.Code(), body(t, resp), tt.code, tt.diag)
			}
			if n := e.srv.Observers(); n != 0 {
				t.Fatalf("%d observers after a refusal", n)
			}
			if after, _ := e.desired.Of(ctx(t), devA); after != before {
				t.Fatalf("refusal changed the desired state: %+v -> %+v", before, after)
			}
		})
	}
}

func TestStatusReport(t *testing.T) {
	e := setupStatus(t)
	if _, err := e.desired.Set(context.Background(), devA, "operator", func(d *desired.Desired) { d.Rotate = true }); err != nil {
		t.Fatal(err)
	}
	report := func(t *testing.T, v any) []byte {
		t.Helper()
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ahead := `bad_request: desired: generation not issued yet: generation 2 applied, the latest is 1`
	tests := []struct {
		name string
		cert tls.Certificate
		cf   message.MediaType // 0: none
		body []byte
		code codes.Code
		diag string // the diagnostic of a refusal
	}{
		{name: "fail/not issued", cert: e.a, cf: message.AppCBOR, body: report(t, map[string]uint64{"applied": 2}),
			code: codes.BadRequest, diag: ahead},
		{name: "fail/json", cert: e.a, cf: message.AppJSON, body: []byte(`{"applied":1}`), code: codes.UnsupportedMediaType,
			diag: "bad_request: status takes a report as content format 60 (application/cbor)"},
		{name: "fail/no content format", cert: e.a, body: report(t, map[string]uint64{"applied": 1}), code: codes.UnsupportedMediaType,
			diag: "bad_request: status takes a report as content format 60 (application/cbor)"},
		{name: "fail/oversized", cert: e.a, cf: message.AppCBOR, body: report(t, map[string]any{"applied": 1, "pad": strings.Repeat("x", 300)}),
			code: codes.RequestEntityTooLarge, diag: "payload_too_large: a status report is at most 256 bytes"},
		{name: "fail/no applied", cert: e.a, cf: message.AppCBOR, body: report(t, map[string]any{}), code: codes.BadRequest,
			diag: "bad_request: status report: no applied generation"},
		{name: "fail/unknown key", cert: e.a, cf: message.AppCBOR, body: report(t, map[string]any{"applied": 1, "zone": "z"}),
			code: codes.BadRequest},
		{name: "fail/duplicate key", cert: e.a, cf: message.AppCBOR,
			body: []byte{0xa2, 0x67, 'a', 'p', 'p', 'l', 'i', 'e', 'd', 0x01, 0x67, 'a', 'p', 'p', 'l', 'i', 'e', 'd', 0x01}, code: codes.BadRequest},
		{name: "fail/trailing bytes", cert: e.a, cf: message.AppCBOR, body: append(report(t, map[string]uint64{"applied": 1}), 0x00),
			code: codes.BadRequest},
		{name: "fail/negative", cert: e.a, cf: message.AppCBOR, body: report(t, map[string]int{"applied": -1}), code: codes.BadRequest},
		{name: "fail/not a map", cert: e.a, cf: message.AppCBOR, body: report(t, 1), code: codes.BadRequest},
		{name: "fail/idevid", cert: e.idevid, cf: message.AppCBOR, body: report(t, map[string]uint64{"applied": 1}),
			code: codes.Forbidden, diag: "wrong_credential: the status is served to LDevIDs issued here, not to IDevIDs"},
		{name: "fail/no client certificate", cf: message.AppCBOR, body: report(t, map[string]uint64{"applied": 1}),
			code: codes.Unauthorized, diag: "unauthenticated: the status is served to a device authenticated with its LDevID"},
		{name: "ok/applied", cert: e.a, cf: message.AppCBOR, body: report(t, map[string]uint64{"applied": 1}), code: codes.Changed},
		{name: "ok/applied again", cert: e.a, cf: message.AppCBOR, body: report(t, map[string]uint64{"applied": 1}), code: codes.Changed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := e.desired.Of(ctx(t), devA)
			if err != nil {
				t.Fatal(err)
			}
			auditBefore, _ := e.db.Stats(ctx(t))
			c := e.dial(t, "dtls", tt.cert)
			var resp *pool.Message
			if tt.cf == 0 {
				req, err := c.NewPostRequest(ctx(t), StatusPath, message.AppCBOR, bytes.NewReader(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Remove(message.ContentFormat)
				resp, err = c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
			} else if resp, err = c.Post(ctx(t), StatusPath, tt.cf, bytes.NewReader(tt.body)); err != nil {
				t.Fatal(err)
			}
			got := body(t, resp)
			after, err := e.desired.Of(ctx(t), devA)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Code() != tt.code {
				t.Fatalf("code %v %q, want %v", resp.Code(), got, tt.code)
			}
			if strings.HasPrefix(tt.name, "fail/") {
				if tt.diag != "" && string(got) != tt.diag {
					t.Fatalf("diagnostic %q, want %q", got, tt.diag)
				}
				if !strings.HasPrefix(string(got), "bad_request: ") && tt.diag == "" {
					t.Fatalf("diagnostic %q, want bad_request", got)
				}
				if after != before {
					t.Fatalf("refused report changed the desired state: %+v -> %+v", before, after)
				}
				if auditAfter, _ := e.db.Stats(ctx(t)); auditAfter.AuditEntries != auditBefore.AuditEntries {
					t.Fatal("refused report wrote an audit entry")
				}
				if tt.code == codes.RequestEntityTooLarge {
					if v, err := resp.GetOptionUint32(message.Size1); err != nil || v != MaxStatusReport {
						t.Fatalf("Size1 %d (%v), want %d", v, err, MaxStatusReport)
					}
				}
				return
			}
			var doc StatusDocument
			if err := cbor.Unmarshal(got, &doc); err != nil {
				t.Fatal(err)
			}
			if cf, _ := resp.ContentFormat(); cf != message.AppCBOR || doc.Applied != 1 || doc.Generation != 1 || after.Applied != 1 {
				t.Fatalf("answer %d %+v, store %+v: want generation 1 applied", cf, doc, after)
			}
		})
	}
}

func TestStatusLimits(t *testing.T) {
	e := setupStatus(t)
	e.srv.status.mu.Lock()
	e.srv.status.maxPerConn, e.srv.status.maxTotal = 2, 3
	e.srv.status.mu.Unlock()
	// registered tells whether a registration's answer carried Observe.
	registered := func(t *testing.T, c mux.Conn) bool {
		t.Helper()
		w := observe(t, c)
		n := w.next(t)
		n.doc(t)
		return n.observe >= 0
	}
	one, two := e.dial(t, "dtls", e.a), e.dial(t, "tls", e.b)
	steps := []struct {
		name string
		conn mux.Conn
		want bool
	}{
		{"ok/first on a session", one, true},
		{"ok/second on a session", one, true},
		{"fail/third on a session", one, false},
		{"ok/another session", two, true},
		{"fail/over the total", two, false},
	}
	for _, s := range steps {
		if got := registered(t, s.conn); got != s.want {
			t.Fatalf("%s: registered %v, want %v", s.name, got, s.want)
		}
	}
	if n := e.srv.Observers(); n != 3 {
		t.Fatalf("%d observers, want 3", n)
	}
}

// An observer registered while generations change sees them in order, the
// newest last: no notification carries an older document than one before.
func TestStatusNotificationsInOrder(t *testing.T) {
	e := setupStatus(t)
	c := e.dial(t, "dtls", e.a)
	w := observe(t, c)
	last := w.next(t).doc(t).Generation
	const n = 20
	go func() {
		for range n {
			_, _ = e.desired.Set(context.Background(), devA, "operator", func(d *desired.Desired) { d.Rotate = true })
		}
	}()
	for last < n {
		got := w.next(t).doc(t).Generation
		if got <= last {
			t.Fatalf("generation %d after %d", got, last)
		}
		last = got
	}
}

func TestStatusNeedsIdentifier(t *testing.T) {
	ca, err := pki.Init(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.ServerCertificate([]string{"localhost"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Core: &fakeCore{}, CACerts: ca.Chain, Certificate: srvCert, Desired: desired.New(nil, nil)})
	want := "estcoap: the status resource needs a Core that identifies devices (Identifier)"
	if err == nil || err.Error() != want {
		t.Fatalf("New with a core that cannot identify: %v, want %q", err, want)
	}
}
