package masa

import "errors"

var (
	// ErrOptions reports options that cannot work.
	ErrOptions = errors.New("masa: invalid options")
	// ErrSales reports sales records (the factory's manifest) that cannot
	// be read.
	ErrSales = errors.New("masa: sales records")
)

// Reason is the machine-readable code of a refusal.
type Reason string

// Reasons; see the package documentation.
const (
	ReasonUnauthenticatedRegistrar Reason = "unauthenticated_registrar"
	ReasonRegistrarMismatch        Reason = "registrar_mismatch"
	ReasonBadRequest               Reason = "bad_request"
	ReasonBadSignature             Reason = "bad_signature"
	ReasonUnknownDevice            Reason = "unknown_device"
	ReasonUntrustedIDevID          Reason = "untrusted_idevid"
	ReasonCloneSuspected           Reason = "clone_suspected"
	ReasonProximityMismatch        Reason = "proximity_mismatch"
	ReasonNoOwnerKey               Reason = "no_owner_key"
	ReasonWrongOwner               Reason = "wrong_owner"
	ReasonStaleRegistration        Reason = "stale_registration"
	ReasonDomainTaken              Reason = "domain_taken"
	ReasonInternal                 Reason = "internal"
)

// Refusal is a request the MASA refused.
type Refusal struct {
	Reason Reason
	Msg    string
	// Status is the HTTP status code.
	Status int
}

func (r *Refusal) Error() string { return "masa: " + string(r.Reason) + ": " + r.Msg }
