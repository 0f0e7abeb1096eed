package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/operator"
)

// OperatorsDir is the operator CA's directory inside the data directory.
const OperatorsDir = "operators"

// classicalWarning is logged at start and shown in the status while the
// compatibility flag https.allow_classical is set.
const classicalWarning = "https.allow_classical is set: the admin API also accepts classical key exchange" +
	" (and TLS 1.2 if https.min_version asks for it); traffic recorded now could be decrypted by a future quantum computer"

// httpsParts is the HTTPS admin API: the operator CA, the TLS
// configuration and, once started, the listener.
type httpsParts struct {
	ops    *operator.CA
	policy admin.TLSPolicy
	conf   *tls.Config // nil while the HTTPS listener is disabled

	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
}

// buildHTTPS loads the operator CA (creating it on first use) and prepares
// the TLS configuration of the HTTPS admin API with the server certificate.
func (s *Server) buildHTTPS(srvCert tls.Certificate) error {
	ops, err := operator.Init(filepath.Join(s.cfg.DataDir, OperatorsDir), operator.WithClock(s.clock), operator.WithLogger(s.log))
	if err != nil {
		return err
	}
	p := &httpsParts{ops: ops, policy: HTTPSPolicy(s.cfg.HTTPS)}
	if s.cfg.HTTPS.Listen != "" {
		p.conf, err = admin.ServerTLSConfig(srvCert, ops.Root(), p.policy, s.log)
		if err != nil {
			return fmt.Errorf("https: %w", err)
		}
		p.conf.Certificates, p.conf.GetCertificate = nil, s.httpsCertificate // follows CA rollovers (ca.go)
	}
	s.https = p
	return nil
}

// HTTPSPolicy returns the TLS policy of a valid configuration.
func HTTPSPolicy(h config.HTTPS) admin.TLSPolicy {
	return admin.TLSPolicy{MinVersion: h.TLSMinVersion(), Groups: h.TLSGroups()}
}

// adminOperators is what the admin handlers need to authenticate operators
// and issue their certificates.
func (s *Server) adminOperators() *admin.Operators {
	if s.https == nil {
		return nil
	}
	return &admin.Operators{CA: s.https.ops, ServerRoots: []*x509.Certificate{s.ca.Root()}}
}

// startHTTPS opens the HTTPS admin API listener, if configured.
func (s *Server) startHTTPS() error {
	p := s.https
	if p == nil || p.conf == nil {
		return nil
	}
	if s.cfg.HTTPS.AllowClassical {
		s.log.Warn(classicalWarning, slog.Any("groups", p.policy.Groups), slog.String("min_version", admin.TLSVersionName(p.policy.MinVersion)))
	}
	tcp, err := net.Listen("tcp", s.cfg.HTTPS.Listen)
	if err != nil {
		return fmt.Errorf("server: https: %w", err)
	}
	srv := &http.Server{
		Handler:           s.admin,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Refused handshakes (no certificate, another CA, a classical-only
		// or TLS 1.2 client) are reported here.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelInfo),
	}
	ln := tls.NewListener(tcp, p.conf)
	p.mu.Lock()
	p.srv, p.ln = srv, ln
	p.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("https admin API", slog.Any("err", err))
		}
	}()
	s.log.Info("listening", slog.String("proto", "admin API (HTTPS, operator certificates)"), slog.String("addr", tcp.Addr().String()),
		slog.String("tls", admin.TLSVersionName(p.policy.MinVersion)+"+"), slog.Any("groups", p.policy.Groups))
	return nil
}

// closeHTTPS stops the HTTPS listener; requests in progress finish first.
func (s *Server) closeHTTPS() error {
	p := s.https
	if p == nil {
		return nil
	}
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// HTTPSAddr returns the bound address of the HTTPS admin API (nil if
// disabled or not started).
func (s *Server) HTTPSAddr() net.Addr {
	p := s.https
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return nil
	}
	return p.ln.Addr()
}

// OperatorCA returns the operator CA.
func (s *Server) OperatorCA() *operator.CA {
	if s.https == nil {
		return nil
	}
	return s.https.ops
}

// httpsStatus adds the HTTPS admin API to the status: its listener and its
// TLS policy, with the compatibility flag and its warning when set.
func (s *Server) httpsStatus(out map[string]any, listeners map[string]string) {
	p := s.https
	if p == nil || p.conf == nil {
		return
	}
	a := s.HTTPSAddr()
	if a == nil {
		return
	}
	listeners["https"] = a.String()
	groups := make([]string, len(p.policy.Groups))
	for i, g := range p.policy.Groups {
		groups[i] = g.String()
	}
	st := map[string]any{
		"addr":            a.String(),
		"min_version":     admin.TLSVersionName(p.policy.MinVersion),
		"groups":          groups,
		"allow_classical": s.cfg.HTTPS.AllowClassical,
	}
	if s.cfg.HTTPS.AllowClassical {
		st["warning"] = classicalWarning
	}
	out["https"] = st
}
