package mqtttest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	mochipackets "github.com/mochi-mqtt/server/v2/packets"

	"github.com/embark-iot/embark/pkg/mqttwire"
)

// Reason codes the responder answers with.
const (
	ReasonHeld            = "held"            // a "retry" answer (Options.RetryFirst)
	ReasonStaleNonce      = "stale_nonce"     // Options.StaleFirst
	ReasonUnknownNonce    = "unknown_nonce"   // a nonce it did not issue to the device, or issued and used
	ReasonUnauthenticated = "unauthenticated" // a signer that does not chain or names another device
	ReasonBadRequest      = "bad_request"     // a request that does not open, or does not fit its topic
	ReasonBadCSR          = "bad_csr"         // a CSR that does not parse or verify
)

// Options configure a Server.
type Options struct {
	// ClientCAs verify the IDevIDs of enroll requests and the client
	// certificates of the TLS handshake (which also trusts the Embark
	// root, for LDevIDs and the responder). Default: the manufacturer CA
	// and the Embark root.
	ClientCAs *x509.CertPool
	// RetryFirst answers the first RetryFirst enroll and renew requests
	// for each CSR key with "retry" (reason "held") after RetryAfter.
	RetryFirst int
	// RetryAfter is the RetryAfter of those answers, in seconds. Default 1.
	RetryAfter uint32
	// StaleFirst refuses the first StaleFirst enroll and renew requests
	// of each device with "stale_nonce".
	StaleFirst int
	// Refuse, if set, refuses every enroll request with this reason code
	// and RefuseMessage; RefuseRenew every renew request.
	Refuse, RefuseMessage, RefuseRenew string
	// Tamper makes the responder misbehave.
	Tamper Tamper
}

// Tamper says how the responder spoils its answers.
type Tamper struct {
	// Op is the operation whose answers are spoiled; "" for all.
	Op mqttwire.Op
	// Signer, if set, signs the answers instead of the responder.
	Signer *tls.Certificate
	// OtherCorrelation answers with fresh correlation data.
	OtherCorrelation bool
	// OtherNonce echoes another nonce than the request's.
	OtherNonce bool
}

// Server is a broker with a responder that plays Embark.
type Server struct {
	// Target is the URI devices dial: mqtts://127.0.0.1:port.
	Target string

	pki       *PKI
	opts      Options
	enrollCAs *x509.CertPool
	ldevidCAs *x509.CertPool
	broker    *mqtt.Server
	responder *paho.Client
	signer    *mqttwire.Signer
	tampered  *mqttwire.Signer
	seq       atomic.Uint64
	handlers  sync.WaitGroup

	mu          sync.Mutex
	changed     chan struct{}
	nonces      map[string]string            // nonce → device
	issued      map[string]*x509.Certificate // by CSR public key (DER SPKI)
	seen        map[string]int               // enroll and renew requests by CSR public key
	stale       map[string]int               // stale refusals by device
	requests    map[mqttwire.Op]int
	bare        int
	states      map[string][]uint64 // generations reported, by device
	subscribed  map[string]int      // subscriptions by topic filter
	retained    map[string]int      // retained messages sent, by client id
	connects    map[string]int      // connections by client id
	disconnects map[string]int      // ended connections by client id
	clientCert  map[string]*x509.Certificate
}

