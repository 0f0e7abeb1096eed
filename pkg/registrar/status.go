package registrar

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/voucher"
)

// StatusKind names a kind of status telemetry.
type StatusKind string

// Kinds of status telemetry (RFC 8995 §5.7, §5.9.4), as audit actions.
const (
	// VoucherStatus is posted to /vs after the device checked its voucher.
	VoucherStatus StatusKind = "voucher_status"
	// EnrollStatus is posted to /es after the device enrolled.
	EnrollStatus StatusKind = "enroll_status"
)

// RecordStatus records a device's status telemetry in the audit log: the
// session's certificate chain (IDevID or LDevID) names the device, body is
// the CBOR status ([voucher.Status]).
func (r *Registrar) RecordStatus(ctx context.Context, kind StatusKind, chain []*x509.Certificate, body []byte, transport string) error {
	if kind != VoucherStatus && kind != EnrollStatus {
		return refuse(onboard.ReasonBadRequest, nil, "unknown telemetry %q", kind)
	}
	if len(chain) == 0 {
		return refuse(onboard.ReasonUnauthenticated, nil, "no client certificate: telemetry names its device by its certificate")
	}
	st, err := voucher.ParseStatus(body)
	if err != nil {
		return refuse(onboard.ReasonBadRequest, err, "%s: %v", kind, err)
	}
	id, err := r.cfg.Core.Identify(ctx, chain)
	if err != nil {
		return err
	}
	e := audit.Entry{Actor: "device", Action: string(kind), DeviceID: id.DeviceID, Outcome: "ok"}
	if !st.OK {
		e.Outcome = "failed"
	}
	var detail []string
	if st.Reason != "" {
		detail = append(detail, st.Reason)
	}
	if st.Context != "" {
		detail = append(detail, st.Context)
	}
	e.Detail = fmt.Sprintf("reported over %s with its %s", transport, id.Credential)
	if len(detail) > 0 {
		e.Detail += ": " + truncate(strings.Join(detail, "; "), 512)
	}
	if err := r.audit(ctx, e); err != nil {
		return refuse(onboard.ReasonInternal, err, "audit: %v", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
