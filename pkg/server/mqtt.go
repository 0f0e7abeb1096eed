package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embark-iot/embark/pkg/broker"
	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/mqttsrv"
	"github.com/embark-iot/embark/pkg/mqttwire"
	"github.com/embark-iot/embark/pkg/onboard"
)

// MQTTDir holds Embark's MQTT service identity, inside the data directory.
const MQTTDir = "mqtt"

// mqttParts is the MQTT transport: the embedded broker (unless an external
// one is configured) and Embark's client of it.
type mqttParts struct {
	broker    *broker.Broker
	service   *broker.Service
	responder *mqttwire.Signer
	nonces    *mqttsrv.Nonces
	roots     *x509.CertPool // of the broker's server certificate
	url       *url.URL
	srv       atomic.Pointer[mqttsrv.Server]

	clientMu sync.Mutex // serialises starting and stopping Embark's client
	cancel   context.CancelFunc
	done     chan struct{}
	closed   bool // by closeMQTT: the client is not started again
}

// buildMQTT prepares the MQTT transport; nothing listens or connects until
// startMQTT.
func (s *Server) buildMQTT(ctx context.Context, srvCert tls.Certificate) error {
	m := s.cfg.MQTT
	if !m.Enabled() {
		return nil
	}
	p := &mqttParts{}
	var err error
	if p.service, err = broker.LoadOrCreateService(filepath.Join(s.cfg.DataDir, MQTTDir), m.ClientID); err != nil {
		return err
	}
	if p.responder, err = s.newResponder(); err != nil {
		return err
	}
	if p.nonces, err = mqttsrv.NewNonces(ctx, s.store, time.Duration(m.NonceTTL), s.clock); err != nil {
		return err
	}
	p.roots = x509.NewCertPool()
	if m.Broker != "" {
		if p.url, err = url.Parse(m.Broker); err != nil {
			return fmt.Errorf("server: mqtt.broker: %w", err)
		}
		if m.BrokerCA != "" {
			path := m.BrokerCA
			if !filepath.IsAbs(path) {
				path = filepath.Join(s.cfg.DataDir, path)
			}
			pemData, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("server: mqtt.broker_ca: %w", err)
			}
			if !p.roots.AppendCertsFromPEM(pemData) {
				return fmt.Errorf("server: mqtt.broker_ca: %s holds no PEM certificate", path)
			}
		} else {
			p.roots.AddCert(s.ca.Root())
		}
	} else {
		for _, r := range s.ca.Roots() {
			p.roots.AddCert(r)
		}
		p.broker, err = broker.New(broker.Config{
			// The server certificate of the moment: a CA rollover moves it
			// to the new intermediate while devices keep connecting.
			GetCertificate: s.currentServerCertificate,
			Auth:           &brokerAuth{core: s.core, service: p.service, name: m.ClientID},
			// Room for the topic and properties around the largest message
			// Embark accepts, so that Embark answers "payload_too_large"
			// itself up to there.
			MaxPacketSize: mqttwire.MaxMessage + 4<<10,
			Logger:        s.log,
		})
		if err != nil {
			return err
		}
	}
	s.mqtt = p
	return nil
}

// startMQTT opens the embedded broker's listener and starts Embark's client.
func (s *Server) startMQTT() error {
	p := s.mqtt
	if p == nil {
		return nil
	}
	if p.broker != nil {
		ln, err := net.Listen("tcp", s.cfg.MQTT.Listen)
		if err != nil {
			return fmt.Errorf("server: mqtt listener: %w", err)
		}
		if err := p.broker.Serve(ln); err != nil {
			ln.Close()
			return fmt.Errorf("server: mqtt broker: %w", err)
		}
		p.url = &url.URL{Scheme: "mqtts", Host: ln.Addr().String()}
		s.log.Info("listening", slog.String("proto", "mqtts (embedded MQTT v5 broker)"), slog.String("addr", ln.Addr().String()))
	}
	return s.startMQTTClient(p)
}

// startMQTTClient starts Embark's client of the broker, signing with
// p.responder.
func (s *Server) startMQTTClient(p *mqttParts) error {
	p.clientMu.Lock()
	defer p.clientMu.Unlock()
	return s.startMQTTClientLocked(p)
}

