package admin

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/operator"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
	"github.com/embark-iot/embark/pki"
	"github.com/embark-iot/embark/policy"
)

// fakeCore answers the operator actions and records who asked.
type fakeCore struct {
	mu    sync.Mutex
	calls []string // "op id actor"
}

func (c *fakeCore) record(op, id, actor string) (device.Device, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, op+" "+id+" "+actor)
	return device.Device{ID: id, State: device.Revoked}, nil
}

func (c *fakeCore) Approve(_ context.Context, id, actor, _ string) (device.Device, error) {
	return c.record("approve", id, actor)
}
func (c *fakeCore) Deny(_ context.Context, id, actor, _ string) (device.Device, error) {
	return c.record("deny", id, actor)
}
func (c *fakeCore) Revoke(_ context.Context, id, actor, _ string, _ int) (device.Device, error) {
	return c.record("revoke", id, actor)
}
func (c *fakeCore) Decommission(_ context.Context, id, actor, _ string) (device.Device, error) {
	return c.record("decommission", id, actor)
}
func (c *fakeCore) Reonboard(_ context.Context, id, actor, _ string) (device.Device, error) {
	return c.record("reonboard", id, actor)
}
func (c *fakeCore) Expiring(context.Context, time.Duration) ([]device.Certificate, error) {
	return nil, nil
}
func (c *fakeCore) Reevaluate(_ context.Context, _ bool, cause string) (onboard.ReevaluationResult, error) {
	c.record("reevaluate", "", cause)
	return onboard.ReevaluationResult{}, nil
}
func (c *fakeCore) Explain(context.Context, string, *policy.Policy) (policy.Input, policy.Explanation, error) {
	return policy.Input{}, policy.Explanation{}, errors.New("not in this test")
}
func (c *fakeCore) DryRun(context.Context, *policy.Policy, bool) ([]onboard.DryRunRow, error) {
	return nil, nil
}

func (c *fakeCore) last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.calls) == 0 {
		return ""
	}
	return c.calls[len(c.calls)-1]
}

// tlsEnv is the admin API on a real TLS listener on loopback, with a real
// operator CA, a real device CA and a real registry.
type tlsEnv struct {
	st    *bolt.DB
	h     http.Handler
	srv   *httptest.Server
	ops   *operator.CA
	dev   *pki.CA
	roots *x509.CertPool // authenticate the server
	core  *fakeCore
	trust []byte // a manufacturer's trust bundle
}

func newTLSEnv(t testing.TB, policies ...TLSPolicy) *tlsEnv {
	t.Helper()
	p := HybridOnly()
	if len(policies) > 0 {
		p = policies[0]
	}
	return newTLSEnvWith(t, p, nil)
}

