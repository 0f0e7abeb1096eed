package mqttclient

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/embark-iot/embark/pkg/mqttwire"
)

// Defaults of Config.
const (
	DefaultTimeout   = 15 * time.Second
	DefaultKeepAlive = 60 * time.Second
)

// receiveMaximum bounds the QoS 1 messages the broker sends before our
// PUBACKs; the client also sizes its inbound queue by it, so a small value
// keeps thousands of idle connections cheap.
const receiveMaximum = 16

// Config says where and how to connect.
type Config struct {
	// Target is mqtts://host[:port].
	Target string
	// ServerName is the name (or IP address) the broker certificate must
	// carry. Default: the host of Target.
	ServerName string
	// Roots authenticate the broker and every message Embark signs: the
	// Embark root, given out of band. Required.
	Roots *x509.CertPool
	// Certificate is the client certificate chain and key presented in
	// the handshake: the IDevID to enroll, the LDevID afterwards. Its key
	// also signs the requests. Required.
	Certificate tls.Certificate
	// Chain is Certificate's chain, parsed, leaf first. Default: parsed
	// from Certificate.
	Chain []*x509.Certificate
	// DeviceID is the device URN: the client id and the topic namespace.
	DeviceID string
	// Timeout bounds the handshake with CONNECT and subscriptions, and
	// each request with its answer. Default: DefaultTimeout.
	Timeout time.Duration
	// KeepAlive is the MQTT keep-alive. Default: DefaultKeepAlive.
	KeepAlive time.Duration
	// Commands subscribes to the device's command topic too (with an
	// LDevID); the verified commands come out of [Conn.Commands].
	Commands bool
	// PublishOnly subscribes to nothing: the connection can only
	// PublishQoS1. It cannot be combined with Commands.
	PublishOnly bool
	// Verifier checks what Embark signs. Default: one trusting Roots. A
	// verifier shared by many connections verifies Embark's responder
	// certificate once.
	Verifier *mqttwire.Verifier
	// Logger receives ignored messages and connection losses at debug
	// level. Default: discard.
	Logger *slog.Logger
}

// Stats counts what a connection ignored.
type Stats struct {
	// IgnoredResponses counts answers that did not verify, named another
	// device, or matched no pending request.
	IgnoredResponses int64
	// IgnoredCommands counts commands that did not verify or named
	// another device.
	IgnoredCommands int64
}

// Conn is one device's connection to the broker. Its methods may be
// called from several goroutines.
type Conn struct {
	id        string
	respTopic string
	cmdTopic  string
	timeout   time.Duration
	subscribe bool
	signer    *mqttwire.Signer
	verifier  *mqttwire.Verifier
	log       *slog.Logger
	nc        net.Conn
	client    *paho.Client

	mu      sync.Mutex
	pending map[string]chan mqttwire.Response // by correlation data

	// commands holds the newest verified command not yet taken.
	commands chan mqttwire.Command

	ignoredResponses, ignoredCommands atomic.Int64

	lostMu sync.Mutex
	lost   error

	closeOnce sync.Once
	closed    atomic.Bool
}

