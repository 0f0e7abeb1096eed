package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// DefaultMaxPacketSize is the largest MQTT packet the broker accepts unless
// Config.MaxPacketSize says otherwise.
const DefaultMaxPacketSize = 16 << 10

const (
	// handshakeTimeout bounds the TLS handshake plus reading CONNECT.
	handshakeTimeout = 10 * time.Second
	// kickTimeout bounds sending DISCONNECT to a client being dropped.
	kickTimeout = 500 * time.Millisecond
)

// Config configures a Broker.
//
// There is no ClientCAs field: client chains are checked by the
// Authenticator, which knows every trust anchor (manufacturer roots for
// IDevIDs, Embark's CA for LDevIDs, the service CA) and the revocation
// state. The TLS layer therefore uses tls.RequireAnyClientCert: it requires
// a certificate and proof of possession of its key, and leaves the rest to
// the Authenticator on CONNECT.
type Config struct {
	// Certificate is the broker's server certificate (issued by Embark's
	// CA), with its private key.
	Certificate tls.Certificate
	// GetCertificate, if set, is asked for the server certificate at each
	// handshake instead (a CA rollover moves it to a new intermediate while
	// the broker runs); Certificate is then not needed.
	GetCertificate func() (*tls.Certificate, error)
	// Auth decides who each client is. Required.
	Auth Authenticator
	// MaxPacketSize is the largest MQTT packet accepted from a client, CONNECT
	// included (default DefaultMaxPacketSize). Larger packets close the
	// connection. The CONNACK announces it.
	MaxPacketSize uint32
	// Logger receives refusals (Info), dropped messages (Warn) and mochi's
	// own warnings. Default: discard.
	Logger *slog.Logger
}

// tuning holds the mochi settings that decide memory per client. It is not
// exported: the values are chosen for 10,000 idle devices and measured by
// BenchmarkIdleClients, which also runs mochi's defaults for comparison.
type tuning struct {
	readBuffer            int    // bufio.Reader per client (mochi default 2 KiB)
	writeBuffer           int    // threshold for batching writes (allocated lazily)
	writesPending         int32  // outbound queue per client, preallocated (mochi default 8192)
	maxInflight           uint16 // QoS 1 messages held per client (not preallocated)
	receiveMaximum        uint16 // QoS 1/2 messages a device may have unacknowledged
	serviceReceiveMaximum uint16 // the same for service clients
	mochiDefaults         bool   // use mochi's default capabilities (benchmark only)
}

var defaultTuning = tuning{
	readBuffer:            1 << 10,
	writeBuffer:           2 << 10,
	writesPending:         256,
	maxInflight:           8192,
	receiveMaximum:        16,
	serviceReceiveMaximum: math.MaxUint16,
}

// Broker is the embedded MQTT v5 broker. Create it with New, start it with
// Serve and stop it with Close. Its methods are safe for concurrent use.
type Broker struct {
	cfg  Config
	tune tuning
	log  *slog.Logger
	srv  *mqtt.Server
	tls  *tls.Config
	reg  *registry

	// epoch changes whenever a Disconnect or Refresh starts, so that a
	// CONNECT authenticated before can notice and authenticate again.
	epoch     atomic.Uint64
	refreshMu sync.Mutex

	mu         sync.Mutex
	started    bool
	closed     bool
	nListeners int
}

// New returns a broker that is not yet listening.
func New(cfg Config) (*Broker, error) {
	return newBroker(cfg, defaultTuning)
}

func newBroker(cfg Config, tune tuning) (*Broker, error) {
	if cfg.GetCertificate == nil && (len(cfg.Certificate.Certificate) == 0 || cfg.Certificate.PrivateKey == nil) {
		return nil, fmt.Errorf("%w: no server certificate and key", ErrInvalidConfig)
	}
	if cfg.Auth == nil {
		return nil, fmt.Errorf("%w: no Authenticator", ErrInvalidConfig)
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = DefaultMaxPacketSize
	}
	if cfg.MaxPacketSize < 256 || cfg.MaxPacketSize > 268435455 {
		return nil, fmt.Errorf("%w: MaxPacketSize %d outside 256..268435455", ErrInvalidConfig, cfg.MaxPacketSize)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		cfg:  cfg,
		tune: tune,
		log:  cfg.Logger,
		reg:  newRegistry(),
		tls: &tls.Config{
			Certificates: []tls.Certificate{cfg.Certificate},
			MinVersion:   tls.VersionTLS12,
			ClientAuth:   tls.RequireAnyClientCert,
			// Device links use classical key exchange that constrained
			// devices can afford; the hybrid group stays available for
			// clients that offer only it (Embark's own service link).
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256, tls.X25519MLKEM768},
		},
	}
	if get := cfg.GetCertificate; get != nil {
		b.tls.Certificates = nil
		b.tls.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return get() }
	}

	caps := mqtt.NewDefaultServerCapabilities()
	if !tune.mochiDefaults {
		caps.MaximumClientWritesPending = tune.writesPending
		caps.MaximumInflight = tune.maxInflight
		caps.ReceiveMaximum = tune.receiveMaximum
		caps.MaximumQos = 1
		caps.TopicAliasMaximum = 0
	}
	caps.MinimumProtocolVersion = 5
	caps.MaximumPacketSize = cfg.MaxPacketSize
	// Sessions end with their connection: the ACL allows nothing to a client
	// without a live connection, so a persisted session could only hold
	// subscriptions that never deliver. The CONNACK tells clients that asked
	// for more.
	caps.MaximumSessionExpiryInterval = 0
	// Mochi's default (one day) also deletes retained messages older than
	// that, which would lose the retained desired-state documents on
	// embark/v1/<id>/cmd. Publishers set a message expiry where they want one.
	caps.MaximumMessageExpiryInterval = 0

	opts := &mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(minLevel{h: cfg.Logger.Handler(), min: slog.LevelWarn}),
		SysTopicResendInterval: 60, // nobody may read $SYS; publish it rarely
	}
	if !tune.mochiDefaults {
		opts.ClientNetReadBufferSize = tune.readBuffer
		opts.ClientNetWriteBufferSize = tune.writeBuffer
	}
	b.srv = mqtt.New(opts)
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}
	return b, nil
}

