package mqttsrv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/devattr"
	"github.com/embark-iot/embark/pkg/mqttwire"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/store"
)

// Core is what the adapter needs of the onboarding core.
type Core interface {
	Enroll(ctx context.Context, req onboard.Request) (*onboard.Result, error)
	Renew(ctx context.Context, req onboard.Request) (*onboard.Result, error)
	Identify(ctx context.Context, chain []*x509.Certificate) (onboard.Identity, error)
}

// Config configures a Server.
type Config struct {
	// Broker is the broker's URL: mqtts://host:port.
	Broker *url.URL
	// TLS is the client TLS configuration: Embark's service certificate,
	// and the roots that authenticate the broker.
	TLS *tls.Config
	// ClientID is Embark's MQTT client identifier; it must equal the
	// service identity the broker knows.
	ClientID string
	// Group names the shared subscription, so that several Embark
	// instances can share the load. Default "embark".
	Group string
	Core  Core
	Store store.Store
	// Responder signs responses and commands.
	Responder *mqttwire.Signer
	Nonces    *Nonces
	// Desired is the devices' desired state; each new generation is
	// published as a command.
	Desired *desired.Store
	// Workers bounds the requests handled at once. Default 64 per CPU.
	Workers int
	// SessionExpiry is how long the broker keeps Embark's session, and the
	// requests not yet acknowledged, while Embark is away. Default 1h.
	SessionExpiry time.Duration
	Logger        *slog.Logger
	Clock         func() time.Time
	// Registrar, if set, answers voucher requests (voucher.go).
	Registrar VoucherRegistrar
}

// Server serves devices over MQTT: it is a client of the broker,
// subscribed to the request topics of every device. It is safe for
// concurrent use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	work  chan job
	seq   atomic.Uint64
	ready chan struct{}
	once  sync.Once

	mu sync.Mutex
	cm *autopaho.ConnectionManager

	stats Stats
}

// Stats counts what the server did since it started.
type Stats struct {
	Requests  atomic.Uint64
	Issued    atomic.Uint64
	Refused   atomic.Uint64
	Dropped   atomic.Uint64
	Commands  atomic.Uint64
	Applied   atomic.Uint64
	PublishKO atomic.Uint64
}

type job struct {
	client *paho.Client
	pkt    *paho.Publish
}

// queueDepth bounds the requests received and not yet handled. It is deep
// on purpose: while it has room, the client keeps reading from the broker,
// and a broker that drops messages for a slow subscriber (mochi does once a
// client's outbound queue is full) is never made to drop requests it has
// already acknowledged to a device.
const queueDepth = 16384

// New checks cfg and returns a Server; Run connects it.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Broker == nil:
		return nil, fmt.Errorf("%w: no broker URL", ErrConfig)
	case cfg.TLS == nil || len(cfg.TLS.Certificates) == 0:
		return nil, fmt.Errorf("%w: no client certificate: Embark authenticates to the broker", ErrConfig)
	case cfg.ClientID == "":
		return nil, fmt.Errorf("%w: no client id", ErrConfig)
	case cfg.Core == nil || cfg.Store == nil || cfg.Responder == nil || cfg.Nonces == nil || cfg.Desired == nil:
		return nil, fmt.Errorf("%w: core, store, responder, nonces and desired state are required", ErrConfig)
	}
	if cfg.Group == "" {
		cfg.Group = "embark"
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64 * runtime.GOMAXPROCS(0)
	}
	if cfg.SessionExpiry <= 0 {
		cfg.SessionExpiry = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Server{cfg: cfg, log: cfg.Logger, work: make(chan job, queueDepth), ready: make(chan struct{})}, nil
}