// Dial opens a connection: a TLS handshake (always a full one), CONNECT
// with a clean start, and the subscriptions. A broker that is not
// authenticated by c.Roots under the expected name is refused with an
// error wrapping ErrHandshake; a CONNACK refusal is a [*ConnectError].
func Dial(ctx context.Context, c Config) (*Conn, error) {
	t, err := ParseTarget(c.Target)
	if err != nil {
		return nil, err
	}
	key, chain, err := c.check()
	if err != nil {
		return nil, err
	}
	signer, err := mqttwire.NewSigner(key, chain)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.ServerName == "" {
		c.ServerName = t.Host
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.Verifier == nil {
		c.Verifier = mqttwire.NewVerifier(c.Roots, nil)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cert := c.Certificate
	if cert.Leaf == nil {
		cert.Leaf = chain[0]
	}

	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{
		RootCAs:      c.Roots,
		ServerName:   c.ServerName,
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// A full handshake every time: no tickets, no resumption.
		ClientSessionCache:     nil,
		SessionTicketsDisabled: true,
		// A constrained device offers classical key exchange only.
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
	}}
	nc, err := d.DialContext(ctx, "tcp", t.Addr())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHandshake, err)
	}

	conn := &Conn{
		id:        c.DeviceID,
		respTopic: mqttwire.ResponseTopic(c.DeviceID),
		cmdTopic:  mqttwire.CommandTopic(c.DeviceID),
		timeout:   c.Timeout,
		subscribe: !c.PublishOnly,
		signer:    signer,
		verifier:  c.Verifier,
		log:       c.Logger.With("device", c.DeviceID),
		nc:        nc,
		pending:   make(map[string]chan mqttwire.Response),
		commands:  make(chan mqttwire.Command, 1),
	}
	conn.client = paho.NewClient(paho.ClientConfig{
		ClientID:          c.DeviceID,
		Conn:              packets.NewThreadSafeConn(nc),
		PacketTimeout:     c.Timeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){conn.onPublish},
		OnClientError:     conn.onLost,
		OnServerDisconnect: func(d *paho.Disconnect) {
			conn.onLost(fmt.Errorf("broker disconnected: reason 0x%02x", d.ReasonCode))
		},
	})
	rm := uint16(receiveMaximum)
	ack, err := conn.client.Connect(ctx, &paho.Connect{
		ClientID:   c.DeviceID,
		CleanStart: true,
		KeepAlive:  uint16(min(c.KeepAlive/time.Second, 65535)),
		Properties: &paho.ConnectProperties{ReceiveMaximum: &rm},
	})
	if err != nil {
		// Connect closed the network connection.
		if ack != nil && ack.ReasonCode >= 0x80 {
			ce := &ConnectError{Code: ack.ReasonCode}
			if ack.Properties != nil {
				ce.Reason = ack.Properties.ReasonString
			}
			return nil, ce
		}
		if endedByPeer(err) {
			// TLS 1.3: the broker refuses the client certificate after
			// the client finished its side of the handshake and sent
			// CONNECT; its alert may come, or only the reset of a
			// connection closed with CONNECT unread.
			return nil, fmt.Errorf("%w: %w: %w", ErrHandshake, ErrRefused, err)
		}
		return nil, fmt.Errorf("mqttclient: connect: %w", err)
	}
	if conn.subscribe {
		subs := []paho.SubscribeOptions{{Topic: conn.respTopic, QoS: 1}}
		if c.Commands {
			subs = append(subs, paho.SubscribeOptions{Topic: conn.cmdTopic, QoS: 1})
		}
		if _, err := conn.client.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
			_ = conn.Close()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("mqttclient: subscribe: %w", ctx.Err())
			}
			return nil, fmt.Errorf("%w: %w", ErrSubscribe, err)
		}
	}
	return conn, nil
}

// check validates the configuration and returns the signing key and the
// parsed chain.
func (c *Config) check() (crypto.Signer, []*x509.Certificate, error) {
	switch {
	case c.Roots == nil:
		return nil, nil, fmt.Errorf("%w: no roots to authenticate the broker and Embark", ErrConfig)
	case c.DeviceID == "" || len(c.DeviceID) > mqttwire.MaxDeviceID || strings.ContainsAny(c.DeviceID, "/+#\x00"):
		return nil, nil, fmt.Errorf("%w: device id %q cannot name a topic level", ErrConfig, c.DeviceID)
	case len(c.Certificate.Certificate) == 0:
		return nil, nil, fmt.Errorf("%w: no client certificate", ErrConfig)
	case c.Commands && c.PublishOnly:
		return nil, nil, fmt.Errorf("%w: a publish-only connection cannot receive commands", ErrConfig)
	case c.Timeout < 0 || c.KeepAlive < 0:
		return nil, nil, fmt.Errorf("%w: negative timeout or keep-alive", ErrConfig)
	}
	key, ok := c.Certificate.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%w: the client key (%T) cannot sign", ErrConfig, c.Certificate.PrivateKey)
	}
	chain := c.Chain
	if len(chain) == 0 {
		for i, der := range c.Certificate.Certificate {
			if i == 0 && c.Certificate.Leaf != nil {
				chain = append(chain, c.Certificate.Leaf)
				continue
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: client certificate %d: %w", ErrConfig, i, err)
			}
			chain = append(chain, cert)
		}
	}
	if !bytes.Equal(chain[0].Raw, c.Certificate.Certificate[0]) {
		return nil, nil, fmt.Errorf("%w: Chain does not start with the client certificate", ErrConfig)
	}
	return key, chain, nil
}

