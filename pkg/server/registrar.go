package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/estcoap"
	"github.com/embark-iot/embark/pkg/mqttsrv"
	"github.com/embark-iot/embark/pkg/registrar"
)

// Directories of the registrar inside the data directory.
const (
	// RegistrarDir holds the registrar certificate (id-kp-cmcRA) and key
	// that authenticate Embark to manufacturers' MASAs.
	RegistrarDir = "registrar"
	// VouchersDir holds prefetched nonceless vouchers,
	// VouchersDir/<manufacturer>/<serial>.voucher, served while a MASA
	// cannot be reached.
	VouchersDir = "vouchers"
)

// buildRegistrar makes Embark a BRSKI registrar (package registrar): the
// registrar certificate, issued by the active intermediate and kept in
// DATA/registrar, and the registrar itself. Devices may see two server
// certificates: the CoAP listeners' current one and the one the embedded
// MQTT broker started with (srvCert).
func (s *Server) buildRegistrar(srvCert tls.Certificate) error {
	cert, err := registrar.Certificate(filepath.Join(s.cfg.DataDir, RegistrarDir), s.cfg.Owner, s.ca.Intermediate(), s.issueRegistrar, s.clock())
	if err != nil {
		return err
	}
	atStart, err := chainOf(srvCert)
	if err != nil {
		return err
	}
	// The current server certificate is parsed again only when it changes.
	var mu sync.Mutex
	var last *tls.Certificate
	var lastChain []*x509.Certificate
	s.registrar, err = registrar.New(registrar.Config{
		Store:       s.store,
		Core:        s.core,
		Owner:       s.owner,
		DomainCA:    s.ca.Root,
		Certificate: cert,
		Proximity: func() [][]*x509.Certificate {
			out := make([][]*x509.Certificate, 0, 2)
			if c, err := s.currentServerCertificate(); err == nil {
				mu.Lock()
				if c != last {
					if chain, err := chainOf(*c); err == nil {
						last, lastChain = c, chain
					}
				}
				if c == last {
					out = append(out, lastChain)
				}
				mu.Unlock()
			}
			return append(out, atStart)
		},
		VoucherDir: filepath.Join(s.cfg.DataDir, VouchersDir),
		Clock:      s.clock,
		Logger:     s.log,
	})
	return err
}

// issueRegistrar issues the registrar certificate with the active
// intermediate.
func (s *Server) issueRegistrar(tmpl *x509.Certificate, lifetime time.Duration) (*x509.Certificate, []*x509.Certificate, error) {
	resp, err := s.ca.Service().CreateCertificate(&apiv1.CreateCertificateRequest{Template: tmpl, Lifetime: lifetime, Backdate: time.Minute})
	if err != nil {
		return nil, nil, err
	}
	chain := resp.CertificateChain
	if n := len(chain); n > 0 && chain[n-1].Equal(s.ca.Root()) {
		chain = chain[:n-1] // the MASA knows the root from the registration
	}
	return resp.Certificate, chain, nil
}

// voucherRegistrar is the registrar as the CoAP adapter takes it: a nil
// interface when there is none.
func (s *Server) voucherRegistrar() estcoap.VoucherRegistrar {
	if s.registrar == nil {
		return nil
	}
	return s.registrar
}

// adminRegistrar is the registrar as the admin API takes it: a nil
// interface when there is none.
func (s *Server) adminRegistrar() admin.VoucherRegistrar {
	if s.registrar == nil {
		return nil
	}
	return s.registrar
}

// mqttRegistrar is the registrar as the MQTT adapter takes it: a nil
// interface when there is none.
func (s *Server) mqttRegistrar() mqttsrv.VoucherRegistrar {
	if s.registrar == nil {
		return nil
	}
	return s.registrar
}

// Registrar returns the BRSKI registrar.
func (s *Server) Registrar() *registrar.Registrar { return s.registrar }

// registrarStatus adds the registrar to the status: its certificate and
// the TLS group negotiated with each MASA.
func (s *Server) registrarStatus(out map[string]any) {
	if s.registrar != nil {
		out["registrar"] = s.registrar.Status()
	}
}

// closeRegistrar drops the idle connections to MASAs.
func (s *Server) closeRegistrar() {
	if s.registrar != nil {
		s.registrar.Close()
	}
}

// chainOf parses a TLS certificate's chain, leaf first.
func chainOf(c tls.Certificate) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(c.Certificate))
	for _, der := range c.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("server: server certificate chain: %w", err)
		}
		out = append(out, cert)
	}
	return out, nil
}

// listenBRSKI opens the plain CoAP listener of the voucher requests
// (coap.brski; estcoap.Server.ListenPlain). The caller holds s.mu.
func (s *Server) listenBRSKI() error {
	if s.cfg.CoAP.BRSKI == "" || s.registrar == nil {
		return nil
	}
	a, err := s.coap.ListenPlain(s.cfg.CoAP.BRSKI)
	if err != nil {
		return err
	}
	s.brskiAddr = a
	s.log.Info("listening", slog.String("proto", "coap (plain CoAP, /.well-known/brski/rv only)"), slog.String("addr", a.String()))
	return nil
}

// BRSKIAddr returns the bound plain CoAP voucher listener address (nil if
// disabled).
func (s *Server) BRSKIAddr() net.Addr { s.mu.Lock(); defer s.mu.Unlock(); return s.brskiAddr }
