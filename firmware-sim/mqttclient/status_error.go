package mqttclient

import (
	"fmt"
	"strings"
	"time"

	"github.com/embark-iot/embark/pkg/mqttwire"
)

// DefaultRetryAfter is the wait of a "retry" answer that names none.
const DefaultRetryAfter = 60 * time.Second

// StatusError is a signed answer from Embark that is not a success: a
// refusal, or "not yet" (held for approval, overloaded).
type StatusError struct {
	// Op is the operation that was answered.
	Op mqttwire.Op
	// Status is mqttwire.StatusRefused or mqttwire.StatusRetry.
	Status mqttwire.Status
	// Reason is the reason code ("unknown_device", "held", ...), the
	// same codes as over CoAP; Message a human-readable explanation.
	Reason, Message string
	// RetryAfter is how long to wait before asking again (with a fresh
	// nonce), set for Status retry: the answer's RetryAfter, or
	// DefaultRetryAfter when it named none.
	RetryAfter time.Duration
}

// Error describes the answer, for example
// "mqttclient: enroll refused: unknown_device: no provenance".
func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mqttclient: %s %s", e.Op, e.Status)
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Retryable() {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Retryable reports whether the answer means "not yet": ask again after
// RetryAfter. Refusals are final.
func (e *StatusError) Retryable() bool { return e.Status == mqttwire.StatusRetry }

func statusError(r mqttwire.Response) *StatusError {
	e := &StatusError{Op: r.Op, Status: r.Status, Reason: r.Reason, Message: r.Message}
	if r.Status == mqttwire.StatusRetry {
		e.RetryAfter = time.Duration(r.RetryAfter) * time.Second
		if r.RetryAfter == 0 {
			e.RetryAfter = DefaultRetryAfter
		}
	}
	return e
}

// nonceReasons are the refusals that a fresh nonce cures.
var nonceReasons = map[string]bool{"replayed": true, "stale_nonce": true, "unknown_nonce": true}

// ConnectError is a CONNACK with a failure reason code.
type ConnectError struct {
	// Code is the MQTT v5 CONNACK reason code (0x80 and above).
	Code byte
	// Reason is the broker's reason string, if it sent one.
	Reason string
}

// Error describes the refusal, for example
// "mqttclient: connect refused: 0x87 not authorized".
func (e *ConnectError) Error() string {
	s := fmt.Sprintf("mqttclient: connect refused: 0x%02x %s", e.Code, connackName(e.Code))
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Retryable reports whether the refusal is temporary: the broker is busy,
// unavailable, over its quota or its connection rate.
func (e *ConnectError) Retryable() bool {
	switch e.Code {
	case 0x88, 0x89, 0x97, 0x9f:
		return true
	}
	return false
}

func connackName(code byte) string {
	switch code {
	case 0x80:
		return "unspecified error"
	case 0x84:
		return "unsupported protocol version"
	case 0x85:
		return "client identifier not valid"
	case 0x86:
		return "bad user name or password"
	case 0x87:
		return "not authorized"
	case 0x88:
		return "server unavailable"
	case 0x89:
		return "server busy"
	case 0x8a:
		return "banned"
	case 0x97:
		return "quota exceeded"
	case 0x9f:
		return "connection rate exceeded"
	}
	return "refused"
}
