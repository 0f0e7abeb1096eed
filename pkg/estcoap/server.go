package estcoap

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/tcp"
	tcpclient "github.com/plgd-dev/go-coap/v3/tcp/client"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/smallstep/pkcs7"

	"github.com/embark-iot/embark/pkg/crl"
	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/devattr"
	"github.com/embark-iot/embark/pkg/onboard"
)

// Core is what the adapter needs of the onboarding core.
type Core interface {
	Enroll(ctx context.Context, req onboard.Request) (*onboard.Result, error)
	Renew(ctx context.Context, req onboard.Request) (*onboard.Result, error)
}

// ProfileSource answers a device with its network profile; optional.
type ProfileSource interface {
	ProfileOf(ctx context.Context, chain []*x509.Certificate) (onboard.Profile, error)
}

// Config configures a Server.
type Config struct {
	// Core answers enrollments and renewals.
	Core Core
	// CACerts returns the CA chain served at /crts: issuing intermediate
	// first, root last.
	CACerts func() []*x509.Certificate
	// Certificate is the server's own certificate chain and key.
	Certificate tls.Certificate
	// MaxBody is the largest request body accepted, whole or reassembled
	// from blocks. Default 8 KiB.
	MaxBody int
	// HandshakeTimeout bounds a DTLS/TLS handshake. Default 10 s.
	HandshakeTimeout time.Duration
	// RequestTimeout bounds the core's work on one request. Default 30 s.
	RequestTimeout time.Duration
	// Logger receives errors and refusals. Default: discard.
	Logger *slog.Logger
	// CertStatus, if set, is asked about the client certificate of every
	// new DTLS/TLS session; an error refuses the handshake (revoked or
	// superseded LDevIDs).
	CertStatus func(leaf *x509.Certificate) error
	// CRL, if set, serves the issuing CA's current CRL at /embark/crl.
	CRL func(context.Context) ([]byte, error)
	// CRLOf, if set, serves /embark/crl instead of CRL: the CRL of the
	// intermediate whose key id (hex) the query parameter "aki" names,
	// or of the active intermediate without one. A device passes the
	// authority key identifier of its own certificate. An error wrapping
	// crl.ErrUnknownIssuer is answered 4.04.
	CRLOf func(ctx context.Context, issuer string) ([]byte, error)
	// GetCertificate, if set, returns the server certificate chain and key
	// for each new DTLS/TLS session in place of Certificate, so that it
	// may change while the server runs (a CA rollover).
	GetCertificate func() (*tls.Certificate, error)
	// Desired, if set, serves the observable status resource
	// /embark/status (status.go); Core must then be an Identifier.
	Desired *desired.Store
	// Registrar, if set, serves the BRSKI resources /.well-known/brski/rv,
	// vs and es (brski.go).
	Registrar VoucherRegistrar
}

// Server serves EST-coaps on any number of DTLS and TLS listeners.
type Server struct {
	cfg    Config
	router *mux.Router
	log    *slog.Logger

	mu       sync.Mutex
	stops    []func()
	wg       sync.WaitGroup
	crts281  []byte
	crts287  []byte
	att      []byte
	parsed   map[string]*x509.Certificate
	blocks   *reassembler
	sessions sessions
	status   observers
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Core == nil || cfg.CACerts == nil {
		return nil, errors.New("estcoap: Core and CACerts are required")
	}
	if len(cfg.Certificate.Certificate) == 0 {
		return nil, errors.New("estcoap: a server certificate is required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 8 << 10
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, router: mux.NewRouter(), parsed: map[string]*x509.Certificate{}}
	s.blocks = newReassembler(cfg.MaxBody)
	if err := s.refreshCACerts(); err != nil {
		return nil, err
	}
	att, err := csrAttrs()
	if err != nil {
		return nil, err
	}
	s.att = att
	for _, root := range []string{"/.well-known/est", "/est"} {
		s.handle(root+"/crts", s.crts)
		s.handle(root+"/sen", s.enroll(false))
		s.handle(root+"/sren", s.enroll(true))
		s.handle(root+"/att", s.attrs)
	}
	s.handle("/.well-known/core", s.core)
	if cfg.CRL != nil || cfg.CRLOf != nil {
		s.handle("/embark/crl", s.crlResource)
	}
	if ps, ok := cfg.Core.(ProfileSource); ok {
		s.handle("/embark/profile", s.profile(ps))
	}
	if err := s.serveStatus(); err != nil {
		return nil, err
	}
	s.serveBRSKI()
	s.router.DefaultHandle(mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		s.fail(w, codes.NotFound, onboard.ReasonBadRequest, "no such resource", 0)
	}))
	return s, nil
}

