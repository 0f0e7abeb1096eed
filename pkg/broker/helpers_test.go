package broker

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// testPKI is a throwaway CA that issues server and client certificates.
type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{cert: cert, key: key, pool: pool}
}

var serialSeq struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serialSeq.Lock()
	defer serialSeq.Unlock()
	serialSeq.n++
	// Start above 0x0fff... so that serials have no leading zero nibble
	// issue and differ between tests.
	return new(big.Int).Add(big.NewInt(0x100000), big.NewInt(serialSeq.n))
}

// leaf issues a certificate. uri, when set, becomes a URI SAN; server
// certificates get the IP SAN 127.0.0.1.
func (p *testPKI) leaf(t testing.TB, cn, uri string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
}

// fakeAuth maps leaf serials to identities or errors. It checks that the
// leaf was issued by its CA, as a real Authenticator would.
type fakeAuth struct {
	ca *x509.Certificate

	mu    sync.Mutex
	ids   map[string]Identity
	errs  map[string]error
	calls int
}

func newFakeAuth(ca *x509.Certificate) *fakeAuth {
	return &fakeAuth{ca: ca, ids: map[string]Identity{}, errs: map[string]error{}}
}

func (f *fakeAuth) Authenticate(chain []*x509.Certificate) (Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if err := chain[0].CheckSignatureFrom(f.ca); err != nil {
		return Identity{}, fmt.Errorf("untrusted certificate: %w", err)
	}
	serial := fmt.Sprintf("%x", chain[0].SerialNumber)
	if err := f.errs[serial]; err != nil {
		return Identity{}, err
	}
	id, ok := f.ids[serial]
	if !ok {
		return Identity{}, errors.New("unknown certificate")
	}
	id.Topics = append([]string(nil), id.Topics...)
	return id, nil
}

func (f *fakeAuth) set(cert tls.Certificate, id Identity) {
	f.mu.Lock()
	defer f.mu.Unlock()
	serial := fmt.Sprintf("%x", cert.Leaf.SerialNumber)
	id.CertSerial = serial
	f.ids[serial] = id
	delete(f.errs, serial)
}

func (f *fakeAuth) fail(cert tls.Certificate, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[fmt.Sprintf("%x", cert.Leaf.SerialNumber)] = err
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// env is a broker on a loopback listener with its PKI and Authenticator.
type env struct {
	pki  *testPKI
	auth *fakeAuth
	b    *Broker
	addr string
	logs *syncBuffer
}

func newEnv(t *testing.T, mutate ...func(*Config)) *env {
	t.Helper()
	pki := newTestPKI(t, "Test Embark CA")
	e := &env{pki: pki, auth: newFakeAuth(pki.cert), logs: &syncBuffer{}}
	cfg := Config{
		Certificate: pki.leaf(t, "broker", "", true),
		Auth:        e.auth,
		Logger:      slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("broker log:\n%s", e.logs.String())
		}
	})
	e.b, e.addr = b, ln.Addr().String()
	return e
}

// identity issues a certificate and registers its identity.
func (e *env) identity(t *testing.T, kind Kind, id string, topics ...string) tls.Certificate {
	t.Helper()
	cert := e.pki.leaf(t, id, "", false)
	e.auth.set(cert, Identity{Kind: kind, ID: id, Topics: topics})
	return cert
}

// client is a paho client that records what it receives.
type client struct {
	*paho.Client
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
}

// dial connects over TLS with cert (none if nil) and sends CONNECT.
func (e *env) dial(t *testing.T, cert *tls.Certificate, cp *paho.Connect) (*client, *paho.Connack, error) {
	t.Helper()
	return dialTLS(t, e.addr, e.pki.pool, cert, cp)
}

func dialTLS(t *testing.T, addr string, roots *x509.CertPool, cert *tls.Certificate, cp *paho.Connect) (*client, *paho.Connack, error) {
	t.Helper()
	conf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, ServerName: "127.0.0.1"}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := (&tls.Dialer{Config: conf}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c := &client{msgs: make(chan *paho.Publish, 64), disc: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(raw),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.disc <- d:
			default:
			}
		},
		PacketTimeout: 10 * time.Second,
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 60
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		return nil, ca, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

// mustDial connects or fails the test.
func (e *env) mustDial(t *testing.T, cert tls.Certificate, clientID string) *client {
	t.Helper()
	c, _, err := e.dial(t, &cert, &paho.Connect{ClientID: clientID, CleanStart: true})
	if err != nil {
		t.Fatalf("connect %s: %v", clientID, err)
	}
	return c
}

