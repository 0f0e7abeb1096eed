package estcoap

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

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
// rv is what a device asks over a provisional session: it has not
// verified the server yet. It authenticates with its IDevID. "Not yet"
// (the MASA cannot be reached, none configured) is 5.03 with Max-Age; a
// MASA's refusal 4.03 voucher_refused; an answer of the MASA that does not
// check out 5.02 voucher_untrusted.
func (s *Server) serveBRSKI() {
	reg := s.cfg.Registrar
	if reg == nil {
		return
	}
	s.handle(voucher.PathVoucherRequest, s.voucherRequest(reg))
	s.handle(voucher.PathVoucherStatus, s.telemetry(reg, registrar.VoucherStatus))
	s.handle(voucher.PathEnrollStatus, s.telemetry(reg, registrar.EnrollStatus))
}

func (s *Server) voucherRequest(reg VoucherRegistrar) mux.HandlerFunc {
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
		chain, transport, err := s.peerChain(w.Conn().NetConn())
		if err != nil {
			s.fail(w, codes.InternalServerError, onboard.ReasonInternal, "cannot read the client certificate", 0)
			s.log.Error("peer certificate", slog.Any("err", err))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		remote := w.Conn().RemoteAddr().String()
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
