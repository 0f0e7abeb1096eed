package estclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/elliptic"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options"
	coaptcp "github.com/plgd-dev/go-coap/v3/tcp"
	"github.com/smallstep/pkcs7"
)

// Content formats of EST-coaps (RFC 9148, section 8.3).
const (
	// FormatCSRAttrs is application/csrattrs.
	FormatCSRAttrs message.MediaType = 285
	// FormatPKCS7Certs is application/pkcs7-mime; smime-type=certs-only.
	FormatPKCS7Certs message.MediaType = 281
	// FormatPKCS10 is application/pkcs10.
	FormatPKCS10 message.MediaType = 286
	// FormatPKIXCert is application/pkix-cert.
	FormatPKIXCert message.MediaType = 287
)

// DefaultPathPrefix is the mandatory EST-coaps root (RFC 9148, section 4.1).
const DefaultPathPrefix = "/.well-known/est"

// maxBody bounds what the client reads from one response.
const maxBody = 64 << 10

// Config says where and how to connect.
type Config struct {
	// Target is coaps://host[:port] or coaps+tcp://host[:port].
	Target string
	// Roots authenticate the server. Required.
	Roots *x509.CertPool
	// ServerName is the name (or IP address) the server certificate must
	// carry. Default: the host of Target.
	ServerName string
	// Certificate is the client certificate chain and key presented in
	// the handshake; nil presents none.
	Certificate *tls.Certificate
	// Timeout bounds the handshake and each request; zero leaves them to
	// the caller's context.
	Timeout time.Duration
	// PathPrefix is the EST root. Default: DefaultPathPrefix; "/est" uses
	// the short aliases.
	PathPrefix string
	// CertFormat is the Accept of Enroll and Reenroll: FormatPKCS7Certs
	// (the default) or FormatPKIXCert.
	CertFormat message.MediaType
	// Logger receives background transport errors at debug level.
	// Default: discard.
	Logger *slog.Logger
}

// conn is what the client needs from a go-coap connection; the DTLS and
// the TCP connection types both have it.
type conn interface {
	Get(ctx context.Context, path string, opts ...message.Option) (*pool.Message, error)
	Post(ctx context.Context, path string, contentFormat message.MediaType, payload io.ReadSeeker, opts ...message.Option) (*pool.Message, error)
	ReleaseMessage(m *pool.Message)
	Close() error
}

// Client is one secure session to an EST-coaps server. Its methods may be
// called from several goroutines; requests on one session are serialized
// by the transport.
type Client struct {
	target     Target
	prefix     string
	certFormat message.MediaType
	timeout    time.Duration
	conn       conn
	peer       []*x509.Certificate

	closeOnce sync.Once
	closeErr  error
}

// Dial opens a session to c.Target and completes one full handshake (no
// session resumption). A server that is not authenticated by c.Roots under
// the expected name is refused with an error wrapping ErrHandshake.
func Dial(ctx context.Context, c Config) (*Client, error) {
	t, err := ParseTarget(c.Target)
	if err != nil {
		return nil, err
	}
	if c.Roots == nil {
		return nil, fmt.Errorf("%w: no root certificates to authenticate the server", ErrConfig)
	}
	switch c.CertFormat {
	case 0:
		c.CertFormat = FormatPKCS7Certs
	case FormatPKCS7Certs, FormatPKIXCert:
	default:
		return nil, fmt.Errorf("%w: certificate format %d is neither 281 nor 287", ErrConfig, c.CertFormat)
	}
	if c.PathPrefix == "" {
		c.PathPrefix = DefaultPathPrefix
	}
	if !strings.HasPrefix(c.PathPrefix, "/") {
		return nil, fmt.Errorf("%w: path prefix %q must start with /", ErrConfig, c.PathPrefix)
	}
	if c.ServerName == "" {
		c.ServerName = t.Host
	}
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	background := func(err error) {
		logger.Debug("estclient: transport", "target", t.String(), "err", err)
	}

	hctx := ctx
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}

	cl := &Client{
		target:     t,
		prefix:     strings.TrimSuffix(c.PathPrefix, "/"),
		certFormat: c.CertFormat,
		timeout:    c.Timeout,
	}
	switch t.Transport {
	case DTLS:
		err = cl.dialDTLS(hctx, c, background)
	case TLS:
		err = cl.dialTLS(hctx, c, background)
	}
	if err != nil {
		return nil, err
	}
	return cl, nil
}