// Serve starts serving MQTT over TLS on ln, a plain listener the caller made
// (for example net.Listen("tcp", "127.0.0.1:0")); the broker does the TLS.
// It returns once the broker is accepting connections. Serve may be called
// for several listeners; Close closes them all.
func (b *Broker) Serve(ln net.Listener) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	id := fmt.Sprintf("tls%d", b.nListeners)
	l := newTLSListener(id, ln, b.tls, handshakeTimeout, b.log, b.release)
	if err := b.srv.AddListener(l); err != nil {
		return fmt.Errorf("broker: add listener: %w", err)
	}
	b.nListeners++
	l.markStarted()
	if !b.started {
		b.started = true
		if err := b.srv.Serve(); err != nil {
			return fmt.Errorf("broker: serve: %w", err)
		}
		return nil
	}
	b.srv.Listeners.Serve(id, b.srv.EstablishConnection)
	return nil
}

// Close disconnects every client, closes the listeners given to Serve and
// waits for the connections to end. It is safe to call more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	// Tell every authenticated client, then close the listeners (which
	// close whatever sockets remain).
	b.kick(b.reg.all(), packets.ErrServerShuttingDown, "server shutting down")
	if err := b.srv.Close(); err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	return nil
}

// Clients returns the number of live authenticated clients.
func (b *Broker) Clients() int { return b.reg.len() }

// Disconnect drops the live clients whose leaf certificate serial is one of
// serials (hex, as in Identity.CertSerial; case and leading zeros do not
// matter) and returns how many it dropped. Each receives DISCONNECT
// "administrative action" and its connection is closed before Disconnect
// returns (a client that does not read gets its socket closed after half a
// second); its will is not published.
//
// The Authenticator must already refuse those certificates: a client whose
// CONNECT is being authenticated while Disconnect runs is authenticated
// again.
func (b *Broker) Disconnect(certSerials ...string) int {
	b.epoch.Add(1)
	set := make(map[string]struct{}, len(certSerials))
	for _, s := range certSerials {
		if n := normalizeSerial(s); n != "" {
			set[n] = struct{}{}
		}
	}
	return b.kick(b.reg.withSerials(set), packets.ErrAdministrativeAction, "certificate disconnected")
}

// Refresh runs the Authenticator again on the stored chain of each live
// client of the device (any kind of credential whose Identity.ID is
// deviceID). New Topics take effect at once, for new subscriptions and for
// messages delivered on existing ones. A client whose chain is now refused,
// or whose identity changed, is disconnected with "not authorized" before
// Refresh returns.
func (b *Broker) Refresh(deviceID string) {
	b.refreshMu.Lock()
	defer b.refreshMu.Unlock()
	b.epoch.Add(1)
	var drop []*session
	for _, s := range b.reg.withID(deviceID) {
		a, rerr := b.authorize(s.chain, s.id)
		if rerr != nil {
			attrs := []any{"reason", rerr.Reason, "client_id", s.id, "remote", s.remote}
			if rerr.Err != nil {
				attrs = append(attrs, "error", rerr.Err.Error())
			}
			b.log.Info("mqtt client disconnected on refresh", attrs...)
			drop = append(drop, s)
			continue
		}
		s.acl.Store(a)
	}
	b.kick(drop, packets.ErrNotAuthorized, "refresh refused")
}

// kick unregisters the sessions, which from then on are allowed nothing and
// publish no will, sends each DISCONNECT with code and closes its connection.
// It returns the number of sessions it unregistered.
func (b *Broker) kick(sessions []*session, code packets.Code, why string) int {
	var wg sync.WaitGroup
	n := 0
	for _, s := range sessions {
		s.kicked.Store(true)
		if !b.reg.remove(s) {
			continue
		}
		n++
		b.log.Info("mqtt client disconnected", "reason", why, "client_id", s.id, "serial", s.serial, "remote", s.remote)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// DISCONNECT, then mochi closes the connection, which makes TLS
			// send close_notify with a 5 s deadline of its own. A client
			// that does not read would hold both up: close its socket after
			// kickTimeout whatever happens.
			stop := time.AfterFunc(kickTimeout, func() { _ = s.conn.NetConn().Close() })
			defer stop.Stop()
			_ = b.srv.DisconnectClient(s.client, code)
		}()
	}
	wg.Wait()
	return n
}

// release drops the session of a connection mochi is done with. OnDisconnect
// does so too, but mochi skips it when a client fails between OnConnect and
// the CONNACK.
func (b *Broker) release(c *conn) {
	if s := c.sess.Load(); s != nil {
		b.reg.remove(s)
	}
}

// serialOf returns the registry form of a certificate serial.
func serialOf(cert *x509.Certificate) string {
	return fmt.Sprintf("%x", cert.SerialNumber)
}

// normalizeSerial lower-cases a hex serial and strips leading zeros.
func normalizeSerial(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimLeft(strings.TrimPrefix(s, "-"), "0")
	if s == "" {
		return ""
	}
	if neg {
		return "-" + s
	}
	return s
}

// minLevel passes on only records at or above min: mochi logs routine events
// at Info, which would drown the broker's own refusals.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(as), min: m.min}
}
func (m minLevel) WithGroup(g string) slog.Handler {
	return minLevel{h: m.h.WithGroup(g), min: m.min}
}
