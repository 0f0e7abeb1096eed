package mqttsrv

import (
	"context"
	"errors"
	"fmt"

	"github.com/embark-iot/embark/pkg/mqttwire"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/registrar"
	"github.com/embark-iot/embark/pkg/voucher"
)

// VoucherRegistrar obtains vouchers: package registrar.
type VoucherRegistrar interface {
	RequestVoucher(ctx context.Context, req registrar.Request) ([]byte, error)
}

// handleVoucher answers a voucher request published to
// "<ns>/voucher". The payload is the device's pledge request itself
// (package voucher): signed by its IDevID, whose certificate it carries,
// and bound to the device's own fresh nonce, so it needs no Embark nonce.
// It must name the device of the topic. The answer carries the voucher;
// the device checks it against its firmware's anchors, then Embark's
// signature on the answer against the root the voucher pins.
func (s *Server) handleVoucher(ctx context.Context, respTopic string, resp *mqttwire.Response, payload []byte) {
	if s.cfg.Registrar == nil {
		s.refuse(ctx, respTopic, resp, &onboard.Error{Reason: onboard.ReasonBadRequest, Msg: "this Embark is no voucher registrar"})
		return
	}
	pr, err := voucher.OpenPledgeRequest(payload)
	if err != nil {
		reason := onboard.ReasonBadRequest
		switch {
		case errors.Is(err, voucher.ErrBadSignature):
			reason = onboard.ReasonBadSignature
		case errors.Is(err, voucher.ErrTooLarge):
			reason = onboard.ReasonPayloadTooLarge
		}
		s.refuse(ctx, respTopic, resp, &onboard.Error{Reason: reason, Msg: "voucher request: " + err.Error()})
		return
	}
	resp.Nonce = pr.Nonce
	who, err := s.cfg.Core.Identify(ctx, pr.Chain)
	if err == nil && who.DeviceID != resp.Device {
		err = &onboard.Error{Reason: onboard.ReasonWrongDevice,
			Msg: fmt.Sprintf("voucher request of %s published in the namespace of %s", who.DeviceID, resp.Device)}
	}
	if err != nil {
		s.refuse(ctx, respTopic, resp, err)
		return
	}
	v, err := s.cfg.Registrar.RequestVoucher(ctx, registrar.Request{Chain: pr.Chain, Body: payload, Transport: "mqtt", Remote: "mqtt:" + resp.Device})
	if err != nil {
		s.refuse(ctx, respTopic, resp, err)
		return
	}
	resp.Status, resp.Voucher = mqttwire.StatusOK, v
	s.respond(ctx, respTopic, resp)
}
