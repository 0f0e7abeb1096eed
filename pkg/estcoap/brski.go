package estcoap

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/registrar"
	"github.com/embark-iot/embark/pkg/voucher"
)

// Content formats of the BRSKI resources.
const (
	// FormatVoucherCOSE is application/voucher-cose+cbor
	// (draft-ietf-anima-constrained-voucher): voucher requests and vouchers.
	FormatVoucherCOSE message.MediaType = voucher.ContentFormatVoucherCOSE
	// FormatCBOR is application/cbor: status telemetry.
	FormatCBOR message.MediaType = voucher.ContentFormatCBOR
)

// VoucherRegistrar is what the BRSKI resources need: package registrar.
type VoucherRegistrar interface {
	RequestVoucher(ctx context.Context, req registrar.Request) ([]byte, error)
	RecordStatus(ctx context.Context, kind registrar.StatusKind, chain []*x509.Certificate, body []byte, transport string) error
}

// serveBRSKI adds the constrained BRSKI resources (RFC 8995, constrained
// voucher draft) when a registrar is configured:
//
//	/.well-known/brski/rv  POST  pledge voucher request (836) → 2.04 with the voucher (836)
//	/.well-known/brski/vs  POST  voucher status telemetry (60) → 2.04
//	/.well-known/brski/es  POST  enrollment status telemetry (60) → 2.04
//
// A factory-fresh device cannot verify Embark yet, and never opens an
// unverified DTLS/TLS session: it asks rv over plain CoAP ([Server.ListenPlain]),
// where the signed voucher request (its x5chain: the IDevID) is all that
// identifies it. On the secure listeners rv also answers a device whose
// session's client certificate is the IDevID that signed the request.
// "Not yet" (the MASA cannot be reached, none configured) is 5.03 with
// Max-Age; a MASA's refusal 4.03 voucher_refused; an answer of the MASA
// that does not check out 5.02 voucher_untrusted.
func (s *Server) serveBRSKI() {
	reg := s.cfg.Registrar
	if reg == nil {
		return
	}
	s.handle(voucher.PathVoucherRequest, s.voucherRequest(reg, (*Server).sessionChain))
	s.handle(voucher.PathVoucherStatus, s.telemetry(reg, registrar.VoucherStatus))
	s.handle(voucher.PathEnrollStatus, s.telemetry(reg, registrar.EnrollStatus))
}

// ErrNoRegistrar reports a plain BRSKI listener asked of a server without
// a registrar.
var ErrNoRegistrar = errors.New("estcoap: no registrar configured")

// ListenPlain starts serving plain CoAP (UDP, no DTLS) on addr
// ("127.0.0.1:0" for any port) and returns the bound address. It serves
// /.well-known/brski/rv and nothing else: a device that does not trust
// Embark yet sends its signed voucher request there, and the voucher it
// gets back is signed by its manufacturer. Everything else, the status
// telemetry included, waits for the verified DTLS session the device opens
// once the voucher told it whom to trust. Requests are identified solely
// by their signature and x5chain; an unsigned or unverifiable request is
// refused as on the secure listeners.
func (s *Server) ListenPlain(addr string) (net.Addr, error) {
	reg := s.cfg.Registrar
	if reg == nil {
		return nil, ErrNoRegistrar
	}
	router := mux.NewRouter()
	_ = router.Handle(voucher.PathVoucherRequest, s.voucherRequest(reg, signerChain))
	router.DefaultHandle(mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		s.fail(w, codes.NotFound, onboard.ReasonBadRequest, "plain CoAP serves only "+voucher.PathVoucherRequest, 0)
	}))
	l, err := coapnet.NewListenUDP("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("estcoap: listen plain coap %s: %w", addr, err)
	}
	srv := udp.NewServer(
		options.WithMux(mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) { s.serveVia(router, w, r) })),
		options.WithMaxMessageSize(uint32(s.cfg.MaxBody+1024)),
		options.WithBlockwise(true, blockwise.SZX1024, 30*time.Second),
		options.WithErrors(s.bgError),
		options.WithProcessReceivedMessageFunc(s.block1UDP()),
		options.WithInactivityMonitor(2*time.Minute, func(cc *udpclient.Conn) { _ = cc.Close() }),
	)
	s.start(func() error { return srv.Serve(l) }, srv.Stop)
	return l.LocalAddr(), nil
}

// chainSource gives the device chain of a voucher request: the session's
// client certificates, or, over plain CoAP, the request's own x5chain.
type chainSource func(s *Server, w mux.ResponseWriter, body []byte) ([]*x509.Certificate, string, error)

// sessionChain is the client certificate chain of a DTLS/TLS session.
func (s *Server) sessionChain(w mux.ResponseWriter, _ []byte) ([]*x509.Certificate, string, error) {
	chain, transport, err := s.peerChain(w.Conn().NetConn())
	if err != nil {
		s.log.Error("peer certificate", slog.Any("err", err))
		return nil, transport, &onboard.Error{Reason: onboard.ReasonInternal, Msg: "cannot read the client certificate", Err: err}
	}
	return chain, transport, nil
}