func (cl *Client) dialDTLS(ctx context.Context, c Config, background func(error)) error {
	var d net.Dialer
	udp, err := d.DialContext(ctx, "udp", cl.target.Addr())
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrHandshake, cl.target, err)
	}
	cfg := &piondtls.Config{
		RootCAs:              c.Roots,
		ServerName:           c.ServerName,
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
		CipherSuites: []piondtls.CipherSuiteID{
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		},
		// P-256 first: the curve CoAP devices must implement (RFC 7252
		// §9.1.3.3) and the one their crypto hardware accelerates.
		EllipticCurves: []elliptic.Curve{elliptic.P256, elliptic.X25519, elliptic.P384},
	}
	if c.Certificate != nil {
		cfg.Certificates = []tls.Certificate{*c.Certificate}
	}
	dc, err := piondtls.Client(dtlsnet.PacketConnFromConn(udp), udp.RemoteAddr(), cfg)
	if err != nil {
		_ = udp.Close()
		return fmt.Errorf("%w: %s: %w", ErrHandshake, cl.target, err)
	}
	if err := dc.HandshakeContext(ctx); err != nil {
		_ = dc.Close()
		return fmt.Errorf("%w: %s: %w", ErrHandshake, cl.target, err)
	}
	if st, ok := dc.ConnectionState(); ok {
		cl.peer = parsePeer(st.PeerCertificates)
	}
	cl.conn = coapdtls.Client(dc, options.WithCloseSocket(), options.WithErrors(background))
	return nil
}

func (cl *Client) dialTLS(ctx context.Context, c Config, background func(error)) error {
	cfg := &tls.Config{
		RootCAs:    c.Roots,
		ServerName: c.ServerName,
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"coap"},
	}
	if c.Certificate != nil {
		cfg.Certificates = []tls.Certificate{*c.Certificate}
	}
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", cl.target.Addr())
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrHandshake, cl.target, err)
	}
	tc, ok := nc.(*tls.Conn)
	if !ok {
		_ = nc.Close()
		return fmt.Errorf("%w: %s: not a TLS connection", ErrHandshake, cl.target)
	}
	cl.peer = tc.ConnectionState().PeerCertificates
	cc, err := coaptcp.Client(tc, options.WithCloseSocket(), options.WithErrors(background))
	if err != nil {
		_ = tc.Close()
		return fmt.Errorf("%w: %s: %w", ErrHandshake, cl.target, err)
	}
	cl.conn = cc
	return nil
}

func parsePeer(raw [][]byte) []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(raw))
	for _, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil
		}
		out = append(out, c)
	}
	return out
}

// Target is the target the client is connected to.
func (c *Client) Target() Target { return c.target }

// PeerCertificates is the chain the server presented in the handshake,
// leaf first.
func (c *Client) PeerCertificates() []*x509.Certificate { return c.peer }

// Close ends the session. Closing twice returns the first result.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		if c.conn != nil {
			c.closeErr = c.conn.Close()
		}
	})
	return c.closeErr
}