// Ready is closed once the server has subscribed for the first time.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Stats returns the counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Run connects to the broker, keeps the connection up and serves requests
// until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	recvMax := uint16(min(s.cfg.Workers*4, math.MaxUint16))
	cc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{s.cfg.Broker},
		TlsCfg:                        s.cfg.TLS,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(s.cfg.SessionExpiry / time.Second),
		ConnectTimeout:                10 * time.Second,
		ReconnectBackoff: func(n int) time.Duration {
			return min(250*time.Millisecond<<min(n, 5), 5*time.Second)
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go s.connectionUp(ctx, cm)
		},
		OnConnectError: func(err error) {
			s.log.Warn("mqtt: cannot connect to the broker", "broker", s.cfg.Broker.Redacted(), "err", err)
		},
		ConnectPacketBuilder: func(c *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if c.Properties == nil {
				c.Properties = &paho.ConnectProperties{}
			}
			c.Properties.ReceiveMaximum = &recvMax
			return c, nil
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   s.cfg.ClientID,
			EnableManualAcknowledgment: true,
			SendAcksInterval:           5 * time.Millisecond,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					select {
					case s.work <- job{client: pr.Client, pkt: pr.Packet}:
					case <-ctx.Done():
					}
					return true, nil
				},
			},
			OnServerDisconnect: func(d *paho.Disconnect) {
				s.log.Warn("mqtt: the broker closed the connection", "reason_code", d.ReasonCode)
			},
			OnClientError: func(err error) { s.log.Warn("mqtt: connection error", "err", err) },
		},
	}
	cm, err := autopaho.NewConnection(ctx, cc)
	if err != nil {
		return fmt.Errorf("mqttsrv: connect: %w", err)
	}
	s.mu.Lock()
	s.cm = cm
	s.mu.Unlock()
	s.followDesired(ctx)

	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() {
			for {
				select {
				case j := <-s.work:
					s.serve(ctx, j)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = cm.Disconnect(dctx)
			cancel()
			<-cm.Done()
			return nil
		case <-sweep.C:
			if n, err := s.cfg.Nonces.Sweep(ctx); err != nil {
				s.log.Warn("mqtt: sweep used nonces", "err", err)
			} else if n > 0 {
				s.log.Debug("mqtt: used nonces expired", "count", n)
			}
		}
	}
}

// connectionUp subscribes to the request topics and republishes the
// desired state of devices that have not applied it yet.
func (s *Server) connectionUp(ctx context.Context, cm *autopaho.ConnectionManager) {
	sub := &paho.Subscribe{}
	for _, op := range mqttwire.Ops {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{
			Topic: "$share/" + s.cfg.Group + "/" + mqttwire.RequestFilter(op), QoS: 1})
	}
	if _, err := cm.Subscribe(ctx, sub); err != nil {
		s.log.Error("mqtt: subscribe to the request topics", "err", err)
		return
	}
	s.log.Info("mqtt: connected and subscribed", "broker", s.cfg.Broker.Redacted(), "client_id", s.cfg.ClientID)
	s.once.Do(func() { close(s.ready) })
	if err := s.republish(ctx); err != nil {
		s.log.Warn("mqtt: republish desired state", "err", err)
	}
}

// nextSeq returns the next sequence number: it grows across restarts as
// long as the clock does not go back.
func (s *Server) nextSeq() uint64 {
	for {
		last := s.seq.Load()
		next := max(last+1, uint64(s.cfg.Clock().UnixNano()))
		if s.seq.CompareAndSwap(last, next) {
			return next
		}
	}
}

// serve handles one request and acknowledges it to the broker afterwards:
// a crash before the acknowledgement means the broker delivers it again.
func (s *Server) serve(ctx context.Context, j job) {
	s.handle(ctx, j.pkt)
	if j.pkt.QoS > 0 {
		if err := j.client.Ack(j.pkt); err != nil && !errors.Is(err, paho.ErrPacketNotFound) {
			s.log.Warn("mqtt: acknowledge", "topic", j.pkt.Topic, "err", err)
		}
	}
}

