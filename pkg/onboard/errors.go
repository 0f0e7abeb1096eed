package onboard

import (
	"errors"
	"fmt"
	"time"
)

// Reason is a machine-readable code for why a request was refused. Every
// transport shows it to the device verbatim.
type Reason string

// Reasons. Transports map them to their status codes; see the README.
const (
	ReasonUnauthenticated Reason = "unauthenticated"   // no client certificate
	ReasonUntrustedChain  Reason = "untrusted_chain"   // chain does not lead to a trusted anchor
	ReasonExpiredChain    Reason = "expired_chain"     // a certificate of the chain expired
	ReasonNotYetValid     Reason = "not_yet_valid"     // a certificate of the chain is not valid yet
	ReasonUnknownDevice   Reason = "unknown_device"    // IDevID key in no manifest
	ReasonCloneSuspected  Reason = "clone_suspected"   // known serial, different key
	ReasonWrongOwner      Reason = "wrong_owner"       // sold to, or transferred to, another owner
	ReasonWrongCredential Reason = "wrong_credential"  // IDevID on renew, LDevID on enroll
	ReasonMalformedCSR    Reason = "malformed_csr"     // CSR does not parse
	ReasonCSRSignature    Reason = "csr_signature"     // CSR signature does not verify
	ReasonUnsupportedKey  Reason = "unsupported_key"   // key type not allowed on device links
	ReasonRevoked         Reason = "revoked"           // device or certificate revoked/decommissioned
	ReasonDenied          Reason = "denied"            // policy or operator refuses the device
	ReasonHeld            Reason = "held"              // waiting for an operator: retry later
	ReasonOverloaded      Reason = "overloaded"        // too much at once: retry later
	ReasonNotCurrent      Reason = "not_current"       // renewal with a certificate that may no longer renew
	ReasonPayloadTooLarge Reason = "payload_too_large" // request body above the limit
	ReasonBadRequest      Reason = "bad_request"       // anything else malformed
	ReasonWrongDevice     Reason = "wrong_device"      // the credential is another device's than the one addressed
	ReasonBadSignature    Reason = "bad_signature"     // a signed request does not verify with its certificate's key
	ReasonUnknownNonce    Reason = "unknown_nonce"     // a nonce Embark did not issue to this device
	ReasonExpiredNonce    Reason = "expired_nonce"     // a nonce past its lifetime: ask for a new one
	ReasonReplayed        Reason = "replayed"          // a nonce already used: ask for a new one
	ReasonInternal        Reason = "internal"          // our fault
)

// Error is the typed error of every Service method.
type Error struct {
	Reason Reason
	// Msg explains the refusal to a person.
	Msg string
	// RetryAfter is set for "not yet" answers (held, overloaded).
	RetryAfter time.Duration
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Msg }

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the device should send the same request again later.
func (e *Error) Retryable() bool { return e.RetryAfter > 0 }

// ReasonOf returns the reason of err, ReasonInternal if err is not an *Error,
// and "" for nil.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonInternal
}

func refuse(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}

func refuseErr(r Reason, err error, format string, args ...any) *Error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...), Err: err}
}