func (s *Server) startMQTTClientLocked(p *mqttParts) error {
	clientTLS := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.service.Cert},
		RootCAs:      p.roots,
		ServerName:   p.url.Hostname(),
	}
	if p.broker != nil {
		// Embark's own link to its broker is a back-end link: hybrid
		// post-quantum key exchange only. An external broker gets Go's
		// defaults (hybrid first, X25519 next): Debian's Mosquitto, on
		// OpenSSL 3.0, cannot speak the hybrid group.
		clientTLS.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768}
	}
	srv, err := mqttsrv.New(mqttsrv.Config{
		Broker:    p.url,
		TLS:       clientTLS,
		ClientID:  s.cfg.MQTT.ClientID,
		Core:      s.core,
		Store:     s.store,
		Responder: p.responder,
		Nonces:    p.nonces,
		Desired:   s.desired,
		Logger:    s.log,
		Clock:     s.clock,
		Registrar: s.mqttRegistrar(),
	})
	if err != nil {
		return err
	}
	p.srv.Store(srv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	p.cancel, p.done = cancel, done
	go func() {
		defer close(done)
		if err := srv.Run(ctx); err != nil {
			s.log.Error("mqtt", slog.Any("err", err))
		}
	}()
	select {
	case <-srv.Ready():
	case <-time.After(10 * time.Second):
		s.log.Warn("mqtt: not connected to the broker yet; still trying", slog.String("broker", p.url.Redacted()))
	}
	return nil
}

func (s *Server) closeMQTT() error {
	p := s.mqtt
	if p == nil {
		return nil
	}
	p.clientMu.Lock()
	p.closed = true
	p.stopMQTTClientLocked()
	p.clientMu.Unlock()
	if p.broker != nil {
		return p.broker.Close()
	}
	return nil
}

// MQTTAddr is the embedded broker's address, nil if none runs.
func (s *Server) MQTTAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mqtt == nil || s.mqtt.broker == nil || s.mqtt.url == nil {
		return nil
	}
	a, err := net.ResolveTCPAddr("tcp", s.mqtt.url.Host)
	if err != nil {
		return nil
	}
	return a
}

// MQTT returns Embark's MQTT client, nil before Start or when MQTT is off.
func (s *Server) MQTT() *mqttsrv.Server {
	if s.mqtt == nil {
		return nil
	}
	return s.mqtt.srv.Load()
}

// stopMQTTClientLocked stops Embark's client of the broker, if it runs.
func (p *mqttParts) stopMQTTClientLocked() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
		p.cancel = nil
	}
}

// brokerAuth tells the embedded broker who a TLS client is: Embark's own
// service client, or a device by its IDevID or LDevID.
type brokerAuth struct {
	core    *onboard.Service
	service *broker.Service
	name    string
}

func (a *brokerAuth) Authenticate(chain []*x509.Certificate) (broker.Identity, error) {
	if len(chain) == 0 {
		return broker.Identity{}, errors.New("no client certificate")
	}
	leaf := chain[0]
	serial := fmt.Sprintf("%x", leaf.SerialNumber)
	if leaf.CheckSignatureFrom(a.service.CA) == nil {
		pool := x509.NewCertPool()
		pool.AddCert(a.service.CA)
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil {
			return broker.Identity{}, fmt.Errorf("service certificate: %w", err)
		}
		if leaf.Subject.CommonName != a.name {
			return broker.Identity{}, fmt.Errorf("service certificate for %q, want %q", leaf.Subject.CommonName, a.name)
		}
		return broker.Identity{Kind: broker.KindService, ID: a.name, CertSerial: serial}, nil
	}
	id, err := a.core.Identify(context.Background(), chain)
	if err != nil {
		return broker.Identity{}, err
	}
	kind := broker.KindIDevID
	if id.Credential == onboard.CredLDevID {
		kind = broker.KindLDevID
	}
	return broker.Identity{Kind: kind, ID: id.DeviceID, CertSerial: id.CertSerial, Topics: id.Topics}, nil
}

// commander changes devices' desired state; the transports tell the
// devices.
type commander struct{ s *Server }

func (c commander) Rotate(ctx context.Context, id, actor, campaign string) (desired.Desired, error) {
	return c.s.desired.Set(ctx, id, actor, func(d *desired.Desired) { d.Rotate, d.Campaign = true, campaign })
}

func (c commander) DesiredOf(ctx context.Context, id string) (desired.Desired, error) {
	return c.s.desired.Of(ctx, id)
}
