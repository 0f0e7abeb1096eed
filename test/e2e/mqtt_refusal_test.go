package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/embark-iot/embark/pkg/mqttwire"
	"github.com/embark-iot/embark/pkg/server"
)

// rawClient is a hand-driven MQTT client: it publishes what a test builds
// and collects what arrives on its subscriptions.
type rawClient struct {
	c   *paho.Client
	mu  sync.Mutex
	got []*paho.Publish
	in  chan struct{}
}

func dialRaw(t *testing.T, addr string, cert tls.Certificate, roots *x509.CertPool, clientID string) (*rawClient, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	rc := &rawClient{in: make(chan struct{}, 64)}
	// paho writes from several goroutines: tls.Conn needs the lock.
	rc.c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), ClientID: clientID,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			rc.mu.Lock()
			rc.got = append(rc.got, pr.Packet)
			rc.mu.Unlock()
			select {
			case rc.in <- struct{}{}:
			default:
			}
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rc.c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}); err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = rc.c.Disconnect(&paho.Disconnect{}) })
	return rc, nil
}

func (rc *rawClient) subscribe(t *testing.T, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rc.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

// publish sends payload with a response topic and fresh correlation data;
// it returns the broker's PUBACK reason code and the correlation data.
func (rc *rawClient) publish(t *testing.T, topic, respTopic string, payload []byte) (byte, []byte) {
	t.Helper()
	corr := make([]byte, 16)
	rand.Read(corr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := rc.c.Publish(ctx, &paho.Publish{QoS: 1, Topic: topic, Payload: payload,
		Properties: &paho.PublishProperties{ResponseTopic: respTopic, CorrelationData: corr}})
	if pr != nil {
		return pr.ReasonCode, corr
	}
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return 0, corr
}

// answer waits for the message carrying corr; nil if none came in time.
func (rc *rawClient) answer(corr []byte, d time.Duration) *paho.Publish {
	deadline := time.After(d)
	for {
		rc.mu.Lock()
		for _, p := range rc.got {
			if p.Properties != nil && bytes.Equal(p.Properties.CorrelationData, corr) {
				rc.mu.Unlock()
				return p
			}
		}
		rc.mu.Unlock()
		select {
		case <-rc.in:
		case <-deadline:
			return nil
		}
	}
}

func (rc *rawClient) received(topicPrefix string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, p := range rc.got {
		if strings.HasPrefix(p.Topic, topicPrefix) {
			n++
		}
	}
	return n
}

func (d *mqttDevice) ldevidCert() tls.Certificate {
	return tls.Certificate{PrivateKey: d.key, Certificate: [][]byte{d.cur.Certificate.Raw, d.cur.Chain[0].Raw}}
}

func (d *mqttDevice) signer(t *testing.T) *mqttwire.Signer {
	t.Helper()
	s, err := mqttwire.NewSigner(d.key, []*x509.Certificate{d.cur.Certificate, d.cur.Chain[0]})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The bad-input table of the MQTT transport over the embedded broker: each
// bad request is answered with a signed refusal and its reason (or refused
// by the broker), and nothing changes in the registry.
func TestMQTTRefusals(t *testing.T) {
	for _, k := range brokerKinds {
		t.Run(string(k), func(t *testing.T) { testMQTTRefusals(t, k) })
	}
}

func testMQTTRefusals(t *testing.T, k brokerKind) {
	clk := &testClock{t: time.Now()}
	dir := mint(t, 2, 0)
	e := startEmbarkMQTT(t, k, dir, server.WithClock(clk.Now))
	e.trustAndImport(t, dir)
	devs := mqttDevices(t, e, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := devs[0], devs[1]
	for _, d := range devs {
		if err := d.enroll(ctx); err != nil {
			t.Fatalf("enroll %s: %v", d.id, err)
		}
	}
	addr := e.mqttAddr
	verifier := mqttwire.NewVerifier(e.rootPool(), clk.Now)
	ca, err := dialRaw(t, addr, a.ldevidCert(), e.rootPool(), a.id)
	if err != nil {
		t.Fatal(err)
	}
	ca.subscribe(t, mqttwire.ResponseTopic(a.id)+"/#")
	ca.subscribe(t, mqttwire.ResponseTopic(a.id))
	ca.subscribe(t, mqttwire.CommandTopic(a.id))
	cb, err := dialRaw(t, addr, b.ldevidCert(), e.rootPool(), b.id)
	if err != nil {
		t.Fatal(err)
	}
	cb.subscribe(t, mqttwire.ResponseTopic(b.id))
	resp := func(t *testing.T, rc *rawClient, corr []byte) mqttwire.Response {
		t.Helper()
		p := rc.answer(corr, 10*time.Second)
		if p == nil {
			t.Fatal("no answer within 10s")
		}
		r, err := verifier.Response(p.Payload)
		if err != nil {
			t.Fatalf("answer does not verify: %v", err)
		}
		if !bytes.Equal(r.Correlation, corr) {
			t.Fatalf("answer carries correlation %x, want %x", r.Correlation, corr)
		}
		return r
	}
	nonce := func(t *testing.T) []byte {
		t.Helper()
		_, corr := ca.publish(t, mqttwire.RequestTopic(a.id, mqttwire.OpNonce), mqttwire.ResponseTopic(a.id), nil)
		r := resp(t, ca, corr)
		if r.Status != mqttwire.StatusOK || len(r.Nonce) == 0 {
			t.Fatalf("nonce answer %+v", r)
		}
		return r.Nonce
	}
	state := func(t *testing.T, n []byte) []byte {
		t.Helper()
		b, err := a.signer(t).SignRequest(mqttwire.Request{Op: mqttwire.OpState, Device: a.id, Nonce: n})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	stateTopic, respTopic := mqttwire.RequestTopic(a.id, mqttwire.OpState), mqttwire.ResponseTopic(a.id)

	// A valid request first: the table's refusals differ from it in one thing.
	replay := state(t, nonce(t))
	if _, corr := ca.publish(t, stateTopic, respTopic, replay); resp(t, ca, corr).Status != mqttwire.StatusOK {
		t.Fatal("a valid state report was refused")
	}

	tests := []struct {
		name    string
		topic   string
		resp    string // response topic; default the device's own
		payload func(t *testing.T) []byte
		client  *rawClient
		want    string // reason in the signed answer
		puback  bool   // refused by the broker: PUBACK ≥ 0x80, no answer
	}{
		{name: "fail/unsigned payload", topic: stateTopic, want: "bad_request", payload: func(t *testing.T) []byte {
			b, _ := cbor.Marshal(mqttwire.Request{Op: mqttwire.OpState, Device: a.id, Nonce: nonce(t)})
			return b
		}},
		{name: "fail/signed with another device's key", topic: stateTopic, want: "bad_signature", payload: func(t *testing.T) []byte {
			return crossSigned(t, a, b, mqttwire.Request{Op: mqttwire.OpState, Device: a.id, Nonce: nonce(t)})
		}},
		{name: "fail/replayed request", topic: stateTopic, want: "replayed", payload: func(*testing.T) []byte { return replay }},
		{name: "fail/unknown nonce", topic: stateTopic, want: "unknown_nonce", payload: func(t *testing.T) []byte {
			n := make([]byte, mqttwire.NonceSize)
			rand.Read(n)
			return state(t, n)
		}},
		{name: "fail/expired nonce", topic: stateTopic, want: "expired_nonce", payload: func(t *testing.T) []byte {
			n := nonce(t)
			clk.Add(6 * time.Minute)
			t.Cleanup(func() { clk.Add(-6 * time.Minute) })
			return state(t, n)
		}},
		{name: "fail/not CBOR", topic: stateTopic, want: "bad_request", payload: func(*testing.T) []byte { return []byte("hello, embark") }},
		{name: "fail/oversized payload", topic: stateTopic, want: "payload_too_large", payload: func(*testing.T) []byte {
			return bytes.Repeat([]byte{0xa5}, mqttwire.MaxMessage+512)
		}},
		{name: "fail/response topic outside the namespace", topic: stateTopic, resp: mqttwire.ResponseTopic(b.id),
			want: "wrong_device", payload: func(t *testing.T) []byte { return state(t, nonce(t)) }},
		{name: "fail/request for another device", topic: mqttwire.RequestTopic(b.id, mqttwire.OpState), client: cb,
			resp: mqttwire.ResponseTopic(b.id), want: "wrong_device", payload: func(t *testing.T) []byte {
				s := b.signer(t)
				out, _ := s.SignRequest(mqttwire.Request{Op: mqttwire.OpState, Device: a.id, Nonce: make([]byte, mqttwire.NonceSize)})
				return out
			}},
		{name: "fail/publish to another device's topic", topic: mqttwire.RequestTopic(b.id, mqttwire.OpRenew), puback: true,
			payload: func(t *testing.T) []byte { return state(t, nonce(t)) }},
		{name: "fail/forged command from another device", topic: mqttwire.CommandTopic(a.id), client: cb, puback: true,
			payload: func(t *testing.T) []byte {
				out, _ := b.signer(t).SignCommand(mqttwire.Command{Device: a.id, Generation: 99, Revoked: true})
				return out
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := tt.client
			if rc == nil {
				rc = ca
			}
			if tt.resp == "" {
				tt.resp = respTopic
			}
			payload := tt.payload(t)
			before := registryState(t, e)
			code, corr := rc.publish(t, tt.topic, tt.resp, payload)
			if tt.puback {
				if code < 0x80 {
					t.Fatalf("PUBACK reason 0x%02x, want a refusal (≥ 0x80)", code)
				}
				if rc.answer(corr, 500*time.Millisecond) != nil || ca.answer(corr, 0) != nil {
					t.Fatal("a refused publish was answered")
				}
			} else {
				if code >= 0x80 {
					t.Fatalf("the broker refused the publish (0x%02x); Embark should answer it", code)
				}
				r := resp(t, rc, corr)
				if r.Status != mqttwire.StatusRefused || r.Reason != tt.want {
					t.Fatalf("answer %s/%s (%s), want refused/%s", r.Status, r.Reason, r.Message, tt.want)
				}
			}
			if after := registryState(t, e); after != before {
				t.Fatalf("registry changed: %+v → %+v", before, after)
			}
		})
	}
	if n := ca.received(mqttwire.CommandTopic(a.id)); n != 0 {
		t.Fatalf("device A received %d messages on its command topic", n)
	}

	t.Run("fail/client id differs from the certificate", func(t *testing.T) {
		if k == mosquitto {
			t.Skip("an external broker does not tie the client id to the certificate (README, MQTT)")
		}
		if _, err := dialRaw(t, addr, a.ldevidCert(), e.rootPool(), b.id); err == nil {
			t.Fatal("connected with another device's client id")
		}
	})
}

// crossSigned builds a request carrying a's certificate chain but signed
// with b's key.
func crossSigned(t *testing.T, a, b *mqttDevice, req mqttwire.Request) []byte {
	t.Helper()
	body, err := cbor.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cose.NewSigner(cose.AlgorithmES256, b.key)
	if err != nil {
		t.Fatal(err)
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(cose.AlgorithmES256)
	msg.Headers.Protected[cose.HeaderLabelContentType] = mqttwire.TypeRequest
	msg.Headers.Protected[cose.HeaderLabelX5Chain] = [][]byte{a.cur.Certificate.Raw, a.cur.Chain[0].Raw}
	msg.Payload = body
	if err := msg.Sign(rand.Reader, nil, s); err != nil {
		t.Fatal(err)
	}
	out, err := msg.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type regState struct {
	devices, certs int
	audit          int
}

func registryState(t *testing.T, e *embark) regState {
	t.Helper()
	st, err := e.srv.Store().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return regState{devices: st.Devices, certs: st.Certificates, audit: st.AuditEntries}
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