func (s *Server) handle(ctx context.Context, p *paho.Publish) {
	s.stats.Requests.Add(1)
	id, op, err := mqttwire.ParseRequestTopic(p.Topic)
	if err != nil {
		s.drop(p, "not a request topic", err)
		return
	}
	var respTopic string
	var corr []byte
	if p.Properties != nil {
		respTopic, corr = p.Properties.ResponseTopic, p.Properties.CorrelationData
	}
	if respTopic == "" {
		// No one to answer; a bare publish to the nonce topic is how the
		// simulator measures the broker's ceiling.
		s.drop(p, "no response topic", nil)
		return
	}
	resp := mqttwire.Response{Op: op, Device: id, Correlation: corr}
	if err := mqttwire.CheckResponseTopic(id, respTopic); err != nil {
		// Never publish outside the device's namespace: answer on its
		// own default response topic instead.
		respTopic = mqttwire.ResponseTopic(id)
		s.refuse(ctx, respTopic, &resp, &onboard.Error{Reason: onboard.ReasonWrongDevice, Msg: err.Error()})
		return
	}
	if len(corr) > 64 {
		s.refuse(ctx, respTopic, &resp, &onboard.Error{Reason: onboard.ReasonBadRequest, Msg: "correlation data longer than 64 bytes"})
		return
	}
	if op == mqttwire.OpNonce {
		n, err := s.cfg.Nonces.Issue(id)
		if err != nil {
			s.refuse(ctx, respTopic, &resp, &onboard.Error{Reason: onboard.ReasonInternal, Msg: "cannot make a nonce", Err: err})
			return
		}
		resp.Status, resp.Nonce, resp.NonceTTL = mqttwire.StatusOK, n, uint32(s.cfg.Nonces.TTL()/time.Second)
		s.respond(ctx, respTopic, &resp)
		return
	}
	if len(p.Payload) > mqttwire.MaxMessage {
		s.refuse(ctx, respTopic, &resp, &onboard.Error{Reason: onboard.ReasonPayloadTooLarge,
			Msg: fmt.Sprintf("%d bytes, limit %d", len(p.Payload), mqttwire.MaxMessage)})
		return
	}
	if op == mqttwire.OpVoucher {
		s.handleVoucher(ctx, respTopic, &resp, p.Payload)
		return
	}
	sr, err := mqttwire.OpenRequest(p.Payload)
	if err != nil {
		s.refuse(ctx, respTopic, &resp, wireError(err))
		return
	}
	resp.Nonce = sr.Nonce
	switch {
	case sr.Op != op:
		s.refuse(ctx, respTopic, &resp, &onboard.Error{Reason: onboard.ReasonBadRequest,
			Msg: fmt.Sprintf("a %s request published to the %s topic", sr.Op, op)})
		return
	case sr.Device != id:
		s.refuse(ctx, respTopic, &resp, &onboard.Error{Reason: onboard.ReasonWrongDevice,
			Msg: fmt.Sprintf("request signed for %s published in the namespace of %s", sr.Device, id)})
		return
	}
	if err := checkClaims(sr); err != nil {
		s.refuse(ctx, respTopic, &resp, err)
		return
	}
	if op == mqttwire.OpState {
		// Only the device itself, with a live LDevID, reports its state.
		who, err := s.cfg.Core.Identify(ctx, sr.Chain)
		if err == nil && (who.Credential != onboard.CredLDevID || who.DeviceID != id) {
			err = &onboard.Error{Reason: onboard.ReasonWrongCredential, Msg: "state is reported with the device's own LDevID"}
		}
		if err != nil {
			s.refuse(ctx, respTopic, &resp, err)
			return
		}
	}
	if err := s.cfg.Nonces.Consume(ctx, id, sr.Nonce); err != nil {
		s.refuse(ctx, respTopic, &resp, err)
		return
	}
	if op == mqttwire.OpState {
		if err := s.applied(ctx, id, sr.Applied); err != nil {
			s.refuse(ctx, respTopic, &resp, err)
			return
		}
		resp.Status = mqttwire.StatusOK
		s.respond(ctx, respTopic, &resp)
		return
	}
	req := onboard.Request{Chain: sr.Chain, CSR: sr.CSR, Transport: "mqtt", Remote: "mqtt:" + id, DeviceID: id}
	var res *onboard.Result
	if op == mqttwire.OpEnroll {
		res, err = s.cfg.Core.Enroll(ctx, req)
	} else {
		res, err = s.cfg.Core.Renew(ctx, req)
	}
	if err != nil {
		s.refuse(ctx, respTopic, &resp, err)
		return
	}
	s.stats.Issued.Add(1)
	resp.Status, resp.Certificate, resp.Zone, resp.State = mqttwire.StatusOK, res.Certificate.Raw, res.Zone, string(res.State)
	for _, c := range res.Chain {
		resp.Chain = append(resp.Chain, c.Raw)
	}
	s.respond(ctx, respTopic, &resp)
}