func (s *Server) handle(path string, h mux.HandlerFunc) {
	_ = s.router.Handle(path, h) // paths are constants: Handle fails only on duplicates
}

// RefreshCACerts reads Config.CACerts again for /crts: after a CA rollover
// or the retirement of an intermediate.
func (s *Server) RefreshCACerts() error { return s.refreshCACerts() }

// refreshCACerts re-encodes the /crts answers (after a CA change).
func (s *Server) refreshCACerts() error {
	chain := s.cfg.CACerts()
	if len(chain) == 0 {
		return errors.New("estcoap: empty CA chain")
	}
	var raw []byte
	for _, c := range chain {
		raw = append(raw, c.Raw...)
	}
	p7, err := pkcs7.DegenerateCertificate(raw)
	if err != nil {
		return fmt.Errorf("estcoap: encode CA certificates: %w", err)
	}
	s.mu.Lock()
	s.crts281, s.crts287 = p7, chain[len(chain)-1].Raw
	s.mu.Unlock()
	return nil
}

// DTLSConfig returns the DTLS configuration the server listens with: DTLS
// 1.2, the RFC 9148 mandatory cipher suite and its GCM sibling, extended
// master secret, HelloVerifyRequest cookies (pion's default) and a client
// certificate requested, not required (/crts is public). A presented
// certificate's CertificateVerify is always checked by pion; the chain is
// verified by the core, which knows which anchor each resource needs.
func (s *Server) DTLSConfig() *piondtls.Config {
	c := &piondtls.Config{
		Certificates: []tls.Certificate{s.cfg.Certificate},
		CipherSuites: []piondtls.CipherSuiteID{
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		},
		ClientAuth:           piondtls.RequestClientCert,
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return s.checkPeer(raw)
		},
	}
	if get := s.cfg.GetCertificate; get != nil {
		c.Certificates = nil // else pion uses them for clients without SNI
		c.GetCertificate = func(*piondtls.ClientHelloInfo) (*tls.Certificate, error) { return get() }
	}
	return c
}

// TLSConfig returns the TLS configuration of the CoAP-over-TLS listener
// (RFC 8323): ALPN "coap", TLS 1.2 or 1.3, client certificate requested.
func (s *Server) TLSConfig() *tls.Config {
	c := &tls.Config{
		Certificates: []tls.Certificate{s.cfg.Certificate},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"coap"},
		ClientAuth:   tls.RequestClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return s.checkPeer(raw)
		},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
	if get := s.cfg.GetCertificate; get != nil {
		c.Certificates = nil // else crypto/tls uses them for clients without SNI
		c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return get() }
	}
	return c
}

// ListenDTLS starts serving CoAP over DTLS on a UDP address ("127.0.0.1:0"
// for any port) and returns the bound address.
func (s *Server) ListenDTLS(addr string) (net.Addr, error) {
	l, err := coapnet.NewDTLSListener("udp", addr, s.DTLSConfig())
	if err != nil {
		return nil, fmt.Errorf("estcoap: listen dtls %s: %w", addr, err)
	}
	srv := dtls.NewServer(
		options.WithMux(s),
		options.WithMaxMessageSize(uint32(s.cfg.MaxBody+1024)),
		options.WithBlockwise(true, blockwise.SZX1024, 30*time.Second),
		options.WithDTLSHandshakeTimeout(s.cfg.HandshakeTimeout),
		options.WithErrors(s.bgError),
		options.WithProcessReceivedMessageFunc(s.block1UDP()),
		options.WithInactivityMonitor(2*time.Minute, func(cc *udpclient.Conn) { _ = cc.Close() }),
	)
	s.start(func() error { return srv.Serve(l) }, srv.Stop)
	return l.Addr(), nil
}

// ListenTLS starts serving CoAP over TLS over TCP and returns the bound address.
func (s *Server) ListenTLS(addr string) (net.Addr, error) {
	l, err := coapnet.NewTLSListener("tcp", addr, s.TLSConfig())
	if err != nil {
		return nil, fmt.Errorf("estcoap: listen tls %s: %w", addr, err)
	}
	srv := tcp.NewServer(
		options.WithMux(s),
		options.WithMaxMessageSize(uint32(s.cfg.MaxBody+1024)),
		// Block-wise off over TCP: answers need no fragmenting on a stream,
		// and request blocks are reassembled by ServeCOAP.
		options.WithBlockwise(false, blockwise.SZX1024, 30*time.Second),
		options.WithErrors(s.bgError),
		options.WithInactivityMonitor(2*time.Minute, func(cc *tcpclient.Conn) { _ = cc.Close() }),
	)
	s.start(func() error { return srv.Serve(l) }, srv.Stop)
	return l.Addr(), nil
}

