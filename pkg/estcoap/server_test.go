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

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	coaptcp "github.com/plgd-dev/go-coap/v3/tcp"
	"github.com/smallstep/pkcs7"

	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pki"
)

// fakeCore stands in for the onboarding core: these tests are about the
// mapping between CoAP and the core's typed answers.
type fakeCore struct {
	mu    sync.Mutex
	calls []onboard.Request
	renew []bool
	res   *onboard.Result
	err   error
}

func (f *fakeCore) Enroll(_ context.Context, r onboard.Request) (*onboard.Result, error) {
	return f.record(r, false)
}

func (f *fakeCore) Renew(_ context.Context, r onboard.Request) (*onboard.Result, error) {
	return f.record(r, true)
}

func (f *fakeCore) record(r onboard.Request, renew bool) (*onboard.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r)
	f.renew = append(f.renew, renew)
	return f.res, f.err
}

func (f *fakeCore) set(res *onboard.Result, err error) {
	f.mu.Lock()
	f.res, f.err, f.calls, f.renew = res, err, nil, nil
	f.mu.Unlock()
}

func (f *fakeCore) count() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.calls) }

type env struct {
	core    *fakeCore
	ca      *pki.CA
	udp     string
	tcp     string
	roots   *x509.CertPool
	client  tls.Certificate
	issued  *x509.Certificate
	maxBody int
}