// Start serves on a loopback port until Close.
func Start(p *PKI, o Options) (*Server, error) {
	if o.ClientCAs == nil {
		o.ClientCAs = p.Roots()
		o.ClientCAs.AddCert(p.Manufacturer.Cert)
	}
	if o.RetryAfter == 0 {
		o.RetryAfter = 1
	}
	s := &Server{
		pki:         p,
		opts:        o,
		enrollCAs:   o.ClientCAs,
		ldevidCAs:   p.Roots(),
		changed:     make(chan struct{}),
		nonces:      make(map[string]string),
		issued:      make(map[string]*x509.Certificate),
		seen:        make(map[string]int),
		stale:       make(map[string]int),
		requests:    make(map[mqttwire.Op]int),
		states:      make(map[string][]uint64),
		subscribed:  make(map[string]int),
		retained:    make(map[string]int),
		connects:    make(map[string]int),
		disconnects: make(map[string]int),
		clientCert:  make(map[string]*x509.Certificate),
	}
	var err error
	if s.signer, err = signerOf(p.Responder); err != nil {
		return nil, err
	}
	s.tampered = s.signer
	if o.Tamper.Signer != nil {
		if s.tampered, err = signerOf(*o.Tamper.Signer); err != nil {
			return nil, err
		}
	}

	handshakeCAs := o.ClientCAs.Clone()
	handshakeCAs.AddCert(p.Root.Cert)
	s.broker = mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.broker.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	if err := s.broker.AddHook(&recorder{s: s}, nil); err != nil {
		return nil, err
	}
	l := listeners.NewTCP(listeners.Config{ID: "tls", Address: "127.0.0.1:0", TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{p.Server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    handshakeCAs,
		MinVersion:   tls.VersionTLS12,
	}})
	if err := s.broker.AddListener(l); err != nil {
		return nil, err
	}
	if err := s.broker.Serve(); err != nil {
		return nil, err
	}
	s.Target = "mqtts://" + l.Address()
	if err := s.connectResponder(l.Address()); err != nil {
		_ = s.broker.Close()
		return nil, err
	}
	return s, nil
}

func signerOf(c tls.Certificate) (*mqttwire.Signer, error) {
	var chain []*x509.Certificate
	for _, der := range c.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		chain = append(chain, cert)
	}
	key, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("mqtttest: key %T cannot sign", c.PrivateKey)
	}
	return mqttwire.NewSigner(key, chain)
}

func (s *Server) connectResponder(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{
		RootCAs:      s.pki.Roots(),
		ServerName:   "127.0.0.1",
		Certificates: []tls.Certificate{s.pki.Responder},
		MinVersion:   tls.VersionTLS12,
	}}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("mqtttest: responder: %w", err)
	}
	s.responder = paho.NewClient(paho.ClientConfig{
		ClientID: "embark-responder",
		Conn:     packets.NewThreadSafeConn(nc),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			s.handlers.Add(1)
			go func() {
				defer s.handlers.Done()
				s.handle(pr.Packet)
			}()
			return true, nil
		}},
	})
	if _, err := s.responder.Connect(ctx, &paho.Connect{ClientID: "embark-responder", CleanStart: true, KeepAlive: 60}); err != nil {
		return fmt.Errorf("mqtttest: responder: %w", err)
	}
	subs := make([]paho.SubscribeOptions, 0, len(mqttwire.Ops))
	for _, op := range mqttwire.Ops {
		subs = append(subs, paho.SubscribeOptions{Topic: mqttwire.RequestFilter(op), QoS: 1})
	}
	if _, err := s.responder.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
		_ = s.responder.Disconnect(&paho.Disconnect{})
		return fmt.Errorf("mqtttest: responder: %w", err)
	}
	return nil
}

// Close stops the responder and the broker.
func (s *Server) Close() {
	_ = s.responder.Disconnect(&paho.Disconnect{})
	s.handlers.Wait()
	_ = s.broker.Close()
}