func (s *Server) start(serve func() error, stop func()) {
	s.mu.Lock()
	s.stops = append(s.stops, stop)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := serve(); err != nil {
			s.log.Error("coap listener stopped", slog.Any("err", err))
		}
	}()
}

// Close stops every listener and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	stops := s.stops
	s.stops = nil
	s.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	s.wg.Wait()
	return nil
}

func (s *Server) bgError(err error) {
	// Handshake failures of untrusted or broken peers are routine on an
	// exposed port: debug level.
	s.log.Debug("coap", slog.Any("err", err))
}

// crts serves the CA certificates.
func (s *Server) crts(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() != codes.GET {
		s.fail(w, codes.MethodNotAllowed, onboard.ReasonBadRequest, "crts answers GET", 0)
		return
	}
	s.mu.Lock()
	p7, root := s.crts281, s.crts287
	s.mu.Unlock()
	switch accept(r, FormatPKCS7Certs) {
	case FormatPKCS7Certs:
		s.reply(w, codes.Content, FormatPKCS7Certs, p7)
	case FormatPKIXCert:
		s.reply(w, codes.Content, FormatPKIXCert, root)
	default:
		s.fail(w, codes.NotAcceptable, onboard.ReasonBadRequest, "crts offers 281 and 287", 0)
	}
}

// attrs serves the CSR attributes: an EC P-256 key, signed with ECDSA/SHA-256.
func (s *Server) attrs(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() != codes.GET {
		s.fail(w, codes.MethodNotAllowed, onboard.ReasonBadRequest, "att answers GET", 0)
		return
	}
	if f := accept(r, FormatCSRAttrs); f != FormatCSRAttrs {
		s.fail(w, codes.NotAcceptable, onboard.ReasonBadRequest, "att offers 285", 0)
		return
	}
	s.reply(w, codes.Content, FormatCSRAttrs, s.att)
}

func (s *Server) enroll(renew bool) mux.HandlerFunc {
	op := "sen"
	if renew {
		op = "sren"
	}
	return func(w mux.ResponseWriter, r *mux.Message) {
		if r.Code() != codes.POST {
			s.fail(w, codes.MethodNotAllowed, onboard.ReasonBadRequest, op+" answers POST", 0)
			return
		}
		if cf, err := r.ContentFormat(); err != nil || cf != FormatPKCS10 {
			s.fail(w, codes.UnsupportedMediaType, onboard.ReasonBadRequest, op+" takes a CSR as content format 286", 0)
			return
		}
		want := accept(r, FormatPKCS7Certs)
		if want != FormatPKCS7Certs && want != FormatPKIXCert {
			s.fail(w, codes.NotAcceptable, onboard.ReasonBadRequest, op+" answers 281 or 287", 0)
			return
		}
		body, err := readBody(r, s.cfg.MaxBody)
		if err != nil {
			s.fail(w, codes.RequestEntityTooLarge, onboard.ReasonPayloadTooLarge, err.Error(), 0)
			return
		}
		chain, transport, err := s.peerChain(w.Conn().NetConn())
		if err != nil {
			s.fail(w, codes.InternalServerError, onboard.ReasonInternal, "cannot read the client certificate", 0)
			s.log.Error("peer certificate", slog.Any("err", err))
			return
		}
		s.trackPeer(w.Conn(), chain)
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		req := onboard.Request{Chain: chain, CSR: body, Transport: transport, Remote: w.Conn().RemoteAddr().String()}
		var res *onboard.Result
		if renew {
			res, err = s.cfg.Core.Renew(ctx, req)
		} else {
			res, err = s.cfg.Core.Enroll(ctx, req)
		}
		if err != nil {
			s.refuse(w, op, req.Remote, err)
			return
		}
		if want == FormatPKIXCert {
			s.reply(w, codes.Changed, FormatPKIXCert, res.Certificate.Raw)
			return
		}
		p7, err := pkcs7.DegenerateCertificate(res.Certificate.Raw)
		if err != nil {
			s.fail(w, codes.InternalServerError, onboard.ReasonInternal, "cannot encode the certificate", 0)
			return
		}
		s.reply(w, codes.Changed, FormatPKCS7Certs, p7)
	}
}

