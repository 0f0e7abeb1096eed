package campaign

import "errors"

// Errors of Start, Get and Cancel. Callers compare with errors.Is.
var (
	// ErrInvalid: the request is malformed (selector, rate, timeout).
	ErrInvalid = errors.New("campaign: invalid request")
	// ErrUnknownDevice: the selector names a device the registry does not
	// know.
	ErrUnknownDevice = errors.New("campaign: unknown device")
	// ErrUnknownModel: no device of the registry has this model.
	ErrUnknownModel = errors.New("campaign: unknown model")
	// ErrUnknownZone: no device of the registry is in this zone.
	ErrUnknownZone = errors.New("campaign: unknown zone")
	// ErrNothingToRotate: the selector matches devices, none of which holds
	// a live LDevID (onboarded or quarantined with a usable certificate).
	ErrNothingToRotate = errors.New("campaign: no selected device can rotate")
	// ErrUnknownCampaign: no campaign with this ID.
	ErrUnknownCampaign = errors.New("campaign: unknown campaign")
	// ErrNotRunning: the campaign already finished or was cancelled.
	ErrNotRunning = errors.New("campaign: not running")
)