// service connects a service client subscribed to everything under
// embark/v1/.
func (e *env) service(t *testing.T) *client {
	t.Helper()
	svc := e.mustDial(t, e.identity(t, KindService, "embark"), "embark")
	subscribe(t, svc, "embark/v1/#")
	return svc
}

func subscribe(t *testing.T, c *client, filters ...string) {
	t.Helper()
	if reasons := trySubscribe(t, c, filters...); !allBelow(reasons, 0x80) {
		t.Fatalf("subscribe %v: reason codes %x", filters, reasons)
	}
}

func allBelow(b []byte, limit byte) bool {
	for _, x := range b {
		if x >= limit {
			return false
		}
	}
	return true
}

// trySubscribe subscribes with QoS 1 and returns the SUBACK reason codes.
func trySubscribe(t *testing.T, c *client, filters ...string) []byte {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, s)
	if sa == nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	return sa.Reasons
}

// publish sends a QoS 1 message and returns the PUBACK reason code.
func publish(t *testing.T, c *client, topic, payload string, retain bool) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload), Retain: retain})
	if pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

// mustPublish publishes and fails the test unless the broker accepted it.
func mustPublish(t *testing.T, c *client, topic, payload string) {
	t.Helper()
	if code := publish(t, c, topic, payload, false); code != 0 {
		t.Fatalf("publish %s: reason code %#x", topic, code)
	}
}

// next returns the next message a client receives.
func next(t *testing.T, c *client) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message received")
		return nil
	}
}

// expectNext checks that the next message is on topic with payload.
func expectNext(t *testing.T, c *client, topic, payload string) *paho.Publish {
	t.Helper()
	m := next(t, c)
	if m.Topic != topic || string(m.Payload) != payload {
		t.Fatalf("received %s %q, want %s %q", m.Topic, m.Payload, topic, payload)
	}
	return m
}

// waitClosed waits for the broker to close a client's connection.
func waitClosed(t *testing.T, c *client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed")
	}
}

// waitDisconnect waits for the DISCONNECT the broker sends before closing
// the connection and returns its reason code.
func waitDisconnect(t *testing.T, c *client) byte {
	t.Helper()
	waitClosed(t, c)
	select {
	case d := <-c.disc:
		return d.ReasonCode
	case <-time.After(10 * time.Second):
		t.Fatal("no DISCONNECT received")
		return 0
	}
}

// rawClient speaks MQTT v5 packet by packet, for what paho refuses to send
// (retained messages when the server said it has none, shared subscriptions
// likewise).
type rawClient struct {
	conn *tls.Conn
}

func (e *env) rawDial(t *testing.T, cert tls.Certificate, clientID string) *rawClient {
	t.Helper()
	c, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.pki.pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := &rawClient{conn: c}
	cp := &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: clientID, KeepAlive: 60, CleanStart: true}
	if _, err := cp.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	ack := r.read(t, packets.CONNACK).Content.(*packets.Connack)
	if ack.ReasonCode != 0 {
		t.Fatalf("raw connect: reason %#x", ack.ReasonCode)
	}
	return r
}

func (r *rawClient) read(t *testing.T, want byte) *packets.ControlPacket {
	t.Helper()
	p, err := packets.ReadPacket(r.conn)
	if err != nil {
		t.Fatalf("read packet: %v", err)
	}
	if p.Type != want {
		t.Fatalf("received packet type %d, want %d", p.Type, want)
	}
	return p
}

// publish sends a QoS 1 PUBLISH and returns the PUBACK reason code.
func (r *rawClient) publish(t *testing.T, id uint16, topic, payload string, retain bool) byte {
	t.Helper()
	p := &packets.Publish{Topic: topic, QoS: 1, PacketID: id, Payload: []byte(payload), Retain: retain}
	if _, err := p.WriteTo(r.conn); err != nil {
		t.Fatal(err)
	}
	return r.read(t, packets.PUBACK).Content.(*packets.Puback).ReasonCode
}

// subscribe sends SUBSCRIBE and returns the SUBACK reason codes.
func (r *rawClient) subscribe(t *testing.T, id uint16, filters ...string) []byte {
	t.Helper()
	s := &packets.Subscribe{PacketID: id}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, packets.SubOptions{Topic: f, QoS: 1})
	}
	if _, err := s.WriteTo(r.conn); err != nil {
		t.Fatal(err)
	}
	return r.read(t, packets.SUBACK).Content.(*packets.Suback).Reasons
}

// waitClients waits until the broker counts n live clients.
func waitClients(t *testing.T, b *Broker, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.Clients() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Clients() = %d, want %d", b.Clients(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ns(id string) string { return Namespace(id) }

func logHas(t *testing.T, e *env, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		logs := e.logs.String()
		ok := true
		for _, p := range parts {
			if !strings.Contains(logs, p) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", parts, logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