// endedByPeer reports a connection the peer ended: with a TLS alert, a
// close, a reset, or a broken pipe when CONNECT went out.
func endedByPeer(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// DeviceID is the device URN the connection speaks for.
func (c *Conn) DeviceID() string { return c.id }

// Commands delivers the verified commands for this device: the newest one
// not yet taken (an older generation waiting is replaced by a newer one).
// The retained command comes again on every new connection; applying each
// generation once is the caller's business.
func (c *Conn) Commands() <-chan mqttwire.Command { return c.commands }

// Done is closed when the connection has ended, lost or closed.
func (c *Conn) Done() <-chan struct{} { return c.client.Done() }

// Err says why the connection was lost (an error wrapping
// ErrConnectionLost); nil while it lives and after Close.
func (c *Conn) Err() error {
	select {
	case <-c.client.Done():
	default:
		return nil
	}
	if c.closed.Load() {
		return nil
	}
	c.lostMu.Lock()
	defer c.lostMu.Unlock()
	if c.lost != nil {
		return c.lost
	}
	// The client reports the cause after it has shut down.
	return ErrConnectionLost
}

// Stats returns what the connection ignored so far.
func (c *Conn) Stats() Stats {
	return Stats{IgnoredResponses: c.ignoredResponses.Load(), IgnoredCommands: c.ignoredCommands.Load()}
}

// Close sends DISCONNECT and closes the connection. It may be called more
// than once.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		select {
		case <-c.client.Done():
		default:
			// A broker that stopped reading must not hold the close up.
			_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			_ = c.client.Disconnect(&paho.Disconnect{ReasonCode: 0})
		}
	})
	return nil
}

func (c *Conn) onLost(err error) {
	if c.closed.Load() {
		return
	}
	c.lostMu.Lock()
	if c.lost == nil {
		c.lost = fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	c.lostMu.Unlock()
	c.log.Debug("mqttclient: connection lost", "err", err)
}

// onPublish routes what the broker delivers. It runs on the client's one
// delivery goroutine and never blocks.
func (c *Conn) onPublish(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	switch p.Topic {
	case c.respTopic:
		c.onResponse(p)
	case c.cmdTopic:
		c.onCommand(p)
	default:
		c.ignore(&c.ignoredResponses, "message", fmt.Errorf("unexpected topic %q", p.Topic))
	}
	return true, nil
}

func (c *Conn) ignore(counter *atomic.Int64, kind string, err error) {
	counter.Add(1)
	c.log.Debug("mqttclient: ignored "+kind, "err", err)
}

func (c *Conn) onResponse(p *paho.Publish) {
	r, err := c.verifier.Response(p.Payload)
	if err != nil {
		c.ignore(&c.ignoredResponses, "response", err)
		return
	}
	var corr []byte
	if p.Properties != nil {
		corr = p.Properties.CorrelationData
	}
	switch {
	case !bytes.Equal(corr, r.Correlation):
		c.ignore(&c.ignoredResponses, "response", errors.New("the packet's correlation data differs from the signed one"))
		return
	case r.Device != c.id:
		c.ignore(&c.ignoredResponses, "response", fmt.Errorf("signed for device %q", r.Device))
		return
	}
	c.mu.Lock()
	ch := c.pending[string(r.Correlation)]
	c.mu.Unlock()
	if ch == nil {
		c.ignore(&c.ignoredResponses, "response", errors.New("no request pending with its correlation data"))
		return
	}
	select {
	case ch <- r:
	default: // a duplicate delivery; the first one counts
	}
}

func (c *Conn) onCommand(p *paho.Publish) {
	if len(p.Payload) == 0 {
		return // a retained command was cleared
	}
	cmd, err := c.verifier.Command(p.Payload)
	if err != nil {
		c.ignore(&c.ignoredCommands, "command", err)
		return
	}
	if cmd.Device != c.id {
		c.ignore(&c.ignoredCommands, "command", fmt.Errorf("signed for device %q", cmd.Device))
		return
	}
	// Keep the newest generation; this goroutine is the only sender.
	for {
		select {
		case c.commands <- cmd:
			return
		default:
		}
		select {
		case old := <-c.commands:
			if old.Generation > cmd.Generation {
				cmd = old
			}
		default:
		}
	}
}
