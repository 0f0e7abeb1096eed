package estcoap

import (
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Content formats of RFC 9148 §8.
const (
	FormatPKCS7Certs message.MediaType = 281 // application/pkcs7-mime; smime-type=certs-only
	FormatCSRAttrs   message.MediaType = 285 // application/csrattrs
	FormatPKCS10     message.MediaType = 286 // application/pkcs10
	FormatPKIXCert   message.MediaType = 287 // application/pkix-cert
)

// codeFor maps a reason of the core to a CoAP response code.
func codeFor(r onboard.Reason) codes.Code {
	switch r {
	case onboard.ReasonUnauthenticated:
		return codes.Unauthorized
	case onboard.ReasonUntrustedChain, onboard.ReasonExpiredChain, onboard.ReasonNotYetValid,
		onboard.ReasonUnknownDevice, onboard.ReasonCloneSuspected, onboard.ReasonWrongCredential, onboard.ReasonWrongOwner,
		onboard.ReasonRevoked, onboard.ReasonDenied, onboard.ReasonNotCurrent:
		return codes.Forbidden
	case onboard.ReasonMalformedCSR, onboard.ReasonCSRSignature, onboard.ReasonUnsupportedKey, onboard.ReasonBadRequest:
		return codes.BadRequest
	case onboard.ReasonPayloadTooLarge:
		return codes.RequestEntityTooLarge
	case onboard.ReasonHeld, onboard.ReasonOverloaded:
		return codes.ServiceUnavailable
	}
	return codes.InternalServerError
}