// signerChain is the x5chain of a voucher request whose signature
// verifies with its leaf: all that identifies a device over plain CoAP.
// The registrar checks the chain (a trusted manufacturer's IDevID) and
// verifies the request again.
func signerChain(_ *Server, _ mux.ResponseWriter, body []byte) ([]*x509.Certificate, string, error) {
	pr, err := voucher.OpenPledgeRequest(body)
	if err != nil {
		reason := onboard.ReasonBadRequest
		switch {
		case errors.Is(err, voucher.ErrBadSignature):
			reason = onboard.ReasonBadSignature
		case errors.Is(err, voucher.ErrTooLarge):
			reason = onboard.ReasonPayloadTooLarge
		}
		return nil, "coap", &onboard.Error{Reason: reason, Msg: "voucher request: " + err.Error(), Err: err}
	}
	return pr.Chain, "coap", nil
}

func (s *Server) voucherRequest(reg VoucherRegistrar, chainOf chainSource) mux.HandlerFunc {
	return func(w mux.ResponseWriter, r *mux.Message) {
		if r.Code() != codes.POST {
			s.fail(w, codes.MethodNotAllowed, onboard.ReasonBadRequest, "rv answers POST", 0)
			return
		}
		if cf, err := r.ContentFormat(); err != nil || cf != FormatVoucherCOSE {
			s.fail(w, codes.UnsupportedMediaType, onboard.ReasonBadRequest, "rv takes a voucher request as content format 836", 0)
			return
		}
		if a := accept(r, FormatVoucherCOSE); a != FormatVoucherCOSE {
			s.fail(w, codes.NotAcceptable, onboard.ReasonBadRequest, "rv answers 836", 0)
			return
		}
		body, err := readBody(r, s.cfg.MaxBody)
		if err != nil {
			s.fail(w, codes.RequestEntityTooLarge, onboard.ReasonPayloadTooLarge, err.Error(), 0)
			return
		}
		remote := w.Conn().RemoteAddr().String()
		chain, transport, err := chainOf(s, w, body)
		if err != nil {
			s.refuseBRSKI(w, "rv", remote, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		v, err := reg.RequestVoucher(ctx, registrar.Request{Chain: chain, Body: body, Transport: transport, Remote: remote})
		if err != nil {
			s.refuseBRSKI(w, "rv", remote, err)
			return
		}
		s.reply(w, codes.Changed, FormatVoucherCOSE, v)
	}
}

func (s *Server) telemetry(reg VoucherRegistrar, kind registrar.StatusKind) mux.HandlerFunc {
	name := "vs"
	if kind == registrar.EnrollStatus {
		name = "es"
	}
	return func(w mux.ResponseWriter, r *mux.Message) {
		if r.Code() != codes.POST {
			s.fail(w, codes.MethodNotAllowed, onboard.ReasonBadRequest, name+" answers POST", 0)
			return
		}
		if cf, err := r.ContentFormat(); err != nil || cf != FormatCBOR {
			s.fail(w, codes.UnsupportedMediaType, onboard.ReasonBadRequest, name+" takes status telemetry as content format 60", 0)
			return
		}
		body, err := readBody(r, voucher.MaxStatus)
		if err != nil {
			s.fail(w, codes.RequestEntityTooLarge, onboard.ReasonPayloadTooLarge, err.Error(), 0)
			return
		}
		chain, transport, err := s.peerChain(w.Conn().NetConn())
		if err != nil {
			s.fail(w, codes.InternalServerError, onboard.ReasonInternal, "cannot read the client certificate", 0)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		if err := reg.RecordStatus(ctx, kind, chain, body, transport); err != nil {
			s.refuseBRSKI(w, name, w.Conn().RemoteAddr().String(), err)
			return
		}
		s.reply(w, codes.Changed, message.TextPlain, nil)
	}
}

// refuseBRSKI answers a registrar's refusal: "not yet" is 5.03 with
// Max-Age whatever the reason, the registrar's own reasons get their
// codes, the core's theirs.
func (s *Server) refuseBRSKI(w mux.ResponseWriter, op, remote string, err error) {
	var e *onboard.Error
	if !errors.As(err, &e) {
		e = &onboard.Error{Reason: onboard.ReasonInternal, Msg: "internal error", Err: err}
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "refused", slog.String("op", op),
		slog.String("remote", remote), slog.String("reason", string(e.Reason)), slog.String("msg", e.Msg))
	code := codeFor(e.Reason)
	switch {
	case e.RetryAfter > 0:
		code = codes.ServiceUnavailable
	case e.Reason == registrar.ReasonVoucherRefused || e.Reason == registrar.ReasonProximity ||
		e.Reason == onboard.ReasonWrongDevice:
		code = codes.Forbidden
	case e.Reason == registrar.ReasonVoucherUntrusted:
		code = codes.BadGateway
	case e.Reason == onboard.ReasonBadSignature:
		code = codes.BadRequest
	}
	s.fail(w, code, e.Reason, e.Msg, e.RetryAfter)
}