func setup(t *testing.T) *env {
	t.Helper()
	ca, err := pki.Init(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.ServerCertificate([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	core := &fakeCore{}
	s, err := New(Config{Core: core, CACerts: ca.Chain, Certificate: srvCert, MaxBody: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ua, err := s.ListenDTLS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ta, err := s.ListenTLS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	// A client certificate from an unrelated CA: the adapter passes it on,
	// the (fake) core decides.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "dev-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	issuedKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issued, err := ca.IssueLDevID(pki.LDevIDRequest{PublicKey: &issuedKey.PublicKey, DeviceID: "urn:dev:embark:acme:SN1", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return &env{core: core, ca: ca, udp: ua.String(), tcp: ta.String(), roots: roots, maxBody: 1024,
		client: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, issued: issued}
}

type coapConn interface {
	Get(ctx context.Context, path string, opts ...message.Option) (*pool.Message, error)
	Post(ctx context.Context, path string, cf message.MediaType, payload io.ReadSeeker, opts ...message.Option) (*pool.Message, error)
	Close() error
}

func (e *env) dialDTLS(t *testing.T, withCert bool) coapConn {
	t.Helper()
	cfg := &piondtls.Config{RootCAs: e.roots, ServerName: "127.0.0.1",
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
		CipherSuites:         []piondtls.CipherSuiteID{piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8}}
	if withCert {
		cfg.Certificates = []tls.Certificate{e.client}
	}
	c, err := coapdtls.Dial(e.udp, cfg, options.WithBlockwise(true, 6, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) dialTLS(t *testing.T) coapConn {
	t.Helper()
	c, err := coaptcp.Dial(e.tcp, options.WithTLS(&tls.Config{RootCAs: e.roots, ServerName: "localhost",
		Certificates: []tls.Certificate{e.client}, NextProtos: []string{"coap"}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func acceptOpt(f message.MediaType) message.Option {
	buf := make([]byte, 4)
	n, _ := message.EncodeUint32(buf, uint32(f))
	return message.Option{ID: message.Accept, Value: buf[:n]}
}

func body(t *testing.T, m *pool.Message) []byte {
	t.Helper()
	if m.Body() == nil {
		return nil
	}
	b, err := io.ReadAll(m.Body())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestDiscovery(t *testing.T) {
	e := setup(t)
	c := e.dialDTLS(t, false)
	resp, err := c.Get(ctx(t), "/.well-known/core", message.Option{ID: message.URIQuery, Value: []byte("rt=ace.est*")})
	if err != nil {
		t.Fatal(err)
	}
	got := string(body(t, resp))
	for _, want := range []string{`</est/crts>;rt="ace.est.crts";ct="281 287"`, `</est/sen>;rt="ace.est.sen"`,
		`</est/sren>;rt="ace.est.sren"`, `</est/att>;rt="ace.est.att";ct=285`} {
		if !strings.Contains(got, want) {
			t.Errorf("discovery %q lacks %q", got, want)
		}
	}
	resp, err = c.Get(ctx(t), "/.well-known/core", message.Option{ID: message.URIQuery, Value: []byte("rt=ace.est.sen")})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(body(t, resp)); got != `</est/sen>;rt="ace.est.sen";ct="281 287"` {
		t.Fatalf("filtered discovery = %q", got)
	}
}

func TestCACerts(t *testing.T) {
	e := setup(t)
	c := e.dialDTLS(t, false)
	for _, path := range []string{"/.well-known/est/crts", "/est/crts"} {
		resp, err := c.Get(ctx(t), path)
		if err != nil {
			t.Fatal(err)
		}
		if cf, _ := resp.ContentFormat(); resp.Code() != codes.Content || cf != FormatPKCS7Certs {
			t.Fatalf("%s: %v %v", path, resp.Code(), cf)
		}
		p7, err := pkcs7.Parse(body(t, resp))
		if err != nil {
			t.Fatal(err)
		}
		if len(p7.Certificates) != 2 || !p7.Certificates[1].Equal(e.ca.Root()) {
			t.Fatalf("%s: %d certificates", path, len(p7.Certificates))
		}
	}
	resp, err := c.Get(ctx(t), "/est/crts", acceptOpt(FormatPKIXCert))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body(t, resp), e.ca.Root().Raw) {
		t.Fatal("287 is not the root certificate")
	}
	resp, err = c.Get(ctx(t), "/est/crts", acceptOpt(message.TextPlain))
	if err != nil || resp.Code() != codes.NotAcceptable {
		t.Fatalf("Accept text/plain: %v %v", resp.Code(), err)
	}
}

func TestEnrollMapsCoreAnswers(t *testing.T) {
	e := setup(t)
	csr := []byte("csr bytes") // the fake core does not parse it
	t.Run("ok/sen-281", func(t *testing.T) {
		e.core.set(&onboard.Result{Certificate: e.issued}, nil)
		c := e.dialDTLS(t, true)
		resp, err := c.Post(ctx(t), "/.well-known/est/sen", FormatPKCS10, bytes.NewReader(csr))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code() != codes.Changed {
			t.Fatalf("code %v: %s", resp.Code(), body(t, resp))
		}
		p7, err := pkcs7.Parse(body(t, resp))
		if err != nil || len(p7.Certificates) != 1 || !p7.Certificates[0].Equal(e.issued) {
			t.Fatalf("answer does not carry the issued certificate: %v", err)
		}
		e.core.mu.Lock()
		defer e.core.mu.Unlock()
		if len(e.core.calls) != 1 || e.core.renew[0] || !bytes.Equal(e.core.calls[0].CSR, csr) ||
			len(e.core.calls[0].Chain) != 1 || !bytes.Equal(e.core.calls[0].Chain[0].Raw, e.client.Certificate[0]) ||
			e.core.calls[0].Transport != "coaps" {
			t.Fatalf("core saw %+v", e.core.calls)
		}
	})
	t.Run("ok/sren-287-over-tls", func(t *testing.T) {
		e.core.set(&onboard.Result{Certificate: e.issued}, nil)
		c := e.dialTLS(t)
		resp, err := c.Post(ctx(t), "/est/sren", FormatPKCS10, bytes.NewReader(csr), acceptOpt(FormatPKIXCert))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code() != codes.Changed || !bytes.Equal(body(t, resp), e.issued.Raw) {
			t.Fatalf("code %v", resp.Code())
		}
		if !e.core.renew[0] || e.core.calls[0].Transport != "coaps+tcp" {
			t.Fatalf("core saw renew=%v transport=%s", e.core.renew, e.core.calls[0].Transport)
		}
	})
	tests := []struct {
		reason onboard.Reason
		code   codes.Code
		maxAge uint32
	}{
		{onboard.ReasonUnauthenticated, codes.Unauthorized, 0},
		{onboard.ReasonUntrustedChain, codes.Forbidden, 0},
		{onboard.ReasonUnknownDevice, codes.Forbidden, 0},
		{onboard.ReasonMalformedCSR, codes.BadRequest, 0},
		{onboard.ReasonHeld, codes.ServiceUnavailable, 60},
		{onboard.ReasonOverloaded, codes.ServiceUnavailable, 2},
		{onboard.ReasonInternal, codes.InternalServerError, 0},
	}
	for _, tt := range tests {
		t.Run("fail/"+string(tt.reason), func(t *testing.T) {
			e.core.set(nil, &onboard.Error{Reason: tt.reason, Msg: "because", RetryAfter: time.Duration(tt.maxAge) * time.Second})
			c := e.dialDTLS(t, true)
			resp, err := c.Post(ctx(t), "/est/sen", FormatPKCS10, bytes.NewReader(csr))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Code() != tt.code {
				t.Fatalf("code = %v, want %v", resp.Code(), tt.code)
			}
			if got, want := string(body(t, resp)), string(tt.reason)+": because"; got != want {
				t.Fatalf("diagnostic = %q, want %q", got, want)
			}
			ma, err := resp.GetOptionUint32(message.MaxAge)
			if tt.maxAge > 0 && (err != nil || ma != tt.maxAge) {
				t.Fatalf("Max-Age = %d (%v), want %d", ma, err, tt.maxAge)
			}
		})
	}
}

func TestBlockwiseRequestReassembled(t *testing.T) {
	e := setup(t)
	e.core.set(&onboard.Result{Certificate: e.issued}, nil)
	csr := make([]byte, 900)
	for i := range csr {
		csr[i] = byte(i * 7)
	}
	for _, szx := range []blockwise.SZX{blockwise.SZX16, blockwise.SZX64, blockwise.SZX512} {
		cfg := &piondtls.Config{RootCAs: e.roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{e.client},
			ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret}
		c, err := coapdtls.Dial(e.udp, cfg, options.WithBlockwise(true, szx, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Post(ctx(t), "/est/sen", FormatPKCS10, bytes.NewReader(csr))
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code() != codes.Changed {
			t.Fatalf("szx %d: code %v: %s", szx, resp.Code(), body(t, resp))
		}
		e.core.mu.Lock()
		got := e.core.calls[len(e.core.calls)-1].CSR
		e.core.mu.Unlock()
		if !bytes.Equal(got, csr) {
			t.Fatalf("szx %d: the core got %d bytes, not the %d sent", szx, len(got), len(csr))
		}
	}
}

func TestBlockwiseOverTCP(t *testing.T) {
	e := setup(t)
	e.core.set(&onboard.Result{Certificate: e.issued}, nil)
	c, err := coaptcp.Dial(e.tcp, options.WithTLS(&tls.Config{RootCAs: e.roots, ServerName: "localhost",
		Certificates: []tls.Certificate{e.client}, NextProtos: []string{"coap"}}),
		options.WithBlockwise(true, blockwise.SZX64, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	csr := bytes.Repeat([]byte{0x30}, 700)
	resp, err := c.Post(ctx(t), "/est/sren", FormatPKCS10, bytes.NewReader(csr))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code() != codes.Changed {
		t.Fatalf("code %v: %s", resp.Code(), body(t, resp))
	}
	if got := e.core.calls[len(e.core.calls)-1].CSR; !bytes.Equal(got, csr) {
		t.Fatalf("the core got %d bytes, want %d", len(got), len(csr))
	}
	// Over the body limit but within the advertised Max-Message-Size: 4.13.
	before := e.core.count()
	resp, err = c.Post(ctx(t), "/est/sren", FormatPKCS10, bytes.NewReader(make([]byte, 1500)))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code() != codes.RequestEntityTooLarge || e.core.count() != before {
		t.Fatalf("oversized over TCP: code %v, core calls %d -> %d", resp.Code(), before, e.core.count())
	}
	// Beyond the Max-Message-Size the server advertised in its CSM
	// (RFC 8323 §5.3.1): the connection is dropped, nothing reaches the core.
	if _, err := c.Post(ctx(t), "/est/sren", FormatPKCS10, bytes.NewReader(make([]byte, 3000))); err == nil {
		t.Fatal("a message above the advertised Max-Message-Size was answered")
	}
	if e.core.count() != before {
		t.Fatal("the core was called")
	}
}

func TestRefusedBeforeTheCore(t *testing.T) {
	e := setup(t)
	e.core.set(&onboard.Result{Certificate: e.issued}, nil)
	c := e.dialDTLS(t, true)
	tests := []struct {
		name string
		do   func() (*pool.Message, error)
		code codes.Code
	}{
		{"fail/wrong-content-format", func() (*pool.Message, error) {
			return c.Post(ctx(t), "/est/sen", message.TextPlain, bytes.NewReader([]byte("x")))
		}, codes.UnsupportedMediaType},
		{"fail/unacceptable-answer-format", func() (*pool.Message, error) {
			return c.Post(ctx(t), "/est/sen", FormatPKCS10, bytes.NewReader([]byte("x")), acceptOpt(message.AppJSON))
		}, codes.NotAcceptable},
		{"fail/oversized-blockwise", func() (*pool.Message, error) {
			return c.Post(ctx(t), "/est/sen", FormatPKCS10, bytes.NewReader(make([]byte, 3000)))
		}, codes.RequestEntityTooLarge},
		{"fail/get-on-sen", func() (*pool.Message, error) { return c.Get(ctx(t), "/est/sen") }, codes.MethodNotAllowed},
		{"fail/unknown-resource", func() (*pool.Message, error) { return c.Get(ctx(t), "/est/skg") }, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.core.count()
			resp, err := tt.do()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Code() != tt.code {
				t.Fatalf("code = %v (%s), want %v", resp.Code(), body(t, resp), tt.code)
			}
			if e.core.count() != before {
				t.Fatal("the core was called")
			}
		})
	}
}

func TestServerAuthenticatedByDevice(t *testing.T) {
	e := setup(t)
	other, err := pki.Init(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(other.Root())
	c, err := coapdtls.Dial(e.udp, &piondtls.Config{RootCAs: pool, ServerName: "127.0.0.1",
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret})
	if err == nil {
		defer c.Close()
		// pion completes the handshake on first use.
		_, err = c.Get(ctx(t), "/est/crts")
	}
	if err == nil {
		t.Fatal("handshake with a server the device does not trust succeeded")
	}
}