// handle answers one request.
func (s *Server) handle(p *paho.Publish) {
	id, op, err := mqttwire.ParseRequestTopic(p.Topic)
	if err != nil {
		return
	}
	var topic string
	var corr []byte
	if p.Properties != nil {
		topic, corr = p.Properties.ResponseTopic, p.Properties.CorrelationData
	}
	s.mu.Lock()
	s.requests[op]++
	if topic == "" {
		// No response topic: nothing to answer (the ceiling pass).
		if op == mqttwire.OpNonce {
			s.bare++
		}
		s.notifyLocked()
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if mqttwire.CheckResponseTopic(id, topic) != nil {
		return
	}
	r := s.answer(id, op, p.Payload)
	r.Op, r.Device, r.Correlation, r.Seq = op, id, corr, s.seq.Add(1)
	signer := s.signer
	if t := s.opts.Tamper; t.Op == "" || t.Op == op {
		signer = s.tampered
		if t.OtherCorrelation {
			r.Correlation = random(16)
		}
		if t.OtherNonce {
			r.Nonce = random(mqttwire.NonceSize)
		}
	}
	payload, err := signer.SignResponse(r)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = s.responder.Publish(ctx, &paho.Publish{QoS: 1, Topic: topic, Payload: payload,
			Properties: &paho.PublishProperties{CorrelationData: r.Correlation}})
		cancel()
	}
	s.mu.Lock()
	s.notifyLocked()
	s.mu.Unlock()
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func refused(reason, msg string) mqttwire.Response {
	return mqttwire.Response{Status: mqttwire.StatusRefused, Reason: reason, Message: msg}
}

// answer decides the answer to a request of device id.
func (s *Server) answer(id string, op mqttwire.Op, payload []byte) mqttwire.Response {
	if op == mqttwire.OpNonce {
		n := random(mqttwire.NonceSize)
		s.mu.Lock()
		s.nonces[string(n)] = id
		s.mu.Unlock()
		return mqttwire.Response{Status: mqttwire.StatusOK, Nonce: n, NonceTTL: 60}
	}
	req, err := mqttwire.OpenRequest(payload)
	if err != nil {
		return refused(ReasonBadRequest, err.Error())
	}
	if req.Op != op || req.Device != id {
		return refused(ReasonBadRequest, "request does not fit its topic")
	}
	r := s.checkRequest(id, req)
	r.Nonce = req.Nonce
	return r
}

func (s *Server) checkRequest(id string, req *mqttwire.SignedRequest) mqttwire.Response {
	s.mu.Lock()
	owner, ok := s.nonces[string(req.Nonce)]
	delete(s.nonces, string(req.Nonce))
	s.mu.Unlock()
	if !ok || owner != id {
		return refused(ReasonUnknownNonce, "")
	}
	if err := s.authenticate(id, req); err != nil {
		return refused(ReasonUnauthenticated, err.Error())
	}
	if req.Op == mqttwire.OpState {
		s.mu.Lock()
		s.states[id] = append(s.states[id], req.Applied)
		s.mu.Unlock()
		return mqttwire.Response{Status: mqttwire.StatusOK}
	}
	s.mu.Lock()
	if s.stale[id] < s.opts.StaleFirst {
		s.stale[id]++
		s.mu.Unlock()
		return refused(ReasonStaleNonce, "")
	}
	s.mu.Unlock()
	if req.Op == mqttwire.OpEnroll && s.opts.Refuse != "" {
		return refused(s.opts.Refuse, s.opts.RefuseMessage)
	}
	if req.Op == mqttwire.OpRenew && s.opts.RefuseRenew != "" {
		return refused(s.opts.RefuseRenew, s.opts.RefuseMessage)
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		return refused(ReasonBadCSR, err.Error())
	}
	key := string(csr.RawSubjectPublicKeyInfo)
	s.mu.Lock()
	s.seen[key]++
	held := s.seen[key] <= s.opts.RetryFirst
	cert := s.issued[key]
	s.mu.Unlock()
	if held {
		return mqttwire.Response{Status: mqttwire.StatusRetry, Reason: ReasonHeld, RetryAfter: s.opts.RetryAfter}
	}
	if cert == nil {
		if cert, err = s.pki.issue(csr.Subject.CommonName, id, csr.PublicKey); err != nil {
			return refused("internal", err.Error())
		}
		s.mu.Lock()
		if prev := s.issued[key]; prev != nil {
			cert = prev
		} else {
			s.issued[key] = cert
		}
		s.mu.Unlock()
	}
	return mqttwire.Response{Status: mqttwire.StatusOK, Certificate: cert.Raw,
		Chain: [][]byte{s.pki.Intermediate.Cert.Raw}}
}

// authenticate checks the signer of a request: an IDevID under ClientCAs
// whose CN is the serial the device URN ends with (enroll), or an LDevID
// from the Embark root naming the device (renew, state).
func (s *Server) authenticate(id string, req *mqttwire.SignedRequest) error {
	leaf := req.Chain[0]
	inter := x509.NewCertPool()
	for _, c := range req.Chain[1:] {
		inter.AddCert(c)
	}
	roots := s.ldevidCAs
	if req.Op == mqttwire.OpEnroll {
		roots = s.enrollCAs
		if leaf.Subject.CommonName == "" || !strings.HasSuffix(id, ":"+leaf.Subject.CommonName) {
			return fmt.Errorf("IDevID %q is not device %s", leaf.Subject.CommonName, id)
		}
	} else if !slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return u.String() == id }) {
		return fmt.Errorf("LDevID does not name %s", id)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// PublishCommand signs c with the responder's key, numbers it, and
// publishes it retained on the command topic of c.Device.
func (s *Server) PublishCommand(ctx context.Context, c mqttwire.Command) error {
	c.Seq = s.seq.Add(1)
	payload, err := s.signer.SignCommand(c)
	if err != nil {
		return err
	}
	return s.PublishRetained(ctx, mqttwire.CommandTopic(c.Device), payload)
}

// PublishRetained publishes payload retained on topic with QoS 1, as it
// is: forged commands go out this way.
func (s *Server) PublishRetained(ctx context.Context, topic string, payload []byte) error {
	_, err := s.responder.Publish(ctx, &paho.Publish{QoS: 1, Retain: true, Topic: topic, Payload: payload})
	return err
}

// Wait returns when cond holds, checking it after every event of the
// server (a request answered, a subscription, a connection), or with
// ctx's error.
func (s *Server) Wait(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Issued is how many certificates the responder issued.
func (s *Server) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.issued)
}