// CACerts fetches the CA certificates (GET crts, 281): the certificates the
// server distributes, as it ordered them.
func (c *Client) CACerts(ctx context.Context) ([]*x509.Certificate, error) {
	const op = "estclient: crts"
	a, err := c.get(ctx, "/crts", FormatPKCS7Certs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := a.expect(FormatPKCS7Certs); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	certs, err := parseCertsOnly(a.body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return certs, nil
}

// RootCert fetches the server's root certificate (GET crts, Accept 287).
func (c *Client) RootCert(ctx context.Context) (*x509.Certificate, error) {
	const op = "estclient: crts"
	a, err := c.get(ctx, "/crts", FormatPKIXCert)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := a.expect(FormatPKIXCert); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	cert, err := x509.ParseCertificate(a.body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", op, ErrResponse, err)
	}
	return cert, nil
}

// Enroll sends a DER PKCS#10 request to sen and returns the issued
// certificate. The session must be authenticated with the IDevID.
func (c *Client) Enroll(ctx context.Context, csrDER []byte) (*x509.Certificate, error) {
	cert, err := c.enroll(ctx, "/sen", csrDER)
	if err != nil {
		return nil, fmt.Errorf("estclient: sen: %w", err)
	}
	return cert, nil
}

// Reenroll sends a DER PKCS#10 request to sren and returns the issued
// certificate. The session must be authenticated with the current LDevID.
func (c *Client) Reenroll(ctx context.Context, csrDER []byte) (*x509.Certificate, error) {
	cert, err := c.enroll(ctx, "/sren", csrDER)
	if err != nil {
		return nil, fmt.Errorf("estclient: sren: %w", err)
	}
	return cert, nil
}

func (c *Client) enroll(ctx context.Context, path string, csrDER []byte) (*x509.Certificate, error) {
	a, err := c.post(ctx, path, csrDER, c.certFormat)
	if err != nil {
		return nil, err
	}
	if err := a.expect(c.certFormat); err != nil {
		return nil, err
	}
	if c.certFormat == FormatPKIXCert {
		cert, err := x509.ParseCertificate(a.body)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrResponse, err)
		}
		return cert, nil
	}
	certs, err := parseCertsOnly(a.body)
	if err != nil {
		return nil, err
	}
	for _, cert := range certs {
		if !cert.IsCA {
			return cert, nil
		}
	}
	return nil, fmt.Errorf("%w: no end-entity certificate in the answer", ErrResponse)
}

// CSRAttrs fetches the CSR attributes (GET att, 285), DER as sent.
func (c *Client) CSRAttrs(ctx context.Context) ([]byte, error) {
	a, err := c.get(ctx, "/att", 0)
	if err != nil {
		return nil, fmt.Errorf("estclient: att: %w", err)
	}
	if err := a.expect(FormatCSRAttrs); err != nil {
		return nil, fmt.Errorf("estclient: att: %w", err)
	}
	return a.body, nil
}

// Discover fetches /.well-known/core (RFC 6690 link format).
func (c *Client) Discover(ctx context.Context) (string, error) {
	a, err := c.do(ctx, func(ctx context.Context) (*pool.Message, error) {
		return c.conn.Get(ctx, "/.well-known/core")
	}, codes.Content)
	if err != nil {
		return "", fmt.Errorf("estclient: discover: %w", err)
	}
	if err := a.expect(message.AppLinkFormat); err != nil {
		return "", fmt.Errorf("estclient: discover: %w", err)
	}
	return string(a.body), nil
}

func (c *Client) get(ctx context.Context, path string, accept message.MediaType) (answer, error) {
	return c.do(ctx, func(ctx context.Context) (*pool.Message, error) {
		return c.conn.Get(ctx, c.prefix+path, acceptOptions(accept)...)
	}, codes.Content)
}

func (c *Client) post(ctx context.Context, path string, body []byte, accept message.MediaType) (answer, error) {
	return c.do(ctx, func(ctx context.Context) (*pool.Message, error) {
		return c.conn.Post(ctx, c.prefix+path, FormatPKCS10, bytes.NewReader(body), acceptOptions(accept)...)
	}, codes.Changed)
}

