package registrar

import (
	"errors"
	"fmt"

	"github.com/embark-iot/embark/pkg/onboard"
)

// Reasons of the registrar, besides the onboarding core's.
const (
	// ReasonNoMASA: no MASA is configured for the device's manufacturer;
	// the device may retry later.
	ReasonNoMASA onboard.Reason = "no_masa"
	// ReasonMASAUnavailable: the MASA could not be reached; retry later.
	ReasonMASAUnavailable onboard.Reason = "masa_unavailable"
	// ReasonVoucherRefused: the MASA refused to vouch (the device was not
	// sold to this owner, ...).
	ReasonVoucherRefused onboard.Reason = "voucher_refused"
	// ReasonVoucherUntrusted: the MASA's answer failed the registrar's
	// checks (countersignature, serial, nonce, pinned domain).
	ReasonVoucherUntrusted onboard.Reason = "voucher_untrusted"
	// ReasonProximity: the device saw another server than this registrar's.
	ReasonProximity onboard.Reason = "proximity_mismatch"
)

var (
	// ErrConfig reports a configuration that cannot work.
	ErrConfig = errors.New("registrar: bad configuration")
	// ErrNoMASA: no MASA is configured for a manufacturer.
	ErrNoMASA = errors.New("registrar: no MASA configured")
	// ErrUnknownManufacturer: the manufacturer is not trusted.
	ErrUnknownManufacturer = errors.New("registrar: manufacturer not trusted")
	// ErrMASA: the MASA could not be reached or gave an unusable answer.
	ErrMASA = errors.New("registrar: MASA")
)

// MASARefusal is the MASA's reason for refusing a request.
type MASARefusal struct {
	// Status is the HTTP status of the answer.
	Status int
	// Reason and Message are what the MASA said.
	Reason, Message string
}

func (e *MASARefusal) Error() string {
	return fmt.Sprintf("MASA refused (HTTP %d): %s: %s", e.Status, e.Reason, e.Message)
}
