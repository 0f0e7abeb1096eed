package estclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
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

	"github.com/embark-iot/embark/pkg/voucher"
)

// FormatVoucherCOSE is application/voucher-cose+cbor (constrained
// BRSKI): voucher requests and vouchers. Status telemetry is FormatCBOR.
const FormatVoucherCOSE message.MediaType = voucher.ContentFormatVoucherCOSE

// ErrProvisional reports a provisional session used after it was
// promoted or closed.
var ErrProvisional = errors.New("estclient: provisional session no longer usable")

// ProvisionalConfig says where a device that does not know its owner yet
// connects, and with which IDevID.
type ProvisionalConfig struct {
	// Target is coaps://host[:port] or coaps+tcp://host[:port].
	Target string
	// Certificate is the IDevID chain and key. Required: the registrar
	// authenticates the device by it.
	Certificate *tls.Certificate
	// Timeout, PathPrefix, CertFormat and Logger are those of [Config],
	// for the session once promoted.
	Timeout    time.Duration
	PathPrefix string
	CertFormat message.MediaType
	Logger     *slog.Logger
}

// Provisional is a session whose server is not authenticated yet: the
// provisional DTLS/TLS of RFC 8995 §5.1, opened by a factory-fresh device
// that cannot know its owner's CA. The handshake proves that the server
// holds the key of the certificate it presented (and authenticates the
// device with its IDevID), but the server's chain is only recorded, not
// trusted. The only request a provisional session offers is the voucher
// request ([Provisional.RequestVoucher]); [Provisional.Promote] turns it
// into a [Client] once the recorded chain verifies against the domain
// certificate pinned by a voucher the device verified — there is no other
// way to use it, and no way to skip that check.
type Provisional struct {
	mu     sync.Mutex
	cl     *Client // nil once promoted or closed
	peer   []*x509.Certificate
	target Target
}

// DialProvisional opens a provisional session (see [Provisional]).
func DialProvisional(ctx context.Context, c ProvisionalConfig) (*Provisional, error) {
	t, err := ParseTarget(c.Target)
	if err != nil {
		return nil, err
	}
	if c.Certificate == nil {
		return nil, fmt.Errorf("%w: a provisional session needs the IDevID", ErrConfig)
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
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	background := func(err error) { logger.Debug("estclient: transport", "target", t.String(), "err", err) }
	hctx := ctx
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cl := &Client{target: t, prefix: strings.TrimSuffix(c.PathPrefix, "/"), certFormat: c.CertFormat, timeout: c.Timeout}
	var rec recorder
	switch t.Transport {
	case DTLS:
		err = cl.dialProvisionalDTLS(hctx, c.Certificate, &rec, background)
	case TLS:
		err = cl.dialProvisionalTLS(hctx, c.Certificate, &rec, background)
	}
	if err != nil {
		return nil, err
	}
	cl.peer = rec.chain
	return &Provisional{cl: cl, peer: rec.chain, target: t}, nil
}

// recorder keeps the server's chain as presented in the handshake.
type recorder struct{ chain []*x509.Certificate }

// record parses the presented chain and refuses one that cannot serve:
// none, unparsable, or a leaf without server authentication. Whether it
// is trusted is decided by Promote.
func (r *recorder) record(raw [][]byte) error {
	if len(raw) == 0 || len(raw) > voucher.MaxChain+1 {
		return fmt.Errorf("the server presented %d certificates", len(raw))
	}
	chain := make([]*x509.Certificate, 0, len(raw))
	for _, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		chain = append(chain, c)
	}
	if eku := chain[0].ExtKeyUsage; len(eku) > 0 && !slices.Contains(eku, x509.ExtKeyUsageServerAuth) {
		return fmt.Errorf("the server certificate %s is not for server authentication", chain[0].Subject)
	}
	r.chain = chain
	return nil
}

func (cl *Client) dialProvisionalDTLS(ctx context.Context, cert *tls.Certificate, rec *recorder, background func(error)) error {
	var d net.Dialer
	udp, err := d.DialContext(ctx, "udp", cl.target.Addr())
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrHandshake, cl.target, err)
	}
	cfg := &piondtls.Config{
		Certificates: []tls.Certificate{*cert},
		// RFC 8995 §5.1 provisional DTLS: pion can only verify a chain
		// against roots known before the handshake, and the device learns
		// its owner's root from the voucher. So pion's verification is
		// deferred, not dropped: record keeps the chain, the key exchange
		// signature still proves the server holds the leaf's key, and
		// Promote verifies the chain against the pinned domain
		// certificate before the session carries anything but the
		// voucher request.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error { return rec.record(raw) },
		ExtendedMasterSecret:  piondtls.RequireExtendedMasterSecret,
		CipherSuites: []piondtls.CipherSuiteID{
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
			piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		},
		EllipticCurves: []elliptic.Curve{elliptic.P256, elliptic.X25519, elliptic.P384},
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
	if rec.chain == nil {
		_ = dc.Close()
		return fmt.Errorf("%w: %s: the server presented no certificate", ErrHandshake, cl.target)
	}
	cl.conn = coapdtls.Client(dc, options.WithCloseSocket(), options.WithErrors(background))
	return nil
}