// Requests is how many op requests reached the responder.
func (s *Server) Requests(op mqttwire.Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[op]
}

// BarePublishes is how many nonce requests came without a response topic.
func (s *Server) BarePublishes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bare
}

// States returns the command generations device reported, in order.
func (s *Server) States(device string) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.states[device])
}

// Subscribed is how many subscriptions to filter the broker granted.
func (s *Server) Subscribed(filter string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subscribed[filter]
}

// ClientCert is the certificate the last connection with client id
// presented in its handshake; nil if none connected.
func (s *Server) ClientCert(clientID string) *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clientCert[clientID]
}

// RetainedSent is how many retained messages the broker queued for
// client id, behind which it queues whatever is published to it later.
func (s *Server) RetainedSent(clientID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retained[clientID]
}

// Connections is how many connections client id opened, and how many of
// them ended.
func (s *Server) Connections(clientID string) (opened, ended int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connects[clientID], s.disconnects[clientID]
}

// recorder records connections and subscriptions.
type recorder struct {
	mqtt.HookBase
	s *Server
}

func (h *recorder) ID() string { return "mqtttest-recorder" }

func (h *recorder) Provides(b byte) bool {
	return b == mqtt.OnConnect || b == mqtt.OnSessionEstablished || b == mqtt.OnSubscribed ||
		b == mqtt.OnRetainPublished || b == mqtt.OnDisconnect
}

// OnSessionEstablished turns off mochi 2.7.9's per-client send quota, as
// pkg/broker does: with it, a client announcing a Receive Maximum stalls
// once held-back messages are released, and the release path can deadlock
// on the in-flight lock.
func (h *recorder) OnSessionEstablished(cl *mqtt.Client, _ mochipackets.Packet) {
	cl.State.Inflight.ResetSendQuota(0)
}

func (h *recorder) OnConnect(cl *mqtt.Client, _ mochipackets.Packet) error {
	var leaf *x509.Certificate
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			leaf = certs[0]
		}
	}
	h.s.mu.Lock()
	h.s.clientCert[cl.ID] = leaf
	h.s.connects[cl.ID]++
	h.s.notifyLocked()
	h.s.mu.Unlock()
	return nil
}

func (h *recorder) OnSubscribed(_ *mqtt.Client, pk mochipackets.Packet, codes []byte) {
	h.s.mu.Lock()
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 {
			h.s.subscribed[f.Filter]++
		}
	}
	h.s.notifyLocked()
	h.s.mu.Unlock()
}

func (h *recorder) OnRetainPublished(cl *mqtt.Client, _ mochipackets.Packet) {
	h.s.mu.Lock()
	h.s.retained[cl.ID]++
	h.s.notifyLocked()
	h.s.mu.Unlock()
}

func (h *recorder) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.s.mu.Lock()
	h.s.disconnects[cl.ID]++
	h.s.notifyLocked()
	h.s.mu.Unlock()
}
