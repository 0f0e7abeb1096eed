package estclient

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options"
	coapudp "github.com/plgd-dev/go-coap/v3/udp"

	"github.com/embark-iot/embark/pkg/voucher"
)

// FormatVoucherCOSE is application/voucher-cose+cbor (constrained
// BRSKI): voucher requests and vouchers. Status telemetry is FormatCBOR.
const FormatVoucherCOSE message.MediaType = voucher.ContentFormatVoucherCOSE

// PlainCoAP is CoAP over UDP without DTLS ("coap"): only the voucher
// request travels on it ([RequestVoucher]); [Dial] never accepts it.
const PlainCoAP Transport = "coap"

// DefaultVoucherPort is the port of a coap:// voucher target that names
// none.
const DefaultVoucherPort = "5683"

// ParseVoucherTarget parses coap://host[:port], the registrar's plain
// CoAP BRSKI listener. A path, query, fragment or user part is refused.
func ParseVoucherTarget(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q: %v", ErrTarget, s, err)
	}
	if !strings.EqualFold(u.Scheme, string(PlainCoAP)) {
		return Target{}, fmt.Errorf("%w: %q: a voucher target is coap://host[:port]", ErrTarget, s)
	}
	if u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Target{}, fmt.Errorf("%w: %q: only scheme, host and port are allowed", ErrTarget, s)
	}
	t := Target{Transport: PlainCoAP, Host: u.Hostname(), Port: u.Port()}
	if t.Host == "" {
		return Target{}, fmt.Errorf("%w: %q: no host", ErrTarget, s)
	}
	if t.Port == "" {
		t.Port = DefaultVoucherPort
	}
	if p, err := strconv.ParseUint(t.Port, 10, 16); err != nil || p == 0 {
		return Target{}, fmt.Errorf("%w: %q: port must be 1-65535", ErrTarget, s)
	}
	return t, nil
}

// RequestVoucher posts a signed voucher request (a [voucher.PledgeRequest])
// over plain CoAP to target's /.well-known/brski/rv and returns the voucher
// the registrar answers with, unverified: the device verifies it with
// [voucher.Verify] and trusts nothing before. The channel needs no
// security: the request is signed with the IDevID, the voucher by the
// manufacturer. timeout bounds the exchange (zero: the context's).
func RequestVoucher(ctx context.Context, target string, request []byte, timeout time.Duration) ([]byte, error) {
	t, err := ParseVoucherTarget(target)
	if err != nil {
		return nil, err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cc, err := coapudp.Dial(net.JoinHostPort(t.Host, t.Port), options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("estclient: rv: %s: %w", t, err)
	}
	cl := &Client{target: t, conn: cc}
	defer cl.Close()
	return cl.RequestVoucher(ctx, request)
}

// RequestVoucher posts a signed voucher request on an established
// session (one whose server the device already verified) and returns the
// voucher, unverified.
func (c *Client) RequestVoucher(ctx context.Context, request []byte) ([]byte, error) {
	a, err := c.do(ctx, func(ctx context.Context) (*pool.Message, error) {
		return c.conn.Post(ctx, voucher.PathVoucherRequest, FormatVoucherCOSE, bytes.NewReader(request), acceptOptions(FormatVoucherCOSE)...)
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

// ReportVoucherStatus posts voucher status telemetry to
// /.well-known/brski/vs (RFC 8995 §5.7), on a verified session.
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