func (cl *Client) dialProvisionalTLS(ctx context.Context, cert *tls.Certificate, rec *recorder, background func(error)) error {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{*cert},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"coap"},
		// RFC 8995 §5.1 provisional TLS; see dialProvisionalDTLS.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error { return rec.record(raw) },
	}
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", cl.target.Addr())
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrHandshake, cl.target, err)
	}
	tc, ok := nc.(*tls.Conn)
	if !ok || rec.chain == nil {
		_ = nc.Close()
		return fmt.Errorf("%w: %s: no TLS connection with a server certificate", ErrHandshake, cl.target)
	}
	cc, err := coaptcp.Client(tc, options.WithCloseSocket(), options.WithErrors(background))
	if err != nil {
		_ = tc.Close()
		return fmt.Errorf("%w: %s: %w", ErrHandshake, cl.target, err)
	}
	cl.conn = cc
	return nil
}

// PeerCertificates is the chain the server presented, leaf first: not
// trusted until Promote verified it. A device names the leaf's key in its
// voucher request ([voucher.SPKIHash]).
func (p *Provisional) PeerCertificates() []*x509.Certificate { return p.peer }

// Target is the target of the session.
func (p *Provisional) Target() Target { return p.target }

func (p *Provisional) client() (*Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cl == nil {
		return nil, ErrProvisional
	}
	return p.cl, nil
}

// RequestVoucher posts a signed voucher request (a [voucher.PledgeRequest])
// to /.well-known/brski/rv and returns the voucher the registrar answers
// with, unverified: the device verifies it with [voucher.Verify].
func (p *Provisional) RequestVoucher(ctx context.Context, request []byte) ([]byte, error) {
	cl, err := p.client()
	if err != nil {
		return nil, err
	}
	a, err := cl.do(ctx, func(ctx context.Context) (*pool.Message, error) {
		return cl.conn.Post(ctx, voucher.PathVoucherRequest, FormatVoucherCOSE, bytes.NewReader(request), acceptOptions(FormatVoucherCOSE)...)
	}, codes.Changed)
	if err != nil {
		return nil, fmt.Errorf("estclient: rv: %w", err)
	}
	if err := a.expect(FormatVoucherCOSE); err != nil {
		return nil, fmt.Errorf("estclient: rv: %w", err)
	}
	if len(a.body) == 0 {
		return nil, fmt.Errorf("estclient: rv: %w: empty voucher", ErrResponse)
	}
	return a.body, nil
}

// Promote verifies the server chain of the session against pinned, the
// domain certificate of a voucher the device verified, at the device's
// time now (zero: time.Now). On success the session becomes a [Client]
// (the Provisional is then spent) and the verified chain, leaf first and
// pinned last, is returned. On failure the session is closed and the
// error wraps [voucher.ErrNotPinned].
func (p *Provisional) Promote(pinned *x509.Certificate, now time.Time) (*Client, []*x509.Certificate, error) {
	p.mu.Lock()
	cl := p.cl
	p.cl = nil
	p.mu.Unlock()
	if cl == nil {
		return nil, nil, ErrProvisional
	}
	chain, err := voucher.VerifyServerChain(pinned, p.peer, now)
	if err != nil {
		_ = cl.Close()
		return nil, nil, fmt.Errorf("estclient: %w", err)
	}
	return cl, chain, nil
}

// Close ends the session unless it was promoted.
func (p *Provisional) Close() error {
	p.mu.Lock()
	cl := p.cl
	p.cl = nil
	p.mu.Unlock()
	if cl == nil {
		return nil
	}
	return cl.Close()
}

// ReportVoucherStatus posts voucher status telemetry to
// /.well-known/brski/vs (RFC 8995 §5.7), on an authenticated session.
func (c *Client) ReportVoucherStatus(ctx context.Context, st voucher.Status) error {
	return c.telemetry(ctx, voucher.PathVoucherStatus, st)
}

// ReportEnrollStatus posts enrollment status telemetry to
// /.well-known/brski/es (RFC 8995 §5.9.4).
func (c *Client) ReportEnrollStatus(ctx context.Context, st voucher.Status) error {
	return c.telemetry(ctx, voucher.PathEnrollStatus, st)
}

func (c *Client) telemetry(ctx context.Context, path string, st voucher.Status) error {
	b, err := voucher.MarshalStatus(st)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, func(ctx context.Context) (*pool.Message, error) {
		return c.conn.Post(ctx, path, FormatCBOR, bytes.NewReader(b))
	}, codes.Changed)
	if err != nil {
		return fmt.Errorf("estclient: %s: %w", path, err)
	}
	return nil
}
