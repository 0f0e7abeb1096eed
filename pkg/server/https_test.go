package server

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
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/operator"
	"github.com/embark-iot/embark/pkg/store"
)

// httpsConfig is testConfig with the HTTPS admin API on a loopback :0
// listener and no MQTT listener.
func httpsConfig(t testing.TB, mutate func(*config.Config)) config.Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.HTTPS.Listen = "127.0.0.1:0"
	cfg.MQTT.Listen = ""
	if mutate != nil {
		mutate(&cfg)
	}
	return cfg
}

// addOperator registers an operator over the admin socket and returns an
// HTTPS client holding its certificate.
func addOperator(t testing.TB, srv *Server, cfg config.Config, name, role string, clientConf func(tls.Certificate, *x509.CertPool) *tls.Config) (*admin.Client, *http.Client) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(admin.OperatorAddRequest{Name: name, Role: role, PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
	var res admin.OperatorAddResult
	if err := admin.DialSocket(cfg.SocketPath()).Do(context.Background(), http.MethodPost, "/v1/operators", body, &res); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(res.Certificate))
	cert := tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(res.ServerCA)) {
		t.Fatal("no server CA in the answer")
	}
	cl, err := admin.DialHTTPS("https://"+srv.HTTPSAddr().String(), cert, roots)
	if err != nil {
		t.Fatal(err)
	}
	if clientConf == nil {
		clientConf = admin.ClientTLSConfig
	}
	return cl, &http.Client{Transport: &http.Transport{TLSClientConfig: clientConf(cert, roots)}}
}

