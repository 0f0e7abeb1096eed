package esttest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"sync"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	coaptcp "github.com/plgd-dev/go-coap/v3/tcp"
	"github.com/smallstep/pkcs7"
)

// Content formats of EST-coaps.
const (
	formatCSRAttrs   message.MediaType = 285
	formatPKCS7Certs message.MediaType = 281
	formatPKCS10     message.MediaType = 286
	formatPKIXCert   message.MediaType = 287
)

// Magic common names: a CSR whose subject CN is one of these gets an
// error answer instead of a certificate.
const (
	CNHeld        = "held"         // 5.03 "held: ...", Max-Age 30
	CNHeldDefault = "held-default" // 5.03 "overloaded", no Max-Age
	CNGhost       = "ghost"        // 4.03 "unknown_device: ..."
	CNBare        = "bare"         // 4.00 without a payload
	CNCreated     = "created"      // 2.01 instead of 2.04
	CNGarbage     = "garbage"      // 2.04 with a payload that is no PKCS#7
)

// Options configure a Server.
type Options struct {
	// Transport is "coaps" (DTLS, the default) or "coaps+tcp".
	Transport string
	// Certificate is the server's certificate; default: the PKI's.
	Certificate *tls.Certificate
	// ClientCAs verify client certificates, which are optional in the
	// handshake; default: the manufacturer CA and the Embark root.
	ClientCAs *x509.CertPool
	// HoldFirst answers the first HoldFirst requests for each CSR key with
	// 5.03 "held" and Max-Age 0.
	HoldFirst int
}

// Server is a small EST-coaps server for tests. It answers crts, att and
// /.well-known/core, and enrolls CSRs (sen with any verified client
// certificate, sren with one the Embark intermediate issued). A request
// resent with the same CSR key gets the certificate already issued.
type Server struct {
	// Target is the URI clients dial.
	Target string

	pki  *PKI
	opts Options
	stop func()

	mu       sync.Mutex
	issued   map[string]*x509.Certificate // by CSR public key (DER SPKI)
	seen     map[string]int               // requests by CSR public key
	requests int

	statusState statusState // status.go
}

// Start serves on a loopback port until Close.
func Start(p *PKI, o Options) (*Server, error) {
	if o.Transport == "" {
		o.Transport = "coaps"
	}
	if o.Certificate == nil {
		o.Certificate = &p.Server
	}
	if o.ClientCAs == nil {
		o.ClientCAs = x509.NewCertPool()
		o.ClientCAs.AddCert(p.Manufacturer.Cert)
		o.ClientCAs.AddCert(p.Root.Cert)
	}
	s := &Server{pki: p, opts: o, issued: map[string]*x509.Certificate{}, seen: map[string]int{}}
	router := s.router()
	discard := options.WithErrors(func(error) {})
	switch o.Transport {
	case "coaps":
		cfg := &piondtls.Config{
			Certificates:         []tls.Certificate{*o.Certificate},
			ClientAuth:           piondtls.VerifyClientCertIfGiven,
			ClientCAs:            o.ClientCAs,
			ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
			CipherSuites: []piondtls.CipherSuiteID{
				piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
				piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			},
		}
		l, err := coapnet.NewDTLSListener("udp", "127.0.0.1:0", cfg)
		if err != nil {
			return nil, fmt.Errorf("esttest: listen: %w", err)
		}
		srv := coapdtls.NewServer(options.WithMux(router), discard)
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(l) }()
		s.stop = func() { srv.Stop(); <-done; _ = l.Close() }
		s.Target = "coaps://" + l.Addr().String()
	case "coaps+tcp":
		cfg := &tls.Config{
			Certificates: []tls.Certificate{*o.Certificate},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    o.ClientCAs,
			MinVersion:   tls.VersionTLS13,
			NextProtos:   []string{"coap"},
		}
		l, err := coapnet.NewTLSListener("tcp", "127.0.0.1:0", cfg)
		if err != nil {
			return nil, fmt.Errorf("esttest: listen: %w", err)
		}
		srv := coaptcp.NewServer(options.WithMux(router), discard)
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(l) }()
		s.stop = func() { srv.Stop(); <-done; _ = l.Close() }
		s.Target = "coaps+tcp://" + l.Addr().String()
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownTransport, o.Transport)
	}
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.stop() }

// Issued is how many distinct certificates the server issued.
func (s *Server) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.issued)
}

// Requests is how many sen and sren requests the server answered.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func text(w mux.ResponseWriter, code codes.Code, s string, opts ...message.Option) {
	_ = w.SetResponse(code, message.TextPlain, bytes.NewReader([]byte(s)), opts...)
}

func maxAge(seconds uint32) message.Option {
	buf := make([]byte, 4)
	n, _ := message.EncodeUint32(buf, seconds)
	return message.Option{ID: message.MaxAge, Value: buf[:n]}
}