// newTLSEnvWith is newTLSEnv with policy p and a change to the backend of
// the HTTPS listener (the in-process handler keeps the default one).
func newTLSEnvWith(t testing.TB, p TLSPolicy, mutate func(*Backend)) *tlsEnv {
	t.Helper()
	dir := t.TempDir()
	e := &tlsEnv{core: &fakeCore{}}
	var err error
	if e.st, err = bolt.Open(filepath.Join(dir, "registry.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	if e.ops, err = operator.Init(filepath.Join(dir, "operators")); err != nil {
		t.Fatal(err)
	}
	if e.dev, err = pki.Init(filepath.Join(dir, "ca")); err != nil {
		t.Fatal(err)
	}
	srvCert, err := e.dev.ServerCertificate([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.roots = x509.NewCertPool()
	e.roots.AddCert(e.dev.Root())
	if _, err := factory.Run(context.Background(), factory.Options{Out: filepath.Join(dir, "acme"), Count: 1}); err != nil {
		t.Fatal(err)
	}
	e.trust = read(t, filepath.Join(dir, "acme", factory.TrustFile))
	b := Backend{
		Store:     e.st,
		Core:      e.core,
		Operators: &Operators{CA: e.ops, ServerRoots: []*x509.Certificate{e.dev.Root()}},
		Status:    func() map[string]any { return map[string]any{"version": "test"} },
	}
	e.h = Handler(b)
	remote := e.h
	if mutate != nil {
		mutate(&b)
		remote = Handler(b)
	}
	conf, err := ServerTLSConfig(srvCert, e.ops.Root(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(remote)
	e.srv.TLS = conf
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

// addOperator registers an operator through the admin API (as the local
// socket would) and returns its credentials.
func (e *tlsEnv) addOperator(t testing.TB, name, role string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(OperatorAddRequest{Name: name, Role: role, PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
	var res OperatorAddResult
	if err := InProcess(e.h).Do(context.Background(), http.MethodPost, "/v1/operators", body, &res); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(res.Certificate))
	if block == nil {
		t.Fatal("no certificate in the answer")
	}
	if !strings.Contains(res.ServerCA, "BEGIN CERTIFICATE") || !strings.Contains(res.OperatorCA, "BEGIN CERTIFICATE") {
		t.Fatalf("answer lacks the CA certificates: %+v", res)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key, Leaf: leaf}
}

// client returns an HTTP client with conf (default: ClientTLSConfig of cert).
func (e *tlsEnv) client(conf *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 30 * time.Second}
}

func (e *tlsEnv) call(t testing.TB, c *http.Client, method, path string, body []byte, header map[string]string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func (e *tlsEnv) stats(t testing.TB) store.Stats {
	t.Helper()
	s, err := e.st.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.Bytes = 0
	return s
}

func TestRolesOverHTTPS(t *testing.T) {
	e := newTLSEnv(t)
	alice := e.client(ClientTLSConfig(e.addOperator(t, "alice", "admin"), e.roots))
	bob := e.client(ClientTLSConfig(e.addOperator(t, "bob", "operator"), e.roots))
	carol := e.client(ClientTLSConfig(e.addOperator(t, "carol", "auditor"), e.roots))
	revoke := []byte(`{"reason":"lost"}`)
	tests := []struct {
		name    string
		who     *http.Client
		method  string
		path    string
		body    []byte
		want    int
		wantErr string // in the error answer
		core    string // the core call expected, if any
	}{
		{name: "ok/auditor-lists-devices", who: carol, method: "GET", path: "/v1/devices", want: 200},
		{name: "ok/auditor-head", who: carol, method: "HEAD", path: "/v1/devices", want: 200},
		{name: "ok/auditor-reads-operators", who: carol, method: "GET", path: "/v1/operators", want: 200},
		{name: "ok/auditor-reads-openapi", who: carol, method: "GET", path: "/v1/openapi.yaml", want: 200},
		{name: "fail/auditor-revokes", who: carol, method: "POST", path: "/v1/devices/acme:SN1/revoke", body: revoke, want: 403,
			wantErr: `operator "carol" has role auditor; POST /v1/devices/{id}/revoke needs role operator`},
		{name: "fail/auditor-reevaluates", who: carol, method: "POST", path: "/v1/reevaluate", want: 403, wantErr: "needs role operator"},
		{name: "ok/operator-revokes", who: bob, method: "POST", path: "/v1/devices/acme:SN1/revoke", body: revoke, want: 200,
			core: "revoke urn:dev:embark:acme:SN1 operator:bob"},
		{name: "ok/operator-approves", who: bob, method: "POST", path: "/v1/devices/acme:SN2/approve", want: 200,
			core: "approve urn:dev:embark:acme:SN2 operator:bob"},
		{name: "fail/operator-trusts-manufacturer", who: bob, method: "POST", path: "/v1/manufacturers", body: e.trust, want: 403,
			wantErr: `operator "bob" has role operator; POST /v1/manufacturers needs role admin`},
		{name: "fail/operator-imports-vuln", who: bob, method: "POST", path: "/v1/vuln", body: []byte(`{}`), want: 403, wantErr: "needs role admin"},
		{name: "fail/operator-adds-operator", who: bob, method: "POST", path: "/v1/operators", body: []byte(`{}`), want: 403, wantErr: "needs role admin"},
		{name: "fail/operator-removes-operator", who: bob, method: "DELETE", path: "/v1/operators/carol", want: 403, wantErr: "needs role admin"},
		{name: "ok/admin-revokes", who: alice, method: "POST", path: "/v1/devices/acme:SN3/revoke", body: revoke, want: 200,
			core: "revoke urn:dev:embark:acme:SN3 operator:alice"},
		{name: "fail/unknown-route", who: alice, method: "GET", path: "/v1/nothing", want: 404},
		{name: "fail/wrong-method", who: alice, method: "PUT", path: "/v1/devices", want: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, calls := e.stats(t), e.core.last()
			resp, body, err := e.call(t, tt.who, tt.method, tt.path, tt.body, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, resp.StatusCode, body, tt.want)
			}
			if g := resp.Header.Get(HeaderTLSGroup); g != "X25519MLKEM768" {
				t.Fatalf("%s: %q", HeaderTLSGroup, g)
			}
			if tt.wantErr != "" {
				var ae Error
				if json.Unmarshal(body, &ae) != nil || !strings.Contains(ae.Error, tt.wantErr) {
					t.Fatalf("answer %s, want an error with %q", body, tt.wantErr)
				}
			}
			if tt.core != "" && e.core.last() != tt.core {
				t.Fatalf("core call %q, want %q", e.core.last(), tt.core)
			}
			if tt.want >= 400 {
				if e.core.last() != calls {
					t.Fatalf("a refused request reached the core: %q", e.core.last())
				}
				if after := e.stats(t); after != before {
					t.Fatalf("registry changed: %+v -> %+v", before, after)
				}
			}
		})
	}
}

// TestActorFromCertificate: the audit log names the operator of the
// certificate; a header claiming another name is ignored.
func TestActorFromCertificate(t *testing.T) {
	e := newTLSEnv(t)
	alice := e.client(ClientTLSConfig(e.addOperator(t, "alice", "admin"), e.roots))
	resp, body, err := e.call(t, alice, "POST", "/v1/manufacturers", e.trust, map[string]string{actorHeader: "mallory"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("trust: %v %v %s", err, resp, body)
	}
	var last audit.Entry
	if err := e.st.View(context.Background(), func(rd store.Reader) error {
		var err error
		last, err = rd.LastAudit()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if last.Action != "trust-manufacturer" || last.Actor != "operator:alice" {
		t.Fatalf("last audit entry %s by %q, want trust-manufacturer by operator:alice", last.Action, last.Actor)
	}
	if _, _, err := e.call(t, alice, "POST", "/v1/devices/acme:SN9/deny", nil, map[string]string{actorHeader: "mallory"}); err != nil {
		t.Fatal(err)
	}
	if got := e.core.last(); got != "deny urn:dev:embark:acme:SN9 operator:alice" {
		t.Fatalf("core call %q", got)
	}
}

// TestRemovedOperator: a removal takes effect on the next request, on the
// live connection too.
func TestRemovedOperator(t *testing.T) {
	e := newTLSEnv(t)
	bob := e.client(ClientTLSConfig(e.addOperator(t, "bob", "operator"), e.roots))
	reused := func() (bool, int, []byte) {
		var got httptrace.GotConnInfo
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/devices", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { got = i }}))
		resp, err := bob.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return got.Reused, resp.StatusCode, b
	}
	if _, code, _ := reused(); code != 200 {
		t.Fatalf("before removal: %d", code)
	}
	if err := InProcess(e.h).Do(context.Background(), "DELETE", "/v1/operators/bob?reason=left", nil, nil); err != nil {
		t.Fatal(err)
	}
	again, code, body := reused()
	if !again {
		t.Fatal("the second request did not reuse the live connection")
	}
	if code != 403 || !strings.Contains(string(body), `operator: removed: operator \"bob\"`) {
		t.Fatalf("after removal: %d %s, want 403 naming the removal", code, body)
	}
}

// TestHandshakeRefusals: clients that must never reach a handler.
func TestHandshakeRefusals(t *testing.T) {
	e := newTLSEnv(t)
	good := e.addOperator(t, "alice", "admin")
	// An LDevID from the device CA: a valid certificate, the wrong CA.
	devKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ldevid, err := e.dev.IssueLDevID(pki.LDevIDRequest{PublicKey: &devKey.PublicKey, DeviceID: "urn:dev:embark:acme:ACME-1", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	devCert := tls.Certificate{Certificate: [][]byte{ldevid.Raw, e.dev.Intermediate().Raw}, PrivateKey: devKey}
	// A certificate with an operator URI from another CA.
	otherDir := t.TempDir()
	other, err := operator.Init(otherDir)
	if err != nil {
		t.Fatal(err)
	}
	otherLeaf, err := other.Issue("alice", operator.RoleAdmin, &devKey.PublicKey, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged := tls.Certificate{Certificate: [][]byte{otherLeaf.Raw}, PrivateKey: devKey}

	base := func(cert *tls.Certificate) *tls.Config {
		c := &tls.Config{RootCAs: e.roots}
		if cert != nil {
			c.Certificates = []tls.Certificate{*cert}
		}
		return c
	}
	// always sends cert, even when it does not match the CAs the server
	// asks for (Go's client would otherwise send none).
	always := func(cert tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: e.roots, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}
	}
	tests := []struct {
		name    string
		conf    *tls.Config
		wantErr string
	}{
		{"fail/no-client-certificate", base(nil), "certificate required"},
		{"fail/device-ldevid", always(devCert), "unknown certificate authority"},
		{"fail/other-operator-ca", always(forged), "unknown certificate authority"},
		{"fail/x25519-only", func() *tls.Config {
			c := base(&good)
			c.CurvePreferences = []tls.CurveID{tls.X25519}
			return c
		}(), "handshake failure"},
		{"fail/p256-only", func() *tls.Config {
			c := base(&good)
			c.CurvePreferences = []tls.CurveID{tls.CurveP256}
			return c
		}(), "handshake failure"},
		{"fail/tls12-only", func() *tls.Config {
			c := base(&good)
			c.MaxVersion = tls.VersionTLS12
			return c
		}(), "protocol version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.stats(t)
			resp, body, err := e.call(t, e.client(tt.conf), "GET", "/v1/devices", nil, nil)
			if err == nil {
				t.Fatalf("answered %d %s, want a refused handshake", resp.StatusCode, body)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if after := e.stats(t); after != before {
				t.Fatalf("registry changed: %+v -> %+v", before, after)
			}
		})
	}

	t.Run("ok/default-client-negotiates-hybrid", func(t *testing.T) {
		resp, body, err := e.call(t, e.client(base(&good)), "GET", "/v1/status", nil, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v %s", err, resp, body)
		}
		if resp.TLS.CurveID != tls.X25519MLKEM768 || resp.TLS.Version != tls.VersionTLS13 {
			t.Fatalf("client saw %s", DescribeTLS(resp.TLS))
		}
		if resp.Header.Get(HeaderTLSGroup) != "X25519MLKEM768" || resp.Header.Get(HeaderTLSVersion) != "TLS1.3" {
			t.Fatalf("server reported %q %q", resp.Header.Get(HeaderTLSVersion), resp.Header.Get(HeaderTLSGroup))
		}
		var st map[string]any
		if err := json.Unmarshal(body, &st); err != nil || st["tls"] != "TLS1.3 X25519MLKEM768" {
			t.Fatalf("status tls %v (%v)", st["tls"], err)
		}
	})
}

// TestCompatibilityPolicy: with classical groups allowed, an X25519-only
// client gets in and the server reports the classical group; a hybrid
// client still gets the hybrid one.
func TestCompatibilityPolicy(t *testing.T) {
	e := newTLSEnv(t, TLSPolicy{MinVersion: tls.VersionTLS13, Groups: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}})
	cert := e.addOperator(t, "alice", "admin")
	tests := []struct {
		name   string
		groups []tls.CurveID
		want   string
	}{
		{"ok/classical-client", []tls.CurveID{tls.X25519}, "X25519"},
		{"ok/default-client", nil, "X25519MLKEM768"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := &tls.Config{RootCAs: e.roots, Certificates: []tls.Certificate{cert}, CurvePreferences: tt.groups}
			resp, _, err := e.call(t, e.client(conf), "GET", "/v1/status", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if g := resp.Header.Get(HeaderTLSGroup); g != tt.want || resp.TLS.CurveID.String() != tt.want {
				t.Fatalf("server says %q, client %s; want %s", g, resp.TLS.CurveID, tt.want)
			}
		})
	}
	// Our own client never accepts the classical group.
	cl, err := DialHTTPS(e.srv.URL, cert, e.roots)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Do(context.Background(), "GET", "/v1/status", nil, nil); err != nil {
		t.Fatal(err)
	}
	if cs, ok := cl.LastTLS(); !ok || DescribeTLS(&cs) != "TLS1.3 X25519MLKEM768" {
		t.Fatalf("client negotiated %s", DescribeTLS(&cs))
	}
}

func TestServerTLSConfigRefusesBadPolicy(t *testing.T) {
	ops, err := operator.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		p    TLSPolicy
	}{
		{"fail/no-hybrid-group", TLSPolicy{MinVersion: tls.VersionTLS13, Groups: []tls.CurveID{tls.X25519}}},
		{"fail/no-groups", TLSPolicy{MinVersion: tls.VersionTLS13}},
		{"fail/tls10", TLSPolicy{MinVersion: tls.VersionTLS10, Groups: []tls.CurveID{tls.X25519MLKEM768}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ServerTLSConfig(tls.Certificate{}, ops.Root(), tt.p, nil); !errors.Is(err, ErrTLSPolicy) {
				t.Fatalf("ServerTLSConfig: %v, want ErrTLSPolicy", err)
			}
		})
	}
	if HybridOnly().Classical() || !(TLSPolicy{MinVersion: tls.VersionTLS12, Groups: []tls.CurveID{tls.X25519MLKEM768}}).Classical() {
		t.Fatal("Classical() is wrong")
	}
}

// TestPlainTCPRefused: the handler served on a plain TCP listener (a
// misconfiguration) refuses every request instead of treating it as local.
func TestPlainTCPRefused(t *testing.T) {
	e := newTLSEnv(t)
	plain := httptest.NewServer(e.h)
	defer plain.Close()
	resp, err := http.Get(plain.URL + "/v1/devices")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || !strings.Contains(string(body), "only on the local socket and over HTTPS") {
		t.Fatalf("%d %s, want 403", resp.StatusCode, body)
	}
}

func TestOperatorEndpoints(t *testing.T) {
	e := newTLSEnv(t)
	local := InProcess(e.h)
	e.addOperator(t, "alice", "admin")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	body := func(v any) []byte { b, _ := json.Marshal(v); return b }
	tests := []struct {
		name, method, path string
		body               []byte
		want               int
		wantErr            string
	}{
		{"fail/taken-name", "POST", "/v1/operators", body(OperatorAddRequest{Name: "alice", Role: "admin", PublicKey: pub}), 409, "already registered"},
		{"fail/bad-role", "POST", "/v1/operators", body(OperatorAddRequest{Name: "dave", Role: "root", PublicKey: pub}), 400, "invalid role"},
		{"fail/bad-name", "POST", "/v1/operators", body(OperatorAddRequest{Name: "Dave", Role: "admin", PublicKey: pub}), 400, "invalid name"},
		{"fail/no-key", "POST", "/v1/operators", body(OperatorAddRequest{Name: "dave", Role: "admin"}), 400, "PUBLIC KEY"},
		{"fail/bad-lifetime", "POST", "/v1/operators", body(OperatorAddRequest{Name: "dave", Role: "admin", PublicKey: pub, Lifetime: "1m"}), 400, "invalid lifetime"},
		{"fail/unknown-field", "POST", "/v1/operators", []byte(`{"name":"dave","role":"admin","public_key":"x","admin":true}`), 400, "unknown field"},
		{"fail/remove-unknown", "DELETE", "/v1/operators/nobody", nil, 404, "unknown operator"},
		{"fail/remove-bad-name", "DELETE", "/v1/operators/No%20Body", nil, 400, "invalid name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.stats(t)
			err := local.Do(context.Background(), tt.method, tt.path, tt.body, nil)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tt.want || !strings.Contains(ae.Msg, tt.wantErr) {
				t.Fatalf("%v, want %d with %q", err, tt.want, tt.wantErr)
			}
			if after := e.stats(t); after != before {
				t.Fatalf("registry changed: %+v -> %+v", before, after)
			}
		})
	}
	var list OperatorList
	if err := local.Do(context.Background(), "GET", "/v1/operators", nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Operators) != 1 || list.Operators[0].Name != "alice" || list.Operators[0].Role != operator.RoleAdmin || len(list.Removed) != 0 {
		t.Fatalf("list %+v", list)
	}
}

// TestOpenSSLClassicalRefused: Debian's OpenSSL 3.0 cannot speak
// X25519MLKEM768, so its s_client is refused even with a valid operator
// certificate.
func TestOpenSSLClassicalRefused(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("EMBARK_INTEROP_REQUIRED") == "1" {
			t.Fatal("openssl not found and EMBARK_INTEROP_REQUIRED=1")
		}
		t.Skip("openssl not installed")
	}
	e := newTLSEnv(t)
	cert := e.addOperator(t, "alice", "admin")
	dir := t.TempDir()
	kder, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"op.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		"op.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		"ca.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.dev.Root().Raw}),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	host := strings.TrimPrefix(e.srv.URL, "https://")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", host, "-servername", "localhost",
		"-cert", filepath.Join(dir, "op.crt"), "-key", filepath.Join(dir, "op.key"), "-CAfile", filepath.Join(dir, "ca.crt"), "-brief")
	cmd.Stdin = strings.NewReader("GET /v1/status HTTP/1.0\r\n\r\n")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("openssl s_client succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "handshake failure") || strings.Contains(string(out), `"registry"`) {
		t.Fatalf("openssl output lacks the refusal:\n%s", out)
	}
	t.Logf("openssl s_client refused:\n%s", out)
}

// TestRemoteRefusedByBackend: refusals that come from the server's state
// rather than the handshake.
func TestRemoteRefusedByBackend(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Backend)
		wantErr string
	}{
		{"fail/no-operator-ca-configured", func(b *Backend) { b.Operators = nil }, "operator authentication is not configured"},
		{"fail/certificate-expired-on-a-live-connection", func(b *Backend) {
			b.Clock = func() time.Time { return time.Now().Add(2 * operator.DefaultLifetime) }
		}, `the certificate of operator "alice" expired`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTLSEnvWith(t, HybridOnly(), tt.mutate)
			alice := e.client(ClientTLSConfig(e.addOperator(t, "alice", "admin"), e.roots))
			resp, body, err := e.call(t, alice, "GET", "/v1/devices", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var ae Error
			if resp.StatusCode != 403 || json.Unmarshal(body, &ae) != nil || !strings.Contains(ae.Error, tt.wantErr) {
				t.Fatalf("%d %s, want 403 with %q", resp.StatusCode, body, tt.wantErr)
			}
		})
	}
}