func TestHTTPSConfigRefusedAtStart(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*config.HTTPS)
		wantErr string
	}{
		{"fail/classical-group", func(h *config.HTTPS) { h.Groups = []string{"X25519"} },
			`https.groups: "X25519" is a classical key exchange that would weaken the admin API (back-end links use TLS 1.3 with X25519MLKEM768 only; set https.allow_classical: true to accept it for compatibility)`},
		{"fail/hybrid-plus-classical", func(h *config.HTTPS) { h.Groups = []string{"X25519MLKEM768", "P256"} },
			`https.groups: "P256" is a classical key exchange that would weaken the admin API`},
		{"fail/tls12", func(h *config.HTTPS) { h.MinVersion = "1.2" },
			`https.min_version: "1.2" would weaken the admin API (back-end links use TLS 1.3 with X25519MLKEM768 only; set https.allow_classical: true`},
		{"fail/tls11-even-with-flag", func(h *config.HTTPS) { h.MinVersion, h.AllowClassical = "1.1", true },
			`https.min_version: "1.1": want "1.3" (or "1.2" with https.allow_classical)`},
		{"fail/no-hybrid-even-with-flag", func(h *config.HTTPS) { h.Groups, h.AllowClassical = []string{"X25519"}, true },
			`https.groups: must include "X25519MLKEM768"`},
		{"fail/unknown-group", func(h *config.HTTPS) { h.Groups = []string{"X25519MLKEM768", "X448"} },
			`https.groups: "X448": unknown`},
		{"fail/bad-listen", func(h *config.HTTPS) { h.Listen = "8443" },
			`https.listen: "8443"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.DefaultConfig(filepath.Join(t.TempDir(), "data"))
			tt.mutate(&cfg.HTTPS)
			srv, err := New(context.Background(), cfg)
			if err == nil {
				srv.Close()
				t.Fatal("New accepted a weakened configuration")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q, want %q", err, tt.wantErr)
			}
			if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the data directory was created: %v", err)
			}
		})
	}
}

func TestHTTPSAdminAPI(t *testing.T) {
	ctx := context.Background()
	cfg := httpsConfig(t, nil)
	srv := start(t, cfg)
	t.Cleanup(func() { srv.Close() })
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, OperatorsDir, operator.CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("operator CA key: %v %v", fi, err)
	}
	loadFactory(t, admin.DialSocket(cfg.SocketPath()))
	bob, _ := addOperator(t, srv, cfg, "bob", "operator", nil)
	carol, _ := addOperator(t, srv, cfg, "carol", "auditor", nil)

	var st struct {
		TLS       string            `json:"tls"`
		Listeners map[string]string `json:"listeners"`
		HTTPS     struct {
			Groups         []string `json:"groups"`
			MinVersion     string   `json:"min_version"`
			AllowClassical bool     `json:"allow_classical"`
			Warning        string   `json:"warning"`
		} `json:"https"`
	}
	if err := carol.Do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.TLS != "TLS1.3 X25519MLKEM768" || st.Listeners["https"] != srv.HTTPSAddr().String() ||
		strings.Join(st.HTTPS.Groups, ",") != "X25519MLKEM768" || st.HTTPS.MinVersion != "TLS1.3" || st.HTTPS.AllowClassical || st.HTTPS.Warning != "" {
		t.Fatalf("status %+v", st)
	}
	if cs, ok := carol.LastTLS(); !ok || admin.DescribeTLS(&cs) != "TLS1.3 X25519MLKEM768" {
		t.Fatalf("client saw %v", admin.DescribeTLS(&cs))
	}

	// An auditor cannot decommission; an operator can, with the real core,
	// and the audit log names the operator.
	body := []byte(`{"reason":"end of life"}`)
	err := carol.Do(ctx, http.MethodPost, "/v1/devices/acme:ACME-000001/decommission", body, nil)
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Msg, "needs role operator") {
		t.Fatalf("auditor decommission: %v", err)
	}
	var d device.Device
	if err := bob.Do(ctx, http.MethodPost, "/v1/devices/acme:ACME-000001/decommission", body, &d); err != nil {
		t.Fatal(err)
	}
	if d.State != device.Decommissioned {
		t.Fatalf("state %s", d.State)
	}
	var last audit.Entry
	if err := srv.Store().View(ctx, func(rd store.Reader) error {
		var err error
		last, err = rd.LastAudit()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if last.Action != "decommission" || last.Actor != "operator:bob" || last.DeviceID != d.ID {
		t.Fatalf("audit %s by %q on %s", last.Action, last.Actor, last.DeviceID)
	}
	// Removing bob over the socket shuts him out on his next request.
	if err := admin.DialSocket(cfg.SocketPath()).Do(ctx, http.MethodDelete, "/v1/operators/bob", nil, nil); err != nil {
		t.Fatal(err)
	}
	err = bob.Do(ctx, http.MethodGet, "/v1/devices", nil, nil)
	if !errors.As(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Msg, "removed") {
		t.Fatalf("removed operator: %v", err)
	}
}

func TestHTTPSClassicalClients(t *testing.T) {
	classical := func(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, CurvePreferences: []tls.CurveID{tls.X25519}}
	}
	tls12 := func(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, MaxVersion: tls.VersionTLS12}
	}
	tests := []struct {
		name      string
		mutate    func(*config.Config)
		client    func(tls.Certificate, *x509.CertPool) *tls.Config
		wantGroup string // "" when refused
		wantErr   string
	}{
		{"fail/x25519-client-default-server", nil, classical, "", "handshake failure"},
		{"fail/tls12-client-default-server", nil, tls12, "", "protocol version not supported"},
		{"ok/hybrid-client-default-server", nil, nil, "X25519MLKEM768", ""},
		{"ok/x25519-client-compat-server", func(c *config.Config) { c.HTTPS.AllowClassical = true }, classical, "X25519", ""},
		{"fail/tls12-client-compat-server-tls13", func(c *config.Config) { c.HTTPS.AllowClassical = true }, tls12, "", "protocol version not supported"},
		{"ok/tls12-client-compat-server-tls12", func(c *config.Config) { c.HTTPS.AllowClassical, c.HTTPS.MinVersion = true, "1.2" }, tls12, "X25519", ""},
		{"ok/hybrid-client-compat-server", func(c *config.Config) { c.HTTPS.AllowClassical = true }, nil, "X25519MLKEM768", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := httpsConfig(t, tt.mutate)
			srv := start(t, cfg)
			t.Cleanup(func() { srv.Close() })
			_, hc := addOperator(t, srv, cfg, "alice", "admin", tt.client)
			resp, err := hc.Get("https://" + srv.HTTPSAddr().String() + "/v1/status")
			if tt.wantGroup == "" {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("answered %d, want a refused handshake", resp.StatusCode)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var st struct {
				TLS   string `json:"tls"`
				HTTPS struct {
					AllowClassical bool   `json:"allow_classical"`
					Warning        string `json:"warning"`
				} `json:"https"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				t.Fatal(err)
			}
			if resp.Header.Get(admin.HeaderTLSGroup) != tt.wantGroup || resp.TLS.CurveID.String() != tt.wantGroup || !strings.HasSuffix(st.TLS, " "+tt.wantGroup) {
				t.Fatalf("server header %q, status %q, client %s; want %s", resp.Header.Get(admin.HeaderTLSGroup), st.TLS, resp.TLS.CurveID, tt.wantGroup)
			}
			if st.HTTPS.AllowClassical != cfg.HTTPS.AllowClassical || (cfg.HTTPS.AllowClassical && !strings.Contains(st.HTTPS.Warning, "allow_classical")) {
				t.Fatalf("status shows allow_classical %v warning %q", st.HTTPS.AllowClassical, st.HTTPS.Warning)
			}
		})
	}
}

func TestHTTPSDisabled(t *testing.T) {
	cfg := httpsConfig(t, func(c *config.Config) { c.HTTPS.Listen = "" })
	srv := start(t, cfg)
	t.Cleanup(func() { srv.Close() })
	if srv.HTTPSAddr() != nil {
		t.Fatalf("HTTPS listening on %v", srv.HTTPSAddr())
	}
	var st map[string]any
	if err := admin.DialSocket(cfg.SocketPath()).Do(context.Background(), http.MethodGet, "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if _, ok := st["https"]; ok {
		t.Fatalf("status shows https: %v", st["https"])
	}
	// Operators can still be managed (for later, or another server).
	if srv.OperatorCA() == nil {
		t.Fatal("no operator CA")
	}
}

