package estclient

import (
	"fmt"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// DefaultMaxAge is the Max-Age a CoAP response has when it carries no
// Max-Age option (RFC 7252, section 5.10.5).
const DefaultMaxAge = 60 * time.Second

// StatusError is a CoAP error answer from the server.
type StatusError struct {
	// Code is the CoAP response code, such as 4.03 or 5.03.
	Code codes.Code
	// Reason is the machine-readable reason code of the diagnostic
	// payload ("unknown_device", "held", ...), empty when the payload had
	// none.
	Reason string
	// Message is the human-readable rest of the diagnostic payload.
	Message string
	// MaxAge is how long to wait before resending the same request. It is
	// set for 5.03 Service Unavailable (DefaultMaxAge when the server sent
	// no Max-Age option) and otherwise only when the server sent one.
	MaxAge time.Duration
}

// Error describes the answer, for example
// "estclient: 4.03 Forbidden: unknown_device: no provenance".
func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "estclient: %s %s", CodeString(e.Code), e.Code)
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Retryable() {
		fmt.Fprintf(&b, " (retry after %s)", e.MaxAge)
	}
	return b.String()
}

// Retryable reports whether the answer means "not yet" (5.03 Service
// Unavailable: held for approval, overloaded): the device should resend the
// same request after MaxAge. Every 4.xx answer is final.
func (e *StatusError) Retryable() bool {
	return e.Code == codes.ServiceUnavailable
}

// CodeString formats a CoAP code in dotted form ("2.04", "4.03").
func CodeString(c codes.Code) string {
	return fmt.Sprintf("%d.%02d", uint8(c)>>5, uint8(c)&0x1f)
}

// parseDiagnostic splits a diagnostic payload "reason_code: message" into
// its parts. A payload without a well-formed reason code is all message.
func parseDiagnostic(payload []byte) (reason, msg string) {
	s := strings.TrimSpace(string(payload))
	head, rest, found := strings.Cut(s, ":")
	if !found {
		if isReasonCode(s) {
			return s, ""
		}
		return "", s
	}
	if !isReasonCode(head) {
		return "", s
	}
	return head, strings.TrimSpace(rest)
}

// isReasonCode reports whether s looks like a reason code: lower-case
// letters, digits and underscores, starting with a letter.
func isReasonCode(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}