func acceptOptions(accept message.MediaType) []message.Option {
	if accept == 0 {
		return nil
	}
	buf := make([]byte, 4)
	n, err := message.EncodeUint32(buf, uint32(accept))
	if err != nil {
		return nil
	}
	return []message.Option{{ID: message.Accept, Value: buf[:n]}}
}

// answer is a success response: its payload and Content-Format.
type answer struct {
	body      []byte
	format    message.MediaType
	hasFormat bool
}

// expect accepts an answer whose Content-Format is want, or that has none
// (the format is then the one asked for).
func (a answer) expect(want message.MediaType) error {
	if !a.hasFormat || a.format == want {
		return nil
	}
	return fmt.Errorf("%w: content format %d, want %d", ErrResponse, a.format, want)
}

// do runs one request, reads the answer and turns a CoAP error code into
// a *StatusError and an unexpected success code into ErrResponse.
func (c *Client) do(ctx context.Context, send func(context.Context) (*pool.Message, error), want codes.Code) (answer, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	resp, err := send(ctx)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			if cerr := ctx.Err(); cerr != nil {
				return answer{}, cerr
			}
		}
		return answer{}, err
	}
	defer c.conn.ReleaseMessage(resp)

	body, err := readBody(resp)
	if err != nil {
		return answer{}, err
	}
	code := resp.Code()
	if code >= codes.BadRequest {
		se := &StatusError{Code: code}
		se.Reason, se.Message = parseDiagnostic(body)
		if ma, err := resp.GetOptionUint32(message.MaxAge); err == nil {
			se.MaxAge = time.Duration(ma) * time.Second
		} else if se.Retryable() {
			se.MaxAge = DefaultMaxAge
		}
		return answer{}, se
	}
	if code != want {
		return answer{}, fmt.Errorf("%w: code %s %s, want %s %s", ErrResponse, CodeString(code), code, CodeString(want), want)
	}
	a := answer{body: body}
	if cf, err := resp.ContentFormat(); err == nil {
		a.format, a.hasFormat = cf, true
	}
	return a, nil
}

func readBody(m *pool.Message) ([]byte, error) {
	r := m.Body()
	if r == nil {
		return nil, nil
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	body, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("%w: payload larger than %d bytes", ErrResponse, maxBody)
	}
	return body, nil
}

func parseCertsOnly(body []byte) ([]*x509.Certificate, error) {
	p7, err := pkcs7.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: pkcs7: %v", ErrResponse, err)
	}
	if len(p7.Certificates) == 0 {
		return nil, fmt.Errorf("%w: pkcs7 holds no certificate", ErrResponse)
	}
	return p7.Certificates, nil
}

// Profile is a device's network profile as Embark serves it at
// /embark/profile (JSON).
type Profile struct {
	Device        string   `json:"device"`
	State         string   `json:"state"`
	Zone          string   `json:"zone,omitempty"`
	SecurityLevel int      `json:"security_level,omitempty"`
	Segment       string   `json:"segment,omitempty"`
	Topics        []string `json:"topics,omitempty"`
	Pending       string   `json:"pending,omitempty"`
	Policy        string   `json:"policy,omitempty"`
	Rule          string   `json:"rule,omitempty"`
}

// Profile fetches the device's own network profile; the connection must be
// authenticated with its LDevID.
func (c *Client) Profile(ctx context.Context) (*Profile, error) {
	a, err := c.do(ctx, func(ctx context.Context) (*pool.Message, error) {
		return c.conn.Get(ctx, "/embark/profile")
	}, codes.Content)
	if err != nil {
		return nil, fmt.Errorf("estclient: profile: %w", err)
	}
	if err := a.expect(message.AppJSON); err != nil {
		return nil, fmt.Errorf("estclient: profile: %w", err)
	}
	var p Profile
	if err := json.Unmarshal(a.body, &p); err != nil {
		return nil, fmt.Errorf("%w: profile: %v", ErrResponse, err)
	}
	return &p, nil
}