// profile serves GET /embark/profile: the authenticated device's network
// profile as JSON (content format 50): zone, security level, segment,
// allowed topics and the notice still pending for it.
func (s *Server) profile(ps ProfileSource) mux.HandlerFunc {
	return func(w mux.ResponseWriter, r *mux.Message) {
		if r.Code() != codes.GET {
			s.fail(w, codes.MethodNotAllowed, onboard.ReasonBadRequest, "profile answers GET", 0)
			return
		}
		chain, _, err := s.peerChain(w.Conn().NetConn())
		if err != nil {
			s.fail(w, codes.InternalServerError, onboard.ReasonInternal, "cannot read the client certificate", 0)
			return
		}
		s.trackPeer(w.Conn(), chain)
		p, err := ps.ProfileOf(r.Context(), chain)
		if err != nil {
			s.refuse(w, "profile", w.Conn().RemoteAddr().String(), err)
			return
		}
		b, err := json.Marshal(p)
		if err != nil {
			s.fail(w, codes.InternalServerError, onboard.ReasonInternal, "cannot encode the profile", 0)
			return
		}
		s.reply(w, codes.Content, message.AppJSON, b)
	}
}

// crlResource serves GET /embark/crl[?aki=HEX]: the CRL of the
// intermediate with that key id, by default the active one's, DER (content
// format 42, application/octet-stream: CoAP has none for pkix-crl).
func (s *Server) crlResource(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() != codes.GET {
		s.fail(w, codes.MethodNotAllowed, onboard.ReasonBadRequest, "crl answers GET", 0)
		return
	}
	aki := ""
	if qs, err := r.Queries(); err == nil {
		for _, q := range qs {
			if v, ok := strings.CutPrefix(q, "aki="); ok {
				aki = v
			}
		}
	}
	if len(aki) > 64 || strings.Trim(aki, "0123456789abcdefABCDEF") != "" {
		s.fail(w, codes.BadRequest, onboard.ReasonBadRequest, "aki: want the hex authority key identifier of your certificate", 0)
		return
	}
	var der []byte
	var err error
	switch {
	case s.cfg.CRLOf != nil:
		der, err = s.cfg.CRLOf(r.Context(), aki)
	case aki != "":
		err = crl.ErrUnknownIssuer
	default:
		der, err = s.cfg.CRL(r.Context())
	}
	if errors.Is(err, crl.ErrUnknownIssuer) {
		s.fail(w, codes.NotFound, onboard.ReasonBadRequest, "no CRL for intermediate "+aki, 0)
		return
	}
	if err != nil {
		s.log.Error("crl", slog.Any("err", err))
		s.fail(w, codes.InternalServerError, onboard.ReasonInternal, "CRL unavailable", 0)
		return
	}
	s.reply(w, codes.Content, message.AppOctets, der)
}

// core answers resource discovery (RFC 6690), with an rt filter.
func (s *Server) core(w mux.ResponseWriter, r *mux.Message) {
	links := []struct{ path, rt, ct string }{
		{"/est", "ace.est", ""},
		{"/est/crts", "ace.est.crts", `"281 287"`},
		{"/est/sen", "ace.est.sen", `"281 287"`},
		{"/est/sren", "ace.est.sren", `"281 287"`},
		{"/est/att", "ace.est.att", "285"},
		{"/embark/profile", "embark.profile", "50"},
		{"/embark/crl", "embark.crl", "42"},
		{"/embark/status", "embark.status", "60;obs"}, // obs: observable (RFC 7641)
	}
	filter := ""
	if qs, err := r.Queries(); err == nil {
		for _, q := range qs {
			if v, ok := strings.CutPrefix(q, "rt="); ok {
				filter = v
			}
		}
	}
	var b strings.Builder
	for _, l := range links {
		if filter != "" && !matchRT(filter, l.rt) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `<%s>;rt="%s"`, l.path, l.rt)
		if l.ct != "" {
			fmt.Fprintf(&b, ";ct=%s", l.ct)
		}
	}
	s.reply(w, codes.Content, message.AppLinkFormat, []byte(b.String()))
}

func matchRT(filter, rt string) bool {
	if p, ok := strings.CutSuffix(filter, "*"); ok {
		return strings.HasPrefix(rt, p)
	}
	return filter == rt
}

func (s *Server) refuse(w mux.ResponseWriter, op, remote string, err error) {
	var e *onboard.Error
	if !errors.As(err, &e) {
		e = &onboard.Error{Reason: onboard.ReasonInternal, Msg: "internal error", Err: err}
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "refused", slog.String("op", op),
		slog.String("remote", remote), slog.String("reason", string(e.Reason)), slog.String("msg", e.Msg))
	s.fail(w, codeFor(e.Reason), e.Reason, e.Msg, e.RetryAfter)
}