// handshakePair runs one full mutual TLS handshake on loopback: the
// server side with conf (the admin API's), the client with cc.
func handshakePair(b *testing.B, ln net.Listener, conf, cc *tls.Config) tls.CurveID {
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- tls.Server(c, conf).Handshake()
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	cc = cc.Clone()
	cc.ServerName = "127.0.0.1"
	tc := tls.Client(raw, cc)
	if err := tc.Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return tc.ConnectionState().CurveID
}

// BenchmarkHandshake: the admin API's full mutual TLS 1.3 handshake (both
// ends, client certificate verified) with the hybrid group against the
// same with X25519 alone (a server with https.allow_classical and an
// X25519-only client). The /request variants add one GET /v1/status on a
// fresh connection through the running server; /interleaved alternates
// the two handshakes in one loop, so that both see the same machine load,
// and reports their ratio.
func BenchmarkHandshake(b *testing.B) {
	type variant struct {
		name string
		srv  *Server
		cc   *tls.Config
		ln   net.Listener
		want tls.CurveID
	}
	setup := func(name string, mutate func(*config.Config), client func(tls.Certificate, *x509.CertPool) *tls.Config, want tls.CurveID) *variant {
		cfg := httpsConfig(b, mutate)
		srv := start(b, cfg)
		b.Cleanup(func() { srv.Close() })
		_, hc := addOperator(b, srv, cfg, "bench", "auditor", client)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		return &variant{name: name, srv: srv, cc: hc.Transport.(*http.Transport).TLSClientConfig, ln: ln, want: want}
	}
	hybrid := setup("hybrid", nil, nil, tls.X25519MLKEM768)
	x25519 := setup("x25519", func(c *config.Config) { c.HTTPS.AllowClassical = true }, func(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519}}
	}, tls.X25519)
	for _, v := range []*variant{hybrid, x25519} {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				if g := handshakePair(b, v.ln, v.srv.https.conf, v.cc); g != v.want {
					b.Fatalf("negotiated %s", g)
				}
			}
		})
	}
	for _, v := range []*variant{hybrid, x25519} {
		b.Run(v.name+"/request", func(b *testing.B) {
			url := "https://" + v.srv.HTTPSAddr().String() + "/v1/status"
			for b.Loop() {
				c := &http.Client{Transport: &http.Transport{TLSClientConfig: v.cc, DisableKeepAlives: true}}
				resp, err := c.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.TLS.CurveID != v.want || resp.StatusCode != 200 {
					b.Fatalf("%d %s", resp.StatusCode, resp.TLS.CurveID)
				}
			}
		})
	}
	b.Run("interleaved", func(b *testing.B) {
		var th, tx time.Duration
		n := 0
		for b.Loop() {
			t0 := time.Now()
			handshakePair(b, hybrid.ln, hybrid.srv.https.conf, hybrid.cc)
			t1 := time.Now()
			handshakePair(b, x25519.ln, x25519.srv.https.conf, x25519.cc)
			th, tx = th+t1.Sub(t0), tx+time.Since(t1)
			n++
		}
		b.ReportMetric(float64(th.Nanoseconds())/float64(n), "hybrid-ns/hs")
		b.ReportMetric(float64(tx.Nanoseconds())/float64(n), "x25519-ns/hs")
		b.ReportMetric(float64(th)/float64(tx), "ratio")
	})
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHTTPSLogs: the compatibility flag is a warning at start, each
// handshake's version and group are logged (debug), and so is a refused
// handshake.
func TestHTTPSLogs(t *testing.T) {
	tests := []struct {
		name      string
		classical bool
		want      []string
		wantNot   []string
	}{
		{"ok/default", false, []string{`msg="admin TLS handshake" tls="TLS1.3 X25519MLKEM768" client=alice`}, []string{"allow_classical is set"}},
		{"ok/compat-flag", true, []string{`level=WARN msg="https.allow_classical is set`, `msg="admin TLS handshake" tls="TLS1.3 X25519MLKEM768"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			cfg := httpsConfig(t, func(c *config.Config) { c.HTTPS.AllowClassical = tt.classical })
			srv, err := New(context.Background(), cfg, WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			if err := srv.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			cl, _ := addOperator(t, srv, cfg, "alice", "auditor", nil)
			if err := cl.Do(context.Background(), http.MethodGet, "/v1/status", nil, nil); err != nil {
				t.Fatal(err)
			}
			// A classical-only client is refused, and the refusal logged.
			_, hc := addOperator(t, srv, cfg, "mallory", "auditor", func(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
				return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, CurvePreferences: []tls.CurveID{tls.CurveP384}}
			})
			if resp, err := hc.Get("https://" + srv.HTTPSAddr().String() + "/v1/status"); err == nil {
				resp.Body.Close()
				t.Fatal("a P-384-only client was served")
			}
			const refusal = "tls: no key exchanges supported by both client and server"
			for i := 0; i < 500 && !strings.Contains(logs.String(), refusal); i++ {
				time.Sleep(10 * time.Millisecond) // the server logs after it sent the alert
			}
			out := logs.String()
			if !strings.Contains(out, refusal) {
				t.Errorf("log lacks the refused handshake:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(out, w) {
					t.Errorf("log has %q", w)
				}
			}
		})
	}
}