func (s *Server) router() *mux.Router {
	r := mux.NewRouter()
	for _, prefix := range []string{"/.well-known/est", "/est"} {
		_ = r.Handle(prefix+"/crts", mux.HandlerFunc(s.crts))
		_ = r.Handle(prefix+"/sen", s.enroll(false))
		_ = r.Handle(prefix+"/sren", s.enroll(true))
		_ = r.Handle(prefix+"/att", mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
			_ = w.SetResponse(codes.Content, formatCSRAttrs, bytes.NewReader([]byte{0x30, 0x00}))
		}))
	}
	s.routeStatus(r)
	_ = r.Handle("/.well-known/core", mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		links := `</.well-known/est/crts>;rt="ace.est.crts";ct="281 287",</est/sen>;rt="ace.est.sen";ct="281 287"`
		_ = w.SetResponse(codes.Content, message.AppLinkFormat, bytes.NewReader([]byte(links)))
	}))
	return r
}

func (s *Server) crts(w mux.ResponseWriter, req *mux.Message) {
	accept, err := req.Accept()
	if err != nil {
		accept = formatPKCS7Certs
	}
	switch accept {
	case formatPKIXCert:
		_ = w.SetResponse(codes.Content, formatPKIXCert, bytes.NewReader(s.pki.Root.Cert.Raw))
	case formatPKCS7Certs:
		der, err := pkcs7.DegenerateCertificate(append(bytes.Clone(s.pki.Intermediate.Cert.Raw), s.pki.Root.Cert.Raw...))
		if err != nil {
			text(w, codes.InternalServerError, "internal: "+err.Error())
			return
		}
		_ = w.SetResponse(codes.Content, formatPKCS7Certs, bytes.NewReader(der))
	default:
		text(w, codes.NotAcceptable, "bad_request: unsupported accept")
	}
}

func (s *Server) enroll(renew bool) mux.HandlerFunc {
	return func(w mux.ResponseWriter, req *mux.Message) {
		peer := PeerChain(w)
		if len(peer) == 0 {
			text(w, codes.Unauthorized, "unauthenticated: no client certificate")
			return
		}
		if cf, err := req.ContentFormat(); err != nil || cf != formatPKCS10 {
			text(w, codes.UnsupportedMediaType, "bad_request: want 286")
			return
		}
		var body []byte
		if b := req.Body(); b != nil {
			body, _ = io.ReadAll(b)
		}
		csr, err := x509.ParseCertificateRequest(body)
		if err != nil {
			text(w, codes.BadRequest, "malformed_csr: "+err.Error())
			return
		}
		if err := csr.CheckSignature(); err != nil {
			text(w, codes.BadRequest, "csr_signature: "+err.Error())
			return
		}
		switch csr.Subject.CommonName {
		case CNHeld:
			text(w, codes.ServiceUnavailable, "held: waiting for an operator", maxAge(30))
			return
		case CNHeldDefault:
			text(w, codes.ServiceUnavailable, "overloaded")
			return
		case CNGhost:
			text(w, codes.Forbidden, "unknown_device: no provenance for this IDevID")
			return
		case CNBare:
			_ = w.SetResponse(codes.BadRequest, message.TextPlain, nil)
			return
		case CNCreated:
			_ = w.SetResponse(codes.Created, formatPKIXCert, nil)
			return
		case CNGarbage:
			_ = w.SetResponse(codes.Changed, formatPKCS7Certs, bytes.NewReader([]byte("not pkcs7")))
			return
		}
		if renew {
			if err := peer[0].CheckSignatureFrom(s.pki.Intermediate.Cert); err != nil {
				text(w, codes.Forbidden, "wrong_credential: renew with the LDevID")
				return
			}
		}
		cert, held, err := s.issue(csr)
		switch {
		case err != nil:
			text(w, codes.InternalServerError, "internal: "+err.Error())
			return
		case held:
			text(w, codes.ServiceUnavailable, "held: try again", maxAge(0))
			return
		}
		accept, err := req.Accept()
		if err != nil {
			accept = formatPKCS7Certs
		}
		if accept == formatPKIXCert {
			_ = w.SetResponse(codes.Changed, formatPKIXCert, bytes.NewReader(cert.Raw))
			return
		}
		der, err := pkcs7.DegenerateCertificate(cert.Raw)
		if err != nil {
			text(w, codes.InternalServerError, "internal: "+err.Error())
			return
		}
		_ = w.SetResponse(codes.Changed, formatPKCS7Certs, bytes.NewReader(der))
	}
}

// issue returns the certificate for the CSR's key, issuing it the first
// time, or held while the key has had fewer than HoldFirst requests.
func (s *Server) issue(csr *x509.CertificateRequest) (*x509.Certificate, bool, error) {
	spki, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil {
		return nil, false, err
	}
	key := string(spki)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.seen[key]++
	if s.seen[key] <= s.opts.HoldFirst {
		return nil, true, nil
	}
	if cert, ok := s.issued[key]; ok {
		return cert, false, nil
	}
	cert, err := s.pki.Intermediate.Issue(csr.Subject.CommonName, csr.PublicKey, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, false, err
	}
	s.issued[key] = cert
	return cert, false, nil
}

// PeerChain is the client's certificate chain, leaf first, as the server
// saw it in the handshake.
func PeerChain(w mux.ResponseWriter) []*x509.Certificate {
	switch c := w.Conn().NetConn().(type) {
	case *piondtls.Conn:
		st, ok := c.ConnectionState()
		if !ok {
			return nil
		}
		out := make([]*x509.Certificate, 0, len(st.PeerCertificates))
		for _, der := range st.PeerCertificates {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil
			}
			out = append(out, cert)
		}
		return out
	case *tls.Conn:
		return c.ConnectionState().PeerCertificates
	}
	return nil
}