// checkClaims refuses firmware claims that contradict the CSR's attributes.
func checkClaims(sr *mqttwire.SignedRequest) error {
	if sr.Claims == nil || len(sr.CSR) == 0 {
		return nil
	}
	csr, err := x509.ParseCertificateRequest(sr.CSR)
	if err != nil {
		return nil // the core refuses it with the precise reason
	}
	rep, err := devattr.FromCSR(csr)
	if err != nil {
		return nil
	}
	if (sr.Claims.FirmwareVersion != "" && sr.Claims.FirmwareVersion != rep.FirmwareVersion) ||
		(sr.Claims.FirmwareSHA256 != "" && sr.Claims.FirmwareSHA256 != rep.FirmwareSHA256) {
		return &onboard.Error{Reason: onboard.ReasonBadRequest, Msg: "firmware claims disagree with the CSR's attributes"}
	}
	return nil
}

// wireError maps a wire-format error to a refusal.
func wireError(err error) *onboard.Error {
	switch {
	case errors.Is(err, mqttwire.ErrTooLarge):
		return &onboard.Error{Reason: onboard.ReasonPayloadTooLarge, Msg: err.Error()}
	case errors.Is(err, mqttwire.ErrBadSignature):
		return &onboard.Error{Reason: onboard.ReasonBadSignature, Msg: err.Error()}
	case errors.Is(err, mqttwire.ErrUnsupportedKey):
		return &onboard.Error{Reason: onboard.ReasonUnsupportedKey, Msg: err.Error()}
	}
	return &onboard.Error{Reason: onboard.ReasonBadRequest, Msg: err.Error()}
}

func (s *Server) drop(p *paho.Publish, why string, err error) {
	s.stats.Dropped.Add(1)
	s.log.Debug("mqtt: request dropped", "topic", p.Topic, "why", why, "err", err)
}

// refuse answers a refusal, or a "retry after" for not-yet answers.
func (s *Server) refuse(ctx context.Context, topic string, resp *mqttwire.Response, err error) {
	var e *onboard.Error
	if !errors.As(err, &e) {
		s.log.Error("mqtt: request failed", "device", resp.Device, "op", resp.Op, "err", err)
		e = &onboard.Error{Reason: onboard.ReasonInternal, Msg: "internal error", Err: err}
	}
	s.stats.Refused.Add(1)
	s.log.Info("mqtt: request refused", "device", resp.Device, "op", resp.Op,
		"reason", string(e.Reason), "msg", e.Msg)
	resp.Status, resp.Reason, resp.Message = mqttwire.StatusRefused, string(e.Reason), e.Msg
	if e.RetryAfter > 0 {
		resp.Status, resp.RetryAfter = mqttwire.StatusRetry, uint32(math.Ceil(e.RetryAfter.Seconds()))
	}
	s.respond(ctx, topic, resp)
}

func (s *Server) respond(ctx context.Context, topic string, resp *mqttwire.Response) {
	resp.Seq = s.nextSeq()
	b, err := s.cfg.Responder.SignResponse(*resp)
	if err != nil {
		s.log.Error("mqtt: sign response", "device", resp.Device, "err", err)
		return
	}
	s.publish(ctx, &paho.Publish{QoS: 1, Topic: topic, Payload: b,
		Properties: &paho.PublishProperties{CorrelationData: resp.Correlation}})
}

func (s *Server) publish(ctx context.Context, p *paho.Publish) bool {
	s.mu.Lock()
	cm := s.cm
	s.mu.Unlock()
	if cm == nil {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cm.Publish(pctx, p); err != nil {
		s.stats.PublishKO.Add(1)
		s.log.Warn("mqtt: publish", "topic", p.Topic, "err", err)
		return false
	}
	return true
}