// fail answers with a diagnostic payload "reason: message"; a positive
// retryAfter becomes Max-Age (whole seconds, at least 1).
func (s *Server) fail(w mux.ResponseWriter, code codes.Code, reason onboard.Reason, msg string, retryAfter time.Duration) {
	var opts []message.Option
	if retryAfter > 0 {
		secs := uint32(math.Ceil(retryAfter.Seconds()))
		opts = append(opts, maxAge(secs))
	}
	if code == codes.RequestEntityTooLarge {
		opts = append(opts, size1(uint32(s.cfg.MaxBody)))
	}
	s.reply(w, code, message.TextPlain, []byte(string(reason)+": "+msg), opts...)
}

func (s *Server) reply(w mux.ResponseWriter, code codes.Code, cf message.MediaType, body []byte, opts ...message.Option) {
	if err := w.SetResponse(code, cf, bytes.NewReader(body), opts...); err != nil {
		s.log.Error("set response", slog.Any("err", err))
	}
}

func maxAge(secs uint32) message.Option {
	buf := make([]byte, 4)
	n, _ := message.EncodeUint32(buf, secs)
	return message.Option{ID: message.MaxAge, Value: buf[:n]}
}

func size1(n uint32) message.Option {
	buf := make([]byte, 4)
	l, _ := message.EncodeUint32(buf, n)
	return message.Option{ID: message.Size1, Value: buf[:l]}
}

// accept returns the media type the client asked for, or def.
func accept(r *mux.Message, def message.MediaType) message.MediaType {
	v, err := r.GetOptionUint32(message.Accept)
	if err != nil {
		return def
	}
	return message.MediaType(v)
}

func readBody(r *mux.Message, limit int) ([]byte, error) {
	b := r.Body()
	if b == nil {
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(b, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("body exceeds %d bytes", limit)
	}
	return data, nil
}

// peerChain returns the client certificates of a DTLS or TLS connection.
func (s *Server) peerChain(nc net.Conn) ([]*x509.Certificate, string, error) {
	switch c := nc.(type) {
	case *piondtls.Conn:
		st, ok := c.ConnectionState()
		if !ok {
			return nil, "coaps", errors.New("dtls connection state unavailable")
		}
		chain := make([]*x509.Certificate, 0, len(st.PeerCertificates))
		for i, der := range st.PeerCertificates {
			cert, err := s.parseCert(der, i > 0)
			if err != nil {
				return nil, "coaps", fmt.Errorf("parse peer certificate: %w", err)
			}
			chain = append(chain, cert)
		}
		return chain, "coaps", nil
	case *tls.Conn:
		return c.ConnectionState().PeerCertificates, "coaps+tcp", nil
	}
	return nil, "", fmt.Errorf("unexpected connection type %T", nc)
}

// maxParsedCAs bounds the cache of parsed CA certificates.
const maxParsedCAs = 256

// parseCert parses a peer certificate. CA certificates sent along by
// devices are the same for a whole production batch: they are parsed once
// and shared (parsed certificates are read-only).
func (s *Server) parseCert(der []byte, ca bool) (*x509.Certificate, error) {
	if !ca {
		return x509.ParseCertificate(der)
	}
	s.mu.Lock()
	c, ok := s.parsed[string(der)]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.parsed) < maxParsedCAs {
		s.parsed[string(der)] = c
	}
	s.mu.Unlock()
	return c, nil
}

// csrAttrs encodes the CSR attributes (RFC 7030 §4.5.2): ecPublicKey with
// P-256, ecdsa-with-SHA256, and the firmware package identifier and digest
// the device may report.
func csrAttrs() ([]byte, error) {
	type attribute struct {
		Type   asn1.ObjectIdentifier
		Values []asn1.ObjectIdentifier `asn1:"set"`
	}
	var (
		oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
		oidP256        = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
		oidECDSASHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	)
	var seq []asn1.RawValue
	// The firmware facts a device may report (package devattr, RFC 4108).
	for _, v := range []any{attribute{Type: oidECPublicKey, Values: []asn1.ObjectIdentifier{oidP256}}, oidECDSASHA256,
		devattr.OIDFirmwareVersion, devattr.OIDFirmwareSHA256} {
		b, err := asn1.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("estcoap: csr attributes: %w", err)
		}
		seq = append(seq, asn1.RawValue{FullBytes: b})
	}
	out, err := asn1.Marshal(seq)
	if err != nil {
		return nil, fmt.Errorf("estcoap: csr attributes: %w", err)
	}
	return out, nil
}

func readAll(m *pool.Message) ([]byte, error) {
	b := m.Body()
	if b == nil {
		return nil, nil
	}
	if _, err := b.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(b)
}

func bytesReader(b []byte) io.ReadSeeker { return bytes.NewReader(b) }
